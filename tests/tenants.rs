//! Tenants and the admin API in the real runtime: provisioning, rules, auth, isolation.

mod common;

use common::{unique_name, Worker, OPERATOR_TOKEN};
use serde_json::{json, Value};

fn w() -> &'static Worker {
    Worker::shared()
}

/// Creates a tenant and returns (name, admin token, webhook secret).
fn create_tenant(prefix: &str) -> (String, String, String) {
    let body = w().create_tenant(prefix);
    let name = body["tenant"]["name"].as_str().unwrap().to_string();
    let token = body["admin_token"].as_str().unwrap().to_string();
    let secret = body["webhook_secret"].as_str().unwrap().to_string();
    assert!(token.starts_with("eca_") && secret.starts_with("ecw_"));
    (name, token, secret)
}

#[test]
fn whoami_tells_operator_from_tenant() {
    assert_eq!(
        w().admin("GET", "/_edgecache/admin/whoami", None).json(),
        json!({"role": "operator"})
    );
    let (name, token, _) = create_tenant("who");
    let me = w()
        .admin_as(&token, "GET", "/_edgecache/admin/whoami", None)
        .json();
    assert_eq!(me, json!({"role": "tenant", "tenant": name}));
}

#[test]
fn bad_or_missing_tokens_are_401_and_change_nothing() {
    let before = w().admin("GET", "/_edgecache/admin/tenants", None).json()["tenants"]
        .as_array()
        .unwrap()
        .len();
    for auth in [
        None,
        Some("Bearer nope"),
        Some("Basic abc"),
        Some("Bearer "),
    ] {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        let a = w().request(
            "POST",
            "/_edgecache/admin/tenants",
            &headers,
            Some(br#"{"name":"sneaky"}"#),
        );
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (401, "unauthorized"),
            "{auth:?}"
        );
    }
    let after = w().admin("GET", "/_edgecache/admin/tenants", None).json()["tenants"]
        .as_array()
        .unwrap()
        .len();
    assert!(after >= before);
    let list = w().admin("GET", "/_edgecache/admin/tenants", None).json();
    assert!(!list["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "sneaky"));
}

#[test]
fn tenant_lifecycle_and_listing() {
    let (name, _, _) = create_tenant("life");
    let list = w().admin("GET", "/_edgecache/admin/tenants", None).json();
    let names: Vec<&str> = list["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&name.as_str()) && names.contains(&"local"));
    let shown = w().admin("GET", &format!("/_edgecache/admin/tenants/{name}"), None);
    assert_eq!(shown.status, 200);
    assert!(
        shown.json()["tenant"].get("admin_token_hash").is_none(),
        "credentials are never shown again"
    );
    assert!(shown.json()["tenant"].get("webhook_secret").is_none());
    let dup = w().admin(
        "POST",
        "/_edgecache/admin/tenants",
        Some(&json!({"name": name})),
    );
    assert_eq!(
        (dup.status, dup.error_code().as_str()),
        (409, "tenant_exists")
    );
    assert_eq!(
        w().admin("DELETE", &format!("/_edgecache/admin/tenants/{name}"), None)
            .status,
        204
    );
    let gone = w().admin("GET", &format!("/_edgecache/admin/tenants/{name}"), None);
    assert_eq!(
        (gone.status, gone.error_code().as_str()),
        (404, "tenant_not_found")
    );
    let reads = w().get(&format!("/t/{name}/v1/users?limit=1"));
    assert_eq!(
        (reads.status, reads.error_code().as_str()),
        (404, "unknown_tenant")
    );
}

#[test]
fn malformed_tenant_requests_are_400() {
    for (body, code) in [
        (json!({"name": "Bad Name"}), "bad_tenant_name"),
        (json!({"name": ""}), "bad_tenant_name"),
        (json!({"name": "x", "extra": 1}), "bad_body"),
        (
            json!({"name": "okname", "origin": {"kind": "http", "base_url": "ftp://x"}}),
            "bad_origin",
        ),
        (json!([1]), "bad_body"),
    ] {
        let a = w().admin("POST", "/_edgecache/admin/tenants", Some(&body));
        assert_eq!((a.status, a.error_code().as_str()), (400, code), "{body}");
    }
    let a = w().admin(
        "POST",
        "/_edgecache/admin/tenants",
        Some(&json!({"name": "local"})),
    );
    assert_eq!((a.status, a.error_code().as_str()), (409, "tenant_exists"));
    let a = w().admin("DELETE", "/_edgecache/admin/tenants/local", None);
    assert_eq!(a.status, 400);
}

#[test]
fn rules_set_list_remove_and_take_effect() {
    let (name, token, _) = create_tenant("rules");
    let base = format!("/_edgecache/admin/tenants/{name}/rules");
    let rule = json!({"pattern": "/v1/orders*", "no_store": true});
    let a = w().admin_as(&token, "PUT", &base, Some(&rule));
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["rule"]["pattern"], "/v1/orders*");
    let list = w().admin_as(&token, "GET", &base, None).json();
    assert_eq!(list["rules"].as_array().unwrap().len(), 1);
    // The edge picks the rule up (tenant config is cached for at most a couple of seconds,
    // and dropped at once by the isolate that made the change).
    let path = format!("/t/{name}/v1/orders?limit=2");
    assert_eq!(w().get(&path).outcome(), "BYPASS");
    assert_eq!(w().get(&path).outcome(), "BYPASS");
    let users = format!("/t/{name}/v1/users?limit=2");
    assert_eq!(w().get(&users).outcome(), "MISS");
    assert_eq!(w().get(&users).outcome(), "HIT-L1");

    for bad in [
        json!({"pattern": "no-slash"}),
        json!({"pattern": "/v1/*", "ttl_secs": 0}),
        json!({"pattern": "/v1/*", "ttl": 5}),
    ] {
        let a = w().admin_as(&token, "PUT", &base, Some(&bad));
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (400, "invalid_rule"),
            "{bad}"
        );
    }
    assert_eq!(
        w().admin_as(&token, "GET", &base, None).json()["rules"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "nothing changed"
    );

    let rm = w().admin_as(
        &token,
        "DELETE",
        &format!("{base}?pattern=%2Fv1%2Forders%2A"),
        None,
    );
    assert_eq!(rm.status, 204, "{}", rm.text());
    let rm = w().admin_as(&token, "DELETE", &format!("{base}?pattern=%2Fnope"), None);
    assert_eq!(
        (rm.status, rm.error_code().as_str()),
        (404, "rule_not_found")
    );
    assert_eq!(w().get(&path).outcome(), "MISS");
}

#[test]
fn a_tenant_token_cannot_touch_another_tenant() {
    let (a_name, a_token, _) = create_tenant("iso-a");
    let (b_name, _, _) = create_tenant("iso-b");
    // B caches a key; A's token can neither inspect, purge, nor change anything of B.
    let b_path = format!("/t/{b_name}/v1/users?limit=3");
    w().get(&b_path);
    assert_eq!(w().get(&b_path).outcome(), "HIT-L1");
    let calls: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/_edgecache/admin/tenants/{b_name}"), None),
        (
            "GET",
            format!("/_edgecache/admin/tenants/{b_name}/rules"),
            None,
        ),
        (
            "PUT",
            format!("/_edgecache/admin/tenants/{b_name}/rules"),
            Some(json!({"pattern": "/v1/*", "no_store": true})),
        ),
        (
            "POST",
            format!("/_edgecache/admin/tenants/{b_name}/invalidate"),
            Some(json!({"tables": ["users"]})),
        ),
        (
            "GET",
            format!("/_edgecache/admin/tenants/{b_name}/deps?url=%2Fv1%2Fusers%3Flimit%3D3"),
            None,
        ),
        (
            "GET",
            format!("/_edgecache/admin/tenants/{b_name}/stats"),
            None,
        ),
        (
            "DELETE",
            format!("/_edgecache/admin/tenants/{b_name}"),
            None,
        ),
        ("GET", "/_edgecache/admin/tenants".to_string(), None),
        (
            "POST",
            "/_edgecache/admin/tenants".to_string(),
            Some(json!({"name": "made-by-a"})),
        ),
    ];
    for (method, path, body) in &calls {
        let a = w().admin_as(&a_token, method, path, body.as_ref());
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (403, "forbidden"),
            "{method} {path}"
        );
    }
    let stats = w().admin_as(
        &a_token,
        "GET",
        &format!("/t/{b_name}/_edgecache/stats"),
        None,
    );
    assert_eq!(stats.status, 403);
    assert_eq!(
        w().get(&b_path).outcome(),
        "HIT-L1",
        "B's entry survived A's attempts"
    );
    assert_eq!(
        w().admin(
            "GET",
            &format!("/_edgecache/admin/tenants/{b_name}/rules"),
            None
        )
        .json()["rules"],
        json!([])
    );
    // A's own view works, and is A's only: keys are per tenant.
    let a_path = format!("/t/{a_name}/v1/users?limit=3");
    assert_eq!(
        w().get(&a_path).outcome(),
        "MISS",
        "the same URL of another tenant is another key"
    );
    let own = w().admin_as(
        &a_token,
        "GET",
        &format!("/_edgecache/admin/tenants/{a_name}/stats"),
        None,
    );
    assert_eq!(own.status, 200, "{}", own.text());
    assert_eq!(own.json()["tenant"], a_name.as_str());
}

