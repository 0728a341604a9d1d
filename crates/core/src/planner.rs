//! The invalidation planner: given a write's before and after images and the cached responses
//! that depend on its table, which keys are now stale and why.
//!
//! Safety comes first: a key is left alone only when the planner can show that the write cannot
//! change that response. Record responses that show the row are always stale; a list page is
//! stale when a matching image sorts inside it, when the write changes how many rows precede
//! it, or when a short or empty page may gain a row ([`list_effect`], from the first and last
//! rows each page records); responses the planner cannot reason about are always stale.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::extract::ListWindow;
use super::key::CacheKey;
use super::predicate::{cmp_rows, column_value, row_matches, sql_text, Match, SqlText};
use super::protocol::ViewTarget;
use super::query::{quote_ident, Filter, ListQuery, Order};
use super::schema::VIEW_ID_COLUMN;
use super::{id_text, Row};

/// Why a key was invalidated, carried with every purged key so "why?" has an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidationReason {
    /// The response contains the written record.
    RecordWritten,
    /// A before or after image of the write matches the list and may change its cached page
    /// (see [`StaleCause`]).
    ListPredicateMatched,
    /// The response declares a dependency on the table (a view, an opaque list).
    ViewDependency,
    /// An operator asked for it.
    Manual,
    /// Dependencies registered after a write that touched them.
    LateRegistration,
    /// A coordinator recovering from an unfinished write invalidated conservatively.
    Recovery,
    /// The coordinator holds at most `EDGECACHE_MAX_REGISTRATIONS` keys and forgot the least
    /// recently filled one; a key it no longer tracks must not be served.
    Evicted,
    /// A learned dependency (`learned_rules`) says a write of another table changes it; `rule`
    /// is the rule's id in this table's coordinator.
    Learned {
        /// The rule's id.
        rule: u64,
    },
    /// A shadow check refetched the kept key and found the origin's answer changed: the copy
    /// was stale, so it is invalidated at once (and counted as a recall miss).
    ShadowChanged,
    /// A learned query-semantics hypothesis the key was kept under was contradicted (a later
    /// response, or a shadow check): every key it kept is stale.
    HypothesisRevoked,
    /// An operator forgot a learned hypothesis the key was kept under (`learn forget`, say after
    /// the API changed what a parameter means): every key it kept is invalidated, as when it
    /// is revoked, since nothing vouches for them any more.
    HypothesisForgotten,
}

impl InvalidationReason {
    /// The snake_case name used in logs, headers and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidationReason::RecordWritten => "record_written",
            InvalidationReason::ListPredicateMatched => "list_predicate_matched",
            InvalidationReason::ViewDependency => "view_dependency",
            InvalidationReason::Manual => "manual",
            InvalidationReason::LateRegistration => "late_registration",
            InvalidationReason::Recovery => "recovery",
            InvalidationReason::Evicted => "evicted",
            InvalidationReason::Learned { .. } => "learned",
            InvalidationReason::ShadowChanged => "shadow_changed",
            InvalidationReason::HypothesisRevoked => "hypothesis_revoked",
            InvalidationReason::HypothesisForgotten => "hypothesis_forgotten",
        }
    }

    /// The name with what the variant carries, for people: `learned (rule users:3)`.
    pub fn label(self, table: &str) -> String {
        match self {
            InvalidationReason::Learned { rule } => format!("learned (rule {table}:{rule})"),
            other => other.as_str().to_string(),
        }
    }
}

/// One write as the coordinator saw it: full rows (`SELECT *`) before and after.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WriteImages {
    /// The written table.
    pub table: String,
    /// The written record's id.
    pub id: String,
    /// The table's id column.
    pub id_column: String,
    /// The row before the write; `None` for an insert.
    pub before: Option<Row>,
    /// The row after the write; `None` for a delete.
    pub after: Option<Row>,
}

/// A cached list response of the written table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListDependent {
    /// The list's cache key.
    pub key: CacheKey,
    /// The list's parsed query.
    pub query: ListQuery,
    /// Where its cached page ends, if known.
    pub window: Option<ListWindow>,
}

/// One key to invalidate and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedInvalidation {
    /// The stale key.
    pub key: CacheKey,
    /// Why it is stale.
    pub reason: InvalidationReason,
    /// For a list page: how the write may change it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<StaleCause>,
}

/// The keys a write makes stale, each once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidationPlan {
    /// Stale keys in planning order: records, then lists, then opaque dependents.
    pub entries: Vec<PlannedInvalidation>,
}

impl InvalidationPlan {
    /// Why `key` is stale, or `None` if the plan leaves it alone.
    pub fn reason_for(&self, key: &CacheKey) -> Option<InvalidationReason> {
        self.entries
            .iter()
            .find(|e| &e.key == key)
            .map(|e| e.reason)
    }
}

/// Plans the invalidations of one write: `record_keys` are the responses containing the record,
/// `lists` the cached lists of its table, `views` the cached responses of views reading it
/// (planned on the view rows `changes` says the write touched, see [`view_effect`]), `opaque`
/// the dependents the planner cannot reason about.
pub fn plan_write(
    write: &WriteImages,
    record_keys: &[CacheKey],
    lists: &[ListDependent],
    views: &[ViewDependent],
    changes: &[ViewChanges],
    opaque: &[CacheKey],
) -> InvalidationPlan {
    // The images are whole rows (`SELECT *`): an update that left the row as it was changed no
    // response, not even the record's own.
    if write_left_row_unchanged(write) {
        return InvalidationPlan::default();
    }
    let records = record_keys
        .iter()
        .map(|key| (key, InvalidationReason::RecordWritten, None));
    let lists = lists
        .iter()
        .filter_map(|list| match list_effect(write, list) {
            ListEffect::Stale(cause) => Some((
                &list.key,
                InvalidationReason::ListPredicateMatched,
                Some(cause),
            )),
            ListEffect::Spared(_) => None,
        });
    let views = views
        .iter()
        .filter_map(|view| match view_effect(write, view, changes) {
            ListEffect::Stale(cause) => {
                Some((&view.key, InvalidationReason::ViewDependency, Some(cause)))
            }
            ListEffect::Spared(_) => None,
        });
    let opaque = opaque
        .iter()
        .map(|key| (key, InvalidationReason::ViewDependency, None));
    let mut plan = InvalidationPlan::default();
    let mut seen: HashSet<&CacheKey> = HashSet::new();
    for (key, reason, cause) in records.chain(lists).chain(views).chain(opaque) {
        if seen.insert(key) {
            plan.entries.push(PlannedInvalidation {
                key: key.clone(),
                reason,
                cause,
            });
        }
    }
    plan
}

/// A cached response of a view that reads the written table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewDependent {
    /// The response's cache key.
    pub key: CacheKey,
    /// The view.
    pub view: String,
    /// The view's bindings: table -> the column holding the view row's id.
    pub bind: BTreeMap<String, String>,
    /// The view row or page it shows.
    pub target: ViewTarget,
}

/// Which view rows a write of a table can touch, read around the write: the view `view`,
/// whose row with id `x` is fed by the rows of the table whose `column` is `x`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ViewRead {
    /// The view.
    pub view: String,
    /// The written table's column bound to the view's id.
    pub column: String,
}

