//! The edge read cache in the real runtime: keys, tiers, HTTP semantics, errors, poisoning.

mod common;

use common::{unique, Worker};

fn w() -> &'static Worker {
    Worker::shared()
}

#[test]
fn miss_then_hit_l1_with_the_same_body_and_validators() {
    let path = format!(
        "/v1/orders?status=placed&limit=7&offset={}",
        7 + unique("").len() % 50
    );
    let first = w().get(&path);
    assert_eq!(
        (first.status, first.outcome()),
        (200, "MISS"),
        "{}",
        first.text()
    );
    let second = w().get(&path);
    assert_eq!(second.outcome(), "HIT-L1");
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("etag"), first.header("etag"));
    for h in ["age", "cache-control", "server-timing", "etag"] {
        assert!(second.header(h).is_some(), "{h} missing");
    }
    assert!(second.header("server-timing").unwrap().contains("HIT-L1"));
    assert!(first
        .header("server-timing")
        .unwrap()
        .contains("origin;dur="));
}

#[test]
fn equivalent_queries_share_one_key() {
    let a = w().get("/v1/users?limit=11&firstName=Ada");
    assert_eq!(a.outcome(), "MISS");
    for same in [
        "/v1/users?firstName=Ada&limit=11",
        "/v1/users?firstName=%41da&limit=11",
        "/t/local/v1/users?limit=11&firstName=Ada",
    ] {
        let b = w().get(same);
        assert_eq!(b.outcome(), "HIT-L1", "{same}");
        assert_eq!(b.body, a.body, "{same}");
    }
    let different = w().get("/v1/users?firstName=Ada&limit=12");
    assert_eq!(
        different.outcome(),
        "MISS",
        "a different query is a different key"
    );
}

#[test]
fn unkeyed_headers_never_change_what_is_served() {
    let path = "/v1/orders?item=webcam&limit=9";
    let clean = w().get(path);
    assert_eq!(clean.status, 200);
    let attempts: &[&[(&str, &str)]] = &[
        &[("host", "evil.example")],
        &[("x-forwarded-host", "evil.example")],
        &[("x-forwarded-proto", "http")],
        &[("x-original-url", "/v1/users")],
        &[("x-rewrite-url", "/v1/users")],
        &[("x-http-method-override", "DELETE")],
        &[("accept", "text/html")],
        &[("accept-encoding", "identity")],
        &[("x-edgecache-debug", "1")],
    ];
    for headers in attempts {
        let a = w().get_with(path, headers);
        assert_eq!(a.status, 200, "{headers:?}");
        assert_eq!(a.outcome(), "HIT-L1", "{headers:?}");
        assert_eq!(a.body, clean.body, "{headers:?} changed the body");
    }
    // A header that is not sent back does not poison the next plain read either.
    assert_eq!(w().get(path).body, clean.body);
}

#[test]
fn another_tenants_host_is_never_served_this_tenants_data() {
    let a = w().get_with(
        "/v1/users?limit=3",
        &[("host", "acme.edgecache.example.com")],
    );
    assert_eq!((a.status, a.error_code().as_str()), (404, "unknown_tenant"));
    let a = w().get("/t/acme/v1/users?limit=3");
    assert_eq!((a.status, a.error_code().as_str()), (404, "unknown_tenant"));
}

#[test]
fn errors_are_never_cached() {
    let path = format!("/v1/users/{}", unique("missing"));
    for _ in 0..2 {
        let a = w().get(&path);
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (404, "record_not_found")
        );
        assert_eq!(a.header("cache-control"), Some("no-store"));
        assert_ne!(a.outcome(), "HIT-L1");
    }
    // Once the record exists, the read is a miss: no cached 404 stands in front of it.
    let id = path.rsplit('/').next().unwrap();
    let created = w().send_json(
        "PUT",
        &path,
        &serde_json::json!({"firstName": "Now", "lastName": "Here", "email": "n@h"}),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let a = w().get(&format!("/v1/users/{id}"));
    assert_eq!((a.status, a.outcome()), (200, "MISS"));
    let a = w().get("/v1/users?limit=0");
    assert_eq!(a.status, 400);
    assert_eq!(w().get("/v1/users?limit=0").status, 400);
}

#[test]
fn if_none_match_answers_304() {
    let path = "/v1/orders?item=cable&limit=5";
    let a = w().get(path);
    let etag = a.header("etag").unwrap().to_string();
    assert!(etag.starts_with('"'), "strong etag: {etag}");
    let b = w().get_with(path, &[("if-none-match", &etag)]);
    assert_eq!(b.status, 304);
    assert!(b.body.is_empty());
    assert_eq!(b.header("etag"), Some(etag.as_str()));
    let c = w().get_with(path, &[("if-none-match", "\"something-else\"")]);
    assert_eq!(c.status, 200);
    assert_eq!(c.body, a.body);
}

#[test]
fn request_no_cache_revalidates_against_the_origin() {
    let path = "/v1/orders?item=mouse&limit=4";
    w().get(path);
    assert_eq!(w().get(path).outcome(), "HIT-L1");
    assert_eq!(
        w().get_with(path, &[("cache-control", "no-cache")])
            .outcome(),
        "MISS"
    );
    assert_eq!(w().get(path).outcome(), "HIT-L1");
}

#[test]
fn malformed_consistency_tokens_are_400() {
    let a = w().get_with("/v1/users?limit=1", &[("x-edgecache-min-seq", "users")]);
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (400, "bad_consistency_token")
    );
}

/// The benchmark's baseline (`/_edgecache/test/origin/…`, test hooks): the same read and the
/// same D1 UPDATE straight to the origin, no cache and no coordinator. So a write made there
/// invalidates nothing (the cached copy is still served) while the origin has changed.
#[test]
fn the_test_origin_route_reads_and_writes_the_origin_without_the_cache() {
    let id = w().create_user("direct", "Dora");
    let path = format!("/v1/users/{id}");
    let cached = w().warm(&path);
    let direct = w().get(&format!("/_edgecache/test/origin{path}"));
    assert_eq!(direct.status, 200, "{}", direct.text());
    assert_eq!(direct.header("x-edgecache"), None);
    assert_eq!(direct.json(), cached.json());

    let written = w().send_json(
        "PATCH",
        &format!("/_edgecache/test/origin{path}"),
        &serde_json::json!({"city": "Directville"}),
    );
    assert_eq!(written.status, 200, "{}", written.text());
    assert_eq!(written.json()["data"]["city"], "Directville");
    assert_eq!(written.header("x-edgecache-seq"), None);

    let still = w().get(&path);
    assert_eq!(still.outcome(), "HIT-L1");
    assert_eq!(still.json()["data"]["city"], "Testville");
    let fresh = w().get_with(&path, &[("cache-control", "no-cache")]);
    assert_eq!(fresh.json()["data"]["city"], "Directville");

    let refused = w().send_json(
        "PATCH",
        "/_edgecache/test/origin/v1/users",
        &serde_json::json!({"city": "X"}),
    );
    assert_eq!(refused.status, 405, "{}", refused.text());
}
