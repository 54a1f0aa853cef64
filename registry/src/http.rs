//! The HTTP side: one `reqwest` blocking client, plain HTTP or HTTPS per registry, the auth
//! handshake (basic or bearer tokens per scope, learnt from `WWW-Authenticate` on a 401),
//! retries with backoff on connection failures and 5xx, and the mapping of failures to one-line
//! errors.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::io::{self, Read};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};

use crate::auth::{Challenge, Credentials, Login, parse_challenge};
use crate::error::{Error, Result};

/// How many times a request is sent before a connection failure or 5xx is final.
pub(crate) const TRIES: u32 = 3;

/// Waits before try `attempt + 1`: 250 ms, 500 ms, ...
pub(crate) fn backoff(attempt: u32) {
    std::thread::sleep(Duration::from_millis(250 << (attempt - 1).min(5)));
}

/// What we have learnt about authenticating to one registry.
#[derive(Default)]
struct HostAuth {
    /// `Basic ...` when the registry asked for basic auth.
    basic: Option<String>,
    /// `Bearer ...` per scope set (the scopes joined by spaces).
    tokens: HashMap<String, String>,
}

pub(crate) struct Transport {
    http: Client,
    insecure: Vec<String>,
    pub(crate) credentials: Credentials,
    auth: Mutex<HashMap<String, HostAuth>>,
}

impl Transport {
    pub(crate) fn new(insecure: Vec<String>, credentials: Credentials, jobs: usize) -> Result<Transport> {
        let http = Client::builder()
            .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            // For the blocking client this bounds sending a request (body included) until its
            // response head, and each read of a response body; uploads set their own.
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(jobs.max(1))
            .build()
            .map_err(|e| Error::Client(describe(&e)))?;
        Ok(Transport { http, insecure, credentials, auth: Mutex::new(HashMap::new()) })
    }

