//! Learned query semantics for HTTP origins: what each query parameter of a list route means,
//! inferred from the list responses EdgeCache caches, so that such lists can be planned by the
//! same predicate planner as the D1 origin's (`planner::list_effect`).
//!
//! An edge turns each cached list response into a small [`ListObservation`] (which fields every
//! row equals or starts with each parameter's value, which fields the rows are sorted by, the
//! page's ids and its first and last rows). A coordinator folds observations into a
//! [`RouteSemantics`] per route: [`Hypothesis`]es with support and counter-example counts.
//!
//! **Confidence.** A hypothesis is *established* after [`CONFIDENT_SUPPORT`] distinct
//! supporting responses and no counter-example (an equality or prefix filter also needs two
//! distinct values). A parameter (or the route's default order) is *resolved* when exactly one
//! of its hypotheses has support and no counter-example, and that one is established: two
//! mappings the responses cannot tell apart (two fields always equal, an order field constant
//! wherever it was seen) leave the parameter unresolved, and a list with an unresolved
//! parameter is planned conservatively. Why ten: each supporting response is a trial that a
//! wrong mapping fails with probability at least one half (a page of two or more distinct values
//! that happens to be sorted by an unrelated field; a page whose rows all equal an unrelated
//! parameter's value), so a wrong mapping survives ten independent trials with probability at
//! most 2^-10 < 0.1 %, and the first later counter-example revokes it. What responses cannot
//! show is out of reach: a filter that was only ever seen to select exact matches is taken as
//! an equality even if it is a prefix match, and a hidden server-side condition is invisible;
//! shadow verification is the backstop for both ([`RouteSemantics::revoke_all`]). Offsets are
//! learned from pairs of pages, which tie them to one another, not to the list's start (pages
//! of one row numbered from 1 look like offsets); the planner places a row by the page's own
//! first and last rows (`ListWindow`), never by the offset's value.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::extract::ListWindow;
use super::predicate::{cmp_rows, column_value, row_matches, Match};
use super::query::{Filter, ListQuery, Order, DEFAULT_LIMIT, MAX_LIMIT};
use super::{id_text, Row};

/// Distinct supporting responses a hypothesis needs before it is established.
pub const CONFIDENT_SUPPORT: usize = 10;
/// Distinct values an equality or prefix filter must have been seen with.
pub const CONFIDENT_VALUES: usize = 2;
/// Ids of a page an observation carries; a longer page is checked by its first ids only.
pub const MAX_OBSERVED_IDS: usize = 64;
/// Pages a route keeps for the cross-page checks of offset parameters.
pub const MAX_KEPT_PAGES: usize = 32;
/// Parameters a route learns about; others (anyone can invent one) leave their lists
/// conservative.
pub const MAX_PARAMS: usize = 16;
/// Scalar fields a page may show to be observed; wider rows are not learned from (their lists
/// stay conservative), which keeps a route's state small.
pub const MAX_FIELDS: usize = 32;

/// What a list response showed, as an edge reports it with the key's registration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListObservation {
    /// The query's decoded pairs, sorted by name (as the cache key holds them).
    pub params: Vec<(String, String)>,
    /// The fill stamp: pages filled at the same stamp show the same state of the list.
    pub stamp: u64,
    /// The table's id field (ties in every order are broken by it).
    pub id_field: String,
    /// Rows on the page.
    pub rows: u32,
    /// The rows' ids in order (at most [`MAX_OBSERVED_IDS`]).
    pub ids: Vec<String>,
    /// Scalar fields present on the page.
    pub fields: Vec<String>,
    /// Per parameter (same order as `params`): the fields every row's value equals it.
    pub equal: Vec<Vec<String>>,
    /// Per parameter: for a value ending in `*`, the fields every row's value starts with the
    /// rest of it.
    pub prefixed: Vec<Vec<String>>,
    /// Fields the page is sorted by (ties by id, as SQLite's `ORDER BY f, id` would).
    pub sorted: Vec<SortFact>,
    /// Fields with a single value on the page: they say nothing about order.
    pub constant: Vec<String>,
    /// The first row, reduced to the sorted and constant fields and the id.
    pub first: Option<Row>,
    /// The last row, reduced likewise.
    pub last: Option<Row>,
}

/// A field a page is sorted by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SortFact {
    /// The field.
    pub field: String,
    /// Sorted in descending order (`ORDER BY f DESC, id DESC`).
    pub descending: bool,
}

/// What a parameter is hypothesised to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HypothesisKind {
    /// `param=v` keeps the rows whose `field` equals `v`.
    Equals,
    /// `param=v*` keeps the rows whose `field` starts with `v`.
    Prefix,
    /// `param=n` returns at most `n` rows, exactly `n` unless the list ends.
    Limit,
    /// `param=n` skips the first `n` rows of the list.
    Offset,
    /// `param=p` shows page `p` of the page size the query's limit gives, the first page
    /// being 1: it skips `(p - 1) × limit` rows.
    Page,
    /// Likewise with the first page 0: it skips `p × limit` rows.
    PageFromZero,
    /// `param=f` (or `-f`) sorts by field `f` (descending), ties by id.
    OrderParam,
    /// Without an order parameter the route sorts by `field`, ties by id.
    DefaultOrder,
    /// A write route's answer is the record's `GET` (`answer_through`): the record's key is
    /// written through from it.
    WriteAnswer,
}

impl HypothesisKind {
    /// The snake_case name used in stats.
    pub fn as_str(self) -> &'static str {
        match self {
            HypothesisKind::Equals => "equals",
            HypothesisKind::Prefix => "prefix",
            HypothesisKind::Limit => "limit",
            HypothesisKind::Offset => "offset",
            HypothesisKind::Page => "page",
            HypothesisKind::PageFromZero => "page_from_zero",
            HypothesisKind::OrderParam => "order_param",
            HypothesisKind::DefaultOrder => "default_order",
            HypothesisKind::WriteAnswer => "write_answer",
        }
    }
}

/// Which hypothesis: a parameter's role, or the route's default order (`param` `None`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HypothesisId {
    /// The query parameter; `None` for the default order.
    pub param: Option<String>,
    /// Its role.
    pub kind: HypothesisKind,
    /// The field it names (filters, default order).
    pub field: Option<String>,
    /// For the default order: descending.
    pub descending: bool,
}

impl fmt::Display for HypothesisId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.param.as_deref().unwrap_or("(no order param)"),
            self.kind.as_str()
        )?;
        if let Some(field) = &self.field {
            write!(f, " {}{field}", if self.descending { "-" } else { "" })?;
        }
        Ok(())
    }
}

