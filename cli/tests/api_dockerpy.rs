//! docker-py (Debian's python3-docker 5) end to end through `rbuild system service`: the script
//! in data/dockerpy_e2e.py creates, starts, waits for, reads the logs of, execs in (plain,
//! `stream`, `demux`) and removes containers, runs them in the foreground and with `remove`,
//! pulls from a test registry and tags, builds from a file object and runs what it built, puts
//! and gets archives, manages networks and volumes, reads events by time and `df`. Each step
//! asserts in Python and prints `ok STEP`; here the store is checked with rbuild's own CLI.

use test_support::containers::Env;
use test_support::dockerapi::{Service, run_step_script};
use test_support::registry::TestRegistry;

const BIN: &str = env!("CARGO_BIN_EXE_rbuild");
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/dockerpy_e2e.py");

#[test]
fn docker_py_drives_containers_images_networks_volumes_and_events() {
    let e = Env::new(BIN);
    let api = Service::start(&e);
    let reg = TestRegistry::start();
    let reference = reg.push_busybox(BIN);

    let mut script = api.client("/usr/bin/python3");
    script.arg(SCRIPT).arg(&reference);
    let steps = [
        "lifecycle 3",
        "exec",
        "archive dir",
        "run foreground",
        "pull",
        "build",
        "networks",
        "volumes py-unused",
        "events",
        "df",
    ];
    let left = run_step_script(&e, script, "docker-py", &steps);
    assert!(left.is_empty(), "the script removed its containers: {left}");

    // rbuild's CLI sees what docker-py left and made.
    let images = e.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    for name in [reference.as_str(), "py/tagged:v2", "py/built:1"] {
        assert!(images.lines().any(|l| l == name), "{name} in rbuild images:\n{images}");
    }
    assert_eq!(e.inspect("py/tagged:v2", "{{.Id}}"), e.inspect(&reference, "{{.Id}}"));
    assert_eq!(e.ok(&["run", "--rm", "--network", "none", "py/built:1"]), "built-for-py\n");
    assert!(!e.ok(&["network", "ls", "--format", "{{.Name}}"]).lines().any(|n| n == "py-net"));
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "");
}
