//! Containers, networks and volumes: their state in the store and their lifecycle on top of
//! the executor's sandbox, daemonless: each running container has a monitor process (rbuild
//! re-executed) that owns its PID 1, its logs and its network plumbing.

pub mod attach;
pub mod container;
pub mod fsops;
pub mod lifecycle;
pub mod logs;
pub mod monitor;
pub mod mountflags;
mod names;
pub mod network;
pub mod spec;
pub mod volume;

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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
