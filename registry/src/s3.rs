//! A small S3 client for build caches kept in a bucket (BuildKit's `--cache-to type=s3`):
//! HEAD, GET, PUT of objects and creating the bucket, signed with AWS Signature Version 4 and
//! sent over the same blocking reqwest client as the registry traffic.
//!
//! ```no_run
//! # fn main() -> Result<(), registry::Error> {
//! use registry::s3::{S3, S3Options};
//! let s3 = S3::new(S3Options { bucket: "cache".into(), prefix: "app/".into(), ..Default::default() })?;
//! s3.put_bytes("index.json", b"{}")?;
//! assert_eq!(s3.head("index.json")?, Some(2));
//! # Ok(()) }
//! ```
//!
//! Credentials and region are resolved the way the AWS CLI does for the common cases
//! (explicit, environment, `~/.aws/credentials` and `~/.aws/config`); instance roles, SSO and
//! `credential_process` are not consulted.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use reqwest::blocking::{Body, Client, RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::http::{TRIES, backoff, describe, is_retryable_status, is_transient, read_limited};

/// The errors of this module are [`crate::Error`]'s: `Unreachable`, `S3`, `NoAwsCredentials`,
/// `S3Config`, `Credentials` (an unreadable `~/.aws/credentials`) and `Store` (a file to upload
/// that cannot be read).
pub type S3Error = Error;

/// The SHA-256 of an empty payload, as SigV4 wants it.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Where the objects live and who we are. The field names follow BuildKit's `type=s3` options.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// The bucket (BuildKit's `bucket=`).
    pub bucket: String,
    /// Else `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region` in `~/.aws/config`
    /// (`AWS_CONFIG_FILE`), else `us-east-1`.
    pub region: Option<String>,
    /// `http://127.0.0.1:9000`, `https://minio.lan`; else `https://s3.<region>.amazonaws.com`.
    /// Plain HTTP only when this says `http://`.
    pub endpoint_url: Option<String>,
    /// Put in front of every key as it is (BuildKit's `prefix=`, e.g. `cache/`).
    pub prefix: String,
    /// `ENDPOINT/BUCKET/KEY` rather than `BUCKET.ENDPOINT/KEY` (needed by most S3-compatible
    /// servers on an IP address).
    pub use_path_style: bool,
    /// Explicit credentials (BuildKit's `access_key_id=`, `secret_access_key=`,
    /// `session_token=`); else the environment, else the shared credentials file.
    pub access_key_id: Option<String>,
    /// The secret of `access_key_id`.
    pub secret_access_key: Option<String>,
    /// For temporary credentials (sent as `x-amz-security-token`).
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Options {
    /// Everything but the secret key and the session token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("prefix", &self.prefix)
            .field("use_path_style", &self.use_path_style)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// An access key (and, for temporary credentials, its session token).
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    /// `AKIA...` (or `ASIA...` for temporary credentials).
    pub access_key_id: String,
    /// The key's secret, which signs requests and is never sent.
    pub secret_access_key: String,
    /// The session token of temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    /// The key id only: secrets stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// Looks up an environment variable (`|k| std::env::var(k).ok()` for the real one).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The credentials for `options`: the explicit ones, else `AWS_ACCESS_KEY_ID` /
/// `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, else profile `AWS_PROFILE` (or `default`) of
/// the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE` or `$HOME/.aws/credentials`).
/// `env` is the environment to read, so that this can be tested without touching the process's.
pub fn resolve_credentials(options: &S3Options, env: EnvLookup) -> Result<AwsCredentials> {
    let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let pair = |id: Option<String>, secret: Option<String>, token: Option<String>, from: &str| match (
        non_empty(id),
        non_empty(secret),
    ) {
        (Some(access_key_id), Some(secret_access_key)) => {
            Ok(Some(AwsCredentials { access_key_id, secret_access_key, session_token: non_empty(token) }))
        }
        (None, None) => Ok(None),
        (Some(_), None) => {
            Err(Error::S3Config(format!("{from} gives an access key id but no secret access key")))
        }
        (None, Some(_)) => {
            Err(Error::S3Config(format!("{from} gives a secret access key but no access key id")))
        }
    };
    let explicit = pair(
        options.access_key_id.clone(),
        options.secret_access_key.clone(),
        options.session_token.clone(),
        "the S3 options",
    )?;
    if let Some(c) = explicit {
        return Ok(c);
    }
    let from_env = pair(
        env("AWS_ACCESS_KEY_ID"),
        env("AWS_SECRET_ACCESS_KEY"),
        env("AWS_SESSION_TOKEN"),
        "the environment",
    )?;
    if let Some(c) = from_env {
        return Ok(c);
    }
    let path = match non_empty(env("AWS_SHARED_CREDENTIALS_FILE")) {
        Some(p) => PathBuf::from(p),
        None => match non_empty(env("HOME")) {
            Some(home) => Path::new(&home).join(".aws/credentials"),
            None => return Err(Error::NoAwsCredentials),
        },
    };
    let profile = non_empty(env("AWS_PROFILE")).unwrap_or_else(|| "default".to_string());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::NoAwsCredentials),
        Err(e) => return Err(Error::Credentials { path, reason: e.to_string() }),
    };
    let section = ini_section(&text, &profile);
    let get = |k: &str| section.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let from = format!("profile '{profile}' of {}", path.display());
    pair(get("aws_access_key_id"), get("aws_secret_access_key"), get("aws_session_token"), &from)?
        .ok_or(Error::NoAwsCredentials)
}