/// One hypothesis and its evidence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Distinct supporting responses (kept up to [`CONFIDENT_SUPPORT`]).
    pub support: BTreeSet<String>,
    /// Distinct parameter values among them (kept up to [`CONFIDENT_VALUES`]).
    pub values: BTreeSet<String>,
    /// Responses that contradicted it.
    pub counter_examples: u32,
    /// When a response last supported it (ms), 0 if never.
    pub last_verified_ms: u64,
}

impl Evidence {
    fn needs_values(kind: HypothesisKind) -> bool {
        matches!(kind, HypothesisKind::Equals | HypothesisKind::Prefix)
    }

    /// Supported and never contradicted: a rival of any other mapping of its parameter.
    fn standing(&self) -> bool {
        !self.support.is_empty() && self.counter_examples == 0
    }

    fn established(&self, kind: HypothesisKind) -> bool {
        self.standing()
            && self.support.len() >= CONFIDENT_SUPPORT
            && (!Self::needs_values(kind) || self.values.len() >= CONFIDENT_VALUES)
    }
}

/// A hypothesis as stats show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HypothesisStatus {
    /// Its name ([`LearnedRef`](crate::learned_ref::LearnedRef)), what `learn forget` takes;
    /// given by `protocol::RouteHypotheses::new`, which knows the table and route (empty
    /// before).
    #[serde(default)]
    pub id: String,
    /// The parameter (`None`: default order).
    pub param: Option<String>,
    /// Its role.
    pub kind: HypothesisKind,
    /// The field it names.
    pub field: Option<String>,
    /// Descending (orders).
    pub descending: bool,
    /// Distinct supporting responses (counted up to [`CONFIDENT_SUPPORT`]).
    pub support: usize,
    /// Contradicting responses.
    pub counter_examples: u32,
    /// The parameter is resolved to this hypothesis: lists may be planned by it.
    pub confident: bool,
    /// When a response last supported it (ms).
    pub last_verified_ms: u64,
}

impl HypothesisStatus {
    /// Which hypothesis this is.
    pub fn hypothesis(&self) -> HypothesisId {
        HypothesisId {
            param: self.param.clone(),
            kind: self.kind,
            field: self.field.clone(),
            descending: self.descending,
        }
    }
}

/// A page kept for the cross-page checks of offsets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct KeptPage {
    params: Vec<(String, String)>,
    stamp: u64,
    id_field: String,
    ids: Vec<String>,
    complete: bool,
    fields: Vec<String>,
    sorted: Vec<SortFact>,
    constant: Vec<String>,
    first: Option<Row>,
    last: Option<Row>,
}

/// Everything learned about one list route.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteSemantics {
    hypotheses: BTreeMap<String, (HypothesisId, Evidence)>,
    pages: VecDeque<KeptPage>,
}

/// A list planned by learned semantics: the query the planner evaluates, the page's window and
/// the hypotheses it rests on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LearnedList {
    /// The list's meaning as a D1-style query.
    pub query: ListQuery,
    /// The page as filled.
    pub window: ListWindow,
    /// The hypotheses used (a counter-example to any of them makes the list conservative).
    pub hypotheses: Vec<HypothesisId>,
}

/// Computes the observation of a list response: `params` are the key's decoded, sorted pairs,
/// `body` the response, `id_column` the table's id field. `None` when the body is not a
/// `{"data": [objects]}` list.
pub fn observe_list(
    params: &[(String, String)],
    body: &Value,
    id_column: &str,
    stamp: u64,
) -> Option<ListObservation> {
    let Some(Value::Array(items)) = body.get("data") else {
        return None;
    };
    let rows: Vec<&Row> = items
        .iter()
        .map(Value::as_object)
        .collect::<Option<Vec<_>>>()?;
    let mut fields: BTreeSet<String> = BTreeSet::new();
    for row in &rows {
        for (name, value) in row.iter() {
            if is_scalar(value) {
                fields.insert(name.clone());
            }
        }
    }
    if fields.len() > MAX_FIELDS {
        return None;
    }
    let all_match = |filter: Filter| {
        let q = filter_query(filter);
        !rows.is_empty() && rows.iter().all(|r| row_matches(&q, r) == Match::Yes)
    };
    let equal = params
        .iter()
        .map(|(_, value)| {
            fields
                .iter()
                .filter(|f| {
                    all_match(Filter::Eq {
                        column: (*f).clone(),
                        value: value.clone(),
                    })
                })
                .cloned()
                .collect()
        })
        .collect();
    let prefixed = params
        .iter()
        .map(|(_, value)| match value.strip_suffix('*') {
            Some(prefix) => fields
                .iter()
                .filter(|f| {
                    all_match(Filter::Prefix {
                        column: (*f).clone(),
                        prefix: prefix.to_string(),
                    })
                })
                .cloned()
                .collect(),
            None => Vec::new(),
        })
        .collect();
    let mut sorted = Vec::new();
    let mut constant = Vec::new();
    for field in &fields {
        let value = |r: &Row| column_value(r, field).cloned().unwrap_or(Value::Null);
        if rows.iter().all(|r| value(r) == value(rows[0])) {
            constant.push(field.clone());
            continue;
        }
        for descending in [false, true] {
            let order = Order {
                column: field.clone(),
                descending,
            };
            let in_order = rows.windows(2).all(|w| {
                cmp_rows(Some(&order), id_column, w[0], w[1]) != std::cmp::Ordering::Greater
            });
            if in_order {
                sorted.push(SortFact {
                    field: field.clone(),
                    descending,
                });
            }
        }
    }
    let keep: BTreeSet<String> = sorted
        .iter()
        .map(|s| s.field.clone())
        .chain(constant.iter().cloned())
        .chain([id_column.to_string()])
        .collect();
    let reduce = |row: &Row| -> Row {
        row.iter()
            .filter(|(name, value)| is_scalar(value) && keep.contains(*name))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    };
    let ids = rows
        .iter()
        .take(MAX_OBSERVED_IDS)
        .map(|r| column_value(r, id_column).and_then(id_text))
        .collect::<Option<Vec<_>>>()?;
    let (first, last) = (
        rows.first().map(|r| reduce(r)),
        rows.last().map(|r| reduce(r)),
    );
    Some(ListObservation {
        params: params.to_vec(),
        stamp,
        id_field: id_column.to_string(),
        rows: u32::try_from(rows.len()).unwrap_or(u32::MAX),
        ids,
        fields: fields.into_iter().collect(),
        equal,
        prefixed,
        sorted,
        constant,
        first,
        last,
    })
}

fn is_scalar(v: &Value) -> bool {
    matches!(
        v,
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_)
    )
}

