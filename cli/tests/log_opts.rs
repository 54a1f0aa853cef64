//! `--log-opt max-size/max-file` (docker's json-file rotation) and `--log-driver none`, as a
//! `docker logs` user sees them: nothing lost while following across rotations, at most
//! `max-file` files of about `max-size` each, the oldest lines dropped.

use std::process::Stdio;

use test_support::containers::Env;

fn lines_numbers(text: &str) -> Vec<u32> {
    text.lines().filter_map(|l| l.strip_prefix("line ")).map(|n| n.parse().unwrap()).collect()
}

#[test]
fn a_rotating_log_keeps_max_file_files_and_a_follower_loses_nothing() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    e.ok(&[
        "run",
        "-d",
        "--network=none",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=2k",
        "--log-opt",
        "max-file=3",
        "busybox",
        "sh",
        "-c",
        "sleep 0.5; i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); usleep 2000; done",
    ]);
    let follower =
        e.s.cmd()
            .args(["logs", "-f", "chatty"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("logs -f runs");
    let out = follower.wait_with_output().expect("logs -f ends with the container");
    let followed = lines_numbers(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(followed, (0..300).collect::<Vec<u32>>(), "logs -f across rotations");

    let id = e.inspect("chatty", "{{.Id}}");
    let dir = e.s.path().join("containers").join(&id);
    let mut logs: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("container.log"))
        .collect();
    logs.sort();
    assert_eq!(logs, ["container.log", "container.log.1", "container.log.2"]);
    for f in &logs {
        let size = std::fs::metadata(dir.join(f)).unwrap().len();
        assert!(size <= 2048, "{f} is {size} bytes");
    }
    // What is kept is the end, whole and in order.
    let kept = lines_numbers(&e.ok(&["logs", "chatty"]));
    assert_eq!(*kept.last().unwrap(), 299);
    assert!(kept[0] > 0, "the oldest lines went");
    assert!(kept.windows(2).all(|w| w[1] == w[0] + 1), "{kept:?}");
    assert_eq!(e.inspect("chatty", "{{index .HostConfig.LogConfig.Config \"max-size\"}}"), "2k");
    e.ok(&["rm", "chatty"]);
}

#[test]
fn log_driver_none_keeps_nothing_and_bad_opts_are_errors() {
    let e = Env::new(env!("CARGO_BIN_EXE_rbuild"));
    assert_eq!(
        e.ok(&["run", "--network=none", "--name", "quiet", "--log-driver", "none", "busybox", "echo", "hi"]),
        "hi\n"
    );
    let err = e.fails(&["logs", "quiet"]);
    assert!(err.contains("configured logging driver does not support reading"), "{err}");
    assert_eq!(e.inspect("quiet", "{{.HostConfig.LogConfig.Type}}"), "none");
    let err = e.fails(&["run", "--log-opt", "compress=true", "busybox", "true"]);
    assert!(err.contains("unknown log opt 'compress' for json-file log driver"), "{err}");
    let err = e.fails(&["create", "--log-opt", "max-size=big", "busybox", "true"]);
    assert!(err.contains("max-size \"big\""), "{err}");
}
