//! testcontainers-python (from PyPI, over docker-py 7) end to end through `rbuild system
//! service`: the script in data/testcontainers_e2e.py pulls from a test registry, copies a file in
//! before the start, publishes a port the engine picks and waits for HTTP 200 on it, execs, reads
//! logs, copies out, runs two containers on a network of its own with an alias, waits for a
//! health check and for an exit code. Ryuk is disabled: its image is on Docker Hub.
//! scripts/test.sh installs testcontainers in a venv of its own (`TESTCONTAINERS_PYTHON`).

use std::path::PathBuf;

use test_support::containers::Env;
use test_support::dockerapi::{Service, run_step_script};
use test_support::registry::TestRegistry;

const BIN: &str = env!("CARGO_BIN_EXE_rbuild");
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/testcontainers_e2e.py");

/// The venv's python that has testcontainers (scripts/test.sh makes it).
fn python() -> PathBuf {
    let p = PathBuf::from(
        std::env::var_os("TESTCONTAINERS_PYTHON")
            .unwrap_or_else(|| "/opt/rbuild-test/testcontainers/bin/python".into()),
    );
    assert!(p.exists(), "{} not found: scripts/test.sh makes the testcontainers venv", p.display());
    p
}

#[test]
fn testcontainers_python_starts_waits_for_and_removes_containers_and_networks() {
    let e = Env::new(BIN);
    let api = Service::start(&e);
    let reg = TestRegistry::start();
    let reference = reg.push_busybox(BIN);

    let mut script = api.client(python());
    script
        .arg(SCRIPT)
        .arg(&reference)
        // The venv's docker-py 7, not Debian's 5 that the other clients are given.
        .env_remove("PYTHONPATH")
        .env("TESTCONTAINERS_RYUK_DISABLED", "true")
        // Where testcontainers finds /.dockerenv (CI machines are often containers) it reaches
        // published ports through a gateway's address; the service is on this machine, as it is
        // for a user on a host.
        .env("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
        .env("TESTCONTAINERS_HOST_OVERRIDE", "localhost");
    let steps = [
        "http",
        "exec logs copy labels",
        "removed",
        "network",
        "network removed",
        "healthcheck",
        "exit code",
        "all done",
    ];
    let left = run_step_script(&e, script, "testcontainers", &steps);
    assert!(left.is_empty(), "testcontainers removed its containers: {left}");
    // testcontainers pulled the image itself; rbuild's CLI sees it.
    let images = e.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.lines().any(|l| l == reference), "{reference} in rbuild images:\n{images}");
    assert_eq!(
        e.ok(&["network", "ls", "--format", "{{.Name}}"]).lines().filter(|n| n.len() == 36).count(),
        0
    );
}
