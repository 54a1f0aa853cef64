//! Multi-platform images: `build --platform linux/amd64,linux/arm64` into one image index, foreign
//! RUN steps and containers through QEMU user emulation (binfmt_misc entries rbuild registers
//! from Debian's qemu-user-static), the index pushed to Debian's docker-registry on 127.0.0.1
//! and checked with skopeo, pulled and run by platform.
//!
//! The base images are made here from Debian's static busybox of each architecture
//! (`scripts/foreign-busybox.sh`), in a `FROM scratch` build that is itself multi-platform.

use std::path::Path;

use serde_json::Value;
use test_support::registry::TestRegistry;
use test_support::{TestStore, context};

fn store() -> TestStore {
    TestStore::new(env!("CARGO_BIN_EXE_rbuild"))
}

/// This machine's architecture, Go's spelling.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `uname -m` of each architecture (QEMU reports the CPU it emulates).
fn uname(goarch: &str) -> &'static str {
    match goarch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "arm" => "armv7l",
        "386" => "x86_64",
        other => panic!("no uname for {other}"),
    }
}

/// The busybox binaries of `arches`, or `None` after printing why the test is skipped.
fn busyboxes(arches: &[&str]) -> Option<Vec<(String, std::path::PathBuf)>> {
    if !test_support::kernel_has_binfmt_misc() {
        test_support::skip_unless_ci("this kernel has no binfmt_misc (CONFIG_BINFMT_MISC)");
        return None;
    }
    if !Path::new("/usr/bin/qemu-aarch64-static").exists() {
        test_support::skip_unless_ci("qemu-user-static is not installed (scripts/test.sh installs it)");
        return None;
    }
    let mut out = Vec::new();
    for a in arches {
        match test_support::foreign_busybox(a) {
            Some(p) => out.push((a.to_string(), p)),
            None => {
                test_support::skip_unless_ci(&format!("no busybox for {a}: run scripts/foreign-busybox.sh"));
                return None;
            }
        }
    }
    Some(out)
}

/// A `FROM scratch` busybox for each platform of `arches`: `busybox-<arch>` in the context.
const BASE: &str = "FROM scratch\nARG TARGETARCH\nCOPY busybox-$TARGETARCH /bin/busybox\n\
                    RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n";

fn base_context(bins: &[(String, std::path::PathBuf)], dockerfile: &str) -> tempfile::TempDir {
    let ctx = context(&[("Dockerfile", dockerfile)]);
    for (arch, path) in bins {
        std::fs::copy(path, ctx.path().join(format!("busybox-{arch}"))).expect("copy busybox");
    }
    ctx
}

fn build(s: &TestStore, args: &[&str]) -> String {
    let out = s.run(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "rbuild {args:?} failed:\n{err}");
    err
}

fn inspect(s: &TestStore, image: &str) -> Value {
    let v: Value = serde_json::from_str(&s.ok(&["inspect", image])).expect("inspect is JSON");
    v[0].clone()
}

/// Platform -> manifest digest of a multi-platform image, from `inspect`'s `Manifests`.
fn manifests(s: &TestStore, image: &str) -> Vec<(String, String)> {
    let v = inspect(s, image);
    let list = v["Manifests"].as_array().unwrap_or_else(|| panic!("{image} is no index: {v}"));
    list.iter()
        .map(|m| {
            let p = &m["Descriptor"]["platform"];
            let mut name = format!("{}/{}", p["os"].as_str().unwrap(), p["architecture"].as_str().unwrap());
            if let Some(v) = p["variant"].as_str() {
                name = format!("{name}/{v}");
            }
            (name, m["ID"].as_str().unwrap().to_string())
        })
        .collect()
}

fn steps_run(stderr: &str) -> usize {
    let line =
        stderr.lines().find(|l| l.starts_with("writing image index")).unwrap_or_else(|| panic!("{stderr}"));
    let (_, rest) = line.split_once('(').unwrap();
    rest.split(' ').next().unwrap().parse().unwrap()
}