fn filter_query(filter: Filter) -> ListQuery {
    ListQuery {
        filters: vec![filter],
        order: None,
        limit: 1,
        offset: 0,
    }
}

/// A plain decimal number, as limits and offsets are written.
fn count(value: &str) -> Option<u32> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// A short digest of a response's or value's name: distinct support is counted without
/// keeping what a client may have made long. (Learned things' names are its start too:
/// `learned_ref`.)
pub(crate) fn digest(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// A query string naming one response, for counting distinct support.
fn response_name(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// How one response bears on one hypothesis.
enum Verdict {
    Supports { evidence: String, value: String },
    Contradicts,
}

impl RouteSemantics {
    fn entry(&mut self, id: HypothesisId) -> &mut Evidence {
        let name = id.to_string();
        &mut self
            .hypotheses
            .entry(name)
            .or_insert((id, Evidence::default()))
            .1
    }

    /// Folds one response into the hypotheses at time `now_ms`. Answers the hypotheses that
    /// were confident and are now revoked by a counter-example (every key kept under them
    /// since they were last verified must be invalidated).
    pub fn observe(&mut self, obs: &ListObservation, now_ms: u64) -> Vec<HypothesisId> {
        let confident_before = self.confident_ids();
        let mut verdicts: Vec<(HypothesisId, Verdict)> = Vec::new();
        let name = response_name(&obs.params);
        let field_set: BTreeSet<&str> = obs.fields.iter().map(String::as_str).collect();
        let names_a_field = |v: &str| field_set.contains(v.strip_prefix('-').unwrap_or(v));
        for (i, (param, value)) in obs.params.iter().enumerate() {
            if !self.knows_param(param) && self.params() >= MAX_PARAMS {
                continue;
            }
            let id = |kind, field: Option<&str>, descending| HypothesisId {
                param: Some(param.clone()),
                kind,
                field: field.map(str::to_string),
                descending,
            };
            let supports = || Verdict::Supports {
                evidence: name.clone(),
                value: value.clone(),
            };
            if obs.rows > 0 {
                for field in &obs.fields {
                    let eq = obs.equal[i].contains(field);
                    verdicts.push((
                        id(HypothesisKind::Equals, Some(field), false),
                        if eq { supports() } else { Verdict::Contradicts },
                    ));
                    if value.ends_with('*') {
                        let pre = obs.prefixed[i].contains(field);
                        verdicts.push((
                            id(HypothesisKind::Prefix, Some(field), false),
                            if pre {
                                supports()
                            } else {
                                Verdict::Contradicts
                            },
                        ));
                    }
                }
            }
            match count(value) {
                Some(n) if n >= 1 && obs.rows == n => {
                    verdicts.push((id(HypothesisKind::Limit, None, false), supports()))
                }
                Some(n) if obs.rows <= n => {}
                _ => verdicts.push((id(HypothesisKind::Limit, None, false), Verdict::Contradicts)),
            }
            if count(value).is_none() {
                for kind in [
                    HypothesisKind::Offset,
                    HypothesisKind::Page,
                    HypothesisKind::PageFromZero,
                ] {
                    verdicts.push((id(kind, None, false), Verdict::Contradicts));
                }
            }
            let order_verdict = self.order_verdict(obs, value, &name);
            if let Some(v) = order_verdict {
                verdicts.push((id(HypothesisKind::OrderParam, None, false), v));
            }
        }
        let offsets = self
            .offset_verdicts(obs)
            .into_iter()
            .map(|(param, verdict)| (param, HypothesisKind::Offset, verdict));
        for (param, kind, verdict) in offsets.chain(self.page_verdicts(obs)) {
            let id = HypothesisId {
                param: Some(param),
                kind,
                field: None,
                descending: false,
            };
            verdicts.push((id, verdict));
        }
        // A page that may carry an order parameter says nothing about the default order.
        if obs.rows >= 2 && !obs.params.iter().any(|(_, v)| names_a_field(v)) {
            for field in &obs.fields {
                if obs.constant.contains(field) {
                    continue;
                }
                for descending in [false, true] {
                    let fact = SortFact {
                        field: field.clone(),
                        descending,
                    };
                    let id = HypothesisId {
                        param: None,
                        kind: HypothesisKind::DefaultOrder,
                        field: Some(field.clone()),
                        descending,
                    };
                    let verdict = match obs.sorted.contains(&fact) {
                        true => Verdict::Supports {
                            evidence: name.clone(),
                            value: String::new(),
                        },
                        false => Verdict::Contradicts,
                    };
                    verdicts.push((id, verdict));
                }
            }
        }
        for (id, verdict) in verdicts {
            let e = self.entry(id);
            match verdict {
                Verdict::Contradicts => e.counter_examples = e.counter_examples.saturating_add(1),
                Verdict::Supports { evidence, value } => {
                    if e.support.len() < CONFIDENT_SUPPORT {
                        e.support.insert(digest(&evidence));
                    }
                    if e.values.len() < CONFIDENT_VALUES {
                        e.values.insert(digest(&value));
                    }
                    e.last_verified_ms = now_ms;
                }
            }
        }
        self.keep_page(obs);
        let confident_after = self.confident_ids();
        confident_before
            .into_iter()
            .filter(|id| !confident_after.contains(id) && self.refuted(id))
            .collect()
    }

    /// An order parameter's verdict: `value` names a field (`-` for descending) and the page
    /// is sorted by it; a page that cannot tell (fewer than two rows, one value) is no
    /// evidence.
    fn order_verdict(&self, obs: &ListObservation, value: &str, name: &str) -> Option<Verdict> {
        if obs.rows < 2 {
            return None;
        }
        let (field, descending) = match value.strip_prefix('-') {
            Some(f) => (f, true),
            None => (value, false),
        };
        if obs.constant.iter().any(|c| c == field) {
            return None;
        }
        let fact = SortFact {
            field: field.to_string(),
            descending,
        };
        Some(match obs.sorted.contains(&fact) {
            true => Verdict::Supports {
                evidence: name.to_string(),
                value: value.to_string(),
            },
            false => Verdict::Contradicts,
        })
    }

    /// Offset verdicts from pairs of pages filled at the same stamp whose parameters differ
    /// only in one numeric parameter `p` (values `o1 < o2`): page 2 must continue page 1
    /// `o2 - o1` rows on. Overlapping pages must agree row by row; disjoint ones must share no
    /// id and page 1 must end before page 2 begins in some order both are sorted by; an empty
    /// page 1 forces an empty page 2.
    fn offset_verdicts(&self, obs: &ListObservation) -> Vec<(String, Verdict)> {
        let mut out = Vec::new();
        let this = page_of(obs);
        for kept in self.pages.iter().filter(|p| p.stamp == obs.stamp) {
            let Some((param, a, b)) = differ_in_one_count(&kept.params, &obs.params) else {
                continue;
            };
            let (lo, hi, d) = match a.cmp(&b) {
                std::cmp::Ordering::Less => (kept, &this, b - a),
                std::cmp::Ordering::Greater => (&this, kept, a - b),
                std::cmp::Ordering::Equal => continue,
            };
            let d = d as usize;
            let verdict = if lo.ids.is_empty() {
                if hi.ids.is_empty() {
                    continue;
                }
                Verdict::Contradicts
            } else if hi.ids.is_empty() {
                // A page past the end: consistent, but no evidence of an offset.
                continue;
            } else if d < lo.ids.len() {
                let overlap = lo.ids.len() - d;
                let agree = lo.ids[d..]
                    .iter()
                    .zip(&hi.ids)
                    .take(overlap)
                    .all(|(x, y)| x == y);
                if agree {
                    Verdict::Supports {
                        evidence: format!("{a}|{b}"),
                        value: String::new(),
                    }
                } else {
                    Verdict::Contradicts
                }
            } else if !lo.complete {
                continue;
            } else if follows(lo, hi) {
                Verdict::Supports {
                    evidence: format!("{a}|{b}"),
                    value: String::new(),
                }
            } else {
                Verdict::Contradicts
            };
            out.push((param, verdict));
        }
        out
    }

    /// Page verdicts, from pairs of non-empty pages filled at the same stamp, `p1 < p2` being
    /// a page parameter's values in two queries otherwise the same (`p1` may be the query
    /// without `p`: the list's first page, taken for page 1 and page 0 alike). Under either
    /// hypothesis the lower page is full and the higher one shows later rows (no id in
    /// common, the lower page ending first in some order both are sorted by): pages that
    /// overlap or come out of order contradict it. Only consecutive page numbers support it
    /// (disjoint pages in order are also what an offset stepping by the page size shows;
    /// consecutive ones overlap under an offset), and page 0 tells the first page's number:
    ///
    /// * `p1`, `p1 + 1` with `p1 >= 1`: both, for or against;
    /// * the first page and `p=1`: the same rows contradict counting from 0 (and support
    ///   nothing: an API that ignores `p` answers so too); later rows support counting from 0
    ///   and contradict counting from 1; anything else contradicts both;
    /// * the first page and `p=0`: other rows contradict counting from 0;
    /// * `p=0` and `p=1`: later rows support counting from 0 and contradict counting from 1
    ///   (an API counting from 1 answers page 0 as page 1, empty or not at all, never as an
    ///   earlier page); the same rows contradict counting from 0 and tell nothing of 1;
    ///   page 0 and a later page likewise tell nothing of counting from 1;
    /// * any other pair only ever contradicts both.
    ///
    /// Each supporting pair of responses is a distinct piece of evidence.
    fn page_verdicts(&self, obs: &ListObservation) -> Vec<(String, HypothesisKind, Verdict)> {
        let mut out = Vec::new();
        let this = page_of(obs);
        for kept in self.pages.iter().filter(|p| p.stamp == obs.stamp) {
            if kept.ids.is_empty() || this.ids.is_empty() {
                continue;
            }
            let Some(PagePair {
                param,
                lo,
                lo_value: a,
                hi,
                hi_value: b,
            }) = page_pair(kept, &this)
            else {
                continue;
            };
            // Same page size: the lower page is full, the higher one at most as long.
            let apart =
                lo.complete && hi.complete && lo.ids.len() >= hi.ids.len() && follows(lo, hi);
            let same = lo.complete && hi.complete && lo.ids == hi.ids;
            let support = || Verdict::Supports {
                evidence: format!(
                    "{} -> {}",
                    response_name(&lo.params),
                    response_name(&hi.params)
                ),
                value: String::new(),
            };
            let verdict = |holds: bool| match holds {
                true => support(),
                false => Verdict::Contradicts,
            };
            let against = || (!apart).then_some(Verdict::Contradicts);
            let (from_one, from_zero) = match (a, b) {
                (None, 0) => (None, (!same).then_some(Verdict::Contradicts)),
                (None, 1) if same => (None, Some(Verdict::Contradicts)),
                (None, 1) => (Some(Verdict::Contradicts), Some(verdict(apart))),
                (Some(0), 1) if same => (None, Some(Verdict::Contradicts)),
                (Some(0), 1) => (Some(Verdict::Contradicts), Some(verdict(apart))),
                (Some(0), _) => (None, against()),
                (Some(a), b) if b == a + 1 => (Some(verdict(apart)), Some(verdict(apart))),
                _ => (against(), against()),
            };
            let kinds = [HypothesisKind::Page, HypothesisKind::PageFromZero];
            for (kind, verdict) in kinds.into_iter().zip([from_one, from_zero]) {
                out.extend(verdict.map(|v| (param.clone(), kind, v)));
            }
        }
        out
    }

    fn knows_param(&self, param: &str) -> bool {
        self.hypotheses
            .values()
            .any(|(id, _)| id.param.as_deref() == Some(param))
    }

    fn params(&self) -> usize {
        self.hypotheses
            .values()
            .filter_map(|(id, _)| id.param.as_deref())
            .collect::<BTreeSet<_>>()
            .len()
    }

    fn keep_page(&mut self, obs: &ListObservation) {
        if self.pages.len() >= MAX_KEPT_PAGES {
            self.pages.pop_front();
        }
        self.pages.push_back(page_of(obs));
    }

    fn refuted(&self, id: &HypothesisId) -> bool {
        self.hypotheses
            .get(&id.to_string())
            .is_some_and(|(_, e)| e.counter_examples > 0)
    }

    /// The hypothesis a slot (a parameter, or the default order with `param` `None`) is
    /// resolved to, if any: the only standing one, and established.
    fn resolved(&self, param: Option<&str>) -> Option<&HypothesisId> {
        let mut standing = self
            .hypotheses
            .values()
            .filter(|(id, e)| id.param.as_deref() == param && e.standing());
        let (id, e) = standing.next()?;
        if standing.next().is_some() || !e.established(id.kind) {
            return None;
        }
        Some(id)
    }

    fn confident_ids(&self) -> BTreeSet<HypothesisId> {
        let slots: BTreeSet<Option<&str>> = self
            .hypotheses
            .values()
            .map(|(id, _)| id.param.as_deref())
            .collect();
        slots
            .into_iter()
            .filter_map(|slot| self.resolved(slot).cloned())
            .collect()
    }

    /// Revokes every confident hypothesis of the route (a shadow check found a kept key
    /// changed, and which hypothesis was wrong cannot be told): each gets a counter-example.
    /// Answers those revoked.
    pub fn revoke_all(&mut self) -> Vec<HypothesisId> {
        let revoked: Vec<HypothesisId> = self.confident_ids().into_iter().collect();
        for id in &revoked {
            let e = self.entry(id.clone());
            e.counter_examples = e.counter_examples.saturating_add(1);
        }
        revoked
    }

    /// Forgets hypothesis `id` and its evidence (an operator's `learn forget`): it is learned
    /// again only from responses observed from now on. Its parameter's other hypotheses stand
    /// on their own evidence. Answers whether the route had it.
    pub fn forget(&mut self, id: &HypothesisId) -> bool {
        self.hypotheses.remove(&id.to_string()).is_some()
    }

    /// Every hypothesis with its evidence, for stats.
    pub fn status(&self) -> Vec<HypothesisStatus> {
        let confident = self.confident_ids();
        self.hypotheses
            .values()
            .map(|(id, e)| HypothesisStatus {
                id: String::new(),
                param: id.param.clone(),
                kind: id.kind,
                field: id.field.clone(),
                descending: id.descending,
                support: e.support.len(),
                counter_examples: e.counter_examples,
                confident: confident.contains(id),
                last_verified_ms: e.last_verified_ms,
            })
            .collect()
    }

    /// The list `obs` shows as a query the planner can evaluate, if every parameter is
    /// resolved (and, without an order parameter, the default order is): `None` means plan it
    /// conservatively.
    pub fn learned_list(&self, obs: &ListObservation) -> Option<LearnedList> {
        let mut filters = Vec::new();
        let mut order = None;
        let mut limit = None;
        let mut offset = None;
        // The page number and the number of the first page.
        let mut page = None;
        let mut used = Vec::new();
        let mut names = BTreeSet::new();
        for (param, value) in &obs.params {
            if !names.insert(param.as_str()) {
                return None;
            }
            let id = self.resolved(Some(param))?;
            match id.kind {
                HypothesisKind::Equals => filters.push(Filter::Eq {
                    column: id.field.clone()?,
                    value: value.clone(),
                }),
                HypothesisKind::Prefix => filters.push(Filter::Prefix {
                    column: id.field.clone()?,
                    prefix: value.strip_suffix('*')?.to_string(),
                }),
                HypothesisKind::Limit if limit.is_none() => limit = Some(count(value)?),
                HypothesisKind::Offset if offset.is_none() => offset = Some(count(value)?),
                HypothesisKind::Page if page.is_none() => page = Some((count(value)?, 1)),
                HypothesisKind::PageFromZero if page.is_none() => page = Some((count(value)?, 0)),
                HypothesisKind::OrderParam if order.is_none() => {
                    let (column, descending) = match value.strip_prefix('-') {
                        Some(c) => (c, true),
                        None => (value.as_str(), false),
                    };
                    order = Some(Order {
                        column: column.to_string(),
                        descending,
                    });
                }
                _ => return None,
            }
            used.push(id.clone());
        }
        if let Some((number, first)) = page {
            // A page needs its size, and is an offset of its own.
            if offset.is_some() {
                return None;
            }
            offset = Some(number.checked_sub(first)?.checked_mul(limit?)?);
        }
        if order.is_none() {
            let id = self.resolved(None)?;
            order = Some(Order {
                column: id.field.clone()?,
                descending: id.descending,
            });
            used.push(id.clone());
        }
        filters.sort_by(|a, b| a.column().cmp(b.column()));
        let window = ListWindow {
            // Without a learned page size the planner cannot know that rows after the page
            // are cut off: treated as a short page.
            full: limit.is_some_and(|l| l == obs.rows),
            empty: obs.rows == 0,
            first: obs.first.clone(),
            last: obs.last.clone(),
        };
        Some(LearnedList {
            query: ListQuery {
                filters,
                order,
                limit: limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT),
                offset: offset.unwrap_or(0),
            },
            window,
            hypotheses: used,
        })
    }
}

fn page_of(obs: &ListObservation) -> KeptPage {
    KeptPage {
        params: obs.params.clone(),
        stamp: obs.stamp,
        id_field: obs.id_field.clone(),
        ids: obs.ids.clone(),
        complete: obs.ids.len() == obs.rows as usize,
        fields: obs.fields.clone(),
        sorted: obs.sorted.clone(),
        constant: obs.constant.clone(),
        first: obs.first.clone(),
        last: obs.last.clone(),
    }
}

/// The one parameter two queries differ in, if they have the same names and differ only in
/// one value, both plain numbers.
fn differ_in_one_count(
    a: &[(String, String)],
    b: &[(String, String)],
) -> Option<(String, u32, u32)> {
    if a.len() != b.len() {
        return None;
    }
    let mut differing = a.iter().zip(b).filter(|(x, y)| x != y);
    let ((name, va), (name_b, vb)) = differing.next()?;
    if differing.next().is_some() || name != name_b {
        return None;
    }
    if a.iter().zip(b).any(|(x, y)| x.0 != y.0) {
        return None;
    }
    Some((name.clone(), count(va)?, count(vb)?))
}

/// Two pages whose queries differ only in one parameter, the lower value first.
struct PagePair<'a> {
    param: String,
    lo: &'a KeptPage,
    /// `None`: the lower page's query has no `param` (the list's first page).
    lo_value: Option<u32>,
    hi: &'a KeptPage,
    hi_value: u32,
}

