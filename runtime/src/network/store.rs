//! Networks in the store, their IPAM, and attaching containers to them.
//!
//! `<store>/networks/<id>.json` holds a network and its endpoints (the addresses in use are
//! its endpoints' addresses); `<store>/networks/containers/<container id>.json` what rbuild
//! needs to rewrite a container's /etc/hosts. Every change happens under `networks/lock`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::hosts::{HostsEntry, HostsFile, write_in_place};
use super::nat::{Firewall, Rule, network_tag};
use super::netlink::Netlink;
use super::netns::{is_netns, is_root, require_root};
use super::{
    BUILD_NETWORK, BridgeConfig, CreateOptions, Endpoint, Error, Network, PREDEFINED, Subnet, host_lock,
};

/// What the container monitor (or `network connect`) attaches to a network.
#[derive(Debug, Clone, Copy)]
pub struct AttachRequest<'a> {
    pub container_id: &'a str,
    /// The container's name.
    pub name: &'a str,
    /// More names on this network (`--network-alias`).
    pub aliases: &'a [String],
    /// The container's network namespace file ([`super::create_netns`]).
    pub netns: &'a Path,
    /// The interface name inside: `eth0`, `eth1`...
    pub ifname: &'a str,
    pub hosts: HostsFile<'a>,
}

/// A network and its endpoints by container id, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NetworkFile {
    #[serde(flatten)]
    network: Network,
    #[serde(default)]
    endpoints: BTreeMap<String, Endpoint>,
}

/// What rewriting a container's hosts file needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ContainerRecord {
    name: String,
    hostname: String,
    hosts_path: PathBuf,
    extra: Vec<(String, IpAddr)>,
}

/// The private ranges subnets are picked from: the default network's 10.88.0.0/16 first,
/// then /24s from 10.89.0.0 on (podman's choices).
fn default_network_candidates() -> impl Iterator<Item = Subnet> {
    std::iter::once(Subnet::containing(Ipv4Addr::new(10, 88, 0, 0), 16)).chain(user_network_candidates())
}

fn user_network_candidates() -> impl Iterator<Item = Subnet> {
    (89u8..=99).flat_map(|b| (0u8..=255).map(move |c| Subnet::containing(Ipv4Addr::new(10, b, c, 0), 24)))
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io_at(&tmp))?;
    f.write_all(bytes).map_err(io_at(&tmp))?;
    fs::rename(&tmp, path).map_err(io_at(path))
}

fn random_id() -> String {
    format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>())
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Docker's network name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Docker's MAC for an address: 02:42 and the address's four bytes.
fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x42, a, b, c, d]
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// One of rbuild's own bridge networks (`bridge`, the build network): a subnet rbuild picked,
/// its first address the gateway.
fn builtin_bridge(name: &str, subnet: Subnet, interface: &str) -> Network {
    Network {
        id: random_id(),
        name: name.into(),
        driver: "bridge".into(),
        created: crate::container::now_rfc3339(),
        labels: BTreeMap::new(),
        internal: false,
        bridge: Some(BridgeConfig {
            subnet,
            gateway: subnet.first_host(),
            interface: interface.into(),
            auto_subnet: true,
        }),
    }
}

/// The alias rbuild gives a bridge it made: whose it is.
fn bridge_alias(network_id: &str) -> String {
    format!("rbuild network {network_id}")
}

/// The networks of one store.
#[derive(Debug, Clone)]
pub struct Networks {
    dir: PathBuf,
}

impl Networks {
    pub fn open(store_root: &Path) -> Result<Networks, Error> {
        let dir = store_root.join("networks");
        fs::create_dir_all(dir.join("containers")).map_err(io_at(&dir))?;
        Ok(Networks { dir })
    }

