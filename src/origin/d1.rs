//! The D1 REST origin: list, get, create, replace, patch and delete over a D1 database.
//! Identifiers are validated against the schema and quoted; every value is a bound parameter.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{Map, Value};
use worker::wasm_bindgen::JsValue;
use worker::D1Database;

use edgecache_core::fill::{list_body, record_body};
use edgecache_core::group_read::{writes_stay_in_their_row, BeforeFrom, GroupRead};
use edgecache_core::id_text;
use edgecache_core::key::CacheKey;
use edgecache_core::origin::{OriginError, OriginRead, OriginWrite, ReadTarget};
use edgecache_core::planner::{view_named_ids, ViewChanges, ViewRead};
use edgecache_core::protocol::{OriginHeader, WriteOp};

use super::Origin;
use edgecache_core::query::{list_sql, quote_ident, SqlValue};
use edgecache_core::schema::{
    is_internal, Column, Relation, RelationKind, Schema, Scope, ViewDecls,
};
use edgecache_core::Row;

/// Tables and views of the database with their columns, as read from its catalogue.
#[derive(Clone)]
struct Catalogue {
    tables: Vec<(String, Vec<Column>)>,
    views: Vec<(String, Vec<Column>)>,
    /// Whether a write changes only the row it names ([`writes_stay_in_their_row`]).
    stay_in_their_row: bool,
}

/// Schemas kept per isolate (one per distinct set of tenant views).
const MAX_CACHED_SCHEMAS: usize = 64;

/// A schema built for one scope and one set of tenant views.
struct CachedSchema {
    scope: Scope,
    views: ViewDecls,
    schema: Rc<Schema>,
}

thread_local! {
    // Read once per isolate: the schema changes only with a migration, which redeploys.
    static CATALOGUE: RefCell<Option<Catalogue>> = const { RefCell::new(None) };
    // Each built schema under its scope and set of views, found by comparing them: every
    // request looks its tenant's schema up, and a key made from the views (they were
    // serialised to JSON) cost a hit more than the comparison of a few small maps.
    static SCHEMAS: RefCell<Vec<CachedSchema>> = const { RefCell::new(Vec::new()) };
}

/// A D1 database speaking the REST shape of DESIGN.md.
pub struct D1Origin {
    db: D1Database,
}

impl D1Origin {
    /// Wraps the `DB` binding.
    pub fn new(db: D1Database) -> Self {
        D1Origin { db }
    }

    /// The schema with a tenant's views, limited to `scope`, if this isolate has built it
    /// already (no I/O, no binding lookup: the read path asks this first).
    pub fn cached_schema(views: &ViewDecls, scope: Scope) -> Option<Rc<Schema>> {
        SCHEMAS.with(|s| {
            s.borrow()
                .iter()
                .find(|c| c.scope == scope && c.views == *views)
                .map(|c| c.schema.clone())
        })
    }

