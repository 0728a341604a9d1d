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

/// Each tenant's admin token and its invalidations have budgets of their own: one tenant
/// spending its own does not starve another's, the operator is not counted, and forged
/// webhooks spend nothing.
#[test]
fn tenants_have_budgets_for_admin_calls_and_invalidations() {
    let w = Worker::start_with(&[
        ("EDGECACHE_ADMIN_CALLS_PER_MIN", "5"),
        ("EDGECACHE_INVALIDATIONS_PER_MIN", "3"),
    ]);
    let created = |prefix: &str| {
        let t = w.create_tenant(prefix);
        let name = t["tenant"]["name"].as_str().unwrap().to_string();
        let token = t["admin_token"].as_str().unwrap().to_string();
        let secret = t["webhook_secret"].as_str().unwrap().to_string();
        (name, token, secret)
    };
    let (_, greedy, _) = created("greedy");
    let (_, other, _) = created("other");
    let whoami = |token: &str| w.admin_as(token, "GET", "/_edgecache/admin/whoami", None);
    for _ in 0..5 {
        assert_eq!(whoami(&greedy).status, 200);
    }
    let over = whoami(&greedy);
    assert_eq!(
        (over.status, over.error_code().as_str()),
        (429, "rate_limited")
    );
    assert!(over.header("retry-after").is_some());
    assert_eq!(whoami(&other).status, 200, "another tenant is not starved");
    for _ in 0..10 {
        assert_eq!(w.admin("GET", "/_edgecache/admin/whoami", None).status, 200);
    }

    let (hooked, _, secret) = created("hook");
    let body = br#"{"urls": ["/v1/users?limit=1"]}"#;
    let post = |signature: &str| {
        w.anonymous(
            "POST",
            &format!("/t/{hooked}/_edgecache/invalidate"),
            &[
                ("content-type", "application/json"),
                ("x-edgecache-signature", signature),
            ],
            Some(body),
        )
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for _ in 0..5 {
        let forged = edgecache_core::auth::sign(b"ecw_not_the_secret", now, body);
        assert_eq!(post(&forged).status, 401);
    }
    let signed = edgecache_core::auth::sign(secret.as_bytes(), now, body);
    for _ in 0..3 {
        let a = post(&signed);
        assert_eq!(a.status, 200, "forged calls spent nothing: {}", a.text());
    }
    let a = post(&signed);
    assert_eq!((a.status, a.error_code().as_str()), (429, "rate_limited"));
}

/// A write that invalidates many of one tenant's keys queues as many refills; past the
/// tenant's refill budget the rest wait for its next window, and another tenant's refills on
/// the same coordinator still run.
#[test]
fn a_tenants_refills_past_its_budget_wait_and_other_tenants_are_refilled() {
    let w = Worker::start_with(&[("EDGECACHE_REFILLS_PER_MIN", "2")]);
    let name = |prefix: &str| {
        w.create_tenant(prefix)["tenant"]["name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (greedy, other) = (name("refill-greedy"), name("refill-other"));
    let first = common::unique("Refill").replace('-', "");
    let id = w.create_user("refill", &first);
    // Every page shows the user, so one PATCH of it makes each of them stale; the pages are
    // ordered by the column it writes, so none is patched in place: each needs a refill.
    let pages = |tenant: &str, n: usize| -> Vec<String> {
        (1..=n)
            .map(|limit| {
                format!("/t/{tenant}/v1/users?firstName={first}&limit={limit}&order=lastName")
            })
            .collect()
    };
    let (greedy_pages, other_pages) = (pages(&greedy, 6), pages(&other, 2));
    for p in greedy_pages.iter().chain(&other_pages) {
        w.warm(p);
    }
    let a = w.send_json(
        "PATCH",
        &format!("/v1/users/{id}"),
        &json!({"lastName": "After"}),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    // 8 refills queued: the 2 of `other` and 2 of `greedy` run, 4 of `greedy` wait.
    let pending = || common::num(&w.stats(), "coordinators.users.pending_rehydrates");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while pending() != 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "refills never settled at the 4 over budget: {} pending",
            pending()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let outcomes = |paths: &[String]| -> Vec<String> {
        paths
            .iter()
            .map(|p| {
                let a = w.get(p);
                assert_eq!(a.json()["data"][0]["lastName"], "After", "{p}");
                a.outcome().to_string()
            })
            .collect()
    };
    assert_eq!(
        outcomes(&other_pages),
        ["HIT-L2", "HIT-L2"],
        "the other tenant's pages were refilled"
    );
    let greedy_outcomes = outcomes(&greedy_pages);
    let refilled = greedy_outcomes.iter().filter(|o| *o == "HIT-L2").count();
    assert_eq!(
        (refilled, greedy_outcomes.len() - refilled),
        (2, 4),
        "2 of the greedy tenant's pages within its budget, 4 waiting: {greedy_outcomes:?}"
    );
}
