// The peer benchmark: EdgeCache against Varnish (TTL 1 s, TTL 60 s, xkey purges with a 24 h TTL)
// over one origin, with one workload and one stale-read checker (bench/lib/workload.mjs). Prints
// one table, writes it to target/bench/peers.txt and the plot (stale-read share against hit
// ratio) to target/bench/peers.svg. Started by bench/peers.sh, which installs Varnish, builds the
// worker and prepares the seeded state first. Loopback only; each system is stopped before the
// next starts.
//
// Environment: PEERS_SECONDS (measured seconds per system, 20), PEERS_WARMUP (30),
// PEERS_READ_RATE (reads/s, 200), PEERS_WRITE_RATE (writes/s, 5), PEERS_ROWS (records, 1000),
// PEERS_ONLY (comma-separated system names to run, e.g. "edgecache-fresh").

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, createWriteStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { closeClients, expectStatus, request } from "./lib/http.mjs";
import { pickLoadGenerator } from "./lib/load.mjs";
import { scatterSvg } from "./lib/svg.mjs";
import { int, ms, table } from "./lib/util.mjs";
import { startVarnish } from "./lib/varnish.mjs";
import { startMiniflare } from "./lib/worker.mjs";
import { keySpace, runWorkload } from "./lib/workload.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const OUT_DIR = path.join(ROOT, "target/bench");
const template = process.env.BENCH_STATE_TEMPLATE;
if (!template) {
  console.error("peers.mjs: BENCH_STATE_TEMPLATE is not set; run `npm run bench:peers` (bench/peers.sh)");
  process.exit(2);
}

const settings = {
  seconds: Number(process.env.PEERS_SECONDS ?? 20),
  // Long enough for EdgeCache to learn the API's list parameters (about 100 writes at 5/s; with
  // 10 s it was measured still learning, at Varnish + xkey's hit ratio). Every system gets it.
  warmup: Number(process.env.PEERS_WARMUP ?? 30),
  readRate: Number(process.env.PEERS_READ_RATE ?? 200),
  writeRate: Number(process.env.PEERS_WRITE_RATE ?? 5),
  readers: 16,
  writers: 2,
};
const rows = Number(process.env.PEERS_ROWS ?? 1000);
const only = process.env.PEERS_ONLY ? new Set(process.env.PEERS_ONLY.split(",")) : null;
const OPERATOR_TOKEN = `eco_peers_${randomBytes(16).toString("hex")}`;

const cleanups = [];
const lines = [];
function out(line = "") {
  lines.push(line);
  console.log(line);
}

/** Starts the origin in a child process; resolves { port, stats(), stop() }. */
async function startOrigin() {
  const child = spawn(process.execPath, [path.join(ROOT, "bench/lib/origin.mjs"), String(rows)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const first = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once("line", resolve);
    child.once("exit", (code) => reject(new Error(`the origin exited (${code}) before listening`)));
  });
  const { port } = JSON.parse(first);
  const base = `http://127.0.0.1:${port}`;
  return {
    port,
    base,
    stats: async () => expectStatus(await request(base, "GET", "/_origin/stats"), 200, "origin stats").json(),
    stop: async () => child.kill("SIGTERM"),
  };
}

const ok = (a, what) => {
  if (a.status !== 200) throw new Error(`${what}: ${a.status} ${a.text.slice(0, 200)}`);
  return a;
};

/** A Varnish configuration as a system of the workload. */
function varnishSystem(v, { xkey }) {
  return {
    base: v.url,
    prefix: "",
    servedAs: (h) => h["x-cache"] ?? "(none)",
    hits: new Set(["HIT"]),
    async write(id, name) {
      const a = ok(await request(v.url, "PATCH", `/v1/items/${id}`, { json: { name } }), `PATCH ${id}`);
      if (xkey) ok(await request(v.url, "PURGE", "/", { headers: { "xkey-purge": `items:${id} items` } }), "PURGE");
      return { version: a.json().data.version };
    },
  };
}

