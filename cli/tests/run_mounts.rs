//! `RUN --mount` end to end: what a RUN sees through each mount type, what reaches the image
//! (nothing of a mount), what the cache key covers, and the errors a user gets.
//!
//! Tests marked `Regression:` guard defects found by these tests and since fixed; their comments
//! say what went wrong before the fix.

use std::fs;
use std::path::Path;

use test_support::{TestStore, context};

fn store() -> TestStore {
    let s = TestStore::new(env!("CARGO_BIN_EXE_rbuild"));
    s.import_busybox();
    s
}

/// `rbuild build --progress=plain EXTRA... DIR`, which must succeed; returns stderr.
fn build(s: &TestStore, dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["build", "--progress=plain"];
    args.extend_from_slice(extra);
    args.push(dir.to_str().unwrap());
    let out = s.run(&args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "rbuild {args:?} failed:\n{err}");
    err
}

/// A build expected to fail with exit code 1 and exactly one error line; returns that line
/// and the whole stderr.
fn failing_build(s: &TestStore, dir: &Path, extra: &[&str]) -> (String, String) {
    let mut args = vec!["build", "--progress=plain", "-t", "bad:1"];
    args.extend_from_slice(extra);
    args.push(dir.to_str().unwrap());
    let out = s.run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "expected exit 1:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("rbuild: error: ")).collect();
    assert_eq!(errors.len(), 1, "expected exactly one error line:\n{stderr}");
    (errors[0].to_string(), stderr)
}

/// The lines RUN steps printed (`[stage i/n] | text` -> `text`), in order.
fn run_output(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter_map(|l| l.split_once("] |"))
        .map(|(_, text)| text.strip_prefix(' ').unwrap_or(text))
        .collect()
}

/// The output lines of the steps of stage `stage`.
fn stage_output<'a>(stderr: &'a str, stage: &str) -> Vec<&'a str> {
    let prefix = format!("[{stage} ");
    stderr
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.split_once("] |"))
        .map(|(_, text)| text.strip_prefix(' ').unwrap_or(text))
        .collect()
}

/// `rbuild run --rm IMAGE sh -c SCRIPT`, which must succeed; returns stdout.
fn sh(s: &TestStore, image: &str, script: &str) -> String {
    s.ok(&["run", "--rm", image, "sh", "-c", script])
}

/// Asserts the summary line says how many steps ran.
fn assert_steps_run(stderr: &str, n: usize) {
    assert!(stderr.contains(&format!("({n} steps run,")), "expected {n} steps run:\n{stderr}");
}

/// No temp files or snapshots left behind, and nothing tagged `bad`.
fn assert_store_clean(s: &TestStore) {
    // Names only: an image id is hex and may hold "bad".
    let images = s.ok(&["images", "--format", "{{.Repository}}"]);
    assert!(!images.lines().any(|r| r == "bad"), "{images}");
    for dir in ["tmp", "snapshots"] {
        let left: Vec<_> = fs::read_dir(s.path().join(dir)).unwrap().map(|e| e.unwrap().path()).collect();
        assert!(left.is_empty(), "{dir}/ not empty: {left:?}");
    }
}

const COUNTER: &str =
    "n=$(cat /cache/n 2>/dev/null || echo 0); echo $((n + 1)) > /cache/n; echo count=$(cat /cache/n)";

// ---------------------------------------------------------------------------------------------
// type=cache

#[test]
fn cache_mount_persists_across_builds_and_stays_out_of_the_image() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        &format!("FROM busybox\nRUN --mount=type=cache,target=/cache {COUNTER}\n"),
    )]);
    let err = build(&s, ctx.path(), &["--no-cache", "-t", "cache:1"]);
    assert_eq!(run_output(&err), ["count=1"], "{err}");
    let err = build(&s, ctx.path(), &["--no-cache", "-t", "cache:1"]);
    assert_eq!(run_output(&err), ["count=2"], "{err}");
    // Neither the content nor the mount point is in the image.
    assert!(!s.run(&["run", "--rm", "cache:1", "ls", "/cache"]).status.success());
    assert_eq!(sh(&s, "cache:1", "test -e /cache && echo present || echo absent"), "absent\n");
    // A build that hits the step cache does not run the step, so the counter stays.
    let err = build(&s, ctx.path(), &[]);
    assert_steps_run(&err, 0);
    let err = build(&s, ctx.path(), &["--no-cache"]);
    assert_eq!(run_output(&err), ["count=3"], "{err}");
}

