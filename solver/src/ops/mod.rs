//! What a step that missed the cache does: run its op on a snapshot of its parent's layers,
//! commit what changed as a layer, and record the result under its key. One file per op
//! family: `run.rs` (RUN), `files.rs` (COPY, ADD, WORKDIR), `config.rs` (the instructions that
//! change only the config).

pub(crate) mod config;
mod files;
mod run;

use std::path::{Path, PathBuf};

use cache::oci::{History, Layer};
use cache::{CacheRecord, Digest};
use frontend::{ConfigOp, InlineFile, Op, Step};
use hostutil::inroot;

use crate::copy::{self, FileError};
use crate::error::Result;
use crate::keys::Downloads;
use crate::schedule::{AtStep, Builder, State};
use crate::{StepName, now_rfc3339};

/// What a step's execution needs to know of the rest of its stage.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepFlags {
    /// A CMD was set earlier in the stage (BuildKit: ENTRYPOINT then resets only an
    /// inherited one).
    pub(crate) cmd_set: bool,
    /// Nothing later in the build needs the stage's rootfs: a COPY from the context may be
    /// written straight into its layer ([`crate::lazy_copy`]).
    pub(crate) lazy: bool,
}

impl Builder<'_> {
    /// Runs a step that missed the cache and stores its result under `key`.
    pub(crate) fn execute(
        &self,
        state: State,
        step: &Step,
        name: &StepName,
        flags: StepFlags,
        key: Digest,
        downloads: &mut Downloads,
    ) -> Result<State> {
        let StepFlags { cmd_set, lazy } = flags;
        let (layer, created_by) = match &step.op {
            Op::Run(run) => (self.run(&state, step, run, name)?, run.created_by.clone()),
            Op::Copy(copy) => (self.copy(&state, step, copy, lazy)?, copy.created_by.clone()),
            Op::Add(op) => (self.add(&state, step, op, downloads)?, op.created_by.clone()),
            Op::Config(_) => (None, step.text.clone()),
            Op::Workdir(dir) => (self.workdir(&state, step, dir)?, step.text.clone()),
        };
        let mut state = state;
        if let Op::Workdir(dir) = &step.op {
            state.config.config.working_dir = Some(dir.clone());
        }
        if let Op::Config(op) = &step.op {
            config::apply_config(&mut state.config.config, op, cmd_set);
            if let ConfigOp::Maintainer(name) = op {
                state.config.author = Some(name.clone());
            }
        }
        self.finish(state, step, layer, created_by, key)
    }

    /// `state` with the step's history entry and `layer` on top, stored under `key`.
    pub(crate) fn finish(
        &self,
        state: State,
        step: &Step,
        layer: Option<Layer>,
        created_by: String,
        key: Digest,
    ) -> Result<State> {
        let mut next = State { layers: state.layers, config: state.config, key };
        next.config.history.push(History {
            created: Some(now_rfc3339()),
            created_by: Some(created_by),
            comment: Some("rbuild".into()),
            empty_layer: layer.is_none(),
            ..Default::default()
        });
        if let Some(layer) = layer {
            next.config.rootfs.diff_ids.push(layer.diff_id.clone());
            next.layers.push(layer);
        }
        self.store
            .cache_put(&next.key, &CacheRecord::new(next.layers.clone(), next.config.clone()))
            .at(step)?;
        Ok(next)
    }

    /// `COPY --link` (and `ADD --link`): the copy onto nothing (an empty snapshot; the parent's
    /// WORKDIR still places relative destinations), its layer stored under `link`, the key of
    /// the layer alone.
    pub(crate) fn copy_link(
        &self,
        state: &State,
        step: &Step,
        link: &Digest,
        lazy: bool,
        downloads: &mut Downloads,
    ) -> Result<Option<Layer>> {
        let empty = State { layers: Vec::new(), config: state.config.clone(), key: state.key.clone() };
        let layer = match &step.op {
            Op::Copy(copy) => self.copy(&empty, step, copy, lazy)?,
            Op::Add(op) => self.add(&empty, step, op, downloads)?,
            _ => return Ok(None),
        };
        let record = CacheRecord::new(layer.iter().cloned().collect(), Default::default());
        self.store.cache_put(link, &record).at(step)?;
        Ok(layer)
    }

    /// The parent with a `COPY --link` layer merged on top, as the step's state under `key`.
    pub(crate) fn merge_link(
        &self,
        state: State,
        step: &Step,
        layer: Option<Layer>,
        key: Digest,
    ) -> Result<State> {
        let created_by = match &step.op {
            Op::Copy(copy) => copy.created_by.clone(),
            Op::Add(op) => op.created_by.clone(),
            _ => return Ok(state),
        };
        self.finish(state, step, layer, created_by, key)
    }

    /// Commits a snapshot's upperdir as a layer; `None` when the step changed nothing.
    fn commit(&self, snapshot: &cache::Snapshot, step: &Step) -> Result<Option<Layer>> {
        let upper = snapshot.upper();
        // What overlayfs copied up unchanged is no change (BuildKit's differ drops it too).
        cache::drop_unchanged_copy_ups(&upper, &snapshot.lowers)
            .map_err(|source| FileError::Io { op: "compare with the image", path: upper.clone(), source })
            .at(step)?;
        let empty = std::fs::read_dir(&upper)
            .map_err(|source| FileError::Io { op: "read", path: upper.clone(), source })
            .at(step)?
            .next()
            .is_none();
        if empty {
            return Ok(None);
        }
        let commit = cache::CommitOptions {
            compression: self.options.compression,
            source_date_epoch: self.options.source_date_epoch,
        };
        let layer = self.store.commit_layer(&upper, &commit).at(step)?;
        self.store.adopt_layer_dir(&layer, &upper).at(step)?;
        Ok(Some(layer))
    }
}

