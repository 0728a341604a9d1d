//! `warm` through the real binary against a counting server: the URLs it fetches, its summary,
//! its exit code and its concurrency bound.

mod common;

use std::time::Duration;

use common::{closed_port_url, Reply, Sandbox, Server};

/// `HIT-L1` for paths containing "hot", 404 for "missing", `MISS` otherwise.
fn cache_server(delay: Duration) -> Server {
    Server::start(move |request| {
        let reply = if request.target.contains("missing") {
            Reply::error(404, "not_found", "no such record").with_header("x-edgecache", "BYPASS")
        } else if request.target.contains("hot") {
            Reply::json(200, serde_json::json!([])).with_header("x-edgecache", "HIT-L1")
        } else {
            Reply::json(200, serde_json::json!([])).with_header("x-edgecache", "MISS")
        };
        reply.with_delay(delay)
    })
}

fn write_list(sandbox: &Sandbox, text: &str) -> String {
    let path = sandbox.dir().join("warm.txt");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn warms_paths_and_urls_and_summarises() {
    let server = cache_server(Duration::ZERO);
    let sandbox = Sandbox::new();
    let list = write_list(
        &sandbox,
        &format!(
            "# hot lists first\n\n/v1/users?limit=10\n  /v1/hot/1  \n/v1/hot/2\n\
             # a full URL is used as is\n{}/t/other/v1/orders\n",
            server.url()
        ),
    );
    let out = sandbox.run_against(&server, &["warm", &list]);
    assert_eq!(out.code, 0, "{out:?}");

    let mut targets: Vec<String> = server.requests().iter().map(|r| r.target.clone()).collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            "/t/acme/v1/hot/1",
            "/t/acme/v1/hot/2",
            "/t/acme/v1/users?limit=10",
            "/t/other/v1/orders"
        ]
    );
    // Warm requests are plain reads: no admin token leaves the machine with them.
    assert!(server
        .requests()
        .iter()
        .all(|r| r.method == "GET" && r.header("authorization").is_none()));

    // Off a terminal: one line per URL, then the summary.
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{}", out.stdout);
    assert!(
        lines[..4].iter().all(|l| l.starts_with("200 ")),
        "{}",
        out.stdout
    );
    assert!(lines[4].starts_with("warmed 4 URLs in "), "{}", lines[4]);
    assert!(lines[4].ends_with("s: 4 ok, 0 failed"), "{}", lines[4]);
    assert_eq!(lines[5], "x-edgecache: HIT-L1 2, MISS 2");
}

#[test]
fn json_summary() {
    let server = cache_server(Duration::ZERO);
    let sandbox = Sandbox::new();
    let list = write_list(&sandbox, "/v1/a\n/v1/hot\n/v1/missing\n");
    let out = sandbox.run_against(&server, &["warm", &list, "--json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let summary: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(summary["total"], 3);
    assert_eq!(summary["ok"], 2);
    assert_eq!(summary["failed"], 1);
    assert_eq!(
        summary["by_x_edgecache"],
        serde_json::json!({"MISS": 1, "HIT-L1": 1})
    );
    assert!(summary["elapsed_ms"].is_u64());
    assert_eq!(summary["failures"][0]["error"], "HTTP 404");
    assert!(summary["failures"][0]["url"]
        .as_str()
        .unwrap()
        .ends_with("/t/acme/v1/missing"));
    assert_eq!(out.stderr, "error: 1 of 3 warm requests failed\n");
}

#[test]
fn failures_are_reported_and_exit_1() {
    let server = cache_server(Duration::ZERO);
    let sandbox = Sandbox::new();
    let list = write_list(&sandbox, "/v1/a\n/v1/missing\n");
    let out = sandbox.run_against(&server, &["warm", &list]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("404 BYPASS "), "{}", out.stdout);
    assert!(out.stdout.contains("2 URLs in"));
    assert!(out.stdout.contains(": 1 ok, 1 failed\n"));
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn concurrency_is_bounded_and_used() {
    let server = cache_server(Duration::from_millis(200));
    let sandbox = Sandbox::new();
    let list = write_list(&sandbox, &"/v1/users\n".repeat(6));
    let out = sandbox.run_against(&server, &["warm", &list, "--concurrency", "2"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(server.requests().len(), 6);
    assert_eq!(server.max_in_flight(), 2);
}

#[test]
fn default_concurrency_is_four() {
    let server = cache_server(Duration::from_millis(150));
    let sandbox = Sandbox::new();
    let list = write_list(&sandbox, &"/v1/users\n".repeat(12));
    let out = sandbox.run_against(&server, &["warm", &list]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(server.requests().len(), 12);
    assert_eq!(server.max_in_flight(), 4);
    assert!(out.stdout.contains("x-edgecache: MISS 12\n"));
}

#[test]
fn unreachable_endpoint_exits_3() {
    let sandbox = Sandbox::new();
    let list = write_list(&sandbox, "/v1/a\n/v1/b\n");
    let out = sandbox.run(&[
        "warm",
        &list,
        "--endpoint",
        &closed_port_url(),
        "--tenant",
        "acme",
    ]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stdout.contains("0 ok, 2 failed"));
    assert!(out.stderr.contains("hint: is the worker running?"));
}

#[test]
fn bad_lines_and_missing_settings_stop_before_any_request() {
    let server = cache_server(Duration::ZERO);
    let sandbox = Sandbox::new();
    let list = write_list(&sandbox, "/v1/a\nv1/b\n");
    let out = sandbox.run_against(&server, &["warm", &list]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.starts_with("error: line 2: 'v1/b'"));

    let list = write_list(&sandbox, "/v1/a\n");
    let out = sandbox.run(&["warm", &list, "--endpoint", &server.url()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.starts_with("error: no tenant configured"));

    let out = sandbox.run(&["warm", "/nonexistent/list.txt"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out
        .stderr
        .starts_with("error: cannot read /nonexistent/list.txt"));
    assert!(server.requests().is_empty());
}

#[test]
fn full_urls_need_no_configuration() {
    let server = cache_server(Duration::ZERO);
    let sandbox = Sandbox::new();
    let list = write_list(&sandbox, &format!("{}/t/acme/v1/hot\n", server.url()));
    let out = sandbox.run(&["warm", &list]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(server.requests()[0].target, "/t/acme/v1/hot");
}