/** EdgeCache in HTTP-origin mode: a fresh worker and one tenant whose origin is ours. */
async function startEdgeCache(name, origin, rules) {
  const state = mkdtempSync(path.join(os.tmpdir(), `edgecache-peers-${name}-`));
  cpSync(template, state, { recursive: true });
  const log = createWriteStream(path.join(OUT_DIR, `peers-${name}.log`));
  const w = await startMiniflare({ root: ROOT, state, vars: { EDGECACHE_OPERATOR_TOKEN: OPERATOR_TOKEN }, log });
  const stop = async () => {
    await w.stop();
    rmSync(state, { recursive: true, force: true });
  };
  cleanups.push(stop);
  const admin = { authorization: `Bearer ${OPERATOR_TOKEN}` };
  const tenant = "peers";
  const created = await request(w.url, "POST", "/_edgecache/admin/tenants", {
    headers: admin,
    json: { name: tenant, origin: { kind: "http", base_url: origin.base }, tables: ["items"] },
  });
  expectStatus(created, 201, "create the peers tenant");
  for (const rule of rules) {
    expectStatus(
      await request(w.url, "PUT", `/_edgecache/admin/tenants/${tenant}/rules`, { headers: admin, json: rule }),
      200,
      "PUT rule",
    );
  }
  const prefix = `/t/${tenant}`;
  return {
    stop,
    system: {
      base: w.url,
      prefix,
      servedAs: (h) => h["x-edgecache"] ?? "(none)",
      hits: new Set(["HIT-L1", "HIT-L2", "STALE"]),
      async write(id, name) {
        const a = ok(await request(w.url, "PATCH", `${prefix}/v1/items/${id}`, { json: { name } }), `PATCH ${id}`);
        return { version: a.json().data.version };
      },
      /** What its coordinator is confident of at the end of the run (list semantics, and
       * write routes written through with how many records it wrote through). */
      async learned() {
        const a = ok(await request(w.url, "GET", `/_edgecache/admin/tenants/${tenant}/stats`, { headers: admin }), "stats");
        const items = a.json().coordinators?.items ?? {};
        return (items.hypotheses ?? []).flatMap((r) =>
          r.hypotheses
            .filter((h) => h.confident)
            .map((h) =>
              h.kind === "write_answer"
                ? `${r.route} written through (${items.written_through ?? 0} records)`
                : `${h.param ?? "(default order)"} ${h.kind}${h.field ? ` ${h.descending ? "-" : ""}${h.field}` : ""}`,
            ),
        );
      },
    },
  };
}

const SYSTEMS = [
  {
    name: "varnish-ttl1",
    label: "Varnish, TTL 1 s",
    claims: "a read may be up to 1 s older than the origin",
    colour: "#f4a261",
    start: (o, log) => startVarnish({ originPort: o.port, ttl: 1, xkey: false, log }),
  },
  {
    name: "varnish-ttl60",
    label: "Varnish, TTL 60 s",
    claims: "a read may be up to 60 s older than the origin",
    colour: "#e76f51",
    start: (o, log) => startVarnish({ originPort: o.port, ttl: 60, xkey: false, log }),
  },
  {
    name: "varnish-xkey",
    label: "Varnish + xkey, TTL 24 h",
    claims: "fresh once the write's purge returns (nothing stops a fill racing a write from caching the old row)",
    colour: "#9b2226",
    xkey: true,
    start: (o, log) => startVarnish({ originPort: o.port, ttl: 86400, xkey: true, log }),
  },
  {
    name: "edgecache",
    label: "EdgeCache, default rules",
    claims: "≤ 1 s behind any client's acknowledged write; read-your-writes with the write's token",
    colour: "#2a9d8f",
    rules: [],
  },
  {
    name: "edgecache-fresh",
    label: "EdgeCache, max_staleness 0",
    claims: "no read older than any client's acknowledged write (every hit checks its coordinator)",
    colour: "#264653",
    rules: [{ pattern: "/v1/items*", max_staleness_ms: 0 }],
  },
];

