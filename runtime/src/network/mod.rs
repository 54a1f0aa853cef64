//! Networks: bridge networks with IPAM in the store, veth pairs and network namespaces made
//! through netlink, /etc/hosts for name resolution, NAT rules and a userland proxy for
//! published ports.
//!
//! Nothing of a network exists on the host while no container is attached to it: the first
//! attach creates its bridge and NAT rules, the last detach deletes them (as netavark does).
//! Everything here needs root but the store's records; rootless rbuild has `none` and `host`.

mod build;
mod hosts;
mod nat;
mod netlink;
mod netns;
mod proxy;
mod store;
mod subnet;
mod usermode;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

pub use build::BuildNetwork;
pub use hosts::{HostsEntry, HostsFile, host_resolv_conf, hosts_file_content, resolv_conf, write_hosts_file};
pub use nat::{Firewall, NatRules, Rule, publish_nat, unpublish_nat};
pub use netns::{create_netns, is_netns, remove_netns, run_in_netns};
pub use proxy::Proxy;
pub use store::{AttachRequest, Networks};
pub use subnet::{Subnet, SubnetError};

/// Errors of networks and their setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("network {0} not found")]
    NotFound(String),
    #[error("network with name {0} already exists")]
    NameInUse(String),
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    #[error("network {name} has active endpoints (containers: {})", containers.join(", "))]
    InUse { name: String, containers: Vec<String> },
    #[error("no free IP address left in network {name} ({subnet})")]
    Exhausted { name: String, subnet: Subnet },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("bridge networks need root: rootless rbuild supports --network none and --network host")]
    Rootless,
    #[error("cannot publish {addr}/{protocol}")]
    Bind {
        addr: SocketAddr,
        protocol: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("netlink: {what}")]
    Netlink {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("firewall: {0}")]
    Firewall(String),
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One container's attachment to one bridge network, while the container runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network: String,
    pub network_id: String,
    pub container_id: String,
    /// The interface name inside the container (`eth0`, `eth1`...).
    pub ifname: String,
    /// The host end of the veth pair.
    pub host_veth: String,
    pub ip: std::net::Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: std::net::Ipv4Addr,
    pub mac: String,
    pub aliases: Vec<String>,
    /// The container's name when it attached (its name in peers' /etc/hosts).
    #[serde(default)]
    pub container_name: String,
    /// The network namespace file it lives in: once that is gone, the endpoint is stale
    /// (its container died without detaching) and is reclaimed.
    #[serde(default)]
    pub netns: PathBuf,
}

impl Endpoint {
    /// Its id in docker's form, 64 hex digits: the same for the same container on the same
    /// network, so container and network inspect agree.
    pub fn id(&self) -> String {
        cache::Digest::of(format!("{}/{}", self.network_id, self.container_id).as_bytes()).hex().to_string()
    }
}

/// A network as stored in `<store>/networks/<id>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// 64 hex digits, as docker's.
    pub id: String,
    pub name: String,
    /// `bridge`, or `host` and `null` for the predefined `host` and `none`.
    pub driver: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub labels: BTreeMap<String, String>,
    /// No outbound NAT, nothing forwarded in or out of the bridge.
    pub internal: bool,
    /// Set for the `bridge` driver.
    pub bridge: Option<BridgeConfig>,
}

/// The addressing and interface of a bridge network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeConfig {
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// The bridge's interface name: `rbuild0` for `bridge`, `rbr-<8 hex of the id>` else.
    pub interface: String,
    /// Picked by rbuild rather than asked for: it may move to another free subnet when the
    /// bridge is created and another (e.g. another store's) network holds it then.
    #[serde(default)]
    pub auto_subnet: bool,
}

/// The networks docker predefines: listed, never removed.
pub const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

/// The network of RUN steps ([`BuildNetwork`]): made on first use and kept like `bridge`, but
/// hidden: not listed, not found by name, not removable, and no container may join it.
pub const BUILD_NETWORK: &str = "rbuild-build";

impl Network {
    /// The 12-digit id `ls` prints.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }

    pub fn is_predefined(&self) -> bool {
        PREDEFINED.contains(&self.name.as_str())
    }

    /// The hidden network of build steps.
    pub fn is_build(&self) -> bool {
        self.name == BUILD_NETWORK
    }

    /// Whether containers on it find each other by name (not on the default `bridge`, and
    /// build steps never see each other).
    pub fn resolves_names(&self) -> bool {
        self.bridge.is_some() && self.name != "bridge" && !self.is_build()
    }
}

/// `network create` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    pub subnet: Option<Subnet>,
    pub gateway: Option<Ipv4Addr>,
    pub labels: BTreeMap<String, String>,
    pub internal: bool,
}

/// The host-wide lock over what several stores share: bridge names, subnets on the host's
/// routes, and the firewall table. Taken after a store's own lock, never before.
pub(crate) fn host_lock() -> Result<Flock<File>, Error> {
    let dir = Path::new("/run/rbuild");
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    let path = dir.join("network.lock");
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| Error::Io { path: path.clone(), source })?;
    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| Error::Io { path, source: e.into() })
}

/// The names of the network interfaces of the caller's namespace (to check that nothing
/// rbuild made is left behind).
pub fn host_links() -> Result<Vec<String>, Error> {
    Ok(netlink::Netlink::open()?.links()?.into_iter().map(|l| l.name).collect())
}