    /// The schema with a tenant's views, limited to `scope`; the catalogue is read on first use
    /// in this isolate, and each set of views is built once per scope.
    pub async fn schema(&self, views: &ViewDecls, scope: Scope) -> Result<Rc<Schema>, OriginError> {
        if let Some(schema) = Self::cached_schema(views, scope) {
            return Ok(schema);
        }
        let catalogue = self.catalogue().await?;
        let schema =
            Rc::new(Schema::from_catalogue(catalogue.tables, catalogue.views, views).scoped(scope));
        SCHEMAS.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() >= MAX_CACHED_SCHEMAS {
                s.clear();
            }
            s.push(CachedSchema {
                scope,
                views: views.clone(),
                schema: schema.clone(),
            });
        });
        Ok(schema)
    }

    async fn catalogue(&self) -> Result<Catalogue, OriginError> {
        if let Some(catalogue) = CATALOGUE.with(|s| s.borrow().clone()) {
            return Ok(catalogue);
        }
        let catalogue = self
            .query(
                "SELECT name, type, sql FROM sqlite_master \
                 WHERE type IN ('table', 'view', 'trigger') ORDER BY name",
                &[],
            )
            .await?;
        let stay_in_their_row = writes_stay_in_their_row(catalogue.iter().map(|entry| {
            let text = |field| entry.get(field).and_then(Value::as_str).unwrap_or_default();
            (text("type"), text("sql"))
        }));
        let mut tables = Vec::new();
        let mut views = Vec::new();
        for entry in catalogue {
            let (Some(name), Some(kind)) = (str_field(&entry, "name"), str_field(&entry, "type"))
            else {
                continue;
            };
            if is_internal(&name) || kind == "trigger" {
                continue;
            }
            let info = self
                .query(&format!("PRAGMA table_info({})", quote_ident(&name)), &[])
                .await?;
            let columns = info
                .iter()
                .filter_map(|c| {
                    Some(Column {
                        name: str_field(c, "name")?,
                        decl_type: str_field(c, "type").unwrap_or_default(),
                        primary_key: c.get("pk").and_then(Value::as_i64).unwrap_or(0) > 0,
                        not_null: c.get("notnull").and_then(Value::as_i64).unwrap_or(0) > 0,
                        has_default: !c.get("dflt_value").is_none_or(Value::is_null),
                    })
                })
                .collect();
            if kind == "view" {
                views.push((name, columns));
            } else {
                tables.push((name, columns));
            }
        }
        let catalogue = Catalogue {
            tables,
            views,
            stay_in_their_row,
        };
        CATALOGUE.with(|s| *s.borrow_mut() = Some(catalogue.clone()));
        Ok(catalogue)
    }

    /// Reads a list or a record as its JSON body; a missing record is `NotFound`.
    pub async fn read_json(
        &self,
        relation: &Relation,
        target: &ReadTarget,
    ) -> Result<Value, OriginError> {
        match target {
            ReadTarget::List(q) => {
                let (sql, params) = list_sql(&relation.name, &relation.id_column, q);
                Ok(list_body(self.query(&sql, &params).await?, q))
            }
            ReadTarget::Record(id) => Ok(record_body(&self.existing(relation, id).await?)),
            // Only HTTP origins read opaque lists.
            ReadTarget::Opaque => Err(OriginError::UnknownRelation(relation.name.clone())),
        }
    }

    /// Whether a write of this database changes only the row it names (from the catalogue,
    /// read once per isolate).
    async fn writes_stay_in_their_row(&self) -> Result<bool, OriginError> {
        match CATALOGUE.with(|c| c.borrow().as_ref().map(|c| c.stay_in_their_row)) {
            Some(stay) => Ok(stay),
            None => Ok(self.catalogue().await?.stay_in_their_row),
        }
    }

    /// The current image of one record.
    pub async fn get(&self, relation: &Relation, id: &str) -> Result<Option<Row>, OriginError> {
        let s = record_select(relation, id);
        Ok(self.query(&s.sql, &s.params).await?.into_iter().next())
    }

    /// The current image of a record that must exist (`NotFound` otherwise).
    async fn existing(&self, relation: &Relation, id: &str) -> Result<Row, OriginError> {
        self.get(relation, id)
            .await?
            .ok_or_else(|| not_found(relation, id))
    }

    /// Carries out writes, in order, as one D1 batch (one transaction, one round trip): first
    /// the group read of the records' images before the writes ([`GroupRead`]), then for each
    /// write (its record read in place if the group read cannot stand for it) the write,
    /// returning the image after it. A refused
    /// write (a constraint) rolls the whole batch back, so then each runs alone and only it
    /// fails. Answers one outcome per write, in order. Each write also reads the rows of the
    /// views in `views` it can touch, before and after it ([`view_reads`]).
    pub async fn write_group(
        &self,
        relation: &Relation,
        ops: &[&WriteOp],
        views: &[ViewRead],
    ) -> Vec<Result<OriginWrite, OriginError>> {
        let stay_in_their_row = match self.writes_stay_in_their_row().await {
            Ok(stay) => stay,
            Err(e) => return ops.iter().map(|_| Err(e.clone())).collect(),
        };
        let prepared: Vec<Result<PreparedWrite, OriginError>> = ops
            .iter()
            .map(|op| prepare_write(relation, op, views))
            .collect();
        let ready: Vec<&PreparedWrite> = prepared.iter().filter_map(|p| p.as_ref().ok()).collect();
        let mut outcomes = match self.run_writes(relation, &ready, stay_in_their_row).await {
            Ok(outcomes) => outcomes,
            Err(OriginError::Constraint(_)) if ready.len() > 1 => {
                let mut alone = Vec::with_capacity(ready.len());
                for write in &ready {
                    alone.push(
                        match self.run_writes(relation, &[write], stay_in_their_row).await {
                            Ok(mut one) => one.remove(0),
                            Err(e) => Err(conflict(e, relation, &write.id)),
                        },
                    );
                }
                alone
            }
            Err(e) => ready
                .iter()
                .map(|w| Err(conflict(e.clone(), relation, &w.id)))
                .collect(),
        }
        .into_iter();
        prepared
            .into_iter()
            .map(|p| match p {
                Ok(_) => outcomes.next().unwrap_or_else(|| {
                    Err(OriginError::Unavailable("the batch lost a write".into()))
                }),
                Err(e) => Err(e),
            })
            .collect()
    }

    /// Runs prepared writes as one batch; `Err` if the database refused or failed the batch.
    /// `stay_in_their_row`: whether a write changes only the row it names.
    async fn run_writes(
        &self,
        relation: &Relation,
        writes: &[&PreparedWrite],
        stay_in_their_row: bool,
    ) -> Result<Vec<Result<OriginWrite, OriginError>>, OriginError> {
        let ids: Vec<Option<&str>> = writes.iter().map(|w| w.names_record()).collect();
        let group_read = GroupRead::plan(relation, &ids, stay_in_their_row);
        let prepare = |sql: &str, params: &[SqlValue]| {
            let bound: Vec<JsValue> = params.iter().map(js_value).collect();
            self.db.prepare(sql).bind(&bound).map_err(unavailable)
        };
        let mut statements = Vec::with_capacity(group_read.statements.len() + writes.len());
        for (sql, params) in &group_read.statements {
            statements.push(prepare(sql, params)?);
        }
        for (w, source) in writes.iter().zip(&group_read.sources) {
            let before = (*source == BeforeFrom::InPlace).then(|| record_select(relation, &w.id));
            // The view reads run on both sides of the write, in its transaction.
            let views = w.views.iter().map(|v| &v.statement);
            for s in views.clone().chain(&before).chain([&w.write]).chain(views) {
                statements.push(prepare(&s.sql, &s.params)?);
            }
        }
        let results = self.db.batch(statements).await.map_err(classify)?;
        let mut rows = results.iter().map(|r| {
            r.results::<Value>().map_err(unavailable).map(|rows| {
                rows.into_iter()
                    .filter_map(|r| match r {
                        Value::Object(m) => Some(m),
                        _ => None,
                    })
                    .collect::<Vec<Row>>()
            })
        });
        let mut next = || rows.next().unwrap_or(Ok(Vec::new()));
        let group_rows = (0..group_read.statements.len())
            .map(|_| next())
            .collect::<Result<Vec<_>, _>>()?;
        let mut images = group_read.images(group_rows.into_iter().flatten().collect())?;
        let mut outcomes = Vec::with_capacity(writes.len());
        for (w, source) in writes.iter().zip(&group_read.sources) {
            let views_before = (0..w.views.len())
                .map(|_| next())
                .collect::<Result<Vec<_>, _>>()?;
            let before = match source {
                BeforeFrom::Group(slot) => images[*slot].take(),
                BeforeFrom::InPlace => next()?.into_iter().next(),
            };
            let written = next()?.into_iter().next();
            let views_after = (0..w.views.len())
                .map(|_| next())
                .collect::<Result<Vec<_>, _>>()?;
            let views = view_changes(&w.views, views_before, views_after);
            outcomes.push(w.finish(relation, before, written, views));
        }
        Ok(outcomes)
    }

    async fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, OriginError> {
        let bound: Vec<JsValue> = params.iter().map(js_value).collect();
        let statement = self.db.prepare(sql).bind(&bound).map_err(unavailable)?;
        let result = statement.all().await.map_err(classify)?;
        let rows: Vec<Value> = result.results().map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .filter_map(|r| match r {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .collect())
    }
}

