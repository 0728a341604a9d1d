//! The consistency model (DESIGN.md) end to end: a write stales exactly the cached responses it
//! changes, a read that presents the write's token never sees an older view, and the dependency
//! inspection shows what the coordinator knows.
//!
//! Tests of the shared worker hold `SHARED`: they write users, and a write legitimately stales
//! keys other tests are warming (the view keys showing the written user; several tests use the
//! Lane list), which would make "cache it, then write" racy. Each still writes records of its
//! own (unique ids and names). Keys used as controls ("still a hit") are ones no test writes into.

mod common;

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::{seq_of, serial, unique, urlencode, Answer, Worker};
use serde_json::{json, Value};

static SHARED: Mutex<()> = Mutex::new(());

fn w() -> &'static Worker {
    Worker::shared()
}

/// Controls no test of this binary writes into: a Bob list (nobody creates a Bob), the first
/// page of orders (created orders have ids sorting after `o-…`), a seed user's record.
const BOB: &str = "/v1/users?firstName=Bob&limit=5";
const ORDERS: &str = "/v1/orders?limit=3";

/// A read with the write's consistency token.
fn read_after(path: &str, token: &str) -> Answer {
    let a = w().get_with(
        path,
        &[("x-edgecache-min-seq", token), ("x-edgecache-debug", "1")],
    );
    assert!(
        a.status == 200 || a.status == 404,
        "{path}: {} {}",
        a.status,
        a.text()
    );
    a
}

/// A read right after a write that made `path` stale: not the old L1 copy (a refill from the
/// coordinator's rehydration may answer from L2).
fn assert_refreshed(a: &Answer, path: &str) {
    assert!(
        matches!(a.outcome(), "MISS" | "HIT-L2"),
        "{path} was stale but answered {}",
        a.outcome()
    );
}

fn assert_still_hit(path: &str, before: &Answer, token: &str) {
    let a = read_after(path, token);
    assert_eq!(
        a.outcome(),
        "HIT-L1",
        "{path} does not depend on the write and must stay cached"
    );
    assert_eq!(a.body, before.body, "{path}");
}

fn rows(a: &Answer) -> Vec<Value> {
    a.json()["data"].as_array().cloned().unwrap_or_default()
}

