//! One function per command: resolve settings, call the admin API, print the answer as a table
//! or as the server's JSON.

use std::io::{self, BufRead, IsTerminal, Read};
use std::path::PathBuf;
use std::time::Instant;

use clap::CommandFactory;
use serde_json::{json, Value};

use crate::api::{self, AdminClient};
use crate::cli::{
    BetaCommand, Cli, Command, CompletionShell, DepsArgs, ExplainArgs, GlobalArgs, InvalidateArgs,
    KeysCommand, RulesCommand, TenantCommand, TenantCreateArgs, TenantSetArgs, WarmArgs,
};
use crate::config::{self, ConfigFile, Overrides, Settings};
use crate::error::CliError;
use crate::learn;
use crate::model::{
    Access, BetaList, CreateKey, CreateTenant, CreatedKey, CreatedTenant, ExplainResponse,
    ExplainWrite, InvalidationResult, InvalidationSpec, KeyDeps, KeyList, OriginConfig, RecordDeps,
    Rule, RuleEnvelope, RuleList, Stats, TenantEnvelope, TenantList, TenantSettings, Whoami,
};
use crate::path::{api_path, encode};
use crate::render;
use crate::warm::{self, Progress, Summary, Target};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let ctx = Context::new(cli.global);
    match cli.command {
        Command::Login => login(&ctx),
        Command::Tenant(command) => tenant(&ctx, command),
        Command::Rules(command) => rules(&ctx, command),
        Command::Keys(command) => keys(&ctx, command),
        Command::Invalidate(args) => invalidate(&ctx, args),
        Command::Deps(args) => deps(&ctx, args),
        Command::Explain(args) => explain(&ctx, args),
        Command::Stats => stats(&ctx),
        Command::Learn(command) => {
            let (settings, client) = ctx.client()?;
            let tenant = settings.tenant()?;
            let out = learn::run(&client, tenant, command)?;
            ctx.emit(&out.raw, || out.human);
            Ok(())
        }
        Command::Warm(args) => warm(&ctx, args),
        Command::Beta(command) => beta(&ctx, command),
        Command::Completions { shell } => {
            completions(shell);
            Ok(())
        }
    }
}

/// What every command starts from: output mode, where the config file is, and the overrides.
struct Context {
    json: bool,
    config_path: Option<PathBuf>,
    overrides: Overrides,
}

impl Context {
    fn new(global: GlobalArgs) -> Self {
        Self {
            json: global.json,
            config_path: global.config.or_else(config::default_path),
            overrides: Overrides {
                endpoint: global.endpoint,
                token: global.token,
                tenant: global.tenant,
            },
        }
    }

    /// File, then environment, then flags.
    fn settings(&self) -> Result<Settings, CliError> {
        let file = match &self.config_path {
            Some(path) => config::load(path)?,
            None => ConfigFile::default(),
        };
        Ok(Settings::resolve(file, self.overrides.clone()))
    }

    /// Settings and a client for them; fails early when the endpoint or token is missing.
    fn client(&self) -> Result<(Settings, AdminClient), CliError> {
        let settings = self.settings()?;
        let client = AdminClient::new(&settings.endpoint()?, settings.token()?);
        Ok((settings, client))
    }

    /// Prints `raw` as JSON in `--json` mode, else the human rendering.
    fn emit(&self, raw: &Value, human: impl FnOnce() -> String) {
        if self.json {
            println!("{}", pretty(raw));
        } else {
            print!("{}", human());
        }
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).expect("a serde_json::Value always serialises")
}

fn login(ctx: &Context) -> Result<(), CliError> {
    // Only flags and the environment count here: login replaces the saved file, so reusing the
    // file's old tenant with a new token would save a pair that does not belong together.
    let given = Settings::resolve(ConfigFile::default(), ctx.overrides.clone());
    let endpoint = given.endpoint()?;
    let token = given.token()?;
    let client = AdminClient::new(&endpoint, token);
    let raw = client.whoami()?;
    let who: Whoami = client.decode(raw.clone())?;
    let tenant = match (who.tenant.as_deref(), given.tenant_opt()) {
        (Some(own), Some(requested)) if who.role == "tenant" && own != requested => {
            return Err(CliError::TenantMismatch {
                token_tenant: own.to_string(),
                requested: requested.to_string(),
            })
        }
        // A tenant token can only act on its own tenant, so that is the useful default.
        (Some(own), None) if who.role == "tenant" => Some(own.to_string()),
        (_, requested) => requested.map(str::to_string),
    };
    let path = ctx.config_path.clone().ok_or(CliError::NoConfigDir)?;
    config::save(
        &path,
        &ConfigFile {
            endpoint: Some(endpoint.clone()),
            token: Some(token.to_string()),
            tenant: tenant.clone(),
        },
    )?;
    ctx.emit(&raw, || {
        let mut out = render::whoami(&endpoint, &who);
        if let Some(tenant) = &tenant {
            out.push_str(&format!("default tenant: {tenant}\n"));
        }
        out.push_str(&format!("saved to {}\n", path.display()));
        out
    });
    Ok(())
}

