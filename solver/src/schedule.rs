//! Running a build: a thread per needed stage, waiting only for the stages it reads; per step,
//! its cache key, a cache lookup (the store, then `--cache-from`), the key's lock (so identical
//! steps run once, across processes too), and on a miss the op (`ops/`); the first failure
//! cancels the rest.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use cache::oci::{self, ContainerConfig, ImageConfig, Layer, RootFs};
use cache::{CacheRecord, Digest, Store};
use frontend::{Base, BuildDefinition, ConfigOp, Op, Stage, Step};

use crate::context::{self, ContextError};
use crate::error::{Error, ErrorKind, Result, StepError};
use crate::explain::ExplainStore;
use crate::explain::KeyInputs;
use crate::keys::PendingFiles;
use crate::keys::key_of;
use crate::{BuildOptions, BuildOutput, DEFAULT_PATH, Event, Progress, StepName};

/// The state of an image while its stage is built: layers, config, and the cache key that
/// produced it.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub layers: Vec<Layer>,
    pub config: ImageConfig,
    pub key: Digest,
}

/// Turns a step's failure into the build's error, located at the step.
pub(crate) trait AtStep<T> {
    fn at(self, step: &Step) -> Result<T>;
}

impl<T, E: Into<StepError>> AtStep<T> for std::result::Result<T, E> {
    fn at(self, step: &Step) -> Result<T> {
        self.map_err(|e| {
            ErrorKind::Step { location: step.location.clone(), step: step.text.clone(), source: e.into() }
                .into()
        })
    }
}

