-- The demo origin: users and their orders, and a view joining them.
CREATE TABLE users (
  id TEXT PRIMARY KEY NOT NULL,
  firstName TEXT NOT NULL,
  lastName TEXT NOT NULL,
  email TEXT NOT NULL,
  age INTEGER,
  city TEXT,
  createdAt TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

CREATE TABLE orders (
  id TEXT PRIMARY KEY NOT NULL,
  userId TEXT NOT NULL REFERENCES users(id),
  item TEXT NOT NULL,
  quantity INTEGER NOT NULL DEFAULT 1,
  totalCents INTEGER NOT NULL,
  status TEXT NOT NULL DEFAULT 'placed',
  createdAt TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

CREATE INDEX orders_user ON orders(userId);

CREATE VIEW usersWithOrders AS
SELECT u.id AS id, u.firstName AS firstName, u.lastName AS lastName, u.email AS email,
       COUNT(o.id) AS orderCount, COALESCE(SUM(o.totalCents), 0) AS totalCents
FROM users u LEFT JOIN orders o ON o.userId = u.id
GROUP BY u.id;
