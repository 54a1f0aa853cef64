//! The Docker Engine API on a socket (`rbuild system service`), so the docker CLI, compose,
//! docker-py and testcontainers drive rbuild's store unchanged. A front end like cli/: every
//! handler parses the request, calls the same runtime/ and cache/ functions the CLI calls,
//! and answers in docker's JSON shapes and status codes; it keeps no state of its own.
//!
//! Served over HTTP/1.1 by axum on tokio; the runtime's calls block (files, locks, processes),
//! so each runs on tokio's blocking pool. Paths are accepted with and without the version
//! prefix (`/v1.41/containers/json`), as dockerd does.

// `/info`'s JSON is deep.
#![recursion_limit = "256"]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;

mod attach;
mod build;
mod containers;
mod events;
mod exec;
mod hijack;
mod images;
mod networks;
mod stream;
mod system;
mod usage;
mod volumes;

/// The newest API version served, and the oldest accepted (dockerd 24's).
pub const API_VERSION: &str = "1.43";
pub const MIN_API_VERSION: &str = "1.24";

/// Why the service could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Listen(String),
}

/// Where to listen.
#[derive(Debug)]
pub enum Endpoint {
    Unix(PathBuf),
    /// Loopback only (the caller checks), as podman's unauthenticated TCP.
    Tcp(std::net::SocketAddr),
    /// A listening unix socket made by someone else (systemd's socket activation): served as
    /// it is, its file left in place when the service ends (the next connection starts it).
    UnixListener(std::os::unix::net::UnixListener),
    /// A listening TCP socket made by someone else; loopback only, as [`Endpoint::Tcp`].
    TcpListener(std::net::TcpListener),
}

/// What the handlers share: the store, and what lives only as long as this process: streams
/// in progress, attaches waiting for their container to start, exec instances.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub root: Arc<PathBuf>,
    busy: Arc<AtomicUsize>,
    pub attaches: attach::Waiting,
    pub execs: exec::Execs,
}

impl Ctx {
    fn new(root: PathBuf) -> Ctx {
        Ctx {
            root: Arc::new(root),
            busy: Arc::default(),
            attaches: attach::Waiting::default(),
            execs: exec::Execs::default(),
        }
    }

    pub fn store(&self) -> Result<cache::Store, ApiError> {
        cache::Store::open(self.root.as_path()).map_err(ApiError::from)
    }

    /// Marks a stream in progress (an attach, an exec, `logs -f`, `wait`, `events`): the
    /// service does not end for idleness while one is open, though no request comes.
    pub fn busy(&self) -> Busy {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(self.busy.clone())
    }
}