/// A SQL statement and its bound values.
struct Statement {
    sql: String,
    params: Vec<SqlValue>,
}

/// Which write a [`PreparedWrite`] is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    Create,
    Replace,
    Patch,
    Delete,
}

/// A read of the view rows a write can touch ([`ViewRead::sql`]), run before and after it.
struct ViewStatement {
    read: ViewRead,
    /// The view ids the write names (bound after the record's id).
    named: Vec<String>,
    statement: Statement,
}

/// The view reads of a write of the record `id` of `relation` whose body is `row`: one per
/// view bound to the table.
fn view_reads(
    relation: &Relation,
    id: &str,
    row: Option<&Row>,
    views: &[ViewRead],
) -> Vec<ViewStatement> {
    views
        .iter()
        .map(|read| {
            let named = view_named_ids(read, &relation.id_column, id, row);
            let mut params = vec![SqlValue::Text(id.to_string())];
            params.extend(named.iter().cloned().map(SqlValue::Text));
            ViewStatement {
                statement: Statement {
                    sql: read.sql(&relation.name, &relation.id_column, named.len()),
                    params,
                },
                read: read.clone(),
                named,
            }
        })
        .collect()
}

/// The view rows each read found before and after the write, paired.
fn view_changes(
    reads: &[ViewStatement],
    before: Vec<Vec<Row>>,
    after: Vec<Vec<Row>>,
) -> Vec<ViewChanges> {
    reads
        .iter()
        .zip(before.into_iter().zip(after))
        .map(|(v, (before, after))| ViewChanges::pair(v.read.clone(), &v.named, before, after))
        .collect()
}