#[test]
fn cache_id_is_shared_between_targets_and_a_different_id_is_a_different_cache() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox AS writer\nRUN --mount=type=cache,id=shared,target=/x echo from-writer > /x/a\n\
         FROM busybox AS reader\nRUN --mount=type=cache,id=shared,target=/y cat /y/a\n\
         FROM busybox AS other\nRUN --mount=type=cache,id=other,target=/x echo \"other:[$(ls -A /x)]\"\n\
         FROM busybox AS default\nRUN --mount=type=cache,target=/x echo \"default:[$(ls -A /x)]\"\n",
    )]);
    build(&s, ctx.path(), &["--target", "writer"]);
    let err = build(&s, ctx.path(), &["--target", "reader"]);
    assert_eq!(run_output(&err), ["from-writer"], "{err}");
    let err = build(&s, ctx.path(), &["--target", "other"]);
    assert_eq!(run_output(&err), ["other:[]"], "{err}");
    // Without id= the id is the target, so `/x` is not the cache called `shared`.
    let err = build(&s, ctx.path(), &["--target", "default"]);
    assert_eq!(run_output(&err), ["default:[]"], "{err}");
}

#[test]
fn cache_uid_gid_mode_apply_when_the_cache_is_created() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=cache,id=c,target=/c,uid=1000,gid=50,mode=0700 stat -c '%u:%g %a' /c\n\
         USER app\nRUN --mount=type=cache,id=c,target=/c touch /c/by-app && stat -c '%u:%g %a' /c && echo app-wrote\n\
         RUN --mount=type=cache,id=root-owned,target=/r touch /r/x 2>/dev/null || echo app-denied\n",
    )]);
    let err = build(&s, ctx.path(), &[]);
    // The second mount of `c` gives no options: the directory keeps what it was made with,
    // and user app (1000) may write to it; a default cache is root's, 0755.
    assert_eq!(run_output(&err), ["1000:50 700", "1000:50 700", "app-wrote", "app-denied"], "{err}");
}

#[test]
fn cache_sharing_locked_and_private_see_the_cache() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox AS seed\nRUN --mount=type=cache,id=s,target=/c echo seeded > /c/f\n\
         FROM busybox AS locked\nRUN --mount=type=cache,id=s,sharing=locked,target=/c cat /c/f && echo l >> /c/f\n\
         FROM busybox AS private\nRUN --mount=type=cache,id=s,sharing=private,target=/c cat /c/f\n",
    )]);
    build(&s, ctx.path(), &["--target", "seed"]);
    let err = build(&s, ctx.path(), &["--target", "locked"]);
    assert_eq!(run_output(&err), ["seeded"], "{err}");
    // Nobody else uses the cache: private takes the shared directory.
    let err = build(&s, ctx.path(), &["--target", "private"]);
    assert_eq!(run_output(&err), ["seeded", "l"], "{err}");
}

/// `(started, finished)` times of the step whose text contains `text`, from JSON progress.
fn span(stderr: &str, text: &str) -> (f64, f64) {
    let events: Vec<serde_json::Value> =
        stderr.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    let t = |ev: &str| {
        events
            .iter()
            .find(|e| e["event"] == ev && e["text"].as_str().is_some_and(|x| x.contains(text)))
            .unwrap_or_else(|| panic!("no {ev} for {text}:\n{stderr}"))["time"]
            .as_f64()
            .unwrap()
    };
    (t("started"), t("finished"))
}

/// The output lines of the step of stage `stage`, from JSON progress.
fn json_output(stderr: &str, stage: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "output" && e["stage"] == stage)
        .map(|e| e["line"].as_str().unwrap().to_string())
        .collect()
}

/// Stages `a` and `b` each write their name into cache `p` (with `sharing`), wait, and list
/// the cache; the last stage needs both, so they run in parallel.
fn two_parallel_users(sharing: &str) -> tempfile::TempDir {
    let step = |name: &str| {
        format!(
            "FROM busybox AS {name}\nRUN --mount=type=cache,id=p,sharing={sharing},target=/c \
             echo {name} > /c/{name}; sleep 0.3; echo $(ls /c)\n"
        )
    };
    let dockerfile = format!(
        "{}{}FROM busybox\nCOPY --from=a /etc/passwd /a\nCOPY --from=b /etc/passwd /b\n",
        step("a"),
        step("b")
    );
    context(&[("Dockerfile", &dockerfile)])
}

