//! The rest of the container endpoints, judged by the unchanged docker CLI through the socket:
//! `cp` both ways, `top`, `stats`, `diff`, `export`, `rename`, `pause`/`unpause`,
//! `container prune`, and `run` flags that become create fields (resources, tmpfs, hosts,
//! DNS, volumes, user, workdir), each checked from inside the container and in rbuild's view.

use std::process::Command;

use test_support::containers::Env;
use test_support::dockerapi::Service;

/// `rbuild exec NAME sh -c SCRIPT`'s output, trimmed.
fn sh(e: &Env, name: &str, script: &str) -> String {
    e.ok(&["exec", name, "sh", "-c", script]).trim().to_string()
}

#[test]
fn docker_cp_copies_files_and_directories_both_ways_running_or_stopped() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let api = Service::start(&e);
    let host = tempfile::tempdir().expect("a temporary directory");
    let file = host.path().join("hello.txt");
    std::fs::write(&file, "hi there\n").expect("write");
    let dir = host.path().join("tree");
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    std::fs::write(dir.join("a"), "A\n").expect("write");
    std::fs::write(dir.join("sub/b"), "B\n").expect("write");

    api.ok(&["run", "-d", "--name", "box", "--network", "none", "busybox", "sleep", "1000"]);
    // Into a running container: a file into a directory, a directory under its own name.
    api.ok(&["cp", file.to_str().expect("utf-8"), "box:/tmp/"]);
    api.ok(&["cp", dir.to_str().expect("utf-8"), "box:/tmp/"]);
    assert_eq!(sh(&e, "box", "cat /tmp/hello.txt"), "hi there");
    assert_eq!(sh(&e, "box", "cat /tmp/tree/a /tmp/tree/sub/b"), "A\nB");
    assert_eq!(sh(&e, "box", "stat -c %u:%g /tmp/hello.txt"), "0:0", "owned by the container's root");
    // `-a` keeps the host file's owner.
    let owned = host.path().join("owned");
    std::fs::write(&owned, "mine\n").expect("write");
    std::os::unix::fs::chown(&owned, Some(1234), Some(4321)).expect("chown");
    api.ok(&["cp", "-a", owned.to_str().expect("utf-8"), "box:/tmp/"]);
    assert_eq!(sh(&e, "box", "stat -c %u:%g /tmp/owned"), "1234:4321");
    // A file to a new name.
    api.ok(&["cp", file.to_str().expect("utf-8"), "box:/renamed.txt"]);
    assert_eq!(sh(&e, "box", "cat /renamed.txt"), "hi there");
    sh(&e, "box", "mkdir /data && echo made inside > /data/f && ln -s /data/f /data/link");

    api.ok(&["stop", "-t", "1", "box"]);
    assert_eq!(e.inspect("box", "{{.State.Status}}"), "exited");
    // Out of a stopped container: a directory, a file, a file to a new name.
    let out = tempfile::tempdir().expect("a temporary directory");
    let out_s = out.path().to_str().expect("utf-8");
    api.ok(&["cp", "box:/data", out_s]);
    assert_eq!(std::fs::read_to_string(out.path().join("data/f")).expect("copied"), "made inside\n");
    assert_eq!(
        std::fs::read_link(out.path().join("data/link")).expect("a symlink").to_str(),
        Some("/data/f"),
        "symlinks stay symlinks"
    );
    // `DIR/.` is the directory's content, into a new directory.
    api.ok(&["cp", "box:/data/.", &format!("{out_s}/contents")]);
    assert_eq!(std::fs::read_to_string(out.path().join("contents/f")).expect("copied"), "made inside\n");
    api.ok(&["cp", "box:/tmp/tree/sub/b", &format!("{out_s}/copy-of-b")]);
    assert_eq!(std::fs::read_to_string(out.path().join("copy-of-b")).expect("copied"), "B\n");
    // `-` is the tar stream itself.
    let tar = api.client(test_support::dockerapi::docker_bin()).args(["cp", "box:/tmp/tree", "-"]).output();
    let tar = tar.expect("docker cp runs");
    assert!(tar.status.success(), "{}", String::from_utf8_lossy(&tar.stderr));
    let listing = tar_list(&tar.stdout);
    assert!(listing.contains(&"tree/sub/b".to_string()), "{listing:?}");

    // Into a stopped container, seen when it runs again.
    api.ok(&["cp", file.to_str().expect("utf-8"), "box:/data/"]);
    api.ok(&["start", "box"]);
    assert_eq!(sh(&e, "box", "cat /data/hello.txt"), "hi there");

    // A missing path is docker's error, both ways.
    let (code, _, err) = api.docker(&["cp", "box:/nope", out_s]);
    assert_eq!(code, 1);
    assert!(err.contains("No such container:path: box:/nope"), "{err}");
    let (code, _, err) = api.docker(&["cp", file.to_str().expect("utf-8"), "box:/no/such/dir/"]);
    assert_ne!(code, 0, "{err}");
    api.ok(&["rm", "-f", "box"]);
}

