//! `rbuild volume ...` (being written).

use std::process::ExitCode;

use anyhow::Result;
use cache::Store;

#[derive(Debug, clap::Subcommand)]
pub enum VolumeCommand {
    /// List volumes.
    Ls,
}

pub fn volume(_store: &Store, _cmd: VolumeCommand) -> Result<ExitCode> {
    anyhow::bail!("volume: not written yet")
}
