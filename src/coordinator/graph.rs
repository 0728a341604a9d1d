//! A coordinator's storage: the table's seq, its dependency graph, the bounded logs of writes and
//! invalidations, pending write intents and the rehydrate queue, all in the object's SQLite
//! (any [`Store`]: natively tested on an in-memory one). Every method is synchronous: statements with no `.await` between them are atomic, which is
//! what keeps planning, logging and bumping the seq one indivisible step.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::store::{Param, Store, StoreError};
use edgecache_core::freshness::ALL_KEYS;
use edgecache_core::key::CacheKey;
use edgecache_core::planner::{
    list_bound_order, list_index_term, list_prefix_term, order_of_bound, page_bounds,
    row_prefix_terms, sort_key, InvalidationReason, ListDependent, PageBounds, ViewDependent,
    ViewRead, WriteImages,
};
use edgecache_core::protocol::{Changes, Dependent, Registration, SparedKey};
use edgecache_core::Row;

/// Storage layout version; bump it with a new step in `migrate`.
const SCHEMA_VERSION: i64 = 4;
/// SQLite in Durable Objects takes at most 100 bound parameters per statement.
const MAX_PARAMS: usize = 90;

type Result<T> = std::result::Result<T, StoreError>;

/// The coordinator's SQLite storage, over the object's own (`Graph<SqlStorage>`) or a test one.
pub struct Graph<S> {
    sql: S,
    /// When the handle was opened: the time a seq bumped through it is recorded at (handles
    /// live for one synchronous step).
    now_ms: u64,
}

#[derive(Deserialize)]
struct One<T> {
    v: T,
}

#[derive(Deserialize)]
struct KeyRow {
    key: String,
}

#[derive(Deserialize)]
struct KindRow {
    key: String,
    kind: String,
}

#[derive(Deserialize)]
struct NameRow {
    name: String,
}

#[derive(Deserialize)]
struct RegRow {
    reg: String,
}

#[derive(Deserialize)]
struct WriteRow {
    seq: f64,
    record: String,
    before: Option<String>,
    after: Option<String>,
}

#[derive(Deserialize)]
struct TimeRow {
    seq: f64,
    at_ms: f64,
}

#[derive(Deserialize)]
struct InvalRow {
    key: String,
    seq: f64,
    reason: String,
}

/// What a write of the table is planned against besides its record's keys.
#[derive(Debug, Default)]
pub struct Candidates {
    /// Lists of the table.
    pub lists: Vec<ListDependent>,
    /// Responses of views that read the table.
    pub views: Vec<ViewDependent>,
    /// Entries the planner cannot reason about.
    pub opaque: Vec<CacheKey>,
}

/// A key waiting to be refilled.
#[derive(Debug, Clone, Deserialize)]
pub struct RehydrateItem {
    /// The key.
    pub key: String,
    /// TTL of the refilled copy.
    pub ttl_secs: f64,
    /// Failed attempts so far.
    pub attempts: f64,
}

fn int(v: u64) -> Param {
    Param::from(v)
}

fn text(v: &str) -> Param {
    Param::from(v)
}

impl<S: Store> Graph<S> {
    /// Opens the storage; with `migrate`, creates or migrates its tables first. `now_ms` seeds
    /// a new table's seq (see `edgecache_core::freshness`).
    pub fn open(sql: S, now_ms: u64, migrate: bool) -> Result<Graph<S>> {
        let g = Graph { sql, now_ms };
        if migrate {
            g.migrate(now_ms)?;
        }
        Ok(g)
    }

    fn exec(&self, query: &str, args: Vec<Param>) -> Result<()> {
        self.sql.run(query, args)
    }

    fn rows<T: DeserializeOwned>(&self, query: &str, args: Vec<Param>) -> Result<Vec<T>> {
        self.sql.exec(query, args)
    }

    fn meta(&self, name: &str) -> Result<Option<f64>> {
        let rows: Vec<One<f64>> = self.rows("SELECT v FROM meta WHERE k = ?", vec![text(name)])?;
        Ok(rows.first().map(|r| r.v))
    }

    fn set_meta(&self, name: &str, value: u64) -> Result<()> {
        self.exec(
            "INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
            vec![text(name), int(value)],
        )
    }

