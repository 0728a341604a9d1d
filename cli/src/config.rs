//! Where the endpoint, token and tenant come from: the config file, then the environment, then
//! flags, each overriding the one before.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CliError, Setting};
use crate::path::strip_scheme;

/// The saved config file (`<user config dir>/edgecache/config.toml`), every field optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    /// The worker's base URL, e.g. `http://127.0.0.1:8787`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The operator token or a tenant's admin token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The tenant that tenant-scoped commands act on by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// Values from the environment and flags; clap has already let a flag win over its variable.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--endpoint` / `EDGECACHE_ENDPOINT`.
    pub endpoint: Option<String>,
    /// `--token` / `EDGECACHE_TOKEN`.
    pub token: Option<String>,
    /// `--tenant` / `EDGECACHE_TENANT`.
    pub tenant: Option<String>,
}

/// The settings a command runs with, after layering.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    endpoint: Option<String>,
    token: Option<String>,
    tenant: Option<String>,
}

impl Settings {
    /// Layers the overrides over the file. An empty value counts as unset, so
    /// `EDGECACHE_TENANT=` cannot select a tenant named "".
    pub fn resolve(file: ConfigFile, overrides: Overrides) -> Self {
        let pick = |over: Option<String>, saved: Option<String>| {
            non_empty(over).or_else(|| non_empty(saved))
        };
        Self {
            endpoint: pick(overrides.endpoint, file.endpoint),
            token: pick(overrides.token, file.token),
            tenant: pick(overrides.tenant, file.tenant),
        }
    }

    /// The endpoint, validated and without a trailing slash.
    pub fn endpoint(&self) -> Result<String, CliError> {
        let raw = self
            .endpoint
            .as_deref()
            .ok_or(CliError::MissingSetting(Setting::Endpoint))?;
        normalize_endpoint(raw)
    }

    /// The admin API token.
    pub fn token(&self) -> Result<&str, CliError> {
        self.token
            .as_deref()
            .ok_or(CliError::MissingSetting(Setting::Token))
    }

    /// The tenant for tenant-scoped commands.
    pub fn tenant(&self) -> Result<&str, CliError> {
        self.tenant
            .as_deref()
            .ok_or(CliError::MissingSetting(Setting::Tenant))
    }

    /// The tenant, if one is configured.
    pub fn tenant_opt(&self) -> Option<&str> {
        self.tenant.as_deref()
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// Checks that the endpoint is an http(s) URL with a host, and drops trailing slashes so paths
/// can be appended with `format!`.
pub fn normalize_endpoint(raw: &str) -> Result<String, CliError> {
    let trimmed = raw.trim().trim_end_matches('/');
    match strip_scheme(trimmed) {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(trimmed.to_string()),
        _ => Err(CliError::InvalidEndpoint(raw.to_string())),
    }
}

/// `<user config dir>/edgecache/config.toml`, used when `EDGECACHE_CONFIG` is unset.
pub fn default_path() -> Option<PathBuf> {
    dirs::config_dir().map(|dir| dir.join("edgecache").join("config.toml"))
}

/// Reads the config file; a missing file is an empty config, because a fresh install has none.
pub fn load(path: &Path) -> Result<ConfigFile, CliError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigFile::default()),
        Err(err) => {
            return Err(CliError::ConfigRead {
                path: path.to_path_buf(),
                detail: err.to_string(),
            })
        }
    };
    toml::from_str(&text).map_err(|err| CliError::ConfigRead {
        path: path.to_path_buf(),
        detail: err.message().to_string(),
    })
}

/// Writes the config file readable by its owner only, since it holds a token.
pub fn save(path: &Path, config: &ConfigFile) -> Result<(), CliError> {
    let write_err = |err: std::io::Error| CliError::ConfigWrite {
        path: path.to_path_buf(),
        detail: err.to_string(),
    };
    let text = toml::to_string(config).map_err(|err| CliError::ConfigWrite {
        path: path.to_path_buf(),
        detail: err.to_string(),
    })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir).map_err(write_err)?;
    }
    let mut file = open_private(path).map_err(write_err)?;
    file.write_all(text.as_bytes()).map_err(write_err)?;
    file.sync_all().map_err(write_err)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // `mode` applies only when the file is created; an older file may have been wider.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(endpoint: &str, token: &str, tenant: &str) -> ConfigFile {
        ConfigFile {
            endpoint: Some(endpoint.into()),
            token: Some(token.into()),
            tenant: Some(tenant.into()),
        }
    }

    #[test]
    fn overrides_win_over_the_file() {
        let settings = Settings::resolve(
            file("http://file", "file-token", "file-tenant"),
            Overrides {
                endpoint: None,
                token: Some("flag-token".into()),
                tenant: Some(String::new()),
            },
        );
        assert_eq!(settings.endpoint().unwrap(), "http://file");
        assert_eq!(settings.token().unwrap(), "flag-token");
        // An empty override is unset, so the file's tenant shows through.
        assert_eq!(settings.tenant().unwrap(), "file-tenant");
    }

    #[test]
    fn missing_settings_name_themselves() {
        let settings = Settings::resolve(ConfigFile::default(), Overrides::default());
        assert!(matches!(
            settings.endpoint(),
            Err(CliError::MissingSetting(Setting::Endpoint))
        ));
        assert!(matches!(
            settings.token(),
            Err(CliError::MissingSetting(Setting::Token))
        ));
        assert!(matches!(
            settings.tenant(),
            Err(CliError::MissingSetting(Setting::Tenant))
        ));
    }

    #[test]
    fn endpoints_are_validated_and_trimmed() {
        assert_eq!(
            normalize_endpoint("http://127.0.0.1:8787/").unwrap(),
            "http://127.0.0.1:8787"
        );
        assert_eq!(
            normalize_endpoint("https://edge.example.com/base//").unwrap(),
            "https://edge.example.com/base"
        );
        for bad in ["127.0.0.1:8787", "ftp://x", "http://", "https:///x", ""] {
            assert!(normalize_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn save_then_load_round_trips_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("config.toml");
        let config = ConfigFile {
            endpoint: Some("http://127.0.0.1:8787".into()),
            token: Some("eca_secret".into()),
            tenant: None,
        };
        save(&path, &config).unwrap();
        assert_eq!(load(&path).unwrap(), config);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn missing_file_is_empty_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            load(&dir.path().join("absent.toml")).unwrap(),
            ConfigFile::default()
        );
        let bad = dir.path().join("bad.toml");
        fs::write(&bad, "endpoint = [").unwrap();
        assert!(matches!(load(&bad), Err(CliError::ConfigRead { .. })));
    }
}