#[test]
fn cache_sharing_private_gives_parallel_steps_a_directory_each() {
    let s = store();
    let ctx = two_parallel_users("private");
    let out = s.run(&["build", "--progress=json", "--jobs", "2", ctx.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let (a0, a1) = span(&err, "echo a");
    let (b0, b1) = span(&err, "echo b");
    assert!(a0 < b1 && b0 < a1, "the two steps did not overlap: a {a0}..{a1}, b {b0}..{b1}");
    assert_eq!(json_output(&err, "a"), ["a"], "{err}");
    assert_eq!(json_output(&err, "b"), ["b"], "{err}");
}

#[test]
fn cache_sharing_locked_runs_parallel_users_one_after_the_other() {
    let s = store();
    let ctx = two_parallel_users("locked");
    let out = s.run(&["build", "--progress=json", "--jobs", "2", ctx.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let (a, b) = (json_output(&err, "a"), json_output(&err, "b"));
    // Whichever went second saw the first one's file.
    let mut seen = vec![a[0].as_str(), b[0].as_str()];
    seen.sort_unstable();
    assert!(seen == ["a", "a b"] || seen == ["a b", "b"], "a saw {a:?}, b saw {b:?}:\n{err}");
}

#[test]
fn cache_from_a_stage_seeds_a_new_cache() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox AS seed\nRUN mkdir -p /s/sub && echo seeded > /s/sub/f && chown 1000 /s/sub/f\n\
         FROM busybox\nRUN --mount=type=cache,target=/c,from=seed,source=/s \
         cat /c/sub/f && stat -c '%u' /c/sub/f && echo $(ls /c) && echo more > /c/more\n",
    )]);
    let err = build(&s, ctx.path(), &[]);
    assert_eq!(run_output(&err), ["seeded", "1000", "sub"], "{err}");
    // The cache exists now: it is used as it is, not seeded again.
    let err = build(&s, ctx.path(), &["--no-cache"]);
    assert_eq!(run_output(&err), ["seeded", "1000", "more sub"], "{err}");
}

// ---------------------------------------------------------------------------------------------
// type=bind

fn bind_context() -> tempfile::TempDir {
    context(&[
        (
            "Dockerfile",
            "FROM busybox\nRUN --mount=target=/ctx cat /ctx/f /ctx/sub/g; \
             test -e /ctx/ignored.txt && echo ignored-visible || echo ignored-absent; \
             touch /ctx/new 2>&1; echo touch=$?\n",
        ),
        (".dockerignore", "ignored.txt\n"),
        ("f", "hello\n"),
        ("sub/g", "g\n"),
        ("ignored.txt", "secret\n"),
    ])
}

#[test]
fn bind_of_the_context_is_read_only_without_ignored_files_and_leaves_no_trace() {
    let s = store();
    let ctx = bind_context();
    let err = build(&s, ctx.path(), &["-t", "bind:1"]);
    let out = run_output(&err);
    assert_eq!(out[..3], ["hello", "g", "ignored-absent"], "{err}");
    assert!(out[3].contains("Read-only file system"), "{err}");
    assert_eq!(out[4], "touch=1", "{err}");
    assert_eq!(sh(&s, "bind:1", "test -e /ctx && echo present || echo absent"), "absent\n");
    assert!(!ctx.path().join("new").exists());
}

#[test]
fn bind_of_the_context_is_in_the_cache_key_except_ignored_files() {
    let s = store();
    let ctx = bind_context();
    build(&s, ctx.path(), &[]);
    let err = build(&s, ctx.path(), &[]);
    assert_steps_run(&err, 0);
    assert!(err.lines().any(|l| l.starts_with("CACHED [stage-0 2/2] RUN --mount=target=/ctx")), "{err}");
    fs::write(ctx.path().join("ignored.txt"), "changed\n").unwrap();
    let err = build(&s, ctx.path(), &[]);
    assert_steps_run(&err, 0);
    fs::write(ctx.path().join("sub/g"), "g2\n").unwrap();
    let err = build(&s, ctx.path(), &[]);
    assert_steps_run(&err, 1);
    assert_eq!(run_output(&err)[..2], ["hello", "g2"], "{err}");
}

#[test]
fn bind_rw_of_the_context_allows_writes_that_are_thrown_away() {
    let s = store();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox\nRUN --mount=target=/ctx,rw echo changed >> /ctx/f && echo new > /ctx/new \
             && rm /ctx/sub/g && cat /ctx/f /ctx/new && echo $(ls -A /ctx/sub)\n",
        ),
        ("f", "hello\n"),
        ("sub/g", "g\n"),
    ]);
    let err = build(&s, ctx.path(), &["-t", "rw:1"]);
    assert_eq!(run_output(&err), ["hello", "changed", "new", ""], "{err}");
    // Not in the image, and the context on the host is as it was.
    assert_eq!(sh(&s, "rw:1", "test -e /ctx && echo present || echo absent"), "absent\n");
    assert_eq!(fs::read_to_string(ctx.path().join("f")).unwrap(), "hello\n");
    assert_eq!(fs::read_to_string(ctx.path().join("sub/g")).unwrap(), "g\n");
    assert!(!ctx.path().join("new").exists());
    // A second build's bind shows the context, not the first one's writes.
    let err = build(&s, ctx.path(), &["--no-cache"]);
    assert_eq!(run_output(&err), ["hello", "changed", "new", ""], "{err}");
}

