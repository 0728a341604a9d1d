//! A real team's API behind EdgeCache, in the real runtime: the API (tests/common/api.rs)
//! refuses requests without the tenant's origin credential and writes without a user's
//! `Authorization`. EdgeCache adds the credential to every request it makes (reads, writes,
//! refills), forwards the user's credentials on writes, passes the API's refusals back
//! unchanged without invalidating anything, refills what a write invalidated, and never
//! shows the credential to anyone.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::api::{TestApi, ORIGIN_KEY_HEADER};
use common::{unique, unique_name, Worker};
use serde_json::json;

const ORIGIN_KEY: &str = "ok_9f1c2e7d-origin-credential";

struct Setup {
    api: TestApi,
    tenant: String,
}

fn w() -> &'static Worker {
    Worker::shared()
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let api = TestApi::start(ORIGIN_KEY);
        let tenant = put_behind_edgecache(&api, "api", json!({"tables": ["notes", "me"]}));
        Setup { api, tenant }
    })
}

/// Creates a tenant (named from `prefix`) in front of `api` with its origin credential and the
/// `extra` fields of the tenant body; answers its name.
fn put_behind_edgecache(api: &TestApi, prefix: &str, extra: serde_json::Value) -> String {
    let name = unique_name(prefix);
    let mut body = json!({"name": name, "origin": {"kind": "http", "base_url": api.base_url,
        "headers": [{"name": "X-Origin-Key", "value": ORIGIN_KEY}]}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    let a = w().admin("POST", "/_edgecache/admin/tenants", Some(&body));
    assert_eq!(a.status, 201, "{}", a.text());
    name
}

fn url(path: &str) -> String {
    format!("/t/{}{path}", setup().tenant)
}

fn user(name: &str) -> String {
    format!("Bearer user-{name}")
}

fn write(method: &str, path: &str, auth: Option<&str>, body: serde_json::Value) -> common::Answer {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = auth {
        headers.push(("authorization", auth));
    }
    w().anonymous(
        method,
        &url(path),
        &headers,
        Some(body.to_string().as_bytes()),
    )
}

#[test]
fn reads_carry_the_origin_credential_and_are_cached() {
    let api = &setup().api;
    let id = unique("r");
    api.put_note(&id, "hello");
    let path = format!("/v1/notes/{id}");
    let a = w().get(&url(&path));
    assert_eq!((a.status, a.outcome()), (200, "MISS"), "{}", a.text());
    assert_eq!(a.json()["data"]["text"], "hello");
    let seen = api.seen_at("GET", &path);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header(ORIGIN_KEY_HEADER), Some(ORIGIN_KEY));
    assert_eq!(w().warm(&url(&path)).outcome(), "HIT-L1");
}

#[test]
fn a_write_the_api_refuses_passes_through_and_invalidates_nothing() {
    let api = &setup().api;
    let id = unique("refused");
    api.put_note(&id, "kept");
    let path = format!("/v1/notes/{id}");
    w().warm(&url(&path));
    w().warm(&url("/v1/notes"));
    let a = write("PATCH", &path, None, json!({"text": "anonymous"}));
    assert_eq!(a.status, 401, "the API's own refusal: {}", a.text());
    assert_eq!(
        a.json()["error"]["code"],
        "unauthorized",
        "its body, unchanged"
    );
    assert_eq!(api.note(&id).unwrap()["text"], "kept");
    // Nothing was invalidated: both keys are still hits, even for a reader with the token.
    let token = a.header("x-edgecache-seq").map(str::to_string);
    let mut headers = Vec::new();
    if let Some(t) = &token {
        headers.push(("x-edgecache-min-seq", t.as_str()));
    }
    for p in [path.as_str(), "/v1/notes"] {
        let r = w().get_with(&url(p), &headers);
        assert_eq!(
            r.outcome(),
            "HIT-L1",
            "{p} after a refused write ({token:?})"
        );
    }
}

#[test]
fn a_user_write_reaches_the_api_with_both_credentials_and_is_refilled() {
    let api = &setup().api;
    let id = unique("w");
    api.put_note(&id, "before");
    let path = format!("/v1/notes/{id}");
    w().warm(&url(&path));
    let a = write("PATCH", &path, Some(&user("ann")), json!({"text": "after"}));
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["data"]["by"], "ann");
    let seen = api.seen_at("PATCH", &path);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header(ORIGIN_KEY_HEADER), Some(ORIGIN_KEY));
    assert_eq!(seen[0].header("authorization"), Some(user("ann").as_str()));
    assert_eq!(seen[0].header("x-edgecache-key"), None);
    // The invalidated key is refilled by the coordinator, with the origin credential, without
    // any client reading it.
    let reads_before = api.seen_at("GET", &path).len();
    let mut refilled = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        if api.seen_at("GET", &path).len() > reads_before {
            refilled = true;
            break;
        }
    }
    assert!(refilled, "the coordinator refetched the invalidated key");
    let refill = api.seen_at("GET", &path).pop().unwrap();
    assert_eq!(refill.header(ORIGIN_KEY_HEADER), Some(ORIGIN_KEY));
    assert_eq!(
        refill.header("authorization"),
        None,
        "refills are anonymous"
    );
    // Registered again at a stamp at or after the write, then stored in L2.
    let token = Worker::token_of(&a);
    let deps = format!(
        "/_edgecache/admin/tenants/{}/deps?url={}",
        setup().tenant,
        common::urlencode(&path)
    );
    let registered = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let d = w().admin("GET", &deps, None).json();
        d["coordinators"]["notes"]["registered_stamp"]
            .as_u64()
            .is_some_and(|s| s >= common::seq_of(&token))
    });
    assert!(registered, "the refill registered the key again");
    std::thread::sleep(Duration::from_millis(500));
    let r = w().get_with(&url(&path), &[("x-edgecache-min-seq", &token)]);
    assert_eq!(r.json()["data"]["text"], "after");
    assert_eq!(r.outcome(), "HIT-L2", "served from the refilled copy");
}