    /// Whether `host` (`name[:port]`) is spoken to in plain HTTP: loopback, or listed as an
    /// insecure registry (with or without its port).
    pub(crate) fn is_plain_http(&self, host: &str) -> bool {
        let name = match host.rsplit_once(':') {
            Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !n.ends_with(':') => n,
            _ => host,
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        name == "localhost"
            || name.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
            || self.insecure.iter().any(|i| i == host || i == name)
    }

    /// `http(s)://HOST` for the registry API of `host` (Docker Hub's API lives elsewhere).
    pub(crate) fn base_url(&self, host: &str) -> String {
        let api = if host == "docker.io" { "registry-1.docker.io" } else { host };
        let scheme = if self.is_plain_http(host) { "http" } else { "https" };
        format!("{scheme}://{api}")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HostAuth>> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn authorization(&self, host: &str, scope_key: &str) -> Option<String> {
        let map = self.lock();
        let h = map.get(host)?;
        h.tokens.get(scope_key).or(h.basic.as_ref()).cloned()
    }

    /// Sends the request `build` makes (again for each try, so bodies can be re-read) to
    /// registry `host` with the authorization for `scopes`, authenticating once on a 401 and
    /// retrying connection failures and 5xx up to `tries` times. Returns the response whatever
    /// its status, except that failing to connect is [`Error::Unreachable`].
    pub(crate) fn send(
        &self,
        host: &str,
        scopes: &[String],
        tries: u32,
        build: &dyn Fn(&Client) -> Result<RequestBuilder>,
    ) -> Result<Response> {
        let key = scopes.join(" ");
        let mut authenticated = false;
        let mut attempt = 1;
        loop {
            let mut req = build(&self.http)?;
            if let Some(a) = self.authorization(host, &key) {
                req = req.header(AUTHORIZATION, a);
            }
            match req.send() {
                Err(e) => {
                    if attempt < tries && is_transient(&e) {
                        backoff(attempt);
                        attempt += 1;
                        continue;
                    }
                    return Err(Error::Unreachable { host: host.to_string(), reason: describe(&e) });
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !authenticated => {
                    authenticated = true;
                    if self.authenticate(host, scopes, &resp, None)? {
                        continue;
                    }
                    return Ok(resp);
                }
                Ok(resp) if is_retryable_status(resp.status()) && attempt < tries => {
                    backoff(attempt);
                    attempt += 1;
                }
                Ok(resp) => return Ok(resp),
            }
        }
    }

    /// Answers the challenge of a 401: basic credentials, or a bearer token for `scopes` from
    /// the challenge's realm. Says whether there is something new to try the request with.
    fn authenticate(
        &self,
        host: &str,
        scopes: &[String],
        resp: &Response,
        login: Option<&Login>,
    ) -> Result<bool> {
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(parse_challenge)
            .collect();
        let challenge = challenges
            .iter()
            .find(|c| matches!(c, Challenge::Bearer { .. }))
            .or_else(|| challenges.first())
            .cloned();
        let stored;
        let login = match login {
            Some(l) => Some(l),
            None => {
                stored = self.credentials.lookup(host)?;
                stored.as_ref()
            }
        };
        match challenge {
            Some(Challenge::Basic) => {
                let Some(login) = login else { return Ok(false) };
                self.lock().entry(host.to_string()).or_default().basic = Some(login.basic_header());
                Ok(true)
            }
            Some(Challenge::Bearer { realm, service, .. }) => {
                let token = self.fetch_token(host, &realm, service.as_deref(), scopes, login)?;
                self.lock().entry(host.to_string()).or_default().tokens.insert(scopes.join(" "), token);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// GETs a bearer token from `realm` (with basic credentials if we have them) and returns
    /// the `Authorization` header value.
    fn fetch_token(
        &self,
        host: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        login: Option<&Login>,
    ) -> Result<String> {
        let mut url = reqwest::Url::parse(realm).map_err(|e| Error::Status {
            host: host.to_string(),
            action: format!("token realm {realm:?}"),
            status: 401,
            detail: format!(": {e}"),
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
            if let Some(l) = login {
                q.append_pair("account", &l.username);
            }
        }
        let realm_host = url.host_str().unwrap_or(host).to_string();
        let realm_host = match url.port() {
            Some(p) => format!("{realm_host}:{p}"),
            None => realm_host,
        };
        let mut attempt = 1;
        let resp = loop {
            let mut req = self.http.get(url.clone());
            if let Some(l) = login {
                req = req.header(AUTHORIZATION, l.basic_header());
            }
            match req.send() {
                Err(e) if attempt < TRIES && is_transient(&e) => {}
                Err(e) => return Err(Error::Unreachable { host: realm_host, reason: describe(&e) }),
                Ok(r) if is_retryable_status(r.status()) && attempt < TRIES => {}
                Ok(r) => break r,
            }
            backoff(attempt);
            attempt += 1;
        };
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Error::Unauthorized {
                host: host.to_string(),
                action: format!("getting a token from {realm_host}"),
                reason: match login {
                    Some(l) => format!("the registry refused user '{}'", l.username),
                    None => "authentication required".to_string(),
                },
            });
        }
        if !status.is_success() {
            return Err(status_error(host, format!("getting a token from {realm}"), resp, attempt));
        }
        let body = read_limited(resp, 1 << 20).map_err(|e| Error::Unreachable {
            host: realm_host.clone(),
            reason: format!("reading the token: {e}"),
        })?;
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token = serde_json::from_slice(&body).map_err(|e| Error::Status {
            host: host.to_string(),
            action: format!("token from {realm}"),
            status: status.as_u16(),
            detail: format!(": not a token response: {e}"),
        })?;
        let token = t.token.or(t.access_token).filter(|t| !t.is_empty()).ok_or_else(|| Error::Status {
            host: host.to_string(),
            action: format!("token from {realm}"),
            status: status.as_u16(),
            detail: ": the response has no token".to_string(),
        })?;
        Ok(format!("Bearer {token}"))
    }

    /// Checks `login` against registry `host`: `GET /v2/` and whatever auth it asks for.
    pub(crate) fn verify_login(&self, host: &str, login: &Login) -> Result<()> {
        let url = format!("{}/v2/", self.base_url(host));
        let get = |auth: Option<String>| {
            self.send_plain(host, &|c| {
                let r = c.get(&url);
                Ok(match &auth {
                    Some(a) => r.header(AUTHORIZATION, a),
                    None => r,
                })
            })
        };
        let resp = get(None)?;
        if resp.status().is_success() {
            return Ok(());
        }
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Err(status_error(host, "GET /v2/".to_string(), resp, TRIES));
        }
        // Forget what we knew: the new credentials replace the old ones.
        self.lock().remove(host);
        let refused = || Error::Unauthorized {
            host: host.to_string(),
            action: format!("logging in to {host}"),
            reason: format!("the registry refused user '{}'", login.username),
        };
        if !self.authenticate(host, &[], &resp, Some(login))? {
            return Err(refused());
        }
        let resp = get(self.authorization(host, ""))?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(refused()),
            _ => Err(status_error(host, "GET /v2/".to_string(), resp, TRIES)),
        }
    }

    /// `send` without any authorization handling.
    fn send_plain(&self, host: &str, build: &dyn Fn(&Client) -> Result<RequestBuilder>) -> Result<Response> {
        let mut attempt = 1;
        loop {
            match build(&self.http)?.send() {
                Err(e) if attempt < TRIES && is_transient(&e) => {}
                Err(e) => return Err(Error::Unreachable { host: host.to_string(), reason: describe(&e) }),
                Ok(r) if is_retryable_status(r.status()) && attempt < TRIES => {}
                Ok(r) => return Ok(r),
            }
            backoff(attempt);
            attempt += 1;
        }
    }

    /// The login stored for `host`, if any (for error messages).
    pub(crate) fn username(&self, host: &str) -> Option<String> {
        self.credentials.lookup(host).ok().flatten().map(|l| l.username)
    }
}

pub(crate) fn is_retryable_status(s: StatusCode) -> bool {
    s.is_server_error() && s != StatusCode::NOT_IMPLEMENTED || s == StatusCode::TOO_MANY_REQUESTS
}

/// Connection refused/reset/aborted, timeouts, a connection closed early: worth another try.
pub(crate) fn is_transient(e: &reqwest::Error) -> bool {
    if e.is_connect() || e.is_timeout() {
        return true;
    }
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return is_transient_io(io);
        }
        cur = err.source();
    }
    // hyper's "connection closed before message completed" and friends.
    e.is_request() || e.is_body()
}

pub(crate) fn is_transient_io(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::TimedOut
            | io::ErrorKind::Interrupted
    )
}

