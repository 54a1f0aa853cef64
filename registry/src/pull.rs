//! Pull: manifest (or index -> the platform's manifest), then config and layers in parallel,
//! each verified against its digest while it streams into the store.

use std::cell::Cell;
use std::io::{self, Read};

use cache::oci::{self, Descriptor, Index, Manifest, Platform};
use cache::{Digest, Image, ImageConfig, ImageRef, Store};
use reqwest::StatusCode;
use reqwest::blocking::Response;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use crate::error::{Error, Result};
use crate::http::{TRIES, backoff, describe, read_limited, status_error, unauthorized};
use crate::manifest_target;
use crate::{Client, Outcome, Progress, Repository, parallel};

/// Docker's manifest list, the Docker twin of an OCI index.
pub(crate) const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// The largest manifest or index we accept (distribution's own limit is 4 MiB).
const MAX_MANIFEST: u64 = 4 << 20;

const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// What a manifest response turned out to be.
pub(crate) enum Fetched {
    Index(Index),
    Manifest(Manifest),
}

/// docker's `pull` event, by the reference as the user wrote it (`busybox:latest`), whoever
/// pulled (`rbuild pull`, the API's `images/create`, a build's FROM).
fn pulled(store: &Store, reference: &ImageRef) {
    let name = reference.to_string();
    cache::events::image(store.root(), "pull", &name, &name);
}

impl Client {
    /// Pulls `reference` into `store` and tags it there; returns the image.
    ///
    /// An index (or Docker manifest list) resolves to the manifest for `platform` (default:
    /// the host's). Blobs the store already has are not fetched. Every blob is verified against
    /// its digest while it is written; a mismatch or a short blob is an error that names the
    /// blob, and leaves nothing of it stored. The image keeps the registry's manifest bytes,
    /// so its id is the digest the registry reports.
    ///
    /// The registry's mirrors in the config file are tried first, in order; the registry itself
    /// last, unless the config blocks it.
    pub fn pull(&self, store: &Store, reference: &ImageRef, platform: Option<&Platform>) -> Result<Image> {
        let image =
            self.first_source(reference, |repo| self.pull_from(store, reference, repo, platform, true))?;
        pulled(store, reference);
        Ok(image)
    }

    /// [`Client::pull`] without tagging: the image for `platform` is stored and returned, and
    /// the name keeps pointing where it did (a build for another platform pins it instead,
    /// `cache::Store::pin_platform`).
    pub fn pull_untagged(&self, store: &Store, reference: &ImageRef, platform: &Platform) -> Result<Image> {
        let image = self
            .first_source(reference, |repo| self.pull_from(store, reference, repo, Some(platform), false))?;
        pulled(store, reference);
        Ok(image)
    }

    fn pull_from(
        &self,
        store: &Store,
        reference: &ImageRef,
        repo: &Repository,
        platform: Option<&Platform>,
        tag: bool,
    ) -> Result<Image> {
        let repo = repo.clone();
        let shown = reference.to_string();
        let wanted = platform.cloned().unwrap_or_else(Platform::host);
        let first = manifest_target(reference);
        let (mut bytes, mut digest, mut fetched) =
            self.fetch_manifest(&repo, &first, reference.digest(), &shown)?;
        if let Fetched::Index(index) = &fetched {
            let chosen = index.manifest_for(&wanted).ok_or_else(|| Error::NoMatchingPlatform {
                reference: shown.clone(),
                wanted: wanted.to_string(),
                available: index.platforms(),
            })?;
            let d = chosen.digest.clone();
            (bytes, digest, fetched) = self.fetch_manifest(&repo, d.as_str(), Some(&d), &shown)?;
        }
        let manifest = match fetched {
            Fetched::Manifest(m) => m,
            Fetched::Index(_) => {
                return Err(Error::BadManifest {
                    reference: shown,
                    reason: "the index for this platform points at another index".to_string(),
                });
            }
        };
        self.pull_fetched(store, reference, &repo, &shown, (bytes, digest, manifest), tag)
    }

