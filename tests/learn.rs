//! Learned invalidation in the runtime: a shop API in this test process (users and orders,
//! where placing an order bumps the user's `orderCount`, a side effect EdgeCache is not told
//! about) behind a tenant that knows the tables `users` and `orders`.
//!
//! * Frozen, nothing is checked and the user's copy stays stale after an order, even for a
//!   read that presents the order's token.
//! * Learning (in `observe` mode: the rule only adds, so it applies) learns
//!   `POST /v1/orders -> /v1/users/{after.userId}` within a few writes; from then on the
//!   order's token names `users` too and a read presenting it is fresh; `deps` names the rule.
//! * Forgetting the rule removes it; shadow fetches stay within the per-write budget; a kept
//!   key the origin changed behind EdgeCache's back is found by a check and invalidated.
//! * A dependency candidate (evidence short of a rule) is listed with its id and forgotten by
//!   it (`DELETE …/learn/candidates/{id}`): its evidence goes, nothing is invalidated.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::api::{json_headers, serve_http};
use common::{unique_name, Answer, Worker};
use serde_json::{json, Value};

/// The shop: users and orders in memory, and every request's method and path.
#[derive(Default)]
struct Shop {
    users: Mutex<BTreeMap<String, Value>>,
    orders: Mutex<BTreeMap<String, Value>>,
    log: Mutex<Vec<(String, String)>>,
}

impl Shop {
    fn start(users: &[&str]) -> (Arc<Shop>, String) {
        let shop = Arc::new(Shop::default());
        for id in users {
            shop.users.lock().unwrap().insert(
                id.to_string(),
                json!({"id": id, "name": id, "orderCount": 0}),
            );
        }
        let server = shop.clone();
        let base = serve_http(move |seen, body| {
            let (status, text) = server.answer(&seen.method, &seen.target, body);
            (status, json_headers(), text)
        });
        (shop, base)
    }

    fn answer(&self, method: &str, target: &str, body: &[u8]) -> (u16, String) {
        self.log
            .lock()
            .unwrap()
            .push((method.to_string(), target.to_string()));
        let path = target.split('?').next().unwrap_or("");
        let parts: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
        let not_found = (
            404,
            json!({"error": {"code": "not_found", "message": "no"}}).to_string(),
        );
        match (method, parts.as_slice()) {
            ("GET", ["users", id]) => match self.users.lock().unwrap().get(*id) {
                Some(u) => (200, json!({ "data": u }).to_string()),
                None => not_found,
            },
            ("GET", ["orders", id]) => match self.orders.lock().unwrap().get(*id) {
                Some(o) => (200, json!({ "data": o }).to_string()),
                None => not_found,
            },
            ("POST", ["orders"]) => {
                let order: Value = serde_json::from_slice(body).unwrap_or(json!({}));
                let user = order["userId"].as_str().unwrap_or_default().to_string();
                // The hidden side effect.
                if let Some(u) = self.users.lock().unwrap().get_mut(&user) {
                    u["orderCount"] = json!(u["orderCount"].as_u64().unwrap_or(0) + 1);
                }
                let id = order["id"].as_str().unwrap_or("o").to_string();
                self.orders.lock().unwrap().insert(id, order.clone());
                (201, json!({ "data": order }).to_string())
            }
            _ => not_found,
        }
    }

    /// GETs of user records the shop has answered so far.
    fn user_reads(&self) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p)| m == "GET" && p.starts_with("/v1/users/"))
            .count()
    }

    /// Changes a user behind EdgeCache's back (another client of the API).
    fn rename(&self, id: &str, name: &str) {
        self.users.lock().unwrap().get_mut(id).unwrap()["name"] = json!(name);
    }
}

/// A tenant on a fresh shop whose users are `users`, every read checked against its
/// coordinator (`max_staleness` 0), learning set as `learning` says.
struct Setup {
    w: &'static Worker,
    shop: Arc<Shop>,
    tenant: String,
}