fn tenant(ctx: &Context, command: TenantCommand) -> Result<(), CliError> {
    let (_, client) = ctx.client()?;
    match command {
        TenantCommand::Create(args) => {
            let raw = client.create_tenant(&create_body(args))?;
            let created: CreatedTenant = client.decode(raw.clone())?;
            ctx.emit(&raw, || render::created_tenant(&created));
            eprintln!(
                "warning: the admin token and webhook secret are shown only this once and \
                 cannot be retrieved later; store them somewhere safe now"
            );
        }
        TenantCommand::Set(args) => {
            let name = args.name.clone();
            let raw = client.update_tenant(&name, &settings_body(args))?;
            let updated: TenantEnvelope = client.decode(raw.clone())?;
            ctx.emit(&raw, || render::updated_tenant(&updated.tenant));
        }
        TenantCommand::List => {
            let raw = client.list_tenants()?;
            let list: TenantList = client.decode(raw.clone())?;
            ctx.emit(&raw, || render::tenant_list(&list.tenants));
        }
        TenantCommand::Show { name } => {
            let raw = client.get_tenant(&name)?;
            let shown: TenantEnvelope = client.decode(raw.clone())?;
            ctx.emit(&raw, || render::tenant(&shown.tenant));
        }
        TenantCommand::Delete { name, yes } => {
            if !yes {
                confirm(
                    &format!("delete tenant '{name}'"),
                    &format!(
                        "This deletes tenant '{name}', its rules and everything cached for it."
                    ),
                    &name,
                )?;
            }
            client.delete_tenant(&name)?;
            // 204 has no body; --json still prints an object so scripts can parse stdout.
            ctx.emit(&json!({"deleted": {"tenant": name}}), || {
                format!("deleted tenant '{name}'\n")
            });
        }
    }
    Ok(())
}

/// The `POST /tenants` body: clap has made sure exactly one origin was named.
fn create_body(args: TenantCreateArgs) -> CreateTenant {
    let origin = match args.origin_url {
        Some(base_url) => OriginConfig::Http {
            base_url,
            headers: args.origin_headers,
        },
        None => OriginConfig::D1,
    };
    let access = Access {
        private_reads: args.private_reads,
        require_write_key: args.require_write_key,
        forward_headers: args.forward_headers,
    };
    CreateTenant {
        name: args.name,
        origin: Some(origin),
        views: None,
        // The defaults are the server's own: sent only when something differs.
        access: (access != Access::default()).then_some(access),
        tables: (!args.tables.is_empty()).then_some(args.tables),
    }
}

/// The `PATCH /tenants/{name}` body: only what the flags change (clap has made sure there is
/// something, and that no setting is both turned on and off).
fn settings_body(args: TenantSetArgs) -> TenantSettings {
    fn flag(on: bool, off: bool) -> Option<bool> {
        (on || off).then_some(on)
    }
    fn list<T>(items: Vec<T>, clear: bool) -> Option<Vec<T>> {
        (clear || !items.is_empty()).then_some(items)
    }
    TenantSettings {
        private_reads: flag(args.private_reads, args.public_reads),
        require_write_key: flag(args.require_write_key, args.no_require_write_key),
        forward_headers: list(args.forward_headers, args.no_forward_headers),
        origin_headers: list(args.origin_headers, args.no_origin_headers),
        tables: list(args.tables, false),
        learning: args.learning.map(Into::into),
        learning_frozen: None,
    }
}

