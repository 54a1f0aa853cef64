//! Reading archives.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::{
    BLOBS_DIR, DockerManifestEntry, INDEX_JSON, LoadedImage, MANIFEST_JSON, MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    OCI_LAYOUT, blob_name,
};
use crate::error::{Error, IoContext, Result};
use crate::oci::{self, Descriptor, Index, Layer, Manifest, Platform};
use crate::{Digest, HashingWriter, ImageRef, Store};

/// Small files (JSON metadata) are kept in memory; anything larger than this is not metadata.
const MAX_METADATA: u64 = 64 << 20;
/// How many symlinks to follow before giving up on a path.
const MAX_LINKS: usize = 16;
/// How deep image indexes may nest.
const MAX_INDEX_DEPTH: usize = 4;

/// A file of the archive as seen after the one pass over it.
enum Entry {
    /// Read into memory (metadata).
    Bytes(Vec<u8>),
    /// Stored as this blob.
    Blob(Digest),
    /// A symlink or hard link to this archive path (already resolved against the link's dir).
    Link(String),
}

struct Loader<'a> {
    store: &'a Store,
    path: PathBuf,
    files: HashMap<String, Entry>,
}

pub(super) fn load(store: &Store, archive: &Path, name: bool) -> Result<Vec<LoadedImage>> {
    let mut loader = Loader { store, path: archive.to_path_buf(), files: HashMap::new() };
    loader.read_archive()?;
    let has = |name: &str| loader.files.contains_key(name);
    let images = if has(INDEX_JSON) && (has(OCI_LAYOUT) || !has(MANIFEST_JSON)) {
        loader.resolve_oci()?
    } else if has(MANIFEST_JSON) {
        loader.resolve_docker()?
    } else {
        return Err(loader.err("not an image archive (no manifest.json or index.json)"));
    };
    // Every blob of every image is present and verified: only now do names point at them.
    for loaded in images.iter().filter(|_| name) {
        match &loaded.reference {
            Some(r) => store.set_tag(r, &loaded.target)?,
            // Kept without a name, as docker keeps an untagged image it loads (`<none>`).
            None => store.keep_dangling(&loaded.target)?,
        }
    }
    Ok(images)
}

/// `path` without `./` components and with `..` applied; `None` if it climbs out of the root.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// `s` with control and non-ASCII characters (from binary garbage in a header) replaced.
fn printable(s: &str) -> String {
    s.chars().take(200).map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect()
}

