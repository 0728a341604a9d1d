//! A tenant whose origin is its own HTTP API: a small REST server in this test process on
//! 127.0.0.1, reached by the real worker. Reads are cached and validated like D1 reads; writes
//! are forwarded through the table's coordinator; the origin's Cache-Control is respected.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use common::{unique, Worker};
use serde_json::{json, Value};

/// The origin: items in memory, a request log, and a switch that makes it fail.
#[derive(Default)]
struct Api {
    items: Mutex<BTreeMap<String, Value>>,
    log: Mutex<Vec<(String, String)>>,
    failing: AtomicBool,
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

    fn answer(
        &self,
        method: &str,
        target: &str,
        body: &str,
    ) -> (u16, Vec<(&'static str, &'static str)>, String) {
        self.log
            .lock()
            .unwrap()
            .push((method.to_string(), target.to_string()));
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
            _ => (404, json, "{}".into()),
        }
    }
}

fn serve(api: Arc<Api>, mut stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut length = 0;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let (status, headers, text) = api.answer(&method, &target, &String::from_utf8_lossy(&body));
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nconnection: close\r\ncontent-length: {}\r\n",
        text.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&text);
    let _ = stream.write_all(out.as_bytes());
}

struct Setup {
    api: Arc<Api>,
    tenant: String,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let api = Arc::new(Api::default());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = api.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let api = server.clone();
                std::thread::spawn(move || serve(api, stream));
            }
        });
        let tenant: String = unique("http").chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(50).collect();
        let a = Worker::shared().admin(
            "POST",
            "/_edgecache/admin/tenants",
            Some(&json!({"name": tenant, "origin": {"kind": "http", "base_url": format!("http://127.0.0.1:{port}")}})),
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