async function main() {
  mkdirSync(OUT_DIR, { recursive: true });
  const load = pickLoadGenerator();
  const origin = await startOrigin();
  cleanups.push(origin.stop);
  const keys = keySpace(rows);
  const hottestRecord = keys.reads.find((p) => !p.includes("?"));
  out(`Peer benchmark, ${new Date().toISOString()}: ${os.cpus().length} CPUs, Node ${process.version}, loopback only`);
  out(
    `  origin:   Node + SQLite (sql.js), ${rows} rows with a version each write increments; ` +
      `${keys.reads.length} read keys (${rows} records, ${keys.reads.length - rows} list pages of 10), Zipf s=1`,
  );
  out(
    `  workload: ${settings.readRate} reads/s over ${settings.readers} clients and ${settings.writeRate} writes/s (Zipf over ` +
      `records) over ${settings.writers}, paced; ${settings.warmup} s warm-up, ${settings.seconds} s measured per system`,
  );
  out(`  hit req/s: ${load.describe()}, 2 threads, 16 connections, 3 s, on the hottest record (${hottestRecord}), no writes`);
  out();

  const results = [];
  for (const s of SYSTEMS) {
    if (only && !only.has(s.name)) continue;
    console.error(`peers: ${s.label}`);
    let running;
    if (s.rules) {
      running = await startEdgeCache(s.name, origin, s.rules);
    } else {
      const log = createWriteStream(path.join(OUT_DIR, `peers-${s.name}.log`));
      const v = await s.start(origin, log);
      cleanups.push(v.stop);
      running = { stop: v.stop, system: varnishSystem(v, { xkey: s.xkey }) };
    }
    try {
      const r = await runWorkload(running.system, { keys, ...settings, originStats: origin.stats });
      const raw = await load.run({
        url: running.system.base + running.system.prefix + hottestRecord,
        threads: 2,
        connections: 16,
        seconds: 3,
      });
      const learned = running.system.learned ? await running.system.learned() : null;
      results.push({ ...s, ...r, rawRps: raw.rps, learned });
      if (r.errors) console.error(`peers: ${s.label}: ${r.errors} failed requests (last: ${r.lastError})`);
    } finally {
      await running.stop();
      cleanups.splice(cleanups.indexOf(running.stop), 1);
    }
  }

  const pct = (x, digits = 1) => `${(100 * x).toFixed(digits)}%`;
  const rowsOut = [["system", "hit ratio", "stale reads", "origin req/s", "read p50", "read p99", "write p50", "write p99", "hit req/s"]];
  for (const r of results) {
    rowsOut.push([
      r.label,
      pct(r.hitRatio),
      `${pct(r.staleShare, 2)} (${int(r.stale)})`,
      int(r.originRps),
      ms(r.readP50),
      ms(r.readP99),
      ms(r.writeP50),
      ms(r.writeP99),
      int(r.rawRps),
    ]);
  }
  out(table(rowsOut));
  out();
  for (const r of results) {
    out(
      `  ${r.label}: ${int(r.reads)} reads (${int(r.readRate)}/s), ${int(r.writes)} writes, ` +
        `origin reads ${int(r.originReadRps)}/s, served as ${Object.entries(r.servedAs)
          .sort((a, b) => b[1].share - a[1].share)
          .map(([k, { share, p50 }]) => `${k} ${(100 * share).toFixed(1)}% (p50 ${ms(p50)})`)
          .join(", ")}${r.errors ? `, ${r.errors} failed (${r.lastError})` : ""}; ` +
        `${pct(r.firstReadShare)} of reads were a key's first, missed by every system; misses of keys read before: ` +
        `${Object.entries(r.missedAgain).map(([kind, n]) => `${int(n)} ${kind}`).join(", ") || "none"}; claims: ${r.claims}` +
        (r.learned ? `; learned: ${r.learned.length ? r.learned.join(", ") : "none"}` : ""),
    );
  }
  out();
  out("stale reads: reads that returned a row older than a version whose write was acknowledged before the read was sent");
  out("(readers present no token). origin req/s: every request the origin served in the window, writes and refills included.");

  const svg = scatterSvg({
    title: "Stale reads against hit ratio, one point per system",
    xLabel: "hit ratio (reads served from the cache)",
    yLabel: "stale-read share",
    note: `${settings.readRate} reads/s, ${settings.writeRate} writes/s, Zipf s=1 over ${keys.reads.length} keys, ${settings.seconds} s each; ${new Date().toISOString().slice(0, 10)}`,
    points: results.map((r) => ({ label: r.label, x: r.hitRatio, y: r.staleShare, colour: r.colour })),
  });
  writeFileSync(path.join(OUT_DIR, "peers.svg"), svg);
  writeFileSync(path.join(OUT_DIR, "peers.txt"), lines.join("\n") + "\n");
  console.log("Written to target/bench/peers.txt and target/bench/peers.svg (copy the plot to bench/peers.svg to publish it)");
}

async function stopAll() {
  closeClients();
  const all = cleanups.splice(0).reverse();
  await Promise.race([Promise.all(all.map((f) => f().catch(() => {}))), new Promise((r) => setTimeout(r, 5000))]);
}
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => {
    console.error(`peers: ${sig}, stopping`);
    stopAll().finally(() => process.exit(130));
  });
}

try {
  await main();
  await stopAll();
} catch (e) {
  console.error(`peers: ${e.stack ?? e}`);
  await stopAll();
  process.exit(1);
}
