-- The website's live demo: a small sandbox table that only the demo tenant can name (tables named
-- demo_* are its whole catalogue, and no other tenant's), and the seed that a reset copies back
-- (tables named edgecache_* are EdgeCache's own and visible to no tenant).
CREATE TABLE demo_users (
  id TEXT PRIMARY KEY NOT NULL,
  name TEXT NOT NULL,
  city TEXT NOT NULL,
  plan TEXT NOT NULL DEFAULT 'free'
);

CREATE TABLE edgecache_demo_seed (
  id TEXT PRIMARY KEY NOT NULL,
  name TEXT NOT NULL,
  city TEXT NOT NULL,
  plan TEXT NOT NULL DEFAULT 'free'
);

INSERT INTO edgecache_demo_seed (id, name, city, plan) VALUES
  ('u1', 'Ada', 'Lisbon', 'pro'),
  ('u2', 'Grace', 'Osaka', 'free'),
  ('u3', 'Alan', 'Lisbon', 'free'),
  ('u4', 'Barbara', 'Lima', 'pro'),
  ('u5', 'Edsger', 'Osaka', 'free'),
  ('u6', 'Margaret', 'Lima', 'team');

INSERT INTO demo_users SELECT id, name, city, plan FROM edgecache_demo_seed;

-- Beta sign-ups from the website: one row per normalised address, repeated sign-ups merged.
CREATE TABLE edgecache_beta_signups (
  email TEXT PRIMARY KEY NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  count INTEGER NOT NULL DEFAULT 1
);
