//! `rbuild system service` for networks, events, `system df` and `volume prune`, judged by
//! the unchanged docker CLI 20.10 over the socket; rbuild's own CLI must see the same store.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use test_support::containers::Env;
use test_support::dockerapi::{Service, docker_bin, events_args};

/// Serves `index.html` saying `hello from NAME` on port 80.
fn httpd(name: &str) -> String {
    format!(
        "mkdir -p /www && echo hello from {name} > /www/index.html && echo serving && exec httpd -f -p 80 -h /www"
    )
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn the_docker_cli_creates_inspects_connects_and_removes_networks_through_the_socket() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let api = Service::start(&e);
    let since = now_secs().to_string();

    let id = api.ok(&["network", "create", "--subnet", "10.231.0.0/24", "--label", "a=b", "net1"]);
    assert_eq!(id.trim().len(), 64, "{id}");
    let ls = api.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}"]);
    for want in ["net1 bridge local", "bridge bridge local", "host host local", "none null local"] {
        assert!(ls.lines().any(|l| l == want), "{want:?} in\n{ls}");
    }
    assert_eq!(api.ok(&["network", "ls", "--filter", "label=a=b", "--format", "{{.Name}}"]).trim(), "net1");
    assert_eq!(api.ok(&["network", "ls", "-q", "--filter", "name=net1", "--no-trunc"]).trim(), id.trim());
    assert_eq!(
        api.ok(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}}{{end}} {{.Labels.a}}",
            "net1"
        ])
        .trim(),
        "10.231.0.0/24 b"
    );
    // rbuild's own view is the same network.
    assert_eq!(e.ok(&["network", "inspect", "-f", "{{.Id}}", "net1"]).trim(), id.trim());
    let (code, _, err) = api.docker(&["network", "create", "net1"]);
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");

    api.ok(&["run", "-d", "--network", "net1", "--name", "srv", "busybox", "sh", "-c", &httpd("srv")]);
    e.wait_for_log("srv", "serving");
    let attached = api.ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .Containers}}{{.Name}} {{.IPv4Address}} {{len .EndpointID}}{{end}}",
        "net1",
    ]);
    assert_eq!(attached.trim(), "srv 10.231.0.2/24 64");

    // A second container joins with an alias: both names resolve on net1.
    api.ok(&["run", "-d", "--name", "c2", "busybox", "sh", "-c", &httpd("c2")]);
    e.wait_for_log("c2", "serving");
    api.ok(&["network", "connect", "--alias", "web", "net1", "c2"]);
    assert_eq!(e.ok(&["exec", "c2", "wget", "-qO-", "http://srv/"]), "hello from srv\n");
    assert_eq!(e.ok(&["exec", "srv", "wget", "-qO-", "http://web/"]), "hello from c2\n");
    let names = api.ok(&["network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{end}}", "net1"]);
    let mut names: Vec<&str> = names.split_whitespace().collect();
    names.sort();
    assert_eq!(names, ["c2", "srv"]);
    // An alias given before the container starts holds from its start on.
    api.ok(&["create", "--name", "c3", "busybox", "sh", "-c", &httpd("c3")]);
    api.ok(&["network", "connect", "--alias", "late", "net1", "c3"]);
    api.ok(&["start", "c3"]);
    e.wait_for_log("c3", "serving");
    assert_eq!(e.ok(&["exec", "srv", "wget", "-qO-", "http://late/"]), "hello from c3\n");
    assert_eq!(
        api.ok(&["inspect", "-f", "{{index .NetworkSettings.Networks.net1.Aliases 0}}", "c3"]).trim(),
        "late"
    );
    api.ok(&["rm", "-f", "c3"]);
    let (code, _, err) = api.docker(&["network", "connect", "net1", "nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("No such container: nope"), "{err}");

    // In use: not removable; predefined: never.
    let (code, _, err) = api.docker(&["network", "rm", "net1"]);
    assert_ne!(code, 0);
    assert!(err.contains("has active endpoints"), "{err}");
    let (code, _, err) = api.docker(&["network", "rm", "bridge"]);
    assert_ne!(code, 0);
    assert!(err.contains("pre-defined network"), "{err}");

    api.ok(&["network", "disconnect", "net1", "c2"]);
    let (code, _, _) = e.run(&["exec", "c2", "wget", "-q", "-T", "2", "-O", "-", "http://srv/"]);
    assert_ne!(code, 0, "disconnected: srv is out of reach");
    assert_eq!(
        api.ok(&["network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{end}}", "net1"]).trim(),
        "srv"
    );
    api.ok(&["rm", "-f", "srv", "c2"]);
    assert_eq!(api.ok(&["network", "rm", "net1"]).trim(), "net1");
    let (code, _, err) = api.docker(&["network", "inspect", "net1"]);
    assert_ne!(code, 0);
    assert!(err.contains("net1"), "{err}");

    // Prune takes the unused user networks, by label when asked.
    api.ok(&["network", "create", "--label", "keep=yes", "kept"]);
    api.ok(&["network", "create", "gone"]);
    let pruned = api.ok(&["network", "prune", "-f", "--filter", "label!=keep"]);
    assert!(pruned.contains("gone") && !pruned.contains("kept"), "{pruned}");
    let pruned = api.ok(&["network", "prune", "-f"]);
    assert!(pruned.contains("kept"), "{pruned}");
    let left = e.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(left.lines().collect::<Vec<_>>(), ["bridge", "host", "none"]);

    // The network's life as events.
    let until = (now_secs() + 1).to_string();
    let actions =
        api.ok(&events_args(&since, &until, &["type=network", "network=net1"], Some("{{.Action}}")));
    let actions: Vec<&str> = actions.lines().collect();
    for want in ["create", "connect", "disconnect", "destroy"] {
        assert!(actions.contains(&want), "{want} in {actions:?}");
    }
    assert_eq!(actions.first(), Some(&"create"));
    assert_eq!(actions.last(), Some(&"destroy"));
}

#[test]
fn docker_events_replays_a_containers_life_and_follows_new_events() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let api = Service::start(&e);
    let since = now_secs().to_string();
    api.ok(&[
        "run",
        "-d",
        "--rm",
        "--network",
        "none",
        "--label",
        "team=a",
        "--name",
        "ev1",
        "busybox",
        "true",
    ]);
    e.wait_until("ev1 removed by --rm", || e.ok(&["ps", "-a", "-q"]).is_empty());
    let until = (now_secs() + 1).to_string();

    let lines = api.ok(&events_args(&since, &until, &["container=ev1"], None));
    let actions: Vec<&str> = lines.lines().filter_map(|l| l.split_whitespace().nth(2)).collect();
    assert_eq!(actions, ["create", "start", "die", "destroy"], "{lines}");
    for l in lines.lines() {
        assert!(l.contains(" container ") && l.contains("image=busybox, name=ev1, team=a"), "{l}");
    }
    assert!(lines.lines().nth(2).is_some_and(|l| l.contains("exitCode=0")), "{lines}");
    let starts = api.ok(&events_args(&since, &until, &["event=start", "container=ev1"], None));
    assert_eq!(starts.lines().count(), 1, "{starts}");
    assert!(starts.contains(" container start "), "{starts}");
    // rbuild's CLI reads the same log.
    let own = e.ok(&events_args(&since, &until, &["container=ev1"], Some("{{.Action}}")));
    assert_eq!(own.lines().collect::<Vec<_>>(), ["create", "start", "die", "destroy"]);

    // Following: a start shows as it happens.
    e.ok(&["create", "--name", "later", "--network", "none", "busybox", "sleep", "1000"]);
    let mut follow = api
        .client(docker_bin())
        .args(["events", "--filter", "event=start", "--filter", "container=later"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The CLI subscribes before it prints anything: give it the moment it takes.
    std::thread::sleep(Duration::from_millis(500));
    api.ok(&["start", "later"]);
    let line = rx.recv_timeout(Duration::from_secs(20));
    let _ = follow.kill();
    let _ = follow.wait();
    let line = line.expect("docker events prints the start");
    assert!(line.contains(" container start ") && line.contains("name=later"), "{line}");

    // A kill through the socket gives kill (its signal) then die (137).
    let since = now_secs().to_string();
    api.ok(&["kill", "later"]);
    api.ok(&["wait", "later"]);
    let until = (now_secs() + 1).to_string();
    let lines = api.ok(&events_args(&since, &until, &["container=later"], None));
    let kill = lines.lines().find(|l| l.contains(" container kill ")).unwrap_or_else(|| panic!("{lines}"));
    assert!(kill.contains("signal=9"), "{kill}");
    assert!(lines.lines().any(|l| l.contains(" container die ") && l.contains("exitCode=137")), "{lines}");
    api.ok(&["rm", "later"]);

    // A healthcheck's verdict is an event when it changes.
    let since = now_secs().to_string();
    api.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "checked",
        "--health-cmd",
        "true",
        "--health-interval",
        "300ms",
        "busybox",
        "sleep",
        "1000",
    ]);
    e.wait_until("healthy", || e.inspect("checked", "{{.State.Health.Status}}") == "healthy");
    let until = (now_secs() + 1).to_string();
    let health = api.ok(&events_args(
        &since,
        &until,
        &["event=health_status"],
        Some("{{.Action}} {{.Actor.Attributes.name}}"),
    ));
    assert_eq!(health.trim(), "health_status: healthy checked");
    api.ok(&["rm", "-f", "checked"]);
}

