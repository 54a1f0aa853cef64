//! Layers: an overlay upperdir committed as an OCI layer tar, and a layer blob unpacked into
//! a directory in overlay format for use as a lowerdir.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::oci::Layer;
use crate::Store;

/// How a committed layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Gzip,
    Uncompressed,
}

impl Store {
    /// Tars `upper` (a directory in overlay format: whiteouts as 0/0 char devices, opaque dirs
    /// marked with `trusted.overlay.opaque=y`) into an OCI layer blob and stores it.
    pub fn commit_layer(&self, upper: &Path, compression: Compression) -> Result<Layer> {
        let _ = (upper, compression);
        todo!()
    }

    /// Stores a plain tar stream (maybe gzip-compressed) as a layer blob, e.g. for `import`.
    pub fn import_layer(&self, tar: impl Read, compression: Compression) -> Result<Layer> {
        let _ = (tar, compression);
        todo!()
    }

    /// The directory `layers/<diff-id hex>/` holding `layer` unpacked in overlay format,
    /// unpacking the blob first if no process has done so yet.
    pub fn layer_dir(&self, layer: &Layer) -> Result<PathBuf> {
        let _ = layer;
        todo!()
    }

    /// Takes a just-committed upperdir as the unpacked form of `layer`, so it is never unpacked
    /// from its blob. If the layer is already unpacked, `upper` is removed instead.
    pub fn adopt_layer_dir(&self, layer: &Layer, upper: &Path) -> Result<()> {
        let _ = (layer, upper);
        todo!()
    }
}
