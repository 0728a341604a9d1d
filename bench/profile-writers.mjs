// Where concurrent writers' time goes: starts one build with workerd's V8 inspector open, runs
// `writers` closed-loop PATCH writers on the users table (as `writersTable` in writes.mjs does)
// and records a V8 CPU profile of the project's isolate (edge and coordinator share it locally)
// and of Miniflare's D1 isolate meanwhile. Prints the client's p50/p99, each isolate's busy
// share and top functions, and the longest busy stretches of the project's isolate with the
// EdgeCache functions they were spent in: a stall every writer waits behind shows up there.
// Then what that isolate did while the slowest 1 % of writes were in flight, against the median
// ones (garbage collection, the native work after it, code, idle).
//
//   node bench/profile-writers.mjs [writers] [seconds] [root]
//
// Also prints the CPU time workerd spent per write (from /proc, Linux), the measure to compare
// builds by on a shared box.

import { execFileSync } from "node:child_process";
import { cpSync, createWriteStream, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { client, closeClients } from "./lib/http.mjs";
import { inspectorTargets, session } from "./lib/inspector.mjs";
import { closedLoop } from "./lib/loop.mjs";
import { percentile } from "./lib/util.mjs";
import { freePort, startMiniflare } from "./lib/worker.mjs";

const HERE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const [writers = "16", seconds = "6", root = HERE] = process.argv.slice(2);
const WRITE_KEY = "eck_profile_writers_0123456789abcdef";

/** Per sample: time (ms from the profile's start), node, and the frames of its stack. */
function timeline(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  let t = 0;
  return profile.samples.map((nodeId, i) => {
    t += (profile.timeDeltas[i] ?? 0) / 1000;
    const stack = [];
    for (let id = nodeId; id !== undefined; id = parent.get(id)) stack.push(byId.get(id).callFrame.functionName || "(anonymous)");
    return { t, dt: (profile.timeDeltas[i + 1] ?? 0) / 1000, stack };
  });
}

const own = (fn) => /^(edgecache(_core)?::[^<]*?)(::h[0-9a-f]{16})?$/.exec(fn)?.[1];

function report(name, profile, requests) {
  const samples = timeline(profile);
  const total = samples.reduce((a, s) => a + s.dt, 0);
  const idle = samples.filter((s) => s.stack[0] === "(idle)").reduce((a, s) => a + s.dt, 0);
  console.log(`\n${name}: ${total.toFixed(0)} ms sampled, busy ${(100 * (1 - idle / total)).toFixed(1)} %, ${((1000 * (total - idle)) / requests).toFixed(0)} µs busy per write`);
  const self = new Map();
  const incl = new Map();
  for (const s of samples) {
    if (s.stack[0] === "(idle)") continue;
    self.set(s.stack[0], (self.get(s.stack[0]) ?? 0) + s.dt);
    for (const fn of new Set(s.stack.map(own).filter(Boolean))) incl.set(fn, (incl.get(fn) ?? 0) + s.dt);
  }
  const top = (m, n) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n);
  console.log("  self, top:");
  for (const [k, v] of top(self, 15)) console.log(`  ${((1000 * v) / requests).toFixed(1).padStart(7)} µs/write  ${k}`);
  console.log("  inclusive, EdgeCache's own:");
  for (const [k, v] of top(incl, 30)) console.log(`  ${((1000 * v) / requests).toFixed(1).padStart(7)} µs/write  ${k}`);
  // Busy stretches: consecutive non-idle samples.
  const stretches = [];
  let cur = null;
  for (const s of samples) {
    if (s.stack[0] === "(idle)") {
      if (cur) stretches.push(cur);
      cur = null;
      continue;
    }
    cur ??= { start: s.t, ms: 0, fns: new Map() };
    cur.ms += s.dt;
    const fns = new Set(s.stack.map(own).filter(Boolean));
    if (s.stack[0].startsWith("(")) fns.add(s.stack[0]);
    for (const fn of fns) cur.fns.set(fn, (cur.fns.get(fn) ?? 0) + s.dt);
  }
  if (cur) stretches.push(cur);
  const lengths = stretches.map((s) => s.ms);
  const idles = [];
  for (let i = 1; i < stretches.length; i++) idles.push(stretches[i].start - (stretches[i - 1].start + stretches[i - 1].ms));
  console.log(
    `  busy stretches: ${stretches.length}, p50 ${percentile(lengths, 50).toFixed(2)} ms, p99 ${percentile(lengths, 99).toFixed(1)} ms, ` +
      `max ${Math.max(...lengths).toFixed(1)} ms; idle gaps p50 ${percentile(idles, 50).toFixed(2)}, p99 ${percentile(idles, 99).toFixed(1)}, max ${Math.max(...idles).toFixed(1)} ms`,
  );
  for (const s of [...stretches].sort((a, b) => b.ms - a.ms).slice(0, 6)) {
    const fns = top(s.fns, 8).map(([k, v]) => `${k.replace(/^edgecache(_core)?::/, "")} ${v.toFixed(1)}`).join(", ");
    console.log(`  at ${s.start.toFixed(0)} ms: ${s.ms.toFixed(1)} ms busy: ${fns}`);
  }
}

