//! The security probe's findings (tried as an attacker would), each checked in the real runtime:
//! route rules see the normalised path, unknown methods are refused, writes refuse ids no read
//! could ever name, and oversized admin bodies are 413.

mod common;

use common::Worker;
use serde_json::json;

fn w() -> &'static Worker {
    Worker::shared()
}

/// A fresh tenant on the built-in origin (so rules set here touch no other test).
fn tenant(prefix: &str) -> String {
    w().create_tenant(prefix)["tenant"]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn rules_match_the_normalised_path_whatever_its_spelling() {
    let t = tenant("rules-enc");
    let rule = json!({"pattern": "/v1/orders*", "no_store": true});
    let a = w().admin(
        "PUT",
        &format!("/_edgecache/admin/tenants/{t}/rules"),
        Some(&rule),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    // `%6F` is `o`: the same resource as /v1/orders, so the same rule.
    for spelling in ["/v1/orders", "/v1/%6Frders", "/v1/%6frders", "/v1/o%72ders"] {
        let path = format!("/t/{t}{spelling}?limit=3&offset=22");
        for _ in 0..2 {
            let r = w().get(&path);
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            assert_eq!(
                r.outcome(),
                "BYPASS",
                "{path} must follow the no_store rule"
            );
        }
    }
}

#[test]
fn unknown_methods_are_405_with_allow_and_fill_nothing() {
    let offset = 700 + (std::process::id() % 200);
    let path = format!("/v1/users?limit=2&offset={offset}");
    for method in [
        "PROPFIND", "MKCOL", "LOCK", "PURGE", "SEARCH", "COPY", "MOVE", "QUERY",
    ] {
        let a = w().request(method, &path, &[], None);
        assert_eq!(a.status, 405, "{method}: {}", a.text());
        assert_eq!(a.error_code(), "method_not_allowed", "{method}");
        let allow = a
            .header("allow")
            .unwrap_or_else(|| panic!("{method}: no allow"));
        assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
        assert_eq!(a.header("cache-control"), Some("no-store"), "{method}");
    }
    // None of them filled the cache: the first GET is the first fill.
    assert_eq!(w().get(&path).outcome(), "MISS");
    let record = w().request("PROPFIND", "/v1/users/123-abc", &[], None);
    assert_eq!(record.status, 405);
    assert!(record.header("allow").unwrap().contains("DELETE"));
}

#[test]
fn writes_refuse_ids_that_no_read_could_name() {
    let id = "z".repeat(3000);
    let path = format!("/v1/users/{id}");
    assert_eq!(w().get(&path).status, 414, "reads of such an id are 414");
    let body = json!({"firstName": "Too", "lastName": "Long", "email": "too@long.example"});
    for method in ["PUT", "PATCH"] {
        let a = w().send_json(method, &path, &body);
        assert_eq!(a.status, 414, "{method}: {}", a.text());
        assert_eq!(a.error_code(), "uri_too_long");
    }
    let a = w().request("DELETE", &path, &[], None);
    assert_eq!(a.status, 414, "DELETE: {}", a.text());
    let create = w().send_json(
        "POST",
        "/v1/users",
        &json!({"id": id, "firstName": "Too", "lastName": "Long", "email": "too@long.example"}),
    );
    assert_eq!(
        create.status,
        414,
        "POST with such an id: {}",
        create.text()
    );
}

#[test]
fn admin_bodies_over_the_limit_are_413() {
    let t = tenant("big-body");
    let pattern = format!("/v1/{}", "a".repeat(70 * 1024));
    let rule = json!({"pattern": pattern, "ttl_secs": 60});
    let a = w().admin(
        "PUT",
        &format!("/_edgecache/admin/tenants/{t}/rules"),
        Some(&rule),
    );
    assert_eq!(a.status, 413, "{}", a.text());
    assert_eq!(a.error_code(), "body_too_large");
    let many = json!({"urls": vec!["/v1/users?limit=1"; 5000]});
    let a = w().admin(
        "POST",
        &format!("/_edgecache/admin/tenants/{t}/invalidate"),
        Some(&many),
    );
    assert_eq!(a.status, 413, "{}", a.text());
    // A malformed rule that fits is still the rule's fault.
    let a = w().admin(
        "PUT",
        &format!("/_edgecache/admin/tenants/{t}/rules"),
        Some(&json!({"pattern": 7})),
    );
    assert_eq!((a.status, a.error_code().as_str()), (400, "invalid_rule"));
}

/// Anonymous reads of ever new keys cannot grow a coordinator without bound: past
/// `EDGECACHE_MAX_REGISTRATIONS` it forgets the least recently filled keys, and a forgotten key
/// is never served from a copy it no longer tracks (the next read of it is a miss, and a write
/// of its record still reaches every reader).
#[test]
fn a_coordinator_tracks_at_most_its_cap_of_keys() {
    const CAP: u64 = 8;
    let w = Worker::start_with(&[("EDGECACHE_MAX_REGISTRATIONS", &CAP.to_string())]);
    let orders = |i: u32| format!("/v1/orders?limit=1&offset={i}");
    for i in 0..20 {
        let a = w.get(&orders(i));
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let first = orders(0);
    // Registration happens after the response, and this isolate sees the evictions at its
    // next view refresh: wait out the staleness bound (1 s).
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let keys = w.stat("coordinators.orders.keys");
    assert!(keys <= CAP, "{keys} keys tracked, cap {CAP}");
    assert!(keys > 0, "the most recent fills are tracked");
    let again = w.get(&first);
    assert_eq!(
        again.outcome(),
        "MISS",
        "the least recently filled key was forgotten and its copy dropped"
    );
    let recent = w.get(&orders(19));
    assert_eq!(recent.outcome(), "HIT-L1", "a recent key is still cached");
}
