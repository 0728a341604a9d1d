//! The typed protocol between edges and a `TableCoordinator`, defined once for both sides.
//! Carried as JSON over the Durable Object stub's fetch (Rust DO classes expose no RPC here).

use serde::{Deserialize, Serialize};

use crate::extract::ListWindow;
use crate::key::{CacheKey, DataSource};
use crate::learned_ref::LearnedRef;
use crate::planner::{InvalidationReason, ListDependent, SpareReason, StaleCause, ViewDependent};
use crate::query::ListQuery;
use crate::semantics::{HypothesisStatus, ListObservation};
use crate::Row;

pub use crate::freshness::Changes;

/// Header carrying the calling tenant and its origin (JSON [`OriginContext`]) on calls that
/// need them.
pub const ORIGIN_HEADER: &str = "x-edgecache-origin";

/// Header carrying the coordinator's own name on every call: an instance the runtime woke for
/// an alarm is not told its name, and learns it from the next caller (checked against its id).
pub const NAME_HEADER: &str = "x-edgecache-coordinator";

/// Which tenant a coordinator call is made for, and that tenant's origin (with its
/// credentials): a coordinator serves every tenant of its data source, each with its own
/// credentials for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginContext {
    /// The tenant.
    pub tenant: String,
    /// Its origin.
    pub origin: OriginConfig,
}

/// What a cached response is, as far as one table's invalidation is concerned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Dependent {
    /// A single record (`/v1/users/123-abc`).
    Record,
    /// A list of this table with a query the planner can reason about.
    List {
        /// The list's query.
        query: ListQuery,
        /// The page as filled.
        window: ListWindow,
    },
    /// A record or list of a view that reads this table, planned on the view's rows a write
    /// touches where `bind` names this table's column holding the view row's id.
    View {
        /// The view.
        view: String,
        /// Table -> the column holding the view row's id (the view's declared bindings).
        bind: std::collections::BTreeMap<String, String>,
        /// What of the view the response shows.
        target: ViewTarget,
    },
    /// Anything the planner cannot reason about: stale on every write of the table.
    Opaque,
}

/// What of a view a cached response shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "shows", rename_all = "snake_case")]
pub enum ViewTarget {
    /// One view row (`/v1/<view>/<id>`).
    Record {
        /// The view row's id.
        id: String,
    },
    /// A page of the view.
    List {
        /// The list's query.
        query: ListQuery,
        /// The page as filled.
        window: ListWindow,
    },
}

impl Dependent {
    /// `record`, `list` or `opaque`.
    pub fn kind(&self) -> &'static str {
        match self {
            Dependent::Record => "record",
            Dependent::List { .. } => "list",
            Dependent::View { .. } => "view",
            Dependent::Opaque => "opaque",
        }
    }

    /// Adds the entry `key` to what a write of the table is planned against: a list to
    /// `lists`, a view's response to `views`, an opaque dependent to `opaque`. A record
    /// response is added to none: the planner finds it by the record ids it contains.
    pub fn plan_into(
        &self,
        key: CacheKey,
        lists: &mut Vec<ListDependent>,
        views: &mut Vec<ViewDependent>,
        opaque: &mut Vec<CacheKey>,
    ) {
        match self {
            Dependent::List { query, window } => lists.push(ListDependent {
                key,
                query: query.clone(),
                window: Some(window.clone()),
            }),
            Dependent::View { view, bind, target } => views.push(ViewDependent {
                key,
                view: view.clone(),
                bind: bind.clone(),
                target: target.clone(),
            }),
            Dependent::Opaque => opaque.push(key),
            Dependent::Record => {}
        }
    }
}

/// One cached entry to register with a table's coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// The normalised cache key.
    pub key: String,
    /// The table's seq taken before the origin fetch (invariant 2).
    pub stamp: u64,
    /// How a write of the table can affect it.
    pub dependent: Dependent,
    /// Ids of this table's records the response contains.
    pub records: Vec<String>,
    /// Every table the entry depends on (more than one for views).
    pub tables: Vec<String>,
    /// Path and query to refetch it with (rehydrate).
    pub route: String,
    /// Whether the coordinator should refill it after invalidating it.
    pub rehydrate: bool,
    /// The route's TTL, for refilled copies.
    pub ttl_secs: u64,
    /// The cached body's digest (`shadow::body_digest`), which shadow checks compare a
    /// refetch with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// For a list of an HTTP origin: what its response showed, for learned query semantics
    /// (`semantics.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<ListObservation>,
}

impl Registration {
    /// Whether the coordinator refills this entry after invalidating it: its route asks for
    /// it, and the coordinator can stamp every table the copy depends on before reading it
    /// again (invariant 2): a table's entry needs its own seq alone; a view's gets each other
    /// table's from that table's coordinator, and is kept only if every one of them accepts it
    /// (`rehydrate::read_fresh`, `keep_copy`). An opaque entry of several tables is not refilled.
    pub fn refills(&self) -> bool {
        self.rehydrate
            && (self.tables.len() == 1 || matches!(self.dependent, Dependent::View { .. }))
    }
}

/// `POST /register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// Entries to register.
    pub entries: Vec<Registration>,
}