/// The pair two pages make if their queries differ only in one parameter, both values plain
/// numbers, or only in one the second has (then the first is the lower page).
fn page_pair<'a>(a: &'a KeptPage, b: &'a KeptPage) -> Option<PagePair<'a>> {
    if let Some((param, va, vb)) = differ_in_one_count(&a.params, &b.params) {
        let ((lo, lo_value), (hi, hi_value)) = match va.cmp(&vb) {
            std::cmp::Ordering::Less => ((a, va), (b, vb)),
            std::cmp::Ordering::Greater => ((b, vb), (a, va)),
            std::cmp::Ordering::Equal => return None,
        };
        return Some(PagePair {
            param,
            lo,
            lo_value: Some(lo_value),
            hi,
            hi_value,
        });
    }
    let (first, paged) = match a.params.len().cmp(&b.params.len()) {
        std::cmp::Ordering::Less => (a, b),
        std::cmp::Ordering::Greater => (b, a),
        std::cmp::Ordering::Equal => return None,
    };
    let mut extra = paged.params.iter().filter(|p| !first.params.contains(p));
    let (name, value) = extra.next()?;
    let rest_shared = first.params.iter().all(|p| paged.params.contains(p));
    let named_once = paged.params.iter().filter(|(n, _)| n == name).count() == 1;
    if extra.next().is_some() || !rest_shared || !named_once {
        return None;
    }
    Some(PagePair {
        param: name.clone(),
        lo: first,
        lo_value: None,
        hi: paged,
        hi_value: count(value)?,
    })
}

