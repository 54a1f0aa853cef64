//! The monitor: one per running container, rbuild re-executed as
//! `rbuild-monitor __rbuild-monitor <store> <id> <ready fd> <wait for attach>` in a session of
//! its own, so it outlives the command that started it (podman's conmon, without a second
//! program).
//!
//! It sets up the container's network, starts its sandbox (staying the parent of the
//! sandbox's supervisor, so it is the one to collect the exit status), writes every byte of
//! output to the log and to attached clients, applies the restart policy, tears everything
//! down and, for `--rm`, removes the container. It is a child subreaper and reaps whatever
//! is orphaned under it: this machine's PID 1 does not.
//!
//! ```text
//! rbuild start/run ──(ready pipe: "listening" / "ok" / "error MSG")── rbuild-monitor
//!                  ──(attach.sock frames)─────────────────────────────┘   └── supervisor ── PID 1
//! ```

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::attach::{self, ClientFrame, MonitorFrame};
use crate::container::{Container, ContainerId, Containers, Status, now_rfc3339, proc_start_time};
use crate::logs::{self, Stream};
use crate::network::{self, Endpoint, Networks};
use crate::spec::{MountRequest, NetworkRequest};
use crate::volume::Volumes;
use crate::{Error, Result};

/// argv[1] of the re-executed monitor; `main` must call [`monitor_main`] when it sees it.
pub const MONITOR_ARG: &str = "__rbuild-monitor";

/// What the command that started the monitor learns through the ready pipe.
pub enum Ready {
    /// The container runs.
    Started,
    /// The monitor listens and waits for the first client before starting the container.
    Listening,
}

/// A monitor just spawned: its PID and the read end of its ready pipe.
pub struct Spawned {
    pub pid: i32,
    ready: File,
}

impl Spawned {
    /// Waits for the monitor's first word.
    pub fn wait_ready(&mut self, log: &Path) -> Result<Ready> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match self.ready.read(&mut byte) {
                Ok(0) => break,
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => line.push(byte[0]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Io { path: "monitor ready pipe".into(), source: e }),
            }
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        match line.as_str() {
            "ok" => Ok(Ready::Started),
            "listening" => Ok(Ready::Listening),
            _ => match line.strip_prefix("error ") {
                Some(failure) => Err(Error::from_start_failure_text(failure)),
                None => {
                    let tail = fs::read_to_string(log).unwrap_or_default();
                    let last = tail.lines().last().unwrap_or("no message").to_string();
                    Err(Error::StartFailed {
                        message: format!("the container's monitor ended early: {last}"),
                        code: 126,
                    })
                }
            },
        }
    }
}

