//! `rbuild push/pull`, FROM of a registry image, and the build cache shared through a registry
//! or a directory (the build-farm case), against Debian's docker-registry on 127.0.0.1.

use test_support::registry::TestRegistry;
use test_support::{TestStore, context};

fn store() -> TestStore {
    TestStore::new(env!("CARGO_BIN_EXE_rbuild"))
}

/// Pushes the busybox base image to `reg` as `bb:1` and returns its reference there.
fn seed_base(reg: &TestRegistry) -> String {
    let s = store();
    s.import_busybox();
    let reference = format!("{}/bb:1", reg.host());
    s.ok(&["push", "busybox:latest", &reference]);
    reference
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
        ("--cache-to", "type=s3,ref=x", "not supported"),
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
