// The overheads first users asked about: "if we pass reads and writes through EdgeCache, will
// they be materially slower?" Two rows, each side measured in the same worker, in one run:
//
// * miss: `GET /v1/users?limit=11&offset=<i>`, a key never read before (a real MISS: views,
//   fill stamps, the D1 read, the answer; registration and storing run after the response)
//   against `GET /_edgecache/test/origin/v1/users?limit=11&offset=<i>`, the same D1 statement
//   with no cache in front (test hooks only);
// * write: `PATCH /v1/users/<id>` with the write key (the table's coordinator: intent, the
//   D1 batch of the record's before image and the UPDATE, sequence number, invalidation plan,
//   the token) against `PATCH /_edgecache/test/origin/v1/users/<id>`, the same D1 batch
//   straight to D1.
//
// Sequential requests (node:http, keep-alive), in pairs whose order alternates, so drift on a
// shared machine falls on both sides alike. The ratio is of the medians. Targets: miss ≤ 1.10×,
// write ≤ 1.3×.

import { expectStatus } from "./lib/http.mjs";
import { mean, ms, percentile, ratio, table } from "./lib/util.mjs";

const DIRECT = "/_edgecache/test/origin";

async function timed(send) {
  const t0 = performance.now();
  const answer = await send();
  return { answer, ms: performance.now() - t0 };
}

/** Runs `pairs` alternating pairs of (through, direct); returns both sides' times. */
async function pairsOf(pairs, through, direct) {
  const sides = { through: [], direct: [] };
  for (let i = 0; i < pairs; i++) {
    const order = i % 2 === 0 ? ["through", "direct"] : ["direct", "through"];
    for (const side of order) {
      const t = await timed(() => (side === "through" ? through(i) : direct(i)));
      sides[side].push(t.ms);
    }
  }
  return sides;
}

/** `server-timing` entries (`name;dur=ms`, the read's phases) as [name, ms] pairs. */
function phases(header) {
  return (header ?? "")
    .split(",")
    .map((part) => /^\s*([\w-]+)(?:;desc="[^"]*")?;dur=([\d.]+)/.exec(part))
    .filter(Boolean)
    .map((m) => [m[1], Number(m[2])]);
}

export async function overheadTable({ http, writer, ids, pairs, out }) {
  let misses = 0;
  const phaseMs = new Map();
  const reads = await pairsOf(
    pairs,
    async (i) => {
      const path = `/v1/users?limit=11&offset=${i}`;
      const a = expectStatus(await http.get(path), 200, `GET ${path}`);
      if (a.headers["x-edgecache"] === "MISS") misses++;
      for (const [name, ms] of phases(a.headers["server-timing"])) phaseMs.set(name, [...(phaseMs.get(name) ?? []), ms]);
      return a;
    },
    async (i) => expectStatus(await http.get(`${DIRECT}/v1/users?limit=11&offset=${i}`), 200, "GET (direct)"),
  );
  const id = ids[7];
  const writes = await pairsOf(
    pairs,
    async (i) => expectStatus(await writer.patch(`/v1/users/${encodeURIComponent(id)}`, { json: { age: 20 + (i % 50) } }), 200, "PATCH"),
    async (i) =>
      expectStatus(await writer.patch(`${DIRECT}/v1/users/${encodeURIComponent(id)}`, { json: { age: 20 + (i % 50) } }), 200, "PATCH (direct)"),
  );

  const rows = [["overhead", "through EdgeCache p50", "p99", "straight to D1 p50", "p99", "ratio (p50)", "target"]];
  const row = (name, s, target) => {
    const r = percentile(s.through, 50) / percentile(s.direct, 50);
    rows.push([
      name,
      ms(percentile(s.through, 50)),
      ms(percentile(s.through, 99)),
      ms(percentile(s.direct, 50)),
      ms(percentile(s.direct, 99)),
      ratio(r),
      `≤ ${ratio(target)} ${r <= target ? "met" : "NOT met"}`,
    ]);
    return r;
  };
  out(`Overheads (${pairs} sequential pairs each, order alternating; the straight side is ${DIRECT}/…, test hooks):`);
  const miss = row("miss vs the same D1 read", reads, 1.1);
  const write = row("write vs the same D1 UPDATE", writes, 1.3);
  out(table(rows));
  out(`  ${misses}/${pairs} reads through EdgeCache were MISS (each a key never read before).`);
  out(
    "  a miss's phases (server-timing: the worker's clock moves only on I/O; mean ms): " +
      [...phaseMs].map(([name, v]) => `${name} ${mean(v).toFixed(2)}`).join(", "),
  );
  out();
  return { miss, write, misses };
}