/// Whether `hi` shows rows after `lo`'s: no id in common, and `lo` ends before `hi` begins.
fn follows(lo: &KeptPage, hi: &KeptPage) -> bool {
    !lo.ids.iter().any(|id| hi.ids.contains(id)) && ends_before(lo, hi)
}

/// Whether `lo`'s last row sorts before `hi`'s first in some order both pages are consistent
/// with (sorted by it, or constant in its field): if an offset paginates the list in its true
/// order, that order is one of them.
fn ends_before(lo: &KeptPage, hi: &KeptPage) -> bool {
    let (Some(last), Some(first)) = (&lo.last, &hi.first) else {
        return false;
    };
    lo.fields
        .iter()
        .flat_map(|f| {
            [false, true].map(|descending| SortFact {
                field: f.clone(),
                descending,
            })
        })
        .filter(|s| lo.consistent_with(s) && hi.consistent_with(s))
        .any(|s| {
            let order = Order {
                column: s.field,
                descending: s.descending,
            };
            cmp_rows(Some(&order), &lo.id_field, last, first) == std::cmp::Ordering::Less
        })
}

impl KeptPage {
    fn consistent_with(&self, s: &SortFact) -> bool {
        self.sorted.contains(s) || self.constant.contains(&s.field)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdb::{self, BValue, TestDb, TestRow};
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Page size of the test API when a request gives no `n`.
    const API_DEFAULT_LIMIT: u32 = 4;

    /// The test API's own meaning of its parameters, hidden from the learner: `fa` filters `a`
    /// by equality, `pc=v*` filters `c` by prefix, `n` and `skip` paginate, so do `pg` (pages
    /// of `n` rows from 1, page 0 read as 1) and `pz` (from 0) after `skip`, `sort` orders,
    /// `x` is ignored; without `sort` the rows come by id.
    fn api_query(params: &[(String, String)]) -> ListQuery {
        let mut q = ListQuery {
            filters: Vec::new(),
            order: None,
            limit: API_DEFAULT_LIMIT,
            offset: 0,
        };
        let mut pages = 0;
        for (name, value) in params {
            match name.as_str() {
                "fa" => q.filters.push(Filter::Eq {
                    column: "a".into(),
                    value: value.clone(),
                }),
                "pc" => q.filters.push(Filter::Prefix {
                    column: "c".into(),
                    prefix: value.trim_end_matches('*').into(),
                }),
                "n" => q.limit = value.parse().unwrap(),
                "skip" => q.offset = value.parse().unwrap(),
                "pg" => pages += value.parse::<u32>().unwrap().saturating_sub(1),
                "pz" => pages += value.parse::<u32>().unwrap(),
                "sort" => {
                    q.order = Some(Order {
                        column: value.trim_start_matches('-').into(),
                        descending: value.starts_with('-'),
                    })
                }
                _ => {}
            }
        }
        q.offset += pages * q.limit;
        q.filters.sort_by(|a, b| a.column().cmp(b.column()));
        q
    }

    fn answer(db: &TestDb, params: &[(String, String)]) -> Value {
        json!({ "data": db.list(&api_query(params)) })
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = p
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        v.sort();
        v
    }

    fn true_hypothesis(id: &HypothesisId) -> bool {
        let (param, field) = (id.param.as_deref(), id.field.as_deref());
        match id.kind {
            HypothesisKind::Equals => param == Some("fa") && field == Some("a"),
            HypothesisKind::Prefix => param == Some("pc") && field == Some("c"),
            HypothesisKind::Limit => param == Some("n"),
            HypothesisKind::Offset => param == Some("skip"),
            HypothesisKind::Page => param == Some("pg"),
            HypothesisKind::PageFromZero => param == Some("pz"),
            HypothesisKind::OrderParam => param == Some("sort"),
            HypothesisKind::DefaultOrder => field == Some("id") && !id.descending,
            // Never a list route's.
            HypothesisKind::WriteAnswer => false,
        }
    }

    fn confident(s: &RouteSemantics) -> Vec<HypothesisId> {
        s.confident_ids().into_iter().collect()
    }

    /// Thirty rows, `a` in three values, ids in order.
    fn seeded() -> TestDb {
        let rows: Vec<TestRow> = (0..30)
            .map(|i| TestRow {
                id: format!("r{i:02}"),
                a: Some(["open", "held", "shut"][(i * 7) % 3].into()),
                b: Some(BValue::Int(i as i64 % 4)),
                c: Some(format!("{}{}", ["x", "y"][i % 2], i % 5)),
            })
            .collect();
        TestDb::new(&rows)
    }

    fn learn(db: &TestDb, s: &mut RouteSemantics, queries: &[Vec<(String, String)>]) {
        for (t, params) in queries.iter().enumerate() {
            let obs = observe_list(params, &answer(db, params), "id", 0).unwrap();
            s.observe(&obs, t as u64);
        }
    }

    fn training() -> Vec<Vec<(String, String)>> {
        let mut out = Vec::new();
        for page in 0..6 {
            out.push(pairs(&[("n", "5"), ("skip", &(page * 5).to_string())]));
            for a in ["open", "held", "shut"] {
                out.push(pairs(&[
                    ("fa", a),
                    ("n", "3"),
                    ("skip", &(page * 3).to_string()),
                ]));
            }
        }
        out
    }

    #[test]
    fn an_observation_says_what_the_page_shows() {
        let body = json!({"data": [
            {"id": "1", "status": "open", "name": "b", "tags": ["t"]},
            {"id": "2", "status": "open", "name": "a"}
        ]});
        let obs = observe_list(&pairs(&[("s", "open"), ("q", "x*")]), &body, "id", 7).unwrap();
        assert_eq!(obs.fields, ["id", "name", "status"]);
        assert_eq!(
            obs.equal,
            vec![Vec::<String>::new(), vec!["status".to_string()]]
        );
        assert_eq!(obs.ids, ["1", "2"]);
        assert!(obs.sorted.contains(&SortFact {
            field: "id".into(),
            descending: false
        }));
        assert!(obs.sorted.contains(&SortFact {
            field: "name".into(),
            descending: true
        }));
        assert_eq!(obs.constant, ["status"]);
        assert_eq!(
            obs.first,
            json!({"id": "1", "status": "open", "name": "b"})
                .as_object()
                .cloned()
        );
        assert_eq!(
            observe_list(&[], &json!({"data": {"id": 1}}), "id", 0),
            None
        );
        assert_eq!(observe_list(&[], &json!({"data": [1, 2]}), "id", 0), None);
    }

    #[test]
    fn filters_pagination_and_the_default_order_are_learned() {
        let db = seeded();
        let mut s = RouteSemantics::default();
        let queries = training();
        learn(&db, &mut s, &queries[..8]);
        assert!(confident(&s).is_empty(), "too early: {:?}", confident(&s));
        learn(&db, &mut s, &queries);
        let got = confident(&s);
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got.iter().all(true_hypothesis), "{got:?}");
        let params = pairs(&[("fa", "held"), ("n", "3"), ("skip", "3")]);
        let obs = observe_list(&params, &answer(&db, &params), "id", 0).unwrap();
        let learned = s.learned_list(&obs).unwrap();
        assert_eq!(learned.query, {
            let mut q = api_query(&params);
            q.order = Some(Order {
                column: "id".into(),
                descending: false,
            });
            q
        });
        assert!(learned.window.full);
        // An unknown parameter leaves the list conservative.
        let params = pairs(&[("n", "3"), ("fields", "id")]);
        let obs = observe_list(&params, &answer(&db, &params), "id", 0).unwrap();
        assert_eq!(s.learned_list(&obs), None);
    }

