//! A tenant whose origin is its own HTTP API: a small REST server in this test process on
//! 127.0.0.1, reached by the real worker. Reads are cached and validated like D1 reads; writes
//! are forwarded through the table's coordinator; the origin's Cache-Control is respected.
//!
//! Shared-cache safety (RFC 9111 §3.5, §4.1): `/v1/me` answers per user (`Authorization`)
//! with `private`; `/v1/profile` per user with no directive (a rule keys it by the
//! credential); `/v1/shared` per user with `public, s-maxage=2`; `/v1/greeting` by
//! `Accept-Language` with `Vary`; `/v1/welcome` per user and language (`s-maxage`, `Vary`);
//! `/v1/star` with `Vary: *`; `/v1/brief/<id>` with `max-age=1`.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use common::api::serve_http;
use common::{unique, unique_name, Worker};
use serde_json::{json, Value};

/// What the origin received of a request's credentials: target, `Authorization`, `Cookie`.
type Received = (String, Option<String>, Option<String>);

/// The origin: items in memory, a request log, and a switch that makes it fail.
#[derive(Default)]
struct Api {
    items: Mutex<BTreeMap<String, Value>>,
    log: Mutex<Vec<(String, String)>>,
    /// `(target, authorization, cookie)` of every request, as the origin received it.
    credentials: Mutex<Vec<Received>>,
    failing: AtomicBool,
}

/// The value of a request header (lower-case name).
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl Api {
    fn hits(&self, method: &str, path: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p)| m == method && p == path)
            .count()
    }

    /// The credentials the origin received with requests for `target`.
    fn credentials_for(&self, target: &str) -> Vec<(Option<String>, Option<String>)> {
        self.credentials
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _, _)| t == target)
            .map(|(_, a, c)| (a.clone(), c.clone()))
            .collect()
    }

    fn answer(
        &self,
        method: &str,
        target: &str,
        body: &str,
        headers: &[(String, String)],
    ) -> (u16, Vec<(&'static str, &'static str)>, String) {
        self.log
            .lock()
            .unwrap()
            .push((method.to_string(), target.to_string()));
        let auth = header(headers, "authorization");
        self.credentials.lock().unwrap().push((
            target.to_string(),
            auth.map(String::from),
            header(headers, "cookie").map(String::from),
        ));
        // Who the origin thinks is asking: the bearer token, else the cookie.
        let user = auth
            .or(header(headers, "cookie"))
            .unwrap_or("anonymous")
            .to_string();
        let per_user = |cache_control: &'static str| {
            let mut h = vec![("content-type", "application/json")];
            if !cache_control.is_empty() {
                h.push(("cache-control", cache_control));
            }
            (200, h, json!({"data": {"user": user}}).to_string())
        };
        let json = vec![("content-type", "application/json")];
        if self.failing.load(Ordering::SeqCst) {
            return (503, json, r#"{"error":"down"}"#.into());
        }
        let path = target.split('?').next().unwrap_or("");
        let mut items = self.items.lock().unwrap();
        match (
            method,
            path.trim_start_matches("/v1/")
                .split('/')
                .collect::<Vec<_>>()
                .as_slice(),
        ) {
            ("GET", ["items"]) => (
                200,
                json,
                json!({"data": items.values().collect::<Vec<_>>()}).to_string(),
            ),
            ("GET", ["items", id]) => match items.get(*id) {
                Some(v) => (200, json, json!({"data": v}).to_string()),
                None => (
                    404,
                    json,
                    r#"{"error":{"code":"not_found","message":"no such item"}}"#.into(),
                ),
            },
            ("POST", ["items"]) => {
                let v: Value = serde_json::from_str(body).unwrap_or(json!({}));
                let id = v["id"].as_str().unwrap_or("generated").to_string();
                items.insert(id, v.clone());
                (201, json, json!({"data": v}).to_string())
            }
            ("PATCH", ["items", id]) => match items.get_mut(*id) {
                Some(v) => {
                    let patch: Value = serde_json::from_str(body).unwrap_or(json!({}));
                    for (k, val) in patch.as_object().into_iter().flatten() {
                        v[k] = val.clone();
                    }
                    (200, json, json!({"data": v}).to_string())
                }
                None => (
                    404,
                    json,
                    r#"{"error":{"code":"not_found","message":"no such item"}}"#.into(),
                ),
            },
            ("DELETE", ["items", id]) => match items.remove(*id) {
                Some(_) => (204, vec![], String::new()),
                None => (404, json, "{}".into()),
            },
            ("GET", ["private"]) => (
                200,
                vec![
                    ("content-type", "application/json"),
                    ("cache-control", "private, max-age=60"),
                ],
                r#"{"data":"mine"}"#.into(),
            ),
            ("GET", ["nostore"]) => (
                200,
                vec![
                    ("content-type", "application/json"),
                    ("cache-control", "no-store"),
                ],
                r#"{"data":"fresh"}"#.into(),
            ),
            ("GET", ["page"]) => (200, vec![("content-type", "text/html")], "<p>hi</p>".into()),
            ("GET", ["me"]) => per_user("private, max-age=60"),
            ("GET", ["profile"]) => per_user(""),
            ("GET", ["shared"]) => per_user("public, s-maxage=2"),
            ("GET", ["greeting"]) => {
                let lang = header(headers, "accept-language").unwrap_or("");
                let text = match lang.to_ascii_lowercase().as_str() {
                    "fr" => "bonjour",
                    "de" => "hallo",
                    _ => "hello",
                };
                (
                    200,
                    vec![
                        ("content-type", "application/json"),
                        ("vary", "Accept-Language"),
                    ],
                    json!({"data": text}).to_string(),
                )
            }
            ("GET", ["welcome"]) => (
                200,
                vec![
                    ("content-type", "application/json"),
                    ("cache-control", "s-maxage=60"),
                    ("vary", "accept-language"),
                ],
                json!({"data": {"user": user, "lang": header(headers, "accept-language")}})
                    .to_string(),
            ),
            ("GET", ["star"]) => (
                200,
                vec![("content-type", "application/json"), ("vary", "*")],
                r#"{"data":"star"}"#.into(),
            ),
            ("GET", ["brief", id]) => (
                200,
                vec![
                    ("content-type", "application/json"),
                    ("cache-control", "max-age=1"),
                ],
                json!({"data": id}).to_string(),
            ),
            _ => (404, json, "{}".into()),
        }
    }
}

