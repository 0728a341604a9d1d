//! Each admin command through the real binary: the request it sends, the table it prints, and
//! the server's JSON under `--json`.

mod common;

use common::{Reply, Sandbox, Server};
use serde_json::{json, Value};

fn tenant_json() -> Value {
    json!({
        "name": "acme",
        "origin": {"kind": "d1"},
        "rules": [{"pattern": "/v1/users*", "ttl_secs": 3600, "no_store": false,
                   "max_staleness_ms": 500, "rehydrate": true}],
        "views": {"usersWithOrders": ["users", "orders"]},
        "created_at": "2026-11-25T12:00:00Z",
        "some_future_field": {"x": 1}
    })
}

fn parse(stdout: &str) -> Value {
    serde_json::from_str(stdout).expect("stdout is JSON")
}

#[test]
fn tenant_create_with_d1_prints_secrets_once_with_a_warning() {
    let server = Server::start(|_| {
        Reply::json(
            201,
            json!({"tenant": tenant_json(), "admin_token": "eca_abc", "webhook_secret": "ecw_def"}),
        )
    });
    let sandbox = Sandbox::new();
    let out = sandbox.run_against(&server, &["tenant", "create", "acme", "--d1"]);
    assert_eq!(out.code, 0, "{out:?}");
    // The secrets, then the tenant as `tenant show` begins (render.rs tests the layout).
    assert!(out.stdout.starts_with(
        "created tenant 'acme'\n\
         admin token:     eca_abc\n\
         webhook secret:  ecw_def\n\
         \n\
         name:     acme\n"
    ));
    assert!(out.stdout.contains("writes:   write key required\n"));
    assert!(out.stderr.starts_with("warning: "));
    assert!(out.stderr.contains("shown only this once"));
    let request = &server.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.target, "/_edgecache/admin/tenants");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("authorization"), Some("Bearer op-token"));
    assert_eq!(
        request.json(),
        json!({"name": "acme", "origin": {"kind": "d1"}})
    );

    let out = sandbox.run_against(&server, &["tenant", "create", "acme", "--d1", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(parse(&out.stdout)["admin_token"], "eca_abc");
    assert!(out.stderr.contains("shown only this once"));
}

/// A tenant on an HTTP origin as the server shows it: credentials by name only.
fn http_tenant_json() -> Value {
    json!({
        "name": "globex",
        "origin": {"kind": "http", "base_url": "https://api.example.com",
                   "headers": [{"name": "x-origin-key", "value": "[redacted]"}]},
        "access": {"private_reads": true, "require_write_key": true,
                   "forward_headers": ["x-tenant-id"]},
        "rules": [], "views": {}, "created_at": "2026-11-25T12:00:00Z"
    })
}

#[test]
fn tenant_create_with_an_http_origin_credentials_and_access() {
    let server = Server::start(|_| {
        Reply::json(
            201,
            json!({"tenant": http_tenant_json(), "admin_token": "eca_1", "webhook_secret": "ecw_1"}),
        )
    });
    let out = Sandbox::new().run_against(
        &server,
        &[
            "tenant",
            "create",
            "globex",
            "--origin-url",
            "https://api.example.com",
            "--origin-header",
            "X-Origin-Key: s3cr3t-value",
            "--private-reads",
            "--require-write-key",
            "--forward-header",
            "X-Tenant-Id",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains(
        "origin:   http https://api.example.com\n\
         \x20         x-origin-key: [redacted]\n"
    ));
    assert!(out
        .stdout
        .contains("reads:    key required (read or write scope)\n"));
    assert!(out
        .stdout
        .contains("forward:  authorization, cookie, x-tenant-id (on writes)\n"));
    assert!(!out.stdout.contains("s3cr3t") && !out.stderr.contains("s3cr3t"));
    assert_eq!(
        server.requests()[0].json(),
        json!({"name": "globex",
               "origin": {"kind": "http", "base_url": "https://api.example.com",
                          "headers": [{"name": "x-origin-key", "value": "s3cr3t-value"}]},
               "access": {"private_reads": true, "require_write_key": true,
                          "forward_headers": ["x-tenant-id"]}})
    );
}

#[test]
fn tenant_set_sends_only_the_changes_and_prints_the_tenant() {
    let server = Server::start(|_| Reply::json(200, json!({"tenant": http_tenant_json()})));
    let sandbox = Sandbox::new();
    let out = sandbox.run_against(
        &server,
        &[
            "tenant",
            "set",
            "globex",
            "--private-reads",
            "--origin-header",
            "X-Origin-Key: rotated-s3cr3t",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let request = &server.requests()[0];
    assert_eq!(request.method, "PATCH");
    assert_eq!(request.target, "/_edgecache/admin/tenants/globex");
    assert_eq!(
        request.json(),
        json!({"private_reads": true,
               "origin_headers": [{"name": "x-origin-key", "value": "rotated-s3cr3t"}]})
    );
    assert!(out
        .stdout
        .starts_with("updated tenant 'globex'\n\nname:     globex\n"));
    assert!(out.stdout.contains("x-origin-key: [redacted]\n"));
    assert!(!out.stdout.contains("s3cr3t"));

    let out = sandbox.run_against(
        &server,
        &[
            "tenant",
            "set",
            "globex",
            "--public-reads",
            "--no-require-write-key",
            "--no-forward-headers",
            "--no-origin-headers",
            "--json",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        server.requests()[1].json(),
        json!({"private_reads": false, "require_write_key": false,
               "forward_headers": [], "origin_headers": []})
    );
    assert_eq!(parse(&out.stdout), json!({"tenant": http_tenant_json()}));
}

#[test]
fn keys_create_list_and_revoke() {
    let server = Server::start(|request| match request.method.as_str() {
        "POST" => Reply::json(
            201,
            json!({"name": "ci", "scope": "write", "created_at": "2026-01-01T00:00:00Z",
                   "key": "eck_0123abcd"}),
        ),
        "GET" => Reply::json(
            200,
            json!({"keys": [{"name": "ci", "scope": "write",
                             "created_at": "2026-01-01T00:00:00Z",
                             "last_used_at": "2026-01-02T10:11:00Z"}]}),
        ),
        _ if request.target.ends_with("/missing") => {
            Reply::error(404, "key_not_found", "no key `missing`")
        }
        _ => Reply::empty(204),
    });
    let sandbox = Sandbox::new();
    let out = sandbox.run_against(&server, &["keys", "create", "ci", "--scope", "write"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out
        .stdout
        .starts_with("created write key 'ci' for tenant 'acme'\nkey:  eck_0123abcd\n"));
    assert!(out
        .stderr
        .starts_with("warning: the key is shown only this once"));
    let request = &server.requests()[0];
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("POST", "/_edgecache/admin/tenants/acme/keys")
    );
    assert_eq!(request.json(), json!({"name": "ci", "scope": "write"}));
    let out = sandbox.run_against(
        &server,
        &["keys", "create", "ci", "--scope", "read", "--json"],
    );
    assert_eq!(parse(&out.stdout)["key"], "eck_0123abcd");
    assert!(out.stderr.contains("shown only this once"));

    let out = sandbox.run_against(&server, &["keys", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "NAME  SCOPE  CREATED               LAST USED\n\
         ci    write  2026-01-01T00:00:00Z  2026-01-02T10:11:00Z\n"
    );

    // Without a terminal and without --yes nothing is revoked.
    let out = sandbox.run_against(&server, &["keys", "revoke", "ci"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out
        .stderr
        .starts_with("error: refusing to revoke key 'ci' of tenant 'acme' without confirmation\n"));
    assert_eq!(server.requests().len(), 3);

    let out = sandbox.run_against(&server, &["keys", "revoke", "ci", "--yes"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "revoked key 'ci' of tenant 'acme'\n");
    let request = &server.requests()[3];
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("DELETE", "/_edgecache/admin/tenants/acme/keys/ci")
    );
    let out = sandbox.run_against(&server, &["keys", "revoke", "ci", "-y", "--json"]);
    assert_eq!(
        parse(&out.stdout),
        json!({"revoked": {"tenant": "acme", "key": "ci"}})
    );

    let out = sandbox.run_against(&server, &["keys", "revoke", "missing", "-y"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("(404 key_not_found)"));
    assert!(out.stderr.contains("hint: `edgecache keys list`"));
}

#[test]
fn tenant_list_as_table_and_json() {
    let server = Server::start(|_| Reply::json(200, json!({"tenants": [tenant_json()]})));
    let sandbox = Sandbox::new();
    let out = sandbox.run_against(&server, &["tenant", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "NAME  ORIGIN  RULES  CREATED\n\
         acme  d1      1      2026-11-25T12:00:00Z\n"
    );
    let out = sandbox.run_against(&server, &["tenant", "list", "--json"]);
    // The server's JSON, unknown fields included.
    assert_eq!(parse(&out.stdout), json!({"tenants": [tenant_json()]}));
}

#[test]
fn tenant_show_renders_rules_and_views() {
    let server = Server::start(|_| Reply::json(200, json!({"tenant": tenant_json()})));
    let out = Sandbox::new().run_against(&server, &["tenant", "show", "acme"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("name:     acme\norigin:   d1\n"));
    assert!(out
        .stdout
        .contains("/v1/users*  1h   yes    500ms          yes        -\n"));
    assert!(out.stdout.contains("usersWithOrders  users, orders\n"));
}

#[test]
fn tenant_delete_with_yes() {
    let server = Server::start(|_| Reply::empty(204));
    let sandbox = Sandbox::new();
    let out = sandbox.run_against(&server, &["tenant", "delete", "acme", "--yes"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "deleted tenant 'acme'\n");
    let request = &server.requests()[0];
    assert_eq!(request.method, "DELETE");
    assert_eq!(request.target, "/_edgecache/admin/tenants/acme");

    let out = sandbox.run_against(&server, &["tenant", "delete", "acme", "-y", "--json"]);
    assert_eq!(parse(&out.stdout), json!({"deleted": {"tenant": "acme"}}));
}

#[test]
fn rules_set_sends_the_rule() {
    let server = Server::start(|request| {
        let rule = request.json();
        Reply::json(200, json!({"rule": rule}))
    });
    let sandbox = Sandbox::new();
    let out = sandbox.run_against(
        &server,
        &[
            "rules",
            "set",
            "/v1/users*",
            "--ttl",
            "1h",
            "--max-staleness",
            "500ms",
            "--no-rehydrate",
            "--vary-by",
            "Authorization",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let request = &server.requests()[0];
    assert_eq!(request.method, "PUT");
    assert_eq!(request.target, "/_edgecache/admin/tenants/acme/rules");
    assert_eq!(
        request.json(),
        json!({"pattern": "/v1/users*", "ttl_secs": 3600, "no_store": false,
               "max_staleness_ms": 500, "rehydrate": false, "vary_by": ["authorization"]})
    );
    assert_eq!(
        out.stdout,
        "saved rule for '/v1/users*' on tenant 'acme'\n\
         PATTERN     TTL  STORE  MAX STALENESS  REHYDRATE  VARY BY\n\
         /v1/users*  1h   yes    500ms          no         authorization\n"
    );

    // Bare integers are seconds; unset options are left to the server.
    let out = sandbox.run_against(
        &server,
        &[
            "rules",
            "set",
            "/v1/orders*",
            "--no-store",
            "--max-staleness",
            "2",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        server.requests()[1].json(),
        json!({"pattern": "/v1/orders*", "no_store": true, "max_staleness_ms": 2000})
    );
}

#[test]
fn rules_list_and_rm() {
    let server = Server::start(|request| match request.method.as_str() {
        "GET" => Reply::json(
            200,
            json!({"rules": [{"pattern": "/v1/*", "no_store": false}]}),
        ),
        _ if request.target.contains("missing") => {
            Reply::error(404, "rule_not_found", "no rule for that pattern")
        }
        _ => Reply::empty(204),
    });
    let sandbox = Sandbox::new();
    let out = sandbox.run_against(&server, &["rules", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "PATTERN  TTL      STORE  MAX STALENESS  REHYDRATE  VARY BY\n\
         /v1/*    default  yes    default        default    -\n"
    );

    let out = sandbox.run_against(&server, &["rules", "rm", "/v1/users* x&y"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "removed rule '/v1/users* x&y' from tenant 'acme'\n"
    );
    let request = &server.requests()[1];
    assert_eq!(request.method, "DELETE");
    assert_eq!(
        request.target,
        "/_edgecache/admin/tenants/acme/rules?pattern=%2Fv1%2Fusers%2A%20x%26y"
    );

    let out = sandbox.run_against(&server, &["rules", "rm", "/missing"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("hint: `edgecache rules list`"));
}

#[test]
fn invalidate_sends_everything_it_was_given() {
    let server = Server::start(|_| {
        Reply::json(
            200,
            json!({"invalidated": [{"key": "acme:/v1/users?limit=10", "reason": "manual"}],
                   "seqs": {"users": 19}}),
        )
    });
    let sandbox = Sandbox::new();
    let out = sandbox.run_against(
        &server,
        &[
            "invalidate",
            "--url",
            "/v1/users?limit=10",
            "--url",
            "https://edge.example.com/t/acme/v1/orders?a=1",
            "--record",
            "users:123-abc",
            "--table",
            "orders",
            "--prefix",
            "/v1/users",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let request = &server.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.target, "/_edgecache/admin/tenants/acme/invalidate");
    assert_eq!(
        request.json(),
        json!({"urls": ["/v1/users?limit=10", "/v1/orders?a=1"],
               "records": [{"table": "users", "id": "123-abc"}],
               "tables": ["orders"], "prefixes": ["/v1/users"]})
    );
    assert_eq!(
        out.stdout,
        "invalidated 1 key\n\
         KEY                      REASON\n\
         acme:/v1/users?limit=10  manual\n\
         seqs: users=19\n"
    );

    let out = sandbox.run_against(&server, &["invalidate", "--table", "orders", "--json"]);
    assert_eq!(parse(&out.stdout)["seqs"]["users"], 19);
    assert_eq!(
        server.requests()[1].json(),
        json!({"urls": [], "records": [], "tables": ["orders"], "prefixes": []})
    );
}

#[test]
fn deps_of_a_url_and_of_a_record() {
    let server = Server::start(|request| {
        if request.target.contains("record=") {
            Reply::json(
                200,
                json!({"record": "users:123-abc", "keys": ["acme:/v1/users?limit=10"]}),
            )
        } else {
            Reply::json(
                200,
                json!({"key": "acme:/v1/users?limit=10",
                       "entry": {"tables": {"users": 17}, "records": ["users:123-abc"],
                                 "kind": "list", "route": "/v1/users?limit=10"}}),
            )
        }
    });
    let sandbox = Sandbox::new();
    let out = sandbox.run_against(&server, &["deps", "/v1/users?limit=10"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        server.requests()[0].target,
        "/_edgecache/admin/tenants/acme/deps?url=%2Fv1%2Fusers%3Flimit%3D10"
    );
    assert!(out
        .stdout
        .starts_with("key:      acme:/v1/users?limit=10\n"));
    assert!(out.stdout.contains("tables:   users (filled at seq 17)\n"));

    let out = sandbox.run_against(&server, &["deps", "--record", "users:123-abc"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        server.requests()[1].target,
        "/_edgecache/admin/tenants/acme/deps?record=users%3A123-abc"
    );
    assert_eq!(
        out.stdout,
        "1 cached key contains users:123-abc; writing it purges:\n  acme:/v1/users?limit=10\n"
    );

    let out = sandbox.run_against(&server, &["deps", "--record", "users:123-abc", "--json"]);
    assert_eq!(parse(&out.stdout)["keys"][0], "acme:/v1/users?limit=10");
}

#[test]
fn deps_of_an_uncached_url() {
    let server = Server::start(|_| Reply::json(200, json!({"key": "acme:/v1/x", "entry": null})));
    let out = Sandbox::new().run_against(&server, &["deps", "/v1/x"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "key acme:/v1/x is not cached, so nothing would purge it\n"
    );
}

#[test]
fn stats_tables_and_json() {
    let body = json!({
        "edge": {"hits_l1": 3, "hits_l2": 1, "misses": 1, "stale": 0, "bypass": 0,
                 "coalesced": 2, "added_later": 5,
                 "l1": {"entries": 4, "bytes": 2048, "max_bytes": 33554432, "evictions": 0},
                 "routes": {"/v1/users": {"hits": 4, "misses": 1}}},
        "coordinators": {"users": {"seq": 17, "keys": 120, "pending_rehydrates": 2}}
    });
    let answer = body.clone();
    let server = Server::start(move |_| Reply::json(200, answer.clone()));
    let sandbox = Sandbox::new();
    let out = sandbox.run_against(&server, &["stats"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        server.requests()[0].target,
        "/_edgecache/admin/tenants/acme/stats"
    );
    assert_eq!(
        out.stdout,
        "tenant acme\n\
         \n\
         TIER  HITS  MISSES  HIT RATIO\n\
         L1    3     2       60.0%\n\
         L2    1     1       50.0%\n\
         all   4     1       80.0%\n\
         stale 0  bypass 0  coalesced 2\n\
         L1 memory: 4 entries, 2.0 KiB of 32.0 MiB, 0 evictions\n\
         \n\
         ROUTE      HITS  MISSES  HIT RATIO\n\
         /v1/users  4     1       80.0%\n\
         \n\
         TABLE  SEQ  KEYS  PENDING REHYDRATES  LAG P50  LAG P99  RELAY\n\
         users  17   120   2                   -        -        -\n\
         pending rehydrates: 2\n"
    );
    let out = sandbox.run_against(&server, &["stats", "--json"]);
    assert_eq!(parse(&out.stdout), body);
}

#[test]
fn beta_list_as_table_and_json() {
    let body = json!({"signups": [
        {"email": "grace@example.com", "created_at": "2026-12-01T09:00:00Z",
         "updated_at": "2026-12-02T10:00:00Z", "count": 2, "later_field": true},
        {"email": "ada@example.com", "created_at": "2026-12-01T08:00:00Z",
         "updated_at": "2026-12-01T08:00:00Z", "count": 1}
    ]});
    let answer = body.clone();
    let server = Server::start(move |_| Reply::json(200, answer.clone()));
    let sandbox = Sandbox::new();
    let out = sandbox.run_against(&server, &["beta", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(server.requests()[0].target, "/_edgecache/admin/beta");
    assert_eq!(
        out.stdout,
        "EMAIL              SIGN-UPS  FIRST                 LATEST\n\
         grace@example.com  2         2026-12-01T09:00:00Z  2026-12-02T10:00:00Z\n\
         ada@example.com    1         2026-12-01T08:00:00Z  2026-12-01T08:00:00Z\n\
         2 addresses\n"
    );
    let out = sandbox.run_against(&server, &["beta", "list", "--json"]);
    assert_eq!(
        parse(&out.stdout),
        body,
        "the server's JSON, unknown fields included"
    );

    let empty = Server::start(|_| Reply::json(200, json!({"signups": []})));
    let out = sandbox.run_against(&empty, &["beta", "list"]);
    assert_eq!(out.stdout, "no beta sign-ups yet\n");
}

#[test]
fn completions_for_each_shell() {
    let sandbox = Sandbox::new();
    for (shell, marker) in [
        ("bash", "_edgecache"),
        ("zsh", "#compdef edgecache"),
        ("fish", "complete -c edgecache"),
    ] {
        let out = sandbox.run(&["completions", shell]);
        assert_eq!(out.code, 0, "{shell}: {out:?}");
        assert!(out.stdout.contains(marker), "{shell}");
        assert!(out.stdout.contains("invalidate"), "{shell}");
        assert!(out.stdout.contains("keys"), "{shell}");
        assert!(out.stdout.contains("origin-header"), "{shell}");
    }
}

#[test]
fn help_exits_0() {
    let out = Sandbox::new().run(&["--help"]);
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("warm"));
}
