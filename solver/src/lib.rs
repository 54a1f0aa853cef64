//! The solver: runs a lowered Dockerfile (a [`frontend::BuildDefinition`]) against the store.
//!
//! For every step it computes a cache key from the step's definition, its parent's key and the
//! content of its inputs; a key found in the build-cache index reuses the stored result without
//! running anything. Otherwise RUN executes in the executor's sandbox over an overlay snapshot,
//! COPY writes into a mounted snapshot, and the snapshot's upperdir is committed as a layer.
//! It never parses Dockerfiles and never touches namespaces itself.

mod add;
mod checksum;
mod copy;
mod error;
mod fsutil;
mod time;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cache::oci::{self, ContainerConfig, History, ImageConfig, Layer, RootFs};
use cache::{CacheRecord, Compression, Digest, Hasher, Image, ImageRef, Store};
use frontend::{
    AddOp, Base, BuildDefinition, ConfigOp, CopyFrom, CopyOp, Healthcheck, InlineFile, Op, RunOp, Stage, Step,
};

pub use error::{Error, ErrorKind, Result};
pub use time::now_rfc3339;

/// The environment PATH of an image that sets none, as BuildKit gives `FROM scratch`.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The context directory (must exist).
    pub context: PathBuf,
    /// The Dockerfile's text and the name errors call it by ([`build`] only: not read by
    /// [`build_definition`], nor are `build_args` and `target`, which lowering consumed).
    pub dockerfile: String,
    pub dockerfile_name: String,
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    pub tags: Vec<ImageRef>,
    /// Run every step even when its key is cached (results are still stored).
    pub no_cache: bool,
}

/// How progress output names a step: `[stage-0 2/5] RUN echo hi`.
#[derive(Debug, Clone)]
pub struct StepName {
    pub stage: String,
    pub index: usize,
    pub total: usize,
    pub text: String,
}

impl std::fmt::Display for StepName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} {}/{}] {}", self.stage, self.index, self.total, self.text)
    }
}

