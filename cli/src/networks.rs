//! `rbuild network ...`: bridge networks in the store, as docker's commands show them.

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::process::ExitCode;

use anyhow::{Result, bail};
use cache::Store;
use runtime::network::{CreateOptions, Network, Networks, Subnet};
use serde_json::{Value, json};

use crate::output::{Format, confirm, finish};

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

fn parse_subnet(s: &str) -> Result<Subnet, runtime::network::SubnetError> {
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
        NetworkCommand::Connect(a) => {
            runtime::connect::connect(store.root(), &a.network, &a.container, &a.aliases)?;
            Ok(ExitCode::SUCCESS)
        }
        NetworkCommand::Disconnect(a) => {
            runtime::connect::disconnect(store.root(), &a.network, &a.container, a.force)?;
            Ok(ExitCode::SUCCESS)
        }
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

const LS_FIELDS: &crate::output::Fields = &[
    ("ID", "NETWORK ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("Internal", "INTERNAL"),
    ("Labels", "LABELS"),
    ("CreatedAt", "CREATED"),
];

fn ls(nets: &Networks, a: LsArgs) -> Result<ExitCode> {
    let list = nets.list()?;
    let id = |n: &Network| if a.no_trunc { n.id.clone() } else { n.short_id().to_string() };
    if a.quiet {
        for n in &list {
            println!("{}", id(n));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let format = Format::for_list(
        a.format.as_deref().unwrap_or("table"),
        LS_FIELDS,
        "{{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
    )?;
    let rows: Vec<Value> = list
        .iter()
        .map(|n| {
            json!({
                "ID": id(n), "Name": n.name, "Driver": n.driver, "Scope": "local",
                "Internal": n.internal.to_string(), "Labels": labels_text(n), "CreatedAt": n.created,
            })
        })
        .collect();
    format.write_rows(LS_FIELDS, &rows, &mut io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

fn labels_text(n: &Network) -> String {
    n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

fn inspect(nets: &Networks, a: InspectArgs) -> Result<ExitCode> {
    let template = a.format.as_deref().map(Format::parse).transpose()?;
    let mut found = Vec::new();
    let mut failed = Vec::new();
    for name in &a.networks {
        let found_one = nets
            .get(name)
            .map_err(anyhow::Error::from)
            .and_then(|n| runtime::inspect::network(nets, &n).map_err(anyhow::Error::from));
        match found_one {
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
    if !a.force && !confirm("This will remove all custom networks not used by at least one container.")? {
        return Ok(ExitCode::SUCCESS);
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
