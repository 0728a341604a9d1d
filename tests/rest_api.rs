//! The D1 REST origin through the real worker: every endpoint and every error case.

mod common;

use common::{urlencode, Worker};
use serde_json::json;

fn w() -> &'static Worker {
    Worker::shared()
}

#[test]
fn list_returns_data_and_meta_with_default_and_explicit_limits() {
    let a = w().get("/v1/users?limit=10");
    assert_eq!(a.status, 200, "{}", a.text());
    let body = a.json();
    assert_eq!(body["data"].as_array().unwrap().len(), 10);
    assert_eq!(body["meta"], json!({"limit": 10, "offset": 0, "count": 10}));

    let all = w().get("/v1/users").json();
    assert_eq!(all["meta"]["limit"], 50);
    assert_eq!(all["data"].as_array().unwrap().len(), 50);

    let max = w().get("/v1/orders?limit=1000").json();
    assert_eq!(max["data"].as_array().unwrap().len(), 1000);
}

#[test]
fn seed_dataset_is_there() {
    let lane = w().get("/v1/users/123-abc");
    assert_eq!(lane.status, 200);
    assert_eq!(lane.json()["data"]["firstName"], "Lane");
    let users = w().get("/v1/users?limit=1000&offset=0").json();
    assert_eq!(users["meta"]["count"], 1000);
    let orders = w().get("/v1/orders?limit=1&offset=4999").json();
    assert_eq!(orders["meta"]["count"], 1, "at least 5,000 orders");
}