impl Loader<'_> {
    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Archive { path: self.path.clone(), reason: reason.into() }
    }

    /// One pass over the tar: blobs go to the store (verified against their names), metadata
    /// to memory, other files to the store by content, links are remembered.
    fn read_archive(&mut self) -> Result<()> {
        let file = File::open(&self.path).at(&self.path)?;
        let mut tar = tar::Archive::new(BufReader::new(file));
        let entries = tar.entries().map_err(|e| self.err(format!("not a tar archive: {e}")))?;
        let mut last: Option<String> = None;
        for entry in entries {
            let mut entry = entry.map_err(|e| {
                let e = printable(&e.to_string());
                match &last {
                    None => self.err(format!("not a tar archive: {e}")),
                    Some(last) => self.err(format!("the tar is corrupt or truncated after {last}: {e}")),
                }
            })?;
            let raw = entry.path_bytes();
            let raw = String::from_utf8_lossy(&raw).into_owned();
            last = Some(raw.clone());
            let Some(name) = normalize(&raw) else { continue };
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                let Some(target) = entry.link_name_bytes().map(|t| String::from_utf8_lossy(&t).into_owned())
                else {
                    continue;
                };
                let base = if kind.is_symlink() && !target.starts_with('/') {
                    match name.rsplit_once('/') {
                        Some((dir, _)) => format!("{dir}/{target}"),
                        None => target,
                    }
                } else {
                    target
                };
                if let Some(target) = normalize(&base) {
                    self.files.insert(name, Entry::Link(target));
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let size =
                entry.header().size().map_err(|e| self.err(format!("{raw}: bad size in header: {e}")))?;
            let file = if let Some(hex) = name.strip_prefix(BLOBS_DIR) {
                let Ok(expected) = format!("sha256:{hex}").parse::<Digest>() else {
                    return Err(self.err(format!("{raw}: not a sha256 digest")));
                };
                self.ingest(&raw, &mut entry, size, Some(&expected))?;
                Entry::Blob(expected)
            } else if name.starts_with("blobs/")
                || name == "VERSION"
                || name.ends_with("/VERSION")
                || name.ends_with("/json")
            {
                // Other digest algorithms and the legacy per-layer metadata are not needed.
                continue;
            } else if name.ends_with(".json") || name == OCI_LAYOUT || name == super::REPOSITORIES {
                if size > MAX_METADATA {
                    return Err(self.err(format!("{raw}: {size} bytes is too large for a metadata file")));
                }
                let mut buf = Vec::with_capacity(size as usize);
                (&mut entry)
                    .take(size)
                    .read_to_end(&mut buf)
                    .map_err(|e| self.err(format!("reading {raw}: {e}")))?;
                if buf.len() as u64 != size {
                    return Err(self.err(format!("{raw} is truncated ({} of {size} bytes)", buf.len())));
                }
                Entry::Bytes(buf)
            } else {
                // A legacy layer file (`<id>/layer.tar`, `<hex>.tar`): stored by content.
                Entry::Blob(self.ingest(&raw, &mut entry, size, None)?)
            };
            self.files.insert(name, file);
        }
        Ok(())
    }

    fn ingest(
        &self,
        raw: &str,
        entry: &mut impl Read,
        size: u64,
        expected: Option<&Digest>,
    ) -> Result<Digest> {
        // Hash first without an expectation so that a short read is reported as truncation
        // rather than as a digest mismatch; nothing is kept unless it matches.
        let tmp = self.store.temp_file()?;
        let tmp_path = tmp.path().to_path_buf();
        let mut w = HashingWriter::new(io::BufWriter::new(tmp));
        io::copy(&mut entry.take(size), &mut w).map_err(|e| self.err(format!("reading {raw}: {e}")))?;
        let (buf, digest, len) = w.finish();
        if len != size {
            return Err(self.err(format!("{raw} is truncated ({len} of {size} bytes)")));
        }
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(
                self.err(format!("blob {raw} does not match its name: its content hashes to {digest}"))
            );
        }
        let tmp = buf.into_inner().map_err(|e| Error::Io { path: tmp_path, source: e.into_error() })?;
        if !self.store.keep_blob(&digest) {
            self.store.commit_blob(tmp, &digest)?;
        }
        Ok(digest)
    }

    /// The entry at archive path `name`, following links.
    fn lookup(&self, name: &str) -> Result<&Entry> {
        let mut cur = normalize(name).ok_or_else(|| self.err(format!("{name}: path leaves the archive")))?;
        for _ in 0..MAX_LINKS {
            match self.files.get(&cur) {
                Some(Entry::Link(target)) => cur = target.clone(),
                Some(e) => return Ok(e),
                None => return Err(self.err(format!("{name} is not in the archive"))),
            }
        }
        Err(self.err(format!("{name}: too many levels of links")))
    }

    fn bytes_of(&self, name: &str) -> Result<Vec<u8>> {
        match self.lookup(name)? {
            Entry::Bytes(b) => Ok(b.clone()),
            Entry::Blob(d) => self.store.read_blob(d),
            Entry::Link(_) => Err(self.err(format!("{name}: too many levels of links"))),
        }
    }

    /// The blob `name` refers to, storing it if it was kept in memory.
    fn blob_of(&self, name: &str) -> Result<Digest> {
        match self.lookup(name)? {
            Entry::Bytes(b) => self.store.write_blob(b),
            Entry::Blob(d) => Ok(d.clone()),
            Entry::Link(_) => Err(self.err(format!("{name}: too many levels of links"))),
        }
    }

    fn parse<T: DeserializeOwned>(&self, what: &str, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| self.err(format!("{what} is not valid: {e}")))
    }

    /// The bytes of blob `digest`, which the archive must have held (or the store already had).
    fn stored_blob(&self, digest: &Digest, what: &str) -> Result<Vec<u8>> {
        if !self.store.has_blob(digest) {
            return Err(self.err(format!("{what} {digest} is missing (no {})", blob_name(digest))));
        }
        self.store.read_blob(digest)
    }

    fn check_blob(&self, desc: &Descriptor, what: &str) -> Result<()> {
        let path = self.store.blob_path(&desc.digest);
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(self.err(format!(
                    "{what} {} is missing (no {})",
                    desc.digest,
                    blob_name(&desc.digest)
                )));
            }
            Err(e) => return Err(Error::Io { path, source: e }),
        };
        if len != desc.size {
            return Err(self.err(format!(
                "{what} {} is {len} bytes but its descriptor says {}",
                desc.digest, desc.size
            )));
        }
        Ok(())
    }

    fn resolve_oci(&self) -> Result<Vec<LoadedImage>> {
        let index: Index = self.parse(INDEX_JSON, &self.bytes_of(INDEX_JSON)?)?;
        let mut images = Vec::new();
        for desc in &index.manifests {
            let reference = self.reference_of(desc)?;
            let ref_name = desc.annotations.get(oci::ANNOTATION_REF_NAME).cloned();
            // A multi-platform image whose every image is in the archive stays one (BuildKit's
            // and rbuild's own `-o type=oci` of a multi-platform build); else the host's image.
            if let Some(index) = self.whole_index(desc)? {
                let image = self.store.image_or_any(&index)?;
                images.push(LoadedImage { reference, ref_name, image, target: index });
                continue;
            }
            let digest = self.resolve_manifest(desc, 0)?;
            let image = self.store.image(&digest)?;
            images.push(LoadedImage { reference, ref_name, target: image.digest.clone(), image });
        }
        Ok(images)
    }

    /// `desc` stored as an image index when it is one whose images are all in the archive and
    /// whole (each checked as [`Loader::resolve_manifest`] does); `None` when it is a manifest
    /// or some image of it is missing.
    fn whole_index(&self, desc: &Descriptor) -> Result<Option<Digest>> {
        let bytes = self.stored_blob(&desc.digest, "manifest")?;
        let value: serde_json::Value = self.parse(&format!("manifest {}", desc.digest), &bytes)?;
        let media_type = value.get("mediaType").and_then(|m| m.as_str()).unwrap_or(&desc.media_type);
        if media_type != oci::MEDIA_TYPE_INDEX && media_type != MEDIA_TYPE_DOCKER_MANIFEST_LIST {
            return Ok(None);
        }
        let index: Index = self.parse(&format!("image index {}", desc.digest), &bytes)?;
        for child in &index.manifests {
            if !self.store.has_blob(&child.digest) || self.resolve_manifest(child, 1).is_err() {
                return Ok(None);
            }
        }
        Ok(Some(self.store.put_index(&bytes)?))
    }

    /// The name an index entry gives its image: the full name, or a ref.name that is one.
    fn reference_of(&self, desc: &Descriptor) -> Result<Option<ImageRef>> {
        if let Some(name) = desc.annotations.get(oci::ANNOTATION_IMAGE_NAME) {
            return name.parse().map(Some).map_err(|e| self.err(format!("index.json: {e}")));
        }
        Ok(desc
            .annotations
            .get(oci::ANNOTATION_REF_NAME)
            .filter(|n| n.contains(':') || n.contains('/'))
            .and_then(|n| n.parse().ok()))
    }

    /// Follows `desc` (through nested indexes, choosing the host platform) to an image manifest,
    /// checks that the image is complete, and returns the manifest's digest.
    fn resolve_manifest(&self, desc: &Descriptor, depth: usize) -> Result<Digest> {
        let bytes = self.stored_blob(&desc.digest, "manifest")?;
        let value: serde_json::Value = self.parse(&format!("manifest {}", desc.digest), &bytes)?;
        let media_type = value.get("mediaType").and_then(|m| m.as_str()).unwrap_or(&desc.media_type);
        let is_index = media_type == oci::MEDIA_TYPE_INDEX
            || media_type == MEDIA_TYPE_DOCKER_MANIFEST_LIST
            || (value.get("manifests").is_some() && value.get("config").is_none());
        if is_index {
            if depth >= MAX_INDEX_DEPTH {
                return Err(self.err(format!("image index {} nests too deeply", desc.digest)));
            }
            let index: Index = self.parse(&format!("image index {}", desc.digest), &bytes)?;
            let host = Platform::host();
            let Some(chosen) = index.manifest_for(&host) else {
                return Err(self.err(format!(
                    "image index {} has no image for {host} (it has: {})",
                    desc.digest,
                    index.platforms()
                )));
            };
            return self.resolve_manifest(chosen, depth + 1);
        }
        if media_type != oci::MEDIA_TYPE_MANIFEST && media_type != oci::MEDIA_TYPE_DOCKER_MANIFEST {
            return Err(self.err(format!("manifest {} has unsupported media type {media_type}", desc.digest)));
        }
        let manifest: Manifest = self.parse(&format!("manifest {}", desc.digest), &bytes)?;
        self.check_blob(&manifest.config, "config")?;
        let config: oci::ImageConfig = self.parse(
            &format!("config {}", manifest.config.digest),
            &self.store.read_blob(&manifest.config.digest)?,
        )?;
        for layer in &manifest.layers {
            self.check_blob(layer, "layer")?;
        }
        if manifest.layers.len() != config.rootfs.diff_ids.len() {
            return Err(self.err(format!(
                "manifest {} lists {} layers but its config {} diff ids",
                desc.digest,
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        Ok(desc.digest.clone())
    }

    fn resolve_docker(&self) -> Result<Vec<LoadedImage>> {
        let entries: Vec<DockerManifestEntry> = self.parse(MANIFEST_JSON, &self.bytes_of(MANIFEST_JSON)?)?;
        let mut images = Vec::new();
        for entry in &entries {
            let references = entry
                .repo_tags
                .iter()
                .map(|t| t.parse::<ImageRef>().map_err(|e| self.err(format!("manifest.json: {e}"))))
                .collect::<Result<Vec<_>>>()?;
            let config_bytes = self.bytes_of(&entry.config)?;
            let config: oci::ImageConfig = self.parse(&entry.config, &config_bytes)?;
            let config_digest = self.store.write_blob(&config_bytes)?;
            let mut layers = Vec::new();
            for path in &entry.layers {
                layers.push(self.docker_layer(path)?);
            }
            let diff_ids: Vec<&Digest> = layers.iter().map(|l| &l.diff_id).collect();
            if diff_ids.iter().copied().ne(config.rootfs.diff_ids.iter()) {
                return Err(self.err(format!(
                    "the layers of {} do not match its config's rootfs.diff_ids (layers: [{}], config: [{}])",
                    entry.config,
                    diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
                    config.rootfs.diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
                )));
            }
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(oci::MEDIA_TYPE_MANIFEST.to_string()),
                config: Descriptor {
                    media_type: oci::MEDIA_TYPE_CONFIG.to_string(),
                    digest: config_digest,
                    size: config_bytes.len() as u64,
                    annotations: BTreeMap::new(),
                    platform: None,
                },
                layers: layers.iter().map(Layer::descriptor).collect(),
                annotations: BTreeMap::new(),
            };
            let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| self.err(e.to_string()))?;
            let digest = self.store.write_blob(&manifest_bytes)?;
            let image = self.store.image(&digest)?;
            if references.is_empty() {
                images.push(LoadedImage { reference: None, ref_name: None, target: digest, image });
            } else {
                for reference in references {
                    images.push(LoadedImage {
                        reference: Some(reference),
                        ref_name: None,
                        target: image.digest.clone(),
                        image: image.clone(),
                    });
                }
            }
        }
        Ok(images)
    }

    /// A layer file of a Docker archive: its blob digest, and its diff id (the digest of its
    /// uncompressed content).
    fn docker_layer(&self, path: &str) -> Result<Layer> {
        let digest = self.blob_of(path)?;
        let blob_path = self.store.blob_path(&digest);
        let mut file = BufReader::new(self.store.open_blob(&digest)?);
        let size = file.get_ref().metadata().at(&blob_path)?.len();
        let magic =
            io::BufRead::fill_buf(&mut file).at(&blob_path)?.get(..4).map(<[u8]>::to_vec).unwrap_or_default();
        if magic.starts_with(&[0x1f, 0x8b]) || magic == super::ZSTD_MAGIC {
            let media_type = if magic == super::ZSTD_MAGIC {
                oci::MEDIA_TYPE_LAYER_ZSTD
            } else {
                oci::MEDIA_TYPE_LAYER_GZIP
            };
            let mut w = HashingWriter::new(io::sink());
            let mut decoder = super::decompressor(file).at(&blob_path)?;
            io::copy(&mut decoder, &mut w)
                .map_err(|e| self.err(format!("layer {path}: cannot decompress: {e}")))?;
            let (_, diff_id, _) = w.finish();
            Ok(Layer { digest, diff_id, size, media_type: media_type.to_string() })
        } else {
            Ok(Layer {
                digest: digest.clone(),
                diff_id: digest,
                size,
                media_type: oci::MEDIA_TYPE_LAYER_TAR.to_string(),
            })
        }
    }
}
