//! Explaining a write without making it: the row the database would hold afterwards, predicted
//! from the row it holds now and the write, and why the planner would spare each cached key it
//! leaves alone. The coordinator plans the prediction exactly as it plans a real write.
//!
//! A prediction must never make the planner spare what the real write would change, so a
//! column whose stored value cannot be known here (a DEFAULT, a value SQLite's type affinity
//! would convert) gets [`unpredictable`], a value the planner can neither match nor place.

use serde_json::Value;

use crate::origin::OriginError;
use crate::planner::{list_effect, ListDependent, ListEffect, SpareReason, WriteImages};
use crate::protocol::{Dependent, WriteOp};
use crate::schema::{Column, Relation};
use crate::{ApiError, CacheKey, Row};

/// The answer to a write to explain on an HTTP origin: its record cannot be read without the
/// write, so there is nothing to plan.
pub fn unsupported_origin() -> ApiError {
    ApiError::new(
        400,
        "explain_unsupported",
        "a write can be explained only on the built-in D1 origin",
    )
}

/// The stand-in for a value the prediction cannot know: a JSON boolean, which D1 never returns
/// and whose SQLite text and order the planner never assumes (`predicate::sql_text`).
pub fn unpredictable() -> Value {
    Value::Bool(true)
}

/// SQLite's type affinity of a declared column type (the rules of "Datatypes In SQLite", 3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

fn affinity(decl_type: &str) -> Affinity {
    let t = decl_type.to_ascii_uppercase();
    if t.contains("INT") {
        Affinity::Integer
    } else if ["CHAR", "CLOB", "TEXT"].iter().any(|s| t.contains(s)) {
        Affinity::Text
    } else if t.is_empty() || t.contains("BLOB") {
        Affinity::Blob
    } else if ["REAL", "FLOA", "DOUB"].iter().any(|s| t.contains(s)) {
        Affinity::Real
    } else {
        Affinity::Numeric
    }
}

/// The JSON D1 would return for `value` written into `column`, where that is certain: NULL,
/// text into a text (or untyped) column, an integer into a numeric one (an integral REAL comes
/// back as the same JSON integer).
fn stored(value: &Value, column: &Column) -> Value {
    let known = match (value, affinity(&column.decl_type)) {
        (Value::Null, _) => true,
        (Value::String(_), Affinity::Text | Affinity::Blob) => true,
        (Value::Number(n), Affinity::Integer | Affinity::Numeric | Affinity::Real) => n.is_i64(),
        _ => false,
    };
    if known {
        value.clone()
    } else {
        unpredictable()
    }
}

/// The relation's column a body names (ASCII case-insensitively, as SQLite resolves names).
fn column<'a>(relation: &'a Relation, name: &str) -> Option<&'a Column> {
    relation
        .columns
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(name))
}

/// A new row as an INSERT would store it: the body's columns, NULL or (for a DEFAULT)
/// unpredictable for the others.
fn inserted(relation: &Relation, body: &Row) -> Row {
    relation
        .columns
        .iter()
        .map(|c| {
            let given = body.iter().find(|(n, _)| n.eq_ignore_ascii_case(&c.name));
            let value = match given {
                Some((_, v)) => stored(v, c),
                None if c.has_default => unpredictable(),
                None => Value::Null,
            };
            (c.name.clone(), value)
        })
        .collect()
}

/// The record's image after `op`, given its image `before`: the same error the origin would
/// answer for a write it refuses for the record's presence or absence.
pub fn predicted_after(
    relation: &Relation,
    before: Option<&Row>,
    op: &WriteOp,
) -> Result<Option<Row>, OriginError> {
    let missing = |id: &str| OriginError::NotFound {
        relation: relation.name.clone(),
        id: id.to_string(),
    };
    match (op, before) {
        (WriteOp::Create { row }, Some(_)) => Err(OriginError::Conflict {
            relation: relation.name.clone(),
            id: row
                .get(&relation.id_column)
                .and_then(crate::id_text)
                .unwrap_or_default(),
        }),
        (WriteOp::Create { row }, None) => Ok(Some(inserted(relation, row))),
        (WriteOp::Patch { id, .. } | WriteOp::Delete { id }, None) => Err(missing(id)),
        (WriteOp::Delete { .. }, Some(_)) => Ok(None),
        (WriteOp::Patch { row, .. }, Some(before)) => {
            let mut after = before.clone();
            for (name, value) in row {
                let Some(c) = column(relation, name) else {
                    continue;
                };
                if c.name != relation.id_column {
                    after.insert(c.name.clone(), stored(value, c));
                }
            }
            Ok(Some(after))
        }
        (WriteOp::Replace { id, row }, before) => {
            let mut full = row.clone();
            full.insert(relation.id_column.clone(), Value::String(id.clone()));
            let Some(before) = before else {
                return Ok(Some(inserted(relation, &full)));
            };
            // An upsert: given columns are set, nullable ones not given become NULL, NOT NULL
            // ones not given keep their value (see the D1 origin's `replace`).
            let mut after = before.clone();
            for c in &relation.columns {
                let given = full.iter().find(|(n, _)| n.eq_ignore_ascii_case(&c.name));
                match given {
                    Some((_, v)) => {
                        after.insert(c.name.clone(), stored(v, c));
                    }
                    None if !c.primary_key && !c.not_null => {
                        after.insert(c.name.clone(), Value::Null);
                    }
                    None => {}
                }
            }
            Ok(Some(after))
        }
        (WriteOp::Forward { .. }, _) => Err(OriginError::BadBody(
            "a write can be explained only on the built-in D1 origin".into(),
        )),
    }
}

