//! Containers, networks and volumes: their state in the store and their lifecycle on top of
//! the executor's sandbox, daemonless: each running container has a monitor process (rbuild
//! re-executed) that owns its PID 1, its logs and its network plumbing.

pub mod attach;
pub mod connect;
pub mod container;
pub mod exec;
pub mod filters;
pub mod fsops;
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

pub use executor::{ResourceError, Resources};
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
    #[error(transparent)]
    Cgroup(#[from] executor::cgroup::Error),
    #[error("{path}: {source}")]
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
    /// The container could not start (its monitor said why).
    #[error("{0}")]
    StartFailed(String),
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error(transparent)]
    Resources(#[from] executor::ResourceError),
}

impl Error {
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
