//! Volumes: named and anonymous directories in the store, mounted into containers. (Being written.)

/// Errors of volumes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Other(String),
}
