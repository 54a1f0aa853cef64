//! A container's files over the API: `archive` (docker cp both ways), `export`, `changes`,
//! through runtime::fsops, the functions `rbuild cp`, `export` and `diff` call.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::StreamExt;
use runtime::container::Containers;
use runtime::fsops::{self, ChangeKind, CopyOptions, HostSource, PathStat};
use serde_json::json;
use tokio::sync::mpsc;

use super::flag;
use crate::{ApiError, Ctx, blocking};

type Chunk = Result<Vec<u8>, io::Error>;

/// A blocking writer whose bytes become a response body (in chunks of up to 64 KiB); writing
/// fails once the client has gone, which ends the work that writes.
pub(super) struct BodyWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
}

impl BodyWriter {
    const CHUNK: usize = 64 * 1024;

    /// The writer and the body it feeds.
    pub fn new() -> (BodyWriter, Body) {
        let (tx, rx) = mpsc::channel::<Chunk>(16);
        let stream =
            futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
        (BodyWriter { tx, buf: Vec::with_capacity(Self::CHUNK) }, Body::from_stream(stream))
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(Self::CHUNK));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

impl Write for BodyWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A request body read from a blocking thread, chunk by chunk as it arrives.
struct BodyReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    buf: Bytes,
}

impl BodyReader {
    fn new(body: Body) -> BodyReader {
        let (tx, rx) = mpsc::channel(16);
        let mut stream = body.into_data_stream();
        tokio::spawn(async move {
            while let Some(chunk) = stream.next().await {
                if tx.send(chunk.map_err(io::Error::other)).await.is_err() {
                    return;
                }
            }
        });
        BodyReader { rx, buf: Bytes::new() }
    }
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = self.buf.len().min(out.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}

/// Go's `os.FileMode` bits, in which docker's path stat carries the mode.
fn go_file_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    m |= match st_mode & libc::S_IFMT {
        libc::S_IFDIR => 1 << 31,
        libc::S_IFLNK => 1 << 27,
        libc::S_IFBLK => 1 << 26,
        libc::S_IFCHR => (1 << 26) | (1 << 21),
        libc::S_IFIFO => 1 << 25,
        libc::S_IFSOCK => 1 << 24,
        _ => 0,
    };
    for (unix, go) in [(libc::S_ISUID, 1 << 23), (libc::S_ISGID, 1 << 22), (libc::S_ISVTX, 1 << 20)] {
        if st_mode & unix != 0 {
            m |= go;
        }
    }
    m
}

/// The `X-Docker-Container-Path-Stat` header: base64 of docker's `ContainerPathStat` JSON.
fn stat_header(st: &PathStat) -> Result<HeaderValue, ApiError> {
    let mtime = cache::time::format_unix(st.mtime.0, st.mtime.1 as u32);
    let body = json!({
        "name": st.name,
        "size": st.size,
        "mode": go_file_mode(st.mode),
        "mtime": mtime,
        "linkTarget": st.link_target,
    });
    let encoded = base64::engine::general_purpose::STANDARD.encode(body.to_string());
    HeaderValue::from_str(&encoded).map_err(|e| ApiError::bad_request(format!("path stat: {e}")))
}

fn archive_path(q: &HashMap<String, String>) -> Result<PathBuf, ApiError> {
    let p =
        q.get("path").filter(|p| !p.is_empty()).ok_or_else(|| ApiError::bad_request("path is required"))?;
    // Relative paths are taken from the container's `/`, as `rbuild cp` takes them.
    Ok(if p.starts_with('/') { PathBuf::from(p) } else { PathBuf::from(format!("/{p}")) })
}

/// docker's 404 for a path that is not in the container.
fn no_such_path(id: &str, path: &std::path::Path) -> ApiError {
    ApiError::not_found(format!("Could not find the file {} in container {id}", path.display()))
}

fn stat_or_404(ctx: &Ctx, id: &str, path: &std::path::Path) -> Result<PathStat, ApiError> {
    let store = ctx.store()?;
    fsops::stat_path(&store, id, path)?.ok_or_else(|| no_such_path(id, path))
}

/// `HEAD /containers/{id}/archive?path=`: only the path's stat, in the header.
pub(super) async fn archive_head(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let path = archive_path(&q)?;
    blocking(move || {
        let st = stat_or_404(&ctx, &id, &path)?;
        Ok((StatusCode::OK, [("X-Docker-Container-Path-Stat", stat_header(&st)?)]).into_response())
    })
    .await
}

