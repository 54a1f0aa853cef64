//! `POST /containers/{id}/attach` and `/resize`: a client joins a container's stdio through its
//! monitor's attach socket (what `rbuild attach` and `run` without `-d` use).
//!
//! `docker run` attaches *before* it starts the container, so as to miss no output. rbuild's
//! monitor can do the same (it waits for its first client before it runs the process), but
//! only when the start asks for it: an attach to a container that is not running waits here
//! ([`Waiting`]), and the start that finds it waiting starts with an attached monitor
//! ([`start`]) and hands the connection over. A container started some other way (`rbuild
//! start`) is joined as soon as it runs.

use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use runtime::attach::{ClientFrame, MonitorFrame};
use runtime::container::{Container, ContainerId, Containers};
use runtime::lifecycle::{self, Started};
use tokio::sync::mpsc;

use crate::hijack::{In, Out};
use crate::{ApiError, Ctx, blocking};

pub(crate) fn routes() -> Router<Ctx> {
    Router::new()
        .route("/containers/{id}/attach", post(attach))
        .route("/containers/{id}/resize", post(resize))
}

/// Attaches waiting for their container to start: the start hands each a connection.
#[derive(Clone, Default)]
pub(crate) struct Waiting(Arc<Mutex<WaitingInner>>);

type Waiter = (u64, std::sync::mpsc::Sender<Handed>);

/// A connection a start hands to a waiting attach, with the output the start read from it
/// before the monitor's `Started` (its output pumps may run first).
pub(crate) struct Handed {
    conn: UnixStream,
    early: Vec<MonitorFrame>,
}

#[derive(Default)]
pub(crate) struct WaitingInner {
    next: u64,
    by_container: HashMap<ContainerId, Vec<Waiter>>,
}

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, WaitingInner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, id: &ContainerId) -> (u64, std::sync::mpsc::Receiver<Handed>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut w = self.lock();
        w.next += 1;
        let token = w.next;
        w.by_container.entry(id.clone()).or_default().push((token, tx));
        (token, rx)
    }

    fn take(&self, id: &ContainerId) -> Vec<Waiter> {
        self.lock().by_container.remove(id).unwrap_or_default()
    }

    /// Stops waiting; false if a start already took this attach (its connection comes).
    fn remove(&self, id: &ContainerId, token: u64) -> bool {
        let mut w = self.lock();
        let Some(list) = w.by_container.get_mut(id) else { return false };
        let before = list.len();
        list.retain(|(t, _)| *t != token);
        let removed = list.len() < before;
        if list.is_empty() {
            w.by_container.remove(id);
        }
        removed
    }
}

/// Starts `c` for the start handler: with a monitor that waits for an attach when attaches
/// wait here (they get the connection once the process runs), detached otherwise.
pub(crate) fn start(root: &std::path::Path, waiting: &Waiting, c: &Container) -> Result<(), ApiError> {
    let clients = waiting.take(c.id());
    if clients.is_empty() {
        lifecycle::start(root, c.id().as_str(), false).map_err(start_error)?;
        return Ok(());
    }
    let Started::Attached(mut stream) = lifecycle::start(root, c.id().as_str(), true).map_err(start_error)?
    else {
        return Ok(());
    };
    // The monitor's word says whether the process runs; a failed start is the start's error
    // (the docker CLI reads the exit status it reports from the message). Output that comes
    // before it is kept for the client.
    let mut early = Vec::new();
    loop {
        match MonitorFrame::read_from(&mut stream) {
            Ok(Some(MonitorFrame::Started)) => break,
            Ok(Some(MonitorFrame::Error(m))) => {
                return Err(start_error(runtime::Error::from_start_failure_text(&m)));
            }
            Ok(Some(f @ MonitorFrame::Exit(_))) => {
                early.push(f);
                break;
            }
            Ok(Some(f)) => early.push(f),
            Ok(None) | Err(_) => break,
        }
    }
    let mut first = Some(Handed { conn: stream, early });
    for (_, tx) in clients {
        let handed = match first.take() {
            Some(h) => h,
            None => match lifecycle::attach_to(c) {
                Ok(conn) => Handed { conn, early: Vec::new() },
                Err(_) => break,
            },
        };
        if let Err(std::sync::mpsc::SendError(h)) = tx.send(handed) {
            first = Some(h);
        }
    }
    Ok(())
}