/// The coordinator's verdict on each registration, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// The table's seq after registering.
    pub seq: u64,
    /// `true`: the entry may be cached; `false`: a write since its stamp made it stale
    /// (invariant 3) and it was invalidated.
    pub accepted: Vec<bool>,
}

/// A write forwarded to the coordinator of its table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum WriteOp {
    /// `POST /v1/<table>`
    Create {
        /// The validated row (with its id).
        row: Row,
    },
    /// `PUT /v1/<table>/<id>`
    Replace {
        /// Record id.
        id: String,
        /// The validated row.
        row: Row,
    },
    /// `PATCH /v1/<table>/<id>`
    Patch {
        /// Record id.
        id: String,
        /// Columns to change.
        row: Row,
    },
    /// `DELETE /v1/<table>/<id>`
    Delete {
        /// Record id.
        id: String,
    },
    /// Any write to an HTTP origin, forwarded as it came.
    Forward {
        /// HTTP method.
        method: String,
        /// Canonical path (and query) under the origin's base URL.
        path: String,
        /// Record id from the path, if it names one.
        id: Option<String>,
        /// JSON object body.
        body: Option<Row>,
        /// The client's headers the origin decides on (`authorization`, `cookie` and the
        /// tenant's `forward_headers`); passed through, never stored or logged.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        headers: Vec<OriginHeader>,
    },
}

impl WriteOp {
    /// The record id the write names up front (a create learns it from the origin).
    pub fn id(&self) -> Option<&str> {
        match self {
            WriteOp::Create { .. } => None,
            WriteOp::Replace { id, .. } | WriteOp::Patch { id, .. } | WriteOp::Delete { id } => {
                Some(id)
            }
            WriteOp::Forward { id, .. } => id.as_deref(),
        }
    }
}

/// `POST /write`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteRequest {
    /// The table written.
    pub table: String,
    /// The operation.
    pub op: WriteOp,
    /// Test hooks only: a failure injected into this write (invariant 6's failures). Ignored
    /// unless `EDGECACHE_TEST_HOOKS=1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<WriteFault>,
    /// Answer with [`WriteResponse::explained`]: which keys the write made stale and why,
    /// and which registered keys it spared (the website's demo asks; bounded).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub explain: bool,
    /// The writing tenant's learning: its other tables (whose coordinators hear of the write,
    /// apply learned rules and shadow-check) and its setting. `None`: learn nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learn: Option<LearnContext>,
    /// Test hooks only: when the edge sent the write (the runtime's clock), so the
    /// coordinator's write timings can show the hop to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_ms: Option<u64>,
}

/// What a coordinator needs to know of the writing tenant's learning.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LearnContext {
    /// The tenant's other tables of the same data source.
    pub siblings: Vec<String>,
    /// The tenant's learning setting.
    pub learning: Learning,
}

/// Where a write fails, for the chaos tests: the coordinator dies at a step, or the origin
/// applies the write and its answer is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteFault {
    /// The coordinator dies after recording the intent, before the origin sees the write.
    CrashBeforeForward,
    /// The coordinator dies after the origin applied the write, before planning it.
    CrashAfterForward,
    /// The coordinator dies after planning, before recording the plan.
    CrashAfterPlan,
    /// The coordinator dies during the next refill after this write (after its origin read).
    CrashDuringRehydrate,
    /// The origin applies the write, but its answer never arrives (a dropped connection).
    AnswerLost,
    /// The origin applies the write and answers only after the edge stopped waiting.
    StallAfterForward,
    /// The origin fails before applying the write (the database is unreachable).
    OriginFails,
    /// The coordinator dies during a group commit, after recording the first write of the
    /// group and before the others (a group of one: after recording, before answering).
    CrashMidGroup,
    /// The origin takes [`SLOW_FORWARD_MS`] longer to answer (writes behind it queue up).
    SlowForward,
    /// The origin's answer to the next refill after this write arrives [`SLOW_REFILL_MS`]
    /// after it was read (a slow network), so another write can land between the two.
    SlowRefill,
}

/// How much longer the origin takes under [`WriteFault::SlowForward`].
pub const SLOW_FORWARD_MS: u64 = 400;

/// How long a refill's origin answer is held under [`WriteFault::SlowRefill`].
pub const SLOW_REFILL_MS: u64 = 2_000;

/// A write's outcome: the origin's answer plus the table's new seq.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteResponse {
    /// HTTP status for the client.
    pub status: u16,
    /// The body for the client (`Null`: none).
    pub body: serde_json::Value,
    /// The table's seq once the write is recorded (read-your-writes token).
    pub seq: u64,
    /// How many cached keys the write made stale.
    pub invalidated: usize,
    /// What the write did to the cache, key by key, when the request asked to `explain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explained: Option<WriteExplanation>,
    /// Other tables whose keys learned rules invalidated for this write, each with its seq
    /// after that invalidation: the token promises them too.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub related: std::collections::BTreeMap<String, u64>,
}

