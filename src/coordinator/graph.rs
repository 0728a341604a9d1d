//! A coordinator's storage: the table's seq, its dependency graph, the bounded logs of writes and
//! invalidations, pending write intents and the rehydrate queue, all in the object's SQLite
//! (any [`Store`]: natively tested on an in-memory one). Every method is synchronous: statements with no `.await` between them are atomic, which is
//! what keeps planning, logging and bumping the seq one indivisible step.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::store::{Param, Store, StoreError};
use edgecache_core::answer_through::{AnswerHypothesis, PendingAnswer};
use edgecache_core::freshness::ALL_KEYS;
use edgecache_core::key::CacheKey;
use edgecache_core::learned_rules::{Dependency, Evidence, LearnedRule, Verdict};
use edgecache_core::planner::{
    list_bound_order, list_index_term, list_prefix_term, order_of_bound, page_bounds,
    row_index_terms, row_prefix_terms, row_unindexed_columns, sort_key, InvalidationReason,
    ListDependent, PageBounds, ViewDependent, ViewRead, WriteImages,
};
use edgecache_core::protocol::{Changes, Dependent, Registration, SparedKey};
use edgecache_core::query::MAX_BOUND;
use edgecache_core::semantics::RouteSemantics;
use edgecache_core::shadow::{Found, Planned, ShadowCounts};
use edgecache_core::Row;

/// Storage layout version; bump it with a new step in `migrate`.
const SCHEMA_VERSION: i64 = 10;

type Result<T> = std::result::Result<T, StoreError>;

/// The registrations of view responses, through the `entries_by_kind` index: every D1 write asks.
const VIEW_REGISTRATIONS: &str = "SELECT reg FROM entries WHERE kind = 'view'";

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
struct StateRow {
    state: String,
}

#[derive(Deserialize)]
struct PendingRow {
    pending: String,
}

#[derive(Deserialize)]
struct PendingKeyRow {
    key: String,
    pending: String,
}

#[derive(Deserialize)]
struct RouteRow {
    route: String,
    state: String,
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
    /// For a view's key, its registration (JSON) when it was invalidated: the view, its
    /// bindings and every table it reads, which a refill stamps and the key alone does not say.
    pub view: Option<String>,
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

