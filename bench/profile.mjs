// Where a request's time goes inside the worker: starts one build with workerd's V8 inspector
// open, and for each route (the no-op route, then an L1 hit) records a V8 CPU profile while wrk
// loads it. Prints, per route, the share of the isolate thread's samples by kind (wasm, the
// JS glue of build/index.js, runtime built-ins, garbage collection, idle) and the functions
// with the most self time, the isolate-thread time per request and which functions make the
// difference between the two routes, and writes each profile to target/bench/profile-<name>.cpuprofile
// (open it in Chrome DevTools). Loopback only, bounded (routes × seconds).
//
//   node bench/profile.mjs [root] [seconds]
// `root` is a checkout with a built `build/` (this one by default).

import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, createWriteStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { request } from "./lib/http.mjs";
import { inspectorTargets, session } from "./lib/inspector.mjs";
import { sleep } from "./lib/util.mjs";
import { freePort, startMiniflare } from "./lib/worker.mjs";

const HERE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

const [root = HERE, seconds = "5"] = process.argv.slice(2);
const ROUTES = [
  { name: "noop", path: "/_edgecache/health", warm: null },
  { name: "l1-hit", path: "/v1/users?limit=10", warm: "HIT-L1" },
];

/** A session on the project's worker: the inspector lists Miniflare's own workers (entry, cache,
 * D1) too; the project's is `core:user:<name>`. */
async function inspect(port) {
  const targets = await inspectorTargets(port);
  const target = targets.find((t) => t.id.startsWith("core:user:"));
  if (!target) throw new Error(`no core:user: target among ${targets.map((t) => t.id).join(", ")}`);
  return session(target, HERE);
}

/** Self time per function, inclusive time of the worker's own functions, and shares by kind. */
function summarise(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusive = new Map();
  const self = new Map();
  const kinds = new Map();
  let total = 0;
  profile.samples.forEach((nodeId, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    const { functionName, url } = byId.get(nodeId).callFrame;
    const name = functionName || "(anonymous)";
    const kind = name.startsWith("(")
      ? name
      : url.startsWith("wasm://")
        ? "wasm (the Rust worker)"
        : url.includes("index.js")
          ? "JS glue (build/index.js)"
          : "runtime JS / built-ins";
    total += dt;
    kinds.set(kind, (kinds.get(kind) ?? 0) + dt);
    const key = `${name} ${url.startsWith("wasm://") ? "[wasm]" : url ? `[${path.basename(url)}]` : ""}`;
    self.set(key, (self.get(key) ?? 0) + dt);
    // Inclusive: every distinct function of EdgeCache's own crates on the sample's stack.
    const seen = new Set();
    for (let id = nodeId; id !== undefined; id = parent.get(id)) {
      const fn = byId.get(id).callFrame.functionName;
      const own = /^(edgecache(_core)?::[^<]*?)(::h[0-9a-f]{16})?$/.exec(fn);
      if (own && !seen.has(own[1])) {
        seen.add(own[1]);
        inclusive.set(own[1], (inclusive.get(own[1]) ?? 0) + dt);
      }
    }
  });
  const share = (m) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => [k, v / total]);
  return { total, kinds: share(kinds), self: share(self), inclusive: share(inclusive) };
}

const template = execFileSync("bash", [path.join(HERE, "scripts/prepare-state.sh")], { encoding: "utf8" }).trim();
const state = mkdtempSync(path.join(os.tmpdir(), "edgecache-profile-"));
cpSync(template, state, { recursive: true });
const inspectorPort = await freePort();
const w = await startMiniflare({
  root: path.resolve(root),
  state,
  vars: { EDGECACHE_TEST_HOOKS: "1" },
  log: createWriteStream(path.join(state, "worker.log")),
  inspectorPort,
});
mkdirSync(path.join(HERE, "target/bench"), { recursive: true });
try {
  const cdp = await inspect(inspectorPort);
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: 100 });
  const busyPerRequest = [];
  const selfPerRequest = [];
  for (const route of ROUTES) {
    for (let i = 0; i < 50; i++) {
      const a = await request(w.url, "GET", route.path);
      if (!route.warm || a.headers["x-edgecache"] === route.warm) break;
      await sleep(100);
    }
    spawnSync("wrk", ["-t2", "-c16", "-d2s", w.url + route.path]); // warm-up, not profiled
    await cdp.send("Profiler.start");
    const run = spawnSync("wrk", ["-t2", "-c16", `-d${seconds}s`, w.url + route.path], { encoding: "utf8" });
    const { profile } = await cdp.send("Profiler.stop");
    const rps = Number((run.stdout.match(/Requests\/sec:\s+([\d.]+)/) ?? [])[1]);
    writeFileSync(path.join(HERE, `target/bench/profile-${route.name}.cpuprofile`), JSON.stringify(profile));
    const s = summarise(profile);
    console.log(`\n${route.name} ${route.path}: ${rps.toFixed(0)} req/s under the profiler; isolate thread, ${(s.total / 1000).toFixed(0)} ms sampled`);
    for (const [k, v] of s.kinds) console.log(`  ${(100 * v).toFixed(1).padStart(5)}%  ${k}`);
    console.log("  self time, top functions:");
    for (const [k, v] of s.self.slice(0, 25)) console.log(`  ${(100 * v).toFixed(1).padStart(5)}%  ${k}`);
    console.log("  inclusive time, EdgeCache's own functions:");
    for (const [k, v] of s.inclusive.slice(0, 25)) console.log(`  ${(100 * v).toFixed(1).padStart(5)}%  ${k}`);
    const busy = s.kinds.filter(([k]) => k !== "(idle)").reduce((a, [, v]) => a + v, 0);
    busyPerRequest.push((busy * s.total) / (rps * Number(seconds)));
    selfPerRequest.push(new Map(s.self.map(([k, v]) => [k, (v * s.total) / (rps * Number(seconds))])));
    console.log(`  busy: ${busyPerRequest.at(-1).toFixed(0)} µs of the isolate thread per request (not idle)`);
  }
  const [noop, hit] = busyPerRequest;
  console.log(
    `\nAn L1 hit keeps the isolate thread busy ${(hit - noop).toFixed(0)} µs longer than the no-op route ` +
      `(${hit.toFixed(0)} vs ${noop.toFixed(0)} µs): where the isolate is the bottleneck, L1 hit / no-op ≤ ${(noop / hit).toFixed(2)}×.`,
  );
  const [noopSelf, hitSelf] = selfPerRequest;
  const extra = [...new Set([...noopSelf.keys(), ...hitSelf.keys()])]
    .filter((k) => !k.startsWith("(idle)"))
    .map((k) => [k, (hitSelf.get(k) ?? 0) - (noopSelf.get(k) ?? 0)])
    .sort((a, b) => b[1] - a[1]);
  console.log("Where the difference goes (self time per request, L1 hit minus no-op, µs):");
  for (const [k, v] of extra.slice(0, 20)) console.log(`  ${v.toFixed(1).padStart(6)}  ${k}`);
  cdp.close();
} finally {
  await w.stop();
  rmSync(state, { recursive: true, force: true });
}
