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

#[test]
fn debug_dump_ast_prints_buildkits_format() {
    let ctx = context(&[(
        "Dockerfile",
        "# escape=\\\nFROM busybox AS b\nENV A=1 B=\"x y\"\nRUN --network=none echo hi \\\n  there\nCMD [\"a\", \"b\"]\nONBUILD RUN true\n",
    )]);
    let out =
        Command::new(BIN).args(["debug", "dump-ast"]).arg(ctx.path().join("Dockerfile")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "(from \"busybox\" \"AS\" \"b\")\n\
         (env \"A\" \"1\" \"=\" \"B\" \"\\\"x y\\\"\" \"=\")\n\
         (run [\"--network=none\"] \"echo hi   there\")\n\
         (cmd \"a\" \"b\")\n\
         (onbuild (run \"true\"))\n"
    );
}

#[test]
fn debug_graph_shows_needed_and_skipped_stages_as_text_and_dot() {
    let s = TestStore::new(BIN);
    s.import_busybox();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox AS deps\nRUN echo deps\nFROM busybox AS unused\nRUN exit 1\nFROM scratch\nCOPY --from=deps /bin/busybox /busybox\n",
    )]);
    let text = s.ok(&["debug", "graph", ctx.path().to_str().unwrap()]);
    assert!(text.contains("stage 0 deps [needed]"), "{text}");
    assert!(text.contains("stage 1 unused [skipped]"), "{text}");
    assert!(text.contains("stage 2 stage-2 [target] from scratch"), "{text}");
    assert!(text.contains("COPY --from=deps /bin/busybox /busybox  <- stage 0"), "{text}");
    let dot = s.ok(&["debug", "graph", "--format", "dot", ctx.path().to_str().unwrap()]);
    assert!(dot.starts_with("digraph build {"), "{dot}");
    assert!(dot.contains("s0_0 -> s2_0 [style=dashed, label=\"COPY --from\"]"), "{dot}");
    assert!(dot.contains("label=\"stage 1: unused\", style=dashed"), "{dot}");
}

/// A stage that only a `RUN --mount=from=` reads is needed: the solver builds it, so the graph
/// must not call it skipped (it once did: each had its own idea of what a stage needs).
#[test]
fn debug_graph_counts_stages_read_by_run_mounts() {
    let s = TestStore::new(BIN);
    s.import_busybox();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox AS tools\nRUN echo tool > /tool\nFROM busybox AS cache\nRUN mkdir /c\n\
         FROM busybox AS unused\nFROM busybox\nRUN --mount=from=tools,target=/t cat /t/tool\n\
         RUN --mount=type=cache,from=cache,source=/c,target=/c true\n",
    )]);
    let text = s.ok(&["debug", "graph", ctx.path().to_str().unwrap()]);
    assert!(text.contains("stage 0 tools [needed]"), "{text}");
    assert!(text.contains("stage 1 cache [needed]"), "{text}");
    assert!(text.contains("stage 2 unused [skipped]"), "{text}");
    assert!(text.contains("cat /t/tool  <- stage 0"), "{text}");
    let dot = s.ok(&["debug", "graph", "--format", "dot", ctx.path().to_str().unwrap()]);
    assert!(dot.contains("s0_0 -> s3_0 [style=dashed, label=\"RUN --mount from\"]"), "{dot}");
    assert!(!dot.contains("label=\"stage 0: tools\", style=dashed"), "{dot}");
    // And the build runs exactly what the graph says is needed.
    let out = s.run(&["build", "--progress=plain", ctx.path().to_str().unwrap()]);
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{progress}");
    assert!(
        progress.contains("[tools 2/2] RUN echo tool") && progress.contains("[cache 2/2] RUN mkdir"),
        "{progress}"
    );
    assert!(!progress.contains("[unused"), "{progress}");
}

#[test]
fn a_dockerfile_that_is_not_utf8_is_a_located_error() {
    let s = TestStore::new(BIN);
    let ctx = context(&[]);
    std::fs::write(ctx.path().join("Dockerfile"), b"FROM busybox\nRUN echo \xff\xfe\n").unwrap();
    let out = s.run(&["build", ctx.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Dockerfile:2:10") && err.contains("not valid UTF-8"), "{err}");
    assert!(!err.contains("panicked"));
}