#[test]
fn filters_order_offset_and_prefix() {
    let lanes = w().get("/v1/users?firstName=Lane&limit=1000").json();
    let rows = lanes["data"].as_array().unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r["firstName"] == "Lane"));
    assert!(rows.iter().any(|r| r["id"] == "123-abc"));

    let prefixed = w().get("/v1/users?id=123*").json();
    let rows = prefixed["data"].as_array().unwrap();
    assert!(rows.iter().any(|r| r["id"] == "123-abc"));
    assert!(rows
        .iter()
        .all(|r| r["id"].as_str().unwrap().starts_with("123")));

    let asc = w().get("/v1/users?order=age&limit=1000").json();
    // Other tests create users without an age: NULL sorts first, as in SQLite.
    let ages: Vec<Option<i64>> = asc["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["age"].as_i64())
        .collect();
    assert!(ages.windows(2).all(|p| p[0] <= p[1]), "ascending: {ages:?}");
    let desc = w().get("/v1/users?order=-age&limit=5").json();
    assert_eq!(desc["data"][0]["age"].as_i64(), *ages.iter().max().unwrap());

    let page1 = w().get("/v1/users?limit=5&offset=0").json();
    let page2 = w().get("/v1/users?limit=5&offset=5").json();
    assert_ne!(page1["data"][0]["id"], page2["data"][0]["id"]);
    let both = w().get("/v1/users?limit=10").json();
    assert_eq!(both["data"][5]["id"], page2["data"][0]["id"]);

    let numeric = w().get("/v1/users?age=34&limit=1000").json();
    assert!(numeric["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["age"] == 34));
    assert!(numeric["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == "123-abc"));
}

#[test]
fn named_view_joins_users_with_orders() {
    let a = w().get("/v1/usersWithOrders?limit=10");
    assert_eq!(a.status, 200, "{}", a.text());
    let rows = a.json()["data"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 10);
    assert!(rows[0].get("orderCount").is_some());
    let lane = w().get("/v1/usersWithOrders/123-abc").json();
    assert_eq!(lane["data"]["firstName"], "Lane");
    let a = w().send_json("POST", "/v1/usersWithOrders", &json!({"id": "x"}));
    assert_eq!((a.status, a.error_code().as_str()), (405, "read_only_view"));
}

#[test]
fn create_read_replace_patch_delete_cycle() {
    let a = w().send_json(
        "POST",
        "/v1/users",
        &json!({"id": "crud-1", "firstName": "Cy", "lastName": "Cle", "email": "c@x"}),
    );
    assert_eq!(a.status, 201, "{}", a.text());
    assert_eq!(a.json()["data"]["firstName"], "Cy");
    assert!(
        a.json()["data"]["createdAt"].is_string(),
        "defaults are returned"
    );

    let a = w().send_json(
        "POST",
        "/v1/users",
        &json!({"id": "crud-1", "firstName": "Dup", "lastName": "x", "email": "x"}),
    );
    assert_eq!((a.status, a.error_code().as_str()), (409, "id_conflict"));

    let a = w().send_json(
        "PUT",
        "/v1/users/crud-1",
        &json!({"firstName": "Re", "lastName": "Placed", "email": "r@x"}),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["data"]["firstName"], "Re");
    assert_eq!(
        a.json()["data"]["age"],
        serde_json::Value::Null,
        "replace clears what the body omits"
    );

    let a = w().send_json("PATCH", "/v1/users/crud-1", &json!({"age": 41}));
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["data"]["age"], 41);
    assert_eq!(
        a.json()["data"]["firstName"],
        "Re",
        "patch keeps other columns"
    );

    assert_eq!(w().get("/v1/users/crud-1").json()["data"]["age"], 41);
    assert_eq!(
        w().request("DELETE", "/v1/users/crud-1", &[], None).status,
        204
    );
    let gone = w().get("/v1/users/crud-1");
    assert_eq!(
        (gone.status, gone.error_code().as_str()),
        (404, "record_not_found")
    );
    let again = w().request("DELETE", "/v1/users/crud-1", &[], None);
    assert_eq!(
        (again.status, again.error_code().as_str()),
        (404, "record_not_found")
    );
}

#[test]
fn post_without_id_generates_one_and_put_creates_when_absent() {
    let a = w().send_json(
        "POST",
        "/v1/users",
        &json!({"firstName": "Gen", "lastName": "Id", "email": "g@x"}),
    );
    assert_eq!(a.status, 201, "{}", a.text());
    let id = a.json()["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(w().get(&format!("/v1/users/{id}")).status, 200);

    let a = w().send_json(
        "PUT",
        "/v1/users/put-new-1",
        &json!({"firstName": "P", "lastName": "N", "email": "p@x"}),
    );
    assert_eq!(a.status, 201, "{}", a.text());
    assert_eq!(
        w().get("/v1/users/put-new-1").json()["data"]["firstName"],
        "P"
    );
}

#[test]
fn patch_of_missing_record_is_404_and_id_mismatch_is_400() {
    let a = w().send_json("PATCH", "/v1/users/nobody-here", &json!({"age": 1}));
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (404, "record_not_found")
    );
    let a = w().send_json(
        "PUT",
        "/v1/users/a-1",
        &json!({"id": "b-2", "firstName": "x", "lastName": "y", "email": "z"}),
    );
    assert_eq!((a.status, a.error_code().as_str()), (400, "bad_body"));
}

#[test]
fn unknown_tables_columns_and_bad_parameters_are_typed_errors() {
    let cases = [
        ("/v1/nope", 404, "unknown_table"),
        ("/v1/nope/1", 404, "unknown_table"),
        ("/v1/users?nope=1", 400, "unknown_column"),
        ("/v1/users?limit=0", 400, "bad_limit"),
        ("/v1/users?limit=1001", 400, "bad_limit"),
        ("/v1/users?limit=ten", 400, "bad_limit"),
        ("/v1/users?offset=-1", 400, "bad_offset"),
        ("/v1/users?order=nope", 400, "bad_order"),
        ("/v1/users?order=-", 400, "bad_order"),
        ("/v1/users?limit=1&limit=2", 400, "duplicate_parameter"),
        ("/v1/users/123-abc?x=1", 400, "bad_request"),
        ("/v1/users/1/2", 404, "route_not_found"),
        ("/nothing", 404, "route_not_found"),
        ("/v1/d1_migrations", 404, "unknown_table"),
        ("/v1/sqlite_master", 404, "unknown_table"),
    ];
    for (path, status, code) in cases {
        let a = w().get(path);
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (status, code),
            "{path}: {}",
            a.text()
        );
        assert_eq!(
            a.header("cache-control"),
            Some("no-store"),
            "{path}: errors are not cacheable"
        );
    }
}

#[test]
fn sql_metacharacters_in_values_and_names_are_inert() {
    let evil = "'; DROP TABLE users; --";
    let a = w().get(&format!("/v1/users?firstName={}", urlencode(evil)));
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["meta"]["count"], 0);
    let a = w().get(&format!(
        "/v1/users?{}=1",
        urlencode("firstName\" OR 1=1 --")
    ));
    assert_eq!((a.status, a.error_code().as_str()), (400, "unknown_column"));
    let a = w().get(&format!(
        "/v1/users?order={}",
        urlencode("age; DROP TABLE users")
    ));
    assert_eq!((a.status, a.error_code().as_str()), (400, "bad_order"));
    let a = w().get(&format!(
        "/v1/{}",
        urlencode("users\"; DROP TABLE users; --")
    ));
    assert_eq!((a.status, a.error_code().as_str()), (404, "unknown_table"));
    let a = w().get(&format!("/v1/users/{}", urlencode("1' OR '1'='1")));
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (404, "record_not_found")
    );
    let a = w().send_json(
        "POST",
        "/v1/users",
        &json!({"id": evil, "firstName": evil, "lastName": "x", "email": "x"}),
    );
    assert_eq!(a.status, 201, "{}", a.text());
    let a = w().get(&format!("/v1/users/{}", urlencode(evil)));
    assert_eq!(a.json()["data"]["firstName"], evil);
    let a = w().send_json(
        "POST",
        "/v1/users",
        &json!({"firstName\" TEXT); DROP TABLE users; --": 1}),
    );
    assert_eq!((a.status, a.error_code().as_str()), (400, "unknown_column"));
    assert_eq!(w().get("/v1/users?limit=1").status, 200, "users survived");
}