/// `POST /observe`: a write of another table of the tenant, which this coordinator's learned
/// rules may reach and whose effect on its keys it may shadow-check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObserveRequest {
    /// The written table.
    pub write_table: String,
    /// The write's route pattern (`shadow::write_pattern`).
    pub write_pattern: String,
    /// The written record's image before the write, if known.
    pub before: Option<Row>,
    /// Its image after the write (the origin's answer), if any.
    pub after: Option<Row>,
    /// The writing tenant's learning setting.
    pub learning: Learning,
    /// Seeds the shadow sample (the written table's seq: reproducible).
    pub seed: u64,
}

/// What `/observe` did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObserveResponse {
    /// The table's seq after the learned rules' invalidation; `None` when they invalidated
    /// nothing.
    pub seq: Option<u64>,
    /// Keys the learned rules invalidated.
    pub invalidated: usize,
    /// Shadow checks queued.
    pub checks: usize,
}

/// A tenant's learning setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Learning {
    /// What learned hypotheses may do.
    #[serde(default)]
    pub mode: LearningMode,
    /// Stop learning: no shadow checks (so no origin fetches for them), no evidence, no new
    /// rules; learned rules stay and apply.
    #[serde(default)]
    pub frozen: bool,
}

/// What learning may change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LearningMode {
    /// Measure and propose: skip no invalidation (rules that only add still apply).
    Observe,
    /// Also skip invalidations under verified hypotheses.
    #[default]
    Apply,
}

impl LearningMode {
    /// Its name in settings and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            LearningMode::Observe => "observe",
            LearningMode::Apply => "apply",
        }
    }
}

/// Shadow counts of one (write pattern, key pattern), with the estimates they give.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternCounts {
    /// The write's route pattern, or `*` for the table's totals.
    pub write_pattern: String,
    /// The checked keys' pattern, or `*` for the table's totals.
    pub key_pattern: String,
    /// The counts.
    pub counts: crate::shadow::ShadowCounts,
    /// Estimated precision of invalidation (`None`: no invalidated key checked).
    pub precision: Option<f64>,
    /// Estimated recall of invalidation (`None`: no change seen).
    pub recall: Option<f64>,
}

impl PatternCounts {
    /// The counts with their estimates.
    pub fn new(
        write_pattern: &str,
        key_pattern: &str,
        counts: crate::shadow::ShadowCounts,
    ) -> Self {
        PatternCounts {
            write_pattern: write_pattern.to_string(),
            key_pattern: key_pattern.to_string(),
            precision: counts.precision(),
            recall: counts.recall(),
            counts,
        }
    }
}

/// A learned rule as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleView {
    /// `<table>:<n>`, what `learn forget` takes.
    pub id: String,
    /// `POST /v1/orders -> /v1/users/{after.userId}`.
    pub rule: String,
    /// The rule itself.
    pub learned: crate::learned_rules::LearnedRule,
}

/// A dependency candidate: a dependency with evidence, not (yet) a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateView {
    /// `<table>:c<8 hex>` ([`LearnedRef`]), what `learn forget` takes.
    pub id: String,
    /// `POST /v1/orders -> /v1/users/{after.id}`.
    pub rule: String,
    /// Its evidence so far.
    pub evidence: crate::learned_rules::Evidence,
}

impl CandidateView {
    /// `dependency`, a candidate of `table` (its target), with its name.
    pub fn new(
        table: &str,
        dependency: &crate::learned_rules::Dependency,
        evidence: crate::learned_rules::Evidence,
    ) -> CandidateView {
        CandidateView {
            id: LearnedRef::candidate(table, dependency).to_string(),
            rule: dependency.to_string(),
            evidence,
        }
    }
}

/// What one table's coordinator has learned (`GET /learn`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableLearning {
    /// The table.
    pub table: String,
    /// Shadow counts: the table's totals first (`*`, `*`), then per pattern.
    pub shadow: Vec<PatternCounts>,
    /// Learned rules invalidating this table's keys.
    pub rules: Vec<RuleView>,
    /// Dependency candidates: dependencies with evidence that are not rules (contradicted or
    /// still short of support), most supported first, at most [`MAX_LISTED_CANDIDATES`].
    pub candidates: Vec<CandidateView>,
    /// Learned query semantics of this table's list routes (`semantics.rs`): each parameter's
    /// hypotheses with their support, counter-examples and whether they are confident; then
    /// each write route's write-through hypothesis (`answer_through.rs`).
    pub hypotheses: Vec<RouteHypotheses>,
    /// Shadow checks queued and not yet done.
    pub pending_checks: u64,
}

/// Dependency candidates listed at most per table.
pub const MAX_LISTED_CANDIDATES: usize = 20;

/// `GET /tenants/{name}/learn`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LearnStatus {
    /// The tenant.
    pub tenant: String,
    /// Its learning setting.
    pub learning: Learning,
    /// Each table's learning.
    pub tables: Vec<TableLearning>,
}

/// A coordinator's `POST /learn/forget`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForgetRequest {
    /// The rule's id in that coordinator.
    pub rule: u64,
}

/// `DELETE /tenants/{name}/learn/rules/{id}`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForgottenRule {
    /// The rule's id.
    pub id: String,
    /// What it said.
    pub rule: String,
}

