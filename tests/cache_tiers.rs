//! The cache tiers under per-route rules: TTL expiry, `no_store`, L2 behind an evicted L1, and
//! L1's byte bound. One private worker with a small L1 (64 KiB); every test is serialized
//! because L1 is isolate-wide (one test's flood would evict another test's keys).

mod common;

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::{serial, Worker};

const RULES: &str = r#"[{"pattern":"/v1/orders*","ttl_secs":1},{"pattern":"/v1/users/*","no_store":true},{"pattern":"/v1/users*","max_staleness_ms":60000}]"#;
const L1_MAX: u64 = 65536;

static SERIAL: Mutex<()> = Mutex::new(());

fn w() -> &'static Worker {
    static W: OnceLock<Worker> = OnceLock::new();
    W.get_or_init(|| {
        Worker::start_with(&[
            ("EDGECACHE_RULES", RULES),
            ("EDGECACHE_L1_MAX_BYTES", &L1_MAX.to_string()),
        ])
    })
}

#[test]
fn ttl_rule_expires_orders_but_not_users() {
    let _s = serial(&SERIAL);
    let orders = "/v1/orders?limit=3&offset=17";
    let users = "/v1/users?limit=3&offset=17"; // default TTL (24 h): the control
    let first = w().fill(orders);
    w().fill(users);
    std::thread::sleep(Duration::from_millis(1200));
    let expired = w().get(orders);
    assert_eq!(
        expired.outcome(),
        "MISS",
        "a 1 s TTL ran out 1.2 s ago: the copy must not be served"
    );
    assert_eq!(expired.body, first.body, "same data, refetched");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(w().get(orders).outcome(), "HIT-L1", "refilled after expiry");
    assert_eq!(
        w().get(users).outcome(),
        "HIT-L1",
        "the TTL rule of /v1/orders* must not expire /v1/users"
    );
}

#[test]
fn no_store_route_bypasses_every_time() {
    let _s = serial(&SERIAL);
    let before = w().stat("edge.bypass");
    let mut bodies = Vec::new();
    for i in 0..3 {
        let a = w().get_debug("/v1/users/123-abc");
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(a.outcome(), "BYPASS", "read {i}");
        assert_eq!(a.header("cache-control"), Some("no-store"), "read {i}");
        assert_eq!(a.header("x-edgecache-not-stored"), Some("route_no_store"));
        assert_eq!(a.json()["data"]["id"], "123-abc");
        bodies.push(a.body);
    }
    assert_eq!(w().stat("edge.bypass") - before, 3);
    // Control: a list of the same table matches `/v1/users*`, not `/v1/users/*`, and is cached.
    let list = "/v1/users?limit=2&offset=123";
    w().fill(list);
    assert_ne!(
        w().get(list).header("cache-control"),
        Some("no-store"),
        "cached routes are not no-store"
    );
    // Control: records of another table are cached.
    w().fill("/v1/orders/o-00042");
}

