//! The store's size limit as a user sees it: `build --gc-keep-storage` and `<store>/rbuild.toml`,
//! `builder prune --keep-storage/--filter until=`, cache mounts in use, and a prune beside a
//! build. Every build runs with `--network=none`, so no bridge is made.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::{Flock, FlockArg};
use test_support::{TestStore, context};

fn store() -> TestStore {
    let s = TestStore::new(env!("CARGO_BIN_EXE_rbuild"));
    s.import_busybox();
    s
}

fn du(s: &TestStore) -> u64 {
    s.size_by_du()
}

/// A Dockerfile whose RUN writes `bytes` of incompressible data to /big; `--build-arg N=...`
/// makes each build's step new.
fn big_context(bytes: u64) -> tempfile::TempDir {
    context(&[(
        "Dockerfile",
        &format!("FROM busybox\nARG N\nRUN head -c {bytes} /dev/urandom > /big && echo $N > /n\n"),
    )])
}

fn build(s: &TestStore, ctx: &Path, n: usize, extra: &[&str]) -> std::process::Output {
    let arg = format!("N={n}");
    let mut args = vec!["build", "--network=none", "--progress=plain", "--build-arg", &arg];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().expect("utf-8 context path"));
    let out = s.run(&args);
    assert!(out.status.success(), "build {n} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn records(s: &TestStore) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(s.path().join("cache"))
        .expect("cache dir")
        .map(|e| e.expect("cache entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    out.sort();
    out
}

/// Ten builds of one tag, each adding 100 MB that cannot be compressed (1 GB of layers in
/// all), in a store limited to 200MB (binary units, as buildx reads `--keep-storage`): every
/// build ends with the store within the limit, its image whole and runnable.
#[test]
fn builds_keep_the_store_within_its_configured_limit() {
    const BIG: u64 = 100_000_000;
    const LIMIT: u64 = 200 << 20;
    let s = store();
    std::fs::write(s.path().join("rbuild.toml"), "[gc]\nkeep-storage = \"200MB\"\n").unwrap();
    let ctx = big_context(BIG);
    for n in 0..10 {
        let out = build(&s, ctx.path(), n, &["-t", "app:latest"]);
        let size = du(&s);
        assert!(size <= LIMIT, "after build {n}: the store is {size} bytes, over {LIMIT}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if n > 0 {
            assert!(stderr.contains("rbuild: store over its 200MB limit: Deleted "), "build {n}:\n{stderr}");
        }
        assert!(!stderr.contains("warning"), "build {n}:\n{stderr}");
    }
    let wc = s.ok(&["run", "--rm", "--network", "none", "app:latest", "sh", "-c", "wc -c < /big; cat /n"]);
    assert_eq!(wc.split_whitespace().collect::<Vec<_>>(), [BIG.to_string(), "9".to_string()]);
    assert_eq!(s.ok(&["system", "verify"]), "store verified: no problems\n");
    // system df's total is the same figure.
    let df = s.ok(&["system", "df"]);
    assert!(df.contains("Store size (blobs, layers, cache, snapshots, tmp): "), "{df}");
}

#[test]
fn a_typo_in_the_store_config_names_file_line_and_column() {
    let s = store();
    let path = s.path().join("rbuild.toml");
    std::fs::write(&path, "[gc]\nkeep-storag = \"1GB\"\n").unwrap();
    let e = s.fails(&["build", "--network=none", big_context(1).path().to_str().unwrap()]);
    assert!(
        e.contains(&format!("config file {}: line 2, column 1: unknown field `keep-storag`", path.display())),
        "{e}"
    );
}

#[test]
fn builder_prune_until_removes_only_long_unused_records_and_keep_storage_holds() {
    let s = store();
    let ctx = big_context(3_000_000);
    build(&s, ctx.path(), 1, &[]);
    let first = records(&s);
    assert!(!first.is_empty());
    // Three hours unused.
    for r in &first {
        let ok = Command::new("touch").args(["-d", "3 hours ago"]).arg(r).status().unwrap().success();
        assert!(ok);
    }
    build(&s, ctx.path(), 2, &[]);
    // Build 2 made new records and hit some of build 1's: a hit is a use.
    let all = records(&s);
    let unused = |r: &PathBuf| {
        let age = std::fs::metadata(r).unwrap().modified().unwrap().elapsed().unwrap_or_default();
        age > std::time::Duration::from_secs(2 * 3600)
    };
    let newer: Vec<&PathBuf> = all.iter().filter(|r| !unused(r)).collect();
    assert!(all.iter().any(unused) && newer.iter().any(|r| !first.contains(r)));

    let out = s.ok(&["builder", "prune", "--filter", "until=2h", "-f"]);
    assert!(out.starts_with("Deleted "), "{out}");
    let left = records(&s);
    assert_eq!(left.iter().collect::<Vec<_>>(), newer, "only the records unused for 3 hours go");
    assert_eq!(s.ok(&["system", "verify"]), "store verified: no problems\n");

    build(&s, ctx.path(), 3, &[]);
    build(&s, ctx.path(), 4, &[]);
    assert!(du(&s) > 8 << 20);
    s.ok(&["builder", "prune", "--keep-storage", "8MB"]);
    assert!(du(&s) <= 8 << 20, "{} bytes", du(&s));
    assert_eq!(s.ok(&["system", "verify"]), "store verified: no problems\n");

    let e = s.fails(&["builder", "prune", "--filter", "until=7d"]);
    assert!(e.contains("unknown unit \"d\""), "{e}");
}

#[test]
fn a_cache_mount_in_use_stays_and_an_idle_one_goes() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nARG N\nRUN --mount=type=cache,target=/c head -c 2000000 /dev/urandom > /c/data$N\n",
    )]);
    build(&s, ctx.path(), 1, &[]);
    let mounts: Vec<PathBuf> =
        std::fs::read_dir(s.path().join("cache/mounts")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(mounts.len(), 1);
    let mount = &mounts[0];
    assert!(mount.join("shared/data1").exists());

    // A RUN using it holds its lock (shared); the test stands in for one.
    let held = Flock::lock(File::open(mount.join("shared.lock")).unwrap(), FlockArg::LockShared).unwrap();
    s.ok(&["builder", "prune", "--keep-storage", "0"]);
    assert!(mount.join("shared/data1").exists(), "a busy cache mount is never removed");
    drop(held);

    let out = s.ok(&["builder", "prune", "--keep-storage", "0"]);
    assert!(out.contains("1 cache mount"), "{out}");
    assert!(!mount.join("shared").exists());
    let df = s.ok(&["system", "df", "-v"]);
    assert!(df.contains("Cache mounts usage: 0B"), "{df}");
    // The next build seeds it afresh.
    build(&s, ctx.path(), 2, &[]);
    assert!(mount.join("shared/data2").exists());
}