/// The region for `options`: its own, else `AWS_REGION`, `AWS_DEFAULT_REGION`, the `region` of
/// profile `AWS_PROFILE` (or `default`) in `AWS_CONFIG_FILE` (or `$HOME/.aws/config`, where a
/// profile's section is `[profile NAME]`, the default's `[default]`), else `us-east-1`.
pub fn resolve_region(options: &S3Options, env: EnvLookup) -> String {
    let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    if let Some(r) = non_empty(options.region.clone())
        .or_else(|| non_empty(env("AWS_REGION")))
        .or_else(|| non_empty(env("AWS_DEFAULT_REGION")))
    {
        return r;
    }
    let path = non_empty(env("AWS_CONFIG_FILE"))
        .map(PathBuf::from)
        .or_else(|| non_empty(env("HOME")).map(|h| Path::new(&h).join(".aws/config")));
    let profile = non_empty(env("AWS_PROFILE")).unwrap_or_else(|| "default".to_string());
    let section = if profile == "default" { profile } else { format!("profile {profile}") };
    path.and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| {
            ini_section(&text, &section).into_iter().find(|(k, _)| k == "region").map(|(_, v)| v)
        })
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "us-east-1".to_string())
}

/// The `key = value` lines of section `[name]` of an AWS-style INI file (keys lowercased;
/// comments and lines of other sections skipped).
fn ini_section(text: &str, name: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = header.split_whitespace().collect::<Vec<_>>().join(" ") == name;
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    out
}

/// A client for one bucket (and prefix). Cheap to share between threads.
pub struct S3 {
    http: Client,
    bucket: String,
    prefix: String,
    region: String,
    credentials: AwsCredentials,
    /// `scheme://host[:port]` the requests go to (the bucket's own host when virtual-hosted).
    origin: String,
    /// `origin` as given or defaulted, for messages about reaching it.
    endpoint: String,
    /// The `Host` header: the origin's host, with its port unless the scheme's default.
    host: String,
    path_style: bool,
}