struct Setup {
    api: Arc<Api>,
    tenant: String,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let api = Arc::new(Api::default());
        let server = api.clone();
        let base_url = serve_http(move |seen, body| {
            let (status, headers, text) = server.answer(
                &seen.method,
                &seen.target,
                &String::from_utf8_lossy(body),
                &seen.headers,
            );
            let headers = headers
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect();
            (status, headers, text)
        });
        let tenant = unique_name("http");
        let a = Worker::shared().admin(
            "POST",
            "/_edgecache/admin/tenants",
            Some(
                &json!({"name": tenant, "origin": {"kind": "http", "base_url": base_url},
                "tables": ["brief", "greeting", "items", "me", "nostore", "page", "private",
                    "profile", "shared", "star", "welcome"]}),
            ),
        );
        assert_eq!(a.status, 201, "{}", a.text());
        Setup { api, tenant }
    })
}

fn url(path: &str) -> String {
    format!("/t/{}{path}", setup().tenant)
}

fn put_item(id: &str, name: &str) {
    setup()
        .api
        .items
        .lock()
        .unwrap()
        .insert(id.to_string(), json!({"id": id, "name": name}));
}

/// The origin's failure switch is global: tests take turns.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static M: Mutex<()> = Mutex::new(());
    M.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn reads_are_cached_and_the_query_reaches_the_origin_canonically() {
    let _s = serial();
    let id = unique("it");
    put_item(&id, "one");
    let w = Worker::shared();
    let a = w.get(&url(&format!("/v1/items/{id}?b=2&a=1")));
    assert_eq!((a.status, a.outcome()), (200, "MISS"), "{}", a.text());
    assert_eq!(a.json()["data"]["name"], "one");
    let b = w.get(&url(&format!("/v1/items/{id}?a=1&b=2")));
    assert_eq!(b.outcome(), "HIT-L1");
    assert_eq!(
        setup().api.hits("GET", &format!("/v1/items/{id}?a=1&b=2")),
        1,
        "one origin read, canonical query"
    );
}

