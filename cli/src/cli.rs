//! The command line: every command, flag and client-side validation clap can do.

use std::ffi::OsStr;
use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use edgecache_core::access::{valid_key_name, KeyScope};
use edgecache_core::protocol::{check_header_name, parse_header_line, LearningMode, OriginHeader};

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
    /// Create, list and revoke a tenant's API keys (for reads and writes through the cache)
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Purge cached responses by URL, record, table or prefix
    Invalidate(InvalidateArgs),
    /// Show what a cached URL depends on, or which cached URLs contain a record
    Deps(DepsArgs),
    /// Show which cached keys a write would invalidate, refresh or spare, and why, without
    /// writing
    Explain(ExplainArgs),
    /// Show hit ratios per tier and route, coordinator seqs and pending rehydrates
    Stats,
    /// What EdgeCache learned about the origin: shadow precision and recall, learned rules
    #[command(subcommand)]
    Learn(LearnCommand),
    /// Fetch a list of paths or URLs through the cache to fill it
    Warm(WarmArgs),
    /// Beta sign-ups from the website (operator token)
    #[command(subcommand)]
    Beta(BetaCommand),
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
    Create(TenantCreateArgs),
    /// List tenants
    List,
    /// Show a tenant's origin, access settings, rules and views
    Show {
        /// Tenant name
        name: String,
    },
    /// Change a tenant's access settings or origin credentials; prints the tenant
    Set(TenantSetArgs),
    /// Delete a tenant and everything cached for it
    Delete {
        /// Tenant name
        name: String,
        /// Do not ask for confirmation
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// `learn …`: on the tenant named by --tenant (or the config).
#[derive(Debug, Subcommand)]
pub enum LearnCommand {
    /// Per table: shadow checks' precision and recall with their counts, learned rules with
    /// their evidence, dependency candidates and hypotheses under test (with the ids `learn
    /// forget` takes)
    Status {
        /// Only this table
        #[arg(long, value_name = "TABLE")]
        table: Option<String>,
    },
    /// Forget a learned rule, a dependency candidate, a hypothesis, or (--all) everything a
    /// table learned, at once
    ///
    /// A rule goes with the evidence it was learned from, a candidate (a dependency short of a
    /// rule) with its evidence; neither invalidates anything. A hypothesis (a list parameter's
    /// meaning, a default order, a write route's write-through) goes with its evidence, and every
    /// key kept or written through under its route is invalidated at once, as when a hypothesis
    /// is revoked. Whatever is forgotten is learned again only from new evidence (`learn freeze`
    /// first to keep it gone).
    Forget {
        /// A rule's id (users:1), a candidate's (users:c1a2b3c4d) or a hypothesis's
        /// (users:h0c1d2e3f), as `learn status` shows them; with --all, a table
        #[arg(value_name = "ID|TABLE")]
        target: String,
        /// Forget all of the table's learning: its rules and their evidence, its list
        /// semantics and its write-through
        #[arg(long)]
        all: bool,
    },
    /// Stop learning: no shadow checks, evidence or new rules; learned rules stay and apply
    Freeze,
    /// Resume learning
    Unfreeze,
}

/// A learning mode on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LearningModeArg {
    /// Measure and propose; skip no invalidation (rules that only add still apply)
    Observe,
    /// Also skip invalidations under continuously verified hypotheses
    Apply,
}

impl From<LearningModeArg> for LearningMode {
    fn from(mode: LearningModeArg) -> Self {
        match mode {
            LearningModeArg::Observe => LearningMode::Observe,
            LearningModeArg::Apply => LearningMode::Apply,
        }
    }
}

/// `beta …`.
#[derive(Debug, Subcommand)]
pub enum BetaCommand {
    /// List sign-ups, newest first: address, sign-ups merged into it, first and last time
    List,
}

/// `tenant create …`: exactly one origin, named on purpose.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("origin").required(true).args(["origin_url", "d1"])))]
pub struct TenantCreateArgs {
    /// Tenant name (its URL segment: /t/NAME)
    pub name: String,
    /// Proxy this HTTP API (its base URL; /v1/... paths are appended)
    #[arg(long, value_name = "URL", value_parser = parse_origin_url)]
    pub origin_url: Option<String>,
    /// Use the deployment's own D1 database, which is shared with every other --d1 tenant
    /// (they all read and write the same tables)
    #[arg(long)]
    pub d1: bool,
    /// A credential EdgeCache adds to every request to the origin, e.g. 'X-Origin-Key: s3cr3t'
    /// (repeatable; shown back only by name)
    #[arg(
        long = "origin-header",
        value_name = "NAME: VALUE",
        requires = "origin_url",
        // Spelled out: clap waives `requires` when the required flag conflicts with one given.
        conflicts_with = "d1",
        value_parser = OriginHeaderParser
    )]
    pub origin_headers: Vec<OriginHeader>,
    /// Reads need a key (read or write scope) too
    #[arg(long)]
    pub private_reads: bool,
    /// Writes to the HTTP origin need an EdgeCache write key (x-edgecache-key) as well as
    /// whatever the origin asks (writes to D1 always need one)
    #[arg(long)]
    pub require_write_key: bool,
    /// A request header, beyond authorization and cookie, passed on to the HTTP origin
    /// (repeatable)
    #[arg(long = "forward-header", value_name = "NAME", value_parser = parse_header_name)]
    pub forward_headers: Vec<String>,
    /// A table of the HTTP origin, known up front (repeatable); others are learned when the
    /// origin first answers a read of them with a 2xx
    #[arg(
        long = "table",
        value_name = "TABLE",
        requires = "origin_url",
        conflicts_with = "d1"
    )]
    pub tables: Vec<String>,
}