#[test]
fn invalidate_deps_and_stats_through_the_admin_api() {
    let (name, token, _) = create_tenant("ops");
    let path = format!("/t/{name}/v1/users/123-abc");
    assert_eq!(w().get(&path).outcome(), "MISS");
    assert_eq!(w().get(&path).outcome(), "HIT-L1");
    let deps = w().admin_as(
        &token,
        "GET",
        &format!("/_edgecache/admin/tenants/{name}/deps?record=users%3A123-abc"),
        None,
    );
    assert_eq!(deps.status, 200, "{}", deps.text());
    let keys = deps.json()["keys"].as_array().unwrap().clone();
    assert!(
        keys.iter()
            .any(|k| k == &json!(format!("{name}:/v1/users/123-abc"))),
        "{keys:?}"
    );
    let deps = w()
        .admin_as(
            &token,
            "GET",
            &format!("/_edgecache/admin/tenants/{name}/deps?url=%2Fv1%2Fusers%2F123-abc"),
            None,
        )
        .json();
    assert_eq!(deps["entry"]["records"], json!(["users:123-abc"]));
    assert!(deps["entry"]["tables"]["users"].as_u64().is_some());

    let stats = w()
        .admin_as(
            &token,
            "GET",
            &format!("/_edgecache/admin/tenants/{name}/stats"),
            None,
        )
        .json();
    assert!(stats["edge"]["hits_l1"].as_u64().unwrap() >= 1);
    assert!(stats["coordinators"]["users"]["keys"].as_u64().unwrap() >= 1);

    let inv = w().admin_as(
        &token,
        "POST",
        &format!("/_edgecache/admin/tenants/{name}/invalidate"),
        Some(&json!({"urls": ["/v1/users/123-abc"]})),
    );
    assert_eq!(inv.status, 200, "{}", inv.text());
    assert_eq!(inv.json()["invalidated"][0]["reason"], "manual");
    let seq = inv.json()["seqs"]["users"].as_u64().unwrap();
    assert_fresh_since(&path, seq);
    // The default tenant's copy of the same record was not touched by tenant `name`.
    w().get("/v1/users/123-abc");
    assert!(w().get("/v1/users/123-abc").outcome().starts_with("HIT"));
    let bad = w().admin_as(
        &token,
        "POST",
        &format!("/_edgecache/admin/tenants/{name}/invalidate"),
        Some(&json!({"tables": ["nope"]})),
    );
    assert_eq!(
        (bad.status, bad.error_code().as_str()),
        (404, "unknown_table")
    );
    let bad = w().admin_as(
        &token,
        "POST",
        &format!("/_edgecache/admin/tenants/{name}/invalidate"),
        Some(&json!({})),
    );
    assert_eq!((bad.status, bad.error_code().as_str()), (400, "bad_body"));
}