impl std::fmt::Debug for S3 {
    /// Where it points, not the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3")
            .field("location", &self.describe())
            .field("origin", &self.origin)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl S3 {
    /// A client with the credentials and region resolved from the process's environment
    /// ([`resolve_credentials`], [`resolve_region`]). No request is made.
    pub fn new(options: S3Options) -> Result<S3> {
        S3::with_env(options, &|k| std::env::var(k).ok())
    }

    /// [`S3::new`] with the environment read through `env`.
    pub fn with_env(options: S3Options, env: EnvLookup) -> Result<S3> {
        if options.bucket.is_empty() || options.bucket.contains('/') {
            return Err(Error::S3Config(format!("bad bucket name {:?}", options.bucket)));
        }
        let credentials = resolve_credentials(&options, env)?;
        let region = resolve_region(&options, env);
        let endpoint = match &options.endpoint_url {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => format!("https://s3.{region}.amazonaws.com"),
        };
        let url = reqwest::Url::parse(&endpoint)
            .map_err(|e| Error::S3Config(format!("endpoint URL {endpoint:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.path() != "/" || url.query().is_some() {
            return Err(Error::S3Config(format!(
                "endpoint URL {endpoint:?}: want http://HOST[:PORT] or https://HOST[:PORT], without a path"
            )));
        }
        let Some(name) = url.host_str() else {
            return Err(Error::S3Config(format!("endpoint URL {endpoint:?} has no host")));
        };
        if !options.use_path_style && name.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok() {
            return Err(Error::S3Config(format!(
                "endpoint URL {endpoint:?} is an IP address: a bucket cannot be its subdomain, use path style"
            )));
        }
        let name =
            if options.use_path_style { name.to_string() } else { format!("{}.{name}", options.bucket) };
        let host = match url.port() {
            Some(p) => format!("{name}:{p}"),
            None => name,
        };
        let http = Client::builder()
            .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(120))
            .https_only(url.scheme() == "https")
            .build()
            .map_err(|e| Error::Client(describe(&e)))?;
        Ok(S3 {
            http,
            origin: format!("{}://{host}", url.scheme()),
            endpoint,
            host,
            bucket: options.bucket,
            prefix: options.prefix,
            region,
            credentials,
            path_style: options.use_path_style,
        })
    }

    /// `s3://BUCKET/PREFIX`, for messages.
    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The size of object `key` (under the prefix), or None if there is no such object. (A HEAD
    /// answer has no body: a missing bucket is None too.)
    pub fn head(&self, key: &str) -> Result<Option<u64>> {
        let resp = self.send("HEAD", key, EMPTY_SHA256, &|r| Ok(r))?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let len = resp
                    .headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                match len {
                    Some(n) => Ok(Some(n)),
                    None => Err(self.error(key, resp, 1, "HEAD answered without a Content-Length")),
                }
            }
            _ => Err(self.error(key, resp, TRIES, "")),
        }
    }

    /// A reader of object `key`'s content, streamed from the connection, or None if there is no
    /// such object (`NoSuchKey`; a missing bucket is an error).
    pub fn get(&self, key: &str) -> Result<Option<Box<dyn Read + Send>>> {
        let resp = self.send("GET", key, EMPTY_SHA256, &|r| Ok(r))?;
        if resp.status().is_success() {
            return Ok(Some(Box::new(resp)));
        }
        let status = resp.status();
        let err = self.error(key, resp, TRIES, "");
        match err {
            Error::S3 { ref code, .. } if status == StatusCode::NOT_FOUND && code == "NoSuchKey" => Ok(None),
            e => Err(e),
        }
    }

    /// Uploads `data` as object `key`.
    pub fn put_bytes(&self, key: &str, data: &[u8]) -> Result<()> {
        let hash = hex(&Sha256::digest(data));
        let resp = self.send("PUT", key, &hash, &|r| Ok(r.body(data.to_vec())))?;
        self.expect_success(key, resp)
    }

    /// Uploads file `path` as object `key`, streaming it from disk. `sha256_hex` is the file's
    /// SHA-256 if the caller knows it (a blob's digest); else it is computed in a first pass
    /// over the file, since SigV4 signs the payload's hash.
    pub fn put_file(&self, key: &str, path: &Path, sha256_hex: Option<&str>) -> Result<()> {
        let io_err = |e: io::Error| Error::Store(cache::Error::Io { path: path.to_path_buf(), source: e });
        let hash = match sha256_hex {
            Some(h) => h.to_ascii_lowercase(),
            None => {
                let mut hasher = Sha256::new();
                io::copy(&mut File::open(path).map_err(io_err)?, &mut hasher).map_err(io_err)?;
                hex(&hasher.finalize())
            }
        };
        let resp = self.send("PUT", key, &hash, &|r| {
            let f = File::open(path).map_err(io_err)?;
            let len = f.metadata().map_err(io_err)?.len();
            Ok(r.timeout(upload_timeout(len)).body(Body::sized(f, len)))
        })?;
        self.expect_success(key, resp)
    }

    /// Creates the bucket (in the client's region); one that already exists and is ours is
    /// fine.
    pub fn create_bucket(&self) -> Result<()> {
        let body = if self.region == "us-east-1" {
            Vec::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            )
            .into_bytes()
        };
        let hash = hex(&Sha256::digest(&body));
        let resp = self.send_to("PUT", &self.bucket_path(), &hash, &|r| Ok(r.body(body.clone())))?;
        if resp.status().is_success() {
            return Ok(());
        }
        match self.error("", resp, TRIES, "") {
            Error::S3 { code, .. } if code == "BucketAlreadyOwnedByYou" => Ok(()),
            e => Err(e),
        }
    }