/// `tenant set …`: each flag changes one setting; what is not named stays as it is.
#[derive(Debug, Args)]
#[command(override_usage = "edgecache tenant set <NAME> <OPTION>... (at least one option)")]
#[command(group(
    ArgGroup::new("change")
        .required(true)
        .multiple(true)
        .args([
            "private_reads",
            "public_reads",
            "require_write_key",
            "no_require_write_key",
            "forward_headers",
            "no_forward_headers",
            "origin_headers",
            "no_origin_headers",
            "tables",
            "learning",
        ])
))]
pub struct TenantSetArgs {
    /// Tenant name
    pub name: String,
    /// Reads need a key (read or write scope)
    #[arg(long, conflicts_with = "public_reads")]
    pub private_reads: bool,
    /// Anyone may read
    #[arg(long)]
    pub public_reads: bool,
    /// Writes to the HTTP origin need an EdgeCache write key as well
    #[arg(long, conflicts_with = "no_require_write_key")]
    pub require_write_key: bool,
    /// Writes to the HTTP origin are left to the origin's own authentication
    #[arg(long)]
    pub no_require_write_key: bool,
    /// Request headers passed on to the HTTP origin; replaces the current list (repeatable)
    #[arg(
        long = "forward-header",
        value_name = "NAME",
        value_parser = parse_header_name,
        conflicts_with = "no_forward_headers"
    )]
    pub forward_headers: Vec<String>,
    /// Pass on no headers beyond authorization and cookie
    #[arg(long)]
    pub no_forward_headers: bool,
    /// The HTTP origin's credentials, 'Name: value'; replaces all current ones, which is how a
    /// credential is rotated (repeatable)
    #[arg(
        long = "origin-header",
        value_name = "NAME: VALUE",
        value_parser = OriginHeaderParser,
        conflicts_with = "no_origin_headers"
    )]
    pub origin_headers: Vec<OriginHeader>,
    /// Remove every origin credential header
    #[arg(long)]
    pub no_origin_headers: bool,
    /// The HTTP origin's known tables; replaces the current list (repeatable)
    #[arg(long = "table", value_name = "TABLE")]
    pub tables: Vec<String>,
    /// What learning may do: observe (measure and propose) or apply
    #[arg(long, value_enum, value_name = "MODE")]
    pub learning: Option<LearningModeArg>,
}

/// `keys …`: on the tenant named by --tenant (or the config).
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; prints it once
    Create {
        /// The key's name, e.g. ci-deploy (lowercase letters, digits, '-' and '_')
        #[arg(value_parser = parse_key_name)]
        name: String,
        /// What it allows: read (reads of a tenant with private reads) or write (reads and
        /// writes)
        #[arg(long, value_enum)]
        scope: Scope,
    },
    /// List the keys (names, scopes and times; never the keys)
    List,
    /// Revoke a key: every edge refuses it within seconds
    Revoke {
        /// The key's name
        name: String,
        /// Do not ask for confirmation
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// A key's scope on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scope {
    /// Reads only
    Read,
    /// Reads and writes
    Write,
}

impl From<Scope> for KeyScope {
    fn from(scope: Scope) -> Self {
        match scope {
            Scope::Read => KeyScope::Read,
            Scope::Write => KeyScope::Write,
        }
    }
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
        /// Stale-while-revalidate: for this long past the TTL, an entry no write invalidated is
        /// served as STALE while one background refill runs (30s, 5m, …)
        #[arg(long, value_name = "DURATION", value_parser = duration::parse_ttl)]
        swr: Option<u64>,
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

/// `explain …`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The write's method
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(["POST", "PUT", "PATCH", "DELETE"])
        .map(|m| m.to_string()), ignore_case = true)]
    pub method: String,
    /// The written path, e.g. /v1/users/123-abc, or its full URL
    #[arg(value_name = "URL_OR_PATH")]
    pub target: String,
    /// The write's JSON body
    #[arg(short = 'd', long = "data", value_name = "JSON", value_parser = parse_json_body)]
    pub data: Option<serde_json::Value>,
}

