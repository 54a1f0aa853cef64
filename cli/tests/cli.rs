//! The command line itself: the default build action, the store location, completions.

use std::process::Command;

use test_support::{TestStore, context};

const BIN: &str = env!("CARGO_BIN_EXE_rbuild");

#[test]
fn completion_scripts_are_printed_for_each_shell() {
    for (shell, marker) in [("bash", "_rbuild()"), ("zsh", "#compdef rbuild"), ("fish", "complete -c rbuild")]
    {
        let out = Command::new(BIN).args(["completion", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{shell} completion lacks {marker:?}");
        assert!(text.contains("import") && text.contains("build-arg"), "{shell} completion is incomplete");
    }
}

#[test]
fn rbuild_root_environment_variable_moves_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("rootfs.tar");
    test_support::write_busybox_rootfs_tar(&tar).unwrap();
    let store = dir.path().join("store");
    let out =
        Command::new(BIN).env("RBUILD_ROOT", &store).arg("import").arg(&tar).arg("bb:1").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(store.join("images.json")).unwrap().contains("bb:1"));
}

#[test]
fn building_is_the_default_action_and_global_root_works_before_it() {
    let s = TestStore::new(BIN);
    s.import_busybox();
    let ctx = context(&[
        ("Dockerfile", "FROM busybox\nCMD [\"echo\", \"default\"]\n"),
        ("other.Dockerfile", "FROM busybox\nCMD [\"echo\", \"other\"]\n"),
    ]);
    // `rbuild --root R -f FILE -t NAME CONTEXT`, no `build` word.
    let file = ctx.path().join("other.Dockerfile");
    s.ok(&["-f", file.to_str().unwrap(), "-t", "d:1", ctx.path().to_str().unwrap()]);
    assert_eq!(s.ok(&["run", "--rm", "d:1"]), "other\n");
    s.ok(&["build", "-t", "d:2", ctx.path().to_str().unwrap()]);
    assert_eq!(s.ok(&["run", "--rm", "d:2"]), "default\n");
    let bare = Command::new(BIN).output().unwrap();
    assert_eq!(bare.status.code(), Some(2), "bare rbuild should print usage");
}