/// A coordinator's `POST /learn/forget-hypothesis`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForgetHypothesisRequest {
    /// The hypothesis's name, `<table>:h<8 hex>` ([`LearnedRef`]).
    pub hypothesis: String,
}

/// `DELETE /tenants/{name}/learn/hypotheses/{id}`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForgottenHypotheses {
    /// The name asked for.
    pub id: String,
    /// The hypotheses forgotten under it (one, unless two share the name), with their routes.
    pub forgotten: Vec<RouteHypotheses>,
    /// Keys kept or written through under their routes, now invalidated.
    pub invalidated: u64,
    /// The table's seq after it: `<table>=<seq>` as a token reads nothing older.
    pub seq: u64,
}

/// A coordinator's `POST /learn/forget-candidate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForgetCandidateRequest {
    /// The candidate's name, `<table>:c<8 hex>` ([`LearnedRef`]).
    pub candidate: String,
}

/// `DELETE /tenants/{name}/learn/candidates/{id}`'s answer. Forgetting a candidate invalidates
/// nothing: a candidate is evidence short of a rule and no plan ever used it (only a rule acts,
/// and only by adding invalidations), so no key was spared or invalidated under it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForgottenCandidates {
    /// The name asked for.
    pub id: String,
    /// The candidates forgotten under it (one, unless two share the name), with their
    /// evidence as it was.
    pub forgotten: Vec<CandidateView>,
    /// The table's seq (unchanged: nothing was invalidated).
    pub seq: u64,
}

/// `DELETE /tenants/{name}/learn/tables/{table}`'s answer: everything the table's coordinator
/// had learned, forgotten.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ForgottenLearning {
    /// The table.
    pub table: String,
    /// Learned rules forgotten.
    pub rules: u64,
    /// Hypotheses forgotten: dependency hypotheses short of a rule, list semantics and
    /// write-through.
    pub hypotheses: u64,
    /// Keys kept or written through under them, now invalidated.
    pub invalidated: u64,
    /// The table's seq after it: `<table>=<seq>` as a token reads nothing older.
    pub seq: u64,
}

/// Keys listed at most in each part of a [`WriteExplanation`].
pub const MAX_EXPLAINED_KEYS: usize = 100;

/// A write's effect on the cache, key by key (at most [`MAX_EXPLAINED_KEYS`] of each kind).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WriteExplanation {
    /// Keys the write made stale, in planning order.
    pub stale: Vec<StaleKey>,
    /// Keys still registered after the write: the write could not have changed them.
    pub spared: Vec<SparedKey>,
}

/// A key a write made stale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StaleKey {
    /// The key.
    pub key: String,
    /// Why the planner made it stale.
    pub reason: InvalidationReason,
    /// Whether the coordinator refills it from the origin in the background (rehydrate).
    #[serde(default)]
    pub refilled: bool,
}

/// A registered key a write left alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SparedKey {
    /// The key.
    pub key: String,
    /// `record`, `list` or `opaque` (see [`Dependent::kind`]).
    pub kind: String,
}

/// `POST /_edgecache/admin/tenants/{name}/explain`: a write to explain, as a client would send
/// it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainWrite {
    /// `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// `/v1/<table>` or `/v1/<table>/<id>`.
    pub path: String,
    /// The JSON body (none for a delete).
    #[serde(default)]
    pub body: Option<serde_json::Value>,
}

/// The coordinator's `POST /explain`: what `op` would do, without doing it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainRequest {
    /// The coordinated table (checked like a write's).
    pub table: String,
    /// The write.
    pub op: WriteOp,
}

/// What a write would do to one cached key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyAction {
    /// Invalidated; the next read refills it from the origin.
    Invalidate,
    /// Invalidated and refilled from the origin in the background (rehydrate).
    Refresh,
    /// Invalidated and rebuilt from its cached copy and the write's after image, with no
    /// origin read (a list page the write changed only where it shows the row); refilled from
    /// the origin if that copy is not the one the write was planned against.
    RefreshInPlace,
    /// Left as it is: the write cannot change it.
    Spare,
}

/// Why: the planner's reason for a stale key (for a list page, how the write may change it),
/// or why it spares one. Serialized as the variant's snake_case name alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeyReason {
    /// A stale record or opaque key.
    Invalidation(InvalidationReason),
    /// A stale list page.
    Page(StaleCause),
    /// A spared key.
    Spared(SpareReason),
}

/// One cached key in an explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainedKey {
    /// The key.
    pub key: String,
    /// What the write would do to it.
    pub action: KeyAction,
    /// Why.
    pub reason: KeyReason,
}

/// The answer to an explained write: nothing was written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExplainResponse {
    /// The record as the origin holds it now (`None`: absent).
    pub before: Option<Row>,
    /// The record as the write would leave it (`None`: deleted), without `unpredictable`.
    pub after: Option<Row>,
    /// Columns of `after` whose stored value cannot be predicted (a DEFAULT, a value SQLite's
    /// type affinity converts); the planner treats them as unknown, which only stales more.
    pub unpredictable: Vec<String>,
    /// The tenant's cached keys of the table: those the write would invalidate or refresh
    /// (every one), then those it would spare (at most [`MAX_EXPLAINED_KEYS`]).
    pub keys: Vec<ExplainedKey>,
    /// More keys would be spared than are listed.
    pub truncated: bool,
}

