// The learning table: a tenant on an HTTP origin EdgeCache is told nothing about (bench/lib/shop.mjs:
// placing an order bumps the user's `orderCount`; lists take filters, limit and offset) and a
// seeded workload of order POSTs and status PATCHes through the cache. For each write, ground
// truth comes from the origin itself, not from EdgeCache's sampler: every cached key is refetched
// from the shop directly (uncounted) before and after the write, and a key "changed" if its body
// differs. Whether the write (its plan, a learned rule, or a shadow check already done) invalidated
// a key is what a read through the cache right after says: the tenant's rule checks the
// coordinator on every hit (max_staleness 0) and turns refills off, so an invalidated key is a
// MISS and a kept one a HIT. Precision = changed ∩ invalidated / invalidated; recall = changed ∩
// invalidated / changed. A "stale token read" is the written record's dependent key (the ordering
// user, or the patched order) read with the write's token right after the write, answered with a
// body the origin no longer has. Origin fetches per write = the shop's reads during the write's
// round minus the reads the MISSes made: the shadow checks the write caused.
//
// Rows: writes before the first rule was learned, writes after the last one was, and writes after
// convergence (the last rule learned and the last list hypothesis confident, or revoked).

import { expectStatus, request } from "./lib/http.mjs";
import { startShop, userId } from "./lib/shop.mjs";
import { int, pct, table, until } from "./lib/util.mjs";
import { prng as rng } from "./lib/workload.mjs";

const TENANT = "bench-shop";
const USERS = 12;


/** The cached key set: users (points and city lists) and orders (each user's first orders and
 * first placed orders, the first of each status). A route's parameters become confident at 10
 * distinct responses each (a filter with two values), so every user's lists are read. */
function keySet() {
  const keys = [];
  for (let i = 0; i < USERS; i++) keys.push(`/v1/users/${userId(i)}`);
  for (const city of ["Lisbon", "Osaka", "Lima", "Oslo"]) keys.push(`/v1/users?city=${city}&limit=2`);
  for (let i = 0; i < USERS; i++) {
    keys.push(`/v1/orders?userId=${userId(i)}&limit=2`, `/v1/orders?status=placed&userId=${userId(i)}&limit=2`);
  }
  keys.push("/v1/orders?status=placed&limit=5", "/v1/orders?status=shipped&limit=5");
  return keys;
}

/** Precision, recall, stale token reads and fetches over a list of per-write rounds. */
function summarise(label, rounds) {
  const sum = (f) => rounds.reduce((a, r) => a + f(r), 0);
  const hit = sum((r) => r.changedInvalidated);
  const waste = sum((r) => r.sameInvalidated);
  const miss = sum((r) => r.changedKept);
  return [
    label,
    int(rounds.length),
    pct(hit, hit + waste),
    pct(hit, hit + miss),
    `${int(miss)}`,
    `${int(sum((r) => r.staleTokenRead))} / ${int(rounds.length)}`,
    rounds.length ? (sum((r) => r.fetches) / rounds.length).toFixed(1) : "n/a",
  ];
}

export async function learnTable({ http, admin, out, writes, seed }) {
  const shop = await startShop(USERS);
  try {
    await run({ http, admin, out, writes, seed, shop });
  } finally {
    await shop.close();
  }
}

