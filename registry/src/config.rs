//! rbuild's config file, and its `[registries]` tables: where images are pulled from.
//!
//! ```toml
//! # Docker Hub (what short names such as `busybox` mean) through a mirror, never directly:
//! [registries."docker.io"]
//! mirrors = ["mirror.internal:5000", "https://mirror.gcr.io"]
//! blocked = true
//!
//! [registries."mirror.internal:5000"]
//! insecure = true          # plain HTTP
//! ```
//!
//! A pull of a reference on registry `R` tries `R`'s mirrors in order, then `R` itself unless it
//! is `blocked` (podman's `[[registry]] blocked`, docker's `registry-mirrors` without the
//! fallback). A mirror is `HOST[:PORT][/PREFIX]`, optionally with `http://` (plain HTTP) or
//! `https://`; `PREFIX` goes before the repository path (a Harbor proxy project). Pushes never
//! go to mirrors.
//!
//! The file is the first of: `$RBUILD_CONFIG` (which must exist), `$XDG_CONFIG_HOME/rbuild/
//! config.toml` (`~/.config/rbuild/config.toml`), `/etc/rbuild/config.toml`. None is fine: no
//! mirrors, nothing blocked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("config file {}: mirror {mirror:?} of {registry}: {reason}", path.display())]
    Mirror { path: PathBuf, registry: String, mirror: String, reason: &'static str },
}

/// The whole file. Sections rbuild does not know are errors, so a typo is not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    registries: BTreeMap<String, RegistryTable>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryTable {
    #[serde(default)]
    mirrors: Vec<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
}

/// Where a registry's content may be fetched: a mirror or the registry itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`, as in references.
    pub host: String,
    /// Put before the repository path (`proxy/library/busybox`); empty for none.
    pub prefix: String,
    /// Whether this is a mirror (else the registry itself).
    pub mirror: bool,
}

/// The `[registries]` tables of the config file, and the file they came from.
#[derive(Debug, Clone, Default)]
pub struct Registries {
    path: Option<PathBuf>,
    mirrors: BTreeMap<String, Vec<Endpoint>>,
    insecure: Vec<String>,
    blocked: Vec<String>,
}

impl Registries {
    /// The config file in effect (see the module docs), or `None` when there is none.
    pub fn default_path() -> Result<Option<PathBuf>, ConfigError> {
        if let Some(path) = std::env::var_os("RBUILD_CONFIG") {
            let path = PathBuf::from(path);
            // Named explicitly: a missing file is the user's mistake, not "no config".
            std::fs::metadata(&path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
            return Ok(Some(path));
        }
        let home_config = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
        let candidates = home_config
            .map(|c| c.join("rbuild/config.toml"))
            .into_iter()
            .chain([PathBuf::from("/etc/rbuild/config.toml")]);
        Ok(candidates.into_iter().find(|p| p.is_file()))
    }

    /// Reads the config file in effect ([`Registries::default_path`]).
    pub fn load() -> Result<Registries, ConfigError> {
        match Registries::default_path()? {
            Some(path) => Registries::from_file(&path),
            None => Ok(Registries::default()),
        }
    }

    pub fn from_file(path: &Path) -> Result<Registries, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Registries::parse(&text, path)
    }

