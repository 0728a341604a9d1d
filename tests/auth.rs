//! Who may write and read, in the real runtime: tenant API keys on the built-in D1 origin
//! (refused writes reach neither the coordinator nor D1), revocation, private reads, and
//! tenants that share the built-in database sharing its invalidations in both directions.

mod common;

use std::time::{Duration, Instant};

use common::{seq_of, unique, unique_name, Worker, WRITE_KEY};
use serde_json::{json, Value};

fn w() -> &'static Worker {
    Worker::shared()
}

/// The user as D1 holds it now (a `no-cache` read goes to the origin).
fn city_in_d1(id: &str) -> Value {
    let a = w().get_with(&format!("/v1/users/{id}"), &[("cache-control", "no-cache")]);
    assert_eq!(a.status, 200, "{}", a.text());
    a.json()["data"]["city"].clone()
}

/// Creates a key of `scope` for `tenant`; returns the key.
fn create_key(tenant: &str, scope: &str) -> String {
    let name = unique_name("k");
    let a = w().admin(
        "POST",
        &format!("/_edgecache/admin/tenants/{tenant}/keys"),
        Some(&json!({"name": name, "scope": scope})),
    );
    assert_eq!(a.status, 201, "{}", a.text());
    let key = a.json()["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("eck_"), "{key}");
    key
}

fn patch_city(path: &str, headers: &[(&str, &str)], city: &str) -> common::Answer {
    let body = json!({ "city": city }).to_string();
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    w().anonymous("PATCH", path, &all, Some(body.as_bytes()))
}

/// Polls `f` until it holds or `limit` passes; true if it held.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn anonymous_and_wrongly_keyed_writes_change_nothing() {
    let id = w().create_user("anon", "Anon");
    let before = city_in_d1(&id);
    let path = format!("/v1/users/{id}");
    type Case<'a> = (&'a [(&'a str, &'a str)], u16, &'a str);
    let cases: [Case; 4] = [
        (&[], 401, "missing_key"),
        (&[("authorization", "Bearer eck_not_a_key")], 401, "bad_key"),
        (&[("x-edgecache-key", "eck_nope")], 401, "bad_key"),
        // The operator's token is no write key.
        (
            &[("authorization", "Bearer eco_test_operator_token")],
            401,
            "bad_key",
        ),
    ];
    for (headers, status, code) in cases {
        let a = patch_city(&path, headers, "Hacked");
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (status, code),
            "{headers:?}"
        );
        assert!(
            a.header("x-edgecache-seq").is_none(),
            "no token for a refused write"
        );
        assert_eq!(a.header("cache-control"), Some("no-store"));
    }
    let body = json!({"id": unique("anon-new"), "firstName": "X", "lastName": "Y", "email": "x@y"});
    let created = w().anonymous("POST", "/v1/users", &[], Some(body.to_string().as_bytes()));
    assert_eq!(created.status, 401, "{}", created.text());
    let missing = w().get_with(
        &format!("/v1/users/{}", body["id"].as_str().unwrap()),
        &[("cache-control", "no-cache")],
    );
    assert_eq!(missing.status, 404, "the refused insert is not in D1");
    let deleted = w().anonymous("DELETE", &path, &[], None);
    assert_eq!(deleted.status, 401);
    assert_eq!(city_in_d1(&id), before, "D1 unchanged");
    // The same write with the deployment's key goes through.
    let a = patch_city(
        &path,
        &[("authorization", &format!("Bearer {WRITE_KEY}"))],
        "Keyed",
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(city_in_d1(&id), json!("Keyed"));
}

