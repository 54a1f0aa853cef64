//! Build farms: cache mounts that travel with the build cache (registry, S3, inline), remote
//! hits that become local, and exports that send only what the destination lacks. Every byte
//! and request counted here crossed a [`CountingProxy`] in front of a real server on
//! 127.0.0.1 (Debian's docker-registry, moto's S3 server).

use test_support::proxy::CountingProxy;
use test_support::registry::TestRegistry;
use test_support::s3::TestS3;
use test_support::{TestStore, context};

fn store() -> TestStore {
    TestStore::new(env!("CARGO_BIN_EXE_rbuild"))
}

/// Runs a build (or anything) that must succeed; returns its stderr.
fn ok(s: &TestStore, env: &[(&str, &str)], args: &[&str]) -> String {
    let out = s.cmd().envs(env.iter().copied()).args(args).output().expect("rbuild runs");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "rbuild {args:?} failed:\n{err}");
    err
}

fn seed_base(reg: &TestRegistry) -> String {
    reg.push_busybox(env!("CARGO_BIN_EXE_rbuild"))
}

/// A RUN that "downloads" what its cache mount lacks: BIG files of 1 MiB and 200 small index
/// files, keyed by name as a package manager keys its archives. It records how many it had to
/// fetch in /downloaded. REV changes the step's key, so it runs even where the cache has it.
const MOUNT_DOCKERFILE: &str = "FROM {base}\nARG REV=1\nARG BIG=50\n\
RUN --mount=type=cache,id=downloads,target=/var/cache/dl sh -c 'n=0; cd /var/cache/dl; mkdir -p idx; \
for i in $(seq 1 $BIG); do [ -f pkg$i.deb ] || { head -c 1048576 /dev/urandom > pkg$i.deb; n=$((n+1)); }; done; \
for i in $(seq 1 200); do [ -f idx/$i ] || { echo index $i > idx/$i; n=$((n+1)); }; done; \
echo $n > /downloaded; echo rev $REV downloaded $n'\n";