    fn migrate(&self, now_ms: u64) -> Result<()> {
        self.exec(
            "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v REAL NOT NULL)",
            vec![],
        )?;
        let version = self.meta("schema_version")?.unwrap_or(0.0) as i64;
        if version < 1 {
            for ddl in [
                "CREATE TABLE entries (key TEXT PRIMARY KEY, stamp INTEGER NOT NULL, kind TEXT NOT NULL, reg TEXT NOT NULL)",
                "CREATE TABLE entry_records (record TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (record, key))",
                "CREATE INDEX entry_records_by_key ON entry_records (key)",
                "CREATE TABLE list_terms (col TEXT NOT NULL, val TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (col, val, key))",
                "CREATE INDEX list_terms_by_key ON list_terms (key)",
                "CREATE TABLE list_scan (key TEXT PRIMARY KEY)",
                "CREATE TABLE writes (seq INTEGER PRIMARY KEY, record TEXT NOT NULL, before TEXT, after TEXT)",
                "CREATE INDEX writes_by_record ON writes (record)",
                "CREATE TABLE invalidations (key TEXT PRIMARY KEY, seq INTEGER NOT NULL, reason TEXT NOT NULL)",
                "CREATE INDEX invalidations_by_seq ON invalidations (seq)",
                "CREATE TABLE intents (id INTEGER PRIMARY KEY, record TEXT NOT NULL)",
                "CREATE TABLE rehydrate (key TEXT PRIMARY KEY, ttl_secs INTEGER NOT NULL, attempts INTEGER NOT NULL, due INTEGER NOT NULL)",
            ] {
                self.exec(ddl, vec![])?;
            }
            // A new coordinator's seq starts at its birth time, above anything a predecessor
            // with wiped storage could have stamped.
            self.set_meta("seq", now_ms)?;
            self.set_meta("floor", now_ms)?;
            self.set_meta("writes_floor", now_ms)?;
        }
        if version < 2 {
            // The object's own name: an instance woken by an alarm is not told it.
            self.exec("CREATE TABLE identity (name TEXT NOT NULL)", vec![])?;
        }
        if version < 3 {
            // When each seq was recorded, for the invalidation lag edges measure.
            self.exec(
                "CREATE TABLE seq_times (seq INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL)",
                vec![],
            )?;
        }
        if version < 4 {
            // Lists without filters, by where their pages lie in their order (`page_bounds`),
            // and lists with a prefix filter but no equality term, by that prefix; those
            // registered before stay in `list_scan`, planned for every write as before.
            for ddl in [
                "CREATE TABLE list_bounds (key TEXT PRIMARY KEY, ord TEXT NOT NULL, state TEXT NOT NULL, lo TEXT, hi TEXT)",
                "CREATE INDEX list_bounds_lo ON list_bounds (ord, lo, hi)",
                "CREATE INDEX list_bounds_hi ON list_bounds (ord, hi)",
                "CREATE INDEX list_bounds_state ON list_bounds (ord, state)",
                "CREATE TABLE list_bound_orders (ord TEXT PRIMARY KEY)",
                "CREATE TABLE list_prefixes (col TEXT NOT NULL, prefix TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (col, prefix, key))",
                "CREATE INDEX list_prefixes_by_key ON list_prefixes (key)",
            ] {
                self.exec(ddl, vec![])?;
            }
        }
        if version < SCHEMA_VERSION {
            self.set_meta("schema_version", SCHEMA_VERSION as u64)?;
        }
        Ok(())
    }

    /// The object's name as first recorded.
    pub fn name(&self) -> Result<Option<String>> {
        let rows: Vec<NameRow> = self.rows("SELECT name FROM identity LIMIT 1", vec![])?;
        Ok(rows.into_iter().next().map(|r| r.name))
    }

    /// Records the object's name.
    pub fn set_name(&self, name: &str) -> Result<()> {
        self.exec("DELETE FROM identity", vec![])?;
        self.exec("INSERT INTO identity (name) VALUES (?)", vec![text(name)])
    }

    /// The table's seq.
    pub fn seq(&self) -> Result<u64> {
        Ok(self.meta("seq")?.unwrap_or(0.0) as u64)
    }

    /// Bumps and returns the seq, recording when.
    pub fn bump(&self) -> Result<u64> {
        let next = self.seq()? + 1;
        self.set_meta("seq", next)?;
        self.exec(
            "INSERT OR REPLACE INTO seq_times (seq, at_ms) VALUES (?, ?)",
            vec![int(next), int(self.now_ms)],
        )?;
        Ok(next)
    }

    /// Records a write intent before the origin sees the write (invariant 6).
    pub fn begin_intent(&self, record: &str) -> Result<i64> {
        let rows: Vec<One<f64>> = self.rows(
            "INSERT INTO intents (record) VALUES (?) RETURNING id AS v",
            vec![text(record)],
        )?;
        Ok(rows.first().map(|r| r.v as i64).unwrap_or(0))
    }

    /// Drops an intent once the write is recorded (or known not to have happened).
    pub fn end_intent(&self, id: i64) -> Result<()> {
        self.exec("DELETE FROM intents WHERE id = ?", vec![Param::from(id)])
    }

    /// Ids of the intents left by a coordinator that died mid-write.
    pub fn pending_intents(&self) -> Result<Vec<i64>> {
        let rows: Vec<One<f64>> = self.rows("SELECT id AS v FROM intents", vec![])?;
        Ok(rows.into_iter().map(|r| r.v as i64).collect())
    }