    #[test]
    fn a_counter_example_revokes_at_once() {
        let db = seeded();
        let mut s = RouteSemantics::default();
        learn(&db, &mut s, &training());
        let equals_a = HypothesisId {
            param: Some("fa".into()),
            kind: HypothesisKind::Equals,
            field: Some("a".into()),
            descending: false,
        };
        assert!(confident(&s).contains(&equals_a));
        // The API starts answering `fa=open` with a row that is not open.
        let body = json!({"data": [{"id": "r00", "a": "open"}, {"id": "r01", "a": "shut"}]});
        let params = pairs(&[("fa", "open"), ("n", "5")]);
        let revoked = s.observe(&observe_list(&params, &body, "id", 0).unwrap(), 99);
        assert_eq!(revoked, vec![equals_a.clone()]);
        assert!(!confident(&s).contains(&equals_a));
        let params = pairs(&[("fa", "held"), ("n", "3")]);
        let obs = observe_list(&params, &answer(&db, &params), "id", 0).unwrap();
        assert_eq!(s.learned_list(&obs), None);
        // A shadow miss revokes everything still confident.
        let rest = s.revoke_all();
        assert_eq!(rest.len(), 3, "{rest:?}");
        assert!(confident(&s).is_empty());
    }

    #[test]
    fn fields_the_responses_cannot_tell_apart_stay_unresolved() {
        // `c` always equals `a`: an `fa` filter could be on either.
        let rows: Vec<TestRow> = (0..30)
            .map(|i| {
                let v = ["open", "held", "shut"][i % 3].to_string();
                TestRow {
                    id: format!("r{i:02}"),
                    a: Some(v.clone()),
                    b: None,
                    c: Some(v),
                }
            })
            .collect();
        let db = TestDb::new(&rows);
        let mut s = RouteSemantics::default();
        learn(&db, &mut s, &training());
        assert!(
            s.resolved(Some("fa")).is_none(),
            "{:?}",
            s.resolved(Some("fa"))
        );
        assert!(s.resolved(Some("n")).is_some());
    }