#[test]
fn bind_of_a_single_context_file_keys_only_that_file() {
    let s = store();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox\nRUN --mount=source=sub/g,target=/g.txt cat /g.txt; stat -c %F /g.txt\n",
        ),
        ("f", "hello\n"),
        ("sub/g", "g\n"),
    ]);
    let err = build(&s, ctx.path(), &["-t", "one:1"]);
    assert_eq!(run_output(&err), ["g", "regular file"], "{err}");
    fs::write(ctx.path().join("f"), "other\n").unwrap();
    let err = build(&s, ctx.path(), &[]);
    assert_steps_run(&err, 0);
    fs::write(ctx.path().join("sub/g"), "g2\n").unwrap();
    let err = build(&s, ctx.path(), &["-t", "one:1"]);
    assert_steps_run(&err, 1);
    assert_eq!(run_output(&err), ["g2", "regular file"], "{err}");
    assert_eq!(sh(&s, "one:1", "test -e /g.txt && echo present || echo absent"), "absent\n");
}

/// Regression: `rw` on a bind of a single context *file* writes through to the user's file on the
/// host. solver/src/mounts.rs `prepare` hard-links the file into a temp dir (`link_tree`) and,
/// as `tree.is_dir()` is false, bind-mounts that hard link read-write: same inode as the
/// context file.
#[test]
fn bind_rw_of_a_single_context_file_does_not_change_the_host_file() {
    let s = store();
    let ctx = context(&[
        ("Dockerfile", "FROM busybox\nRUN --mount=source=f,target=/f,rw echo written >> /f && cat /f\n"),
        ("f", "hello\n"),
    ]);
    let err = build(&s, ctx.path(), &[]);
    assert_eq!(run_output(&err), ["hello", "written"], "{err}");
    assert_eq!(fs::read_to_string(ctx.path().join("f")).unwrap(), "hello\n", "the context file was changed");
}

fn stage_dockerfile() -> &'static str {
    "FROM busybox AS build\nRUN mkdir /out && echo a > /out/a && echo b > /out/b && echo gone > /out/gone\n\
     RUN rm /out/gone /etc/group && echo b2 > /out/b\n\
     FROM busybox AS opaque\nRUN mkdir /out && echo old > /out/old\nRUN rm -rf /out && mkdir /out && echo new > /out/new\n\
     FROM busybox\n\
     RUN --mount=from=build,source=/out,target=/o echo $(ls /o) $(cat /o/b); touch /o/x 2>&1 || true\n\
     RUN --mount=from=0,source=out/a,target=/a cat /a\n\
     RUN --mount=from=build,source=/etc,target=/e echo $(ls /e)\n\
     RUN --mount=from=busybox,source=/etc,target=/e echo image $(ls /e)\n\
     RUN --mount=from=build,target=/b test -e /b/out/gone || echo root-without-gone\n\
     RUN --mount=from=opaque,source=/out,target=/o echo opaque $(ls /o)\n\
     RUN --mount=from=build,source=/out,target=/o,rw echo x > /o/a && rm /o/b && echo rw $(ls /o) $(cat /o/a)\n\
     RUN --mount=from=build,source=/out,target=/o echo again $(ls /o) $(cat /o/a)\n"
}

#[test]
fn bind_from_a_stage_shows_its_files_as_the_stage_has_them() {
    let s = store();
    let ctx = context(&[("Dockerfile", stage_dockerfile())]);
    let err = build(&s, ctx.path(), &["-t", "stage:1"]);
    let out = stage_output(&err, "stage-2");
    assert_eq!(out[0], "a b b2", "{err}");
    assert!(out[1].contains("Read-only file system"), "{err}");
    // By index; a single file.
    assert_eq!(out[2], "a", "{err}");
    // /etc/group deleted in a later layer than the one that has it (a whiteout).
    assert_eq!(out[3], "passwd", "{err}");
    // From an image rather than a stage.
    assert_eq!(out[4], "image group passwd", "{err}");
    assert_eq!(out[5], "root-without-gone", "{err}");
    // A directory deleted and made again (opaque): nothing of the old one.
    assert_eq!(out[6], "opaque new", "{err}");
    // rw: writes seen by the step, then gone.
    assert_eq!(out[7], "rw a x", "{err}");
    assert_eq!(out[8], "again a b a", "{err}");
    assert_eq!(out.len(), 9, "{err}");
    assert_eq!(sh(&s, "stage:1", "ls -A / | tr '\\n' ' '"), sh(&s, "busybox", "ls -A / | tr '\\n' ' '"));
}

