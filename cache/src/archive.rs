//! Image archives: OCI image layout tars and `docker save` tars, both directions.

use std::path::Path;

use crate::error::Result;
use crate::oci::Image;
use crate::{ImageRef, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// An OCI image layout in a tar (`oci-layout`, `index.json`, `blobs/sha256/...`).
    Oci,
    /// The format of `docker save` (`manifest.json`, `repositories`, config and layer tars).
    Docker,
}

/// An image read from an archive and stored.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub reference: Option<ImageRef>,
    pub image: Image,
}

impl Store {
    /// Writes `images` (each with the name it is saved under, if any) to `out` in `format`.
    /// The archive is written to a temp file beside `out` and renamed, so a failure leaves no
    /// half archive.
    pub fn save(&self, images: &[(Option<ImageRef>, Image)], format: ArchiveFormat, out: &Path) -> Result<()> {
        let _ = (images, format, out);
        todo!()
    }

    /// Reads an OCI or Docker archive (detected from its content), stores its blobs and tags,
    /// and returns the images it held.
    pub fn load(&self, archive: &Path) -> Result<Vec<LoadedImage>> {
        let _ = archive;
        todo!()
    }
}