/// The columns of a predicted image whose values are [`unpredictable`], removed from it: what
/// an explanation shows of the after image.
pub fn split_unpredictable(row: Option<Row>) -> (Option<Row>, Vec<String>) {
    let Some(mut row) = row else {
        return (None, Vec::new());
    };
    let unknown: Vec<String> = row
        .iter()
        .filter(|(_, v)| **v == unpredictable())
        .map(|(n, _)| n.clone())
        .collect();
    for name in &unknown {
        row.remove(name);
    }
    (Some(row), unknown)
}

/// Why the planner leaves a registered key alone that its plan for `write` does not name.
pub fn spare_reason(write: &WriteImages, key: &CacheKey, dependent: &Dependent) -> SpareReason {
    if write.before.is_some() && write.before == write.after {
        return SpareReason::RowUnchanged;
    }
    match dependent {
        Dependent::List { query, window } => {
            let list = ListDependent {
                key: key.clone(),
                query: query.clone(),
                window: Some(window.clone()),
            };
            match list_effect(write, &list) {
                ListEffect::Spared(reason) => reason,
                // Left out by the coordinator's index: by `list_index_term`'s contract, its
                // filters exclude both images.
                ListEffect::Stale(_) => SpareReason::FiltersExcludeRow,
            }
        }
        // Record keys showing the row are always planned; opaque ones too, and a view's
        // responses unless the view rows read around a real write, or for a view record the
        // view's binding, say otherwise.
        Dependent::Record | Dependent::View { .. } | Dependent::Opaque => SpareReason::OtherRecord,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::plan_write;
    use crate::query::parse_list_query;
    use crate::schema::RelationKind;
    use crate::testdb::{self, TestDb};
    use proptest::prelude::*;
    use serde_json::json;

    fn col(name: &str, decl_type: &str, not_null: bool, has_default: bool) -> Column {
        Column {
            name: name.into(),
            decl_type: decl_type.into(),
            primary_key: name == "id",
            not_null,
            has_default,
        }
    }

    /// `t(id TEXT PRIMARY KEY, a TEXT, b INTEGER, c TEXT NULL)` of `testdb`.
    fn t() -> Relation {
        Relation {
            name: "t".into(),
            kind: RelationKind::Table,
            columns: vec![
                col("id", "TEXT", false, false),
                col("a", "TEXT", false, false),
                col("b", "INTEGER", false, false),
                col("c", "TEXT", false, false),
            ],
            id_column: "id".into(),
            tables: vec!["t".into()],
            bind: Default::default(),
        }
    }

    fn row(v: Value) -> Row {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn patches_merge_and_refusals_are_the_origins() {
        let before = row(json!({"id": "1", "a": "x", "b": 3, "c": null}));
        let patch = WriteOp::Patch {
            id: "1".into(),
            row: row(json!({"A": "y", "b": "7"})),
        };
        let after = predicted_after(&t(), Some(&before), &patch)
            .unwrap()
            .unwrap();
        // Text into an INTEGER column may become a number: unknown.
        assert_eq!(
            after,
            row(json!({"id": "1", "a": "y", "b": true, "c": null}))
        );
        assert_eq!(
            split_unpredictable(Some(after)),
            (
                Some(row(json!({"id": "1", "a": "y", "c": null}))),
                vec!["b".to_string()]
            )
        );
        assert!(matches!(
            predicted_after(&t(), None, &patch),
            Err(OriginError::NotFound { .. })
        ));
        let create = WriteOp::Create {
            row: row(json!({"id": "1"})),
        };
        assert!(matches!(
            predicted_after(&t(), Some(&before), &create),
            Err(OriginError::Conflict { .. })
        ));
        let mut with_default = t();
        with_default.columns[3].has_default = true;
        assert_eq!(
            predicted_after(&with_default, None, &create).unwrap(),
            Some(row(json!({"id": "1", "a": null, "b": null, "c": true})))
        );
    }

    #[test]
    fn spared_reasons() {
        let key = CacheKey::from_request("acme", "/v1/t/2", None).unwrap();
        let write = WriteImages {
            table: "t".into(),
            id: "1".into(),
            id_column: "id".into(),
            before: Some(row(json!({"id": "1", "a": "x"}))),
            after: Some(row(json!({"id": "1", "a": "y"}))),
        };
        assert_eq!(
            spare_reason(&write, &key, &Dependent::Record),
            SpareReason::OtherRecord
        );
        let lk = CacheKey::from_request("acme", "/v1/t", Some("a=z")).unwrap();
        let query = parse_list_query(lk.query_pairs(), |_| true).unwrap();
        let list = Dependent::List {
            window: crate::extract::list_window(&query, "id", &json!({"data": []})),
            query,
        };
        assert_eq!(
            spare_reason(&write, &lk, &list),
            SpareReason::FiltersExcludeRow
        );
    }

    #[test]
    fn a_converted_value_is_not_guessed() {
        let r = |id: &str, b: i64| testdb::TestRow {
            id: id.into(),
            a: None,
            b: Some(testdb::BValue::Int(b)),
            c: None,
        };
        let db = TestDb::new(&[r("1", 0), r("2", 3), r("3", 5)]);
        let q = crate::query::ListQuery {
            filters: vec![],
            order: Some(crate::query::Order {
                column: "b".into(),
                descending: false,
            }),
            limit: 2,
            offset: 0,
        };
        let rows = db.list(&q);
        let list = ListDependent {
            key: testdb::key_for(&q),
            window: Some(crate::extract::list_window(
                &q,
                "id",
                &json!({ "data": rows }),
            )),
            query: q,
        };
        // SQLite stores the text "1" in the INTEGER column as 1, inside the page.
        let write = testdb::TestWrite::Update(
            2,
            testdb::TestRow {
                b: Some(testdb::BValue::Text("1".into())),
                ..r("3", 0)
            },
        );
        let (id, op) = testdb::op_of(&db, &write);
        let before = db.get(&id);
        let images = WriteImages {
            table: "t".into(),
            id,
            id_column: "id".into(),
            after: predicted_after(&t(), before.as_ref(), &op).unwrap(),
            before,
        };
        let plan = plan_write(&images, &[], std::slice::from_ref(&list), &[], &[], &[]);
        db.apply(&write);
        assert_ne!(db.list(&list.query), rows, "the page changed");
        assert!(plan.reason_for(&list.key).is_some());
    }

    /// The prediction against the real database: the planner given the predicted after image
    /// stales every list the real write changes.
    #[test]
    fn predictions_plan_every_change_against_sqlite() {
        let strategy = (
            testdb::rows(),
            proptest::collection::vec(testdb::query(), 1..8),
            testdb::write(),
        );
        proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
            cases: 200,
            failure_persistence: None,
            ..Default::default()
        })
        .run(&strategy, |(rows, queries, write)| {
            let db = TestDb::new(&rows);
            let lists: Vec<(ListDependent, Vec<Row>)> = queries
                .iter()
                .map(|q| {
                    let rows = db.list(q);
                    let key = testdb::key_for(q);
                    let window = crate::extract::list_window(q, "id", &json!({ "data": rows }));
                    (
                        ListDependent {
                            key,
                            query: q.clone(),
                            window: Some(window),
                        },
                        rows,
                    )
                })
                .collect();
            let (id, op) = testdb::op_of(&db, &write);
            let before = db.get(&id);
            let predicted = match predicted_after(&t(), before.as_ref(), &op) {
                Ok(after) => after,
                // The origin would refuse it: nothing changes.
                Err(_) => return Ok(()),
            };
            let images = WriteImages {
                table: "t".into(),
                id: id.clone(),
                id_column: "id".into(),
                before,
                after: predicted,
            };
            let dependents: Vec<ListDependent> = lists.iter().map(|(l, _)| l.clone()).collect();
            let plan = plan_write(&images, &[], &dependents, &[], &[], &[]);
            let real = db.apply(&write);
            for (list, old) in &lists {
                if &db.list(&list.query) != old {
                    prop_assert!(
                        plan.reason_for(&list.key).is_some(),
                        "missed {} predicting {:?} (real {:?})",
                        list.key,
                        images.after,
                        real.after
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    }
}
