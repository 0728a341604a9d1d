// The layout check `npm test` runs: dependencies point one way,
//
//   edgecache-core (crates/core) ← runtime ← {origin, cache} ← {coordinator, registry} ← edge
//
// and the CLI depends on the core only. A module of src/ may name `crate::<m>` only for a
// module of a lower layer (siblings of one layer do not import each other); the core names no
// `worker` and no other crate of this workspace; nothing but src/lib.rs names the edge.
//
// Usage: node scripts/check-layout.mjs [root]   (exit 1 and one line per violation)
//        node scripts/check-layout.mjs --self-test  (checks the checker on made-up trees)

import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/** Each module of src/ and its layer; a module may import only from lower layers. */
export const LAYERS = {
  runtime: 1,
  origin: 2,
  cache: 2,
  coordinator: 3,
  registry: 3,
  edge: 4,
};

function rustFiles(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return rustFiles(p);
    return e.name.endsWith(".rs") ? [p] : [];
  });
}

/** The code of a Rust file without comments and string literals (so prose cannot trip it). */
function codeOf(text) {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/\/\/.*$/gm, "")
    .replace(/r#*"[\s\S]*?"#*/g, '""')
    .replace(/"(?:\\.|[^"\\])*"/g, '""');
}

/** Every violation of the rule in the tree at `root`, as `file:line: message`. */
export function violations(root) {
  const out = [];
  const report = (file, code, index, message) => {
    const line = code.slice(0, index).split("\n").length;
    out.push(`${path.relative(root, file)}:${line}: ${message}`);
  };
  const src = path.join(root, "src");
  for (const file of rustFiles(src)) {
    const rel = path.relative(src, file).split(path.sep);
    const code = codeOf(fs.readFileSync(file, "utf8"));
    if (rel.length === 1) {
      // lib.rs declares the modules and hands requests to the edge: it may name any of them.
      continue;
    }
    const own = rel[0];
    const rank = LAYERS[own];
    if (rank === undefined) {
      report(file, code, 0, `src/${own} is no module of the layout (${Object.keys(LAYERS).join(", ")})`);
      continue;
    }
    for (const m of code.matchAll(/\bcrate::([a-z_][a-z0-9_]*)/g)) {
      const target = m[1];
      if (target === own) continue;
      const theirs = LAYERS[target];
      if (theirs === undefined) {
        report(file, code, m.index, `names crate::${target}, which is no module of the layout`);
      } else if (theirs >= rank) {
        report(file, code, m.index, `${own} (layer ${rank}) imports ${target} (layer ${theirs}): dependencies point down only`);
      }
    }
    for (const m of code.matchAll(/\bsuper::super::/g)) {
      report(file, code, m.index, "reaches out of its module with super::super; name the module with crate::");
    }
  }
  const core = path.join(root, "crates", "core");
  for (const file of rustFiles(path.join(core, "src"))) {
    const code = codeOf(fs.readFileSync(file, "utf8"));
    for (const m of code.matchAll(/\b(worker|edgecache|wasm_bindgen|js_sys|web_sys)::/g)) {
      report(file, code, m.index, `the core is pure: it may not name ${m[1]}`);
    }
  }
  const manifests = [
    [path.join(core, "Cargo.toml"), /^\s*(worker|wasm-bindgen|js-sys|web-sys|edgecache)\s*=/m, "the core may not depend on"],
    [path.join(root, "cli", "Cargo.toml"), /^\s*(worker|edgecache)\s*=/m, "the CLI depends on the core only, not on"],
  ];
  for (const [file, pattern, message] of manifests) {
    if (!fs.existsSync(file)) continue;
    const text = fs.readFileSync(file, "utf8");
    const m = text.match(pattern);
    if (m) report(file, text, m.index, `${message} \`${m[1]}\``);
  }
  return out;
}

function selfTest() {
  const cases = [
    // [files, how many violations the checker must find]
    [{ "src/edge/read.rs": "use crate::cache::l1;\nuse crate::runtime::http;" }, 0],
    [{ "src/cache/l2.rs": "use crate::edge::read;" }, 1],
    [{ "src/origin/d1.rs": "fn f() { crate::cache::isolate::Edge::new(1); }" }, 1],
    [{ "src/coordinator/object.rs": "use crate::registry::client;" }, 1],
    [{ "src/cache/l2.rs": "// crate::edge is mentioned only in prose\nconst S: &str = \"crate::edge\";" }, 0],
    [{ "src/runtime/env.rs": "use super::super::edge;" }, 1],
    [{ "crates/core/src/key.rs": "use worker::Request;" }, 1],
    [{ "crates/core/Cargo.toml": "[dependencies]\nworker = \"0.8\"\n" }, 1],
    [{ "cli/Cargo.toml": "[dependencies]\nedgecache = { path = \"..\" }\n" }, 1],
    [{ "src/lib.rs": "pub mod edge; fn f() { crate::edge::handle(); }" }, 0],
  ];
  let failed = 0;
  for (const [files, want] of cases) {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "layout-"));
    for (const [name, text] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
      fs.writeFileSync(path.join(root, name), text);
    }
    const got = violations(root);
    fs.rmSync(root, { recursive: true, force: true });
    if (got.length !== want) {
      failed += 1;
      console.error(`layout self-test: ${JSON.stringify(files)} gave ${got.length} violations, want ${want}: ${got.join("; ")}`);
    }
  }
  console.log(`layout self-test: ${cases.length - failed} passed, ${failed} failed`);
  return failed === 0;
}

if (process.argv[2] === "--self-test") {
  process.exit(selfTest() ? 0 : 1);
} else {
  const root = path.resolve(process.argv[2] ?? path.join(path.dirname(new URL(import.meta.url).pathname), ".."));
  const found = violations(root);
  for (const v of found) console.error(`layout: ${v}`);
  if (found.length > 0) {
    console.error(`layout: ${found.length} import(s) against the dependency rule (see ARCHITECTURE.md)`);
    process.exit(1);
  }
  console.log("layout: dependencies point one way (core ← runtime ← {origin, cache} ← {coordinator, registry} ← edge)");
}
