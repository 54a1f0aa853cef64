//! The runner of rbuild's harness-less test binaries (`harness = false`): those whose sandboxes
//! re-execute the test binary itself as their init, so the binary must own `main` and answer
//! [`executor::INIT_ARG`] / [`executor::EXEC_ARG`] before anything starts a thread (libtest's
//! runner is multi-threaded).
//!
//! [`main`] reads the arguments as `cargo test` passes them (`--list`, name filters, `--exact`;
//! other flags are accepted and ignored), runs each test in turn, and after each checks what a
//! sandbox must never leave on the host: mounts under the scratch directory, cgroups named for
//! this process, child processes. What a test left behind fails it, and is cleaned up (by exact
//! path or PID) so the next test starts clean. The last line is libtest's `test result:` line.

use std::fs;
use std::path::{Path, PathBuf};

/// A test: its name and body; `E` is what the binary's setup prepared once for all tests.
pub type Test<E> = (&'static str, fn(&E));

/// Answers the sandbox's re-execution of this binary (init or exec helper), which never
/// returns; otherwise does nothing.
///
/// # Safety
///
/// Call it first thing in `main`, before any thread starts: the init and the exec helper fork
/// and unshare namespaces, which a multi-threaded process may not do (see
/// [`executor::init_main`]).
pub unsafe fn serve_reexec() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        // SAFETY: the caller guarantees no thread has started.
        Some(executor::INIT_ARG) => unsafe { executor::init_main(&args) },
        // SAFETY: as above.
        Some(executor::EXEC_ARG) => unsafe { executor::exec_main(&args) },
        _ => {}
    }
}

/// Runs `tests` as `cargo test` asked, with `setup` called once (unless nothing is selected) on
/// a fresh scratch directory under /tmp named from `prefix`; exits 0 if every selected test
/// passed and left nothing behind, else 1.
///
/// # Safety
///
/// As [`serve_reexec`], which it calls first: call it first thing in `main`.
pub unsafe fn main<E>(prefix: &str, tests: &[Test<E>], setup: impl FnOnce(&Path) -> E) -> ! {
    // SAFETY: forwarded from our caller.
    unsafe { serve_reexec() };
    let selection = Selection::from_args(std::env::args().skip(1));
    if selection.list {
        for (name, _) in tests {
            println!("{name}: test");
        }
        std::process::exit(0);
    }
    let selected: Vec<&Test<E>> = tests.iter().filter(|(name, _)| selection.wants(name)).collect();
    let filtered_out = tests.len() - selected.len();
    if selected.is_empty() {
        println!("test result: ok. 0 passed; 0 failed; {filtered_out} filtered out");
        std::process::exit(0);
    }
    println!("\nrunning {} tests", selected.len());
    let scratch = tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp").expect("scratch directory");
    let env = setup(scratch.path());
    let mut failed = Vec::new();
    for (name, test) in &selected {
        // A test that panics fails; the next one still runs on the same `env` (libtest's rule:
        // tests share nothing but what setup made, which they only read).
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&env)));
        let leaks = left_behind(scratch.path());
        clean_up(scratch.path());
        match (result, leaks.is_empty()) {
            (Ok(()), true) => println!("test {name} ... ok"),
            (Ok(()), false) => {
                println!("test {name} ... FAILED: left behind:\n  {}", leaks.join("\n  "));
                failed.push(*name);
            }
            (Err(_), _) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    drop(env);
    drop(scratch);
    let passed = selected.len() - failed.len();
    if !failed.is_empty() {
        println!("\nfailures:\n    {}", failed.join("\n    "));
    }
    let verdict = if failed.is_empty() { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {} failed; {filtered_out} filtered out",
        failed.len()
    );
    std::process::exit(if failed.is_empty() { 0 } else { 1 })
}

/// Which tests the command line selects, read as libtest reads it.
#[derive(Debug, Default, PartialEq)]
struct Selection {
    list: bool,
    exact: bool,
    filters: Vec<String>,
    skips: Vec<String>,
}