impl Setup {
    fn new(users: &[&str], learning: Value) -> Setup {
        Setup::with_rule(
            users,
            learning,
            json!({"pattern": "/v1/*", "max_staleness_ms": 0}),
        )
    }

    fn with_rule(users: &[&str], learning: Value, rule: Value) -> Setup {
        let w = Worker::shared();
        let (shop, base) = Shop::start(users);
        let tenant = unique_name("learn");
        let a = w.admin(
            "POST",
            "/_edgecache/admin/tenants",
            Some(
                &json!({"name": tenant, "origin": {"kind": "http", "base_url": base},
                         "tables": ["users", "orders"]}),
            ),
        );
        assert_eq!(a.status, 201, "{}", a.text());
        let s = Setup { w, shop, tenant };
        let a = s.admin("PUT", "/rules", Some(&rule));
        assert_eq!(a.status, 200, "{}", a.text());
        let a = s.admin("PATCH", "", Some(&learning));
        assert_eq!(a.status, 200, "{}", a.text());
        s
    }

    fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let path = format!("/_edgecache/admin/tenants/{}{path}", self.tenant);
        self.w.admin(method, &path, body)
    }

    fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let path = format!("/t/{}{path}", self.tenant);
        match token {
            Some(t) => self.w.get_with(&path, &[("x-edgecache-min-seq", t)]),
            None => self.w.get(&path),
        }
    }

    fn order(&self, id: &str, user: &str) -> Answer {
        let path = format!("/t/{}/v1/orders", self.tenant);
        let a = self
            .w
            .send_json("POST", &path, &json!({"id": id, "userId": user, "qty": 2}));
        assert_eq!(a.status, 201, "{}", a.text());
        a
    }

    fn status(&self) -> Value {
        let a = self.admin("GET", "/learn", None);
        assert_eq!(a.status, 200, "{}", a.text());
        a.json()
    }

    fn users(&self) -> Value {
        let a = self.admin("GET", "/learn?table=users", None);
        assert_eq!(a.status, 200, "{}", a.text());
        a.json()["tables"][0].clone()
    }

    /// Waits until every table's queued shadow checks are done.
    fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.status();
            let pending: u64 = status["tables"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["pending_checks"].as_u64().unwrap())
                .sum();
            if pending == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "checks never ran: {status}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Reads `path` until it is a hit (a check may just have invalidated it).
    fn cached(&self, path: &str) -> Answer {
        for _ in 0..10 {
            let a = self.get(path, None);
            assert_eq!(a.status, 200, "{path}: {}", a.text());
            if a.outcome().starts_with("HIT") {
                return a;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{path} never became a hit");
    }
}

fn order_count(a: &Answer) -> u64 {
    a.json()["data"]["orderCount"].as_u64().unwrap()
}

#[test]
fn the_hidden_side_effect_is_learned_then_the_orders_token_reads_the_user_fresh() {
    let users = ["u1", "u2", "u3", "u4"];
    let s = Setup::new(&users, json!({"learning_frozen": true}));

    // Frozen: nothing is checked, so the side effect goes unseen, even by a token read.
    s.cached("/v1/users/u1");
    let placed = s.order("o0", "u1");
    let token = Worker::token_of(&placed);
    assert!(!token.contains("users="), "{token}");
    let read = s.get("/v1/users/u1", Some(&token));
    assert_eq!(
        (read.outcome(), order_count(&read)),
        ("HIT-L1", 0),
        "stale before learning"
    );
    s.settle();
    let users_now = s.users();
    assert_eq!(users_now["candidates"], json!([]), "frozen: no evidence");
    assert_eq!(
        users_now["shadow"][0]["counts"]["kept_changed"], 0,
        "frozen: no checks"
    );
    let reads = s.shop.user_reads();
    assert_eq!(reads, 1, "frozen: no shadow fetches");

    // Observe mode learns (the rule only adds, so it applies in either mode).
    let a = s.admin(
        "PATCH",
        "",
        Some(&json!({"learning": "observe", "learning_frozen": false})),
    );
    assert_eq!(
        a.json()["tenant"]["learning"],
        json!({"mode": "observe", "frozen": false})
    );
    let mut learned_after = None;
    for n in 1..=40 {
        for u in users {
            s.cached(&format!("/v1/users/{u}"));
        }
        s.order(&format!("o{n}"), users[n % users.len()]);
        s.settle();
        if !s.users()["rules"].as_array().unwrap().is_empty() {
            learned_after = Some(n);
            break;
        }
    }
    let n = learned_after.expect("the side effect was learned within 40 orders");
    assert!(n <= 10, "learned after {n} orders");
    let rules = s.users()["rules"].clone();
    assert_eq!(rules[0]["id"], "users:1", "{rules}");
    assert_eq!(
        rules[0]["rule"],
        "POST /v1/orders -> /v1/users/{after.userId}"
    );
    assert_eq!(rules[0]["learned"]["evidence"]["counter"], 0);
    assert_eq!(s.users()["hypotheses"], json!([]));

    // Learned: the order's token names users, and a read presenting it is fresh.
    let before = order_count(&s.cached("/v1/users/u3"));
    let placed = s.order("o-after", "u3");
    let token = Worker::token_of(&placed);
    assert!(token.contains("users="), "{token}");
    let read = s.get("/v1/users/u3", Some(&token));
    assert_eq!(
        order_count(&read),
        before + 1,
        "fresh right after the order"
    );
    let deps = s.admin("GET", "/deps?url=/v1/users/u3", None).json();
    assert_eq!(
        deps["coordinators"]["users"]["last_invalidated"]["reason"],
        json!({"learned": {"rule": 1}}),
        "{deps}"
    );

    // Forgotten, the rule no longer applies (one new check is not enough to learn it again).
    s.settle();
    let a = s.admin("DELETE", "/learn/rules/users:1", None);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        a.json()["rule"],
        "POST /v1/orders -> /v1/users/{after.userId}"
    );
    assert_eq!(s.users()["rules"], json!([]));
    s.cached("/v1/users/u2");
    let token = Worker::token_of(&s.order("o-forgotten", "u2"));
    assert!(!token.contains("users="), "{token}");
    let a = s.admin("DELETE", "/learn/rules/users:1", None);
    assert_eq!(
        (a.status, a.error_code()),
        (404, "learned_rule_not_found".to_string())
    );
    let a = s.admin("DELETE", "/learn/rules/nonsense", None);
    assert_eq!((a.status, a.error_code()), (400, "bad_rule_id".to_string()));
}

