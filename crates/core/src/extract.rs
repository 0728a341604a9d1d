//! What a cached response contains, read from its JSON body when it is filled: the records it
//! shows (so a write to one of them finds it) and, for a list, where its page ends (so the
//! planner can tell whether a written row falls inside or beyond it).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::predicate::column_value;
use super::query::ListQuery;
use super::{id_text, Row};

/// Where a cached list page begins and ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListWindow {
    /// The page holds `limit` rows, so rows sorting after its last row are not in it.
    pub full: bool,
    /// The page is a list with no rows: its offset lies past the list's end. False for a body
    /// that is not a list (and in registrations stored before it was recorded), whose window
    /// the planner does not know.
    #[serde(default)]
    pub empty: bool,
    /// The page's first row, reduced like `last`: rows moving around before it leave the page
    /// as it was. `None` for an empty page, and in registrations stored before it was recorded
    /// (the planner then treats every row up to `last` as inside the page).
    #[serde(default)]
    pub first: Option<Row>,
    /// The page's last row, reduced to the order and id columns; `None` for an empty page.
    pub last: Option<Row>,
}

/// The ids of the records in a `{"data": [rows]}` or `{"data": {row}}` body; string ids as they
/// are, integer ids in decimal; any other body has none.
pub fn record_ids(body: &Value, id_column: &str) -> Vec<String> {
    let id_of = |row: &Value| id_text(column_value(row.as_object()?, id_column)?);
    match body.get("data") {
        Some(Value::Array(rows)) => rows.iter().filter_map(id_of).collect(),
        Some(row @ Value::Object(_)) => id_of(row).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// The window of a list response to `q`; a body that is not a list gives a window that is
/// neither full nor bounded, which the planner treats as affected by any matching write.
pub fn list_window(q: &ListQuery, id_column: &str, body: &Value) -> ListWindow {
    let Some(Value::Array(rows)) = body.get("data") else {
        return ListWindow {
            full: false,
            empty: false,
            first: None,
            last: None,
        };
    };
    let reduce = |row: &Value| {
        let row = row.as_object()?;
        let mut reduced = Row::new();
        let columns = q.order.as_ref().map(|o| o.column.as_str());
        for column in columns.into_iter().chain([id_column]) {
            // Keep the row's own spelling of the name; a missing column stays missing (NULL).
            if let Some((name, value)) = row
                .get_key_value(column)
                .or_else(|| row.iter().find(|(n, _)| n.eq_ignore_ascii_case(column)))
            {
                reduced.insert(name.clone(), value.clone());
            }
        }
        Some(reduced)
    };
    ListWindow {
        // More rows than asked for means the body is not what the query returned: not full.
        full: rows.len() == q.limit as usize,
        empty: rows.is_empty(),
        first: rows.first().and_then(reduce),
        last: rows.last().and_then(reduce),
    }
}

#[cfg(test)]
mod tests {
    use super::super::query::Order;
    use super::*;
    use serde_json::json;

    fn query(limit: u32, order: Option<&str>) -> ListQuery {
        ListQuery {
            filters: Vec::new(),
            order: order.map(|c| Order {
                column: c.into(),
                descending: false,
            }),
            limit,
            offset: 0,
        }
    }

    #[test]
    fn ids_from_lists_and_records() {
        let list = json!({"data": [{"id": "a"}, {"id": 7}, {"id": 1.5}, {"name": "x"}, 3]});
        assert_eq!(record_ids(&list, "id"), ["a", "7"]);
        assert_eq!(
            record_ids(&json!({"data": {"ID": "123-abc"}}), "id"),
            ["123-abc"]
        );
        assert_eq!(record_ids(&json!({"data": {"id": -4}}), "id"), ["-4"]);
        for other in [
            json!({"data": null}),
            json!({"error": "x"}),
            json!([{"id": "a"}]),
            json!("a"),
        ] {
            assert!(record_ids(&other, "id").is_empty(), "{other}");
        }
    }

    #[test]
    fn window_of_a_page() {
        let body = json!({"data": [
            {"id": "1", "name": "Ann", "age": 3},
            {"id": "2", "name": "Bob", "age": 4}
        ]});
        let w = list_window(&query(2, Some("name")), "id", &body);
        assert!(w.full);
        assert_eq!(
            w.first,
            json!({"id": "1", "name": "Ann"}).as_object().cloned()
        );
        assert_eq!(
            w.last,
            json!({"id": "2", "name": "Bob"}).as_object().cloned()
        );
        let w = list_window(&query(3, None), "id", &body);
        assert!(!w.full);
        assert_eq!(w.last, json!({"id": "2"}).as_object().cloned());
        let empty = list_window(&query(3, None), "id", &json!({"data": []}));
        assert_eq!(
            empty,
            ListWindow {
                full: false,
                empty: true,
                first: None,
                last: None
            }
        );
        let odd = list_window(&query(3, None), "id", &json!({"data": {"id": "1"}}));
        assert_eq!(
            odd,
            ListWindow {
                full: false,
                empty: false,
                first: None,
                last: None
            }
        );
    }

    #[test]
    fn window_round_trips_through_json() {
        let w = list_window(
            &query(1, Some("age")),
            "id",
            &json!({"data": [{"id": 1, "age": null}]}),
        );
        let back: ListWindow = serde_json::from_str(&serde_json::to_string(&w).unwrap()).unwrap();
        assert_eq!(back, w);
        // A registration stored before pages recorded their first row still reads.
        let old: ListWindow =
            serde_json::from_value(json!({"full": true, "last": {"id": 1}})).unwrap();
        assert_eq!((old.first, old.empty), (None, false));
    }
}