    /// Pulls every platform of `reference` (as `docker pull --all-platforms`): the index (or
    /// Docker manifest list) byte for byte, and each manifest it lists with its config and
    /// layers, verified as [`Client::pull`] does; then tags the index. Entries that are not
    /// container images (attestations, other artifacts) are stored too, so that pushing the
    /// index gives the same digest. A reference that is a single manifest is pulled and tagged
    /// as it is. Nothing is tagged unless everything is stored.
    pub fn pull_all_platforms(&self, store: &Store, reference: &ImageRef) -> Result<PulledAll> {
        let all = self.first_source(reference, |repo| self.pull_all_from(store, reference, repo))?;
        pulled(store, reference);
        Ok(all)
    }

    fn pull_all_from(&self, store: &Store, reference: &ImageRef, repo: &Repository) -> Result<PulledAll> {
        let repo = repo.clone();
        let shown = reference.to_string();
        let first = manifest_target(reference);
        let (bytes, digest, fetched) = self.fetch_manifest(&repo, &first, reference.digest(), &shown)?;
        let index = match fetched {
            Fetched::Manifest(manifest) => {
                let image =
                    self.pull_fetched(store, reference, &repo, &shown, (bytes, digest, manifest), true)?;
                let platform = Some(Platform {
                    architecture: image.config.architecture.clone(),
                    os: image.config.os.clone(),
                    variant: None,
                });
                return Ok(PulledAll {
                    digest: image.digest.clone(),
                    index: false,
                    images: vec![(platform, image.digest)],
                });
            }
            Fetched::Index(index) => index,
        };
        let mut manifests = Vec::new();
        let mut nested = Vec::new();
        self.collect_index(&repo, &shown, &index, 0, &mut manifests, &mut nested)?;
        self.store_manifests(store, &repo, &shown, &manifests, false)?;
        for bytes in &nested {
            store.put_index(bytes)?;
        }
        let stored = store.put_index(&bytes)?;
        debug_assert_eq!(stored, digest);
        store.set_tag(reference, &digest)?;
        let images = index
            .manifests
            .iter()
            .filter(|d| manifests.iter().any(|(_, md, m)| *md == d.digest && is_image(m)))
            .map(|d| (d.platform.clone(), d.digest.clone()))
            .collect();
        Ok(PulledAll { digest, index: true, images })
    }

    /// The repositories `reference` may be pulled from, in order, each with how errors name it:
    /// its registry's mirrors, then the registry unless the config blocks it.
    fn sources(&self, reference: &ImageRef) -> Result<Vec<(String, Repository)>> {
        let origin = Repository::of(reference);
        let registries = &self.options.registries;
        let endpoints = registries.endpoints(&origin.host);
        if endpoints.is_empty() {
            return Err(Error::Blocked {
                host: origin.host,
                reference: reference.to_string(),
                config: registries.path().map_or_else(|| "the config".into(), |p| p.display().to_string()),
            });
        }
        Ok(endpoints
            .into_iter()
            .map(|e| {
                let path = match e.prefix.as_str() {
                    "" => origin.path.clone(),
                    prefix => format!("{prefix}/{}", origin.path),
                };
                let label = if e.mirror { format!("mirror {}", e.host) } else { e.host.clone() };
                (label, Repository { host: e.host, path })
            })
            .collect())
    }

    /// `pull` from the first source that has `reference`. With one source its error is the
    /// answer; with several, what each said. A failure of the store itself is no source's.
    fn first_source<T>(&self, reference: &ImageRef, pull: impl Fn(&Repository) -> Result<T>) -> Result<T> {
        let sources = self.sources(reference)?;
        if let [(_, only)] = sources.as_slice() {
            return pull(only);
        }
        let mut tried = Vec::new();
        for (label, repo) in sources {
            match pull(&repo) {
                Ok(done) => return Ok(done),
                Err(e @ Error::Store(_)) => return Err(e),
                Err(e) => tried.push((label, e)),
            }
        }
        Err(Error::AllSourcesFailed { reference: reference.to_string(), tried })
    }