#[test]
fn shadow_fetches_stay_within_the_per_write_budget() {
    let users: Vec<String> = (0..12).map(|i| format!("b{i}")).collect();
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    // No refills: every user read the shop answers after the fills is a shadow check's.
    let rule = json!({"pattern": "/v1/*", "max_staleness_ms": 0, "rehydrate": false});
    let s = Setup::with_rule(&refs, json!({"learning": "apply"}), rule);
    for u in &users {
        s.cached(&format!("/v1/users/{u}"));
    }
    // One write at a time, each with its checks done before the next.
    for (n, user) in users.iter().take(5).enumerate() {
        let reads = s.shop.user_reads();
        s.order(&format!("ob{n}"), user);
        s.settle();
        let shadow = s.shop.user_reads() - reads;
        // The default budget: 3 checks per write per coordinator (EDGECACHE_SHADOW_PER_WRITE).
        assert!(
            (1..=3).contains(&shadow),
            "write {n}: {shadow} shadow fetches"
        );
    }
    let counts = &s.users()["shadow"][0]["counts"];
    let checked = [
        "kept_changed",
        "kept_same",
        "invalidated_changed",
        "invalidated_same",
    ]
    .iter()
    .map(|c| counts[c].as_u64().unwrap())
    .sum::<u64>();
    assert!((5..=15).contains(&checked), "{counts}");
}