/// Starts the monitor of `id` (in a new session, stdio on /dev/null, its own messages appended
/// to `containers/<id>/monitor.log`).
pub fn spawn(store_root: &Path, c: &Container, wait_attach: bool) -> Result<Spawned> {
    let exe = std::env::current_exe().map_err(|e| Error::Io { path: "/proc/self/exe".into(), source: e })?;
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::Io { path: "pipe".into(), source: e.into() })?;
    let log_path = c.dir.join("monitor.log");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::Io { path: log_path.clone(), source: e })?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg0("rbuild-monitor")
        .arg(MONITOR_ARG)
        .arg(store_root)
        .arg(c.id().as_str())
        .arg(if wait_attach { "1" } else { "0" })
        .arg(ready_w.as_raw_fd().to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    let fd = ready_w.as_raw_fd();
    // SAFETY: between fork and exec only async-signal-safe calls (setsid, close_range, signal,
    // fcntl).
    unsafe {
        cmd.pre_exec(move || {
            // Its own session: the terminal's Ctrl-C and hangup never reach the monitor.
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // Descriptors the caller inherited and left open must not reach the monitor, and
            // through it every container process: only stdio and the ready pipe stay.
            // Best effort: a kernel without CLOSE_RANGE_CLOEXEC (< 5.11) keeps them.
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
            // Nor signals it ignores (a shell's background job ignores SIGINT and SIGQUIT):
            // inherited down to the container, an ignored signal can be neither trapped by a
            // shell nor delivered. Errors are for SIGKILL, SIGSTOP and unused numbers.
            for sig in 1..=64 {
                libc::signal(sig, libc::SIG_DFL);
            }
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| Error::Io { path: "rbuild-monitor".into(), source: e })?;
    drop(ready_w);
    let pid = child.id() as i32;
    // The monitor outlives a CLI caller by design, and its exit status is of no interest (the
    // container's state says what happened); but a caller that lives on (the API service)
    // must reap it, or the ended monitor stays a zombie that `kill(pid, 0)` finds alive.
    crate::process::reap_in_background(child);
    Ok(Spawned { pid, ready: File::from(ready_r) })
}

/// The monitor process's entry point. Never returns.
pub fn monitor_main(args: &[String]) -> ! {
    let ([root, id, wait, _], ready) = crate::process::hidden_entry_args::<4>(args, MONITOR_ARG);
    let Ok(id) = ContainerId::try_from(id) else { std::process::exit(2) };
    let code = match Monitor::new(Path::new(&root), id, ready, wait == "1") {
        Ok(m) => m.run(),
        Err(e) => {
            eprintln!("rbuild-monitor: {}", hostutil::errors::one_line(&e));
            1
        }
    };
    std::process::exit(code)
}

type Clients = Arc<Mutex<Vec<UnixStream>>>;

/// Where clients' stdin goes: the pty master, or the write end of the stdin pipe. Input that
/// arrives before the process has its stdin (a foreground `run` attaches first, then the
/// container starts) waits in `pending`; a close that early is remembered.
#[derive(Default)]
struct Input {
    tty: Option<File>,
    pipe: Option<File>,
    pending: Vec<u8>,
    closed: bool,
    /// Whether the current process has a stdin at all (`-i` or `-t`).
    open: bool,
    /// The last window size a client asked for: a foreground `run -t` sends its size before
    /// the pty exists, and a restarted container gets a new pty of the same size.
    size: Option<(u16, u16)>,
}

impl Input {
    fn write(&mut self, data: &[u8]) {
        if let Some(t) = self.tty.as_mut() {
            let _ = t.write_all(data);
        } else if let Some(p) = self.pipe.as_mut() {
            if p.write_all(data).is_err() {
                self.pipe = None;
            }
        } else if !self.open && !self.closed && self.pending.len() < 1 << 20 {
            self.pending.extend_from_slice(data);
        }
    }

    fn close(&mut self) {
        self.pipe = None;
        self.closed = true;
    }

    fn resize(&mut self, rows: u16, cols: u16) {
        self.size = Some((rows, cols));
        if let Some(t) = self.tty.as_ref() {
            let _ = hostutil::tty::set_window_size(t, hostutil::tty::WindowSize { rows, cols });
        }
    }

    /// Forgets the ended process's stdin, keeping the window size for the next one.
    fn reset(&mut self) {
        *self = Input { size: self.size, ..Input::default() };
    }

    /// The new process's stdin: what waited is written to it first.
    fn install(&mut self, tty: Option<File>, pipe: Option<File>) {
        self.tty = tty;
        self.pipe = pipe;
        self.open = true;
        if let Some((rows, cols)) = self.size {
            self.resize(rows, cols);
        }
        let pending = std::mem::take(&mut self.pending);
        if !pending.is_empty() {
            self.write(&pending);
        }
        if self.closed {
            self.pipe = None;
        }
    }
}

struct Monitor {
    root: PathBuf,
    store: cache::Store,
    containers: Containers,
    id: ContainerId,
    dir: PathBuf,
    ready: Option<File>,
    wait_attach: bool,
    clients: Clients,
    input: Arc<Mutex<Input>>,
    /// Opened once the running state is saved: output pumps wait for it, so whatever a client
    /// sees of the process implies `state.json` already has its PID (a signal forwarded the
    /// moment a line arrives must find it).
    gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
    log: Arc<Mutex<logs::Writer>>,
}

/// What a started container holds until it is torn down.
#[derive(Default)]
struct Plumbing {
    netns: Option<PathBuf>,
    endpoints: Vec<Endpoint>,
    proxy: Option<network::Proxy>,
    nat: bool,
}

impl Monitor {
    fn new(root: &Path, id: ContainerId, ready: File, wait_attach: bool) -> Result<Monitor> {
        // SAFETY: prctl with integer arguments only.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
        let store = cache::Store::open(root)?;
        let containers = Containers::open(root)?;
        let dir = containers.dir(&id);
        // `--log-driver none` keeps nothing: the writer goes to /dev/null.
        let c = containers.load(&id)?;
        let log_config = &c.config.host.log;
        let rotation = log_config.rotation().map_err(Error::Invalid)?;
        let log_path =
            if log_config.keeps() { dir.join("container.log") } else { PathBuf::from("/dev/null") };
        let log = logs::Writer::open(&log_path, rotation.filter(|_| log_config.keeps()))
            .map_err(|e| Error::Io { path: log_path.clone(), source: e })?;
        Ok(Monitor {
            root: root.to_path_buf(),
            store,
            containers,
            id,
            dir,
            ready: Some(ready),
            wait_attach,
            clients: Arc::default(),
            input: Arc::default(),
            gate: Arc::default(),
            log: Arc::new(Mutex::new(log)),
        })
    }

    fn tell_ready(&mut self, word: &str) {
        if let Some(mut r) = self.ready.take() {
            let _ = r.write_all(format!("{word}\n").as_bytes());
        }
    }

    fn broadcast(&self, frame: &MonitorFrame) {
        broadcast(&self.clients, frame);
    }

    fn run(mut self) -> i32 {
        let listener = match attach::listen(&self.dir) {
            Ok(l) => l,
            Err(e) => {
                self.tell_ready(&format!("error attach socket: {e}"));
                return 1;
            }
        };
        if self.wait_attach {
            self.tell_ready("listening");
            // The client that asked for the start connects right away; a bounded wait keeps a
            // vanished client from leaving a monitor behind.
            let mut pfd = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one pollfd that lives across the call.
            if unsafe { libc::poll(&mut pfd, 1, 10_000) } > 0
                && let Ok((s, _)) = listener.accept()
            {
                self.add_client(s);
            }
        }
        {
            let clients = self.clients.clone();
            let input = self.input.clone();
            std::thread::spawn(move || {
                for s in listener.incoming().flatten() {
                    add_client(&clients, &input, s);
                }
            });
        }

        let mut first = true;
        let code = loop {
            let started = self.start_once();
            let (sandbox, pumps, plumbing) = match started {
                Ok(s) => s,
                Err(e) => {
                    self.record_failure(&e);
                    let failure = e.start_failure_text();
                    if first {
                        self.tell_ready(&format!("error {failure}"));
                    }
                    self.broadcast(&MonitorFrame::Error(failure));
                    break 1;
                }
            };
            if first {
                self.tell_ready("ok");
                self.broadcast(&MonitorFrame::Started);
                first = false;
            }
            // The healthcheck probes this run; dropping `_health` stops them.
            let _health = self.watch_health(sandbox.pid());
            let outcome = sandbox.wait();
            drop(_health);
            for p in pumps {
                let _ = p.join();
            }
            if let Ok(mut l) = self.log.lock() {
                let _ = l.flush_partial();
            }
            self.input.lock().unwrap_or_else(|p| p.into_inner()).reset();
            self.teardown(plumbing);
            let (code, oom, error) = match outcome {
                Ok(o) => (o.status.code(), o.oom_killed, String::new()),
                Err(e) => (255, false, hostutil::errors::one_line(&e)),
            };
            let recorded = self.record_exit(code, oom, &error);
            if let Ok(c) = self.containers.load(&self.id) {
                self.volume_events(&c, "unmount");
                let die = crate::events::container(&c, "die", &[("exitCode", code.to_string())]);
                crate::events::emit(&self.root, die);
            }
            match recorded {
                Ok(Some(delay)) => {
                    std::thread::sleep(delay);
                    // `stop` while it waited to restart: it stays stopped.
                    if self.stop_requested() {
                        break code;
                    }
                    continue;
                }
                Ok(None) => break code,
                Err(e) => {
                    eprintln!("rbuild-monitor: recording the exit: {}", hostutil::errors::one_line(&e));
                    break code;
                }
            }
        };
        self.finish(code);
        0
    }

    /// dockerd's `volume mount` / `unmount` events, one per named or anonymous volume the
    /// container mounts, at each start and exit.
    fn volume_events(&self, c: &Container, action: &str) {
        for m in &c.config.host.mounts {
            if let MountRequest::Volume { name, target, readonly, .. } = m {
                let attrs = [
                    ("container", c.id().to_string()),
                    ("destination", target.clone()),
                    ("driver", "local".to_string()),
                    ("propagation", String::new()),
                    ("read/write", (!readonly).to_string()),
                ];
                let attrs = attrs.into_iter().map(|(k, v)| (k.to_string(), v));
                crate::events::emit(&self.root, crate::events::Event::new("volume", action, name, attrs));
            }
        }
    }

    /// Starts the healthcheck's probes of the run whose PID 1 is `pid`, if the container has
    /// one; they stop when the returned sender is dropped.
    fn watch_health(&self, pid: i32) -> Option<std::sync::mpsc::Sender<()>> {
        let c = self.containers.load(&self.id).ok()?;
        let config = c.config.config.healthcheck.filter(|h| h.is_active())?;
        let (tx, rx) = std::sync::mpsc::channel();
        let (root, id) = (self.root.clone(), self.id.clone());
        std::thread::spawn(move || crate::health::watch(root, id, pid, config, rx));
        Some(tx)
    }

    /// Removes the container for `--rm` (gone from every listing, its name free), then tells
    /// the clients how it ended, then deletes its directory: that takes tens of ms the clients
    /// need not wait for.
    fn finish(&mut self, code: i32) {
        let mut trash = None;
        if let Ok(c) = self.containers.load(&self.id)
            && c.config.host.auto_remove
        {
            match crate::lifecycle::unlist_stopped(&self.root, &self.containers, &c, true) {
                Ok(t) => trash = Some(t),
                Err(e) => {
                    eprintln!("rbuild-monitor: removing the container: {}", hostutil::errors::one_line(&e))
                }
            }
        }
        self.broadcast(&MonitorFrame::Exit(code));
        let clients = std::mem::take(&mut *self.clients.lock().unwrap_or_else(|p| p.into_inner()));
        for c in clients {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        // Its own log went with the directory's rename: a failure here is nobody's to read.
        if let Some(t) = trash {
            let _ = t.empty();
        }
    }

    /// Whether `stop`/`kill` asked for the exit while the container waited to restart; if so
    /// it is recorded as exited.
    fn stop_requested(&self) -> bool {
        let Ok(_lock) = self.containers.lock(&self.id) else { return false };
        let Ok(mut c) = self.containers.load(&self.id) else { return false };
        if !c.state.stopped_by_user {
            return false;
        }
        // The process ended before the restart delay: its exit is recorded already.
        let (code, oom, error) = (c.state.exit_code, c.state.oom_killed, c.state.error.clone());
        c.state.stopped(Status::Exited, code, oom, &error);
        let _ = self.containers.save_state(&c);
        true
    }

    fn add_client(&self, s: UnixStream) {
        add_client(&self.clients, &self.input, s);
    }

    fn record_failure(&self, e: &Error) {
        let Ok(_lock) = self.containers.lock(&self.id) else { return };
        let Ok(mut c) = self.containers.load(&self.id) else { return };
        let status = if c.state.started_at.is_some() { Status::Exited } else { Status::Created };
        c.state.stopped(status, e.start_code(), false, &hostutil::errors::one_line(e));
        let _ = self.containers.save_state(&c);
    }

    /// Records the end of a run; `Some(delay)` when the restart policy restarts it.
    fn record_exit(&self, code: i32, oom: bool, error: &str) -> Result<Option<Duration>> {
        let _lock = self.containers.lock(&self.id)?;
        let mut c = self.containers.load(&self.id)?;
        let s = &mut c.state;
        s.process_ended(code, oom, error);
        let policy = c.config.host.restart;
        let restart = !s.stopped_by_user
            && match policy {
                crate::RestartPolicy::No => false,
                crate::RestartPolicy::OnFailure(max) => code != 0 && (max == 0 || s.restart_count < max),
                crate::RestartPolicy::Always | crate::RestartPolicy::UnlessStopped => true,
            };
        if restart {
            // Docker's back-off: 100 ms, doubling, at most a minute.
            let delay = Duration::from_millis(100u64 << s.restart_count.min(9)).min(Duration::from_secs(60));
            s.restart_count += 1;
            s.status = Status::Restarting;
            self.containers.save_state(&c)?;
            Ok(Some(delay))
        } else {
            s.stopped(Status::Exited, code, oom, error);
            self.containers.save_state(&c)?;
            Ok(None)
        }
    }

    fn teardown(&self, p: Plumbing) {
        drop(p.proxy);
        if p.nat
            && let Err(e) = network::unpublish_nat(self.id.as_str())
        {
            eprintln!("rbuild-monitor: removing port rules: {}", hostutil::errors::one_line(&e));
        }
        if !p.endpoints.is_empty() {
            match Networks::open(&self.root) {
                Ok(nets) => {
                    for ep in &p.endpoints {
                        if let Err(e) = nets.detach_exiting(&ep.network, self.id.as_str()) {
                            eprintln!(
                                "rbuild-monitor: leaving network {}: {}",
                                ep.network,
                                hostutil::errors::one_line(&e)
                            );
                        }
                    }
                }
                Err(e) => eprintln!("rbuild-monitor: {}", hostutil::errors::one_line(&e)),
            }
        }
        if let Some(ns) = p.netns
            && let Err(e) = network::remove_netns(&ns)
        {
            eprintln!("rbuild-monitor: removing the network namespace: {}", hostutil::errors::one_line(&e));
        }
    }

    /// Sets up and starts the container once; on error everything set up so far is undone.
    fn start_once(&mut self) -> Result<(executor::Sandbox, Vec<std::thread::JoinHandle<()>>, Plumbing)> {
        self.gate = Arc::default();
        let started = self.start_once_recorded();
        let (open, wake) = &*self.gate;
        *open.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        started
    }

    fn start_once_recorded(
        &mut self,
    ) -> Result<(executor::Sandbox, Vec<std::thread::JoinHandle<()>>, Plumbing)> {
        let lock = self.containers.lock(&self.id)?;
        let mut c = self.containers.load(&self.id)?;
        let mut plumbing = Plumbing::default();
        match self.prepare_and_spawn(&mut c, &mut plumbing) {
            Ok((sandbox, pumps)) => {
                let s = &mut c.state;
                s.status = Status::Running;
                s.pid = sandbox.pid();
                s.pid_start = proc_start_time(s.pid).unwrap_or_default();
                s.monitor_pid = std::process::id() as i32;
                s.monitor_start = proc_start_time(s.monitor_pid).unwrap_or_default();
                s.started_at = Some(now_rfc3339());
                s.finished_at = None;
                s.exit_code = 0;
                s.oom_killed = false;
                s.error.clear();
                s.cgroup = sandbox.cgroup_name();
                s.endpoints = plumbing.endpoints.clone();
                s.ports = plumbing.proxy.as_ref().map(|p| p.bound()).unwrap_or_default();
                // A new run: `stop` marks the next exit as asked for again.
                s.stopped_by_user = false;
                s.health = c
                    .config
                    .config
                    .healthcheck
                    .as_ref()
                    .filter(|h| h.is_active())
                    .map(|_| Default::default());
                self.containers.save_state(&c)?;
                drop(lock);
                self.volume_events(&c, "mount");
                crate::events::emit(&self.root, crate::events::container(&c, "start", &[]));
                Ok((sandbox, pumps, plumbing))
            }
            Err(e) => {
                drop(lock);
                self.teardown(plumbing);
                Err(e)
            }
        }
    }

    fn prepare_and_spawn(
        &mut self,
        c: &mut Container,
        plumbing: &mut Plumbing,
    ) -> Result<(executor::Sandbox, Vec<std::thread::JoinHandle<()>>)> {
        let image = self.store.image(&c.config.image_id)?;
        let layers = image.layers();
        let mut lowers = vec![c.init_layer()];
        lowers.extend(self.store.lower_dirs(&layers)?);
        let merged = c.rootfs_dir().join("merged");
        fs::create_dir_all(&merged).map_err(|e| Error::Io { path: merged.clone(), source: e })?;

        let hostname = c.config.config.hostname.clone();
        let mut mounts = Vec::new();
        let network = self.setup_network(c, &hostname, plumbing)?;
        // /etc/hosts, /etc/hostname, /etc/resolv.conf: the container's own files (or, with
        // `--network container:X`, X's), bind-mounted read-write as docker does.
        let files_of = match &c.config.host.network {
            NetworkRequest::Container(other) => {
                self.containers.find(other).map(|o| o.dir).unwrap_or(c.dir.clone())
            }
            _ => c.dir.clone(),
        };
        for (name, target) in
            [("hosts", "/etc/hosts"), ("hostname", "/etc/hostname"), ("resolv.conf", "/etc/resolv.conf")]
        {
            mounts.push(executor::Mount {
                target: target.into(),
                kind: executor::MountKind::Bind { source: files_of.join(name), readonly: false },
            });
        }
        let volumes = Volumes::open(&self.root)?;
        let mut user_mounts = c.config.host.mounts.clone();
        // Parents before children (docker sorts by destination).
        user_mounts.sort_by_key(|m| m.target().trim_end_matches('/').matches('/').count());
        for m in &user_mounts {
            let kind = match m {
                MountRequest::Volume { name, readonly, nocopy, .. } => {
                    let v = volumes.ensure(name)?;
                    executor::MountKind::Volume {
                        source: v.mountpoint,
                        readonly: *readonly,
                        populate: !nocopy,
                    }
                }
                MountRequest::Bind { source, readonly, .. } => {
                    executor::MountKind::Bind { source: source.clone(), readonly: *readonly }
                }
                MountRequest::Tmpfs { size, .. } => executor::MountKind::Tmpfs { size: *size },
            };
            mounts.push(executor::Mount { target: m.target().to_string(), kind });
        }
        make_init_layer(&c.init_layer(), &lowers[1..], &user_mounts)?;

        let cfg = &c.config.config;
        let mut env = cfg.env.clone();
        if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
            env.push(format!("HOSTNAME={hostname}"));
        }
        if cfg.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        let security = c.config.host.security()?;
        let spec = executor::SandboxSpec {
            rootfs: executor::Rootfs { lowers, upper: c.upper(), work: c.work(), target: merged },
            process: executor::Process {
                args: cfg.entrypoint.iter().chain(&cfg.cmd).cloned().collect(),
                env,
                cwd: if cfg.working_dir.is_empty() { "/".into() } else { cfg.working_dir.clone() },
                user: cfg.user.clone(),
            },
            hostname,
            network,
            mounts,
            resources: c.config.host.resources.clone(),
            limits: c.config.host.limits.clone(),
            security,
            readonly_rootfs: c.config.host.read_only,
        };

        // stdio: a pty, or pipes (stdin only with -i).
        let mut pumps = Vec::new();
        let stdio = if cfg.tty {
            let (master, slave) =
                hostutil::tty::open_pty().map_err(|e| Error::Io { path: "/dev/ptmx".into(), source: e })?;
            let master = File::from(master);
            if let Some((rows, cols)) = c.config.host.console_size.filter(|(r, c)| *r > 0 && *c > 0) {
                let _ = hostutil::tty::set_window_size(&master, hostutil::tty::WindowSize { rows, cols });
            }
            let reader = master.try_clone().map_err(|e| Error::Io { path: "pty".into(), source: e })?;
            self.input.lock().unwrap_or_else(|p| p.into_inner()).install(Some(master), None);
            pumps.push(self.pump(reader, Stream::Stdout));
            executor::SpawnStdio::Tty(slave)
        } else {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let stdin = if cfg.open_stdin {
                let (in_r, in_w) = pipe()?;
                self.input.lock().unwrap_or_else(|p| p.into_inner()).install(None, Some(File::from(in_w)));
                in_r
            } else {
                File::open("/dev/null").map_err(|e| Error::Io { path: "/dev/null".into(), source: e })?.into()
            };
            pumps.push(self.pump(File::from(out_r), Stream::Stdout));
            pumps.push(self.pump(File::from(err_r), Stream::Stderr));
            executor::SpawnStdio::Fds { stdin, stdout: out_w, stderr: err_w }
        };
        let sandbox = executor::spawn(&spec, executor::SpawnOptions { stdio, init: c.config.host.init })?;
        Ok((sandbox, pumps))
    }

    /// Creates the network namespace and joins the networks; returns the sandbox's mode.
    fn setup_network(
        &self,
        c: &Container,
        hostname: &str,
        plumbing: &mut Plumbing,
    ) -> Result<executor::NetworkMode> {
        let host = &c.config.host;
        write_file(&c.hostname_path(), format!("{hostname}\n").as_bytes())?;
        let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        write_file(
            &c.resolv_path(),
            network::resolv_conf(&host.dns, &host.dns_search, &host_resolv).as_bytes(),
        )?;
        let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        for (name, ip) in &host.extra_hosts {
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
        match &host.network {
            NetworkRequest::None => {
                write_file(&c.hosts_path(), hosts.as_bytes())?;
                Ok(executor::NetworkMode::None)
            }
            NetworkRequest::Host => {
                let host_hosts = fs::read_to_string("/etc/hosts").unwrap_or(hosts);
                write_file(&c.hosts_path(), host_hosts.as_bytes())?;
                write_file(&c.resolv_path(), host_resolv.as_bytes())?;
                Ok(executor::NetworkMode::Host)
            }
            NetworkRequest::Container(other) => {
                let o = self.containers.find(other)?;
                if !o.is_alive() {
                    return Err(Error::Conflict(format!(
                        "cannot join the network of container {other}: it is not running"
                    )));
                }
                Ok(executor::NetworkMode::Join(PathBuf::from(format!("/proc/{}/ns/net", o.state.pid))))
            }
            NetworkRequest::Bridge(names) => {
                write_file(&c.hosts_path(), hosts.as_bytes())?;
                let ns = c.netns_path();
                network::create_netns(&ns)?;
                plumbing.netns = Some(ns.clone());
                let nets = Networks::open(&self.root)?;
                for (i, name) in names.iter().enumerate() {
                    plumbing.endpoints.push(crate::connect::join(
                        &nets,
                        c,
                        name,
                        &ns,
                        &format!("eth{i}"),
                        &[],
                    )?);
                }
                let ports = crate::lifecycle::ports_to_publish(c);
                if !ports.is_empty()
                    && let Some(ep) = plumbing.endpoints.first()
                {
                    let proxy = network::Proxy::start(&ports, ep.ip)?;
                    let bound = proxy.bound();
                    plumbing.proxy = Some(proxy);
                    plumbing.nat = true;
                    network::publish_nat(c.id().as_str(), ep.ip, &bound)?;
                }
                Ok(executor::NetworkMode::Join(ns))
            }
        }
    }

    /// A thread copying one output stream to the log and to every attached client.
    fn pump(&self, mut from: File, stream: Stream) -> std::thread::JoinHandle<()> {
        let log = self.log.clone();
        let clients = self.clients.clone();
        let gate = self.gate.clone();
        std::thread::spawn(move || {
            let (open, wake) = &*gate;
            let mut is_open = open.lock().unwrap_or_else(|p| p.into_inner());
            while !*is_open {
                is_open = wake.wait(is_open).unwrap_or_else(|p| p.into_inner());
            }
            drop(is_open);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // EIO: the pty's last slave closed.
                    Err(_) => break,
                };
                if let Ok(mut l) = log.lock() {
                    let _ = l.write(stream, &buf[..n]);
                }
                let frame = match stream {
                    Stream::Stdout => MonitorFrame::Stdout(buf[..n].to_vec()),
                    Stream::Stderr => MonitorFrame::Stderr(buf[..n].to_vec()),
                };
                broadcast(&clients, &frame);
            }
        })
    }
}

fn broadcast(clients: &Clients, frame: &MonitorFrame) {
    let bytes = frame.encode();
    let mut clients = clients.lock().unwrap_or_else(|p| p.into_inner());
    // A client that cannot keep up (or is gone) is dropped rather than stalling the container.
    clients.retain_mut(|c| c.write_all(&bytes).is_ok());
}

fn add_client(clients: &Clients, input: &Arc<Mutex<Input>>, s: UnixStream) {
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let Ok(mut reader) = s.try_clone() else { return };
    clients.lock().unwrap_or_else(|p| p.into_inner()).push(s);
    let input = input.clone();
    std::thread::spawn(move || {
        while let Ok(Some(frame)) = ClientFrame::read_from(&mut reader) {
            let mut input = input.lock().unwrap_or_else(|p| p.into_inner());
            match frame {
                ClientFrame::Stdin(data) => input.write(&data),
                ClientFrame::StdinClose => input.close(),
                ClientFrame::Resize { rows, cols } => input.resize(rows, cols),
            }
        }
    });
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::Io { path: "pipe".into(), source: e.into() })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    // In place (same inode): the file may be bind-mounted into a running container.
    let mut f = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    f.write_all(bytes).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })
}

