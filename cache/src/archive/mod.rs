//! Image archives: OCI image layout tars and `docker save` tars, both directions.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::oci::Image;
use crate::{ImageRef, Store};

mod load;
mod rootfs;
mod save;

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
    /// An OCI layout's `org.opencontainers.image.ref.name` as written (`latest`, `v1`...):
    /// what `oci-layout://PATH@TAG` picks by.
    pub ref_name: Option<String>,
    /// The image (for a multi-platform image, the host's, or its first).
    pub image: Image,
    /// What the name points at: the image's manifest, or the image index of a multi-platform
    /// image loaded whole.
    pub target: crate::Digest,
}

impl Store {
    /// Writes `images` (each with the name it is saved under, if any) to `out` in `format`.
    /// The archive is written to a temp file beside `out` and renamed, so a failure leaves no
    /// half archive.
    pub fn save(
        &self,
        images: &[(Option<ImageRef>, Image)],
        format: ArchiveFormat,
        out: &Path,
    ) -> Result<()> {
        save::save(self, images, format, out)?;
        for (_, image) in images {
            crate::events::image(self.root(), "save", image.digest.as_str(), image.digest.as_str());
        }
        Ok(())
    }

    /// The images `save NAME...` writes, each with the name it is saved under: a name that is
    /// not a digest or an image ID is kept, so that `load` restores the tag.
    pub fn images_to_save(&self, names: &[String]) -> Result<Vec<(Option<ImageRef>, Image)>> {
        let mut images = Vec::new();
        for name in names {
            let image = self.resolve(name)?;
            let reference = name
                .parse::<ImageRef>()
                .ok()
                .filter(|r| r.digest().is_none() && !image.digest.hex().starts_with(name.as_str()));
            images.push((reference, image));
        }
        Ok(images)
    }

    /// Writes the image index `index` (a multi-platform image: the index, every manifest it
    /// lists and their blobs) to `out` as an OCI archive whose `index.json` points at it under
    /// each of `names` (none: once, unnamed), as BuildKit's OCI exporter does. Written like
    /// [`Store::save`]: whole or not at all.
    pub fn save_index(&self, index: &crate::Digest, names: &[ImageRef], out: &Path) -> Result<()> {
        save::save_index(self, index, names, out)
    }

    /// Reads an OCI or Docker archive (detected from its content), stores its blobs and tags,
    /// and returns the images it held.
    pub fn load(&self, archive: &Path) -> Result<Vec<LoadedImage>> {
        let loaded = load::load(self, archive, true)?;
        for l in &loaded {
            crate::events::image(self.root(), "load", l.target.as_str(), l.target.as_str());
        }
        Ok(loaded)
    }

    /// [`Store::load`] without naming anything: the images are reachable by digest only (a
    /// build's `--build-context oci-layout://`), and go with the next prune unless used.
    pub fn load_unnamed(&self, archive: &Path) -> Result<Vec<LoadedImage>> {
        load::load(self, archive, false)
    }

    /// A build context sent as a tar (plain, gzip or zstd: `rbuild build -`, the API's
    /// `POST /build`), unpacked into a directory of `tmp/` that goes when the returned value is
    /// dropped. Entries that would land outside it (`..`, absolute paths, through a symlink)
    /// are refused by the unpacker, so a hostile tar writes nowhere else.
    pub fn unpack_context(&self, input: impl std::io::Read) -> Result<tempfile::TempDir> {
        let tmp = self.root().join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|source| crate::Error::Io { path: tmp.clone(), source })?;
        let dir = self.temp_dir("context-")?;
        let archive_err = |e: std::io::Error| crate::Error::Archive {
            path: PathBuf::from("(build context)"),
            reason: e.to_string(),
        };
        let input = crate::decompressed(input).map_err(archive_err)?;
        let mut archive = tar::Archive::new(input);
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.unpack(dir.path()).map_err(archive_err)?;
        Ok(dir)
    }
}

/// The name of the file that marks an OCI image layout.
const OCI_LAYOUT: &str = "oci-layout";
const INDEX_JSON: &str = "index.json";
const MANIFEST_JSON: &str = "manifest.json";
const REPOSITORIES: &str = "repositories";
const BLOBS_DIR: &str = "blobs/sha256/";
/// A Docker manifest list, which an OCI index may point at in place of a nested OCI index.
const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The content of `oci-layout`.
#[derive(Serialize, Deserialize)]
struct OciLayout {
    #[serde(rename = "imageLayoutVersion")]
    image_layout_version: String,
}

/// One entry of a `docker save` `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default, deserialize_with = "null_as_empty")]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers", default, deserialize_with = "null_as_empty")]
    layers: Vec<String>,
}

/// `docker save` writes `"RepoTags": null` for an untagged image.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// The first bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A reader of the decompressed content of a gzip (any number of members) or zstd stream,
/// told apart by its first bytes; other content is read as it is ([`crate::decompressed`]).
fn decompressor<'a, R: std::io::BufRead + 'a>(reader: R) -> std::io::Result<Box<dyn std::io::Read + 'a>> {
    crate::decompressed(reader)
}

/// The path of a blob inside either archive format.
fn blob_name(digest: &crate::Digest) -> String {
    format!("{BLOBS_DIR}{}", digest.hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar entry whose name is written as given (tar's builder refuses `..`).
    fn raw_entry(
        b: &mut tar::Builder<Vec<u8>>,
        name: &str,
        kind: tar::EntryType,
        link: Option<&str>,
        data: &[u8],
    ) {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    #[test]
    fn a_context_tar_writes_nothing_outside_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();

        let mut b = tar::Builder::new(Vec::new());
        raw_entry(&mut b, "Dockerfile", tar::EntryType::Regular, None, b"FROM scratch\n");
        raw_entry(&mut b, "../escaped", tar::EntryType::Regular, None, b"x");
        let ctx = store.unpack_context(&b.into_inner().unwrap()[..]).unwrap();
        assert_eq!(std::fs::read(ctx.path().join("Dockerfile")).unwrap(), b"FROM scratch\n");
        assert!(!ctx.path().parent().unwrap().join("escaped").exists());

        let mut b = tar::Builder::new(Vec::new());
        raw_entry(&mut b, "link", tar::EntryType::Symlink, Some(outside.to_str().unwrap()), b"");
        raw_entry(&mut b, "link/planted", tar::EntryType::Regular, None, b"x");
        assert!(store.unpack_context(&b.into_inner().unwrap()[..]).is_err());
        assert!(!outside.join("planted").exists());
    }
}
