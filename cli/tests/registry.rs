//! `rbuild push/pull`, FROM of a registry image, and the build cache shared through a registry
//! or a directory (the build-farm case), against Debian's docker-registry on 127.0.0.1.

use test_support::registry::TestRegistry;
use test_support::{TestStore, context};

fn store() -> TestStore {
    TestStore::new(env!("CARGO_BIN_EXE_rbuild"))
}

fn seed_base(reg: &TestRegistry) -> String {
    reg.push_busybox(env!("CARGO_BIN_EXE_rbuild"))
}

fn build(s: &TestStore, args: &[&str]) -> String {
    let out = s.run(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "rbuild {args:?} failed:\n{err}");
    err
}

fn digest_of(s: &TestStore, image: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", image])).unwrap();
    json[0]["Id"].as_str().unwrap().to_string()
}

#[test]
fn push_then_pull_into_an_empty_store_and_run() {
    let reg = TestRegistry::start();
    let reference = seed_base(&reg);
    let b = store();
    let out = b.ok(&["pull", &reference]);
    assert!(out.contains("Digest: sha256:"), "{out}");
    assert_eq!(b.ok(&["run", "--rm", &reference, "echo", "pulled"]), "pulled\n");
    // A registry that is down: one line, non-zero.
    let out = b.run(&["pull", "127.0.0.1:1/nothing:1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot reach 127.0.0.1:1"), "{err}");
}

#[test]
fn from_a_registry_image_pulls_it() {
    let reg = TestRegistry::start();
    let reference = seed_base(&reg);
    let s = store();
    let ctx = context(&[("Dockerfile", &format!("FROM {reference}\nRUN echo built > /f\n"))]);
    build(&s, &["build", "-t", "app:1", ctx.path().to_str().unwrap()]);
    assert_eq!(s.ok(&["run", "--rm", "app:1", "cat", "/f"]), "built\n");
}

const FARM_DOCKERFILE: &str = "FROM {base} AS builder\nRUN echo compiled > /out && sleep 0.2\n\
     FROM {base}\nCOPY --from=builder /out /app/out\nRUN cat /app/out > /app/copy\nCMD [\"cat\", \"/app/copy\"]\n";

/// Store A builds with `--cache-to`, store B (empty) with `--cache-from`: every step is cached,
/// nothing runs, and the image digest is A's.
fn build_farm(cache_to: &str, cache_from: &str, reg: &TestRegistry) {
    let base = seed_base(reg);
    let dockerfile = FARM_DOCKERFILE.replace("{base}", &base);
    let ctx = context(&[("Dockerfile", &dockerfile)]);
    let ctx = ctx.path().to_str().unwrap();

    let a = store();
    let err = build(&a, &["build", "--progress=plain", "-t", "farm:1", "--cache-to", cache_to, ctx]);
    assert!(err.contains("exported build cache"), "{err}");
    let a_digest = digest_of(&a, "farm:1");

    let b = store();
    let err = build(&b, &["build", "--progress=plain", "-t", "farm:1", "--cache-from", cache_from, ctx]);
    assert!(err.contains("(0 steps run,"), "store B ran steps:\n{err}");
    assert!(!err.contains("] | "), "a RUN executed in store B:\n{err}");
    assert_eq!(digest_of(&b, "farm:1"), a_digest);
    assert_eq!(b.ok(&["run", "--rm", "farm:1"]), "compiled\n");
    assert_eq!(b.ok(&["system", "verify"]), "store verified: no problems\n");
}

#[test]
fn a_build_farm_shares_its_cache_through_a_registry() {
    let reg = TestRegistry::start();
    let cache = format!("{}/cache/farm:1", reg.host());
    build_farm(&format!("type=registry,ref={cache},mode=max"), &format!("type=registry,ref={cache}"), &reg);
}