#[test]
fn origin_cache_control_private_and_no_store_are_respected() {
    let _s = serial();
    let w = Worker::shared();
    for path in ["/v1/private", "/v1/nostore", "/v1/page"] {
        let before = setup().api.hits("GET", path);
        for _ in 0..2 {
            let a = w.get(&url(path));
            assert_eq!((a.status, a.outcome()), (200, "BYPASS"), "{path}");
            assert_eq!(a.header("cache-control"), Some("no-store"));
        }
        assert_eq!(
            setup().api.hits("GET", path),
            before + 2,
            "{path} went to the origin every time"
        );
    }
    assert_eq!(
        w.get(&url("/v1/page")).header("content-type"),
        Some("text/html")
    );
}

#[test]
fn origin_errors_pass_through_and_are_not_cached() {
    let _s = serial();
    let w = Worker::shared();
    let missing = format!("/v1/items/{}", unique("none"));
    for _ in 0..2 {
        let a = w.get(&url(&missing));
        assert_eq!(a.status, 404);
        assert_eq!(
            a.json()["error"]["code"],
            "not_found",
            "the origin's own body"
        );
    }
    assert_eq!(setup().api.hits("GET", &missing), 2);
}

#[test]
fn writes_are_forwarded_and_stale_exactly_the_record_and_the_tables_lists() {
    let _s = serial();
    let w = Worker::shared();
    let (id, other) = (unique("w"), unique("o"));
    put_item(&id, "before");
    put_item(&other, "other");
    for p in [
        format!("/v1/items/{id}"),
        format!("/v1/items/{other}"),
        "/v1/items?limit=5".to_string(),
    ] {
        w.get(&url(&p));
        assert_eq!(w.get(&url(&p)).outcome(), "HIT-L1", "{p}");
    }
    let a = w.send_json(
        "PATCH",
        &url(&format!("/v1/items/{id}")),
        &json!({"name": "after"}),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["data"]["name"], "after", "the origin's answer");
    let token = Worker::token_of(&a);
    assert!(token.starts_with("items="));
    assert_eq!(setup().api.hits("PATCH", &format!("/v1/items/{id}")), 1);

    let fresh = w.get_with(
        &url(&format!("/v1/items/{id}")),
        &[("x-edgecache-min-seq", &token)],
    );
    assert_eq!(fresh.json()["data"]["name"], "after");
    let list = w.get_with(
        &url("/v1/items?limit=5"),
        &[("x-edgecache-min-seq", &token)],
    );
    assert_ne!(
        list.outcome(),
        "HIT-L1",
        "lists of an HTTP origin are stale on any write of the table"
    );
    assert_eq!(
        w.get(&url(&format!("/v1/items/{other}"))).outcome(),
        "HIT-L1",
        "another record is untouched"
    );

    let created = w.send_json(
        "POST",
        &url("/v1/items"),
        &json!({"id": unique("n"), "name": "new"}),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let gone = w.request("DELETE", &url(&format!("/v1/items/{id}")), &[], None);
    assert_eq!(gone.status, 204);
    assert_eq!(w.get(&url(&format!("/v1/items/{id}"))).status, 404);
    let refused = w.send_json(
        "PATCH",
        &url(&format!("/v1/items/{}", unique("x"))),
        &json!({"name": "x"}),
    );
    assert_eq!(refused.status, 404, "the origin's refusal passes through");
    let bad = w.request(
        "POST",
        &url("/v1/items"),
        &[("content-type", "application/json")],
        Some(b"[1]"),
    );
    assert_eq!((bad.status, bad.error_code().as_str()), (400, "bad_body"));
}

#[test]
fn a_failing_origin_serves_the_last_good_copy_as_stale() {
    let _s = serial();
    let w = Worker::shared();
    let id = unique("f");
    put_item(&id, "good");
    let path = url(&format!("/v1/items/{id}"));
    w.get(&path);
    // Invalidate it so the next read must ask the origin.
    let inv = w.admin(
        "POST",
        &format!("/_edgecache/admin/tenants/{}/invalidate", setup().tenant),
        Some(&json!({"records": [{"table": "items", "id": id}]})),
    );
    assert_eq!(inv.status, 200, "{}", inv.text());
    setup().api.failing.store(true, Ordering::SeqCst);
    let a = w.get(&path);
    setup().api.failing.store(false, Ordering::SeqCst);
    assert_eq!((a.status, a.outcome()), (200, "STALE"), "{}", a.text());
    assert_eq!(a.json()["data"]["name"], "good");
    assert!(a.header("warning").is_some());
}

// ---------------------------------------------------------------------------------------------
// Shared-cache safety (RFC 9111 §3.5, §4.1).

/// A bearer token no other test uses, so the log and headers can be searched for it.
fn bearer(who: &str) -> String {
    format!("Bearer tok-{}", unique(who))
}

/// A GET with headers; asserts no response header carries any of `secrets`.
fn read_as(path: &str, headers: &[(&str, &str)]) -> common::Answer {
    let a = Worker::shared().get_with(&url(path), headers);
    let secrets = headers
        .iter()
        .filter(|(n, _)| ["authorization", "cookie"].contains(n))
        .map(|(_, v)| v.trim_start_matches("Bearer "));
    for secret in secrets {
        for (name, value) in &a.headers {
            assert!(
                !value.contains(secret),
                "{name}: {value} shows a credential"
            );
        }
    }
    a
}

/// Reads until an L1 hit (a fill lands off the response path); returns the hit.
fn warm_as(path: &str, headers: &[(&str, &str)]) -> common::Answer {
    for _ in 0..10 {
        let a = read_as(path, headers);
        assert_eq!(a.status, 200, "{path}: {}", a.text());
        if a.outcome() == "HIT-L1" {
            return a;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{path} never became an L1 hit for {headers:?}");
}

fn user_of(a: &common::Answer) -> String {
    a.json()["data"]["user"].as_str().unwrap_or("").to_string()
}

fn set_rule(rule: Value) {
    let a = Worker::shared().admin(
        "PUT",
        &format!("/_edgecache/admin/tenants/{}/rules", setup().tenant),
        Some(&rule),
    );
    assert_eq!(a.status, 200, "{}", a.text());
}

/// Reads `path` as each of `users` (a credential header, or none) from several threads in
/// random-ish interleavings; every answer must be the asker's own.
fn interleave(path: &str, users: &[Option<(&str, String)>]) {
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                for i in 0..12 {
                    let who = &users[(i * 7 + t * 3) % users.len()];
                    let headers: Vec<(&str, &str)> =
                        who.iter().map(|(n, v)| (*n, v.as_str())).collect();
                    let a = read_as(path, &headers);
                    assert_eq!(a.status, 200, "{}", a.text());
                    let expected = who.as_ref().map_or("anonymous", |(_, v)| v.as_str());
                    assert_eq!(user_of(&a), expected, "{path} as {who:?}: {:?}", a.headers);
                }
            });
        }
    });
}

