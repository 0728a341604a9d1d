//! The origin's signed invalidation webhook: `POST /_edgecache/invalidate`.
//!
//! One private worker with a random secret. Rehydration is off so an invalidated key's next
//! read is a plain MISS (not a refilled L2 copy). Tests are serialized: table and prefix
//! invalidations reach keys other tests use as controls.

mod common;

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{serial, unique, Answer, Worker};
use edgecache_core::auth::sign;
use serde_json::{json, Value};

static SERIAL: Mutex<()> = Mutex::new(());

fn secret() -> &'static str {
    static S: OnceLock<String> = OnceLock::new();
    S.get_or_init(|| unique("whsec"))
}

fn w() -> &'static Worker {
    static W: OnceLock<Worker> = OnceLock::new();
    W.get_or_init(|| {
        Worker::start_with(&[
            ("EDGECACHE_WEBHOOK_SECRET", secret()),
            (
                "EDGECACHE_RULES",
                r#"[{"pattern":"/v1/*","rehydrate":false}]"#,
            ),
        ])
    })
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Posts `body` with a signature header (or none).
fn post(w: &Worker, body: &[u8], signature: Option<&str>) -> Answer {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(s) = signature {
        headers.push(("x-edgecache-signature", s));
    }
    w.request("POST", "/_edgecache/invalidate", &headers, Some(body))
}

/// Posts `body` signed now with the worker's secret; expects 200.
fn invalidate(body: Value) -> Value {
    let bytes = body.to_string().into_bytes();
    let sig = sign(secret().as_bytes(), now_secs(), &bytes);
    let a = post(w(), &bytes, Some(&sig));
    assert_eq!(a.status, 200, "{body}: {}", a.text());
    a.json()
}

fn invalidated_keys(answer: &Value) -> Vec<String> {
    answer["invalidated"]
        .as_array()
        .unwrap_or_else(|| panic!("no invalidated list: {answer}"))
        .iter()
        .map(|i| i["key"].as_str().unwrap().to_string())
        .collect()
}