#[test]
fn a_tenant_can_require_edgecache_write_keys_in_front_of_its_api() {
    let s = setup();
    let name = put_behind_edgecache(
        &s.api,
        "strict",
        json!({"access": {"require_write_key": true}, "tables": ["notes"]}),
    );
    let key = w().admin(
        "POST",
        &format!("/_edgecache/admin/tenants/{name}/keys"),
        Some(&json!({"name": "app", "scope": "write"})),
    );
    let key = key.json()["key"].as_str().unwrap().to_string();
    let id = unique("strict");
    s.api.put_note(&id, "x");
    let path = format!("/t/{name}/v1/notes/{id}");
    let body = json!({"text": "y"}).to_string();
    let writes_before = s.api.seen_at("PATCH", &format!("/v1/notes/{id}")).len();
    // A user's own credential is not enough, and the key goes in x-edgecache-key (the
    // Authorization header is the API's).
    let a = w().anonymous(
        "PATCH",
        &path,
        &[("authorization", &user("bob"))],
        Some(body.as_bytes()),
    );
    assert_eq!((a.status, a.error_code().as_str()), (401, "missing_key"));
    assert_eq!(
        s.api.seen_at("PATCH", &format!("/v1/notes/{id}")).len(),
        writes_before,
        "a refused write never reaches the API"
    );
    let a = w().anonymous(
        "PATCH",
        &path,
        &[("authorization", &user("bob")), ("x-edgecache-key", &key)],
        Some(body.as_bytes()),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(s.api.note(&id).unwrap()["by"], "bob");
}

#[test]
fn the_origin_credential_is_never_shown() {
    let s = setup();
    let id = unique("shown");
    s.api.put_note(&id, "x");
    let mut texts = vec![
        w().get_debug(&url(&format!("/v1/notes/{id}"))),
        write(
            "PATCH",
            &format!("/v1/notes/{id}"),
            Some(&user("c")),
            json!({"text": "z"}),
        ),
        write(
            "PATCH",
            &format!("/v1/notes/{id}"),
            None,
            json!({"text": "z"}),
        ),
        w().admin(
            "GET",
            &format!("/_edgecache/admin/tenants/{}", s.tenant),
            None,
        ),
        w().admin(
            "GET",
            &format!("/_edgecache/admin/tenants/{}/stats", s.tenant),
            None,
        ),
    ]
    .into_iter()
    .map(|a| format!("{:?} {}", a.headers, a.text()))
    .collect::<Vec<_>>();
    texts.push(std::fs::read_to_string(&w().log).unwrap_or_default());
    for text in texts {
        assert!(!text.contains(ORIGIN_KEY), "credential leaked: {text}");
    }
}

/// Tables of an HTTP origin nobody declared are learned from the API's own answers: until the
/// API answers a read of one with a 2xx, its reads pass straight through and nothing is made
/// for it (no coordinator, view, counter or cache entry), and writes to it are refused; a
/// made-up name stays unknown however often it is read.
#[test]
fn undeclared_tables_are_learned_from_the_api_and_made_up_ones_create_nothing() {
    let api = &setup().api;
    let name = put_behind_edgecache(api, "learn", json!({}));
    let show = || {
        w().admin("GET", &format!("/_edgecache/admin/tenants/{name}"), None)
            .json()
    };
    for i in 0..20 {
        let a = w().get(&format!("/t/{name}/v1/madeup{i}?x=1"));
        assert_eq!(a.status, 404, "the API's own 404, passed through");
        assert_eq!(a.header("x-edgecache-not-stored"), Some("unknown_table"));
    }
    let write = w().anonymous(
        "POST",
        &format!("/t/{name}/v1/madeup0"),
        &[("authorization", &user("ann"))],
        Some(b"{}"),
    );
    assert_eq!(
        (write.status, write.error_code().as_str()),
        (404, "unknown_table")
    );
    assert!(
        api.seen_at("POST", "/v1/madeup0").is_empty(),
        "never reached the API"
    );
    let stats = w()
        .admin(
            "GET",
            &format!("/_edgecache/admin/tenants/{name}/stats"),
            None,
        )
        .json();
    assert!(
        stats["edge"]["routes"]
            .as_object()
            .is_none_or(|r| r.is_empty()),
        "no route counters for made-up tables: {stats}"
    );
    assert!(
        show()["tenant"]["tables"].is_null(),
        "nothing learned from 404s"
    );

    let id = unique("learned");
    api.put_note(&id, "x");
    let path = format!("/t/{name}/v1/notes/{id}");
    let first = w().get(&path);
    assert_eq!((first.status, first.outcome()), (200, "BYPASS"));
    assert_eq!(
        first.header("x-edgecache-not-stored"),
        Some("unknown_table")
    );
    assert_eq!(
        show()["tenant"]["tables"],
        json!(["notes"]),
        "learned from the 2xx"
    );
    std::thread::sleep(Duration::from_millis(2_100)); // edges keep a tenant for 2 s
    assert_eq!(
        w().get(&path).outcome(),
        "MISS",
        "now cached like any table"
    );
    assert_eq!(w().warm(&path).outcome(), "HIT-L1");
}
