//! Networks: bridge networks with IPAM in the store, veth pairs and network namespaces made
//! through netlink, NAT rules and a userland proxy for published ports. (Being written.)

/// Errors of networks and their setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Other(String),
}
