//! Writing archives.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{
    ArchiveFormat, BLOBS_DIR, DockerManifestEntry, INDEX_JSON, MANIFEST_JSON, OCI_LAYOUT, OciLayout,
    REPOSITORIES, ZSTD_MAGIC, blob_name,
};
use crate::error::{Error, IoContext, Result};
use crate::oci::{self, Descriptor, Image, Index};
use crate::{Digest, HashingWriter, ImageRef, Store};

/// Every entry gets this modification time, so that an archive depends only on its images.
const MTIME: u64 = 0;

pub(super) fn save(
    store: &Store,
    images: &[(Option<ImageRef>, Image)],
    format: ArchiveFormat,
    out: &Path,
) -> Result<()> {
    write_archive(out, |w| match format {
        ArchiveFormat::Oci => write_oci(store, images, w),
        ArchiveFormat::Docker => write_docker(store, images, w),
    })
}

pub(super) fn save_index(store: &Store, index: &Digest, names: &[ImageRef], out: &Path) -> Result<()> {
    write_archive(out, |w| write_oci_index(store, index, names, w))
}

/// Writes the archive `out` with `write`, through a temp file beside it that is renamed.
fn write_archive(out: &Path, write: impl FnOnce(&mut ArchiveWriter) -> Result<()>) -> Result<()> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .at(&dir)?;
    let tmp_path = tmp.path().to_path_buf();
    let mut w = ArchiveWriter { tar: tar::Builder::new(BufWriter::new(tmp)), out: out.to_path_buf() };
    write(&mut w)?;
    let buf = w.tar.into_inner().at(&tmp_path)?;
    let tmp = buf.into_inner().map_err(|e| Error::Io { path: tmp_path.clone(), source: e.into_error() })?;
    tmp.as_file().sync_data().at(&tmp_path)?;
    fs::set_permissions(&tmp_path, fs::Permissions::from_mode(0o644)).at(&tmp_path)?;
    tmp.persist(out).map_err(|e| Error::Io { path: out.to_path_buf(), source: e.error })?;
    Ok(())
}

struct ArchiveWriter {
    tar: tar::Builder<BufWriter<tempfile::NamedTempFile>>,
    out: PathBuf,
}

impl ArchiveWriter {
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.set_size(size);
        h
    }

    fn dir(&mut self, path: &str) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.tar.append_data(&mut h, path, io::empty()).at(&self.out)
    }

    fn file(&mut self, path: &str, size: u64, data: impl Read) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, size);
        self.tar.append_data(&mut h, path, data).at(&self.out)
    }

    fn bytes(&mut self, path: &str, data: &[u8]) -> Result<()> {
        self.file(path, data.len() as u64, data)
    }

    /// Copies the stored blob `digest` to `blobs/sha256/<hex>`.
    fn blob(&mut self, store: &Store, digest: &Digest) -> Result<()> {
        let f = store.open_blob(digest)?;
        let size = f.metadata().at(store.blob_path(digest))?.len();
        self.file(&blob_name(digest), size, f.take(size))
    }
}

fn json<T: serde::Serialize>(value: &T, out: &Path) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Archive { path: out.to_path_buf(), reason: e.to_string() })
}

fn write_oci(store: &Store, images: &[(Option<ImageRef>, Image)], w: &mut ArchiveWriter) -> Result<()> {
    w.dir("blobs/")?;
    w.dir(BLOBS_DIR)?;
    let mut written = HashSet::new();
    let mut manifests = Vec::new();
    for (name, image) in images {
        write_image_blobs(store, image, &mut written, w)?;
        let media_type =
            image.manifest.media_type.clone().unwrap_or_else(|| oci::MEDIA_TYPE_MANIFEST.to_string());
        manifests.push(named_descriptor(store, media_type, &image.digest, name.as_ref())?);
    }
    write_index_json(w, manifests)
}

/// An OCI layout whose `index.json` lists the image index `digest` (once per name).
fn write_oci_index(store: &Store, digest: &Digest, names: &[ImageRef], w: &mut ArchiveWriter) -> Result<()> {
    let Some(index) = store.index(digest)? else {
        return Err(Error::Archive {
            path: w.out.clone(),
            reason: format!("{digest} is not an image index"),
        });
    };
    w.dir("blobs/")?;
    w.dir(BLOBS_DIR)?;
    let mut written = HashSet::new();
    for child in &index.manifests {
        write_image_blobs(store, &store.image(&child.digest)?, &mut written, w)?;
    }
    w.blob(store, digest)?;
    let media_type = oci::MEDIA_TYPE_INDEX.to_string();
    let manifests = if names.is_empty() {
        vec![named_descriptor(store, media_type, digest, None)?]
    } else {
        names
            .iter()
            .map(|n| named_descriptor(store, media_type.clone(), digest, Some(n)))
            .collect::<Result<_>>()?
    };
    write_index_json(w, manifests)
}

/// The manifest, config and layers of `image`, each blob once per archive.
fn write_image_blobs(
    store: &Store,
    image: &Image,
    written: &mut HashSet<Digest>,
    w: &mut ArchiveWriter,
) -> Result<()> {
    let blobs = std::iter::once(&image.digest)
        .chain(std::iter::once(&image.manifest.config.digest))
        .chain(image.manifest.layers.iter().map(|l| &l.digest));
    for digest in blobs {
        if written.insert(digest.clone()) {
            w.blob(store, digest)?;
        }
    }
    Ok(())
}

