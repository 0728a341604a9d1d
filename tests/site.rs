//! The website served by the worker: pages and assets, the walls around the demo tenant's
//! sandbox and the beta sign-ups, the demo endpoints end to end, beta sign-ups, the OpenAPI
//! document (validated, and every documented operation answered as documented), and the site in
//! headless Chromium (`tests/site/browser.mjs`).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Answer, Worker, OPERATOR_TOKEN};
use serde_json::{json, Value};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const HTML: (&str, &str) = ("accept", "text/html,application/xhtml+xml,*/*;q=0.8");

/// A client address of its own for each test, so their rate limits do not meet.
fn client(name: &str) -> (&'static str, String) {
    let n = name.bytes().fold(0u8, |a, b| a.wrapping_add(b));
    ("cf-connecting-ip", format!("198.51.100.{n}"))
}

fn post_json(w: &Worker, path: &str, ip: &(&str, String), body: &Value) -> Answer {
    w.request(
        "POST",
        path,
        &[("content-type", "application/json"), (ip.0, &ip.1)],
        Some(body.to_string().as_bytes()),
    )
}

/// Runs a node script of `tests/site/` against the worker; panics with its output on failure.
fn node(script: &str, args: &[&str], w: &Worker) {
    let out = Command::new("node")
        .arg(Path::new(ROOT).join("tests/site").join(script))
        .arg(&w.base)
        .args(args)
        .current_dir(ROOT)
        .output()
        .expect("node runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "{script} failed:\n{text}\nworker log:\n{}",
        w.log_tail()
    );
}

