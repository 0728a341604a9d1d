// Starts the built worker for the benchmark, in one of two ways:
//  * "miniflare": Miniflare's API loads build/index.js + its wasm into workerd, with the bindings of
//    wrangler.toml, and exposes the worker's own socket (no proxy worker in front);
//  * "wrangler": `wrangler dev`, whose front proxy worker sits between the client and the worker.
// Both persist D1 to a private copy of the seeded state, and both are stopped by stop().

import { spawn } from "node:child_process";
import { openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";

/** The vars of wrangler.toml's [vars] table (plain `NAME = '...'` / `NAME = "..."` lines). */
export function wranglerVars(root) {
  const text = readFileSync(path.join(root, "wrangler.toml"), "utf8");
  const vars = {};
  let inVars = false;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("[")) {
      inVars = line === "[vars]";
      continue;
    }
    if (!inVars || line === "" || line.startsWith("#")) continue;
    const m = /^([A-Za-z0-9_]+)\s*=\s*(?:'([^']*)'|"((?:[^"\\]|\\.)*)")\s*$/.exec(line);
    if (m) vars[m[1]] = m[2] ?? JSON.parse(`"${m[3]}"`);
  }
  return vars;
}

/** The `compatibility_date` and D1 `database_id` of wrangler.toml. */
function wranglerSettings(root) {
  const text = readFileSync(path.join(root, "wrangler.toml"), "utf8");
  const date = /^compatibility_date\s*=\s*"([^"]+)"/m.exec(text)?.[1];
  const dbId = /^database_id\s*=\s*"([^"]+)"/m.exec(text)?.[1];
  if (!date || !dbId) throw new Error("wrangler.toml: compatibility_date or database_id not found");
  return { date, dbId };
}

/** A free TCP port on the loopback interface. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Waits until GET url answers 200, or throws after timeoutMs. */
async function waitReady(url, timeoutMs, describe) {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      if (r.status === 200) return;
      last = `status ${r.status}`;
    } catch (e) {
      last = e.cause?.code ?? e.message;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`the worker did not answer ${url} within ${timeoutMs / 1000} s (${last})${describe()}`);
}

/**
 * Starts the worker with Miniflare. `vars` are added to wrangler.toml's vars; `inspectorPort`
 * opens workerd's V8 inspector there (bench/profile.mjs).
 * Returns { url, path, stop }.
 */
export async function startMiniflare({ root, state, vars, log, inspectorPort }) {
  const { Miniflare, Log, LogLevel } = await import(path.join(root, "node_modules/miniflare/dist/src/index.js"));
  const { date, dbId } = wranglerSettings(root);
  const logger = new (class extends Log {
    constructor() {
      super(LogLevel.WARN);
    }
    log(message) {
      log.write(message + "\n");
    }
  })();
  const mf = new Miniflare({
    log: logger,
    handleRuntimeStdio(stdout, stderr) {
      stdout.pipe(log, { end: false });
      stderr.pipe(log, { end: false });
    },
    host: "127.0.0.1",
    port: await freePort(),
    compatibilityDate: date,
    cf: false, // the default placeholder; fetching the real one needs the internet
    modules: [
      { type: "ESModule", path: path.join(root, "build/index.js") },
      { type: "CompiledWasm", path: path.join(root, "build/index_bg.wasm") },
    ],
    modulesRoot: path.join(root, "build"),
    bindings: { ...wranglerVars(root), ...vars },
    d1Databases: { DB: dbId },
    durableObjects: {
      COORDINATOR: { className: "TableCoordinator", useSQLite: true },
      REGISTRY: { className: "TenantRegistry", useSQLite: true },
    },
    d1Persist: path.join(state, "v3/d1"),
    durableObjectsPersist: path.join(state, "v3/do"),
    cachePersist: path.join(state, "v3/cache"),
    kvPersist: path.join(state, "v3/kv"),
    // The worker's own socket, the one wrangler's proxy forwards to.
    unsafeDirectSockets: [{ host: "127.0.0.1", port: await freePort() }],
    ...(inspectorPort ? { inspectorPort } : {}),
  });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await mf.dispose().catch(() => {});
  };
  try {
    await mf.ready;
    const direct = await mf.unsafeGetDirectURL();
    const url = direct.origin;
    await waitReady(`${url}/_edgecache/health`, 60_000, () => "");
    // The coordinator's own counters (its internal `GET /stats`), reached through Miniflare's
    // binding proxy: used only to check the set-up of the fan-out runs, never timed.
    const ns = await mf.getDurableObjectNamespace("COORDINATOR");
    // `GET <path>` of coordinator `name` (`source:table`), parsed.
    const coordinatorGet = async (name, path) => {
      const stub = ns.get(ns.idFromName(name));
      const r = await stub.fetch(`https://coordinator${path}`, { headers: { "x-edgecache-coordinator": name } });
      const text = await r.text();
      if (r.status !== 200) throw new Error(`coordinator ${path} answered ${r.status}: ${text.slice(0, 200)}`);
      return JSON.parse(text);
    };
    const coordinatorStats = (tenant, table) => coordinatorGet(`${tenant}:${table}`, "/stats");
    return {
      url,
      path: "Miniflare API → workerd, the worker's own socket (no proxy worker in front)",
      coordinatorStats,
      coordinatorGet,
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Starts the worker with `wrangler dev`, in its own process group. Returns { url, path, stop }. */
export async function startWrangler({ root, state, vars, logPath }) {
  const port = await freePort();
  const args = ["dev", "--ip", "127.0.0.1", "--port", String(port), "--inspector-port", String(await freePort())];
  args.push("--persist-to", state, "--log-level", "warn", "--show-interactive-dev-session=false");
  for (const [k, v] of Object.entries(vars)) args.push("--var", `${k}:${v}`);
  const fd = openSync(logPath, "a");
  const child = spawn(path.join(root, "node_modules/.bin/wrangler"), args, {
    cwd: root,
    env: { ...process.env, EDGECACHE_SKIP_BUILD: "1", WRANGLER_SEND_METRICS: "false", CI: "true" },
    stdio: ["ignore", fd, fd],
    detached: true, // its own process group, so stop() takes workerd with it
  });
  const stop = async () => {
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {
      return;
    }
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 100));
      try {
        process.kill(-child.pid, 0);
      } catch {
        return;
      }
    }
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {}
  };
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitReady(`${url}/_edgecache/health`, 120_000, () => {
      const text = readFileSync(logPath, "utf8");
      return "\n" + text.split("\n").slice(-30).join("\n");
    });
    return { url, path: "wrangler dev (through wrangler's front proxy worker)", stop, pid: child.pid };
  } catch (e) {
    await stop();
    throw e;
  }
}
