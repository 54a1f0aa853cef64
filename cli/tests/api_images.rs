//! Images and builds through `rbuild system service`, judged by the unchanged docker CLI 20.10:
//! `pull` and `push` against a real registry (with a login sent as `X-Registry-Auth`), `tag`,
//! `rmi` (and its conflict), `image prune`, `history`, `save | load`, `commit`, and
//! `docker build` through the classic builder API; rbuild's own CLI must see the same store.

use std::process::Stdio;

use test_support::TestStore;
use test_support::containers::Env;
use test_support::dockerapi::{Service, docker_bin, triple};
use test_support::registry::TestRegistry;

const BIN: &str = env!("CARGO_BIN_EXE_rbuild");

/// `docker args` with extra environment: (exit code, stdout, stderr).
fn docker_env(api: &Service, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut c = api.client(docker_bin());
    for (k, v) in env {
        c.env(k, v);
    }
    triple(c.args(args).stdin(Stdio::null()).output().expect("docker runs"))
}

/// What the service left in the store's `tmp/` (contexts, saved and loaded archives).
fn leftovers(e: &Env) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(e.s.path().join("tmp")) else { return Vec::new() };
    dir.filter_map(|d| d.ok().map(|d| d.file_name().to_string_lossy().into_owned()))
        .filter(|n| ["context-", "save-", "load-"].iter().any(|p| n.starts_with(p)))
        .collect()
}

fn image_names(e: &Env) -> Vec<String> {
    e.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).lines().map(str::to_string).collect()
}

#[test]
fn docker_pull_tag_push_rmi_and_prune_go_through_the_socket() {
    let e = Env::new(BIN);
    let api = Service::start(&e);
    let reg = TestRegistry::start();
    let reference = reg.push_busybox(BIN);

    let out = api.ok(&["pull", &reference]);
    assert!(out.contains("Pulling from bb"), "{out}");
    assert!(out.contains("Digest: sha256:"), "{out}");
    assert!(out.contains(": Pull complete"), "per-layer progress:\n{out}");
    assert!(out.contains(&format!("Status: Downloaded newer image for {reference}")), "{out}");
    assert!(image_names(&e).contains(&reference), "rbuild images sees the pull");
    let out = api.ok(&["pull", &reference]);
    assert!(out.contains(&format!("Status: Image is up to date for {reference}")), "{out}");
    let listed = api.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}", &format!("{}/bb", reg.host())]);
    assert_eq!(listed.trim(), reference, "the reference filter");
    let digests = api.ok(&["images", "--digests", "--format", "{{.Digest}}", &format!("{}/bb", reg.host())]);
    assert!(digests.trim().starts_with("sha256:"), "{digests}");
    let (code, _, err) = api.docker(&["pull", &format!("{}/nosuch:1", reg.host())]);
    assert_ne!(code, 0);
    assert!(!err.trim().is_empty(), "a failed pull says why");

    // tag, then push under the new name; a second store pulls what arrived.
    let pushed = format!("{}/mine:v1", reg.host());
    api.ok(&["tag", "busybox", &pushed]);
    assert!(image_names(&e).contains(&pushed));
    let out = api.ok(&["push", &pushed]);
    assert!(out.contains(&format!("The push refers to repository [{}/mine]", reg.host())), "{out}");
    assert!(out.contains("v1: digest: sha256:"), "{out}");
    let other = TestStore::new(BIN);
    other.ok(&["pull", &pushed]);
    assert_eq!(
        other.ok(&["inspect", "-f", "{{.Id}}", &pushed]),
        e.ok(&["inspect", "-f", "{{.Id}}", "busybox"]),
        "the pushed image is busybox"
    );

    // rmi: refused while a container uses the image, done after.
    e.ok(&["create", "--name", "user", &reference, "true"]);
    let (code, _, err) = api.docker(&["rmi", &reference]);
    assert_eq!(code, 1);
    assert!(err.contains("conflict: unable to remove repository reference"), "{err}");
    e.ok(&["rm", "user"]);
    let out = api.ok(&["rmi", &reference]);
    assert!(out.contains(&format!("Untagged: {reference}")), "{out}");
    assert!(out.contains("Deleted: sha256:"), "{out}");
    assert!(!image_names(&e).contains(&reference));
    let (code, _, err) = api.docker(&["rmi", "nosuch:1"]);
    assert_eq!(code, 1);
    assert!(err.contains("No such image: nosuch:1"), "{err}");

    // prune: a dangling image goes, named ones stay.
    let ctx = test_support::context(&[("Dockerfile", "FROM busybox\nRUN echo dangling > /d\n")]);
    let dangling = e.ok(&["build", "-q", ctx.path().to_str().expect("utf-8 path")]).trim().to_string();
    assert!(e.ok(&["images", "-q", "--no-trunc"]).contains(&dangling));
    let listed = api.ok(&["images", "-q", "--no-trunc", "--filter", "dangling=true"]);
    assert_eq!(listed.trim(), dangling, "the dangling filter");
    let labelled = test_support::context(&[("Dockerfile", "FROM busybox\nLABEL team=api\n")]);
    e.ok(&["build", "-q", "-t", "labelled", labelled.path().to_str().expect("utf-8 path")]);
    let listed = api.ok(&["images", "--format", "{{.Repository}}", "--filter", "label=team=api"]);
    assert_eq!(listed.trim(), "labelled", "the label filter");
    let out = api.ok(&["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {dangling}")), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert!(!e.ok(&["images", "-q", "--no-trunc"]).contains(&dangling));
    assert!(image_names(&e).contains(&"busybox:latest".to_string()));
}

