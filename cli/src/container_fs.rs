//! `rbuild cp`, `diff` and `commit`: a container's files (being written).

use std::process::ExitCode;

use anyhow::Result;
use cache::Store;

#[derive(Debug, clap::Args)]
pub struct CpArgs {
    /// `CONTAINER:SRC_PATH DEST_PATH|-` or `SRC_PATH|- CONTAINER:DEST_PATH`
    pub src: String,
    pub dest: String,
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    pub container: String,
}

#[derive(Debug, clap::Args)]
pub struct CommitArgs {
    pub container: String,
    pub reference: Option<String>,
}

pub fn cp(_store: &Store, _a: CpArgs) -> Result<ExitCode> {
    anyhow::bail!("cp: not written yet")
}

pub fn diff(_store: &Store, _a: DiffArgs) -> Result<ExitCode> {
    anyhow::bail!("diff: not written yet")
}

pub fn commit(_store: &Store, _a: CommitArgs) -> Result<ExitCode> {
    anyhow::bail!("commit: not written yet")
}
