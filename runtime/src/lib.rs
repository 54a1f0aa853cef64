//! Containers, networks and volumes: their state in the store and their lifecycle on top of
//! the executor's sandbox, daemonless: each running container has a monitor process (rbuild
//! re-executed) that owns its PID 1, its logs and its network plumbing.

pub mod attach;
pub mod connect;
pub mod container;
pub mod events;
pub mod exec;
pub mod filters;
pub mod fsops;
pub mod health;
pub mod images;
pub mod inspect;
pub mod lifecycle;
pub mod logs;
pub mod monitor;
pub mod mountflags;
mod names;
pub mod network;
pub mod process;
pub mod spec;
pub mod stats;
pub mod top;
pub mod volume;

pub use executor::cgroup::{MigrationWarmup, warm_migrations};
pub use executor::emulation;
pub use executor::{ProcessLimits, ResourceError, Resources, Ulimit, UlimitError};
pub use spec::{MountRequest, NetworkRequest, PortMapping, Protocol, RestartPolicy};

/// Errors of the runtime, each with what the user needs to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Network(#[from] network::Error),
    #[error(transparent)]
    Volume(#[from] volume::Error),
    #[error(transparent)]
    Store(#[from] cache::Error),
    #[error(transparent)]
    Sandbox(#[from] executor::Error),
    /// The image is another platform's, and this machine cannot run it.
    #[error(transparent)]
    Platform(#[from] executor::emulation::EmulationError),
    #[error(transparent)]
    Cgroup(#[from] executor::cgroup::Error),
    #[error("{}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    /// A name or resource already taken, or a container in the wrong state for the command.
    #[error("{0}")]
    Conflict(String),
    /// The container (or an exec) could not start: its monitor says why, and the exit status
    /// docker gives for it (127: the command was not found, 126: it could not be run).
    #[error("{message}")]
    StartFailed { message: String, code: i32 },
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("No such image: {0}")]
    NoSuchImage(String),
    #[error(transparent)]
    Resources(#[from] executor::ResourceError),
    #[error(transparent)]
    Capability(#[from] executor::caps::UnknownCapability),
}

impl Error {
    /// The exit status docker gives a container or exec that could not start for this reason:
    /// the command's own (127 not found, 126 not runnable), else 126.
    pub fn start_code(&self) -> i32 {
        match self {
            Error::Sandbox(executor::Error::Exec { code, .. }) => *code,
            Error::StartFailed { code, .. } => *code,
            _ => 126,
        }
    }

    /// Whether this is a command that could not be started (not found, not runnable), which
    /// docker reports with the exit status [`Error::start_code`] rather than as an error.
    pub fn is_start_failure(&self) -> bool {
        matches!(self, Error::StartFailed { .. } | Error::Sandbox(executor::Error::Exec { .. }))
    }

    /// How a failed start crosses the monitor's ready pipe, its attach socket or a detached
    /// exec's pipe: `CODE MESSAGE` (the message with its causes, on one line).
    pub fn start_failure_text(&self) -> String {
        format!("{} {}", self.start_code(), hostutil::errors::one_line(self))
    }

    /// The [`Error::StartFailed`] that [`Error::start_failure_text`] wrote.
    pub fn from_start_failure_text(text: &str) -> Error {
        let text = text.trim_end();
        match text.split_once(' ').and_then(|(c, m)| Some((c.parse().ok()?, m))) {
            Some((code, message)) => Error::StartFailed { message: message.to_string(), code },
            None => Error::StartFailed { message: text.to_string(), code: 126 },
        }
    }

    /// What a user can do about an error that only rootless mode causes.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Sandbox(e) => e.hint(),
            Error::Cgroup(e) => e.hint(),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
