//! Cache keys: a step's key is sha256 over a version tag, its parent's key, its lowered
//! definition (the `Op` as JSON), and the content of what it reads from outside the Dockerfile
//! (context files, another stage's layers, an image's digest, a download). Same inputs, same
//! key, on any machine: that is what lets build farms share a cache.

use std::collections::HashMap;

use cache::{Digest, Hasher};
use frontend::{AddOp, ConfigOp, CopyFrom, Op, RunMount, RunOp, Step};

use crate::add;
use crate::error::{Result, StepError};
use crate::explain::KeyInputs;
use crate::schedule::{AtStep, Builder, State};

/// Files an ADD step downloaded while computing its key, by URL, for its execution to use.
pub(crate) type Downloads = HashMap<String, add::Download>;

/// What a step's key needs from outside the Dockerfile.
#[derive(Default)]
pub(crate) struct StepInputs {
    /// The content part of the key (COPY/ADD sources' checksum, URL digests, a stage's layers).
    pub key: String,
    /// Files an ADD downloaded to compute the key, for its execution to use.
    pub downloads: Downloads,
    /// Per-file checksums of context sources, for --explain-cache.
    pub files: Vec<(String, String)>,
    /// Context sources whose per-file list `files` leaves out until someone needs it.
    pub pending_files: Option<PendingFiles>,
}

/// A COPY's context sources, whose per-file checksums (`KeyInputs::files`) are only listed
/// when the explain record must be written or read: a no-op rebuild of 100,000 files does
/// not list them ([`Builder::list_pending_files`]).
pub(crate) struct PendingFiles {
    rels: Vec<std::path::PathBuf>,
    exclude: Vec<String>,
}

/// A step's key, what computing it downloaded, and what `--explain-cache` compares.
pub(crate) struct StepKey {
    pub key: Digest,
    /// `COPY --link`: the key of its layer alone, without the steps before.
    pub link: Option<Digest>,
    pub downloads: Downloads,
    pub inputs: KeyInputs,
    /// What `inputs.files` will hold once listed.
    pub pending_files: Option<PendingFiles>,
}

pub(crate) fn key_of(parts: &[&str]) -> Digest {
    let mut h = Hasher::new();
    h.update(b"rbuild-cache-key-v1");
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finish()
}

