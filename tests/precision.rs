//! Invalidation precision in the real runtime: a PATCH of one user invalidates (and so refills)
//! exactly the cached pages whose bodies it changed. Plain pages (by id), ordered pages (by age)
//! and the pages of the user's city are cached; after each write every page's last invalidation
//! (`/_edgecache/deps`) is compared with whether the origin's answer changed (read with
//! `cache-control: no-cache`), and pages left alone must still be L1 hits. The join view's keys
//! a write changed are refilled by the coordinator that invalidated them: the next read is an
//! L2 hit with the origin's answer, unless a write of the view's other table overtook the refill.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::{seq_of, serial, unique, Faulted, Worker};
use serde_json::{json, Value};

/// Each test checks exactly which pages a write invalidates, so no other test may write
/// meanwhile.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn w() -> &'static Worker {
    Worker::shared()
}

/// Reads `path` until it is an L1 hit and returns its body.
fn cached(path: &str) -> Vec<u8> {
    w().warm(path).body
}

fn rows(body: &[u8]) -> Vec<Value> {
    serde_json::from_slice::<Value>(body).unwrap()["data"]
        .as_array()
        .unwrap()
        .clone()
}

/// Caches `pages`, applies `patch` to user `id`, and checks page by page that exactly the
/// pages whose answer changed were invalidated and that the others are still served from L1.
/// Returns (pages invalidated, pages showing the user before the write).
fn write_and_check(pages: &[String], id: &str, patch: Value) -> (usize, usize) {
    let before: Vec<Vec<u8>> = pages.iter().map(|p| cached(p)).collect();
    let showing = before
        .iter()
        .filter(|b| rows(b).iter().any(|r| r["id"] == id))
        .count();
    let a = w().send_json("PATCH", &format!("/v1/users/{id}"), &patch);
    assert_eq!(a.status, 200, "{}", a.text());
    let token = Worker::token_of(&a);
    let seq = seq_of(&token);
    let mut invalidated = 0;
    for (page, old) in pages.iter().zip(&before) {
        let stale = w().last_invalidated(page, "users") == Some(seq);
        let origin = w().get_with(page, &[("cache-control", "no-cache")]);
        assert_eq!(origin.status, 200, "{page}: {}", origin.text());
        let changed = &origin.body != old;
        assert_eq!(
            stale, changed,
            "{page} after PATCH {id} {patch}: invalidated {stale}, changed {changed}"
        );
        if stale {
            invalidated += 1;
        } else {
            let again = w().get_with(page, &[("x-edgecache-min-seq", &token)]);
            assert_eq!(
                (again.outcome(), &again.body),
                ("HIT-L1", old),
                "{page}: a page the write left alone is still served from L1"
            );
        }
    }
    (invalidated, showing)
}

#[test]
fn a_patch_refills_only_the_pages_it_changed() {
    let _alone = serial(&ONE_AT_A_TIME);
    let mut pages: Vec<String> = (0..10)
        .map(|k| format!("/v1/users?limit=100&offset={}", 100 * k))
        .collect();
    pages.extend((0..10).map(|k| format!("/v1/users?limit=100&offset={}&order=age", 100 * k)));
    let middle = rows(&cached("/v1/users?limit=100&offset=500"))[50].clone();
    let id = middle["id"].as_str().unwrap().to_string();
    let city = middle["city"].as_str().unwrap();
    pages.extend((0..4).map(|k| format!("/v1/users?city={city}&limit=40&offset={}", 40 * k)));

    // A new first name moves the user in no list: only the pages showing it change (one plain
    // page, one age page, one page of the city).
    let (invalidated, showing) = write_and_check(&pages, &id, json!({"firstName": "Precise"}));
    assert_eq!(showing, 3, "the user is on one page of each list");
    assert_eq!(invalidated, showing, "only the pages showing the user");

    // A new age moves the user through the age pages between its old and new place: those
    // shift, the others (and every plain and city page but the user's own) stay.
    let age = middle["age"].as_u64().unwrap();
    let new_age = if age < 40 { 75 } else { 20 };
    let (invalidated, _) = write_and_check(&pages, &id, json!({"age": new_age}));
    assert!(
        (3..pages.len() / 2).contains(&invalidated),
        "{invalidated} of {} pages invalidated",
        pages.len()
    );
}