#[test]
fn bind_from_a_stage_is_keyed_by_the_stage_content() {
    let s = store();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox AS build\nCOPY f /out/f\nFROM busybox\nRUN --mount=from=build,source=/out,target=/o cat /o/f\n",
        ),
        ("f", "one\n"),
    ]);
    let err = build(&s, ctx.path(), &[]);
    assert_eq!(run_output(&err), ["one"], "{err}");
    let err = build(&s, ctx.path(), &[]);
    assert_steps_run(&err, 0);
    fs::write(ctx.path().join("f"), "two\n").unwrap();
    let err = build(&s, ctx.path(), &[]);
    assert_steps_run(&err, 2);
    assert_eq!(run_output(&err), ["two"], "{err}");
}

/// Regression: `rw` on a bind of a single *file* of a stage writes into the store's unpacked layer.
/// solver/src/mounts.rs `prepare`: for `Source::Layers` with a non-directory source,
/// `layer_lowers` returns the file inside `layers/<diff_id>/` and it is bind-mounted with
/// `readonly: false`. The layer directory no longer matches its diff id; every later build
/// (and `rbuild run`) of anything on that layer sees the change.
#[test]
fn bind_rw_of_a_single_stage_file_does_not_change_the_stage() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox AS build\nRUN echo original > /x\n\
         FROM busybox\nRUN --mount=from=build,source=/x,target=/x,rw echo written >> /x && cat /x\n\
         RUN --mount=from=build,source=/x,target=/x echo after; cat /x\n",
    )]);
    let err = build(&s, ctx.path(), &["--target", "build", "-t", "built:1"]);
    assert_eq!(run_output(&err), Vec::<&str>::new());
    let err = build(&s, ctx.path(), &[]);
    assert_eq!(run_output(&err), ["original", "written", "after", "original"], "{err}");
    assert_eq!(sh(&s, "built:1", "cat /x"), "original\n", "the stored layer was changed");
}

/// Regression (security): a stage's symlink given as `source=` is followed on the *host*.
/// solver/src/mounts.rs `layer_lowers` returns the symlink inside `layers/<diff_id>/` as the
/// source (a non-directory), and executor/src/init.rs `open_sources` opens it with `O_PATH`
/// without `O_NOFOLLOW`, so an absolute target names a host path (a relative one climbs out
/// of the layer directory): any build can read any host file by making a symlink in a stage.
/// Fix: resolve `source` inside the stage's root, following symlinks there (as BuildKit's
/// `fs.RootPath`, or `fsutil::secure_join` over the stage's overlay as the cache seeding
/// does), before looking for the layers that hold it; open with `O_NOFOLLOW` as a safety net.
#[test]
fn bind_of_a_stage_symlink_never_reads_the_host() {
    let s = store();
    let ctx = context(&[("host-only.txt", "host-only-content\n")]);
    let host_file = ctx.path().join("host-only.txt");
    let dockerfile = format!(
        "FROM busybox AS s\nRUN ln -s {} /leak && ln -s ../../../../../../../..{} /rel-leak\n\
         FROM busybox\nRUN --mount=from=s,source=/leak,target=/x cat /x; true\n\
         RUN --mount=from=s,source=/rel-leak,target=/y cat /y; true\n",
        host_file.display(),
        host_file.display()
    );
    fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    let out = s.run(&["build", "--progress=plain", ctx.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("host-only-content"), "a host file was read through a stage symlink:\n{err}");
}

/// Regression: a `source=` that is, or goes through, a symlink of the stage is not resolved in the
/// stage (BuildKit follows it inside the stage's root): a symlink to a file or directory is
/// opened on the host (see above), and a symlink in the middle of the path makes
/// `layer_lowers` (solver/src/mounts.rs) stop at it and answer "not found".
#[test]
fn bind_source_through_a_stage_symlink_is_resolved_in_the_stage() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox AS s\nRUN mkdir /out && echo in-stage > /out/f && ln -s /out/f /flink && ln -s /out /outlink \
         && ln -s ../out/f /etc/rel\n\
         FROM busybox\nRUN --mount=from=s,source=/flink,target=/a --mount=from=s,source=/outlink,target=/b \
         --mount=from=s,source=/outlink/f,target=/c --mount=from=s,source=/etc/rel,target=/d \
         cat /a && ls /b && cat /c /d\n",
    )]);
    let err = build(&s, ctx.path(), &[]);
    assert_eq!(run_output(&err), ["in-stage", "f", "in-stage", "in-stage"], "{err}");
}

