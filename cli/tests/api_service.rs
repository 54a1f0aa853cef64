//! The service's edges, judged by the unchanged docker CLI 20.10: systemd's socket activation
//! (the socket made by `systemd-socket-activate`, the service started on the first connection
//! and gone after its idle time), image and exec events in `docker events`, and requests that
//! must be refused cleanly (not JSON, a bad id, a huge body, a client that goes away).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use test_support::containers::Env;
use test_support::dockerapi::{Service, docker_bin, events_args, triple};
use test_support::registry::TestRegistry;

const BIN: &str = env!("CARGO_BIN_EXE_rbuild");

/// A child killed by PID when dropped (the test fails before it ends by itself).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The docker CLI at `host`: (exit code, stdout, stderr).
fn docker_at(host: &str, args: &[&str]) -> (i32, String, String) {
    let config = tempfile::tempdir().expect("a temporary directory");
    triple(
        Command::new(docker_bin())
            .env("DOCKER_HOST", host)
            .env("DOCKER_CONFIG", config.path())
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CONTEXT")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("docker runs"),
    )
}

/// One raw HTTP/1.1 request on the socket; the answer's status code and body.
fn raw(socket: &Path, head: &str, body: &[u8]) -> (u16, String) {
    let mut s = UnixStream::connect(socket).expect("connect to the API socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("a read timeout");
    s.write_all(head.as_bytes()).expect("send the head");
    // The service may answer (and stop reading) before the body is all sent: written from a
    // thread of its own, so the answer is read either way.
    let mut w = s.try_clone().expect("a second handle on the socket");
    let body = body.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&body);
    });
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

