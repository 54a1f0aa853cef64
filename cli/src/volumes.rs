//! `rbuild volume create|ls|inspect|rm|prune`, with docker's output: the same columns, JSON
//! fields, prompts and messages.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Result, bail};
use cache::Store;
use runtime::filters::Filters;
use runtime::volume::{self, Volumes};
use serde_json::Value;

use crate::output::{confirm, human_size, tabulate};

#[derive(Debug, clap::Subcommand)]
pub enum VolumeCommand {
    /// Create a volume (an existing one of that name is kept) and print its name.
    Create(CreateArgs),
    /// List volumes.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show volumes as docker-compatible JSON.
    Inspect(InspectArgs),
    /// Remove volumes; one a container uses (running or not) is refused.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove the anonymous volumes no container uses (with -a, every unused volume).
    Prune(PruneArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The name (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`); a random 64-hex-digit one if none.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// A label, `KEY=VALUE` (or `KEY`, empty); may be repeated.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// The volume driver: only `local` exists.
    #[arg(short, long, default_value = "local")]
    pub driver: String,
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Only the names.
    #[arg(short, long)]
    pub quiet: bool,
    /// `dangling=true|false` (used by no container or by some), `name=TEXT` (part of the
    /// name), `label=KEY[=VALUE]`, `driver=local`; the same key repeated matches any of its
    /// values, different keys must all match.
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    #[arg(value_name = "VOLUME", required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// A volume that does not exist is no error (one in use is still refused, as docker does).
    #[arg(short, long)]
    pub force: bool,
    #[arg(value_name = "VOLUME", required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Every volume no container uses, named ones too.
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

pub fn volume(store: &Store, cmd: VolumeCommand) -> Result<ExitCode> {
    let volumes = Volumes::open(store.root())?;
    match cmd {
        VolumeCommand::Create(a) => create(&volumes, a),
        VolumeCommand::Ls(a) => ls(store, &volumes, a),
        VolumeCommand::Inspect(a) => inspect(&volumes, a),
        VolumeCommand::Rm(a) => rm(store, &volumes, a),
        VolumeCommand::Prune(a) => prune(store, &volumes, a),
    }
}

fn create(volumes: &Volumes, a: CreateArgs) -> Result<ExitCode> {
    if a.driver != "local" {
        bail!(
            "create {}: volume driver {:?} is not supported: only \"local\" is",
            a.name.as_deref().unwrap_or(""),
            a.driver
        );
    }
    let mut labels = BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() {
            bail!("invalid argument {l:?} for \"--label\" flag: a label needs a key (KEY=VALUE)");
        }
        labels.insert(k.to_string(), v.to_string());
    }
    let v = volumes.create(a.name.as_deref(), labels, false)?;
    println!("{}", v.name);
    Ok(ExitCode::SUCCESS)
}

fn ls(store: &Store, volumes: &Volumes, a: LsArgs) -> Result<ExitCode> {
    let filters = Filters::for_volumes(&a.filters)?;
    let used = volume::volume_users(store.root())?;
    let mut list = volumes.list()?;
    list.retain(|v| filters.matches_volume(v, used.contains_key(&v.name)));
    list.sort_by(|x, y| natural_cmp(&x.name, &y.name));
    let mut out = io::stdout().lock();
    if a.quiet {
        for v in &list {
            writeln!(out, "{}", v.name)?;
        }
    } else {
        let mut lines = vec!["DRIVER\tVOLUME NAME".to_string()];
        lines.extend(list.iter().map(|v| format!("{}\t{}", v.driver(), v.name)));
        out.write_all(tabulate(&lines).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Names in natural order, as docker's `volume ls` sorts them: runs of digits compare as
/// numbers (`v2` before `v10`).
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.chars().next(), b.chars().next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                let db = b.find(|c: char| !c.is_ascii_digit()).unwrap_or(b.len());
                let (na, nb) = (a[..da].trim_start_matches('0'), b[..db].trim_start_matches('0'));
                let order = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb)).then_with(|| da.cmp(&db));
                if order.is_ne() {
                    return order;
                }
                (a, b) = (&a[da..], &b[db..]);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                (a, b) = (&a[x.len_utf8()..], &b[y.len_utf8()..]);
            }
        }
    }
}

/// Like `docker volume inspect`: the JSON array of those found, then each missing one as an
/// error, exit 1 if any is missing.
fn inspect(volumes: &Volumes, a: InspectArgs) -> Result<ExitCode> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in &a.names {
        match volumes.get(name) {
            Ok(v) => found.push(runtime::inspect::volume(&v)),
            Err(e @ volume::Error::NotFound(_)) => missing.push(e),
            Err(e) => return Err(e.into()),
        }
    }
    println!("{}", serde_json::to_string_pretty(&Value::Array(found))?);
    for e in &missing {
        eprintln!("rbuild: error: {e}");
    }
    Ok(if missing.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Each name removed is printed; each refusal is an error line; exit 1 if any failed.
fn rm(store: &Store, volumes: &Volumes, a: RmArgs) -> Result<ExitCode> {
    let users = volume::volume_users(store.root())?;
    let mut failed = false;
    for name in &a.names {
        let ids = users.get(name).map(Vec::as_slice).unwrap_or_default();
        match volumes.remove(name, ids, a.force) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("rbuild: error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn prune(store: &Store, volumes: &Volumes, a: PruneArgs) -> Result<ExitCode> {
    let warning = if a.all {
        "This will remove all local volumes not used by at least one container."
    } else {
        "This will remove anonymous local volumes not used by at least one container."
    };
    if !a.force && !confirm(warning)? {
        return Ok(ExitCode::SUCCESS);
    }
    let in_use: BTreeSet<String> = volume::volume_users(store.root())?.into_keys().collect();
    let removed = volumes.prune(&in_use, a.all)?;
    let mut out = io::stdout().lock();
    if !removed.is_empty() {
        writeln!(out, "Deleted Volumes:")?;
        for (name, _) in &removed {
            writeln!(out, "{name}")?;
        }
        writeln!(out)?;
    }
    let total = removed.iter().map(|(_, bytes)| bytes).sum();
    writeln!(out, "Total reclaimed space: {}", human_size(total, 3))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_naturally() {
        let mut names = vec!["v10", "v2", "b", "a1", "v02", "v1"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["a1", "b", "v1", "v2", "v02", "v10"]);
    }
}
