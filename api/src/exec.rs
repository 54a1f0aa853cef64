//! `exec`: `POST /containers/{id}/exec` makes an exec instance (kept in this process, as
//! dockerd keeps them in memory), `POST /exec/{id}/start` runs it on the hijacked connection
//! (or detached), `/exec/{id}/resize` sizes its terminal, `GET /exec/{id}/json` says how it
//! ended (the docker CLI reads the exit status there). The process is started by
//! runtime::exec, as `rbuild exec` starts it.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use runtime::container::{ContainerId, Containers};
use runtime::exec::{ExecRequest, ExecStdio};
use runtime::lifecycle;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::hijack::{In, Out};
use crate::{ApiError, Ctx, blocking};

pub(crate) fn routes() -> Router<Ctx> {
    Router::new()
        .route("/containers/{id}/exec", post(create))
        .route("/exec/{id}/start", post(start))
        .route("/exec/{id}/resize", post(resize))
        .route("/exec/{id}/json", get(inspect))
}

/// Finished instances kept for `inspect` (dockerd drops them with their container; a service
/// that runs for ever must not grow without end).
const KEEP_FINISHED: usize = 256;

/// The exec instances this service made.
#[derive(Clone, Default)]
pub(crate) struct Execs(Arc<Mutex<ExecsInner>>);

#[derive(Default)]
pub(crate) struct ExecsInner {
    by_id: HashMap<String, Arc<Instance>>,
    finished: VecDeque<String>,
}

impl Execs {
    fn lock(&self) -> std::sync::MutexGuard<'_, ExecsInner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: &str) -> Result<Arc<Instance>, ApiError> {
        self.lock()
            .by_id
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
    }

    fn finished(&self, id: &str) {
        let mut all = self.lock();
        all.finished.push_back(id.to_string());
        while all.finished.len() > KEEP_FINISHED {
            if let Some(old) = all.finished.pop_front() {
                all.by_id.remove(&old);
            }
        }
    }
}

/// One exec instance.
struct Instance {
    id: String,
    container: ContainerId,
    req: ExecRequest,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    state: Mutex<ExecState>,
}

#[derive(Default)]
struct ExecState {
    started: bool,
    running: bool,
    exit_code: Option<i32>,
    pid: i32,
    /// With a terminal, while the process runs: its master, for resizes.
    terminal: Option<Arc<File>>,
    /// A size asked for before the terminal existed.
    size: Option<(u16, u16)>,
}

impl Instance {
    fn state(&self) -> std::sync::MutexGuard<'_, ExecState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    tty: bool,
    env: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    privileged: bool,
    user: String,
    working_dir: String,
    console_size: Option<Vec<u16>>,
}

fn console_size(v: Option<Vec<u16>>) -> Option<(u16, u16)> {
    match v.as_deref() {
        Some([h, w]) if *h > 0 && *w > 0 => Some((*h, *w)),
        _ => None,
    }
}

async fn create(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: CreateBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
    let cmd = b.cmd.unwrap_or_default();
    if cmd.is_empty() {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    let container = blocking({
        let root = ctx.root.clone();
        move || {
            let containers = Containers::open(root.as_path())?;
            let c = lifecycle::refresh(&containers, containers.find(&id)?)?;
            if !c.is_running() {
                return Err(ApiError {
                    status: StatusCode::CONFLICT,
                    message: format!("Container {} is not running", c.id()),
                });
            }
            if c.state.status == runtime::container::Status::Paused {
                return Err(ApiError {
                    status: StatusCode::CONFLICT,
                    message: format!("Container {} is paused, unpause the container before exec", c.id()),
                });
            }
            Ok(c.id().clone())
        }
    })
    .await?;
    let text = |s: String| (!s.is_empty()).then_some(s);
    let exec_id = runtime::exec::new_id();
    let instance = Arc::new(Instance {
        id: exec_id.clone(),
        container,
        req: ExecRequest {
            cmd,
            env: b.env.unwrap_or_default(),
            user: text(b.user),
            workdir: text(b.working_dir),
            tty: b.tty,
            size: console_size(b.console_size),
            privileged: b.privileged,
            id: Some(exec_id),
        },
        stdin: b.attach_stdin,
        stdout: b.attach_stdout,
        stderr: b.attach_stderr,
        state: Mutex::default(),
    });
    let id = instance.id.clone();
    {
        let (root, inst) = (ctx.root.clone(), instance.clone());
        blocking(move || {
            runtime::exec::event(root.as_path(), inst.container.as_str(), "exec_create", &inst.req);
            Ok(())
        })
        .await?;
    }
    ctx.execs.lock().by_id.insert(id.clone(), instance);
    Ok((StatusCode::CREATED, axum::Json(json!({ "Id": id }))).into_response())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct StartBody {
    detach: bool,
    console_size: Option<Vec<u16>>,
}

async fn start(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let instance = ctx.execs.get(&id)?;
    let body = axum::body::to_bytes(std::mem::take(req.body_mut()), 1 << 20)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
    let b: StartBody = if body.iter().all(u8::is_ascii_whitespace) {
        StartBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?
    };
    {
        let mut st = instance.state();
        if st.started {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                message: format!("Exec {id} has already been started"),
            });
        }
        st.started = true;
        if let Some(size) = console_size(b.console_size) {
            st.size = Some(size);
        }
    }
    if b.detach {
        let root = ctx.root.clone();
        let inst = instance.clone();
        blocking(move || {
            runtime::exec::detach(root.as_path(), inst.container.as_str(), &inst.req).map_err(exec_error)?;
            Ok(())
        })
        .await?;
        return Ok(StatusCode::OK.into_response());
    }
    let tty = instance.req.tty;
    let (out_tx, out_rx) = mpsc::channel::<Out>(64);
    let (in_tx, in_rx) = mpsc::channel::<In>(16);
    let stdin = instance.stdin;
    // Started and waited for by one thread: an exec'd process dies with the thread that
    // started it.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    {
        let root = ctx.root.clone();
        let execs = ctx.execs.clone();
        let inst = instance.clone();
        std::thread::spawn(move || {
            run(root.as_path(), &inst, out_tx, stdin.then_some(in_rx), ready_tx);
            execs.finished(&inst.id);
        });
    }
    match ready_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(ApiError::from(runtime::Error::Invalid("the exec ended before it started".into())));
        }
    }
    Ok(crate::hijack::answer(&mut req, tty, out_rx, stdin.then_some(in_tx), ctx.busy()))
}