/// A `-d` body: JSON, checked before anything is sent.
fn parse_json_body(s: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(s).map_err(|e| format!("not JSON: {e}"))
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

/// `Name: value`, checked as the server checks it; a bad line is a usage error. Unlike clap's
/// own "invalid value" errors, the message never quotes the line: it holds a credential.
#[derive(Clone, Copy, Debug)]
struct OriginHeaderParser;

impl TypedValueParser for OriginHeaderParser {
    type Value = OriginHeader;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<OriginHeader, clap::Error> {
        let flag = arg
            .and_then(clap::Arg::get_long)
            .map_or_else(|| "--origin-header".to_string(), |long| format!("--{long}"));
        let invalid = |detail: String| {
            clap::Error::raw(
                ErrorKind::ValueValidation,
                format!("invalid {flag}: {detail}\n"),
            )
            .with_cmd(cmd)
        };
        let line = value
            .to_str()
            .ok_or_else(|| invalid("not valid UTF-8".to_string()))?;
        if !line.contains(':') {
            return Err(invalid("expected 'Name: value'".to_string()));
        }
        // The core's messages name the header, never its value.
        parse_header_line(line).map_err(|err| invalid(err.message))
    }
}

/// A header name to forward, lowercased.
fn parse_header_name(input: &str) -> Result<String, String> {
    check_header_name(input).map_err(|err| err.message)
}

/// A key name the server accepts.
fn parse_key_name(input: &str) -> Result<String, String> {
    if valid_key_name(input) {
        Ok(input.to_string())
    } else {
        Err(format!(
            "invalid key name '{input}': 1-63 lowercase letters, digits, '-' or '_', starting \
             with a letter or digit"
        ))
    }
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
            "--swr",
            "30s",
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
                swr,
            }) => {
                assert_eq!(swr, Some(30));
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
            &["tenant", "create", "acme", "--d1", "--table", "notes"],
            &["deps"],
            &["deps", "/v1/users", "--record", "users:1"],
            &["explain", "GET", "/v1/users/1"],
            &["explain", "PATCH", "/v1/users/1", "-d", "{city:"],
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
            // An origin is named on purpose: exactly one of --origin-url and --d1.
            &["tenant", "create", "acme"],
            &[
                "tenant",
                "create",
                "acme",
                "--d1",
                "--origin-url",
                "https://api.example.com",
            ],
            &["tenant", "create", "acme", "--origin-header", "X-Key: v"],
            &[
                "tenant",
                "create",
                "acme",
                "--d1",
                "--origin-header",
                "X-Key: v",
            ],
            &[
                "tenant",
                "create",
                "acme",
                "--d1",
                "--forward-header",
                "bad name",
            ],
            &["tenant", "set", "acme"],
            &["tenant", "set", "acme", "--private-reads", "--public-reads"],
            &[
                "tenant",
                "set",
                "acme",
                "--require-write-key",
                "--no-require-write-key",
            ],
            &[
                "tenant",
                "set",
                "acme",
                "--origin-header",
                "X-Key: v",
                "--no-origin-headers",
            ],
            &["keys", "create", "ci"],
            &["keys", "create", "ci", "--scope", "admin"],
            &["keys", "create", "Bad Name", "--scope", "read"],
            &["keys", "revoke"],
        ] {
            let err = parse(args).expect_err(&args.join(" "));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    fn create_args(args: &[&str]) -> TenantCreateArgs {
        let all: Vec<&str> = ["tenant", "create"].iter().chain(args).copied().collect();
        match parse(&all).unwrap().command {
            Command::Tenant(TenantCommand::Create(args)) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_tenant_create_with_an_http_origin_and_access() {
        let args = create_args(&[
            "acme",
            "--origin-url",
            "https://api.example.com/",
            "--origin-header",
            "X-Origin-Key:  s3cr3t ",
            "--origin-header",
            "Authorization: Bearer abc",
            "--private-reads",
            "--require-write-key",
            "--forward-header",
            "X-Tenant-Id",
            "--table",
            "notes",
            "--table",
            "me",
        ]);
        assert_eq!(args.origin_url.as_deref(), Some("https://api.example.com"));
        assert_eq!(args.tables, ["notes", "me"]);
        assert!(!args.d1);
        let headers: Vec<(&str, &str)> = args
            .origin_headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(
            headers,
            [("x-origin-key", "s3cr3t"), ("authorization", "Bearer abc")]
        );
        assert!(args.private_reads && args.require_write_key);
        assert_eq!(args.forward_headers, ["x-tenant-id"]);

        let args = create_args(&["acme", "--d1"]);
        assert!(args.d1 && args.origin_url.is_none() && args.origin_headers.is_empty());
        assert!(!args.private_reads && !args.require_write_key);
    }

    #[test]
    fn bad_origin_headers_are_usage_errors_that_do_not_echo_the_value() {
        for (line, says) in [
            ("X-Key s3cr3t", "expected 'Name: value'"),
            ("Bad Name: s3cr3t", "is not a header name"),
            ("Host: s3cr3t", "cannot be set"),
            ("X-Key:   ", "must be 1-4096"),
            ("X-Key: s3cr3t\u{7f}", "must be 1-4096"),
        ] {
            for command in [
                &["create", "acme", "--origin-url", "https://a.example"][..],
                &["set", "acme"],
            ] {
                let mut args = vec!["tenant"];
                args.extend_from_slice(command);
                args.extend_from_slice(&["--origin-header", line]);
                let err = parse(&args).expect_err(line);
                assert_eq!(err.exit_code(), 2, "{line}");
                let text = err.to_string();
                assert!(text.contains(says), "{line}: {text}");
                assert!(text.contains("--origin-header"), "{line}: {text}");
                assert!(!text.contains("s3cr3t"), "{line}: {text}");
            }
        }
    }

    #[test]
    fn parses_tenant_set() {
        let Command::Tenant(TenantCommand::Set(args)) = parse(&[
            "tenant",
            "set",
            "acme",
            "--public-reads",
            "--forward-header",
            "X-A",
            "--forward-header",
            "x-b",
            "--origin-header",
            "X-Origin-Key: new",
        ])
        .unwrap()
        .command
        else {
            panic!("not tenant set")
        };
        assert_eq!(args.name, "acme");
        assert!(args.public_reads && !args.private_reads);
        assert!(!args.require_write_key && !args.no_require_write_key);
        assert_eq!(args.forward_headers, ["x-a", "x-b"]);
        assert_eq!(args.origin_headers[0].name, "x-origin-key");
        assert!(!args.no_forward_headers && !args.no_origin_headers);

        // Each flag on its own is a change.
        for flag in [
            "--private-reads",
            "--public-reads",
            "--require-write-key",
            "--no-require-write-key",
            "--no-forward-headers",
            "--no-origin-headers",
        ] {
            parse(&["tenant", "set", "acme", flag]).expect(flag);
        }
    }

    #[test]
    fn parses_keys() {
        let cli = parse(&[
            "keys",
            "create",
            "ci-deploy_1",
            "--scope",
            "write",
            "--tenant",
            "acme",
        ])
        .unwrap();
        assert_eq!(cli.global.tenant.as_deref(), Some("acme"));
        match cli.command {
            Command::Keys(KeysCommand::Create { name, scope }) => {
                assert_eq!(name, "ci-deploy_1");
                assert_eq!(KeyScope::from(scope), KeyScope::Write);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["keys", "list"]).unwrap().command,
            Command::Keys(KeysCommand::List)
        ));
        match parse(&["keys", "revoke", "ci", "-y"]).unwrap().command {
            Command::Keys(KeysCommand::Revoke { name, yes }) => assert!(name == "ci" && yes),
            other => panic!("{other:?}"),
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
    fn parses_learn_forget_of_an_id_or_all_of_a_table() {
        let forget = |args: &[&str]| match parse(args).map(|cli| cli.command) {
            Ok(Command::Learn(LearnCommand::Forget { target, all })) => Ok((target, all)),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.exit_code()),
        };
        assert_eq!(
            forget(&["learn", "forget", "users:1"]),
            Ok(("users:1".into(), false))
        );
        assert_eq!(
            forget(&["learn", "forget", "users:h0c1d2e3f"]),
            Ok(("users:h0c1d2e3f".into(), false))
        );
        assert_eq!(
            forget(&["learn", "forget", "users:c1a2b3c4d"]),
            Ok(("users:c1a2b3c4d".into(), false))
        );
        assert_eq!(
            forget(&["learn", "forget", "--all", "users"]),
            Ok(("users".into(), true))
        );
        assert_eq!(
            forget(&["learn", "forget", "users", "--all"]),
            Ok(("users".into(), true))
        );
        assert_eq!(forget(&["learn", "forget"]), Err(2), "an id or a table");
        assert_eq!(forget(&["learn", "forget", "--all"]), Err(2), "a table");
    }

    #[test]
    fn parses_beta_list() {
        let cli = parse(&["beta", "list", "--json"]).unwrap();
        assert!(matches!(cli.command, Command::Beta(BetaCommand::List)));
        assert!(cli.global.json);
        assert_eq!(parse(&["beta"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn warm_concurrency_defaults_to_four() {
        let Command::Warm(args) = parse(&["warm", "f"]).unwrap().command else {
            panic!("not warm")
        };
        assert_eq!(args.concurrency, 4);
    }
}
