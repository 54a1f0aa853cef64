//! A container joining and leaving networks: at start (the monitor, for each network it is
//! on), and `network connect` / `disconnect` while it exists — at once if it runs, and in its
//! config for every later start, as docker does.

use std::path::Path;

use crate::container::{Container, ContainerLock, Containers};
use crate::network::{AttachRequest, Endpoint, HostsFile, Networks};
use crate::spec::NetworkRequest;
use crate::{Error, Result};

/// Attaches the container's network namespace `netns` to `network` as interface `ifname`,
/// answering to its name, its `--network-alias`es and `extra_aliases` there.
pub(crate) fn join(
    nets: &Networks,
    c: &Container,
    network: &str,
    netns: &Path,
    ifname: &str,
    extra_aliases: &[String],
) -> Result<Endpoint> {
    let mut aliases = c.config.host.network_aliases.clone();
    let own = c.config.host.aliases_by_network.get(network).into_iter().flatten();
    for a in own.chain(extra_aliases) {
        if !aliases.contains(a) {
            aliases.push(a.clone());
        }
    }
    let hosts_path = c.hosts_path();
    let req = AttachRequest {
        container_id: c.id().as_str(),
        name: c.name(),
        aliases: &aliases,
        netns,
        ifname,
        hosts: HostsFile {
            path: &hosts_path,
            hostname: &c.config.config.hostname,
            extra: &c.config.host.extra_hosts,
        },
    };
    Ok(nets.attach(network, &req)?)
}

/// The first interface name (`eth0`, `eth1`...) none of `endpoints` uses.
pub(crate) fn free_ifname(endpoints: &[Endpoint]) -> String {
    (0..).map(|i| format!("eth{i}")).find(|n| !endpoints.iter().any(|e| e.ifname == *n)).unwrap_or_default()
}

/// The container, reloaded under its lock (held by the returned guard).
fn locked(containers: &Containers, what: &str) -> Result<(Container, ContainerLock)> {
    let c = containers.find(what)?;
    let lock = containers.lock(c.id())?;
    let c = containers.load(c.id())?;
    Ok((c, lock))
}

/// Whether it runs now, with its network namespace: then connect/disconnect act at once.
fn live_netns(c: &Container) -> bool {
    c.is_alive() && crate::network::is_netns(&c.netns_path())
}

/// `network connect [--alias A]... NETWORK CONTAINER`.
pub fn connect(root: &Path, network: &str, what: &str, aliases: &[String]) -> Result<()> {
    let nets = Networks::open(root)?;
    let network = nets.get(network)?;
    if network.bridge.is_none() {
        return Err(Error::Conflict(format!(
            "cannot connect a container to network {}: only bridge networks can be",
            network.name
        )));
    }
    let containers = Containers::open(root)?;
    let (mut c, _lock) = locked(&containers, what)?;
    let conflict = |why: &str| Err(Error::Conflict(format!("container {} {why}", c.name())));
    let mut list = match &c.config.host.network {
        NetworkRequest::Bridge(list) => list.clone(),
        NetworkRequest::Host => return conflict("uses the host's network: it cannot join another"),
        NetworkRequest::None => return conflict("has --network none: it cannot join a network"),
        NetworkRequest::Container(_) => {
            return conflict("shares another container's network: it cannot join another");
        }
    };
    if list.iter().any(|n| *n == network.name || *n == network.id)
        || c.state.endpoints.iter().any(|e| e.network_id == network.id)
    {
        return conflict(&format!("is already connected to network {}", network.name));
    }
    if live_netns(&c) {
        let ifname = free_ifname(&c.state.endpoints);
        let endpoint = join(&nets, &c, &network.id, &c.netns_path(), &ifname, aliases)?;
        c.state.endpoints.push(endpoint);
        if let Err(e) = containers.save_state(&c) {
            let _ = nets.detach(&network.id, c.id().as_str());
            return Err(e);
        }
    }
    // Kept for the next starts, as docker does.
    list.push(network.name.clone());
    c.config.host.network = NetworkRequest::Bridge(list);
    if !aliases.is_empty() {
        c.config.host.aliases_by_network.insert(network.name.clone(), aliases.to_vec());
    }
    containers.save_config(&c)
}

/// `network disconnect [-f] NETWORK CONTAINER`; with `force`, also from a network that no
/// longer exists.
pub fn disconnect(root: &Path, network: &str, what: &str, force: bool) -> Result<()> {
    let nets = Networks::open(root)?;
    let containers = Containers::open(root)?;
    let (mut c, _lock) = locked(&containers, what)?;
    let found = match nets.get(network) {
        Ok(n) => Some(n),
        Err(crate::network::Error::NotFound(_)) if force => None,
        Err(e) => return Err(e.into()),
    };
    let matches = |name_or_id: &str| match &found {
        Some(n) => name_or_id == n.name || name_or_id == n.id,
        None => name_or_id == network,
    };
    let not_connected =
        || Error::Conflict(format!("container {} is not connected to network {network}", c.name()));
    let NetworkRequest::Bridge(list) = &c.config.host.network else {
        return Err(not_connected());
    };
    let in_config = list.iter().any(|n| matches(n));
    let endpoint = c.state.endpoints.iter().position(|e| matches(&e.network_id) || matches(&e.network));
    if !in_config && endpoint.is_none() {
        return Err(not_connected());
    }
    let list: Vec<String> = list.iter().filter(|n| !matches(n)).cloned().collect();
    c.config.host.aliases_by_network.retain(|n, _| !matches(n));
    if let Some(i) = endpoint {
        if let Some(n) = &found {
            nets.detach(&n.id, c.id().as_str())?;
        }
        c.state.endpoints.remove(i);
        containers.save_state(&c)?;
    }
    c.config.host.network = NetworkRequest::Bridge(list);
    containers.save_config(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fill_the_first_gap() {
        let ep = |ifname: &str| Endpoint {
            network: "n".into(),
            network_id: "i".into(),
            container_id: "c".into(),
            ifname: ifname.into(),
            host_veth: "v".into(),
            ip: std::net::Ipv4Addr::LOCALHOST,
            prefix_len: 24,
            gateway: std::net::Ipv4Addr::LOCALHOST,
            mac: String::new(),
            aliases: vec![],
            container_name: String::new(),
            netns: Default::default(),
        };
        assert_eq!(free_ifname(&[]), "eth0");
        assert_eq!(free_ifname(&[ep("eth0"), ep("eth2")]), "eth1");
    }
}