/// `POST /refresh`: keys an edge served stale-while-revalidate; the coordinator refills those
/// it tracks and can refill (its refill queue holds each key once, so concurrent asks make one
/// refill).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RefreshRequest {
    /// Cache keys.
    pub keys: Vec<String>,
}

/// A manual invalidation (webhook, admin API).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InvalidateRequest {
    /// Exact cache keys.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Record ids of this table.
    #[serde(default)]
    pub records: Vec<String>,
    /// Keys starting with these prefixes (`tenant:/v1/users`).
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Every entry of the table.
    #[serde(default)]
    pub all: bool,
}

/// One invalidated key and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invalidated {
    /// The key.
    pub key: String,
    /// Why.
    pub reason: InvalidationReason,
}

/// The answer to a manual invalidation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvalidateResponse {
    /// The table's seq after invalidating.
    pub seq: u64,
    /// What was invalidated (`*` for the whole table).
    pub invalidated: Vec<Invalidated>,
}

/// What the coordinator knows of a key (`GET /inspect?key=`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The key.
    pub key: String,
    /// Its registration, if it is registered.
    pub entry: Option<Registration>,
    /// Seq of its last invalidation, with the reason.
    pub last_invalidated: Option<(u64, InvalidationReason)>,
}

/// Which keys contain a record (`GET /inspect?record=`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordInfo {
    /// The record id.
    pub record: String,
    /// Keys whose responses contain it.
    pub keys: Vec<String>,
    /// Seq of the record's last write.
    pub last_write: Option<u64>,
}

/// Coordinator counters (`GET /stats`); absent counters read as 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CoordinatorStats {
    /// The table's seq.
    pub seq: u64,
    /// Registered keys.
    pub keys: u64,
    /// Keys waiting to be refilled.
    pub pending_rehydrates: u64,
    /// Writes recorded since the coordinator started.
    pub writes: u64,
    /// Batches committed since the coordinator started (`writes / commits` is the mean group).
    #[serde(default)]
    pub commits: u64,
    /// Learned query semantics, per list route, and learned write-through, per write route.
    #[serde(default)]
    pub hypotheses: Vec<RouteHypotheses>,
    /// Origin reads its refills made since it started.
    #[serde(default)]
    pub refills: u64,
    /// Record copies it rebuilt from a write's after image (D1) or, where that is learned,
    /// its answer (an HTTP origin) since it started (no origin read).
    #[serde(default)]
    pub written_through: u64,
    /// List pages it patched in place with a write's after image since it started (no origin
    /// read).
    #[serde(default)]
    pub patched: u64,
}

/// A route's learned hypotheses: a list route's query semantics, or a write route's
/// write-through (`answer_through`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteHypotheses {
    /// The route (`/v1/<table>`, or a write pattern such as `PATCH /v1/<table>/{id}`).
    pub route: String,
    /// Its hypotheses with their evidence.
    pub hypotheses: Vec<HypothesisStatus>,
}

impl RouteHypotheses {
    /// `route`'s hypotheses in `table`, each given its name ([`LearnedRef`]).
    pub fn new(table: &str, route: String, hypotheses: Vec<HypothesisStatus>) -> RouteHypotheses {
        let hypotheses = hypotheses
            .into_iter()
            .map(|h| HypothesisStatus {
                id: LearnedRef::hypothesis(table, &route, &h.hypothesis()).to_string(),
                ..h
            })
            .collect();
        RouteHypotheses { route, hypotheses }
    }
}

/// A coordinator error, answered with its HTTP status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// `{"code", "message"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable code.
    pub code: String,
    /// Human message.
    pub message: String,
}

/// Where a tenant's data lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OriginConfig {
    /// The deployment's own D1 database (the `DB` binding).
    D1,
    /// The tenant's own HTTP API.
    Http {
        /// Base URL; `/v1/...` paths are appended to it.
        base_url: String,
        /// Credentials EdgeCache adds to every request it makes to the API (reads, writes,
        /// refills). Secrets: shown back only as names (see [`Tenant::redacted`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        headers: Vec<OriginHeader>,
    },
}

/// One header EdgeCache sends to an HTTP origin, e.g. `X-Origin-Key: …`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginHeader {
    /// Header name, lowercase.
    pub name: String,
    /// Its value; [`REDACTED`] wherever a tenant is shown.
    pub value: String,
}

/// What a secret's value is shown as.
pub const REDACTED: &str = "[redacted]";

impl OriginConfig {
    /// The data source this origin reads and writes: every tenant on the same source shares
    /// its tables' coordinators, so a write through any of them invalidates all of them.
    pub fn source(&self) -> DataSource {
        match self {
            OriginConfig::D1 => DataSource::d1(),
            OriginConfig::Http { base_url, .. } => DataSource::http(base_url),
        }
    }