#[test]
fn a_socket_activated_service_answers_the_docker_cli_and_ends_when_idle() {
    let e = Env::new(BIN);
    let socket = e.s.path().join("activated.sock");
    // What a `.socket` unit does: the socket exists before the service, which starts on the
    // first connection and gets it as descriptor 3 (LISTEN_FDS=1, LISTEN_PID its own).
    let mut child = Guard(
        Command::new("/usr/bin/systemd-socket-activate")
            .arg("-l")
            .arg(&socket)
            .arg("-E")
            .arg(format!("RBUILD_CONFIG={}", e.s.config.display()))
            .arg(BIN)
            .arg("--root")
            .arg(e.s.path())
            .args(["system", "service", "--time", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("systemd-socket-activate starts (apt-get install systemd)"),
    );
    test_support::containers::wait_until("the activation socket", || socket.exists());
    let host = format!("unix://{}", socket.display());
    let (code, out, err) = docker_at(&host, &["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!((code, out.trim()), (0, "1.43"), "{err}");
    let pid = child.0.id();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("the activated process");
    assert_eq!(exe, Path::new(BIN), "systemd-socket-activate execs rbuild in its place");

    // (Not `run --rm` in the foreground: its exit status races the removal, see the report.)
    let (code, _, err) = docker_at(
        &host,
        &["run", "-d", "--name", "act", "--network", "none", "busybox", "echo", "through activation"],
    );
    assert_eq!(code, 0, "{err}");
    e.wait_for_log("act", "through activation");
    let (code, _, err) = docker_at(&host, &["rm", "-f", "act"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = docker_at(&host, &["images", "--format", "{{.Repository}}"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l == "busybox"), "{out}");

    // Idle for its --time: it ends, with success, and leaves the socket (systemd's) in place.
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for the service") {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the service outlived its idle time");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    assert!(socket.exists(), "an activated service does not remove the socket it was given");
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");
}

#[test]
fn a_listen_pid_of_another_process_is_not_taken() {
    let e = Env::new(BIN);
    let socket = e.s.path().join("mine.sock");
    // LISTEN_PID names someone else: the service listens where it is told, as without it.
    let _service = Guard(
        e.s.cmd()
            .env("LISTEN_FDS", "1")
            .env("LISTEN_PID", "1")
            .args(["system", "service", "--time", "0", &format!("unix://{}", socket.display())])
            .stdin(Stdio::null())
            .spawn()
            .expect("rbuild system service starts"),
    );
    test_support::containers::wait_until("the API socket", || socket.exists());
    let (code, out, err) =
        docker_at(&format!("unix://{}", socket.display()), &["version", "--format", "{{.Server.Os}}"]);
    assert_eq!((code, out.trim()), (0, "linux"), "{err}");
}

/// `docker events` between two times, one line per event: `TYPE ACTION ACTOR-ID`.
fn events(api: &Service, since: &str, until: &str, filters: &[&str]) -> Vec<String> {
    let args = events_args(since, until, filters, Some("{{.Type}} {{.Action}} {{.Actor.ID}}"));
    api.ok(&args).lines().map(str::to_string).collect()
}

fn now() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}

#[test]
fn image_and_exec_events_show_in_docker_events() {
    let e = Env::new(BIN);
    let api = Service::start(&e);
    let reg = TestRegistry::start();
    let reference = reg.push_busybox(BIN);
    let since = now();
    api.ok(&["pull", &reference]);
    let id = e.ok(&["inspect", "-f", "{{.Id}}", &reference]).trim().to_string();
    api.ok(&["tag", &reference, "again:1"]);
    api.ok(&["rmi", "again:1"]);
    api.ok(&["rmi", &reference]);
    // The CLI's pull is the same library call: the same event.
    e.ok(&["tag", "busybox", "local:1"]);
    let until = now();
    let got = events(&api, &since, &until, &["type=image"]);
    assert_eq!(
        got,
        [
            format!("image pull {reference}"),
            format!("image tag {id}"),
            format!("image untag {id}"),
            format!("image untag {id}"),
            format!("image delete {id}"),
            format!("image tag {}", e.ok(&["inspect", "-f", "{{.Id}}", "busybox"]).trim()),
        ],
        "dockerd's image events, in order"
    );
    let names = api.ok(&events_args(&since, &until, &["event=tag"], Some("{{.Actor.Attributes.name}}")));
    assert_eq!(names.lines().collect::<Vec<_>>(), ["again:1", "local:1"]);
    // rbuild's own view of the log is the same.
    let text = e.ok(&events_args(&since, &until, &["type=image"], None));
    assert_eq!(text.lines().count(), 6, "{text}");

    // exec: create, start and die (with the exit code), through the socket and from the CLI.
    api.ok(&["run", "-d", "--name", "box", "--network", "none", "busybox", "sleep", "1000"]);
    let since = now();
    // The exit code in the event (docker's own exit status races the exec's end: see the report).
    api.docker(&["exec", "box", "sh", "-c", "exit 3"]);
    e.ok(&["exec", "box", "true"]);
    let until = now();
    let got = api.ok(&events_args(
        &since,
        &until,
        &["container=box"],
        Some("{{index .Actor.Attributes \"execID\"}} {{.Action}} {{index .Actor.Attributes \"exitCode\"}}"),
    ));
    let (ids, actions): (Vec<&str>, Vec<&str>) =
        got.lines().map(|l| l.trim_end().split_once(' ').unwrap_or((l, ""))).unzip();
    assert_eq!(
        actions,
        [
            "exec_create: sh -c exit 3",
            "exec_start: sh -c exit 3",
            "exec_die 3",
            "exec_create: true",
            "exec_start: true",
            "exec_die 0",
        ]
    );
    // Each exec's three events name it by one `execID` (64 hex digits, as dockerd's).
    assert!(ids.iter().all(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())), "{got}");
    assert!(ids[..3].iter().all(|id| *id == ids[0]) && ids[3..].iter().all(|id| *id == ids[3]), "{got}");
    assert_ne!(ids[0], ids[3], "{got}");
    api.ok(&["rm", "-f", "box"]);
}

#[test]
fn bad_requests_are_refused_with_docker_s_codes_and_leave_nothing() {
    let e = Env::new(BIN);
    let api = Service::start(&e);
    let post = |path: &str, body: &[u8]| {
        raw(
            &api.socket,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            ),
            body,
        )
    };
    let get = |path: &str| {
        raw(&api.socket, &format!("GET {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"), b"")
    };

    // A body that is not JSON: 400 with docker's {"message"}.
    for path in ["/v1.41/containers/create", "/volumes/create", "/networks/create"] {
        let (status, body) = post(path, b"this is { not json");
        assert_eq!(status, 400, "{path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        assert!(v["message"].is_string(), "{body}");
    }
    // Ids that name nothing, or could not: 404.
    for path in [
        "/containers/nosuch/json",
        "/containers/..%2F..%2Fetc/json",
        "/containers/%00/json",
        "/images/nosuch:1/json",
        "/networks/nosuch",
        "/volumes/nosuch",
        "/exec/nosuch/json",
    ] {
        let (status, body) = get(path);
        assert_eq!(status, 404, "{path}: {body}");
    }
    // A huge body to a JSON endpoint: 413 at axum's 2 MiB limit, never read whole.
    let huge = vec![b' '; 3 << 20];
    let (status, body) = post("/containers/create", &huge);
    assert_eq!(status, 413);
    // In docker's shape, as every error: the docker CLI prints the message.
    assert!(body.contains(r#"{"message":"#), "{body}");
    let (status, _) = post("/volumes/create", &huge);
    assert_eq!(status, 413);
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "");

    // A client that goes away in the middle of its create's body: nothing is created.
    let mut s = UnixStream::connect(&api.socket).expect("connect");
    let body = br#"{"Image": "busybox", "Cmd": ["true"]}"#;
    s.write_all(
        format!(
            "POST /containers/create?name=half HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .expect("send the head");
    s.write_all(&body[..10]).expect("send part of the body");
    drop(s);
    // A client that goes before the answer: the create is one call, whole or not at all.
    let mut s = UnixStream::connect(&api.socket).expect("connect");
    s.write_all(
        format!(
            "POST /containers/create?name=whole HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .expect("send the head");
    s.write_all(body).expect("send the body");
    drop(s);
    std::thread::sleep(Duration::from_secs(1));
    let names = e.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!names.contains("half"), "{names}");
    if names.contains("whole") {
        // Created whole: it runs and goes as any container.
        e.ok(&["start", "-a", "whole"]);
        e.ok(&["rm", "whole"]);
    }
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");

    // A build whose client goes away mid-context, and one whose client goes mid-RUN: no image,
    // no context left in tmp/, no build step still running.
    let mut tar = tar::Builder::new(Vec::new());
    let dockerfile = b"FROM busybox\nRUN sleep 3 && echo done > /done\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(dockerfile.len() as u64);
    h.set_mode(0o644);
    tar.append_data(&mut h, "Dockerfile", &dockerfile[..]).expect("tar the Dockerfile");
    let context = tar.into_inner().expect("the context tar");
    let head = |len: usize| {
        format!(
            "POST /build?t=gone:1 HTTP/1.1\r\nHost: docker\r\nContent-Type: application/x-tar\r\nContent-Length: {len}\r\n\r\n"
        )
    };
    let mut s = UnixStream::connect(&api.socket).expect("connect");
    s.write_all(head(context.len()).as_bytes()).expect("send the head");
    s.write_all(&context[..100]).expect("send part of the context");
    drop(s);
    let mut s = UnixStream::connect(&api.socket).expect("connect");
    s.write_all(head(context.len()).as_bytes()).expect("send the head");
    s.write_all(&context).expect("send the context");
    std::thread::sleep(Duration::from_secs(1));
    drop(s);
    // The RUN ends (3 s) and its next event finds the client gone.
    let start = Instant::now();
    let leftovers = || {
        std::fs::read_dir(e.s.path().join("tmp"))
            .map(|d| {
                d.filter_map(|x| x.ok())
                    .filter(|x| x.file_name().to_string_lossy().starts_with("context-"))
                    .count()
            })
            .unwrap_or(0)
    };
    while leftovers() > 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "the build's context stayed in tmp/");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Gone before the build's end: either cancelled (no image) or finished whole; never half.
    std::thread::sleep(Duration::from_secs(4));
    let images = e.ok(&["images", "--format", "{{.Repository}}"]);
    if images.lines().any(|l| l == "gone") {
        e.ok(&["run", "--name", "check", "--network", "none", "gone:1", "cat", "/done"]);
        assert_eq!(e.logs("check"), "done\n");
        e.ok(&["rm", "check"]);
    }
    assert_eq!(leftovers(), 0);
    // The service still answers.
    assert_eq!(api.ok(&["version", "--format", "{{.Server.Os}}"]).trim(), "linux");
}