#[test]
fn a_build_farm_shares_its_cache_through_a_directory() {
    let reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("cache");
    let d = d.to_str().unwrap();
    build_farm(&format!("type=local,dest={d},mode=max"), &format!("type=local,src={d}"), &reg);
}

#[test]
fn an_unreadable_cache_source_is_a_warning_and_bad_flags_are_errors() {
    let s = store();
    s.import_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN echo ok\n")]);
    let ctx = ctx.path().to_str().unwrap();
    let err = build(&s, &["build", "--cache-from", "type=local,src=/nonexistent/cache", ctx]);
    assert!(err.contains("warning: --cache-from type=local,src=/nonexistent/cache"), "{err}");
    for (flag, value, expect) in [
        ("--cache-to", "type=gha", "not supported"),
        ("--cache-to", "type=s3,region=eu-west-1", "needs bucket="),
        ("--cache-to", "type=inline,mode=max", "target stage's steps only"),
        ("--cache-to", "type=local", "needs dest="),
        ("--cache-from", "type=local", "needs src="),
        ("--compression", "brotli", "gzip, zstd or uncompressed"),
    ] {
        let out = s.run(&["build", flag, value, ctx]);
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {e}");
        assert_eq!(e.lines().count(), 1, "{flag} {value}: {e}");
        assert!(e.contains(expect), "{flag} {value}: {e}");
    }
}

#[test]
fn the_same_source_date_epoch_gives_the_same_digest() {
    let s = store();
    s.import_busybox();
    // Timestamps are clamped; the RUN's content itself must be the same run to run.
    let ctx = context(&[
        ("Dockerfile", "FROM busybox\nCOPY f /f\nRUN echo same > /r && mkdir -p /x/y && ln -s /f /x/l\n"),
        ("f", "content\n"),
    ]);
    let ctx = ctx.path().to_str().unwrap();
    let mut digests = Vec::new();
    for compression in ["gzip", "gzip", "zstd", "zstd"] {
        let out = s
            .cmd()
            .args(["build", "--no-cache", "-q", "--compression", compression, ctx])
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        digests.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    assert_eq!(digests[0], digests[1], "gzip builds differ");
    assert_eq!(digests[2], digests[3], "zstd builds differ");
    assert_ne!(digests[0], digests[2]);
    let created = &s.config(&digests[0])["created"];
    assert_eq!(created, "2023-11-14T22:13:20Z");
}

/// Runs a command (skopeo, umoci, tar), panicking with its stderr unless it succeeds; returns
/// stdout.
fn tool(program: &str, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (scripts/test.sh installs it): {e}"));
    assert!(out.status.success(), "{program} {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// `skopeo inspect --raw` of `reference` on the test registry: the manifest or index bytes.
fn raw_manifest(reference: &str) -> Vec<u8> {
    tool("skopeo", &["inspect", "--tls-verify=false", "--raw", &format!("docker://{reference}")])
}

fn blob_path(dir: &std::path::Path, digest: &str) -> std::path::PathBuf {
    dir.join("blobs/sha256").join(digest.strip_prefix("sha256:").unwrap())
}

/// Puts a two-platform busybox (linux/amd64 and linux/arm64: the same layer, configs that
/// differ in `architecture`) into `reg` as `multi:1` with `skopeo copy --all` from an OCI layout
/// made from `rbuild save --format oci`. Returns the reference.
fn seed_multi_platform(reg: &TestRegistry) -> String {
    let s = store();
    s.import_busybox();
    let layout = tempfile::tempdir().unwrap();
    let tar = layout.path().join("busybox.tar");
    s.ok(&["save", "--format", "oci", "-o", tar.to_str().unwrap(), "busybox:latest"]);
    let dir = layout.path().join("oci");
    std::fs::create_dir(&dir).unwrap();
    tool("tar", &["-xf", tar.to_str().unwrap(), "-C", dir.to_str().unwrap()]);
    let read = |digest: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(blob_path(&dir, digest)).unwrap()).unwrap()
    };
    let write = |bytes: &[u8]| -> (String, usize) {
        let digest = cache::Digest::of(bytes).to_string();
        std::fs::write(blob_path(&dir, &digest), bytes).unwrap();
        (digest, bytes.len())
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest = read(index["manifests"][0]["digest"].as_str().unwrap());
    let config = read(manifest["config"]["digest"].as_str().unwrap());
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let mut config = config.clone();
        config["architecture"] = arch.into();
        let (config_digest, config_size) = write(&serde_json::to_vec(&config).unwrap());
        let mut manifest = manifest.clone();
        manifest["config"]["digest"] = config_digest.into();
        manifest["config"]["size"] = config_size.into();
        let (digest, size) = write(&serde_json::to_vec(&manifest).unwrap());
        entries.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size,
            "platform": { "architecture": arch, "os": "linux" },
        }));
    }
    let multi = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    let (digest, size) = write(&serde_json::to_vec(&multi).unwrap());
    let layout_index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest, "size": size,
            "annotations": { "org.opencontainers.image.ref.name": "multi" },
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&layout_index).unwrap()).unwrap();
    let reference = format!("{}/multi:1", reg.host());
    let src = format!("oci:{}:multi", dir.display());
    tool("skopeo", &["copy", "--all", "--dest-tls-verify=false", &src, &format!("docker://{reference}")]);
    reference
}