fn ids(a: &Answer) -> Vec<String> {
    rows(a)
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn create_user(first: &str, last: &str) -> (String, String) {
    let id = unique(&first.to_ascii_lowercase());
    let a = w().send_json(
        "POST",
        "/v1/users",
        &json!({"id": id, "firstName": first, "lastName": last, "email": format!("{id}@example.com"), "city": "Testville"}),
    );
    assert_eq!(a.status, 201, "creating {id}: {}", a.text());
    (id, Worker::token_of(&a))
}

/// The seed scenario: which cached responses does an update of `123-abc` make stale?
#[test]
fn updating_123_abc_stales_exactly_the_responses_that_show_it() {
    let _s = serial(&SHARED);
    // Where 123-abc sits in the id order (seed ids are `NNN-xxx`; ids created by tests start
    // with a letter and sort after every seed id).
    let all = w().get("/v1/users?limit=1000");
    let pos = ids(&all)
        .iter()
        .position(|i| i == "123-abc")
        .expect("123-abc is seeded");
    assert!(
        pos >= 10,
        "the seed puts 123-abc at {pos}, inside the first page"
    );
    let page_with_it = format!("/v1/users?limit=10&offset={}", pos - 3);
    let stale: Vec<String> = vec![
        "/v1/users?firstName=Lane".into(),
        "/v1/users?id=123*".into(),
        "/v1/users/123-abc".into(),
        page_with_it,
        "/v1/usersWithOrders/123-abc".into(),
    ];
    let other = rows(&w().get(BOB))[0]["id"].as_str().unwrap().to_string();
    let unrelated: Vec<String> = vec![
        "/v1/users?limit=10".into(), // the first page: 123-abc sorts after its last row
        BOB.into(),
        ORDERS.into(),
        format!("/v1/users/{other}"),
        // The view's first page: 123-abc sorts after it, and the view binds users.id to its
        // id, so the planner can tell.
        "/v1/usersWithOrders?limit=10".into(),
    ];

    for p in stale.iter().chain(&unrelated) {
        let a = w().warm(p);
        assert!(!a.json()["data"].is_null(), "{p}");
    }
    assert!(!ids(&w().warm("/v1/users?limit=10")).contains(&"123-abc".to_string()));
    let before: Vec<Answer> = unrelated.iter().map(|p| w().warm(p)).collect();

    let last = unique("Hopper");
    let write = w().send_json("PATCH", "/v1/users/123-abc", &json!({"lastName": last}));
    assert_eq!(write.status, 200, "{}", write.text());
    assert_eq!(write.json()["data"]["firstName"], "Lane");
    let token = Worker::token_of(&write);

    for p in &stale {
        let a = read_after(p, &token);
        assert_refreshed(&a, p);
        assert!(
            a.text().contains(&last),
            "{p} must show the new lastName: {}",
            a.text()
        );
    }
    for (p, b) in unrelated.iter().zip(&before) {
        assert_still_hit(p, b, &token);
    }
    // Without the token too (the writing isolate refreshed its view).
    let a = w().get("/v1/users/123-abc");
    assert_eq!(a.json()["data"]["lastName"], last.as_str());
}

#[test]
fn inserting_a_lane_stales_the_lane_list_but_not_the_bob_list() {
    let _s = serial(&SHARED);
    let list = "/v1/users?firstName=Lane&limit=1000";
    w().warm(list);
    let bob = w().warm(BOB);
    let last = unique("Inserted");
    let (id, token) = create_user("Lane", &last);
    let a = read_after(list, &token);
    assert_refreshed(&a, list);
    assert!(ids(&a).contains(&id), "{list} must contain the new Lane");
    assert!(rows(&a).iter().all(|r| r["firstName"] == "Lane"));
    assert_still_hit(BOB, &bob, &token);
}

#[test]
fn deleting_a_record_removes_it_from_lists_and_reads() {
    let _s = serial(&SHARED);
    let list = "/v1/users?firstName=Lane&limit=1000";
    let (id, _) = create_user("Lane", &unique("Deleted"));
    let record = format!("/v1/users/{id}");
    assert!(ids(&w().warm(list)).contains(&id));
    w().warm(&record);
    let bob = w().warm(BOB);
    let del = w().request("DELETE", &record, &[], None);
    assert_eq!(del.status, 204, "{}", del.text());
    let token = Worker::token_of(&del);
    let a = read_after(list, &token);
    assert_refreshed(&a, list);
    assert!(
        !ids(&a).contains(&id),
        "{list} still lists the deleted {id}"
    );
    let a = read_after(&record, &token);
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (404, "record_not_found"),
        "{}",
        a.outcome()
    );
    assert_still_hit(BOB, &bob, &token);
}

#[test]
fn moving_a_record_out_of_a_filter_stales_both_lists() {
    let _s = serial(&SHARED);
    let (id, _) = create_user("Lane", &unique("Mover"));
    let lanes = "/v1/users?firstName=Lane&limit=1000";
    let zeds = "/v1/users?firstName=Zed&limit=1000";
    assert!(ids(&w().warm(lanes)).contains(&id));
    assert!(!ids(&w().warm(zeds)).contains(&id));
    let bob = w().warm(BOB);
    let write = w().send_json(
        "PATCH",
        &format!("/v1/users/{id}"),
        &json!({"firstName": "Zed"}),
    );
    assert_eq!(write.status, 200, "{}", write.text());
    let token = Worker::token_of(&write);
    let a = read_after(lanes, &token);
    assert_refreshed(&a, lanes);
    assert!(!ids(&a).contains(&id), "{id} left the Lane list");
    let a = read_after(zeds, &token);
    assert_refreshed(&a, zeds);
    assert!(ids(&a).contains(&id), "{id} joined the Zed list");
    assert_still_hit(BOB, &bob, &token);
}

