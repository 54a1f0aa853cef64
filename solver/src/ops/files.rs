//! COPY, ADD and WORKDIR: files written into a snapshot mounted in rbuild's own namespace
//! (no sandbox), every destination resolved inside the image root.

use std::path::{Path, PathBuf};

use cache::oci::Layer;
use frontend::{AddOp, CopyFrom, CopyOp, Step};
use hostutil::inroot;

use crate::add;
use crate::copy::{self, FileError};
use crate::error::{Result, StepError};
use crate::fsutil;
use crate::keys::Downloads;
use crate::ops::{absolute_dest, several_dest, write_heredocs};
use crate::schedule::{AtStep, Builder, State};

/// Where `COPY --parents` starts the path it keeps for a source pattern's matches: the part
/// before a `/./` pivot (BuildKit's), else the root.
fn pivot(pattern: &str) -> PathBuf {
    match pattern.trim_start_matches("./").split_once("/./") {
        Some((before, _)) => fsutil::clean_relative(before),
        None => PathBuf::new(),
    }
}

/// Seconds since 1970, now.
fn unix_now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// An owner that `--chown=SPEC` could not give.
fn chown_flag(spec: &str) -> impl FnOnce(FileError) -> StepError + '_ {
    move |e| StepError::of_flag(format!("--chown={spec}"))(e.into())
}

/// Reading `path` failed.
fn read_err(path: &Path) -> impl Fn(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io { op: "read", path: path.to_path_buf(), source }
}

