//! End-to-end builds through the real `rbuild` binary: the demo, multi-stage COPY, the cache,
//! and what a RUN step can see of the machine.

use std::path::Path;

use test_support::{Httpd, TestStore, context, free_port, wait_for_port};

fn store() -> TestStore {
    let s = TestStore::new(env!("CARGO_BIN_EXE_rbuild"));
    s.import_busybox();
    s
}

fn demo_dir() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/demo").display().to_string()
}

fn build(s: &TestStore, ctx: &Path, tag: &str) -> std::process::Output {
    let out = s.run(&["build", "-t", tag, ctx.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "build failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn demo_image_runs_and_second_build_runs_no_step() {
    let s = store();
    let first = s.run(&["-t", "demo:latest", &demo_dir()]);
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{err}");
    assert!(err.contains("RUN tr"), "{err}");

    let out = s.ok(&["run", "--rm", "demo:latest"]);
    assert_eq!(
        out,
        "hello from rbuild\nHELLO FROM RBUILD\nbuilt in a sandbox named rbuild-sandbox\nrunning as app in /app\n"
    );

    let second = s.run(&["build", "-t", "demo:latest", &demo_dir()]);
    let err2 = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{err2}");
    assert!(err2.contains("(0 steps run,"), "second build ran steps:\n{err2}");
    let cached = err2.lines().filter(|l| l.starts_with("CACHED ")).count();
    // Every step after the two FROMs: 3 in the builder stage, 8 in the final one.
    assert_eq!(cached, 11, "{err2}");
    assert!(!err2.contains("| "), "a RUN printed output on a cached build:\n{err2}");
}

#[test]
fn image_config_carries_env_workdir_user_cmd_labels_and_history() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nENV A=1 B=\"two words\"\nWORKDIR /srv\nWORKDIR sub\nUSER 1000:1000\nLABEL x=y\nEXPOSE 8080 53/udp\nENTRYPOINT [\"/bin/echo\"]\nCMD [\"hi\"]\n",
    )]);
    build(&s, ctx.path(), "cfg:1");
    let tar = s.path().join("cfg.tar");
    s.ok(&["save", "--format", "oci", "-o", tar.to_str().unwrap(), "cfg:1"]);
    let inspect = std::process::Command::new("skopeo")
        .args(["inspect", "--config", &format!("oci-archive:{}", tar.display())])
        .output()
        .expect("skopeo runs");
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
    let config: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let c = &config["config"];
    let env: Vec<&str> = c["Env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(env.contains(&"A=1") && env.contains(&"B=two words"), "{env:?}");
    assert_eq!(c["WorkingDir"], "/srv/sub");
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["Labels"]["x"], "y");
    assert!(c["ExposedPorts"].get("8080/tcp").is_some() && c["ExposedPorts"].get("53/udp").is_some());
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/echo"]));
    assert_eq!(c["Cmd"], serde_json::json!(["hi"]));
    let history = config["history"].as_array().unwrap();
    // One entry from import, then one per instruction after FROM. Only the two WORKDIRs add a
    // layer (they create /srv and /srv/sub, as BuildKit does); metadata adds none.
    assert_eq!(history.len(), 1 + 8, "{history:?}");
    let with_layer: Vec<&str> = history[1..]
        .iter()
        .filter(|h| h["empty_layer"] != true)
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    assert_eq!(with_layer, vec!["WORKDIR /srv", "WORKDIR sub"]);
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    assert_eq!(s.ok(&["run", "--rm", "cfg:1"]), "hi\n");
    assert_eq!(s.ok(&["run", "--rm", "cfg:1", "a", "b"]), "a b\n");
    assert_eq!(s.ok(&["run", "--rm", "--entrypoint", "pwd", "cfg:1"]), "/srv/sub\n");
}

#[test]
fn run_returns_the_container_exit_code() {
    let s = store();
    let out = s.run(&["run", "--rm", "busybox", "sh", "-c", "echo out; exit 42"]);
    assert_eq!(out.status.code(), Some(42));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
}