#[test]
fn tenant_keys_have_scopes_and_stop_working_when_revoked() {
    let tenant = w().create_tenant("keys")["tenant"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let id = w().create_user("keyed", "Keyed");
    let path = format!("/t/{tenant}/v1/users/{id}");
    // The default tenant's deployment key is not this tenant's key.
    let a = patch_city(&path, &[("x-edgecache-key", WRITE_KEY)], "Nope");
    assert_eq!((a.status, a.error_code().as_str()), (401, "bad_key"));

    let reader = create_key(&tenant, "read");
    let writer = create_key(&tenant, "write");
    let a = patch_city(
        &path,
        &[("authorization", &format!("Bearer {reader}"))],
        "Nope",
    );
    assert_eq!((a.status, a.error_code().as_str()), (403, "read_only_key"));
    let a = patch_city(
        &path,
        &[("authorization", &format!("Bearer {writer}"))],
        "Oslo",
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let a = patch_city(&path, &[("x-edgecache-key", &writer)], "Bergen");
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(city_in_d1(&id), json!("Bergen"));

    // Listed by name and scope, never with the key or its hash; its use is recorded.
    let keys_path = format!("/_edgecache/admin/tenants/{tenant}/keys");
    let listed = eventually(Duration::from_secs(5), || {
        let a = w().admin("GET", &keys_path, None);
        let keys = a.json()["keys"].as_array().unwrap().clone();
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert!(!a.text().contains(&writer[4..]) && !a.text().contains("hash"));
        keys.iter()
            .any(|k| k["scope"] == "write" && k["last_used_at"].is_string())
    });
    assert!(listed, "the write key's last use is recorded");

    let name = w().admin("GET", &keys_path, None).json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["scope"] == "write")
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let revoked = w().admin("DELETE", &format!("{keys_path}/{name}"), None);
    assert_eq!(revoked.status, 204, "{}", revoked.text());
    let again = w().admin("DELETE", &format!("{keys_path}/{name}"), None);
    assert_eq!(
        (again.status, again.error_code().as_str()),
        (404, "key_not_found")
    );
    // Edges trust their copy of a tenant for 2 s: the key stops working within that bound.
    let stopped = eventually(Duration::from_millis(3_000), || {
        patch_city(&path, &[("x-edgecache-key", &writer)], "Late").status == 401
    });
    assert!(
        stopped,
        "a revoked key stops working within the tenant-config bound"
    );
    assert_ne!(
        city_in_d1(&id),
        json!("Late"),
        "or the last write was before the bound"
    );
}

#[test]
fn private_reads_need_a_key() {
    let tenant = w().create_tenant("priv")["tenant"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/t/{tenant}/v1/users/123-abc");
    assert_eq!(w().get(&path).status, 200, "reads are public by default");
    let a = w().admin(
        "PATCH",
        &format!("/_edgecache/admin/tenants/{tenant}"),
        Some(&json!({"private_reads": true})),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["tenant"]["access"]["private_reads"], true);
    let refused = eventually(Duration::from_secs(3), || w().get(&path).status == 401);
    assert!(refused, "an anonymous read of a private tenant is refused");
    assert_eq!(w().get(&path).error_code(), "missing_key");
    let reader = create_key(&tenant, "read");
    let a = w().get_with(&path, &[("authorization", &format!("Bearer {reader}"))]);
    assert_eq!(a.status, 200, "{}", a.text());
    let a = w().get_with(&path, &[("x-edgecache-key", "eck_wrong")]);
    assert_eq!((a.status, a.error_code().as_str()), (401, "bad_key"));
}

#[test]
fn tenants_need_an_origin_and_never_see_origin_credentials() {
    let a = w().admin(
        "POST",
        "/_edgecache/admin/tenants",
        Some(&json!({"name": unique("noorigin").to_ascii_lowercase()})),
    );
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (400, "origin_required")
    );
    let name = unique("cred").to_ascii_lowercase();
    let secret = "s3cret-origin-value";
    let a = w().admin(
        "POST",
        "/_edgecache/admin/tenants",
        Some(
            &json!({"name": name, "origin": {"kind": "http", "base_url": "http://127.0.0.1:9",
            "headers": [{"name": "X-Origin-Key", "value": secret}]}}),
        ),
    );
    assert_eq!(a.status, 201, "{}", a.text());
    let shown = [
        a.text(),
        w().admin("GET", &format!("/_edgecache/admin/tenants/{name}"), None)
            .text(),
        w().admin("GET", "/_edgecache/admin/tenants", None).text(),
        w().admin(
            "PATCH",
            &format!("/_edgecache/admin/tenants/{name}"),
            Some(&json!({"origin_headers": [{"name": "x-origin-key", "value": "rotated-value"}]})),
        )
        .text(),
    ];
    for text in &shown {
        assert!(
            !text.contains(secret) && !text.contains("rotated-value"),
            "{text}"
        );
        assert!(
            text.contains("x-origin-key") && text.contains("[redacted]"),
            "{text}"
        );
    }
    for bad in [
        json!({"origin_headers": [{"name": "bad header", "value": "x"}]}),
        json!({"origin_headers": [{"name": "host", "value": "x"}]}),
        json!({"forward_headers": ["x-edgecache-key"]}),
    ] {
        let a = w().admin(
            "PATCH",
            &format!("/_edgecache/admin/tenants/{name}"),
            Some(&bad),
        );
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (400, "bad_header"),
            "{bad}"
        );
    }
}

/// A write through either of two tenants on the built-in database invalidates what the other
/// cached: with the write's token at once, without it within the staleness bound (1 s).
#[test]
fn tenants_sharing_the_database_share_its_invalidations_both_ways() {
    let other = w().create_tenant("shared")["tenant"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let other_key = create_key(&other, "write");
    let id = w().create_user("shared", "Shared");
    let local = format!("/v1/users/{id}");
    let theirs = format!("/t/{other}/v1/users/{id}");
    let cases = [
        (
            local.clone(),
            theirs.clone(),
            WRITE_KEY.to_string(),
            "FromLocal",
        ),
        (
            theirs.clone(),
            local.clone(),
            other_key.clone(),
            "FromOther",
        ),
    ];
    for (write_path, read_path, key, city) in cases {
        w().warm(&read_path);
        let a = patch_city(&write_path, &[("x-edgecache-key", &key)], city);
        assert_eq!(a.status, 200, "{}", a.text());
        let token = Worker::token_of(&a);
        assert!(seq_of(&token) > 0);
        // With the token: never the old copy.
        let fresh = w().get_with(&read_path, &[("x-edgecache-min-seq", &token)]);
        assert_eq!(
            fresh.json()["data"]["city"],
            city,
            "{read_path} with {token}"
        );
        // Without it: the old copy at most for the staleness bound.
        std::thread::sleep(Duration::from_millis(1_100));
        let later = w().get(&read_path);
        assert_eq!(
            later.json()["data"]["city"],
            city,
            "{read_path} after the bound"
        );
    }
}

#[test]
fn api_keys_are_no_admin_tokens_and_key_requests_are_checked() {
    let tenant = w().create_tenant("sep")["tenant"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let writer = create_key(&tenant, "write");
    let a = w().admin_as(&writer, "GET", "/_edgecache/admin/whoami", None);
    assert_eq!(a.status, 401, "an API key is no admin token");
    let a = w().admin(
        "POST",
        &format!("/_edgecache/admin/tenants/{tenant}/keys"),
        Some(&json!({"name": "Bad Name", "scope": "write"})),
    );
    assert_eq!((a.status, a.error_code().as_str()), (400, "bad_key_name"));
    let a = w().admin(
        "POST",
        &format!("/_edgecache/admin/tenants/{tenant}/keys"),
        Some(&json!({"name": "x", "scope": "admin"})),
    );
    assert_eq!(a.status, 400, "{}", a.text());
}
