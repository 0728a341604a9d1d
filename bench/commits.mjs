// Durable commits per write: what a write through EdgeCache makes the runtime sync to disk,
// against the same write straight to D1 (the test hooks' origin route, as bench/overheads.mjs).
// Every write EdgeCache acknowledges must be recorded durably twice by its table's coordinator
// (the intent before the origin sees it, invariant 6; the sequence number and plan before the
// token is given out) besides the origin's own commit, so on a runtime where a commit is a
// disk sync the write overhead has a floor this script shows. It starts one build, attaches
// strace (Debian's `strace`; it says so and stops if it is missing) to the workerd process for
// `writes` sequential PATCHes of one user on each path, and prints the syncs (fsync and
// fdatasync) per write by the file they went to: the coordinator's SQLite, the runtime's alarm
// metadata, the Cache API's store, D1. Two cases: nothing cached, and a cached list page that
// shows the user (each write then patches it in place and queues its fallback refill).
// Counts, not times: strace slows what it traces. Loopback only; about a minute.
//
//   node bench/commits.mjs [writes] [root]

import { execFileSync, spawn, spawnSync } from "node:child_process";
import { cpSync, createWriteStream, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { client, closeClients, expectStatus } from "./lib/http.mjs";
import { sleep, table } from "./lib/util.mjs";
import { startMiniflare } from "./lib/worker.mjs";

const HERE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const [writes = "50", root = HERE] = process.argv.slice(2);
const N = Number(writes);
const WRITE_KEY = "eck_commits_0123456789abcdef0123456789";
const DIRECT = "/_edgecache/test/origin";

if (spawnSync("strace", ["-V"]).status !== 0) {
  console.error("bench/commits.mjs needs strace (apt-get install strace)");
  process.exit(2);
}

/** Which store a synced file belongs to, from its path under the worker's state directory. */
function store(file) {
  if (file.includes("D1DatabaseObject")) return "D1";
  if (file.includes("CacheObject")) return "Cache API";
  if (file.includes("/metadata.sqlite")) return "alarm metadata";
  if (file.includes("TableCoordinator")) return "coordinator";
  if (file.includes("TenantRegistry")) return "registry";
  return path.basename(file);
}

/** Syncs by store while `send(i)` runs `N` times (after 5 unmeasured), traced in `pids`. */
async function syncsDuring(pids, label, send) {
  for (let i = 0; i < 5; i++) await send(i);
  const out = path.join(os.tmpdir(), `edgecache-commits-${process.pid}-${label}.strace`);
  const args = ["-f", "-y", "-o", out, "-e", "trace=fsync,fdatasync", ...pids.flatMap((p) => ["-p", String(p)])];
  const tracer = spawn("strace", args, { stdio: "ignore" });
  await sleep(1500); // attached to every thread
  for (let i = 0; i < N; i++) await send(i);
  await sleep(500); // what the writes left to run after their answers (patches, refills)
  tracer.kill("SIGINT");
  await new Promise((r) => tracer.on("exit", r));
  const counts = new Map();
  for (const line of readFileSync(out, "utf8").split("\n")) {
    const file = /^\d+\s+f(?:data)?sync\(\d+<([^>]+)>/.exec(line)?.[1];
    if (file) counts.set(store(file), (counts.get(store(file)) ?? 0) + 1);
  }
  rmSync(out, { force: true });
  return counts;
}

const template = execFileSync("bash", [path.join(HERE, "scripts/prepare-state.sh")], { encoding: "utf8" }).trim();
const state = mkdtempSync(path.join(os.tmpdir(), "edgecache-commits-"));
cpSync(template, state, { recursive: true });
const w = await startMiniflare({
  root: path.resolve(root),
  state,
  vars: { EDGECACHE_TEST_HOOKS: "1", EDGECACHE_WRITE_KEY: WRITE_KEY },
  log: createWriteStream(path.join(state, "worker.log")),
});
try {
  const pids = execFileSync("pgrep", ["-P", String(process.pid), "workerd"], { encoding: "utf8" }).trim().split("\n").map(Number);
  const http = client(w.url, { "x-edgecache-key": WRITE_KEY });
  const users = expectStatus(await http.get(`${DIRECT}/v1/users?limit=20`), 200, "users").json().data;
  const patch = (prefix, id) => (i) =>
    http.patch(`${prefix}/v1/users/${encodeURIComponent(id)}`, { json: { age: 20 + (i % 50) } }).then((a) => expectStatus(a, 200, "PATCH"));
  const cases = [
    // Nothing cached: the write's own commits.
    ["nothing cached", users[3].id, async () => {}],
    // A cached page showing the user (read through the cache once): the write patches it.
    ["a cached page shows the row", users[5].id, async () => expectStatus(await http.get("/v1/users?limit=20"), 200, "the page")],
  ];
  const stores = ["coordinator", "alarm metadata", "Cache API", "D1"];
  const rows = [["writes", "path", ...stores, "other", "all"]];
  for (const [what, id, setUp] of cases) {
    await setUp();
    for (const [side, prefix] of [["through EdgeCache", ""], ["straight to D1", DIRECT]]) {
      const counts = await syncsDuring(pids, `${side}-${what}`.replace(/\W+/g, "-"), patch(prefix, id));
      const per = (n) => (n / N).toFixed(2);
      const known = stores.map((s) => counts.get(s) ?? 0);
      const all = [...counts.values()].reduce((a, b) => a + b, 0);
      rows.push([what, side, ...known.map(per), per(all - known.reduce((a, b) => a + b, 0)), per(all)]);
    }
  }
  console.log(`Durable syncs per write (fsync + fdatasync, strace, ${N} sequential PATCHes each):`);
  console.log(table(rows));
} finally {
  closeClients();
  await w.stop();
  rmSync(state, { recursive: true, force: true });
}
