// The read table: throughput and latency of the no-op route, an L1 hit, an L2 hit and an
// uncached D1 read, measured back to back on one worker; then L1's memory per entry.

import { expectStatus } from "./lib/http.mjs";
import { int, mean, ms, pct, ratio, table, until } from "./lib/util.mjs";

const NOOP = "/_edgecache/health";
const CACHED = "/v1/users?limit=10";
const UNCACHED = "/v1/orders?limit=10";

/** The `x-edgecache` outcome of one GET, and its body size. */
async function outcome(http, path) {
  const a = expectStatus(await http.get(path), 200, `GET ${path}`);
  return { ok: true, outcome: a.headers["x-edgecache"] ?? "", bytes: a.bytes };
}

/** GETs `path` until it is served as `wanted` (misses register after the response). */
async function warm(http, path, wanted) {
  return until(
    `GET ${path} is never served as ${wanted}`,
    async () => {
      const o = await outcome(http, path);
      return { ...o, ok: o.outcome === wanted, detail: `last answer: x-edgecache ${o.outcome || "(none)"}` };
    },
    15_000,
    100,
  );
}

/** GET /_edgecache/stats, with the operator token. */
async function stats(admin) {
  return expectStatus(await admin.get("/_edgecache/stats"), 200, "GET /_edgecache/stats").json();
}

/** Runs the load generator on one route; `counter` is the edge counter that should count its reads. */
async function measure(ctx, path, counter) {
  const before = counter ? await stats(ctx.admin) : null;
  const r = await ctx.load.run({ url: ctx.http.base + path, ...ctx.loadParams });
  if (counter) {
    const after = await stats(ctx.admin);
    const served = (after.edge[counter] ?? 0) - (before.edge[counter] ?? 0);
    r.servedAs = Math.min(served, r.requests);
  }
  return r;
}

async function setFaults(http, faults) {
  expectStatus(await http.put("/_edgecache/test/faults", { json: faults }), 200, "PUT /_edgecache/test/faults");
}

/** Fills L1 with distinct keys and compares L1's bytes per entry with the bodies' bytes. */
async function memory(ctx) {
  const { http } = ctx;
  // Ids for the record keys, from a list that is itself cached before L1 is measured.
  const source = "/v1/users?limit=100&offset=500";
  await warm(http, source, "HIT-L1");
  const ids = expectStatus(await http.get(source), 200, `GET ${source}`).json().data.map((u) => u.id);
  const groups = [
    { name: "records", paths: ids.map((id) => `/v1/users/${encodeURIComponent(id)}`) },
    { name: "lists", paths: Array.from({ length: 100 }, (_, i) => `/v1/users?limit=10&offset=${10 * i + 5}`) },
  ];
  const results = [];
  let previous = (await stats(ctx.admin)).l1;
  for (const g of groups) {
    const bodies = [];
    for (const p of g.paths) bodies.push((await outcome(http, p)).bytes);
    // Misses register after the response; a repeat read says whether each key now lives in L1.
    let hits = 0;
    for (const p of g.paths) {
      const o = await until(`GET ${p} is never a hit`, async () => {
        const o = await outcome(http, p);
        return { ...o, ok: o.outcome.startsWith("HIT"), detail: `x-edgecache ${o.outcome}` };
      });
      if (o.outcome === "HIT-L1") hits++;
    }
    const now = (await stats(ctx.admin)).l1;
    const entries = now.entries - previous.entries;
    results.push({
      name: g.name,
      keys: g.paths.length,
      hits,
      entries,
      bodyMean: mean(bodies),
      l1PerEntry: (now.bytes - previous.bytes) / entries,
      evictions: now.evictions - previous.evictions,
    });
    previous = now;
  }
  const keys = results.reduce((n, g) => n + g.keys, 0);
  const entries = results.reduce((n, g) => n + g.entries, 0);
  const bodyMean = results.reduce((n, g) => n + g.bodyMean * g.keys, 0) / keys;
  const l1PerEntry = results.reduce((n, g) => n + g.l1PerEntry * g.entries, 0) / entries;
  return { groups: results, keys, entries, bodyMean, l1PerEntry, l1: previous };
}