/// Why an exec could not start, as dockerd says it (`docker exec` exits 126 or 127 on the
/// message's words).
fn exec_error(e: runtime::Error) -> ApiError {
    match e {
        runtime::Error::Conflict(m) => ApiError { status: StatusCode::CONFLICT, message: m },
        e if e.is_start_failure() => {
            ApiError::bad_request(format!("OCI runtime exec failed: {}", hostutil::errors::one_line(&e)))
        }
        e => e.into(),
    }
}

/// Queues the message of an exec that could not start for the client (the channel is read
/// once the connection is taken over).
fn ready_failed_in_stream(out: &mpsc::Sender<Out>, message: String) -> bool {
    out.try_send(Out::Stderr(message.into_bytes())).is_ok()
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Option<ApiError>> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Some(runtime::Error::Io { path: "pipe".into(), source: e.into() }.into()))
}

/// Runs the instance: starts it, relays its stdio, waits for it, records how it ended. `ready`
/// hears whether it started.
fn run(
    root: &std::path::Path,
    inst: &Instance,
    out: mpsc::Sender<Out>,
    input: Option<mpsc::Receiver<In>>,
    ready: tokio::sync::oneshot::Sender<Result<(), ApiError>>,
) {
    let mut req = inst.req.clone();
    if req.tty {
        req.size = inst.state().size.or(req.size);
    }
    // Without a terminal: a pipe per stream, stdin only when attached.
    let mut ours: Vec<(OwnedFd, Option<bool>)> = Vec::new();
    let mut stdin_w: Option<OwnedFd> = None;
    let stdio = if req.tty {
        Ok(ExecStdio::Null)
    } else {
        (|| {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let stdin = if input.is_some() {
                let (r, w) = pipe()?;
                stdin_w = Some(w);
                r
            } else {
                File::open("/dev/null")
                    .map_err(|e| {
                        Some(ApiError::from(runtime::Error::Io { path: "/dev/null".into(), source: e }))
                    })?
                    .into()
            };
            ours.push((out_r, Some(true)));
            ours.push((err_r, Some(false)));
            Ok(ExecStdio::Fds { stdin, stdout: out_w, stderr: err_w })
        })()
    };
    let started = stdio.and_then(|stdio| {
        runtime::exec::exec(root, inst.container.as_str(), &req, stdio).map_err(|e| {
            // A command that cannot run is told on the stream, as dockerd tells it, with
            // its status (126, 127) for the client's inspect; the rest is the request's error.
            if e.is_start_failure() {
                let message = format!("OCI runtime exec failed: {}\r\n", hostutil::errors::one_line(&e));
                inst.state().exit_code = Some(e.start_code());
                let _ = ready_failed_in_stream(&out, message);
                None
            } else {
                Some(exec_error(e))
            }
        })
    });
    let mut exec = match started {
        Ok(e) => e,
        Err(None) => {
            let _ = ready.send(Ok(()));
            return;
        }
        Err(Some(e)) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let terminal = exec.terminal.take().map(Arc::new);
    {
        let mut st = inst.state();
        st.running = true;
        st.pid = exec.pid();
        if let Some(t) = &terminal {
            if let Some((rows, cols)) = st.size {
                let _ = runtime::exec::resize(t, rows, cols);
            }
            st.terminal = Some(t.clone());
        }
    }
    let _ = ready.send(Ok(()));
    // Output: the terminal's master (one stream), or the two pipes.
    if let Some(t) = &terminal
        && let Ok(f) = t.try_clone()
    {
        ours.push((f.into(), None));
    }
    // Input: to the terminal, or the stdin pipe (closed at the client's end).
    if let Some(mut input) = input {
        let sink: Option<File> = match (&terminal, stdin_w) {
            (Some(t), _) => t.try_clone().ok(),
            (None, Some(w)) => Some(File::from(w)),
            (None, None) => None,
        };
        if let Some(mut sink) = sink {
            let tty = terminal.is_some();
            std::thread::spawn(move || {
                while let Some(i) = input.blocking_recv() {
                    match i {
                        In::Data(d) => {
                            if sink.write_all(&d).is_err() {
                                return;
                            }
                        }
                        // A terminal stays open (the client's ^D is a byte on it); a pipe ends.
                        In::Eof if tty => {}
                        In::Eof => return,
                    }
                }
            });
        }
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let want = (inst.stdout, inst.stderr);
    // The pump gives the output channel back: it closes (and the client, seeing the stream
    // end, asks `inspect`) only once the exit code is recorded.
    let pump = std::thread::spawn(move || {
        pump(ours, want, &out, done_rx);
        out
    });
    let code = exec.wait().unwrap_or(-1);
    let _ = done_tx.send(());
    let out = pump.join();
    {
        let mut st = inst.state();
        st.running = false;
        st.terminal = None;
        st.exit_code = Some(code);
    }
    drop(out);
}

/// Copies the process's output to the client until every stream ends, or until the process
/// has exited (`done`) and nothing more comes within a moment: a background child that keeps
/// the pipes open does not hold the client.
fn pump(
    mut fds: Vec<(OwnedFd, Option<bool>)>,
    want: (bool, bool),
    out: &mpsc::Sender<Out>,
    done: std::sync::mpsc::Receiver<()>,
) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut buf = vec![0u8; 64 * 1024];
    let mut exited = false;
    while !fds.is_empty() {
        if !exited && done.try_recv().is_ok() {
            exited = true;
        }
        let mut polls: Vec<PollFd> =
            fds.iter().map(|(fd, _)| PollFd::new(fd.as_fd(), PollFlags::POLLIN)).collect();
        let n = match poll(&mut polls, PollTimeout::from(if exited { 100u16 } else { 50u16 })) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        };
        if n == 0 {
            if exited {
                return;
            }
            continue;
        }
        let ready: Vec<bool> = polls.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(polls);
        let mut keep = Vec::with_capacity(fds.len());
        for (i, (fd, stream)) in fds.drain(..).enumerate() {
            let is_ready = ready.get(i).copied().unwrap_or(false);
            if !is_ready {
                keep.push((fd, stream));
                continue;
            }
            let n = match nix::unistd::read(&fd, &mut buf) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {
                    keep.push((fd, stream));
                    continue;
                }
                // EIO: a terminal's last slave closed.
                Err(_) => 0,
            };
            if n == 0 {
                continue;
            }
            let o = match stream {
                // A terminal has one stream, which docker calls stdout.
                None => Some(Out::Stdout(buf[..n].to_vec())),
                Some(true) if want.0 => Some(Out::Stdout(buf[..n].to_vec())),
                Some(false) if want.1 => Some(Out::Stderr(buf[..n].to_vec())),
                _ => None,
            };
            if let Some(o) = o
                && out.blocking_send(o).is_err()
            {
                return;
            }
            keep.push((fd, stream));
        }
        fds = keep;
    }
}