/// Store A fills the mount and exports; empty store B imports it and its RUN downloads
/// nothing; A adds 1 MiB and exports again: about 1 MiB goes up.
fn farm_with_cache_mounts(
    counter: &CountingProxy,
    env: &[(&str, &str)],
    a_args: &dyn Fn(&str) -> Vec<String>,
    b_args: &[String],
    reg: &TestRegistry,
) {
    let base = seed_base(reg);
    let ctx = context(&[("Dockerfile", &MOUNT_DOCKERFILE.replace("{base}", &base))]);
    let ctx = ctx.path().to_str().unwrap();
    let build = |s: &TestStore, extra: Vec<String>| {
        let mut args: Vec<String> =
            ["build", "--progress=plain", "--network=none"].map(String::from).to_vec();
        args.extend(extra);
        args.push(ctx.to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(s, env, &args)
    };
    let downloaded = |s: &TestStore| s.ok(&["run", "--rm", "--network=none", "app:1", "cat", "/downloaded"]);

    let a = store();
    let err = build(&a, a_args("1"));
    assert!(err.contains("rev 1 downloaded 250"), "{err}");
    let first_upload = counter.uploaded();
    assert!(first_upload > 50 << 20, "the mount's 50 MiB went up: {first_upload}");

    let b = store();
    let mut args = strings(&["--build-arg", "REV=2", "-t", "app:1"]);
    args.extend(b_args.iter().cloned());
    let err = build(&b, args);
    assert!(err.contains("rev 2 downloaded 0"), "store B had to download:\n{err}");
    assert_eq!(downloaded(&b), "0\n");
    assert_eq!(b.ok(&["system", "verify"]), "store verified: no problems\n");

    // One more package: only it (and the small things around it) goes up.
    counter.reset();
    let mut args = vec!["--build-arg".to_string(), "BIG=51".to_string()];
    args.extend(a_args("3"));
    let err = build(&a, args);
    assert!(err.contains("rev 3 downloaded 1"), "{err}");
    let sent = counter.uploaded();
    assert!((1 << 20..(1 << 20) + (400 << 10)).contains(&sent), "a 1 MiB addition sent {sent} bytes");

    // Nothing new: no blob goes up again.
    counter.reset();
    build(&a, a_args("3").into_iter().chain(["--build-arg".into(), "BIG=51".into()]).collect());
    let sent = counter.uploaded();
    assert!(sent < 64 << 10, "an unchanged re-export sent {sent} bytes");
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn cache_mounts_travel_through_a_registry() {
    let reg = TestRegistry::start();
    let counter = CountingProxy::start(reg.port());
    let cache = format!("127.0.0.1:{}/cache/farm:1", counter.port());
    let to = format!("type=registry,ref={cache},cache-mounts=true");
    let from = format!("type=registry,ref={cache}");
    farm_with_cache_mounts(
        &counter,
        &[],
        &|rev| strings(&["--build-arg", &format!("REV={rev}"), "-t", "app:1", "--cache-to", &to]),
        &strings(&["--cache-from", &from]),
        &reg,
    );
}

#[test]
fn cache_mounts_travel_through_s3() {
    let reg = TestRegistry::start();
    let s3 = TestS3::start();
    let counter = CountingProxy::start(s3.port());
    let endpoint = format!("http://127.0.0.1:{}", counter.port());
    let client = registry::s3::S3::new(registry::s3::S3Options {
        bucket: "farm-cache".into(),
        endpoint_url: Some(endpoint.clone()),
        use_path_style: true,
        region: Some("us-east-1".into()),
        access_key_id: Some(s3.access_key_id().into()),
        secret_access_key: Some(s3.secret_access_key().into()),
        ..Default::default()
    })
    .unwrap();
    client.create_bucket().unwrap();
    // Credentials as CI gives them: the usual AWS variables.
    let env = [("AWS_ACCESS_KEY_ID", s3.access_key_id()), ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key())];
    let spec = format!(
        "type=s3,bucket=farm-cache,region=us-east-1,endpoint_url={endpoint},use_path_style=true,prefix=ci/,name=app"
    );
    let to = format!("{spec},mode=max,cache-mounts=true");
    farm_with_cache_mounts(
        &counter,
        &env,
        &|rev| strings(&["--build-arg", &format!("REV={rev}"), "-t", "app:1", "--cache-to", &to]),
        &strings(&["--cache-from", &spec]),
        &reg,
    );
    let keys: Vec<String> = s3.requests().into_iter().filter(|(m, _)| m == "PUT").map(|(_, p)| p).collect();
    assert!(keys.iter().any(|p| p == "/farm-cache/ci/manifests/app"), "{keys:?}");
    assert!(keys.iter().any(|p| p.starts_with("/farm-cache/ci/blobs/sha256/")), "{keys:?}");
}

#[test]
fn cache_mounts_travel_inline_with_the_image() {
    let reg = TestRegistry::start();
    let counter = CountingProxy::start(reg.port());
    let image = format!("127.0.0.1:{}/app:latest", counter.port());
    farm_with_cache_mounts(
        &counter,
        &[],
        &|rev| {
            strings(&[
                "--build-arg",
                &format!("REV={rev}"),
                "--cache-to",
                "type=inline,cache-mounts=true",
                "--push",
                "-t",
                &image,
            ])
        },
        &strings(&["--cache-from", &format!("type=registry,ref={image}")]),
        &reg,
    );
}

const CHAIN_DOCKERFILE: &str = "FROM {base} AS builder\nRUN echo compiled > /out\n\
     FROM {base}\nCOPY --from=builder /out /app/out\nRUN cat /app/out > /app/copy\nCMD [\"cat\", \"/app/copy\"]\n";

/// A hit from A's cache on B is B's own: B's export lets an empty C hit everything, and B's
/// next build asks A's cache nothing.
#[test]
fn remote_hits_become_local() {
    let reg = TestRegistry::start();
    let base = seed_base(&reg);
    let counter = CountingProxy::start(reg.port());
    let cache = format!("127.0.0.1:{}/cache/chain:1", counter.port());
    let ctx = context(&[("Dockerfile", &CHAIN_DOCKERFILE.replace("{base}", &base))]);
    let ctx = ctx.path().to_str().unwrap();
    let from = format!("type=registry,ref={cache}");

    let a = store();
    ok(&a, &[], &["build", "-t", "app:1", "--cache-to", &format!("{from},mode=max"), ctx]);
    let digest = a.ok(&["images", "-q", "--no-trunc", "app:1"]);

    let b = store();
    let err = ok(&b, &[], &["build", "--progress=plain", "-t", "app:1", "--cache-from", &from, ctx]);
    assert!(err.contains("(0 steps run,"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let b_cache = dir.path().join("b-cache");
    let b_cache = b_cache.to_str().unwrap();
    ok(
        &b,
        &[],
        &[
            "build",
            "-t",
            "app:1",
            "--cache-from",
            &from,
            "--cache-to",
            &format!("type=local,dest={b_cache},mode=max"),
            ctx,
        ],
    );

    let c = store();
    let err = ok(
        &c,
        &[],
        &[
            "build",
            "--progress=plain",
            "-t",
            "app:1",
            "--cache-from",
            &format!("type=local,src={b_cache}"),
            ctx,
        ],
    );
    assert!(err.contains("(0 steps run,"), "store C ran steps:\n{err}");
    assert_eq!(c.ok(&["images", "-q", "--no-trunc", "app:1"]), digest);
    assert_eq!(c.ok(&["run", "--rm", "--network=none", "app:1"]), "compiled\n");

    counter.reset();
    let err = ok(&b, &[], &["build", "--progress=plain", "-t", "app:1", "--cache-from", &from, ctx]);
    assert!(err.contains("(0 steps run,"), "{err}");
    assert_eq!((counter.uploaded(), counter.downloaded()), (0, 0), "B's second build asked A's cache");
    assert_eq!(b.ok(&["system", "verify"]), "store verified: no problems\n");
}

/// `cache-mounts-max-size`: a mount bigger than it stays home, with a warning; the rest of the
/// cache goes.
#[test]
fn a_cache_mount_over_the_size_cap_is_left_out() {
    let reg = TestRegistry::start();
    let base = seed_base(&reg);
    let ctx = context(&[("Dockerfile", &MOUNT_DOCKERFILE.replace("{base}", &base))]);
    let ctx = ctx.path().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cache = cache.to_str().unwrap();
    let a = store();
    let to = format!("type=local,dest={cache},cache-mounts=true,cache-mounts-max-size=1m");
    let err = ok(&a, &[], &["build", "--network=none", "--build-arg", "BIG=2", "--cache-to", &to, ctx]);
    assert!(err.contains("warning: cache mount \"downloads\": "), "{err}");
    assert!(err.contains("bigger than cache-mounts-max-size=1048576: not exported"), "{err}");
    assert!(err.contains(", 0 cache mounts) to type=local"), "{err}");
    let b = store();
    let from = format!("type=local,src={cache}");
    let err = ok(
        &b,
        &[],
        &[
            "build",
            "--progress=plain",
            "--network=none",
            "--build-arg",
            "BIG=2",
            "--build-arg",
            "REV=2",
            "--cache-from",
            &from,
            ctx,
        ],
    );
    assert!(err.contains("rev 2 downloaded 202"), "{err}");
}

/// A builder whose every step hit (so it never made the mount) still passes the mount on: C,
/// fed only by B's export, finds A's downloads.
#[test]
fn a_cache_mount_passes_through_a_builder_that_never_ran_it() {
    let reg = TestRegistry::start();
    let base = seed_base(&reg);
    let ctx = context(&[("Dockerfile", &MOUNT_DOCKERFILE.replace("{base}", &base))]);
    let ctx = ctx.path().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a_cache, b_cache) = (dir.path().join("a"), dir.path().join("b"));
    let (a_cache, b_cache) = (a_cache.to_str().unwrap(), b_cache.to_str().unwrap());
    let build = |s: &TestStore, args: &[&str]| {
        let mut all = vec!["build", "--progress=plain", "--network=none", "--build-arg", "BIG=3"];
        all.extend_from_slice(args);
        all.push(ctx);
        ok(s, &[], &all)
    };
    build(&store(), &["--cache-to", &format!("type=local,dest={a_cache},cache-mounts=true")]);
    let b = store();
    let err = build(
        &b,
        &[
            "--cache-from",
            &format!("type=local,src={a_cache}"),
            "--cache-to",
            &format!("type=local,dest={b_cache},cache-mounts=true"),
        ],
    );
    assert!(err.contains("(0 steps run,"), "{err}");
    assert!(err.contains(", 1 cache mounts) to type=local"), "{err}");
    let err =
        build(&store(), &["--build-arg", "REV=9", "--cache-from", &format!("type=local,src={b_cache}")]);
    assert!(err.contains("rev 9 downloaded 0"), "{err}");
}