#[test]
fn a_multi_platform_image_pulls_one_platform_or_all_and_pushes_back_the_same_index() {
    let reg = TestRegistry::start();
    let multi = seed_multi_platform(&reg);
    let index_bytes = raw_manifest(&multi);
    let index_digest = cache::Digest::of(&index_bytes).to_string();
    let index: serde_json::Value = serde_json::from_slice(&index_bytes).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "skopeo pushed the index");

    // One platform: --platform picks it; the name points at that platform's manifest.
    let one = store();
    for arch in ["arm64", "amd64"] {
        let digest = one.ok(&["pull", "-q", "--platform", &format!("linux/{arch}"), &multi]);
        let listed =
            index["manifests"].as_array().unwrap().iter().find(|m| m["platform"]["architecture"] == arch);
        assert_eq!(digest.trim(), listed.unwrap()["digest"].as_str().unwrap());
        assert_eq!(one.config(&multi)["architecture"], arch);
    }
    let out = one.run(&["pull", "--platform", "linux/s390x", &multi]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no image for platform linux/s390x (the index has: linux/amd64, linux/arm64)"),
        "{err}"
    );

    // Every platform: the name points at the index; run uses this host's platform; push sends
    // both manifests and then the index, byte for byte.
    let all = store();
    let out = all.ok(&["pull", "--all-platforms", &multi]);
    assert!(out.contains("linux/arm64: sha256:") && out.contains("linux/amd64: sha256:"), "{out}");
    assert!(out.contains(&format!("Digest: {index_digest}")), "{out}");
    assert_eq!(all.ok(&["run", "--rm", &multi, "echo", "from the index"]), "from the index\n");
    let host_arch = if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" };
    assert_eq!(all.config(&multi)["architecture"], host_arch);
    assert_eq!(all.ok(&["system", "verify"]), "store verified: no problems\n");
    let copy = format!("{}/copy:1", reg.host());
    let pushed = all.ok(&["push", "-q", &multi, &copy]);
    assert_eq!(pushed.trim(), index_digest);
    assert_eq!(raw_manifest(&copy), index_bytes, "the pushed index differs from the pulled one");
    for m in index["manifests"].as_array().unwrap() {
        let by_digest = format!("{}/copy@{}", reg.host(), m["digest"].as_str().unwrap());
        assert_eq!(cache::Digest::of(&raw_manifest(&by_digest)).to_string(), m["digest"].as_str().unwrap());
    }
    // And what was pushed pulls back as a whole.
    let again = store();
    assert_eq!(again.ok(&["pull", "-q", "-a", &copy]).trim(), index_digest);
    assert_eq!(again.ok(&["system", "verify"]), "store verified: no problems\n");
}