#[test]
fn copy_handles_dirs_globs_chown_and_multi_stage() {
    let s = store();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox AS one\n\
             COPY dir /copied/\n\
             COPY *.txt /texts/\n\
             COPY --chown=app:staff single.txt /owned\n\
             RUN echo made-in-one > /made\n\
             FROM scratch\n\
             COPY --from=one /made /copied/sub/deep.txt /out/\n\
             COPY --from=0 /owned /owned\n\
             FROM busybox\n\
             COPY --from=1 / /fromscratch/\n",
        ),
        ("dir/sub/deep.txt", "deep\n"),
        ("dir/top.txt", "top\n"),
        ("a.txt", "a\n"),
        ("b.txt", "b\n"),
        ("single.txt", "single\n"),
    ]);
    build(&s, ctx.path(), "copy:1");
    let listing = s.ok(&[
        "run",
        "--rm",
        "copy:1",
        "sh",
        "-c",
        "cd /fromscratch && find . | sort && cat out/made out/deep.txt && stat -c '%u:%g %a' owned",
    ]);
    assert_eq!(listing, ".\n./out\n./out/deep.txt\n./out/made\n./owned\nmade-in-one\ndeep\n1000:50 644\n");
}

#[test]
fn context_files_are_owned_by_root_and_keep_their_mode() {
    let s = store();
    let ctx = context(&[
        ("Dockerfile", "FROM busybox\nCOPY tool /usr/bin/tool\nCOPY data /data\n"),
        ("tool", "#!/bin/sh\necho tool ran\n"),
        ("data", "d\n"),
    ]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(ctx.path().join("tool"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::chown(ctx.path().join("data"), Some(1234), Some(1234)).unwrap();
    build(&s, ctx.path(), "own:1");
    assert_eq!(
        s.ok(&["run", "--rm", "own:1", "sh", "-c", "tool; stat -c '%u:%g %a' /usr/bin/tool /data"]),
        "tool ran\n0:0 750\n0:0 644\n"
    );
}

#[test]
fn cache_follows_content_not_mtime() {
    let s = store();
    let ctx =
        context(&[("Dockerfile", "FROM busybox\nRUN echo before\nCOPY f /f\nRUN cat /f\n"), ("f", "one\n")]);
    build(&s, ctx.path(), "c:1");
    let f = std::fs::File::options().write(true).open(ctx.path().join("f")).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60)).unwrap();
    drop(f);
    let touched = String::from_utf8_lossy(&build(&s, ctx.path(), "c:1").stderr).into_owned();
    assert!(touched.contains("(0 steps run, 3 cached)"), "{touched}");
    std::fs::write(ctx.path().join("f"), "two\n").unwrap();
    let changed = String::from_utf8_lossy(&build(&s, ctx.path(), "c:1").stderr).into_owned();
    assert!(changed.contains("CACHED [stage-0 2/4] RUN echo before"), "{changed}");
    assert!(changed.contains("(2 steps run, 1 cached)"), "{changed}");
    assert!(changed.contains("| two"), "{changed}");
}

#[test]
fn run_step_is_isolated_from_the_host() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\n\
         RUN echo $PPID > /ppid && echo $$ > /pid && hostname > /hostname \
             && cat /proc/net/dev > /netdev && cat /proc/self/mountinfo > /mountinfo && ps -o pid,comm > /ps\n",
    )]);
    build(&s, ctx.path(), "iso:1");
    let cat = |f: &str| s.ok(&["run", "--rm", "iso:1", "cat", f]);
    assert_eq!(cat("/ppid"), "1\n", "the RUN shell's parent is the sandbox's PID 1");
    assert_eq!(cat("/pid"), "2\n");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(cat("/hostname"), "rbuild-sandbox\n");
    assert_ne!(cat("/hostname"), host);
    let netdev = cat("/netdev");
    let ifaces: Vec<&str> = netdev.lines().skip(2).map(|l| l.split(':').next().unwrap().trim()).collect();
    assert_eq!(ifaces, vec!["lo", "eth0"], "its own namespace on the build network:\n{netdev}");
    let mounts = cat("/mountinfo");
    let store_path = s.path().to_str().unwrap();
    assert!(!mounts.contains(store_path), "the store's path is visible:\n{mounts}");
    assert!(!mounts.contains("/work") && !mounts.contains("/home"), "host paths visible:\n{mounts}");
    let ps = cat("/ps");
    let pids: Vec<&str> = ps.lines().skip(1).map(|l| l.split_whitespace().next().unwrap()).collect();
    assert!(pids.iter().all(|p| p.parse::<u32>().unwrap() <= 3), "host processes visible:\n{ps}");
}

