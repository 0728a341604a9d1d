// The learning benchmark's origin: a shop API over SQLite (sql.js) that EdgeCache is told
// nothing about beyond its table names. Placing an order bumps the user's `orderCount` (a side
// effect on another table), and lists take filters, a limit and an offset EdgeCache cannot
// evaluate.
//
//   GET   /v1/users/<id>                                 {"data": {id, name, city, orderCount}}
//   GET   /v1/users?city=&limit=&offset=                 {"data": [users by id]}
//   GET   /v1/orders/<id>                                {"data": {id, userId, status, qty}}
//   GET   /v1/orders?userId=&status=&limit=&offset=      {"data": [orders by id]}
//   POST  /v1/orders {id, userId, qty}                   201, status "placed", user's orderCount + 1
//   PATCH /v1/orders/<id> {status}                       200
//
// `counts()` says how many reads and writes it answered; a request with `x-ground-truth: 1`
// (the benchmark's own refetches) is not counted.

import http from "node:http";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const initSqlJs = require("sql.js");

export const CITIES = ["Lisbon", "Osaka", "Lima", "Oslo"];

/** Starts the shop with `users` users on a free port: { url, counts(), close() }. */
export async function startShop(users) {
  const SQL = await initSqlJs();
  const db = new SQL.Database();
  db.run("CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT, city TEXT, orderCount INTEGER NOT NULL)");
  db.run("CREATE TABLE orders (id TEXT PRIMARY KEY, userId TEXT NOT NULL, status TEXT NOT NULL, qty INTEGER NOT NULL)");
  for (let i = 0; i < users; i++) {
    db.run("INSERT INTO users VALUES (?, ?, ?, 0)", [userId(i), `user ${i}`, CITIES[i % CITIES.length]]);
  }
  const rows = (sql, params) => {
    const stmt = db.prepare(sql);
    stmt.bind(params);
    const out = [];
    while (stmt.step()) out.push(stmt.getAsObject());
    stmt.free();
    return out;
  };
  const counts = { reads: 0, writes: 0 };

  const answer = (res, status, body) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
  };
  const notFound = (res) => answer(res, 404, { error: { code: "not_found", message: "no such record" } });

  function list(table, url, filters) {
    const where = [];
    const params = [];
    for (const f of filters) {
      const v = url.searchParams.get(f);
      if (v !== null) {
        where.push(`${f} = ?`);
        params.push(v);
      }
    }
    const limit = Math.min(100, Math.max(1, Number(url.searchParams.get("limit") ?? 10)));
    const offset = Math.max(0, Number(url.searchParams.get("offset") ?? 0));
    const clause = where.length ? `WHERE ${where.join(" AND ")}` : "";
    return rows(`SELECT * FROM ${table} ${clause} ORDER BY id LIMIT ? OFFSET ?`, [...params, limit, offset]);
  }

  function serve(req, res, body) {
    const url = new URL(req.url, "http://shop");
    const truth = req.headers["x-ground-truth"] === "1";
    const m = /^\/v1\/(users|orders)(?:\/([^/]+))?$/.exec(url.pathname);
    if (!m) return notFound(res);
    const [, table, id] = m;
    if (req.method === "GET") {
      if (!truth) counts.reads++;
      if (id) {
        const [row] = rows(`SELECT * FROM ${table} WHERE id = ?`, [decodeURIComponent(id)]);
        return row ? answer(res, 200, { data: row }) : notFound(res);
      }
      const filters = table === "users" ? ["city"] : ["userId", "status"];
      return answer(res, 200, { data: list(table, url, filters) });
    }
    counts.writes++;
    let input;
    try {
      input = JSON.parse(body || "{}");
    } catch {
      return answer(res, 400, { error: { code: "bad_body", message: "not JSON" } });
    }
    if (req.method === "POST" && table === "orders" && !id) {
      db.run("INSERT INTO orders VALUES (?, ?, 'placed', ?)", [input.id, input.userId, input.qty ?? 1]);
      // The side effect EdgeCache is not told about.
      db.run("UPDATE users SET orderCount = orderCount + 1 WHERE id = ?", [input.userId]);
      const [row] = rows("SELECT * FROM orders WHERE id = ?", [input.id]);
      return answer(res, 201, { data: row });
    }
    if (req.method === "PATCH" && table === "orders" && id) {
      db.run("UPDATE orders SET status = ? WHERE id = ?", [input.status, id]);
      const [row] = rows("SELECT * FROM orders WHERE id = ?", [id]);
      return row ? answer(res, 200, { data: row }) : notFound(res);
    }
    return answer(res, 405, { error: { code: "method_not_allowed", message: req.method } });
  }

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => serve(req, res, Buffer.concat(chunks).toString("utf8")));
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    counts: () => ({ ...counts }),
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** The id of the i-th user. */
export function userId(i) {
  return `u${String(i).padStart(3, "0")}`;
}
