//! The real `edgecache` binary against the real worker (wrangler dev): provision a tenant, set a
//! rule, cache a URL, inspect and invalidate it, read stats, warm a list of URLs, and fail
//! clearly on bad credentials; API keys guard writes and private reads and stop working when
//! revoked; origin credentials are never shown back.

#[path = "../../tests/common/mod.rs"]
mod worker;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use worker::{unique, Answer, Worker, OPERATOR_TOKEN};

struct Cli {
    config: tempfile::TempDir,
}

impl Cli {
    fn new() -> Cli {
        Cli {
            config: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs the binary with an isolated config and no inherited EDGECACHE_* variables.
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgecache"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("EDGECACHE_")) {
            cmd.env_remove(k);
        }
        cmd.env("EDGECACHE_CONFIG", self.config.path().join("config.toml"))
            .args(args)
            .output()
            .expect("the binary runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "edgecache {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).expect("--json prints JSON")
    }
}

fn w() -> &'static Worker {
    Worker::shared()
}

fn tenant_name() -> String {
    unique("cli")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(50)
        .collect::<String>()
        .to_lowercase()
}

#[test]
fn operator_provisions_a_tenant_and_the_tenant_operates_its_cache() {
    let operator = Cli::new();
    let out = operator.ok(&["login", "--endpoint", &w().base, "--token", OPERATOR_TOKEN]);
    assert!(out.contains("operator"), "{out}");

    let name = tenant_name();
    let created = operator.json(&["tenant", "create", &name, "--d1"]);
    let token = created["admin_token"]
        .as_str()
        .expect("token shown once")
        .to_string();
    let listed = operator.ok(&["tenant", "list"]);
    assert!(listed.contains(&name), "{listed}");

    let tenant = Cli::new();
    tenant.ok(&["login", "--endpoint", &w().base, "--token", &token]);
    tenant.ok(&[
        "rules",
        "set",
        "/v1/orders*",
        "--ttl",
        "1h",
        "--max-staleness",
        "500ms",
    ]);
    let rules = tenant.json(&["rules", "list"]);
    assert_eq!(rules["rules"][0]["pattern"], "/v1/orders*");
    assert_eq!(rules["rules"][0]["ttl_secs"], 3600);
    assert_eq!(rules["rules"][0]["max_staleness_ms"], 500);

    // Cache a URL of this tenant, then ask why it would be purged.
    let path = format!("/t/{name}/v1/users/123-abc");
    assert_eq!(w().get(&path).outcome(), "MISS");
    assert_eq!(w().get(&path).outcome(), "HIT-L1");
    let deps = tenant.json(&["deps", "/v1/users/123-abc"]);
    assert_eq!(deps["entry"]["records"][0], "users:123-abc", "{deps}");
    let by_record = tenant.json(&["deps", "--record", "users:123-abc"]);
    assert!(by_record["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k == &Value::String(format!("{name}:/v1/users/123-abc"))));
    let human = tenant.ok(&["deps", "--record", "users:123-abc"]);
    assert!(human.contains("/v1/users/123-abc"), "{human}");

    let stats = tenant.json(&["stats"]);
    assert!(stats["edge"]["hits_l1"].as_u64().unwrap() >= 1, "{stats}");
    let human = tenant.ok(&["stats"]);
    assert!(human.to_lowercase().contains("l1"), "{human}");

    let inv = tenant.json(&["invalidate", "--url", "/v1/users/123-abc"]);
    assert_eq!(
        inv["invalidated"][0]["key"],
        format!("{name}:/v1/users/123-abc")
    );
    assert_ne!(
        w().get(&path).outcome(),
        "HIT-L1",
        "the invalidated copy is not served"
    );

    // Warm a list of URLs: afterwards they are hits.
    let list = tenant.config.path().join("urls.txt");
    std::fs::write(
        &list,
        "# warm these\n/v1/users?limit=4\n/v1/orders?limit=4\n\n/v1/users/123-abc\n",
    )
    .unwrap();
    let summary = tenant.json(&["warm", list.to_str().unwrap()]);
    assert_eq!(summary["ok"], 3, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert!(w()
        .get(&format!("/t/{name}/v1/users?limit=4"))
        .outcome()
        .starts_with("HIT"));

    tenant.ok(&["rules", "rm", "/v1/orders*"]);
    assert_eq!(
        tenant.json(&["rules", "list"])["rules"],
        serde_json::json!([])
    );
    operator.ok(&["tenant", "delete", &name, "--yes"]);
    let out = operator.run(&["tenant", "show", &name]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tenant list"),
        "hint points at `tenant list`"
    );
}

#[test]
fn bad_credentials_and_input_fail_with_hints_and_change_nothing() {
    let cli = Cli::new();
    let out = cli.run(&["login", "--endpoint", &w().base, "--token", "eca_wrong"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error:") && err.contains("hint:"), "{err}");
    assert!(
        !cli.config.path().join("config.toml").exists(),
        "a rejected login saves nothing"
    );

    let operator = Cli::new();
    operator.ok(&["login", "--endpoint", &w().base, "--token", OPERATOR_TOKEN]);
    let name = tenant_name();
    let created = operator.json(&["tenant", "create", &name, "--d1"]);
    let token = created["admin_token"].as_str().unwrap().to_string();
    let tenant = Cli::new();
    tenant.ok(&["login", "--endpoint", &w().base, "--token", &token]);

    // Another tenant's name with this token: forbidden.
    let out = tenant.run(&["--tenant", "local", "rules", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another tenant"));
    // Malformed rule input: refused before anything changes.
    let out = tenant.run(&["rules", "set", "/v1/*", "--ttl", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    let out = tenant.run(&["invalidate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = tenant.run(&["invalidate", "--table", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        tenant.json(&["rules", "list"])["rules"],
        serde_json::json!([])
    );
    // A tenant token cannot manage tenants.
    let out = tenant.run(&["tenant", "create", "made-by-tenant", "--d1"]);
    assert_eq!(out.status.code(), Some(1));
    operator.ok(&["tenant", "delete", &name, "--yes"]);
}

#[test]
fn the_operator_lists_beta_signups_from_the_website() {
    let email = format!("{}@example.com", unique("beta"));
    for _ in 0..2 {
        let a = w().send_json(
            "POST",
            "/_edgecache/beta",
            &serde_json::json!({ "email": email.to_ascii_uppercase() }),
        );
        assert_eq!(a.status, 201, "{}", a.text());
    }
    let operator = Cli::new();
    operator.ok(&["login", "--endpoint", &w().base, "--token", OPERATOR_TOKEN]);
    let stored = email.to_ascii_lowercase();
    let list = operator.json(&["beta", "list"]);
    let row = list["signups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["email"] == stored.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{stored} not in {list}"));
    assert_eq!(row["count"], 2, "two sign-ups of one address are one row");
    let table = operator.ok(&["beta", "list"]);
    assert!(table.starts_with("EMAIL"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&stored) && l.contains(" 2 ")),
        "{table}"
    );

    let tenant = Cli::new();
    let token = w().create_tenant("beta-cli")["admin_token"]
        .as_str()
        .unwrap()
        .to_string();
    tenant.ok(&["login", "--endpoint", &w().base, "--token", &token]);
    let out = tenant.run(&["beta", "list"]);
    assert!(!out.status.success(), "a tenant token cannot list sign-ups");
}

/// How long a changed tenant configuration may take to reach an edge (edges cache it for 2 s).
const CONFIG_BOUND: Duration = Duration::from_millis(2_500);

/// Sends `request` until `done` says its answer is the expected one; fails if a request started
/// after `CONFIG_BOUND` (counted from now) still is not.
fn within_config_bound(what: &str, request: impl Fn() -> Answer, done: impl Fn(&Answer) -> bool) {
    let start = Instant::now();
    loop {
        let late = start.elapsed() > CONFIG_BOUND;
        let a = request();
        if done(&a) {
            return;
        }
        assert!(
            !late,
            "{what}: still {} {} after {:?}",
            a.status,
            a.text(),
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A JSON request to the worker with extra headers.
/// A JSON write with exactly these credentials (the harness adds none).
fn send(method: &str, path: &str, headers: &[(&str, &str)], body: &Value) -> Answer {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    w().anonymous(method, path, &all, Some(body.to_string().as_bytes()))
}

#[test]
fn api_keys_guard_writes_and_private_reads_and_stop_working_when_revoked() {
    let operator = Cli::new();
    operator.ok(&["login", "--endpoint", &w().base, "--token", OPERATOR_TOKEN]);
    let name = tenant_name();
    operator.ok(&["tenant", "create", &name, "--d1"]);

    let created = operator.json(&[
        "--tenant", &name, "keys", "create", "writer", "--scope", "write",
    ]);
    assert_eq!(created["name"], "writer");
    assert_eq!(created["scope"], "write");
    let writer = created["key"]
        .as_str()
        .expect("the key is shown")
        .to_string();
    assert!(writer.starts_with("eck_"), "{writer}");
    let out = operator.run(&[
        "--tenant", &name, "keys", "create", "reader", "--scope", "read",
    ]);
    assert!(out.status.success(), "{out:?}");
    let human = String::from_utf8_lossy(&out.stdout).into_owned();
    let reader = human
        .lines()
        .find_map(|l| l.strip_prefix("key:  "))
        .unwrap_or_else(|| panic!("the key is printed: {human}"))
        .to_string();
    assert!(reader.starts_with("eck_"), "{human}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown only this once"));

    // The write key writes through the built-in origin; no key or a read key does not.
    let users = format!("/t/{name}/v1/users");
    let id = unique("cli-key-user");
    let bearer = |key: &str| format!("Bearer {key}");
    let writer_auth = bearer(&writer);
    let a = send(
        "POST",
        &users,
        &[("authorization", &writer_auth)],
        &json!({"id": id, "firstName": "Key", "lastName": "Test",
                "email": format!("{id}@example.com"), "city": "Testville"}),
    );
    assert_eq!(a.status, 201, "{}", a.text());
    let user = format!("{users}/{id}");
    let patch = json!({"city": "Keyville"});
    let a = send("PATCH", &user, &[], &patch);
    assert_eq!((a.status, a.error_code().as_str()), (401, "missing_key"));
    let a = send("PATCH", &user, &[("authorization", &writer_auth)], &patch);
    assert_eq!(a.status, 200, "{}", a.text());
    let reader_auth = bearer(&reader);
    let a = send("PATCH", &user, &[("authorization", &reader_auth)], &patch);
    assert_eq!((a.status, a.error_code().as_str()), (403, "read_only_key"));
    let a = send("PATCH", &user, &[("x-edgecache-key", &writer)], &patch);
    assert_eq!(a.status, 200, "{}", a.text());

    // Listing shows names and scopes, never a key or its hash.
    let listed = operator.ok(&["--tenant", &name, "keys", "list"]);
    assert!(listed.starts_with("NAME    SCOPE  CREATED"), "{listed}");
    assert!(
        listed.contains("writer  write") && listed.contains("reader  read"),
        "{listed}"
    );
    let listed_json = operator.json(&["--tenant", &name, "keys", "list"]);
    let raw = listed_json.to_string();
    for secret in [&writer, &reader] {
        assert!(!listed.contains(secret.as_str()) && !raw.contains(secret.as_str()));
    }
    assert!(!raw.contains("hash") && !raw.contains("eck_"), "{raw}");
    assert_eq!(
        listed_json["keys"].as_array().map(Vec::len),
        Some(2),
        "{raw}"
    );

    // Private reads: anonymous reads are refused, a read key reads.
    let shown = operator.ok(&["tenant", "set", &name, "--private-reads"]);
    assert!(shown.contains("reads:    key required"), "{shown}");
    within_config_bound(
        "anonymous read of a private tenant",
        || w().get(&user),
        |a| a.status == 401 && a.error_code() == "missing_key",
    );
    let a = w().get_with(&user, &[("authorization", &reader_auth)]);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["data"]["city"], "Keyville", "{}", a.text());

    // A revoked key stops working on the edge within the configuration bound.
    let out = operator.run(&["--tenant", &name, "keys", "revoke", "writer"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "no --yes and no terminal: refused"
    );
    operator.ok(&["--tenant", &name, "keys", "revoke", "writer", "--yes"]);
    within_config_bound(
        "a write with a revoked key",
        || send("PATCH", &user, &[("authorization", &writer_auth)], &patch),
        |a| a.status == 401 && a.error_code() == "bad_key",
    );
    let left = operator.json(&["--tenant", &name, "keys", "list"]);
    assert_eq!(left["keys"][0]["name"], "reader", "{left}");
    assert_eq!(left["keys"].as_array().map(Vec::len), Some(1), "{left}");
    let out = operator.run(&["--tenant", &name, "keys", "revoke", "writer", "-y"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("key_not_found"));

    operator.ok(&["tenant", "delete", &name, "--yes"]);
}

#[test]
fn origin_credentials_are_never_shown_back() {
    let operator = Cli::new();
    operator.ok(&["login", "--endpoint", &w().base, "--token", OPERATOR_TOKEN]);
    let secret = format!(
        "s3cr3t-{}",
        unique("v").replace(|c: char| !c.is_ascii_alphanumeric(), "")
    );
    let header = format!("X-Origin-Key: {secret}");
    let name = tenant_name();
    // Never contacted here: only what the admin API shows back matters.
    let created = operator.ok(&[
        "tenant",
        "create",
        &name,
        "--origin-url",
        "http://127.0.0.1:9/api",
        "--origin-header",
        &header,
        "--forward-header",
        "X-Tenant-Id",
    ]);
    assert!(!created.contains(&secret), "{created}");
    assert!(
        created.contains("          x-origin-key: [redacted]\n"),
        "{created}"
    );

    let shown = operator.ok(&["tenant", "show", &name]);
    assert!(!shown.contains(&secret), "{shown}");
    assert!(
        shown.contains(
            "origin:   http http://127.0.0.1:9/api\n          x-origin-key: [redacted]\n"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("forward:  authorization, cookie, x-tenant-id"),
        "{shown}"
    );
    let shown_json = operator.json(&["tenant", "show", &name]);
    assert!(!shown_json.to_string().contains(&secret), "{shown_json}");
    assert_eq!(
        shown_json["tenant"]["origin"]["headers"],
        json!([{"name": "x-origin-key", "value": "[redacted]"}])
    );
    let listed = operator.json(&["tenant", "list"]);
    assert!(!listed.to_string().contains(&secret));

    // Rotation replaces the credential; still shown by name only.
    let rotated = format!("{secret}-rotated");
    let updated = operator.ok(&[
        "tenant",
        "set",
        &name,
        "--origin-header",
        &format!("X-Origin-Key: {rotated}"),
        "--require-write-key",
    ]);
    assert!(!updated.contains(&secret), "{updated}");
    assert!(updated.contains("x-origin-key: [redacted]"), "{updated}");
    assert!(
        updated.contains("writes:   write key required (x-edgecache-key)"),
        "{updated}"
    );
    let updated_json = operator.json(&["tenant", "set", &name, "--public-reads"]);
    assert!(
        !updated_json.to_string().contains(&secret),
        "{updated_json}"
    );
    assert_eq!(updated_json["tenant"]["access"]["require_write_key"], true);

    // A D1 tenant has no origin credentials to set.
    let d1 = tenant_name();
    operator.ok(&["tenant", "create", &d1, "--d1"]);
    let out = operator.run(&["tenant", "set", &d1, "--origin-header", "X-Origin-Key: v"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad_header"));

    operator.ok(&["tenant", "delete", &name, "--yes"]);
    operator.ok(&["tenant", "delete", &d1, "--yes"]);
}

#[test]
fn explain_shows_what_a_write_would_do_without_writing_it() {
    let cli = Cli::new();
    cli.ok(&[
        "login",
        "--endpoint",
        &w().base,
        "--token",
        OPERATOR_TOKEN,
        "--tenant",
        "local",
    ]);
    let id = w().create_user("cli-explain", "Ex");
    let path = format!("/v1/users/{id}");
    w().warm(&path);
    let body = r#"{"city":"Oslo"}"#;
    let answer = cli.json(&["explain", "PATCH", &path, "-d", body]);
    let key = format!("local:{path}");
    let record = answer["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"] == key.as_str())
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(
        (&record["action"], &record["reason"]),
        (&json!("refresh"), &json!("record_written"))
    );
    assert_eq!(answer["after"]["city"], "Oslo");
    let human = cli.ok(&["explain", "patch", &path, "-d", body]);
    assert!(
        human.starts_with(&format!(
            "PATCH {path} (not written) would invalidate 0, refresh "
        )),
        "{human}"
    );
    assert!(
        human
            .lines()
            .any(|l| l.starts_with("refresh") && l.contains(&key) && l.ends_with("record_written")),
        "{human}"
    );
    let still = w().get(&path);
    assert_eq!(
        (still.outcome(), still.json()["data"]["city"].clone()),
        ("HIT-L1", json!("Testville")),
        "explain wrote nothing"
    );
    let bad = cli.run(&["explain", "PATCH", &path, "-d", "{city"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "a body that is not JSON is a usage error"
    );
}

#[test]
fn learn_commands_show_set_freeze_and_forget() {
    let operator = Cli::new();
    operator.ok(&["login", "--endpoint", &w().base, "--token", OPERATOR_TOKEN]);
    let name = tenant_name();
    // Never contacted: nothing is read or written through this tenant.
    operator.ok(&[
        "tenant",
        "create",
        &name,
        "--origin-url",
        "http://127.0.0.1:9/api",
        "--table",
        "users",
        "--table",
        "orders",
    ]);
    let set = operator.ok(&["tenant", "set", &name, "--learning", "observe"]);
    assert!(set.contains("learning: observe\n"), "{set}");
    let frozen = operator.ok(&["--tenant", &name, "learn", "freeze"]);
    assert!(
        frozen.starts_with(&format!("learning frozen for {name}")),
        "{frozen}"
    );

    let status = operator.json(&["--tenant", &name, "learn", "status"]);
    assert_eq!(
        status["learning"],
        json!({"mode": "observe", "frozen": true})
    );
    let tables: Vec<&str> = status["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(tables, ["orders", "users"]);
    assert_eq!(status["tables"][0]["hypotheses"], json!([]));
    let one = operator.ok(&["--tenant", &name, "learn", "status", "--table", "orders"]);
    assert!(
        one.starts_with("tenant ") && one.contains("learning observe, frozen"),
        "{one}"
    );
    assert!(
        one.contains("table orders") && !one.contains("table users"),
        "{one}"
    );
    assert!(one.contains("no learned rules"), "{one}");

    let out = operator.run(&["--tenant", &name, "learn", "forget", "users:1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("learned_rule_not_found"), "{err}");
    assert!(err.contains("edgecache learn status"), "{err}");
    let out = operator.run(&["--tenant", &name, "learn", "forget", "carts:1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("table_not_found"), "{err}");
    // Hypotheses and candidates by the ids `learn status` shows; all of a table's learning
    // with --all.
    for (id, code) in [
        ("users:h0c1d2e3f", "hypothesis_not_found"),
        ("users:hx", "bad_hypothesis_id"),
        ("carts:h0c1d2e3f", "table_not_found"),
        ("users:c1a2b3c4d", "candidate_not_found"),
        ("carts:c1a2b3c4d", "table_not_found"),
    ] {
        let out = operator.run(&["--tenant", &name, "learn", "forget", id]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{id}: {err}");
        assert!(err.contains(code), "{id}: {err}");
    }
    let out = operator.run(&["--tenant", &name, "learn", "forget", "users:cx"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a usage error: {err}");
    assert!(err.contains("users:c0c1d2e3f"), "{err}");
    let all = operator.ok(&["--tenant", &name, "learn", "forget", "--all", "users"]);
    assert_eq!(
        all,
        "forgot everything table users learned: 0 rules, 0 hypotheses; invalidated 0 keys kept \
         under them\n"
    );
    let out = operator.run(&["--tenant", &name, "learn", "forget", "--all", "carts"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("table_not_found"), "{err}");

    operator.ok(&["--tenant", &name, "learn", "unfreeze"]);
    let status = operator.json(&["--tenant", &name, "learn", "status"]);
    assert_eq!(status["learning"]["frozen"], false);
    operator.ok(&["tenant", "delete", &name, "--yes"]);
}