/// Fills the container's "init" layer (the topmost lower) with the mount points rbuild needs,
/// so that the kernel never creates them in the upper directory and they never show in `diff`
/// or `commit`. Each parent directory copies its owner and mode from the image.
fn make_init_layer(init: &Path, lowers: &[PathBuf], mounts: &[MountRequest]) -> Result<()> {
    let mut want: Vec<(String, bool)> = vec![
        ("/proc".into(), true),
        ("/dev".into(), true),
        ("/sys".into(), true),
        ("/etc/hosts".into(), false),
        ("/etc/hostname".into(), false),
        ("/etc/resolv.conf".into(), false),
    ];
    for m in mounts {
        let dir = match m {
            MountRequest::Bind { source, .. } => fs::metadata(source).map(|m| m.is_dir()).unwrap_or(true),
            _ => true,
        };
        want.push((m.target().to_string(), dir));
    }
    for (target, dir) in want {
        let rel = Path::new(target.trim_start_matches('/'));
        if rel.as_os_str().is_empty()
            || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            continue;
        }
        let mut path = init.to_path_buf();
        let comps: Vec<_> = rel.components().collect();
        for (i, comp) in comps.iter().enumerate() {
            path.push(comp);
            let last = i + 1 == comps.len();
            if fs::symlink_metadata(&path).is_ok() {
                continue;
            }
            let sub: PathBuf = comps[..=i].iter().collect();
            // The image's own entry at this path, if any: a symlink there is left to the
            // executor (which resolves mount targets inside the rootfs).
            let image_entry = lowers.iter().find_map(|l| fs::symlink_metadata(l.join(&sub)).ok());
            if image_entry.as_ref().is_some_and(|m| m.file_type().is_symlink()) {
                break;
            }
            let made = if last && !dir { fs::write(&path, b"") } else { fs::create_dir(&path) };
            made.map_err(|e| Error::Io { path: path.clone(), source: e })?;
            if let Some(m) = image_entry
                && m.is_dir() == (!last || dir)
            {
                let _ = fs::set_permissions(&path, fs::Permissions::from_mode(m.mode() & 0o7777));
                let _ = std::os::unix::fs::lchown(&path, Some(m.uid()), Some(m.gid()));
            }
        }
    }
    Ok(())
}
