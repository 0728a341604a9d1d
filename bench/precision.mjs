// The precision table: on a realistic mixed key set (point reads, plain pages, equality, prefix
// and ordered lists of users and orders, and the join view), a seeded mix of writes (user PATCHes,
// inserts and deletes, order inserts and PATCHes). For each write, ground truth comes from the
// origin itself: every key is read before and after the write through a second tenant on the
// same D1 whose rule stores nothing (so each of its reads is an origin read), and a key "changed"
// if its body differs. What the write invalidated comes from the coordinator (`/_edgecache/deps`:
// the key's last invalidation is the write's seq). Precision = changed ∩ invalidated /
// invalidated; recall = changed ∩ invalidated / changed, with the join view's keys counted (the
// view is declared with its bindings, users.id and orders.userId -> its id). The cached tenant
// rehydrates: once the coordinators' refill queues are empty, every key is read through the cache
// again (with the write's token) and must equal the origin's answer. Origin reads per write = the
// coordinators' refills plus the MISSes of that re-read; refills avoided = record copies rebuilt
// from the write's after image plus list pages patched in place (coordinator stats).

import { expectStatus } from "./lib/http.mjs";
import { int, median, ms, pct, ratio, table } from "./lib/util.mjs";
import { prng as rng } from "./lib/workload.mjs";
import { patch, register, totalKeys } from "./writes.mjs";

const TRUTH_TENANT = "bench-truth";


const CITIES = ["Lisbon", "Osaka", "Austin", "Nairobi", "Oslo", "Lima", "Perth", "Quebec"];
const FIRST = ["Ada", "Bob", "Cleo", "Dev", "Eve", "Finn", "Gus", "Hana"];
const LAST = ["Lovelace", "Hopper", "Turing", "Liskov", "Knuth", "Ritchie", "Thompson", "Hamilton", "Allen", "Dijkstra"];
const STATUS = ["placed", "shipped", "delivered", "returned"];

/** The key set, by kind: what a front end of this API would keep reading. */
function keySet(userIds, orderIds, pick) {
  const keys = [];
  const add = (kind, path) => keys.push({ kind, path });
  for (const id of pick(userIds, 25)) add("point", `/v1/users/${id}`);
  for (const id of pick(orderIds, 10)) add("point", `/v1/orders/${id}`);
  for (let offset = 0; offset < 1000; offset += 50) add("plain page", `/v1/users?limit=50&offset=${offset}`);
  for (let offset = 0; offset < 500; offset += 100) add("plain page", `/v1/orders?limit=100&offset=${offset}`);
  for (const city of CITIES) {
    add("equality", `/v1/users?city=${city}&limit=50`);
    add("equality", `/v1/users?city=${city}&limit=50&offset=50`);
  }
  for (const id of pick(userIds, 10)) add("equality", `/v1/orders?userId=${id}`);
  add("equality", `/v1/orders?limit=50&status=placed`);
  for (const prefix of ["Lo", "Ho", "Tu", "Kn", "Di"]) add("prefix", `/v1/users?lastName=${prefix}*&limit=50`);
  for (let offset = 0; offset < 200; offset += 50) add("ordered", `/v1/users?limit=50&offset=${offset}&order=age`);
  add("ordered", `/v1/users?limit=20&order=-createdAt`);
  add("ordered", `/v1/users?limit=50&order=lastName`);
  add("ordered", `/v1/orders?limit=20&order=-totalCents`);
  add("ordered", `/v1/orders?limit=20&order=-createdAt`);
  for (let offset = 0; offset < 150; offset += 50) add("join view", `/v1/usersWithOrders?limit=50&offset=${offset}`);
  return keys;
}