#[test]
fn l2_serves_what_l1_evicted_then_l1_again() {
    let _s = serial(&SERIAL);
    let a = "/v1/users?limit=3&offset=400";
    let first = w().fill(a);
    let evictions = w().stat("l1.evictions");
    // ~40 lists of ~5.6 KB each, several times L1's 64 KiB, each read twice as `a` was: L1
    // keeps re-read entries over one-off ones (scan resistance), so a flood of one-off reads
    // would not displace `a`; a flood of re-read ones does.
    for i in 0..40 {
        let path = format!("/v1/users?limit=40&offset={}", 500 + i);
        for _ in 0..2 {
            let r = w().get(&path);
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Let the last fills land (they are stored after the response).
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        w().stat("l1.evictions") > evictions,
        "the flood must have evicted something: {}",
        w().stats()
    );
    let from_l2 = w().get(a);
    assert_eq!(
        from_l2.outcome(),
        "HIT-L2",
        "evicted from L1, the copy is still in L2"
    );
    assert_eq!(from_l2.body, first.body);
    assert_eq!(from_l2.header("etag"), first.header("etag"));
    let promoted = w().get(a);
    assert_eq!(promoted.outcome(), "HIT-L1", "an L2 hit is promoted to L1");
    assert_eq!(promoted.body, first.body);
}

#[test]
fn l1_stays_within_its_byte_bound_under_a_flood() {
    let _s = serial(&SERIAL);
    let evictions = w().stat("l1.evictions");
    // 300 distinct keys of varied sizes (1..=50 rows), read by 4 threads.
    let paths: Vec<String> = (0..300)
        .map(|i| format!("/v1/users?limit={}&offset={}", 1 + i % 50, 600 + i))
        .collect();
    std::thread::scope(|s| {
        for chunk in paths.chunks(75) {
            s.spawn(move || {
                for p in chunk {
                    let r = w().get(p);
                    assert_eq!(r.status, 200, "{p}: {}", r.text());
                }
            });
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let stats = w().stats();
    let l1 = &stats["l1"];
    assert_eq!(common::num(l1, "max_bytes"), L1_MAX, "{stats}");
    assert!(
        common::num(l1, "bytes") <= L1_MAX,
        "L1 holds more than its bound: {stats}"
    );
    assert!(
        common::num(l1, "evictions") > evictions,
        "a 300-key flood must evict: {stats}"
    );
    let entries = common::num(l1, "entries");
    assert!(
        entries > 0 && entries < 300,
        "L1 keeps some, not all: {stats}"
    );
    // Control: L1 still works after the flood (the bound is not "store nothing").
    let last = "/v1/users?limit=1&offset=5";
    w().fill(last);
}

#[test]
fn an_entry_larger_than_l1_is_served_from_l2_only() {
    let _s = serial(&SERIAL);
    let path = "/v1/users?limit=1000&offset=0"; // ~140 KB: more than L1's 64 KiB
    let rejections = w().stat("l1.rejections");
    let first = w().get(path);
    assert_eq!((first.status, first.outcome()), (200, "MISS"));
    assert!(
        first.body.len() as u64 > L1_MAX,
        "{} bytes",
        first.body.len()
    );
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..2 {
        let a = w().get(path);
        assert_eq!(
            a.outcome(),
            "HIT-L2",
            "read {i}: too large for L1, stored in L2"
        );
        assert_eq!(a.body, first.body);
    }
    assert!(w().stat("l1.rejections") > rejections, "{}", w().stats());
    assert!(w().stat("l1.bytes") <= L1_MAX);
}

/// "A second read right after a MISS waits for the fill and is HIT-L1": never a second origin
/// fetch. Pairs of back-to-back reads on fresh keys of the 1 s TTL route (whose copies are too
/// short-lived for L2, so only L1 can answer) hit the window between a follower's lookup and its
/// `begin_fill`; ten pairs make a lost race all but certain to show if the window exists.
#[test]
fn back_to_back_reads_after_a_miss_are_hits() {
    let _s = serial(&SERIAL);
    let fetches = w().stat("edge.origin_fetches");
    let mut seconds = Vec::new();
    for i in 0..10 {
        let path = format!("/v1/orders?limit=2&offset={}", 900 + i);
        let a = w().get(&path);
        assert_eq!(a.outcome(), "MISS", "{path}");
        let b = w().get(&path);
        seconds.push(format!("{path}: {}", b.outcome()));
    }
    let extra = w().stat("edge.origin_fetches") - fetches - 10;
    assert!(
        seconds.iter().all(|s| s.ends_with("HIT-L1")) && extra == 0,
        "a read right after a MISS fetched from the origin again ({extra} extra fetches): {seconds:#?}"
    );
}

/// Resets the faults when dropped (a test that sets them must not leak them into the next).
/// "Correctness never depends on a purge": a write purges at most 100 L2 copies of the keys it
/// stales and does not refill (refills are off here: a refill replaces the copy), so with more
/// than 100 cached view keys some stale L2 copies stay. With L1 switched off, reads go to those
/// copies, and every one must fail validation. The view is declared as a plain list of its
/// tables (no bindings), so every write stales every key of it, as it must when the planner
/// cannot tell which rows it reads: a private worker, as the shared one declares the view's
/// bindings.
#[test]
fn a_stale_l2_copy_fails_validation_without_any_purge() {
    let w = Worker::start_with(&[
        (
            "EDGECACHE_VIEWS",
            r#"{"usersWithOrders": ["users", "orders"]}"#,
        ),
        (
            "EDGECACHE_RULES",
            r#"[{"pattern":"/v1/*","rehydrate":false}]"#,
        ),
    ]);
    let w = &w;
    let id = common::unique("l2v");
    let a = w.send_json(
        "POST",
        "/v1/users",
        &serde_json::json!({"id": id, "firstName": "Val", "lastName": "Before", "email": "v@example.com"}),
    );
    assert_eq!(a.status, 201, "{}", a.text());
    let record = format!("/v1/usersWithOrders/{id}");
    let lists: Vec<String> = (0..110)
        .map(|i| format!("/v1/usersWithOrders?limit=1&offset={i}"))
        .collect();
    w.fill(&record);
    std::thread::scope(|s| {
        for chunk in lists.chunks(28) {
            s.spawn(move || {
                for p in chunk {
                    assert_eq!(w.get(p).status, 200, "{p}");
                }
            });
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    w.faults(serde_json::json!({"disable_l1": true}));
    let a = w.get(&record);
    assert_eq!(a.outcome(), "HIT-L2", "control: the L2 copy is valid");
    assert_eq!(a.json()["data"]["lastName"], "Before");
    let hits = lists
        .iter()
        .filter(|p| w.get(p).outcome() == "HIT-L2")
        .count();
    assert_eq!(hits, lists.len(), "control: every list is in L2");

    let write = w.send_json(
        "PATCH",
        &format!("/v1/users/{id}"),
        &serde_json::json!({"lastName": "After"}),
    );
    assert_eq!(write.status, 200, "{}", write.text());
    let a = w.get(&record);
    assert_eq!(
        (a.outcome(), a.json()["data"]["lastName"].as_str()),
        ("MISS", Some("After")),
        "the L2 copy from before the write was served"
    );
    let served: Vec<&String> = lists
        .iter()
        .filter(|p| w.get(p).outcome() != "MISS")
        .collect();
    assert!(
        served.is_empty(),
        "{} view keys were served from L2 copies older than the write: {served:?}",
        served.len()
    );
    std::thread::sleep(Duration::from_millis(100));
    let a = w.get(&record);
    assert_eq!(
        (a.outcome(), a.json()["data"]["lastName"].as_str()),
        ("HIT-L2", Some("After"))
    );
}