/// `index.json`'s entry for the stored blob `digest`, named as containerd and BuildKit name it:
/// the full name, and the tag as the OCI ref name.
fn named_descriptor(
    store: &Store,
    media_type: String,
    digest: &Digest,
    name: Option<&ImageRef>,
) -> Result<Descriptor> {
    let size = store.open_blob(digest)?.metadata().at(store.blob_path(digest))?.len();
    let mut annotations = BTreeMap::new();
    if let Some(name) = name {
        annotations.insert(oci::ANNOTATION_IMAGE_NAME.to_string(), name.to_string());
        if let Some(tag) = name.tag() {
            annotations.insert(oci::ANNOTATION_REF_NAME.to_string(), tag.to_string());
        }
    }
    Ok(Descriptor { media_type, digest: digest.clone(), size, annotations, platform: None })
}

/// `oci-layout` and `index.json` listing `manifests`.
fn write_index_json(w: &mut ArchiveWriter, manifests: Vec<Descriptor>) -> Result<()> {
    let layout = json(&OciLayout { image_layout_version: "1.0.0".to_string() }, &w.out)?;
    w.bytes(OCI_LAYOUT, &layout)?;
    let index = Index {
        schema_version: 2,
        media_type: Some(oci::MEDIA_TYPE_INDEX.to_string()),
        manifests,
        annotations: BTreeMap::new(),
    };
    let index = json(&index, &w.out)?;
    w.bytes(INDEX_JSON, &index)
}

fn write_docker(store: &Store, images: &[(Option<ImageRef>, Image)], w: &mut ArchiveWriter) -> Result<()> {
    w.dir("blobs/")?;
    w.dir(BLOBS_DIR)?;
    // One manifest.json entry per image (by config, as Docker identifies images), with every
    // name it is saved under.
    let mut entries: Vec<DockerManifestEntry> = Vec::new();
    let mut entry_of: BTreeMap<Digest, usize> = BTreeMap::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut written = HashSet::new();
    for (name, image) in images {
        let i = match entry_of.get(&image.config_digest) {
            Some(&i) => i,
            None => {
                if written.insert(image.config_digest.clone()) {
                    w.blob(store, &image.config_digest)?;
                }
                let mut layers = Vec::new();
                for layer in image.layers() {
                    if written.insert(layer.diff_id.clone()) {
                        write_uncompressed_layer(store, &layer, w)?;
                    }
                    layers.push(blob_name(&layer.diff_id));
                }
                if image.manifest.layers.len() != image.config.rootfs.diff_ids.len() {
                    return Err(Error::Archive {
                        path: w.out.clone(),
                        reason: format!(
                            "image {}: the manifest and config disagree on the number of layers",
                            image.digest
                        ),
                    });
                }
                entries.push(DockerManifestEntry {
                    config: blob_name(&image.config_digest),
                    repo_tags: Vec::new(),
                    layers,
                });
                entry_of.insert(image.config_digest.clone(), entries.len() - 1);
                entries.len() - 1
            }
        };
        if let Some(name) = name
            && let Some(tag) = name.tag()
        {
            let key = name.key();
            if !entries[i].repo_tags.contains(&key) {
                entries[i].repo_tags.push(key);
            }
            repositories
                .entry(name.name().to_string())
                .or_default()
                .insert(tag.to_string(), image.config_digest.hex().to_string());
        }
    }
    let manifest = json(&entries, &w.out)?;
    w.bytes(MANIFEST_JSON, &manifest)?;
    if !repositories.is_empty() {
        let repositories = json(&repositories, &w.out)?;
        w.bytes(REPOSITORIES, &repositories)?;
    }
    Ok(())
}

/// Writes a layer as the uncompressed tar its diff id names, decompressing it first into a temp
/// file (a tar entry needs its size up front) and checking it hashes to the diff id.
fn write_uncompressed_layer(store: &Store, layer: &oci::Layer, w: &mut ArchiveWriter) -> Result<()> {
    let path = store.blob_path(&layer.digest);
    let mut blob = io::BufReader::new(store.open_blob(&layer.digest)?);
    let magic = {
        let buf = io::BufRead::fill_buf(&mut blob).at(&path)?;
        buf.get(..4).map(<[u8]>::to_vec).unwrap_or_default()
    };
    let tmp = store.temp_file()?;
    let tmp_path = tmp.path().to_path_buf();
    let mut hw = HashingWriter::new(BufWriter::new(tmp));
    if magic.starts_with(&[0x1f, 0x8b]) || magic == ZSTD_MAGIC {
        // Gzip in any number of members (parallel compressors write several), or zstd.
        let mut decoder = super::decompressor(blob).at(&path)?;
        io::copy(&mut decoder, &mut hw).map_err(|e| Error::Layer {
            layer: layer.digest.to_string(),
            reason: format!("decompressing: {e}"),
        })?;
    } else {
        io::copy(&mut blob, &mut hw).at(&tmp_path)?;
    }
    let (buf, diff_id, size) = hw.finish();
    if diff_id != layer.diff_id {
        return Err(Error::Layer {
            layer: layer.digest.to_string(),
            reason: format!(
                "its uncompressed content hashes to {diff_id}, not to its diff id {}",
                layer.diff_id
            ),
        });
    }
    let mut tmp =
        buf.into_inner().map_err(|e| Error::Io { path: tmp_path.clone(), source: e.into_error() })?;
    tmp.flush().at(&tmp_path)?;
    let f: File = tmp.reopen().at(&tmp_path)?;
    w.file(&blob_name(&layer.diff_id), size, f.take(size))
}
