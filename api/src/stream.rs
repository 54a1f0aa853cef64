//! Streams both ways between the async server and the blocking store work: docker's JSON
//! message lines out (pull, push, build, load progress), and a request body in as a
//! `std::io::Read` (a build context or an image archive, which may be large, so never held in
//! memory whole).

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

type Chunk = Result<Vec<u8>, std::io::Error>;

/// Where a blocking handler writes docker's JSON lines (`{"status": ...}`, `{"stream": ...}`).
/// Shared by threads (a build reports from several).
#[derive(Clone)]
pub(crate) struct Lines {
    tx: mpsc::Sender<Chunk>,
}

impl Lines {
    /// Sends one line; false when the client has gone (the work may stop).
    pub fn send(&self, line: Value) -> bool {
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        self.tx.blocking_send(Ok(bytes)).is_ok()
    }

    /// `{"status": text}`, with the layer (or tag) `id` docker shows before it.
    pub fn status(&self, id: Option<&str>, text: &str) -> bool {
        match id {
            Some(id) => self.send(json!({ "status": text, "id": id })),
            None => self.send(json!({ "status": text })),
        }
    }

    /// `{"stream": text}`: the classic builder's and `load`'s output.
    pub fn stream(&self, text: &str) -> bool {
        self.send(json!({ "stream": text }))
    }

    /// The error line that ends a failed stream: clients print it and exit non-zero.
    pub fn error(&self, message: &str) -> bool {
        self.send(json!({ "errorDetail": { "message": message }, "error": message }))
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A `200 application/json` answer whose lines `work` writes from the blocking pool; the
/// status is sent at once, as dockerd does, so errors after it are error lines.
pub(crate) fn json_lines(work: impl FnOnce(&Lines) + Send + 'static) -> Response {
    let (tx, rx) = mpsc::channel::<Chunk>(64);
    tokio::task::spawn_blocking(move || work(&Lines { tx }));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    ([("Content-Type", "application/json")], Body::from_stream(stream)).into_response()
}

/// A request body read from a blocking thread, chunk by chunk as the client sends it.
pub(crate) struct BodyReader {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    current: Bytes,
}

impl BodyReader {
    /// Starts forwarding `body`; must be called on the async runtime.
    pub fn new(body: Body) -> BodyReader {
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut data = body.into_data_stream();
            while let Some(chunk) = data.next().await {
                let chunk = chunk.map_err(std::io::Error::other);
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        });
        BodyReader { rx, current: Bytes::new() }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Streams the file `file` (already unlinked, or removed by the caller when this ends) as
/// the body of a `200` with `content_type`.
pub(crate) fn file_body(mut file: std::fs::File, content_type: &'static str) -> Response {
    let (tx, rx) = mpsc::channel::<Chunk>(8);
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 256 << 10];
        loop {
            match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send(Ok(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    ([("Content-Type", content_type)], Body::from_stream(stream)).into_response()
}