/** The next write of the seeded mix: { kind, table, method, path, json }. */
function nextWrite(rand, state) {
  const pick = (xs) => xs[Math.floor(rand() * xs.length)];
  const roll = rand();
  if (roll < 0.4) {
    // Half the PATCHes go to users someone reads (the point-read keys): writes follow reads.
    const id = pick(rand() < 0.5 ? state.hotUsers : state.userIds);
    const field = pick(["firstName", "age", "city", "lastName", "email"]);
    const value = {
      firstName: pick(FIRST),
      age: 18 + Math.floor(rand() * 60),
      city: pick(CITIES),
      lastName: pick(LAST),
      email: `bench.${Math.floor(rand() * 1e9)}@example.com`,
    }[field];
    return { kind: `user PATCH ${field}`, table: "users", method: "PATCH", path: `/v1/users/${id}`, json: { [field]: value } };
  }
  if (roll < 0.55 || (roll < 0.65 && state.created.length === 0)) {
    const id = `${100 + Math.floor(rand() * 900)}-b${Math.floor(rand() * 100)}`;
    state.created.push(id);
    const first = pick(FIRST);
    const last = pick(LAST);
    return {
      kind: "user insert",
      table: "users",
      method: "POST",
      path: "/v1/users",
      json: { id, firstName: first, lastName: last, email: `${id}@example.com`, age: 18 + Math.floor(rand() * 60), city: pick(CITIES) },
    };
  }
  if (roll < 0.65) {
    // Only users the run created: they have no orders to orphan.
    const id = state.created.splice(Math.floor(rand() * state.created.length), 1)[0];
    return { kind: "user delete", table: "users", method: "DELETE", path: `/v1/users/${id}` };
  }
  if (roll < 0.8) {
    const quantity = 1 + Math.floor(rand() * 4);
    return {
      kind: "order insert",
      table: "orders",
      method: "POST",
      path: "/v1/orders",
      json: { userId: pick(state.userIds), item: "keyboard", quantity, totalCents: quantity * (500 + Math.floor(rand() * 20000)), status: "placed" },
    };
  }
  const order = pick(rand() < 0.5 ? state.hotOrders : state.orderIds);
  return { kind: "order PATCH status", table: "orders", method: "PATCH", path: `/v1/orders/${order}`, json: { status: pick(STATUS) } };
}

/** Reads every key through the truth tenant (origin reads): path → body text. */
async function truth(ctx, keys) {
  const bodies = new Map();
  for (const { path } of keys) {
    const a = expectStatus(await ctx.anon.get(`/t/${TRUTH_TENANT}${path}`), 200, `GET (truth) ${path}`);
    if (a.headers["x-edgecache"] !== "BYPASS") throw new Error(`GET (truth) ${path}: ${a.headers["x-edgecache"]}, not BYPASS`);
    bodies.set(path, a.text);
  }
  return bodies;
}

/** Reads every key through the cache until it is an L1 hit (so it is registered); the paths that MISSed. */
async function warm(ctx, keys, token) {
  const misses = [];
  const bodies = new Map();
  for (const { path } of keys) {
    const headers = token ? { "x-edgecache-min-seq": token } : {};
    for (let attempt = 0; ; attempt++) {
      const a = expectStatus(await ctx.http.get(path, { headers }), 200, `GET ${path}`);
      const outcome = a.headers["x-edgecache"];
      if (outcome === "MISS") misses.push(path);
      if (!bodies.has(path)) bodies.set(path, a.text);
      if (outcome === "HIT-L1") break;
      if (attempt === 5) throw new Error(`GET ${path} never became an L1 hit (last: ${outcome})`);
    }
  }
  return { misses, bodies };
}

/** The default tenant's coordinators' counters, summed over `tables`. */
async function coordinatorCounters(ctx, tables) {
  const a = expectStatus(await ctx.admin.get("/_edgecache/stats"), 200, "stats");
  const c = a.json().coordinators ?? {};
  const sum = { pending: 0, refills: 0, writtenThrough: 0, patched: 0 };
  for (const t of tables) {
    sum.pending += c[t]?.pending_rehydrates ?? 0;
    sum.refills += c[t]?.refills ?? 0;
    sum.writtenThrough += c[t]?.written_through ?? 0;
    sum.patched += c[t]?.patched ?? 0;
  }
  return sum;
}