/// Progress of a build, for the CLI to show.
pub enum Event<'a> {
    Warning(&'a str),
    /// A step starts running (it was not cached).
    Started(&'a StepName),
    /// A step's result was found in the cache.
    Cached(&'a StepName),
    /// A line of a RUN step's output.
    Output(&'a StepName, &'a str),
    Finished(&'a StepName, Duration),
}

pub trait Progress {
    fn event(&self, event: Event<'_>);
}

/// What a build produced.
#[derive(Debug)]
pub struct BuildOutput {
    pub image: Image,
    /// Steps that ran (RUN, COPY and config changes that missed the cache).
    pub executed: usize,
    pub cached: usize,
}

/// The state of an image while its stage is built: layers, config, and the cache key that
/// produced it.
#[derive(Debug, Clone)]
struct State {
    layers: Vec<Layer>,
    config: ImageConfig,
    key: Digest,
}

struct Resolver<'a>(&'a Store);

impl frontend::ImageResolver for Resolver<'_> {
    fn resolve(&self, reference: &str) -> std::result::Result<frontend::BaseConfig, String> {
        let image = self.0.resolve(reference).map_err(|e| match e {
            cache::Error::ImageNotFound(_) => format!(
                "image {reference:?} is not in the store (add it with `rbuild import` or `rbuild load`)"
            ),
            e => e.to_string(),
        })?;
        Ok(frontend::BaseConfig {
            env: image.config.config.env.clone().unwrap_or_default(),
            working_dir: image.config.config.working_dir.clone(),
            on_build: image.config.config.on_build.clone().unwrap_or_default(),
        })
    }
}

/// Builds `options` into the store, tags the result, and returns it: [`lower`], then
/// [`build_definition`].
pub fn build(store: &Store, options: &BuildOptions, progress: &dyn Progress) -> Result<BuildOutput> {
    let def = lower(store, options)?;
    build_definition(store, &def, options, progress)
}

/// Parses and lowers `options.dockerfile` (with its build args and target), answering
/// questions about base images from `store`. Builds nothing.
pub fn lower(store: &Store, options: &BuildOptions) -> Result<BuildDefinition> {
    let lower =
        frontend::LowerOptions { build_args: options.build_args.clone(), target: options.target.clone() };
    Ok(frontend::build_definition(&options.dockerfile_name, &options.dockerfile, &lower, &Resolver(store))?)
}

/// Builds an already lowered definition into the store, tags the result with `options.tags`,
/// and returns it. Of `options`, only `context`, `tags` and `no_cache` are read. `def`'s
/// warnings are reported as [`Event::Warning`]s.
pub fn build_definition(
    store: &Store,
    def: &BuildDefinition,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuildOutput> {
    check_definition(def)?;
    for w in &def.warnings {
        progress.event(Event::Warning(w));
    }
    let mut builder = Builder {
        store,
        options,
        progress,
        def,
        states: vec![None; def.stages.len()],
        executed: 0,
        cached: 0,
        downloads: HashMap::new(),
    };
    let state = builder.stage(def.target)?;
    let mut config = state.config.clone();
    config.created = config.history.last().and_then(|h| h.created.clone());
    let image = store.put_image(&config, &state.layers)?;
    for tag in &options.tags {
        store.tag(tag, &image.digest)?;
    }
    Ok(BuildOutput { image, executed: builder.executed, cached: builder.cached })
}

struct Builder<'a> {
    store: &'a Store,
    options: &'a BuildOptions,
    progress: &'a dyn Progress,
    def: &'a BuildDefinition,
    states: Vec<Option<State>>,
    executed: usize,
    cached: usize,
    /// URLs of the current ADD step downloaded while computing its key, by URL.
    downloads: HashMap<String, add::Download>,
}

/// Rejects definitions that would make the build loop index out of range or recurse: the
/// target and every stage a stage uses must exist, and be earlier stages.
fn check_definition(def: &BuildDefinition) -> Result<()> {
    let bad = |message: String| Err(ErrorKind::Definition(message).into());
    if def.target >= def.stages.len() {
        return bad(format!("target stage {} does not exist ({} stages)", def.target, def.stages.len()));
    }
    for (i, stage) in def.stages.iter().enumerate() {
        for dep in stage_deps(stage) {
            if dep >= i {
                return bad(format!("stage {i} uses stage {dep}, which is not an earlier stage"));
            }
        }
    }
    Ok(())
}

impl Builder<'_> {
    /// The final state of stage `index`, building it (and the stages it needs) first.
    fn stage(&mut self, index: usize) -> Result<State> {
        if let Some(s) = &self.states[index] {
            return Ok(s.clone());
        }
        let def = self.def;
        let stage = &def.stages[index];
        for dep in stage_deps(stage) {
            self.stage(dep)?;
        }
        let total = stage.steps.len() + 1;
        let name = |i: usize, text: &str| StepName {
            stage: stage.display_name(),
            index: i,
            total,
            text: text.to_string(),
        };
        let from_name = name(1, &stage.text);
        let started = Instant::now();
        let mut state = self.base(stage)?;
        self.progress.event(Event::Finished(&from_name, started.elapsed()));
        // BuildKit: ENTRYPOINT resets a CMD inherited from the base, not one set in this stage.
        let mut cmd_set = false;
        for (i, step) in stage.steps.iter().enumerate() {
            let step_name = name(i + 2, &step.text);
            state = self.step(state, step, &step_name, &mut cmd_set)?;
        }
        self.states[index] = Some(state.clone());
        Ok(state)
    }

    fn base(&mut self, stage: &Stage) -> Result<State> {
        match &stage.base {
            Base::Scratch => {
                let platform = oci::Platform::host();
                let config = ImageConfig {
                    architecture: platform.architecture,
                    os: platform.os,
                    config: ContainerConfig {
                        env: Some(vec![format!("PATH={DEFAULT_PATH}")]),
                        ..Default::default()
                    },
                    rootfs: RootFs { kind: "layers".into(), diff_ids: vec![] },
                    ..Default::default()
                };
                Ok(State { layers: vec![], config, key: key_of(&["scratch"]) })
            }
            Base::Image(reference) => {
                let image = self.store.resolve(reference).map_err(|e| ErrorKind::BaseImage {
                    location: stage.location.clone(),
                    reference: reference.clone(),
                    message: e.to_string(),
                })?;
                let layers = image.layers();
                let mut config = image.config;
                // ONBUILD triggers run in the child (the frontend lowers them as its first
                // steps) and are not inherited, as in Docker and BuildKit.
                config.config.on_build = None;
                Ok(State { layers, config, key: key_of(&["image", image.digest.as_str()]) })
            }
            Base::Stage(i) => {
                let mut s = self.stage(*i)?;
                s.config.config.on_build = None;
                s.key = key_of(&["stage", s.key.as_str()]);
                Ok(s)
            }
        }
    }

    fn step(&mut self, state: State, step: &Step, name: &StepName, cmd_set: &mut bool) -> Result<State> {
        let op_json = serde_json::to_string(&step.op).expect("ops serialize");
        let inputs = self.inputs_key(&state, step)?;
        let mut key_parts = vec!["step", state.key.as_str(), op_json.as_str(), inputs.as_str()];
        if matches!(step.op, Op::Config(ConfigOp::Entrypoint(_))) && *cmd_set {
            key_parts.push("cmd-set");
        }
        let key = key_of(&key_parts);
        let result = self.step_with_key(state, step, name, cmd_set, key);
        // Downloads made for the key are temp files: never kept past their step.
        self.downloads.clear();
        result
    }

    fn step_with_key(
        &mut self,
        state: State,
        step: &Step,
        name: &StepName,
        cmd_set: &mut bool,
        key: Digest,
    ) -> Result<State> {
        if let Op::Config(ConfigOp::Cmd(_)) = step.op {
            *cmd_set = true;
        }
        if !self.options.no_cache
            && let Some(record) = self.store.cache_get(&key)?
        {
            self.cached += 1;
            self.progress.event(Event::Cached(name));
            return Ok(State { layers: record.layers, config: record.config, key });
        }
        self.progress.event(Event::Started(name));
        let started = Instant::now();
        let store_err =
            |source| ErrorKind::Store { location: step.location.clone(), step: step.text.clone(), source };
        let (layer, created_by) = match &step.op {
            Op::Run(run) => (self.run(&state, step, run, name)?, run.created_by.clone()),
            Op::Copy(copy) => (self.copy(&state, step, copy)?, copy.created_by.clone()),
            Op::Add(op) => (self.add(&state, step, op)?, op.created_by.clone()),
            Op::Config(_) => (None, step.text.clone()),
            Op::Workdir(dir) => (self.workdir(&state, step, dir)?, step.text.clone()),
        };
        let mut next = State { layers: state.layers, config: state.config, key };
        if let Op::Workdir(dir) = &step.op {
            next.config.config.working_dir = Some(dir.clone());
        }
        if let Op::Config(op) = &step.op {
            apply_config(&mut next.config.config, op, *cmd_set);
            if let ConfigOp::Maintainer(name) = op {
                next.config.author = Some(name.clone());
            }
        }
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
            .cache_put(&next.key, &CacheRecord { layers: next.layers.clone(), config: next.config.clone() })
            .map_err(store_err)?;
        self.executed += 1;
        self.progress.event(Event::Finished(name, started.elapsed()));
        Ok(next)
    }

    /// The part of a step's key that comes from outside the Dockerfile: the content of COPY
    /// and ADD sources (heredoc contents are in the op itself).
    fn inputs_key(&mut self, state: &State, step: &Step) -> Result<String> {
        let copy_err = |message: String| ErrorKind::Copy {
            location: step.location.clone(),
            step: step.text.clone(),
            message,
        };
        if let Op::Add(add) = &step.op {
            return self.add_inputs_key(add).map_err(|m| copy_err(m).into());
        }
        let Op::Copy(copy) = &step.op else { return Ok(String::new()) };
        match &copy.from {
            None => {
                let rels = self.context_sources(&copy.sources).map_err(copy_err)?;
                let sum = checksum::checksum_sources(&self.options.context, &rels, false)
                    .map_err(|e| copy_err(format!("reading the build context: {e}")))?;
                Ok(sum.to_string())
            }
            Some(CopyFrom::Stage(i)) => {
                let src = self.stage(*i)?;
                let ids: Vec<&str> = src.layers.iter().map(|l| l.diff_id.as_str()).collect();
                let _ = state;
                Ok(key_of(&ids).to_string())
            }
            Some(CopyFrom::Image(r)) => {
                let image = self.store.resolve(r).map_err(|e| copy_err(format!("--from={r}: {e}")))?;
                Ok(image.digest.to_string())
            }
        }
    }

    /// ADD's inputs: the context sources' checksum, and per URL either its `--checksum`
    /// (nothing is downloaded to compute the key) or the downloaded content's digest and its
    /// `Last-Modified` (which becomes the file's mtime). Downloads are kept for the step.
    fn add_inputs_key(&mut self, add: &AddOp) -> std::result::Result<String, String> {
        self.downloads.clear();
        let checksum = match &add.checksum {
            Some(c) => {
                if add.urls.len() != 1 || !add.sources.is_empty() || !add.heredocs.is_empty() {
                    return Err("--checksum needs exactly one source, an http(s) URL".into());
                }
                Some(add::parse_checksum(c)?)
            }
            None => None,
        };
        let rels = self.context_sources(&add.sources)?;
        let sum = checksum::checksum_sources(&self.options.context, &rels, false)
            .map_err(|e| format!("reading the build context: {e}"))?;
        let mut parts = vec![sum.to_string()];
        for url in &add.urls {
            if let Some(c) = &checksum {
                parts.push(format!("{url}\t{c}"));
                continue;
            }
            let tmp = self.store.temp_file().map_err(|e| e.to_string())?;
            let d = add::download(url, tmp, None)?;
            let modified = d.last_modified.map(|t| {
                t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0).to_string()
            });
            parts.push(format!("{url}\t{}\t{}", d.digest, modified.unwrap_or_default()));
            self.downloads.insert(url.clone(), d);
        }
        Ok(parts.join("\n"))
    }

    fn context_sources(&self, sources: &[String]) -> std::result::Result<Vec<PathBuf>, String> {
        let mut all = Vec::new();
        for src in sources {
            let found =
                fsutil::match_sources(&self.options.context, src).map_err(|e| format!("{src}: {e}"))?;
            if found.is_empty() {
                return Err(format!("{src:?}: not found in the build context"));
            }
            all.extend(found);
        }
        Ok(all)
    }

    fn run(&mut self, state: &State, step: &Step, run: &RunOp, name: &StepName) -> Result<Option<Layer>> {
        let store_err =
            |source| ErrorKind::Store { location: step.location.clone(), step: step.text.clone(), source };
        let snapshot = self.store.create_snapshot(&state.layers).map_err(store_err)?;
        let cfg = &state.config.config;
        // The frontend hands over exactly the entries where the RUN's environment differs from
        // the image's ENV (an ARG declared after an ENV of the same name wins, as in BuildKit).
        let mut run_env = ContainerConfig { env: cfg.env.clone(), ..Default::default() };
        for arg in &run.build_args {
            let (k, v) = arg.split_once('=').unwrap_or((arg.as_str(), ""));
            run_env.env_set(k, v);
        }
        let env = run_env.env.unwrap_or_default();
        let spec = executor::SandboxSpec {
            rootfs: sandbox_rootfs(&snapshot),
            process: executor::Process {
                args: run.args.clone(),
                env,
                cwd: cfg.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into()),
                user: cfg.user.clone().unwrap_or_default(),
            },
            hostname: "rbuild-sandbox".into(),
            network: executor::NetworkMode::None,
        };
        let mut tail: VecDeque<String> = VecDeque::new();
        let mut partial: Vec<u8> = Vec::new();
        let progress = self.progress;
        let mut on_line = |line: &[u8]| {
            let line = String::from_utf8_lossy(line).into_owned();
            progress.event(Event::Output(name, &line));
            if tail.len() == OUTPUT_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        };
        let mut on_output = |chunk: &[u8]| {
            partial.extend_from_slice(chunk);
            while let Some(pos) = partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = partial.drain(..=pos).collect();
                on_line(&line[..line.len() - 1]);
            }
        };
        let status = executor::run(&spec, executor::Stdio::Capture(&mut on_output)).map_err(|source| {
            ErrorKind::Sandbox { location: step.location.clone(), step: step.text.clone(), source }
        })?;
        if !partial.is_empty() {
            on_line(&partial);
        }
        if !status.success() {
            return Err(ErrorKind::RunFailed {
                location: step.location.clone(),
                step: step.text.clone(),
                status,
                output_tail: tail.into(),
            }
            .into());
        }
        self.commit(&snapshot, step)
    }

    fn copy(&mut self, state: &State, step: &Step, copy: &CopyOp) -> Result<Option<Layer>> {
        let store_err =
            |source| ErrorKind::Store { location: step.location.clone(), step: step.text.clone(), source };
        let copy_err = |message: String| ErrorKind::Copy {
            location: step.location.clone(),
            step: step.text.clone(),
            message,
        };
        let snapshot = self.store.create_snapshot(&state.layers).map_err(store_err)?;
        let mounted = snapshot.mount().map_err(store_err)?;
        let root = mounted.target.clone();
        let dest = absolute_dest(state, &copy.dest);
        let owner = match &copy.chown {
            Some(spec) => {
                let (u, g) =
                    copy::resolve_chown(&root, spec).map_err(|m| copy_err(format!("--chown={spec}: {m}")))?;
                copy::Owner::Set(u, g)
            }
            None if copy.from.is_none() => copy::Owner::Set(0, 0),
            None => copy::Owner::Keep,
        };
        let src_layers = match &copy.from {
            None => None,
            Some(CopyFrom::Stage(i)) => Some(self.stage(*i)?.layers),
            Some(CopyFrom::Image(r)) => Some(self.store.resolve(r).map_err(store_err)?.layers()),
        };
        let source_mount = match &src_layers {
            Some(layers) => Some(self.store.mount_readonly(layers).map_err(store_err)?),
            None => None,
        };
        let src_root: &Path = match &source_mount {
            Some(view) => view.path(),
            None => &self.options.context,
        };
        let sources = match &copy.from {
            None => self.context_sources(&copy.sources).map_err(copy_err)?,
            Some(_) => {
                let mut all = Vec::new();
                for src in &copy.sources {
                    let found =
                        fsutil::match_sources(src_root, src).map_err(|e| copy_err(format!("{src}: {e}")))?;
                    if found.is_empty() {
                        return Err(copy_err(format!("{src:?}: not found in the source stage")).into());
                    }
                    all.extend(found);
                }
                all
            }
        };
        let total = sources.len() + copy.heredocs.len();
        let dest = several_dest(&root, dest, sources.len(), total, "COPY").map_err(copy_err)?;
        let job = copy::CopyJob { src_root, sources: &sources, dest: &dest, owner, chmod: copy.chmod };
        copy::copy(&root, &job).map_err(copy_err)?;
        let inline_owner = match owner {
            copy::Owner::Set(u, g) => (u, g),
            copy::Owner::Keep => (0, 0),
        };
        write_heredocs(&root, &dest, &copy.heredocs, total, inline_owner, copy.chmod).map_err(copy_err)?;
        drop(source_mount);
        drop(mounted);
        self.commit(&snapshot, step)
    }

    /// ADD: context sources (tar archives extracted), URLs (downloaded), heredocs.
    fn add(&mut self, state: &State, step: &Step, op: &AddOp) -> Result<Option<Layer>> {
        let store_err =
            |source| ErrorKind::Store { location: step.location.clone(), step: step.text.clone(), source };
        let copy_err = |message: String| ErrorKind::Copy {
            location: step.location.clone(),
            step: step.text.clone(),
            message,
        };
        let sources = self.context_sources(&op.sources).map_err(copy_err)?;
        // Download what the key did not need (with --checksum, or on a miss after a hit
        // elsewhere): before mounting anything, so a failure writes nothing.
        let checksum = op.checksum.as_deref().map(add::parse_checksum).transpose().map_err(copy_err)?;
        let mut downloads = Vec::new();
        for url in &op.urls {
            let d = match self.downloads.remove(url) {
                Some(d) => d,
                None => {
                    let tmp = self.store.temp_file().map_err(store_err)?;
                    add::download(url, tmp, checksum.as_deref()).map_err(copy_err)?
                }
            };
            downloads.push((url, d));
        }
        let snapshot = self.store.create_snapshot(&state.layers).map_err(store_err)?;
        let mounted = snapshot.mount().map_err(store_err)?;
        let root = mounted.target.clone();
        let dest = absolute_dest(state, &op.dest);
        let owner = match &op.chown {
            Some(spec) => {
                Some(copy::resolve_chown(&root, spec).map_err(|m| copy_err(format!("--chown={spec}: {m}")))?)
            }
            None => None,
        };
        let total = sources.len() + op.urls.len() + op.heredocs.len();
        let dest =
            several_dest(&root, dest, sources.len() + op.urls.len(), total, "ADD").map_err(copy_err)?;
        let tmp = self.store.temp_dir("add-").map_err(store_err)?;
        for rel in &sources {
            let src = fsutil::secure_join(&self.options.context, rel)
                .map_err(|e| copy_err(format!("{}: {e}", rel.display())))?;
            let is_file = std::fs::metadata(&src).map(|m| m.is_file()).unwrap_or(false);
            let kind = if is_file {
                add::archive_kind(&src).map_err(|e| copy_err(format!("{}: {e}", rel.display())))?
            } else {
                None
            };
            match kind {
                Some(kind) => {
                    add::extract(&root, &src, kind, Path::new(&dest), owner, op.chmod, tmp.path())
                        .map_err(copy_err)?;
                }
                None => {
                    let job = copy::CopyJob {
                        src_root: &self.options.context,
                        sources: std::slice::from_ref(rel),
                        dest: &dest,
                        owner: copy::Owner::Set(owner.map_or(0, |o| o.0), owner.map_or(0, |o| o.1)),
                        chmod: op.chmod,
                    };
                    copy::copy(&root, &job).map_err(copy_err)?;
                }
            }
        }
        let file_owner = owner.unwrap_or((0, 0));
        for (url, d) in &downloads {
            let dest_dir = dest.ends_with('/')
                || fsutil::secure_join(&root, Path::new(&dest)).map(|p| p.is_dir()).unwrap_or(false);
            let target = if dest_dir {
                let name = add::url_file_name(url).ok_or_else(|| {
                    copy_err(format!("cannot name the file downloaded from {url}: give a destination file"))
                })?;
                Path::new(&dest).join(name)
            } else {
                PathBuf::from(&dest)
            };
            let mut content =
                std::fs::File::open(d.file.path()).map_err(|e| copy_err(format!("{url}: {e}")))?;
            copy::write_inline(&root, &target, &mut content, file_owner, op.chmod.unwrap_or(0o600))
                .map_err(copy_err)?;
            if let Some(t) = d.last_modified {
                let p = fsutil::secure_join(&root, &target).map_err(|e| copy_err(e.to_string()))?;
                std::fs::File::options()
                    .write(true)
                    .open(&p)
                    .and_then(|f| f.set_modified(t))
                    .map_err(|e| copy_err(format!("set mtime of {}: {e}", target.display())))?;
            }
        }
        write_heredocs(&root, &dest, &op.heredocs, total, file_owner, op.chmod).map_err(copy_err)?;
        drop(tmp);
        drop(downloads);
        drop(mounted);
        self.commit(&snapshot, step)
    }

    /// WORKDIR: `mkdir -p` of `dir` owned by the USER in effect (see [`copy::resolve_user`]),
    /// mode 0755; existing directories are left alone, so nothing created → no layer.
    fn workdir(&mut self, state: &State, step: &Step, dir: &str) -> Result<Option<Layer>> {
        let store_err =
            |source| ErrorKind::Store { location: step.location.clone(), step: step.text.clone(), source };
        let copy_err = |message: String| ErrorKind::Copy {
            location: step.location.clone(),
            step: step.text.clone(),
            message,
        };
        let snapshot = self.store.create_snapshot(&state.layers).map_err(store_err)?;
        let mounted = snapshot.mount().map_err(store_err)?;
        let user = state.config.config.user.clone().unwrap_or_default();
        let owner =
            copy::resolve_user(&mounted.target, &user).map_err(|m| copy_err(format!("USER {user}: {m}")))?;
        let dir = absolute_dest(state, dir);
        copy::mkdir_all(&mounted.target, Path::new(&dir), owner).map_err(copy_err)?;
        drop(mounted);
        self.commit(&snapshot, step)
    }

    /// Commits a snapshot's upperdir as a layer; `None` when the step changed nothing.
    fn commit(&self, snapshot: &cache::Snapshot, step: &Step) -> Result<Option<Layer>> {
        let store_err =
            |source| ErrorKind::Store { location: step.location.clone(), step: step.text.clone(), source };
        let upper = snapshot.upper();
        let empty = std::fs::read_dir(&upper)
            .map_err(|e| store_err(cache::Error::Io { path: upper.clone(), source: e }))?
            .next()
            .is_none();
        if empty {
            return Ok(None);
        }
        let layer = self.store.commit_layer(&upper, Compression::Gzip).map_err(store_err)?;
        self.store.adopt_layer_dir(&layer, &upper).map_err(store_err)?;
        Ok(Some(layer))
    }
}