/// The names in a tar stream, as `tar t` lists them.
fn tar_list(bytes: &[u8]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("x.tar");
    std::fs::write(&path, bytes).expect("write");
    let out = Command::new("tar").arg("tf").arg(&path).output().expect("tar runs");
    assert!(out.status.success(), "tar tf: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim_end_matches('/').to_string()).collect()
}

#[test]
fn docker_top_stats_diff_export_rename_pause_and_prune_work_through_the_socket() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let api = Service::start(&e);
    api.ok(&[
        "run",
        "-d",
        "--name",
        "tt",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "touch /made; rm /etc/group; exec sleep 1000",
    ]);
    e.wait_until("the container's changes", || e.ok(&["diff", "tt"]).contains("/made"));

    let top = api.ok(&["top", "tt"]);
    let mut lines = top.lines();
    let titles: Vec<&str> = lines.next().expect("titles").split_whitespace().collect();
    assert_eq!(titles, ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], "{top}");
    assert!(lines.any(|l| l.ends_with("sleep 1000")), "{top}");

    let stats = api.ok(&["stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}} {{.MemUsage}}", "tt"]);
    let fields: Vec<&str> = stats.split_whitespace().collect();
    assert_eq!(fields[..2], ["tt", "1"], "{stats}");
    assert!(stats.contains(" / "), "memory usage and limit: {stats}");

    let diff = api.ok(&["diff", "tt"]);
    assert!(diff.lines().any(|l| l == "A /made"), "{diff}");
    assert!(diff.lines().any(|l| l == "D /etc/group"), "{diff}");
    assert!(diff.lines().any(|l| l == "C /etc"), "{diff}");
    assert_eq!(diff, e.ok(&["diff", "tt"]), "the same as rbuild diff");

    let out = tempfile::tempdir().expect("a temporary directory");
    let tar = out.path().join("tt.tar");
    api.ok(&["export", "-o", tar.to_str().expect("utf-8"), "tt"]);
    let listing = tar_list(&std::fs::read(&tar).expect("exported"));
    for name in ["bin/sh", "made", "etc/passwd"] {
        assert!(listing.iter().any(|l| l == name), "{name} in the export: {listing:?}");
    }
    assert!(!listing.iter().any(|l| l == "etc/group"), "deleted files stay deleted");
    // `rbuild export` writes the same names.
    let mine = e.s.cmd().args(["export", "tt"]).output().expect("rbuild export runs");
    assert!(mine.status.success());
    assert_eq!(tar_list(&mine.stdout), listing);

    api.ok(&["rename", "tt", "t2"]);
    assert_eq!(e.ps(&["--format", "{{.Names}}"]), ["t2"]);
    api.ok(&["create", "--name", "dead", "busybox", "true"]);
    let (code, _, err) = api.docker(&["rename", "t2", "dead"]);
    assert_eq!(code, 1);
    assert!(err.contains("is already in use"), "{err}");

    api.ok(&["pause", "t2"]);
    assert_eq!(e.ps(&["--format", "{{.Status}}"]).len(), 1);
    assert!(e.ps(&["--format", "{{.Status}}"])[0].ends_with("(Paused)"), "{:?}", e.ps(&[]));
    assert_eq!(e.inspect("t2", "{{.State.Status}}"), "paused");
    api.ok(&["unpause", "t2"]);
    assert_eq!(e.inspect("t2", "{{.State.Status}}"), "running");
    let (code, _, err) = api.docker(&["unpause", "t2"]);
    assert_eq!(code, 1);
    assert!(err.contains("is not paused"), "{err}");

    let dead = e.inspect("dead", "{{.Id}}");
    api.ok(&["create", "--name", "labelled", "--label", "gone=yes", "busybox", "true"]);
    let labelled = e.inspect("labelled", "{{.Id}}");
    let pruned = api.ok(&["container", "prune", "-f", "--filter", "label=gone=yes"]);
    assert!(pruned.contains(&labelled) && !pruned.contains(&dead), "{pruned}");
    let pruned = api.ok(&["container", "prune", "-f", "--filter", "until=1h"]);
    assert!(!pruned.contains(&dead), "made just now: {pruned}");
    let pruned = api.ok(&["container", "prune", "-f"]);
    assert!(pruned.contains(&dead), "{pruned}");
    assert_eq!(e.ps(&["-a", "--format", "{{.Names}}"]), ["t2"], "the running one stays");
    api.ok(&["rm", "-f", "t2"]);
}

