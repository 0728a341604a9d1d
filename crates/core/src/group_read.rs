//! The before images of a group of writes in one read.
//!
//! A group of writes to one D1 table runs as one batch, and each write needs its record's image
//! before it. Reading it with a `SELECT` of its own right before each write costs the database a
//! statement per write; the group read asks for every record of the group in one statement
//! (per [`MAX_BOUND`] ids) at the head of the batch instead. That is the same image only while no
//! earlier write of the group can have changed the record, so a write keeps its own `SELECT`
//! (in place, right before it) when an earlier write of the group may have touched its record:
//! one that names an id SQLite may find the same record by ([`alias`]), one whose id the
//! database chooses, or any earlier write at all when a write of the table can change other rows
//! (a trigger, a cascading foreign key, `ON CONFLICT REPLACE`: [`writes_stay_in_their_row`]).

use std::collections::HashSet;

use crate::origin::OriginError;
use crate::query::{quote_ident, SqlValue, MAX_BOUND};
use crate::schema::Relation;
use crate::Row;

/// The column of the group read's rows that says which asked-for id found the row (stripped
/// from the image). A table with a column of this name reads each image in place.
const SLOT_COLUMN: &str = "_edgecache_slot";

/// Where a write of a group finds its record's image before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BeforeFrom {
    /// The group read, made before the group's first write: the image of its `n`th id.
    Group(usize),
    /// A `SELECT` of its own, right before it in the batch: an earlier write of the group may
    /// have changed its record.
    InPlace,
}

/// The group read of a batch: its statements, run first, and where each write's image comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupRead {
    /// SQL and bound ids, each statement at most [`MAX_BOUND`] ids.
    pub statements: Vec<(String, Vec<SqlValue>)>,
    /// One per write, in the group's order.
    pub sources: Vec<BeforeFrom>,
    slots: usize,
}

impl GroupRead {
    /// Plans the group read of writes to `relation` that name, in order, the records `ids`
    /// (`None` for a write whose record the database chooses, a create without an id).
    /// `stay_in_their_row`: whether a write of the table changes only its own row
    /// ([`writes_stay_in_their_row`]).
    pub fn plan(relation: &Relation, ids: &[Option<&str>], stay_in_their_row: bool) -> GroupRead {
        let tagged = !relation.has_column(SLOT_COLUMN);
        let mut touched = HashSet::new();
        // An earlier write of the group may have changed any record.
        let mut touched_any = false;
        let mut asked: Vec<&str> = Vec::new();
        let mut sources = Vec::with_capacity(ids.len());
        for id in ids {
            let source = match id {
                Some(id) if tagged && !touched_any && touched.insert(alias(id)) => {
                    asked.push(id);
                    BeforeFrom::Group(asked.len() - 1)
                }
                _ => BeforeFrom::InPlace,
            };
            sources.push(source);
            touched_any |= id.is_none() || !stay_in_their_row;
        }
        let table = quote_ident(&relation.name);
        let id_column = quote_ident(&relation.id_column);
        let statements = asked
            .chunks(MAX_BOUND)
            .enumerate()
            .map(|(chunk, ids)| {
                let values = (0..ids.len())
                    .map(|i| format!("({}, ?{})", chunk * MAX_BOUND + i, i + 1))
                    .collect::<Vec<_>>()
                    .join(", ");
                // The record's column on the left, so that its affinity and collation decide
                // the comparison, exactly as in `WHERE id = ?`.
                let sql = format!(
                    "WITH edgecache_ids(slot, id) AS (VALUES {values}) \
                     SELECT edgecache_ids.slot AS \"{SLOT_COLUMN}\", {table}.* \
                     FROM edgecache_ids JOIN {table} ON {table}.{id_column} = edgecache_ids.id"
                );
                let params = ids
                    .iter()
                    .map(|id| SqlValue::Text(id.to_string()))
                    .collect();
                (sql, params)
            })
            .collect();
        GroupRead {
            statements,
            sources,
            slots: asked.len(),
        }
    }

    /// Each asked-for id's image, by slot, from the rows [`GroupRead::statements`] answered
    /// (all statements' rows together). The first row of a slot is its image, as with a
    /// `SELECT` of one record.
    pub fn images(&self, rows: Vec<Row>) -> Result<Vec<Option<Row>>, OriginError> {
        let mut images = vec![None; self.slots];
        for mut row in rows {
            let slot = row
                .remove(SLOT_COLUMN)
                .and_then(|s| s.as_u64())
                .and_then(|s| usize::try_from(s).ok())
                .filter(|s| *s < self.slots)
                .ok_or_else(|| {
                    OriginError::Unavailable("the group read answered a row of no slot".into())
                })?;
            images[slot].get_or_insert(row);
        }
        Ok(images)
    }
}