#[test]
fn readonly_cache_mount_refuses_writes() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=cache,id=c,target=/c echo kept > /c/f\n\
         RUN --mount=type=cache,id=c,target=/c,ro cat /c/f; touch /c/g 2>&1 || true\n",
    )]);
    let err = build(&s, ctx.path(), &[]);
    let out = run_output(&err);
    assert_eq!(out[0], "kept", "{err}");
    assert!(out[1].contains("Read-only file system"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// type=tmpfs

#[test]
fn tmpfs_has_its_size_and_nothing_reaches_the_image() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=tmpfs,target=/t,size=1m df -k /t | tail -n 1; echo data > /t/f; \
         cat /t/f; stat -c %a /t\n\
         RUN --mount=type=tmpfs,target=/t echo next:[$(ls -A /t)]\n",
    )]);
    let err = build(&s, ctx.path(), &["-t", "tmpfs:1"]);
    let out = run_output(&err);
    let df: Vec<&str> = out[0].split_whitespace().collect();
    assert_eq!((df[0], df[1]), ("tmpfs", "1024"), "{err}");
    assert_eq!(out[1..], ["data", "1777", "next:[]"], "{err}");
    assert_eq!(sh(&s, "tmpfs:1", "test -e /t && echo present || echo absent"), "absent\n");
}

// ---------------------------------------------------------------------------------------------
// Mount points

#[test]
fn mount_targets_leave_no_trace_but_existing_directories_stay() {
    let s = store();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox\nRUN touch /empty\n\
             RUN --mount=type=tmpfs,target=/a/b/c --mount=type=cache,target=/x/y --mount=target=/m/n/ctx \
             --mount=source=f,target=/s/f --mount=type=tmpfs,target=/tmp --mount=target=/etc/ctx \
             --mount=source=f,target=/empty --mount=target=/home/app \
             ls /a/b/c /x/y /m/n/ctx/f /s/f /etc/ctx/f /home/app/f >/dev/null && cat /empty\n",
        ),
        ("f", "f\n"),
    ]);
    let err = build(&s, ctx.path(), &["-t", "trace:1"]);
    assert_eq!(run_output(&err), ["f"], "{err}");
    let listing = "ls -A / /etc /home | tr '\\n' ' '";
    let base = sh(&s, "busybox", listing);
    let image = sh(&s, "trace:1", listing);
    assert_eq!(image, base.replacen("dev ", "dev empty ", 1), "image: {image}\nbase: {base}");
    assert_eq!(
        sh(&s, "trace:1", "stat -c '%a %u %n' /tmp /home/app /empty; stat -c %s /empty"),
        "1777 0 /tmp\n755 1000 /home/app\n644 0 /empty\n0\n"
    );
}

/// Regression: a mount target reached through a symlink of the image leaves its stubs in the image.
/// The sandbox resolves the target inside the rootfs (executor/src/init.rs `resolve_in_root`:
/// `/lnk/t` -> `/real/t`) and makes its mount points there, but solver/src/mounts.rs
/// `remove_stubs` looks for them at the path as written (`upper/lnk/t`), finds nothing and
/// keeps `/real/t` and the empty file `/real/f`. (Merged-usr and `/var/run -> /run` images
/// have such symlinks.) Fix: resolve each target the same way over the snapshot before
/// removing stubs, or better, have the executor report the mount points it created and
/// remove exactly those (if still empty).
#[test]
fn mount_targets_through_a_symlink_leave_no_trace() {
    let s = store();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox\nRUN mkdir /real && ln -s /real /lnk && echo x > /real/keep\n\
             RUN --mount=type=tmpfs,target=/lnk/t/u --mount=source=f,target=/lnk/f ls /real/t/u /real/f >/dev/null\n",
        ),
        ("f", "f\n"),
    ]);
    build(&s, ctx.path(), &["-t", "lnk:1"]);
    assert_eq!(sh(&s, "lnk:1", "ls -A /real"), "keep\n");
}