impl Selection {
    fn from_args(args: impl IntoIterator<Item = String>) -> Selection {
        let mut s = Selection::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--list" => s.list = true,
                "--exact" => s.exact = true,
                "--skip" => s.skips.extend(args.next()),
                // libtest's options that take a value: skip the value, it is no filter.
                "--test-threads" | "--color" | "--format" | "-Z" | "--logfile" => {
                    args.next();
                }
                a if a.starts_with('-') => {}
                a => s.filters.push(a.to_string()),
            }
        }
        s
    }

    fn wants(&self, name: &str) -> bool {
        let matches = |f: &String| if self.exact { name == f } else { name.contains(f.as_str()) };
        (self.filters.is_empty() || self.filters.iter().any(matches)) && !self.skips.iter().any(matches)
    }
}

/// What the last test left on the host: mounts under `scratch`, cgroups named for this process,
/// child processes (zombies included).
fn left_behind(scratch: &Path) -> Vec<String> {
    let mut leaks: Vec<String> = hostutil::mountinfo::mount_points_under(scratch)
        .into_iter()
        .map(|p| format!("mount {}", p.display()))
        .collect();
    leaks.extend(our_cgroups().iter().map(|p| format!("cgroup {}", p.display())));
    leaks.extend(our_children().iter().map(|p| format!("child process {p}")));
    leaks
}

/// Removes what [`left_behind`] finds, by exact path or PID: mounts, then children (killed and
/// reaped), then the cgroups they were in.
fn clean_up(scratch: &Path) {
    crate::unmount_under(scratch);
    for pid in our_children() {
        // SAFETY: kill and waitpid on a PID that is our own child; no memory is involved.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    for cgroup in our_cgroups() {
        let _ = fs::remove_dir(cgroup);
    }
}

/// cgroups named for this process (`<pid>-<n>`, as the executor names a sandbox's), in every
/// hierarchy.
fn our_cgroups() -> Vec<PathBuf> {
    let Ok(layout) = executor::cgroup::layout() else { return Vec::new() };
    let prefix = format!("{}-", std::process::id());
    layout
        .roots()
        .iter()
        .filter_map(|r| fs::read_dir(r.join(executor::cgroup::PARENT)).ok())
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// Our child processes, zombies included.
fn our_children() -> Vec<i32> {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|children| children.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<_>>())
        .collect()
}

/// Unpacks the busybox test rootfs ([`crate::write_busybox_rootfs_tar`]) into `dir/busybox`,
/// owners and modes kept, and returns that directory: the read-only lower of the tests'
/// sandboxes.
pub fn unpack_busybox(dir: &Path) -> PathBuf {
    let lower = dir.join("busybox");
    let tar_path = dir.join("busybox.tar");
    crate::write_busybox_rootfs_tar(&tar_path).expect("busybox rootfs tar");
    let mut archive = tar::Archive::new(fs::File::open(&tar_path).expect("busybox rootfs tar"));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.unpack(&lower).expect("unpack the busybox rootfs");
    lower
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Selection {
        Selection::from_args(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments_select_as_libtest_does() {
        let s = args(&["--nocapture", "--test-threads", "1", "pid", "-q"]);
        assert_eq!(s.filters, ["pid"]);
        assert!(s.wants("pid1_is_the_command") && !s.wants("devices"));
        let s = args(&["--exact", "pid"]);
        assert!(!s.wants("pid1_is_the_command") && s.wants("pid"));
        assert!(args(&[]).wants("anything"));
        let s = args(&["--skip", "oom", "kill"]);
        assert!(s.wants("dropping_kills_everything") && !s.wants("oom_kill_is_reported"));
        assert!(args(&["--list", "--format", "terse"]).list);
        assert!(args(&["--list", "--format", "terse"]).filters.is_empty());
    }
}
