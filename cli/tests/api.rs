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
