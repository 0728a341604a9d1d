//! Write-through: after a PATCH on the built-in D1 origin, the coordinator rebuilds the
//! record's cached copy from the write's after image instead of reading the origin again, and
//! the copy is byte for byte what the origin answers.
//!
//! The proof that no origin read refilled it: the write carries the `crash_during_rehydrate`
//! test fault, which kills the coordinator in its next refill, before anything is stored. Only
//! the record is cached here, so a refill of it would leave nothing in L2 and the next read
//! would be a MISS; the rebuilt copy is an L2 hit.

mod common;

use std::time::Duration;

use common::Worker;
use serde_json::json;

#[test]
fn a_patch_rebuilds_the_records_copy_without_reading_the_origin() {
    let w = Worker::shared();
    let id = w.create_user("through", "Thru");
    let path = format!("/v1/users/{id}");
    w.warm(&path);
    w.faults(json!({"next_write_fault": "crash_during_rehydrate"}));
    let a = w.send_json("PATCH", &path, &json!({"firstName": "Rebuilt", "age": 41}));
    assert_eq!(a.status, 200, "{}", a.text());
    let token = Worker::token_of(&a);
    // The copy is stored after the write's answer: wait for it a little.
    let mut last = None;
    for _ in 0..30 {
        let r = w.get_with(&path, &[("x-edgecache-min-seq", &token)]);
        assert_eq!(r.status, 200, "{}", r.text());
        if r.outcome() == "HIT-L2" {
            last = Some(r);
            break;
        }
        assert_ne!(r.outcome(), "HIT-L1", "the old copy is not served");
        last = Some(r);
        std::thread::sleep(Duration::from_millis(100));
    }
    let hit = last.unwrap();
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
