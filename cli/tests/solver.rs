//! The solver end to end: parallel stages, one run per identical step, cache invalidation
//! points, .dockerignore, --explain-cache, concurrent builds on one store, kills.

use std::process::Stdio;
use std::time::{Duration, Instant};

use test_support::{TestStore, context};

fn store() -> TestStore {
    let s = TestStore::new(env!("CARGO_BIN_EXE_rbuild"));
    s.import_busybox();
    s
}

fn build_err(s: &TestStore, args: &[&str]) -> String {
    let out = s.run(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "rbuild {args:?} failed:\n{err}");
    err
}

/// `(event, text) -> time` of the JSON progress lines.
fn json_events(stderr: &str) -> Vec<serde_json::Value> {
    stderr.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn independent_stages_run_in_parallel() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox AS a\nRUN sleep 1 && echo a > /a\nFROM busybox AS b\nRUN sleep 1 && echo b > /b\n\
         FROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
    )]);
    let err = build_err(
        &s,
        &["build", "--progress=json", "--jobs", "2", "-t", "par:1", ctx.path().to_str().unwrap()],
    );
    let events = json_events(&err);
    let span = |text: &str| {
        let t = |ev: &str| {
            events
                .iter()
                .find(|e| e["event"] == ev && e["text"].as_str().is_some_and(|x| x.contains(text)))
                .unwrap_or_else(|| panic!("no {ev} for {text}:\n{err}"))["time"]
                .as_f64()
                .unwrap()
        };
        (t("started"), t("finished"))
    };
    let (a0, a1) = span("echo a");
    let (b0, b1) = span("echo b");
    // The two RUNs overlap: each started before the other finished.
    assert!(a0 < b1 && b0 < a1, "no overlap: a {a0}..{a1}, b {b0}..{b1}");
    assert_eq!(s.ok(&["run", "--rm", "par:1", "cat", "/a", "/b"]), "a\nb\n");
}

#[test]
fn identical_steps_in_two_stages_run_once() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox AS a\nRUN echo shared-step-ran\nFROM busybox AS b\nRUN echo shared-step-ran\n\
         FROM busybox\nCOPY --from=a /etc/passwd /a\nCOPY --from=b /etc/passwd /b\n",
    )]);
    for extra in [&[][..], &["--no-cache"][..]] {
        let mut args = vec!["build", "--progress=plain"];
        args.extend_from_slice(extra);
        args.push(ctx.path().to_str().unwrap());
        let err = build_err(&s, &args);
        let ran = err.lines().filter(|l| l.ends_with("| shared-step-ran")).count();
        assert_eq!(ran, 1, "the shared RUN ran {ran} times ({extra:?}):\n{err}");
    }
}

#[test]
fn build_arg_change_invalidates_from_the_first_step_that_uses_it() {
    let s = store();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox\nRUN echo before\nARG V=1\nCOPY f /f\nRUN echo unrelated\nRUN echo uses $V\nRUN echo after\n",
        ),
        ("f", "f\n"),
    ]);
    let dir = ctx.path().to_str().unwrap();
    build_err(&s, &["build", "--progress=plain", "--build-arg", "V=1", dir]);
    let err = build_err(&s, &["build", "--progress=plain", "--build-arg", "V=2", dir]);
    // Docker: the value is "used" at the first step that sees it, not at the declaration;
    // every RUN after an ARG sees it in its environment, a COPY only if it expands it.
    for cached in ["RUN echo before", "ARG V=1", "COPY f /f"] {
        assert!(
            err.lines().any(|l| l.starts_with("CACHED ") && l.ends_with(cached)),
            "{cached} not cached:\n{err}"
        );
    }
    for ran in ["RUN echo unrelated", "RUN echo uses $V", "RUN echo after"] {
        assert!(
            !err.lines().any(|l| l.starts_with("CACHED ") && l.ends_with(ran)),
            "{ran} was cached:\n{err}"
        );
    }
    assert!(err.contains("| uses 2"), "{err}");
}

#[test]
fn one_byte_change_misses_exactly_the_dependent_steps() {
    let s = store();
    let ctx = context(&[
        ("Dockerfile", "FROM busybox\nCOPY a /a\nRUN cat /a\nCOPY b /b\nRUN cat /b\n"),
        ("a", "aaaa\n"),
        ("b", "bbbb\n"),
    ]);
    let dir = ctx.path().to_str().unwrap();
    build_err(&s, &["build", dir]);
    std::fs::write(ctx.path().join("b"), "bbbc\n").unwrap();
    let err = build_err(&s, &["build", "--progress=plain", dir]);
    let cached: Vec<&str> = err.lines().filter_map(|l| l.strip_prefix("CACHED ")).collect();
    assert_eq!(cached, vec!["[stage-0 2/5] COPY a /a", "[stage-0 3/5] RUN cat /a"], "{err}");
    assert!(err.contains("(2 steps run, 2 cached)"), "{err}");
}

#[test]
fn dockerignore_rules_decide_what_copy_sees_and_what_the_key_covers() {
    let s = store();
    let ctx = context(&[
        ("Dockerfile", "FROM busybox\nCOPY . /ctx/\nRUN cd /ctx && find . -type f | sort > /list\n"),
        (".dockerignore", "# comment\n\n*.log\n**/tmp\n/build/\n!build/keep.txt\nsecret*\n!secret-ok\n"),
        ("a.log", "x"),
        ("src/b.log", "x"),
        ("src/main.c", "int main;"),
        ("src/tmp/x", "x"),
        ("tmp/y", "y"),
        ("build/out.o", "o"),
        ("build/keep.txt", "keep"),
        ("secret.key", "k"),
        ("secret-ok", "ok"),
    ]);
    let dir = ctx.path().to_str().unwrap();
    build_err(&s, &["build", "-t", "ign:1", dir]);
    assert_eq!(
        s.ok(&["run", "--rm", "ign:1", "cat", "/list"]),
        "./.dockerignore\n./Dockerfile\n./build/keep.txt\n./secret-ok\n./src/b.log\n./src/main.c\n"
    );
    // An ignored file's change keeps the cache; an included one's does not.
    std::fs::write(ctx.path().join("a.log"), "changed").unwrap();
    let err = build_err(&s, &["build", "--progress=plain", dir]);
    assert!(err.contains("(0 steps run,"), "{err}");
    std::fs::write(ctx.path().join("src/main.c"), "int main(){}").unwrap();
    let err = build_err(&s, &["build", "--progress=plain", dir]);
    assert!(err.contains("(2 steps run,"), "{err}");
}

