//! `--ssh` and `RUN --mount=type=ssh`: an ssh-agent the build forwards to the steps that ask
//! for it, as BuildKit does. A step never sees the agent's own socket: it gets a socket of a
//! proxy made for that step (owned by the mount's `uid`/`gid`, with its `mode`), which relays
//! every connection to the agent, and is gone with the step. The keys never leave the agent.
//!
//! `--ssh ID=SOCKET` forwards a running agent (`default` alone: `$SSH_AUTH_SOCK`);
//! `--ssh ID=KEY[,KEY...]` starts OpenSSH's `ssh-agent` for the build with those private keys
//! (`ssh-add`; a passphrase-protected key is an error, nothing can be asked), killed by PID
//! when the build ends. BuildKit runs an agent of its own in Go for this; OpenSSH's is the one
//! users already trust with their keys.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why an `--ssh` source could not be set up, or a step's socket made.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("--ssh {id}: SSH_AUTH_SOCK is not set: start an ssh-agent, or give ID=SOCKET|KEY")]
    NoAgent { id: String },
    #[error("--ssh {id}: {}", path.display())]
    Path {
        id: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("--ssh {id}: {} is neither an agent socket nor a key file", path.display())]
    NotKeyOrSocket { id: String, path: PathBuf },
    #[error("--ssh {id}: starting ssh-agent (apt-get install openssh-client)")]
    Spawn {
        id: String,
        #[source]
        source: io::Error,
    },
    #[error("--ssh {id}: ssh-add {}: {message}", key.display())]
    AddKey { id: String, key: PathBuf, message: String },
    #[error("--ssh {id}: ssh-agent did not come up")]
    AgentTimeout { id: String },
    #[error("ssh mount: the socket {}", path.display())]
    Socket {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One `--ssh` source: the agent socket steps are relayed to.
#[derive(Debug, Clone)]
pub struct SshSource {
    pub id: String,
    socket: PathBuf,
    /// The agent rbuild started for key files, alive as long as any clone of this source.
    _agent: Option<Arc<Agent>>,
}

impl SshSource {
    /// `--ssh ID[=PATH[,PATH...]]`: `default` alone is `$SSH_AUTH_SOCK`; one socket is that
    /// agent; key files get an agent of their own, made in `dir` (which must outlive it).
    pub fn parse(value: &str, dir: &Path) -> Result<SshSource, SshError> {
        let (id, paths) = value.split_once('=').unwrap_or((value, ""));
        let id = id.to_string();
        let paths: Vec<PathBuf> = paths.split(',').filter(|p| !p.is_empty()).map(PathBuf::from).collect();
        if paths.is_empty() {
            let sock = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty());
            let Some(sock) = sock else { return Err(SshError::NoAgent { id }) };
            return Ok(SshSource { id, socket: sock.into(), _agent: None });
        }
        let mut kinds = Vec::new();
        for p in &paths {
            let meta = fs::metadata(p).map_err(|source| SshError::Path {
                id: id.clone(),
                path: p.clone(),
                source,
            })?;
            kinds.push(meta.file_type());
        }
        if let ([path], [kind]) = (paths.as_slice(), kinds.as_slice())
            && kind.is_socket()
        {
            return Ok(SshSource { id, socket: path.clone(), _agent: None });
        }
        if let Some((p, _)) = paths.iter().zip(&kinds).find(|(_, k)| !k.is_file()) {
            return Err(SshError::NotKeyOrSocket { id, path: p.clone() });
        }
        let agent = Agent::start(&id, dir, &paths)?;
        Ok(SshSource { id, socket: agent.socket.clone(), _agent: Some(Arc::new(agent)) })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

/// An `ssh-agent -D` rbuild started, holding the build's key files.
#[derive(Debug)]
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    fn start(id: &str, dir: &Path, keys: &[PathBuf]) -> Result<Agent, SshError> {
        let socket = dir.join(format!("agent-{}.sock", sanitize(id)));
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| SshError::Spawn { id: id.to_string(), source })?;
        let agent = Agent { child, socket };
        let deadline = Instant::now() + Duration::from_secs(5);
        while UnixStream::connect(&agent.socket).is_err() {
            if Instant::now() > deadline {
                return Err(SshError::AgentTimeout { id: id.to_string() });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for key in keys {
            let out = Command::new("ssh-add")
                .arg("-q")
                .arg(key)
                .env("SSH_AUTH_SOCK", &agent.socket)
                .env_remove("SSH_ASKPASS")
                .env("SSH_ASKPASS_REQUIRE", "never")
                .stdin(Stdio::null())
                .output()
                .map_err(|source| SshError::Spawn { id: id.to_string(), source })?;
            if !out.status.success() {
                let message = String::from_utf8_lossy(&out.stderr).trim().to_string();
                let message =
                    if message.is_empty() { "refused (a passphrase?)".to_string() } else { message };
                return Err(SshError::AddKey { id: id.to_string(), key: key.clone(), message });
            }
        }
        Ok(agent)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.socket);
    }
}

fn sanitize(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

/// A step's socket: relays each connection to the agent, until dropped.
pub(crate) struct Proxy {
    path: PathBuf,
    listener: RawFd,
    thread: Option<JoinHandle<()>>,
    _listener: Arc<UnixListener>,
}

impl Proxy {
    /// Listens at `path`, owned by `uid`:`gid` with `mode`, relaying to `agent`.
    pub(crate) fn start(agent: &Path, path: &Path, uid: u32, gid: u32, mode: u32) -> Result<Proxy, SshError> {
        let err = |source| SshError::Socket { path: path.to_path_buf(), source };
        let listener = Arc::new(UnixListener::bind(path).map_err(err)?);
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(err)?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777)).map_err(err)?;
        let fd = listener.as_raw_fd();
        let agent = agent.to_path_buf();
        let l = listener.clone();
        let thread = std::thread::spawn(move || {
            // Ends when the drop shuts the socket down: accept fails then.
            while let Ok((client, _)) = l.accept() {
                let Ok(upstream) = UnixStream::connect(&agent) else { continue };
                relay(client, upstream);
            }
        });
        Ok(Proxy { path: path.to_path_buf(), listener: fd, thread: Some(thread), _listener: listener })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Copies both ways between a step's connection and the agent, on two threads that end with
/// the connection.
fn relay(client: UnixStream, upstream: UnixStream) {
    let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else { return };
    let pipe = |mut from: UnixStream, mut to: UnixStream| {
        std::thread::spawn(move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        })
    };
    pipe(client, upstream);
    pipe(u2, c2);
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The listener is still open (`_listener`): shutting it down wakes the thread blocked
        // in accept, which then ends.
        let _ = nix::sys::socket::shutdown(self.listener, nix::sys::socket::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(&self.path);
    }
}
