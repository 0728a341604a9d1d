// The peer benchmark's origin: a JSON REST API over SQLite (sql.js, SQLite compiled to wasm: the
// installed Node has no node:sqlite), one table `items` whose rows carry a `version` that every
// write increments. Every system in the peer benchmark is put in front of this one server.
//
//   GET   /v1/items/<id>                 {"data": {id, name, version}}     xkey: items:<id>
//   GET   /v1/items?limit=L&offset=O     {"data": [rows by id]}            xkey: items items:<id>…
//   PATCH /v1/items/<id>  {"name": …}    {"data": row}, version + 1
//   GET   /_origin/stats                 {"reads", "writes"} (not counted)
//
// Responses carry no Cache-Control: each system's own configuration decides the TTL. The `xkey`
// header (record keys on every response, the table key on lists) is what Varnish's xkey module
// indexes; the other systems ignore it.
//
//   node bench/lib/origin.mjs <rows>     prints {"port": P} on stdout once it listens on 127.0.0.1

import http from "node:http";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const initSqlJs = require("sql.js");

const rows = Number(process.argv[2] ?? 1000);
const SQL = await initSqlJs();
const db = new SQL.Database();
db.run("CREATE TABLE items (id TEXT PRIMARY KEY, name TEXT NOT NULL, version INTEGER NOT NULL)");
db.run("BEGIN");
const insert = db.prepare("INSERT INTO items (id, name, version) VALUES (?, ?, 1)");
for (let i = 0; i < rows; i++) insert.run([itemId(i), `item ${i}`]);
insert.free();
db.run("COMMIT");

/** Ids sort the same as their numbers, so list pages are stable. */
function itemId(i) {
  return `i${String(i).padStart(5, "0")}`;
}

const one = db.prepare("SELECT id, name, version FROM items WHERE id = ?");
const page = db.prepare("SELECT id, name, version FROM items ORDER BY id LIMIT ? OFFSET ?");
const update = db.prepare("UPDATE items SET name = ?, version = version + 1 WHERE id = ?");

function all(stmt, params) {
  stmt.bind(params);
  const out = [];
  while (stmt.step()) out.push(stmt.getAsObject());
  stmt.reset();
  return out;
}

const counts = { reads: 0, writes: 0 };

function answer(res, status, body, extra = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...extra });
  res.end(text);
}

const notFound = (res) => answer(res, 404, { error: { code: "not_found", message: "no such item" } });

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://origin");
  if (url.pathname === "/_origin/stats") return answer(res, 200, counts);
  const m = /^\/v1\/items(?:\/([^/]+))?$/.exec(url.pathname);
  if (!m) return notFound(res);
  const id = m[1] && decodeURIComponent(m[1]);
  if (req.method === "GET" || req.method === "HEAD") {
    counts.reads++;
    if (id) {
      const [row] = all(one, [id]);
      return row ? answer(res, 200, { data: row }, { xkey: `items:${id}` }) : notFound(res);
    }
    const limit = Math.min(1000, Math.max(1, Number(url.searchParams.get("limit") ?? 10)));
    const offset = Math.max(0, Number(url.searchParams.get("offset") ?? 0));
    const data = all(page, [limit, offset]);
    return answer(res, 200, { data }, { xkey: ["items", ...data.map((r) => `items:${r.id}`)].join(" ") });
  }
  if (req.method === "PATCH" && id) {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      counts.writes++;
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        return answer(res, 400, { error: { code: "bad_body", message: "not JSON" } });
      }
      if (typeof body?.name !== "string") return answer(res, 400, { error: { code: "bad_body", message: "name" } });
      update.run([body.name, id]);
      const [row] = all(one, [id]);
      return row ? answer(res, 200, { data: row }) : notFound(res);
    });
    return;
  }
  answer(res, 405, { error: { code: "method_not_allowed", message: req.method } });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port, rows }) + "\n");
});
