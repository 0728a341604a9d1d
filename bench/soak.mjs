// The soak: a bounded run of mixed requests against one worker, with a history checker on every
// read that presents a token. Reads of many keys (point and list pages, half with the reader's
// latest token), writes with tokens, bad input of every kind, made-up tenants and signed (and
// forged) webhook calls, from 32 concurrent clients. It prints server errors, unexpected
// answers, stale token reads, panics in the worker log and the isolate's bounded structures.
// Nothing here fails the run: the figures are the result (bench/README.md).

import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";

import { int, ms, percentile } from "./lib/util.mjs";

const CLIENTS = 32;
const USERS = 200;

/** `x-edgecache-signature` for `body` signed with `secret` now. */
function signature(secret, body) {
  const t = Math.floor(Date.now() / 1000);
  const mac = createHmac("sha256", secret).update(`${t}.${body}`).digest("hex");
  return `t=${t},v1=${mac}`;
}

/** A deterministic PRNG (mulberry32), so two runs send the same mix. */
function rng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const seqOf = (token) => Number(/=(\d+)$/.exec(token ?? "")?.[1] ?? 0);

/**
 * Runs `total` requests. `ctx`: { http (sends the write key), anon (sends none), admin, ids,
 * webhookSecret, logPath, out, total }.
 */