#[test]
fn docker_system_df_and_volume_prune_through_the_socket() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let api = Service::start(&e);
    let since = now_secs().to_string();
    api.ok(&["volume", "create", "spare"]);
    e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "spare:/d",
        "busybox",
        "sh",
        "-c",
        "head -c 100000 /dev/zero > /d/f",
    ]);
    api.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "user",
        "-v",
        "used:/d",
        "busybox",
        "sleep",
        "1000",
    ]);

    let df = api.ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}}"]);
    let rows: Vec<&str> = df.lines().collect();
    assert_eq!(rows, ["Images 1 1", "Containers 1 1", "Local Volumes 2 1", "Build Cache 0 0"], "{df}");
    let verbose = api.ok(&["system", "df", "-v"]);
    for want in [
        "Images space usage:",
        "busybox",
        "Containers space usage:",
        "user",
        "Local Volumes space usage:",
        "spare",
        "used",
    ] {
        assert!(verbose.contains(want), "{want:?} in\n{verbose}");
    }
    let spare = verbose.lines().find(|l| l.starts_with("spare")).unwrap_or_else(|| panic!("{verbose}"));
    assert_eq!(spare.split_whitespace().collect::<Vec<_>>(), ["spare", "0", "100kB"], "{verbose}");

    // docker 20.10's prune takes every unused volume (API 1.41) the filters pick, and says
    // what it freed.
    api.ok(&["volume", "create", "--label", "keep=1", "kept"]);
    let pruned = api.ok(&["volume", "prune", "-f", "--filter", "label!=keep"]);
    assert!(pruned.contains("Deleted Volumes:\nspare\n") && !pruned.contains("kept"), "{pruned}");
    assert!(pruned.contains("Total reclaimed space: 100kB"), "{pruned}");
    assert_eq!(e.ok(&["volume", "ls", "-q"]).lines().collect::<Vec<_>>(), ["kept", "used"]);
    api.ok(&["volume", "rm", "kept"]);
    // The volumes' lives as events: made, mounted by the container that wrote, unmounted at its
    // exit, pruned.
    let until = (now_secs() + 1).to_string();
    let spare = api.ok(&events_args(
        &since,
        &until,
        &["volume=spare"],
        Some("{{.Action}} {{index .Actor.Attributes \"destination\"}}"),
    ));
    assert_eq!(
        spare.lines().map(str::trim).collect::<Vec<_>>(),
        ["create", "mount /d", "unmount /d", "destroy"]
    );
    api.ok(&["rm", "-f", "user"]);
    api.ok(&["volume", "rm", "used"]);
}

