//! The solver: runs a lowered Dockerfile (a [`frontend::BuildDefinition`]) against the store.
//!
//! For every step it computes a cache key from the step's definition, its parent's key and the
//! content of its inputs; a key found in the build-cache index reuses the stored result without
//! running anything. Otherwise RUN executes in the executor's sandbox over an overlay snapshot,
//! COPY writes into a mounted snapshot, and the snapshot's upperdir is committed as a layer.
//! It never parses Dockerfiles and never touches namespaces itself.

mod add;
pub mod buildcache;
mod changes;
mod context;
mod copy;
mod dockerignore;
mod error;
mod explain;
mod fsutil;
mod mounts;
mod time;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use cache::oci::{self, ContainerConfig, History, ImageConfig, Layer, RootFs};
use cache::{CacheRecord, Compression, Digest, Hasher, Image, ImageRef, Store};
use frontend::{
    AddOp, Base, BuildDefinition, ConfigOp, CopyFrom, CopyOp, Healthcheck, InlineFile, Op, RunMount,
    RunNetwork, RunOp, RunSecurity, Stage, Step,
};
use hostutil::inroot;

pub use changes::{ChangeError, apply_changes};
pub use error::{Error, ErrorKind, Result};
use explain::{ExplainStore, KeyInputs};
pub use mounts::{Secret, SecretSource};
pub use time::now_rfc3339;

/// The environment PATH of an image that sets none, as BuildKit gives `FROM scratch`.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to build.
#[derive(Debug, Clone, Default)]
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
    /// Stages (by name or index) whose steps run even when cached (`--no-cache-filter`).
    pub no_cache_filter: Vec<String>,
    /// How many steps may execute at once (`--jobs`); 0 means the number of cores.
    pub jobs: usize,
    /// Report why each step missed the cache ([`Event::Explain`]).
    pub explain: bool,
    /// Raised (e.g. by a SIGINT handler) to abort the build: running sandboxes are killed,
    /// snapshots removed, and the build returns [`ErrorKind::Cancelled`].
    pub cancel: Option<&'static AtomicBool>,
    /// `--secret`: what `RUN --mount=type=secret,id=...` reads.
    pub secrets: Vec<Secret>,
    /// `--allow`: what a Dockerfile may ask for beyond the sandbox.
    pub allow: Entitlements,
    /// `--memory`, `--cpus`, `--pids-limit`: the limits of every RUN's cgroup.
    pub resources: executor::Resources,
    /// `--cache-from`: build caches consulted when a key misses in the store.
    pub cache_from: CacheSources,
    /// `SOURCE_DATE_EPOCH`: layer mtimes later than this are clamped to it, and the config's
    /// `created` and the history's (those later than it) become it, so that two builds of the
    /// same inputs give the same image digest.
    pub source_date_epoch: Option<i64>,
    /// `--compression`: how the layers this build commits are compressed.
    pub compression: Compression,
    /// Pulls images the store lacks; without one, a missing image is an error.
    pub fetcher: Fetcher,
}

/// Brings an image the store lacks into it (a registry pull): FROM, `COPY --from` and
/// `RUN --mount from=` of an image reference use it. Given by the CLI, so the solver needs no
/// registry code.
pub trait ImageFetcher: Send + Sync {
    fn fetch(&self, store: &Store, reference: &str) -> std::result::Result<(), String>;
}

/// The [`ImageFetcher`] of a build, if any.
#[derive(Clone, Default)]
pub struct Fetcher(pub Option<std::sync::Arc<dyn ImageFetcher>>);

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Fetcher(registry)" } else { "Fetcher(none)" })
    }
}

impl Fetcher {
    /// `reference` from the store, pulled first if the store lacks it.
    pub fn resolve(&self, store: &Store, reference: &str) -> std::result::Result<Image, String> {
        match store.resolve(reference) {
            Ok(image) => Ok(image),
            Err(cache::Error::ImageNotFound(_)) => match &self.0 {
                Some(fetcher) => {
                    fetcher.fetch(store, reference)?;
                    store.resolve(reference).map_err(|e| e.to_string())
                }
                None => Err(format!(
                    "image {reference:?} is not in the store (add it with `rbuild import`, `rbuild load` or `rbuild pull`)"
                )),
            },
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The `--cache-from` sources of a build, in order.
#[derive(Clone, Default)]
pub struct CacheSources(pub Vec<std::sync::Arc<dyn buildcache::CacheSource>>);

impl std::fmt::Debug for CacheSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|s| s.describe())).finish()
    }
}

/// `--allow` (BuildKit's entitlements).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entitlements {
    /// `network.host`: `RUN --network=host`.
    pub network_host: bool,
    /// `security.insecure`: `RUN --security=insecure`.
    pub security_insecure: bool,
}