#[test]
fn a_prune_beside_a_build_does_not_break_it() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nARG N\nRUN head -c 4000000 /dev/urandom > /a && sleep 2\n\
         RUN head -c 4000000 /dev/urandom > /b && sleep 2\nRUN cat /a /b | wc -c > /n\n",
    )]);
    build(&s, ctx.path(), 0, &[]);
    let mut child = s
        .cmd()
        .args(["build", "--network=none", "--progress=plain", "--build-arg", "N=1", "-t", "app:1"])
        .arg(ctx.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Prunes to nothing over and over while the build runs.
    while child.try_wait().unwrap().is_none() {
        s.ok(&["builder", "prune", "--keep-storage", "0"]);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    s.ok(&["builder", "prune", "--keep-storage", "0"]);
    assert_eq!(s.ok(&["run", "--rm", "--network", "none", "app:1", "cat", "/n"]).trim(), "8000000");
    assert_eq!(s.ok(&["system", "verify"]), "store verified: no problems\n");
}

#[test]
fn system_df_verbose_lists_records_and_images() {
    let s = store();
    build(&s, big_context(1000).path(), 1, &["-t", "app:1"]);
    let out = s.ok(&["system", "df", "-v"]);
    assert!(out.contains("Images space usage:"), "{out}");
    assert!(out.contains("\napp "), "{out}");
    assert!(out.contains("Build cache usage: "), "{out}");
    assert!(out.contains("CACHE ID "), "{out}");
    assert!(out.contains(" ago "), "{out}");
    assert!(out.contains("true") || out.contains("false"), "{out}");
}