/// `--label` lands in the image's config (over the Dockerfile's LABEL of the same key) without
/// invalidating any step; `--iidfile` holds the image ID `images` shows; `--load` is accepted.
#[test]
fn labels_iidfile_metadata_file_and_load_as_docker_buildx_gives_them() {
    let s = store();
    let ctx = context(&[("Dockerfile", "FROM busybox\nLABEL from=dockerfile keep=yes\nRUN echo hi > /f\n")]);
    let dir = ctx.path().to_str().unwrap();
    let iid = s.path().join("iid");
    let iid_arg = iid.to_str().unwrap();
    s.ok(&[
        "build",
        "--load",
        "-t",
        "app:1",
        "--label",
        "from=flag",
        "--label",
        "empty",
        "--iidfile",
        iid_arg,
        dir,
    ]);
    let config = s.config("app:1");
    assert_eq!(
        config["config"]["Labels"],
        serde_json::json!({"from": "flag", "keep": "yes", "empty": ""}),
        "{}",
        config["config"]
    );
    let id = std::fs::read_to_string(&iid).unwrap();
    assert!(id.starts_with("sha256:") && !id.ends_with('\n'), "{id:?}");
    assert_eq!(s.ok(&["images", "-q", "--no-trunc", "app:1"]).trim(), id);

    // Another label: a new image, every step cached.
    let out = s.run(&["build", "-t", "app:2", "--label", "from=other", "--iidfile", iid_arg, dir]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("(0 steps run,"), "{err}");
    assert_ne!(std::fs::read_to_string(&iid).unwrap(), id);
    assert_eq!(s.config("app:2")["config"]["Labels"]["from"], "other");

    // --metadata-file: buildx's keys, matching the image and its config blob.
    let meta_path = s.path().join("meta.json");
    s.ok(&["build", "-t", "app:3", "-t", "app:4", "--metadata-file", meta_path.to_str().unwrap(), dir]);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    let digest = s.ok(&["images", "-q", "--no-trunc", "app:3"]).trim().to_string();
    assert_eq!(meta["containerimage.digest"], digest.as_str());
    assert_eq!(meta["containerimage.descriptor"]["digest"], digest.as_str());
    let inspect: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", "app:3"])).unwrap();
    assert_eq!(meta["containerimage.config.digest"], inspect[0]["ConfigDigest"], "{meta}");
    assert_eq!(meta["image.name"], "app:3,app:4");
    assert_eq!((meta["rbuild.steps.run"].as_u64(), meta["rbuild.steps.cached"].as_u64()), (Some(0), Some(2)));

    let e = s.fails(&["build", "--label", "=x", dir]);
    assert_eq!(e, "rbuild: error: --label \"=x\": the key is empty");
}