    #[test]
    fn an_ignored_offset_is_refuted() {
        let db = seeded();
        let mut s = RouteSemantics::default();
        // The API ignores `page`: every page is the first one.
        for page in 0..12 {
            let params = pairs(&[("n", "5"), ("page", &page.to_string())]);
            let first = pairs(&[("n", "5")]);
            let obs = observe_list(&params, &answer(&db, &first), "id", 0).unwrap();
            s.observe(&obs, 0);
        }
        assert!(s.resolved(Some("page")).is_none());
        let status = s.status();
        let offset = status
            .iter()
            .find(|h| h.param.as_deref() == Some("page") && h.kind == HypothesisKind::Offset)
            .unwrap();
        assert!(offset.counter_examples > 0);
    }

    #[test]
    fn page_and_size_are_learned_with_the_first_page_number() {
        let db = seeded();
        for (param, kind, first) in [
            ("pg", HypothesisKind::Page, 1),
            ("pz", HypothesisKind::PageFromZero, 0),
        ] {
            // A reader paging through the list and through one filter's, three page sizes.
            let mut queries = Vec::new();
            for n in ["3", "4", "5"] {
                for fa in [None, Some("open")] {
                    let base: Vec<(&str, &str)> = [("n", n)]
                        .into_iter()
                        .chain(fa.map(|v| ("fa", v)))
                        .collect();
                    queries.push(pairs(&base));
                    for page in first..first + 4 {
                        let page = page.to_string();
                        let mut q = base.clone();
                        q.push((param, &page));
                        queries.push(pairs(&q));
                    }
                }
            }
            let mut s = RouteSemantics::default();
            learn(&db, &mut s, &queries);
            let page = s.resolved(Some(param)).cloned();
            assert_eq!(
                page.map(|id| id.kind),
                Some(kind),
                "{param}: {:?}",
                s.status()
            );
            assert!(
                confident(&s).iter().all(true_hypothesis),
                "{:?}",
                confident(&s)
            );
            let params = pairs(&[("n", "4"), (param, &(first + 2).to_string())]);
            let body = answer(&db, &params);
            let learned = s.learned_list(&observe_list(&params, &body, "id", 0).unwrap());
            let query = learned.map(|l| l.query);
            assert_eq!(query.as_ref().map(|q| (q.limit, q.offset)), Some((4, 8)));
            let ours: Vec<Value> = db
                .list(&query.unwrap())
                .into_iter()
                .map(Value::Object)
                .collect();
            assert_eq!(ours, body["data"].as_array().unwrap().clone());
            // Without its size a page cannot be placed.
            let params = pairs(&[(param, &first.to_string())]);
            let obs = observe_list(&params, &answer(&db, &params), "id", 0).unwrap();
            assert_eq!(s.learned_list(&obs), None);
        }
    }

    #[test]
    fn an_offset_stepping_by_the_page_size_is_not_taken_for_a_page() {
        let db = seeded();
        let mut s = RouteSemantics::default();
        learn(&db, &mut s, &training());
        for kind in [HypothesisKind::Page, HypothesisKind::PageFromZero] {
            let id = HypothesisId {
                param: Some("skip".into()),
                kind,
                field: None,
                descending: false,
            };
            let e = s.hypotheses.get(&id.to_string()).map(|(_, e)| e.clone());
            assert!(
                e.as_ref().is_none_or(|e| e.support.is_empty()),
                "{id}: {e:?}"
            );
        }
        assert!(s.resolved(Some("skip")).is_some());
    }

