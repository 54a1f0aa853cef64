use std::path::PathBuf;

/// Everything that can go wrong in the store. Each variant names the object or path involved,
/// so the CLI can print one line a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid digest '{0}': expected sha256:<64 lowercase hex digits>")]
    InvalidDigest(String),
    #[error("invalid reference '{reference}': {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("blob {0} is not in the store")]
    BlobNotFound(crate::Digest),
    #[error("blob {expected} failed verification: its content hashes to {actual}")]
    DigestMismatch { expected: crate::Digest, actual: crate::Digest },
    #[error("image '{0}' is not in the store")]
    ImageNotFound(String),
    /// A tag points at an image index (a multi-platform image) that has no image for the
    /// platform asked for.
    #[error("image {digest} is a multi-platform index with no {wanted} image (it has {available})")]
    NoMatchingPlatform { digest: crate::Digest, wanted: String, available: String },
    #[error("{what} {path} is corrupt: {reason}")]
    Corrupt { what: &'static str, path: PathBuf, reason: String },
    #[error("layer {layer}: {reason}")]
    Layer { layer: String, reason: String },
    #[error("archive {path}: {reason}")]
    Archive { path: PathBuf, reason: String },
    #[error("mount {}", target.display())]
    Mount {
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    /// The store was made under another user-namespace id mapping (rootless) than this process
    /// runs with: its files would belong to the wrong users.
    /// (Shown without the path: callers say which store they were opening.)
    #[error("{reason}")]
    IdMapping { path: PathBuf, reason: String },
    /// The store's config file (`rbuild.toml`) does not parse or holds a bad value.
    #[error("config file {}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds the path to an `io::Error`, which on its own says "No such file or directory" and
/// nothing about which one.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io { path: path.into(), source })
    }
}