    /// The rest of a single-manifest pull, once its manifest is fetched.
    fn pull_fetched(
        &self,
        store: &Store,
        reference: &ImageRef,
        repo: &Repository,
        shown: &str,
        (bytes, digest, manifest): (Vec<u8>, Digest, Manifest),
        tag: bool,
    ) -> Result<Image> {
        if !is_image(&manifest) {
            return Err(Error::BadManifest {
                reference: shown.to_string(),
                reason: format!(
                    "not a container image (its config's media type is {})",
                    manifest.config.media_type
                ),
            });
        }
        // The image this machine will run: its layers are unpacked as they arrive.
        self.store_manifests(store, repo, shown, &[(bytes, digest.clone(), manifest)], true)?;
        if tag {
            store.set_tag(reference, &digest)?;
        }
        Ok(store.image(&digest)?)
    }

    /// Fetches (verified) every manifest `index` lists, into `manifests`, and the indexes it
    /// lists, into `nested` (each after the indexes it lists in turn).
    fn collect_index(
        &self,
        repo: &Repository,
        shown: &str,
        index: &Index,
        depth: usize,
        manifests: &mut Vec<(Vec<u8>, Digest, Manifest)>,
        nested: &mut Vec<Vec<u8>>,
    ) -> Result<()> {
        for d in &index.manifests {
            if manifests.iter().any(|(_, md, _)| *md == d.digest) {
                continue;
            }
            let (bytes, digest, fetched) =
                self.fetch_manifest(repo, d.digest.as_str(), Some(&d.digest), shown)?;
            match fetched {
                Fetched::Manifest(m) => manifests.push((bytes, digest, m)),
                Fetched::Index(inner) if depth < 2 => {
                    self.collect_index(repo, shown, &inner, depth + 1, manifests, nested)?;
                    nested.push(bytes);
                }
                Fetched::Index(_) => {
                    return Err(Error::BadManifest {
                        reference: shown.to_string(),
                        reason: "its indexes nest more than 3 deep".to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Fetches the configs of `manifests` that `store` lacks, checks every image among them is
    /// whole (its config parses and lists a diff id per layer), fetches their layers (in
    /// parallel, each blob once) and only then writes the manifests themselves.
    ///
    /// With `unpack`, each layer of an image is unpacked while its blob downloads (the bytes
    /// go both to the blob file and, on a thread, through the decompressor into the layer's
    /// directory), and the layers download in parallel: a pull ends with the image ready to
    /// run, as `docker pull` does, in about the time of the slower of the download and the
    /// unpack instead of their sum. Both ends verify the digest; if the streamed unpack fails
    /// (a retried download, a broken connection) the stored blob is unpacked afterwards.
    fn store_manifests(
        &self,
        store: &Store,
        repo: &Repository,
        shown: &str,
        manifests: &[(Vec<u8>, Digest, Manifest)],
        unpack: bool,
    ) -> Result<()> {
        let mut configs: Vec<&Descriptor> = Vec::new();
        for (_, _, manifest) in manifests {
            if !configs.iter().any(|b| b.digest == manifest.config.digest) {
                configs.push(&manifest.config);
            }
        }
        parallel(self.options.jobs, &configs, |desc| self.fetch_missing(store, repo, desc, shown, None))?;

        // Check each image is whole before its layers are fetched and it becomes visible: the
        // config must parse and list a diff id for each layer.
        let mut layers: Vec<(&Descriptor, Option<Digest>)> = Vec::new();
        for (_, digest, manifest) in manifests {
            let diff_ids = if is_image(manifest) {
                let bad = |reason: String| Error::BadManifest { reference: shown.to_string(), reason };
                let config_bytes = store.read_blob(&manifest.config.digest)?;
                let config: ImageConfig = serde_json::from_slice(&config_bytes).map_err(|e| {
                    bad(format!("its image config {} is not valid: {e}", manifest.config.digest))
                })?;
                if config.rootfs.diff_ids.len() != manifest.layers.len() {
                    return Err(bad(format!(
                        "the manifest {digest} lists {} layers but the config {} diff ids",
                        manifest.layers.len(),
                        config.rootfs.diff_ids.len()
                    )));
                }
                config.rootfs.diff_ids.into_iter().map(Some).collect()
            } else {
                vec![None; manifest.layers.len()]
            };
            for (desc, diff_id) in manifest.layers.iter().zip(diff_ids) {
                if !layers.iter().any(|(b, _)| b.digest == desc.digest) {
                    layers.push((desc, diff_id.filter(|_| unpack)));
                }
            }
        }
        parallel(self.options.jobs, &layers, |(desc, diff_id)| {
            let layer = diff_id.as_ref().map(|diff_id| cache::oci::Layer {
                digest: desc.digest.clone(),
                diff_id: diff_id.clone(),
                size: desc.size,
                media_type: desc.media_type.clone(),
            });
            self.fetch_missing(store, repo, desc, shown, layer.as_ref())?;
            if let Some(layer) = &layer {
                // Already there when the download unpacked it; else unpacked from the blob.
                store.layer_dir(layer)?;
            }
            Ok(())
        })?;
        for (bytes, digest, _) in manifests {
            let stored = store.write_blob(bytes)?;
            debug_assert_eq!(stored, *digest);
        }
        Ok(())
    }

    /// Fetches blob `desc` unless `store` has it, unpacking it as `unpack` while it downloads.
    fn fetch_missing(
        &self,
        store: &Store,
        repo: &Repository,
        desc: &Descriptor,
        shown: &str,
        unpack: Option<&cache::oci::Layer>,
    ) -> Result<()> {
        if store.keep_blob(&desc.digest) {
            self.report(Progress::Done {
                digest: desc.digest.clone(),
                size: desc.size,
                outcome: Outcome::AlreadyPresent,
            });
        } else {
            self.fetch_blob(store, repo, desc, shown, unpack)?;
        }
        // A hint for cross-repository mounts on a later push; losing it costs nothing.
        let _ = store.add_blob_source(&desc.digest, &repo.to_string());
        Ok(())
    }

    /// GETs manifest `tag_or_digest` of `repo`, verifying it against `expected` when given.
    pub(crate) fn fetch_manifest(
        &self,
        repo: &Repository,
        tag_or_digest: &str,
        expected: Option<&Digest>,
        shown: &str,
    ) -> Result<(Vec<u8>, Digest, Fetched)> {
        let url =
            format!("{}/v2/{}/manifests/{tag_or_digest}", self.transport.base_url(&repo.host), repo.path);
        let action = || format!("pulling {shown}");
        let resp = self.transport.send(&repo.host, &[repo.pull_scope()], TRIES, &|c| {
            Ok(c.get(&url).header(ACCEPT, ACCEPT_MANIFESTS))
        })?;
        let resp = match resp.status() {
            s if s.is_success() => resp,
            StatusCode::NOT_FOUND => {
                let shown = match expected {
                    Some(d) if !shown.contains(d.as_str()) => format!("{shown}@{d}"),
                    _ => shown.to_string(),
                };
                return Err(Error::ManifestUnknown { reference: shown });
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(unauthorized(&self.transport, &repo.host, action(), resp));
            }
            _ => return Err(status_error(&repo.host, action(), resp, TRIES)),
        };
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let bytes = read_limited(resp, MAX_MANIFEST + 1).map_err(|e| Error::Unreachable {
            host: repo.host.clone(),
            reason: format!("reading manifest of {shown}: {e}"),
        })?;
        let bad = |reason: String| Error::BadManifest { reference: shown.to_string(), reason };
        if bytes.len() as u64 > MAX_MANIFEST {
            return Err(bad(format!("the manifest is larger than {} MiB", MAX_MANIFEST >> 20)));
        }
        let digest = Digest::of(&bytes);
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(Error::DigestMismatch {
                what: "manifest",
                repository: repo.to_string(),
                digest: expected.clone(),
                actual: digest,
            });
        }
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("the manifest is not JSON: {e}")))?;
        let body_type = value.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
        let media_type = match content_type.as_str() {
            oci::MEDIA_TYPE_INDEX
            | MEDIA_TYPE_DOCKER_MANIFEST_LIST
            | oci::MEDIA_TYPE_MANIFEST
            | oci::MEDIA_TYPE_DOCKER_MANIFEST => content_type.as_str(),
            _ if !body_type.is_empty() => body_type,
            _ if value.get("manifests").is_some() => oci::MEDIA_TYPE_INDEX,
            _ if value.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) => {
                "application/vnd.docker.distribution.manifest.v1+json"
            }
            _ => oci::MEDIA_TYPE_MANIFEST,
        };
        let fetched = match media_type {
            oci::MEDIA_TYPE_INDEX | MEDIA_TYPE_DOCKER_MANIFEST_LIST => Fetched::Index(
                serde_json::from_value(value).map_err(|e| bad(format!("the index is not valid: {e}")))?,
            ),
            oci::MEDIA_TYPE_MANIFEST | oci::MEDIA_TYPE_DOCKER_MANIFEST => Fetched::Manifest(
                serde_json::from_value(value).map_err(|e| bad(format!("the manifest is not valid: {e}")))?,
            ),
            other => return Err(bad(format!("unsupported manifest media type {other}"))),
        };
        Ok((bytes, digest, fetched))
    }

    /// Downloads blob `desc` of `repo` into `store`, verified; retries a connection that breaks
    /// off mid-blob.
    pub(crate) fn fetch_blob(
        &self,
        store: &Store,
        repo: &Repository,
        desc: &Descriptor,
        shown: &str,
        unpack: Option<&cache::oci::Layer>,
    ) -> Result<()> {
        let url = format!("{}/v2/{}/blobs/{}", self.transport.base_url(&repo.host), repo.path, desc.digest);
        let mut attempt = 1;
        loop {
            let resp = self.transport.send(&repo.host, &[repo.pull_scope()], TRIES, &|c| Ok(c.get(&url)))?;
            let action = || format!("fetching blob {} of {repo}", desc.digest);
            match resp.status() {
                s if s.is_success() => {}
                StatusCode::NOT_FOUND => {
                    return Err(Error::BlobUnknown {
                        repository: repo.to_string(),
                        digest: desc.digest.clone(),
                    });
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(unauthorized(&self.transport, &repo.host, format!("pulling {shown}"), resp));
                }
                _ => return Err(status_error(&repo.host, action(), resp, TRIES)),
            }
            self.report(Progress::Start { digest: desc.digest.clone(), size: desc.size });
            let failure = Cell::new(None);
            let reader =
                BlobReader { client: self, inner: resp, desc, read: 0, reported: 0, failure: &failure };
            // The first attempt is also unpacked as it arrives (a failed one leaves nothing).
            let stream_to = unpack.filter(|_| attempt == 1);
            let ingested = std::thread::scope(|s| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(STREAM_CHUNKS);
                let unpacking = stream_to.map(|layer| {
                    s.spawn(move || {
                        store.unpack_layer_from(layer, ChannelReader { rx, chunk: Vec::new(), at: 0 })
                    })
                });
                let tee = Tee { inner: reader, to: unpacking.as_ref().map(|_| tx) };
                // Dropping the tee (at the end of the ingest) ends the unpacker's stream.
                let ingested = store.ingest_blob(tee, Some(&desc.digest));
                // Its failure is not this download's: the blob is unpacked again if needed.
                let _ = unpacking.map(|h| h.join());
                ingested
            });
            let err = match ingested {
                Ok(_) => {
                    self.report(Progress::Done {
                        digest: desc.digest.clone(),
                        size: desc.size,
                        outcome: Outcome::Transferred,
                    });
                    return Ok(());
                }
                Err(cache::Error::DigestMismatch { actual, .. }) => {
                    return Err(Error::DigestMismatch {
                        what: "blob",
                        repository: repo.to_string(),
                        digest: desc.digest.clone(),
                        actual,
                    });
                }
                Err(e) => e,
            };
            let (got, cause) = match failure.take() {
                Some(Failure::Oversized) => {
                    return Err(Error::Oversized {
                        repository: repo.to_string(),
                        digest: desc.digest.clone(),
                        size: desc.size,
                    });
                }
                Some(Failure::Short { got, cause }) => (got, cause),
                None => return Err(err.into()),
            };
            if attempt < TRIES {
                backoff(attempt);
                attempt += 1;
                continue;
            }
            return Err(Error::Truncated {
                repository: repo.to_string(),
                digest: desc.digest.clone(),
                got,
                size: desc.size,
                cause: cause.map(|c| format!(" ({c})")).unwrap_or_default(),
            });
        }
    }
}

/// What [`Client::pull_all_platforms`] stored and tagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledAll {
    /// What the reference now points at in the store: the index, or the manifest of a
    /// single-platform image.
    pub digest: Digest,
    /// Whether `digest` is an index.
    pub index: bool,
    /// The container images in it: each one's platform (as the index gives it; from the config
    /// for a single-platform image) and manifest digest.
    pub images: Vec<(Option<Platform>, Digest)>,
}