#[test]
fn an_image_rbuild_pushes_is_copied_by_skopeo_and_unpacked_by_umoci() {
    let reg = TestRegistry::start();
    let s = store();
    s.import_busybox();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY hello.txt /srv/hello.txt\nRUN echo ran > /srv/ran && rm /etc/group\n",
        ),
        ("hello.txt", "hello from rbuild\n"),
    ]);
    build(&s, &["build", "-t", "interop:1", ctx.path().to_str().unwrap()]);
    let reference = format!("{}/x:1", reg.host());
    s.ok(&["push", "interop:1", &reference]);

    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let layout_ref = format!("{}:x", layout.display());
    tool(
        "skopeo",
        &["copy", "--src-tls-verify=false", &format!("docker://{reference}"), &format!("oci:{layout_ref}")],
    );
    let bundle = work.path().join("bundle");
    let mut args = vec!["unpack", "--image", &layout_ref, bundle.to_str().unwrap()];
    let root = String::from_utf8_lossy(&tool("id", &["-u"])).trim() == "0";
    if !root {
        args.insert(1, "--rootless");
    }
    tool("umoci", &args);
    let rootfs = bundle.join("rootfs");
    assert_eq!(std::fs::read_to_string(rootfs.join("srv/hello.txt")).unwrap(), "hello from rbuild\n");
    assert_eq!(std::fs::read_to_string(rootfs.join("srv/ran")).unwrap(), "ran\n");
    assert!(rootfs.join("bin/busybox").is_file());
    assert!(rootfs.join("etc/passwd").is_file());
    assert!(!rootfs.join("etc/group").exists(), "the whiteout of /etc/group was not applied");
    assert_eq!(std::fs::read_link(rootfs.join("bin/sh")).unwrap(), std::path::Path::new("/bin/busybox"));
}