#[test]
fn malformed_bodies_methods_and_sizes() {
    let post = |body: &[u8]| {
        w().request(
            "POST",
            "/v1/users",
            &[("content-type", "application/json")],
            Some(body),
        )
    };
    for (body, code) in [
        (&b"{not json"[..], "bad_body"),
        (b"[1,2]", "bad_body"),
        (b"\"s\"", "bad_body"),
        (b"", "bad_body"),
    ] {
        let a = post(body);
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (400, code),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    let a = w().send_json("POST", "/v1/users", &json!({"firstName": {"nested": true}}));
    assert_eq!((a.status, a.error_code().as_str()), (400, "bad_body"));
    let a = w().send_json("POST", "/v1/users", &json!({"id": "nn-1"}));
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (400, "constraint_failed"),
        "{}",
        a.text()
    );
    let big = format!(
        "{{\"id\":\"big\",\"firstName\":\"{}\"}}",
        "x".repeat(1024 * 1024 + 10)
    );
    let a = post(big.as_bytes());
    assert_eq!((a.status, a.error_code().as_str()), (413, "body_too_large"));
    let a = w().send_json(
        "POST",
        "/v1/orders",
        &json!({"id": "o-fk", "userId": "no-such-user", "item": "x", "totalCents": 1}),
    );
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (400, "constraint_failed"),
        "{}",
        a.text()
    );

    for (method, path) in [
        ("PUT", "/v1/users"),
        ("PATCH", "/v1/users"),
        ("DELETE", "/v1/users"),
        ("POST", "/v1/users/123-abc"),
    ] {
        let a = w().request(
            method,
            path,
            &[("content-type", "application/json")],
            Some(b"{}"),
        );
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (405, "method_not_allowed"),
            "{method} {path}"
        );
    }
}
