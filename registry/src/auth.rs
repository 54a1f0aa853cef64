//! Credentials (rbuild's own login file and Docker's `config.json`) and the registry auth
//! handshake's pieces: `WWW-Authenticate` challenges and basic-auth headers.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::error::{Error, Result};

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login").field("username", &self.username).finish_non_exhaustive()
    }
}

impl Login {
    /// The value of an `Authorization: Basic ...` header.
    pub(crate) fn basic_header(&self) -> String {
        format!("Basic {}", B64.encode(format!("{}:{}", self.username, self.password)))
    }
}

/// Where credentials are looked up, in order, and where `rbuild login` writes them.
///
/// Both files have Docker's `config.json` shape: `{"auths": {"HOST": {"auth":
/// base64("user:password")}}}`. rbuild writes only its own file (`auth`), never Docker's;
/// Docker's credential helpers (`credsStore`, `credHelpers`) are not consulted.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// rbuild's own file: read first, and the one [`Credentials::save`] writes.
    pub auth: Option<PathBuf>,
    /// Further files in Docker's format, read after `auth` (normally `~/.docker/config.json`).
    pub docker: Vec<PathBuf>,
    /// Logins given with a request (`host`, login), consulted before any file: the Engine
    /// API's `X-Registry-Auth`, which a client sends with each pull or push.
    pub given: Vec<(String, Login)>,
}

impl Credentials {
    /// The usual places: `$XDG_CONFIG_HOME/rbuild/auth.json` (or `~/.config/rbuild/auth.json`),
    /// then `$DOCKER_CONFIG/config.json` (or `~/.docker/config.json`).
    pub fn from_env() -> Credentials {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let home = env("HOME");
        let auth = env("XDG_CONFIG_HOME")
            .or_else(|| home.as_ref().map(|h| h.join(".config")))
            .map(|d| d.join("rbuild/auth.json"));
        let docker = env("DOCKER_CONFIG")
            .or_else(|| home.as_ref().map(|h| h.join(".docker")))
            .map(|d| d.join("config.json"));
        Credentials { auth, docker: docker.into_iter().collect(), given: Vec::new() }
    }

    /// No credentials at all (anonymous access only; `save` fails).
    pub fn none() -> Credentials {
        Credentials::default()
    }

    /// Only rbuild's own file at `path` (tests, or `--authfile`).
    pub fn file(path: impl Into<PathBuf>) -> Credentials {
        Credentials { auth: Some(path.into()), docker: Vec::new(), given: Vec::new() }
    }

    /// The login for registry `host` (as in image references: `127.0.0.1:5000`, `docker.io`),
    /// from the first file that has one.
    pub fn lookup(&self, host: &str) -> Result<Option<Login>> {
        if let Some((_, login)) = self.given.iter().find(|(key, _)| same_registry(key, host)) {
            return Ok(Some(login.clone()));
        }
        for path in self.auth.iter().chain(&self.docker) {
            let Some(file) = read_config(path)? else { continue };
            let Some(auths) = file.get("auths").and_then(|a| a.as_object()) else { continue };
            for (key, entry) in auths {
                if !same_registry(key, host) {
                    continue;
                }
                let Some(encoded) = entry.get("auth").and_then(|a| a.as_str()).filter(|a| !a.is_empty())
                else {
                    continue;
                };
                let bad = |reason: &str| Error::Credentials {
                    path: path.clone(),
                    reason: format!("the auth of {key} {reason}"),
                };
                let decoded = B64.decode(encoded.trim()).map_err(|_| bad("is not base64"))?;
                let text = String::from_utf8(decoded).map_err(|_| bad("is not UTF-8"))?;
                let (user, password) = text.split_once(':').ok_or_else(|| bad("is not user:password"))?;
                return Ok(Some(Login { username: user.to_string(), password: password.to_string() }));
            }
        }
        Ok(None)
    }

    /// Stores `login` for `host` in rbuild's own file (created 0600, written atomically; other
    /// entries and keys are kept).
    pub fn save(&self, host: &str, login: &Login) -> Result<()> {
        let encoded = B64.encode(format!("{}:{}", login.username, login.password));
        self.update(|auths| {
            auths.insert(host.to_string(), serde_json::json!({ "auth": encoded }));
        })
    }