#[test]
fn private_answers_are_forwarded_with_credentials_and_never_shared() {
    let _s = serial();
    let (a, b) = (bearer("a"), bearer("b"));
    let cookie = format!("session={}", unique("c"));
    let users = [
        Some(("authorization", a.clone())),
        Some(("authorization", b.clone())),
        Some(("cookie", cookie.clone())),
        None,
    ];
    let before = setup().api.hits("GET", "/v1/me");
    for who in users.iter().chain(users.iter().rev()) {
        let headers: Vec<(&str, &str)> = who.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let r = read_as("/v1/me", &headers);
        assert_eq!((r.status, r.outcome()), (200, "BYPASS"), "{who:?}");
        assert_eq!(r.header("x-edgecache-not-stored"), Some("origin_private"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    interleave("/v1/me", &users);
    assert_eq!(
        setup().api.hits("GET", "/v1/me"),
        before + 8 + 48,
        "every read went to the origin"
    );
    let seen = setup().api.credentials_for("/v1/me");
    assert!(
        seen.contains(&(Some(a.clone()), None)),
        "A's token reached the origin"
    );
    assert!(seen.contains(&(Some(b), None)));
    assert!(
        seen.contains(&(None, Some(cookie))),
        "the cookie reached the origin"
    );
    assert!(seen.contains(&(None, None)));
}

#[test]
fn a_vary_by_rule_caches_credentialed_answers_per_user() {
    let _s = serial();
    set_rule(json!({"pattern": "/v1/profile", "vary_by": ["authorization"]}));
    let (a, b) = (bearer("a"), bearer("b"));
    let as_a = [("authorization", a.as_str())];
    let as_b = [("authorization", b.as_str())];
    let hits = || setup().api.hits("GET", "/v1/profile");
    let before = hits();

    let first = read_as("/v1/profile", &as_a);
    assert_eq!((first.outcome(), user_of(&first)), ("MISS", a.clone()));
    let hit = warm_as("/v1/profile", &as_a);
    assert_eq!(user_of(&hit), a);
    let other = read_as("/v1/profile", &as_b);
    assert_eq!(
        (other.outcome(), user_of(&other)),
        ("MISS", b.clone()),
        "B is never served A's entry"
    );
    assert_eq!(user_of(&warm_as("/v1/profile", &as_b)), b);
    let anonymous = read_as("/v1/profile", &[]);
    assert_eq!(
        (anonymous.outcome(), user_of(&anonymous).as_str()),
        ("MISS", "anonymous"),
        "no credential, no credentialed entry"
    );
    assert_eq!(user_of(&warm_as("/v1/profile", &[])), "anonymous");
    let fills = hits() - before;

    // Each one's own entry, whatever the interleaving; no more origin reads.
    interleave(
        "/v1/profile",
        &[
            Some(("authorization", a.clone())),
            Some(("authorization", b.clone())),
            None,
        ],
    );
    assert_eq!(hits() - before, fills, "all hits");

    // The key names the keyed hash, never the token.
    let debug = read_as(
        "/v1/profile",
        &[("authorization", &a), ("x-edgecache-debug", "1")],
    );
    let key = debug.header("x-edgecache-key").unwrap_or("");
    assert!(key.contains("/v1/profile#c"), "{key}");

    // A cookie the rule does not name: forwarded, not stored.
    let cookie = read_as("/v1/profile", &[("authorization", &a), ("cookie", "s=1")]);
    assert_eq!(cookie.outcome(), "BYPASS");
    assert_eq!(
        cookie.header("x-edgecache-not-stored"),
        Some("credentialed")
    );
}

#[test]
fn public_answers_to_credentialed_reads_are_still_keyed_by_the_credential() {
    let _s = serial();
    let (a, b) = (bearer("a"), bearer("b"));
    let as_a = [("authorization", a.as_str())];
    assert_eq!(read_as("/v1/shared", &as_a).outcome(), "MISS");
    assert_eq!(user_of(&warm_as("/v1/shared", &as_a)), a);
    let other = read_as("/v1/shared", &[("authorization", &b)]);
    assert_eq!((other.outcome(), user_of(&other)), ("MISS", b));
    let anonymous = read_as("/v1/shared", &[]);
    assert_eq!(user_of(&anonymous), "anonymous");
    assert_ne!(anonymous.outcome(), "HIT-L1");
}

/// Stale-while-revalidate serves an expired copy only while a refill replaces it, and a refill
/// has no user's headers: a credentialed read's copy (keyed by its credential) is a plain miss
/// once expired, never served stale with nothing to refresh it.
#[test]
fn a_credentialed_copy_is_not_served_stale_while_revalidate() {
    let _s = serial();
    set_rule(json!({"pattern": "/v1/shared", "swr_secs": 30}));
    let who = bearer("swr");
    let as_who = [("authorization", who.as_str())];
    warm_as("/v1/shared", &as_who);
    // Past the origin's s-maxage=2.
    std::thread::sleep(std::time::Duration::from_millis(2_300));
    let a = read_as("/v1/shared", &as_who);
    assert_eq!((a.outcome(), user_of(&a)), ("MISS", who));
}

#[test]
fn vary_keys_entries_by_the_named_request_headers() {
    let _s = serial();
    let w = Worker::shared();
    let greet = |lang: Option<&str>| {
        let headers: Vec<(&str, &str)> = lang.map(|l| ("accept-language", l)).into_iter().collect();
        read_as("/v1/greeting", &headers)
    };
    let text = |a: &common::Answer| a.json()["data"].as_str().unwrap_or("").to_string();
    // Start from nothing cached under any variant.
    let inv = w.admin(
        "POST",
        &format!("/_edgecache/admin/tenants/{}/invalidate", setup().tenant),
        Some(&json!({"urls": ["/v1/greeting"]})),
    );
    assert_eq!(inv.status, 200, "{}", inv.text());

    let fr = greet(Some("fr"));
    assert_eq!((fr.outcome(), text(&fr).as_str()), ("MISS", "bonjour"));
    let warm = warm_as("/v1/greeting", &[("accept-language", "fr")]);
    assert_eq!(text(&warm), "bonjour");
    let de = greet(Some("de"));
    assert_eq!(
        (de.outcome(), text(&de).as_str()),
        ("MISS", "hallo"),
        "fr's answer is never served for de"
    );
    assert_eq!(
        text(&warm_as("/v1/greeting", &[("accept-language", "de")])),
        "hallo"
    );
    let none = greet(None);
    assert_eq!((none.outcome(), text(&none).as_str()), ("MISS", "hello"));
    assert_eq!(text(&warm_as("/v1/greeting", &[])), "hello");
    let spelt = greet(Some(" FR"));
    assert_eq!(
        (spelt.outcome(), text(&spelt).as_str()),
        ("HIT-L1", "bonjour"),
        "values are normalised"
    );

    // Concurrent readers of every language get their own.
    let before = setup().api.hits("GET", "/v1/greeting");
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                for i in 0..12 {
                    let (lang, want) = [
                        (Some("fr"), "bonjour"),
                        (Some("de"), "hallo"),
                        (None, "hello"),
                    ][(i + t) % 3];
                    assert_eq!(text(&greet(lang)), want, "{lang:?}");
                }
            });
        }
    });
    assert_eq!(setup().api.hits("GET", "/v1/greeting"), before, "all hits");

    // Invalidating the URL reaches every variant.
    let inv = w.admin(
        "POST",
        &format!("/_edgecache/admin/tenants/{}/invalidate", setup().tenant),
        Some(&json!({"urls": ["/v1/greeting"]})),
    );
    assert_eq!(inv.status, 200, "{}", inv.text());
    let token = format!("greeting={}", inv.json()["seqs"]["greeting"]);
    for (lang, want) in [
        (Some("fr"), "bonjour"),
        (Some("de"), "hallo"),
        (None, "hello"),
    ] {
        let mut headers = vec![("x-edgecache-min-seq", token.as_str())];
        headers.extend(lang.map(|l| ("accept-language", l)));
        let a = read_as("/v1/greeting", &headers);
        assert_eq!((a.outcome(), text(&a).as_str()), ("MISS", want), "{lang:?}");
    }
}