/// How progress output names a step: `[stage-0 2/5] RUN echo hi`.
#[derive(Debug, Clone)]
pub struct StepName {
    /// Unique in the build: the step's position over all stages in Dockerfile order (a stage's
    /// FROM counts as a step).
    pub id: usize,
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

/// Progress of a build, for the CLI to show. Stages build in parallel, so events of different
/// steps interleave, and they arrive from several threads.
pub enum Event<'a> {
    Warning(&'a str),
    /// A step starts running (it was not cached).
    Started(&'a StepName),
    /// A step's result was found in the cache.
    Cached(&'a StepName),
    /// A line of a RUN step's output.
    Output(&'a StepName, &'a str),
    /// A step finished (a FROM is reported only with this, index 1).
    Finished(&'a StepName, Duration),
    /// With [`BuildOptions::explain`]: why the step missed the cache, one line.
    Explain(&'a StepName, &'a str),
    /// The step failed with this message.
    Failed(&'a StepName, &'a str),
}

pub trait Progress: Sync {
    fn event(&self, event: Event<'_>);
}

/// What a build produced.
#[derive(Debug)]
pub struct BuildOutput {
    pub image: Image,
    /// Steps that ran (RUN, COPY and config changes that missed the cache).
    pub executed: usize,
    pub cached: usize,
    /// The cache key of every step of the build, with its stage's index, in the order the
    /// steps finished (for `--cache-to`).
    pub keys: Vec<(usize, Digest)>,
    /// The index of the target stage.
    pub target: usize,
}

/// The state of an image while its stage is built: layers, config, and the cache key that
/// produced it.
#[derive(Debug, Clone)]
struct State {
    layers: Vec<Layer>,
    config: ImageConfig,
    key: Digest,
}

struct Resolver<'a>(&'a Store, &'a Fetcher);

impl frontend::ImageResolver for Resolver<'_> {
    fn resolve(&self, reference: &str) -> std::result::Result<frontend::BaseConfig, frontend::ResolveError> {
        let image = self.1.resolve(self.0, reference)?;
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
    Ok(frontend::build_definition(
        &options.dockerfile_name,
        &options.dockerfile,
        &lower,
        &Resolver(store, &options.fetcher),
    )?)
}

/// Builds an already lowered definition into the store, tags the result with `options.tags`,
/// and returns it. Of `options`, `dockerfile`, `build_args` and `target` are not read (lowering
/// consumed them). `def`'s warnings are reported as [`Event::Warning`]s.
///
/// Every stage the target needs gets a thread; a stage waits only when it needs another
/// stage's result (its base, or a `COPY --from`), so independent stages build in parallel,
/// while at most `options.jobs` steps execute at once. The first failure cancels the rest:
/// running sandboxes are killed and their snapshots removed.
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
    let jobs = if options.jobs == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        options.jobs
    };
    let local_cancel = AtomicBool::new(false);
    let builder = Builder {
        store,
        options,
        progress,
        def,
        slots: Mutex::new(vec![Slot::Pending; def.stages.len()]),
        slot_changed: Condvar::new(),
        executed: AtomicUsize::new(0),
        cached: AtomicUsize::new(0),
        cancel: options.cancel.unwrap_or(&local_cancel),
        jobs: Semaphore::new(jobs),
        ran_keys: Mutex::new(HashSet::new()),
        first_error: Mutex::new(None),
        context: std::sync::OnceLock::new(),
        keys: Mutex::new(Vec::new()),
    };
    let needed = needed_stages(def);
    std::thread::scope(|scope| {
        for (i, need) in needed.iter().enumerate() {
            if *need {
                let builder = &builder;
                scope.spawn(move || builder.run_stage(i));
            }
        }
    });
    if let Some(e) = builder.first_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    let state = builder.wait_stage(def.target)?;
    let mut config = state.config.clone();
    config.created = config.history.last().and_then(|h| h.created.clone());
    if let Some(epoch) = options.source_date_epoch {
        time::clamp_created(&mut config, epoch);
    }
    builder.ensure_layers(&state.layers)?;
    let image = store.put_image(&config, &state.layers)?;
    for tag in &options.tags {
        store.tag(tag, &image.digest)?;
    }
    let keys = std::mem::take(&mut *builder.keys.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(BuildOutput {
        image,
        executed: builder.executed.load(Ordering::SeqCst),
        cached: builder.cached.load(Ordering::SeqCst),
        keys,
        target: def.target,
    })
}

#[derive(Clone)]
enum Slot {
    Pending,
    Done(Box<State>),
    Failed,
}

/// A counting semaphore: how many steps may execute at once.
struct Semaphore {
    free: Mutex<usize>,
    freed: Condvar,
}

struct Permit<'a>(&'a Semaphore);

impl Semaphore {
    fn new(n: usize) -> Semaphore {
        Semaphore { free: Mutex::new(n.max(1)), freed: Condvar::new() }
    }

    fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

struct Builder<'a> {
    store: &'a Store,
    options: &'a BuildOptions,
    progress: &'a dyn Progress,
    def: &'a BuildDefinition,
    /// Each stage's result, filled by its thread; waited on by the stages that need it.
    slots: Mutex<Vec<Slot>>,
    slot_changed: Condvar,
    executed: AtomicUsize,
    cached: AtomicUsize,
    cancel: &'a AtomicBool,
    jobs: Semaphore,
    /// Keys executed in this build, so that with `--no-cache` an identical step in another
    /// stage reuses the first one's result instead of running again.
    ran_keys: Mutex<HashSet<Digest>>,
    /// The failure that stopped the build (not the cancellations it caused elsewhere).
    first_error: Mutex<Option<Error>>,
    /// The build context, read once, when the first step needs it.
    context: std::sync::OnceLock<std::result::Result<context::Context, String>>,
    /// (stage, key) of every finished step.
    keys: Mutex<Vec<(usize, Digest)>>,
}

/// The stages the target needs: itself and, transitively, its base and `COPY --from` stages.
fn needed_stages(def: &BuildDefinition) -> Vec<bool> {
    let mut need = vec![false; def.stages.len()];
    let mut todo = vec![def.target];
    while let Some(i) = todo.pop() {
        if !need[i] {
            need[i] = true;
            todo.extend(stage_deps(&def.stages[i]));
        }
    }
    need
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
    /// A stage's thread: builds it, publishes the result, and on failure cancels the build.
    fn run_stage(&self, index: usize) {
        let result = self.build_stage(index);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(state) => slots[index] = Slot::Done(Box::new(state)),
            Err(e) => {
                slots[index] = Slot::Failed;
                // Cancellations caused by another stage's failure are not the story.
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                let cancelled = matches!(e.kind(), ErrorKind::Cancelled);
                if first.is_none()
                    || (!cancelled
                        && first.as_ref().is_some_and(|f| matches!(f.kind(), ErrorKind::Cancelled)))
                {
                    *first = Some(e);
                }
                self.cancel.store(true, Ordering::SeqCst);
            }
        }
        drop(slots);
        self.slot_changed.notify_all();
    }

    /// The final state of stage `index`, waiting for its thread to finish it.
    fn wait_stage(&self, index: usize) -> Result<State> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match &slots[index] {
                Slot::Done(state) => return Ok((**state).clone()),
                Slot::Failed => return Err(ErrorKind::Cancelled.into()),
                Slot::Pending => {
                    let (guard, _) = self
                        .slot_changed
                        .wait_timeout(slots, Duration::from_millis(100))
                        .unwrap_or_else(|p| p.into_inner());
                    slots = guard;
                    if self.cancelled() {
                        return Err(ErrorKind::Cancelled.into());
                    }
                }
            }
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// The id of the first step (the FROM) of stage `index`.
    fn first_id(&self, index: usize) -> usize {
        self.def.stages[..index].iter().map(|s| s.steps.len() + 1).sum()
    }

    fn build_stage(&self, index: usize) -> Result<State> {
        let def = self.def;
        let stage = &def.stages[index];
        let total = stage.steps.len() + 1;
        let first = self.first_id(index);
        let name = |i: usize, text: &str| StepName {
            id: first + i - 1,
            stage: stage.display_name(),
            index: i,
            total,
            text: text.to_string(),
        };
        let from_name = name(1, &stage.text);
        let started = Instant::now();
        let mut state = self.base(stage)?;
        self.progress.event(Event::Finished(&from_name, started.elapsed()));
        let no_cache =
            self.options.no_cache
                || self.options.no_cache_filter.iter().any(|f| {
                    stage.name.as_deref() == Some(f.to_lowercase().as_str()) || *f == index.to_string()
                });
        let mut run = StageRun {
            cmd_set: false,
            no_cache,
            parent_missed: false,
            base: Some(self.base_description(stage)),
            stage_name: stage.display_name(),
        };
        for (i, step) in stage.steps.iter().enumerate() {
            if self.cancelled() {
                return Err(ErrorKind::Cancelled.into());
            }
            let step_name = name(i + 2, &step.text);
            state = match self.step(state, step, &step_name, &mut run, i) {
                Ok(s) => {
                    self.keys.lock().unwrap_or_else(|p| p.into_inner()).push((index, s.key.clone()));
                    s
                }
                Err(e) => {
                    if !matches!(e.kind(), ErrorKind::Cancelled) {
                        self.progress.event(Event::Failed(&step_name, &e.to_string()));
                    }
                    return Err(e);
                }
            };
        }
        Ok(state)
    }

    fn base(&self, stage: &Stage) -> Result<State> {
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
                let image = self.options.fetcher.resolve(self.store, reference).map_err(|message| {
                    ErrorKind::BaseImage {
                        location: stage.location.clone(),
                        reference: reference.clone(),
                        message,
                    }
                })?;
                let layers = image.layers();
                let mut config = image.config;
                // ONBUILD triggers run in the child (the frontend lowers them as its first
                // steps) and are not inherited, as in Docker and BuildKit.
                config.config.on_build = None;
                Ok(State { layers, config, key: key_of(&["image", image.digest.as_str()]) })
            }
            Base::Stage(i) => {
                let mut s = self.wait_stage(*i)?;
                s.config.config.on_build = None;
                s.key = key_of(&["stage", s.key.as_str()]);
                Ok(s)
            }
        }
    }

