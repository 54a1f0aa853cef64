//! A throwaway S3 server for tests: moto's standalone server (`moto_server`, a Python package)
//! on `127.0.0.1:<free port>`, its output in a temp dir, killed by PID when the handle is
//! dropped.
//!
//! The server checks every request's SigV4 signature (as botocore computes it) against an
//! access key of an IAM user it is set up with at start: with `INITIAL_NO_AUTH_ACTION_COUNT=3`
//! moto serves the first three actions (create the user, give it `s3:*`, create its key)
//! unauthenticated and authenticates everything after them. A client with the wrong secret
//! gets `SignatureDoesNotMatch`, as from AWS.
//!
//! CI installs moto (`scripts/test.sh`); without it, starting one panics with a message that
//! says how to install it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The IAM user whose access key the server accepts.
const USER: &str = "rbuild-test";

/// A running moto S3 server on 127.0.0.1, stopped (SIGKILL to its PID) on drop.
pub struct TestS3 {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    access_key_id: String,
    secret_access_key: String,
    /// How much of the log the IAM set-up wrote: [`TestS3::requests`] starts after it.
    setup_log_len: usize,
}

impl TestS3 {
    /// Starts a server and creates the IAM user and key; no bucket exists yet.
    pub fn start() -> TestS3 {
        let bin = find_on_path("moto_server").unwrap_or_else(|| {
            panic!("moto_server not found: install moto: python3 -m pip install 'moto[server]' (scripts/test.sh does)")
        });
        let dir = tempfile::Builder::new().prefix("rbuild-s3-").tempdir().expect("moto temp dir");
        let log_path = dir.path().join("moto.log");
        // The port is found by binding :0 and released before moto binds it; another process
        // may take it meanwhile, so a server that fails to start is tried again.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port on 127.0.0.1")
                .port();
            let log = std::fs::File::create(&log_path).expect("moto log file");
            let mut cmd = Command::new(&bin);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .current_dir(dir.path())
                .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
                .env("PYTHONUNBUFFERED", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log fd"))
                .stderr(log);
            for (k, _) in std::env::vars_os() {
                let k_str = k.to_string_lossy();
                if k_str.starts_with("AWS_") || k_str.starts_with("MOTO_") {
                    cmd.env_remove(&k);
                }
            }
            let mut child = cmd.spawn().expect("start moto_server");
            if wait_ready(&mut child, port, Duration::from_secs(30)) {
                let (access_key_id, secret_access_key) = create_iam_key(port);
                let setup_log_len = std::fs::read_to_string(&log_path).map(|l| l.len()).unwrap_or(0);
                return TestS3 { child, port, dir, access_key_id, secret_access_key, setup_log_len };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("moto_server did not start on 127.0.0.1; its log:\n{last_log}");
    }

    /// `http://127.0.0.1:PORT`, the endpoint URL for path-style requests.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PID of the server process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The access key id the server accepts.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The secret of [`TestS3::access_key_id`].
    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    /// What the server printed so far: werkzeug's access log, one line per request
    /// (`127.0.0.1 - - [date] "PUT /bucket/key HTTP/1.1" 200 -`), and any tracebacks.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// `(method, path)` of every request since the set-up, in order (the path with its query).
    pub fn requests(&self) -> Vec<(String, String)> {
        let log = self.log();
        parse_access_log(log.get(self.setup_log_len..).unwrap_or(""))
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to exactly this child's PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(method, path)` of each `"METHOD PATH HTTP/x"` access-log line.
fn parse_access_log(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|line| {
            let quoted = line.split('"').nth(1)?;
            let mut parts = quoted.split(' ');
            let (method, path, version) = (parts.next()?, parts.next()?, parts.next()?);
            version.starts_with("HTTP/").then(|| (method.to_string(), path.to_string()))
        })
        .collect()
}

fn find_on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Polls moto's own API (`GET /moto-api/`, not an S3 action, so not counted as one) until it
/// answers, `limit` passes or the server exits.
fn wait_ready(child: &mut Child, port: u16, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if request(port, "GET", "/moto-api/", None, "").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Creates IAM user [`USER`] with an inline policy allowing `s3:*` and an access key for it:
/// the three unauthenticated actions. Returns the key id and secret.
fn create_iam_key(port: u16) -> (String, String) {
    // moto routes a request to IAM by the service in its credential scope; the signature of
    // these first three actions is not checked.
    let auth = "AWS4-HMAC-SHA256 Credential=setup/20240101/us-east-1/iam/aws4_request, \
                SignedHeaders=host, Signature=0";
    let policy = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow\
                  %22%2C%22Action%22%3A%22s3%3A%2A%22%2C%22Resource%22%3A%22%2A%22%7D%5D%7D";
    let iam = |action: &str| {
        let body = format!("Version=2010-05-08&UserName={USER}&{action}");
        let resp = request(port, "POST", "/", Some(auth), &body).expect("moto answers IAM calls");
        assert!(resp.starts_with("HTTP/1.1 200"), "moto IAM {action}: {resp}");
        resp
    };
    iam("Action=CreateUser");
    iam(&format!("Action=PutUserPolicy&PolicyName=s3&PolicyDocument={policy}"));
    let resp = iam("Action=CreateAccessKey");
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = resp.find(&open).unwrap_or_else(|| panic!("no {name} in {resp}")) + open.len();
        let end = start + resp[start..].find('<').expect("element end");
        resp[start..end].to_string()
    };
    (element("AccessKeyId"), element("SecretAccessKey"))
}

/// Sends one HTTP/1.0 request to 127.0.0.1:`port` and returns the whole response, or None if
/// nothing answers.
fn request(port: u16, method: &str, path: &str, auth: Option<&str>, body: &str) -> Option<String> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    if let Some(a) = auth {
        head.push_str(&format!("Authorization: {a}\r\n"));
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(head.as_bytes()).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    (!out.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_log_lines_give_method_and_path() {
        let log = "WARNING: This is a development server.\n\
                   127.0.0.1 - - [07/Dec/2026 00:18:50] \"PUT /b/k%20x HTTP/1.1\" 200 -\n\
                   Traceback (most recent call last):\n\
                   127.0.0.1 - - [07/Dec/2026 00:18:51] \"GET /b?list-type=2 HTTP/1.1\" 404 -\n";
        assert_eq!(
            parse_access_log(log),
            vec![
                ("PUT".to_string(), "/b/k%20x".to_string()),
                ("GET".to_string(), "/b?list-type=2".to_string())
            ]
        );
    }
}