#[test]
fn credentialed_answers_that_vary_are_keyed_by_both() {
    let _s = serial();
    let (a, b) = (bearer("a"), bearer("b"));
    let ask = |who: &str, lang: &str| {
        let r = read_as(
            "/v1/welcome",
            &[("authorization", who), ("accept-language", lang)],
        );
        let d = r.json()["data"].clone();
        assert_eq!(
            (d["user"].as_str(), d["lang"].as_str()),
            (Some(who), Some(lang))
        );
        r
    };
    assert_eq!(ask(&a, "fr").outcome(), "MISS");
    warm_as(
        "/v1/welcome",
        &[("authorization", &a), ("accept-language", "fr")],
    );
    assert_eq!(ask(&a, "fr").outcome(), "HIT-L1");
    assert_eq!(ask(&a, "de").outcome(), "MISS", "A in another language");
    assert_eq!(ask(&b, "fr").outcome(), "MISS", "B in A's language");
    warm_as(
        "/v1/welcome",
        &[("authorization", &b), ("accept-language", "fr")],
    );
    for _ in 0..3 {
        for (who, lang) in [(&a, "fr"), (&b, "fr"), (&a, "de")] {
            ask(who, lang);
        }
    }
}

#[test]
fn vary_star_private_and_no_store_are_never_stored() {
    let _s = serial();
    for (path, reason) in [
        ("/v1/star", "vary_any"),
        ("/v1/private", "origin_private"),
        ("/v1/nostore", "origin_no_store"),
    ] {
        let before = setup().api.hits("GET", path);
        for _ in 0..3 {
            let a = read_as(path, &[]);
            assert_eq!((a.status, a.outcome()), (200, "BYPASS"), "{path}");
            assert_eq!(a.header("x-edgecache-not-stored"), Some(reason), "{path}");
        }
        assert_eq!(setup().api.hits("GET", path), before + 3, "{path}");
    }
}

