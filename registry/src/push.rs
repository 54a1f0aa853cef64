//! Push: every blob (HEAD first; a cross-repository mount when the store knows another
//! repository of the same registry has it; else a monolithic or chunked upload), in parallel,
//! then the manifest, byte for byte as stored.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::time::Duration;

use cache::oci::{self, Descriptor};
use cache::{Digest, Image, ImageRef, Store};
use reqwest::StatusCode;
use reqwest::Url;
use reqwest::blocking::Body;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};

use crate::error::{Error, Result};
use crate::http::{TRIES, backoff, status_error, unauthorized};
use crate::{Client, Outcome, Progress, ProgressFn, Repository, parallel};

/// How long an upload of `size` bytes may take: a minute plus 256 KiB/s.
fn upload_timeout(size: u64) -> Duration {
    Duration::from_secs(60 + size / (256 << 10))
}

impl Client {
    /// Where a push of `reference` goes: its own registry (never a mirror), unless blocked.
    fn push_repository(&self, reference: &ImageRef) -> Result<Repository> {
        let repo = Repository::of(reference);
        let registries = &self.options.registries;
        if registries.is_blocked(&repo.host) {
            let config = registries.path().map_or_else(|| "the config".into(), |p| p.display().to_string());
            return Err(Error::PushBlocked { host: repo.host, config });
        }
        Ok(repo)
    }

    /// Pushes `image` (its blobs from `store`) to `reference` and returns the manifest digest,
    /// which is the image's own digest: the manifest is sent as stored. A reference with a
    /// digest only is pushed by that digest, which must be the image's.
    pub fn push(&self, store: &Store, image: &Image, reference: &ImageRef) -> Result<Digest> {
        let repo = self.push_repository(reference)?;
        let shown = reference.to_string();
        let target = match (reference.tag(), reference.digest()) {
            (Some(t), _) => t.to_string(),
            (None, Some(d)) if *d == image.digest => d.to_string(),
            (None, Some(d)) => {
                return Err(Error::BadManifest {
                    reference: shown,
                    reason: format!("the image to push is {}, not {d}", image.digest),
                });
            }
            (None, None) => "latest".to_string(),
        };
        let manifest_bytes = store.read_blob(&image.digest)?;
        self.push_manifest(store, &manifest_bytes, &image.manifest, &repo, &target, &shown)
    }

    /// Pushes the blobs `manifest` names (from `store`), then `manifest_bytes` as `target`
    /// (a tag or digest) of `repo`. Also used for artifacts such as the build cache.
    pub(crate) fn push_manifest(
        &self,
        store: &Store,
        manifest_bytes: &[u8],
        manifest: &oci::Manifest,
        repo: &Repository,
        target: &str,
        shown: &str,
    ) -> Result<Digest> {
        let repo = repo.clone();
        let shown = shown.to_string();
        let mut blobs: Vec<&Descriptor> = Vec::with_capacity(manifest.layers.len() + 1);
        for d in manifest.layers.iter().chain(std::iter::once(&manifest.config)) {
            if !blobs.iter().any(|b| b.digest == d.digest) {
                blobs.push(d);
            }
        }
        parallel(self.options.jobs, &blobs, |desc| {
            let mut attempt = 1;
            loop {
                match self.push_blob(store, &repo, desc, &shown) {
                    Err(Error::Unreachable { .. } | Error::Server { .. }) if attempt < TRIES => {
                        backoff(attempt);
                        attempt += 1;
                    }
                    other => return other,
                }
            }
        })?;

        let media_type = manifest.media_type.clone().unwrap_or_else(|| oci::MEDIA_TYPE_MANIFEST.to_string());
        self.put_manifest(&repo, target, &media_type, manifest_bytes.to_vec(), &shown)
    }

    /// Pushes the multi-platform image whose index (or Docker manifest list) is `digest` in
    /// `store` to `reference`: every manifest it lists (with its blobs) by digest, then the
    /// index byte for byte, so its digest, which this returns, stays the same. A reference with
    /// a digest only must name this index.
    pub fn push_index(&self, store: &Store, digest: &Digest, reference: &ImageRef) -> Result<Digest> {
        let repo = self.push_repository(reference)?;
        let shown = reference.to_string();
        let target = match (reference.tag(), reference.digest()) {
            (Some(t), _) => t.to_string(),
            (None, Some(d)) if d == digest => d.to_string(),
            (None, Some(d)) => {
                return Err(Error::BadManifest {
                    reference: shown,
                    reason: format!("the image to push is {digest}, not {d}"),
                });
            }
            (None, None) => "latest".to_string(),
        };
        self.push_index_to(store, digest, &repo, &target, &shown, 0)
    }

