// Writes the demo dataset as SQL to stdout. Deterministic: the same bytes on every run, so test
// expectations and benchmark inputs never drift.
const USERS = 1000;
const ORDERS = 5000;

// mulberry32: a tiny seeded PRNG, enough for demo data.
let state = 0x5eed1234;
function rand() {
  state = (state + 0x6d2b79f5) | 0;
  let t = Math.imul(state ^ (state >>> 15), 1 | state);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (xs) => xs[Math.floor(rand() * xs.length)];

const FIRST = ["Ada", "Bob", "Cleo", "Dev", "Eve", "Finn", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lane", "Mia", "Noor", "Otto", "Pia"];
const LAST = ["Lovelace", "Hopper", "Turing", "Liskov", "Knuth", "Ritchie", "Thompson", "Hamilton", "Allen", "Dijkstra"];
const CITIES = ["Lisbon", "Osaka", "Austin", "Nairobi", "Oslo", "Lima", "Perth", "Quebec"];
const ITEMS = ["keyboard", "mouse", "monitor", "cable", "laptop stand", "headphones", "webcam", "desk lamp"];
const STATUS = ["placed", "shipped", "delivered", "returned"];
const LETTERS = "abcdefghijklmnopqrstuvwxyz";

const q = (s) => (typeof s === "number" ? String(s) : `'${String(s).replace(/'/g, "''")}'`);
const out = [];
const ids = new Set(["123-abc"]);
const users = [["123-abc", "Lane", "Hopper", "lane@example.com", 34, "Lisbon"]];
while (users.length < USERS) {
  const id = `${100 + Math.floor(rand() * 900)}-${pick(LETTERS)}${pick(LETTERS)}${pick(LETTERS)}`;
  if (ids.has(id)) continue;
  ids.add(id);
  const first = pick(FIRST);
  const last = pick(LAST);
  users.push([id, first, last, `${first}.${last}.${users.length}@example.com`.toLowerCase(), 18 + Math.floor(rand() * 60), pick(CITIES)]);
}
const day = (n) => new Date(Date.UTC(2026, 0, 1) + n * 3600_000).toISOString().replace(/\.\d+Z$/, "Z");
for (let i = 0; i < users.length; i += 100) {
  const rows = users.slice(i, i + 100).map((u, j) => `(${u.map(q).join(", ")}, ${q(day(i + j))})`);
  out.push(`INSERT INTO users (id, firstName, lastName, email, age, city, createdAt) VALUES\n${rows.join(",\n")};`);
}
const userIds = users.map((u) => u[0]);
for (let i = 0; i < ORDERS; i += 250) {
  const rows = [];
  for (let k = i; k < Math.min(i + 250, ORDERS); k++) {
    const qty = 1 + Math.floor(rand() * 4);
    rows.push(`(${q(`o-${String(k + 1).padStart(5, "0")}`)}, ${q(pick(userIds))}, ${q(pick(ITEMS))}, ${qty}, ${qty * (500 + Math.floor(rand() * 20000))}, ${q(pick(STATUS))}, ${q(day(k))})`);
  }
  out.push(`INSERT INTO orders (id, userId, item, quantity, totalCents, status, createdAt) VALUES\n${rows.join(",\n")};`);
}
process.stdout.write(out.join("\n") + "\n");
