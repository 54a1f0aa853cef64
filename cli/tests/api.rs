//! `rbuild system service`: the Docker Engine API on a socket, judged by the unchanged docker
//! CLI (Debian's docker.io package; no dockerd is started): what `docker version`, `ps`,
//! `run -d`, `logs`, `inspect`, `stop`, `rm` and `images` print, and that rbuild's own view
//! agrees.

use std::io::{Read, Write};

use test_support::containers::Env;
use test_support::dockerapi::Service;

#[test]
fn the_docker_cli_runs_lists_logs_stops_and_removes_containers_through_the_socket() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let api = Service::start(&e);
    let version = api.ok(&["version", "--format", "{{.Server.APIVersion}} {{.Client.APIVersion}}"]);
    assert_eq!(version.trim(), "1.43 1.41", "{version}");
    let info = api.ok(&["info", "--format", "{{.Images}} {{.Driver}} {{.OSType}}"]);
    assert_eq!(info.trim(), "1 overlay linux");
    assert!(
        api.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).lines().any(|l| l == "busybox:latest")
    );

    let id = api.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo hello; echo oops >&2; sleep 1000",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    // rbuild's own view is the same container.
    e.wait_for_log("web", "hello");
    assert_eq!(e.inspect("web", "{{.Id}}"), id);
    assert_eq!(
        api.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]).split_whitespace().take(2).collect::<Vec<_>>(),
        ["web", "Up"]
    );
    let (code, out, err) = api.docker(&["logs", "web"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "hello\n", "oops\n"),
        "stdout and stderr demultiplexed"
    );
    assert_eq!(api.ok(&["inspect", "-f", "{{.State.Status}} {{.Name}}", "web"]).trim(), "running /web");
    api.ok(&["stop", "-t", "1", "web"]);
    assert_eq!(e.inspect("web", "{{.State.Status}}"), "exited");
    assert!(api.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]).starts_with("web Exited (137)"));
    // A container rbuild made shows through the socket too.
    e.ok(&["create", "--name", "made-here", "busybox", "true"]);
    assert!(api.ok(&["ps", "-a", "--format", "{{.Names}}"]).lines().any(|l| l == "made-here"));
    api.ok(&["rm", "web", "made-here"]);
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");

    // `logs -f` streams until the container ends.
    api.ok(&[
        "run",
        "-d",
        "--name",
        "count",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo $i; sleep 0.2; done",
    ]);
    assert_eq!(api.ok(&["logs", "-f", "count"]), "1\n2\n3\n");
    assert_eq!(api.ok(&["wait", "count"]).trim(), "0");
    api.ok(&["rm", "count"]);

    // Errors come back as docker's.
    let (code, _, err) = api.docker(&["inspect", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("No such object: nope") || err.contains("No such container: nope"), "{err}");
    let (code, _, err) = api.docker(&["rm", "nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("No such container: nope"), "{err}");
}

#[test]
fn the_socket_is_root_only_and_goes_with_the_service() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let socket;
    {
        let api = Service::start(&e);
        socket = api.socket.clone();
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o660);
        // A version newer than ours is refused as dockerd refuses it.
        let mut conn = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        conn.write_all(b"GET /v1.99/info HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.0 400") && answer.contains("is too new"), "{answer}");
    }
    // An idle service ends by itself and removes its socket.
    let mut short =
        e.s.cmd()
            .args(["system", "service", "--time", "1", &format!("unix://{}", socket.display())])
            .spawn()
            .unwrap();
    let status = short.wait().unwrap();
    assert!(status.success());
    assert!(!socket.exists());
}

