//! Bad input: one clear line naming file:line, a non-zero exit, and nothing half-written.

use std::fs;
use std::path::Path;

use test_support::{TestStore, context};

fn store() -> TestStore {
    let s = TestStore::new(env!("CARGO_BIN_EXE_rbuild"));
    s.import_busybox();
    s
}

/// Runs a build expected to fail; returns its stderr's last line (the error).
fn failing_build(s: &TestStore, ctx: &Path) -> (String, String) {
    let out = s.run(&["build", "-t", "bad:1", ctx.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "expected exit 1:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("rbuild: error: ")).collect();
    assert_eq!(errors.len(), 1, "expected exactly one error line:\n{stderr}");
    (errors[0].to_string(), stderr)
}

/// Nothing tagged `bad`, no temp files or snapshots left, and every blob matches its name.
fn assert_store_clean(s: &TestStore) {
    // Names only: an image id is hex and may hold "bad".
    let images = s.ok(&["images", "--format", "{{.Repository}}"]);
    assert!(!images.lines().any(|r| r == "bad"), "{images}");
    for dir in ["tmp", "snapshots"] {
        let left: Vec<_> = fs::read_dir(s.path().join(dir)).unwrap().map(|e| e.unwrap().path()).collect();
        assert!(left.is_empty(), "{dir}/ not empty: {left:?}");
    }
    for blob in fs::read_dir(s.path().join("blobs/sha256")).unwrap() {
        let blob = blob.unwrap();
        let bytes = fs::read(blob.path()).unwrap();
        let name = blob.file_name().into_string().unwrap();
        let hex = std::process::Command::new("sha256sum").arg(blob.path()).output().unwrap();
        let sum = String::from_utf8_lossy(&hex.stdout);
        assert!(sum.starts_with(&name), "blob {name} ({} bytes) does not match its digest", bytes.len());
    }
}

#[test]
fn unknown_instruction_names_file_line_and_column() {
    let s = store();
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN true\nFOO bar\n")]);
    let (line, stderr) = failing_build(&s, ctx.path());
    let expected = format!("{}:3:1", ctx.path().join("Dockerfile").display());
    assert!(line.contains(&expected), "{line}");
    assert!(line.contains("unknown instruction: FOO"), "{line}");
    // The offending line is shown under the error.
    assert!(stderr.lines().any(|l| l.trim_start().starts_with("3 | FOO bar")), "{stderr}");
    assert_store_clean(&s);
}

#[test]
fn missing_copy_source_names_the_file_and_line() {
    let s = store();
    let ctx = context(&[
        ("Dockerfile", "FROM busybox\nCOPY present.txt /\nCOPY missing.txt /x\n"),
        ("present.txt", "p"),
    ]);
    let (line, _) = failing_build(&s, ctx.path());
    assert!(line.contains("Dockerfile:3:1"), "{line}");
    assert!(line.contains("missing.txt") && line.contains("not found"), "{line}");
    assert_store_clean(&s);
}

#[test]
fn failing_run_shows_step_exit_code_and_last_output() {
    let s = store();
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN echo first-line && echo second-line && exit 3\n")]);
    let (line, stderr) = failing_build(&s, ctx.path());
    assert!(line.contains("Dockerfile:2:1"), "{line}");
    assert!(line.contains("RUN echo first-line"), "{line}");
    assert!(line.contains("exit code 3"), "{line}");
    let tail = stderr.split("last output lines").nth(1).unwrap_or_default();
    assert!(tail.contains("first-line") && tail.contains("second-line"), "{stderr}");
    assert_store_clean(&s);
}

#[test]
fn from_an_image_not_in_the_store_fails_at_the_from_line() {
    let s = store();
    let ctx = context(&[("Dockerfile", "# comment\nFROM nosuchimage:1.0\nRUN true\n")]);
    let (line, _) = failing_build(&s, ctx.path());
    assert!(line.contains("Dockerfile:2:"), "{line}");
    assert!(line.contains("nosuchimage:1.0"), "{line}");
    assert_store_clean(&s);
}

#[test]
fn missing_context_directory_is_one_line() {
    let s = store();
    let out = s.run(&["build", "/nonexistent/rbuild-context"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/rbuild-context") && stderr.contains("does not exist"), "{stderr}");
    assert_store_clean(&s);
}

#[test]
fn bad_flag_and_bad_tag_are_rejected() {
    let s = store();
    let out = s.run(&["build", "--no-such-flag", "."]);
    assert_eq!(out.status.code(), Some(2));
    let ctx = context(&[("Dockerfile", "FROM busybox\n")]);
    let out = s.run(&["build", "-t", "Bad:Tag!", ctx.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid reference"), "{stderr}");
}

#[test]
fn load_of_a_file_that_is_not_an_archive_fails_cleanly() {
    let s = store();
    let junk = s.path().join("junk.tar");
    fs::write(&junk, b"this is not a tar archive at all, just some bytes").unwrap();
    let out = s.run(&["load", "-i", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("junk.tar"), "{stderr}");
    fs::remove_file(&junk).unwrap();
    assert_store_clean(&s);
}
