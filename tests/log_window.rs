//! Invariant 4, second half: an entry filled before the oldest invalidation a coordinator still
//! remembers is treated as stale, even if nothing ever named it — the edge cannot know what the
//! forgotten part of the log said. The worker runs with a tiny log to make that happen.

mod common;

use common::{Worker, OPERATOR_TOKEN};
use serde_json::json;

fn invalidate_urls(w: &Worker, urls: Vec<String>) {
    let a = w.admin_as(
        OPERATOR_TOKEN,
        "POST",
        "/_edgecache/admin/tenants/local/invalidate",
        Some(&json!({ "urls": urls })),
    );
    assert_eq!(a.status, 200, "{}", a.text());
}

#[test]
fn entries_older_than_the_retained_log_are_not_served() {
    let w = Worker::start_with(&[
        ("EDGECACHE_INVALIDATION_LOG", "8"),
        (
            "EDGECACHE_RULES",
            r#"[{"pattern":"/v1/*","rehydrate":false}]"#,
        ),
    ]);
    let id = w.create_user("logwin", "Lou");
    let path = format!("/v1/users/{id}");
    w.get(&path);
    assert_eq!(w.get(&path).outcome(), "HIT-L1");

    // Control: a few invalidations of other keys fit in the log; ours is still a hit.
    invalidate_urls(
        &w,
        (0..3)
            .map(|i| format!("/v1/users?limit={}", i + 1))
            .collect(),
    );
    assert_eq!(
        w.get(&path).outcome(),
        "HIT-L1",
        "unrelated invalidations within the log"
    );

    // Twenty more push everything from before our fill out of the log.
    invalidate_urls(
        &w,
        (0..20)
            .map(|i| format!("/v1/users?limit={}", i + 10))
            .collect(),
    );
    let a = w.get(&path);
    assert_eq!(a.status, 200);
    assert_ne!(
        a.outcome(),
        "HIT-L1",
        "filled before the coordinator's floor: must not be trusted"
    );
    assert_eq!(
        w.get(&path).outcome(),
        "HIT-L1",
        "the refill is stamped after the floor"
    );
}