    fn expect_success(&self, key: &str, resp: Response) -> Result<()> {
        if resp.status().is_success() { Ok(()) } else { Err(self.error(key, resp, TRIES, "")) }
    }

    /// `/BUCKET` in path style, else empty (the bucket is in the host).
    fn bucket_path(&self) -> String {
        if self.path_style { format!("/{}", uri_encode(&self.bucket)) } else { String::new() }
    }

    /// Sends `method` for object `key` (under the prefix), see [`S3::send_to`].
    fn send(
        &self,
        method: &str,
        key: &str,
        payload_hash: &str,
        finish: &dyn Fn(RequestBuilder) -> Result<RequestBuilder>,
    ) -> Result<Response> {
        let path = format!("{}/{}", self.bucket_path(), uri_encode(&format!("{}{key}", self.prefix)));
        self.send_to(method, &path, payload_hash, finish)
    }

    /// Signs and sends `method` on the already-encoded `path`, with the body and options
    /// `finish` adds (called again for each try). Connection failures and 5xx are tried up to
    /// [`TRIES`] times; the response comes back whatever its status.
    fn send_to(
        &self,
        method: &str,
        path: &str,
        payload_hash: &str,
        finish: &dyn Fn(RequestBuilder) -> Result<RequestBuilder>,
    ) -> Result<Response> {
        let path = if path.is_empty() { "/" } else { path };
        let url = format!("{}{path}", self.origin);
        let verb =
            reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| Error::Client(e.to_string()))?;
        let mut attempt = 1;
        loop {
            let request = Request {
                method,
                host: &self.host,
                path,
                headers: &[],
                payload_hash,
                amz_date: &amz_date(SystemTime::now()),
            };
            let mut builder = self.http.request(verb.clone(), &url);
            for (name, value) in request.signed_headers(&self.credentials) {
                if name != "host" {
                    builder = builder.header(name, value);
                }
            }
            builder = builder.header(AUTHORIZATION, request.authorization(&self.credentials, &self.region));
            match finish(builder)?.send() {
                Err(e) if attempt < TRIES && is_transient(&e) => {}
                Err(e) => {
                    return Err(Error::Unreachable { host: self.endpoint.clone(), reason: describe(&e) });
                }
                Ok(r) if is_retryable_status(r.status()) && attempt < TRIES => {}
                Ok(r) => return Ok(r),
            }
            backoff(attempt);
            attempt += 1;
        }
    }

    /// The error for an unexpected answer about `key` ("" = the bucket): S3's `<Code>` and
    /// `<Message>`, else the HTTP status (and `fallback`). A 5xx says how often it was tried.
    fn error(&self, key: &str, resp: Response, tries: u32, fallback: &str) -> Error {
        let status = resp.status();
        let location = if key.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}{key}", self.bucket, self.prefix)
        };
        let body = read_limited(resp, 64 << 10).unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        let (code, mut message) = match (xml_element(&body, "Code"), xml_element(&body, "Message")) {
            (Some(code), message) => (code, message.unwrap_or_default()),
            (None, _) => (
                format!("HTTP {}", status.as_u16()),
                if fallback.is_empty() {
                    status.canonical_reason().unwrap_or("").to_string()
                } else {
                    fallback.to_string()
                },
            ),
        };
        if is_retryable_status(status) {
            message.push_str(&format!(" (after {tries} tries)"));
        }
        Error::S3 { location, status: status.as_u16(), code, message }
    }
}