/// `GET /containers/{id}/archive?path=`: a tar of the path (named by its last component, or
/// `.` for `DIR/.`), its stat in the header, as `rbuild cp CONTAINER:PATH -` writes it.
pub(super) async fn archive_get(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let path = archive_path(&q)?;
    let (header, store) = blocking({
        let (ctx, id, path) = (ctx.clone(), id.clone(), path.clone());
        move || Ok((stat_header(&stat_or_404(&ctx, &id, &path)?)?, ctx.store()?))
    })
    .await?;
    let (mut out, body) = BodyWriter::new();
    tokio::task::spawn_blocking(move || {
        // An error after the header has gone can only cut the stream short: the client's tar
        // reader sees it end early.
        let opts = CopyOptions::default();
        if fsops::copy_out(&store, &id, &path, fsops::HostDest::Tar(&mut out), &opts).is_ok() {
            let _ = out.flush();
        }
    });
    Ok((
        StatusCode::OK,
        [
            ("Content-Type", HeaderValue::from_static("application/x-tar")),
            ("X-Docker-Container-Path-Stat", header),
        ],
        body,
    )
        .into_response())
}

/// `PUT /containers/{id}/archive?path=`: extracts the tar body into the directory `path`,
/// every name resolved inside the container. `copyUIDGID` keeps the tar's owners (`cp -a`),
/// else what is written belongs to the container's root. A directory is never replaced by a
/// file nor a file by a directory (docker's `noOverwriteDirNonDir`, which its CLI always asks).
pub(super) async fn archive_put(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Response, ApiError> {
    let path = archive_path(&q)?;
    let archive = flag(&q, "copyUIDGID");
    let mut reader = BodyReader::new(body);
    blocking(move || {
        let extracted = (|| {
            let st = stat_or_404(&ctx, &id, &path)?;
            if st.mode & libc::S_IFMT != libc::S_IFDIR {
                return Err(ApiError::bad_request("extraction point is not a directory"));
            }
            let store = ctx.store()?;
            let opts = CopyOptions { archive, follow_link: false };
            fsops::copy_in(&store, HostSource::Tar(&mut reader), &id, &path, &opts)?;
            Ok(())
        })();
        // The whole body is read before the answer: one that ends while the client still sends
        // (the tar's end blocks read, the last chunk not yet) closes the connection under it,
        // and the client sees a broken pipe instead of the answer.
        let _ = io::copy(&mut reader, &mut io::sink());
        extracted.map(|()| StatusCode::OK.into_response())
    })
    .await
}

/// `GET /containers/{id}/export`: the container's file system as a tar stream.
pub(super) async fn export(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (store, c) = blocking(move || {
        let c = Containers::open(ctx.root.as_path())?.find(&id)?;
        Ok((ctx.store()?, c))
    })
    .await?;
    let (mut out, body) = BodyWriter::new();
    tokio::task::spawn_blocking(move || {
        if fsops::export(&store, &c, &mut out).is_ok() {
            let _ = out.flush();
        }
    });
    Ok(([("Content-Type", "application/x-tar")], body).into_response())
}

/// `GET /containers/{id}/changes`: `[{Path, Kind}]`, Kind 0 changed, 1 added, 2 deleted.
pub(super) async fn changes(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Response, ApiError> {
    blocking(move || {
        let store = ctx.store()?;
        let c = Containers::open(ctx.root.as_path())?.find(&id)?;
        let list: Vec<_> = fsops::diff(&store, &c)?
            .into_iter()
            .map(|ch| {
                let kind = match ch.kind {
                    ChangeKind::Changed => 0,
                    ChangeKind::Added => 1,
                    ChangeKind::Deleted => 2,
                };
                json!({ "Path": ch.path, "Kind": kind })
            })
            .collect();
        Ok(axum::Json(list).into_response())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_modes_are_go_s() {
        assert_eq!(go_file_mode(libc::S_IFDIR | 0o755), (1 << 31) | 0o755);
        assert_eq!(go_file_mode(libc::S_IFREG | 0o644), 0o644);
        assert_eq!(go_file_mode(libc::S_IFLNK | 0o777), (1 << 27) | 0o777);
        assert_eq!(go_file_mode(libc::S_IFDIR | libc::S_ISVTX | 0o777), (1 << 31) | (1 << 20) | 0o777);
    }
}