    /// Removes the login for `host` from rbuild's own file; says whether there was one.
    pub fn remove(&self, host: &str) -> Result<bool> {
        let mut removed = false;
        self.update(|auths| {
            let keys: Vec<String> = auths.keys().filter(|k| same_registry(k, host)).cloned().collect();
            for k in keys {
                auths.remove(&k);
                removed = true;
            }
        })?;
        Ok(removed)
    }

    fn update(&self, change: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> Result<()> {
        let path = self.auth.clone().ok_or_else(|| Error::Credentials {
            path: PathBuf::from("(none)"),
            reason: "no credentials file is configured (is $HOME set?)".to_string(),
        })?;
        let err = |reason: String| Error::Credentials { path: path.clone(), reason };
        let mut root = read_config(&path)?.unwrap_or_default();
        let auths = root.entry("auths").or_insert_with(|| serde_json::json!({}));
        let auths = auths.as_object_mut().ok_or_else(|| err("`auths` is not an object".to_string()))?;
        change(auths);
        let dir = path.parent().unwrap_or(Path::new("."));
        if !dir.as_os_str().is_empty() && !dir.exists() {
            fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        }
        let tmp = dir.join(format!(".auth.json.{}.tmp", std::process::id()));
        let text = serde_json::to_vec_pretty(&serde_json::Value::Object(root)).expect("JSON serializes");
        let write = || -> io::Result<()> {
            let mut f =
                fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(&text)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            err(e.to_string())
        })
    }
}

/// The top-level object of a config file, or None when the file does not exist.
fn read_config(path: &Path) -> Result<Option<serde_json::Map<String, serde_json::Value>>> {
    let err = |reason: String| Error::Credentials { path: path.to_path_buf(), reason };
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(Default::default()));
    }
    match serde_json::from_slice(&bytes) {
        Ok(serde_json::Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(err("not a JSON object".to_string())),
        Err(e) => Err(err(e.to_string())),
    }
}

/// Whether a config key (`host`, `https://host/v1/`, ...) names registry `host`. Docker Hub
/// answers to several names.
fn same_registry(key: &str, host: &str) -> bool {
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let key = key.split('/').next().unwrap_or(key);
    let hub = |h: &str| matches!(h, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    key == host || hub(key) && hub(host)
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// Parses `WWW-Authenticate: Bearer realm="...",service="...",scope="..."` or `Basic
/// realm="..."`. Unknown schemes give None.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        _ => None,
    }
}

/// `k="v", k2=v2` (quoted values may hold commas and `\"`).
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_challenges_parse() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="rbuild-test""#), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn credentials_round_trip_and_docker_keys_match() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("rbuild/auth.json");
        let docker = dir.path().join("config.json");
        fs::write(
            &docker,
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}}}},"credsStore":"x"}}"#,
                B64.encode("hub:pw")
            ),
        )
        .unwrap();
        let creds = Credentials { auth: Some(own.clone()), docker: vec![docker], given: Vec::new() };
        assert_eq!(creds.lookup("docker.io").unwrap().unwrap().username, "hub");
        assert!(creds.lookup("127.0.0.1:5000").unwrap().is_none());
        let login = Login { username: "u".into(), password: "p:w".into() };
        creds.save("127.0.0.1:5000", &login).unwrap();
        assert_eq!(fs::metadata(&own).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(creds.lookup("127.0.0.1:5000").unwrap(), Some(login));
        assert!(creds.remove("127.0.0.1:5000").unwrap());
        assert!(creds.lookup("127.0.0.1:5000").unwrap().is_none());
    }

    #[test]
    fn a_login_given_with_a_request_comes_before_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("config.json");
        fs::write(
            &docker,
            format!(r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{}"}}}}}}"#, B64.encode("file:pw")),
        )
        .unwrap();
        let given = Login { username: "request".into(), password: "pw".into() };
        let creds = Credentials {
            auth: None,
            docker: vec![docker],
            given: vec![("http://127.0.0.1:5000/v2/".into(), given.clone())],
        };
        assert_eq!(creds.lookup("127.0.0.1:5000").unwrap(), Some(given));
        assert!(creds.lookup("docker.io").unwrap().is_none());
    }
}