/// One write as the statements a batch runs for it.
struct PreparedWrite {
    id: String,
    kind: WriteKind,
    /// The view rows it can touch, read before and after it.
    views: Vec<ViewStatement>,
    /// The write, `RETURNING *` (a plain `SELECT *` for a PATCH that changes nothing).
    write: Statement,
}

impl PreparedWrite {
    /// The record it names before it runs; `None` for a create without an id, whose record
    /// the database chooses.
    fn names_record(&self) -> Option<&str> {
        match (self.kind, self.id.is_empty()) {
            (WriteKind::Create, true) => None,
            _ => Some(&self.id),
        }
    }

    /// The outcome from the rows the two statements returned.
    fn finish(
        &self,
        relation: &Relation,
        before: Option<Row>,
        written: Option<Row>,
        views: Vec<ViewChanges>,
    ) -> Result<OriginWrite, OriginError> {
        let (status, after) = match self.kind {
            WriteKind::Create => (
                201,
                Some(
                    written
                        .ok_or_else(|| OriginError::Unavailable("INSERT returned no row".into()))?,
                ),
            ),
            WriteKind::Replace => {
                let status = if before.is_some() { 200 } else { 201 };
                // DO NOTHING on an existing row returns nothing: the record is as the body says.
                let after = written.or_else(|| before.clone());
                (
                    status,
                    Some(after.ok_or_else(|| not_found(relation, &self.id))?),
                )
            }
            WriteKind::Patch => (
                200,
                Some(written.ok_or_else(|| not_found(relation, &self.id))?),
            ),
            WriteKind::Delete => {
                written.ok_or_else(|| not_found(relation, &self.id))?;
                (204, None)
            }
        };
        let body = after
            .as_ref()
            .map_or(Value::Null, |r| serde_json::json!({ "data": r }));
        Ok(OriginWrite {
            changed: true,
            status,
            id: self.id.clone(),
            before,
            after,
            views,
            body,
        })
    }
}