/**
 * What the project's isolate did while the slowest 1 % of writes were in flight, against the
 * median ones: its garbage collector, the native work around it ("(program)": mostly sweeping
 * what a major collection freed), its own JavaScript and Wasm, and idle (waiting on the
 * database's isolate or on sockets). The profile's sample times and the writes' spans are both
 * µs of the host's monotonic clock, so they line up.
 */
function slowestAgainstProfile(profile, spans) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const samples = [];
  let t = profile.startTime;
  profile.samples.forEach((nodeId, i) => {
    t += profile.timeDeltas[i] ?? 0;
    samples.push({ t, dt: profile.timeDeltas[i + 1] ?? 0, fn: byId.get(nodeId).callFrame.functionName });
  });
  const kind = (fn) => (fn === "(garbage collector)" ? "gc" : fn === "(program)" ? "program" : fn === "(idle)" ? "idle" : "code");
  const during = ([from, to]) => {
    const spent = { gc: 0, program: 0, idle: 0, code: 0 };
    // Samples are in time order: find the first inside the span by bisection.
    let lo = 0;
    for (let hi = samples.length; lo < hi; ) {
      const mid = (lo + hi) >> 1;
      if (samples[mid].t < from) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < samples.length && samples[i].t <= to; i++) spent[kind(samples[i].fn)] += samples[i].dt / 1000;
    return spent;
  };
  const inProfile = spans.filter(([from, to]) => from >= profile.startTime && to <= profile.endTime);
  const byLength = [...inProfile].sort((a, b) => b[1] - b[0] - (a[1] - a[0]));
  const n = Math.max(1, Math.floor(byLength.length / 100));
  const mid = Math.floor(byLength.length / 2);
  const describe = (set) => {
    const sum = { gc: 0, program: 0, idle: 0, code: 0, ms: 0 };
    let withGc = 0;
    for (const span of set) {
      const spent = during(span);
      for (const k of ["gc", "program", "idle", "code"]) sum[k] += spent[k];
      sum.ms += (span[1] - span[0]) / 1000;
      if (spent.gc >= 3) withGc++;
    }
    const avg = (k) => (sum[k] / set.length).toFixed(1);
    return `${avg("ms")} ms: GC ${avg("gc")}, (program) ${avg("program")}, code ${avg("code")}, idle ${avg("idle")}; ${withGc} of ${set.length} with 3 ms of GC or more`;
  };
  console.log("  the isolate while writes were in flight (means per write, ms):");
  console.log(`    slowest 1 % (${n}): ${describe(byLength.slice(0, n))}`);
  console.log(`    the ${n} around the median: ${describe(byLength.slice(Math.max(0, mid - (n >> 1)), mid - (n >> 1) + n))}`);
}

/**
 * CPU time (ms) so far of each thread of this process's children (workerd, which Miniflare
 * starts), by thread id, from /proc: unlike the profiles' busy shares, which count wall time
 * (every isolate runs on workerd's one main thread, and this box's other load preempts it), CPU
 * time is what the work costs whatever else runs.
 */
function childThreadsCpu() {
  const cpu = new Map();
  const children = execFileSync("pgrep", ["-P", String(process.pid)], { encoding: "utf8" }).trim().split("\n");
  for (const pid of children) {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
      // utime and stime, in clock ticks of 10 ms.
      cpu.set(`${name} ${tid}`, (Number(fields[11]) + Number(fields[12])) * 10);
    }
  }
  return cpu;
}

/** Where writes spent their time inside the coordinator, as it recorded it (GET /timings). */
function timings(all) {
  const spans = [
    ["the edge sent it → it reached the object (the hop)", (t) => t.arrived_ms - t.sent_ms],
    ["arrived → its group started (waiting for earlier groups)", (t) => t.taken_ms - t.arrived_ms],
    ["group started → D1 batch answered", (t) => t.forwarded_ms - t.taken_ms],
    ["D1 answered → group recorded and answered", (t) => t.answered_ms - t.forwarded_ms],
    ["answered → the writer's turn, answer sent", (t) => t.responded_ms - t.answered_ms],
    ["in the coordinator in all", (t) => t.responded_ms - t.arrived_ms],
  ];
  console.log(`coordinator-side, ${all.length} writes (ms, the runtime's clock):`);
  for (const [what, f] of spans) {
    const xs = all.map(f);
    console.log(`  ${what.padEnd(58)} p50 ${percentile(xs, 50).toFixed(1).padStart(6)}  p99 ${percentile(xs, 99).toFixed(1).padStart(6)}  max ${Math.max(...xs).toFixed(0).padStart(5)}`);
  }
  const groups = all.map((t) => t.group);
  console.log(`  group size: p50 ${percentile(groups, 50)}, p99 ${percentile(groups, 99)}, max ${Math.max(...groups)}`);
  // The slowest 1 %: where their time went, on average.
  const slow = [...all].sort((a, b) => b.responded_ms - b.arrived_ms - (a.responded_ms - a.arrived_ms)).slice(0, Math.max(1, Math.floor(all.length / 100)));
  const avg = (f) => (slow.reduce((a, t) => a + f(t), 0) / slow.length).toFixed(1);
  console.log(`  slowest 1 % (${slow.length}): ${spans.map(([what, f]) => `${what.split(" (")[0]} ${avg(f)}`).join("; ")}; mean group ${avg((t) => t.group)}`);
}