/// Reads until an L1 hit; returns it.
fn warm(path: &str) -> Answer {
    for _ in 0..3 {
        let a = w().get(path);
        assert_eq!(a.status, 200, "{path}: {}", a.text());
        if a.outcome() == "HIT-L1" {
            return a;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{path} never became an L1 hit");
}

fn assert_miss(path: &str, before: &Answer) {
    let a = w().get(path);
    assert_eq!(a.outcome(), "MISS", "{path} was invalidated");
    assert_eq!(a.body, before.body, "{path}: same data, refetched");
}

fn assert_hit(path: &str) {
    assert_eq!(
        w().get(path).outcome(),
        "HIT-L1",
        "{path} was not named and must stay cached"
    );
}

fn users_seq() -> u64 {
    common::num(&w().stats(), "coordinators.users.seq")
}

fn create_user(last: &str) -> String {
    let id = unique("hook");
    let a = w().send_json(
        "POST",
        "/v1/users",
        &json!({"id": id, "firstName": "Hook", "lastName": last, "email": "h@example.com"}),
    );
    assert_eq!(a.status, 201, "{}", a.text());
    id
}

#[test]
fn a_signed_url_invalidation_misses_that_key_only() {
    let _s = serial(&SERIAL);
    let named = "/v1/users?limit=4&offset=201";
    let control = "/v1/users?limit=4&offset=202";
    let before = warm(named);
    warm(control);
    let seq = users_seq();
    let answer = invalidate(json!({"urls": [named]}));
    assert_eq!(
        invalidated_keys(&answer),
        vec![format!("local:{}", named)],
        "{answer}"
    );
    assert_eq!(answer["invalidated"][0]["reason"], "manual");
    let new_seq = answer["seqs"]["users"].as_u64().expect("seqs.users");
    assert!(new_seq > seq, "{answer}");
    assert_miss(named, &before);
    assert_hit(control);
    std::thread::sleep(Duration::from_millis(100));
    assert_hit(named);
}

#[test]
fn a_record_invalidation_misses_every_key_that_shows_it() {
    let _s = serial(&SERIAL);
    let last = unique("Rec");
    let id = create_user(&last);
    let record = format!("/v1/users/{id}");
    let list = format!("/v1/users?lastName={last}");
    let control = "/v1/users?limit=4&offset=203";
    let (r, l) = (warm(&record), warm(&list));
    warm(control);
    let answer = invalidate(json!({"records": [{"table": "users", "id": id}]}));
    let keys = invalidated_keys(&answer);
    assert!(keys.contains(&format!("local:{record}")), "{keys:?}");
    assert!(keys.contains(&format!("local:{list}")), "{keys:?}");
    assert_miss(&record, &r);
    assert_miss(&list, &l);
    assert_hit(control);
}

#[test]
fn a_table_invalidation_misses_the_table_and_views_over_it() {
    let _s = serial(&SERIAL);
    let orders = "/v1/orders?limit=2&offset=300";
    let view = "/v1/usersWithOrders?limit=2&offset=300";
    let control = "/v1/users?limit=4&offset=204";
    let (o, v) = (warm(orders), warm(view));
    warm(control);
    let answer = invalidate(json!({"tables": ["orders"]}));
    assert!(answer["seqs"]["orders"].as_u64().is_some(), "{answer}");
    assert!(answer["seqs"].get("users").is_none(), "{answer}");
    assert_miss(orders, &o);
    assert_miss(view, &v);
    assert_hit(control);
}

#[test]
fn a_prefix_invalidation_misses_keys_under_it_only() {
    let _s = serial(&SERIAL);
    let a = format!("/v1/users/{}", create_user("PrefA"));
    let b = format!("/v1/users/{}", create_user("PrefB"));
    let list = "/v1/users?limit=4&offset=205";
    let order = "/v1/orders/o-00007";
    let (ra, rb) = (warm(&a), warm(&b));
    warm(list);
    warm(order);
    let answer = invalidate(json!({"prefixes": ["/v1/users/"]}));
    let keys = invalidated_keys(&answer);
    assert!(keys.contains(&format!("local:{a}")), "{keys:?}");
    assert!(
        keys.iter().all(|k| k.starts_with("local:/v1/users/")),
        "{keys:?}"
    );
    assert_miss(&a, &ra);
    assert_miss(&b, &rb);
    assert_hit(list);
    assert_hit(order);
}

/// Every refused request: its status and code, and that nothing was invalidated.
fn refused(body: &[u8], signature: Option<&str>, status: u16, code: &str) {
    let key = "/v1/users?limit=4&offset=206";
    warm(key);
    let seq = users_seq();
    let a = post(w(), body, signature);
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (status, code),
        "{signature:?}: {}",
        a.text()
    );
    assert_eq!(users_seq(), seq, "{code}: the coordinator's seq moved");
    assert_hit(key);
}

#[test]
fn forged_replayed_and_unsigned_requests_are_refused() {
    let _s = serial(&SERIAL);
    let body = json!({"urls": ["/v1/users?limit=4&offset=206"]})
        .to_string()
        .into_bytes();
    let now = now_secs();
    let forged = sign(b"not-the-secret", now, &body);
    refused(&body, Some(&forged), 401, "signature_mismatch");
    // Signed for another body.
    let other = sign(secret().as_bytes(), now, br#"{"tables":["users"]}"#);
    refused(&body, Some(&other), 401, "signature_mismatch");
    let replayed = sign(secret().as_bytes(), now - 600, &body);
    refused(&body, Some(&replayed), 401, "signature_expired");
    let future = sign(secret().as_bytes(), now + 600, &body);
    refused(&body, Some(&future), 401, "signature_expired");
    refused(&body, None, 401, "signature_missing");
    refused(&body, Some("t=abc,v1=zz"), 401, "signature_malformed");
    refused(&body, Some("garbage"), 401, "signature_malformed");
    // Control: the same body, properly signed, is accepted.
    let ok = sign(secret().as_bytes(), now_secs(), &body);
    let a = post(w(), &body, Some(&ok));
    assert_eq!(a.status, 200, "{}", a.text());
}

#[test]
fn bad_bodies_are_400_and_unknown_tables_404() {
    let _s = serial(&SERIAL);
    let signed = |body: &[u8]| sign(secret().as_bytes(), now_secs(), body);
    for body in [
        &b"{not json"[..],
        b"",
        b"{}",
        br#"{"nope": 1}"#,
        br#"{"urls": "/v1/users"}"#,
        br#"{"records": [{"table": "users"}]}"#,
    ] {
        refused(body, Some(&signed(body)), 400, "bad_body");
    }
    for body in [
        &br#"{"tables": ["nope"]}"#[..],
        br#"{"records": [{"table": "nope", "id": "1"}]}"#,
        br#"{"urls": ["/v1/nope?limit=1"]}"#,
    ] {
        refused(body, Some(&signed(body)), 404, "unknown_table");
    }
    // A bad body is only looked at once the signature checks out.
    refused(b"{not json", None, 401, "signature_missing");
}

#[test]
fn without_a_secret_the_webhook_is_not_configured() {
    let body = br#"{"tables":["users"]}"#;
    let sig = sign(secret().as_bytes(), now_secs(), body);
    let a = post(Worker::shared(), body, Some(&sig));
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (503, "webhook_not_configured"),
        "{}",
        a.text()
    );
}
