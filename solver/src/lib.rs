//! The solver: runs a lowered Dockerfile (a [`frontend::BuildDefinition`]) against the store.
//!
//! For every step it computes a cache key from the step's definition, its parent's key and the
//! content of its inputs; a key found in the build-cache index reuses the stored result without
//! running anything. Otherwise RUN executes in the executor's sandbox over an overlay snapshot,
//! COPY writes into a mounted snapshot, and the snapshot's upperdir is committed as a layer.
//! It never parses Dockerfiles and never touches namespaces itself.
//!
//! Where things are: `schedule.rs` runs stages and steps (threads, cache lookups, per-key
//! locks, cancellation); `keys.rs` computes cache keys; `ops/` does what a step that missed
//! does (`run.rs`: RUN, `files.rs`: COPY, ADD, WORKDIR, `config.rs`: config instructions);
//! `copy.rs`, `add.rs` and `mounts.rs` are the file writing, archive and `RUN --mount` work they
//! use; `context.rs` reads the build context.

mod add;
pub mod buildcache;
pub mod cachemounts;
mod changes;
mod context;
mod copy;
mod dockerignore;
mod error;
mod explain;
pub mod fetch;
mod fsutil;
mod import;
mod keys;
mod lazy_copy;
mod mounts;
mod ops;
mod remote;
mod schedule;
mod ssh;
mod time;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use cache::{Compression, Digest, Image, ImageRef, Store};
use frontend::BuildDefinition;

pub use add::{ArchiveError, DownloadError, EntryError};
pub use changes::{ChangeError, apply_changes};
pub use context::ContextError;
pub use copy::FileError;
pub use dockerignore::{LoadError as IgnoreFileError, PatternError};
pub use error::{Error, ErrorKind, Result, StepError};
pub use executor::StepNetwork;
pub use fetch::{FetchError, Fetcher, ImageFetcher, PullPolicy, PullPolicyError};
pub use frontend::lint::LintWarning;
pub use import::{ImportError, import};
pub use mounts::{MountError, Secret, SecretSource};
pub use ops::config::apply_config;
pub use remote::{Fetched, RemoteContext, RemoteError};
pub use ssh::{SshError, SshSource};
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
    /// `--ssh`: the agents `RUN --mount=type=ssh,id=...` reaches.
    pub ssh: Vec<SshSource>,
    /// `--allow`: what a Dockerfile may ask for beyond the sandbox.
    pub allow: Entitlements,
    /// `--memory`, `--cpus`, `--pids-limit`: the limits of every RUN's cgroup.
    pub resources: executor::Resources,
    /// `--shm-size`, `--ulimit`: every RUN's /dev/shm size and process limits.
    pub limits: executor::ProcessLimits,
    /// `--cache-from`: build caches consulted when a key misses in the store.
    pub cache_from: CacheSources,
    /// `--cache-to type=inline`: the target stage's cache records (and with `cache-mounts=true`
    /// the cache mounts) go into the image's config ([`buildcache::InlineCache`]).
    pub inline_cache: Option<InlineOptions>,
    /// `SOURCE_DATE_EPOCH`: layer mtimes later than this are clamped to it, and the config's
    /// `created` and the history's (those later than it) become it, so that two builds of the
    /// same inputs give the same image digest.
    pub source_date_epoch: Option<i64>,
    /// `--compression`: how the layers this build commits are compressed.
    pub compression: Compression,
    /// Pulls images the store lacks; without one, a missing image is an error.
    pub fetcher: Fetcher,
    /// `--label KEY=VALUE`: labels of the image (not of any step).
    pub labels: Vec<(String, String)>,
    /// `--annotation KEY=VALUE`: annotations of the image's manifest.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// `--network`, and what gives RUN steps their network.
    pub network: StepNetworks,
    /// `--build-context`: the image each named context stands for
    /// ([`frontend::LowerOptions::named_contexts`]).
    pub named_contexts: std::collections::BTreeMap<String, String>,
    /// `--platform`: what to build for (`None`: this machine's platform). A build for several
    /// platforms is one build per platform ([`BuildOptions::platform_label`]).
    pub platform: Option<frontend::Platform>,
    /// Step names carry the platform (`[linux/arm64 stage-0 2/3]`), as buildx shows a build for
    /// several platforms.
    pub platform_label: bool,
    /// Added to every [`StepName::id`], so that several builds reporting to one progress
    /// (one per platform) keep their steps apart.
    pub first_step_id: usize,
    /// Every COPY creates its files, even where nothing later in the build reads them (see
    /// [`lazy_copy`]): for an output that reads the rootfs right after the build
    /// (`--output type=local|tar`), where unpacking the layer again would cost more.
    pub eager_copy: bool,
}