    fn query_params() -> impl Strategy<Value = Vec<(String, String)>> {
        let sorts = vec!["id", "a", "b", "c", "-id", "-a", "-b", "-c"];
        (
            proptest::option::weighted(0.4, "[xyX]{0,2}"),
            proptest::option::weighted(0.3, "[xy1]{0,1}"),
            proptest::option::weighted(0.7, 1u32..=5),
            proptest::option::weighted(0.7, 0u32..=6),
            proptest::option::weighted(0.3, prop::sample::select(sorts)),
            proptest::option::weighted(0.4, "[0-9xy]{1,2}"),
            proptest::option::weighted(0.3, 0u32..=4),
            proptest::option::weighted(0.2, 0u32..=3),
        )
            .prop_map(|(fa, pc, n, skip, sort, x, pg, pz)| {
                let mut p = Vec::new();
                p.extend(fa.map(|v| ("fa".to_string(), v)));
                p.extend(pc.map(|v| ("pc".to_string(), format!("{v}*"))));
                p.extend(n.map(|v| ("n".to_string(), v.to_string())));
                p.extend(skip.map(|v| ("skip".to_string(), v.to_string())));
                p.extend(sort.map(|v| ("sort".to_string(), v.to_string())));
                p.extend(x.map(|v| ("x".to_string(), v)));
                p.extend(pg.map(|v| ("pg".to_string(), v.to_string())));
                p.extend(pz.map(|v| ("pz".to_string(), v.to_string())));
                p.sort();
                p
            })
    }

    /// Queries of a reader paging through lists: a page size nearly always, a page number
    /// counted from 1 (`pg`) or from 0 (`pz`) often, few other parameters and values (so that
    /// pages of one query meet).
    fn paged_query_params() -> impl Strategy<Value = Vec<(String, String)>> {
        let sorts = vec!["id", "-id", "b"];
        let page = prop_oneof![
            1 => Just(None),
            2 => (0u32..=6).prop_map(|p| Some(("pg", p))),
            2 => (0u32..=3).prop_map(|p| Some(("pz", p))),
        ];
        (
            proptest::option::weighted(0.1, prop::sample::select(vec!["x", "y", "X"])),
            proptest::option::weighted(0.95, 2u32..=3),
            page,
            proptest::option::weighted(0.1, prop::sample::select(sorts)),
            proptest::option::weighted(0.05, "[0-9]"),
        )
            .prop_map(|(fa, n, page, sort, x)| {
                let mut p = Vec::new();
                p.extend(fa.map(|v| ("fa".to_string(), v.to_string())));
                p.extend(n.map(|v| ("n".to_string(), v.to_string())));
                p.extend(page.map(|(k, v)| (k.to_string(), v.to_string())));
                p.extend(sort.map(|v| ("sort".to_string(), v.to_string())));
                p.extend(x.map(|v| ("x".to_string(), v)));
                p.sort();
                p
            })
    }

    /// The rows with ids of their own (`r00`, `r01`…, in order), so that a table has pages
    /// enough to page through.
    fn distinct_ids(rows: Vec<TestRow>) -> Vec<TestRow> {
        rows.into_iter()
            .enumerate()
            .map(|(i, row)| TestRow {
                id: format!("r{i:02}"),
                ..row
            })
            .collect()
    }

    /// Learns from `queries` against `rows`: after each response every confident hypothesis is
    /// the API's real meaning, and a list planned by learned semantics selects what the API
    /// answered (SQLite is both the API and the oracle).
    fn learns_only_the_truth(
        rows: &[TestRow],
        queries: &[Vec<(String, String)>],
    ) -> Result<(), TestCaseError> {
        let db = TestDb::new(rows);
        let mut s = RouteSemantics::default();
        for (t, params) in queries.iter().enumerate() {
            let body = answer(&db, params);
            let obs = observe_list(params, &body, "id", 0).unwrap();
            s.observe(&obs, t as u64);
            // Offsets are learned from pairs of pages, which say how the pages follow each other,
            // not where they start: page numbers whose pairs overlap nowhere (pages 2 and 4 of
            // size 2, a last page short) read as offsets just as well. Planning takes from a
            // learned list its filters, its order and that the page is a run of that order
            // (`list_effect` plans on the page's window, never on the offset's value), so that is
            // what is checked for such a list.
            let read_as_offset = |id: &HypothesisId| {
                id.kind == HypothesisKind::Offset && id.param.as_deref() == Some("pg")
            };
            let confident_ids = confident(&s);
            for id in &confident_ids {
                prop_assert!(
                    true_hypothesis(id) || read_as_offset(id),
                    "wrongly confident: {id}"
                );
            }
            if let Some(learned) = s.learned_list(&obs) {
                let api_rows = body["data"].as_array().unwrap().clone();
                if confident_ids.iter().any(read_as_offset) {
                    let whole = ListQuery {
                        limit: MAX_LIMIT,
                        offset: 0,
                        ..learned.query.clone()
                    };
                    let ours: Vec<Value> = db.list(&whole).into_iter().map(Value::Object).collect();
                    prop_assert!(
                        api_rows.is_empty() || ours.windows(api_rows.len()).any(|w| w == api_rows),
                        "{params:?}: the API's page {api_rows:?} is no run of {ours:?}"
                    );
                    continue;
                }
                let ours: Vec<Value> = db
                    .list(&learned.query)
                    .into_iter()
                    .map(Value::Object)
                    .collect();
                prop_assert!(
                    ours.starts_with(&api_rows),
                    "{params:?}: learned {:?} selects {ours:?}, the API {api_rows:?}",
                    learned.query
                );
                if params.iter().any(|(k, _)| k == "n") {
                    prop_assert_eq!(ours.len(), api_rows.len());
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the table and the queries, every confident hypothesis is the API's real
        /// meaning, the ignored parameter is never taken for anything, and a list planned by
        /// learned semantics selects what the API answered.
        #[test]
        fn inferred_semantics_are_what_sqlite_did(
            rows in testdb::rows(),
            queries in proptest::collection::vec(query_params(), 10..80),
        ) {
            learns_only_the_truth(&rows, &queries)?;
        }

        /// Likewise for a reader paging by page number, from 1 or from 0.
        #[test]
        fn inferred_pages_are_what_sqlite_did(
            rows in proptest::collection::vec(testdb::row(), 12..24).prop_map(distinct_ids),
            queries in proptest::collection::vec(paged_query_params(), 40..200),
        ) {
            learns_only_the_truth(&rows, &queries)?;
        }
    }
}