impl ViewRead {
    /// The SQL reading the view rows a write of the record `?1` of `table` (id column
    /// `id_column`) touches, run once before the write and once after it in the write's
    /// transaction: the rows whose id is the record's bound column as the database holds it
    /// then, or one of `named` more ids (`?2`…, see [`view_named_ids`]).
    pub fn sql(&self, table: &str, id_column: &str, named: usize) -> String {
        let id = quote_ident(VIEW_ID_COLUMN);
        let mut sql = format!(
            "SELECT * FROM {} WHERE {id} IN (SELECT {} FROM {} WHERE {} = ?1)",
            quote_ident(&self.view),
            quote_ident(&self.column),
            quote_ident(table),
            quote_ident(id_column),
        );
        if named > 0 {
            let marks: Vec<String> = (2..named + 2).map(|i| format!("?{i}")).collect();
            sql.push_str(&format!(" OR {id} IN ({})", marks.join(", ")));
        }
        sql
    }
}

/// The view ids a write names without reading the database: the record's own id where the
/// bound column is the id column, and the bound column's value in the written row (`row`:
/// the body of a create, replace or patch). Text only: their rows are read with them bound
/// as text.
pub fn view_named_ids(
    read: &ViewRead,
    id_column: &str,
    id: &str,
    row: Option<&Row>,
) -> Vec<String> {
    let mut named = Vec::new();
    if read.column == id_column {
        named.push(id.to_string());
    }
    if let Some(Value::String(v)) = row.and_then(|r| r.get(&read.column)) {
        named.push(v.clone());
    }
    named.sort();
    named.dedup();
    named
}

/// One view row before and after a write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewRowChange {
    /// The view row's id.
    pub id: String,
    /// The row before the write; `None`: there was none.
    pub before: Option<Row>,
    /// The row after the write; `None`: there is none.
    pub after: Option<Row>,
}

/// What a write did to a view's rows, from [`ViewRead::sql`] run before and after it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewChanges {
    /// What was read.
    pub read: ViewRead,
    /// Every view row the write can have touched, before and after; `None` when a row read
    /// on one side was not looked for on the other (its other image is unknown).
    pub rows: Option<Vec<ViewRowChange>>,
}

impl ViewChanges {
    /// Pairs the rows read before and after a write with `named` ids (see
    /// [`view_named_ids`]). An id is looked for on a side if it is named or a row with it was
    /// read there (then a missing row means there is none); a row read on one side whose id
    /// was not looked for on the other (an order moved away from, or deleted from, its user)
    /// leaves the write's effect on the view unknown.
    pub fn pair(
        read: ViewRead,
        named: &[String],
        before: Vec<Row>,
        after: Vec<Row>,
    ) -> ViewChanges {
        let ids = |rows: &[Row]| -> Option<Vec<String>> {
            rows.iter()
                .map(|r| r.get(VIEW_ID_COLUMN).and_then(id_text))
                .collect()
        };
        let (Some(before_ids), Some(after_ids)) = (ids(&before), ids(&after)) else {
            return ViewChanges { read, rows: None };
        };
        let looked_for = |ids: &[String], id: &String| named.contains(id) || ids.contains(id);
        let complete = before_ids.iter().all(|id| looked_for(&after_ids, id))
            && after_ids.iter().all(|id| looked_for(&before_ids, id));
        if !complete {
            return ViewChanges { read, rows: None };
        }
        let mut all: Vec<String> = before_ids.iter().chain(&after_ids).cloned().collect();
        all.sort();
        all.dedup();
        let find = |rows: &[Row], ids: &[String], id: &String| {
            ids.iter().position(|x| x == id).map(|i| rows[i].clone())
        };
        let rows = all
            .iter()
            .map(|id| ViewRowChange {
                id: id.clone(),
                before: find(&before, &before_ids, id),
                after: find(&after, &after_ids, id),
            })
            .collect();
        ViewChanges {
            read,
            rows: Some(rows),
        }
    }
}

/// What `write` does to a cached response of a view. Where the view binds the written table
/// and `changes` holds the view rows the write touched, each changed row is planned as a write
/// of the view ([`list_effect`] for a page: each row change that spares a page leaves it and
/// its window as they were, so the next is planned against the same page); otherwise every
/// response of the view is stale (`Unknown`).
pub fn view_effect(
    write: &WriteImages,
    view: &ViewDependent,
    changes: &[ViewChanges],
) -> ListEffect {
    if write_left_row_unchanged(write) {
        return ListEffect::Spared(SpareReason::RowUnchanged);
    }
    let Some(column) = view.bind.get(&write.table) else {
        return ListEffect::Stale(StaleCause::Unknown);
    };
    let rows = changes.iter().find_map(|c| {
        (c.read.view == view.view && &c.read.column == column).then_some(c.rows.as_ref())
    });
    let Some(Some(rows)) = rows else {
        // Without the view's rows (explain reads none), a view row the written row feeds
        // neither before nor after the write is still known untouched.
        return match (&view.target, fed_view_rows(write, column)) {
            (ViewTarget::Record { id }, Some(fed)) if !fed.contains(id) => {
                ListEffect::Spared(SpareReason::OtherRecord)
            }
            _ => ListEffect::Stale(StaleCause::Unknown),
        };
    };
    let mut spared = SpareReason::RowUnchanged;
    for row in rows.iter().filter(|r| r.before != r.after) {
        let effect = match &view.target {
            ViewTarget::Record { id } if *id == row.id => ListEffect::Stale(StaleCause::RowInPage),
            ViewTarget::Record { .. } => ListEffect::Spared(SpareReason::OtherRecord),
            ViewTarget::List { query, window } => {
                let images = WriteImages {
                    table: view.view.clone(),
                    id: row.id.clone(),
                    id_column: VIEW_ID_COLUMN.to_string(),
                    before: row.before.clone(),
                    after: row.after.clone(),
                };
                let page = ListDependent {
                    key: view.key.clone(),
                    query: query.clone(),
                    window: Some(window.clone()),
                };
                list_effect(&images, &page)
            }
        };
        match effect {
            ListEffect::Stale(cause) => return ListEffect::Stale(cause),
            ListEffect::Spared(reason) => spared = reason,
        }
    }
    ListEffect::Spared(spared)
}

/// The ids of the view rows the written row feeds through its bound `column`, before and after
/// the write; `None` when an image lacks the column (then it may feed any row).
fn fed_view_rows(write: &WriteImages, column: &str) -> Option<Vec<String>> {
    [&write.before, &write.after]
        .into_iter()
        .flatten()
        .map(|row| column_value(row, column).and_then(id_text))
        .collect()
}

/// Why the planner can show that a write leaves a cached list page as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpareReason {
    /// The update changed no column of the row.
    RowUnchanged,
    /// Neither image of the row matches the list's filters.
    FiltersExcludeRow,
    /// Every matching image sorts after the page's last row and the page is full.
    SortsAfterFullPage,
    /// The row stays before the page's first row: as many rows precede the page as before.
    StaysBeforePage,
    /// The page is empty (its offset is past the list's end) and the write adds no row.
    EmptyPageStaysEmpty,
    /// The response shows other records of the table, not the written one.
    OtherRecord,
}

impl SpareReason {
    /// The snake_case name used in the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            SpareReason::RowUnchanged => "row_unchanged",
            SpareReason::FiltersExcludeRow => "filters_exclude_row",
            SpareReason::SortsAfterFullPage => "sorts_after_full_page",
            SpareReason::StaysBeforePage => "stays_before_page",
            SpareReason::EmptyPageStaysEmpty => "empty_page_stays_empty",
            SpareReason::OtherRecord => "other_record",
        }
    }
}

/// Why the planner holds a cached list page stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleCause {
    /// A matching image sorts between the page's first and last rows.
    RowInPage,
    /// The write changes how many rows sort before the page, shifting it.
    ShiftsPage,
    /// The page is not full and a matching image sorts after its last row.
    ExtendsShortPage,
    /// The page is empty and the write may add a row to the list.
    MayFillEmptyPage,
    /// The page's window is unknown, or an image's membership or place cannot be worked out
    /// as SQLite would.
    Unknown,
}

