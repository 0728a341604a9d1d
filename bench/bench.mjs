// EdgeCache benchmark: starts the built worker twice (a read worker and a write worker, each on a
// fresh copy of the seeded D1 state), measures the read and write tables, prints them and writes
// them to target/bench/latest.txt. Started by bench/run.sh, which builds the worker and prepares
// the state first. Figures are reported against their targets; a missed target never fails the run.

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, createWriteStream, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { client, closeClients, expectStatus } from "./lib/http.mjs";
import { pickLoadGenerator } from "./lib/load.mjs";
import { startMiniflare, startWrangler } from "./lib/worker.mjs";
import { learnTable } from "./learn.mjs";
import { overheadTable } from "./overheads.mjs";
import { boundedWriteTable, precisionTable } from "./precision.mjs";
import { readTable } from "./reads.mjs";
import { soakTable } from "./soak.mjs";
import { fanOutTable, writersTable, writeTable } from "./writes.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const OUT_DIR = path.join(ROOT, "target/bench");
const template = process.env.BENCH_STATE_TEMPLATE;
if (!template) {
  console.error("bench.mjs: BENCH_STATE_TEMPLATE is not set; run `npm run bench` (bench/run.sh)");
  process.exit(2);
}

const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const threads = 2;
const connections = 16;
// auto: Miniflare, or wrangler dev if Miniflare does not start; miniflare / wrangler: only that.
const runtime = process.env.BENCH_RUNTIME ?? "auto";
// all, or one section: precision, writers or learn (the others share set-up and run together).
const only = process.env.BENCH_ONLY ?? "all";

// The operator token of this run's workers (stats and deps need it).
const OPERATOR_TOKEN = `eco_bench_${randomBytes(16).toString("hex")}`;
const admin = (w) => client(w.url, { authorization: `Bearer ${OPERATOR_TOKEN}` });
// The default tenant's write key of this run's workers: writes need one.
const WRITE_KEY = `eck_bench_${randomBytes(16).toString("hex")}`;
const writer = (w) => client(w.url, { "x-edgecache-key": WRITE_KEY });

const lines = [];
function out(line = "") {
  lines.push(line);
  console.log(line);
}

const started = [];
const stateDirs = [];
let stopping = null;
/** Stops every worker started and removes the state copies; repeated calls share one stop. */
function stopAll() {
  stopping ??= (async () => {
    closeClients();
    // Bounded: on a signal workerd (same process group) may be gone already and dispose hang.
    const stops = Promise.all(started.map((w) => w.stop().catch(() => {})));
    await Promise.race([stops, new Promise((r) => setTimeout(r, 3000))]);
    for (const d of stateDirs) rmSync(d, { recursive: true, force: true });
  })();
  return stopping;
}
// Miniflare exits the process itself on SIGINT/SIGTERM (after disposing of workerd), so the
// state copies are also removed on the way out, synchronously.
process.on("exit", () => {
  for (const d of stateDirs) rmSync(d, { recursive: true, force: true });
});
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => {
    console.error(`bench: ${sig}, stopping the workers`);
    stopAll().finally(() => process.exit(130));
  });
}

/** Starts a worker on a fresh copy of the seeded state, with the test hooks and `vars`. */
async function startWorker(name, vars) {
  const state = mkdtempSync(path.join(os.tmpdir(), `edgecache-bench-${name}-`));
  stateDirs.push(state);
  cpSync(template, state, { recursive: true });
  const logPath = path.join(OUT_DIR, `worker-${name}.log`);
  const allVars = {
    EDGECACHE_TEST_HOOKS: "1",
    EDGECACHE_OPERATOR_TOKEN: OPERATOR_TOKEN,
    EDGECACHE_WRITE_KEY: WRITE_KEY,
    ...vars,
  };
  let w;
  if (runtime === "wrangler") {
    w = await startWrangler({ root: ROOT, state, vars: allVars, logPath });
  } else {
    const log = createWriteStream(logPath);
    try {
      w = await startMiniflare({ root: ROOT, state, vars: allVars, log });
    } catch (e) {
      if (runtime === "miniflare") throw e;
      console.error(`bench: Miniflare did not start (${e.message}); falling back to wrangler dev`);
      w = await startWrangler({ root: ROOT, state, vars: allVars, logPath: logPath + ".wrangler" });
    }
  }
  started.push(w);
  return w;
}