#[test]
fn relative_target_is_under_the_workdir() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        &"FROM busybox\nWORKDIR /w\n\
         RUN --mount=type=cache,target=cache {COUNTER_W} && echo keep > /w/keep && echo $(ls -A /w)\n\
         RUN --mount=type=tmpfs,target=t/u touch /w/t/u/x && l=$(ls -A /w) && echo $l > /w/list && echo $l\n"
            .replace("{COUNTER_W}", &COUNTER.replace("/cache", "/w/cache")),
    )]);
    let err = build(&s, ctx.path(), &["-t", "wd:1"]);
    assert_eq!(run_output(&err), ["count=1", "cache keep", "keep t"], "{err}");
    // (Each RUN also writes a file in /w: a RUN whose only change is /w itself triggers the
    // duplicate-layer bug of `a_mount_under_the_workdir_then_another_run`.)
    assert_eq!(sh(&s, "wd:1", "ls -A /w"), "keep\nlist\n");
}

/// Regression: a RUN whose mount point is under a directory of the image (here the WORKDIR) leaves
/// that directory, copied up, as its only change; its layer is then byte for byte the layer
/// that made the directory when both happen in the same second (tar mtimes are seconds). The
/// image has the same layer twice, and overlayfs refuses the same lowerdir twice ("overlayfs:
/// conflicting lowerdir path", ELOOP: "Too many symbolic links encountered"), so the next RUN
/// and `rbuild run` fail. Root cause in cache/src/snapshot.rs (`create_snapshot`,
/// `mount_readonly`): the lowers are the layers' directories as they are, duplicates
/// included. Fix: keep only the topmost occurrence of each layer directory (the view is the
/// same). solver/src/mounts.rs `layer_lowers` can push the same directory twice too.
#[test]
fn a_mount_under_the_workdir_then_another_run() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nWORKDIR /w\nRUN --mount=type=cache,target=/w/cache true\nRUN echo next\n",
    )]);
    let err = build(&s, ctx.path(), &["-t", "wd:2"]);
    assert_eq!(run_output(&err), ["next"], "{err}");
    assert_eq!(sh(&s, "wd:2", "ls -A /w"), "");
}

/// Regression (same root cause as above, without mounts, deterministic): two layers with the same
/// content in one image.
#[test]
fn the_same_layer_twice_in_an_image() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo same > /f && touch -d '2000-01-01 00:00:00' /f /\n\
         RUN echo same > /f && touch -d '2000-01-01 00:00:00' /f / && true\nRUN echo next\n",
    )]);
    let err = build(&s, ctx.path(), &["-t", "same:1"]);
    assert_eq!(run_output(&err), ["next"], "{err}");
    assert_eq!(sh(&s, "same:1", "cat /f"), "same\n");
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn required_secret_not_given_is_one_line_naming_it() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=secret,id=api_token,required=true cat /run/secrets/api_token\n",
    )]);
    let (line, _) = failing_build(&s, ctx.path(), &[]);
    assert!(line.contains("Dockerfile:2:1:"), "{line}");
    assert!(line.contains("\"api_token\" is required but was not given"), "{line}");
    assert_store_clean(&s);
}

#[test]
fn missing_bind_source_is_one_line_naming_it() {
    let s = store();
    let ctx = context(&[
        ("Dockerfile", "FROM busybox\nRUN --mount=source=nope.txt,target=/x true\n"),
        (".dockerignore", "hidden.txt\n"),
        ("hidden.txt", "h"),
    ]);
    let (line, _) = failing_build(&s, ctx.path(), &[]);
    assert!(line.contains("Dockerfile:2:1:"), "{line}");
    assert!(
        line.ends_with(": \"nope.txt\": not found in the build context (or excluded by .dockerignore)"),
        "{line}"
    );
    assert_store_clean(&s);
    // An ignored file is as missing.
    fs::write(ctx.path().join("Dockerfile"), "FROM busybox\nRUN --mount=source=hidden.txt,target=/x true\n")
        .unwrap();
    let (line, _) = failing_build(&s, ctx.path(), &[]);
    assert!(
        line.ends_with(": \"hidden.txt\": not found in the build context (or excluded by .dockerignore)"),
        "{line}"
    );
    assert_store_clean(&s);
}