    /// What explain reports as a stage's base: the image and its digest, scratch, or a stage.
    fn base_description(&self, stage: &Stage) -> String {
        match &stage.base {
            Base::Scratch => "scratch".into(),
            Base::Image(r) => match self.store.resolve(r) {
                Ok(image) => format!("image {r} {}", image.digest),
                Err(_) => format!("image {r}"),
            },
            Base::Stage(i) => format!("stage {i}"),
        }
    }

    fn step(
        &self,
        state: State,
        step: &Step,
        name: &StepName,
        run: &mut StageRun,
        index: usize,
    ) -> Result<State> {
        let no_cache = run.no_cache;
        // An ARG's value is not part of its own key: like BuildKit, a changed build arg
        // invalidates the steps that use it (RUN sees it in its environment; an expansion
        // changes the op), not every step after the ARG.
        let op_json = match &step.op {
            Op::Config(ConfigOp::Arg(_)) => format!("ARG\t{}", step.text),
            op => serde_json::to_string(op).expect("ops serialize"),
        };
        let StepInputs { key: inputs, mut downloads, files } = self.inputs_key(step)?;
        let mut key_parts = vec!["step", state.key.as_str(), op_json.as_str(), inputs.as_str()];
        if matches!(step.op, Op::Config(ConfigOp::Entrypoint(_))) && run.cmd_set {
            key_parts.push("cmd-set");
        }
        let key = key_of(&key_parts);
        if let Op::Config(ConfigOp::Cmd(_)) = step.op {
            run.cmd_set = true;
        }
        let explain = ExplainStore::new(self.store.root());
        let identity = ExplainStore::identity(
            &self.options.context,
            &self.options.dockerfile_name,
            &run.stage_name,
            index,
        );
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
        let key_inputs = KeyInputs {
            parent_key: state.key.to_string(),
            op: op_json.clone(),
            files,
            build_args,
            base: run.base.take(),
        };
        // Remembered on every build (a small file per step), so that the first --explain-cache
        // build after a normal one can already say what changed. A failure only loses that.
        let remember = || {
            let _ = explain.remember_keyed(&identity, key.as_str(), &key_inputs);
        };
        if !no_cache && let Some(record) = self.cache_lookup(&key)? {
            remember();
            run.parent_missed = false;
            return Ok(self.hit(name, record, key));
        }
        if self.options.explain {
            let why = explain.explain(&identity, &key_inputs, run.parent_missed, no_cache);
            self.progress.event(Event::Explain(name, &why));
        }
        run.parent_missed = true;
        let _permit = self.jobs.acquire();
        // One execution per key, in this build and across concurrent rbuild processes: whoever
        // holds the key's lock runs the step; the others find its result when they get it.
        let _key_lock = self.store.lock(&format!("step-{}", key.hex()))?;
        let ran_here = self.ran_keys.lock().unwrap_or_else(|p| p.into_inner()).contains(&key);
        if (!no_cache || ran_here)
            && let Some(record) = self.cache_lookup(&key)?
        {
            remember();
            return Ok(self.hit(name, record, key));
        }
        if self.cancelled() {
            return Err(ErrorKind::Cancelled.into());
        }
        self.progress.event(Event::Started(name));
        let started = Instant::now();
        let next = self.execute(state, step, name, run.cmd_set, key.clone(), &mut downloads)?;
        remember();
        self.ran_keys.lock().unwrap_or_else(|p| p.into_inner()).insert(key);
        self.executed.fetch_add(1, Ordering::SeqCst);
        self.progress.event(Event::Finished(name, started.elapsed()));
        Ok(next)
    }