async function stopWorker(w) {
  await w.stop();
  started.splice(started.indexOf(w), 1);
}

/**
 * What else used the CPU over the next `msecs`: { busy (share of all CPUs), top ("name 40%, ...") },
 * from /proc/<pid>/stat of every process but this one; null where /proc is not there.
 */
async function otherCpuUse(msecs) {
  const sample = () => {
    const times = new Map();
    for (const pid of readdirSync("/proc")) {
      if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        const close = stat.lastIndexOf(")");
        const fields = stat.slice(close + 2).split(" ");
        times.set(pid, { name: stat.slice(stat.indexOf("(") + 1, close), ticks: Number(fields[11]) + Number(fields[12]) });
      } catch {
        // the process ended in between
      }
    }
    return times;
  };
  try {
    const a = sample();
    await new Promise((r) => setTimeout(r, msecs));
    const b = sample();
    const capacity = (100 * os.cpus().length * msecs) / 1000; // USER_HZ is 100 on Linux
    const byName = new Map();
    for (const [pid, { name, ticks }] of b) {
      const used = ticks - (a.get(pid)?.ticks ?? 0);
      if (used > 0) byName.set(name, (byName.get(name) ?? 0) + used);
    }
    const busy = [...byName.values()].reduce((x, y) => x + y, 0) / capacity;
    const top = [...byName]
      .sort((x, y) => y[1] - x[1])
      .slice(0, 3)
      .map(([name, used]) => `${name} ${Math.round((100 * used) / capacity)}%`)
      .join(", ");
    return { busy, top };
  } catch {
    return null;
  }
}

function gitDescribe() {
  try {
    const rev = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT, encoding: "utf8", stdio: "pipe" });
    const dirty = execFileSync("git", ["status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"], {
      cwd: ROOT,
      encoding: "utf8",
      stdio: "pipe",
    });
    return `${rev.trim()}${dirty.trim() ? " + uncommitted changes" : ""}`;
  } catch {
    return "no commit yet";
  }
}

async function main() {
  mkdirSync(OUT_DIR, { recursive: true });
  const load = pickLoadGenerator();
  const loadParams = { threads, connections, seconds };
  const loadLabel =
    load.name === "wrk" ? `wrk -t${threads} -c${connections} -d${seconds}s` : `${load.name}, ${connections} connections, ${seconds} s`;

  const other = await otherCpuUse(1000);
  const t0 = Date.now();
  const reader = await startWorker("read", {
    EDGECACHE_RULES: JSON.stringify([{ pattern: "/v1/orders*", no_store: true }]),
  });
  out(`EdgeCache benchmark, ${new Date().toISOString()}`);
  const built = statSync(path.join(ROOT, "build/index.js")).mtime.toISOString();
  out(`  code:   ${gitDescribe()}; worker bundle build/index.js of ${built}`);
  out(
    `  host:   ${os.cpus().length} CPUs (${os.cpus()[0]?.model.trim() ?? "?"}), Node ${process.version}, loopback only; ` +
      (other === null
        ? "CPU use by other processes unknown"
        : `other processes used ${Math.round(100 * other.busy)}% of the CPUs in the second before the run` +
          (other.busy > 0.2 ? ` (${other.top}: figures may be low)` : "")),
  );
  out(`  worker: ${reader.path}`);
  out(`  load:   ${load.describe()}; ${loadLabel}, keep-alive, for each read row and for write throughput`);
  out(`  other:  sequential requests from Node (node:http, keep-alive) for write → read and fan-out`);
  out();

  // BENCH_ONLY=precision, learn, writers or reads (the read table and the overheads): only
  // that part (for before/after runs of a change).
  if (only === "precision") {
    await stopWorker(reader);
    await precisionSection();
    return finish(t0);
  }
  if (only === "reads") {
    await readsAndOverheads(reader, load, loadParams);
    await stopWorker(reader);
    return finish(t0);
  }
  if (only === "learn") {
    await stopWorker(reader);
    await learnSection();
    return finish(t0);
  }
  if (only === "writers") {
    const ids = expectStatus(await client(reader.url).get("/v1/users?limit=1000"), 200, "GET /v1/users")
      .json()
      .data.map((u) => u.id);
    await stopWorker(reader);
    // A fresh worker, as in the full run: nothing cached, so writes refill nothing.
    const writes = await startWorker("write", {});
    await writersTable({ out, seconds, http: writer(writes), admin: admin(writes) }, ids);
    await stopWorker(writes);
    return finish(t0);
  }
  const ids = await readsAndOverheads(reader, load, loadParams);
  await stopWorker(reader);

  const settings = {
    load,
    loadParams,
    loadLabel,
    out,
    writeReadIterations: Number(process.env.BENCH_WRITE_READS ?? 200),
    fanOutTotal: 100_000,
    fanOutRepetitions: 3,
    writeKey: WRITE_KEY,
  };
  const writes = await startWorker("write", {});
  if (writes.path !== reader.path) out(`(the write worker runs differently: ${writes.path})\n`);
  await writeTable({ ...settings, http: writer(writes), admin: admin(writes) }, ids);
  await writersTable({ ...settings, seconds, http: writer(writes), admin: admin(writes) }, ids);
  await stopWorker(writes);

  const fan = await startWorker("fanout", {});
  if (fan.path !== reader.path) out(`(the fan-out worker runs differently: ${fan.path})\n`);
  await fanOutTable({ ...settings, http: writer(fan), admin: admin(fan), coordinatorStats: fan.coordinatorStats }, ids);
  await stopWorker(fan);

  const webhookSecret = `ecw_bench_${randomBytes(16).toString("hex")}`;
  const soak = await startWorker("soak", { EDGECACHE_WEBHOOK_SECRET: webhookSecret });
  await soakTable({
    http: writer(soak),
    anon: client(soak.url),
    admin: admin(soak),
    ids,
    webhookSecret,
    logPath: soak.logPath ?? path.join(OUT_DIR, "worker-soak.log"),
    out,
    total: Number(process.env.BENCH_SOAK_REQUESTS ?? 100_000),
  });
  await stopWorker(soak);

  await precisionSection();
  await learnSection();
  finish(t0);
}

