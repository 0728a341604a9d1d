// The write table, on the users table of the default tenant: write → fresh-read latency, write
// throughput, and invalidation fan-out (PATCH latency as a function of the keys a record is in,
// with 100,000 keys registered in all).

import { expectStatus } from "./lib/http.mjs";
import { closedLoop } from "./lib/loop.mjs";
import { int, median, ms, percentile, ratio, table } from "./lib/util.mjs";

const TENANT = "local";
const TABLE = "users";
const BATCH = 500;

/** PATCHes a user, records the table's new seq in ctx.seq, and returns { ms, token, answer }. */
export async function patch(ctx, id, age) {
  const path = `/v1/users/${encodeURIComponent(id)}`;
  const t0 = performance.now();
  const a = await ctx.http.patch(path, { json: { age } });
  const elapsed = performance.now() - t0;
  expectStatus(a, 200, `PATCH ${path}`);
  const token = a.headers["x-edgecache-seq"];
  const m = /^users=(\d+)$/.exec(token ?? "");
  if (!m) throw new Error(`PATCH ${path}: x-edgecache-seq is ${JSON.stringify(token)}, not users=<n>`);
  ctx.seq = Number(m[1]);
  return { ms: elapsed, token, answer: a };
}

/** How many keys the coordinator lists for a record. */
async function keysOf(ctx, id) {
  const a = expectStatus(
    await ctx.admin.get(`/_edgecache/deps?record=${encodeURIComponent(`${TABLE}:${id}`)}`),
    200,
    `GET /_edgecache/deps?record=${TABLE}:${id}`,
  );
  return a.json().keys.length;
}

/**
 * The coordinator's count of registered keys: from /_edgecache/stats where it reports the
 * coordinators, else asked directly through Miniflare, else unknown (null).
 */
export async function totalKeys(ctx) {
  const a = await ctx.admin.get("/_edgecache/stats");
  const keys = a.status === 200 ? a.json().coordinators?.[TABLE]?.keys : undefined;
  if (typeof keys === "number") return keys;
  if (!ctx.coordinatorStats) return null;
  return (await ctx.coordinatorStats(TENANT, TABLE)).keys;
}

/** Registrations of record `id` under keys `local:/v1/users/<id>?<tag>=<j>`, j = from..from+count-1. */
function entriesFor(id, count, tag = "b", from = 0) {
  return Array.from({ length: count }, (_, i) => {
    const route = `/v1/users/${id}?${tag}=${from + i}`;
    return {
      key: `${TENANT}:${route}`,
      dependent: { kind: "record" },
      records: [id],
      tables: [TABLE],
      route,
      rehydrate: false,
      ttl_secs: 86_400, // required since the tenants commit; ignored by builds before it
    };
  });
}

/** Registers entries in batches of ≤ 500, stamped with the table's current seq. */
export async function register(ctx, entries) {
  let rejected = 0;
  for (let i = 0; i < entries.length; i += BATCH) {
    const batch = entries.slice(i, i + BATCH).map((e) => ({ ...e, stamp: ctx.seq }));
    const a = expectStatus(
      await ctx.http.post("/_edgecache/test/register", { json: { table: TABLE, entries: batch } }),
      200,
      "POST /_edgecache/test/register",
    ).json();
    rejected += a.accepted.filter((ok) => !ok).length;
    ctx.seq = a.seq;
  }
  if (rejected) throw new Error(`the coordinator refused ${rejected} of ${entries.length} registrations`);
}

/** Checks a set-up figure; a mismatch is reported beside the results, never fatal. */
function check(ctx, what, actual, expected) {
  if (actual !== null && actual !== expected) ctx.anomalies.push(`${what}: expected ${int(expected)}, found ${int(actual)}`);
}

/** Registers `n` keys on `target`, times one PATCH of it, and checks they are gone after it. */
async function fanOutOnce(ctx, target, n, expectTotal) {
  await register(ctx, entriesFor(target, n));
  check(ctx, `keys of ${target} before its PATCH`, await keysOf(ctx, target), n);
  check(ctx, `keys registered in all before PATCH ${target}`, await totalKeys(ctx), expectTotal);
  // An age no seeded user has: a write that left the row as it was would invalidate nothing.
  const { ms: took } = await patch(ctx, target, 100 + (n % 50));
  check(ctx, `keys of ${target} after its PATCH`, await keysOf(ctx, target), 0);
  return took;
}

/** Sends `n` PATCHes to warm the coordinator and D1 (a cold coordinator also migrates its storage). */
async function warmUp(ctx, id, n = 5) {
  for (let i = 0; i < n; i++) await patch(ctx, id, 30 + i);
}