#[test]
fn per_dockerfile_ignore_file_wins_over_the_context_one() {
    let s = store();
    let ctx = context(&[
        ("app.Dockerfile", "FROM busybox\nCOPY . /ctx/\nRUN ls /ctx > /list\n"),
        ("app.Dockerfile.dockerignore", "one\n"),
        (".dockerignore", "two\n"),
        ("one", "1"),
        ("two", "2"),
    ]);
    let file = ctx.path().join("app.Dockerfile");
    build_err(&s, &["build", "-f", file.to_str().unwrap(), "-t", "ign:2", ctx.path().to_str().unwrap()]);
    let list = s.ok(&["run", "--rm", "ign:2", "cat", "/list"]);
    assert!(list.contains("two") && !list.lines().any(|l| l == "one"), "{list}");
}

#[test]
fn explain_cache_names_the_changed_file_and_build_arg() {
    let s = store();
    let ctx = context(&[
        ("Dockerfile", "FROM busybox\nARG V=1\nCOPY src/ /src/\nRUN echo $V\n"),
        ("src/main.c", "one"),
        ("src/util.c", "two"),
    ]);
    let dir = ctx.path().to_str().unwrap();
    build_err(&s, &["build", dir]);
    std::fs::write(ctx.path().join("src/util.c"), "three").unwrap();
    let err = build_err(&s, &["build", "--progress=plain", "--explain-cache", "--build-arg", "V=2", dir]);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("cache miss:")).collect();
    assert!(lines.iter().any(|l| l.contains("COPY") || l.contains("3/4")), "{err}");
    assert!(lines.iter().any(|l| l.contains("util.c")), "explain does not name the file:\n{err}");
    assert!(lines.iter().any(|l| l.contains("build arg V")), "explain does not name the build arg:\n{err}");
    assert!(!lines.iter().any(|l| l.contains("main.c")), "{err}");
}

#[test]
fn concurrent_builds_on_one_store_all_succeed_and_the_store_verifies() {
    let s = store();
    let contexts: Vec<_> = (0..4)
        .map(|i| {
            context(&[
                (
                    "Dockerfile",
                    &format!(
                        "FROM busybox\nCOPY f /f\nRUN echo build-{i} > /id && sleep 0.2\nRUN cat /f /id\n"
                    ) as &str,
                ),
                ("f", &format!("file {i}\n") as &str),
            ])
        })
        .collect();
    let children: Vec<_> = contexts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            s.cmd()
                .args(["build", "-t", &format!("conc:{i}"), c.path().to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "build {i} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    for i in 0..4 {
        assert_eq!(s.ok(&["run", "--rm", &format!("conc:{i}"), "cat", "/id"]), format!("build-{i}\n"));
    }
    assert_eq!(s.ok(&["system", "verify"]), "store verified: no problems\n");
}

fn wait_for_line(child: &mut std::process::Child, needle: &str) {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match lines.next() {
            Some(Ok(l)) if l.contains(needle) => {
                // Keep draining in the background so the child never blocks on a full pipe.
                std::thread::spawn(move || for _ in lines.by_ref() {});
                return;
            }
            Some(_) => {}
            None => break,
        }
    }
    panic!("never saw {needle:?}");
}

fn snapshots_left(s: &TestStore) -> usize {
    std::fs::read_dir(s.path().join("snapshots")).unwrap().count()
}

fn mounts_under(s: &TestStore) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = s.path().to_str().unwrap().to_string();
    info.lines().filter(|l| l.contains(&root)).map(str::to_string).collect()
}

#[test]
fn a_build_killed_mid_run_leaves_a_store_the_next_build_uses() {
    let s = store();
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN echo started-long-step && sleep 30\n")]);
    let mut child = s
        .cmd()
        .args(["build", "--progress=plain", "-t", "killed:1", ctx.path().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(&mut child, "started-long-step");
    // SIGKILL: no handler runs; the sandbox dies with its parent.
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), "FROM busybox\nRUN echo quick\n").unwrap();
    let err = build_err(&s, &["build", "-t", "after:1", ctx.path().to_str().unwrap()]);
    assert!(err.contains("naming to after:1"), "{err}");
    assert_eq!(snapshots_left(&s), 0, "the killed build's snapshot was not cleaned up");
    assert!(mounts_under(&s).is_empty(), "{:?}", mounts_under(&s));
    assert_eq!(s.ok(&["system", "verify"]), "store verified: no problems\n");
}

#[test]
fn ctrl_c_during_a_run_aborts_cleanly() {
    let s = store();
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN echo started-long-step && sleep 30\n")]);
    let mut child = s
        .cmd()
        .args(["build", "--progress=plain", ctx.path().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(&mut child, "started-long-step");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let started = Instant::now();
    let status = child.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "the build did not stop promptly");
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert_eq!(snapshots_left(&s), 0, "a snapshot was left behind");
    assert!(mounts_under(&s).is_empty(), "{:?}", mounts_under(&s));
}