/// Runs rbuild with its credentials kept in `home` (XDG_CONFIG_HOME and DOCKER_CONFIG), so
/// a login never touches the user's files.
fn run_in(s: &TestStore, home: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = s
        .cmd()
        .args(args)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("DOCKER_CONFIG", home.join("docker"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Every name in the store with the digest it points at.
fn names(s: &TestStore) -> String {
    s.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}"])
}

/// The command failed with exit code 1 and one error line on stderr, the last, containing
/// `expect` (progress lines of blobs that did move may come before it), and left no new name
/// and nothing broken in the store.
fn fails_cleanly(s: &TestStore, out: &std::process::Output, expect: &str, images_before: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("rbuild: error: ")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert_eq!(err.lines().last(), Some(errors[0]), "{err}");
    assert!(errors[0].contains(expect), "expected {expect:?} in: {err}");
    assert_eq!(names(s), images_before, "the store changed");
    assert_eq!(s.ok(&["system", "verify"]), "store verified: no problems\n");
}

#[test]
fn pull_and_push_failures_are_one_line_and_store_nothing() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let s = store();
    s.import_busybox();
    let before = names(&s);
    assert!(before.contains("busybox:latest sha256:"), "{before}");

    // A registry that is down.
    let out = run_in(&s, home, &["pull", "127.0.0.1:1/down:1"], "");
    fails_cleanly(&s, &out, "cannot reach 127.0.0.1:1", &before);
    let out = run_in(&s, home, &["push", "busybox:latest", "127.0.0.1:1/down:1"], "");
    fails_cleanly(&s, &out, "cannot reach 127.0.0.1:1", &before);

    // A manifest the registry does not have.
    let reg = TestRegistry::start();
    let out = run_in(&s, home, &["pull", &format!("{}/nothing:1", reg.host())], "");
    fails_cleanly(&s, &out, &format!("manifest unknown: {}/nothing:1", reg.host()), &before);
    let out = run_in(&s, home, &["pull", "--all-platforms", &format!("{}/nothing:1", reg.host())], "");
    fails_cleanly(&s, &out, "manifest unknown", &before);

    // A layer tampered with on the registry's disk: verification fails, nothing is stored.
    let reference = seed_base(&reg);
    let manifest: serde_json::Value = serde_json::from_slice(&raw_manifest(&reference)).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_string();
    let path = reg.blob_data_path(&layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let fresh = store();
    let empty = names(&fresh);
    let out = run_in(&fresh, home, &["pull", &reference], "");
    fails_cleanly(&fresh, &out, &format!("blob {layer} from {}/bb failed verification", reg.host()), &empty);
    let out = run_in(&fresh, home, &["pull", "-a", &reference], "");
    fails_cleanly(&fresh, &out, "failed verification", &empty);
    assert!(!fresh.path().join("blobs/sha256").join(&layer["sha256:".len()..]).exists());

    // A registry with htpasswd auth: 401 without a login, then login and the push works.
    let secured = TestRegistry::start_with_htpasswd("ci", "s3cret");
    let target = format!("{}/team/app:1", secured.host());
    let out = run_in(&s, home, &["push", "busybox:latest", &target], "");
    fails_cleanly(&s, &out, &format!("unauthorized: pushing {target}"), &before);
    let out = run_in(&s, home, &["pull", &target], "");
    fails_cleanly(&s, &out, "unauthorized", &before);
    let out = run_in(&s, home, &["login", &secured.host(), "-u", "ci", "--password-stdin"], "wrong\n");
    fails_cleanly(&s, &out, "unauthorized", &before);
    let out = run_in(&s, home, &["login", &secured.host(), "-u", "ci", "--password-stdin"], "s3cret\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(home.join("config/rbuild/auth.json").is_file());
    assert!(!home.join("docker/config.json").exists(), "login wrote Docker's file");
    let out = run_in(&s, home, &["push", "-q", "busybox:latest", &target], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pushed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let other = store();
    let out = run_in(&other, home, &["pull", "-q", &target], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), pushed);
}

/// The air-gapped machine's setup: the config names the test registry as Docker Hub's mirror
/// and blocks Docker Hub. Short names then behave as with docker: `FROM busybox` and `run
/// busybox` pull `docker.io/library/busybox` (from the mirror) on first use only; `--pull=never`
/// refuses what the store lacks; `--pull=always` sees a tag that moved in the registry.
#[test]
fn short_names_pull_from_the_configured_mirror_as_the_pull_policy_says() {
    let reg = TestRegistry::start();
    // The mirror holds library/busybox, as a mirror of Docker Hub does.
    let seed = store();
    seed.import_busybox();
    seed.ok(&["push", "busybox:latest", &format!("{}/library/busybox:latest", reg.host())]);
    let manifest_gets = || reg.log().matches("GET /v2/library/busybox/manifests/latest").count();

    let mut s = store();
    s.use_hub_mirror(&reg.host());
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN echo from-mirror > /f\n")]);
    let ctx = ctx.path().to_str().unwrap();
    build(&s, &["build", "-t", "app:1", ctx]);
    assert_eq!(manifest_gets(), 1, "pulled on first use");
    assert!(s.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).contains("busybox:latest"));
    assert_eq!(s.ok(&["run", "--rm", "app:1", "cat", "/f"]), "from-mirror\n");
    build(&s, &["build", "--no-cache", "-t", "app:1", ctx]);
    assert_eq!(s.ok(&["run", "--rm", "busybox", "true"]), "");
    assert_eq!(manifest_gets(), 1, "not pulled again: the store has it");

    // run/create in another store pull too.
    let mut r = store();
    r.use_hub_mirror(&reg.host());
    assert_eq!(r.ok(&["run", "--rm", "busybox", "echo", "ran"]), "ran\n");
    assert_eq!(manifest_gets(), 2);

    // --pull=never: one line, nothing pulled, nothing named.
    let mut n = store();
    n.use_hub_mirror(&reg.host());
    let e = n.fails(&["build", "--pull=never", ctx]);
    assert!(e.contains("image \"busybox\" is not in the store and --pull=never forbids pulling it"), "{e}");
    let e = n.fails(&["run", "--pull", "never", "busybox", "true"]);
    assert!(e.ends_with("--pull=never forbids pulling it"), "{e}");
    assert_eq!(manifest_gets(), 2);
    assert_eq!(n.ok(&["images", "-q"]), "");

    // The tag moves in the registry: --pull (always) sees it, the default does not.
    let moved = store();
    moved.import_busybox();
    let c = context(&[("Dockerfile", "FROM busybox\nRUN echo moved > /moved\n")]);
    moved.ok(&["build", "-t", "busybox:latest", c.path().to_str().unwrap()]);
    moved.ok(&["push", "busybox:latest", &format!("{}/library/busybox:latest", reg.host())]);
    let check = context(&[("Dockerfile", "FROM busybox\nRUN (cat /moved 2>/dev/null || echo old) > /r\n")]);
    let check = check.path().to_str().unwrap();
    build(&s, &["build", "-t", "check:1", check]);
    assert_eq!(s.ok(&["run", "--rm", "check:1", "cat", "/r"]), "old\n", "the stored base is used");
    build(&s, &["build", "--pull", "-t", "check:2", check]);
    assert_eq!(s.ok(&["run", "--rm", "check:2", "cat", "/r"]), "moved\n");

    // A blocked Docker Hub without a mirror: one line naming the config.
    let b = store();
    let e = b.fails(&["pull", "busybox"]);
    assert!(e.contains("docker.io is blocked in ") && e.contains("offline.toml"), "{e}");
}

/// `build --push` (and `-o type=image,push=true`) lands the image in the registry under its
/// `-t` names: another store pulls the same digest; without a name it fails before building.
/// `--annotation`s are on the pushed manifest, as skopeo reads it.
#[test]
fn build_push_lands_in_the_registry_with_its_annotations() {
    let reg = TestRegistry::start();
    let s = store();
    s.import_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN echo pushed > /p\n")]);
    let dir = ctx.path().to_str().unwrap();
    let name = format!("{}/built/app:1", reg.host());
    let other = format!("{}/built/other:2", reg.host());
    let err = build(
        &s,
        &[
            "build",
            "--push",
            "-t",
            &name,
            "--annotation",
            "org.opencontainers.image.source=https://example.invalid/app",
            "--annotation",
            "manifest:team=builders",
            dir,
        ],
    );
    assert!(err.contains(&format!("pushed {name}: digest: sha256:")), "{err}");
    let manifest: serde_json::Value = serde_json::from_slice(&raw_manifest(&name)).unwrap();
    assert_eq!(
        manifest["annotations"],
        serde_json::json!({"org.opencontainers.image.source": "https://example.invalid/app", "team": "builders"})
    );
    let e = s.fails(&["build", "--annotation", "index:a=b", dir]);
    assert!(e.contains("\"index:a=b\": a single-platform image has a manifest only (no index)"), "{e}");
    let digest = digest_of(&s, &name);
    build(&s, &["build", "-o", &format!("type=image,name={other},push=true"), dir]);
    let plain = digest_of(&s, &other);
    assert_ne!(plain, digest, "annotations are part of the manifest, so of its digest");

    let fresh = store();
    fresh.ok(&["pull", &name]);
    fresh.ok(&["pull", &other]);
    assert_eq!(digest_of(&fresh, &name), digest);
    assert_eq!(digest_of(&fresh, &other), plain);
    assert_eq!(fresh.ok(&["run", "--rm", &name, "cat", "/p"]), "pushed\n");

    let e = s.fails(&["build", "--push", dir]);
    assert_eq!(e, "rbuild: error: --push: the image has no name to push to (give -t NAME)");
}