/// The sandbox's view of a snapshot: its layers, its upperdir and where to mount it.
pub fn sandbox_rootfs(snapshot: &cache::Snapshot) -> executor::Rootfs {
    executor::Rootfs {
        lowers: snapshot.lowers.clone(),
        upper: snapshot.upper(),
        work: snapshot.work(),
        target: snapshot.merged(),
    }
}

/// How many of a failed RUN's last output lines the error shows.
const OUTPUT_TAIL: usize = 10;

/// Stages that `stage` reads from: its base and its `COPY --from` stages.
fn stage_deps(stage: &Stage) -> Vec<usize> {
    let mut deps = Vec::new();
    if let Base::Stage(i) = stage.base {
        deps.push(i);
    }
    for step in &stage.steps {
        if let Op::Copy(CopyOp { from: Some(CopyFrom::Stage(i)), .. }) = step.op {
            deps.push(i);
        }
    }
    deps
}

/// A COPY/ADD destination made absolute against the WORKDIR in effect, keeping (or adding,
/// for `.`) a trailing `/`.
fn absolute_dest(state: &State, dest: &str) -> String {
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

/// With several sources (`total`, heredocs included), `dest` must be a directory: written with
/// a trailing `/` or existing; returns it with the `/`, so each source goes inside. Only
/// heredocs (no file or URL source, `files == 0`): `dest` is taken as a directory (created if
/// missing), as their `dest/<name>` rule says.
fn several_dest(
    root: &Path,
    dest: String,
    files: usize,
    total: usize,
    what: &str,
) -> std::result::Result<String, String> {
    if total <= 1 || dest.ends_with('/') {
        return Ok(dest);
    }
    let is_dir = fsutil::secure_join(root, Path::new(&dest)).map(|p| p.is_dir()).unwrap_or(false);
    if !is_dir && files > 0 {
        return Err(format!(
            "when using {what} with more than one source file, the destination must be a directory and end with a /"
        ));
    }
    Ok(format!("{dest}/"))
}

/// Writes heredoc files: with one source in all and a `dest` that is neither written as a
/// directory nor an existing one, `dest` is the file; otherwise `dest/<name>`. Mode 0644
/// unless `--chmod`.
fn write_heredocs(
    root: &Path,
    dest: &str,
    heredocs: &[InlineFile],
    total: usize,
    owner: (u32, u32),
    chmod: Option<u32>,
) -> std::result::Result<(), String> {
    for h in heredocs {
        let is_dir = dest.ends_with('/')
            || fsutil::secure_join(root, Path::new(dest)).map(|p| p.is_dir()).unwrap_or(false);
        let target = if total == 1 && !is_dir { PathBuf::from(dest) } else { Path::new(dest).join(&h.name) };
        copy::write_inline(root, &target, &mut h.content.as_bytes(), owner, chmod.unwrap_or(0o644))?;
    }
    Ok(())
}

/// `HEALTHCHECK` as Docker writes it in the image config: durations in nanoseconds, absent
/// fields omitted.
fn healthcheck_json(h: &Healthcheck) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("Test".into(), serde_json::json!(h.test));
    for (name, v) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
    ] {
        if let Some(v) = v {
            m.insert(name.into(), serde_json::json!(v));
        }
    }
    if let Some(r) = h.retries {
        m.insert("Retries".into(), serde_json::json!(r));
    }
    serde_json::Value::Object(m)
}

