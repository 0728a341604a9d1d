//! `POST /_edgecache/admin/tenants/{name}/explain`: which cached keys a write would invalidate,
//! refresh or spare, and why, without writing; then the same write made for real invalidates
//! exactly the keys the explanation named stale.

mod common;

use common::{seq_of, unique, Worker};
use serde_json::{json, Value};

fn w() -> &'static Worker {
    Worker::shared()
}

fn explain(body: &Value) -> common::Answer {
    w().admin(
        "POST",
        "/_edgecache/admin/tenants/local/explain",
        Some(body),
    )
}

#[test]
fn explain_answers_without_writing_and_the_write_does_what_it_said() {
    let city = unique("xcity");
    let id = w().create_user("explain", "Ex");
    let moved = w().send_json("PATCH", &format!("/v1/users/{id}"), &json!({"city": city}));
    assert_eq!(moved.status, 200, "{}", moved.text());
    let record = format!("/v1/users/{id}");
    let pages = [
        record.clone(),
        format!("/v1/users?city={city}&limit=10"),
        "/v1/users?city=Oslo&limit=10&order=-id".to_string(),
        "/v1/users?city=Oslo&limit=10".to_string(),
        "/v1/users?city=Lima&limit=10".to_string(),
        "/v1/users?limit=10".to_string(),
    ];
    for p in &pages {
        w().warm(p);
    }

    let asked = json!({"method": "patch", "path": record, "body": {"city": "Oslo"}});
    let a = explain(&asked);
    assert_eq!(a.status, 200, "{}", a.text());
    let answer = a.json();
    assert_eq!(answer["before"]["city"], city.as_str(), "{answer}");
    assert_eq!(answer["after"]["city"], "Oslo", "{answer}");
    assert_eq!(answer["unpredictable"], json!([]));
    let action_of = |path: &str| -> (String, String) {
        let key = format!("local:{path}");
        let k = answer["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["key"] == key.as_str())
            .unwrap_or_else(|| panic!("{key} not explained: {answer}"));
        (
            k["action"].as_str().unwrap().to_string(),
            k["reason"].as_str().unwrap().to_string(),
        )
    };
    let pair = |a: &str, r: &str| (a.to_string(), r.to_string());
    assert_eq!(action_of(&pages[0]), pair("refresh", "record_written"));
    assert_eq!(action_of(&pages[1]), pair("refresh", "record_written"));
    // Ids of created users sort after the seeded ones: first in `-id` order, past a full page.
    assert_eq!(action_of(&pages[2]), pair("refresh", "shifts_page"));
    assert_eq!(action_of(&pages[3]), pair("spare", "sorts_after_full_page"));
    assert_eq!(action_of(&pages[4]), pair("spare", "filters_exclude_row"));
    assert_eq!(action_of(&pages[5]), pair("spare", "sorts_after_full_page"));

    // Nothing was written: the record is as it was and still a hit.
    let again = w().get(&record);
    assert_eq!(
        (again.outcome(), again.json()["data"]["city"].clone()),
        ("HIT-L1", json!(city))
    );
    assert_eq!(
        w().last_invalidated(&pages[1], "users"),
        w().last_invalidated(&pages[0], "users")
    );

    // The real write invalidates exactly the keys the explanation called stale.
    let a = w().send_json("PATCH", &record, &json!({"city": "Oslo"}));
    assert_eq!(a.status, 200, "{}", a.text());
    let seq = seq_of(&Worker::token_of(&a));
    for p in &pages {
        let stale = action_of(p).0 != "spare";
        assert_eq!(
            w().last_invalidated(p, "users") == Some(seq),
            stale,
            "{p}: explained {:?}",
            action_of(p)
        );
    }

    // Explaining the same write now: the row would not change, so nothing is stale.
    let a = explain(&asked);
    assert_eq!(a.status, 200, "{}", a.text());
    let keys = a.json()["keys"].as_array().unwrap().clone();
    assert!(
        keys.iter()
            .all(|k| k["action"] == "spare" && k["reason"] == "row_unchanged"),
        "{keys:?}"
    );
}

#[test]
fn explain_refuses_what_the_write_would_refuse() {
    let cases = [
        (
            json!({"method": "GET", "path": "/v1/users/123-abc"}),
            400,
            "bad_method",
        ),
        (
            json!({"method": "PATCH", "path": "/v1/users/no-such-user", "body": {"city": "x"}}),
            404,
            "record_not_found",
        ),
        (
            json!({"method": "POST", "path": "/v1/users", "body": {"id": "123-abc", "firstName": "A", "lastName": "B", "email": "e"}}),
            409,
            "id_conflict",
        ),
        (
            json!({"method": "PATCH", "path": "/v1/users/123-abc", "body": {"nope": 1}}),
            400,
            "unknown_column",
        ),
        (
            json!({"method": "DELETE", "path": "/v1/nope/1"}),
            404,
            "unknown_table",
        ),
        (
            json!({"method": "PATCH", "path": "/v1/users/123-abc", "body": [1]}),
            400,
            "bad_body",
        ),
        (json!({"method": "DELETE"}), 400, "bad_body"),
        (
            json!({"method": "DELETE", "path": "/v1/usersWithOrders/1"}),
            405,
            "read_only_view",
        ),
    ];
    for (body, status, code) in cases {
        let a = explain(&body);
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (status, code),
            "{body}: {}",
            a.text()
        );
    }
    let a = w().admin(
        "POST",
        "/_edgecache/admin/tenants/no-such-tenant/explain",
        Some(&json!({"method": "DELETE", "path": "/v1/users/1"})),
    );
    assert_eq!(a.status, 404, "{}", a.text());
}