impl StaleCause {
    /// The snake_case name used in the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            StaleCause::RowInPage => "row_in_page",
            StaleCause::ShiftsPage => "shifts_page",
            StaleCause::ExtendsShortPage => "extends_short_page",
            StaleCause::MayFillEmptyPage => "may_fill_empty_page",
            StaleCause::Unknown => "unknown",
        }
    }
}

/// What one write does to one cached list page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "effect", content = "why")]
pub enum ListEffect {
    /// The page may change.
    Stale(StaleCause),
    /// The page cannot change.
    Spared(SpareReason),
}

/// Where a write's image falls relative to a non-empty page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// Not in the list at all.
    Absent,
    /// Sorts strictly before the page's first row.
    Before,
    /// Sorts between the page's first and last rows (or cannot be told apart from that).
    Inside,
    /// Sorts strictly after the page's last row.
    After,
}

/// Whether the write is an update that left every column as it was.
fn write_left_row_unchanged(write: &WriteImages) -> bool {
    write.before.is_some() && write.before == write.after
}

/// What the write does to `list`'s cached page. The page is the rows at positions
/// `offset..offset + limit` of the sorted matching rows; a write removes the before image (if
/// it matched) and adds the after image (if it matches), so the page changes only if one of
/// them sorts inside it, the number of rows before it changes, or a short page gains a row.
pub fn list_effect(write: &WriteImages, list: &ListDependent) -> ListEffect {
    if write_left_row_unchanged(write) {
        return ListEffect::Spared(SpareReason::RowUnchanged);
    }
    let q = &list.query;
    let membership = |image: &Option<Row>| {
        image
            .as_ref()
            .map_or(Match::No, |image| row_matches(q, image))
    };
    let (was, is) = (membership(&write.before), membership(&write.after));
    if !was.may_match() && !is.may_match() {
        return ListEffect::Spared(SpareReason::FiltersExcludeRow);
    }
    let Some(window) = &list.window else {
        // An unknown window shows who knows what: any matching row may change it.
        return ListEffect::Stale(StaleCause::Unknown);
    };
    if window.empty {
        // An empty page lies past the list's end: it stays empty unless the list may grow.
        return match (was, is) {
            (_, Match::No) | (Match::Yes, _) => {
                ListEffect::Spared(SpareReason::EmptyPageStaysEmpty)
            }
            _ => ListEffect::Stale(StaleCause::MayFillEmptyPage),
        };
    }
    let Some(last) = &window.last else {
        return ListEffect::Stale(StaleCause::Unknown);
    };
    let place = |image: &Option<Row>, matched: Match| -> Option<Place> {
        let image = match (image, matched) {
            (None, _) | (_, Match::No) => return Some(Place::Absent),
            (Some(_), Match::Unknown) => return None,
            (Some(image), Match::Yes) => image,
        };
        if !position_known(q, &write.id_column, image, last) {
            return None;
        }
        if cmp_rows(q.order.as_ref(), &write.id_column, image, last) == Ordering::Greater {
            return Some(Place::After);
        }
        // Without a known first row, everything up to the last row counts as inside.
        let before_first = window.first.as_ref().is_some_and(|first| {
            position_known(q, &write.id_column, image, first)
                && cmp_rows(q.order.as_ref(), &write.id_column, image, first) == Ordering::Less
        });
        Some(if before_first {
            Place::Before
        } else {
            Place::Inside
        })
    };
    let (Some(from), Some(to)) = (place(&write.before, was), place(&write.after, is)) else {
        return ListEffect::Stale(StaleCause::Unknown);
    };
    if from == Place::Inside || to == Place::Inside {
        return ListEffect::Stale(StaleCause::RowInPage);
    }
    if (from == Place::Before) != (to == Place::Before) {
        return ListEffect::Stale(StaleCause::ShiftsPage);
    }
    if !window.full && (from == Place::After || to == Place::After) {
        // A short page shows every matching row from its offset on.
        return ListEffect::Stale(StaleCause::ExtendsShortPage);
    }
    ListEffect::Spared(if from == Place::Before {
        SpareReason::StaysBeforePage
    } else {
        SpareReason::SortsAfterFullPage
    })
}

/// Whether `image` and `bound` can be placed by `cmp_rows` as SQLite would place them.
fn position_known(q: &ListQuery, id_column: &str, image: &Row, bound: &Row) -> bool {
    let sortable = |v: Option<&Value>| {
        matches!(
            v,
            None | Some(Value::Null | Value::Number(_) | Value::String(_))
        )
    };
    let order_column = q.order.as_ref().map(|o| o.column.as_str());
    // A missing id would sort as NULL; an image without its id is not one to reason about.
    column_value(image, id_column).is_some()
        && column_value(bound, id_column).is_some()
        && order_column
            .into_iter()
            .chain([id_column])
            .all(|c| sortable(column_value(image, c)) && sortable(column_value(bound, c)))
}

/// Whether an `Eq` value can be compared through the index: a REAL's text always contains '.',
/// and a JSON integer may hide a REAL, so such values are left to the scan.
fn indexable(value: &str) -> bool {
    !value.contains('.')
}

/// The term a coordinator indexes a list under: its first `Eq` filter, column lowercased.
///
/// Contract: if this returns `(c, v)` and `row_matches(q, row)` is not `No`, then `(c, v)` is in
/// [`row_index_terms`]`(row)` or `c` is in [`row_unindexed_columns`]`(row)`. A list without a
/// term must be considered for every write.
pub fn list_index_term(q: &ListQuery) -> Option<(String, String)> {
    q.filters.iter().find_map(|f| match f {
        Filter::Eq { column, value } if indexable(value) => {
            Some((column.to_ascii_lowercase(), value.clone()))
        }
        _ => None,
    })
}

/// Longest text whose prefixes a row is looked up under; a longer one loads every prefix list
/// on its column.
const MAX_PREFIXED_TEXT: usize = 64;

/// The term a list without an index term ([`list_index_term`]) is indexed under: its first
/// `Prefix` filter, column lowercased.
///
/// Contract: if this returns `(c, p)` and `row_matches(q, row)` is not `No`, then `(c, p)` is
/// in [`row_prefix_terms`]`(row).0` or `c` is in its `.1`.
pub fn list_prefix_term(q: &ListQuery) -> Option<(String, String)> {
    if list_index_term(q).is_some() {
        return None;
    }
    q.filters.iter().find_map(|f| match f {
        Filter::Prefix { column, prefix } => Some((column.to_ascii_lowercase(), prefix.clone())),
        Filter::Eq { .. } => None,
    })
}

/// The `(column, prefix)` terms a row is looked up under (every prefix of each column's text,
/// the empty one and the whole text included), and the columns (lowercased) whose prefix
/// lists must all be considered: an integer may render as a REAL's text, and other values'
/// texts are not known; see [`list_prefix_term`] for the contract.
pub fn row_prefix_terms(row: &Row) -> (Vec<(String, String)>, Vec<String>) {
    let mut terms = Vec::new();
    let mut every = Vec::new();
    for (column, value) in row {
        let column = column.to_ascii_lowercase();
        match sql_text(value) {
            SqlText::Null => {}
            SqlText::Text(s) if s.len() <= MAX_PREFIXED_TEXT => {
                let ends = s.char_indices().map(|(i, _)| i).chain([s.len()]);
                terms.extend(ends.map(|end| (column.clone(), s[..end].to_string())));
            }
            SqlText::Text(_) | SqlText::Integer(_) | SqlText::Unknown => every.push(column),
        }
    }
    (terms, every)
}