/// One short phrase for a transport failure: "connection refused", "timed out", or the
/// innermost cause's own words.
pub(crate) fn describe(e: &(dyn StdError + 'static)) -> String {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    let mut last = e.to_string();
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionRefused => return "connection refused".to_string(),
                io::ErrorKind::ConnectionReset => return "connection reset by peer".to_string(),
                io::ErrorKind::TimedOut => return "timed out".to_string(),
                _ => {}
            }
        }
        last = err.to_string();
        cur = err.source();
    }
    if let Some(r) = e.downcast_ref::<reqwest::Error>()
        && r.is_timeout()
    {
        return "timed out".to_string();
    }
    last
}

/// Reads at most `limit` bytes of a response body.
pub(crate) fn read_limited(resp: Response, limit: u64) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    resp.take(limit).read_to_end(&mut body)?;
    Ok(body)
}

/// `": MESSAGE"` from a registry's error body (`{"errors":[{"code":..,"message":..}]}`), or
/// the start of a plain-text body, or nothing.
pub(crate) fn error_detail(resp: Response) -> String {
    let Ok(body) = read_limited(resp, 64 << 10) else { return String::new() };
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(&body)
        && let Some(first) = e.errors.first()
    {
        let msg = if first.message.is_empty() { first.code.to_lowercase() } else { first.message.clone() };
        return format!(": {msg}");
    }
    let text = String::from_utf8_lossy(&body);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    if line.is_empty() || line.starts_with('<') {
        String::new()
    } else {
        format!(": {}", line.chars().take(200).collect::<String>())
    }
}

/// The error for a response whose status the caller did not expect.
pub(crate) fn status_error(host: &str, action: String, resp: Response, tries: u32) -> Error {
    let status = resp.status();
    let detail = error_detail(resp);
    let code = status.as_u16();
    if is_retryable_status(status) {
        Error::Server { host: host.to_string(), action, status: code, detail, tries }
    } else {
        let reason = status.canonical_reason().unwrap_or("");
        Error::Status {
            host: host.to_string(),
            action,
            status: code,
            detail: if detail.is_empty() && !reason.is_empty() { format!(" {reason}") } else { detail },
        }
    }
}

/// The error for a 401/403 that authentication could not get past.
pub(crate) fn unauthorized(t: &Transport, host: &str, action: String, resp: Response) -> Error {
    let detail = error_detail(resp);
    let reason = match t.username(host) {
        Some(user) => format!("the registry refused user '{user}'"),
        None => detail.trim_start_matches(": ").to_string(),
    };
    let reason = if reason.is_empty() { "authentication required".to_string() } else { reason };
    Error::Unauthorized { host: host.to_string(), action, reason }
}
