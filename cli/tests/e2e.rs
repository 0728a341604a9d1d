//! The real `edgecache` binary against the real worker (wrangler dev): provision a tenant, set a
//! rule, cache a URL, inspect and invalidate it, read stats, warm a list of URLs, and fail
//! clearly on bad credentials.

#[path = "../../tests/common/mod.rs"]
mod worker;

use std::process::{Command, Output};

use serde_json::Value;
use worker::{unique, Worker, OPERATOR_TOKEN};

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
    let created = operator.json(&["tenant", "create", &name]);
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
    let created = operator.json(&["tenant", "create", &name]);
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
    let out = tenant.run(&["tenant", "create", "made-by-tenant"]);
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