/// The order a list without filters is indexed under by its page bounds (see [`sort_key`]):
/// its order column, lowercased, `-` first when descending, or `""` for the id order. `None`
/// for a list with filters, which is indexed by its terms.
pub fn list_bound_order(q: &ListQuery) -> Option<String> {
    if !q.filters.is_empty() {
        return None;
    }
    Some(match &q.order {
        Some(o) => format!(
            "{}{}",
            if o.descending { "-" } else { "" },
            o.column.to_ascii_lowercase()
        ),
        None => String::new(),
    })
}

/// The [`Order`] of a [`list_bound_order`].
pub fn order_of_bound(bound_order: &str) -> Option<Order> {
    if bound_order.is_empty() {
        return None;
    }
    let (column, descending) = match bound_order.strip_prefix('-') {
        Some(column) => (column, true),
        None => (bound_order, false),
    };
    Some(Order {
        column: column.to_string(),
        descending,
    })
}

/// A row's place in a list's order as text whose bytewise order is `cmp_rows`'s ascending
/// order of (order column, id), whatever the list's direction; `None` where the JSON cannot
/// say (a float, a boolean, a missing id). NULL is `0`, an integer `1` and 16 hex digits of
/// its sign-flipped bits, text `2` and the hex of its bytes; the id follows a `.`, which sorts
/// before every hex digit, so a shorter text sorts first as in SQLite.
pub fn sort_key(order: Option<&Order>, id_column: &str, row: &Row) -> Option<String> {
    let id = column_value(row, id_column)?;
    key_of(order.map(|o| column_value(row, &o.column)), id)
}

fn key_of(order_value: Option<Option<&Value>>, id: &Value) -> Option<String> {
    fn part(v: Option<&Value>) -> Option<String> {
        match v {
            None | Some(Value::Null) => Some("0".into()),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(|i| format!("1{:016x}", (i as u64) ^ (1 << 63))),
            Some(Value::String(s)) => {
                let mut out = String::with_capacity(1 + 2 * s.len());
                out.push('2');
                for b in s.as_bytes() {
                    out.push_str(&format!("{b:02x}"));
                }
                Some(out)
            }
            Some(_) => None,
        }
    }
    let id = part(Some(id))?;
    match order_value {
        Some(v) => Some(format!("{}.{id}", part(v)?)),
        None => Some(id),
    }
}

/// Where a cached page of a list without filters lies in its order, for the coordinator's
/// index: a write need only be planned against pages its images can land in, shift or extend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageBounds {
    /// The [`sort_key`]s of the page's first and last rows, lowest first, and whether the
    /// page is full.
    Page {
        /// The lower key.
        lo: String,
        /// The higher key.
        hi: String,
        /// The page holds `limit` rows.
        full: bool,
    },
    /// An empty page: any insert may fill it.
    Empty,
    /// Bounds that cannot be keyed: planned for every write.
    Unknown,
}

/// The bounds of a cached page of `q` (a list without filters), from its window. The window's
/// rows hold only the order and id columns (`extract::list_window`), so the id is the column
/// that is not the order column; where that cannot be told, the bounds are unknown.
pub fn page_bounds(q: &ListQuery, window: &ListWindow) -> PageBounds {
    if window.empty {
        return PageBounds::Empty;
    }
    let key = |reduced: &Row| -> Option<String> {
        match &q.order {
            None if reduced.len() == 1 => key_of(None, reduced.values().next()?),
            Some(o) if reduced.len() == 2 => {
                let (_, id) = reduced
                    .iter()
                    .find(|(n, _)| !n.eq_ignore_ascii_case(&o.column))?;
                key_of(Some(column_value(reduced, &o.column)), id)
            }
            _ => None,
        }
    };
    match (
        window.first.as_ref().and_then(key),
        window.last.as_ref().and_then(key),
    ) {
        (Some(first), Some(last)) => PageBounds::Page {
            lo: first.clone().min(last.clone()),
            hi: first.max(last),
            full: window.full,
        },
        _ => PageBounds::Unknown,
    }
}

/// The `(column, text)` terms of a row, column lowercased as SQLite resolves names, for every
/// column whose text is known; see [`list_index_term`] for the contract.
pub fn row_index_terms(row: &Row) -> Vec<(String, String)> {
    row.iter()
        .filter_map(|(column, value)| {
            let text = match sql_text(value) {
                SqlText::Text(s) => s.to_string(),
                SqlText::Integer(n) => n.to_string(),
                SqlText::Null | SqlText::Unknown => return None,
            };
            Some((column.to_ascii_lowercase(), text))
        })
        .collect()
}