    fn lock(&self) -> Result<Flock<File>, Error> {
        let path = self.dir.join("lock");
        let f =
            OpenOptions::new().write(true).create(true).truncate(false).open(&path).map_err(io_at(&path))?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| Error::Io { path, source: e.into() })
    }

    fn file_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn record_path(&self, container_id: &str) -> PathBuf {
        self.dir.join("containers").join(format!("{container_id}.json"))
    }

    fn load_all(&self) -> Result<Vec<NetworkFile>, Error> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_at(&self.dir))? {
            let entry = entry.map_err(io_at(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json") else { continue };
            if !is_id(id) {
                continue;
            }
            let path = entry.path();
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                // Removed since read_dir listed it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_at(&path)(e)),
            };
            let file: NetworkFile = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
            out.push(file);
        }
        out.sort_by(|a, b| a.network.name.cmp(&b.network.name));
        Ok(out)
    }

    fn save(&self, file: &NetworkFile) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(file).map_err(|e| Error::Invalid(e.to_string()))?;
        write_atomic(&self.file_path(&file.network.id), &json)
    }

    fn find(files: &[NetworkFile], what: &str) -> Result<Option<usize>, Error> {
        if let Some(i) = files.iter().position(|f| f.network.id == what || f.network.name == what) {
            return Ok(Some(i));
        }
        if what.is_empty() || !what.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let what = what.to_ascii_lowercase();
        let matches: Vec<usize> =
            (0..files.len()).filter(|&i| files[i].network.id.starts_with(&what)).collect();
        match matches.len() {
            0 => Ok(None),
            1 => Ok(Some(matches[0])),
            _ => Err(Error::Invalid(format!(
                "network id prefix {what} matches {} networks: use more of it",
                matches.len()
            ))),
        }
    }

    /// Every network, the predefined ones (made now if missing) included, by name.
    fn load_with_predefined(&self) -> Result<Vec<NetworkFile>, Error> {
        let files = self.load_all()?;
        if PREDEFINED.iter().all(|p| files.iter().any(|f| f.network.name == *p)) {
            return Ok(files);
        }
        let _lock = self.lock()?;
        self.load_with_predefined_locked()
    }

    /// [`Self::load_with_predefined`] for a caller holding the lock.
    fn load_with_predefined_locked(&self) -> Result<Vec<NetworkFile>, Error> {
        let mut files = self.load_all()?;
        for name in PREDEFINED {
            if files.iter().any(|f| f.network.name == name) {
                continue;
            }
            let network = match name {
                "bridge" => {
                    let subnet = self.pick_subnet(&files, default_network_candidates(), None)?;
                    builtin_bridge(name, subnet, "rbuild0")
                }
                _ => Network {
                    id: random_id(),
                    name: name.into(),
                    driver: if name == "host" { "host" } else { "null" }.into(),
                    created: crate::container::now_rfc3339(),
                    labels: BTreeMap::new(),
                    internal: false,
                    bridge: None,
                },
            };
            let file = NetworkFile { network, endpoints: BTreeMap::new() };
            self.save(&file)?;
            files.push(file);
        }
        files.sort_by(|a, b| a.network.name.cmp(&b.network.name));
        Ok(files)
    }

    /// The first candidate overlapping neither another network of this store nor a route of
    /// the host (but those of `own_bridge`, the network's own leftover bridge).
    fn pick_subnet(
        &self,
        files: &[NetworkFile],
        candidates: impl Iterator<Item = Subnet>,
        own_bridge: Option<&str>,
    ) -> Result<Subnet, Error> {
        let taken = self.taken_subnets(files, own_bridge)?;
        candidates.into_iter().find(|c| taken.iter().all(|(t, _)| !t.overlaps(c))).ok_or_else(|| {
            Error::Invalid("no free subnet left in 10.88.0.0/16-10.99.255.0/24: pass --subnet".into())
        })
    }

    /// Subnets in use, each with who uses it: this store's networks and the host's routes.
    fn taken_subnets(
        &self,
        files: &[NetworkFile],
        own_bridge: Option<&str>,
    ) -> Result<Vec<(Subnet, String)>, Error> {
        let mut taken: Vec<(Subnet, String)> = files
            .iter()
            .filter_map(|f| {
                f.network.bridge.as_ref().map(|b| (b.subnet, format!("network {}", f.network.name)))
            })
            .collect();
        let mut nl = Netlink::open()?;
        let links = nl.links()?;
        for route in nl.routes()? {
            let dev = route.oif.and_then(|i| links.iter().find(|l| l.index == i)).map(|l| l.name.as_str());
            if dev.is_some() && dev == own_bridge {
                continue;
            }
            taken.push((route.destination, format!("a route of the host (dev {})", dev.unwrap_or("?"))));
        }
        Ok(taken)
    }

    /// Creates a user-defined bridge network.
    pub fn create(&self, name: &str, opts: &CreateOptions) -> Result<Network, Error> {
        if !valid_name(name) {
            return Err(Error::Invalid(format!(
                "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        if name == BUILD_NETWORK {
            return Err(Error::Invalid(format!("network name {name} is reserved for build steps")));
        }
        let _lock = self.lock()?;
        let files = self.load_with_predefined_locked()?;
        if files.iter().any(|f| f.network.name == name) {
            return Err(Error::NameInUse(name.to_string()));
        }
        let subnet = match opts.subnet {
            Some(s) => {
                if let Some((_, who)) =
                    self.taken_subnets(&files, None)?.into_iter().find(|(t, _)| t.overlaps(&s))
                {
                    return Err(Error::Conflict(format!("subnet {s} overlaps with {who}")));
                }
                s
            }
            None if opts.gateway.is_some() => {
                return Err(Error::Invalid("--gateway needs --subnet".into()));
            }
            None => self.pick_subnet(&files, user_network_candidates(), None)?,
        };
        let gateway = match opts.gateway {
            Some(g) if !subnet.contains(g) => {
                return Err(Error::Invalid(format!("gateway {g} is not in subnet {subnet}")));
            }
            Some(g) if g == subnet.addr() || g == subnet.broadcast() => {
                return Err(Error::Invalid(format!(
                    "gateway {g} is the network or broadcast address of {subnet}"
                )));
            }
            Some(g) => g,
            None => subnet.first_host(),
        };
        let id = random_id();
        let network = Network {
            name: name.to_string(),
            driver: "bridge".into(),
            created: crate::container::now_rfc3339(),
            labels: opts.labels.clone(),
            internal: opts.internal,
            bridge: Some(BridgeConfig {
                subnet,
                gateway,
                interface: format!("rbr-{}", &id[..8]),
                auto_subnet: opts.subnet.is_none(),
            }),
            id,
        };
        self.save(&NetworkFile { network: network.clone(), endpoints: BTreeMap::new() })?;
        self.emit(&network, "create", None);
        Ok(network)
    }

    /// A network's event (`create`, `connect`, `disconnect`, `destroy`), as dockerd's.
    /// Build steps on the hidden build network are no containers anyone asked for: silent.
    fn emit(&self, network: &Network, action: &str, container_id: Option<&str>) {
        let Some(root) = self.dir.parent().filter(|_| !network.is_build()) else { return };
        let mut attrs =
            vec![("name".to_string(), network.name.clone()), ("type".to_string(), network.driver.clone())];
        if let Some(id) = container_id {
            attrs.push(("container".to_string(), id.to_string()));
        }
        crate::events::emit(root, crate::events::Event::new("network", action, &network.id, attrs));
    }

    /// Every network by name, with `bridge`, `host` and `none` (the build network is hidden).
    pub fn list(&self) -> Result<Vec<Network>, Error> {
        Ok(self.load_with_predefined()?.into_iter().map(|f| f.network).filter(|n| !n.is_build()).collect())
    }

    /// By name, full id or unique id prefix; never the hidden build network.
    pub fn get(&self, name_or_id: &str) -> Result<Network, Error> {
        let files: Vec<NetworkFile> =
            self.load_with_predefined()?.into_iter().filter(|f| !f.network.is_build()).collect();
        match Self::find(&files, name_or_id)? {
            Some(i) => Ok(files[i].network.clone()),
            None => Err(Error::NotFound(name_or_id.to_string())),
        }
    }

    /// Makes the build network's record if it has none yet (its bridge comes with the first
    /// step attached, as any network's).
    pub(crate) fn ensure_build_network(&self) -> Result<(), Error> {
        if self.load_all()?.iter().any(|f| f.network.is_build()) {
            return Ok(());
        }
        let _lock = self.lock()?;
        let files = self.load_with_predefined_locked()?;
        if files.iter().any(|f| f.network.is_build()) {
            return Ok(());
        }
        let subnet = self.pick_subnet(&files, user_network_candidates(), None)?;
        let network = builtin_bridge(BUILD_NETWORK, subnet, "rbuild-build0");
        self.save(&NetworkFile { network, endpoints: BTreeMap::new() })
    }

    /// Loads the network under the lock, with its stale endpoints reclaimed.
    fn load_locked(&self, name_or_id: &str) -> Result<NetworkFile, Error> {
        let files = self.load_with_predefined_locked()?;
        let Some(i) = Self::find(&files, name_or_id)? else {
            return Err(Error::NotFound(name_or_id.to_string()));
        };
        // Re-read: it may have changed before the caller took the lock.
        let path = self.file_path(&files[i].network.id);
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound(name_or_id.to_string()),
            _ => io_at(&path)(e),
        })?;
        let mut file: NetworkFile =
            serde_json::from_slice(&bytes).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        self.reap_stale(&mut file)?;
        Ok(file)
    }

    /// Drops the endpoints whose network namespace is gone (their container died without
    /// detaching) and tears the network down if none is left.
    fn reap_stale(&self, file: &mut NetworkFile) -> Result<(), Error> {
        let stale: Vec<String> = file
            .endpoints
            .iter()
            .filter(|(_, e)| !e.netns.as_os_str().is_empty() && !is_netns(&e.netns))
            .map(|(id, _)| id.clone())
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        require_root()?;
        let mut nl = Netlink::open()?;
        for id in &stale {
            if let Some(e) = file.endpoints.remove(id) {
                nl.delete_link(&e.host_veth)?;
            }
        }
        self.save(file)?;
        let peers: Vec<String> = file.endpoints.keys().cloned().collect();
        for id in &stale {
            if self.networks_of(id)?.is_empty() {
                let _ = fs::remove_file(self.record_path(id));
            }
        }
        self.refresh_hosts(&peers, None)
    }

    /// Removes a user-defined network without endpoints.
    pub fn remove(&self, name_or_id: &str) -> Result<Network, Error> {
        let _lock = self.lock()?;
        let file = self.load_locked(name_or_id)?;
        self.remove_locked(file)
    }

    fn remove_locked(&self, file: NetworkFile) -> Result<Network, Error> {
        if file.network.is_build() {
            return Err(Error::NotFound(file.network.name));
        }
        if file.network.is_predefined() {
            return Err(Error::Predefined(file.network.name));
        }
        if !file.endpoints.is_empty() {
            let containers = file
                .endpoints
                .values()
                .map(|e| {
                    if e.container_name.is_empty() {
                        e.container_id.clone()
                    } else {
                        e.container_name.clone()
                    }
                })
                .collect();
            return Err(Error::InUse { name: file.network.name, containers });
        }
        // A bridge left by a crash would otherwise outlive its network.
        if is_root() {
            teardown(&file.network)?;
        }
        let path = self.file_path(&file.network.id);
        fs::remove_file(&path).map_err(io_at(&path))?;
        self.emit(&file.network, "destroy", None);
        Ok(file.network)
    }

    /// Removes every user-defined network without endpoints; returns them. The default
    /// network stays, but its bridge goes if no container uses it.
    pub fn prune(&self) -> Result<Vec<Network>, Error> {
        self.prune_where(|_| true)
    }

    /// [`Networks::prune`] of the user-defined networks `wanted` picks (`network prune
    /// --filter`); the others stay.
    pub fn prune_where(&self, wanted: impl Fn(&Network) -> bool) -> Result<Vec<Network>, Error> {
        let _lock = self.lock()?;
        let mut removed = Vec::new();
        for f in self.load_all()? {
            let file = self.load_locked(&f.network.id)?;
            if !file.endpoints.is_empty() {
                continue;
            }
            if file.network.is_predefined() || file.network.is_build() {
                if is_root() {
                    teardown(&file.network)?;
                }
                continue;
            }
            if !wanted(&file.network) {
                continue;
            }
            removed.push(self.remove_locked(file)?);
        }
        Ok(removed)
    }

    /// The network's endpoints (stale ones reclaimed first).
    pub fn endpoints(&self, network: &str) -> Result<Vec<Endpoint>, Error> {
        let _lock = self.lock()?;
        Ok(self.load_locked(network)?.endpoints.into_values().collect())
    }

    /// Every endpoint of a container, on every network.
    pub fn container_endpoints(&self, container_id: &str) -> Result<Vec<Endpoint>, Error> {
        Ok(self.load_all()?.into_iter().filter_map(|mut f| f.endpoints.remove(container_id)).collect())
    }

    fn networks_of(&self, container_id: &str) -> Result<Vec<NetworkFile>, Error> {
        Ok(self.load_all()?.into_iter().filter(|f| f.endpoints.contains_key(container_id)).collect())
    }

    /// Connects the container's namespace to the network: an address, the bridge (made if
    /// this is the first endpoint, with its NAT rules), a veth pair, the default route if the
    /// namespace has none yet; then rewrites the hosts files of everyone concerned.
    pub fn attach(&self, network: &str, req: &AttachRequest) -> Result<Endpoint, Error> {
        require_root()?;
        let _lock = self.lock()?;
        let mut file = self.load_locked(network)?;
        let Some(mut bridge) = file.network.bridge.clone() else {
            return Err(Error::Invalid(format!(
                "network {} has no interfaces to attach to: use --network {}",
                file.network.name, file.network.name
            )));
        };
        if file.endpoints.contains_key(req.container_id) {
            return Err(Error::Conflict(format!(
                "container {} is already attached to network {}",
                req.name, file.network.name
            )));
        }
        let first = file.endpoints.is_empty();
        if first {
            let changed = self.make_bridge(&mut file, &mut bridge)?;
            if changed {
                self.save(&file)?;
            }
        }
        let made = self.attach_veth(&file, &bridge, req);
        let endpoint = match made {
            Ok(e) => e,
            Err(e) => {
                if first {
                    let _ = teardown(&file.network);
                }
                return Err(e);
            }
        };
        file.endpoints.insert(req.container_id.to_string(), endpoint.clone());
        self.save(&file)?;
        self.emit(&file.network, "connect", Some(req.container_id));
        let record = ContainerRecord {
            name: req.name.to_string(),
            hostname: req.hosts.hostname.to_string(),
            hosts_path: req.hosts.path.to_path_buf(),
            extra: req.hosts.extra.to_vec(),
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| Error::Invalid(e.to_string()))?;
        write_atomic(&self.record_path(req.container_id), &json)?;
        let mut concerned: Vec<String> = vec![req.container_id.to_string()];
        if file.network.resolves_names() {
            concerned.extend(file.endpoints.keys().filter(|id| *id != req.container_id).cloned());
        }
        self.refresh_hosts(&concerned, Some(req.container_id))?;
        Ok(endpoint)
    }

    /// The bridge of a network getting its first endpoint, and its NAT rules. Another store's
    /// live network may hold the bridge's name or subnet: the default network then takes
    /// another name, and a picked subnet moves; an asked-for one is an error. Returns whether
    /// the network's config changed.
    fn make_bridge(&self, file: &mut NetworkFile, bridge: &mut BridgeConfig) -> Result<bool, Error> {
        let mut nl = Netlink::open()?;
        let alias = bridge_alias(&file.network.id);
        // Already up since an earlier container (bridges stay while their network exists).
        if nl.link(&bridge.interface)?.is_some_and(|l| l.alias.as_deref() == Some(alias.as_str())) {
            return Ok(false);
        }
        let _host = host_lock()?;
        let mut changed = false;
        loop {
            match nl.link(&bridge.interface)? {
                Some(l) if l.alias.as_deref() != Some(alias.as_str()) => {
                    if file.network.name != "bridge" && !file.network.is_build() {
                        return Err(Error::Conflict(format!(
                            "interface {} exists and is not network {}'s bridge",
                            bridge.interface, file.network.name
                        )));
                    }
                    // rbuild's own networks take the next free name: rbuild1, rbuild-build1...
                    let stem = bridge.interface.trim_end_matches(|c: char| c.is_ascii_digit());
                    let n: u32 = bridge.interface[stem.len()..].parse().unwrap_or(0);
                    bridge.interface = format!("{stem}{}", n + 1);
                    changed = true;
                }
                _ => break,
            }
        }
        let all = self.load_all()?;
        let others: Vec<NetworkFile> = all.into_iter().filter(|f| f.network.id != file.network.id).collect();
        let taken = self.taken_subnets(&others, Some(&bridge.interface))?;
        if let Some((_, who)) = taken.iter().find(|(t, _)| t.overlaps(&bridge.subnet)) {
            if !bridge.auto_subnet {
                return Err(Error::Conflict(format!(
                    "subnet {} of network {} overlaps with {who}",
                    bridge.subnet, file.network.name
                )));
            }
            let candidates: Box<dyn Iterator<Item = Subnet>> = if file.network.name == "bridge" {
                Box::new(default_network_candidates())
            } else {
                Box::new(user_network_candidates())
            };
            bridge.subnet = self.pick_subnet(&others, candidates, Some(&bridge.interface))?;
            bridge.gateway = bridge.subnet.first_host();
            changed = true;
        }
        if changed {
            file.network.bridge = Some(bridge.clone());
        }
        let index = match nl.link(&bridge.interface)? {
            Some(l) => l.index,
            None => {
                let index = nl.create_bridge(&bridge.interface)?;
                nl.set_alias(index, &alias)?;
                index
            }
        };
        nl.add_address(index, bridge.gateway, bridge.subnet.prefix_len())?;
        nl.set_up(index)?;
        if let Some(fw) = Firewall::detect() {
            let tag = network_tag(&file.network.id);
            fw.remove(&tag)?;
            let rule = if file.network.internal {
                Rule::Isolate { bridge: bridge.interface.clone() }
            } else {
                Rule::Masquerade { subnet: bridge.subnet }
            };
            fw.add(&tag, &[rule])?;
        }
        if !file.network.internal {
            enable_ip_forward()?;
        }
        Ok(changed)
    }

    fn attach_veth(
        &self,
        file: &NetworkFile,
        bridge: &BridgeConfig,
        req: &AttachRequest,
    ) -> Result<Endpoint, Error> {
        let used: BTreeSet<Ipv4Addr> = file.endpoints.values().map(|e| e.ip).collect();
        let ip = bridge
            .subnet
            .hosts()
            .find(|ip| *ip != bridge.gateway && !used.contains(ip))
            .ok_or_else(|| Error::Exhausted { name: file.network.name.clone(), subnet: bridge.subnet })?;
        let mac = mac_for(ip);
        let mut nl = Netlink::open()?;
        let bridge_index = nl.link(&bridge.interface)?.map(|l| l.index).ok_or_else(|| Error::Netlink {
            what: format!("finding bridge {}", bridge.interface),
            source: io::Error::from_raw_os_error(libc::ENODEV),
        })?;
        let host_veth = format!("rv{:08x}", rand::random::<u32>());
        let host_index = nl.create_veth(&host_veth, bridge_index, req.ifname, mac, req.netns)?;
        let inside = (|| -> Result<(), Error> {
            nl.set_up(host_index)?;
            let mut ns = Netlink::open_in(req.netns)?;
            let index = ns.link(req.ifname)?.map(|l| l.index).ok_or_else(|| Error::Netlink {
                what: format!("finding {} in {}", req.ifname, req.netns.display()),
                source: io::Error::from_raw_os_error(libc::ENODEV),
            })?;
            ns.add_address(index, ip, bridge.subnet.prefix_len())?;
            ns.set_up(index)?;
            ns.add_default_route(bridge.gateway)?;
            Ok(())
        })();
        if let Err(e) = inside {
            let _ = nl.delete_link(&host_veth);
            return Err(e);
        }
        Ok(Endpoint {
            network: file.network.name.clone(),
            network_id: file.network.id.clone(),
            container_id: req.container_id.to_string(),
            ifname: req.ifname.to_string(),
            host_veth,
            ip,
            prefix_len: bridge.subnet.prefix_len(),
            gateway: bridge.gateway,
            mac: mac_string(mac),
            aliases: req.aliases.to_vec(),
            container_name: req.name.to_string(),
            netns: req.netns.to_path_buf(),
        })
    }

    /// Disconnects the container from the network (its veth pair deleted, its address freed);
    /// the last endpoint takes the bridge and the NAT rules with it. Not attached: nothing.
    pub fn detach(&self, network: &str, container_id: &str) -> Result<(), Error> {
        self.detach_with(network, container_id, true)
    }

    /// [`Networks::detach`] for a container whose network namespace the caller is about to
    /// destroy: the kernel deletes the veth pair with the namespace (in the background), which
    /// saves the caller the ~20 ms a synchronous veth deletion costs.
    pub fn detach_exiting(&self, network: &str, container_id: &str) -> Result<(), Error> {
        self.detach_with(network, container_id, false)
    }

    fn detach_with(&self, network: &str, container_id: &str, delete_veth: bool) -> Result<(), Error> {
        let _lock = self.lock()?;
        let mut file = match self.load_locked(network) {
            Ok(f) => f,
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(endpoint) = file.endpoints.remove(container_id) else { return Ok(()) };
        require_root()?;
        if delete_veth {
            Netlink::open()?.delete_link(&endpoint.host_veth)?;
        }
        self.emit(&file.network, "disconnect", Some(container_id));
        // The bridge stays while the network exists (as docker0 does): making it again for
        // the next container would cost that container ~60 ms. `network rm` and `network prune`
        // take it down.
        self.save(&file)?;
        let mut concerned = vec![container_id.to_string()];
        if file.network.resolves_names() {
            concerned.extend(file.endpoints.keys().cloned());
        }
        self.refresh_hosts(&concerned, None)?;
        if self.networks_of(container_id)?.is_empty() {
            let _ = fs::remove_file(self.record_path(container_id));
        }
        Ok(())
    }

    /// Rewrites the hosts file of each container: its own entries and those of its peers on
    /// every user-defined network it is on. Only `create_for`'s file is created if missing.
    fn refresh_hosts(&self, containers: &[String], create_for: Option<&str>) -> Result<(), Error> {
        let files = self.load_all()?;
        for id in containers {
            let path = self.record_path(id);
            let record: ContainerRecord = match fs::read(&path) {
                Ok(b) => serde_json::from_slice(&b)
                    .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_at(&path)(e)),
            };
            let mut own_ips = Vec::new();
            let mut own_names = vec![record.name.clone()];
            let mut peers: Vec<HostsEntry> = Vec::new();
            for f in files.iter().filter(|f| f.endpoints.contains_key(id)) {
                let me = &f.endpoints[id];
                own_ips.push(me.ip);
                if !f.network.resolves_names() {
                    continue;
                }
                own_names.extend(me.aliases.iter().cloned());
                for (peer_id, e) in &f.endpoints {
                    if peer_id == id || peers.iter().any(|(ip, _)| *ip == e.ip) {
                        continue;
                    }
                    let mut names = Vec::new();
                    if !e.container_name.is_empty() {
                        names.push(e.container_name.clone());
                    }
                    names.extend(e.aliases.iter().cloned());
                    if let Some(short) = peer_id.get(..12) {
                        names.push(short.to_string());
                    }
                    peers.push((e.ip, names));
                }
            }
            let h = HostsFile { path: &record.hosts_path, hostname: &record.hostname, extra: &record.extra };
            let text = super::hosts::hosts_file_content(&h, &own_ips, &own_names, &peers);
            write_in_place(&record.hosts_path, text.as_bytes(), create_for == Some(id.as_str()))?;
        }
        Ok(())
    }
}

/// Deletes what a network has on the host: its bridge (only if rbuild made it for this
/// network) and its NAT rules.
fn teardown(network: &Network) -> Result<(), Error> {
    let Some(bridge) = &network.bridge else { return Ok(()) };
    let _host = host_lock()?;
    let mut nl = Netlink::open()?;
    if let Some(link) = nl.link(&bridge.interface)?
        && link.alias.as_deref() == Some(bridge_alias(&network.id).as_str())
    {
        nl.delete_link(&bridge.interface)?;
    }
    if let Some(fw) = Firewall::detect() {
        fw.remove(&network_tag(&network.id))?;
    }
    Ok(())
}

/// Containers reach beyond the host only if the host forwards (docker sets this too, and
/// never unsets it).
fn enable_ip_forward() -> Result<(), Error> {
    let path = Path::new("/proc/sys/net/ipv4/ip_forward");
    if fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    fs::write(path, "1").map_err(io_at(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_is_derived_from_the_address() {
        assert_eq!(mac_string(mac_for(Ipv4Addr::new(10, 89, 0, 2))), "02:42:0a:59:00:02");
    }

    #[test]
    fn network_names() {
        assert!(valid_name("a"));
        assert!(valid_name("my-net_1.x"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
    }
}