export async function readTable(ctx) {
  const { http, out } = ctx;
  // The no-op route first, unreported, so the runtime has compiled the worker's hot paths.
  await ctx.load.run({ url: http.base + NOOP, ...ctx.loadParams, seconds: 2 });

  const noopBody = (await outcome(http, NOOP)).bytes;
  const noop = await measure(ctx, NOOP, null);

  const l1Body = (await warm(http, CACHED, "HIT-L1")).bytes;
  const l1 = await measure(ctx, CACHED, "hits_l1");

  await setFaults(http, { disable_l1: true });
  let l2;
  let l2Body;
  try {
    l2Body = (await warm(http, CACHED, "HIT-L2")).bytes;
    l2 = await measure(ctx, CACHED, "hits_l2");
  } finally {
    await setFaults(http, {});
  }

  const d1Warm = await outcome(http, UNCACHED);
  if (d1Warm.outcome !== "BYPASS") {
    throw new Error(`GET ${UNCACHED} answered x-edgecache ${d1Warm.outcome}, not BYPASS: is EDGECACHE_RULES read?`);
  }
  const d1 = await measure(ctx, UNCACHED, "bypass");

  const rows = [["read", "route", "req/s", "p50", "p99", "served as", "body"]];
  const row = (name, path, r, body, label) => {
    const served = r.servedAs === undefined ? "-" : `${pct(r.servedAs, r.requests)} ${label}`;
    const failed = r.failed ? `  (${int(r.failed)} failed!)` : "";
    rows.push([name, path, int(r.rps), ms(r.p50_ms), ms(r.p99_ms), served + failed, `${int(body)} B`]);
  };
  row("no-op", NOOP, noop, noopBody, "");
  row("L1 hit", CACHED, l1, l1Body, "HIT-L1");
  row("L2 hit", `${CACHED} (faults: disable_l1)`, l2, l2Body, "HIT-L2");
  row("D1 read", `${UNCACHED} (rule: no_store)`, d1, d1Warm.bytes, "BYPASS");
  out("Reads");
  out(table(rows));
  out();

  const verdict = (ok) => (ok ? "met" : "NOT met");
  const l1Noop = l1.rps / noop.rps;
  const l1D1 = l1.rps / d1.rps;
  const l2D1 = l2.rps / d1.rps;
  out("Read ratios (req/s over req/s, same run)");
  out(
    table([
      ["L1 hit / no-op", ratio(l1Noop), "target ≥ 0.8×", verdict(l1Noop >= 0.8)],
      ["L1 hit / D1 read", ratio(l1D1), "target ≥ 5×", verdict(l1D1 >= 5)],
      ["L2 hit / D1 read", ratio(l2D1), "no target", ""],
    ]),
  );
  out();

  const mem = await memory(ctx);
  const limit = 1.2 * mem.bodyMean + 256;
  out(`L1 memory (${mem.keys} distinct keys read until cached; /_edgecache/stats l1.bytes and l1.entries, before and after)`);
  const mrows = [["keys", "now in L1", "mean body", "L1 bytes/entry", "overhead/entry", "target ≤ 1.2×body+256 B"]];
  for (const g of mem.groups) {
    const lim = 1.2 * g.bodyMean + 256;
    mrows.push([
      `${g.keys} ${g.name}`,
      `${g.entries} (${g.hits} HIT-L1)`,
      `${int(g.bodyMean)} B`,
      `${int(g.l1PerEntry)} B`,
      `${int(g.l1PerEntry - g.bodyMean)} B`,
      `${int(lim)} B ${verdict(g.l1PerEntry <= lim)}`,
    ]);
  }
  mrows.push([
    `${mem.keys} in all`,
    `${mem.entries}`,
    `${int(mem.bodyMean)} B`,
    `${int(mem.l1PerEntry)} B`,
    `${int(mem.l1PerEntry - mem.bodyMean)} B`,
    `${int(limit)} B ${verdict(mem.l1PerEntry <= limit)}`,
  ]);
  out(table(mrows));
  const evicted = mem.groups.reduce((n, g) => n + g.evictions, 0);
  out(
    `  L1 now: ${int(mem.l1.entries)} entries, ${int(mem.l1.bytes)} of ${int(mem.l1.max_bytes)} bytes` +
      (evicted ? `, ${evicted} evictions during the fill (figures skewed)` : ", no evictions"),
  );
  out();
  return { noop, l1, l2, d1, mem };
}
