//! `rbuild network ...`: bridge networks in the store, as docker's commands show them.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::net::Ipv4Addr;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use cache::Store;
use runtime::NetworkRequest;
use runtime::container::{Container, Containers};
use runtime::network::{AttachRequest, CreateOptions, HostsFile, Network, Networks, Subnet};
use serde_json::{Value, json};

use crate::gotemplate::GoTemplate;

#[derive(Debug, clap::Subcommand)]
pub enum NetworkCommand {
    /// Create a bridge network; prints its id.
    Create(CreateArgs),
    /// List networks.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show networks as JSON (docker's format).
    Inspect(InspectArgs),
    /// Remove networks (not one a container is attached to).
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove every user-defined network no container is attached to.
    Prune(PruneArgs),
    /// Connect a container to a network (now if it runs, and at its next starts).
    Connect(ConnectArgs),
    /// Disconnect a container from a network.
    Disconnect(DisconnectArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The subnet, in CIDR form (default: a free /24 from 10.89.0.0 on).
    #[arg(long, value_name = "CIDR", value_parser = parse_subnet)]
    pub subnet: Option<Subnet>,
    /// The bridge's address (default: the subnet's first).
    #[arg(long, value_name = "IP")]
    pub gateway: Option<Ipv4Addr>,
    /// `KEY=VALUE` (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// No outbound access: containers reach only each other.
    #[arg(long)]
    pub internal: bool,
    /// Only `bridge` is supported.
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    pub name: String,
}

fn parse_subnet(s: &str) -> Result<Subnet, String> {
    s.parse()
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Only the ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Full ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// A Go template over `.ID`, `.Name`, `.Driver`, `.Scope`, `.Internal`, `.Labels`, `.CreatedAt`.
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A Go template over each network's JSON.
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true, value_name = "NETWORK")]
    pub networks: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    #[arg(required = true, value_name = "NETWORK")]
    pub networks: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// Another name of the container on this network (repeatable).
    #[arg(long = "alias", value_name = "NAME")]
    pub aliases: Vec<String>,
    pub network: String,
    pub container: String,
}

#[derive(Debug, clap::Args)]
pub struct DisconnectArgs {
    /// Also when the network is gone.
    #[arg(short, long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

pub fn network(store: &Store, cmd: NetworkCommand) -> Result<ExitCode> {
    let nets = Networks::open(store.root())?;
    match cmd {
        NetworkCommand::Create(a) => create(&nets, a),
        NetworkCommand::Ls(a) => ls(&nets, a),
        NetworkCommand::Inspect(a) => inspect(&nets, a),
        NetworkCommand::Rm(a) => rm(&nets, a),
        NetworkCommand::Prune(a) => prune(&nets, a),
        NetworkCommand::Connect(a) => connect(store, &nets, a),
        NetworkCommand::Disconnect(a) => disconnect(store, &nets, a),
    }
}

fn create(nets: &Networks, a: CreateArgs) -> Result<ExitCode> {
    if a.driver != "bridge" {
        bail!("network driver {:?} is not supported: rbuild makes bridge networks only", a.driver);
    }
    let mut labels = BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        if k.is_empty() {
            bail!("invalid label {l:?}: expected KEY=VALUE");
        }
        labels.insert(k.to_string(), v.to_string());
    }
    let opts = CreateOptions { subnet: a.subnet, gateway: a.gateway, labels, internal: a.internal };
    let n = nets.create(&a.name, &opts)?;
    println!("{}", n.id);
    Ok(ExitCode::SUCCESS)
}