    /// When the handle was opened (ms).
    pub fn opened_ms(&self) -> u64 {
        self.now_ms
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
        if version < 6 {
            // Learning (`shadow`): queued shadow checks, their counts per (write pattern, key
            // pattern), the evidence of each dependency hypothesis and the learned rules.
            // (Version 5 is the views planner's.)
            for ddl in [
                "CREATE TABLE shadow_jobs (id INTEGER PRIMARY KEY, due INTEGER NOT NULL, job TEXT NOT NULL)",
                "CREATE TABLE shadow_counts (write_pattern TEXT NOT NULL, key_pattern TEXT NOT NULL, counts TEXT NOT NULL, PRIMARY KEY (write_pattern, key_pattern))",
                "CREATE TABLE learn_evidence (dependency TEXT PRIMARY KEY, evidence TEXT NOT NULL)",
                "CREATE TABLE learned_rules (id INTEGER PRIMARY KEY, dependency TEXT NOT NULL UNIQUE, rule TEXT NOT NULL)",
            ] {
                self.exec(ddl, vec![])?;
            }
        }
        if version < 7 {
            // Learned query semantics of HTTP origins' list routes (`semantics.rs`), and the
            // keys kept under them, invalidated if a hypothesis is revoked.
            for ddl in [
                "CREATE TABLE learned_routes (route TEXT PRIMARY KEY, state TEXT NOT NULL)",
                "CREATE TABLE learned_spared (route TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (route, key))",
                "CREATE INDEX learned_spared_by_key ON learned_spared (key)",
            ] {
                self.exec(ddl, vec![])?;
            }
        }
        if version < 8 {
            // Every D1 write asks which bound views its table's registrations show
            // (`view_reads`): by kind, not by a scan of every registered key.
            self.exec("CREATE INDEX entries_by_kind ON entries (kind)", vec![])?;
        }
        if version < 9 {
            // A view's key is refilled too: its queued refill keeps the view's registration.
            self.exec("ALTER TABLE rehydrate ADD COLUMN view_reg TEXT", vec![])?;
        }
        if version < 10 {
            // Learned write-through of HTTP origins (`answer_through`): each write route's
            // hypothesis, and the answers waiting to be compared with their record's refetch
            // (one per key: a later write of the record replaces it).
            for ddl in [
                "CREATE TABLE answer_hypotheses (pattern TEXT PRIMARY KEY, state TEXT NOT NULL)",
                "CREATE TABLE answer_checks (key TEXT PRIMARY KEY, record TEXT NOT NULL, pending TEXT NOT NULL)",
                "CREATE INDEX answer_checks_by_record ON answer_checks (record)",
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

    /// Whether a write of `record` has been forwarded (or is being) and not yet recorded.
    pub fn intent_open(&self, record: &str) -> Result<bool> {
        let rows: Vec<One<f64>> = self.rows(
            "SELECT COUNT(*) AS v FROM intents WHERE record = ?",
            vec![text(record)],
        )?;
        Ok(rows.first().is_some_and(|r| r.v > 0.0))
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
        let json = to_json(reg)?;
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
            "DELETE FROM learned_spared WHERE key = ?",
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

    /// For each of a group's writes, in one pass over the indexes, the keys of the lists and
    /// opaque entries it could affect: lists indexed under one of its images' terms
    /// ([`row_index_terms`]) or on a column whose text an image does not pin down
    /// ([`row_unindexed_columns`]), lists with a prefix filter its texts can match
    /// ([`row_prefix_terms`]), lists without filters whose pages its images can land in, shift
    /// or extend ([`Graph::bounded_candidates`]), and every other list and opaque entry. Each
    /// write's keys are exactly those a lookup of its own images finds (sorted, no repeats): the
    /// group's lookups are shared, one query per column rather than one per term and write.
    /// Keys registered at the call; [`Graph::dependents`] loads each write's when its turn
    /// comes, so a key an earlier write of the group invalidated is gone by then.
    pub fn candidate_keys(&self, writes: &[&WriteImages]) -> Result<Vec<Vec<String>>> {
        let mut wanted = IndexLookups::default();
        let per_write: Vec<WriteTerms> = writes
            .iter()
            .map(|images| {
                let terms = WriteTerms::of(images);
                wanted.add(&terms);
                terms
            })
            .collect();
        let found = wanted.look_up(self)?;
        let orders: Vec<KeyRow> = self.rows("SELECT ord AS key FROM list_bound_orders", vec![])?;
        let orders: Vec<String> = orders.into_iter().map(|r| r.key).collect();
        let mut all = Vec::with_capacity(writes.len());
        for (images, terms) in writes.iter().zip(&per_write) {
            let mut keys = found.keys_for(terms);
            keys.extend(self.bounded_in(&orders, images)?);
            keys.sort();
            keys.dedup();
            all.push(keys);
        }
        Ok(all)
    }

    /// The registered lists, view responses and opaque entries among `keys` (sorted), as the
    /// planner takes them.
    pub fn dependents(&self, keys: &[String]) -> Result<Candidates> {
        let mut found = Candidates::default();
        for chunk in keys.chunks(MAX_BOUND) {
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
        let rows: Vec<RegRow> = self.rows(VIEW_REGISTRATIONS, vec![])?;
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

    /// Pages of lists without filters that a write with these images may change, as
    /// `planner::list_effect` decides it, found by their bounds in each order in use: every
    /// row matches such a list, so a full page may change only if an image's key falls inside
    /// it or exactly one image sorts before it (shifting it); short, empty and unkeyed pages
    /// are always candidates. An image whose key is unknown loads the whole order. Each
    /// condition is its own query on an index of `lo` or `hi` (only full pages have them: NULL
    /// compares false).
    pub fn bounded_candidates(&self, images: &WriteImages) -> Result<Vec<String>> {
        let orders: Vec<KeyRow> = self.rows("SELECT ord AS key FROM list_bound_orders", vec![])?;
        let orders: Vec<String> = orders.into_iter().map(|r| r.key).collect();
        self.bounded_in(&orders, images)
    }

    /// [`Graph::bounded_candidates`] in the bound orders in use, `orders`.
    fn bounded_in(&self, orders: &[String], images: &WriteImages) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut select = |condition: &str, args: Vec<Param>| -> Result<()> {
            let rows: Vec<KeyRow> = self.rows(
                &format!("SELECT key FROM list_bounds WHERE ord = ? AND {condition}"),
                args,
            )?;
            keys.extend(rows.into_iter().map(|r| r.key));
            Ok(())
        };
        for ord in orders {
            let order = order_of_bound(ord);
            let key = |image: &Option<Row>| {
                image
                    .as_ref()
                    .map(|row| sort_key(order.as_ref(), &images.id_column, row))
            };
            let (before, after) = match (key(&images.before), key(&images.after)) {
                (Some(None), _) | (_, Some(None)) => {
                    select("1", vec![text(ord)])?;
                    continue;
                }
                (b, a) => (b.flatten(), a.flatten()),
            };
            select("state IN ('short', 'empty', 'unknown')", vec![text(ord)])?;
            let present: Vec<&String> = before.iter().chain(after.iter()).collect();
            for x in &present {
                select("lo <= ? AND hi >= ?", vec![text(ord), text(x), text(x)])?;
            }
            // Exactly one image before the page (after it, in descending key order).
            let descending = order.as_ref().is_some_and(|o| o.descending);
            match (present.as_slice(), descending) {
                ([x], false) => select("lo > ?", vec![text(ord), text(x)])?,
                ([x], true) => select("hi < ?", vec![text(ord), text(x)])?,
                ([b, a], descending) => {
                    let (low, high) = if b <= a { (b, a) } else { (a, b) };
                    let condition = match descending {
                        false => "lo > ? AND lo <= ?",
                        true => "hi >= ? AND hi < ?",
                    };
                    select(condition, vec![text(ord), text(low), text(high)])?;
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
            vec![text(key), int(seq), text(&stored_reason(reason))],
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
            "learned_spared",
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
            // Forget just the excess: a group's few rows each time. Forgetting a quarter of the
            // log at once made one group in hundreds delete a thousand rows in one statement,
            // tens of milliseconds during which the object (and, locally, its isolate) served
            // nothing.
            let drop = n - max;
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

    /// Queues the key `reg` registered for refilling, with the TTL its route gives copies (and,
    /// for a view's key, the registration: see [`RehydrateItem::view`]).
    pub fn enqueue_rehydrate(&self, reg: &Registration, due_ms: u64) -> Result<()> {
        let view = match reg.dependent {
            Dependent::View { .. } => Some(to_json(reg)?),
            _ => None,
        };
        self.exec(
            "INSERT INTO rehydrate (key, ttl_secs, attempts, due, view_reg) VALUES (?, ?, 0, ?, ?) \
             ON CONFLICT(key) DO UPDATE SET ttl_secs = excluded.ttl_secs, attempts = 0, \
             due = excluded.due, view_reg = excluded.view_reg",
            vec![text(&reg.key), int(reg.ttl_secs), int(due_ms), Param::from(view)],
        )
    }

    /// Keys due for refilling.
    pub fn due_rehydrates(&self, now_ms: u64, limit: usize) -> Result<Vec<RehydrateItem>> {
        self.rows(
            "SELECT key, ttl_secs, attempts, view_reg AS view FROM rehydrate WHERE due <= ? ORDER BY due LIMIT ?",
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

    /// What a list route has learned (`None`: nothing yet).
    pub fn route_semantics(&self, route: &str) -> Result<Option<RouteSemantics>> {
        self.state_of("learned_routes", "route", route)
    }

    /// Every route that has learned something, with its state.
    pub fn learned_routes(&self) -> Result<Vec<(String, RouteSemantics)>> {
        let rows: Vec<RouteRow> = self.rows("SELECT route, state FROM learned_routes", vec![])?;
        Ok(rows
            .into_iter()
            .filter_map(|r| Some((r.route, serde_json::from_str(&r.state).ok()?)))
            .collect())
    }

    /// Stores what a route has learned.
    pub fn set_route_semantics(&self, route: &str, state: &RouteSemantics) -> Result<()> {
        self.set_state("learned_routes", "route", route, state)
    }

    /// Records that a write kept `key` because of `route`'s learned semantics.
    pub fn add_learned_spared(&self, route: &str, key: &str) -> Result<()> {
        self.exec(
            "INSERT OR IGNORE INTO learned_spared (route, key) VALUES (?, ?)",
            vec![text(route), text(key)],
        )
    }

    /// Keys kept under `route`'s learned semantics since they were filled.
    pub fn learned_spared(&self, route: &str) -> Result<Vec<String>> {
        let rows: Vec<KeyRow> = self.rows(
            "SELECT key FROM learned_spared WHERE route = ?",
            vec![text(route)],
        )?;
        Ok(rows.into_iter().map(|r| r.key).collect())
    }

    /// Every route (list route or write pattern) some key is kept under.
    pub fn spared_routes(&self) -> Result<Vec<String>> {
        let rows: Vec<KeyRow> = self.rows(
            "SELECT DISTINCT route AS key FROM learned_spared ORDER BY route",
            vec![],
        )?;
        Ok(rows.into_iter().map(|r| r.key).collect())
    }

    /// Forgets what every list route learned and every write route's hypothesis, with the
    /// answers waiting to be counted for them.
    pub fn forget_semantics(&self) -> Result<()> {
        for table in ["learned_routes", "answer_hypotheses", "answer_checks"] {
            self.exec(&format!("DELETE FROM {table}"), vec![])?;
        }
        Ok(())
    }

    /// Forgets a write route's hypothesis and the answers waiting to be counted for it, so it
    /// is learned again only from writes answered from now on.
    pub fn forget_answer_hypothesis(&self, pattern: &str) -> Result<()> {
        self.exec(
            "DELETE FROM answer_hypotheses WHERE pattern = ?",
            vec![text(pattern)],
        )?;
        let rows: Vec<PendingKeyRow> =
            self.rows("SELECT key, pending FROM answer_checks", vec![])?;
        for row in rows {
            let theirs = serde_json::from_str::<PendingAnswer>(&row.pending)
                .ok()
                .is_none_or(|p| p.pattern == pattern);
            if theirs {
                self.drop_pending_answer(&row.key)?;
            }
        }
        Ok(())
    }

    /// A write route's write-through hypothesis (`None`: no evidence yet).
    pub fn answer_hypothesis(&self, pattern: &str) -> Result<Option<AnswerHypothesis>> {
        self.state_of("answer_hypotheses", "pattern", pattern)
    }

    /// Every write route's write-through hypothesis.
    pub fn answer_hypotheses(&self) -> Result<Vec<(String, AnswerHypothesis)>> {
        let rows: Vec<RouteRow> = self.rows(
            "SELECT pattern AS route, state FROM answer_hypotheses ORDER BY pattern",
            vec![],
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|r| Some((r.route, serde_json::from_str(&r.state).ok()?)))
            .collect())
    }

    /// Stores a write route's hypothesis.
    pub fn set_answer_hypothesis(&self, pattern: &str, h: &AnswerHypothesis) -> Result<()> {
        self.set_state("answer_hypotheses", "pattern", pattern, h)
    }

    /// The JSON `state` stored under `key` in a learning table keyed by `column` (`None`:
    /// nothing stored, or a state this build cannot read, which is learned afresh).
    fn state_of<T: DeserializeOwned>(
        &self,
        table: &str,
        column: &str,
        key: &str,
    ) -> Result<Option<T>> {
        let rows: Vec<StateRow> = self.rows(
            &format!("SELECT state FROM {table} WHERE {column} = ?"),
            vec![text(key)],
        )?;
        Ok(rows
            .first()
            .and_then(|r| serde_json::from_str(&r.state).ok()))
    }

    /// Stores `state` as JSON under `key` in a learning table keyed by `column`.
    fn set_state<T: serde::Serialize>(
        &self,
        table: &str,
        column: &str,
        key: &str,
        state: &T,
    ) -> Result<()> {
        self.exec(
            &format!(
                "INSERT INTO {table} ({column}, state) VALUES (?, ?) \
                 ON CONFLICT({column}) DO UPDATE SET state = excluded.state"
            ),
            vec![text(key), text(&to_json(state)?)],
        )
    }

    /// The answer waiting for `key`'s next refetch.
    pub fn pending_answer(&self, key: &str) -> Result<Option<PendingAnswer>> {
        let rows: Vec<PendingRow> = self.rows(
            "SELECT pending FROM answer_checks WHERE key = ?",
            vec![text(key)],
        )?;
        Ok(rows
            .first()
            .and_then(|r| serde_json::from_str(&r.pending).ok()))
    }

    /// Records the answer `key`'s next refetch is compared with.
    pub fn set_pending_answer(&self, key: &str, pending: &PendingAnswer) -> Result<()> {
        let json = to_json(pending)?;
        self.exec(
            "INSERT OR REPLACE INTO answer_checks (key, record, pending) VALUES (?, ?, ?)",
            vec![text(key), text(&pending.record), text(&json)],
        )
    }

    /// Drops the answer waiting for `key`.
    pub fn drop_pending_answer(&self, key: &str) -> Result<()> {
        self.exec("DELETE FROM answer_checks WHERE key = ?", vec![text(key)])
    }

    /// Drops every answer waiting for a refetch of `record` (a later write of it was recorded:
    /// their refetches would show that write).
    pub fn drop_pending_answers(&self, record: &str) -> Result<()> {
        self.exec(
            "DELETE FROM answer_checks WHERE record = ?",
            vec![text(record)],
        )
    }
}

/// What one write looks up in the list indexes (see [`Graph::candidate_keys`]).
struct WriteTerms {
    /// `(column, text)` of each image's indexable columns (`list_terms`).
    terms: Vec<(String, String)>,
    /// Columns whose text an image does not pin down: every list indexed on them.
    unindexed: Vec<String>,
    /// `(column, prefix)` of each image's texts (`list_prefixes`).
    prefixes: Vec<(String, String)>,
    /// Columns whose text an image does not pin down for prefixes: every prefix list on them.
    every_prefix: Vec<String>,
}

impl WriteTerms {
    fn of(images: &WriteImages) -> WriteTerms {
        let mut t = WriteTerms {
            terms: Vec::new(),
            unindexed: Vec::new(),
            prefixes: Vec::new(),
            every_prefix: Vec::new(),
        };
        for image in [&images.before, &images.after].into_iter().flatten() {
            t.terms.extend(row_index_terms(image));
            t.unindexed.extend(row_unindexed_columns(image));
            let (prefixes, every) = row_prefix_terms(image);
            t.prefixes.extend(prefixes);
            t.every_prefix.extend(every);
        }
        for v in [&mut t.terms, &mut t.prefixes] {
            v.sort();
            v.dedup();
        }
        for v in [&mut t.unindexed, &mut t.every_prefix] {
            v.sort();
            v.dedup();
        }
        t
    }
}

/// A group's index lookups, by column: the texts (or prefixes) asked for under each, and the
/// columns whose every entry is wanted.
#[derive(Default)]
struct IndexLookups {
    terms: BTreeMap<String, BTreeSet<String>>,
    unindexed: BTreeSet<String>,
    prefixes: BTreeMap<String, BTreeSet<String>>,
    every_prefix: BTreeSet<String>,
}

/// What a group's lookups found: keys by `(column, text)`, by column, and the scanned keys.
struct IndexHits {
    terms: HashMap<(String, String), Vec<String>>,
    unindexed: HashMap<String, Vec<String>>,
    prefixes: HashMap<(String, String), Vec<String>>,
    every_prefix: HashMap<String, Vec<String>>,
    scan: Vec<String>,
}

#[derive(Deserialize)]
struct KeyTextRow {
    key: String,
    v: String,
}

impl IndexLookups {
    fn add(&mut self, w: &WriteTerms) {
        for (col, val) in &w.terms {
            self.terms
                .entry(col.clone())
                .or_default()
                .insert(val.clone());
        }
        for (col, prefix) in &w.prefixes {
            let prefixes = self.prefixes.entry(col.clone()).or_default();
            prefixes.insert(prefix.clone());
        }
        self.unindexed.extend(w.unindexed.iter().cloned());
        self.every_prefix.extend(w.every_prefix.iter().cloned());
    }

    /// One query per index for the columns it has entries on, then one per such column (and
    /// per [`MAX_BOUND`] texts), each a range of the index's `(col, text)` primary key, plus
    /// the scanned keys once. A column without entries costs nothing more: the prefixes of a
    /// row's texts run to hundreds, and most columns have no prefix lists.
    fn look_up<S: Store>(&self, g: &Graph<S>) -> Result<IndexHits> {
        let in_use = |table: &str, columns: Vec<&String>| {
            let mut used = BTreeSet::new();
            for chunk in columns.chunks(MAX_BOUND) {
                let values = vec!["(?)"; chunk.len()].join(", ");
                let rows: Vec<KeyRow> = g.rows(
                    &format!(
                        "SELECT column1 AS key FROM (VALUES {values}) \
                         WHERE EXISTS (SELECT 1 FROM {table} WHERE col = column1)"
                    ),
                    chunk.iter().map(|c| text(c)).collect(),
                )?;
                used.extend(rows.into_iter().map(|r| r.key));
            }
            Ok::<_, StoreError>(used)
        };
        let term_columns = in_use(
            "list_terms",
            self.terms.keys().chain(&self.unindexed).collect(),
        )?;
        let prefix_columns = in_use(
            "list_prefixes",
            self.prefixes.keys().chain(&self.every_prefix).collect(),
        )?;
        let by_text = |table: &str,
                       column: &str,
                       wanted: &BTreeMap<String, BTreeSet<String>>,
                       used: &BTreeSet<String>| {
            let mut hits: HashMap<(String, String), Vec<String>> = HashMap::new();
            for (col, texts) in wanted.iter().filter(|(col, _)| used.contains(*col)) {
                let texts: Vec<&String> = texts.iter().collect();
                for chunk in texts.chunks(MAX_BOUND - 1) {
                    let marks = vec!["?"; chunk.len()].join(", ");
                    let mut args = vec![text(col)];
                    args.extend(chunk.iter().map(|t| text(t)));
                    let rows: Vec<KeyTextRow> = g.rows(
                        &format!(
                            "SELECT key, {column} AS v FROM {table} WHERE col = ? AND {column} IN ({marks})"
                        ),
                        args,
                    )?;
                    for r in rows {
                        hits.entry((col.clone(), r.v)).or_default().push(r.key);
                    }
                }
            }
            Ok::<_, StoreError>(hits)
        };
        let by_column = |table: &str, columns: &BTreeSet<String>, used: &BTreeSet<String>| {
            let mut hits: HashMap<String, Vec<String>> = HashMap::new();
            for col in columns.intersection(used) {
                let rows: Vec<KeyRow> = g.rows(
                    &format!("SELECT key FROM {table} WHERE col = ?"),
                    vec![text(col)],
                )?;
                hits.insert(col.clone(), rows.into_iter().map(|r| r.key).collect());
            }
            Ok::<_, StoreError>(hits)
        };
        let scan: Vec<KeyRow> = g.rows("SELECT key FROM list_scan", vec![])?;
        Ok(IndexHits {
            terms: by_text("list_terms", "val", &self.terms, &term_columns)?,
            unindexed: by_column("list_terms", &self.unindexed, &term_columns)?,
            prefixes: by_text("list_prefixes", "prefix", &self.prefixes, &prefix_columns)?,
            every_prefix: by_column("list_prefixes", &self.every_prefix, &prefix_columns)?,
            scan: scan.into_iter().map(|r| r.key).collect(),
        })
    }
}

impl IndexHits {
    /// The keys a write's own lookups found (unsorted, with repeats).
    fn keys_for(&self, w: &WriteTerms) -> Vec<String> {
        let mut keys = self.scan.clone();
        for term in &w.terms {
            keys.extend(self.terms.get(term).into_iter().flatten().cloned());
        }
        for col in &w.unindexed {
            keys.extend(self.unindexed.get(col).into_iter().flatten().cloned());
        }
        for prefix in &w.prefixes {
            keys.extend(self.prefixes.get(prefix).into_iter().flatten().cloned());
        }
        for col in &w.every_prefix {
            keys.extend(self.every_prefix.get(col).into_iter().flatten().cloned());
        }
        keys
    }
}

/// A queued shadow check, as stored.
#[derive(Deserialize)]
pub struct StoredJob {
    /// Its id.
    pub id: f64,
    /// The job (`shadow::ShadowJob` as JSON).
    pub job: String,
}

#[derive(Deserialize)]
struct CountsRow {
    write_pattern: String,
    key_pattern: String,
    counts: String,
}

#[derive(Deserialize)]
struct EvidenceRow {
    dependency: String,
    evidence: String,
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError(e.to_string()))
}

/// Learning's storage: shadow checks, their counts, hypotheses' evidence and learned rules.
impl<S: Store> Graph<S> {
    /// Queues a shadow check (`job`: JSON) due at `due_ms`.
    pub fn enqueue_shadow(&self, job: &str, due_ms: u64) -> Result<()> {
        self.exec(
            "INSERT INTO shadow_jobs (due, job) VALUES (?, ?)",
            vec![int(due_ms), text(job)],
        )
    }

    /// Shadow checks due, oldest first.
    pub fn due_shadow(&self, now_ms: u64, limit: usize) -> Result<Vec<StoredJob>> {
        self.rows(
            "SELECT id, job FROM shadow_jobs WHERE due <= ? ORDER BY due, id LIMIT ?",
            vec![int(now_ms), int(limit as u64)],
        )
    }

    /// Drops a shadow check (done, or its origin is unknown).
    pub fn finish_shadow(&self, id: u64) -> Result<()> {
        self.exec("DELETE FROM shadow_jobs WHERE id = ?", vec![int(id)])
    }

    /// When the next shadow check is due.
    pub fn next_shadow_due(&self) -> Result<Option<u64>> {
        let rows: Vec<One<Option<f64>>> =
            self.rows("SELECT MIN(due) AS v FROM shadow_jobs", vec![])?;
        Ok(rows.first().and_then(|r| r.v).map(|v| v as u64))
    }

    /// Shadow checks queued.
    pub fn pending_shadow(&self) -> Result<u64> {
        let rows: Vec<One<f64>> = self.rows("SELECT COUNT(*) AS v FROM shadow_jobs", vec![])?;
        Ok(rows.first().map(|r| r.v as u64).unwrap_or(0))
    }

    /// Adds one check to the counts of (`write_pattern`, `key_pattern`), the check standing
    /// for `weight` keys of its population.
    pub fn count_shadow(
        &self,
        write_pattern: &str,
        key_pattern: &str,
        planned: Planned,
        found: Found,
        weight: u64,
    ) -> Result<()> {
        let rows: Vec<CountsRow> = self.rows(
            "SELECT write_pattern, key_pattern, counts FROM shadow_counts \
             WHERE write_pattern = ? AND key_pattern = ?",
            vec![text(write_pattern), text(key_pattern)],
        )?;
        let mut counts: ShadowCounts = rows
            .first()
            .and_then(|r| serde_json::from_str(&r.counts).ok())
            .unwrap_or_default();
        counts.record(planned, found);
        match planned {
            Planned::Kept => counts.kept_population += weight,
            Planned::Invalidated => counts.invalidated_population += weight,
        }
        self.exec(
            "INSERT OR REPLACE INTO shadow_counts (write_pattern, key_pattern, counts) VALUES (?, ?, ?)",
            vec![text(write_pattern), text(key_pattern), text(&to_json(&counts)?)],
        )
    }

    /// Every (write pattern, key pattern) with its counts.
    pub fn shadow_counts(&self) -> Result<Vec<(String, String, ShadowCounts)>> {
        let rows: Vec<CountsRow> = self.rows(
            "SELECT write_pattern, key_pattern, counts FROM shadow_counts \
             ORDER BY write_pattern, key_pattern",
            vec![],
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let counts = serde_json::from_str(&r.counts).ok()?;
                Some((r.write_pattern, r.key_pattern, counts))
            })
            .collect())
    }

    /// Counts a verdict on a hypothesis; answers its evidence now.
    pub fn count_evidence(
        &self,
        dependency: &Dependency,
        verdict: Verdict,
        at_ms: u64,
    ) -> Result<Evidence> {
        let key = to_json(dependency)?;
        let rows: Vec<EvidenceRow> = self.rows(
            "SELECT dependency, evidence FROM learn_evidence WHERE dependency = ?",
            vec![text(&key)],
        )?;
        let mut evidence: Evidence = rows
            .first()
            .and_then(|r| serde_json::from_str(&r.evidence).ok())
            .unwrap_or_default();
        evidence.count(verdict, at_ms);
        self.exec(
            "INSERT OR REPLACE INTO learn_evidence (dependency, evidence) VALUES (?, ?)",
            vec![text(&key), text(&to_json(&evidence)?)],
        )?;
        Ok(evidence)
    }

    /// Every dependency with its evidence (rules' included: their evidence keeps being
    /// counted).
    pub fn evidence(&self) -> Result<Vec<(Dependency, Evidence)>> {
        let rows: Vec<EvidenceRow> =
            self.rows("SELECT dependency, evidence FROM learn_evidence", vec![])?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some((
                    serde_json::from_str(&r.dependency).ok()?,
                    serde_json::from_str(&r.evidence).ok()?,
                ))
            })
            .collect())
    }

    /// The dependency candidates: every dependency with evidence that is not a rule.
    pub fn candidates(&self) -> Result<Vec<(Dependency, Evidence)>> {
        let rules = self.rules()?;
        Ok(self
            .evidence()?
            .into_iter()
            .filter(|(d, _)| !rules.iter().any(|r| &r.dependency == d))
            .collect())
    }

    /// Forgets a dependency's evidence: it is learned again only from new evidence.
    pub fn forget_evidence(&self, dependency: &Dependency) -> Result<()> {
        self.exec(
            "DELETE FROM learn_evidence WHERE dependency = ?",
            vec![text(&to_json(dependency)?)],
        )
    }

    /// Stores a newly learned rule (once per dependency); answers its id, or `None` when the
    /// dependency already is a rule.
    pub fn add_rule(
        &self,
        dependency: &Dependency,
        evidence: Evidence,
        learned_at_ms: u64,
    ) -> Result<Option<u64>> {
        let key = to_json(dependency)?;
        let known: Vec<One<f64>> = self.rows(
            "SELECT id AS v FROM learned_rules WHERE dependency = ?",
            vec![text(&key)],
        )?;
        if !known.is_empty() {
            return Ok(None);
        }
        let next: Vec<One<Option<f64>>> =
            self.rows("SELECT MAX(id) AS v FROM learned_rules", vec![])?;
        let id = next.first().and_then(|r| r.v).map_or(1, |v| v as u64 + 1);
        let rule = LearnedRule {
            id,
            dependency: dependency.clone(),
            evidence,
            learned_at_ms,
            checks_to_learn: evidence.support + evidence.counter,
        };
        self.exec(
            "INSERT INTO learned_rules (id, dependency, rule) VALUES (?, ?, ?)",
            vec![int(id), text(&key), text(&to_json(&rule)?)],
        )?;
        Ok(Some(id))
    }

    /// Updates a rule's evidence (it keeps being counted after the rule is learned).
    pub fn update_rule_evidence(&self, dependency: &Dependency, evidence: Evidence) -> Result<()> {
        let key = to_json(dependency)?;
        for mut rule in self.rules()? {
            if &rule.dependency == dependency {
                rule.evidence = evidence;
                self.exec(
                    "UPDATE learned_rules SET rule = ? WHERE dependency = ?",
                    vec![text(&to_json(&rule)?), text(&key)],
                )?;
            }
        }
        Ok(())
    }

    /// The learned rules, by id.
    pub fn rules(&self) -> Result<Vec<LearnedRule>> {
        let rows: Vec<RegRow> =
            self.rows("SELECT rule AS reg FROM learned_rules ORDER BY id", vec![])?;
        Ok(rows
            .into_iter()
            .filter_map(|r| serde_json::from_str(&r.reg).ok())
            .collect())
    }

    /// Forgets a rule and the evidence it was learned from (so it is learned again only from
    /// new evidence); answers the rule, if there was one.
    pub fn forget_rule(&self, id: u64) -> Result<Option<LearnedRule>> {
        let Some(rule) = self.rules()?.into_iter().find(|r| r.id == id) else {
            return Ok(None);
        };
        self.exec("DELETE FROM learned_rules WHERE id = ?", vec![int(id)])?;
        self.forget_evidence(&rule.dependency)?;
        Ok(Some(rule))
    }

    /// Forgets every rule and all the evidence of the table's dependencies; answers how many
    /// rules and how many candidates (dependencies short of a rule) were forgotten.
    pub fn forget_rules(&self) -> Result<(u64, u64)> {
        let rules = self.rules()?.len();
        let candidates = self.candidates()?.len();
        self.exec("DELETE FROM learned_rules", vec![])?;
        self.exec("DELETE FROM learn_evidence", vec![])?;
        Ok((rules as u64, candidates as u64))
    }

    /// A mark that moves with every write that may change this table's answers: one of its
    /// own (the write log's last seq) or one of another table it was told of
    /// (`note_foreign_write`). A check whose mark moved between queueing and settling cannot
    /// tell which write changed its key.
    pub fn writes_mark(&self) -> Result<(u64, u64)> {
        let own: Vec<One<Option<f64>>> = self.rows("SELECT MAX(seq) AS v FROM writes", vec![])?;
        let own = own.first().and_then(|r| r.v).map_or(0, |v| v as u64);
        Ok((own, self.meta("foreign_writes")?.unwrap_or(0.0) as u64))
    }

    /// Counts a write of another table this coordinator was told of.
    pub fn note_foreign_write(&self) -> Result<()> {
        let n = self.meta("foreign_writes")?.unwrap_or(0.0) as u64;
        self.set_meta("foreign_writes", n + 1)
    }

    /// How many keys start with `prefix` (a tenant's keys: `tenant:`).
    pub fn count_keys(&self, prefix: &str) -> Result<u64> {
        let rows: Vec<One<f64>> = self.rows(
            "SELECT COUNT(*) AS v FROM entries WHERE substr(key, 1, length(?1)) = ?1",
            vec![text(prefix)],
        )?;
        Ok(rows.first().map(|r| r.v as u64).unwrap_or(0))
    }

    /// The registration of the `offset`-th key starting with `prefix`, in key order.
    pub fn key_at(&self, prefix: &str, offset: u64) -> Result<Option<Registration>> {
        let rows: Vec<RegRow> = self.rows(
            "SELECT reg FROM entries WHERE substr(key, 1, length(?1)) = ?1 \
             ORDER BY key LIMIT 1 OFFSET ?2",
            vec![text(prefix), int(offset)],
        )?;
        Ok(rows.first().and_then(|r| serde_json::from_str(&r.reg).ok()))
    }
}

/// A reason as the log stores it: its name, or its JSON where it carries data (a rule's id).
fn stored_reason(reason: InvalidationReason) -> String {
    match reason {
        InvalidationReason::Learned { .. } => {
            serde_json::to_string(&reason).unwrap_or_else(|_| reason.as_str().to_string())
        }
        other => other.as_str().to_string(),
    }
}

fn reason_from(s: &str) -> InvalidationReason {
    serde_json::from_str(s)
        .or_else(|_| serde_json::from_value(serde_json::Value::String(s.to_string())))
        .unwrap_or(InvalidationReason::Manual)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::coordinator::fixtures::{graph, registration, row, BORN};
    use crate::coordinator::store::memory::MemoryStore;
    use edgecache_core::planner::{list_effect, ListEffect};
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
        let keys = g.candidate_keys(&[&images]).unwrap().remove(0);
        let found = g.dependents(&keys).unwrap();
        assert_eq!(
            found.lists.len(),
            121,
            "every Lane list and the unindexed one"
        );
        assert!(found.opaque.is_empty() && found.views.is_empty());
        assert!(found.lists.iter().all(|l| !l.key.as_str().contains("Bob")));
    }

    #[test]
    fn view_reads_use_the_kind_index_not_a_scan_of_every_key() {
        #[derive(Deserialize)]
        struct Step {
            detail: String,
        }
        let g = graph();
        let plan: Vec<Step> = g
            .rows(&format!("EXPLAIN QUERY PLAN {VIEW_REGISTRATIONS}"), vec![])
            .unwrap();
        assert!(
            plan.iter().any(|s| s.detail.contains("entries_by_kind")),
            "{:?}",
            plan.iter().map(|s| &s.detail).collect::<Vec<_>>()
        );
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
            digest: None,
            observation: None,
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
        let keys = g.candidate_keys(&[&images]).unwrap().remove(0);
        let found = g.dependents(&keys).unwrap();
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
        let found = g.candidate_keys(&[&lane]).unwrap().remove(0);
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
        let lists = g.dependents(&found).unwrap().lists;
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
        // Exactly the bound: only the excess goes, never a large slice at once (which made
        // one group in hundreds stall the object for tens of milliseconds).
        assert_eq!(changes.keys.len(), 40);
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