/// Asks the user to type `name` to go ahead with `action` (explained by `warning`); refuses
/// outright when nobody is at a terminal.
fn confirm(action: &str, warning: &str, name: &str) -> Result<(), CliError> {
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::ConfirmationRequired(action.to_string()));
    }
    eprint!("{warning}\nType '{name}' to confirm: ");
    let mut typed = String::new();
    stdin
        .lock()
        .read_line(&mut typed)
        .map_err(|_| CliError::ConfirmationMismatch(name.to_string()))?;
    if typed.trim() == name {
        Ok(())
    } else {
        Err(CliError::ConfirmationMismatch(name.to_string()))
    }
}

fn keys(ctx: &Context, command: KeysCommand) -> Result<(), CliError> {
    let (settings, client) = ctx.client()?;
    let tenant = settings.tenant()?;
    match command {
        KeysCommand::Create { name, scope } => {
            let body = CreateKey {
                name,
                scope: scope.into(),
            };
            let raw = client.create_key(tenant, &body)?;
            let created: CreatedKey = client.decode(raw.clone())?;
            ctx.emit(&raw, || render::created_key(tenant, &created));
            eprintln!(
                "warning: the key is shown only this once and cannot be retrieved later; store \
                 it somewhere safe now"
            );
        }
        KeysCommand::List => {
            let raw = client.list_keys(tenant)?;
            let list: KeyList = client.decode(raw.clone())?;
            ctx.emit(&raw, || render::keys(tenant, &list.keys));
        }
        KeysCommand::Revoke { name, yes } => {
            if !yes {
                confirm(
                    &format!("revoke key '{name}' of tenant '{tenant}'"),
                    &format!(
                        "This revokes key '{name}' of tenant '{tenant}': every request that \
                         presents it is refused within seconds."
                    ),
                    &name,
                )?;
            }
            client.revoke_key(tenant, &name)?;
            ctx.emit(&json!({"revoked": {"tenant": tenant, "key": name}}), || {
                format!("revoked key '{name}' of tenant '{tenant}'\n")
            });
        }
    }
    Ok(())
}

fn rules(ctx: &Context, command: RulesCommand) -> Result<(), CliError> {
    let (settings, client) = ctx.client()?;
    let tenant = settings.tenant()?;
    match command {
        RulesCommand::Set {
            pattern,
            ttl,
            no_store,
            max_staleness,
            no_rehydrate,
            mut vary_by,
            swr,
        } => {
            // A header named twice is the same key; the server refuses duplicates.
            vary_by.sort();
            vary_by.dedup();
            let rule = Rule {
                pattern,
                ttl_secs: ttl,
                no_store,
                max_staleness_ms: max_staleness,
                // Absent means the server's default (rehydrate on); only the opt-out is sent.
                rehydrate: no_rehydrate.then_some(false),
                vary_by,
                swr_secs: swr,
            };
            let raw = client.put_rule(tenant, &rule)?;
            let saved: RuleEnvelope = client.decode(raw.clone())?;
            ctx.emit(&raw, || {
                format!(
                    "saved rule for '{}' on tenant '{tenant}'\n{}",
                    saved.rule.pattern,
                    render::rules(std::slice::from_ref(&saved.rule))
                )
            });
        }
        RulesCommand::List => {
            let raw = client.list_rules(tenant)?;
            let list: RuleList = client.decode(raw.clone())?;
            ctx.emit(&raw, || render::rules(&list.rules));
        }
        RulesCommand::Rm { pattern } => {
            client.delete_rule(tenant, &pattern)?;
            ctx.emit(&json!({"deleted": {"pattern": pattern}}), || {
                format!("removed rule '{pattern}' from tenant '{tenant}'\n")
            });
        }
    }
    Ok(())
}

fn invalidate(ctx: &Context, args: InvalidateArgs) -> Result<(), CliError> {
    if args.urls.is_empty()
        && args.records.is_empty()
        && args.tables.is_empty()
        && args.prefixes.is_empty()
    {
        return Err(CliError::Usage(
            "nothing to invalidate: pass at least one of --url, --record, --table or --prefix"
                .to_string(),
        ));
    }
    let (settings, client) = ctx.client()?;
    let tenant = settings.tenant()?;
    let urls = args
        .urls
        .iter()
        .map(|url| api_path(url, tenant).map_err(CliError::Usage))
        .collect::<Result<Vec<_>, _>>()?;
    let body = InvalidationSpec {
        urls,
        records: args.records,
        tables: args.tables,
        prefixes: args.prefixes,
    };
    let raw = client.invalidate(tenant, &body)?;
    let answer: InvalidationResult = client.decode(raw.clone())?;
    ctx.emit(&raw, || render::invalidated(&answer));
    Ok(())
}