/// The sandbox's view of a snapshot: its layers, its upperdir and where to mount it.
pub(crate) fn sandbox_rootfs(snapshot: &cache::Snapshot) -> executor::Rootfs {
    executor::Rootfs {
        lowers: snapshot.lowers.clone(),
        upper: snapshot.upper(),
        work: snapshot.work(),
        target: snapshot.merged(),
    }
}

/// A COPY/ADD destination made absolute against the WORKDIR in effect, keeping (or adding,
/// for `.`) a trailing `/`.
pub(crate) fn absolute_dest(state: &State, dest: &str) -> String {
    let mut dest = dest.to_string();
    if dest == "." || dest.ends_with("/.") {
        dest.push('/');
    }
    if !dest.starts_with('/') {
        let wd = state.config.config.working_dir.clone().unwrap_or_default();
        dest = format!("{}/{dest}", wd.trim_end_matches('/'));
    }
    dest
}

/// With several sources (`total`, heredocs included) and a `dest` that is a directory (written
/// with a trailing `/`, or existing), returns it with the `/`, so each source goes inside. Only
/// heredocs (no file or URL source, `files == 0`): `dest` is taken as a directory (created if
/// missing), as their `dest/<name>` rule says. Files onto a `dest` that is no directory: `dest`
/// as it is, each source copied onto it in turn, as BuildKit does (no error, the last wins;
/// moby/buildkit#1853 keeps Docker's old "must be a directory" error unimplemented).
pub(crate) fn several_dest(root: &Path, dest: String, files: usize, total: usize) -> String {
    if total <= 1 || dest.ends_with('/') {
        return dest;
    }
    let is_dir = inroot::resolve(root, Path::new(&dest)).map(|p| p.is_dir()).unwrap_or(false);
    if !is_dir && files > 0 {
        return dest;
    }
    format!("{dest}/")
}

/// Writes heredoc files: with one source in all and a `dest` that is neither written as a
/// directory nor an existing one, `dest` is the file; otherwise `dest/<name>`. Mode 0644
/// unless `--chmod`.
pub(crate) fn write_heredocs(
    root: &Path,
    dest: &str,
    heredocs: &[InlineFile],
    total: usize,
    owner: (u32, u32),
    chmod: Option<u32>,
) -> std::result::Result<(), FileError> {
    for h in heredocs {
        let is_dir = dest.ends_with('/')
            || inroot::resolve(root, Path::new(dest)).map(|p| p.is_dir()).unwrap_or(false);
        let target = if total == 1 && !is_dir { PathBuf::from(dest) } else { Path::new(dest).join(&h.name) };
        copy::write_inline(root, &target, &mut h.content.as_bytes(), owner, chmod.unwrap_or(0o644))?;
    }
    Ok(())
}