/** The read table and the overheads on the read worker; answers the seeded users' ids. */
async function readsAndOverheads(reader, load, loadParams) {
  await readTable({ http: client(reader.url), admin: admin(reader), load, loadParams, out });
  const ids = expectStatus(await client(reader.url).get("/v1/users?limit=1000"), 200, "GET /v1/users?limit=1000")
    .json()
    .data.map((u) => u.id);
  const pairs = Number(process.env.BENCH_OVERHEAD_PAIRS ?? 200);
  await overheadTable({ http: client(reader.url), writer: writer(reader), ids, pairs, out });
  return ids;
}

/** The learning table, on a worker of its own with an HTTP tenant over bench/lib/shop.mjs. */
async function learnSection() {
  const w = await startWorker("learn", {});
  await learnTable({
    http: client(w.url),
    admin: admin(w),
    out,
    writes: Number(process.env.BENCH_LEARN_WRITES ?? 100),
    seed: 0x5eed,
  });
  await stopWorker(w);
}

/** The precision table, on a worker of its own (cached routes rehydrate, so write-through and
 * patched pages count); then the write cost with many cached pages, on another. */
async function precisionSection() {
  const w = await startWorker("precision", {});
  await precisionTable({
    http: writer(w),
    anon: client(w.url),
    admin: admin(w),
    out,
    writes: Number(process.env.BENCH_PRECISION_WRITES ?? 60),
    seed: 0x9e3779b9,
  });
  await stopWorker(w);
  const bounded = await startWorker("bounded", {});
  await boundedWriteTable({
    http: writer(bounded),
    admin: admin(bounded),
    coordinatorStats: bounded.coordinatorStats,
    out,
    reps: Number(process.env.BENCH_BOUNDED_REPS ?? 15),
  });
  await stopWorker(bounded);
}

function finish(t0) {
  out(`Took ${((Date.now() - t0) / 1000).toFixed(0)} s. Worker logs: target/bench/worker-*.log`);
  writeFileSync(path.join(OUT_DIR, "latest.txt"), lines.join("\n") + "\n");
  console.log("Written to target/bench/latest.txt");
}

try {
  await main();
  await stopAll();
} catch (e) {
  console.error(`bench: ${e.stack ?? e}`);
  if (lines.length) writeFileSync(path.join(OUT_DIR, "latest.txt"), lines.join("\n") + `\n\nFAILED: ${e.message}\n`);
  await stopAll();
  process.exit(1);
}