/// The first check, whole: two platforms in one index whose `/arch` files say what ran
/// them; the pushed index lists both platforms for skopeo, which pulls each by platform; a
/// rebuild is all cache hits; changing a file only arm64 reads rebuilds only arm64's steps.
#[test]
fn two_platforms_make_one_index_that_registries_and_skopeo_understand() {
    let host = host_arch();
    let other = if host == "amd64" { "arm64" } else { "amd64" };
    let Some(bins) = busyboxes(&[host, other]) else { return };
    let platforms = format!("linux/{host},linux/{other}");
    let ctx = base_context(&bins, &format!("{BASE}RUN uname -m > /arch\n"));
    let dir = ctx.path().to_str().unwrap();
    let s = store();
    let err = build(&s, &["build", "--platform", &platforms, "-t", "mp:1", dir]);
    assert!(err.contains(&format!("[linux/{other} stage-0 4/5]")), "steps are named by platform:\n{err}");
    let list = manifests(&s, "mp:1");
    let names: Vec<&str> = list.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, [format!("linux/{host}"), format!("linux/{other}")]);
    for arch in [host, other] {
        let p = format!("linux/{arch}");
        assert_eq!(
            s.ok(&["run", "--rm", "--platform", &p, "mp:1", "cat", "/arch"]),
            format!("{}\n", uname(arch))
        );
        let v = inspect(&s, &list.iter().find(|(q, _)| *q == p).unwrap().1);
        assert_eq!(v["Architecture"], arch, "the image config says its platform");
    }
    // Without --platform the host's image runs.
    assert_eq!(s.ok(&["run", "--rm", "mp:1", "cat", "/arch"]), format!("{}\n", uname(host)));

    // A rebuild is all cache hits, and gives the same index.
    let err = build(&s, &["build", "--platform", &platforms, "-t", "mp:1", dir]);
    assert_eq!(steps_run(&err), 0, "{err}");
    assert_eq!(manifests(&s, "mp:1"), list);

    // A file only the other platform reads: only its steps run again (COPY and two RUNs).
    let mut f =
        std::fs::OpenOptions::new().append(true).open(ctx.path().join(format!("busybox-{other}"))).unwrap();
    std::io::Write::write_all(&mut f, b"\0").unwrap();
    let err = build(&s, &["build", "--platform", &platforms, "-t", "mp:1", dir]);
    assert_eq!(steps_run(&err), 3, "{err}");
    let after = manifests(&s, "mp:1");
    assert_eq!(after[0], list[0], "the host's image is untouched");
    assert_ne!(after[1].1, list[1].1);

    // Pushed: the index and both manifests; skopeo sees both platforms and copies each.
    let reg = TestRegistry::start();
    let remote = format!("{}/mp:1", reg.host());
    let descriptor_note = format!("manifest-descriptor[linux/{other}]:org.example.note={other} only");
    build(
        &s,
        &[
            "build",
            "--platform",
            &platforms,
            "-t",
            &remote,
            "--push",
            "--annotation",
            "index:org.opencontainers.image.description=both",
            "--annotation",
            &descriptor_note,
            "--annotation",
            "org.example.each=yes",
            dir,
        ],
    );
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{remote}")])
        .output()
        .expect("skopeo runs");
    assert!(raw.status.success(), "{}", String::from_utf8_lossy(&raw.stderr));
    let index: Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json");
    let arches: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(arches, [host, other]);
    assert_eq!(index["annotations"]["org.opencontainers.image.description"], "both");
    assert_eq!(index["manifests"][1]["annotations"]["org.example.note"], format!("{other} only"));
    assert!(index["manifests"][0].get("annotations").is_none(), "{index}");
    for arch in [host, other] {
        let out = tempfile::tempdir().unwrap();
        let dest = format!("oci:{}:x", out.path().join("layout").display());
        let copied = std::process::Command::new("skopeo")
            .args([
                "copy",
                "--src-tls-verify=false",
                "--override-arch",
                arch,
                &format!("docker://{remote}"),
                &dest,
            ])
            .output()
            .expect("skopeo runs");
        assert!(copied.status.success(), "{}", String::from_utf8_lossy(&copied.stderr));
        let config =
            std::process::Command::new("skopeo").args(["inspect", "--config", &dest]).output().unwrap();
        let config: Value = serde_json::from_slice(&config.stdout).unwrap();
        assert_eq!(config["architecture"], arch);
    }

    // Another store pulls one platform, or all, and runs the other platform's image.
    let b = store();
    b.ok(&["pull", "--platform", &format!("linux/{other}"), &remote]);
    assert_eq!(
        b.ok(&["run", "--rm", "--platform", &format!("linux/{other}"), &remote, "uname", "-m"]),
        format!("{}\n", uname(other))
    );
    let c = store();
    c.ok(&["pull", "--all-platforms", &remote]);
    assert_eq!(
        c.ok(&["run", "--rm", "--platform", &format!("linux/{other}"), &remote, "cat", "/arch"]),
        format!("{}\n", uname(other))
    );
    // A store with none of it pulls the platform `run --platform` asks for, and keeps the name
    // on nothing else.
    let d = store();
    assert_eq!(
        d.ok(&["run", "--rm", "--platform", &format!("linux/{other}"), &remote, "cat", "/arch"]),
        format!("{}\n", uname(other))
    );

    // A registry image of one manifest is that image for any platform: built on with BuildKit's
    // warning, and the name in the store keeps its own image.
    let single = format!("{}/single:1", reg.host());
    s.ok(&["push", &format!("{remote}@{}", list[0].1), &single]);
    let e = store();
    let ctx2 = context(&[("Dockerfile", &format!("FROM {single}\nCOPY Dockerfile /x\n"))]);
    let err = build(
        &e,
        &[
            "build",
            "--platform",
            &format!("linux/{other}"),
            "-t",
            "on-single:1",
            ctx2.path().to_str().unwrap(),
        ],
    );
    assert!(
        err.contains(&format!(
            "InvalidBaseImagePlatform: Base image {single} was pulled with platform \"linux/{host}\", expected \"linux/{other}\" for current build"
        )),
        "{err}"
    );

    // Archives: an OCI layout holding the index (skopeo reads it by platform); docker's format
    // has no index and is refused before anything is built.
    let out = tempfile::tempdir().unwrap();
    let oci = out.path().join("mp.tar");
    let oci_out = format!("type=oci,dest={}", oci.display());
    build(&s, &["build", "--platform", &platforms, "-t", "mp:oci", "-o", &oci_out, dir]);
    let config = std::process::Command::new("skopeo")
        .args(["inspect", "--override-arch", other, "--config", &format!("oci-archive:{}", oci.display())])
        .output()
        .unwrap();
    assert!(config.status.success(), "{}", String::from_utf8_lossy(&config.stderr));
    let config: Value = serde_json::from_slice(&config.stdout).unwrap();
    assert_eq!(config["architecture"], other);
    // Loaded, it is one multi-platform image again; saved as OCI, the whole index.
    let l = store();
    l.ok(&["load", "-i", oci.to_str().unwrap()]);
    let loaded = format!("{}\n", uname(other));
    assert_eq!(
        l.ok(&["run", "--rm", "--platform", &format!("linux/{other}"), &remote, "cat", "/arch"]),
        loaded
    );
    let saved = out.path().join("saved.tar");
    l.ok(&["save", "--format", "oci", "-o", saved.to_str().unwrap(), "mp:oci"]);
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", &format!("oci-archive:{}", saved.display())])
        .output()
        .unwrap();
    let saved_index: Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(saved_index["manifests"].as_array().map(Vec::len), Some(2), "{saved_index}");
    let docker = out.path().join("d.tar");
    let e = s.fails(&[
        "build",
        "--platform",
        &platforms,
        "-o",
        &format!("type=docker,dest={}", docker.display()),
        dir,
    ]);
    assert!(e.contains("a docker archive holds one image per name and no index"), "{e}");
    assert!(!docker.exists());
}