    /// The store's record for `key`, else the first `--cache-from` source's (not stored: its
    /// layers may not be here; [`Builder::ensure_layers`] fetches them when needed).
    fn cache_lookup(&self, key: &Digest) -> Result<Option<CacheRecord>> {
        if let Some(record) = self.store.cache_get(key)? {
            return Ok(Some(record));
        }
        Ok(self.options.cache_from.0.iter().find_map(|source| source.lookup(key)))
    }

    /// Makes sure the store has the blobs of `layers`, fetching missing ones from the
    /// `--cache-from` sources (a cache hit there brings only its index entry).
    fn ensure_layers(&self, layers: &[Layer]) -> Result<()> {
        let missing: Vec<Layer> =
            layers.iter().filter(|l| !self.store.has_blob(&l.digest)).cloned().collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut errors = Vec::new();
        for source in &self.options.cache_from.0 {
            match source.fetch(self.store, &missing) {
                Ok(()) => return Ok(()),
                Err(e) => errors.push(e),
            }
        }
        let names: Vec<String> = missing.iter().map(|l| l.digest.to_string()).collect();
        Err(ErrorKind::RemoteCache(format!(
            "layers {} are in no store or cache source{}{}",
            names.join(", "),
            if errors.is_empty() { "" } else { ": " },
            errors.join("; ")
        ))
        .into())
    }

