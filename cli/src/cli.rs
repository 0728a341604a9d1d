//! The command line: every command, flag and client-side validation clap can do.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use crate::duration;
use crate::path::parse_prefix;
use crate::record::{parse_table, RecordRef};

/// Operate an EdgeCache deployment through its admin API.
#[derive(Debug, Parser)]
#[command(name = "edgecache", version, about, propagate_version = true)]
pub struct Cli {
    /// Settings shared by every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted by every command; each overrides its environment variable, which overrides
/// the config file.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Worker base URL, e.g. http://127.0.0.1:8787
    #[arg(long, global = true, env = "EDGECACHE_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,
    /// Operator token, or a tenant's admin token
    #[arg(
        long,
        global = true,
        env = "EDGECACHE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Tenant that tenant-scoped commands act on
    #[arg(long, global = true, env = "EDGECACHE_TENANT", value_name = "NAME")]
    pub tenant: Option<String>,
    /// Config file [default: <user config dir>/edgecache/config.toml]
    #[arg(long, global = true, env = "EDGECACHE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print the server's JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check --endpoint and --token against the worker and save them (and --tenant)
    Login,
    /// Create, list, show and delete tenants (operator token)
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Set, list and remove a tenant's cache rules
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Purge cached responses by URL, record, table or prefix
    Invalidate(InvalidateArgs),
    /// Show what a cached URL depends on, or which cached URLs contain a record
    Deps(DepsArgs),
    /// Show hit ratios per tier and route, coordinator seqs and pending rehydrates
    Stats,
    /// Fetch a list of paths or URLs through the cache to fill it
    Warm(WarmArgs),
    /// Print a shell completion script
    Completions {
        /// The shell
        shell: CompletionShell,
    },
}

/// `tenant …`.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; prints its admin token and webhook secret once
    Create {
        /// Tenant name (its URL segment: /t/NAME)
        name: String,
        /// Proxy this HTTP API instead of using the built-in D1 origin
        #[arg(long, value_name = "URL", value_parser = parse_origin_url)]
        origin_url: Option<String>,
    },
    /// List tenants
    List,
    /// Show a tenant's origin, rules and views
    Show {
        /// Tenant name
        name: String,
    },
    /// Delete a tenant and everything cached for it
    Delete {
        /// Tenant name
        name: String,
        /// Do not ask for confirmation
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// `rules …`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Create or replace the rule for a route pattern
    Set {
        /// Route pattern, e.g. '/v1/users*'
        #[arg(value_parser = parse_pattern)]
        pattern: String,
        /// Time to live: 30s, 5m, 1h, 2d or seconds [default: the server's, 24h]
        #[arg(long, value_name = "DURATION", value_parser = duration::parse_ttl)]
        ttl: Option<u64>,
        /// Never cache matching responses
        #[arg(long)]
        no_store: bool,
        /// Longest an edge serves hits without checking for writes: 500ms, 2s… (0 = every hit)
        #[arg(long, value_name = "DURATION", value_parser = duration::parse_millis)]
        max_staleness: Option<u64>,
        /// Do not re-fetch purged responses in the background
        #[arg(long)]
        no_rehydrate: bool,
        /// Key answers by this request header (repeat or comma-separate): authorization or
        /// cookie lets an HTTP origin's answers to credentialed reads be cached per user
        #[arg(long, value_name = "HEADER", value_delimiter = ',', value_parser = parse_vary_by)]
        vary_by: Vec<String>,
    },
    /// List the tenant's rules
    List,
    /// Remove the rule for a pattern
    Rm {
        /// The pattern exactly as set
        pattern: String,
    },
}

/// `invalidate …`.
#[derive(Debug, Args)]
pub struct InvalidateArgs {
    /// A cached path with its query, e.g. '/v1/users?limit=10' (or the full URL)
    #[arg(long = "url", value_name = "PATH", num_args = 1..)]
    pub urls: Vec<String>,
    /// Every cached response containing this record: TABLE:ID
    #[arg(long = "record", value_name = "TABLE:ID", num_args = 1.., value_parser = clap::value_parser!(RecordRef))]
    pub records: Vec<RecordRef>,
    /// Every cached response built from this table
    #[arg(long = "table", value_name = "TABLE", num_args = 1.., value_parser = parse_table)]
    pub tables: Vec<String>,
    /// Every cached path starting with this prefix, e.g. /v1/users
    #[arg(long = "prefix", value_name = "PATH", num_args = 1.., value_parser = parse_prefix)]
    pub prefixes: Vec<String>,
}

/// `deps …`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("subject").required(true).args(["target", "record"])))]
pub struct DepsArgs {
    /// A cached path with its query, or its full URL
    #[arg(value_name = "URL_OR_PATH")]
    pub target: Option<String>,
    /// Which cached responses contain this record: TABLE:ID
    #[arg(long, value_name = "TABLE:ID", value_parser = clap::value_parser!(RecordRef))]
    pub record: Option<RecordRef>,
}

