//! What a user asks of a container, parsed from the command line once and stored with it:
//! mounts, networks, published ports, restart policy. Shared by the container, network and
//! volume modules; every type here is serializable because it lives in `config.json`.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `--add-host` (the API's `ExtraHosts`): `HOST:IP` or `HOST=IP`, an IPv6 address maybe in
/// brackets.
pub fn parse_extra_host(value: &str) -> crate::Result<(String, IpAddr)> {
    let (name, ip) = value
        .split_once(['=', ':'])
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| crate::Error::Invalid(format!("--add-host {value:?}: use HOST:IP")))?;
    let ip = ip
        .trim_matches(['[', ']'])
        .parse()
        .map_err(|_| crate::Error::Invalid(format!("--add-host {value:?}: {ip:?} is not an IP address")))?;
    Ok((name.to_string(), ip))
}

/// `--network`: which network namespace the container gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkRequest {
    /// Attached to these bridge networks (`bridge` is the default one), in order; the first
    /// gives the default route.
    Bridge(Vec<String>),
    /// Its own namespace with only `lo`.
    None,
    /// The host's namespace.
    Host,
    /// `container:NAME|ID`: the namespace of that (running) container; the id is stored.
    Container(String),
}

impl NetworkRequest {
    /// What a container gets without `--network`: the `bridge` network, as docker; rootless,
    /// its own namespace with only `lo`, since a user cannot make bridges or veths (decision in
    /// cli/README.md).
    pub fn default_for_this_process() -> NetworkRequest {
        if hostutil::idmap::in_initial_userns() {
            NetworkRequest::Bridge(vec!["bridge".into()])
        } else {
            NetworkRequest::None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// `-p [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]` (and `-P`, one per EXPOSEd port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// `None`: every host address (0.0.0.0).
    pub host_ip: Option<IpAddr>,
    /// 0: a free port picked at start (as docker does for `-p 80` and `-P`).
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

/// `-v`, `--mount` and `--tmpfs`, and the anonymous volumes of the image's `VOLUME`s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountRequest {
    /// A named volume (created on first use), or an anonymous one (`anonymous`: its name is
    /// a random id, and `rm -v` / `--rm` remove it with the container).
    Volume { name: String, target: String, readonly: bool, anonymous: bool, nocopy: bool },
    /// A host path.
    Bind { source: PathBuf, target: String, readonly: bool },
    /// A fresh tmpfs; `size` in bytes, `mode` as octal permissions.
    Tmpfs { target: String, size: Option<u64>, mode: Option<u32> },
}

impl MountRequest {
    pub fn target(&self) -> &str {
        match self {
            MountRequest::Volume { target, .. }
            | MountRequest::Bind { target, .. }
            | MountRequest::Tmpfs { target, .. } => target,
        }
    }
}

/// `--restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RestartPolicy {
    #[default]
    No,
    /// Restart after a non-zero exit, at most this many times (0: no limit).
    OnFailure(u32),
    Always,
    UnlessStopped,
}

impl RestartPolicy {
    /// Docker's `HostConfig.RestartPolicy.Name`.
    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure(_) => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }

    pub fn max_retries(self) -> u32 {
        match self {
            RestartPolicy::OnFailure(n) => n,
            _ => 0,
        }
    }
}