#[test]
fn the_origin_max_age_caps_the_ttl_unless_a_rule_sets_one() {
    let _s = serial();
    let (capped, ruled) = (unique("cap"), unique("rule"));
    set_rule(json!({"pattern": format!("/v1/brief/{ruled}"), "ttl_secs": 3600}));
    let capped = format!("/v1/brief/{capped}");
    let ruled = format!("/v1/brief/{ruled}");
    warm_as(&capped, &[]);
    warm_as(&ruled, &[]);
    // Past the origin's max-age=1: the capped entry has expired; the rule's has not.
    std::thread::sleep(std::time::Duration::from_millis(1_300));
    assert_eq!(read_as(&capped, &[]).outcome(), "MISS");
    assert_eq!(read_as(&ruled, &[]).outcome(), "HIT-L1");
}

#[test]
fn head_is_answered_from_the_get_entry_without_a_body() {
    let _s = serial();
    let w = Worker::shared();
    let id = unique("h");
    put_item(&id, "headed");
    let path = url(&format!("/v1/items/{id}"));
    let head = w.request("HEAD", &path, &[], None);
    assert_eq!((head.status, head.outcome()), (200, "MISS"));
    assert!(head.body.is_empty());
    let get = warm_as(&format!("/v1/items/{id}"), &[]);
    let head = w.request("HEAD", &path, &[], None);
    assert_eq!((head.status, head.outcome()), (200, "HIT-L1"));
    assert!(head.body.is_empty(), "no body");
    assert_eq!(
        head.header("content-length"),
        Some(get.body.len().to_string().as_str())
    );
    for h in ["etag", "content-type", "cache-control"] {
        assert_eq!(head.header(h), get.header(h), "{h}");
    }
    assert_eq!(
        setup().api.hits("GET", &format!("/v1/items/{id}")),
        1,
        "one origin read for the HEAD and the GETs"
    );
    let list = w.request("HEAD", &url("/v1/items?limit=2"), &[], None);
    assert_eq!(list.status, 200);
    assert!(list.body.is_empty());
}

#[test]
fn credentials_never_reach_the_log() {
    let _s = serial();
    let token = bearer("log");
    set_rule(json!({"pattern": "/v1/profile", "vary_by": ["authorization"]}));
    for path in ["/v1/me", "/v1/profile", "/v1/shared"] {
        read_as(
            path,
            &[("authorization", &token), ("x-edgecache-debug", "1")],
        );
    }
    warm_as("/v1/profile", &[("authorization", &token)]);
    let log = std::fs::read_to_string(&Worker::shared().log).unwrap_or_default();
    assert!(!log.is_empty(), "the worker writes a log");
    assert!(!log.contains(token.trim_start_matches("Bearer ")));
}