/// The statements of one write: identifiers checked against the schema and quoted, every value
/// bound. Creates name their id in the row; the others in the path.
fn prepare_write(
    relation: &Relation,
    op: &WriteOp,
    views: &[ViewRead],
) -> Result<PreparedWrite, OriginError> {
    writable(relation)?;
    let table = quote_ident(&relation.name);
    let id_column = quote_ident(&relation.id_column);
    let (kind, id, write) = match op {
        WriteOp::Create { row } => {
            let id = row
                .get(&relation.id_column)
                .and_then(id_text)
                .unwrap_or_default();
            let columns: Vec<&String> = row.keys().collect();
            let sql = format!(
                "INSERT INTO {table} ({}) VALUES ({}) RETURNING *",
                column_list(&columns),
                placeholders(1, columns.len()),
            );
            let params = row.values().map(sql_value).collect();
            (WriteKind::Create, id, Statement { sql, params })
        }
        WriteOp::Replace { id, row } => {
            // Columns the body leaves out become NULL when nullable; NOT NULL columns with a
            // default keep their value (or get the default on create).
            let mut full = row.clone();
            full.insert(relation.id_column.clone(), Value::String(id.to_string()));
            let columns: Vec<&String> = full.keys().collect();
            let mut assignments: Vec<String> = columns
                .iter()
                .filter(|c| **c != &relation.id_column)
                .map(|c| format!("{0} = excluded.{0}", quote_ident(c)))
                .collect();
            assignments.extend(
                relation
                    .columns
                    .iter()
                    .filter(|c| !c.primary_key && !c.not_null && !full.contains_key(&c.name))
                    .map(|c| format!("{} = NULL", quote_ident(&c.name))),
            );
            let conflict_action = if assignments.is_empty() {
                "DO NOTHING".to_string()
            } else {
                format!("DO UPDATE SET {}", assignments.join(", "))
            };
            let sql = format!(
                "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT({id_column}) {conflict_action} \
                 RETURNING *",
                column_list(&columns),
                placeholders(1, columns.len()),
            );
            let params = full.values().map(sql_value).collect();
            (WriteKind::Replace, id.clone(), Statement { sql, params })
        }
        WriteOp::Patch { id, row } => {
            let changes: Vec<(&String, &Value)> = row
                .iter()
                .filter(|(c, _)| **c != relation.id_column)
                .collect();
            let write = if changes.is_empty() {
                record_select(relation, id)
            } else {
                let sets = changes
                    .iter()
                    .enumerate()
                    .map(|(i, (c, _))| format!("{} = ?{}", quote_ident(c), i + 1))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!(
                    "UPDATE {table} SET {sets} WHERE {id_column} = ?{} RETURNING *",
                    changes.len() + 1
                );
                let mut params: Vec<SqlValue> = changes.iter().map(|(_, v)| sql_value(v)).collect();
                params.push(SqlValue::Text(id.to_string()));
                Statement { sql, params }
            };
            (WriteKind::Patch, id.clone(), write)
        }
        WriteOp::Delete { id } => {
            let sql = format!("DELETE FROM {table} WHERE {id_column} = ?1 RETURNING *");
            let params = vec![SqlValue::Text(id.to_string())];
            (WriteKind::Delete, id.clone(), Statement { sql, params })
        }
        WriteOp::Forward { .. } => {
            return Err(OriginError::BadBody(
                "a raw write reached the D1 origin".into(),
            ))
        }
    };
    let row = match op {
        WriteOp::Create { row } | WriteOp::Replace { row, .. } | WriteOp::Patch { row, .. } => {
            Some(row)
        }
        WriteOp::Delete { .. } | WriteOp::Forward { .. } => None,
    };
    Ok(PreparedWrite {
        views: view_reads(relation, &id, row, views),
        id,
        kind,
        write,
    })
}

