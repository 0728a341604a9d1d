//! The per-data-centre change relay in the real runtime (workerd's Cache API is the data
//! centre's). One isolate plays several: `POST /_edgecache/test/forget-views` makes it forget
//! its views, as a newly started isolate of the same data centre has none, and
//! `keep_views_on_write` makes a write through it look like one through another isolate.
//! Invariants 4 (an answer older than the bound is not used) and 5 (a token newer than the
//! relayed answer asks the coordinator) are checked here, and the relay's use in stats.

mod common;

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::{num, Faulted, Worker};
use serde_json::{json, Value};

const BOUND_MS: u64 = 3_000;

fn w() -> &'static Worker {
    static W: OnceLock<Worker> = OnceLock::new();
    W.get_or_init(|| {
        Worker::start_with(&[(
            "EDGECACHE_RULES",
            &format!(r#"[{{"pattern":"/v1/users*","max_staleness_ms":{BOUND_MS}}}]"#),
        )])
    })
}

/// Faults (and views) are isolate-wide: one test at a time, faults cleared however it ends.
fn serial() -> Faulted<'static> {
    static M: Mutex<()> = Mutex::new(());
    Faulted::on(w(), &M)
}

/// This isolate's view of `users`: lag samples and refreshes by source.
fn view() -> Value {
    w().stats()["views"]["users"].clone()
}

/// As a new isolate of the same data centre: no views.
fn forget_views() {
    let a = w().request("POST", "/_edgecache/test/forget-views", &[], None);
    assert_eq!(a.status, 204, "{}", a.text());
}

fn last_name(path: &str, headers: &[(&str, &str)]) -> (String, String) {
    let a = w().get_with(path, headers);
    assert_eq!(a.status, 200, "{}", a.text());
    (
        a.json()["data"]["lastName"].as_str().unwrap().to_string(),
        a.outcome().to_string(),
    )
}

/// A user whose point key is cached, and a whole answer (`since 0`) in the relay: the isolate
/// forgot its views, so its next refresh asked the coordinator for everything and shared it.
fn cached_user(prefix: &str) -> String {
    let id = w().create_user(prefix, "Relay");
    let path = format!("/v1/users/{id}");
    w().warm(&path);
    forget_views();
    assert_eq!(last_name(&path, &[]).1, "HIT-L1");
    id
}

#[test]
fn a_new_isolate_takes_a_young_relayed_answer_without_asking_the_coordinator() {
    let _s = serial();
    let id = cached_user("relay-new");
    let before = view();
    forget_views();
    let (_, outcome) = last_name(&format!("/v1/users/{id}"), &[]);
    assert_eq!(outcome, "HIT-L1", "the relayed view admits the cached copy");
    let after = view();
    assert_eq!(
        (
            num(&after, "relay_refreshes") - num(&before, "relay_refreshes"),
            num(&after, "coordinator_refreshes") - num(&before, "coordinator_refreshes"),
        ),
        (1, 0),
        "refreshed from the relay, not the coordinator: {before} → {after}"
    );
}

#[test]
fn a_relayed_answer_older_than_the_bound_is_not_used() {
    let _s = serial();
    let id = cached_user("relay-old");
    let path = format!("/v1/users/{id}");
    // A write through "another isolate": this one's view and the relay stay as they were.
    w().faults(json!({"keep_views_on_write": true}));
    let a = w().send_json("PATCH", &path, &json!({"lastName": "Written"}));
    assert_eq!(a.status, 200, "{}", a.text());
    forget_views();
    std::thread::sleep(Duration::from_millis(BOUND_MS + 300));
    let before = view();
    let (name, outcome) = last_name(&path, &[]);
    assert_eq!(
        name, "Written",
        "served {outcome} from an answer older than the bound"
    );
    assert!(
        num(&view(), "coordinator_refreshes") > num(&before, "coordinator_refreshes"),
        "the coordinator was asked"
    );
}

#[test]
fn a_token_newer_than_the_relayed_answer_asks_the_coordinator() {
    let _s = serial();
    let id = cached_user("relay-token");
    let path = format!("/v1/users/{id}");
    w().faults(json!({"keep_views_on_write": true}));
    let a = w().send_json("PATCH", &path, &json!({"lastName": "Token"}));
    assert_eq!(a.status, 200, "{}", a.text());
    let token = Worker::token_of(&a);
    forget_views();
    let before = view();
    let (name, _) = last_name(&path, &[("x-edgecache-min-seq", &token)]);
    assert_eq!(name, "Token", "read your writes through a young relay");
    assert!(num(&view(), "coordinator_refreshes") > num(&before, "coordinator_refreshes"));
}

#[test]
fn a_write_through_this_isolate_is_seen_by_its_next_read_despite_a_young_relay() {
    let _s = serial();
    let id = cached_user("relay-own");
    let path = format!("/v1/users/{id}");
    let a = w().send_json("PATCH", &path, &json!({"lastName": "Own"}));
    assert_eq!(a.status, 200, "{}", a.text());
    let before = view();
    assert_eq!(last_name(&path, &[]).0, "Own");
    let after = view();
    assert_eq!(
        num(&after, "relay_refreshes"),
        num(&before, "relay_refreshes"),
        "the relay's answer predates the write: not used"
    );
    // The write's lag (coordinator's record → this view) was measured.
    assert!(num(&after, "samples") > num(&before, "samples"), "{after}");
}
