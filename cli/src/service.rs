//! `rbuild system service`: the Docker Engine API (the `api` crate) on a socket over this
//! store, as `podman system service`: a process that serves while it is asked, with no daemon
//! between calls.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use cache::Store;
use nix::sys::socket::SockaddrStorage;

use crate::args::ServiceArgs;

/// The default socket: `/run/rbuild/docker.sock` for root, else under `$XDG_RUNTIME_DIR`.
fn default_socket() -> Result<PathBuf> {
    if nix::unistd::geteuid().is_root() {
        return Ok(PathBuf::from("/run/rbuild/docker.sock"));
    }
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .ok_or_else(|| anyhow!("XDG_RUNTIME_DIR is not set: name the socket (unix:///path/to.sock)"))?;
    Ok(PathBuf::from(dir).join("rbuild/docker.sock"))
}

/// `unix:///path`, `tcp://127.0.0.1:PORT`; a TCP address off loopback is refused: the API is
/// root on this machine, and TLS is not served (api/README.md, "Security").
fn endpoint(uri: Option<&str>) -> Result<api::Endpoint> {
    let Some(uri) = uri else { return Ok(api::Endpoint::Unix(default_socket()?)) };
    if let Some(path) = uri.strip_prefix("unix://") {
        return Ok(api::Endpoint::Unix(PathBuf::from(path)));
    }
    if let Some(addr) = uri.strip_prefix("tcp://") {
        let addr: std::net::SocketAddr = addr.parse().map_err(|_| anyhow!("{uri:?}: not tcp://IP:PORT"))?;
        if !addr.ip().is_loopback() {
            bail!("{uri:?}: the API is served on loopback only (it gives root on this machine)");
        }
        return Ok(api::Endpoint::Tcp(addr));
    }
    bail!("{uri:?}: use unix:///path/to.sock or tcp://127.0.0.1:PORT")
}

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// The listening socket systemd's socket activation passed (`LISTEN_FDS`/`LISTEN_PID`, the
/// `sd_listen_fds` protocol), if it passed one to this process; the variables are unset once
/// read, so nothing this process starts takes them for its own. A TCP socket off loopback is
/// refused as `tcp://` is.
///
/// # Safety
/// The process must be single-threaded (the environment is changed), and must not have
/// touched descriptor 3 if `LISTEN_PID` names it: it is taken over here.
unsafe fn activated() -> Result<Option<api::Endpoint>> {
    let (Some(fds), Some(pid)) = (std::env::var_os("LISTEN_FDS"), std::env::var_os("LISTEN_PID")) else {
        return Ok(None);
    };
    // SAFETY: the caller guarantees no other thread reads the environment.
    unsafe {
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    // Meant for another process (a parent that did not unset them): not ours to take.
    if pid.to_str().and_then(|p| p.parse::<i32>().ok()) != Some(std::process::id() as i32) {
        return Ok(None);
    }
    match fds.to_str().and_then(|n| n.parse::<u32>().ok()) {
        Some(1) => {}
        Some(0) => return Ok(None),
        _ => bail!("LISTEN_FDS={fds:?}: the service serves one socket; give its unit one ListenStream="),
    }
    // The descriptor must be open before it is owned (a bogus LISTEN_FDS would close another).
    nix::fcntl::fcntl(
        // SAFETY: only queried, not owned.
        unsafe { BorrowedFd::borrow_raw(LISTEN_FDS_START) },
        nix::fcntl::FcntlArg::F_GETFD,
    )
    .context("LISTEN_FDS=1 but descriptor 3 is not open")?;
    // SAFETY: LISTEN_PID names this process, so systemd passed descriptor 3 to it, and the
    // caller guarantees nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
    // systemd passes it inheritable; the containers' monitors this service starts must not
    // hold the listening socket open.
    nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
        .context("descriptor 3: setting close-on-exec")?;
    let addr: SockaddrStorage = nix::sys::socket::getsockname(fd.as_raw_fd())
        .context("LISTEN_FDS=1 but descriptor 3 is not a socket")?;
    use nix::sys::socket::{AddressFamily, SockaddrLike};
    if addr.family() == Some(AddressFamily::Unix) {
        return Ok(Some(api::Endpoint::UnixListener(std::os::unix::net::UnixListener::from(fd))));
    }
    if matches!(addr.family(), Some(AddressFamily::Inet | AddressFamily::Inet6)) {
        let listener = std::net::TcpListener::from(fd);
        let local = listener.local_addr().context("descriptor 3: its address")?;
        if !local.ip().is_loopback() {
            bail!(
                "the activated socket {local} is off loopback: the API is served on loopback only (it gives root on this machine)"
            );
        }
        return Ok(Some(api::Endpoint::TcpListener(listener)));
    }
    bail!("LISTEN_FDS=1 but descriptor 3 is neither a unix nor a TCP socket")
}

pub fn run(store: &Store, a: ServiceArgs) -> Result<ExitCode> {
    // SAFETY: the service has started no thread yet (tokio's come in `api::serve`), and
    // nothing before this opened a descriptor it could have got as 3 while systemd holds it.
    let activated = unsafe { activated() }?;
    if activated.is_some() && a.uri.is_some() {
        bail!("started by socket activation: the socket is systemd's, give no URI");
    }
    let endpoint = match activated {
        Some(e) => e,
        None => endpoint(a.uri.as_deref())?,
    };
    let gid = match &a.group {
        Some(g) => Some(
            nix::unistd::Group::from_name(g)
                .with_context(|| format!("--group {g}"))?
                .ok_or_else(|| anyhow!("--group {g}: no such group"))?
                .gid,
        ),
        None => None,
    };
    let idle = (a.time > 0).then(|| Duration::from_secs(a.time));
    let on_listen = move |path: &std::path::Path| -> std::io::Result<()> {
        // Root's only unless a group is named: the API can do anything root can.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        if let Some(gid) = gid {
            nix::unistd::chown(path, None, Some(gid)).map_err(std::io::Error::from)?;
        }
        Ok(())
    };
    if let api::Endpoint::Unix(path) = &endpoint
        && let Some(dir) = path.parent()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    api::serve(store.root(), endpoint, idle, &on_listen)?;
    Ok(ExitCode::SUCCESS)
}