impl Builder<'_> {
    /// The key of `step` on `state`. `cmd_set`: a CMD came earlier in the stage (an ENTRYPOINT
    /// keeps it then, so the result differs).
    pub(crate) fn step_key(&self, state: &State, step: &Step, cmd_set: bool) -> Result<StepKey> {
        // An ARG's value is not part of its own key: like BuildKit, a changed build arg
        // invalidates the steps that use it (RUN sees it in its environment; an expansion
        // changes the op), not every step after the ARG.
        let op_json = match &step.op {
            Op::Config(ConfigOp::Arg(_)) => format!("ARG\t{}", step.text),
            // Proxies are not in the key (BuildKit's ProxyEnv is not either).
            Op::Run(run) if !run.proxy_env.is_empty() => {
                let mut keyed = run.clone();
                keyed.proxy_env.clear();
                serde_json::to_string(&Op::Run(keyed)).unwrap_or_default()
            }
            // Ops are plain data with string keys: serialization cannot fail.
            op => serde_json::to_string(op).unwrap_or_default(),
        };
        let StepInputs { key: inputs, downloads, files, pending_files } = self.inputs_key(step)?;
        let mut key_parts = vec!["step", state.key.as_str(), op_json.as_str(), inputs.as_str()];
        if matches!(step.op, Op::Config(ConfigOp::Entrypoint(_))) && cmd_set {
            key_parts.push("cmd-set");
        }
        // `--ulimit` and `--shm-size` are in a RUN's key, as in BuildKit (they are part of its
        // exec op there): what a step writes may depend on them. Cgroup limits are not.
        let limits = match &step.op {
            Op::Run(_) if self.options.limits != executor::ProcessLimits::default() => {
                serde_json::to_string(&self.options.limits).unwrap_or_default()
            }
            _ => String::new(),
        };
        if !limits.is_empty() {
            key_parts.push(limits.as_str());
        }
        // COPY --link: the layer's key holds the op, the destination as resolved against the
        // WORKDIR (which changes where files land) and the inputs; not the parent. The step's
        // own key still follows the parent, so later steps do.
        let link_dest = match &step.op {
            Op::Copy(c) if c.link => Some(&c.dest),
            Op::Add(a) if a.link => Some(&a.dest),
            _ => None,
        };
        let link = link_dest.map(|dest| {
            let dest = crate::ops::absolute_dest(state, dest);
            key_of(&["copy-link", op_json.as_str(), dest.as_str(), inputs.as_str()])
        });
        let key = match &link {
            Some(l) => key_of(&["step", state.key.as_str(), "link", l.as_str()]),
            None => key_of(&key_parts),
        };
        let build_args = match &step.op {
            Op::Run(r) => {
                let mut args: Vec<(String, String)> = r
                    .build_args
                    .iter()
                    .map(|a| {
                        a.split_once('=').map_or((a.clone(), String::new()), |(k, v)| (k.into(), v.into()))
                    })
                    .collect();
                args.sort();
                args
            }
            _ => vec![],
        };
        let inputs =
            KeyInputs { parent_key: state.key.to_string(), op: op_json, files, build_args, base: None };
        Ok(StepKey { key, link, downloads, inputs, pending_files })
    }

    /// Fills `inputs.files` from `pending` (once: it is taken).
    pub(crate) fn list_pending_files(&self, inputs: &mut KeyInputs, pending: &mut Option<PendingFiles>) {
        let Some(p) = pending.take() else { return };
        let exclude = crate::copy::exclude_rules(&p.exclude).ok().flatten();
        // The key was computed from the same sources, so this cannot fail but for a file that
        // vanished since; the record then lists nothing, as for a step without sources.
        if let Ok((_, files)) = self.context_checksum_excluding(&p.rels, exclude.as_ref()) {
            inputs.files = files;
        }
    }

    /// The part of a step's key that comes from outside the Dockerfile: the content of COPY
    /// and ADD sources (heredoc contents are in the op itself).
    /// Also returns the per-file checksums of context sources, for --explain-cache.
    fn inputs_key(&self, step: &Step) -> Result<StepInputs> {
        if let Op::Add(add) = &step.op {
            return self.add_inputs_key(add).at(step);
        }
        if let Op::Run(run) = &step.op {
            return self.run_inputs_key(step, run);
        }
        let Op::Copy(copy) = &step.op else { return Ok(StepInputs::default()) };
        match &copy.from {
            None => {
                let rels = self.context_sources(&copy.sources).at(step)?;
                let exclude = crate::copy::exclude_rules(&copy.exclude).at(step)?;
                let (sum, files) = self.context_checksum_key(&rels, exclude.as_ref()).at(step)?;
                Ok(match files {
                    Some(files) => StepInputs { key: sum.to_string(), files, ..Default::default() },
                    None => {
                        let pending_files = Some(PendingFiles { rels, exclude: copy.exclude.clone() });
                        StepInputs { key: sum.to_string(), pending_files, ..Default::default() }
                    }
                })
            }
            Some(CopyFrom::Stage(i)) => Ok(StepInputs { key: self.stage_key(*i)?, ..Default::default() }),
            Some(CopyFrom::Image(r)) => {
                let image = self.source_image(step, r, "--from=")?;
                Ok(StepInputs { key: image.digest.to_string(), ..Default::default() })
            }
        }
    }

    /// What a stage stands for in the key of a step that reads it (`COPY --from`, `RUN --mount
    /// from=`): its layers' content, so a rebuilt stage with the same files keeps the cache.
    fn stage_key(&self, index: usize) -> Result<String> {
        let stage = self.wait_stage(index)?;
        let ids: Vec<&str> = stage.layers.iter().map(|l| l.diff_id.as_str()).collect();
        Ok(key_of(&ids).to_string())
    }

    /// A RUN's inputs: the content of what its bind mounts show (context paths, stages,
    /// images). Cache mounts, tmpfs and secrets are not inputs: their content is not in the key.
    fn run_inputs_key(&self, step: &Step, run: &RunOp) -> Result<StepInputs> {
        let mut parts = Vec::new();
        let mut files = Vec::new();
        for m in &run.mounts {
            let RunMount::Bind { from, source, .. } = m else { continue };
            match from {
                None => {
                    let source = if source.is_empty() { ".".to_string() } else { source.clone() };
                    let rels = self.context_sources(&[source]).at(step)?;
                    let (sum, f) = self.context_checksum(&rels).at(step)?;
                    parts.push(sum.to_string());
                    files.extend(f);
                }
                Some(CopyFrom::Stage(i)) => parts.push(self.stage_key(*i)?),
                Some(CopyFrom::Image(r)) => {
                    let image = self.source_image(step, r, "--mount from=")?;
                    parts.push(image.digest.to_string());
                }
            }
        }
        Ok(StepInputs { key: parts.join("\n"), files, ..Default::default() })
    }

    /// ADD's inputs: the context sources' checksum, and per URL either its `--checksum`
    /// (nothing is downloaded to compute the key) or the downloaded content's digest and its
    /// `Last-Modified` (which becomes the file's mtime). Downloads are kept for the step.
    fn add_inputs_key(&self, add: &AddOp) -> std::result::Result<StepInputs, StepError> {
        let mut downloads = Downloads::new();
        let checksum = match &add.checksum {
            // A git source's checksum is its commit, checked below.
            Some(_) if !add.git.is_empty() => None,
            Some(c) => {
                if add.urls.len() != 1 || !add.sources.is_empty() || !add.heredocs.is_empty() {
                    return Err(add::DownloadError::ChecksumNeedsOneUrl.into());
                }
                Some(add::parse_checksum(c)?)
            }
            None => None,
        };
        // Every source, excluded or not: an archive is extracted even when --exclude names it,
        // and which sources are archives is known only when the step runs.
        let rels = self.context_sources(&add.sources)?;
        let (sum, files) = self.context_checksum(&rels)?;
        let mut parts = vec![sum.to_string()];
        for url in &add.urls {
            if let Some(c) = &checksum {
                parts.push(format!("{url}\t{c}"));
                continue;
            }
            let tmp = self.store.temp_file()?;
            let d = add::download(url, tmp, None)?;
            let modified = d.last_modified.map(|t| {
                t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0).to_string()
            });
            parts.push(format!("{url}\t{}\t{}", d.digest, modified.unwrap_or_default()));
            downloads.insert(url.clone(), d);
        }
        // A git source is its commit: a ref that moves is another input, the same commit the
        // same one (BuildKit keys git sources by commit too).
        for g in &add.git {
            let (remote, commit, subdir) = crate::remote::git_source_commit(g, add.checksum.as_deref())?;
            parts.push(format!(
                "git\t{remote}\t{commit}\t{}\t{}",
                subdir.unwrap_or_default(),
                add.keep_git_dir
            ));
        }
        Ok(StepInputs { key: parts.join("\n"), downloads, files, pending_files: None })
    }
}