    fn hit(&self, name: &StepName, record: CacheRecord, key: Digest) -> State {
        self.cached.fetch_add(1, Ordering::SeqCst);
        self.progress.event(Event::Cached(name));
        State { layers: record.layers, config: record.config, key }
    }

    /// Runs a step that missed the cache and stores its result under `key`.
    fn execute(
        &self,
        state: State,
        step: &Step,
        name: &StepName,
        cmd_set: bool,
        key: Digest,
        downloads: &mut Downloads,
    ) -> Result<State> {
        let store_err = store_error(step);
        let (layer, created_by) = match &step.op {
            Op::Run(run) => (self.run(&state, step, run, name)?, run.created_by.clone()),
            Op::Copy(copy) => (self.copy(&state, step, copy)?, copy.created_by.clone()),
            Op::Add(op) => (self.add(&state, step, op, downloads)?, op.created_by.clone()),
            Op::Config(_) => (None, step.text.clone()),
            Op::Workdir(dir) => (self.workdir(&state, step, dir)?, step.text.clone()),
        };
        let mut next = State { layers: state.layers, config: state.config, key };
        if let Op::Workdir(dir) = &step.op {
            next.config.config.working_dir = Some(dir.clone());
        }
        if let Op::Config(op) = &step.op {
            apply_config(&mut next.config.config, op, cmd_set);
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
        Ok(next)
    }

    /// The part of a step's key that comes from outside the Dockerfile: the content of COPY
    /// and ADD sources (heredoc contents are in the op itself).
    /// Also returns the per-file checksums of context sources, for --explain-cache.
    fn inputs_key(&self, step: &Step) -> Result<StepInputs> {
        let copy_err = copy_error(step);
        if let Op::Add(add) = &step.op {
            return self.add_inputs_key(add).map_err(|m| copy_err(m).into());
        }
        if let Op::Run(run) = &step.op {
            return self.run_inputs_key(step, run);
        }
        let Op::Copy(copy) = &step.op else { return Ok(StepInputs::default()) };
        match &copy.from {
            None => {
                let rels = self.context_sources(&copy.sources).map_err(copy_err)?;
                let (sum, files) = self.context_checksum(&rels).map_err(copy_err)?;
                Ok(StepInputs { key: sum.to_string(), files, ..Default::default() })
            }
            Some(CopyFrom::Stage(i)) => {
                let src = self.wait_stage(*i)?;
                let ids: Vec<&str> = src.layers.iter().map(|l| l.diff_id.as_str()).collect();
                Ok(StepInputs { key: key_of(&ids).to_string(), ..Default::default() })
            }
            Some(CopyFrom::Image(r)) => {
                let image = self
                    .options
                    .fetcher
                    .resolve(self.store, r)
                    .map_err(|e| copy_err(format!("--from={r}: {e}")))?;
                Ok(StepInputs { key: image.digest.to_string(), ..Default::default() })
            }
        }
    }

    /// A RUN's inputs: the content of what its bind mounts show (context paths, stages,
    /// images). Cache mounts, tmpfs and secrets are not inputs: their content is not in the key.
    fn run_inputs_key(&self, step: &Step, run: &RunOp) -> Result<StepInputs> {
        let copy_err = copy_error(step);
        let mut parts = Vec::new();
        let mut files = Vec::new();
        for m in &run.mounts {
            let RunMount::Bind { from, source, .. } = m else { continue };
            match from {
                None => {
                    let source = if source.is_empty() { ".".to_string() } else { source.clone() };
                    let rels = self.context_sources(&[source]).map_err(copy_err)?;
                    let (sum, f) = self.context_checksum(&rels).map_err(copy_err)?;
                    parts.push(sum.to_string());
                    files.extend(f);
                }
                Some(CopyFrom::Stage(i)) => {
                    let src = self.wait_stage(*i)?;
                    let ids: Vec<&str> = src.layers.iter().map(|l| l.diff_id.as_str()).collect();
                    parts.push(key_of(&ids).to_string());
                }
                Some(CopyFrom::Image(r)) => {
                    let image = self
                        .options
                        .fetcher
                        .resolve(self.store, r)
                        .map_err(|e| copy_err(format!("--mount from={r}: {e}")))?;
                    parts.push(image.digest.to_string());
                }
            }
        }
        Ok(StepInputs { key: parts.join("\n"), files, ..Default::default() })
    }

    /// ADD's inputs: the context sources' checksum, and per URL either its `--checksum`
    /// (nothing is downloaded to compute the key) or the downloaded content's digest and its
    /// `Last-Modified` (which becomes the file's mtime). Downloads are kept for the step.
    fn add_inputs_key(&self, add: &AddOp) -> std::result::Result<StepInputs, String> {
        let mut downloads = Downloads::new();
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
        let (sum, files) = self.context_checksum(&rels)?;
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
            downloads.insert(url.clone(), d);
        }
        Ok(StepInputs { key: parts.join("\n"), downloads, files })
    }