#[test]
fn put_creating_a_record_shows_up_in_lists_and_reads() {
    let _s = serial(&SHARED);
    let id = unique("put");
    let last = unique("Put");
    let list = format!("/v1/users?lastName={last}&limit=10");
    let record = format!("/v1/users/{id}");
    assert!(rows(&w().warm(&list)).is_empty());
    let missing = w().get(&record);
    assert_eq!(missing.status, 404);
    let bob = w().warm(BOB);
    let put = w().send_json(
        "PUT",
        &record,
        &json!({"firstName": "Pat", "lastName": last, "email": "p@example.com"}),
    );
    assert_eq!(put.status, 201, "{}", put.text());
    let token = Worker::token_of(&put);
    let a = read_after(&list, &token);
    assert_refreshed(&a, &list);
    assert_eq!(ids(&a), vec![id.clone()]);
    let a = read_after(&record, &token);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["data"]["lastName"], last.as_str());
    assert_still_hit(BOB, &bob, &token);
}

#[test]
fn an_orders_write_stales_the_view_but_no_users_key() {
    let _s = serial(&SHARED);
    let last = unique("Buyer");
    let (user, _) = create_user("Buyer", &last);
    let order = unique("ord");
    let a = w().send_json(
        "POST",
        "/v1/orders",
        &json!({"id": order, "userId": user, "item": "cable", "quantity": 1, "totalCents": 500, "status": "placed"}),
    );
    assert_eq!(a.status, 201, "{}", a.text());

    let view_record = format!("/v1/usersWithOrders/{user}");
    let view_list = format!("/v1/usersWithOrders?lastName={last}");
    let users_record = format!("/v1/users/{user}");
    let users_list = format!("/v1/users?lastName={last}");
    let orders_list = format!("/v1/orders?userId={user}");
    let v = w().warm(&view_record);
    assert_eq!(
        (
            v.json()["data"]["orderCount"].as_i64(),
            v.json()["data"]["totalCents"].as_i64()
        ),
        (Some(1), Some(500))
    );
    w().warm(&view_list);
    w().warm(&orders_list);
    let users_before = [w().warm(&users_record), w().warm(&users_list)];
    let orders_before = w().warm(ORDERS);

    let write = w().send_json(
        "PATCH",
        &format!("/v1/orders/{order}"),
        &json!({"totalCents": 1500}),
    );
    assert_eq!(write.status, 200, "{}", write.text());
    let token = Worker::token_of(&write);
    assert!(token.starts_with("orders="), "{token}");
    for p in [&view_record, &view_list] {
        // A view depends on orders: refilled by the orders coordinator, or read again.
        let a = read_after(p, &token);
        assert_refreshed(&a, p);
        let row = if p.contains('?') {
            rows(&a)[0].clone()
        } else {
            a.json()["data"].clone()
        };
        assert_eq!(row["totalCents"].as_i64(), Some(1500), "{p}: {row}");
    }
    let a = read_after(&orders_list, &token);
    assert_refreshed(&a, &orders_list);
    assert_eq!(rows(&a)[0]["totalCents"].as_i64(), Some(1500));
    for (p, b) in [&users_record, &users_list].into_iter().zip(&users_before) {
        assert_still_hit(p, b, &token);
    }
    assert_still_hit(ORDERS, &orders_before, &token);

    // A second order: the view's count moves too.
    let a = w().send_json(
        "POST",
        "/v1/orders",
        &json!({"id": unique("ord"), "userId": user, "item": "mouse", "quantity": 1, "totalCents": 200}),
    );
    assert_eq!(a.status, 201, "{}", a.text());
    let token = Worker::token_of(&a);
    let v = read_after(&view_record, &token);
    assert_eq!(
        (
            v.json()["data"]["orderCount"].as_i64(),
            v.json()["data"]["totalCents"].as_i64()
        ),
        (Some(2), Some(1700))
    );
    for (p, b) in [&users_record, &users_list].into_iter().zip(&users_before) {
        assert_still_hit(p, b, &token);
    }
}