/// A start that failed: a command that could not run is a 400 whose message says so in
/// docker's words, which the docker CLI turns into `run`'s exit status 126 or 127.
pub(crate) fn start_error(e: runtime::Error) -> ApiError {
    if e.is_start_failure() {
        return ApiError::bad_request(format!(
            "failed to create task for container: {}",
            hostutil::errors::one_line(&e)
        ));
    }
    e.into()
}

fn flag(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true"))
}

/// `POST /containers/{id}/attach?stream=1&stdin=1&stdout=1&stderr=1[&logs=1]`.
async fn attach(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let (stdin, stdout, stderr) = (flag(&q, "stdin"), flag(&q, "stdout"), flag(&q, "stderr"));
    let (stream, logs) = (flag(&q, "stream"), flag(&q, "logs"));
    let c = blocking({
        let root = ctx.root.clone();
        move || {
            let containers = Containers::open(root.as_path())?;
            Ok(lifecycle::refresh(&containers, containers.find(&id)?)?)
        }
    })
    .await?;
    let tty = c.config.config.tty;
    let stdin = stdin && c.config.config.open_stdin;
    let (out_tx, out_rx) = mpsc::channel::<Out>(64);
    let (in_tx, in_rx) = mpsc::channel::<In>(16);
    // Waiting is registered before the answer: the client sends its start as soon as it has
    // the `101`, and a start that found no attach waiting would run the container unseen.
    let waiting = (stream && !c.is_running()).then(|| ctx.attaches.add(c.id()));
    let ctx2 = ctx.clone();
    std::thread::spawn(move || {
        if logs {
            replay_log(&c, stdout, stderr, &out_tx);
        }
        if stream {
            relay(&ctx2, c, waiting, Want { stdout, stderr }, out_tx, stdin.then_some(in_rx));
        }
    });
    Ok(crate::hijack::answer(&mut req, tty, out_rx, stdin.then_some(in_tx), ctx.busy()))
}

#[derive(Clone, Copy)]
struct Want {
    stdout: bool,
    stderr: bool,
}

/// `logs=1`: what the container said so far, first.
fn replay_log(c: &Container, stdout: bool, stderr: bool, out: &mpsc::Sender<Out>) {
    let Ok((entries, _)) = runtime::logs::read(&c.log_path(), &runtime::logs::Filter::default()) else {
        return;
    };
    for e in entries {
        let o = match e.stream {
            runtime::logs::Stream::Stdout if stdout => Out::Stdout(e.log.into_bytes()),
            runtime::logs::Stream::Stderr if stderr => Out::Stderr(e.log.into_bytes()),
            _ => continue,
        };
        if out.blocking_send(o).is_err() {
            return;
        }
    }
}

/// The connection to the container's monitor: at once if it runs, else once it starts.
fn connect(
    ctx: &Ctx,
    c: &Container,
    (token, waiting): (u64, std::sync::mpsc::Receiver<Handed>),
    out: &mpsc::Sender<Out>,
) -> Option<Handed> {
    let gone = || {
        ctx.attaches.remove(c.id(), token);
        None
    };
    let Ok(containers) = Containers::open(ctx.root.as_path()) else { return gone() };
    loop {
        match waiting.recv_timeout(Duration::from_millis(200)) {
            Ok(s) => return Some(s),
            // The start took this attach and had no connection left for it.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if out.is_closed() {
            return gone();
        }
        match containers.load(c.id()).and_then(|c| lifecycle::refresh(&containers, c)) {
            // Started by someone else (`rbuild start`): joined as `rbuild attach` would.
            Ok(now) if now.is_running() => {
                if !ctx.attaches.remove(c.id(), token) {
                    // Our own start took this attach: its connection is on the way.
                    return waiting.recv_timeout(Duration::from_secs(60)).ok();
                }
                return lifecycle::attach_to(&now).ok().map(|conn| Handed { conn, early: Vec::new() });
            }
            // It ran and ended without this attach (started some other way, and quick).
            Ok(now) if now.state.started_at != c.state.started_at => return gone(),
            Ok(_) => {}
            Err(_) => return gone(),
        }
    }
}