/// How long an upload of `size` bytes may take: a minute plus 256 KiB/s (as registry pushes).
fn upload_timeout(size: u64) -> Duration {
    Duration::from_secs(60 + size / (256 << 10))
}

/// The text of the first `<name>...</name>` in `xml`, entities decoded (S3 error bodies are
/// flat and small: no XML parser needed).
fn xml_element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    let text = xml[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    Some(text.trim().to_string())
}

/// One request as SigV4 sees it. `path` is already URI-encoded ([`uri_encode`]); none of our
/// requests has a query string. `headers` are signed in addition to `host`,
/// `x-amz-content-sha256`, `x-amz-date` and, with a session token, `x-amz-security-token`.
struct Request<'a> {
    method: &'a str,
    host: &'a str,
    path: &'a str,
    headers: &'a [(&'a str, &'a str)],
    payload_hash: &'a str,
    /// `YYYYMMDD'T'HHMMSS'Z'`.
    amz_date: &'a str,
}

impl Request<'_> {
    /// Every signed header, lowercase names, sorted, values trimmed.
    fn signed_headers(&self, credentials: &AwsCredentials) -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = vec![
            ("host".into(), self.host.into()),
            ("x-amz-content-sha256".into(), self.payload_hash.into()),
            ("x-amz-date".into(), self.amz_date.into()),
        ];
        if let Some(t) = &credentials.session_token {
            h.push(("x-amz-security-token".into(), t.clone()));
        }
        for (k, v) in self.headers {
            h.push((k.to_ascii_lowercase(), v.split_whitespace().collect::<Vec<_>>().join(" ")));
        }
        h.sort();
        h
    }

    fn canonical_request(&self, credentials: &AwsCredentials) -> String {
        let headers = self.signed_headers(credentials);
        let canonical: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let names = headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(";");
        // The empty third line is the canonical query string.
        format!("{}\n{}\n\n{canonical}\n{names}\n{}", self.method, self.path, self.payload_hash)
    }

    fn scope(&self, region: &str) -> String {
        format!("{}/{region}/s3/aws4_request", &self.amz_date[..8])
    }

    fn string_to_sign(&self, credentials: &AwsCredentials, region: &str) -> String {
        let hashed = hex(&Sha256::digest(self.canonical_request(credentials).as_bytes()));
        format!("AWS4-HMAC-SHA256\n{}\n{}\n{hashed}", self.amz_date, self.scope(region))
    }

    fn signature(&self, credentials: &AwsCredentials, region: &str) -> String {
        let key = hmac(format!("AWS4{}", credentials.secret_access_key).as_bytes(), &self.amz_date[..8]);
        let key = hmac(&key, region);
        let key = hmac(&key, "s3");
        let key = hmac(&key, "aws4_request");
        hex(&hmac(&key, &self.string_to_sign(credentials, region)))
    }

    /// The `Authorization` header's value.
    fn authorization(&self, credentials: &AwsCredentials, region: &str) -> String {
        let names =
            self.signed_headers(credentials).into_iter().map(|(k, _)| k).collect::<Vec<_>>().join(";");
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={names}, Signature={}",
            credentials.access_key_id,
            self.scope(region),
            self.signature(credentials, region)
        )
    }
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// URI-encodes a bucket name or key the way SigV4 wants for S3 paths: every byte but
/// `A-Za-z0-9-._~/` as `%XX` (uppercase hex).
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || b == b'/' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `time` as SigV4's `YYYYMMDD'T'HHMMSS'Z'` (UTC).
fn amz_date(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rest) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn example_credentials() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    /// AWS's worked example "GET Object" (Signature Version 4, authenticating requests in the
    /// Authorization header, Amazon S3 API reference).
    #[test]
    fn signature_matches_the_aws_get_object_example() {
        let request = Request {
            method: "GET",
            host: "examplebucket.s3.amazonaws.com",
            path: "/test.txt",
            headers: &[("Range", "bytes=0-9")],
            payload_hash: EMPTY_SHA256,
            amz_date: "20130524T000000Z",
        };
        let c = example_credentials();
        assert_eq!(
            request.canonical_request(&c),
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
             x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            request.string_to_sign(&c, "us-east-1"),
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
             7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        assert_eq!(
            request.authorization(&c, "us-east-1"),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn a_session_token_is_a_signed_header() {
        let mut c = example_credentials();
        c.session_token = Some("token".into());
        let request = Request {
            method: "PUT",
            host: "h",
            path: "/k",
            headers: &[],
            payload_hash: EMPTY_SHA256,
            amz_date: "20130524T000000Z",
        };
        assert!(request.canonical_request(&c).contains("x-amz-security-token:token\n"));
        assert!(
            request
                .authorization(&c, "eu-west-1")
                .contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,")
        );
    }

    #[test]
    fn keys_are_encoded_per_segment() {
        assert_eq!(uri_encode("cache/blobs/sha256/ab"), "cache/blobs/sha256/ab");
        assert_eq!(uri_encode("a b/c+d=é~_.-"), "a%20b/c%2Bd%3D%C3%A9~_.-");
    }

    #[test]
    fn amz_date_is_utc_in_basic_format() {
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(amz_date(UNIX_EPOCH + Duration::from_secs(1_369_353_600)), "20130524T000000Z");
        assert_eq!(amz_date(UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661)), "20000229T010101Z");
        assert_eq!(amz_date(UNIX_EPOCH + Duration::from_secs(4_102_444_799)), "20991231T235959Z");
    }

    #[test]
    fn error_bodies_give_code_and_message() {
        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The specified \
                    bucket does not exist</Message><BucketName>b</BucketName></Error>";
        assert_eq!(xml_element(body, "Code").as_deref(), Some("NoSuchBucket"));
        assert_eq!(xml_element(body, "Message").as_deref(), Some("The specified bucket does not exist"));
        assert_eq!(xml_element("<Message>a &amp; b</Message>", "Message").as_deref(), Some("a & b"));
        assert_eq!(xml_element("<html>", "Code"), None);
    }

    fn env(vars: &[(&str, &str)]) -> HashMap<String, String> {
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn credentials_come_from_options_then_env_then_the_shared_file() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".aws")).unwrap();
        std::fs::write(
            home.path().join(".aws/credentials"),
            "# comment\n[default]\naws_access_key_id = FILEKEY\naws_secret_access_key = filesecret\n\n\
             [ci]\naws_access_key_id=CIKEY\naws_secret_access_key=cisecret\naws_session_token=citoken\n",
        )
        .unwrap();
        let home_str = home.path().to_str().unwrap();
        let resolve = |options: &S3Options, vars: &HashMap<String, String>| {
            resolve_credentials(options, &|k| vars.get(k).cloned())
        };
        let explicit = S3Options {
            access_key_id: Some("OPTKEY".into()),
            secret_access_key: Some("optsecret".into()),
            ..Default::default()
        };
        let with_env =
            env(&[("HOME", home_str), ("AWS_ACCESS_KEY_ID", "ENVKEY"), ("AWS_SECRET_ACCESS_KEY", "s")]);
        assert_eq!(resolve(&explicit, &with_env).unwrap().access_key_id, "OPTKEY");

        let c = resolve(&S3Options::default(), &with_env).unwrap();
        assert_eq!((c.access_key_id.as_str(), c.session_token), ("ENVKEY", None));

        let c = resolve(&S3Options::default(), &env(&[("HOME", home_str)])).unwrap();
        assert_eq!((c.access_key_id.as_str(), c.secret_access_key.as_str()), ("FILEKEY", "filesecret"));

        let c = resolve(&S3Options::default(), &env(&[("HOME", home_str), ("AWS_PROFILE", "ci")])).unwrap();
        assert_eq!((c.access_key_id.as_str(), c.session_token.as_deref()), ("CIKEY", Some("citoken")));

        let other = home.path().join("other");
        std::fs::write(&other, "[default]\naws_access_key_id=OTHER\naws_secret_access_key=x\n").unwrap();
        let vars = env(&[("HOME", home_str), ("AWS_SHARED_CREDENTIALS_FILE", other.to_str().unwrap())]);
        assert_eq!(resolve(&S3Options::default(), &vars).unwrap().access_key_id, "OTHER");
    }

    #[test]
    fn missing_or_half_credentials_are_clear_errors() {
        let empty = tempfile::tempdir().unwrap();
        let vars = env(&[("HOME", empty.path().to_str().unwrap())]);
        let err = resolve_credentials(&S3Options::default(), &|k| vars.get(k).cloned()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or write ~/.aws/credentials"
        );
        let half = env(&[("AWS_ACCESS_KEY_ID", "K")]);
        let err = resolve_credentials(&S3Options::default(), &|k| half.get(k).cloned()).unwrap_err();
        assert_eq!(err.to_string(), "S3: the environment gives an access key id but no secret access key");
    }

    #[test]
    fn region_comes_from_options_env_config_file_or_defaults() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".aws")).unwrap();
        std::fs::write(
            home.path().join(".aws/config"),
            "[default]\nregion = eu-central-1\n[profile ci]\nregion = ap-south-1\n",
        )
        .unwrap();
        let h = home.path().to_str().unwrap();
        let region = |options: &S3Options, vars: &[(&str, &str)]| {
            let vars = env(vars);
            resolve_region(options, &|k| vars.get(k).cloned())
        };
        let own = S3Options { region: Some("us-west-2".into()), ..Default::default() };
        assert_eq!(region(&own, &[("AWS_REGION", "x")]), "us-west-2");
        let none = S3Options::default();
        assert_eq!(region(&none, &[("AWS_REGION", "r1"), ("AWS_DEFAULT_REGION", "r2")]), "r1");
        assert_eq!(region(&none, &[("AWS_DEFAULT_REGION", "r2"), ("HOME", h)]), "r2");
        assert_eq!(region(&none, &[("HOME", h)]), "eu-central-1");
        assert_eq!(region(&none, &[("HOME", h), ("AWS_PROFILE", "ci")]), "ap-south-1");
        assert_eq!(region(&none, &[]), "us-east-1");
    }

    #[test]
    fn hosts_follow_the_addressing_style() {
        let creds = S3Options {
            bucket: "b".into(),
            access_key_id: Some("K".into()),
            secret_access_key: Some("S".into()),
            ..Default::default()
        };
        let no_env = |_: &str| None;
        let s3 = S3::with_env(creds.clone(), &no_env).unwrap();
        assert_eq!(
            (s3.origin.as_str(), s3.host.as_str()),
            ("https://b.s3.us-east-1.amazonaws.com", "b.s3.us-east-1.amazonaws.com")
        );
        let path_style = S3Options {
            endpoint_url: Some("http://127.0.0.1:9000/".into()),
            use_path_style: true,
            prefix: "cache/".into(),
            ..creds.clone()
        };
        let s3 = S3::with_env(path_style, &no_env).unwrap();
        assert_eq!((s3.origin.as_str(), s3.host.as_str()), ("http://127.0.0.1:9000", "127.0.0.1:9000"));
        assert_eq!(s3.describe(), "s3://b/cache/");
        let ip = S3Options { endpoint_url: Some("http://127.0.0.1:9000".into()), ..creds.clone() };
        assert!(S3::with_env(ip, &no_env).unwrap_err().to_string().contains("use path style"));
        let bad = S3Options { endpoint_url: Some("ftp://x".into()), ..creds };
        assert!(S3::with_env(bad, &no_env).unwrap_err().to_string().contains("want http://HOST"));
    }
}