#[test]
fn deps_shows_which_keys_hold_a_record_and_their_stamps() {
    let _s = serial(&SHARED);
    let path = "/v1/users?id=123*";
    w().warm(path);
    let a = w().get_debug(path);
    assert_eq!(a.outcome(), "HIT-L1");
    let key = a.header("x-edgecache-key").unwrap().to_string();
    let stamp = a.stamp("users").expect("x-edgecache-deps");

    let d = w().admin("GET", "/_edgecache/deps?record=users:123-abc", None);
    assert_eq!(d.status, 200, "{}", d.text());
    let body = d.json();
    assert_eq!(body["record"], "users:123-abc");
    let keys: Vec<&str> = body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(keys.contains(&key.as_str()), "{key} not in {keys:?}");

    let d = w().admin(
        "GET",
        &format!("/_edgecache/deps?key={}", urlencode(path)),
        None,
    );
    assert_eq!(d.status, 200, "{}", d.text());
    let body = d.json();
    assert_eq!(body["key"], key.as_str());
    let entry = &body["entry"];
    assert_eq!(entry["kind"], "list", "{body}");
    assert_eq!(entry["tables"]["users"].as_u64(), Some(stamp), "{body}");
    assert!(
        entry["records"]
            .as_array()
            .unwrap()
            .contains(&json!("users:123-abc")),
        "{body}"
    );

    // An uncached key has no entry.
    let d = w().admin(
        "GET",
        &format!(
            "/_edgecache/deps?key={}",
            urlencode(&format!("/v1/users?lastName={}", unique("Nobody")))
        ),
        None,
    );
    assert_eq!(d.status, 200, "{}", d.text());
    assert!(d.json()["entry"].is_null(), "{}", d.text());
}

// ---- Read your writes on a route that tolerates a minute of staleness. ----

/// A worker whose users routes may serve hits from a view up to 60 s old.
fn lazy() -> &'static Worker {
    static W: OnceLock<Worker> = OnceLock::new();
    W.get_or_init(|| {
        Worker::start_with(&[(
            "EDGECACHE_RULES",
            r#"[{"pattern":"/v1/users*","max_staleness_ms":60000}]"#,
        )])
    })
}

static LAZY: Mutex<()> = Mutex::new(());

#[test]
fn a_writer_reads_its_write_with_the_header_or_the_cookie() {
    let _s = serial(&LAZY);
    let w = lazy();
    let id = unique("ryw");
    let a = w.send_json(
        "POST",
        "/v1/users",
        &json!({"id": id, "firstName": "Ryw", "lastName": "One", "email": "r@example.com"}),
    );
    assert_eq!(a.status, 201);
    let path = format!("/v1/users/{id}");
    w.warm(&path);
    let write = w.send_json("PATCH", &path, &json!({"lastName": "Two"}));
    let token = Worker::token_of(&write);
    let a = w.get_with(&path, &[("x-edgecache-min-seq", token.as_str())]);
    assert_eq!(a.json()["data"]["lastName"], "Two", "{}", a.outcome());
    w.warm(&path);
    let write = w.send_json("PATCH", &path, &json!({"lastName": "Three"}));
    let cookie = write.seq_cookie();
    assert!(
        cookie.starts_with("edgecache_seq=users:"),
        "{cookie}: the cookie carries the token"
    );
    assert_eq!(
        seq_of(&cookie.replace(':', "=").replacen("edgecache_seq=", "", 1)),
        seq_of(&Worker::token_of(&write))
    );
    let a = w.get_with(&path, &[("cookie", cookie.as_str())]);
    assert_eq!(a.json()["data"]["lastName"], "Three", "{}", a.outcome());
}