const template =
  process.env.BENCH_STATE_TEMPLATE ??
  execFileSync("bash", [path.join(HERE, "scripts/prepare-state.sh")], { encoding: "utf8" }).trim();
const state = mkdtempSync(path.join(os.tmpdir(), "edgecache-profile-writers-"));
cpSync(template, state, { recursive: true });
const inspectorPort = await freePort();
const w = await startMiniflare({
  root: path.resolve(root),
  state,
  vars: { EDGECACHE_TEST_HOOKS: "1", EDGECACHE_WRITE_KEY: WRITE_KEY },
  log: createWriteStream(path.join(state, "worker.log")),
  inspectorPort,
});
mkdirSync(path.join(HERE, "target/bench"), { recursive: true });
try {
  const http = client(w.url, { "x-edgecache-key": WRITE_KEY });
  // Through the test hooks' origin route: a page of every user cached here would be patched by every write.
  const ids = (await http.get("/_edgecache/test/origin/v1/users?limit=1000")).json().data.map((u) => u.id).slice(1, 65);
  const all = await inspectorTargets(inspectorPort);
  const sessions = [];
  for (const t of all) {
    if (t.id.startsWith("core:user:") || /d1/i.test(t.id)) sessions.push(await session(t, root));
  }
  console.log(`profiling ${sessions.map((s) => s.id).join(", ")}`);
  const write = (c, i) => http.patch(`/v1/users/${encodeURIComponent(ids[(c + i * Number(writers)) % ids.length])}`, { json: { age: 20 + (i % 50) } });
  const loop = async (secs) => {
    const run = await closedLoop(Number(writers), secs, write);
    if (run.failed) throw new Error(`${run.failed} PATCHes failed`);
    return run;
  };
  await loop(2); // warm-up, not profiled
  // The coordinator's own timings, where the build keeps them (forget the warm-up's).
  const hasTimings = await w.coordinatorGet("d1:users", "/timings").then(() => true, () => false);
  for (const s of sessions) {
    await s.send("Profiler.enable");
    await s.send("Profiler.setSamplingInterval", { interval: 100 });
    await s.send("Profiler.start");
  }
  const cpuBefore = childThreadsCpu();
  const run = await loop(Number(seconds));
  const { latencies } = run;
  const cpuAfter = childThreadsCpu();
  const profiles = [];
  for (const s of sessions) profiles.push({ id: s.id, profile: (await s.send("Profiler.stop")).profile });
  console.log(
    `${writers} writers, ${seconds} s: ${latencies.length} writes, ${(latencies.length / Number(seconds)).toFixed(0)}/s, ` +
      `p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms, max ${Math.max(...latencies).toFixed(0)} ms`,
  );
  if (run.inWorker.length === latencies.length) {
    const p = (xs) => `p50 ${percentile(xs, 50).toFixed(1)}, p99 ${percentile(xs, 99).toFixed(1)}, max ${Math.max(...xs).toFixed(0)} ms`;
    console.log(`  in the worker (the edge's own clock): the whole write ${p(run.inWorker)}; its call to the coordinator ${p(run.callMs)}`);
    console.log(`  sent → the edge's handler started (host clock): ${p(run.unread)}`);
  }
  const threads = [...cpuAfter].map(([t, ms]) => [t, ms - (cpuBefore.get(t) ?? 0)]).filter(([, ms]) => ms > 0);
  const cpuTotal = threads.reduce((a, [, ms]) => a + ms, 0);
  console.log(
    `workerd CPU: ${((1000 * cpuTotal) / latencies.length).toFixed(0)} µs per write ` +
      `(${threads.sort((a, b) => b[1] - a[1]).map(([t, ms]) => `${t.split(" ")[0]} ${((1000 * ms) / latencies.length).toFixed(0)}`).join(", ")})`,
  );
  if (hasTimings) timings(await w.coordinatorGet("d1:users", "/timings"));
  for (const s of sessions) {
    // The JS heap each isolate holds after the run: what a major garbage collection walks.
    const heap = await s.send("Runtime.getHeapUsage").catch(() => null);
    if (heap) console.log(`${s.id}: JS heap ${(heap.usedSize / 1e6).toFixed(1)} MB used of ${(heap.totalSize / 1e6).toFixed(1)} MB`);
  }
  for (const { id, profile } of profiles) {
    writeFileSync(path.join(HERE, `target/bench/profile-writers-${id.replace(/[^a-z0-9]+/gi, "_")}.cpuprofile`), JSON.stringify(profile));
    report(id, profile, latencies.length);
    if (id.startsWith("core:user:")) slowestAgainstProfile(profile, run.spans);
  }
  for (const s of sessions) s.close();
} finally {
  closeClients();
  await w.stop();
  rmSync(state, { recursive: true, force: true });
}