#[test]
fn docker_push_sends_the_login_of_the_client_s_config() {
    let e = Env::new(BIN);
    let api = Service::start(&e);
    let reg = TestRegistry::start_with_htpasswd("alice", "s3cret");
    let target = format!("{}/private:1", reg.host());
    api.ok(&["tag", "busybox", &target]);
    let (code, out, err) = api.docker(&["push", &target]);
    assert_ne!(code, 0, "without a login the registry refuses:\n{out}{err}");
    // What `docker login` would have written: the CLI sends it as X-Registry-Auth.
    let auth = base64_encode("alice:s3cret");
    std::fs::write(
        api.config.path().join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host()),
    )
    .expect("docker config");
    let out = api.ok(&["push", &target]);
    assert!(out.contains("1: digest: sha256:"), "{out}");
    assert!(reg.storage().join("docker/registry/v2/repositories/private").is_dir());
}

fn base64_encode(s: &str) -> String {
    let out =
        std::process::Command::new("base64").arg("-w0").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn();
    let mut child = out.expect("base64 runs");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), s.as_bytes()).expect("write");
    String::from_utf8(child.wait_with_output().expect("base64").stdout).expect("utf-8")
}

#[test]
fn docker_history_save_load_and_commit_go_through_the_socket() {
    let e = Env::new(BIN);
    let api = Service::start(&e);
    let id = e.ok(&["inspect", "-f", "{{.Id}}", "busybox"]);
    // A docker archive holds no manifest (the image ID here), so the config is what survives.
    let config = || e.ok(&["inspect", "-f", "{{.ConfigDigest}}", "busybox"]);
    let config_before = config();

    let history = api.ok(&["history", "--no-trunc", "busybox"]);
    let first = history.lines().nth(1).unwrap_or_default();
    assert!(first.starts_with(id.trim()), "{history}");

    // save | load: the image comes back under its name, with the same ID.
    let (code, out, err) = triple(
        api.client("sh")
            .args(["-c", &format!("{0} save busybox | {0} load", docker_bin().display())])
            .output()
            .expect("sh runs"),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "Loaded image: busybox:latest\n");
    assert_eq!(config(), config_before);
    let tar = e.s.path().join("saved.tar");
    api.ok(&["save", "-o", tar.to_str().expect("utf-8 path"), "busybox"]);
    api.ok(&["rmi", "busybox"]);
    assert!(!image_names(&e).contains(&"busybox:latest".to_string()));
    let out = api.ok(&["load", "-i", tar.to_str().expect("utf-8 path")]);
    assert_eq!(out, "Loaded image: busybox:latest\n");
    assert_eq!(config(), config_before);
    let garbage = e.s.path().join("garbage.tar");
    std::fs::write(&garbage, b"not an archive").expect("a file");
    let (code, _, err) = api.docker(&["load", "-i", garbage.to_str().expect("utf-8 path")]);
    assert_ne!(code, 0);
    assert!(!err.trim().is_empty(), "a bad archive says why");
    let (code, _, err) = api.docker(&["save", "nosuch:1"]);
    assert_ne!(code, 0);
    assert!(err.contains("No such image"), "{err}");

    // commit: the container's changed file and a -c change make the new image.
    e.ok(&["run", "--name", "snapsrc", "--network", "none", "busybox", "sh", "-c", "echo committed > /made"]);
    let out = api.ok(&[
        "commit",
        "-c",
        "CMD [\"cat\", \"/made\"]",
        "-m",
        "by the API",
        "-a",
        "tester",
        "snapsrc",
        "snap:1",
    ]);
    assert!(out.trim().starts_with("sha256:"), "{out}");
    assert_eq!(e.ok(&["run", "--rm", "--network", "none", "snap:1"]), "committed\n");
    assert_eq!(api.ok(&["inspect", "-f", "{{.Author}} {{.Comment}}", "snap:1"]).trim(), "tester by the API");
    let (code, _, err) = api.docker(&["commit", "nosuch", "x:1"]);
    assert_ne!(code, 0);
    assert!(err.contains("No such container"), "{err}");
    assert_eq!(leftovers(&e), Vec::<String>::new(), "save and load leave nothing in tmp/");
    e.ok(&["rm", "-f", "snapsrc"]);

    // import: a root filesystem tar in the body.
    let rootfs = e.s.path().join("rootfs.tar");
    test_support::write_busybox_rootfs_tar(&rootfs).expect("a rootfs tar");
    let out = api.ok(&[
        "import",
        "-c",
        "CMD [\"echo\", \"imported\"]",
        "-m",
        "from a tar",
        rootfs.to_str().expect("utf-8 path"),
        "imp:1",
    ]);
    assert_eq!(out.trim(), e.ok(&["inspect", "-f", "{{.Id}}", "imp:1"]).trim());
    assert_eq!(e.ok(&["run", "--rm", "--network", "none", "imp:1"]), "imported\n");
    assert_eq!(api.ok(&["inspect", "-f", "{{.Comment}}", "imp:1"]).trim(), "from a tar");
}