/** Write → fresh-read latency and write throughput. */
export async function writeTable(ctx, ids) {
  const { http, out } = ctx;
  const home = "123-abc";
  const throughputIds = ids.filter((id) => id !== home).slice(0, 100);
  await warmUp(ctx, home);

  const iterations = ctx.writeReadIterations;
  const totals = [];
  const writes = [];
  const reads = [];
  const outcomes = {};
  let fresh = 0;
  await http.get(`/v1/users/${home}`);
  for (let i = 0; i < iterations; i++) {
    const age = 20 + (i % 60);
    const t0 = performance.now();
    const w = await patch(ctx, home, age);
    const t1 = performance.now();
    const r = await http.get(`/v1/users/${home}`, { headers: { "x-edgecache-min-seq": w.token } });
    const t2 = performance.now();
    expectStatus(r, 200, `GET /v1/users/${home} after a write`);
    totals.push(t2 - t0);
    writes.push(t1 - t0);
    reads.push(t2 - t1);
    const o = r.headers["x-edgecache"] ?? "(none)";
    outcomes[o] = (outcomes[o] ?? 0) + 1;
    if (r.json().data?.age === age) fresh++;
  }

  const tp = await ctx.load.run({
    url: http.base + `/v1/users/${throughputIds[0]}`,
    ...ctx.loadParams,
    method: "PATCH",
    body: JSON.stringify({ age: 40 }),
    header: `x-edgecache-key: ${ctx.writeKey}`,
    paths: throughputIds.map((id) => `/v1/users/${id}`),
  });

  out("Writes (users table: edge → TableCoordinator Durable Object → D1)");
  const wr = [["measure", "how", "result"]];
  wr.push([
    "write → fresh read",
    `PATCH then GET with x-edgecache-min-seq, sequential, ${iterations}×`,
    `p50 ${ms(percentile(totals, 50))}, p99 ${ms(percentile(totals, 99))}`,
  ]);
  wr.push([
    "",
    "  of which PATCH / GET",
    `p50 ${ms(percentile(writes, 50))} / ${ms(percentile(reads, 50))}, ` +
      `p99 ${ms(percentile(writes, 99))} / ${ms(percentile(reads, 99))}`,
  ]);
  wr.push([
    "",
    "  reads that saw their write",
    `${fresh}/${iterations} (x-edgecache: ${Object.entries(outcomes)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")})`,
  ]);
  wr.push([
    "write throughput",
    `PATCH over ${ctx.load.rotates ? throughputIds.length : 1} record(s), ${ctx.loadLabel}`,
    `${int(tp.rps)} writes/s, p50 ${ms(tp.p50_ms)}, p99 ${ms(tp.p99_ms)}` +
      (tp.failed ? `, ${int(tp.failed)} failed!` : ", 0 failed"),
  ]);
  out(table(wr));
  out();
  return { totals, tp };
}

/** The users coordinator's (writes, commits) counters; commits is null before group commit. */
async function commitCounters(ctx) {
  const a = expectStatus(await ctx.admin.get("/_edgecache/stats"), 200, "GET /_edgecache/stats");
  const c = a.json().coordinators?.[TABLE] ?? {};
  return { writes: c.writes ?? 0, commits: c.commits ?? null };
}

/**
 * Concurrent writers on one table: for 1, 4 and 16 closed-loop writers (Node, keep-alive, each
 * PATCHing its own records in turn), writes/s and per-write latency p50/p99 over `seconds`, and
 * the mean group the coordinator committed them in (writes / commits, from its stats).
 */
export async function writersTable(ctx, ids) {
  const { http, out } = ctx;
  const records = ids.filter((id) => id !== "123-abc").slice(0, 64);
  const rows = [["writers", "writes/s", "p50", "p99", "p99 / p50", "in the worker p50 / p99 (ratio)", "before the handler p99", "mean group", "no-op p50 / p99 (ratio)"]];
  const results = [];
  for (const writers of [1, 4, 16]) {
    const before = await commitCounters(ctx);
    const write = (w, i) => {
      const id = records[(w + i * writers) % records.length];
      return http.patch(`/v1/users/${encodeURIComponent(id)}`, { json: { age: 20 + (i % 50) } });
    };
    const writes = await closedLoop(writers, ctx.seconds, write);
    const after = await commitCounters(ctx);
    // The same clients and concurrency on the no-op route: the tail the runtime and this box
    // add whatever the request does.
    const noop = await closedLoop(writers, Math.min(ctx.seconds, 3), () => http.get("/_edgecache/health"));
    const commits = after.commits === null ? null : after.commits - before.commits;
    const [p50, p99] = [percentile(writes.latencies, 50), percentile(writes.latencies, 99)];
    const [n50, n99] = [percentile(noop.latencies, 50), percentile(noop.latencies, 99)];
    results.push({ writers, rps: writes.rps, p50, p99 });
    rows.push([
      String(writers),
      `${int(writes.rps)}${writes.failed ? ` (${writes.failed} failed!)` : ""}`,
      ms(p50),
      ms(p99),
      ratio(p99 / p50),
      writes.inWorker.length === writes.latencies.length
        ? (([w50, w99]) => `${ms(w50)} / ${ms(w99)} (${ratio(w99 / Math.max(w50, 1))})`)([percentile(writes.inWorker, 50), percentile(writes.inWorker, 99)])
        : "n/a",
      writes.unread.length === writes.latencies.length ? ms(percentile(writes.unread, 99)) : "n/a",
      commits ? ((after.writes - before.writes) / commits).toFixed(1) : "n/a (no group commit)",
      `${ms(n50)} / ${ms(n99)} (${ratio(n99 / n50)})`,
    ]);
  }
  out(`Concurrent writers on one table (PATCH users, closed loop from Node, ${ctx.seconds} s each)`);
  out(table(rows));
  out("  targets: writes/s grows with writers; p99 ≤ 5× p50");
  out("  in the worker: from the edge's write handler starting to its answer, by the runtime's clock (whole ms); before the handler: from the client sending the write to the handler starting (host clock, both sides)");
  out();
  return results;
}