    /// The build context, walked once (with .dockerignore applied) on first use; file digests
    /// are remembered in the store (`cache/context/`) so a rebuild re-reads only changed files.
    fn context(&self) -> std::result::Result<&context::Context, String> {
        self.context
            .get_or_init(|| {
                let dockerfile = Path::new(&self.options.dockerfile_name);
                // One digest cache per context directory, so a small context never loads the
                // digests of a large one.
                let root = std::fs::canonicalize(&self.options.context)
                    .unwrap_or_else(|_| self.options.context.clone());
                let id = Digest::of(root.as_os_str().as_encoded_bytes());
                let hash_cache = self.store.root().join("cache/context").join(&id.hex()[..16]);
                context::Context::load(&self.options.context, Some(dockerfile), Some(&hash_cache))
                    .map_err(|e| format!("reading the build context {}: {e}", self.options.context.display()))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The context paths COPY/ADD sources name (globs expanded; excluded files never match).
    fn context_sources(&self, sources: &[String]) -> std::result::Result<Vec<PathBuf>, String> {
        let ctx = self.context()?;
        let mut all = Vec::new();
        for src in sources {
            let found = ctx.matches(src);
            if found.is_empty() {
                return Err(format!(
                    "{src:?}: not found in the build context (or excluded by .dockerignore)"
                ));
            }
            all.extend(found);
        }
        Ok(all)
    }

    /// The checksum of context sources and its per-file list.
    fn context_checksum(
        &self,
        rels: &[PathBuf],
    ) -> std::result::Result<(Digest, Vec<(String, String)>), String> {
        self.context()?.checksum(rels).map_err(|e| format!("reading the build context: {e}"))
    }

    fn run(&self, state: &State, step: &Step, run: &RunOp, name: &StepName) -> Result<Option<Layer>> {
        let store_err = store_error(step);
        self.ensure_layers(&state.layers)?;
        let snapshot = self.store.create_snapshot(&state.layers).map_err(store_err)?;
        let cfg = &state.config.config;
        // The frontend hands over exactly the entries where the RUN's environment differs from
        // the image's ENV (an ARG declared after an ENV of the same name wins, as in BuildKit).
        let mut run_env = ContainerConfig { env: cfg.env.clone(), ..Default::default() };
        for arg in &run.build_args {
            let (k, v) = arg.split_once('=').unwrap_or((arg.as_str(), ""));
            run_env.env_set(k, v);
        }
        let copy_err = copy_error(step);
        let refused = |what: &str, flag: &str| {
            copy_err(format!("{what} is not allowed: pass --allow {flag} to rbuild build to allow it"))
        };
        let network = match run.network {
            // No build network yet: `default` is `none`.
            RunNetwork::Default | RunNetwork::None => executor::NetworkMode::None,
            RunNetwork::Host if self.options.allow.network_host => executor::NetworkMode::Host,
            RunNetwork::Host => return Err(refused("RUN --network=host", "network.host").into()),
        };
        let security = match run.security {
            RunSecurity::Sandbox => executor::Security::docker_default(),
            RunSecurity::Insecure if self.options.allow.security_insecure => executor::Security::insecure(),
            RunSecurity::Insecure => {
                return Err(refused("RUN --security=insecure", "security.insecure").into());
            }
        };
        let prepared =
            mounts::prepare(self.store, &run.mounts, &self.options.secrets, self).map_err(copy_err)?;
        for kv in &prepared.env {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
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
            network,
            mounts: prepared.mounts.clone(),
            resources: self.options.resources.clone(),
            security,
            readonly_rootfs: false,
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
        let outcome =
            match executor::run_cancellable(&spec, executor::Stdio::Capture(&mut on_output), self.cancel) {
                Ok(outcome) => outcome,
                Err(executor::Error::Cancelled) => return Err(ErrorKind::Cancelled.into()),
                Err(source) => {
                    return Err(ErrorKind::Sandbox {
                        location: step.location.clone(),
                        step: step.text.clone(),
                        source,
                    }
                    .into());
                }
            };
        if !partial.is_empty() {
            on_line(&partial);
        }
        if !outcome.success() {
            return Err(ErrorKind::RunFailed {
                location: step.location.clone(),
                step: step.text.clone(),
                status: outcome.status,
                oom: outcome.oom_killed.then_some(self.options.resources.memory),
                output_tail: tail.into(),
            }
            .into());
        }
        mounts::remove_stubs(&snapshot.upper(), &snapshot.lowers, &prepared.targets);
        let layer = self.commit(&snapshot, step);
        drop(prepared);
        layer
    }

    fn copy(&self, state: &State, step: &Step, copy: &CopyOp) -> Result<Option<Layer>> {
        let store_err = store_error(step);
        let copy_err = copy_error(step);
        self.ensure_layers(&state.layers)?;
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
            Some(CopyFrom::Stage(i)) => Some(self.wait_stage(*i)?.layers),
            Some(CopyFrom::Image(r)) => Some(self.store.resolve(r).map_err(store_err)?.layers()),
        };
        let source_mount = match &src_layers {
            Some(layers) => {
                self.ensure_layers(layers)?;
                Some(self.store.mount_readonly(layers).map_err(store_err)?)
            }
            None => None,
        };
        let ctx = match &copy.from {
            None => Some(self.context().map_err(copy_err)?),
            Some(_) => None,
        };
        let src_root: &Path = match (&source_mount, ctx) {
            (Some(view), _) => view.path(),
            (None, Some(ctx)) => ctx.root(),
            (None, None) => unreachable!("a COPY reads from the context or a mounted stage"),
        };
        let include = |rel: &Path| ctx.is_none_or(|c| c.includes(rel));
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
        let job = copy::CopyJob {
            src_root,
            sources: &sources,
            dest: &dest,
            owner,
            chmod: copy.chmod,
            include: Some(&include),
        };
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
    fn add(
        &self,
        state: &State,
        step: &Step,
        op: &AddOp,
        prefetched: &mut Downloads,
    ) -> Result<Option<Layer>> {
        let store_err = store_error(step);
        let copy_err = copy_error(step);
        let sources = self.context_sources(&op.sources).map_err(copy_err)?;
        // Download what the key did not need (with --checksum, or on a miss after a hit
        // elsewhere): before mounting anything, so a failure writes nothing.
        let checksum = op.checksum.as_deref().map(add::parse_checksum).transpose().map_err(copy_err)?;
        let mut downloads = Vec::new();
        for url in &op.urls {
            let d = match prefetched.remove(url) {
                Some(d) => d,
                None => {
                    let tmp = self.store.temp_file().map_err(store_err)?;
                    add::download(url, tmp, checksum.as_deref()).map_err(copy_err)?
                }
            };
            downloads.push((url, d));
        }
        self.ensure_layers(&state.layers)?;
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
        let ctx = self.context().map_err(copy_err)?;
        let include = |rel: &Path| ctx.includes(rel);
        for rel in &sources {
            let src =
                inroot::resolve(ctx.root(), rel).map_err(|e| copy_err(format!("{}: {e}", rel.display())))?;
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
                        src_root: ctx.root(),
                        sources: std::slice::from_ref(rel),
                        dest: &dest,
                        owner: copy::Owner::Set(owner.map_or(0, |o| o.0), owner.map_or(0, |o| o.1)),
                        chmod: op.chmod,
                        include: Some(&include),
                    };
                    copy::copy(&root, &job).map_err(copy_err)?;
                }
            }
        }
        let file_owner = owner.unwrap_or((0, 0));
        for (url, d) in &downloads {
            let dest_dir = dest.ends_with('/')
                || inroot::resolve(&root, Path::new(&dest)).map(|p| p.is_dir()).unwrap_or(false);
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
                let p = inroot::resolve(&root, &target).map_err(|e| copy_err(e.to_string()))?;
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
    fn workdir(&self, state: &State, step: &Step, dir: &str) -> Result<Option<Layer>> {
        let store_err = store_error(step);
        let copy_err = copy_error(step);
        self.ensure_layers(&state.layers)?;
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
        let store_err = store_error(step);
        let upper = snapshot.upper();
        let empty = std::fs::read_dir(&upper)
            .map_err(|e| store_err(cache::Error::Io { path: upper.clone(), source: e }))?
            .next()
            .is_none();
        if empty {
            return Ok(None);
        }
        let commit = cache::CommitOptions {
            compression: self.options.compression,
            source_date_epoch: self.options.source_date_epoch,
        };
        let layer = self.store.commit_layer(&upper, &commit).map_err(store_err)?;
        self.store.adopt_layer_dir(&layer, &upper).map_err(store_err)?;
        Ok(Some(layer))
    }
}

impl mounts::Sources for Builder<'_> {
    fn source(&self, from: &Option<CopyFrom>) -> std::result::Result<mounts::Source<'_>, String> {
        match from {
            None => self.context().map(mounts::Source::Context),
            Some(CopyFrom::Stage(i)) => {
                let layers = self.wait_stage(*i).map_err(|e| e.to_string())?.layers;
                self.ensure_layers(&layers).map_err(|e| e.to_string())?;
                Ok(mounts::Source::Layers(layers))
            }
            Some(CopyFrom::Image(r)) => self
                .store
                .resolve(r)
                .map(|i| mounts::Source::Layers(i.layers()))
                .map_err(|e| format!("--mount from={r}: {e}")),
        }
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

/// Wraps a store error with the step it happened in.
fn store_error(step: &Step) -> impl Fn(cache::Error) -> ErrorKind + Copy + '_ {
    move |source| ErrorKind::Store { location: step.location.clone(), step: step.text.clone(), source }
}

/// A COPY/ADD/WORKDIR failure message, located at its step.
fn copy_error(step: &Step) -> impl Fn(String) -> ErrorKind + Copy + '_ {
    move |message| ErrorKind::Copy { location: step.location.clone(), step: step.text.clone(), message }
}

/// What a step's key needs from outside the Dockerfile.
#[derive(Default)]
struct StepInputs {
    /// The content part of the key (COPY/ADD sources' checksum, URL digests, a stage's layers).
    key: String,
    /// Files an ADD downloaded to compute the key, for its execution to use.
    downloads: Downloads,
    /// Per-file checksums of context sources, for --explain-cache.
    files: Vec<(String, String)>,
}

/// What a stage's steps carry from one to the next.
struct StageRun {
    /// BuildKit: ENTRYPOINT resets a CMD inherited from the base, not one set in this stage.
    cmd_set: bool,
    no_cache: bool,
    /// Whether the previous step missed the cache (for --explain-cache).
    parent_missed: bool,
    /// The base, for the stage's first step's explain record.
    base: Option<String>,
    stage_name: String,
}

/// Files an ADD step downloaded while computing its key, by URL, for its execution to use.
type Downloads = HashMap<String, add::Download>;

/// How many of a failed RUN's last output lines the error shows.
const OUTPUT_TAIL: usize = 10;

/// Stages that `stage` reads from: its base and its `COPY --from` stages.
fn stage_deps(stage: &Stage) -> Vec<usize> {
    let mut deps = Vec::new();
    if let Base::Stage(i) = stage.base {
        deps.push(i);
    }
    for step in &stage.steps {
        match &step.op {
            Op::Copy(CopyOp { from: Some(CopyFrom::Stage(i)), .. }) => deps.push(*i),
            Op::Run(run) => deps.extend(run.mounts.iter().filter_map(RunMount::from_stage)),
            _ => {}
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
    let is_dir = inroot::resolve(root, Path::new(&dest)).map(|p| p.is_dir()).unwrap_or(false);
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
            || inroot::resolve(root, Path::new(dest)).map(|p| p.is_dir()).unwrap_or(false);
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

/// Applies one config instruction to an image config as a build does (`cmd_set`: a CMD came
/// earlier in the stage, so an ENTRYPOINT keeps it). Also `commit -c`'s.
pub fn apply_config(c: &mut ContainerConfig, op: &ConfigOp, cmd_set: bool) {
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