    /// The same origin with every credential's value replaced by [`REDACTED`].
    pub fn redacted(&self) -> OriginConfig {
        match self {
            OriginConfig::D1 => OriginConfig::D1,
            OriginConfig::Http { base_url, headers } => OriginConfig::Http {
                base_url: base_url.clone(),
                headers: headers
                    .iter()
                    .map(|h| OriginHeader {
                        name: h.name.clone(),
                        value: REDACTED.to_string(),
                    })
                    .collect(),
            },
        }
    }
}

/// A tenant as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    /// Name (`[a-z0-9][a-z0-9-]{0,62}`), also its host label.
    pub name: String,
    /// Where its data lives.
    pub origin: OriginConfig,
    /// Route rules.
    pub rules: Vec<crate::rules::RouteRule>,
    /// Named views and the tables each reads.
    pub views: crate::schema::ViewDecls,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// Who may read and write, beyond the defaults (see [`Access`]).
    #[serde(default)]
    pub access: Access,
    /// The tables of an HTTP origin EdgeCache knows: declared, or learned when the origin
    /// first answered a read of one with a 2xx. A request for any other table creates nothing
    /// (no coordinator, no view, no counter). Unused for the built-in D1 origin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// What EdgeCache may learn and do with it (`README.md` "Learned invalidation").
    #[serde(default)]
    pub learning: Learning,
}

/// Most tables of an HTTP origin one tenant has (declared and learned).
pub const MAX_HTTP_TABLES: usize = 100;

impl Tenant {
    /// Whether requests for `table` may create state: every table of the D1 schema, and the
    /// known tables of an HTTP origin.
    pub fn knows_table(&self, table: &str) -> bool {
        match self.origin {
            OriginConfig::D1 => true,
            OriginConfig::Http { .. } => self.tables.iter().any(|t| t == table),
        }
    }
}

impl Tenant {
    /// What a write of `table` tells its coordinator of the tenant's learning: for an HTTP
    /// origin, its other known tables and its setting. The built-in D1 origin is planned
    /// exactly (its writes change one row of one table), so it learns nothing.
    pub fn learn_context(&self, table: &str) -> Option<LearnContext> {
        match self.origin {
            OriginConfig::D1 => None,
            OriginConfig::Http { .. } => Some(LearnContext {
                siblings: self
                    .tables
                    .iter()
                    .filter(|t| *t != table)
                    .cloned()
                    .collect(),
                learning: self.learning,
            }),
        }
    }

    /// The tenant as the admin API shows it: origin credentials by name only.
    pub fn redacted(&self) -> Tenant {
        Tenant {
            origin: self.origin.redacted(),
            ..self.clone()
        }
    }
}

/// A tenant's access settings. Writes through the built-in D1 origin always need a write key;
/// these add to that.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// Reads need a read or write key too.
    #[serde(default)]
    pub private_reads: bool,
    /// Writes to the tenant's HTTP origin need an EdgeCache write key (sent as
    /// `x-edgecache-key`, since `Authorization` is the origin's), as well as whatever the
    /// origin itself asks.
    #[serde(default)]
    pub require_write_key: bool,
    /// Request headers, beyond `authorization` and `cookie`, forwarded to an HTTP origin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forward_headers: Vec<String>,
}

/// A tenant with its credentials, as the registry stores it. The admin token is kept only as a
/// hash (it is only ever verified); the webhook secret is kept as is (HMAC needs it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// The tenant.
    #[serde(flatten)]
    pub tenant: Tenant,
    /// SHA-256 of the admin token, hex.
    pub admin_token_hash: Option<String>,
    /// Webhook secret; `None` falls back to the `EDGECACHE_WEBHOOK_SECRET` secret (default
    /// tenant only).
    pub webhook_secret: Option<String>,
    /// The tenant's API keys, each kept only as a hash.
    #[serde(default)]
    pub api_keys: Vec<crate::access::ApiKey>,
}

/// `POST /tenants` of the admin API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Name.
    pub name: String,
    /// Origin: required, so that nobody shares the deployment's built-in D1 database by
    /// accident (`{"kind": "d1"}` says so on purpose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<OriginConfig>,
    /// Named views; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub views: Option<crate::schema::ViewDecls>,
    /// Access settings; the defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    /// The HTTP origin's tables, declared up front (others are learned on first read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
}

/// `PATCH /tenants/{name}`: changes some settings, leaves the rest. Origin headers given here
/// replace all of the tenant's origin headers (that is how a credential is rotated).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
    /// Reads need a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_reads: Option<bool>,
    /// Writes to an HTTP origin need an EdgeCache write key as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_write_key: Option<bool>,
    /// Extra request headers forwarded to an HTTP origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_headers: Option<Vec<String>>,
    /// The HTTP origin's credential headers (replacing the current ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_headers: Option<Vec<OriginHeader>>,
    /// The HTTP origin's known tables (replacing the current ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
    /// The learning mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning: Option<LearningMode>,
    /// Freeze (`true`) or unfreeze learning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_frozen: Option<bool>,
}

/// Most origin headers, and most forwarded headers, one tenant has.
pub const MAX_TENANT_HEADERS: usize = 16;

