//! Write-through: after a PATCH on the built-in D1 origin, the coordinator rebuilds the
//! record's cached copy from the write's after image instead of reading the origin again, and
//! the copy is byte for byte what the origin answers.
//!
//! The proof that no origin read refilled it: the write carries the `crash_during_rehydrate`
//! test fault, which kills the coordinator in its next refill, before anything is stored. Only
//! the record is cached here, so a refill of it would leave nothing in L2 and the next read
//! would be a MISS; the rebuilt copy is an L2 hit. A list page the write changed only where it
//! shows the row is patched in place from its L2 copy the same way.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::{Answer, Faulted, Worker};
use serde_json::json;

/// The faults are isolate-wide: one test at a time injects them.
static FAULTS: Mutex<()> = Mutex::new(());

/// Reads `path` with the write's `token` until its rebuilt copy is an L2 hit (it is stored
/// after the write's answer); the last answer.
fn rebuilt_copy(w: &Worker, path: &str, token: &str) -> Answer {
    let mut last = None;
    for _ in 0..30 {
        let r = w.get_with(path, &[("x-edgecache-min-seq", token)]);
        assert_eq!(r.status, 200, "{}", r.text());
        if r.outcome() == "HIT-L2" {
            return r;
        }
        assert_ne!(r.outcome(), "HIT-L1", "the old copy is not served");
        last = Some(r);
        std::thread::sleep(Duration::from_millis(100));
    }
    last.unwrap()
}

#[test]
fn a_patch_rebuilds_the_records_copy_without_reading_the_origin() {
    let w = Worker::shared();
    let faults = Faulted::on(w, &FAULTS);
    let id = w.create_user("through", "Thru");
    let path = format!("/v1/users/{id}");
    w.warm(&path);
    faults.set(json!({"next_write_fault": "crash_during_rehydrate"}));
    let a = w.send_json("PATCH", &path, &json!({"firstName": "Rebuilt", "age": 41}));
    assert_eq!(a.status, 200, "{}", a.text());
    let token = Worker::token_of(&a);
    let hit = rebuilt_copy(w, &path, &token);
    assert_eq!(
        hit.outcome(),
        "HIT-L2",
        "the rebuilt copy, not a refill (body {})",
        hit.text()
    );
    assert_eq!(hit.json()["data"]["firstName"], "Rebuilt");
    let origin = w.get_with(&path, &[("cache-control", "no-cache")]);
    assert_eq!(origin.status, 200);
    assert_eq!(
        hit.text(),
        origin.text(),
        "the rebuilt copy is the origin's answer, byte for byte"
    );
}

/// A PATCH that keeps the user's place in a list (the list's filter and order columns
/// unchanged) patches the cached page showing it from its L2 copy: no refill runs (the write
/// carries the refill-crash fault), the next read is an L2 hit, and its body is byte for byte a
/// direct origin read's.
#[test]
fn a_patch_rebuilds_a_page_showing_the_row_in_place() {
    let w = Worker::shared();
    let faults = Faulted::on(w, &FAULTS);
    let first = common::unique("Paged").replace('-', "");
    let ids: Vec<String> = (0..3).map(|_| w.create_user("paged", &first)).collect();
    let page = format!("/v1/users?firstName={first}&limit=10");
    let before = w.warm(&page);
    assert_eq!(before.json()["data"].as_array().unwrap().len(), 3);
    faults.set(json!({"next_write_fault": "crash_during_rehydrate"}));
    let patched = || common::num(&w.stats(), "coordinators.users.patched");
    let patched_before = patched();
    let a = w.send_json(
        "PATCH",
        &format!("/v1/users/{}", ids[1]),
        &json!({"age": 77, "city": "Patched"}),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    // The page is patched after the write's answer: wait for the coordinator to count it (a
    // read before that would miss and fill the page itself).
    for _ in 0..30 {
        if patched() > patched_before {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        patched(),
        patched_before + 1,
        "the coordinator patched the page"
    );
    let hit = w.get_with(&page, &[("x-edgecache-min-seq", &Worker::token_of(&a))]);
    assert_eq!(
        hit.outcome(),
        "HIT-L2",
        "the patched page, not a refill (body {})",
        hit.text()
    );
    assert_eq!(hit.json()["data"][1]["city"], "Patched");
    let origin = w.get_with(&page, &[("cache-control", "no-cache")]);
    assert_eq!(origin.status, 200);
    assert_eq!(
        hit.text(),
        origin.text(),
        "the patched page is the origin's answer, byte for byte"
    );
}