    fn push_index_to(
        &self,
        store: &Store,
        digest: &Digest,
        repo: &Repository,
        target: &str,
        shown: &str,
        depth: usize,
    ) -> Result<Digest> {
        let Some(index) = store.index(digest)? else {
            return Err(Error::BadManifest {
                reference: shown.to_string(),
                reason: format!("{digest} is not an image index"),
            });
        };
        let mut done: Vec<&Digest> = Vec::new();
        for child in &index.manifests {
            if done.contains(&&child.digest) {
                continue;
            }
            done.push(&child.digest);
            if store.index(&child.digest)?.is_some() {
                if depth >= 2 {
                    return Err(Error::BadManifest {
                        reference: shown.to_string(),
                        reason: "its indexes nest more than 3 deep".to_string(),
                    });
                }
                self.push_index_to(store, &child.digest, repo, child.digest.as_str(), shown, depth + 1)?;
                continue;
            }
            let bytes = store.read_blob(&child.digest)?;
            let manifest: oci::Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::BadManifest {
                reference: shown.to_string(),
                reason: format!("its manifest {} does not parse: {e}", child.digest),
            })?;
            self.push_manifest(store, &bytes, &manifest, repo, child.digest.as_str(), shown)?;
        }
        let media_type = index.media_type.clone().unwrap_or_else(|| oci::MEDIA_TYPE_INDEX.to_string());
        let bytes = store.read_blob(digest)?;
        self.put_manifest(repo, target, &media_type, bytes, shown)
    }

    /// PUTs `bytes` (of `media_type`) as manifest `target` (a tag or digest) of `repo`; returns
    /// their digest.
    fn put_manifest(
        &self,
        repo: &Repository,
        target: &str,
        media_type: &str,
        bytes: Vec<u8>,
        shown: &str,
    ) -> Result<Digest> {
        let url = format!("{}/v2/{}/manifests/{target}", self.transport.base_url(&repo.host), repo.path);
        let resp = self.transport.send(&repo.host, &[repo.push_scope()], TRIES, &|c| {
            Ok(c.put(&url).header(CONTENT_TYPE, media_type).body(bytes.clone()))
        })?;
        let action = || format!("pushing manifest of {shown}");
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(unauthorized(&self.transport, &repo.host, action(), resp));
            }
            _ => return Err(status_error(&repo.host, action(), resp, TRIES)),
        }
        Ok(Digest::of(&bytes))
    }

    /// Makes sure blob `desc` is in `repo`: already there, mounted, or uploaded.
    fn push_blob(&self, store: &Store, repo: &Repository, desc: &Descriptor, shown: &str) -> Result<()> {
        let base = self.transport.base_url(&repo.host);
        let scopes = [repo.push_scope()];
        let action = |what: &str| format!("{what} blob {} to {repo}", desc.digest);
        let fail = |resp: reqwest::blocking::Response, what: &str| match resp.status() {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                unauthorized(&self.transport, &repo.host, format!("pushing {shown}"), resp)
            }
            _ => status_error(&repo.host, action(what), resp, TRIES),
        };
        let done = |outcome: Outcome| {
            self.report(Progress::Done { digest: desc.digest.clone(), size: desc.size, outcome });
            let _ = store.add_blob_source(&desc.digest, &repo.to_string());
            Ok(())
        };
        // Check the blob is in the store before asking anything of the registry.
        drop(store.open_blob(&desc.digest)?);

        let blob_url = format!("{base}/v2/{}/blobs/{}", repo.path, desc.digest);
        let resp = self.transport.send(&repo.host, &scopes, TRIES, &|c| Ok(c.head(&blob_url)))?;
        match resp.status() {
            s if s.is_success() => return done(Outcome::AlreadyPresent),
            StatusCode::NOT_FOUND => {}
            _ => return Err(fail(resp, "checking")),
        }

        // A mount needs pull access to the source too; a registry that declines answers 202 and
        // starts an ordinary upload.
        let uploads = format!("{base}/v2/{}/blobs/uploads/", repo.path);
        let mut session = None;
        let prefix = format!("{}/", repo.host);
        let source = store
            .blob_sources(&desc.digest)
            .into_iter()
            .filter_map(|s| s.strip_prefix(&prefix).map(str::to_string))
            .find(|p| *p != repo.path);
        if let Some(from) = &source {
            let mount_scopes = [repo.push_scope(), format!("repository:{from}:pull")];
            let mut url = Url::parse(&uploads).map_err(|e| bad_url(repo, &uploads, e))?;
            url.query_pairs_mut().append_pair("mount", desc.digest.as_str()).append_pair("from", from);
            let resp = self.transport.send(&repo.host, &mount_scopes, TRIES, &|c| {
                Ok(c.post(url.clone()).header(CONTENT_LENGTH, 0))
            })?;
            match resp.status() {
                StatusCode::CREATED => {
                    return done(Outcome::Mounted { from: format!("{}/{from}", repo.host) });
                }
                StatusCode::ACCEPTED => session = Some(location(repo, &url, &resp)?),
                _ => {} // fall back to a plain upload
            }
        }
        let session = match session {
            Some(s) => s,
            None => {
                let resp = self
                    .transport
                    .send(&repo.host, &scopes, TRIES, &|c| Ok(c.post(&uploads).header(CONTENT_LENGTH, 0)))?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(fail(resp, "starting upload of"));
                }
                let base_url = Url::parse(&uploads).map_err(|e| bad_url(repo, &uploads, e))?;
                location(repo, &base_url, &resp)?
            }
        };

        self.report(Progress::Start { digest: desc.digest.clone(), size: desc.size });
        let path = store.blob_path(&desc.digest);
        let progress = self.options.progress.clone();
        let digest = desc.digest.clone();
        let size = desc.size;
        let section = move |offset: u64, len: u64| -> Result<Body> {
            let mut f = File::open(&path).map_err(|e| cache::Error::Io { path: path.clone(), source: e })?;
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| cache::Error::Io { path: path.clone(), source: e })?;
            let reader = ProgressReader {
                inner: f.take(len),
                progress: progress.clone(),
                digest: digest.clone(),
                done: offset,
                reported: offset,
                size,
            };
            Ok(Body::sized(reader, len))
        };

        let mut url = session;
        let chunk = self.options.chunk_size.max(1);
        if desc.size > chunk {
            // Chunked: PATCH each range, following the Location each answer gives.
            let mut offset = 0;
            while offset < desc.size {
                let len = chunk.min(desc.size - offset);
                let range = format!("{offset}-{}", offset + len - 1);
                let resp = self.transport.send(&repo.host, &scopes, 1, &|c| {
                    Ok(c.patch(url.clone())
                        .timeout(upload_timeout(len))
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_RANGE, &range)
                        .header(CONTENT_LENGTH, len)
                        .body(section(offset, len)?))
                })?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(fail(resp, "uploading a chunk of"));
                }
                url = location(repo, &url, &resp)?;
                offset += len;
            }
            url.query_pairs_mut().append_pair("digest", desc.digest.as_str());
            let resp = self
                .transport
                .send(&repo.host, &scopes, 1, &|c| Ok(c.put(url.clone()).header(CONTENT_LENGTH, 0)))?;
            if resp.status() != StatusCode::CREATED {
                return Err(fail(resp, "finishing upload of"));
            }
        } else {
            // Monolithic: the whole blob in the closing PUT.
            url.query_pairs_mut().append_pair("digest", desc.digest.as_str());
            let resp = self.transport.send(&repo.host, &scopes, 1, &|c| {
                Ok(c.put(url.clone())
                    .timeout(upload_timeout(desc.size))
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, desc.size)
                    .body(section(0, desc.size)?))
            })?;
            if resp.status() != StatusCode::CREATED {
                return Err(fail(resp, "uploading"));
            }
        }
        done(Outcome::Transferred)
    }
}

fn bad_url(repo: &Repository, url: &str, e: impl std::fmt::Display) -> Error {
    Error::Status {
        host: repo.host.clone(),
        action: format!("URL {url}"),
        status: 0,
        detail: format!(": {e}"),
    }
}

/// The upload session URL a response's `Location` gives, resolved against `base`.
fn location(repo: &Repository, base: &Url, resp: &reqwest::blocking::Response) -> Result<Url> {
    let loc = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| Error::Status {
        host: repo.host.clone(),
        action: format!("upload to {repo}"),
        status: resp.status().as_u16(),
        detail: ": the response has no Location".to_string(),
    })?;
    base.join(loc).map_err(|e| bad_url(repo, loc, e))
}

/// A blob section being uploaded, reporting progress.
struct ProgressReader<R> {
    inner: R,
    progress: Option<ProgressFn>,
    digest: Digest,
    done: u64,
    reported: u64,
    size: u64,
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if let Some(p) = &self.progress
            && (self.done - self.reported >= 1 << 20 || (n > 0 && self.done == self.size))
        {
            self.reported = self.done;
            p(&Progress::Bytes { digest: self.digest.clone(), done: self.done, size: self.size });
        }
        Ok(n)
    }
}