/// Columns separated by at least three spaces, as docker's tabwriter prints them.
fn print_table(rows: &[Vec<String>]) -> io::Result<()> {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = io::stdout().lock();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == cols {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}", w = widths[c] + 3));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn ls(nets: &Networks, a: LsArgs) -> Result<ExitCode> {
    let list = nets.list()?;
    let id = |n: &Network| if a.no_trunc { n.id.clone() } else { n.short_id().to_string() };
    if a.quiet {
        for n in &list {
            println!("{}", id(n));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(format) = &a.format {
        let t = GoTemplate::parse(format)?;
        for n in &list {
            let v = json!({
                "ID": id(n), "Name": n.name, "Driver": n.driver, "Scope": "local",
                "Internal": n.internal, "Labels": labels_text(n), "CreatedAt": n.created,
            });
            println!("{}", t.render(&v)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![["NETWORK ID", "NAME", "DRIVER", "SCOPE"].map(String::from).to_vec()];
    rows.extend(list.iter().map(|n| vec![id(n), n.name.clone(), n.driver.clone(), "local".into()]));
    print_table(&rows)?;
    Ok(ExitCode::SUCCESS)
}

fn labels_text(n: &Network) -> String {
    n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// A network as `docker network inspect` shows it.
fn inspect_json(nets: &Networks, n: &Network) -> Result<Value> {
    let mut containers = serde_json::Map::new();
    let mut config = Vec::new();
    let mut options = serde_json::Map::new();
    if let Some(b) = &n.bridge {
        config.push(json!({"Subnet": b.subnet.to_string(), "Gateway": b.gateway.to_string()}));
        options.insert("com.docker.network.bridge.name".into(), json!(b.interface));
        for e in nets.endpoints(&n.id)? {
            containers.insert(
                e.container_id.clone(),
                json!({
                    "Name": e.container_name,
                    "MacAddress": e.mac,
                    "IPv4Address": format!("{}/{}", e.ip, e.prefix_len),
                    "IPv6Address": "",
                }),
            );
        }
    }
    Ok(json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": {}, "Config": config},
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigOnly": false,
        "Containers": containers,
        "Options": options,
        "Labels": n.labels,
    }))
}

/// Prints the errors of a command over several names (after what worked), as `rmi` does.
fn finish(mut failed: Vec<anyhow::Error>) -> Result<ExitCode> {
    match failed.len() {
        0 => Ok(ExitCode::SUCCESS),
        1 => Err(failed.remove(0)),
        _ => {
            io::stdout().flush()?;
            for e in &failed {
                eprintln!("rbuild: error: {e:#}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn inspect(nets: &Networks, a: InspectArgs) -> Result<ExitCode> {
    let template = a.format.as_deref().map(GoTemplate::parse).transpose()?;
    let mut found = Vec::new();
    let mut failed = Vec::new();
    for name in &a.networks {
        match nets.get(name).map_err(anyhow::Error::from).and_then(|n| inspect_json(nets, &n)) {
            Ok(v) => found.push(v),
            Err(e) => failed.push(e),
        }
    }
    match &template {
        Some(t) => {
            for v in &found {
                println!("{}", t.render(v)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&Value::Array(found))?),
    }
    finish(failed)
}

fn rm(nets: &Networks, a: RmArgs) -> Result<ExitCode> {
    let mut failed = Vec::new();
    for name in &a.networks {
        match nets.remove(name) {
            Ok(_) => println!("{name}"),
            Err(e) => failed.push(e.into()),
        }
    }
    finish(failed)
}

fn prune(nets: &Networks, a: PruneArgs) -> Result<ExitCode> {
    if !a.force {
        eprint!(
            "WARNING! This will remove all custom networks not used by at least one container.\n\
             Are you sure you want to continue? [y/N] "
        );
        io::stderr().flush()?;
        let mut answer = String::new();
        io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let removed = nets.prune()?;
    if !removed.is_empty() {
        println!("Deleted Networks:");
        for n in removed {
            println!("{}", n.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The container, reloaded under its lock (held by the returned guard).
fn locked(containers: &Containers, what: &str) -> Result<(Container, runtime::container::ContainerLock)> {
    let c = containers.find(what)?;
    let lock = containers.lock(c.id())?;
    let c = containers.load(c.id())?;
    Ok((c, lock))
}

/// Whether it runs now, with its network namespace: then connect/disconnect act at once.
fn live_netns(c: &Container) -> bool {
    c.is_alive() && runtime::network::is_netns(&c.netns_path())
}

fn connect(store: &Store, nets: &Networks, a: ConnectArgs) -> Result<ExitCode> {
    let network = nets.get(&a.network)?;
    if network.bridge.is_none() {
        bail!("cannot connect a container to network {}: only bridge networks can be", network.name);
    }
    let containers = Containers::open(store.root())?;
    let (mut c, _lock) = locked(&containers, &a.container)?;
    let mut list = match &c.config.host.network {
        NetworkRequest::Bridge(list) => list.clone(),
        NetworkRequest::Host => {
            bail!("container {} uses the host's network: it cannot join another", c.name())
        }
        NetworkRequest::None => bail!("container {} has --network none: it cannot join a network", c.name()),
        NetworkRequest::Container(_) => {
            bail!("container {} shares another container's network: it cannot join another", c.name())
        }
    };
    if list.iter().any(|n| *n == network.name || *n == network.id)
        || c.state.endpoints.iter().any(|e| e.network_id == network.id)
    {
        bail!("container {} is already connected to network {}", c.name(), network.name);
    }
    if live_netns(&c) {
        let used: Vec<&str> = c.state.endpoints.iter().map(|e| e.ifname.as_str()).collect();
        let ifname =
            (0..).map(|i| format!("eth{i}")).find(|n| !used.contains(&n.as_str())).unwrap_or_default();
        let mut aliases = c.config.host.network_aliases.clone();
        aliases.extend(a.aliases.iter().cloned());
        let hostname = if c.config.config.hostname.is_empty() {
            c.id().short().to_string()
        } else {
            c.config.config.hostname.clone()
        };
        let (hosts_path, netns) = (c.hosts_path(), c.netns_path());
        let req = AttachRequest {
            container_id: c.id().as_str(),
            name: c.name(),
            aliases: &aliases,
            netns: &netns,
            ifname: &ifname,
            hosts: HostsFile { path: &hosts_path, hostname: &hostname, extra: &c.config.host.extra_hosts },
        };
        let endpoint = nets.attach(&network.id, &req)?;
        c.state.endpoints.push(endpoint);
        if let Err(e) = containers.save_state(&c) {
            let _ = nets.detach(&network.id, c.id().as_str());
            return Err(e).context("recording the new endpoint");
        }
    }
    // Kept for the next starts, as docker does.
    list.push(network.name.clone());
    c.config.host.network = NetworkRequest::Bridge(list);
    containers.save_config(&c)?;
    Ok(ExitCode::SUCCESS)
}

fn disconnect(store: &Store, nets: &Networks, a: DisconnectArgs) -> Result<ExitCode> {
    let containers = Containers::open(store.root())?;
    let (mut c, _lock) = locked(&containers, &a.container)?;
    let network = match nets.get(&a.network) {
        Ok(n) => Some(n),
        Err(runtime::network::Error::NotFound(_)) if a.force => None,
        Err(e) => return Err(e.into()),
    };
    let matches = |name_or_id: &str| match &network {
        Some(n) => name_or_id == n.name || name_or_id == n.id,
        None => name_or_id == a.network,
    };
    let NetworkRequest::Bridge(list) = &c.config.host.network else {
        bail!("container {} is not connected to network {}", c.name(), a.network);
    };
    let in_config = list.iter().any(|n| matches(n));
    let endpoint = c.state.endpoints.iter().position(|e| matches(&e.network_id) || matches(&e.network));
    if !in_config && endpoint.is_none() {
        bail!("container {} is not connected to network {}", c.name(), a.network);
    }
    if let Some(i) = endpoint {
        if let Some(n) = &network {
            nets.detach(&n.id, c.id().as_str())?;
        }
        c.state.endpoints.remove(i);
        containers.save_state(&c)?;
    }
    let list: Vec<String> = list.iter().filter(|n| !matches(n)).cloned().collect();
    c.config.host.network = NetworkRequest::Bridge(list);
    containers.save_config(&c)?;
    Ok(ExitCode::SUCCESS)
}