/// A key that is equal for any two ids SQLite may find the same record by: spaces trimmed (an
/// `RTRIM` id, numeric text), case folded (a `NOCASE` id), a number in one form (an `INTEGER` or
/// `NUMERIC` id compares `"7"`, `"07"` and `"7.0"` as 7). It may merge ids of different records
/// (which costs a write an in-place read), never parts one record's.
fn alias(id: &str) -> String {
    let folded = id.trim().to_lowercase();
    match folded.parse::<f64>() {
        // `-0` and `0` are one record.
        Ok(n) => format!("#{}", if n == 0.0 { 0.0 } else { n }),
        Err(_) => folded,
    }
}

/// Whether every write of the database's tables changes only the row it names, judged from its
/// catalogue (`sqlite_master`'s `type` and `sql` of each entry). Not so with a trigger (its
/// body may write any row), a foreign key action that writes (`CASCADE`, `SET NULL`,
/// `SET DEFAULT`) or `ON CONFLICT REPLACE` (which deletes the row a write collides with). Read
/// word by word and over-cautious: any `CASCADE` or `REPLACE`, or `SET` in a table that has
/// `REFERENCES`, says no.
pub fn writes_stay_in_their_row<'a>(
    catalogue: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> bool {
    !catalogue.into_iter().any(|(kind, sql)| {
        let upper = sql.to_uppercase();
        let words: HashSet<&str> = upper
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .collect();
        kind == "trigger"
            || words.contains("CASCADE")
            || words.contains("REPLACE")
            || (words.contains("REFERENCES") && words.contains("SET"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Column, RelationKind};
    use proptest::prelude::*;
    use rusqlite::types::{Value as DbValue, ValueRef};
    use rusqlite::{params_from_iter, Connection};
    use serde_json::{json, Value};

    /// How a test table's id compares (each a way SQLite finds one record by different texts),
    /// and one whose writes reach other rows.
    const TABLES: [&str; 4] = [
        "CREATE TABLE x (id TEXT PRIMARY KEY, v TEXT)",
        "CREATE TABLE x (id TEXT PRIMARY KEY COLLATE NOCASE, v TEXT)",
        "CREATE TABLE x (id INTEGER PRIMARY KEY, v TEXT)",
        "CREATE TABLE x (id TEXT PRIMARY KEY, v TEXT);
         CREATE TRIGGER x_touch AFTER UPDATE ON x BEGIN
           UPDATE x SET v = v || '!' WHERE id <> NEW.id AND length(v) < 6;
         END",
    ];

    /// Ids that are one record under some of [`TABLES`]' comparisons.
    const IDS: [&str; 8] = ["a", "A", "b", "1", "01", " 1", "2", "3"];

    #[derive(Clone, Debug)]
    enum Write {
        Upsert(usize, String),
        Patch(usize, String),
        Delete(usize),
        /// An insert whose id the database chooses (the `INTEGER` table's next rowid).
        CreateAuto(String),
    }

    impl Write {
        fn id(&self) -> Option<&'static str> {
            match self {
                Write::Upsert(i, _) | Write::Patch(i, _) | Write::Delete(i) => Some(IDS[*i]),
                Write::CreateAuto(_) => None,
            }
        }

        /// Runs it; a refused write (an id the `INTEGER` table cannot hold) changes nothing,
        /// the same on both sides of the comparison.
        fn run(&self, db: &Connection) {
            let _ = match self {
                Write::Upsert(_, v) => db.execute(
                    "INSERT INTO x (id, v) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET v = excluded.v",
                    (self.id(), v),
                ),
                Write::Patch(_, v) => db.execute("UPDATE x SET v = ?2 WHERE id = ?1", (self.id(), v)),
                Write::Delete(_) => db.execute("DELETE FROM x WHERE id = ?1", [self.id()]),
                Write::CreateAuto(v) => db.execute("INSERT INTO x (v) VALUES (?1)", [v]),
            };
        }
    }

    fn write() -> impl Strategy<Value = Write> {
        let id = 0..IDS.len();
        prop_oneof![
            (id.clone(), "[pq]").prop_map(|(i, v)| Write::Upsert(i, v)),
            (id.clone(), "[pq]").prop_map(|(i, v)| Write::Patch(i, v)),
            id.prop_map(Write::Delete),
            "[pq]".prop_map(Write::CreateAuto),
        ]
    }

    fn relation() -> Relation {
        let column = |name: &str, primary_key| Column {
            name: name.into(),
            decl_type: String::new(),
            primary_key,
            not_null: false,
            has_default: false,
        };
        Relation {
            name: "x".into(),
            kind: RelationKind::Table,
            columns: vec![column("id", true), column("v", false)],
            id_column: "id".into(),
            tables: vec!["x".into()],
            bind: Default::default(),
        }
    }

    fn to_json(v: ValueRef<'_>) -> Value {
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => json!(i),
            ValueRef::Real(f) => json!(f),
            ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
            ValueRef::Blob(b) => json!(b),
        }
    }

    fn select(db: &Connection, sql: &str, params: Vec<DbValue>) -> Vec<Row> {
        let mut stmt = db.prepare(sql).unwrap();
        let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let mut rows = stmt.query(params_from_iter(params)).unwrap();
        let mut out = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            let values = (0..names.len()).map(|i| to_json(row.get_ref(i).unwrap()));
            out.push(names.iter().cloned().zip(values).collect());
        }
        out
    }

    /// The record's image as a write's own `SELECT` reads it (how every write read it before
    /// group reads, and how an in-place one still does).
    fn own_select(db: &Connection, id: Option<&str>) -> Option<Row> {
        let id = DbValue::Text(id.unwrap_or_default().to_string());
        select(db, "SELECT * FROM x WHERE id = ?1", vec![id])
            .into_iter()
            .next()
    }

    fn database(table: &str, rows: &[(usize, String)]) -> Connection {
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch(table).unwrap();
        for (i, v) in rows {
            Write::Upsert(*i, v.clone()).run(&db);
        }
        db
    }

    proptest! {
        /// Every write of a random group, on each kind of table, gets the before image it got
        /// when each write read its own: the group read where it may, in place after an earlier
        /// write of the group that may have touched its record.
        #[test]
        fn group_read_images_are_each_writes_own(
            table in 0..TABLES.len(),
            rows in proptest::collection::vec((0..IDS.len(), "[mn]"), 0..6),
            group in proptest::collection::vec(write(), 1..12),
        ) {
            let alone = database(TABLES[table], &rows);
            let grouped = database(TABLES[table], &rows);
            let catalogue = select(&grouped, "SELECT type, sql FROM sqlite_master", Vec::new());
            let stays = writes_stay_in_their_row(catalogue.iter().map(|e| {
                (e["type"].as_str().unwrap(), e["sql"].as_str().unwrap_or(""))
            }));
            prop_assert_eq!(stays, table != 3);

            let expected: Vec<Option<Row>> = group
                .iter()
                .map(|w| {
                    let before = own_select(&alone, w.id());
                    w.run(&alone);
                    before
                })
                .collect();

            let ids: Vec<Option<&str>> = group.iter().map(Write::id).collect();
            let read = GroupRead::plan(&relation(), &ids, stays);
            let rows = read
                .statements
                .iter()
                .flat_map(|(sql, params)| {
                    let params = params
                        .iter()
                        .map(|p| match p {
                            SqlValue::Text(s) => DbValue::Text(s.clone()),
                            other => panic!("ids are bound as text, not {other:?}"),
                        })
                        .collect();
                    select(&grouped, sql, params)
                })
                .collect();
            let mut images = read.images(rows).unwrap();
            let got: Vec<Option<Row>> = group
                .iter()
                .zip(&read.sources)
                .map(|(w, source)| {
                    let before = match source {
                        BeforeFrom::Group(slot) => images[*slot].take(),
                        BeforeFrom::InPlace => own_select(&grouped, w.id()),
                    };
                    w.run(&grouped);
                    before
                })
                .collect();
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn a_group_of_distinct_ids_is_one_read_per_chunk_and_repeats_read_in_place() {
        let names: Vec<String> = (0..MAX_BOUND + 5).map(|i| format!("r{i}")).collect();
        let mut ids: Vec<Option<&str>> = names.iter().map(|n| Some(n.as_str())).collect();
        ids.push(Some("R0"));
        let read = GroupRead::plan(&relation(), &ids, true);
        assert_eq!(read.statements.len(), 2);
        assert_eq!(read.statements[0].1.len(), MAX_BOUND);
        assert_eq!(read.statements[1].1.len(), 5);
        assert!(read.statements[1].0.contains(&format!("({MAX_BOUND}, ?1)")));
        assert_eq!(
            read.sources[MAX_BOUND + 4],
            BeforeFrom::Group(MAX_BOUND + 4)
        );
        assert_eq!(read.sources[MAX_BOUND + 5], BeforeFrom::InPlace);
    }

    #[test]
    fn the_group_read_looks_records_up_by_their_key() {
        let db = database(TABLES[0], &[(0, "m".into())]);
        let read = GroupRead::plan(&relation(), &[Some("a"), Some("b")], true);
        let plan = select(
            &db,
            &format!("EXPLAIN QUERY PLAN {}", read.statements[0].0),
            vec![DbValue::Text("a".into()), DbValue::Text("b".into())],
        );
        let steps: Vec<&str> = plan.iter().filter_map(|s| s["detail"].as_str()).collect();
        assert!(
            steps.iter().any(|s| s.contains("SEARCH x USING INDEX")),
            "{steps:?}"
        );
    }

    #[test]
    fn writes_that_reach_other_rows_are_seen_in_the_catalogue() {
        let table = |sql| writes_stay_in_their_row([("table", sql)]);
        assert!(table(
            "CREATE TABLE orders (id TEXT PRIMARY KEY, userId TEXT REFERENCES users(id))"
        ));
        assert!(!table(
            "CREATE TABLE o (u TEXT REFERENCES users(id) ON DELETE CASCADE)"
        ));
        assert!(!table(
            "CREATE TABLE o (u TEXT REFERENCES users(id)\nON DELETE SET\nNULL)"
        ));
        assert!(!table("CREATE TABLE o (e TEXT UNIQUE ON CONFLICT REPLACE)"));
        assert!(!writes_stay_in_their_row([(
            "trigger",
            "CREATE TRIGGER t …"
        )]));
    }
}