/// Whether `manifest` is a container image (its config is an image config), not an artifact.
fn is_image(manifest: &Manifest) -> bool {
    [oci::MEDIA_TYPE_CONFIG, oci::MEDIA_TYPE_DOCKER_CONFIG].contains(&manifest.config.media_type.as_str())
}

/// Chunks (of the size a blob is read in) in flight from a download to its unpacker: the
/// download waits when the unpacker is this far behind.
const STREAM_CHUNKS: usize = 256;

/// Passes what it reads on to a channel too, until the receiver is gone.
struct Tee<R> {
    inner: R,
    to: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0
            && let Some(to) = &self.to
            && to.send(buf[..n].to_vec()).is_err()
        {
            // The unpacker stopped (it failed, or the layer was unpacked already).
            self.to = None;
        }
        Ok(n)
    }
}

/// The receiving end of a [`Tee`] as a reader: the end of the stream is the sender dropped.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Why a blob stream stopped early.
enum Failure {
    /// It ended (cleanly, or with the connection failing: `cause`) after `got` bytes.
    Short { got: u64, cause: Option<String> },
    /// It went on past its descriptor's size.
    Oversized,
}

/// A blob response body that enforces the descriptor's size and reports progress.
struct BlobReader<'a> {
    client: &'a Client,
    inner: Response,
    desc: &'a Descriptor,
    read: u64,
    reported: u64,
    failure: &'a Cell<Option<Failure>>,
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) => {
                self.failure.set(Some(Failure::Short { got: self.read, cause: Some(describe(&e)) }));
                return Err(e);
            }
        };
        if n == 0 && self.read < self.desc.size {
            self.failure.set(Some(Failure::Short { got: self.read, cause: None }));
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "blob truncated"));
        }
        self.read += n as u64;
        if self.read > self.desc.size {
            self.failure.set(Some(Failure::Oversized));
            return Err(io::Error::new(io::ErrorKind::InvalidData, "blob larger than its descriptor"));
        }
        if self.read - self.reported >= 1 << 20 || (n > 0 && self.read == self.desc.size) {
            self.reported = self.read;
            self.client.report(Progress::Bytes {
                digest: self.desc.digest.clone(),
                done: self.read,
                size: self.desc.size,
            });
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(arch: &str, variant: Option<&str>, n: u8) -> Descriptor {
        Descriptor {
            media_type: oci::MEDIA_TYPE_MANIFEST.into(),
            digest: Digest::of(&[n]),
            size: 1,
            annotations: Default::default(),
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(Into::into),
            }),
        }
    }

    #[test]
    fn platform_choice_matches_os_arch_and_variant() {
        let index = Index {
            schema_version: 2,
            media_type: None,
            manifests: vec![
                desc("arm", Some("v6"), 1),
                desc("arm", Some("v7"), 2),
                desc("amd64", None, 3),
                desc("arm64", Some("v8"), 4),
            ],
            annotations: Default::default(),
        };
        let p = |a: &str, v: Option<&str>| Platform {
            architecture: a.into(),
            os: "linux".into(),
            variant: v.map(Into::into),
        };
        assert_eq!(index.manifest_for(&p("amd64", None)).unwrap().digest, Digest::of(&[3]));
        assert_eq!(index.manifest_for(&p("arm", Some("v7"))).unwrap().digest, Digest::of(&[2]));
        assert_eq!(index.manifest_for(&p("arm64", None)).unwrap().digest, Digest::of(&[4]));
        assert!(index.manifest_for(&p("s390x", None)).is_none());
        assert_eq!(index.platforms(), "linux/arm/v6, linux/arm/v7, linux/amd64, linux/arm64/v8");
    }
}