/// Headers no tenant may set on its origin or forward: they belong to the transport or to
/// EdgeCache itself.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "accept",
    "accept-encoding",
    "x-edgecache-key",
    "x-edgecache-origin",
];

/// Checks and normalises header names (lowercase; RFC 9110 token characters) and values
/// (visible ASCII and spaces).
pub fn check_headers(headers: &mut [OriginHeader]) -> Result<(), crate::ApiError> {
    if headers.len() > MAX_TENANT_HEADERS {
        return Err(bad_header(format!(
            "at most {MAX_TENANT_HEADERS} origin headers"
        )));
    }
    for h in headers.iter_mut() {
        h.name = check_header_name(&h.name)?;
        h.value = h.value.trim().to_string();
        if h.value.is_empty()
            || h.value.len() > 4096
            || !h
                .value
                .bytes()
                .all(|b| b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b))
        {
            return Err(bad_header(format!(
                "the value of `{}` must be 1-4096 visible ASCII characters",
                h.name
            )));
        }
    }
    Ok(())
}

/// A header name, lowercased, if it is a token of at most 64 characters and not reserved.
pub fn check_header_name(name: &str) -> Result<String, crate::ApiError> {
    let name = name.trim().to_ascii_lowercase();
    let token = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(bad_header(format!("`{name}` is not a header name")));
    }
    if RESERVED_HEADERS.contains(&name.as_str()) {
        return Err(bad_header(format!("`{name}` cannot be set or forwarded")));
    }
    Ok(name)
}

fn bad_header(message: String) -> crate::ApiError {
    crate::ApiError::new(400, "bad_header", message)
}

/// `Name: value`, as the CLI takes an origin header.
pub fn parse_header_line(line: &str) -> Result<OriginHeader, crate::ApiError> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| bad_header(format!("`{line}` is not `Name: value`")))?;
    let mut h = [OriginHeader {
        name: name.to_string(),
        value: value.to_string(),
    }];
    check_headers(&mut h)?;
    let [h] = h;
    Ok(h)
}

/// A created tenant and its credentials, shown once. `T` is how the tenant is read (the CLI
/// reads it leniently).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedTenant<T = Tenant> {
    /// The tenant.
    pub tenant: T,
    /// Bearer token for the tenant's admin API.
    pub admin_token: String,
    /// Secret that signs the tenant's invalidation webhooks.
    pub webhook_secret: String,
}

// Answers of the admin API. Most default what is absent, so the CLI reads answers of servers
// older or newer than itself; the worker sends every object's keys sorted.

/// `GET /whoami`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Whoami {
    /// `operator` or `tenant`.
    pub role: String,
    /// The tenant a tenant token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// `GET /tenants`. `T` is how a tenant is read, as in [`CreatedTenant`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantList<T = Tenant> {
    /// Every tenant.
    pub tenants: Vec<T>,
}

/// `GET /tenants/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantEnvelope<T = Tenant> {
    /// The tenant.
    pub tenant: T,
}

/// `GET /tenants/{name}/rules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleList {
    /// The tenant's rules.
    pub rules: Vec<crate::rules::RouteRule>,
}

/// `PUT /tenants/{name}/rules`: the rule as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleEnvelope {
    /// The rule.
    pub rule: crate::rules::RouteRule,
}

/// `POST /tenants/{name}/invalidate` and the webhook: what was invalidated, across tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InvalidationResult {
    /// Every key invalidated, once, by key.
    pub invalidated: Vec<Invalidated>,
    /// Each touched table's seq after invalidating.
    pub seqs: std::collections::BTreeMap<String, u64>,
}

/// `GET /tenants/{name}/deps?url=`: what a URL's key depends on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyDeps {
    /// The cache key the URL maps to.
    pub key: String,
    /// Its registration; `None` when no coordinator knows the key.
    pub entry: Option<DepEntry>,
    /// What each table's coordinator knows of the key.
    pub coordinators: std::collections::BTreeMap<String, KeyAtTable>,
}

/// A registered key, as the first coordinator that knows it registered it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DepEntry {
    /// `record`, `list` or `opaque`.
    pub kind: String,
    /// A list's query.
    pub query: Option<ListQuery>,
    /// Records it contains, `table:id`.
    pub records: Vec<String>,
    /// The route it was filled for.
    pub route: String,
    /// Whether it is refilled after invalidation.
    pub rehydrate: bool,
    /// Each table that registered it, with the stamp it was filled at.
    pub tables: std::collections::BTreeMap<String, u64>,
}

/// One table coordinator's view of a key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyAtTable {
    /// The stamp the key is registered with.
    pub registered_stamp: Option<u64>,
    /// Its last invalidation.
    pub last_invalidated: Option<LastInvalidation>,
}

/// When and why a key was last invalidated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastInvalidation {
    /// The table's seq at the time.
    pub seq: u64,
    /// Why.
    pub reason: InvalidationReason,
}

/// `GET /tenants/{name}/deps?record=`: which keys hold a record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordDeps {
    /// The record, `table:id`.
    pub record: String,
    /// Keys whose responses contain it.
    pub keys: Vec<String>,
    /// Seq of its last write.
    pub last_write: Option<u64>,
}