/// See [`crate::build_definition`].
pub(crate) fn build(
    store: &Store,
    def: &BuildDefinition,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuildOutput> {
    check_definition(def)?;
    for n in &def.notes {
        progress.event(Event::Note(n));
    }
    let lint = def.lint_for_build();
    for w in &lint {
        progress.event(Event::Lint(w));
    }
    // BuildKit fails after converting, before running anything.
    if def.check.error && !lint.is_empty() {
        let mut rules: Vec<String> = lint.iter().map(|w| w.rule.clone()).collect();
        rules.sort();
        rules.dedup();
        return Err(ErrorKind::LintViolation(rules).into());
    }
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
    let needed = def.needed_stages();
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
    // `--label`: on the image only (as BuildKit applies them to the final config), over what
    // the Dockerfile's LABELs set; no step's key changes, so the cache holds.
    if !options.labels.is_empty() {
        let labels = config.config.labels.get_or_insert_with(Default::default);
        labels.extend(options.labels.iter().cloned());
    }
    if let Some(epoch) = options.source_date_epoch {
        crate::time::clamp_created(&mut config, epoch);
    }
    builder.ensure_layers(&state.layers)?;
    let keys = std::mem::take(&mut *builder.keys.lock().unwrap_or_else(|p| p.into_inner()));
    let mut extra = std::collections::BTreeMap::new();
    if let Some(inline) = &options.inline_cache {
        let ids = if inline.cache_mounts { cache_mount_ids(def, &needed) } else { Vec::new() };
        let target_keys: Vec<Digest> =
            keys.iter().filter(|(stage, _)| *stage == def.target).map(|(_, k)| k.clone()).collect();
        let (cache, skipped) = crate::buildcache::inline_cache(
            store,
            &target_keys,
            &state.layers,
            &ids,
            inline,
            &options.cache_from,
        )
        .map_err(ErrorKind::InlineCache)?;
        for w in skipped {
            progress.event(Event::Warning(&format!("{w}: not in the inline cache")));
        }
        // Plain data: serialization cannot fail.
        extra.insert(
            crate::buildcache::INLINE_KEY.to_string(),
            serde_json::to_value(cache).unwrap_or_default(),
        );
    }
    let image = store.put_image_extra(&config, &state.layers, options.annotations.clone(), &extra)?;
    for tag in &options.tags {
        store.tag(tag, &image.digest)?;
    }
    Ok(BuildOutput {
        image,
        executed: builder.executed.load(Ordering::SeqCst),
        cached: builder.cached.load(Ordering::SeqCst),
        keys,
        target: def.target,
        cache_mounts: cache_mount_ids(def, &needed),
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

pub(crate) struct Builder<'a> {
    pub store: &'a Store,
    pub options: &'a BuildOptions,
    pub progress: &'a dyn Progress,
    def: &'a BuildDefinition,
    /// Each stage's result, filled by its thread; waited on by the stages that need it.
    slots: Mutex<Vec<Slot>>,
    slot_changed: Condvar,
    pub executed: AtomicUsize,
    cached: AtomicUsize,
    pub cancel: &'a AtomicBool,
    jobs: Semaphore,
    /// Keys executed in this build, so that with `--no-cache` an identical step in another
    /// stage reuses the first one's result instead of running again.
    ran_keys: Mutex<HashSet<Digest>>,
    /// The failure that stopped the build (not the cancellations it caused elsewhere).
    first_error: Mutex<Option<Error>>,
    /// The build context, read once, when the first step needs it.
    context: std::sync::OnceLock<std::result::Result<context::Context, std::sync::Arc<ContextError>>>,
    /// (stage, key) of every finished step.
    keys: Mutex<Vec<(usize, Digest)>>,
}

/// Rejects definitions that would make the build loop index out of range or recurse: the
/// target and every stage a stage uses must exist, and be earlier stages.
fn check_definition(def: &BuildDefinition) -> Result<()> {
    let bad = |message: String| Err(ErrorKind::Definition(message).into());
    if def.target >= def.stages.len() {
        return bad(format!("target stage {} does not exist ({} stages)", def.target, def.stages.len()));
    }
    for (i, stage) in def.stages.iter().enumerate() {
        for dep in stage.dependencies() {
            if dep >= i {
                return bad(format!("stage {i} uses stage {dep}, which is not an earlier stage"));
            }
        }
    }
    Ok(())
}

impl Builder<'_> {
    /// A stage's thread: builds it, publishes the result, and on failure cancels the build.
    pub(crate) fn run_stage(&self, index: usize) {
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
    pub(crate) fn wait_stage(&self, index: usize) -> Result<State> {
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

    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// The id of the first step (the FROM) of stage `index`.
    fn first_id(&self, index: usize) -> usize {
        self.options.first_step_id + self.def.stages[..index].iter().map(|s| s.steps.len() + 1).sum::<usize>()
    }

    fn build_stage(&self, index: usize) -> Result<State> {
        let def = self.def;
        let stage = &def.stages[index];
        let total = stage.steps.len() + 1;
        let first = self.first_id(index);
        let stage_label = self.stage_label(stage);
        let name = |i: usize, text: &str| StepName {
            id: first + i - 1,
            stage: stage_label.clone(),
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
            // Each platform's build remembers its own inputs.
            stage_name: match &self.options.platform {
                Some(p) if *p != frontend::Platform::host() => format!("{p} {}", stage.display_name()),
                _ => stage.display_name(),
            },
            lazy_files: false,
        };
        let read_by_others = def.stages.iter().any(|s| s.dependencies().contains(&index));
        for (i, step) in stage.steps.iter().enumerate() {
            if self.cancelled() {
                return Err(ErrorKind::Cancelled.into());
            }
            run.lazy_files = !self.options.eager_copy
                && !read_by_others
                && stage.steps[i + 1..].iter().all(|s| matches!(s.op, Op::Config(_)));
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

    /// How progress names the stage: its name, and in a build for several platforms the
    /// target platform first (`linux/arm64 build`), or the stage's own and the target's
    /// architecture for a stage built on another (`linux/amd64->arm64 build`, as buildx).
    fn stage_label(&self, stage: &Stage) -> String {
        let target = match (&self.options.platform, self.options.platform_label) {
            (Some(p), true) => p,
            _ => return stage.display_name(),
        };
        if stage.platform == *target {
            format!("{target} {}", stage.display_name())
        } else {
            format!("{}->{} {}", stage.platform, target.architecture, stage.display_name())
        }
    }

    fn base(&self, stage: &Stage) -> Result<State> {
        match &stage.base {
            Base::Scratch => {
                let platform = oci::Platform::from(&stage.platform);
                // The host's scratch keeps the key it always had; another platform's differs.
                let key = if stage.platform == frontend::Platform::host() {
                    key_of(&["scratch"])
                } else {
                    key_of(&["scratch", &stage.platform.to_string()])
                };
                let config = ImageConfig {
                    architecture: platform.architecture,
                    os: platform.os,
                    variant: platform.variant,
                    // BuildKit's emptyImage: PATH, and WorkingDir "/".
                    config: ContainerConfig {
                        env: Some(vec![format!("PATH={DEFAULT_PATH}")]),
                        working_dir: Some("/".into()),
                        ..Default::default()
                    },
                    rootfs: RootFs { kind: "layers".into(), diff_ids: vec![] },
                    ..Default::default()
                };
                Ok(State { layers: vec![], config, key })
            }
            Base::Image(reference) => {
                let platform = oci::Platform::from(&stage.platform);
                let image =
                    self.options.fetcher.resolve_for(self.store, reference, &platform).map_err(|e| {
                        ErrorKind::Step {
                            location: stage.location.clone(),
                            step: stage.text.clone(),
                            source: e.into(),
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
            Base::Image(r) => match self.store.resolve_for(r, &oci::Platform::from(&stage.platform)) {
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
        let crate::keys::StepKey { key, link, mut downloads, inputs: mut key_inputs, mut pending_files } =
            self.step_key(&state, step, run.cmd_set)?;
        key_inputs.base = run.base.take();
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
        // Remembered on every build (a small file per step), so that the first --explain-cache
        // build after a normal one can already say what changed. A failure only loses that.
        // The per-file list of a COPY's sources is made only when a record is written or read:
        // `encode` lists and encodes (unless the record is the key's already), `keep` writes.
        let encode = |inputs: &mut KeyInputs, pending: &mut Option<PendingFiles>| {
            if explain.is_current(&identity, key.as_str()) {
                return None;
            }
            self.list_pending_files(inputs, pending);
            ExplainStore::encode(inputs).ok()
        };
        let keep = |record: Option<Vec<u8>>| {
            if let Some(record) = record {
                let _ = explain.remember_encoded(&identity, key.as_str(), &record);
            }
        };
        if !no_cache && let Some(record) = self.cache_lookup(&key)? {
            keep(encode(&mut key_inputs, &mut pending_files));
            run.parent_missed = false;
            return Ok(self.hit(name, record, key));
        }
        if self.options.explain {
            self.list_pending_files(&mut key_inputs, &mut pending_files);
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
            keep(encode(&mut key_inputs, &mut pending_files));
            return Ok(self.hit(name, record, key));
        }
        if self.cancelled() {
            return Err(ErrorKind::Cancelled.into());
        }
        // COPY --link: its layer may be cached on another parent; then only the merge is new.
        if let Some(link) = &link
            && !no_cache
            && let Some(record) = self.cache_lookup(link)?
            && let Ok(layers) = self.ensure_layers(&record.layers).map(|()| record.layers)
        {
            keep(encode(&mut key_inputs, &mut pending_files));
            let next = self.merge_link(state, step, layers.into_iter().next(), key.clone())?;
            self.progress.event(Event::Cached(name));
            self.cached.fetch_add(1, Ordering::SeqCst);
            return Ok(next);
        }
        self.progress.event(Event::Started(name));
        let started = Instant::now();
        // A record that lists a COPY's files (100,000 take ~70 ms) is made while the step runs;
        // any record is written only if the step succeeds.
        let listing = pending_files.is_some();
        let (next, listed) = std::thread::scope(|s| {
            let making = listing.then(|| s.spawn(|| encode(&mut key_inputs, &mut pending_files)));
            let next = match &link {
                Some(link) => self
                    .copy_link(&state, step, link, run.lazy_files, &mut downloads)
                    .and_then(|layer| self.merge_link(state, step, layer, key.clone())),
                None => {
                    let flags = crate::ops::StepFlags { cmd_set: run.cmd_set, lazy: run.lazy_files };
                    self.execute(state, step, name, flags, key.clone(), &mut downloads)
                }
            };
            (next, making.map(|m| m.join().ok().flatten()))
        });
        let next = next?;
        keep(listed.unwrap_or_else(|| encode(&mut key_inputs, &mut pending_files)));
        self.ran_keys.lock().unwrap_or_else(|p| p.into_inner()).insert(key);
        self.executed.fetch_add(1, Ordering::SeqCst);
        self.progress.event(Event::Finished(name, started.elapsed()));
        Ok(next)
    }

    /// The store's record for `key`, else the first `--cache-from` source's. A source's record
    /// is filed in the store at once (its layers are fetched only when needed:
    /// [`Builder::ensure_layers`]), so the next build here hits without asking the source and
    /// `--cache-to` passes it on. Such a record whose layers are still missing is a hit as long
    /// as its source is among this build's `--cache-from` (compared by name: no request).
    fn cache_lookup(&self, key: &Digest) -> Result<Option<CacheRecord>> {
        let sources = &self.options.cache_from.0;
        if let Some((record, complete)) = self.store.cache_get_partial(key)? {
            let reachable = |from: &String| sources.iter().any(|s| &s.describe() == from);
            if complete || record.source.as_ref().is_some_and(reachable) {
                self.store.cache_used(key);
                return Ok(Some(record));
            }
        }
        for source in sources {
            if let Some(mut record) = source.lookup(key) {
                record.source = Some(source.describe());
                // A failure only loses the shortcut; the record still serves this build.
                let _ = self.store.cache_put(key, &record);
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    /// The image a step's `flag` (`--from=`, `--mount from=`) names, pulled if the store lacks
    /// it and the reference names a registry.
    pub(crate) fn source_image(&self, step: &Step, reference: &str, flag: &str) -> Result<cache::Image> {
        // An image named by a step is the target platform's, as BuildKit's implicit stages.
        let platform = self.options.platform.clone().unwrap_or_else(frontend::Platform::host);
        self.options
            .fetcher
            .resolve_for(self.store, reference, &oci::Platform::from(&platform))
            .map_err(|e| StepError::of_flag(format!("{flag}{reference}"))(e.into()))
            .at(step)
    }

    /// Makes sure the store has the blobs of `layers`, fetching missing ones from the
    /// `--cache-from` sources (a cache hit there brings only its index entry).
    pub(crate) fn ensure_layers(&self, layers: &[Layer]) -> Result<()> {
        let missing: Vec<Layer> =
            layers.iter().filter(|l| !self.store.has_blob(&l.digest)).cloned().collect();
        if missing.is_empty() {
            return Ok(());
        }
        let blobs: Vec<oci::Descriptor> = missing.iter().map(Layer::descriptor).collect();
        let mut last = None;
        for source in &self.options.cache_from.0 {
            match source.fetch(self.store, &blobs) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        let layers = missing.into_iter().map(|l| l.digest).collect();
        Err(ErrorKind::RemoteCache { layers, source: last }.into())
    }

    pub(crate) fn hit(&self, name: &StepName, record: CacheRecord, key: Digest) -> State {
        self.cached.fetch_add(1, Ordering::SeqCst);
        self.progress.event(Event::Cached(name));
        State { layers: record.layers, config: record.config, key }
    }

    /// The build context, walked once (with .dockerignore applied) on first use; file digests
    /// are remembered in the store (`cache/context/`) so a rebuild re-reads only changed files.
    pub(crate) fn context(&self) -> std::result::Result<&context::Context, ContextError> {
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
                    .map_err(std::sync::Arc::new)
            })
            .as_ref()
            .map_err(|e| ContextError::Loading(e.clone()))
    }

    /// The context paths COPY/ADD sources name (globs expanded; excluded files never match).
    pub(crate) fn context_sources(
        &self,
        sources: &[String],
    ) -> std::result::Result<Vec<PathBuf>, ContextError> {
        let ctx = self.context()?;
        let mut all = Vec::new();
        for src in sources {
            let found = ctx.matches(src);
            // A pattern that matches nothing is no error (BuildKit's COPY sets
            // AllowEmptyWildcard), but the directory it searches must exist.
            if found.is_empty() && !(has_wildcard(src) && ctx.matches(&literal_prefix(src)).len() == 1) {
                return Err(ContextError::NotFound { path: PathBuf::from(src) });
            }
            all.extend(found);
        }
        Ok(all)
    }

    /// The checksum of context sources and its per-file list.
    pub(crate) fn context_checksum(
        &self,
        rels: &[PathBuf],
    ) -> std::result::Result<(Digest, Vec<(String, String)>), ContextError> {
        self.context()?.checksum(rels)
    }

    /// The digest of [`Builder::context_checksum_excluding`], from remembered sums when
    /// nothing changed (`Context::checksum_key`).
    pub(crate) fn context_checksum_key(
        &self,
        rels: &[PathBuf],
        exclude: Option<&crate::dockerignore::DockerIgnore>,
    ) -> std::result::Result<(Digest, Option<context::FileList>), ContextError> {
        self.context()?.checksum_key(rels, exclude)
    }

    /// [`Builder::context_checksum`] without what `COPY --exclude` leaves out.
    pub(crate) fn context_checksum_excluding(
        &self,
        rels: &[PathBuf],
        exclude: Option<&crate::dockerignore::DockerIgnore>,
    ) -> std::result::Result<(Digest, Vec<(String, String)>), ContextError> {
        self.context()?.checksum_excluding(rels, exclude)
    }
}

/// Whether a COPY source is a pattern (filepath.Match's `*`, `?`, `[`).
fn has_wildcard(src: &str) -> bool {
    src.contains(['*', '?', '['])
}

/// The directory a pattern searches: its components before the first with a wildcard (`.`
/// for none).
fn literal_prefix(src: &str) -> String {
    let parts: Vec<&str> =
        src.split('/').filter(|c| !c.is_empty()).take_while(|c| !has_wildcard(c)).collect();
    if parts.is_empty() { ".".to_string() } else { parts.join("/") }
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
    /// Nothing after the current step needs the stage's rootfs: the later steps only change
    /// the config, and no other stage reads this one.
    lazy_files: bool,
}

/// The ids of the cache mounts of the needed stages' RUN steps, once each, in order.
fn cache_mount_ids(def: &BuildDefinition, needed: &[bool]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for (stage, _) in def.stages.iter().zip(needed).filter(|(_, n)| **n) {
        for step in &stage.steps {
            if let Op::Run(run) = &step.op {
                for m in &run.mounts {
                    if let frontend::RunMount::Cache { id, .. } = m
                        && !ids.contains(id)
                    {
                        ids.push(id.clone());
                    }
                }
            }
        }
    }
    ids
}
