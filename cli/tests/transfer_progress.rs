//! What `rbuild push` and `rbuild pull` print per blob when stderr is not a terminal (as here,
//! where it is a pipe): one line per config and layer blob when it is settled, in docker's
//! words, and nothing with `-q`. Against Debian's docker-registry on 127.0.0.1.

use std::collections::BTreeSet;

use test_support::registry::TestRegistry;
use test_support::{TestStore, context};

fn store() -> TestStore {
    TestStore::new(env!("CARGO_BIN_EXE_rbuild"))
}

/// Runs `rbuild ARGS`, which must succeed; returns (stdout, stderr).
fn run(s: &TestStore, args: &[&str]) -> (String, String) {
    let out = s.run(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "rbuild {args:?} failed:\nstdout:\n{stdout}\nstderr:\n{stderr}");
    (stdout, stderr)
}

/// The short ids (12 hex digits) of the config and layer blobs of `image` in `s`, read from its
/// manifest in the store.
fn blob_ids(s: &TestStore, image: &str) -> BTreeSet<String> {
    let inspect: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", image])).unwrap();
    let id = inspect[0]["Id"].as_str().unwrap();
    let hex = id.strip_prefix("sha256:").unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path().join("blobs/sha256").join(hex)).unwrap()).unwrap();
    let layers = manifest["layers"].as_array().unwrap().iter();
    std::iter::once(&manifest["config"])
        .chain(layers)
        .map(|d| d["digest"].as_str().unwrap()["sha256:".len()..][..12].to_string())
        .collect()
}

/// Checks that `stderr` is exactly one `<short id>: <ending>` line per blob of `ids`, where
/// `ending` accepts what follows the colon.
fn per_blob(stderr: &str, ids: &BTreeSet<String>, ending: impl Fn(&str) -> bool) {
    let mut seen = BTreeSet::new();
    for line in stderr.lines() {
        let (id, rest) =
            line.split_once(": ").unwrap_or_else(|| panic!("not a blob line: {line:?}\n{stderr}"));
        assert!(ids.contains(id), "{id} is not a blob of the image:\n{stderr}");
        assert!(seen.insert(id.to_string()), "{id} reported twice:\n{stderr}");
        assert!(ending(rest), "unexpected {line:?}:\n{stderr}");
    }
    assert_eq!(&seen, ids, "not every blob was reported:\n{stderr}");
}

/// `Pushed 1.23MB` / `Downloaded 45B`: the verb, then a size in docker's units.
fn moved(verb: &'static str) -> impl Fn(&str) -> bool {
    move |rest: &str| {
        rest.strip_prefix(verb).and_then(|r| r.strip_prefix(' ')).is_some_and(|size| {
            let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            ["B", "kB", "MB", "GB"].contains(&&size[digits.len()..]) && digits.parse::<f64>().is_ok()
        })
    }
}

#[test]
fn push_and_pull_print_one_line_per_blob() {
    let reg = TestRegistry::start();
    let a = store();
    a.import_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN echo one > /one\nRUN echo two > /two\n")]);
    run(&a, &["build", "-q", "-t", "tp:1", ctx.path().to_str().unwrap()]);
    let ids = blob_ids(&a, "tp:1");
    assert_eq!(ids.len(), 4, "3 layers and a config: {ids:?}");
    let reference = format!("{}/tp:1", reg.host());

    // First push: every blob is uploaded.
    let (stdout, stderr) = run(&a, &["push", "tp:1", &reference]);
    assert!(stdout.starts_with(&format!("{reference}: digest: sha256:")), "{stdout}");
    per_blob(&stderr, &ids, moved("Pushed"));

    // Again: the registry has them all.
    let (_, stderr) = run(&a, &["push", "tp:1", &reference]);
    per_blob(&stderr, &ids, |r| r == "Layer already exists");

    // To another repository of the same registry: mounted from the first.
    let other = format!("{}/other:1", reg.host());
    let (_, stderr) = run(&a, &["push", "tp:1", &other]);
    let from = format!("Mounted from {}/tp", reg.host());
    per_blob(&stderr, &ids, |r| r == from);

    // Quiet: the digest only.
    let (stdout, stderr) = run(&a, &["push", "-q", "tp:1", &reference]);
    assert!(stderr.is_empty(), "{stderr}");
    assert!(stdout.starts_with("sha256:") && stdout.lines().count() == 1, "{stdout}");

    // Pull into an empty store: every blob is downloaded.
    let b = store();
    let (stdout, stderr) = run(&b, &["pull", &reference]);
    assert!(stdout.starts_with("Digest: sha256:"), "{stdout}");
    per_blob(&stderr, &ids, moved("Downloaded"));
    assert_eq!(blob_ids(&b, &reference), ids);

    // Again: nothing moves.
    let (_, stderr) = run(&b, &["pull", &reference]);
    per_blob(&stderr, &ids, |r| r == "Already exists");
    let (stdout, stderr) = run(&b, &["pull", "-q", &reference]);
    assert!(stderr.is_empty(), "{stderr}");
    assert!(stdout.starts_with("sha256:") && stdout.lines().count() == 1, "{stdout}");
}
