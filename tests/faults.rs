//! The read path when the origin is slow or failing: coalescing, stale-if-error, errors that are
//! never cached, timeouts, and the stale-set race of invariants 2 and 3.
//!
//! Faults are isolate-global, so every test holds `SERIAL` and a `Faulted` guard that resets the
//! faults when the test ends, however it ends. Rehydration is off for these workers: a refill of
//! an invalidated key would put a fresh copy in L2 and turn the stale-if-error cases into hits.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{seq_of, unique, Answer, Faulted, Worker};
use serde_json::json;

const RULES: &str = r#"[{"pattern":"/v1/*","rehydrate":false}]"#;

static SERIAL: Mutex<()> = Mutex::new(());

fn w() -> &'static Worker {
    static W: OnceLock<Worker> = OnceLock::new();
    W.get_or_init(|| Worker::start_with(&[("EDGECACHE_RULES", RULES)]))
}

/// A worker whose origin reads time out after one second.
fn slow() -> &'static Worker {
    static W: OnceLock<Worker> = OnceLock::new();
    W.get_or_init(|| {
        Worker::start_with(&[
            ("EDGECACHE_RULES", RULES),
            ("EDGECACHE_ORIGIN_TIMEOUT_MS", "1000"),
        ])
    })
}

fn create_user(w: &Worker, prefix: &str, last: &str) -> String {
    let id = unique(prefix);
    let a = w.send_json(
        "POST",
        "/v1/users",
        &json!({"id": id, "firstName": "Fault", "lastName": last, "email": format!("{id}@example.com")}),
    );
    assert_eq!(a.status, 201, "creating {id}: {}", a.text());
    id
}

fn last_name(a: &Answer) -> String {
    a.json()["data"]["lastName"]
        .as_str()
        .unwrap_or_else(|| panic!("no lastName in {}", a.text()))
        .to_string()
}

#[test]
fn concurrent_misses_of_one_key_make_one_origin_fetch() {
    let f = Faulted::on(w(), &SERIAL);
    let path = format!(
        "/v1/orders?limit=4&offset={}",
        100 + std::process::id() % 1000
    );
    f.set(json!({"read_delay_ms": 500}));
    let before = w().stats();
    let barrier = Barrier::new(8);
    let answers: Vec<Answer> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    w().get(&path)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let after = w().stats();
    let delta = |k: &str| common::num(&after, k) - common::num(&before, k);
    let outcomes: Vec<&str> = answers.iter().map(|a| a.outcome()).collect();
    assert!(answers.iter().all(|a| a.status == 200), "{outcomes:?}");
    assert_eq!(
        delta("edge.origin_fetches"),
        1,
        "one fetch for 8 misses: {outcomes:?}"
    );
    assert_eq!(delta("edge.coalesced"), 7, "{outcomes:?}");
    assert_eq!(
        outcomes.iter().filter(|o| **o == "MISS").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| **o == "HIT-L1").count(),
        7,
        "{outcomes:?}"
    );
    assert!(
        answers.iter().all(|a| a.body == answers[0].body),
        "bodies differ"
    );
}

#[test]
fn stale_if_error_serves_the_old_copy_but_never_past_a_token() {
    let f = Faulted::on(w(), &SERIAL);
    let id = create_user(w(), "sie", "Old");
    let path = format!("/v1/users/{id}");
    let old = w().fill(&path);
    assert_eq!(last_name(&old), "Old");
    let new_name = unique("New");
    let write = w().send_json("PATCH", &path, &json!({"lastName": new_name}));
    assert_eq!(write.status, 200, "{}", write.text());
    let token = Worker::token_of(&write);
    let cookie = write.seq_cookie();

    f.set(json!({"fail_reads": true}));
    let stale_before = w().stat("edge.stale");
    let stale = w().get(&path);
    assert_eq!(
        (stale.status, stale.outcome()),
        (200, "STALE"),
        "{}",
        stale.text()
    );
    assert_eq!(stale.body, old.body, "the last good copy, as it was");
    assert_eq!(stale.header("warning"), Some("110 - \"Response is Stale\""));
    assert_eq!(
        stale.header("x-edgecache-stale-reason"),
        Some("origin_unavailable")
    );
    assert_eq!(w().stat("edge.stale") - stale_before, 1);

    // The client that wrote must not be shown the copy from before its write.
    for (how, headers) in [
        ("header", [("x-edgecache-min-seq", token.as_str())]),
        ("cookie", [("cookie", cookie.as_str())]),
    ] {
        let a = w().get_with(&path, &headers);
        assert_ne!(
            a.outcome(),
            "STALE",
            "{how}: stale copy older than the token"
        );
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (502, "origin_unavailable"),
            "{how}: {}",
            a.text()
        );
        assert_eq!(a.header("cache-control"), Some("no-store"));
    }

    f.set(json!({}));
    let fresh = w().get(&path);
    assert_eq!((fresh.status, fresh.outcome()), (200, "MISS"));
    assert_eq!(last_name(&fresh), new_name);
    std::thread::sleep(Duration::from_millis(100));
    let hit = w().get_with(&path, &[("x-edgecache-min-seq", token.as_str())]);
    assert_eq!(hit.outcome(), "HIT-L1");
    assert_eq!(last_name(&hit), new_name);
}

