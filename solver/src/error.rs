use std::path::PathBuf;

use frontend::Location;

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
    /// EINVAL in COPY --chown, ADD, or a cache mount's uid/gid).
    pub fn hint(&self) -> Option<String> {
        match self.kind() {
            ErrorKind::Sandbox { source, .. } => source.hint(),
            ErrorKind::Copy { message, .. } => {
                let rootless = executor::userns::state()?;
                let single = matches!(rootless.mapping, executor::userns::Mapping::Single { .. });
                let owner = message.contains("chown") || message.contains("cache mount");
                let einval = message.contains("EINVAL") || message.contains("Invalid argument");
                (single && owner && einval && !message.contains("is not mapped")).then(|| {
                    format!(
                        "an id other than root (0) is not mapped in rootless rbuild's user namespace: {}",
                        executor::userns::subuid_hint(rootless.user.as_deref())
                    )
                })
            }
            _ => None,
        }
    }
}

impl<E: Into<ErrorKind>> From<E> for Error {
    fn from(e: E) -> Error {
        Error(Box::new(e.into()))
    }
}

/// Every variant about a step carries the step's Dockerfile location, so the CLI can print
/// `Dockerfile:LINE:COL: ...` on one line.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The build was cancelled (Ctrl-C, or another stage failed first).
    #[error("build cancelled")]
    Cancelled,
    #[error(transparent)]
    Frontend(#[from] frontend::Error),
    #[error("{location}: {step}: {source}")]
    Store {
        location: Location,
        step: String,
        #[source]
        source: cache::Error,
    },
    #[error(transparent)]
    Cache(#[from] cache::Error),
    #[error("{location}: {step}: {source}")]
    Sandbox {
        location: Location,
        step: String,
        #[source]
        source: executor::Error,
    },
    /// A RUN whose process did not exit 0. `output_tail` holds its last output lines; `oom` is
    /// set (to the memory limit, if any) when the kernel's OOM killer killed a process of it.
    #[error("{location}: {step}: {}", describe_status(*.status, *.oom))]
    RunFailed {
        location: Location,
        step: String,
        status: executor::ExitStatus,
        oom: Option<Option<u64>>,
        output_tail: Vec<String>,
    },
    #[error("{location}: {step}: {message}")]
    Copy { location: Location, step: String, message: String },
    #[error("{location}: FROM {reference}: {message}")]
    BaseImage { location: Location, reference: String, message: String },
    /// A [`frontend::BuildDefinition`] that cannot be built (a stage index out of range...).
    #[error("invalid build definition: {0}")]
    Definition(String),
    /// A `--cache-from` hit whose layers could not be fetched.
    #[error("build cache: {0}")]
    RemoteCache(String),
    #[error("{path}: {source}")]
    Context {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn describe_status(status: executor::ExitStatus, oom: Option<Option<u64>>) -> String {
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
    text
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