/// `--ulimit` and `--shm-size` reach every RUN, as `docker build` gives them; bad values are one
/// line in docker's words.
#[test]
fn ulimit_and_shm_size_reach_every_run() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN ulimit -n > /nofile && ulimit -Hn >> /nofile && df -k /dev/shm | tail -1 > /shm\n",
    )]);
    let dir = ctx.path().to_str().unwrap();
    s.ok(&["build", "-t", "lim:1", "--ulimit", "nofile=1024:2048", "--shm-size", "16m", dir]);
    assert_eq!(s.ok(&["run", "--rm", "lim:1", "cat", "/nofile"]), "1024\n2048\n");
    let shm = s.ok(&["run", "--rm", "lim:1", "cat", "/shm"]);
    assert_eq!(shm.split_whitespace().nth(1), Some("16384"), "{shm}");
    // The limits are in the RUN's cache key (as in BuildKit): without them the step runs
    // again, and /dev/shm is docker's default, 64 MiB.
    s.ok(&["build", "-t", "lim:2", dir]);
    let shm = s.ok(&["run", "--rm", "lim:2", "cat", "/shm"]);
    assert_eq!(shm.split_whitespace().nth(1), Some("65536"), "{shm}");

    let e = s.fails(&["build", "--ulimit", "files=1", dir]);
    assert_eq!(
        e,
        "rbuild: error: invalid argument \"files=1\" for \"--ulimit\" flag: invalid ulimit type: files"
    );
    let e = s.fails(&["build", "--ulimit", "nofile=2:1", dir]);
    assert!(e.ends_with("ulimit soft limit must be less than or equal to hard limit: 2 > 1"), "{e}");
    let e = s.fails(&["build", "--shm-size", "lots", dir]);
    assert!(e.contains("\"--shm-size\""), "{e}");
}

/// Runs `rbuild ARGS` with `input` on stdin; returns (success, stderr).
fn with_stdin(s: &TestStore, args: &[&str], input: &[u8]) -> (bool, String) {
    use std::io::Write;
    let mut child = s
        .cmd()
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `-f -` reads the Dockerfile from stdin; a context `-` is a tar (here gzip'd) on stdin, with
/// its Dockerfile inside; both at once is docker's error.
#[test]
fn dockerfile_and_context_from_stdin() {
    let s = store();
    let ctx = context(&[("hello.txt", "hello\n")]);
    let dir = ctx.path().to_str().unwrap();
    let (ok, err) =
        with_stdin(&s, &["build", "-t", "piped:1", "-f", "-", dir], b"FROM busybox\nCOPY hello.txt /\n");
    assert!(ok, "{err}");
    assert_eq!(s.ok(&["run", "--rm", "piped:1", "cat", "/hello.txt"]), "hello\n");

    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (name, body) in [("Dockerfile", "FROM busybox\nCOPY data/ /data/\n"), ("data/x", "from the tar\n")] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, body.as_bytes()).unwrap();
    }
    let gz = tar.into_inner().unwrap().finish().unwrap();
    let (ok, err) = with_stdin(&s, &["build", "-t", "tarred:1", "-"], &gz);
    assert!(ok, "{err}");
    assert_eq!(s.ok(&["run", "--rm", "tarred:1", "cat", "/data/x"]), "from the tar\n");
    let tmp = std::fs::read_dir(s.path().join("tmp")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(tmp, 0, "the unpacked context is gone after the build");

    let (ok, err) = with_stdin(&s, &["build", "-f", "-", "-"], b"");
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "rbuild: error: invalid argument: can't use stdin for both build context and dockerfile"
    );
}

/// `--platform`: this machine's own (or `local`) builds as without it; a base image the store
/// has only for another platform is one line that names both; a malformed value is refused.
#[test]
fn platform_is_checked_and_a_missing_base_is_a_clear_error() {
    let s = store();
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN true\n")]);
    let dir = ctx.path().to_str().unwrap();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    s.ok(&["build", "--platform", &format!("linux/{arch}"), dir]);
    s.ok(&["build", "--platform", "local", dir]);
    let e = s.fails(&["build", "--platform", "linux/s390x", dir]);
    let (_, rest) = e.split_once("/Dockerfile:1:1: FROM busybox: ").expect("located at the FROM");
    assert!(
        rest.starts_with(&format!(
            "image \"busybox\" has no linux/s390x image in the store (linux/{arch}), and pulling one failed: \
             docker.io is blocked"
        )),
        "{e}"
    );
    let e = s.fails(&["build", "--platform", "linux", dir]);
    assert_eq!(
        e,
        "rbuild: error: --platform: invalid platform \"linux\": expected os/arch[/variant], e.g. linux/arm64"
    );
}