async fn resize(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (rows, cols) = crate::attach::size(&q)?;
    let instance = ctx.execs.get(&id)?;
    let mut st = instance.state();
    match &st.terminal {
        Some(t) => runtime::exec::resize(t, rows, cols)?,
        // Not started yet: the size waits for the terminal.
        None => st.size = Some((rows, cols)),
    }
    Ok(StatusCode::OK.into_response())
}

async fn inspect(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let i = ctx.execs.get(&id)?;
    let st = i.state();
    let (entrypoint, arguments) = match i.req.cmd.split_first() {
        Some((first, rest)) => (first.clone(), rest.to_vec()),
        None => (String::new(), Vec::new()),
    };
    let body: Value = json!({
        "ID": i.id,
        "Running": st.running,
        "ExitCode": st.exit_code,
        "ProcessConfig": {
            "tty": i.req.tty,
            "entrypoint": entrypoint,
            "arguments": arguments,
            "privileged": i.req.privileged,
            "user": i.req.user.clone().unwrap_or_default(),
        },
        "OpenStdin": i.stdin,
        "OpenStderr": i.stderr,
        "OpenStdout": i.stdout,
        "CanRemove": false,
        "ContainerID": i.container.as_str(),
        "DetachKeys": "",
        "Pid": st.pid,
    });
    Ok(axum::Json(body).into_response())
}