/// Waits until neither of the view's tables has a refill queued: each refill the last writes
/// queued has stored its copy or given up (a failed one retries with backoff for a few seconds).
fn refills_settled() {
    let pending = || {
        ["users", "orders"]
            .iter()
            .map(|t| w().stat(&format!("coordinators.{t}.pending_rehydrates")))
            .sum::<u64>()
    };
    for _ in 0..150 {
        if pending() == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("refills never settled: {} pending", pending());
}

/// Caches `keys`, makes the write, and checks key by key that exactly `expected` were
/// invalidated by it (on `table`'s coordinator), that exactly those changed at the origin, that
/// each invalidated key is then served from the copy its coordinator refilled (an L2 hit) as
/// the origin answers it, and each other one still from L1.
fn view_write_and_check(
    keys: &[String],
    table: &str,
    write: (&str, &str, Value),
    expected: &[&String],
) {
    let before: Vec<Vec<u8>> = keys.iter().map(|k| cached(k)).collect();
    let (method, path, body) = write;
    let a = w().send_json(method, path, &body);
    assert!(a.status < 300, "{method} {path}: {}", a.text());
    let token = Worker::token_of(&a);
    let seq = seq_of(&token);
    refills_settled();
    for (key, old) in keys.iter().zip(&before) {
        let stale = w().last_invalidated(key, table) == Some(seq);
        // Before the direct read below, which stores its own copy.
        let refilled = stale.then(|| w().get_with(key, &[("x-edgecache-min-seq", &token)]));
        let origin = w().get_with(key, &[("cache-control", "no-cache")]);
        assert_eq!(origin.status, 200, "{key}: {}", origin.text());
        let changed = &origin.body != old;
        assert_eq!(
            (stale, changed),
            (expected.contains(&key), expected.contains(&key)),
            "{key} after {method} {path} {body}: (invalidated, changed)"
        );
        let again = w().get_with(key, &[("x-edgecache-min-seq", &token)]);
        assert_eq!(
            again.body, origin.body,
            "{key} is served as the origin answers it"
        );
        match refilled {
            Some(refilled) => assert_eq!(
                (refilled.outcome(), refilled.text()),
                ("HIT-L2", origin.text()),
                "{key}: refilled by the {table} coordinator as the origin answers it"
            ),
            None => assert_eq!(
                again.outcome(),
                "HIT-L1",
                "{key}: spared, still served from L1"
            ),
        }
    }
}

/// The join view (`usersWithOrders`, declared in wrangler.toml with users.id and
/// orders.userId bound to its id): a write stales only the view pages and records whose view
/// row it changed, on either table's coordinator.
#[test]
fn a_write_stales_only_the_view_keys_showing_its_user() {
    let _alone = serial(&ONE_AT_A_TIME);
    let pages: Vec<String> = (0..6)
        .map(|k| format!("/v1/usersWithOrders?limit=50&offset={}", 50 * k))
        .collect();
    let id = rows(&cached(&pages[2]))[10]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let first = rows(&cached(&pages[0]))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let record = format!("/v1/usersWithOrders/{id}");
    let mut keys = pages.clone();
    keys.push(record.clone());
    keys.push(format!("/v1/usersWithOrders/{first}"));
    let user = format!("/v1/users/{id}");

    // The view does not show a user's age: no view key changes.
    view_write_and_check(&keys, "users", ("PATCH", &user, json!({"age": 33})), &[]);
    // A new first name changes the user's view row: its page and its record.
    let showing = [&pages[2], &record];
    view_write_and_check(
        &keys,
        "users",
        ("PATCH", &user, json!({"firstName": "Viewed"})),
        &showing,
    );
    // An order for the user changes its count and total, through the orders coordinator.
    let order = json!({"id": "view-order-1", "userId": id, "item": "lamp", "quantity": 1, "totalCents": 1234});
    view_write_and_check(&keys, "orders", ("POST", "/v1/orders", order), &showing);
    // The view does not show an order's status.
    let status = json!({"status": "shipped"});
    view_write_and_check(
        &keys,
        "orders",
        ("PATCH", "/v1/orders/view-order-1", status),
        &[],
    );
}

/// A refill of a view's key stamps the view's other table before reading the view, so a write
/// of that table landing between the read and the refill's registration there is not lost: the
/// registration is refused and the copy not kept. The users coordinator's refill holds its
/// origin answer (`slow_refill`) while an order for the user is written; the next read is the
/// origin's answer with the order, never the refill's copy without it.
#[test]
fn a_view_refill_overtaken_by_a_write_of_the_other_table_is_not_kept() {
    let faults = Faulted::on(w(), &ONE_AT_A_TIME);
    let id = w().create_user("viewrace", "Race");
    let key = format!("/v1/usersWithOrders/{id}");
    cached(&key);
    // Nothing else queued: the PATCH's only refill due at once is the view key's.
    refills_settled();
    let refills = || w().stat("coordinators.users.refills");
    let before = refills();
    faults.set(json!({"next_write_fault": "slow_refill"}));
    let user = format!("/v1/users/{id}");
    let a = w().send_json("PATCH", &user, &json!({"firstName": "Raced"}));
    assert_eq!(a.status, 200, "{}", a.text());
    let started = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        refills() > before
    });
    assert!(started, "the users coordinator refills the view key");
    // Past its stamps and its read: the order lands while its answer is held.
    std::thread::sleep(Duration::from_millis(200));
    let order = json!({"id": unique("race-order"), "userId": id, "item": "lamp", "quantity": 1, "totalCents": 500});
    let o = w().send_json("POST", "/v1/orders", &order);
    assert!(o.status < 300, "{}", o.text());
    refills_settled();
    let tokens = format!("{},{}", Worker::token_of(&a), Worker::token_of(&o));
    let served = w().get_with(&key, &[("x-edgecache-min-seq", &tokens)]);
    let origin = w().get_with(&key, &[("cache-control", "no-cache")]);
    assert_eq!(origin.json()["data"]["orderCount"], 1, "{}", origin.text());
    assert_eq!(
        served.text(),
        origin.text(),
        "served {}: the order is shown",
        served.outcome()
    );
}