/// Relays between the monitor and the client until the container ends or the client goes.
fn relay(
    ctx: &Ctx,
    c: Container,
    waiting: Option<(u64, std::sync::mpsc::Receiver<Handed>)>,
    want: Want,
    out: mpsc::Sender<Out>,
    input: Option<mpsc::Receiver<In>>,
) {
    let handed = match waiting {
        Some(w) => connect(ctx, &c, w, &out),
        None => lifecycle::attach_to(&c).ok().map(|conn| Handed { conn, early: Vec::new() }),
    };
    let Some(Handed { conn, early }) = handed else { return };
    if let Some(mut input) = input
        && let Ok(mut writer) = conn.try_clone()
    {
        let once = c.config.config.stdin_once;
        std::thread::spawn(move || {
            while let Some(i) = input.blocking_recv() {
                let frame = match i {
                    In::Data(d) => ClientFrame::Stdin(d),
                    // The client's stdin ended; `run -i` (StdinOnce) closes the container's.
                    In::Eof if once => ClientFrame::StdinClose,
                    In::Eof => return,
                };
                if frame.write_to(&mut writer).is_err() {
                    return;
                }
            }
        });
    }
    let mut reader = conn;
    // The client gone: the monitor's socket is shut so this thread's read ends too.
    // (A weak sender: a strong one here would keep the client's stream open for ever.)
    let closer = reader.try_clone().ok().map(|s| {
        let out = out.downgrade();
        std::thread::spawn(move || {
            while out.upgrade().is_some_and(|o| !o.is_closed()) {
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = s.shutdown(std::net::Shutdown::Both);
        })
    });
    let mut early = early.into_iter();
    loop {
        let frame = match early.next() {
            Some(f) => Ok(Some(f)),
            None => MonitorFrame::read_from(&mut reader),
        };
        let o = match frame {
            Ok(Some(MonitorFrame::Stdout(d))) if want.stdout => Out::Stdout(d),
            Ok(Some(MonitorFrame::Stderr(d))) if want.stderr => Out::Stderr(d),
            Ok(Some(MonitorFrame::Stdout(_) | MonitorFrame::Stderr(_) | MonitorFrame::Started)) => continue,
            Ok(Some(MonitorFrame::Error(_) | MonitorFrame::Exit(_))) | Ok(None) | Err(_) => break,
        };
        if out.blocking_send(o).is_err() {
            break;
        }
    }
    drop(out);
    let _ = reader.shutdown(std::net::Shutdown::Both);
    if let Some(t) = closer {
        let _ = t.join();
    }
}

/// `POST /containers/{id}/resize?h=&w=`: the container's terminal takes the size.
async fn resize(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (rows, cols) = size(&q)?;
    blocking(move || {
        let containers = Containers::open(ctx.root.as_path())?;
        let c = lifecycle::refresh(&containers, containers.find(&id)?)?;
        if !c.is_running() {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                message: format!("Container {} is not running", c.id()),
            });
        }
        let mut conn = lifecycle::attach_to(&c)?;
        ClientFrame::Resize { rows, cols }.write_to(&mut conn).map_err(|e| {
            ApiError::from(runtime::Error::Io { path: PathBuf::from("attach socket"), source: e })
        })?;
        Ok(StatusCode::OK.into_response())
    })
    .await
}

/// `h` and `w` of a resize.
pub(crate) fn size(q: &HashMap<String, String>) -> Result<(u16, u16), ApiError> {
    let get = |k: &str| {
        q.get(k)
            .filter(|v| !v.is_empty())
            .map(|v| v.parse::<u16>().map_err(|_| ApiError::bad_request(format!("invalid {k}: {v:?}"))))
            .transpose()
            .map(|v| v.unwrap_or(0))
    };
    Ok((get("h")?, get("w")?))
}