/// `FROM --platform=$BUILDPLATFORM`: the builder stage runs natively, once for both targets
/// (one cache key), and each target's stage gets `TARGETARCH`.
#[test]
fn a_buildplatform_stage_runs_once_natively_for_every_target() {
    let host = host_arch();
    let other = if host == "amd64" { "arm64" } else { "amd64" };
    let Some(bins) = busyboxes(&[host, other]) else { return };
    let platforms = format!("linux/{host},linux/{other}");
    let s = store();
    let base = base_context(&bins, BASE);
    let cache = tempfile::tempdir().unwrap();
    let cache_to = format!("type=local,dest={},mode=max", cache.path().display());
    build(
        &s,
        &[
            "build",
            "--platform",
            &platforms,
            "-t",
            "base:1",
            "--cache-to",
            &cache_to,
            base.path().to_str().unwrap(),
        ],
    );
    // The exported cache carries both platforms: an empty store builds both from it alone.
    let empty = store();
    let cache_from = format!("type=local,src={}", cache.path().display());
    let err = build(
        &empty,
        &["build", "--platform", &platforms, "--cache-from", &cache_from, base.path().to_str().unwrap()],
    );
    assert_eq!(steps_run(&err), 0, "{err}");
    let ctx = context(&[(
        "Dockerfile",
        "FROM --platform=$BUILDPLATFORM base:1 AS builder\n\
         RUN uname -m > /built-on && cat /proc/sys/kernel/random/uuid > /run-id\n\
         FROM base:1\nARG TARGETARCH\n\
         COPY --from=builder /built-on /run-id /\nRUN echo $TARGETARCH > /for && uname -m > /arch\n",
    )]);
    let err = build(
        &s,
        &[
            "build",
            "--progress",
            "plain",
            "--platform",
            &platforms,
            "-t",
            "app:1",
            ctx.path().to_str().unwrap(),
        ],
    );
    assert!(
        err.contains(&format!("[linux/{host}->{other} builder 2/2]")),
        "buildx's name for a cross stage:\n{err}"
    );
    let cat = |p: &str, f: &str| s.ok(&["run", "--rm", "--platform", p, "app:1", "cat", f]);
    let (h, o) = (format!("linux/{host}"), format!("linux/{other}"));
    assert_eq!(cat(&h, "/built-on"), format!("{}\n", uname(host)));
    assert_eq!(cat(&o, "/built-on"), format!("{}\n", uname(host)), "the builder ran natively for {o}");
    assert_eq!(cat(&h, "/run-id"), cat(&o, "/run-id"), "the builder stage ran once");
    assert_eq!(cat(&o, "/for"), format!("{other}\n"));
    assert_eq!(cat(&o, "/arch"), format!("{}\n", uname(other)));
    assert_eq!(cat(&h, "/for"), format!("{host}\n"));
}