    /// Registers an entry (replacing an older registration of the same key).
    pub fn register(&self, reg: &Registration) -> Result<()> {
        self.unregister(&reg.key)?;
        let kind = reg.dependent.kind();
        let json = serde_json::to_string(reg).map_err(|e| StoreError(e.to_string()))?;
        self.exec(
            "INSERT INTO entries (key, stamp, kind, reg) VALUES (?, ?, ?, ?)",
            vec![text(&reg.key), int(reg.stamp), text(kind), text(&json)],
        )?;
        for record in &reg.records {
            self.exec(
                "INSERT OR IGNORE INTO entry_records (record, key) VALUES (?, ?)",
                vec![text(record), text(&reg.key)],
            )?;
        }
        match &reg.dependent {
            Dependent::List { query, window } => {
                match (
                    list_index_term(query),
                    list_prefix_term(query),
                    list_bound_order(query),
                ) {
                    (Some((col, val)), _, _) => self.exec(
                        "INSERT OR IGNORE INTO list_terms (col, val, key) VALUES (?, ?, ?)",
                        vec![text(&col), text(&val), text(&reg.key)],
                    )?,
                    (None, Some((col, prefix)), _) => self.exec(
                        "INSERT OR IGNORE INTO list_prefixes (col, prefix, key) VALUES (?, ?, ?)",
                        vec![text(&col), text(&prefix), text(&reg.key)],
                    )?,
                    (None, None, Some(ord)) => {
                        // Only a full page is placed by its bounds: a short, empty or unkeyed
                        // one (at most the last of its list, or a few) is planned for every
                        // write.
                        let (state, lo, hi) = match page_bounds(query, window) {
                            PageBounds::Page { lo, hi, full: true } => ("full", Some(lo), Some(hi)),
                            PageBounds::Page { full: false, .. } => ("short", None, None),
                            PageBounds::Empty => ("empty", None, None),
                            PageBounds::Unknown => ("unknown", None, None),
                        };
                        self.exec(
                            "INSERT OR IGNORE INTO list_bound_orders (ord) VALUES (?)",
                            vec![text(&ord)],
                        )?;
                        self.exec(
                            "INSERT OR REPLACE INTO list_bounds (key, ord, state, lo, hi) \
                             VALUES (?, ?, ?, ?, ?)",
                            vec![
                                text(&reg.key),
                                text(&ord),
                                text(state),
                                Param::from(lo),
                                Param::from(hi),
                            ],
                        )?
                    }
                    (None, None, None) => self.exec(
                        "INSERT OR IGNORE INTO list_scan (key) VALUES (?)",
                        vec![text(&reg.key)],
                    )?,
                }
            }
            // A view's responses are planned on the view rows read around each write.
            Dependent::View { .. } | Dependent::Opaque => self.exec(
                "INSERT OR IGNORE INTO list_scan (key) VALUES (?)",
                vec![text(&reg.key)],
            )?,
            Dependent::Record => {}
        }
        Ok(())
    }

    /// Keys beyond the `cap` most recently registered (registrations keep their insertion
    /// order in the rowid), at most `limit` of them, oldest first. Gaps left by unregistered
    /// keys only make the bound tighter.
    pub fn over_cap(&self, cap: u64, limit: usize) -> Result<Vec<String>> {
        let rows: Vec<KeyRow> = self.rows(
            "SELECT key FROM entries WHERE rowid <= (SELECT MAX(rowid) FROM entries) - ? \
             ORDER BY rowid LIMIT ?",
            vec![int(cap), int(limit as u64)],
        )?;
        Ok(rows.into_iter().map(|r| r.key).collect())
    }

    /// Forgets a key's registration.
    pub fn unregister(&self, key: &str) -> Result<()> {
        for q in [
            "DELETE FROM entries WHERE key = ?",
            "DELETE FROM entry_records WHERE key = ?",
            "DELETE FROM list_terms WHERE key = ?",
            "DELETE FROM list_scan WHERE key = ?",
            "DELETE FROM list_bounds WHERE key = ?",
            "DELETE FROM list_prefixes WHERE key = ?",
        ] {
            self.exec(q, vec![text(key)])?;
        }
        Ok(())
    }

    /// A key's registration.
    pub fn registration(&self, key: &str) -> Result<Option<Registration>> {
        let rows: Vec<RegRow> =
            self.rows("SELECT reg FROM entries WHERE key = ?", vec![text(key)])?;
        Ok(rows.first().and_then(|r| serde_json::from_str(&r.reg).ok()))
    }

    /// The first `limit` registered keys starting with `prefix`, by key, with their kind
    /// (`record`, `list`, `opaque`).
    pub fn registered(&self, prefix: &str, limit: usize) -> Result<Vec<SparedKey>> {
        let rows: Vec<KindRow> = self.rows(
            "SELECT key, kind FROM entries WHERE substr(key, 1, length(?1)) = ?1 \
             ORDER BY key LIMIT ?2",
            vec![text(prefix), int(limit as u64)],
        )?;
        Ok(rows
            .into_iter()
            .map(|r| SparedKey {
                key: r.key,
                kind: r.kind,
            })
            .collect())
    }

    /// Keys whose responses contain the record.
    pub fn keys_for_record(&self, record: &str) -> Result<Vec<String>> {
        let rows: Vec<KeyRow> = self.rows(
            "SELECT key FROM entry_records WHERE record = ?",
            vec![text(record)],
        )?;
        Ok(rows.into_iter().map(|r| r.key).collect())
    }

