//! Healthchecks as `docker run` users and compose's `service_healthy` see them: `State.Health`
//! in inspect, `(healthy)` in ps, `ps --filter health=`, the image's HEALTHCHECK and the
//! `--health-*` flags over it.

use test_support::containers::Env;

fn health(e: &Env, name: &str) -> String {
    e.inspect(name, "{{.State.Health.Status}}")
}

#[test]
fn a_health_cmd_goes_starting_healthy_unhealthy_as_its_test_does() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.ok(&[
        "run",
        "-d",
        "--network=none",
        "--name",
        "svc",
        "--health-cmd",
        "test -f /tmp/ready && echo fine",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_eq!(health(&e, "svc"), "starting");
    assert!(e.ps(&[]).iter().any(|l| l.contains("(health: starting)")), "{:?}", e.ps(&[]));
    // Failing, twice in a row: unhealthy.
    e.wait_until("svc unhealthy", || health(&e, "svc") == "unhealthy");
    let streak: u32 = e.inspect("svc", "{{.State.Health.FailingStreak}}").parse().unwrap();
    assert!(streak >= 2, "{streak}");
    assert_eq!(e.ok(&["ps", "-q", "--filter", "health=unhealthy"]).lines().count(), 1);
    e.ok(&["exec", "svc", "touch", "/tmp/ready"]);
    e.wait_until("svc healthy", || health(&e, "svc") == "healthy");
    assert_eq!(e.inspect("svc", "{{.State.Health.FailingStreak}}"), "0");
    let json = e.json("svc");
    let log = json["State"]["Health"]["Log"].as_array().expect("Health.Log");
    assert!(log.len() <= 5 && !log.is_empty(), "{log:?}");
    assert_eq!(log.last().unwrap()["ExitCode"], 0);
    assert_eq!(log.last().unwrap()["Output"], "fine\n");
    assert_eq!(json["Config"]["Healthcheck"]["Test"][0], "CMD-SHELL");
    assert!(e.ps(&[]).iter().any(|l| l.contains("(healthy)")), "{:?}", e.ps(&[]));
    assert_eq!(e.ok(&["ps", "-q", "--filter", "health=healthy"]).lines().count(), 1);
    assert_eq!(e.ok(&["ps", "-q", "--filter", "health=none"]).lines().count(), 0);
    // `commit` keeps the container's healthcheck in the new image, as docker's.
    e.ok(&["commit", "svc", "svc:2"]);
    let image: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "svc:2"])).unwrap();
    assert_eq!(image[0]["Config"]["Healthcheck"]["Test"][1], "test -f /tmp/ready && echo fine", "{image}");
    e.ok(&["rm", "-f", "svc"]);
}

#[test]
fn the_images_healthcheck_runs_and_flags_and_no_healthcheck_change_it() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.build("checked:1", "FROM busybox\nHEALTHCHECK --interval=200ms --retries=1 CMD [\"true\"]\n");
    e.ok(&["run", "-d", "--network=none", "--name", "img", "checked:1", "sleep", "1000"]);
    e.wait_until("img healthy", || health(&e, "img") == "healthy");
    assert_eq!(e.inspect("img", "{{index .Config.Healthcheck.Test 0}}"), "CMD");
    // The flag replaces the test, the image's interval and retries stay.
    e.ok(&[
        "run",
        "-d",
        "--network=none",
        "--name",
        "flag",
        "--health-cmd",
        "false",
        "checked:1",
        "sleep",
        "1000",
    ]);
    e.wait_until("flag unhealthy", || health(&e, "flag") == "unhealthy");
    // --no-healthcheck: no Health at all, as docker.
    e.ok(&["run", "-d", "--network=none", "--name", "off", "--no-healthcheck", "checked:1", "sleep", "1000"]);
    let json = e.json("off");
    assert!(json["State"].get("Health").is_none(), "{}", json["State"]);
    assert_eq!(e.ok(&["ps", "-q", "--filter", "health=none"]).lines().count(), 1);
    // A probe over its timeout is killed and fails with -1.
    e.ok(&[
        "run",
        "-d",
        "--network=none",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 5",
        "--health-timeout",
        "200ms",
        "--health-interval",
        "100ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "1000",
    ]);
    e.wait_until("slow unhealthy", || health(&e, "slow") == "unhealthy");
    let log = &e.json("slow")["State"]["Health"]["Log"];
    assert_eq!(log[0]["ExitCode"], -1, "{log}");
    assert!(log[0]["Output"].as_str().unwrap().contains("exceeded timeout"), "{log}");
    let bad = e.fails(&["run", "-d", "--no-healthcheck", "--health-cmd", "true", "busybox", "true"]);
    assert!(bad.contains("--no-healthcheck conflicts"), "{bad}");
    for name in ["img", "flag", "off", "slow"] {
        e.ok(&["rm", "-f", name]);
    }
}
