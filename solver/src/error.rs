use std::path::PathBuf;

use cache::Digest;
use frontend::Location;

use crate::add::{ArchiveError, DownloadError};
use crate::buildcache::CacheError;
use crate::context::ContextError;
use crate::copy::FileError;
use crate::fetch::FetchError;
use crate::mounts::MountError;

/// A build failure; [`Error::kind`] says which. Boxed, because failures are rare and the
/// details are large, while `Result<State>` is returned on every step.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error(Box<ErrorKind>);

impl Error {
    pub fn kind(&self) -> &ErrorKind {
        &self.0
    }

    /// What a user can do about an error that only rootless mode causes: limits without a
    /// cgroup, and ids that a single-id user namespace cannot own (a chown to them fails with
    /// EINVAL: COPY/ADD `--chown`, an archive's owners, a cache mount's uid/gid).
    pub fn hint(&self) -> Option<String> {
        let ErrorKind::Step { source, .. } = self.kind() else { return None };
        let chown = match source {
            StepError::Sandbox(e) => return e.hint(),
            StepError::File(FileError::Chown { source, .. })
            | StepError::Archive(ArchiveError::File(FileError::Chown { source, .. }))
            | StepError::Archive(ArchiveError::Entry {
                source: crate::add::EntryError::File(FileError::Chown { source, .. }),
                ..
            })
            | StepError::Mount(MountError::CacheOwner { source, .. }) => source,
            _ => return None,
        };
        let rootless = executor::userns::state()?;
        let single = matches!(rootless.mapping, executor::userns::Mapping::Single { .. });
        (single && chown.raw_os_error() == Some(libc::EINVAL)).then(|| {
            format!(
                "an id other than root (0) is not mapped in rootless rbuild's user namespace: {}",
                executor::userns::subuid_hint(rootless.user.as_deref())
            )
        })
    }
}

impl<E: Into<ErrorKind>> From<E> for Error {
    fn from(e: E) -> Error {
        Error(Box::new(e.into()))
    }
}

/// Every variant about a step carries the step's Dockerfile location, so the CLI can print
/// `Dockerfile:LINE:COL: STEP: why` on one line. No message repeats its source: the caller
/// walks the `source()` chain.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The build was cancelled (Ctrl-C, or another stage failed first).
    #[error("build cancelled")]
    Cancelled,
    #[error(transparent)]
    Frontend(#[from] frontend::Error),
    #[error(transparent)]
    Cache(#[from] cache::Error),
    /// A step (its `FROM` included) could not be done; `source` says why.
    #[error("{location}: {step}")]
    Step {
        location: Location,
        step: String,
        #[source]
        source: StepError,
    },
    /// A RUN whose process did not exit 0. `output_tail` holds its last output lines; `oom` is
    /// set (to the memory limit, if any) when the kernel's OOM killer killed a process of it.
    /// `network` is named in the message unless it was the build network, so that a step that
    /// failed for want of a network says it had none.
    #[error("{location}: {step}: {}", describe_status(*.status, *.oom, *.network))]
    RunFailed {
        location: Location,
        step: String,
        status: executor::ExitStatus,
        oom: Option<Option<u64>>,
        network: executor::StepNetwork,
        output_tail: Vec<String>,
    },
    /// A [`frontend::BuildDefinition`] that cannot be built (a stage index out of range...).
    #[error("invalid build definition: {0}")]
    Definition(String),
    /// `# check=error=true` and the build checks warned (their rules, in order).
    #[error("lint violation found for rules: {}", .0.join(", "))]
    LintViolation(Vec<String>),
    /// A `--cache-from` hit whose layers could not be fetched; `source` is the last source's
    /// reason, when there was a source to ask.
    #[error("build cache: layers {} are in no store or cache source", list(layers))]
    RemoteCache {
        layers: Vec<Digest>,
        #[source]
        source: Option<CacheError>,
    },
    #[error("{}", path.display())]
    Context {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `--cache-to type=inline` could not be written into the image.
    #[error("--cache-to type=inline")]
    InlineCache(#[source] CacheError),
}

/// Why a step could not be done (its RUN's own failure is [`ErrorKind::RunFailed`]).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Store(#[from] cache::Error),
    #[error(transparent)]
    Sandbox(#[from] executor::Error),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Remote(#[from] crate::RemoteError),
    /// The image's programs are another platform's, and this machine cannot run them.
    #[error(transparent)]
    Platform(#[from] executor::emulation::EmulationError),
    /// The step's network could not be made.
    #[error("network {network}")]
    Network {
        network: executor::StepNetwork,
        #[source]
        source: executor::ProviderError,
    },
    /// A flag that names its value (`--chown=app`, `--from=img`), and why the value failed.
    #[error("{flag}")]
    Flag {
        flag: String,
        #[source]
        source: Box<StepError>,
    },
    #[error("{pattern:?}: not found in the source stage")]
    NotInStage { pattern: String },
    #[error("{pattern}")]
    Pattern {
        pattern: String,
        #[source]
        source: std::io::Error,
    },
    /// An entitlement the build was not given (BuildKit's `--allow`).
    #[error("{what} is not allowed: pass --allow {entitlement} to rbuild build to allow it")]
    NotAllowed { what: &'static str, entitlement: &'static str },
}

impl StepError {
    /// This error as the failure of `flag` (`--chown=app`): `--chown=app: unable to find app`.
    pub(crate) fn of_flag(flag: impl Into<String>) -> impl FnOnce(StepError) -> StepError {
        let flag = flag.into();
        move |e| StepError::Flag { flag, source: Box::new(e) }
    }
}

fn list(digests: &[Digest]) -> String {
    digests.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn describe_status(
    status: executor::ExitStatus,
    oom: Option<Option<u64>>,
    network: executor::StepNetwork,
) -> String {
    let mut text = match status {
        executor::ExitStatus::Exited(c) => format!("process did not complete successfully: exit code {c}"),
        executor::ExitStatus::Signaled(s) => {
            format!("process did not complete successfully: killed by signal {s}")
        }
    };
    match oom {
        Some(Some(limit)) => text.push_str(&format!(
            " (out of memory: the kernel killed it at the memory limit of {} MiB, --memory)",
            limit / (1024 * 1024)
        )),
        Some(None) => text.push_str(" (out of memory: the kernel's OOM killer killed it)"),
        None => {}
    }
    if network != executor::StepNetwork::Default {
        text.push_str(&format!(" (the step ran with --network={network})"));
    }
    text
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
