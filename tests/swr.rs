//! Stale-while-revalidate in the real runtime: a rule's `swr_secs` lets an expired copy be
//! served as `STALE` while one background refill runs, never an invalidated one, and never
//! on a route without it; for a view's keys too (the view reads `users` and `orders`).

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::Worker;
use serde_json::json;

fn w() -> &'static Worker {
    static W: OnceLock<Worker> = OnceLock::new();
    W.get_or_init(|| {
        Worker::start_with(&[(
            "EDGECACHE_RULES",
            r#"[{"pattern":"/v1/users/*","ttl_secs":1,"swr_secs":30},
                {"pattern":"/v1/usersWithOrders/*","ttl_secs":2,"swr_secs":30},
                {"pattern":"/v1/orders*","ttl_secs":1}]"#,
        )])
    })
}

fn field(a: &common::Answer, name: &str) -> String {
    a.json()["data"][name].as_str().unwrap_or("").to_string()
}

#[test]
fn an_expired_copy_is_served_stale_while_one_refill_runs() {
    let id = w().create_user("swr", "Swr");
    let path = format!("/v1/users/{id}");
    let fresh = w().warm(&path);
    std::thread::sleep(Duration::from_millis(1_300));
    let stale = w().get(&path);
    assert_eq!(stale.outcome(), "STALE", "{:?}", stale.headers);
    assert_eq!(
        stale.header("x-edgecache-stale-reason"),
        Some("stale_while_revalidate")
    );
    assert_eq!(stale.body, fresh.body);
    // The coordinator refills the key into L2 (TTL 1 s again): a read finds it there.
    let refilled = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        w().get(&path).outcome() == "HIT-L2"
    });
    assert!(refilled, "the background refill stored a fresh copy");
}

#[test]
fn an_invalidated_copy_is_never_served_stale() {
    let id = w().create_user("swr-inv", "SwrInv");
    let path = format!("/v1/users/{id}");
    w().warm(&path);
    let a = w().send_json("PATCH", &path, &json!({"city": "Afterwards"}));
    assert_eq!(a.status, 200, "{}", a.text());
    // Past the TTL of the copy the write's refill stored too, so only the old, invalidated
    // copy is left in this isolate: stale-while-revalidate must not serve it.
    std::thread::sleep(Duration::from_millis(2_500));
    let read = w().get(&path);
    assert_eq!(
        field(&read, "city"),
        "Afterwards",
        "{} served the invalidated copy",
        read.outcome()
    );
}

#[test]
fn without_swr_an_expired_copy_is_a_miss() {
    let path = "/v1/orders?limit=2&offset=7";
    w().warm(path);
    std::thread::sleep(Duration::from_millis(1_300));
    assert_eq!(w().get(path).outcome(), "MISS");
}

// The view's keys have a TTL of 2 s: a copy is stored in L2 for its remaining whole seconds
// after it is registered, and a view's copy is registered with both tables' coordinators first.

#[test]
fn an_expired_view_copy_is_served_stale_then_refilled_from_the_origin() {
    let id = w().create_user("swr-view", "SwrView");
    let path = format!("/v1/usersWithOrders/{id}");
    let cached = w().warm(&path);
    // The origin changes behind the cache (no write through it, so nothing is invalidated):
    // only a refill from the origin can show it.
    let direct_write = w().send_json(
        "PATCH",
        &format!("/_edgecache/test/origin/v1/users/{id}"),
        &json!({"lastName": "Refilled"}),
    );
    assert_eq!(direct_write.status, 200, "{}", direct_write.text());
    std::thread::sleep(Duration::from_millis(2_300));
    let stale = w().get(&path);
    assert_eq!(stale.outcome(), "STALE", "{:?}", stale.headers);
    assert_eq!(
        stale.header("x-edgecache-stale-reason"),
        Some("stale_while_revalidate")
    );
    assert_eq!(stale.body, cached.body);
    let origin = w().get(&format!("/_edgecache/test/origin{path}"));
    assert_eq!(field(&origin, "lastName"), "Refilled", "{}", origin.text());
    // The coordinator refills the key into L2: a read finds it there, as the origin has it.
    let refilled = (0..50).find_map(|_| {
        std::thread::sleep(Duration::from_millis(100));
        Some(w().get(&path)).filter(|a| a.outcome().starts_with("HIT"))
    });
    let refilled = refilled.expect("the background refill stored a fresh copy");
    assert_eq!(
        String::from_utf8_lossy(&refilled.body),
        String::from_utf8_lossy(&origin.body),
        "{}",
        refilled.outcome()
    );
}

#[test]
fn a_view_copy_a_write_to_its_other_table_invalidated_is_never_served_stale() {
    let id = w().create_user("swr-view-inv", "SwrViewInv");
    let path = format!("/v1/usersWithOrders/{id}");
    w().warm(&path);
    // The view's tables are `orders`, `users` (bound ones, sorted): a stale read would ask
    // `orders`' coordinator to refill it, and this write goes through `users`' alone.
    let a = w().send_json(
        "PATCH",
        &format!("/v1/users/{id}"),
        &json!({"lastName": "Written"}),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    // Past the TTL of the copy the write's refill stored too, so only the old, invalidated
    // copy is left in this isolate: stale-while-revalidate must not serve it.
    std::thread::sleep(Duration::from_millis(2_500));
    let read = w().get(&path);
    assert_eq!(
        field(&read, "lastName"),
        "Written",
        "{} served the invalidated copy",
        read.outcome()
    );
}