async function run({ http, admin, out, writes, seed, shop }) {
  expectStatus(
    await admin.post("/_edgecache/admin/tenants", {
      json: { name: TENANT, origin: { kind: "http", base_url: shop.url }, tables: ["users", "orders"] },
    }),
    201,
    "create the shop tenant",
  );
  expectStatus(
    await admin.put(`/_edgecache/admin/tenants/${TENANT}/rules`, {
      json: { pattern: "/v1/*", max_staleness_ms: 0, rehydrate: false },
    }),
    200,
    "the shop's rule",
  );
  const edge = (path, headers = {}) => http.get(`/t/${TENANT}${path}`, { headers });
  const truth = async (path) => (await fetchOrigin(shop.url, path)).text;
  const status = async () =>
    expectStatus(await admin.get(`/_edgecache/admin/tenants/${TENANT}/learn`), 200, "learn status").json();
  const settled = () =>
    until("shadow checks settle", async () => {
      const s = await status();
      const pending = s.tables.reduce((a, t) => a + t.pending_checks, 0);
      return { ok: pending === 0, detail: `${pending} pending`, status: s };
    }, 30_000, 50);

  const keys = keySet();
  const known = new Map(); // path → the origin's body at the last sweep
  for (const path of keys) {
    expectStatus(await edge(path), 200, `fill ${path}`);
    known.set(path, await truth(path));
  }
  await settled();

  const rand = rng(seed);
  const orders = [];
  const rounds = [];
  const learnedAt = new Map(); // rule id → { write, rule, checks }
  const confidentAt = new Map(); // "route param kind field" → the write it became confident at
  noteConfident(confidentAt, (await settled()).status, 0);
  for (let n = 1; n <= writes; n++) {
    const before = shop.counts().reads;
    let write;
    let dependent;
    if (orders.length === 0 || rand() < 0.75) {
      const user = userId(Math.floor(rand() * USERS));
      const id = `o${String(n).padStart(4, "0")}`;
      orders.push(id);
      write = await http.post(`/t/${TENANT}/v1/orders`, { json: { id, userId: user, qty: 1 + Math.floor(rand() * 3) } });
      expectStatus(write, 201, `POST order ${id}`);
      dependent = `/v1/users/${user}`;
    } else {
      const id = orders[Math.floor(rand() * orders.length)];
      write = await http.patch(`/t/${TENANT}/v1/orders/${id}`, { json: { status: rand() < 0.5 ? "shipped" : "placed" } });
      expectStatus(write, 200, `PATCH order ${id}`);
      dependent = `/v1/orders/${id}`;
    }
    const token = write.headers["x-edgecache-seq"];
    const round = { changedInvalidated: 0, sameInvalidated: 0, changedKept: 0, staleTokenRead: 0, fetches: 0, wasted: {} };
    let misses = 0;
    // The written record's dependent key, with the write's token, at once.
    const tokenRead = await edge(dependent, { "x-edgecache-min-seq": token });
    if (tokenRead.text !== (await truth(dependent))) round.staleTokenRead = 1;
    if (!String(tokenRead.headers["x-edgecache"]).startsWith("HIT")) misses++;
    const seen = new Map([[dependent, tokenRead]]);
    for (const path of keys) {
      const now = await truth(path);
      const answer = seen.get(path) ?? (await edge(path));
      if (!seen.has(path) && !String(answer.headers["x-edgecache"]).startsWith("HIT")) misses++;
      const invalidated = !String(answer.headers["x-edgecache"]).startsWith("HIT");
      const changed = now !== known.get(path);
      if (invalidated && changed) round.changedInvalidated++;
      if (invalidated && !changed) {
        round.sameInvalidated++;
        const table = path.split(/[/?]/)[2];
        round.wasted[table] = (round.wasted[table] ?? 0) + 1;
      }
      if (!invalidated && changed) round.changedKept++;
      known.set(path, now);
    }
    const { status: learned } = await settled();
    round.fetches = shop.counts().reads - before - misses;
    rounds.push(round);
    for (const t of learned.tables) {
      for (const r of t.rules) {
        if (!learnedAt.has(r.id)) learnedAt.set(r.id, { write: n, rule: r.rule, checks: r.learned.checks_to_learn });
      }
    }
    noteConfident(confidentAt, learned, n);
  }

  const firstRule = Math.min(...[...learnedAt.values()].map((l) => l.write), writes + 1);
  const lastRule = Math.max(0, ...[...learnedAt.values()].map((l) => l.write));
  // Converged: every rule learned and every hypothesis confident (as they stand at the end).
  const converged = Math.max(lastRule, ...[...confidentAt.values()].map((c) => c.revoked ?? c.write));
  out(`Learned invalidation: an HTTP shop API EdgeCache is told nothing about (${USERS} users, ${keys.length} cached keys),`);
  out(`${writes} seeded writes (3 in 4 order POSTs, each bumping the user's orderCount; the rest order status PATCHes);`);
  out("ground truth from the origin after every write; default shadow budget (3 checks per write per coordinator)");
  out(
    table([
      ["writes", "n", "precision", "recall", "stale kept", "stale token reads", "origin fetches/write (shadow)"],
      summarise("before the first rule", rounds.slice(0, firstRule - 1)),
      summarise("after the last rule", rounds.slice(lastRule)),
      summarise(`after convergence (write ${converged})`, rounds.slice(converged)),
    ]),
  );
  const wasted = {};
  for (const r of rounds.slice(converged)) {
    for (const [table, n] of Object.entries(r.wasted)) wasted[table] = (wasted[table] ?? 0) + n;
  }
  const byTable = Object.entries(wasted).map(([table, n]) => `${table} ${n}`);
  out(`  unchanged keys invalidated after convergence, by table: ${byTable.length ? byTable.join(", ") : "none"}`);
  for (const [id, l] of learnedAt) {
    out(`  rule ${id} ${l.rule}: learned at write ${l.write} (${l.checks} checks)`);
  }
  if (learnedAt.size === 0) out("  no rule learned");
  for (const [name, at] of confidentAt) {
    out(`  hypothesis ${name}: ${at.revoked ? `confident at write ${at.write}, revoked at write ${at.revoked}` : `confident at write ${at.write}`}`);
  }
  if (confidentAt.size === 0) out("  no list hypothesis confident");
  out();
}

/** Records, from a `learn` status, the write at which each list hypothesis first became
 * confident (0: while the keys were first filled) and at which it stopped being so. */
function noteConfident(confidentAt, status, write) {
  const now = new Set();
  for (const t of status.tables) {
    for (const route of t.hypotheses) {
      for (const h of route.hypotheses.filter((h) => h.confident)) {
        const field = h.field ? ` ${h.descending ? "-" : ""}${h.field}` : "";
        now.add(`${route.route} ${h.param ?? "(no order param)"} ${h.kind}${field}`);
      }
    }
  }
  for (const name of now) {
    const at = confidentAt.get(name);
    if (!at || at.revoked) confidentAt.set(name, { write, revoked: null });
  }
  for (const [name, at] of confidentAt) {
    if (!now.has(name) && !at.revoked) at.revoked = write;
  }
}

/** A read straight from the origin, uncounted: the benchmark's ground truth. */
function fetchOrigin(base, path) {
  return request(base, "GET", path, { headers: { "x-ground-truth": "1" } });
}