/// Resets the lazy worker's faults however a test ends.
struct LazyFaults;

impl Drop for LazyFaults {
    fn drop(&mut self) {
        lazy().try_faults(&json!({}));
    }
}

/// Invariant 5 where it matters: writes leave this isolate's view alone (as a write through
/// another isolate would), the route allows a minute of staleness, so a read without the token
/// may be (and is) served the old copy; the same read with the token, in the header or in the
/// cookie, must show the write.
#[test]
fn a_token_newer_than_the_isolates_view_forces_a_refresh() {
    let _s = serial(&LAZY);
    let _reset = LazyFaults;
    let w = lazy();
    w.faults(json!({"keep_views_on_write": true}));
    let id = unique("behind");
    let a = w.send_json(
        "POST",
        "/v1/users",
        &json!({"id": id, "firstName": "Behind", "lastName": "One", "email": "b@example.com"}),
    );
    assert_eq!(a.status, 201);
    let path = format!("/v1/users/{id}");
    // A fill stamped with a view older than the create is refused (and refreshes the view), so
    // caching may take a second fill.
    let cached = (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            w.get(&path)
        })
        .find(|a| a.outcome() == "HIT-L1")
        .expect("the record never became a hit");
    assert_eq!(cached.json()["data"]["lastName"], "One");

    let write = w.send_json("PATCH", &path, &json!({"lastName": "Two"}));
    assert_eq!(write.status, 200);
    let token = Worker::token_of(&write);
    let stale = w.get(&path);
    assert_eq!(
        (stale.outcome(), stale.json()["data"]["lastName"].as_str()),
        ("HIT-L1", Some("One")),
        "control: without the token the view is not refreshed within max_staleness_ms"
    );
    let a = w.get_with(
        &path,
        &[("x-edgecache-min-seq", &token), ("x-edgecache-debug", "1")],
    );
    assert_eq!(a.json()["data"]["lastName"], "Two", "{}", a.outcome());
    assert!(a.stamp("users").unwrap() >= seq_of(&token));

    std::thread::sleep(Duration::from_millis(100));
    let write = w.send_json("PATCH", &path, &json!({"lastName": "Three"}));
    assert_eq!(write.status, 200);
    let cookie = write.seq_cookie();
    let stale = w.get(&path);
    assert_eq!(
        (stale.outcome(), stale.json()["data"]["lastName"].as_str()),
        ("HIT-L1", Some("Two")),
        "control: without the cookie the old copy is still allowed"
    );
    let a = w.get_with(&path, &[("cookie", &cookie), ("x-edgecache-debug", "1")]);
    assert_eq!(a.json()["data"]["lastName"], "Three", "{}", a.outcome());
    assert!(a.stamp("users").unwrap() >= seq_of(&Worker::token_of(&write)));
}

#[test]
fn an_old_etag_after_a_write_gets_the_new_body_not_a_304() {
    let _s = serial(&SHARED);
    let (id, _) = create_user("Etag", "Before");
    let path = format!("/v1/users/{id}");
    let old = w().warm(&path);
    let old_etag = old.header("etag").unwrap().to_string();
    let same = w().get_with(&path, &[("if-none-match", &old_etag)]);
    assert_eq!(same.status, 304, "control: unchanged copy revalidates");
    let write = w().send_json("PATCH", &path, &json!({"lastName": "After"}));
    let token = Worker::token_of(&write);
    let a = w().get_with(
        &path,
        &[
            ("if-none-match", &old_etag),
            ("x-edgecache-min-seq", &token),
        ],
    );
    assert_eq!(a.status, 200, "the old etag no longer matches");
    assert_eq!(a.json()["data"]["lastName"], "After");
    let new_etag = a.header("etag").unwrap().to_string();
    assert_ne!(new_etag, old_etag);
    let b = w().get_with(&path, &[("if-none-match", &new_etag)]);
    assert_eq!(b.status, 304);
}