fn deps(ctx: &Context, args: DepsArgs) -> Result<(), CliError> {
    let (settings, client) = ctx.client()?;
    let tenant = settings.tenant()?;
    match (args.target, args.record) {
        (Some(target), _) => {
            let path = api_path(&target, tenant).map_err(CliError::Usage)?;
            let raw = client.deps_of_url(tenant, &path)?;
            let answer: KeyDeps = client.decode(raw.clone())?;
            ctx.emit(&raw, || render::key_deps(&answer));
        }
        (None, Some(record)) => {
            let raw = client.deps_of_record(tenant, &record.to_string())?;
            let answer: RecordDeps = client.decode(raw.clone())?;
            ctx.emit(&raw, || render::record_deps(&answer));
        }
        (None, None) => unreachable!("clap requires a URL or --record"),
    }
    Ok(())
}

fn explain(ctx: &Context, args: ExplainArgs) -> Result<(), CliError> {
    let (settings, client) = ctx.client()?;
    let tenant = settings.tenant()?;
    let path = api_path(&args.target, tenant).map_err(CliError::Usage)?;
    let method = args.method.to_ascii_uppercase();
    let body = ExplainWrite {
        method: method.clone(),
        path: path.clone(),
        body: args.data,
    };
    let raw = client.explain(tenant, &body)?;
    let answer: ExplainResponse = client.decode(raw.clone())?;
    ctx.emit(&raw, || render::explained(&method, &path, &answer));
    Ok(())
}

fn stats(ctx: &Context) -> Result<(), CliError> {
    let (settings, client) = ctx.client()?;
    let tenant = settings.tenant()?;
    let raw = client.stats(tenant)?;
    let answer: Stats = client.decode(raw.clone())?;
    ctx.emit(&raw, || render::stats(tenant, &answer));
    Ok(())
}

fn beta(ctx: &Context, command: BetaCommand) -> Result<(), CliError> {
    let (_, client) = ctx.client()?;
    match command {
        BetaCommand::List => {
            let raw = client.beta_signups()?;
            let list: BetaList = client.decode(raw.clone())?;
            ctx.emit(&raw, || render::beta_list(&list));
        }
    }
    Ok(())
}

fn warm(ctx: &Context, args: WarmArgs) -> Result<(), CliError> {
    let text = read_list(&args.file)?;
    let targets = warm::parse_list(&text)?;
    // Paths need the endpoint and tenant; a file of full URLs needs no configuration at all.
    let tenant_base = if targets.iter().any(|t| matches!(t, Target::Path(_))) {
        let settings = ctx.settings()?;
        Some(format!(
            "{}/t/{}",
            settings.endpoint()?,
            encode(settings.tenant()?)
        ))
    } else {
        None
    };
    let urls: Vec<String> = targets
        .iter()
        .map(|t| t.url(tenant_base.as_deref()))
        .collect();

    let progress = Progress::choose(urls.len(), ctx.json);
    let started = Instant::now();
    let fetches = warm::run(
        &api::agent(),
        &urls,
        usize::from(args.concurrency),
        |done| progress.done(done),
    );
    progress.finish();
    let summary = Summary::new(&fetches, started.elapsed());
    if ctx.json {
        let value = serde_json::to_value(&summary).expect("the summary always serialises");
        println!("{}", pretty(&value));
    } else {
        print!("{}", summary.render());
    }
    summary.result(&fetches)
}

/// The warm list from a file, or from stdin for `-`.
fn read_list(file: &PathBuf) -> Result<String, CliError> {
    let read_err = |err: io::Error| CliError::ReadFile {
        path: file.clone(),
        detail: err.to_string(),
    };
    if file.as_os_str() == "-" {
        let mut text = String::new();
        io::stdin().read_to_string(&mut text).map_err(read_err)?;
        Ok(text)
    } else {
        std::fs::read_to_string(file).map_err(read_err)
    }
}

fn completions(shell: CompletionShell) {
    clap_complete::generate(
        clap_complete::Shell::from(shell),
        &mut Cli::command(),
        "edgecache",
        &mut io::stdout(),
    );
}