    /// Registered keys starting with a prefix.
    pub fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let rows: Vec<KeyRow> = self.rows(
            "SELECT key FROM entries WHERE substr(key, 1, length(?1)) = ?1",
            vec![text(prefix)],
        )?;
        Ok(rows.into_iter().map(|r| r.key).collect())
    }

    /// Lists, view responses and opaque entries a write with these images could affect: lists
    /// indexed under one of the images' `terms` or on one of the `unindexed` columns (whose
    /// text an image does not pin down), lists without filters whose pages the images can land
    /// in, shift or extend ([`Graph::bounded_candidates`]), and every other list, every view
    /// response and opaque entry (all in the scan set).
    pub fn candidates(
        &self,
        terms: &[(String, String)],
        unindexed: &[String],
        images: &WriteImages,
    ) -> Result<Candidates> {
        let mut keys: Vec<String> = Vec::new();
        for col in unindexed {
            let rows: Vec<KeyRow> =
                self.rows("SELECT key FROM list_terms WHERE col = ?", vec![text(col)])?;
            keys.extend(rows.into_iter().map(|r| r.key));
        }
        for (col, val) in terms {
            let rows: Vec<KeyRow> = self.rows(
                "SELECT key FROM list_terms WHERE col = ? AND val = ?",
                vec![text(col), text(val)],
            )?;
            keys.extend(rows.into_iter().map(|r| r.key));
        }
        let scan: Vec<KeyRow> = self.rows("SELECT key FROM list_scan", vec![])?;
        keys.extend(scan.into_iter().map(|r| r.key));
        keys.extend(self.prefixed_candidates(images)?);
        keys.extend(self.bounded_candidates(images)?);
        keys.sort();
        keys.dedup();
        let mut found = Candidates::default();
        for chunk in keys.chunks(MAX_PARAMS) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let rows: Vec<RegRow> = self.rows(
                &format!("SELECT reg FROM entries WHERE key IN ({placeholders})"),
                chunk.iter().map(|k| text(k)).collect(),
            )?;
            for row in rows {
                let Ok(reg) = serde_json::from_str::<Registration>(&row.reg) else {
                    continue;
                };
                let Ok(key) = CacheKey::parse(&reg.key) else {
                    continue;
                };
                reg.dependent
                    .plan_into(key, &mut found.lists, &mut found.views, &mut found.opaque);
            }
        }
        Ok(found)
    }

    /// The views, with this table's column bound to each one's id, that responses registered
    /// here show: the view rows a write touches are read around it for these
    /// ([`ViewRead`]). A view response without a binding for `table` needs none (stale on
    /// every write).
    pub fn view_reads(&self, table: &str) -> Result<Vec<ViewRead>> {
        let rows: Vec<RegRow> = self.rows("SELECT reg FROM entries WHERE kind = 'view'", vec![])?;
        let mut reads: Vec<ViewRead> = rows
            .iter()
            .filter_map(|row| serde_json::from_str::<Registration>(&row.reg).ok())
            .filter_map(|reg| match reg.dependent {
                Dependent::View { view, bind, .. } => bind.get(table).map(|column| ViewRead {
                    view,
                    column: column.clone(),
                }),
                _ => None,
            })
            .collect();
        reads.sort();
        reads.dedup();
        Ok(reads)
    }

    /// Lists indexed by a prefix ([`list_prefix_term`]) that an image may match: those under a
    /// prefix of one of its column texts, and every one on a column whose text it does not pin
    /// down.
    pub fn prefixed_candidates(&self, images: &WriteImages) -> Result<Vec<String>> {
        let mut terms = Vec::new();
        let mut every = Vec::new();
        for image in [&images.before, &images.after].into_iter().flatten() {
            let (t, e) = row_prefix_terms(image);
            terms.extend(t);
            every.extend(e);
        }
        terms.sort();
        terms.dedup();
        every.sort();
        every.dedup();
        let mut keys = Vec::new();
        for col in &every {
            let rows: Vec<KeyRow> = self.rows(
                "SELECT key FROM list_prefixes WHERE col = ?",
                vec![text(col)],
            )?;
            keys.extend(rows.into_iter().map(|r| r.key));
        }
        // One column at a time, so each lookup is a range of the (col, prefix) index.
        for (col, group) in terms.chunk_by(|a, b| a.0 == b.0).map(|g| (&g[0].0, g)) {
            for chunk in group.chunks(MAX_PARAMS - 1) {
                let marks = vec!["?"; chunk.len()].join(", ");
                let mut args = vec![text(col)];
                args.extend(chunk.iter().map(|(_, p)| text(p)));
                let rows: Vec<KeyRow> = self.rows(
                    &format!("SELECT key FROM list_prefixes WHERE col = ? AND prefix IN ({marks})"),
                    args,
                )?;
                keys.extend(rows.into_iter().map(|r| r.key));
            }
        }
        Ok(keys)
    }

    /// Pages of lists without filters that a write with these images may change, as
    /// `planner::list_effect` decides it, found by their bounds in each order in use: every
    /// row matches such a list, so a full page may change only if an image's key falls inside
    /// it or exactly one image sorts before it (shifting it); short, empty and unkeyed pages
    /// are always candidates. An image whose key is unknown loads the whole order. Each
    /// condition is its own query on an index of `lo` or `hi` (only full pages have them: NULL
    /// compares false).
    pub fn bounded_candidates(&self, images: &WriteImages) -> Result<Vec<String>> {
        let orders: Vec<KeyRow> = self.rows("SELECT ord AS key FROM list_bound_orders", vec![])?;
        let mut keys = Vec::new();
        let mut select = |condition: &str, args: Vec<Param>| -> Result<()> {
            let rows: Vec<KeyRow> = self.rows(
                &format!("SELECT key FROM list_bounds WHERE ord = ? AND {condition}"),
                args,
            )?;
            keys.extend(rows.into_iter().map(|r| r.key));
            Ok(())
        };
        for ord in orders.into_iter().map(|r| r.key) {
            let order = order_of_bound(&ord);
            let key = |image: &Option<Row>| {
                image
                    .as_ref()
                    .map(|row| sort_key(order.as_ref(), &images.id_column, row))
            };
            let (before, after) = match (key(&images.before), key(&images.after)) {
                (Some(None), _) | (_, Some(None)) => {
                    select("1", vec![text(&ord)])?;
                    continue;
                }
                (b, a) => (b.flatten(), a.flatten()),
            };
            select("state IN ('short', 'empty', 'unknown')", vec![text(&ord)])?;
            let present: Vec<&String> = before.iter().chain(after.iter()).collect();
            for x in &present {
                select("lo <= ? AND hi >= ?", vec![text(&ord), text(x), text(x)])?;
            }
            // Exactly one image before the page (after it, in descending key order).
            let descending = order.as_ref().is_some_and(|o| o.descending);
            match (present.as_slice(), descending) {
                ([x], false) => select("lo > ?", vec![text(&ord), text(x)])?,
                ([x], true) => select("hi < ?", vec![text(&ord), text(x)])?,
                ([b, a], descending) => {
                    let (low, high) = if b <= a { (b, a) } else { (a, b) };
                    let condition = match descending {
                        false => "lo > ? AND lo <= ?",
                        true => "hi >= ? AND hi < ?",
                    };
                    select(condition, vec![text(&ord), text(low), text(high)])?;
                }
                _ => {}
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Appends a write to the log that late registrations are checked against.
    pub fn log_write(&self, seq: u64, images: &WriteImages) -> Result<()> {
        let enc = |r: &Option<Row>| {
            r.as_ref()
                .map(|r| serde_json::Value::Object(r.clone()).to_string())
        };
        self.exec(
            "INSERT INTO writes (seq, record, before, after) VALUES (?, ?, ?, ?)",
            vec![
                int(seq),
                text(&images.id),
                enc(&images.before).into(),
                enc(&images.after).into(),
            ],
        )
    }

    /// Writes after `since`, oldest first, or `None` if the log no longer reaches back there.
    pub fn writes_since(
        &self,
        since: u64,
        table: &str,
        id_column: &str,
    ) -> Result<Option<Vec<(u64, WriteImages)>>> {
        if since < self.meta("writes_floor")?.unwrap_or(0.0) as u64 {
            return Ok(None);
        }
        let rows: Vec<WriteRow> = self.rows(
            "SELECT seq, record, before, after FROM writes WHERE seq > ? ORDER BY seq",
            vec![int(since)],
        )?;
        let dec = |s: &Option<String>| {
            s.as_deref()
                .and_then(|s| serde_json::from_str::<Row>(s).ok())
        };
        Ok(Some(
            rows.into_iter()
                .map(|r| {
                    (
                        r.seq as u64,
                        WriteImages {
                            table: table.to_string(),
                            id: r.record.clone(),
                            id_column: id_column.to_string(),
                            before: dec(&r.before),
                            after: dec(&r.after),
                        },
                    )
                })
                .collect(),
        ))
    }

    /// Records an invalidation and forgets the key's registration: every copy filled before
    /// `seq` is now stale, and a refill registers afresh.
    pub fn invalidate(&self, key: &str, seq: u64, reason: InvalidationReason) -> Result<()> {
        self.exec(
            "INSERT INTO invalidations (key, seq, reason) VALUES (?, ?, ?) \
             ON CONFLICT(key) DO UPDATE SET seq = excluded.seq, reason = excluded.reason",
            vec![text(key), int(seq), text(reason.as_str())],
        )?;
        if key != ALL_KEYS {
            self.unregister(key)?;
        }
        Ok(())
    }

    /// Invalidates every entry of the table: copies filled before `seq` are stale wherever they
    /// are, so every registration and pending refill is dropped.
    pub fn invalidate_all(&self, seq: u64, reason: InvalidationReason) -> Result<()> {
        self.invalidate(ALL_KEYS, seq, reason)?;
        for table in [
            "entries",
            "entry_records",
            "list_terms",
            "list_scan",
            "list_bounds",
            "list_bound_orders",
            "list_prefixes",
            "rehydrate",
        ] {
            self.exec(&format!("DELETE FROM {table}"), vec![])?;
        }
        Ok(())
    }

    /// Seq and reason of a key's last invalidation.
    pub fn last_invalidation(&self, key: &str) -> Result<Option<(u64, InvalidationReason)>> {
        let rows: Vec<InvalRow> = self.rows(
            "SELECT key, seq, reason FROM invalidations WHERE key = ?",
            vec![text(key)],
        )?;
        Ok(rows.first().map(|r| (r.seq as u64, reason_from(&r.reason))))
    }

    /// `changes since S` for edges.
    pub fn changes_since(&self, since: u64) -> Result<Changes> {
        let floor = self.meta("floor")?.unwrap_or(0.0) as u64;
        let rows: Vec<InvalRow> = self.rows(
            "SELECT key, seq, reason FROM invalidations WHERE seq > ? ORDER BY seq",
            vec![int(since.max(floor))],
        )?;
        let times: Vec<TimeRow> = self.rows(
            "SELECT seq, at_ms FROM seq_times WHERE seq > ? ORDER BY seq",
            vec![int(since.max(floor))],
        )?;
        Ok(Changes {
            seq: self.seq()?,
            floor,
            keys: rows.into_iter().map(|r| (r.key, r.seq as u64)).collect(),
            times: times
                .into_iter()
                .map(|t| (t.seq as u64, t.at_ms as u64))
                .collect(),
        })
    }

    /// Keeps the logs bounded, raising their floors past what is forgotten.
    /// `log` bounds the invalidation log; the write log keeps a quarter as many (at least 16).
    pub fn prune(&self, log: u64) -> Result<()> {
        let log = log as i64;
        for (table, floor, max) in [
            ("invalidations", "floor", log),
            ("writes", "writes_floor", (log / 4).max(16)),
        ] {
            let count: Vec<One<f64>> =
                self.rows(&format!("SELECT COUNT(*) AS v FROM {table}"), vec![])?;
            let n = count.first().map(|r| r.v as i64).unwrap_or(0);
            if n <= max {
                continue;
            }
            // Forget the oldest quarter at once so pruning is rare.
            let drop = n - max + max / 4;
            let cut: Vec<One<f64>> = self.rows(
                &format!("SELECT seq AS v FROM {table} ORDER BY seq LIMIT 1 OFFSET ?"),
                vec![Param::from(drop - 1)],
            )?;
            if let Some(cut) = cut.first() {
                let cut = cut.v as u64;
                self.exec(
                    &format!("DELETE FROM {table} WHERE seq <= ?"),
                    vec![int(cut)],
                )?;
                let current = self.meta(floor)?.unwrap_or(0.0) as u64;
                self.set_meta(floor, current.max(cut))?;
            }
        }
        // Recording times: as many as the invalidation log keeps, whatever the floors.
        self.exec(
            "DELETE FROM seq_times WHERE seq <= \
             (SELECT seq FROM seq_times ORDER BY seq DESC LIMIT 1 OFFSET ?)",
            vec![Param::from(log)],
        )?;
        Ok(())
    }

    /// Queues a key for refilling, with the TTL its route gives copies.
    pub fn enqueue_rehydrate(&self, key: &str, ttl_secs: u64, due_ms: u64) -> Result<()> {
        self.exec(
            "INSERT INTO rehydrate (key, ttl_secs, attempts, due) VALUES (?, ?, 0, ?) \
             ON CONFLICT(key) DO UPDATE SET ttl_secs = excluded.ttl_secs, attempts = 0, due = excluded.due",
            vec![text(key), int(ttl_secs), int(due_ms)],
        )
    }

    /// Keys due for refilling.
    pub fn due_rehydrates(&self, now_ms: u64, limit: usize) -> Result<Vec<RehydrateItem>> {
        self.rows(
            "SELECT key, ttl_secs, attempts FROM rehydrate WHERE due <= ? ORDER BY due LIMIT ?",
            vec![int(now_ms), int(limit as u64)],
        )
    }

    /// When the next refill is due.
    pub fn next_rehydrate_due(&self) -> Result<Option<u64>> {
        let rows: Vec<One<Option<f64>>> =
            self.rows("SELECT MIN(due) AS v FROM rehydrate", vec![])?;
        Ok(rows.first().and_then(|r| r.v).map(|v| v as u64))
    }

    /// Drops a key from the queue.
    pub fn finish_rehydrate(&self, key: &str) -> Result<()> {
        self.exec("DELETE FROM rehydrate WHERE key = ?", vec![text(key)])
    }

    /// Reschedules a failed refill.
    pub fn retry_rehydrate(&self, key: &str, attempts: u64, due_ms: u64) -> Result<()> {
        self.exec(
            "UPDATE rehydrate SET attempts = ?, due = ? WHERE key = ?",
            vec![int(attempts), int(due_ms), text(key)],
        )
    }

    /// Counters for stats.
    pub fn counts(&self) -> Result<(u64, u64)> {
        let keys: Vec<One<f64>> = self.rows("SELECT COUNT(*) AS v FROM entries", vec![])?;
        let pending: Vec<One<f64>> = self.rows("SELECT COUNT(*) AS v FROM rehydrate", vec![])?;
        Ok((
            keys.first().map(|r| r.v as u64).unwrap_or(0),
            pending.first().map(|r| r.v as u64).unwrap_or(0),
        ))
    }

    /// Seq of the record's last write.
    pub fn last_write(&self, record: &str) -> Result<Option<u64>> {
        let rows: Vec<One<Option<f64>>> = self.rows(
            "SELECT MAX(seq) AS v FROM writes WHERE record = ?",
            vec![text(record)],
        )?;
        Ok(rows.first().and_then(|r| r.v).map(|v| v as u64))
    }
}

fn reason_from(s: &str) -> InvalidationReason {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .unwrap_or(InvalidationReason::Manual)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::coordinator::fixtures::{graph, registration, row, BORN};
    use crate::coordinator::store::memory::MemoryStore;
    use edgecache_core::planner::{list_effect, row_index_terms, ListEffect};
    use edgecache_core::predicate::cmp_rows;
    use proptest::prelude::*;

    #[test]
    fn the_objects_name_is_stored_once_and_read_back() {
        let g = graph();
        assert_eq!(g.name().unwrap(), None);
        g.set_name("d1:users").unwrap();
        g.set_name("d1:users").unwrap();
        assert_eq!(g.name().unwrap().as_deref(), Some("d1:users"));
    }

    #[test]
    fn candidates_follow_index_terms_and_chunk_past_the_parameter_limit() {
        let g = graph();
        let empty = || json!({"data": []});
        for limit in 1..=120 {
            let path = format!("/v1/users?firstName=Lane&limit={limit}");
            g.register(&registration(&path, empty(), BORN)).unwrap();
        }
        g.register(&registration("/v1/users?firstName=Bob", empty(), BORN))
            .unwrap();
        g.register(&registration("/v1/users?limit=5", empty(), BORN))
            .unwrap();
        let lane = row(json!({"id": "9", "firstName": "Lane", "age": 30}));
        let images = WriteImages {
            table: "users".into(),
            id: "9".into(),
            id_column: "id".into(),
            before: None,
            after: Some(lane.clone()),
        };
        let found = g.candidates(&row_index_terms(&lane), &[], &images).unwrap();
        assert_eq!(
            found.lists.len(),
            121,
            "every Lane list and the unindexed one"
        );
        assert!(found.opaque.is_empty() && found.views.is_empty());
        assert!(found.lists.iter().all(|l| !l.key.as_str().contains("Bob")));
    }

    #[test]
    fn view_reads_name_each_view_bound_to_the_table_once() {
        use edgecache_core::protocol::ViewTarget;
        use std::collections::BTreeMap;
        let g = graph();
        let view = |key: &str, bind: &[(&str, &str)]| Registration {
            key: format!("acme:/v1/{key}"),
            stamp: BORN,
            dependent: Dependent::View {
                view: key.split(['/', '?']).next().unwrap().to_string(),
                bind: bind
                    .iter()
                    .map(|(t, c)| (t.to_string(), c.to_string()))
                    .collect::<BTreeMap<_, _>>(),
                target: ViewTarget::Record { id: "1".into() },
            },
            records: vec![],
            tables: vec!["users".into(), "orders".into()],
            route: format!("/v1/{key}"),
            rehydrate: false,
            ttl_secs: 60,
        };
        let bound = [("users", "id"), ("orders", "userId")];
        for reg in [
            view("uwo/1", &bound),
            view("uwo/2", &bound),
            view("loose/1", &[]),
            view("other/1", &[("orders", "id")]),
        ] {
            g.register(&reg).unwrap();
        }
        let reads = g.view_reads("orders").unwrap();
        let named: Vec<(&str, &str)> = reads
            .iter()
            .map(|r| (r.view.as_str(), r.column.as_str()))
            .collect();
        assert_eq!(named, [("other", "id"), ("uwo", "userId")]);
        assert_eq!(g.view_reads("users").unwrap().len(), 1);
        let images = WriteImages {
            table: "orders".into(),
            id: "9".into(),
            id_column: "id".into(),
            before: None,
            after: Some(row(json!({"id": "9", "userId": "1"}))),
        };
        let found = g.candidates(&[], &[], &images).unwrap();
        assert_eq!(found.views.len(), 4, "every view response is planned");
    }

    /// Pages 0..n of `/v1/users?<query>&limit=<limit>` over `rows`, sorted as the origin
    /// sorts them (`cmp_rows`, the mirror tested against SQLite in the core).
    fn paged(
        g: &Graph<MemoryStore>,
        rows: &[Row],
        query: &str,
        limit: usize,
    ) -> Vec<ListDependent> {
        let mut pages = Vec::new();
        for n in 0..=rows.len() / limit + 1 {
            let path = format!("/v1/users?{query}limit={limit}&offset={}", n * limit);
            let reg = registration(&path, json!({"data": []}), BORN);
            let Dependent::List { query: q, .. } = &reg.dependent else {
                panic!("a list");
            };
            let mut sorted = rows.to_vec();
            sorted.sort_by(|a, b| cmp_rows(q.order.as_ref(), "id", a, b));
            let page: Vec<Row> = sorted.into_iter().skip(n * limit).take(limit).collect();
            let reg = registration(&path, json!({ "data": page }), BORN);
            g.register(&reg).unwrap();
            if let Dependent::List { query, window } = &reg.dependent {
                pages.push(ListDependent {
                    key: CacheKey::parse(&reg.key).unwrap(),
                    query: query.clone(),
                    window: Some(window.clone()),
                });
            }
        }
        pages
    }

    fn value() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            Just(json!(null)),
            (0i64..6).prop_map(|i| json!(i)),
            "[ab]{0,2}".prop_map(|s| json!(s)),
            Just(json!(2.5)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

        /// The bounds index never hides a page the planner would stale.
        #[test]
        fn bounded_candidates_hold_every_page_a_write_may_change(
            ages in proptest::collection::vec(value(), 0..12),
            order in prop::sample::select(vec!["", "order=age&", "order=-age&", "order=-id&"]),
            limit in 1usize..4,
            target in any::<usize>(),
            new_age in proptest::option::of(value()),
            kind in 0u8..3,
        ) {
            let g = graph();
            let rows: Vec<Row> = ages
                .iter()
                .enumerate()
                .map(|(i, age)| row(json!({"id": format!("{:02}", i * 7 % 13), "age": age})))
                .collect();
            let mut unique = rows.clone();
            unique.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
            unique.dedup_by(|a, b| a["id"] == b["id"]);
            let pages = paged(&g, &unique, order, limit);
            let existing = unique.get(target % unique.len().max(1)).cloned();
            let changed = |r: &Row| {
                let mut r = r.clone();
                r.insert("age".into(), new_age.clone().unwrap_or(json!(null)));
                r
            };
            let (before, after) = match (kind, existing) {
                (0, Some(r)) => (Some(r.clone()), Some(changed(&r))),
                (1, Some(r)) => (Some(r), None),
                _ => (None, Some(changed(&row(json!({"id": format!("{:02}", target % 20)}))))),
            };
            if before.is_none() && unique.iter().any(|r| Some(&r["id"]) == after.as_ref().map(|a| &a["id"])) {
                return Ok(());
            }
            let images = WriteImages {
                table: "users".into(),
                id: String::new(),
                id_column: "id".into(),
                before,
                after,
            };
            let found = g.bounded_candidates(&images).unwrap();
            for page in &pages {
                if let ListEffect::Stale(cause) = list_effect(&images, page) {
                    prop_assert!(
                        found.contains(&page.key.as_str().to_string()),
                        "{} ({:?}, {:?}) hidden from {:?}",
                        page.key, cause, page.window, images
                    );
                }
            }
        }
    }

    #[test]
    fn prefix_lists_are_found_by_the_prefixes_of_the_written_texts() {
        let g = graph();
        let empty = || json!({"data": []});
        for path in [
            "/v1/users?firstName=L*",
            "/v1/users?firstName=La*&limit=5",
            "/v1/users?firstName=Lé*",
            "/v1/users?firstName=B*",
            "/v1/users?age=3*",
        ] {
            g.register(&registration(path, empty(), BORN)).unwrap();
        }
        let lane = WriteImages {
            table: "users".into(),
            id: "9".into(),
            id_column: "id".into(),
            before: Some(row(json!({"id": "9", "firstName": "Lane", "age": null}))),
            after: Some(row(json!({"id": "9", "firstName": "Léa", "age": 31}))),
        };
        let mut found = g.prefixed_candidates(&lane).unwrap();
        found.sort();
        assert_eq!(
            found,
            [
                "acme:/v1/users?age=3*",
                "acme:/v1/users?firstName=L%C3%A9*",
                "acme:/v1/users?firstName=L*",
                "acme:/v1/users?firstName=La*&limit=5",
            ],
            "an integer age loads every prefix list on age"
        );
        let lists = g.candidates(&[], &[], &lane).unwrap().lists;
        assert_eq!(lists.len(), 4, "nothing else is scanned");
    }

    #[test]
    fn a_write_loads_only_the_pages_near_its_place() {
        let g = graph();
        let rows: Vec<Row> = (0..1000)
            .map(|i| row(json!({"id": format!("{i:04}"), "age": i % 90})))
            .collect();
        let by_id = paged(&g, &rows, "", 10);
        let by_age = paged(&g, &rows, "order=age&", 10);
        assert_eq!(by_id.len() + by_age.len(), 204);
        let renamed = WriteImages {
            table: "users".into(),
            id: "0500".into(),
            id_column: "id".into(),
            before: Some(rows[500].clone()),
            after: Some(row(
                json!({"id": "0500", "age": 500 % 90, "firstName": "Bea"}),
            )),
        };
        let mut found = g.bounded_candidates(&renamed).unwrap();
        found.sort();
        // The page showing the row in each order, and the two empty pages past each end.
        assert_eq!(found.len(), 6, "{found:?}");
        assert!(found.contains(&"acme:/v1/users?limit=10&offset=500".to_string()));
        let inserted = WriteImages {
            before: None,
            after: Some(row(json!({"id": "0999a", "age": 89}))),
            ..renamed
        };
        // Sorting after every full page in both orders: only the empty pages may gain it.
        assert_eq!(g.bounded_candidates(&inserted).unwrap().len(), 4);
    }

    #[test]
    fn prune_bounds_the_logs_and_raises_their_floors() {
        let g = graph();
        for i in 0..100 {
            let seq = g.bump().unwrap();
            g.invalidate(
                &format!("acme:/v1/users/{i}"),
                seq,
                InvalidationReason::Manual,
            )
            .unwrap();
        }
        g.prune(40).unwrap();
        let changes = g.changes_since(0).unwrap();
        assert!(changes.keys.len() <= 40);
        assert!(changes.floor > BORN);
        assert!(changes.keys.iter().all(|(_, seq)| *seq > changes.floor));
        assert_eq!(changes.keys.last().map(|(_, s)| *s), Some(g.seq().unwrap()));
        assert_eq!(
            changes.times.len(),
            changes.keys.len(),
            "each listed seq has its time"
        );
        assert!(changes
            .times
            .iter()
            .all(|(seq, at)| *seq > changes.floor && *at == BORN));
    }

    #[test]
    fn recording_times_stay_bounded_when_writes_invalidate_nothing() {
        let g = graph();
        for _ in 0..100 {
            g.bump().unwrap();
        }
        g.prune(40).unwrap();
        let times = g.changes_since(0).unwrap().times;
        assert_eq!(times.len(), 40);
        assert_eq!(times.last().map(|t| t.0), Some(g.seq().unwrap()));
        let later = Graph::open(g.sql, BORN + 500, false).unwrap();
        let seq = later.bump().unwrap();
        assert_eq!(
            later.changes_since(seq - 1).unwrap().times,
            vec![(seq, BORN + 500)]
        );
    }
}