/// `GET /tenants/{name}/stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TenantStats {
    /// The tenant.
    pub tenant: String,
    /// The answering isolate's counters for the tenant, with `l1` among them.
    pub edge: EdgeCounters,
    /// The answering isolate's memory tier.
    pub l1: L1Summary,
    /// Each table coordinator's counters.
    pub coordinators: std::collections::BTreeMap<String, CoordinatorStats>,
    /// The answering isolate's view of each table: how long writes took to reach it
    /// (invalidation lag) and how its refreshes were answered (relay or coordinator).
    #[serde(default)]
    pub views: std::collections::BTreeMap<String, crate::lag::LagSummary>,
}

/// An isolate's memory tier (L1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct L1Summary {
    /// Entries held.
    pub entries: u64,
    /// Bytes held.
    pub bytes: u64,
    /// Byte budget.
    pub max_bytes: u64,
    /// Entries evicted to stay within budget.
    pub evictions: u64,
    /// Entries refused for being larger than the budget.
    pub rejections: u64,
}

/// One tenant's read counters in one isolate (`stats.edge`), counted by the edge and shown by
/// the CLI.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EdgeCounters {
    /// Reads served from L1.
    pub hits_l1: u64,
    /// Reads served from L2.
    pub hits_l2: u64,
    /// Reads that went to the origin.
    pub misses: u64,
    /// Reads served stale because the origin failed.
    pub stale: u64,
    /// Reads of `no-store` routes.
    pub bypass: u64,
    /// Misses that waited for another request's origin fetch instead of making their own.
    pub coalesced: u64,
    /// Origin reads made.
    pub origin_fetches: u64,
    /// Fills a coordinator refused because a write overtook them.
    pub overtaken: u64,
    /// Per route (relation): hits and misses.
    pub routes: std::collections::BTreeMap<String, RouteCounters>,
    /// The isolate's memory tier, filled in when the counters are answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l1: Option<L1Summary>,
}

/// Hits and misses of one route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteCounters {
    /// Hits in either tier.
    pub hits: u64,
    /// Misses.
    pub misses: u64,
}

impl EdgeCounters {
    /// Counts a read's outcome.
    pub fn count(&mut self, route: &str, outcome: crate::outcome::Outcome) {
        let (hits, misses) = match outcome {
            crate::outcome::Outcome::HitL1 => {
                self.hits_l1 += 1;
                (1, 0)
            }
            crate::outcome::Outcome::HitL2 => {
                self.hits_l2 += 1;
                (1, 0)
            }
            crate::outcome::Outcome::Miss => {
                self.misses += 1;
                (0, 1)
            }
            crate::outcome::Outcome::Stale => {
                self.stale += 1;
                (0, 0)
            }
            crate::outcome::Outcome::Bypass => {
                self.bypass += 1;
                (0, 0)
            }
        };
        // Looked up before inserting: a hit allocates nothing for a route already counted.
        match self.routes.get_mut(route) {
            Some(r) => {
                r.hits += hits;
                r.misses += misses;
            }
            None => {
                self.routes
                    .insert(route.to_string(), RouteCounters { hits, misses });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn origin_headers_are_checked_and_lowercased() {
        let h = parse_header_line("X-Origin-Key:  abc def ").unwrap();
        assert_eq!(
            (h.name.as_str(), h.value.as_str()),
            ("x-origin-key", "abc def")
        );
        for bad in [
            "no colon",
            ": v",
            "bad name: v",
            "Host: x",
            "x-edgecache-key: k",
            "x:",
        ] {
            let e = parse_header_line(bad).unwrap_err();
            assert_eq!((e.status, e.code.as_str()), (400, "bad_header"), "{bad}");
        }
        assert!(
            parse_header_line("x: caf\u{e9}").is_err(),
            "visible ASCII only"
        );
        let mut many: Vec<OriginHeader> = (0..=MAX_TENANT_HEADERS)
            .map(|i| OriginHeader {
                name: format!("x-{i}"),
                value: "v".into(),
            })
            .collect();
        assert!(check_headers(&mut many).is_err());
    }

    #[test]
    fn redaction_keeps_names_and_hides_values() {
        let origin = OriginConfig::Http {
            base_url: "https://api.example".into(),
            headers: vec![OriginHeader {
                name: "x-origin-key".into(),
                value: "secret".into(),
            }],
        };
        let shown = serde_json::to_string(&origin.redacted()).unwrap();
        assert!(shown.contains("x-origin-key") && shown.contains(REDACTED));
        assert!(!shown.contains("secret"));
        assert_eq!(OriginConfig::D1.redacted(), OriginConfig::D1);
    }

    proptest! {
        /// Any header line is either refused with a typed error or accepted as a lowercase
        /// token name and a value with no control characters; never a panic.
        #[test]
        fn header_lines_never_panic(line in "\\PC{0,80}") {
            if let Ok(h) = parse_header_line(&line) {
                prop_assert_eq!(h.name.clone(), h.name.to_ascii_lowercase());
                prop_assert!(!h.value.is_empty() && h.value.bytes().all(|b| (0x20..0x7f).contains(&b) || b == b'\t'));
            }
        }
    }
}