/** Waits until the coordinators' refill queues are empty (at most 10 s); their counters then. */
async function settled(ctx, tables) {
  const until = Date.now() + 10_000;
  for (;;) {
    const c = await coordinatorCounters(ctx, tables);
    if (c.pending === 0 || Date.now() > until) return c;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Whether the write with token `table=seq` invalidated `path`, or null if it was not registered. */
async function invalidatedBy(ctx, path, table, seq) {
  const a = expectStatus(await ctx.admin.get(`/_edgecache/deps?url=${encodeURIComponent(path)}`), 200, `deps ${path}`);
  const at = a.json().coordinators?.[table];
  if (at?.last_invalidated?.seq === seq) return true;
  return at?.registered_stamp != null ? false : null;
}

/**
 * Runs `ctx.writes` writes of the mix against a fresh worker and prints the table.
 * ctx: { http (writer on the default tenant), anon, admin, out, writes, seed }.
 */
export async function precisionTable(ctx) {
  const { out } = ctx;
  const created = await ctx.admin.post("/_edgecache/admin/tenants", {
    json: { name: TRUTH_TENANT, origin: { kind: "d1" }, views: { usersWithOrders: ["users", "orders"] } },
  });
  expectStatus(created, 201, "creating the truth tenant");
  expectStatus(
    await ctx.admin.put(`/_edgecache/admin/tenants/${TRUTH_TENANT}/rules`, { json: { pattern: "/v1/*", no_store: true } }),
    200,
    "the truth tenant's rule",
  );
  const userIds = expectStatus(await ctx.anon.get(`/t/${TRUTH_TENANT}/v1/users?limit=1000`), 200, "users").json().data.map((u) => u.id);
  const orderIds = expectStatus(await ctx.anon.get(`/t/${TRUTH_TENANT}/v1/orders?limit=1000`), 200, "orders").json().data.map((o) => o.id);
  const rand = rng(ctx.seed);
  const sample = (xs, n) => {
    const copy = [...xs];
    return Array.from({ length: n }, () => copy.splice(Math.floor(rand() * copy.length), 1)[0]);
  };
  const keys = keySet(userIds, orderIds, sample);
  const tableOf = (path) => path.split("/")[2].split("?")[0];
  await warm(ctx, keys, null);
  let before = await truth(ctx, keys);

  const idsOf = (table) => keys.filter((k) => k.kind === "point" && tableOf(k.path) === table).map((k) => k.path.split("/")[3]);
  const state = { userIds, orderIds, hotUsers: idsOf("users"), hotOrders: idsOf("orders"), created: [] };
  const VIEW = "join view";
  const rows = new Map(); // write kind → counters, over the table keys
  const byKeyKind = new Map(); // key kind → counters
  const counter = () => ({ writes: 0, changed: 0, invalidated: 0, hit: 0, keys: 0, misses: 0, refills: 0, avoided: 0, patched: 0 });
  const TABLES = ["users", "orders"];
  let counters = await settled(ctx, TABLES);
  const anomalies = [];
  let servedEqual = 0;
  let served = 0;
  for (let i = 0; i < ctx.writes; i++) {
    const w = nextWrite(rand, state);
    const a = await ctx.http[w.method.toLowerCase()](w.path, w.json ? { json: w.json } : {});
    if (a.status >= 300) throw new Error(`${w.method} ${w.path}: ${a.status} ${a.text.slice(0, 200)}`);
    const token = a.headers["x-edgecache-seq"];
    const seq = Number(/^\w+=(\d+)$/.exec(token ?? "")?.[1]);
    const after = await truth(ctx, keys);
    const row = rows.get(w.kind) ?? counter();
    rows.set(w.kind, row);
    row.writes++;
    for (const { kind, path } of keys) {
      // A key of the other table cannot be touched by this write (the view reads both).
      if (kind !== VIEW && tableOf(path) !== w.table) continue;
      const changed = before.get(path) !== after.get(path);
      const invalidated = await invalidatedBy(ctx, path, w.table, seq);
      if (invalidated === null) {
        anomalies.push(`${path} was not registered at write ${i + 1}`);
        continue;
      }
      if (process.env.BENCH_PRECISION_DEBUG && invalidated && !changed) console.error(`FP ${w.method} ${w.path} ${JSON.stringify(w.json)} -> ${path}`);
      const k = byKeyKind.get(kind) ?? counter();
      byKeyKind.set(kind, k);
      for (const c of [row, k]) {
        c.keys++;
        c.changed += changed ? 1 : 0;
        c.invalidated += invalidated ? 1 : 0;
        c.hit += changed && invalidated ? 1 : 0;
      }
    }
    // The refills the write queued (and the page patches it made) are done before the re-read.
    const now = await settled(ctx, TABLES);
    row.refills += now.refills - counters.refills;
    row.avoided += now.writtenThrough - counters.writtenThrough + now.patched - counters.patched;
    row.patched += now.patched - counters.patched;
    counters = now;
    const reread = await warm(ctx, keys, token);
    row.misses += reread.misses.length;
    const view = byKeyKind.get(VIEW) ?? counter();
    byKeyKind.set(VIEW, view);
    view.writes++;
    for (const { path } of keys) {
      served++;
      if (reread.bodies.get(path) === after.get(path)) servedEqual++;
      else anomalies.push(`after write ${i + 1} (${w.method} ${w.path}) the cache served ${path} unlike the origin`);
    }
    before = after;
  }

  const sum = (counters) =>
    [...counters].reduce(
      (t, c) => Object.fromEntries(Object.keys(t).map((f) => [f, t[f] + c[f]])),
      counter(),
    );
  const viewKeys = keys.filter((k) => k.kind === VIEW).length;
  out(
    `Invalidation precision (a fresh worker; ${keys.length - viewKeys} cached table keys and ${viewKeys} of the join view, ` +
      `${ctx.writes} seeded writes; ground truth from the origin before and after each write)`,
  );
  const t = [["write kind", "writes", "changed", "invalidated", "precision", "recall", "origin reads / write", "refills avoided / write", "whole-table precision"]];
  const perWrite = (n, c) => (c.writes ? (n / c.writes).toFixed(1) : "");
  const line = (name, c, writes = true) => [
    name,
    writes ? int(c.writes) : "",
    int(c.changed),
    int(c.invalidated),
    pct(c.hit, c.invalidated),
    pct(c.hit, c.changed),
    writes ? perWrite(c.refills + c.misses, c) : "",
    writes ? perWrite(c.avoided, c) : "",
    pct(c.changed, c.keys),
  ];
  for (const [kind, c] of [...rows].sort()) t.push(line(kind, c));
  const all = sum(rows.values());
  t.push(line("all writes", all));
  out(table(t));
  out();
  const k = [["key kind", "", "changed", "invalidated", "precision", "recall", "", "", "whole-table precision"]];
  for (const [kind, c] of [...byKeyKind].sort()) k.push(line(kind, c, false));
  out(table(k));
  const view = byKeyKind.get(VIEW) ?? counter();
  const tables = { hit: all.hit - view.hit, changed: all.changed - view.changed, invalidated: all.invalidated - view.invalidated };
  out(
    `  precision ${pct(all.hit, all.invalidated)} with recall ${pct(all.hit, all.changed)}, the join view's keys counted ` +
      `(goal ≥ 90% with recall 100%); table keys alone ${pct(tables.hit, tables.invalidated)} (recall ${pct(tables.hit, tables.changed)}), ` +
      `view keys alone ${pct(view.hit, view.invalidated)} (recall ${pct(view.hit, view.changed)}).`,
  );
  out(
    `  refills avoided: ${int(all.avoided)} in all, no origin read each: ${int(all.avoided - all.patched)} record copies rebuilt ` +
      `from the after image and ${int(all.patched)} list pages patched in place; origin reads: ${int(all.refills)} refills and ` +
      `${int(all.misses)} read misses.`,
  );
  out(`  cache reads after each write equal to the origin's: ${int(servedEqual)}/${int(served)}`);
  out(
    `  "origin reads / write": the coordinators' refills after the write plus the MISSes of re-reading every key through ` +
      `the cache once the refills are done (a view key too is refilled, by the coordinator that invalidated it); "refills avoided / write": ` +
      `copies rebuilt or patched from the write's after image; "whole-table precision": changed / keys the write could touch, ` +
      `what invalidating all of them would score.`,
  );
  for (const a of anomalies.slice(0, 10)) out(`  (!) ${a}`);
  if (anomalies.length > 10) out(`  (!) … and ${anomalies.length - 10} more`);
  out();
  return { all, view, anomalies };
}

/** The filter and query string of each kind of page `pages` registers. */
const PAGE_KINDS = {
  // No filter: indexed by where the page lies in the list's order.
  plain: { filters: [], query: "" },
  // A prefix filter: indexed by the prefix.
  prefix: { filters: [{ prefix: { column: "lastName", prefix: "zz" } }], query: "lastName=zz*&" },
  // An equality on a value with a '.' (it could be a REAL's text, which a JSON integer may
  // hide, so it is not indexed): planned for every write.
  scanned: { filters: [{ eq: { column: "lastName", value: "zz.zz" } }], query: "lastName=zz.zz&" },
};

/**
 * Registrations of `count` full pages of 10 rows, pages from..from+count-1, of a list on
 * users of one of `PAGE_KINDS`. Their rows (ids `zz-…`) sort after every seeded user, so a
 * PATCH of a seeded user changes none of them.
 */
function pages(kind, from, count) {
  const { filters, query } = PAGE_KINDS[kind];
  return Array.from({ length: count }, (_, i) => {
    const k = from + i;
    const id = (n) => `zz-${String(n).padStart(7, "0")}`;
    const offset = 10 * k;
    const route = `/v1/users?${query}limit=10&offset=${offset}`;
    return {
      key: `local:${route}`,
      dependent: {
        kind: "list",
        query: { filters, order: null, limit: 10, offset },
        window: { full: true, empty: false, first: { id: id(offset) }, last: { id: id(offset + 9) } },
      },
      records: [],
      tables: ["users"],
      route,
      rehydrate: false,
      ttl_secs: 86_400,
    };
  });
}

/**
 * Write cost against the number of cached pages of lists without an equality filter, on a
 * fresh worker: the median (min–max) of `reps` PATCHes of one user with 10 plain pages
 * registered, with 10,000, with 10,000 prefix pages added, and with 10,000 pages no index
 * holds added (what every write loaded before lists were indexed by bounds and prefixes).
 */
export async function boundedWriteTable(ctx) {
  const { out } = ctx;
  const reps = ctx.reps;
  const home = "123-abc";
  let age = 30;
  // A fresh worker's first writes run cold code: warm the whole path first.
  for (let i = 0; i < 20; i++) await patch(ctx, home, age++);
  const measure = async () => {
    const times = [];
    for (let i = 0; i < reps; i++) times.push((await patch(ctx, home, age++ % 60 + 18)).ms);
    return times;
  };
  const anomalies = [];
  const check = async (expected) => {
    const keys = await totalKeys(ctx);
    if (keys !== null && keys !== expected) anomalies.push(`expected ${int(expected)} keys registered, found ${int(keys)}`);
  };
  const rows = [];
  await register(ctx, pages("plain", 0, 10));
  await check(10);
  rows.push(["10 plain pages", await measure()]);
  await register(ctx, pages("plain", 10, 9_990));
  await check(10_000);
  rows.push(["10,000 plain pages", await measure()]);
  await register(ctx, pages("prefix", 0, 10_000));
  await check(20_000);
  rows.push(["+ 10,000 prefix pages (lastName=zz*)", await measure()]);
  await register(ctx, pages("scanned", 0, 10_000));
  await check(30_000);
  rows.push(["+ 10,000 unindexed pages (lastName=zz.zz)", await measure()]);
  await check(30_000);

  out(`Write cost with many cached list pages (a fresh worker): PATCH of one user, median (min–max) of ${reps}`);
  const span = (xs) => `${ms(median(xs))} (${ms(Math.min(...xs))}–${ms(Math.max(...xs))})`;
  const t = [["cached pages of users (none showing the user)", "PATCH latency"]];
  for (const [name, times] of rows) t.push([name, span(times)]);
  out(table(t));
  const [ten, many, prefix, scanned] = rows.map(([, times]) => median(times));
  out(
    `  10,000 vs 10 plain pages: ${ratio(many / ten)}; with 10,000 prefix pages too: ${ratio(prefix / ten)}. ` +
      `Plain pages are indexed by their bounds (a PATCH loads only pages its row can land in, shift or extend), ` +
      `prefix lists by their prefix. Pages no index holds are loaded and planned by every write: ` +
      `${ratio(scanned / ten)} with 10,000 of them, what every plain page cost before.`,
  );
  for (const a of anomalies) out(`  (!) ${a}`);
  out();
  return { rows, anomalies };
}