#[test]
fn tenant_webhook_uses_the_tenants_own_secret() {
    let (name, _, secret) = create_tenant("hook");
    let path = format!("/t/{name}/v1/orders?limit=2");
    w().get(&path);
    assert_eq!(w().get(&path).outcome(), "HIT-L1");
    let body = br#"{"urls":["/v1/orders?limit=2"]}"#;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let forged = edgecache_core::auth::sign(b"ecw_not_the_secret", now, body);
    let a = w().request(
        "POST",
        &format!("/t/{name}/_edgecache/invalidate"),
        &[("x-edgecache-signature", &forged)],
        Some(body),
    );
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (401, "signature_mismatch")
    );
    assert_eq!(w().get(&path).outcome(), "HIT-L1");
    let signed = edgecache_core::auth::sign(secret.as_bytes(), now, body);
    let a = w().request(
        "POST",
        &format!("/t/{name}/_edgecache/invalidate"),
        &[("x-edgecache-signature", &signed)],
        Some(body),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let seq = a.json()["seqs"]["orders"].as_u64().unwrap();
    assert_fresh_since(&path, seq);
}

/// The next read is not the old copy: a miss, or a copy the coordinator refilled after the
/// invalidation (its fill stamp is at least the invalidation's seq).
fn assert_fresh_since(path: &str, seq: u64) {
    let a = w().get_with(path, &[("x-edgecache-debug", "1")]);
    assert_ne!(a.outcome(), "HIT-L1", "the invalidated L1 copy was served");
    if a.outcome() != "MISS" {
        let deps = a.header("x-edgecache-deps").unwrap();
        let stamp: u64 = deps
            .split(',')
            .find_map(|p| p.split_once('=').map(|(_, s)| s.parse().unwrap()))
            .unwrap();
        assert!(
            stamp >= seq,
            "{} served a copy stamped {stamp} < {seq}",
            a.outcome()
        );
    }
}

#[test]
fn operator_token_is_required_for_stats_on_the_default_tenant() {
    let a = w().get("/_edgecache/stats");
    assert_eq!((a.status, a.error_code().as_str()), (401, "unauthorized"));
    let a = w().admin_as(OPERATOR_TOKEN, "GET", "/_edgecache/stats", None);
    assert_eq!(a.status, 200);
}

#[test]
fn a_name_read_before_its_tenant_exists_works_as_soon_as_it_is_created() {
    let name = unique_name("late");
    let path = format!("/t/{name}/v1/users?limit=2");
    let a = w().get(&path);
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (404, "unknown_tenant"),
        "remembered as no tenant"
    );
    let created = w().admin(
        "POST",
        "/_edgecache/admin/tenants",
        Some(&json!({"name": name, "origin": {"kind": "d1"}})),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(
        w().get(&path).status,
        200,
        "creating it through this isolate forgets the miss"
    );
}