/// `--build-context`: a context named like a stage replaces the stage (its RUN never runs),
/// one named like an image replaces the image (here one that is nowhere: `alpine:3.19`), a
/// directory is what `COPY --from` reads; an OCI layout gives the same image as the store's.
#[test]
fn build_context_replaces_a_stage_and_an_image_and_gives_directories() {
    let s = store();
    let rep = context(&[("Dockerfile", "FROM busybox\nRUN echo from-context > /which\n")]);
    build(&s, rep.path(), "replacement:1");
    let src = context(&[("hello.txt", "hello from a named context\n")]);
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox AS base\nRUN echo from-stage > /which\n\
         FROM alpine:3.19 AS other\n\
         FROM base\nCOPY --from=src /hello.txt /hello.txt\nCOPY --from=other /bin/busybox /other-busybox\n",
    )]);
    let src_arg = format!("src={}", src.path().display());
    let mut args = vec![
        "build",
        "--build-context",
        "base=docker-image://replacement:1",
        "--build-context",
        "docker.io/library/alpine:3.19=docker-image://busybox",
        "--build-context",
        &src_arg,
        "-t",
        "bc:1",
        ctx.path().to_str().unwrap(),
    ];
    s.ok(&args);
    let cat = |image: &str, f: &str| s.ok(&["run", "--rm", "--network", "none", image, "cat", f]);
    assert_eq!(cat("bc:1", "/which"), "from-context\n");
    assert_eq!(cat("bc:1", "/hello.txt"), "hello from a named context\n");
    assert!(
        s.ok(&["run", "--rm", "--network", "none", "bc:1", "ls", "-l", "/other-busybox"]).contains("rwx")
    );

    // The same image from an OCI layout directory, picked by its ref.name.
    let tar = s.path().join("rep.tar");
    s.ok(&["save", "--format", "oci", "-o", tar.to_str().unwrap(), "replacement:1"]);
    let layout = s.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    assert!(
        std::process::Command::new("tar")
            .arg("xf")
            .arg(&tar)
            .arg("-C")
            .arg(&layout)
            .status()
            .unwrap()
            .success()
    );
    let oci_arg = format!("base=oci-layout://{}@1", layout.display());
    args[2] = &oci_arg;
    args[8] = "bc:2";
    s.ok(&args);
    assert_eq!(cat("bc:2", "/which"), "from-context\n");
    assert_eq!(s.ok(&["images", "-q", "bc:2"]), s.ok(&["images", "-q", "bc:1"]), "same inputs, same image");

    // Errors: one line each, nothing named.
    let dir = ctx.path().to_str().unwrap();
    let line = s.fails(&["build", "--build-context", "src=/nonexistent/ctx", "-t", "bad", dir]);
    assert!(
        line.contains("--build-context src=/nonexistent/ctx") && line.contains("not a directory"),
        "{line}"
    );
    let line = s.fails(&["build", "--build-context", "src=git://x/y", "-t", "bad", dir]);
    assert!(line.contains("use docker-image://REF, oci-layout://PATH[@TAG] or a directory"), "{line}");
    let line = s.fails(&["build", "--build-context", "nameonly", "-t", "bad", dir]);
    assert!(line.contains("use NAME=VALUE"), "{line}");
    let line =
        s.fails(&["build", "--build-context", &format!("base=oci-layout://{}@nope", layout.display()), dir]);
    assert!(line.contains("has no image nope"), "{line}");
    assert!(s.ok(&["images", "-q", "bad"]).is_empty());
}

/// The cgroup roots of this machine (cgroup2's, and each v1 hierarchy's).
fn cgroup_roots() -> Vec<std::path::PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split_whitespace().next()?;
            (fstype == "cgroup2" || fstype == "cgroup")
                .then(|| pre.split_whitespace().nth(4).map(Into::into))?
        })
        .collect()
}