/// The columns of a row (lowercased) whose text is unknown (floats, booleans, arrays,
/// objects): every list indexed on such a column must be considered for a write of the row.
pub fn row_unindexed_columns(row: &Row) -> Vec<String> {
    row.iter()
        .filter(|(_, value)| sql_text(value) == SqlText::Unknown)
        .map(|(column, _)| column.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::HashMap;

    use super::super::extract::{list_window, record_ids};
    use super::super::query::{parse_list_query, Order};
    use super::super::testdb::{self, TestDb};
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use serde_json::json;

    fn row(v: Value) -> Row {
        v.as_object().unwrap().clone()
    }

    fn list(query: &str, window: Option<ListWindow>) -> ListDependent {
        let key = CacheKey::from_request("acme", "/v1/users", Some(query)).unwrap();
        let q = parse_list_query(key.query_pairs(), |c| {
            ["id", "firstName", "age"].contains(&c)
        })
        .unwrap();
        ListDependent {
            key,
            query: q,
            window,
        }
    }

    fn window(full: bool, last: Value) -> Option<ListWindow> {
        Some(ListWindow {
            full,
            empty: false,
            first: None,
            last: Some(row(last)),
        })
    }

    fn page(full: bool, first: Value, last: Value) -> Option<ListWindow> {
        Some(ListWindow {
            full,
            empty: false,
            first: Some(row(first)),
            last: Some(row(last)),
        })
    }

    fn update(before: Value, after: Value) -> WriteImages {
        WriteImages {
            before: Some(row(before)),
            after: Some(row(after)),
            ..insert(json!({"id": "9"}))
        }
    }

    fn delete(before: Value) -> WriteImages {
        WriteImages {
            before: Some(row(before)),
            after: None,
            ..insert(json!({"id": "9"}))
        }
    }

    fn effect(write: &WriteImages, l: &ListDependent) -> ListEffect {
        list_effect(write, l)
    }

    fn insert(after: Value) -> WriteImages {
        let after = row(after);
        WriteImages {
            table: "users".into(),
            id: after.get("id").map_or_else(String::new, Value::to_string),
            id_column: "id".into(),
            before: None,
            after: Some(after),
        }
    }

    fn stale(write: &WriteImages, l: &ListDependent) -> bool {
        plan_write(write, &[], std::slice::from_ref(l), &[], &[], &[]).reason_for(&l.key)
            == Some(InvalidationReason::ListPredicateMatched)
    }

    #[test]
    fn reasons_are_snake_case() {
        assert_eq!(
            InvalidationReason::ListPredicateMatched.as_str(),
            "list_predicate_matched"
        );
        assert_eq!(
            serde_json::to_string(&InvalidationReason::LateRegistration).unwrap(),
            "\"late_registration\""
        );
        let back: InvalidationReason = serde_json::from_str("\"record_written\"").unwrap();
        assert_eq!(back, InvalidationReason::RecordWritten);
    }

    #[test]
    fn filtered_list_is_stale_only_for_matching_rows() {
        let lanes = list("firstName=Lane", None);
        assert!(stale(
            &insert(json!({"id": "9", "firstName": "Lane"})),
            &lanes
        ));
        assert!(!stale(
            &insert(json!({"id": "9", "firstName": "Bob"})),
            &lanes
        ));
        assert!(!stale(
            &insert(json!({"id": "9", "firstName": null})),
            &lanes
        ));
        let la = list("firstName=La*", None);
        assert!(stale(&insert(json!({"id": "9", "firstName": "Lara"})), &la));
    }

    #[test]
    fn update_moving_a_row_out_of_a_list_stales_it() {
        let lanes = list("firstName=Lane", None);
        let update = WriteImages {
            before: Some(row(json!({"id": "9", "firstName": "Lane"}))),
            after: Some(row(json!({"id": "9", "firstName": "Bob"}))),
            ..insert(json!({"id": "9"}))
        };
        assert!(stale(&update, &lanes));
        let delete = WriteImages {
            after: None,
            ..update
        };
        assert!(stale(&delete, &lanes));
    }

    #[test]
    fn full_page_is_untouched_by_rows_sorting_after_it() {
        let page = list(
            "limit=2&order=age",
            window(true, json!({"id": "5", "age": 30})),
        );
        assert!(!stale(&insert(json!({"id": "9", "age": 31})), &page));
        // Same age, larger id: the id breaks the tie, still after the page.
        assert!(!stale(&insert(json!({"id": "6", "age": 30})), &page));
        // Same age, smaller id: inside the page.
        assert!(stale(&insert(json!({"id": "4", "age": 30})), &page));
        assert!(stale(&insert(json!({"id": "9", "age": 12})), &page));
        // NULL sorts first.
        assert!(stale(&insert(json!({"id": "9", "age": null})), &page));
    }

    #[test]
    fn descending_pages_reverse_the_tiebreak() {
        let page = list(
            "limit=2&order=-age",
            window(true, json!({"id": "5", "age": 30})),
        );
        assert!(!stale(&insert(json!({"id": "9", "age": 29})), &page));
        assert!(!stale(&insert(json!({"id": "4", "age": 30})), &page));
        assert!(stale(&insert(json!({"id": "6", "age": 30})), &page));
        assert!(!stale(&insert(json!({"id": "6", "age": null})), &page));
    }

    #[test]
    fn short_or_unknown_pages_are_stale_on_any_match() {
        let short = list(
            "limit=10&order=age",
            window(false, json!({"id": "5", "age": 30})),
        );
        assert!(stale(&insert(json!({"id": "9", "age": 99})), &short));
        let unknown = list("limit=10", None);
        assert!(stale(&insert(json!({"id": "9"})), &unknown));
        let empty = list(
            "limit=10&offset=5",
            Some(ListWindow {
                full: false,
                empty: true,
                first: None,
                last: None,
            }),
        );
        assert!(stale(&insert(json!({"id": "9"})), &empty));
        // A window that is not a list's, empty or not, is unknown.
        let odd = list(
            "limit=10",
            Some(ListWindow {
                full: false,
                empty: false,
                first: None,
                last: None,
            }),
        );
        assert_eq!(
            effect(&delete(json!({"id": "9"})), &odd),
            ListEffect::Stale(StaleCause::Unknown)
        );
    }

    #[test]
    fn unknown_values_are_treated_as_matches() {
        let lanes = list(
            "age=30.0&limit=1",
            window(true, json!({"id": "5", "age": 30})),
        );
        // JSON 30 may be a REAL 30.0, whose text is "30.0".
        assert!(stale(&insert(json!({"id": "1", "age": 30})), &lanes));
        let page = list(
            "limit=1&order=age",
            window(true, json!({"id": "5", "age": 30})),
        );
        // A boolean has no known place in SQLite's order.
        assert!(stale(&insert(json!({"id": "9", "age": true})), &page));
        // An image without its id cannot be placed.
        assert!(stale(&insert(json!({"age": 99})), &page));
    }

    #[test]
    fn an_unchanged_row_stales_nothing() {
        let same = row(json!({"id": "9", "firstName": "Lane"}));
        let write = WriteImages {
            before: Some(same.clone()),
            after: Some(same),
            ..insert(json!({"id": "9"}))
        };
        let lanes = list("firstName=Lane", None);
        let record = CacheKey::from_request("acme", "/v1/users/9", None).unwrap();
        let plan = plan_write(
            &write,
            std::slice::from_ref(&record),
            std::slice::from_ref(&lanes),
            &[],
            &[],
            &[],
        );
        assert!(plan.entries.is_empty(), "{plan:?}");
        assert_eq!(
            list_effect(&write, &lanes),
            ListEffect::Spared(SpareReason::RowUnchanged)
        );
        // An HTTP origin's write has no before image: its record is stale.
        let unknown = WriteImages {
            before: None,
            ..write
        };
        let plan = plan_write(&unknown, std::slice::from_ref(&record), &[], &[], &[], &[]);
        assert_eq!(
            plan.reason_for(&record),
            Some(InvalidationReason::RecordWritten)
        );
    }

    #[test]
    fn keys_are_unique_and_first_reason_wins() {
        let lanes = list("firstName=Lane", None);
        let view = CacheKey::from_request("acme", "/v1/report", None).unwrap();
        let write = insert(json!({"id": "9", "firstName": "Lane"}));
        let plan = plan_write(
            &write,
            std::slice::from_ref(&lanes.key),
            &[lanes.clone(), lanes.clone()],
            &[],
            &[],
            &[lanes.key.clone(), view.clone(), view.clone()],
        );
        assert_eq!(
            plan.entries,
            vec![
                PlannedInvalidation {
                    key: lanes.key.clone(),
                    reason: InvalidationReason::RecordWritten,
                    cause: None,
                },
                PlannedInvalidation {
                    key: view,
                    reason: InvalidationReason::ViewDependency,
                    cause: None,
                },
            ]
        );
    }

    #[test]
    fn an_update_in_place_stales_only_the_page_showing_the_row() {
        // Pages 1 and 2 of `order=age&limit=2`: ages 10, 20 | 30, 40.
        let first = list(
            "limit=2&order=age",
            page(
                true,
                json!({"id": "1", "age": 10}),
                json!({"id": "2", "age": 20}),
            ),
        );
        let second = list(
            "limit=2&offset=2&order=age",
            page(
                true,
                json!({"id": "3", "age": 30}),
                json!({"id": "4", "age": 40}),
            ),
        );
        let renamed = update(
            json!({"id": "3", "age": 30, "firstName": "Ann"}),
            json!({"id": "3", "age": 30, "firstName": "Bea"}),
        );
        assert_eq!(
            effect(&renamed, &first),
            ListEffect::Spared(SpareReason::SortsAfterFullPage)
        );
        assert_eq!(
            effect(&renamed, &second),
            ListEffect::Stale(StaleCause::RowInPage)
        );
        let early = update(
            json!({"id": "1", "age": 10, "firstName": "Ann"}),
            json!({"id": "1", "age": 10, "firstName": "Bea"}),
        );
        assert_eq!(
            effect(&early, &second),
            ListEffect::Spared(SpareReason::StaysBeforePage)
        );
        // Moving before the page from before it keeps the count before it.
        let reorder = update(json!({"id": "1", "age": 10}), json!({"id": "1", "age": 5}));
        assert!(!stale(&reorder, &second));
        // Moving from before the page to after it shifts the page.
        let moved = update(json!({"id": "1", "age": 10}), json!({"id": "1", "age": 50}));
        assert_eq!(
            effect(&moved, &second),
            ListEffect::Stale(StaleCause::ShiftsPage)
        );
        // Leaving the list from before the page shifts it too.
        assert_eq!(
            effect(&delete(json!({"id": "1", "age": 10})), &second),
            ListEffect::Stale(StaleCause::ShiftsPage)
        );
        // A short page gains rows sorting after it.
        let short = list(
            "limit=3&offset=2&order=age",
            page(
                false,
                json!({"id": "3", "age": 30}),
                json!({"id": "4", "age": 40}),
            ),
        );
        assert_eq!(
            effect(&insert(json!({"id": "5", "age": 50})), &short),
            ListEffect::Stale(StaleCause::ExtendsShortPage)
        );
    }

    #[test]
    fn an_empty_page_stays_empty_unless_the_list_may_grow() {
        let empty = list(
            "firstName=Lane&limit=10&offset=20",
            Some(ListWindow {
                full: false,
                empty: true,
                first: None,
                last: None,
            }),
        );
        let lane = json!({"id": "9", "firstName": "Lane"});
        let bob = json!({"id": "9", "firstName": "Bob"});
        assert_eq!(
            effect(&delete(lane.clone()), &empty),
            ListEffect::Spared(SpareReason::EmptyPageStaysEmpty)
        );
        assert_eq!(
            effect(
                &update(
                    lane.clone(),
                    json!({"id": "9", "firstName": "Lane", "age": 3})
                ),
                &empty
            ),
            ListEffect::Spared(SpareReason::EmptyPageStaysEmpty)
        );
        assert_eq!(
            effect(&update(bob.clone(), lane.clone()), &empty),
            ListEffect::Stale(StaleCause::MayFillEmptyPage)
        );
        assert_eq!(
            effect(&insert(lane), &empty),
            ListEffect::Stale(StaleCause::MayFillEmptyPage)
        );
        assert_eq!(
            effect(&insert(bob), &empty),
            ListEffect::Spared(SpareReason::FiltersExcludeRow)
        );
    }

    #[test]
    fn index_terms() {
        let lanes = list("age=30&firstName=Lane", None);
        assert_eq!(
            list_index_term(&lanes.query),
            Some(("age".into(), "30".into()))
        );
        assert_eq!(
            list_index_term(&list("age=3*&firstName=Lane", None).query),
            Some(("firstname".into(), "Lane".into()))
        );
        assert_eq!(list_index_term(&list("age=30.0", None).query), None);
        assert_eq!(list_index_term(&list("age=3*", None).query), None);
        let r = row(json!({"id": 9, "firstName": "Lane", "age": null, "score": 1.5, "ok": true}));
        let mut terms = row_index_terms(&r);
        terms.sort();
        assert_eq!(
            terms,
            [
                ("firstname".to_string(), "Lane".to_string()),
                ("id".into(), "9".into())
            ]
        );
        let mut unindexed = row_unindexed_columns(&r);
        unindexed.sort();
        assert_eq!(unindexed, ["ok", "score"]);
    }

    /// A list query on any of a few columns with values aimed at the JSON values below.
    fn index_query() -> impl Strategy<Value = ListQuery> {
        let value =
            prop::sample::select(vec!["5", "5.0", "x", "", "1.5", "true", "1", "xé", "xé5"]);
        let filter = (
            prop::sample::select(vec!["a", "A", "b"]),
            any::<bool>(),
            value,
        )
            .prop_map(|(c, p, v)| {
                if p {
                    Filter::Prefix {
                        column: c.into(),
                        prefix: v.into(),
                    }
                } else {
                    Filter::Eq {
                        column: c.into(),
                        value: v.into(),
                    }
                }
            });
        proptest::collection::vec(filter, 0..3).prop_map(|mut filters| {
            filters.sort_by(|a, b| a.column().cmp(b.column()));
            ListQuery {
                filters,
                order: None,
                limit: 10,
                offset: 0,
            }
        })
    }

    fn json_value() -> impl Strategy<Value = Value> {
        prop::sample::select(vec![
            json!(null),
            json!(5),
            json!(1),
            json!(5.0),
            json!(1.5),
            json!("5"),
            json!("x"),
            json!(""),
            json!("xé5"),
            json!(true),
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The index never hides a list that may match: see `list_index_term`'s contract.
        #[test]
        fn index_contract(q in index_query(), a in json_value(), b in json_value()) {
            let r = row(json!({"a": a, "b": b}));
            if let (Some((column, prefix)), true) = (list_prefix_term(&q), row_matches(&q, &r).may_match()) {
                let (terms, every) = row_prefix_terms(&r);
                prop_assert!(
                    terms.contains(&(column.clone(), prefix)) || every.contains(&column),
                    "{:?} hides {:?} from its prefix term", q, r
                );
            }
            if let (Some((column, value)), true) = (list_index_term(&q), row_matches(&q, &r).may_match()) {
                let term = (column.clone(), value);
                prop_assert!(
                    row_index_terms(&r).contains(&term) || row_unindexed_columns(&r).contains(&column),
                    "{:?} hides {:?}", q, r
                );
            }
        }
    }

    fn sortable_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!(null)),
            (-3i64..3).prop_map(|i| json!(i)),
            prop::sample::select(vec![i64::MIN, i64::MAX, -1, 0]).prop_map(|i| json!(i)),
            "[a-c\u{e9}]{0,3}".prop_map(|s| json!(s)),
            Just(json!(1.5)),
            Just(json!(true)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// `sort_key` orders rows as `cmp_rows` does, or declines.
        #[test]
        fn sort_keys_order_rows_like_sqlite(
            a in (sortable_value(), sortable_value()),
            b in (sortable_value(), sortable_value()),
            ordered in any::<bool>(),
            descending in any::<bool>(),
        ) {
            let order = ordered.then(|| Order { column: "v".into(), descending });
            let ra = row(json!({"id": a.0, "v": a.1}));
            let rb = row(json!({"id": b.0, "v": b.1}));
            if let (Some(ka), Some(kb)) = (
                sort_key(order.as_ref(), "id", &ra),
                sort_key(order.as_ref(), "id", &rb),
            ) {
                let asc = order.as_ref().map(|o| Order { descending: false, ..o.clone() });
                prop_assert_eq!(ka.cmp(&kb), cmp_rows(asc.as_ref(), "id", &ra, &rb), "{:?} {:?}", ra, rb);
            }
        }
    }

    /// One cached list: its query, key, and the page it was filled with.
    struct Cached {
        key: CacheKey,
        query: ListQuery,
        rows: Vec<Row>,
        window: ListWindow,
    }

    fn fill(db: &TestDb, query: &ListQuery) -> Cached {
        let rows = db.list(query);
        let body = json!({ "data": rows });
        Cached {
            key: testdb::key_for(query),
            query: query.clone(),
            window: list_window(query, "id", &body),
            rows,
        }
    }

    /// Plans `write` against the cached lists and checks that every list whose result changed
    /// is in the plan; returns (changed, planned) counts.
    fn check_write(
        db: &TestDb,
        cache: &mut [Cached],
        write: &testdb::TestWrite,
    ) -> Result<(usize, usize), TestCaseError> {
        let images = db.apply(write);
        // Cached pages still hold what they held before the write.
        let record_keys: Vec<CacheKey> = cache
            .iter()
            .filter(|c| record_ids(&json!({ "data": c.rows }), "id").contains(&images.id))
            .map(|c| c.key.clone())
            .collect();
        let lists: Vec<ListDependent> = cache
            .iter()
            .map(|c| ListDependent {
                key: c.key.clone(),
                query: c.query.clone(),
                window: Some(c.window.clone()),
            })
            .collect();
        let plan = plan_write(&images, &record_keys, &lists, &[], &[], &[]);
        let mut changed = 0;
        for c in cache.iter_mut() {
            let now = db.list(&c.query);
            if now != c.rows {
                changed += 1;
                prop_assert!(
                    plan.reason_for(&c.key).is_some(),
                    "missed {} ({:?}) after {:?}: {:?} -> {:?}, window {:?}",
                    c.key,
                    c.query,
                    images,
                    c.rows,
                    now,
                    c.window
                );
            }
            if plan.reason_for(&c.key).is_some() {
                *c = fill(db, &c.query);
            }
        }
        Ok((changed, plan.entries.len()))
    }

    fn dedup(queries: Vec<ListQuery>) -> Vec<ListQuery> {
        let mut seen = HashMap::new();
        for q in queries {
            seen.entry(testdb::key_for(&q)).or_insert(q);
        }
        seen.into_values().collect()
    }

    fn runner(cases: u32) -> TestRunner {
        TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        })
    }

    /// Against the real database: every list whose result a random write changes is planned.
    #[test]
    fn planner_is_safe_against_sqlite() {
        let (changed, planned, lists) = (Cell::new(0), Cell::new(0), Cell::new(0));
        let strategy = (
            testdb::rows(),
            proptest::collection::vec(testdb::query(), 1..12),
            testdb::write(),
        );
        runner(300)
            .run(&strategy, |(rows, queries, write)| {
                let db = TestDb::new(&rows);
                let mut cache: Vec<Cached> = dedup(queries).iter().map(|q| fill(&db, q)).collect();
                let (c, p) = check_write(&db, &mut cache, &write)?;
                changed.set(changed.get() + c);
                planned.set(planned.get() + p);
                lists.set(lists.get() + cache.len());
                Ok(())
            })
            .unwrap();
        eprintln!(
            "planner vs sqlite: {} lists, {} planned, {} changed: precision {:.1}% (changed / planned), {:.1}% of lists spared",
            lists.get(),
            planned.get(),
            changed.get(),
            100.0 * changed.get() as f64 / planned.get().max(1) as f64,
            100.0 * (lists.get() - planned.get()) as f64 / lists.get().max(1) as f64,
        );
    }

    /// A random sequence of writes against one database and one cache, refilling what each
    /// plan invalidates: no unplanned list ever drifts from the database.
    #[test]
    fn planner_is_safe_over_write_sequences() {
        let (changed, planned) = (Cell::new(0), Cell::new(0));
        let strategy = (
            testdb::rows(),
            proptest::collection::vec(testdb::query(), 1..10),
            proptest::collection::vec(testdb::write(), 1..12),
        );
        runner(100)
            .run(&strategy, |(rows, queries, writes)| {
                let db = TestDb::new(&rows);
                let mut cache: Vec<Cached> = dedup(queries).iter().map(|q| fill(&db, q)).collect();
                for write in &writes {
                    let (c, p) = check_write(&db, &mut cache, write)?;
                    changed.set(changed.get() + c);
                    planned.set(planned.get() + p);
                }
                for c in &cache {
                    prop_assert_eq!(&db.list(&c.query), &c.rows);
                }
                Ok(())
            })
            .unwrap();
        eprintln!(
            "planner over write sequences: {} planned, {} changed: precision {:.1}%",
            planned.get(),
            changed.get(),
            100.0 * changed.get() as f64 / planned.get().max(1) as f64,
        );
    }

    /// Every page of a few lists, as a client paging through them caches them, under random
    /// write sequences: most writes touch one page of each list, and only that page (or the
    /// pages the write shifts) may be planned.
    #[test]
    fn planner_is_safe_for_paged_lists() {
        let (changed, planned, lists) = (Cell::new(0), Cell::new(0), Cell::new(0));
        let strategy = (
            testdb::rows(),
            proptest::collection::vec(testdb::query(), 1..4),
            proptest::collection::vec(testdb::write(), 1..8),
        );
        runner(100)
            .run(&strategy, |(rows, queries, writes)| {
                let db = TestDb::new(&rows);
                let pages: Vec<ListQuery> = queries
                    .iter()
                    .flat_map(|q| {
                        (0..=rows.len() as u32 / q.limit + 1).map(move |n| ListQuery {
                            offset: n * q.limit,
                            ..q.clone()
                        })
                    })
                    .collect();
                let mut cache: Vec<Cached> = dedup(pages).iter().map(|q| fill(&db, q)).collect();
                for write in &writes {
                    let (c, p) = check_write(&db, &mut cache, write)?;
                    changed.set(changed.get() + c);
                    planned.set(planned.get() + p);
                    lists.set(lists.get() + cache.len());
                }
                Ok(())
            })
            .unwrap();
        eprintln!(
            "planner over paged lists: {} pages, {} planned, {} changed: precision {:.1}%",
            lists.get(),
            planned.get(),
            changed.get(),
            100.0 * changed.get() as f64 / planned.get().max(1) as f64,
        );
    }

    /// What one cached response of the view `v` shows.
    #[derive(Clone, Debug)]
    enum ViewSpec {
        Record(String),
        List(ListQuery),
    }

    /// One cached response of the view `v`, as filled.
    struct CachedView {
        spec: ViewSpec,
        dep: ViewDependent,
        shown: Value,
    }

    fn view_shows(db: &TestDb, spec: &ViewSpec) -> Value {
        match spec {
            ViewSpec::Record(id) => json!(db
                .select_text("SELECT * FROM v WHERE id = ?1", std::slice::from_ref(id))
                .pop()),
            ViewSpec::List(q) => json!(db.list_in("v", q)),
        }
    }

    /// `v`'s bindings: users always, orders when `orders_bound`.
    fn join_bind(orders_bound: bool) -> BTreeMap<String, String> {
        let mut bind = BTreeMap::from([("users".to_string(), "id".to_string())]);
        if orders_bound {
            bind.insert("orders".into(), "userId".into());
        }
        bind
    }

    fn fill_view(db: &TestDb, spec: &ViewSpec, bind: &BTreeMap<String, String>) -> CachedView {
        let shown = view_shows(db, spec);
        let (key, target) = match spec {
            ViewSpec::Record(id) => (
                CacheKey::from_request("acme", &format!("/v1/v/{id}"), None).unwrap(),
                ViewTarget::Record { id: id.clone() },
            ),
            ViewSpec::List(q) => (
                testdb::view_key_for(q),
                ViewTarget::List {
                    query: q.clone(),
                    window: list_window(q, "id", &json!({ "data": shown })),
                },
            ),
        };
        CachedView {
            spec: spec.clone(),
            dep: ViewDependent {
                key,
                view: "v".into(),
                bind: bind.clone(),
                target,
            },
            shown,
        }
    }

    /// Runs `write` as the D1 origin does for a coordinator with view keys cached: the view
    /// rows the write can touch read before it, the write, and the rows read again; then
    /// checks that every cached view response whose answer changed is planned. Returns
    /// (changed, planned).
    fn check_view_write(
        db: &TestDb,
        cache: &mut [CachedView],
        write: &testdb::JoinWrite,
    ) -> Result<(usize, usize), TestCaseError> {
        let (id, body) = db.join_target(write);
        let table = write.table();
        let bind = &cache
            .first()
            .map(|c| c.dep.bind.clone())
            .unwrap_or_default();
        let read = bind.get(table).map(|column| ViewRead {
            view: "v".into(),
            column: column.clone(),
        });
        let rows_of = |read: &ViewRead, named: &[String]| {
            let mut params = vec![id.clone()];
            params.extend(named.iter().cloned());
            db.select_text(&read.sql(table, "id", named.len()), &params)
        };
        let named = read
            .as_ref()
            .map(|r| view_named_ids(r, "id", &id, body.as_ref()))
            .unwrap_or_default();
        let before_rows = read.as_ref().map(|r| rows_of(r, &named));
        let images = db.join_apply(write, &id);
        let changes: Vec<ViewChanges> = read
            .into_iter()
            .zip(before_rows)
            .map(|(r, before)| {
                let after = rows_of(&r, &named);
                ViewChanges::pair(r, &named, before, after)
            })
            .collect();
        let deps: Vec<ViewDependent> = cache.iter().map(|c| c.dep.clone()).collect();
        let plan = plan_write(&images, &[], &[], &deps, &changes, &[]);
        let mut changed = 0;
        for c in cache.iter_mut() {
            let now = view_shows(db, &c.spec);
            let planned = plan.reason_for(&c.dep.key).is_some();
            if now != c.shown {
                changed += 1;
                prop_assert!(
                    planned,
                    "missed {} after {:?} ({:?}): {} -> {}, changes {:?}",
                    c.dep.key,
                    write,
                    images,
                    c.shown,
                    now,
                    changes
                );
            }
            if planned {
                *c = fill_view(db, &c.spec, &c.dep.bind);
            }
        }
        Ok((changed, plan.entries.len()))
    }

    fn view_specs() -> impl Strategy<Value = Vec<ViewSpec>> {
        proptest::collection::vec(
            prop_oneof![
                1 => "u[abc]".prop_map(ViewSpec::Record),
                3 => testdb::view_query().prop_map(ViewSpec::List),
            ],
            1..10,
        )
    }

    fn seeded(rows: &[testdb::JoinWrite]) -> TestDb {
        let db = TestDb::new(&[]);
        for w in rows {
            let (id, _) = db.join_target(w);
            db.join_apply(w, &id);
        }
        db
    }

    /// Against the real database: every cached response of a join view whose answer a random
    /// write of either table changes is planned, with the view bound to both tables or to
    /// users only (orders' writes then stale every view key).
    #[test]
    fn view_planning_is_safe_against_sqlite() {
        let (changed, planned, cached) = (Cell::new(0), Cell::new(0), Cell::new(0));
        let strategy = (
            testdb::join_rows(),
            view_specs(),
            testdb::join_write(),
            prop::bool::weighted(0.8),
        );
        runner(400)
            .run(&strategy, |(rows, specs, write, orders_bound)| {
                let db = seeded(&rows);
                let bind = join_bind(orders_bound);
                let mut cache: Vec<CachedView> =
                    specs.iter().map(|s| fill_view(&db, s, &bind)).collect();
                let (c, p) = check_view_write(&db, &mut cache, &write)?;
                changed.set(changed.get() + c);
                planned.set(planned.get() + p);
                cached.set(cached.get() + cache.len());
                Ok(())
            })
            .unwrap();
        eprintln!(
            "view planner vs sqlite: {} view responses, {} planned, {} changed: precision {:.1}%",
            cached.get(),
            planned.get(),
            changed.get(),
            100.0 * changed.get() as f64 / planned.get().max(1) as f64,
        );
    }

    /// A random sequence of writes of both tables against one database and one cache of view
    /// responses, refilling what each plan stales: no unplanned response ever drifts.
    #[test]
    fn view_planning_is_safe_over_write_sequences() {
        let strategy = (
            testdb::join_rows(),
            view_specs(),
            proptest::collection::vec(testdb::join_write(), 1..12),
        );
        runner(150)
            .run(&strategy, |(rows, specs, writes)| {
                let db = seeded(&rows);
                let bind = join_bind(true);
                let mut cache: Vec<CachedView> =
                    specs.iter().map(|s| fill_view(&db, s, &bind)).collect();
                for write in &writes {
                    check_view_write(&db, &mut cache, write)?;
                }
                for c in &cache {
                    prop_assert_eq!(&view_shows(&db, &c.spec), &c.shown);
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn a_view_row_a_write_leaves_unknown_stales_every_view_key() {
        let read = ViewRead {
            view: "v".into(),
            column: "userId".into(),
        };
        let ann = row(json!({"id": "u1", "n": 1}));
        // An order moved away from u1 (to a user not named by the write): u1's after image
        // was not looked for.
        let moved = ViewChanges::pair(read.clone(), &[], vec![ann.clone()], vec![]);
        assert_eq!(moved.rows, None);
        // Named ids are looked for on both sides: a missing row there is no row.
        let named = ViewChanges::pair(read.clone(), &["u1".into()], vec![ann.clone()], vec![]);
        assert_eq!(
            named.rows,
            Some(vec![ViewRowChange {
                id: "u1".into(),
                before: Some(ann.clone()),
                after: None
            }])
        );
        assert_eq!(
            read.sql("orders", "id", 2),
            "SELECT * FROM \"v\" WHERE \"id\" IN (SELECT \"userId\" FROM \"orders\" WHERE \"id\" = ?1) OR \"id\" IN (?2, ?3)"
        );
        let order = |user: &str| row(json!({"id": "o1", "userId": user}));
        let write = WriteImages {
            table: "orders".into(),
            id: "o1".into(),
            id_column: "id".into(),
            before: Some(order("u1")),
            after: Some(order("u2")),
        };
        let page = ViewDependent {
            key: CacheKey::from_request("acme", "/v1/v", Some("limit=5")).unwrap(),
            view: "v".into(),
            bind: join_bind(true),
            target: ViewTarget::Record { id: "u9".into() },
        };
        assert_eq!(
            view_effect(&write, &page, std::slice::from_ref(&named)),
            ListEffect::Spared(SpareReason::OtherRecord)
        );
        // With the view's rows unknown (or not read at all, as explain does), a view row the
        // order feeds before or after the write is stale, any other spared.
        let record = |id: &str| ViewDependent {
            target: ViewTarget::Record { id: id.into() },
            ..page.clone()
        };
        for changes in [std::slice::from_ref(&moved), &[]] {
            for (id, effect) in [
                ("u1", ListEffect::Stale(StaleCause::Unknown)),
                ("u2", ListEffect::Stale(StaleCause::Unknown)),
                ("u9", ListEffect::Spared(SpareReason::OtherRecord)),
            ] {
                assert_eq!(view_effect(&write, &record(id), changes), effect, "{id}");
            }
        }
        // An image without the bound column may feed any view row.
        let unplaced = WriteImages {
            after: Some(row(json!({"id": "o1"}))),
            ..write.clone()
        };
        assert_eq!(
            view_effect(&unplaced, &record("u9"), &[]),
            ListEffect::Stale(StaleCause::Unknown)
        );
        let unbound = ViewDependent {
            bind: join_bind(false),
            ..page
        };
        assert_eq!(
            view_effect(&write, &unbound, std::slice::from_ref(&named)),
            ListEffect::Stale(StaleCause::Unknown)
        );
    }

    #[test]
    fn ordered_example_against_sqlite() {
        let r = |id: &str, a: &str| testdb::TestRow {
            id: id.into(),
            a: Some(a.into()),
            b: None,
            c: None,
        };
        let db = TestDb::new(&[r("1", "x"), r("2", "y"), r("3", "y")]);
        let q = ListQuery {
            filters: vec![],
            order: Some(Order {
                column: "a".into(),
                descending: false,
            }),
            limit: 2,
            offset: 0,
        };
        let mut cache = vec![fill(&db, &q)];
        // "z" sorts after the page's last row ("y", "2"): untouched, and rightly so.
        let (changed, planned) =
            check_write(&db, &mut cache, &testdb::TestWrite::Upsert(r("0", "z"))).unwrap();
        assert_eq!((changed, planned), (0, 0));
        let (changed, planned) =
            check_write(&db, &mut cache, &testdb::TestWrite::Upsert(r("4", "a"))).unwrap();
        assert_eq!((changed, planned), (1, 1));
    }
}
