//! `rbuild system service`: the Docker Engine API (the `api` crate) on a socket over this
//! store, as `podman system service`: a process that serves while it is asked, with no daemon
//! between calls.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use cache::Store;

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

/// `unix:///path`, `tcp://127.0.0.1:PORT`; a TCP address off loopback is refused (no TLS yet:
/// the API is root on this machine).
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

pub fn run(store: &Store, a: ServiceArgs) -> Result<ExitCode> {
    let endpoint = endpoint(a.uri.as_deref())?;
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
    api::serve(store.root(), &endpoint, idle, &on_listen)?;
    Ok(ExitCode::SUCCESS)
}
