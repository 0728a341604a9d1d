//! Where settings come from (file < environment < flags) and what `login` saves.

mod common;

use common::{run, Reply, Sandbox, Server};
use serde_json::json;

/// Answers whoami with the token it was given, so the test sees which token won.
fn echo_server() -> Server {
    Server::start(|request| {
        let token = request.header("authorization").unwrap_or_default();
        Reply::json(200, json!({"role": "operator", "token_seen": token}))
    })
}

#[test]
fn flags_beat_environment_beat_file() {
    let file_server = echo_server();
    let env_server = echo_server();
    let flag_server = echo_server();
    let sandbox = Sandbox::new();
    sandbox.write_config(&format!(
        "endpoint = \"{}\"\ntoken = \"file-token\"\ntenant = \"file-tenant\"\n",
        file_server.url()
    ));

    // File only.
    let out = sandbox.run(&["stats", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let seen = &file_server.requests()[0];
    assert_eq!(seen.target, "/_edgecache/admin/tenants/file-tenant/stats");
    assert_eq!(seen.header("authorization"), Some("Bearer file-token"));

    // Environment over file.
    let mut command = sandbox.command(&["stats", "--json"]);
    command
        .env("EDGECACHE_ENDPOINT", env_server.url())
        .env("EDGECACHE_TOKEN", "env-token")
        .env("EDGECACHE_TENANT", "env-tenant");
    assert_eq!(run(command).code, 0);
    let seen = &env_server.requests()[0];
    assert_eq!(seen.target, "/_edgecache/admin/tenants/env-tenant/stats");
    assert_eq!(seen.header("authorization"), Some("Bearer env-token"));

    // Flags over environment.
    let mut command = sandbox.command(&[
        "stats",
        "--json",
        "--endpoint",
        &flag_server.url(),
        "--token",
        "flag-token",
        "--tenant",
        "flag-tenant",
    ]);
    command
        .env("EDGECACHE_ENDPOINT", env_server.url())
        .env("EDGECACHE_TOKEN", "env-token")
        .env("EDGECACHE_TENANT", "env-tenant");
    assert_eq!(run(command).code, 0);
    let seen = &flag_server.requests()[0];
    assert_eq!(seen.target, "/_edgecache/admin/tenants/flag-tenant/stats");
    assert_eq!(seen.header("authorization"), Some("Bearer flag-token"));
    assert_eq!(env_server.requests().len(), 1);
    assert_eq!(file_server.requests().len(), 1);
}

#[test]
fn settings_mix_across_layers() {
    let server = echo_server();
    let sandbox = Sandbox::new();
    sandbox.write_config(&format!(
        "endpoint = \"{}\"\ntoken = \"file-token\"\n",
        server.url()
    ));
    let mut command = sandbox.command(&["stats", "--json", "--tenant", "flag-tenant"]);
    command.env("EDGECACHE_TOKEN", "env-token");
    assert_eq!(run(command).code, 0);
    let seen = &server.requests()[0];
    assert_eq!(seen.target, "/_edgecache/admin/tenants/flag-tenant/stats");
    assert_eq!(seen.header("authorization"), Some("Bearer env-token"));
}

#[test]
fn login_verifies_then_saves_a_private_file() {
    let server = Server::start(|request| {
        if request.target.ends_with("/whoami") {
            Reply::json(200, json!({"role": "operator"}))
        } else {
            Reply::json(200, json!({"tenants": []}))
        }
    });
    let sandbox = Sandbox::new();
    let endpoint = format!("{}/", server.url());
    let out = sandbox.run(&["login", "--endpoint", &endpoint, "--token", "op-secret"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out
        .stdout
        .starts_with(&format!("logged in to {} as the operator\n", server.url())));
    assert!(out.stdout.contains("saved to "));
    let request = &server.requests()[0];
    assert_eq!(request.target, "/_edgecache/admin/whoami");
    assert_eq!(request.header("authorization"), Some("Bearer op-secret"));

    let saved = std::fs::read_to_string(sandbox.config_path()).unwrap();
    let saved: toml::Table = toml::from_str(&saved).unwrap();
    assert_eq!(saved["endpoint"].as_str(), Some(server.url().as_str()));
    assert_eq!(saved["token"].as_str(), Some("op-secret"));
    assert!(!saved.contains_key("tenant"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(sandbox.config_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The saved settings are used by the next command.
    let out = sandbox.run(&["tenant", "list", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(server.requests()[1].target, "/_edgecache/admin/tenants");
}

#[test]
fn login_with_a_tenant_token_defaults_to_that_tenant() {
    let server = Server::start(|_| Reply::json(200, json!({"role": "tenant", "tenant": "acme"})));
    let sandbox = Sandbox::new();
    let out = sandbox.run(&[
        "login",
        "--endpoint",
        &server.url(),
        "--token",
        "eca_x",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let printed: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(printed, json!({"role": "tenant", "tenant": "acme"}));
    let saved = std::fs::read_to_string(sandbox.config_path()).unwrap();
    assert!(saved.contains("tenant = \"acme\""), "{saved}");

    let out = sandbox.run(&[
        "login",
        "--endpoint",
        &server.url(),
        "--token",
        "eca_x",
        "--tenant",
        "globex",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out
        .stderr
        .contains("the token belongs to tenant 'acme', not 'globex'"));
}

#[test]
fn failed_login_saves_nothing() {
    let server = Server::start(|_| Reply::error(401, "unauthorized", "bad token"));
    let sandbox = Sandbox::new();
    let out = sandbox.run(&["login", "--endpoint", &server.url(), "--token", "nope"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("run `edgecache login`"));
    assert!(!sandbox.config_path().exists());

    let out = sandbox.run(&["login", "--token", "nope"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.starts_with("error: no endpoint configured"));
}