#[test]
fn the_docker_cli_manages_volumes_through_the_socket() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let api = Service::start(&e);
    assert_eq!(api.ok(&["volume", "create", "--label", "team=a", "data"]).trim(), "data");
    assert!(
        api.ok(&["volume", "ls", "--format", "{{.Driver}} {{.Name}}"]).lines().any(|l| l == "local data")
    );
    assert_eq!(api.ok(&["volume", "inspect", "-f", "{{.Labels.team}}", "data"]).trim(), "a");
    // rbuild's own view is the same volume, and a container writes into it.
    assert_eq!(e.ok(&["volume", "ls", "-q"]).trim(), "data");
    api.ok(&[
        "run",
        "-d",
        "--name",
        "writer",
        "--network",
        "none",
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f; sleep 1000",
    ]);
    e.wait_until("the file in the volume", || e.ok(&["exec", "writer", "cat", "/data/f"]) == "kept\n");
    let (code, _, err) = api.docker(&["volume", "rm", "data"]);
    assert_ne!(code, 0);
    assert!(err.contains("volume is in use"), "{err}");
    api.ok(&["rm", "-f", "writer"]);
    api.ok(&["volume", "rm", "data"]);
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "");
    let (code, _, err) = api.docker(&["volume", "inspect", "nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("No such volume: nope"), "{err}");
}

/// `docker`, fed `input` on its stdin: (exit code, stdout, stderr).
fn docker_with_input(api: &Service, args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = api
        .client(test_support::dockerapi::docker_bin())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    test_support::dockerapi::triple(child.wait_with_output().unwrap())
}

/// `docker` on a pseudo-terminal of `rows` x `cols`.
fn docker_on_a_terminal(api: &Service, args: &str, rows: u16, cols: u16) -> (i32, String) {
    let (code, out, err) = test_support::dockerapi::on_a_terminal(
        api.client("/usr/bin/script"),
        &format!("stty rows {rows} cols {cols}; /usr/bin/docker {args}"),
    );
    (code, format!("{out}{err}"))
}

#[test]
fn docker_run_in_the_foreground_attaches_and_docker_exec_runs_in_the_container() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let api = Service::start(&e);
    // `run` without -d: attached before the start, so no output is missed; the exit status
    // and both streams come back apart; --rm leaves nothing.
    let (code, out, err) = api.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!((code, out.as_str(), err.as_str()), (3, "out\n", "err\n"));
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");
    // -i: stdin reaches the container and its end ends `cat`.
    let (code, out, err) =
        docker_with_input(&api, &["run", "-i", "--rm", "--network", "none", "busybox", "cat"], "typed\n");
    assert_eq!((code, out.as_str()), (0, "typed\n"), "{err}");
    // A command that does not exist: docker's 127 and its words.
    let (code, _, err) = api.docker(&["run", "--rm", "--network", "none", "busybox", "nosuchcmd"]);
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("executable file not found"), "{err}");
    // -t: a terminal of the client's size. The docker 20.10 CLI sizes it just after the start
    // (as against dockerd, where a process that asks at once can still see 0x0).
    let (code, out) =
        docker_on_a_terminal(&api, "run --rm -t --network none busybox sh -c 'sleep 0.5; stty size'", 33, 77);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("33 77"), "{out:?}");

    api.ok(&["run", "-d", "--name", "box", "--network", "none", "busybox", "sleep", "1000"]);
    let (code, out, err) = api.docker(&["exec", "box", "sh", "-c", "echo a; echo b >&2; exit 5"]);
    assert_eq!((code, out.as_str(), err.as_str()), (5, "a\n", "b\n"));
    let (code, out, _) =
        docker_with_input(&api, &["exec", "-i", "box", "sh", "-c", "cat; echo done"], "in\n");
    assert_eq!((code, out.as_str()), (0, "in\ndone\n"));
    let (code, out, _) = api.docker(&[
        "exec",
        "-e",
        "X=1",
        "-w",
        "/tmp",
        "-u",
        "1000",
        "box",
        "sh",
        "-c",
        "echo $X $(pwd) $(id -u)",
    ]);
    assert_eq!((code, out.as_str()), (0, "1 /tmp 1000\n"));
    let (code, out) = docker_on_a_terminal(&api, "exec -it box sh -c 'tty; sleep 0.5; stty size'", 40, 100);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("/dev/pts/") && out.contains("40 100"), "{out:?}");
    let (code, _, err) = api.docker(&["exec", "box", "nosuchcmd"]);
    assert_eq!(code, 127, "{err}");
    // exec -d: the process outlives the request.
    api.ok(&["exec", "-d", "box", "sh", "-c", "sleep 0.2; echo later > /tmp/d"]);
    e.wait_until("the detached exec's file", || e.run(&["exec", "box", "cat", "/tmp/d"]).1 == "later\n");
    // attach to a running container: its output from then on, and its exit status.
    api.ok(&[
        "run",
        "-d",
        "--name",
        "talk",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "sleep 1; echo late; exit 4",
    ]);
    let (code, out, _) = api.docker(&["attach", "talk"]);
    assert_eq!((code, out.as_str()), (4, "late\n"));
    // `start -a` of a created container.
    api.ok(&["create", "--name", "later", "--network", "none", "busybox", "echo", "started"]);
    assert_eq!(api.ok(&["start", "-a", "later"]), "started\n");
    api.ok(&["rm", "-f", "box", "talk", "later"]);
    let (code, _, err) = api.docker(&["exec", "talk", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("No such container"), "{err}");
}

#[test]
fn a_published_port_serves_the_host_and_the_views_agree() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let api = Service::start(&e);
    let port = test_support::free_port();
    let publish = format!("127.0.0.1:{port}:80");
    api.ok(&[
        "run",
        "-d",
        "-p",
        &publish,
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "mkdir /www && echo served > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    assert_eq!(test_support::http_get_when_served(port), "served\n");
    assert_eq!(api.ok(&["port", "web", "80"]).trim(), format!("127.0.0.1:{port}"));
    assert!(
        api.ok(&["ps", "--format", "{{.Names}} {{.Ports}}"])
            .contains(&format!("web 127.0.0.1:{port}->80/tcp"))
    );
    assert!(e.ok(&["ps"]).contains(&format!("127.0.0.1:{port}->80/tcp")));
    api.ok(&["rm", "-f", "web"]);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the port is released");
    e.ok(&["network", "prune", "-f"]);
}