#[test]
fn docker_build_uses_the_classic_builder_api() {
    let e = Env::new(BIN);
    let api = Service::start(&e);
    let classic = [("DOCKER_BUILDKIT", "0")];
    let ctx = test_support::context(&[
        (
            "Dockerfile",
            "FROM busybox\nARG WHO=nobody\nCOPY greeting.txt /greeting.txt\nRUN echo \"built for $WHO\" > /who.txt && echo running\nCMD cat /greeting.txt /who.txt\n",
        ),
        ("greeting.txt", "hello\n"),
        (
            "sub/Other.Dockerfile",
            "FROM busybox AS first\nRUN echo first > /f\nFROM busybox AS second\nRUN echo second > /s\nCMD [\"cat\", \"/s\"]\nFROM first\n",
        ),
        ("fail/Dockerfile", "FROM busybox\nRUN echo about to fail && exit 3\n"),
    ]);
    let dir = ctx.path().to_str().expect("utf-8 path");
    // A context larger than a body limit would allow: it is streamed, not buffered.
    std::fs::write(ctx.path().join("big.bin"), vec![b'x'; 6 << 20]).expect("a big file");

    let (code, out, err) = docker_env(&api, &classic, &["build", "-t", "x", "--build-arg", "WHO=api", dir]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Step 1/5 : FROM busybox"), "{out}");
    assert!(out.contains("running\n"), "a RUN's output is shown:\n{out}");
    assert!(out.contains("Successfully built "), "{out}");
    assert!(out.contains("Successfully tagged x:latest"), "{out}");
    assert_eq!(e.ok(&["run", "--rm", "--network", "none", "x"]), "hello\nbuilt for api\n");
    let (code, out, _) = docker_env(&api, &classic, &["build", "-t", "x", "--build-arg", "WHO=api", dir]);
    assert_eq!(code, 0);
    assert!(out.contains("Using cache"), "{out}");

    // Without DOCKER_BUILDKIT the 20.10 CLI picks the classic builder too.
    let (code, out, err) = docker_env(&api, &[], &["build", "-q", "-t", "x2", dir]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.trim().starts_with("sha256:"), "{out}");
    assert_eq!(out.trim(), e.ok(&["inspect", "-f", "{{.Id}}", "x2"]).trim());

    // -f in a subdirectory, and --target.
    let other = format!("{dir}/sub/Other.Dockerfile");
    let (code, out, err) =
        docker_env(&api, &classic, &["build", "-f", &other, "--target", "second", "-t", "y", dir]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(e.ok(&["run", "--rm", "--network", "none", "y"]), "second\n");

    // A failing RUN: the client exits non-zero with the error.
    let (code, out, err) = docker_env(&api, &classic, &["build", "-t", "z", &format!("{dir}/fail")]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(out.contains("about to fail"), "{out}");
    assert!(err.contains("exit"), "{err}");
    assert!(!image_names(&e).contains(&"z:latest".to_string()));

    // BuildKit's session is refused (the 20.10 CLI shows the status, not the message).
    let (code, out, err) = docker_env(&api, &[("DOCKER_BUILDKIT", "1")], &["build", "-t", "w", dir]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("received 501"), "{out}{err}");
    assert!(e.ok(&["ps", "-a", "-q"]).is_empty(), "no build container left");
    assert_eq!(leftovers(&e), Vec::<String>::new(), "the contexts are removed");
}

/// `[gc] keep-storage` of the store's rbuild.toml holds for builds through the socket as for
/// the CLI's: four builds of one tag, each adding 5 MB that cannot be compressed, in a store
/// limited to 24MB.
#[test]
fn docker_build_keeps_the_store_within_its_configured_limit() {
    const LIMIT: u64 = 24 << 20;
    let e = Env::new(BIN);
    std::fs::write(e.s.path().join("rbuild.toml"), "[gc]\nkeep-storage = \"24MB\"\n").expect("rbuild.toml");
    let api = Service::start(&e);
    let ctx = test_support::context(&[(
        "Dockerfile",
        "FROM busybox\nARG N\nRUN head -c 5000000 /dev/urandom > /big && echo $N > /n\n",
    )]);
    let dir = ctx.path().to_str().expect("utf-8 path");
    let mut pruned = 0;
    for n in 0..4 {
        let arg = format!("N={n}");
        let (code, out, err) = docker_env(
            &api,
            &[("DOCKER_BUILDKIT", "0")],
            &["build", "--network", "none", "--build-arg", &arg, "-t", "app", dir],
        );
        assert_eq!(code, 0, "build {n}:\n{out}{err}");
        let size = e.s.size_by_du();
        assert!(size <= LIMIT, "after build {n}: the store is {size} bytes, over {LIMIT}:\n{out}");
        if out.contains("rbuild: store over its 24MB limit: Deleted ") {
            pruned += 1;
        }
        assert!(!out.contains("WARNING"), "build {n}:\n{out}");
    }
    assert!(pruned >= 2, "the limit pruned the store after {pruned} of 4 builds");
    assert_eq!(
        e.ok(&["run", "--rm", "--network", "none", "app", "sh", "-c", "wc -c < /big; cat /n"]),
        "5000000\n3\n"
    );
    assert_eq!(e.ok(&["system", "verify"]), "store verified: no problems\n");
}

#[test]
fn docker_py_builds_from_a_file_object_and_tags_through_the_socket() {
    let e = Env::new(BIN);
    let api = Service::start(&e);
    let script = r#"
import io, docker
c = docker.from_env()
df = io.BytesIO(b'FROM busybox\nRUN echo from-py > /py\nCMD ["cat", "/py"]\n')
image, logs = c.images.build(fileobj=df, tag="pyimg:1", rm=True)
print("built", image.id)
print("steps", sum(1 for l in logs if l.get("stream", "").startswith("Step ")))
image.tag("pyimg", "2")
print("tags", sorted(c.images.get("pyimg:2").tags))
try:
    c.images.build(fileobj=io.BytesIO(b'FROM busybox\nRUN exit 7\n'), tag="pybad:1")
except docker.errors.BuildError as err:
    print("failed", "exit" in str(err))
"#;
    let (code, out, err) = triple(api.client("python3").args(["-c", script]).output().expect("python3 runs"));
    assert_eq!(code, 0, "{out}{err}");
    let id = e.ok(&["inspect", "-f", "{{.Id}}", "pyimg:1"]);
    assert!(out.contains(&format!("built {}", id.trim())), "{out}");
    assert!(out.contains("steps 3"), "{out}");
    assert!(out.contains("tags ['pyimg:1', 'pyimg:2']"), "{out}");
    assert!(out.contains("failed True"), "{out}");
    assert_eq!(e.ok(&["run", "--rm", "--network", "none", "pyimg:2"]), "from-py\n");
}