#[test]
fn pages_and_assets_are_served_with_types_etags_and_no_third_parties() {
    let w = Worker::shared();
    let home = w.get("/");
    assert_eq!(home.status, 200);
    assert_eq!(
        home.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = home.header("content-security-policy").unwrap_or("");
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    let html = home.text();
    assert!(
        html.contains("<title>EdgeCache: cache your REST API"),
        "{html}"
    );
    assert!(
        html.contains("data-tenant=\"demo\""),
        "the demo knows its tenant"
    );
    assert!(!html.contains("{{"), "every placeholder filled");
    for marker in ["http://", "https://", "//fonts.", "cdn"] {
        let external = html
            .match_indices(marker)
            .filter(|(i, _)| {
                let before = &html[i.saturating_sub(6)..*i];
                before.ends_with("src=\"") || before.ends_with("href=\"")
            })
            .count();
        assert_eq!(
            external, 0,
            "the page loads nothing from elsewhere ({marker})"
        );
    }

    let head = w.request("HEAD", "/", &[], None);
    assert_eq!(
        (head.status, head.body.len()),
        (200, 0),
        "HEAD / answers without a body"
    );
    let etag = home.header("etag").expect("an etag").to_string();
    let again = w.get_with("/", &[("if-none-match", &etag)]);
    assert_eq!(again.status, 304);

    for (path, ty) in [
        ("/assets/site.css", "text/css; charset=utf-8"),
        ("/assets/demo.js", "text/javascript; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
        ("/robots.txt", "text/plain; charset=utf-8"),
        ("/openapi.json", "application/json"),
    ] {
        let a = w.get(path);
        assert_eq!(
            (a.status, a.header("content-type")),
            (200, Some(ty)),
            "{path}"
        );
        assert!(a.header("etag").is_some(), "{path}");
        assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
    }
    for path in [
        "/docs/",
        "/docs/api",
        "/docs/headers",
        "/docs/consistency",
        "/docs/admin",
        "/docs/cli",
        "/docs/limits",
    ] {
        let a = w.get(path);
        assert_eq!(a.status, 200, "{path}");
        assert!(a.text().contains("aria-current=\"page\""), "{path}");
    }
    // `/docs` redirects to `/docs/` (followed by the client).
    let docs = w.get("/docs");
    assert_eq!(docs.status, 200);
    assert!(docs.text().contains("<h1>EdgeCache documentation</h1>"));

    // Unknown paths: a page for a browser, the JSON error for anything else.
    let page = w.get_with("/nowhere", &[HTML]);
    assert_eq!(page.status, 404);
    assert!(page.text().contains("Nothing here"));
    let api = w.get("/nowhere");
    assert_eq!(
        (api.status, api.error_code().as_str()),
        (404, "route_not_found")
    );
    assert_eq!(api.header("cache-control"), Some("no-store"));
}

#[test]
fn tenants_cannot_name_the_sandbox_the_signups_or_each_others_tables() {
    let w = Worker::shared();
    assert_eq!(w.get("/t/demo/v1/demo_users/u1").status, 200);
    assert_eq!(w.get("/v1/users/123-abc").status, 200);
    let other = w.create_tenant("walls")["tenant"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    for path in [
        "/v1/demo_users".to_string(),
        "/v1/demo_users/u1".to_string(),
        format!("/t/{other}/v1/demo_users"),
        "/t/demo/v1/users".to_string(),
        "/t/demo/v1/usersWithOrders".to_string(),
        "/t/demo/v1/edgecache_demo_seed".to_string(),
        "/v1/edgecache_beta_signups".to_string(),
        "/t/demo/v1/edgecache_beta_signups".to_string(),
        format!("/t/{other}/v1/edgecache_beta_signups"),
        "/v1/d1_migrations".to_string(),
    ] {
        let a = w.get(&path);
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (404, "unknown_table"),
            "{path}"
        );
    }
    // Writes to the demo tenant go through the rate-limited demo endpoint only.
    let a = w.send_json(
        "PATCH",
        "/t/demo/v1/demo_users/u1",
        &json!({"city": "Oslo"}),
    );
    assert_eq!((a.status, a.error_code().as_str()), (403, "demo_read_only"));
    let a = w.send_json(
        "POST",
        "/v1/demo_users",
        &json!({"id": "x", "name": "x", "city": "x"}),
    );
    assert_eq!((a.status, a.error_code().as_str()), (404, "unknown_table"));
    // Nor can the demo tenant be taken over by creating it.
    let a = w.admin(
        "POST",
        "/_edgecache/admin/tenants",
        Some(&json!({"name": "demo", "origin": {"kind": "d1"}})),
    );
    assert_eq!((a.status, a.error_code().as_str()), (409, "tenant_exists"));
}

#[test]
fn beta_signups_are_validated_merged_listed_and_rate_limited() {
    let w = Worker::shared();
    let ip = client("beta");
    let email = format!("Grace.{}@Example.COM", std::process::id());
    let stored = email.to_ascii_lowercase();

    let a = post_json(w, "/_edgecache/beta", &ip, &json!({ "email": email }));
    assert_eq!(a.status, 201, "{}", a.text());
    assert_eq!(a.json(), json!({"email": stored, "duplicate": false}));

    // The page's form, without JavaScript: form-encoded, answered with a page.
    let form = format!("email=+{}+", stored.replace('@', "%40"));
    let a = w.request(
        "POST",
        "/_edgecache/beta",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            HTML,
            (ip.0, &ip.1),
        ],
        Some(form.as_bytes()),
    );
    assert_eq!(a.status, 201);
    assert_eq!(a.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(a.text().contains("already on the list"), "{}", a.text());

    for bad in ["", "ada@localhost", "a b@example.com"] {
        let a = post_json(w, "/_edgecache/beta", &ip, &json!({ "email": bad }));
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (400, "invalid_email"),
            "{bad:?}"
        );
        assert_eq!(a.header("cache-control"), Some("no-store"));
    }
    // Six attempts so far, and the limit is five per ten minutes.
    let a = post_json(
        w,
        "/_edgecache/beta",
        &ip,
        &json!({ "email": "x@example.com" }),
    );
    assert_eq!((a.status, a.error_code().as_str()), (429, "rate_limited"));
    let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=600).contains(&retry), "{retry}");
    let other = client("beta-other");
    let a = post_json(
        w,
        "/_edgecache/beta",
        &other,
        &json!({ "email": "x@example.com" }),
    );
    assert_eq!(a.status, 201, "another client is not limited");

    let list = w.admin("GET", "/_edgecache/admin/beta", None);
    assert_eq!(list.status, 200, "{}", list.text());
    let signups = list.json()["signups"].as_array().unwrap().clone();
    let mine = signups
        .iter()
        .find(|s| s["email"] == stored.as_str())
        .unwrap();
    assert_eq!(mine["count"], 2, "{mine}");
    assert!(mine["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(!signups.iter().any(|s| s["email"] == "ada@localhost"));

    let tenant = w.create_tenant("beta-reader");
    let token = tenant["admin_token"].as_str().unwrap();
    let a = w.admin_as(token, "GET", "/_edgecache/admin/beta", None);
    assert_eq!((a.status, a.error_code().as_str()), (403, "forbidden"));
    let a = w.get("/_edgecache/admin/beta");
    assert_eq!(a.status, 401);
}

/// The OpenAPI document is valid 3.1 (checked by an independent validator), and each operation
/// it documents, called on the running worker, answers one of the statuses it documents.
#[test]
fn the_openapi_document_is_valid_and_every_operation_answers_as_documented() {
    let w = Worker::shared();
    node("openapi.mjs", &[], w);
    let doc = w.get("/openapi.json").json();
    assert_eq!(doc["openapi"], "3.1.0");
    let ip = client("openapi");
    let tenant = w.create_tenant("oapi")["tenant"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let fill = |path: &str| {
        path.replace("{relation}", "users")
            .replace("{id}", "openapi-probe")
            .replace("{name}", &tenant)
            .replace("{key}", "probe")
            .replace("{rule}", "users:1")
            .replace("{hypothesis}", "users:h0c1d2e3f")
            .replace("{candidate}", "users:c1a2b3c4d")
            .replace("{table}", "users")
    };
    let body_for = |path: &str, method: &str| -> Option<Value> {
        match (path, method) {
            ("/v1/{relation}", "post") | ("/v1/{relation}/{id}", "put") => Some(
                json!({"id": "openapi-probe", "firstName": "Open", "lastName": "Api", "email": "o@a.io"}),
            ),
            ("/v1/{relation}/{id}", "patch") => Some(json!({"city": "Lima"})),
            ("/_edgecache/admin/tenants", "post") => {
                Some(json!({"name": format!("{tenant}-2"), "origin": {"kind": "d1"}}))
            }
            ("/_edgecache/admin/tenants/{name}", "patch") => Some(json!({"private_reads": false})),
            ("/_edgecache/admin/tenants/{name}/keys", "post") => {
                Some(json!({"name": "probe", "scope": "read"}))
            }
            ("/_edgecache/admin/tenants/{name}/rules", "put") => {
                Some(json!({"pattern": "/v1/orders*", "ttl_secs": 60}))
            }
            ("/_edgecache/admin/tenants/{name}/invalidate", _) | ("/_edgecache/invalidate", _) => {
                Some(json!({"tables": ["users"]}))
            }
            ("/_edgecache/admin/tenants/{name}/explain", _) => Some(
                json!({"method": "PATCH", "path": "/v1/users/123-abc", "body": {"city": "Oslo"}}),
            ),
            ("/_edgecache/beta", _) => Some(json!({"email": "probe@example.com"})),
            ("/_edgecache/demo/write", _) => Some(json!({"id": "u6", "set": {"plan": "pro"}})),
            _ => None,
        }
    };
    let query_for = |path: &str, method: &str| match (path, method) {
        ("/_edgecache/admin/tenants/{name}/rules", "delete") => "?pattern=%2Fv1%2Forders*",
        ("/_edgecache/admin/tenants/{name}/deps", _) => "?url=%2Fv1%2Fusers%2F123-abc",
        _ => "",
    };
    let mut checked = 0;
    // Deletes last, so the probe record and tenant exist for the other calls.
    for pass in ["other", "delete"] {
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in ["get", "post", "put", "patch", "delete"] {
                let Some(op) = item.get(method) else { continue };
                if (method == "delete") != (pass == "delete") {
                    continue;
                }
                let url = format!("{}{}", fill(path), query_for(path, method));
                let body = body_for(path, method).map(|b| b.to_string());
                let auth = format!("Bearer {OPERATOR_TOKEN}");
                let mut headers = vec![("content-type", "application/json"), (ip.0, ip.1.as_str())];
                if op.get("security").is_some() {
                    headers.push(("authorization", &auth));
                }
                let a = w.request(
                    &method.to_ascii_uppercase(),
                    &url,
                    &headers,
                    body.as_deref().map(str::as_bytes),
                );
                let documented = op["responses"].as_object().unwrap();
                assert!(
                    documented.contains_key(&a.status.to_string()),
                    "{method} {url} answered {} (documented: {:?}): {}",
                    a.status,
                    documented.keys().collect::<Vec<_>>(),
                    a.text()
                );
                if a.status >= 400 {
                    assert!(
                        !a.error_code().is_empty(),
                        "{method} {url}: errors are typed"
                    );
                }
                checked += 1;
            }
        }
    }
    // Every operation of the REST, admin, webhook and site endpoints, each called once.
    assert_eq!(checked, 33, "operations checked");
}

/// The demo's endpoints end to end (a private worker: it writes the sandbox), then the whole
/// site in headless Chromium against the same worker.
#[test]
fn the_demo_works_end_to_end_and_the_site_passes_in_a_real_browser() {
    let w = Worker::start_with_cron(&[]);
    let ip = client("demo");
    let reset = post_json(&w, "/_edgecache/demo/reset", &ip, &json!({}));
    assert_eq!(reset.status, 200, "{}", reset.text());
    assert_eq!(reset.json()["rows"], 6);

    let debug = |path: &str| w.get_with(path, &[("x-edgecache-debug", "1")]);
    let u1 = debug("/t/demo/v1/demo_users/u1");
    assert_eq!(u1.json()["data"]["city"], "Lisbon");
    assert!(u1
        .header("x-edgecache-deps")
        .unwrap()
        .starts_with("demo_users="));
    for path in [
        "/t/demo/v1/demo_users/u1",
        "/t/demo/v1/demo_users/u2",
        "/t/demo/v1/demo_users?city=Lisbon",
        "/t/demo/v1/demo_users?city=Osaka",
        "/t/demo/v1/demo_users?city=Lima",
    ] {
        w.warm(path);
    }

    let a = post_json(
        &w,
        "/_edgecache/demo/write",
        &ip,
        &json!({"id": "u1", "set": {"city": "Osaka"}}),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let written = a.json();
    assert_eq!(written["record"]["data"]["city"], "Osaka");
    let stale: Vec<(String, String)> = written["stale"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key"].as_str().unwrap().to_string(),
                k["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let reason = |key: &str| {
        stale
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, r)| r.as_str())
            .unwrap_or("none")
            .to_string()
    };
    assert_eq!(
        reason("demo:/v1/demo_users/u1"),
        "record_written",
        "{written}"
    );
    // The Lisbon list contained the record; the Osaka list gains it.
    assert_eq!(reason("demo:/v1/demo_users?city=Lisbon"), "record_written");
    assert_eq!(
        reason("demo:/v1/demo_users?city=Osaka"),
        "list_predicate_matched"
    );
    assert_eq!(stale.len(), 3, "{written}");
    let spared: Vec<&str> = written["spared"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert!(
        spared.contains(&"demo:/v1/demo_users?city=Lima"),
        "{written}"
    );
    assert!(spared.contains(&"demo:/v1/demo_users/u2"), "{written}");
    // The spared keys are still hits; the write's token reads the written value.
    assert_eq!(w.get("/t/demo/v1/demo_users?city=Lima").outcome(), "HIT-L1");
    let token = written["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("demo_users="));
    let fresh = w.get_with(
        "/t/demo/v1/demo_users/u1",
        &[("x-edgecache-min-seq", &token)],
    );
    assert_eq!(fresh.json()["data"]["city"], "Osaka");

    // Bad demo writes are typed errors and change nothing.
    for (body, status, code) in [
        (
            json!({"id": "u1", "set": {"salary": 1}}),
            400,
            "unknown_column",
        ),
        (
            json!({"id": "nobody", "set": {"city": "Lima"}}),
            404,
            "record_not_found",
        ),
        (
            json!({"id": "u1", "set": {"city": ["Lima"]}}),
            400,
            "bad_body",
        ),
        (json!({"id": "u1"}), 400, "bad_body"),
        (json!({"id": "u1", "set": {}, "extra": 1}), 400, "bad_body"),
    ] {
        let a = post_json(&w, "/_edgecache/demo/write", &ip, &body);
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (status, code),
            "{body}"
        );
    }

    // The scheduled reset (the hourly cron) restores the seed and invalidates what was cached.
    let cron = w.get("/__scheduled?cron=0+*+*+*+*");
    assert_eq!(cron.status, 200, "{}", cron.text());
    std::thread::sleep(Duration::from_millis(1_200)); // past the default staleness bound
    let after = w.get("/t/demo/v1/demo_users/u1");
    assert_eq!(
        after.json()["data"]["city"],
        "Lisbon",
        "{:?}",
        after.headers
    );

    // Demo writes are limited to 30 a minute per client; other clients are not affected.
    let limited = client("demo-limit");
    let mut statuses = Vec::new();
    for _ in 0..31 {
        let a = post_json(
            &w,
            "/_edgecache/demo/write",
            &limited,
            &json!({"id": "u5", "set": {"plan": "team"}}),
        );
        statuses.push(a.status);
        if a.status == 429 {
            assert_eq!(a.error_code(), "rate_limited");
            assert!(a.header("retry-after").is_some());
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        30,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429));

    let shots = format!("{ROOT}/target/site-screenshots");
    node("browser.mjs", &[&shots], &w);
    for shot in [
        "desktop.png",
        "desktop-demo.png",
        "desktop-dark.png",
        "mobile.png",
    ] {
        let size = std::fs::metadata(format!("{shots}/{shot}")).map(|m| m.len());
        assert!(size.as_ref().is_ok_and(|n| *n > 10_000), "{shot}: {size:?}");
    }
}