fn key_of(parts: &[&str]) -> Digest {
    let mut h = Hasher::new();
    h.update(b"rbuild-cache-key-v1");
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finish()
}

fn apply_config(c: &mut ContainerConfig, op: &ConfigOp, cmd_set: bool) {
    match op {
        ConfigOp::Env(pairs) => {
            for (k, v) in pairs {
                c.env_set(k, v);
            }
        }
        ConfigOp::User(u) => c.user = Some(u.clone()),
        ConfigOp::Cmd(v) => c.cmd = Some(v.clone()),
        ConfigOp::Entrypoint(v) => {
            c.entrypoint = Some(v.clone());
            if !cmd_set {
                c.cmd = None;
            }
        }
        ConfigOp::Label(pairs) => {
            let labels = c.labels.get_or_insert_with(Default::default);
            for (k, v) in pairs {
                labels.insert(k.clone(), v.clone());
            }
        }
        ConfigOp::Expose(ports) => {
            let map = c.exposed_ports.get_or_insert_with(Default::default);
            for p in ports {
                map.insert(p.clone(), serde_json::json!({}));
            }
        }
        ConfigOp::Volume(vols) => {
            let map = c.volumes.get_or_insert_with(Default::default);
            for v in vols {
                map.insert(v.clone(), serde_json::json!({}));
            }
        }
        ConfigOp::StopSignal(s) => c.stop_signal = Some(s.clone()),
        ConfigOp::Shell(s) => c.shell = Some(s.clone()),
        ConfigOp::Healthcheck(h) => c.healthcheck = Some(healthcheck_json(h)),
        ConfigOp::Onbuild(t) => c.on_build.get_or_insert_with(Vec::new).push(t.clone()),
        ConfigOp::Arg(_) | ConfigOp::Maintainer(_) => {}
    }
}
