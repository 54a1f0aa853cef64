//! rbuild's content-addressed store.
//!
//! Blobs by sha256, image records and tags, layers committed from overlay upperdirs as OCI
//! layer tars and unpacked once for use as overlay lowerdirs, snapshots for steps, the
//! build-cache index, and the OCI/Docker archive formats. It never runs user code and knows
//! nothing of Dockerfiles.

mod archive;
pub mod config;
mod copyup;
mod digest;
mod error;
pub mod events;
mod gc;
mod inspect;
mod layer;
pub mod oci;
mod reference;
mod snapshot;
mod store;
pub mod time;
mod transfer;
mod usage;
pub mod userns;

pub use archive::{ArchiveFormat, LoadedImage};
pub use config::{Enforced, SizeLimit};
pub use copyup::drop_unchanged_copy_ups;
pub use digest::{Digest, Hasher, HashingWriter};
pub use error::{Error, Result};
pub use gc::{GC_GRACE, Lease, PrunePolicy, PruneReport, TMP_MAX_AGE, VerifyReport};
pub use inspect::HistoryRow;
pub use layer::{CommitOptions, Compression, TreeEntry, TreeKind, decompressed};
pub use oci::{Image, ImageConfig, Layer};
pub use reference::ImageRef;
pub use snapshot::{MountGuard, ReadonlyMount, Snapshot, mount_overlay};
pub use store::{CacheRecord, DiskUsage, ImageEntry, LockGuard, RemovedImage, Store};
pub use usage::{CacheUsage, MountUsage, RecordUsage, STORE_SIZE_DIRS};