/// 32-bit platforms: arm/v7 through qemu-arm, 386 natively (the kernel's IA32 emulation) under
/// the same seccomp profile.
#[test]
fn thirty_two_bit_platforms_run() {
    if host_arch() != "amd64" {
        println!("skipped: the 386 and arm/v7 checks are written for an amd64 host");
        return;
    }
    let Some(bins) = busyboxes(&["arm", "386"]) else { return };
    let s = store();
    let ctx = base_context(&bins, &format!("{BASE}RUN echo ok > /ok\n"));
    build(
        &s,
        &["build", "--platform", "linux/arm/v7,linux/386", "-t", "small:1", ctx.path().to_str().unwrap()],
    );
    assert_eq!(s.ok(&["run", "--rm", "--platform", "linux/arm/v7", "small:1", "uname", "-m"]), "armv7l\n");
    assert_eq!(s.ok(&["run", "--rm", "--platform", "linux/386", "small:1", "cat", "/ok"]), "ok\n");
    let names: Vec<String> = manifests(&s, "small:1").into_iter().map(|(p, _)| p).collect();
    assert_eq!(names, ["linux/arm/v7", "linux/386"]);
}

/// A platform nothing here can run: one line naming the platform and the step; a failed
/// platform leaves nothing tagged, even when the other platform built.
#[test]
fn a_platform_that_cannot_run_is_one_clear_line_and_tags_nothing() {
    let Some(bins) = busyboxes(&[host_arch()]) else { return };
    let s = store();
    let ctx = base_context(
        &[(String::from("pdp11"), bins[0].1.clone()), bins[0].clone()],
        &format!("{BASE}RUN echo hi\n"),
    );
    let dir = ctx.path().to_str().unwrap();
    let e = s.fails(&["build", "--platform", "linux/pdp11", "-t", "never:1", dir]);
    assert!(e.contains("platform linux/pdp11: rbuild knows no emulator for architecture \"pdp11\""), "{e}");
    assert!(e.contains("Dockerfile:4:1: RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]"), "{e}");
    let both = format!("linux/{},linux/pdp11", host_arch());
    let e = s.fails(&["build", "--platform", &both, "-t", "never:1", dir]);
    assert!(e.starts_with("rbuild: error: platform linux/pdp11: "), "{e}");
    assert!(!s.ok(&["images"]).contains("never"), "nothing is tagged");
    // Without RUN steps such an image builds; running it is the same one line.
    let copy_only = context(&[("Dockerfile", "FROM scratch\nCOPY Dockerfile /\nCMD [\"/x\"]\n")]);
    s.ok(&["build", "--platform", "linux/pdp11", "-t", "pdp:1", copy_only.path().to_str().unwrap()]);
    let e = s.fails(&["run", "--rm", "pdp:1"]);
    assert_eq!(e, "rbuild: error: platform linux/pdp11: rbuild knows no emulator for architecture \"pdp11\"");
}