impl Builder<'_> {
    /// COPY. `lazy`: nothing later in the build needs this stage's rootfs, so a COPY from the
    /// context may be written straight into its layer ([`crate::lazy_copy`]).
    pub(super) fn copy(
        &self,
        state: &State,
        step: &Step,
        copy: &CopyOp,
        lazy: bool,
    ) -> Result<Option<Layer>> {
        if lazy
            && copy.from.is_none()
            && !copy.parents
            && copy.heredocs.is_empty()
            && let Some(layer) = self.copy_lazily(state, step, copy)?
        {
            return Ok(layer);
        }
        self.ensure_layers(&state.layers)?;
        let snapshot = self.store.create_snapshot(&state.layers).at(step)?;
        let mounted = snapshot.mount().at(step)?;
        let root = mounted.target.clone();
        let dest = absolute_dest(state, &copy.dest);
        let owner = match &copy.chown {
            Some(spec) => {
                let (u, g) = copy::resolve_chown(&root, spec).map_err(chown_flag(spec)).at(step)?;
                copy::Owner::Set(u, g)
            }
            None if copy.from.is_none() => copy::Owner::Set(0, 0),
            None => copy::Owner::Keep,
        };
        let src_layers = match &copy.from {
            None => None,
            Some(CopyFrom::Stage(i)) => Some(self.wait_stage(*i)?.layers),
            Some(CopyFrom::Image(r)) => Some(self.store.resolve(r).at(step)?.layers()),
        };
        let source_mount = match &src_layers {
            Some(layers) => {
                self.ensure_layers(layers)?;
                Some(self.store.mount_readonly(layers).at(step)?)
            }
            None => None,
        };
        let ctx = match &copy.from {
            None => Some(self.context().at(step)?),
            Some(_) => None,
        };
        let src_root: &Path = match (&source_mount, ctx) {
            (Some(view), _) => view.path(),
            (None, Some(ctx)) => ctx.root(),
            (None, None) => unreachable!("a COPY reads from the context or a mounted stage"),
        };
        let include = |rel: &Path| ctx.is_none_or(|c| c.includes(rel));
        // Each source pattern's matches, in order, with the pivot `--parents` keeps paths below.
        let mut groups: Vec<(PathBuf, Vec<PathBuf>)> = Vec::new();
        for src in &copy.sources {
            let found = match &copy.from {
                None => self.context_sources(std::slice::from_ref(src)).at(step)?,
                Some(_) => {
                    let found = fsutil::match_sources(src_root, src)
                        .map_err(|source| StepError::Pattern { pattern: src.clone(), source })
                        .at(step)?;
                    if found.is_empty() {
                        return Err(StepError::NotInStage { pattern: src.clone() }).at(step);
                    }
                    found
                }
            };
            groups.push((pivot(src), found));
        }
        let sources: Vec<PathBuf> = groups.iter().flat_map(|(_, m)| m.iter().cloned()).collect();
        let total = sources.len() + copy.heredocs.len();
        let exclude = copy::exclude_rules(&copy.exclude).at(step)?;
        let run = |sources: &[PathBuf], dest: &str| {
            let job = copy::CopyJob {
                src_root,
                sources,
                dest,
                owner,
                chmod: copy.chmod,
                include: Some(&include),
                exclude: exclude.as_ref(),
            };
            copy::copy(&root, &job)
        };
        let dest = if copy.parents {
            // Each match below `dest` with its directories (from its source's `/./` pivot).
            let dest = format!("{}/", dest.trim_end_matches('/'));
            for (pivot, rel) in groups.iter().flat_map(|(p, m)| m.iter().map(move |r| (p, r))) {
                let kept = rel.strip_prefix(pivot).unwrap_or(rel);
                let is_dir = inroot::resolve(src_root, rel).is_ok_and(|p| p.is_dir());
                let at = if is_dir { Some(kept) } else { kept.parent() };
                let target = match at.filter(|p| !p.as_os_str().is_empty()) {
                    Some(p) => format!("{dest}{}/", p.display()),
                    None => dest.clone(),
                };
                run(std::slice::from_ref(rel), &target).at(step)?;
            }
            dest
        } else {
            let dest = several_dest(&root, dest, sources.len(), total);
            run(&sources, &dest).at(step)?;
            dest
        };
        let inline_owner = match owner {
            copy::Owner::Set(u, g) => (u, g),
            copy::Owner::Keep => (0, 0),
        };
        write_heredocs(&root, &dest, &copy.heredocs, total, inline_owner, copy.chmod).at(step)?;
        drop(source_mount);
        drop(mounted);
        self.commit(&snapshot, step)
    }

    /// A COPY from the context planned against the parent's rootfs (mounted read-only) and
    /// committed from the list; `None` when the plan leaves it to the eager copy, whose errors
    /// are the step's too.
    fn copy_lazily(&self, state: &State, step: &Step, copy: &CopyOp) -> Result<Option<Option<Layer>>> {
        self.ensure_layers(&state.layers)?;
        let view = self.store.mount_readonly(&state.layers).at(step)?;
        let root = view.path();
        let owner = match &copy.chown {
            Some(spec) => match copy::resolve_chown(root, spec) {
                Ok((u, g)) => copy::Owner::Set(u, g),
                Err(_) => return Ok(None),
            },
            None => copy::Owner::Set(0, 0),
        };
        let ctx = self.context().at(step)?;
        let Ok(sources) = self.context_sources(&copy.sources) else { return Ok(None) };
        let Ok(exclude) = copy::exclude_rules(&copy.exclude) else { return Ok(None) };
        let include = |rel: &Path| ctx.includes(rel);
        let dest = several_dest(root, absolute_dest(state, &copy.dest), sources.len(), sources.len());
        let job = copy::CopyJob {
            src_root: ctx.root(),
            sources: &sources,
            dest: &dest,
            owner,
            chmod: copy.chmod,
            include: Some(&include),
            exclude: exclude.as_ref(),
        };
        let Some(entries) = crate::lazy_copy::plan(root, &job, unix_now()) else { return Ok(None) };
        if entries.is_empty() {
            return Ok(Some(None));
        }
        let commit = cache::CommitOptions {
            compression: self.options.compression,
            source_date_epoch: self.options.source_date_epoch,
        };
        let layer = self.store.commit_entries(entries, &commit).at(step)?;
        Ok(Some(Some(layer)))
    }

    /// ADD: context sources (tar archives extracted), URLs (downloaded), heredocs.
    pub(super) fn add(
        &self,
        state: &State,
        step: &Step,
        op: &AddOp,
        prefetched: &mut Downloads,
    ) -> Result<Option<Layer>> {
        let sources = self.context_sources(&op.sources).at(step)?;
        // Download what the key did not need (with --checksum, or on a miss after a hit
        // elsewhere): before mounting anything, so a failure writes nothing.
        let checksum = match op.git.is_empty() {
            true => op.checksum.as_deref().map(add::parse_checksum).transpose().at(step)?,
            false => None,
        };
        // Git sources, checked out at the commit their ref names (before mounting anything).
        let git_dir = self.store.temp_dir("add-git-").at(step)?;
        let mut trees = Vec::new();
        for (i, g) in op.git.iter().enumerate() {
            let (remote, commit, subdir) =
                crate::remote::git_source_commit(g, op.checksum.as_deref()).at(step)?;
            let dir = git_dir.path().join(i.to_string());
            std::fs::create_dir(&dir).map_err(read_err(&dir)).at(step)?;
            crate::remote::git_checkout(&remote, Some(&commit), &dir, op.keep_git_dir).at(step)?;
            let tree = PathBuf::from(
                subdir.map_or(".".into(), |s| fsutil::clean_relative(&s).display().to_string()),
            );
            if !inroot::resolve(&dir, &tree).is_ok_and(|p| p.is_dir()) {
                let subdir = tree.display().to_string();
                return Err(crate::RemoteError::Subdir { url: remote, subdir }).at(step);
            }
            trees.push((dir, tree));
        }
        let mut downloads = Vec::new();
        for url in &op.urls {
            let d = match prefetched.remove(url) {
                Some(d) => d,
                None => {
                    let tmp = self.store.temp_file().at(step)?;
                    add::download(url, tmp, checksum.as_deref()).at(step)?
                }
            };
            downloads.push((url, d));
        }
        self.ensure_layers(&state.layers)?;
        let snapshot = self.store.create_snapshot(&state.layers).at(step)?;
        let mounted = snapshot.mount().at(step)?;
        let root = mounted.target.clone();
        let dest = absolute_dest(state, &op.dest);
        let owner = match &op.chown {
            Some(spec) => Some(copy::resolve_chown(&root, spec).map_err(chown_flag(spec)).at(step)?),
            None => None,
        };
        let total = sources.len() + op.urls.len() + op.heredocs.len();
        let dest = several_dest(&root, dest, sources.len() + op.urls.len(), total);
        let tmp = self.store.temp_dir("add-").at(step)?;
        let ctx = self.context().at(step)?;
        let include = |rel: &Path| ctx.includes(rel);
        let exclude = copy::exclude_rules(&op.exclude).at(step)?;
        for rel in &sources {
            let src = inroot::resolve(ctx.root(), rel).map_err(read_err(rel)).at(step)?;
            let is_file = std::fs::metadata(&src).map(|m| m.is_file()).unwrap_or(false);
            let kind = match (is_file, op.unpack) {
                (true, None | Some(true)) => add::archive_kind(&src).map_err(read_err(rel)).at(step)?,
                _ => None,
            };
            match kind {
                Some(kind) => {
                    add::extract(&root, &src, kind, Path::new(&dest), owner, op.chmod, tmp.path())
                        .at(step)?;
                }
                None => {
                    let job = copy::CopyJob {
                        src_root: ctx.root(),
                        sources: std::slice::from_ref(rel),
                        dest: &dest,
                        owner: copy::Owner::Set(owner.map_or(0, |o| o.0), owner.map_or(0, |o| o.1)),
                        chmod: op.chmod,
                        include: Some(&include),
                        exclude: exclude.as_ref(),
                    };
                    copy::copy(&root, &job).at(step)?;
                }
            }
        }
        for (dir, tree) in &trees {
            // The repository's tree into `dest`, a directory, owned by root (or --chown).
            let job = copy::CopyJob {
                src_root: dir,
                sources: std::slice::from_ref(tree),
                dest: &dest,
                owner: copy::Owner::Set(owner.map_or(0, |o| o.0), owner.map_or(0, |o| o.1)),
                chmod: op.chmod,
                include: None,
                exclude: exclude.as_ref(),
            };
            copy::copy(&root, &job).at(step)?;
        }
        let file_owner = owner.unwrap_or((0, 0));
        for (url, d) in &downloads {
            // `--unpack=true`: a downloaded archive is extracted as a local one would be.
            if op.unpack == Some(true)
                && let Some(kind) =
                    add::archive_kind(d.file.path()).map_err(read_err(d.file.path())).at(step)?
            {
                add::extract(&root, d.file.path(), kind, Path::new(&dest), owner, op.chmod, tmp.path())
                    .at(step)?;
                continue;
            }
            let dest_dir = dest.ends_with('/')
                || inroot::resolve(&root, Path::new(&dest)).map(|p| p.is_dir()).unwrap_or(false);
            let target = if dest_dir {
                let name = add::url_file_name(url)
                    .ok_or_else(|| add::DownloadError::Unnamed(url.to_string()))
                    .at(step)?;
                Path::new(&dest).join(name)
            } else {
                PathBuf::from(&dest)
            };
            let mut content = std::fs::File::open(d.file.path()).map_err(read_err(d.file.path())).at(step)?;
            copy::write_inline(&root, &target, &mut content, file_owner, op.chmod.unwrap_or(0o600))
                .at(step)?;
            if let Some(t) = d.last_modified {
                let p = inroot::resolve(&root, &target).map_err(read_err(&target)).at(step)?;
                std::fs::File::options()
                    .write(true)
                    .open(&p)
                    .and_then(|f| f.set_modified(t))
                    .map_err(|source| FileError::Io { op: "set the mtime of", path: target.clone(), source })
                    .at(step)?;
            }
        }
        write_heredocs(&root, &dest, &op.heredocs, total, file_owner, op.chmod).at(step)?;
        drop(tmp);
        drop(downloads);
        drop(mounted);
        self.commit(&snapshot, step)
    }

    /// WORKDIR: `mkdir -p` of `dir` owned by the USER in effect (see [`copy::resolve_user`]),
    /// mode 0755; existing directories are left alone, so nothing created → no layer.
    pub(super) fn workdir(&self, state: &State, step: &Step, dir: &str) -> Result<Option<Layer>> {
        self.ensure_layers(&state.layers)?;
        let snapshot = self.store.create_snapshot(&state.layers).at(step)?;
        let mounted = snapshot.mount().at(step)?;
        let user = state.config.config.user.clone().unwrap_or_default();
        let owner = copy::resolve_user(&mounted.target, &user)
            .map_err(|e| StepError::of_flag(format!("USER {user}"))(e.into()))
            .at(step)?;
        let dir = absolute_dest(state, dir);
        copy::mkdir_all(&mounted.target, Path::new(&dir), owner).at(step)?;
        drop(mounted);
        self.commit(&snapshot, step)
    }
}