    /// Parses the text of a config file (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Registries, ConfigError> {
        let file: File = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: toml_message(text, &e) })?;
        let mut r = Registries { path: Some(path.to_path_buf()), ..Registries::default() };
        for (registry, table) in file.registries {
            let registry = canonical_host(&registry);
            let mut endpoints = Vec::new();
            for m in &table.mirrors {
                let bad = |reason| ConfigError::Mirror {
                    path: path.to_path_buf(),
                    registry: registry.clone(),
                    mirror: m.clone(),
                    reason,
                };
                let (plain, rest) = match m.split_once("://") {
                    Some(("http", rest)) => (true, rest),
                    Some(("https", rest)) => (false, rest),
                    Some(_) => return Err(bad("the scheme must be http:// or https://")),
                    None => (false, m.as_str()),
                };
                let rest = rest.trim_end_matches('/');
                let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if host.is_empty() || host.contains(char::is_whitespace) {
                    return Err(bad("expected HOST[:PORT][/PREFIX]"));
                }
                let host = canonical_host(host);
                if plain && !r.insecure.contains(&host) {
                    r.insecure.push(host.clone());
                }
                endpoints.push(Endpoint { host, prefix: prefix.to_string(), mirror: true });
            }
            if table.insecure {
                r.insecure.push(registry.clone());
            }
            if table.blocked {
                r.blocked.push(registry.clone());
            }
            if !endpoints.is_empty() {
                r.mirrors.insert(registry, endpoints);
            }
        }
        Ok(r)
    }

    /// The file these came from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Registries spoken to in plain HTTP: `insecure = true` ones and `http://` mirrors.
    pub fn insecure(&self) -> &[String] {
        &self.insecure
    }

    /// Whether `host` itself may never be contacted.
    pub fn is_blocked(&self, host: &str) -> bool {
        self.blocked.iter().any(|b| *b == canonical_host(host))
    }

    /// Where to fetch what lives on `host`, in order: its mirrors, then itself unless blocked.
    pub fn endpoints(&self, host: &str) -> Vec<Endpoint> {
        let host = canonical_host(host);
        let mut out = self.mirrors.get(&host).cloned().unwrap_or_default();
        if !self.is_blocked(&host) {
            out.push(Endpoint { host, prefix: String::new(), mirror: false });
        }
        out
    }
}

/// Docker Hub has several names; the config may use any of them.
fn canonical_host(host: &str) -> String {
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

/// The toml crate's error as one line (the store's `rbuild.toml` reports its errors the same
/// way).
pub use cache::config::toml_message;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Registries, ConfigError> {
        Registries::parse(text, Path::new("/etc/rbuild/config.toml"))
    }

    #[test]
    fn mirrors_then_the_registry_unless_blocked() {
        let r = parse(
            r#"
[registries."docker.io"]
mirrors = ["http://127.0.0.1:5000", "https://mirror.example/proxy/"]

[registries."index.docker.io"]
blocked = true

[registries."reg.lan:5001"]
insecure = true
"#,
        )
        .unwrap();
        let mirror =
            |host: &str, prefix: &str| Endpoint { host: host.into(), prefix: prefix.into(), mirror: true };
        assert_eq!(
            r.endpoints("docker.io"),
            [mirror("127.0.0.1:5000", ""), mirror("mirror.example", "proxy")]
        );
        assert!(r.is_blocked("docker.io") && r.is_blocked("registry-1.docker.io"));
        assert_eq!(r.insecure(), ["127.0.0.1:5000", "reg.lan:5001"]);
        assert_eq!(
            r.endpoints("quay.io"),
            [Endpoint { host: "quay.io".into(), prefix: String::new(), mirror: false }]
        );
    }

    #[test]
    fn mistakes_are_located() {
        let e = parse("[registries.\"docker.io\"]\nmirors = [\"x\"]\n").unwrap_err().to_string();
        assert!(
            e.starts_with("config file /etc/rbuild/config.toml: line 2, column 1: unknown field `mirors`"),
            "{e}"
        );
        let e = parse("[registry]\n").unwrap_err().to_string();
        assert!(e.contains("line 1, column 2: unknown field `registry`"), "{e}");
        let e = parse("[registries.\"docker.io\"]\nmirrors = [\"ftp://m\"]\n").unwrap_err().to_string();
        assert_eq!(
            e,
            "config file /etc/rbuild/config.toml: mirror \"ftp://m\" of docker.io: the scheme must be http:// or \
             https://"
        );
        assert!(parse("mirrors = 1").is_err());
    }
}