/**
 * Invalidation fan-out, on a worker nothing else has used (so "10 in all" is exact): one PATCH's
 * latency with 10 keys registered in all, then with `ctx.fanOutTotal` registered in all and the
 * written record in 10,000, 1,000 and 10 of them. Sizes go in decreasing order so the total is
 * kept exact by only adding pad keys (on a record never written): no extra invalidation runs
 * between the measured ones.
 */
export async function fanOutTable(ctx, ids) {
  const { out } = ctx;
  ctx.anomalies = [];
  const home = "123-abc";
  const others = ids.filter((id) => id !== home);
  const reps = ctx.fanOutRepetitions;
  const sizes = [10_000, 1_000, 10];
  const MAX_N = sizes[0];
  const TOTAL = ctx.fanOutTotal;
  let next = 0;
  const take = (n) => others.slice(next, (next += n));
  const baselineIds = take(reps);
  const targetIds = new Map(sizes.map((n) => [n, take(reps)]));
  const padId = take(1)[0];
  const warmId = take(1)[0];
  const fillerIds = take(others.length - next);
  // Warm the whole path a measured PATCH takes (register, write, invalidate), not just the write:
  // the first invalidations of a fresh worker run cold code and would inflate the baseline.
  await warmUp(ctx, home, 5);
  for (let i = 0; i < 20; i++) {
    await register(ctx, entriesFor(warmId, 10, "warm", 10 * i));
    await patch(ctx, warmId, 30 + i);
  }
  const initial = await totalKeys(ctx);
  ctx.totalsChecked = initial !== null;
  check(ctx, "keys registered in all after the warm-up", initial, 0);

  const baseline = [];
  for (const id of baselineIds) baseline.push(await fanOutOnce(ctx, id, 10, 10));

  // The filler: TOTAL − MAX_N keys spread over the other records, one registration each per round.
  const base = TOTAL - MAX_N;
  const filler = [];
  for (let j = 0; filler.length < base; j++) {
    for (const id of fillerIds) {
      if (filler.length === base) break;
      filler.push(...entriesFor(id, 1, "fill", j));
    }
  }
  const t0 = performance.now();
  await register(ctx, filler);
  const fillSecs = (performance.now() - t0) / 1000;
  check(ctx, "keys registered in all after the filler", await totalKeys(ctx), base);

  const runs = new Map();
  let pads = 0;
  for (const n of sizes) {
    // Pads bring the total to exactly TOTAL with n keys on the written record.
    const want = MAX_N - n;
    if (want > pads) {
      await register(ctx, entriesFor(padId, want - pads, "pad", pads));
      pads = want;
    }
    const times = [];
    for (const id of targetIds.get(n)) times.push(await fanOutOnce(ctx, id, n, TOTAL));
    runs.set(n, times);
  }

  out(
    `Invalidation fan-out (a fresh worker): latency of one PATCH (client-measured), median of ${reps} ` +
      `(min–max), each on a record given its keys just before`,
  );
  const span = (xs) => `${ms(median(xs))} (${ms(Math.min(...xs))}–${ms(Math.max(...xs))})`;
  const fr = [["keys registered in all", "keys holding the record", "PATCH latency"]];
  fr.push(["10", "10", span(baseline)]);
  for (const n of [...sizes].reverse()) fr.push([int(TOTAL), int(n), span(runs.get(n))]);
  out(table(fr));
  const m10 = median(runs.get(10));
  const mMax = median(runs.get(MAX_N));
  out(
    `  cost per affected key: ${((1000 * (mMax - m10)) / (MAX_N - 10)).toFixed(1)} µs ` +
      `((median at ${int(MAX_N)} − median at 10) / ${int(MAX_N - 10)})`,
  );
  out(`  10 affected keys with ${int(TOTAL)} vs 10 registered in all: ${ratio(m10 / median(baseline))}`);
  out(
    `  set-up: ${int(base)} filler keys registered in ${fillSecs.toFixed(1)} s ` +
      `(${int(base / fillSecs)} keys/s, batches of ${BATCH}), then the ${int(MAX_N)}-key rows, then pads ` +
      `and the 1,000-key rows, then the 10-key rows; ` +
      (ctx.totalsChecked
        ? "every total checked against the coordinator's own count"
        : "totals not checked (the coordinator's count was not reachable)"),
  );
  for (const a of ctx.anomalies) out(`  (!) ${a}`);
  out();
  return { baseline, runs };
}
