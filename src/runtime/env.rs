//! Bindings and configuration: the worker's vars read into the core's `Config`, and secrets
//! looked up the one way (a wrangler secret, else a plain var, as `.dev.vars` provides).

use std::cell::OnceCell;

use edgecache_core::config::{Config, VarSource};
use edgecache_core::vary::VariantKeyer;
use edgecache_core::ApiError;
use worker::Env;

/// Reads the worker's vars for `Config`.
pub struct EnvVars<'a>(pub &'a Env);

impl VarSource for EnvVars<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.0.var(name).ok().map(|v| v.to_string())
    }
}

/// A secret's value: the wrangler secret, else a var of that name; `None` if unset or empty.
pub fn secret(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .or_else(|_| env.var(name).map(|v| v.to_string()))
        .ok()
        .filter(|s| !s.is_empty())
}

/// What keys variant keys (hashes of credentials and `Vary`-named headers): the secret
/// `EDGECACHE_KEY_SECRET`, else a key derived from the operator token; `None` without either
/// (varied and credentialed answers are then never stored).
pub fn variant_keyer(env: &Env) -> Option<VariantKeyer> {
    secret(env, "EDGECACHE_KEY_SECRET")
        .or_else(|| secret(env, "EDGECACHE_OPERATOR_TOKEN"))
        .map(|s| VariantKeyer::new(s.as_bytes()))
}

/// Reads and validates the configuration.
pub fn read_config(env: &Env) -> Result<Config, ApiError> {
    Ok(Config::from_vars(&EnvVars(env))?)
}

thread_local! {
    // Vars are fixed for an isolate's life: parse and validate them once.
    static ISOLATE_CONFIG: OnceCell<Result<Config, ApiError>> = const { OnceCell::new() };
}

/// The configuration, parsed on first use in this isolate (the edge's; a Durable Object keeps
/// its own copy with [`ObjectConfig`], so it never depends on what the edge has parsed).
pub fn isolate_config(env: &Env) -> Result<Config, ApiError> {
    ISOLATE_CONFIG.with(|c| c.get_or_init(|| read_config(env)).clone())
}

/// Reads this isolate's configuration without copying it.
pub fn with_isolate_config<T>(env: &Env, f: impl FnOnce(&Config) -> T) -> Result<T, ApiError> {
    ISOLATE_CONFIG.with(|c| match c.get_or_init(|| read_config(env)) {
        Ok(config) => Ok(f(config)),
        Err(e) => Err(e.clone()),
    })
}

/// A Durable Object's configuration, parsed on its first use by that object.
#[derive(Default)]
pub struct ObjectConfig(OnceCell<Config>);

impl ObjectConfig {
    /// The configuration.
    pub fn get(&self, env: &Env) -> Result<&Config, ApiError> {
        if let Some(c) = self.0.get() {
            return Ok(c);
        }
        let config = read_config(env)?;
        Ok(self.0.get_or_init(|| config))
    }
}