#[test]
fn docker_run_flags_become_limits_mounts_hosts_and_dns_in_the_container() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let api = Service::start(&e);
    api.ok(&[
        "run",
        "-d",
        "--name",
        "lim",
        "--network",
        "none",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "50",
        "--tmpfs",
        "/scratch",
        "--add-host",
        "h:10.1.2.3",
        "--dns",
        "10.0.0.53",
        "--mount",
        "type=volume,src=vol,dst=/v",
        "--volume",
        "/anon",
        "--env",
        "A=1",
        "--workdir",
        "/w",
        "--user",
        "1000",
        "--shm-size",
        "16m",
        "--ulimit",
        "nofile=512:1024",
        "--expose",
        "8080",
        "--domainname",
        "example.test",
        "busybox",
        "sleep",
        "1000",
    ]);
    let cgroup = |v1: &str, v2: &str| {
        sh(&e, "lim", &format!("cat /sys/fs/cgroup/{v1} 2>/dev/null || cat /sys/fs/cgroup/{v2}"))
    };
    assert_eq!(cgroup("memory/memory.limit_in_bytes", "memory.max"), "67108864");
    assert_eq!(cgroup("pids/pids.max", "pids.max"), "50");
    assert_eq!(
        sh(
            &e,
            "lim",
            "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max"
        ),
        "50000"
    );
    let mounts = sh(&e, "lim", "cat /proc/mounts");
    assert!(mounts.lines().any(|l| l.starts_with("tmpfs /scratch tmpfs")), "{mounts}");
    assert!(mounts.lines().any(|l| l.contains(" /v ")), "{mounts}");
    assert!(mounts.lines().any(|l| l.starts_with("shm /dev/shm") && l.contains("size=16384k")), "{mounts}");
    // The container's process has the limits (an exec'd one gets the runtime's own).
    let limits = sh(&e, "lim", "grep 'open files' /proc/1/limits");
    assert_eq!(limits.split_whitespace().collect::<Vec<_>>()[3..5], ["512", "1024"], "{limits}");
    let hosts = sh(&e, "lim", "cat /etc/hosts");
    assert!(hosts.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["10.1.2.3", "h"]), "{hosts}");
    assert!(sh(&e, "lim", "cat /etc/resolv.conf").lines().any(|l| l == "nameserver 10.0.0.53"));
    assert_eq!(sh(&e, "lim", "echo $A; pwd; id -u"), "1\n/w\n1000");

    let j = e.json("lim");
    assert_eq!(j["Config"]["Domainname"], "example.test");
    assert!(j["Config"]["ExposedPorts"].get("8080/tcp").is_some(), "{}", j["Config"]);
    let h = &j["HostConfig"];
    assert_eq!(
        (h["Memory"].as_u64(), h["NanoCpus"].as_u64(), h["PidsLimit"].as_u64()),
        (Some(64 << 20), Some(500_000_000), Some(50)),
        "{h}"
    );
    let v = j["Mounts"].as_array().expect("mounts").iter().find(|m| m["Destination"] == "/v").cloned();
    let v = v.expect("the volume mount");
    assert_eq!((v["Type"].as_str(), v["Name"].as_str()), (Some("volume"), Some("vol")));
    assert!(e.volumes().contains(&"vol".to_string()));
    // `-v /anon` comes as Config.Volumes: an anonymous volume.
    let anon = j["Mounts"].as_array().expect("mounts").iter().find(|m| m["Destination"] == "/anon").cloned();
    let anon = anon.expect("the anonymous volume");
    assert_eq!(anon["Type"], "volume");
    assert_eq!(anon["Name"].as_str().map(str::len), Some(64), "{anon}");
    assert!(mounts.lines().any(|l| l.contains(" /anon ")), "{mounts}");
    // `docker ps` sees the same mounts.
    let ps = api.ok(&["ps", "--format", "{{.Mounts}}"]);
    assert!(ps.contains("vol"), "{ps}");
    // --volumes-from: the same volume, read-only when asked; rbuild's own flag agrees.
    e.ok(&["exec", "--user", "0", "lim", "sh", "-c", "echo shared > /v/f"]);
    api.ok(&[
        "run",
        "-d",
        "--name",
        "reader",
        "--network",
        "none",
        "--volumes-from",
        "lim:ro",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_eq!(sh(&e, "reader", "cat /v/f"), "shared");
    let (code, _, _) = e.run(&["exec", "reader", "sh", "-c", "echo no > /v/g"]);
    assert_ne!(code, 0, "read-only");
    assert_eq!(
        e.ok(&["run", "--rm", "--network", "none", "--volumes-from", "lim", "busybox", "cat", "/v/f"]),
        "shared\n"
    );
    api.ok(&["rm", "-f", "lim", "reader"]);
    assert!(e.volumes().contains(&"vol".to_string()), "a shared volume is not removed with a container");
    api.ok(&["volume", "rm", "vol"]);

    // What rbuild cannot do is refused, naming the field, and nothing is made.
    let (code, _, err) = api.docker(&[
        "run",
        "-d",
        "--network",
        "none",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("Sysctls is not supported"), "{err}");
    let (code, _, err) = api.docker(&["create", "--memory-swap", "1g", "--memory", "64m", "busybox", "true"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("MemorySwap"), "{err}");
    assert_eq!(e.ps(&["-a", "-q"]), Vec::<String>::new());
}

/// Compose's way: the network in `NetworkMode` and the service name as an alias in
/// `NetworkingConfig.EndpointsConfig` (the docker CLI's `--network-alias` sends the same).
#[test]
fn network_aliases_from_the_endpoints_config_resolve_for_peers() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let api = Service::start(&e);
    e.ok(&["network", "create", "apinet"]);
    api.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "apinet",
        "--network-alias",
        "frontend",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    assert_eq!(e.inspect("web", "{{json .NetworkSettings.Networks.apinet.Aliases}}"), r#"["frontend"]"#);
    assert_eq!(api.ok(&["ps", "--format", "{{.Networks}}"]).trim(), "apinet");
    let page =
        e.ok(&["run", "--rm", "--network", "apinet", "busybox", "wget", "-q", "-O", "-", "http://frontend/"]);
    assert_eq!(page, "hello\n");
    api.ok(&["rm", "-f", "web"]);
    e.ok(&["network", "rm", "apinet"]);
}

/// `stats` streams one document a second, each with the reading before it as `precpu_stats`.
#[test]
fn stats_stream_one_document_a_second_until_the_client_goes() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let api = Service::start(&e);
    api.ok(&["run", "-d", "--name", "busy", "--network", "none", "busybox", "sleep", "1000"]);
    let out = Command::new("curl")
        .args(["-sN", "--max-time", "3", "--unix-socket"])
        .arg(&api.socket)
        .arg("http://localhost/containers/busy/stats")
        .output()
        .expect("curl runs");
    let docs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(docs.len() >= 2, "{docs:?}");
    assert_eq!(docs[0]["name"], "/busy");
    assert_eq!(docs[0]["pids_stats"]["current"], 1);
    assert_eq!(docs[1]["precpu_stats"]["system_cpu_usage"], docs[0]["cpu_stats"]["system_cpu_usage"]);
    assert!(
        docs[1]["cpu_stats"]["system_cpu_usage"].as_u64() > docs[0]["cpu_stats"]["system_cpu_usage"].as_u64()
    );
    api.ok(&["rm", "-f", "busy"]);
}

/// What does not parse is a 400 with a message, never a dropped connection.
#[test]
fn malformed_requests_are_answered_with_docker_s_status_codes() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let api = Service::start(&e);
    api.ok(&["create", "--name", "idle", "--network", "none", "busybox", "true"]);
    let call = |method: &str, path: &str, body: &str| -> (String, String) {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "-X", method, "--unix-socket"])
            .arg(&api.socket)
            .args(["-H", "Content-Type: application/json", "--data-binary", body])
            .arg(format!("http://localhost{path}"))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
        (code.to_string(), body.to_string())
    };
    let (code, body) = call("PUT", "/containers/idle/archive?path=/tmp", "not a tar stream at all");
    assert_eq!(code, "400", "{body}");
    assert!(body.contains("message"), "{body}");
    assert_eq!(call("GET", "/containers/idle/archive", "").0, "400");
    assert_eq!(call("GET", "/containers/idle/archive?path=/no/such", "").0, "404");
    assert_eq!(call("PUT", "/containers/idle/archive?path=/etc/passwd", "").0, "400");
    assert_eq!(call("GET", "/containers/nosuch/archive?path=/", "").0, "404");
    let (code, body) =
        call("POST", "/containers/create", r#"{"Image":"busybox","HostConfig":{"Memory":"lots"}}"#);
    assert_eq!(code, "400", "{body}");
    let (code, body) = call(
        "POST",
        "/containers/create",
        r#"{"Image":"busybox","HostConfig":{"Mounts":[{"Type":"volume","Target":"/a,b"}]}}"#,
    );
    assert_eq!(code, "400", "{body}");
    let (code, body) = call(
        "POST",
        "/containers/create",
        r#"{"Image":"busybox","NetworkingConfig":{"EndpointsConfig":{"none":{"IPAMConfig":{"IPv4Address":"10.9.9.9"}}}}}"#,
    );
    assert_eq!(code, "400", "{body}");
    assert!(body.contains("IPAMConfig"), "{body}");
    assert_eq!(call("GET", "/containers/idle/top", "").0, "409", "not running");
    assert_eq!(call("POST", "/containers/idle/pause", "").0, "409");
    assert_eq!(call("POST", "/containers/idle/rename?name=", "").0, "400");
    assert_eq!(call("POST", "/containers/prune?filters=%7Bbad", "").0, "400");
    assert_eq!(call("GET", "/containers/idle/top?ps_args=aux", "").0, "400");
    assert_eq!(e.ps(&["-a", "--format", "{{.Names}}"]), ["idle"], "nothing was made");
    api.ok(&["rm", "idle"]);
}
