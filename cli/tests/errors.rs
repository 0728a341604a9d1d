//! Usage errors, missing configuration, server refusals and an unreachable endpoint: the exit
//! code and the `error:` / `hint:` lines of each, through the real binary.

mod common;

use common::{closed_port_url, Reply, Sandbox, Server};
use serde_json::json;

fn refusing(status: u16, code: &'static str) -> Server {
    Server::start(move |_| Reply::error(status, code, "the server says no"))
}

#[test]
fn unreachable_endpoint_exits_3_with_the_dev_hint() {
    let sandbox = Sandbox::new();
    let out = sandbox.run(&[
        "tenant",
        "list",
        "--endpoint",
        &closed_port_url(),
        "--token",
        "t",
    ]);
    assert_eq!(out.code, 3, "{out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert!(lines[0].starts_with("error: cannot reach http://127.0.0.1:"));
    assert_eq!(
        lines[1],
        "hint: is the worker running? `npm run dev` starts it on http://127.0.0.1:8787"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn rejected_token_exits_1_and_suggests_login() {
    let server = refusing(401, "unauthorized");
    let out = Sandbox::new().run_against(&server, &["tenant", "list"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out
        .stderr
        .starts_with("error: the server says no (401 unauthorized)\n"));
    assert!(out
        .stderr
        .contains("hint: the token was rejected; run `edgecache login`"));
}

#[test]
fn forbidden_explains_tenant_tokens() {
    let server = refusing(403, "forbidden");
    let out = Sandbox::new().run_against(&server, &["stats"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("(403 forbidden)"));
    assert!(out
        .stderr
        .contains("hint: the token belongs to another tenant"));
}

#[test]
fn unknown_tenant_points_at_tenant_list() {
    let server = refusing(404, "tenant_not_found");
    let out = Sandbox::new().run_against(&server, &["tenant", "show", "nope"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("(404 tenant_not_found)"));
    assert!(out.stderr.contains("hint: `edgecache tenant list`"));
    assert_eq!(
        server.requests()[0].target,
        "/_edgecache/admin/tenants/nope"
    );
}

#[test]
fn existing_tenant_is_a_conflict() {
    let server = refusing(409, "tenant_exists");
    let out = Sandbox::new().run_against(&server, &["tenant", "create", "acme", "--d1"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("(409 tenant_exists)"));
    assert!(out.stderr.contains("hint: "));
    // No secrets were issued, so no "shown once" warning either.
    assert!(!out.stderr.contains("warning"));
}

#[test]
fn server_validation_errors_pass_through() {
    let server = Server::start(|_| Reply::error(400, "invalid_rule", "ttl_secs must be > 0"));
    let out = Sandbox::new().run_against(&server, &["rules", "set", "/v1/*", "--ttl", "1h"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stderr,
        "error: ttl_secs must be > 0 (400 invalid_rule)\n"
    );
}

#[test]
fn a_non_edgecache_answer_is_a_protocol_error() {
    let server = Server::start(|_| Reply::empty(200).with_header("x", "y"));
    let html = Server::start(|_| Reply {
        body: "<html>hello</html>".into(),
        ..Reply::empty(200)
    });
    let out = Sandbox::new().run_against(&server, &["tenant", "list"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("expected shape"), "{out:?}");
    let out = Sandbox::new().run_against(&html, &["tenant", "list"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("not JSON: <html>hello</html>"),
        "{out:?}"
    );
    assert!(out.stderr.contains("hint: check that --endpoint"));
}

#[test]
fn missing_settings_exit_2_with_a_hint() {
    let sandbox = Sandbox::new();
    let out = sandbox.run(&["tenant", "list"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.starts_with("error: no endpoint configured\n"));
    assert!(out.stderr.contains("hint: run `edgecache login"));

    let out = sandbox.run(&["tenant", "list", "--endpoint", "http://127.0.0.1:9"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.starts_with("error: no token configured\n"));

    let out = sandbox.run(&["stats", "--endpoint", "http://127.0.0.1:9", "--token", "t"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.starts_with("error: no tenant configured\n"));
    assert!(out.stderr.contains("EDGECACHE_TENANT"));
}

#[test]
fn invalid_endpoint_is_a_config_error() {
    let out = Sandbox::new().run(&[
        "tenant",
        "list",
        "--endpoint",
        "127.0.0.1:8787",
        "--token",
        "t",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("expected an http:// or https:// URL"));
}

#[test]
fn broken_config_file_is_a_config_error() {
    let sandbox = Sandbox::new();
    sandbox.write_config("endpoint = [");
    let out = sandbox.run(&["tenant", "list"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.starts_with("error: cannot read config file"));
}

#[test]
fn usage_errors_exit_2_before_any_request() {
    let server = Server::start(|_| Reply::json(200, json!({})));
    let sandbox = Sandbox::new();
    for (args, expected) in [
        (
            &["rules", "set", "/v1/*", "--ttl", "1y"][..],
            "invalid duration '1y'",
        ),
        (
            &["rules", "set", "/v1/*", "--ttl", "1500ms"],
            "whole number of seconds",
        ),
        (
            &["rules", "set", "/v1/*", "--max-staleness", "soon"],
            "500ms, 30s, 5m, 1h, 2d",
        ),
        (&["invalidate", "--record", "users"], "expected TABLE:ID"),
        (&["deps", "--record", "users:"], "the id is empty"),
        (
            &["invalidate"],
            "nothing to invalidate: pass at least one of --url, --record",
        ),
        (&["invalidate", "--url", "v1/users"], "starting with /"),
        (&["warm", "f", "--concurrency", "64"], "64 is not in 1..=32"),
    ] {
        let out = sandbox.run_against(&server, args);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.starts_with("error: "),
            "{args:?}: {}",
            out.stderr
        );
    }
    assert!(server.requests().is_empty());
}

#[test]
fn deleting_without_yes_off_a_terminal_is_refused() {
    let server = Server::start(|_| Reply::empty(204));
    let out = Sandbox::new().run_against(&server, &["tenant", "delete", "acme"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out
        .stderr
        .starts_with("error: refusing to delete tenant 'acme' without confirmation\n"));
    assert!(out.stderr.contains("hint: pass --yes"));
    assert!(server.requests().is_empty());
}