/// A stream in progress (see [`Ctx::busy`]), until dropped.
pub(crate) struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An error answered as docker does: a status and `{"message": "..."}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::NOT_FOUND, message: message.into() }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(serde_json::json!({ "message": self.message }))).into_response()
    }
}

impl From<runtime::Error> for ApiError {
    fn from(e: runtime::Error) -> ApiError {
        let message = hostutil::errors::one_line(&e);
        let status = match &e {
            runtime::Error::NoSuchContainer(_) | runtime::Error::NoSuchImage(_) => StatusCode::NOT_FOUND,
            runtime::Error::Store(cache::Error::ImageNotFound(_)) => StatusCode::NOT_FOUND,
            runtime::Error::Conflict(_) => StatusCode::CONFLICT,
            runtime::Error::Invalid(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        // docker's wording, which clients match on (`No such container: x`).
        let message = match &e {
            runtime::Error::NoSuchContainer(what) => format!("No such container: {what}"),
            runtime::Error::Store(cache::Error::ImageNotFound(what)) => format!("No such image: {what}"),
            _ => message,
        };
        ApiError { status, message }
    }
}

impl From<cache::Error> for ApiError {
    fn from(e: cache::Error) -> ApiError {
        runtime::Error::from(e).into()
    }
}

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("handler failed: {e}"),
    })?
}

/// The routes, without the version prefix.
fn router(ctx: Ctx) -> Router {
    Router::new()
        .merge(system::routes())
        .merge(containers::routes())
        .merge(attach::routes())
        .merge(exec::routes())
        .merge(images::routes())
        .merge(build::routes())
        .merge(volumes::routes())
        .merge(networks::routes())
        .merge(events::routes())
        .merge(usage::routes())
        .layer(axum::middleware::map_response(json_errors))
        .with_state(ctx)
}

/// axum's own rejections (a body over its 2 MiB limit: 413) are plain text; docker's clients
/// read `{"message": ...}` from every error, as ours are.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let plain = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if !plain || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let text = axum::body::to_bytes(resp.into_body(), 64 << 10).await.unwrap_or_default();
    ApiError { status, message: String::from_utf8_lossy(&text).trim().to_string() }.into_response()
}

/// The API version the client asked for in the path (`/v1.41/...`); without one, the newest.
/// Some answers depend on it (dockerd keeps old clients' behaviour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ClientVersion(pub u32, pub u32);

/// `/v1.41/containers/json` -> `/containers/json`; a version above ours is refused as dockerd
/// refuses it.
fn strip_version(uri: &Uri) -> Result<Option<(Uri, ClientVersion)>, ApiError> {
    let path = uri.path();
    let Some(rest) = path.strip_prefix("/v") else { return Ok(None) };
    let Some((version, tail)) = rest.split_once('/') else { return Ok(None) };
    let Some((major, minor)) = version.split_once('.') else { return Ok(None) };
    let (Ok(major), Ok(minor)) = (major.parse::<u32>(), minor.parse::<u32>()) else { return Ok(None) };
    let newest: (u32, u32) = (1, 43);
    if (major, minor) > newest {
        return Err(ApiError::bad_request(format!(
            "client version {version} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    let mut new = format!("/{tail}");
    if let Some(q) = uri.query() {
        new.push('?');
        new.push_str(q);
    }
    Ok(new.parse().ok().map(|u| (u, ClientVersion(major, minor))))
}

/// A streamed answer (logs -f, events, wait, a pull's progress) keeps the service busy until
/// its body ends or its client goes; a sized one lets `busy` go at once.
fn hold_while_streaming(resp: Response, busy: Busy) -> Response {
    use axum::body::HttpBody;
    if resp.body().size_hint().exact().is_some() {
        return resp;
    }
    resp.map(|body| {
        use futures_util::StreamExt;
        axum::body::Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _held = &busy;
            chunk
        }))
    })
}

/// Serves the API at `endpoint` over the store at `root` until `idle` passes with no request
/// (`None`: for ever).
/// `on_listen` gets a unix socket's path once it exists (to set its mode and group).
pub fn serve(
    root: &Path,
    endpoint: Endpoint,
    idle: Option<Duration>,
    on_listen: &dyn Fn(&Path) -> std::io::Result<()>,
) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Listen(format!("starting the runtime: {e}")))?;
    rt.block_on(serve_async(root.to_path_buf(), endpoint, idle, on_listen))
}

async fn serve_async(
    root: PathBuf,
    endpoint: Endpoint,
    idle: Option<Duration>,
    on_listen: &dyn Fn(&Path) -> std::io::Result<()>,
) -> Result<(), Error> {
    let ctx = Ctx::new(root);
    let busy = ctx.busy.clone();
    let busy_ctx = ctx.clone();
    let app = router(ctx);
    let last = Arc::new(std::sync::Mutex::new(std::time::Instant::now()));
    let seen = last.clone();
    let service = tower::service_fn(move |mut req: Request| {
        let app = app.clone();
        *seen.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
        let busy = busy_ctx.busy();
        async move {
            match strip_version(req.uri()) {
                Ok(Some((uri, version))) => {
                    *req.uri_mut() = uri;
                    req.extensions_mut().insert(version);
                }
                Ok(None) => {
                    req.extensions_mut().insert(ClientVersion(1, 43));
                }
                Err(e) => return Ok::<_, std::convert::Infallible>(e.into_response()),
            }
            let mut resp = app.oneshot(req).await.unwrap_or_else(|never| match never {});
            let h = resp.headers_mut();
            h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
            h.insert("Server", HeaderValue::from_static(concat!("rbuild/", env!("CARGO_PKG_VERSION"))));
            h.insert("Ostype", HeaderValue::from_static("linux"));
            Ok(hold_while_streaming(resp, busy))
        }
    });
    let make = tower::make::Shared::new(service);
    let shutdown = async move {
        let Some(idle) = idle else { return std::future::pending::<()>().await };
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if busy.load(Ordering::SeqCst) > 0 {
                *last.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
            } else if last.lock().unwrap_or_else(|p| p.into_inner()).elapsed() >= idle {
                return;
            }
        }
    };
    match endpoint {
        Endpoint::Unix(path) => {
            let _ = std::fs::remove_file(&path);
            let listener = tokio::net::UnixListener::bind(&path)
                .map_err(|source| Error::Io { path: path.clone(), source })?;
            on_listen(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
            let served = axum::serve(listener, make).with_graceful_shutdown(shutdown).await;
            let _ = std::fs::remove_file(&path);
            served
        }
        Endpoint::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| Error::Listen(format!("{addr}: {e}")))?;
            axum::serve(listener, make).with_graceful_shutdown(shutdown).await
        }
        Endpoint::UnixListener(listener) => {
            let listener = listener
                .set_nonblocking(true)
                .and_then(|()| tokio::net::UnixListener::from_std(listener))
                .map_err(|e| Error::Listen(format!("the inherited unix socket: {e}")))?;
            axum::serve(listener, make).with_graceful_shutdown(shutdown).await
        }
        Endpoint::TcpListener(listener) => {
            let listener = listener
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(listener))
                .map_err(|e| Error::Listen(format!("the inherited TCP socket: {e}")))?;
            axum::serve(listener, make).with_graceful_shutdown(shutdown).await
        }
    }
    .map_err(|e| Error::Listen(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_paths_lose_their_prefix_and_too_new_ones_are_refused() {
        let u = |s: &str| s.parse::<Uri>().unwrap();
        assert_eq!(
            strip_version(&u("/v1.41/containers/json?all=1")).unwrap().unwrap(),
            (u("/containers/json?all=1"), ClientVersion(1, 41))
        );
        assert_eq!(strip_version(&u("/_ping")).unwrap(), None);
        assert_eq!(strip_version(&u("/volumes/v1.2/x")).unwrap(), None);
        assert!(strip_version(&u("/v1.99/info")).is_err());
    }
}