#[test]
fn docker_compose_makes_its_network_with_labels_and_aliases_and_takes_it_down() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    let api = Service::start(&e);
    let project = e.s.path().join("proj");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("docker-compose.yml"),
        r#"version: "3"
services:
  web:
    image: busybox
    command: sh -c "mkdir -p /www && echo hello from web > /www/index.html && echo serving && exec httpd -f -p 80 -h /www"
    networks: [front]
  client:
    image: busybox
    command: sleep 1000
    networks:
      front:
        aliases: [cl]
networks:
  front:
    ipam:
      config:
        - subnet: 10.234.0.0/24
"#,
    )
    .unwrap();
    let compose = |args: &[&str]| {
        let out = api
            .client("/usr/bin/docker-compose")
            .args(args)
            .current_dir(&project)
            .stdin(Stdio::null())
            .output()
            .expect("docker-compose runs (scripts/test.sh installs it)");
        assert!(out.status.success(), "docker-compose {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    compose(&["up", "-d"]);
    assert_eq!(
        api.ok(&[
            "network",
            "inspect",
            "-f",
            "{{index .Labels \"com.docker.compose.project\"}} {{range .IPAM.Config}}{{.Subnet}}{{end}}",
            "proj_front"
        ])
        .trim(),
        "proj 10.234.0.0/24"
    );
    e.wait_for_log("proj_web_1", "serving");
    // Service names and aliases resolve on the project's network.
    assert_eq!(e.ok(&["exec", "proj_client_1", "wget", "-qO-", "http://web/"]), "hello from web\n");
    let hosts = e.ok(&["exec", "proj_web_1", "cat", "/etc/hosts"]);
    assert!(hosts.lines().any(|l| l.split_whitespace().any(|w| w == "cl")), "{hosts}");
    compose(&["down"]);
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");
    let left = e.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(left.lines().collect::<Vec<_>>(), ["bridge", "host", "none"]);
}