/// `SELECT *` of one record.
fn record_select(relation: &Relation, id: &str) -> Statement {
    Statement {
        sql: format!(
            "SELECT * FROM {} WHERE {} = ?1",
            quote_ident(&relation.name),
            quote_ident(&relation.id_column)
        ),
        params: vec![SqlValue::Text(id.to_string())],
    }
}

fn writable(relation: &Relation) -> Result<(), OriginError> {
    match relation.kind {
        RelationKind::Table => Ok(()),
        RelationKind::View => Err(OriginError::ReadOnlyView(relation.name.clone())),
    }
}

/// `"a", "b", "c"` for an INSERT's column list.
fn column_list(columns: &[&String]) -> String {
    columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn not_found(relation: &Relation, id: &str) -> OriginError {
    OriginError::NotFound {
        relation: relation.name.clone(),
        id: id.to_string(),
    }
}

fn str_field(row: &Map<String, Value>, name: &str) -> Option<String> {
    row.get(name).and_then(Value::as_str).map(str::to_string)
}

/// JSON scalar to a bound SQL value. Booleans are stored as 0/1, as SQLite does.
fn sql_value(v: &Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        // Rejected by body validation before reaching here; stored as text if it ever does.
        other => SqlValue::Text(other.to_string()),
    }
}

fn js_value(v: &SqlValue) -> JsValue {
    match v {
        SqlValue::Null => JsValue::NULL,
        // D1 rejects BigInt, so integers travel as numbers (exact up to 2^53).
        SqlValue::Integer(i) => JsValue::from_f64(*i as f64),
        SqlValue::Real(f) => JsValue::from_f64(*f),
        SqlValue::Text(s) => JsValue::from_str(s),
    }
}

fn unavailable(e: worker::Error) -> OriginError {
    OriginError::Unavailable(e.to_string())
}

/// Constraint failures are the client's doing (400/409); anything else is the origin's.
fn classify(e: worker::Error) -> OriginError {
    let message = e.to_string();
    if message.contains("constraint failed") || message.contains("SQLITE_CONSTRAINT") {
        OriginError::Constraint(clean_d1_message(&message))
    } else {
        OriginError::Unavailable(message)
    }
}

fn conflict(e: OriginError, relation: &Relation, id: &str) -> OriginError {
    match e {
        OriginError::Constraint(m)
            if m.contains("UNIQUE") && m.contains(&format!(".{}", relation.id_column)) =>
        {
            OriginError::Conflict {
                relation: relation.name.clone(),
                id: id.to_string(),
            }
        }
        other => other,
    }
}

fn clean_d1_message(message: &str) -> String {
    let m = message.trim_start_matches("D1_ERROR: ");
    m.split(": SQLITE_").next().unwrap_or(m).to_string()
}

impl Origin for D1Origin {
    async fn read(
        &self,
        relation: &Relation,
        target: &ReadTarget,
        _key: &CacheKey,
        _forward: &[OriginHeader],
    ) -> Result<OriginRead, OriginError> {
        let json = self.read_json(relation, target).await?;
        let body =
            serde_json::to_vec(&json).map_err(|e| OriginError::Unavailable(e.to_string()))?;
        Ok(OriginRead {
            status: 200,
            body,
            json,
            content_type: "application/json".into(),
            not_storable: None,
            cache_control: None,
            vary: None,
        })
    }

    /// Reads the record's images around the write, for the planner (a batch of one).
    async fn write(&self, relation: &Relation, op: &WriteOp) -> Result<OriginWrite, OriginError> {
        self.write_group(relation, &[op], &[])
            .await
            .pop()
            .unwrap_or_else(|| Err(OriginError::Unavailable("the batch lost a write".into())))
    }
}
