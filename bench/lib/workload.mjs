// The peer benchmark's workload and its checker, the same for every system.
//
// * Keys: every record `/v1/items/<id>` and every list page `/v1/items?limit=10&offset=10k`,
//   ranked in one fixed-seed shuffle; reads draw a rank from a Zipf distribution (s = 1) over
//   all of them. Writes draw a record from a Zipf distribution over the records (hot records
//   are read and written more, as in most APIs).
// * Reads are paced to a fixed rate over `readers` keep-alive clients, writes to a fixed rate
//   over `writers`: every system gets the same requests per second, so hit ratios compare.
// * Stale reads: every write's acknowledgement records the version the origin answered. A read
//   is stale if any row it returns has a version older than one acknowledged *before the read was
//   sent* (from any client: readers present no token). Checked per read, per row.

import { request } from "./http.mjs";
import { percentile, sleep } from "./util.mjs";

/** mulberry32: a small, fixed-seed PRNG, so every system sees the same key sequence. */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Draws indices 0..n-1 with P(i) ∝ 1/(i+1)^s. */
export function zipf(n, s, random) {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) cdf[i] = sum += 1 / Math.pow(i + 1, s);
  return () => {
    const u = random() * sum;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

function shuffled(items, random) {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** The read and write key spaces of `rows` records (ids as the origin makes them). */
export function keySpace(rows, pageSize = 10) {
  const ids = Array.from({ length: rows }, (_, i) => `i${String(i).padStart(5, "0")}`);
  const records = ids.map((id) => `/v1/items/${id}`);
  const lists = Array.from({ length: Math.ceil(rows / pageSize) }, (_, k) => `/v1/items?limit=${pageSize}&offset=${k * pageSize}`);
  const random = prng(0x5eed0013);
  return { ids, reads: shuffled([...records, ...lists], random), writes: shuffled(ids, random) };
}

/** Acknowledged versions per record, in acknowledgement order. */
class Acks {
  constructor() {
    this.count = 0;
    this.byId = new Map(); // id -> [[ack number, version], ...]
  }
  record(id, version) {
    const list = this.byId.get(id) ?? [];
    list.push([this.count++, version]);
    this.byId.set(id, list);
  }
  /** The newest version of `id` acknowledged before ack number `mark`. */
  newestBefore(id, mark) {
    let v = 0;
    for (const [n, version] of this.byId.get(id) ?? []) {
      if (n >= mark) break;
      if (version > v) v = version;
    }
    return v;
  }
}

/**
 * Runs the workload against one system for `warmup` + `seconds` seconds and measures the last
 * `seconds`. `system` is { base, prefix (of every read path), servedAs(headers) → the
 * cache's own outcome label, hits (the labels that count as hits), write(id, name) → { version } }.
 */
export async function runWorkload(system, { keys, readRate, writeRate, readers, writers, warmup, seconds, originStats }) {
  const acks = new Acks();
  const readKey = zipf(keys.reads.length, 1, prng(0xa11ce));
  const writeKey = zipf(keys.writes.length, 1, prng(0xb0b));
  const m = { reads: 0, hits: 0, firstReads: 0, servedAs: {}, stale: 0, readMs: [], writeMs: [], writes: 0, errors: 0, lastError: "" };
  // Keys read so far (warm-up included): a key's first read is a miss for every system.
  const seen = new Set();
  const missedAgain = {};
  const start = performance.now();
  const measureFrom = start + warmup * 1000;
  const end = measureFrom + seconds * 1000;
  let writeSeq = 0;

  async function paced(workers, rate, one) {
    const interval = (1000 * workers) / rate;
    await Promise.all(
      Array.from({ length: workers }, async (_, w) => {
        let next = start + (w * interval) / workers;
        while (next < end) {
          const now = performance.now();
          if (next > now) await sleep(next - now);
          next += interval;
          const counted = performance.now() >= measureFrom;
          try {
            await one(counted);
          } catch (e) {
            if (counted) {
              m.errors++;
              m.lastError = e.message;
            }
          }
        }
      }),
    );
  }

  const read = async (counted) => {
    const path = keys.reads[readKey()];
    const first = !seen.has(path);
    seen.add(path);
    const mark = acks.count;
    const t0 = performance.now();
    const a = await request(system.base, "GET", system.prefix + path);
    const ms = performance.now() - t0;
    if (a.status !== 200) throw new Error(`GET ${path}: ${a.status} ${a.text.slice(0, 200)}`);
    const data = a.json().data;
    const stale = (Array.isArray(data) ? data : [data]).some((row) => row.version < acks.newestBefore(row.id, mark));
    if (!counted) return;
    m.reads++;
    m.readMs.push(ms);
    const as = system.servedAs(a.headers);
    (m.servedAs[as] ??= []).push(ms);
    if (system.hits.has(as)) m.hits++;
    if (first) m.firstReads++;
    if (!first && !system.hits.has(as)) { const kind = path.includes("?") ? "list" : "record"; missedAgain[kind] = (missedAgain[kind] ?? 0) + 1; }
    if (stale) m.stale++;
  };

  const write = async (counted) => {
    const id = keys.writes[writeKey()];
    const t0 = performance.now();
    const { version } = await system.write(id, `w${writeSeq++}`);
    const ms = performance.now() - t0;
    acks.record(id, version);
    if (!counted) return;
    m.writes++;
    m.writeMs.push(ms);
  };

  let before = null;
  const origin = (async () => {
    await sleep(Math.max(0, measureFrom - performance.now()));
    before = await originStats();
  })();
  await Promise.all([paced(readers, readRate, read), paced(writers, writeRate, write), origin]);
  const after = await originStats();
  const elapsed = (performance.now() - measureFrom) / 1000;
  return {
    reads: m.reads,
    readRate: m.reads / elapsed,
    hitRatio: m.hits / m.reads,
    // The share of reads that were a key's first: the hit ratio no cache can pass.
    firstReadShare: m.firstReads / m.reads,
    missedAgain,
    // label -> { share of the reads, p50 of their latency }
    servedAs: Object.fromEntries(
      Object.entries(m.servedAs).map(([label, times]) => [label, { share: times.length / m.reads, p50: percentile(times, 50) }]),
    ),
    staleShare: m.stale / m.reads,
    stale: m.stale,
    originRps: (after.reads + after.writes - before.reads - before.writes) / elapsed,
    originReadRps: (after.reads - before.reads) / elapsed,
    readP50: percentile(m.readMs, 50),
    readP99: percentile(m.readMs, 99),
    writes: m.writes,
    writeP50: percentile(m.writeMs, 50),
    writeP99: percentile(m.writeMs, 99),
    errors: m.errors,
    lastError: m.lastError,
  };
}