#[test]
fn missing_source_in_a_stage_is_one_line_naming_it() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox AS build\nRUN echo x > /x && rm /etc/group\n\
         FROM busybox\nRUN --mount=from=build,source=/nope,target=/x true\n",
    )]);
    let (line, _) = failing_build(&s, ctx.path(), &[]);
    assert!(
        line.contains("Dockerfile:4:1:") && line.ends_with(": --mount source \"nope\": not found"),
        "{line}"
    );
    assert_store_clean(&s);
    // Deleted in the stage (a whiteout) is not found either.
    fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox AS build\nRUN echo x > /x && rm /etc/group\n\
         FROM busybox\nRUN --mount=from=build,source=/etc/group,target=/x true\n",
    )
    .unwrap();
    let (line, _) = failing_build(&s, ctx.path(), &[]);
    assert!(
        line.contains("Dockerfile:4:1:") && line.ends_with(": --mount source \"etc/group\": not found"),
        "{line}"
    );
    assert_store_clean(&s);
}

#[test]
fn directory_mount_on_an_image_file_is_one_line() {
    let s = store();
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN --mount=type=tmpfs,target=/etc/passwd true\n")]);
    let (line, _) = failing_build(&s, ctx.path(), &[]);
    assert!(line.contains("Dockerfile:2:1:"), "{line}");
    assert!(
        line.ends_with("mount at /etc/passwd: it is a file in the image, and the mount is a directory"),
        "{line}"
    );
    assert_store_clean(&s);
}

/// An `ssh-agent -D` the test starts, killed by PID when dropped.
struct TestAgent(std::process::Child);

impl Drop for TestAgent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn host(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `--ssh` with a running agent (`default=SOCKET`) and with a key file (rbuild's own agent):
/// `ssh-add -l` inside `RUN --mount=type=ssh` lists the key; `SSH_AUTH_SOCK` names BuildKit's
/// default socket; `uid`/`mode` hold; nothing of it lands in a layer; a required agent that
/// was not given is a one-line error, an optional one is no mount.
#[test]
fn ssh_mount_forwards_an_agent_and_key_files() {
    let s = store();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id_ed25519");
    host(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "rbuild-test", "-f"])
            .arg(&key),
    );
    let fingerprint =
        host(std::process::Command::new("ssh-keygen").arg("-lf").arg(key.with_extension("pub")));
    let fingerprint = fingerprint.split_whitespace().nth(1).unwrap().to_string();
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    let sock = keys.path().join("agent.sock");
    let _agent =
        TestAgent(std::process::Command::new("ssh-agent").arg("-D").arg("-a").arg(&sock).spawn().unwrap());
    for _ in 0..500 {
        if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    host(std::process::Command::new("ssh-add").arg("-q").arg(&key).env("SSH_AUTH_SOCK", &sock));

    let dir = context(&[(
        "Dockerfile",
        "FROM busybox\nCOPY tools/ /\n\
         RUN --mount=type=ssh ssh-add -l > /agent.txt && echo $SSH_AUTH_SOCK > /sock.txt\n\
         RUN --mount=type=ssh,id=keys,target=/tmp/k.sock,mode=0666,uid=1000 \
             ssh-add -l > /keys.txt && stat -c '%a %u' /tmp/k.sock > /stat.txt\n\
         RUN --mount=type=ssh,id=absent test ! -e /run/buildkit/ssh_agent.0\n",
    )]);
    test_support::copy_host_binary(Path::new("/usr/bin/ssh-add"), &dir.path().join("tools"));
    let default = format!("default={}", sock.display());
    let from_key = format!("keys={}", key.display());
    build(&s, dir.path(), &["--ssh", &default, "--ssh", &from_key, "-t", "ssh:1"]);
    let cat = |f: &str| s.ok(&["run", "--rm", "--network", "none", "ssh:1", "cat", f]);
    assert!(cat("/agent.txt").contains(&fingerprint), "{}", cat("/agent.txt"));
    assert_eq!(cat("/sock.txt"), "/run/buildkit/ssh_agent.0\n");
    assert!(cat("/keys.txt").contains(&fingerprint), "{}", cat("/keys.txt"));
    assert_eq!(cat("/stat.txt"), "666 1000\n");
    for layer in s.layer_entries("ssh:1").iter().skip(2) {
        assert!(!layer.iter().any(|p| p.contains("ssh_agent") || p.contains("k.sock")), "{layer:?}");
    }

    let required = context(&[("Dockerfile", "FROM busybox\nRUN --mount=type=ssh,required=true true\n")]);
    let line = s.fails(&["build", required.path().to_str().unwrap()]);
    assert!(line.contains("ssh agent \"default\" is required but was not given"), "{line}");
    let line = s.fails(&["build", "--ssh", "x=/nonexistent/key", required.path().to_str().unwrap()]);
    assert!(line.contains("--ssh x: /nonexistent/key"), "{line}");
    assert!(std::fs::read_dir(s.path().join("tmp")).unwrap().next().is_none(), "tmp/ left behind");
}
