//! Networks: bridge networks with IPAM in the store, veth pairs and network namespaces made
//! through netlink, NAT rules and a userland proxy for published ports. (Being written.)

use serde::{Deserialize, Serialize};

/// Errors of networks and their setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Other(String),
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
}