/// `warm …`.
#[derive(Debug, Args)]
pub struct WarmArgs {
    /// File of paths or URLs, one a line ('#' comments); '-' reads stdin
    pub file: PathBuf,
    /// Requests in flight at once (1-32)
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub concurrency: u16,
}

/// Shells `completions` can generate for.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CompletionShell {
    /// GNU Bash
    Bash,
    /// Z shell
    Zsh,
    /// fish
    Fish,
}

impl From<CompletionShell> for clap_complete::Shell {
    fn from(shell: CompletionShell) -> Self {
        match shell {
            CompletionShell::Bash => Self::Bash,
            CompletionShell::Zsh => Self::Zsh,
            CompletionShell::Fish => Self::Fish,
        }
    }
}

/// Rule patterns match request paths, so they start with `/`.
fn parse_pattern(input: &str) -> Result<String, String> {
    if input.starts_with('/') {
        Ok(input.to_string())
    } else {
        Err(format!(
            "invalid pattern '{input}': a pattern is a path starting with /, e.g. '/v1/users*'"
        ))
    }
}

/// A `--vary-by` header: one the server keys by, any case.
fn parse_vary_by(input: &str) -> Result<String, String> {
    let name = input.trim().to_ascii_lowercase();
    edgecache_core::rules::check_vary_by(std::slice::from_ref(&name))?;
    Ok(name)
}

/// An HTTP origin is an absolute http(s) URL.
fn parse_origin_url(input: &str) -> Result<String, String> {
    crate::config::normalize_endpoint(input)
        .map_err(|_| format!("invalid origin URL '{input}': expected an http:// or https:// URL"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("edgecache").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_rules_set() {
        let cli = parse(&[
            "rules",
            "set",
            "/v1/users*",
            "--ttl",
            "1h",
            "--max-staleness",
            "500ms",
            "--no-rehydrate",
            "--vary-by",
            "Authorization,accept-language",
            "--vary-by",
            "cookie",
        ])
        .unwrap();
        match cli.command {
            Command::Rules(RulesCommand::Set {
                pattern,
                ttl,
                no_store,
                max_staleness,
                no_rehydrate,
                vary_by,
            }) => {
                assert_eq!(pattern, "/v1/users*");
                assert_eq!(ttl, Some(3_600));
                assert!(!no_store);
                assert_eq!(max_staleness, Some(500));
                assert!(no_rehydrate);
                assert_eq!(vary_by, ["authorization", "accept-language", "cookie"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_bad_values_as_usage_errors() {
        for args in [
            &["rules", "set", "/v1/*", "--ttl", "1y"][..],
            &["rules", "set", "/v1/*", "--max-staleness", "fast"],
            &["rules", "set", "v1/*"],
            &["rules", "set", "/v1/*", "--vary-by", "x-user"],
            &["invalidate", "--record", "users"],
            &["invalidate", "--table", "users:1"],
            &["invalidate", "--prefix", "v1"],
            &["deps"],
            &["deps", "/v1/users", "--record", "users:1"],
            &["warm", "list.txt", "--concurrency", "0"],
            &["warm", "list.txt", "--concurrency", "33"],
            &[
                "tenant",
                "create",
                "acme",
                "--origin-url",
                "api.example.com",
            ],
            &["completions", "powershell"],
        ] {
            let err = parse(args).expect_err(&args.join(" "));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn repeatable_and_multi_value_flags() {
        let cli = parse(&[
            "invalidate",
            "--url",
            "/v1/a",
            "/v1/b",
            "--url",
            "/v1/c",
            "--record",
            "users:1",
            "--table",
            "orders",
            "--prefix",
            "/v1/users",
        ])
        .unwrap();
        let Command::Invalidate(args) = cli.command else {
            panic!("not invalidate")
        };
        assert_eq!(args.urls, ["/v1/a", "/v1/b", "/v1/c"]);
        assert_eq!(args.records[0].to_string(), "users:1");
        assert_eq!(args.tables, ["orders"]);
        assert_eq!(args.prefixes, ["/v1/users"]);
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = parse(&["stats", "--json", "--tenant", "acme"]).unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.tenant.as_deref(), Some("acme"));
        let cli = parse(&["--endpoint", "http://x", "tenant", "list"]).unwrap();
        assert_eq!(cli.global.endpoint.as_deref(), Some("http://x"));
    }

    #[test]
    fn warm_concurrency_defaults_to_four() {
        let Command::Warm(args) = parse(&["warm", "f"]).unwrap().command else {
            panic!("not warm")
        };
        assert_eq!(args.concurrency, 4);
    }
}