/// The network of RUN steps: `mode` for a RUN without `--network` (the build's `--network`),
/// `provider` making each step's namespace and /etc files. Without a provider (a library user
/// that brings none) every RUN is isolated, whatever it asks for but `host`.
#[derive(Clone, Default)]
pub struct StepNetworks {
    pub mode: executor::StepNetwork,
    pub provider: Option<std::sync::Arc<dyn executor::NetworkProvider>>,
}

impl std::fmt::Debug for StepNetworks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepNetworks")
            .field("mode", &self.mode)
            .field("provider", &self.provider.is_some())
            .finish()
    }
}

/// What `--cache-to type=inline` carries besides the records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InlineOptions {
    pub cache_mounts: bool,
    pub mounts_max_size: Option<u64>,
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
    /// Something to say once, plainly (the Dockerfile's `# syntax=`).
    Note(&'a str),
    /// A build check's warning (BuildKit's linter).
    Lint(&'a frontend::lint::LintWarning),
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
    /// The ids of the cache mounts (`RUN --mount=type=cache`) of the stages the build needed.
    pub cache_mounts: Vec<String>,
}

/// Answers the frontend's questions about base images from the store (pulling what it lacks).
struct Resolver<'a>(&'a Store, &'a Fetcher);

impl frontend::ImageResolver for Resolver<'_> {
    fn resolve(&self, reference: &str) -> std::result::Result<frontend::BaseConfig, frontend::ResolveError> {
        self.resolve_for(reference, &frontend::Platform::host())
    }

    fn resolve_for(
        &self,
        reference: &str,
        platform: &frontend::Platform,
    ) -> std::result::Result<frontend::BaseConfig, frontend::ResolveError> {
        let image = self.1.resolve_for(self.0, reference, &platform.into())?;
        Ok(frontend::BaseConfig {
            env: image.config.config.env.clone().unwrap_or_default(),
            working_dir: image.config.config.working_dir.clone(),
            on_build: image.config.config.on_build.clone().unwrap_or_default(),
            platform: Some(frontend::Platform {
                os: image.config.os.clone(),
                architecture: image.config.architecture.clone(),
                variant: image.config.variant.clone().unwrap_or_default(),
            })
            .filter(|p| !p.architecture.is_empty()),
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
    let lower = frontend::LowerOptions {
        build_args: options.build_args.clone(),
        target: options.target.clone(),
        named_contexts: options.named_contexts.clone(),
        platform: options.platform.clone(),
    };
    let mut def = frontend::build_definition(
        &options.dockerfile_name,
        &options.dockerfile,
        &lower,
        &Resolver(store, &options.fetcher),
    )?;
    // An unreadable ignore file is reported when the build reads the context; a check
    // cannot be made without it.
    if let Ok(ignore) = dockerignore::load(&options.context, Some(Path::new(&options.dockerfile_name)))
        && ignore.is_plain()
    {
        def.lint_copy_ignored(&|path| {
            if path == "." { ignore.excludes_root_entries() } else { ignore.is_excluded(Path::new(path)) }
        });
    }
    Ok(def)
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
    schedule::build(store, def, options, progress)
}
