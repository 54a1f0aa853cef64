//! `rbuild network ...` (being written).

use std::process::ExitCode;

use anyhow::Result;
use cache::Store;

#[derive(Debug, clap::Subcommand)]
pub enum NetworkCommand {
    /// List networks.
    Ls,
}

pub fn network(_store: &Store, _cmd: NetworkCommand) -> Result<ExitCode> {
    anyhow::bail!("network: not written yet")
}