export async function soakTable(ctx) {
  const { http, anon, admin, ids, webhookSecret, logPath, out, total } = ctx;
  const users = ids.slice(0, USERS);
  // Per user: the last acknowledged age and the seq of its token. Each user is written by one
  // client only, so acknowledgements arrive in the order of the values.
  const acked = new Map();
  const nextAge = new Map(users.map((u) => [u, 1_000_000]));
  let latestToken = null;
  const counts = { requests: 0, reads: 0, tokenReads: 0, writes: 0, bad: 0, tenants: 0, webhooks: 0 };
  const problems = { serverErrors: 0, unexpected: 0, stale: 0, transport: 0 };
  const examples = [];
  const latency = [];
  const note = (kind, what) => {
    problems[kind]++;
    if (examples.length < 8) examples.push(`${kind}: ${what}`);
  };

  const expect = (a, statuses, what) => {
    if (a.status >= 500) note("serverErrors", `${what} → ${a.status} ${a.text.slice(0, 120)}`);
    else if (!statuses.includes(a.status)) note("unexpected", `${what} → ${a.status} ${a.text.slice(0, 120)}`);
  };

  /** Checks a read that presented `seen` (the acknowledged ages at its start) against the rows it got. */
  const checkRows = (rows, seen, what) => {
    for (const row of rows) {
      const want = seen.get(row.id);
      if (want !== undefined && row.age < want) {
        note("stale", `${what}: ${row.id} age ${row.age} < acknowledged ${want}`);
      }
    }
  };

  async function one(client, rand) {
    const r = rand();
    const user = users[Math.floor(rand() * users.length)];
    if (r < 0.6) {
      counts.reads++;
      const withToken = latestToken !== null && rand() < 0.5;
      const seen = new Map();
      if (withToken) {
        const limit = seqOf(latestToken);
        for (const [u, { age, seq }] of acked) if (seq <= limit) seen.set(u, age);
        counts.tokenReads++;
      }
      const headers = withToken ? { "x-edgecache-min-seq": latestToken } : {};
      const path =
        rand() < 0.6
          ? `/v1/users/${encodeURIComponent(user)}`
          : `/v1/users?limit=10&offset=${10 * Math.floor(rand() * 20)}&order=id`;
      const a = await anon.get(path, { headers });
      expect(a, [200], `GET ${path}`);
      if (a.status === 200 && withToken) {
        const data = a.json().data;
        checkRows(Array.isArray(data) ? data : [data], seen, `GET ${path} with ${latestToken}`);
      }
    } else if (r < 0.75) {
      // Writes: each client writes only its own users.
      const mine = users.filter((_, i) => i % CLIENTS === client);
      const u = mine[Math.floor(rand() * mine.length)];
      const age = nextAge.get(u) + 1;
      nextAge.set(u, age);
      counts.writes++;
      const a = await http.patch(`/v1/users/${encodeURIComponent(u)}`, { json: { age } });
      expect(a, [200], `PATCH ${u}`);
      if (a.status === 200) {
        const token = a.headers["x-edgecache-seq"];
        acked.set(u, { age, seq: seqOf(token) });
        if (seqOf(token) > seqOf(latestToken)) latestToken = token;
      }
    } else if (r < 0.9) {
      counts.bad++;
      const cases = [
        () => [anon.get("/v1/users?limit=0"), [400]],
        () => [anon.get("/v1/users?nope=1"), [400]],
        () => [anon.get("/v1/nosuchtable"), [404]],
        () => [anon.get(`/v1/users/${"z".repeat(3000)}`), [414]],
        () => [anon.patch(`/v1/users/${encodeURIComponent(user)}`, { json: { age: 1 } }), [401]],
        () => [http.patch(`/v1/users/${encodeURIComponent(user)}`, { json: { nope: 1 } }), [400]],
        () => [http.patch(`/v1/users/${encodeURIComponent(user)}`, { json: [1, 2] }), [400]],
        () => [anon.get("/v1/users", { headers: { "x-edgecache-min-seq": "users=abc" } }), [400]],
      ];
      const [pending, statuses] = cases[Math.floor(rand() * cases.length)]();
      const a = await pending;
      expect(a, statuses, "bad input");
    } else if (r < 0.95) {
      counts.tenants++;
      const path = `/t/madeup-${Math.floor(rand() * 1e9)}/v1/users?limit=3`;
      const a = await anon.get(path);
      expect(a, [404], `GET ${path}`);
    } else {
      counts.webhooks++;
      const body = JSON.stringify({ urls: [`/v1/users/${user}`] });
      const forged = rand() < 0.3;
      const sig = forged ? signature("ecw_not_the_secret", body) : signature(webhookSecret, body);
      const a = await anon.post("/_edgecache/invalidate", {
        headers: { "x-edgecache-signature": sig, "content-type": "application/json" },
        body,
      });
      expect(a, forged ? [401] : [200, 429], "webhook"); // 429: past the tenant's invalidation budget
    }
  }

  const t0 = Date.now();
  const perClient = Math.ceil(total / CLIENTS);
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      const rand = rng(1000 + c);
      for (let i = 0; i < perClient; i++) {
        const started = performance.now();
        try {
          await one(c, rand);
        } catch (e) {
          note("transport", e.message);
        }
        latency.push(performance.now() - started);
        counts.requests++;
      }
    }),
  );
  const seconds = (Date.now() - t0) / 1000;

  const stats = (await admin.get("/_edgecache/stats")).json();
  const log = readFileSync(logPath, "utf8");
  const panics = (log.match(/panicked at/g) ?? []).length;
  const l1 = stats.l1 ?? {};
  const routes = Object.keys(stats.edge?.routes ?? {}).length;

  const rows = [
    ["requests", `${int(counts.requests)} in ${seconds.toFixed(0)} s (${int(counts.requests / seconds)}/s), p50 ${ms(percentile(latency, 50))}, p99 ${ms(percentile(latency, 99))}`],
    ["mix", `reads ${int(counts.reads)} (${int(counts.tokenReads)} with a token), writes ${int(counts.writes)}, bad input ${int(counts.bad)}, made-up tenants ${int(counts.tenants)}, webhooks ${int(counts.webhooks)}`],
    ["server errors (5xx)", `${int(problems.serverErrors)}`],
    ["unexpected answers", `${int(problems.unexpected)} (an answer other than the one due)`],
    ["stale token reads", `${int(problems.stale)}`],
    ["transport failures", `${int(problems.transport)}`],
    ["panics in the worker log", `${int(panics)}`],
    ["L1", `${int(l1.bytes)} of ${int(l1.max_bytes)} bytes, ${int(l1.entries)} entries` + (l1.bytes <= l1.max_bytes ? " (within its bound)" : " (OVER its bound!)")],
    ["route counters", `${routes} in the isolate (the tenant's tables, not one per made-up name)`],
  ];
  out(`Soak (${int(counts.requests)} mixed requests from ${CLIENTS} clients, one worker, history checker on)`);
  for (const [k, v] of rows) out(`  ${k.padEnd(26)}${v}`);
  for (const e of examples) out(`  e.g. ${e}`);
  out();
  return { problems, panics };
}