#[test]
fn a_kept_key_the_origin_changed_is_found_and_invalidated() {
    let s = Setup::new(&["k1", "k2"], json!({"learning": "apply"}));
    s.cached("/v1/users/k1");
    s.cached("/v1/users/k2");
    s.shop.rename("k2", "renamed");
    // An order for k1: the users coordinator checks k1 (pointed at) and k2 (the rest).
    s.order("ok1", "k1");
    s.settle();
    let read = s.get("/v1/users/k2", None);
    assert_eq!(read.json()["data"]["name"], "renamed", "{}", read.text());
    let deps = s.admin("GET", "/deps?url=/v1/users/k2", None).json();
    assert_eq!(
        deps["coordinators"]["users"]["last_invalidated"]["reason"], "shadow_changed",
        "{deps}"
    );
    let counts = &s.users()["shadow"][0]["counts"];
    assert_eq!(counts["kept_changed"], 2, "{counts}");
}

/// The first check of an order leaves `POST /v1/orders -> /v1/users/{after.userId}` a candidate
/// with one supporting check; forgetting it by its id drops that evidence (the next check starts
/// it again from one) and invalidates nothing (the cached user stays a hit, each hit checked
/// against the coordinator).
#[test]
fn a_candidate_is_listed_with_its_id_and_forgotten_by_it() {
    let s = Setup::new(&["c1", "c2"], json!({"learning": "observe"}));
    let checked_order = |id: &str| {
        s.cached("/v1/users/c1");
        s.order(id, "c1");
        s.settle();
        let candidates = s.users()["candidates"].clone();
        assert_eq!(
            candidates[0]["rule"], "POST /v1/orders -> /v1/users/{after.userId}",
            "{candidates}"
        );
        candidates[0].clone()
    };
    let candidate = checked_order("oc1");
    assert_eq!(candidate["evidence"]["support"], 1, "{candidate}");
    let id = candidate["id"].as_str().unwrap().to_string();
    assert!(
        id.starts_with("users:c") && id.len() == "users:c".len() + 8,
        "{id}"
    );

    let path = format!("/learn/candidates/{id}");
    let a = s.w.request(
        "DELETE",
        &format!("/_edgecache/admin/tenants/{}{path}", s.tenant),
        &[],
        None,
    );
    assert_eq!(
        a.status,
        401,
        "an admin credential is required: {}",
        a.text()
    );
    s.cached("/v1/users/c1");
    let a = s.admin("DELETE", &path, None);
    assert_eq!(a.status, 200, "{}", a.text());
    let gone = a.json();
    assert_eq!(gone["id"], id.as_str());
    assert_eq!(gone["forgotten"], json!([candidate]), "as status showed it");
    assert!(gone["seq"].as_u64().is_some(), "{gone}");
    assert_eq!(s.users()["candidates"], json!([]));
    let read = s.get("/v1/users/c1", None);
    assert!(
        read.outcome().starts_with("HIT"),
        "nothing invalidated: {}",
        read.outcome()
    );

    let a = s.admin("DELETE", &path, None);
    assert_eq!(
        (a.status, a.error_code()),
        (404, "candidate_not_found".to_string())
    );
    let a = s.admin("DELETE", "/learn/candidates/users:cx", None);
    assert_eq!(
        (a.status, a.error_code()),
        (400, "bad_candidate_id".to_string())
    );
    assert!(a.json()["error"]["message"].is_string());
    let a = s.admin("DELETE", "/learn/candidates/carts:c0c1d2e3f", None);
    assert_eq!(
        (a.status, a.error_code()),
        (404, "table_not_found".to_string())
    );
    // Learned again only from new evidence: one check, not two.
    let again = checked_order("oc2");
    assert_eq!(
        (&again["id"], &again["evidence"]["support"]),
        (&json!(id), &json!(1))
    );
}