#[test]
fn failing_origin_without_a_copy_is_a_502_that_is_not_cached() {
    let f = Faulted::on(w(), &SERIAL);
    let id = create_user(w(), "nocopy", "Fresh");
    let path = format!("/v1/users/{id}");
    f.set(json!({"fail_reads": true}));
    for _ in 0..2 {
        let a = w().get(&path);
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (502, "origin_unavailable"),
            "{}",
            a.text()
        );
        assert_eq!(a.header("content-type"), Some("application/json"));
        assert_eq!(a.header("cache-control"), Some("no-store"));
        assert!(!a.outcome().starts_with("HIT") && a.outcome() != "STALE");
    }
    f.set(json!({}));
    let a = w().get(&path);
    assert_eq!(
        (a.status, a.outcome()),
        (200, "MISS"),
        "the error was not cached"
    );
    assert_eq!(last_name(&a), "Fresh");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(w().get(&path).outcome(), "HIT-L1");
}

#[test]
fn slow_origin_times_out_with_504_or_serves_stale() {
    let f = Faulted::on(slow(), &SERIAL);
    // No copy: the timeout is the answer.
    let id = create_user(slow(), "slow", "Before");
    let path = format!("/v1/users/{id}");
    f.set(json!({"read_delay_ms": 2500}));
    let started = Instant::now();
    let a = slow().get(&path);
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (504, "origin_timeout"),
        "{}",
        a.text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded by the origin timeout"
    );

    // With a copy that a write made stale: served stale, and says why.
    f.set(json!({}));
    let old = slow().fill(&path);
    let write = slow().send_json("PATCH", &path, &json!({"lastName": "After"}));
    assert_eq!(write.status, 200);
    f.set(json!({"read_delay_ms": 2500}));
    let stale = slow().get(&path);
    assert_eq!(
        (stale.status, stale.outcome()),
        (200, "STALE"),
        "{}",
        stale.text()
    );
    assert_eq!(stale.body, old.body);
    assert_eq!(
        stale.header("x-edgecache-stale-reason"),
        Some("origin_timeout")
    );
    let token = Worker::token_of(&write);
    let a = slow().get_with(&path, &[("x-edgecache-min-seq", token.as_str())]);
    assert_eq!((a.status, a.error_code().as_str()), (504, "origin_timeout"));
    f.set(json!({}));
    assert_eq!(last_name(&slow().get(&path)), "After");
}

/// Invariants 2 and 3. A slow fill of X takes its stamp, then waits; meanwhile a write of X is
/// acknowledged and another read moves the edge's view past the write. The slow fill must carry
/// the stamp from before the write, its late registration must be refused, and from then on no
/// read may be served from it: every read shows the write.
#[test]
fn a_fill_that_races_a_write_is_never_served_after_it() {
    let f = Faulted::on(w(), &SERIAL);
    let x = create_user(w(), "race", "Before");
    let y = create_user(w(), "race-ctl", "Control");
    let x_path = format!("/v1/users/{x}");
    let y_path = format!("/v1/users/{y}");
    w().fill(&y_path);
    let overtaken = w().stat("edge.overtaken");
    f.set(json!({"read_delay_ms": 1500}));

    let done = AtomicBool::new(false);
    let after = unique("After");
    let (slow_read, write, write_acked_while_filling) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let a = w().get_debug(&x_path);
            done.store(true, Ordering::SeqCst);
            a
        });
        std::thread::sleep(Duration::from_millis(300));
        let write = w().send_json("PATCH", &x_path, &json!({"lastName": after}));
        let acked_while_filling = !done.load(Ordering::SeqCst);
        assert_eq!(write.status, 200, "{}", write.text());
        // Another read with the write's token moves this isolate's view past the write while
        // the slow fill is still waiting.
        let token = Worker::token_of(&write);
        let ctl = w().get_with(&y_path, &[("x-edgecache-min-seq", token.as_str())]);
        assert_eq!(ctl.status, 200);
        (reader.join().unwrap(), write, acked_while_filling)
    });
    assert!(
        write_acked_while_filling,
        "the write must land while the slow fill waits; the race did not happen"
    );
    let token = Worker::token_of(&write);
    let w_seq = seq_of(&token);
    assert_eq!(slow_read.status, 200, "{}", slow_read.text());
    assert_eq!(slow_read.outcome(), "MISS");
    let stamp = slow_read
        .stamp("users")
        .expect("debug reads carry x-edgecache-deps");
    assert!(
        stamp < w_seq,
        "invariant 2: the slow fill's stamp ({stamp}) must be from before the write ({w_seq})"
    );
    // Let the slow fill's registration finish (it runs after the response).
    std::thread::sleep(Duration::from_millis(300));
    f.set(json!({}));
    assert!(
        w().stat("edge.overtaken") > overtaken,
        "invariant 3: the late registration must be refused: {}",
        w().stats()["edge"]
    );

    let next = w().get_debug(&x_path);
    assert_eq!(
        next.outcome(),
        "MISS",
        "the slow fill must not have been stored"
    );
    assert_eq!(last_name(&next), after);
    assert!(next.stamp("users").unwrap() >= w_seq);
    std::thread::sleep(Duration::from_millis(100));
    let cookie = write.seq_cookie();
    for headers in [
        vec![],
        vec![("x-edgecache-min-seq", token.as_str())],
        vec![("cookie", cookie.as_str())],
    ] {
        let a = w().get_with(&x_path, &headers);
        assert_eq!(a.status, 200);
        assert_eq!(last_name(&a), after, "{headers:?}: {}", a.outcome());
    }
}
