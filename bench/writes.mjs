// The write table, on the users table of the default tenant: write → fresh-read latency, write
// throughput, and invalidation fan-out (PATCH latency as a function of the keys a record is in,
// with 100,000 keys registered in all).

import { expectStatus } from "./lib/http.mjs";
import { int, median, ms, percentile, ratio, table } from "./lib/util.mjs";

const TENANT = "local";
const TABLE = "users";
const BATCH = 500;

/** PATCHes a user and returns { ms, seq, token, answer }. */
async function patch(ctx, id, age) {
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
    await ctx.http.get(`/_edgecache/deps?record=${encodeURIComponent(`${TABLE}:${id}`)}`),
    200,
    `GET /_edgecache/deps?record=${TABLE}:${id}`,
  );
  return a.json().keys.length;
}

/** The coordinator's count of registered keys, when the runtime lets us ask (Miniflare). */
async function totalKeys(ctx) {
  if (!ctx.coordinatorStats) return null;
  return (await ctx.coordinatorStats(TENANT, TABLE)).keys;
}

/** `count` registrations of record `id` (keys `local:/v1/users/<id>?b=<j>`). */
function entriesFor(id, count, tag = "b") {
  return Array.from({ length: count }, (_, j) => {
    const route = `/v1/users/${id}?${tag}=${j}`;
    return {
      key: `${TENANT}:${route}`,
      dependent: { kind: "record" },
      records: [id],
      tables: [TABLE],
      route,
      rehydrate: false,
    };
  });
}

/** Registers entries in batches of ≤ 500, stamped with the table's current seq. */
async function register(ctx, entries) {
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
  const { ms: took } = await patch(ctx, target, 20 + (n % 50));
  check(ctx, `keys of ${target} after its PATCH`, await keysOf(ctx, target), 0);
  return took;
}

export async function writeTable(ctx, ids) {
  const { http, out } = ctx;
  ctx.anomalies = [];
  const home = "123-abc";
  // Distinct records for each part, so no part inherits another's keys.
  const others = ids.filter((id) => id !== home);
  const throughputIds = others.slice(0, 100);
  const baselineIds = others.slice(100, 103);
  const targetIds = others.slice(103, 112);
  const padId = others[112];
  const fillerIds = others.slice(113);

  // Warm the coordinator and D1 (the first write of a cold coordinator also migrates its storage).
  for (let i = 0; i < 5; i++) await patch(ctx, home, 30 + i);

  // 1. write → fresh read
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
  await patch(ctx, home, 34); // unregisters the key the last read filled

  // 2. write throughput
  const tp = await ctx.load.run({
    url: http.base + `/v1/users/${throughputIds[0]}`,
    ...ctx.loadParams,
    method: "PATCH",
    body: JSON.stringify({ age: 40 }),
    header: "content-type: application/json",
    paths: throughputIds.map((id) => `/v1/users/${id}`),
  });
  await patch(ctx, home, 35); // the table's seq after the load, for the registrations below

  // 3. fan-out: 10 keys in all (baseline), then 100,000 in all
  const baseline = [];
  for (const id of baselineIds) baseline.push(await fanOutOnce(ctx, id, 10, 10));

  const TOTAL = ctx.fanOutTotal;
  const MAX_N = 10_000;
  const base = TOTAL - MAX_N;
  const filler = [];
  for (let j = 0; filler.length < base; j++) {
    for (const id of fillerIds) {
      if (filler.length === base) break;
      filler.push(...entriesFor(id, 1, `f${j}`));
    }
  }
  const t0 = performance.now();
  await register(ctx, filler);
  const fillSecs = (performance.now() - t0) / 1000;
  check(ctx, "keys registered in all after the filler", await totalKeys(ctx), base);

  const sizes = [10, 1_000, MAX_N];
  const runs = new Map(sizes.map((n) => [n, []]));
  let t = 0;
  for (let rep = 0; rep < ctx.fanOutRepetitions; rep++) {
    for (const n of sizes) {
      // Pad keys on another record bring the total to exactly TOTAL; its PATCH clears them after.
      const pad = MAX_N - n;
      if (pad) await register(ctx, entriesFor(padId, pad));
      runs.get(n).push(await fanOutOnce(ctx, targetIds[t++ % targetIds.length], n, TOTAL));
      if (pad) {
        await patch(ctx, padId, 50 + rep);
        check(ctx, `keys of ${padId} after its PATCH`, await keysOf(ctx, padId), 0);
      }
    }
  }

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
    `PATCH over ${throughputIds.length} records, ${ctx.loadLabel}`,
    `${int(tp.rps)} writes/s, p50 ${ms(tp.p50_ms)}, p99 ${ms(tp.p99_ms)}` +
      (tp.failed ? `, ${int(tp.failed)} failed!` : ", 0 failed"),
  ]);
  out(table(wr));
  out();

  out(
    `Invalidation fan-out: latency of one PATCH (client-measured), median of ${ctx.fanOutRepetitions} ` +
      `(min–max); keys re-registered before each`,
  );
  const span = (xs) => `${ms(median(xs))} (${ms(Math.min(...xs))}–${ms(Math.max(...xs))})`;
  const fr = [["keys registered in all", "keys holding the record", "PATCH latency"]];
  fr.push(["10", "10", span(baseline)]);
  for (const n of sizes) fr.push([int(TOTAL), int(n), span(runs.get(n))]);
  out(table(fr));
  const m10 = median(runs.get(10));
  const mMax = median(runs.get(MAX_N));
  out(
    `  cost per affected key: ${((1000 * (mMax - m10)) / (MAX_N - 10)).toFixed(1)} µs ` +
      `((median at ${int(MAX_N)} − median at 10) / ${int(MAX_N - 10)})`,
  );
  out(`  10 affected keys, ${int(TOTAL)} vs 10 registered in all: ${ratio(m10 / median(baseline))}`);
  out(
    `  set-up: ${int(base)} filler keys registered in ${fillSecs.toFixed(1)} s ` +
      `(${int(base / fillSecs)} keys/s, batches of ${BATCH}); ` +
      (ctx.coordinatorStats ? "totals checked with the coordinator's own count" : "totals not checked (no access to the coordinator)"),
  );
  for (const a of ctx.anomalies) out(`  (!) ${a}`);
  out();
  return { totals, tp, baseline, runs };
}