/// `--cgroup-parent`: while a RUN runs, its cgroup is a directory under the parent in every
/// hierarchy; afterwards the step's cgroup is gone and the parent stays (as docker leaves it).
#[test]
fn cgroup_parent_holds_every_runs_cgroup() {
    let s = store();
    let parent = format!("rbuild-test-{}/ci", std::process::id());
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN sleep 2\n")]);
    let child = s
        .cmd()
        .args(["build", "--cgroup-parent", &parent, "-t", "cgp:1", ctx.path().to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let roots = cgroup_roots();
    assert!(!roots.is_empty());
    let children = |root: &Path| -> Vec<String> {
        std::fs::read_dir(root.join(&parent))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline && seen.is_empty() {
        seen = roots.iter().flat_map(|r| children(r)).collect();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!seen.is_empty(), "no cgroup appeared under {parent} in {roots:?}");
    // rbuild's sandbox cgroups are named `<pid>-<n>`.
    let numeric = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    assert!(
        seen.iter().all(|n| n.split_once('-').is_some_and(|(a, b)| numeric(a) && numeric(b))),
        "{seen:?}"
    );
    for root in &roots {
        assert!(children(root).is_empty(), "the step's cgroup outlived it under {}", root.display());
        // The test's own parent directories go (leaf first).
        let _ = std::fs::remove_dir(root.join(&parent));
        let _ = std::fs::remove_dir(root.join(parent.split('/').next().unwrap()));
    }
    let line = s.fails(&["build", "--cgroup-parent", "../escape", ctx.path().to_str().unwrap()]);
    assert!(line.contains("--cgroup-parent \"../escape\""), "{line}");
}

/// A server the test started (git daemon), killed by PID when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// git-daemon serving the repositories under `base` on 127.0.0.1 (itself, not `git daemon`,
/// which would leave its git-daemon child behind when killed), and its port.
fn git_daemon(base: &Path) -> (Server, u16) {
    let exec_path = std::process::Command::new("git").arg("--exec-path").output().unwrap();
    let exec_path = String::from_utf8_lossy(&exec_path.stdout).trim().to_string();
    let port = free_port();
    let daemon = Server(
        std::process::Command::new(Path::new(&exec_path).join("git-daemon"))
            .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port);
    (daemon, port)
}

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=rbuild-test", "-c", "user.email=test@rbuild.invalid"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `rbuild build URL` as `docker build URL`: a git repository served by `git daemon` on
/// 127.0.0.1 at a tag and a subdirectory, a local repository at its HEAD, an http tarball and
/// an http Dockerfile; an unreachable remote is one line.
#[test]
fn git_and_http_contexts() {
    let s = store();
    let base = tempfile::tempdir().unwrap();
    let repo = base.path().join("repo");
    std::fs::create_dir_all(repo.join("sub")).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("sub/Dockerfile"), "FROM busybox\nCOPY version.txt /version.txt\n").unwrap();
    std::fs::write(repo.join("sub/version.txt"), "v1\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    git(&repo, &["tag", "v1"]);
    std::fs::write(repo.join("sub/version.txt"), "v2\n").unwrap();
    git(&repo, &["commit", "-q", "-a", "-m", "two"]);

    let (_daemon, port) = git_daemon(base.path());
    let cat = |image: &str, f: &str| s.ok(&["run", "--rm", "--network", "none", image, "cat", f]);
    s.ok(&["build", "-t", "git:1", &format!("git://127.0.0.1:{port}/repo#v1:sub")]);
    assert_eq!(cat("git:1", "/version.txt"), "v1\n");
    s.ok(&["build", "-t", "git:2", &format!("{}#:sub", repo.display())]);
    assert_eq!(cat("git:2", "/version.txt"), "v2\n");
    let line = s.fails(&["build", "-t", "bad", &format!("git://127.0.0.1:{port}/nope#v1")]);
    assert!(line.contains(&format!("git context git://127.0.0.1:{port}/nope: fatal:")), "{line}");
    let line = s.fails(&["build", "-t", "bad", &format!("git://127.0.0.1:{port}/repo#v1:nothere")]);
    assert!(line.contains("nothere is not a directory in the repository"), "{line}");

    // http: a gzip tar of a context, and a Dockerfile alone.
    let www = base.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let tar = std::process::Command::new("tar")
        .arg("-czf")
        .arg(www.join("ctx.tar.gz"))
        .arg("-C")
        .arg(repo.join("sub"))
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());
    std::fs::write(www.join("Dockerfile.txt"), "FROM busybox\nRUN echo from-url > /from.txt\n").unwrap();
    let httpd = Httpd::serve(&www);
    let port = httpd.port;
    s.ok(&["build", "-t", "http:1", &format!("http://127.0.0.1:{port}/ctx.tar.gz")]);
    assert_eq!(cat("http:1", "/version.txt"), "v2\n");
    s.ok(&["build", "-t", "http:2", &format!("http://127.0.0.1:{port}/Dockerfile.txt")]);
    assert_eq!(cat("http:2", "/from.txt"), "from-url\n");
    let line = s.fails(&["build", &format!("http://127.0.0.1:{port}/missing.tar")]);
    assert!(line.contains("the server answered 404"), "{line}");
    assert!(s.ok(&["images", "-q", "bad"]).is_empty());
    assert!(std::fs::read_dir(s.path().join("tmp")).unwrap().next().is_none(), "tmp/ left behind");
}

/// `ADD` of a git repository served by git-daemon on 127.0.0.1: at a tag and a subdirectory,
/// at a branch with `--keep-git-dir`; cached by commit (a rebuild runs nothing, a new commit
/// on the branch misses); `--checksum` must be the commit.
#[test]
fn add_from_git_at_a_ref_and_subdir_cached_by_commit() {
    let s = store();
    let base = tempfile::tempdir().unwrap();
    let repo = base.path().join("repo.git");
    std::fs::create_dir_all(repo.join("sub")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("sub/version.txt"), "v1\n").unwrap();
    std::fs::write(repo.join("top.txt"), "top\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    git(&repo, &["tag", "-a", "-m", "tag", "v1"]);
    let (_daemon, port) = git_daemon(base.path());
    let url = format!("git://127.0.0.1:{port}/repo.git");
    let ctx = context(&[(
        "Dockerfile",
        &format!("FROM busybox\nADD {url}#v1:sub /tagged\nADD --keep-git-dir {url}#main /branch\n"),
    )]);
    let dir = ctx.path().to_str().unwrap();
    let meta = s.path().join("meta.json");
    let build = || {
        s.ok(&["build", "--metadata-file", meta.to_str().unwrap(), "-t", "addgit:1", dir]);
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        (m["rbuild.steps.run"].as_u64().unwrap(), m["rbuild.steps.cached"].as_u64().unwrap())
    };
    assert_eq!(build(), (2, 0));
    let cat = |f: &str| s.ok(&["run", "--rm", "--network", "none", "addgit:1", "cat", f]);
    assert_eq!(cat("/tagged/version.txt"), "v1\n");
    assert_eq!(cat("/branch/top.txt"), "top\n");
    let files = s.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "addgit:1",
        "sh",
        "-c",
        "ls -a /tagged; test -d /branch/.git && echo git",
    ]);
    assert_eq!(files, ".\n..\nversion.txt\ngit\n");
    assert_eq!(build(), (0, 2), "same commits, same steps");
    std::fs::write(repo.join("top.txt"), "top 2\n").unwrap();
    git(&repo, &["commit", "-q", "-a", "-m", "two"]);
    assert_eq!(build(), (1, 1), "the branch moved: its ADD misses, the tag's stays");
    assert_eq!(cat("/branch/top.txt"), "top 2\n");

    let head =
        std::process::Command::new("git").arg("-C").arg(&repo).args(["rev-parse", "HEAD"]).output().unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let ctx =
        context(&[("Dockerfile", &format!("FROM busybox\nADD --checksum={head} {url}#main /pinned\n"))]);
    s.ok(&["build", "-t", "addgit:2", ctx.path().to_str().unwrap()]);
    let ctx =
        context(&[("Dockerfile", &format!("FROM busybox\nADD --checksum=0123456 {url}#main /pinned\n"))]);
    let line = s.fails(&["build", "-t", "bad", ctx.path().to_str().unwrap()]);
    assert!(line.contains(&format!("expected checksum to match 0123456, got {head}")), "{line}");
}
