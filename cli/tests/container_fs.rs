//! `rbuild diff`, `commit` and `cp` on containers made by hand in the store: a container from
//! the busybox image whose upper directory is filled as a RUN would have left it (a new file,
//! a changed file, a whiteout, an opaque directory, symlinks that point out of the container).
//! Stopped containers go through the overlay mounted in a private namespace; a "running" one is
//! a chrooted process whose `/proc/PID/root` is the container's root.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use runtime::container::{Config, Container, ContainerConfig, ContainerId, Containers, HostConfig, Status};
use test_support::TestStore;

const NAME: &str = "fs-test";
/// The container's own /etc/passwd, unlike the image's and the host's.
const CONTAINER_PASSWD: &str = "root:x:0:0:container root:/root:/bin/sh\n";

struct Fixture {
    s: TestStore,
    c: Container,
    /// A scratch directory on the host for the copies' sources and destinations.
    host: tempfile::TempDir,
}

impl Fixture {
    fn cp(&self, args: &[&str]) -> String {
        let mut all = vec!["cp"];
        all.extend_from_slice(args);
        self.s.ok(&all)
    }

    /// `rbuild cp ARGS...`, which must fail with exactly one error line: returned.
    fn cp_fails(&self, args: &[&str]) -> String {
        let mut all = vec!["cp"];
        all.extend_from_slice(args);
        self.s.fails(&all)
    }

    fn h(&self, rel: &str) -> PathBuf {
        self.host.path().join(rel)
    }

    fn hs(&self, rel: &str) -> String {
        self.h(rel).to_str().unwrap().to_string()
    }

    fn upper(&self, rel: &str) -> PathBuf {
        self.c.upper().join(rel)
    }
}

fn whiteout(path: &Path) {
    nix::sys::stat::mknod(path, nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0).unwrap();
}

fn set_opaque(dir: &Path) {
    let p = CString::new(dir.to_str().unwrap()).unwrap();
    let name = CString::new("trusted.overlay.opaque").unwrap();
    // SAFETY: NUL-terminated strings and a 1-byte value that outlive the call.
    let r = unsafe { libc::lsetxattr(p.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    assert_eq!(r, 0, "setting the opaque xattr: {}", std::io::Error::last_os_error());
}

/// A store with busybox and the container `fs-test` (`sh -c "echo hi"`, env FOO=bar, label
/// from=container, `mounts` as given), its init layer made as `start` makes it, and its upper
/// holding: /etc/new (added), /etc/passwd (changed), /etc/group (deleted), /home (opaque:
/// /home/app gone, /home/new added), /srv with a file and symlinks that aim out of it.
fn fixture(mounts: Vec<runtime::MountRequest>) -> Fixture {
    let s = TestStore::new(env!("CARGO_BIN_EXE_rbuild"));
    s.import_busybox();
    let store = cache::Store::open(s.path()).unwrap();
    let image = store.resolve("busybox:latest").unwrap();
    let containers = Containers::open(s.path()).unwrap();
    let id = ContainerId::random();
    let config = ContainerConfig {
        id: id.clone(),
        name: NAME.into(),
        created: runtime::container::now_rfc3339(),
        image_id: image.digest.clone(),
        config: Config {
            env: vec!["PATH=/bin:/usr/bin".into(), "FOO=bar".into()],
            cmd: vec!["sh".into(), "-c".into(), "echo hi".into()],
            labels: BTreeMap::from([("from".to_string(), "container".to_string())]),
            image: "busybox:latest".into(),
            ..Config::default()
        },
        host: HostConfig { mounts: mounts.clone(), ..HostConfig::default() },
    };
    containers.reserve_name(NAME, &id).unwrap();
    let c = containers.create(&config).unwrap();

    let init = c.init_layer();
    for d in ["proc", "dev", "sys", "etc"] {
        fs::create_dir_all(init.join(d)).unwrap();
    }
    for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
        fs::write(init.join(f), "").unwrap();
    }
    for m in &mounts {
        fs::create_dir_all(init.join(m.target().trim_start_matches('/'))).unwrap();
    }

    let up = c.upper();
    fs::create_dir(up.join("etc")).unwrap();
    fs::write(up.join("etc/new"), "new\n").unwrap();
    fs::write(up.join("etc/passwd"), CONTAINER_PASSWD).unwrap();
    whiteout(&up.join("etc/group"));
    fs::create_dir(up.join("home")).unwrap();
    set_opaque(&up.join("home"));
    fs::write(up.join("home/new"), "").unwrap();
    fs::create_dir(up.join("srv")).unwrap();
    fs::write(up.join("srv/data"), "data\n").unwrap();
    fs::set_permissions(up.join("srv/data"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(up.join("srv/data"), Some(1000), Some(50)).unwrap();
    symlink("/etc/passwd", up.join("srv/pw")).unwrap();
    symlink("/etc", up.join("srv/etcdir")).unwrap();
    symlink("../../../../../../etc", up.join("srv/up")).unwrap();
    let host = tempfile::Builder::new().prefix("rbuild-cp-").tempdir().unwrap();
    Fixture { s, c, host }
}

/// Nothing of the store is mounted in the test's (the host's) mount namespace.
fn assert_nothing_mounted(f: &Fixture) {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = f.s.path().to_str().unwrap();
    assert!(!info.contains(root), "a mount under the store was left in the host namespace:\n{info}");
}

#[test]
fn diff_lists_added_changed_and_deleted_paths_like_docker() {
    let f = fixture(vec![]);
    let out = f.s.ok(&["diff", NAME]);
    assert_eq!(
        out,
        "C /etc\nD /etc/group\nA /etc/new\nC /etc/passwd\nC /home\nD /home/app\nA /home/new\nA /srv\n\
         A /srv/data\nA /srv/etcdir\nA /srv/pw\nA /srv/up\n"
    );
    // The init layer's mount points are not changes, and an id prefix finds the container.
    let by_id = f.s.ok(&["diff", &f.c.id().as_str()[..12]]);
    assert_eq!(by_id, out);
    let e = f.s.fails(&["diff", "nope"]);
    assert_eq!(e, "rbuild: error: no such container: nope");
}

/// The files of `image`, exported with `build -o type=local` from a one-line Dockerfile.
fn export(s: &TestStore, image: &str) -> tempfile::TempDir {
    let ctx = test_support::context(&[("Dockerfile", &format!("FROM {image}\n"))]);
    let out = tempfile::Builder::new().prefix("rbuild-export-").tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().join("root").display());
    s.ok(&["build", "-q", "-o", &dest, ctx.path().to_str().unwrap()]);
    out
}

#[test]
fn commit_makes_an_image_of_the_changes_with_config_and_history() {
    let f = fixture(vec![]);
    let out = f.s.ok(&[
        "commit",
        "-a",
        "Jane Doe <jane@example.com>",
        "-m",
        "first commit",
        "-c",
        "CMD [\"/bin/cat\", \"/etc/new\"]",
        "-c",
        "ENV NEW=1 AGAIN=$FOO",
        "-c",
        "LABEL stage=committed",
        "-c",
        "EXPOSE 8080",
        NAME,
        "committed:1",
    ]);
    let id = out.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{out}");
    assert!(f.s.ok(&["images", "--digests"]).contains("committed"));

    let config = f.s.config("committed:1");
    let c = &config["config"];
    assert_eq!(c["Cmd"], serde_json::json!(["/bin/cat", "/etc/new"]));
    let env: Vec<&str> = c["Env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(env, ["PATH=/bin:/usr/bin", "FOO=bar", "NEW=1", "AGAIN=bar"]);
    assert_eq!(c["Labels"], serde_json::json!({"from": "container", "stage": "committed"}));
    assert_eq!(c["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(config["author"], "Jane Doe <jane@example.com>");
    let history = config["history"].as_array().unwrap();
    let last = history.last().unwrap();
    assert_eq!(last["created_by"], "sh -c echo hi");
    assert_eq!(last["comment"], "first commit");
    assert_eq!(last["author"], "Jane Doe <jane@example.com>");
    let base = f.s.config("busybox:latest");
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        base["rootfs"]["diff_ids"].as_array().unwrap().len() + 1
    );

    // The layer holds the changes: applied over the image, files are added, changed, gone.
    let files = export(&f.s, "committed:1");
    let root = files.path().join("root");
    assert_eq!(fs::read_to_string(root.join("etc/new")).unwrap(), "new\n");
    assert_eq!(fs::read_to_string(root.join("etc/passwd")).unwrap(), CONTAINER_PASSWD);
    assert!(!root.join("etc/group").exists(), "a deleted file came back");
    assert!(!root.join("home/app").exists(), "the opaque /home kept the image's content");
    assert!(root.join("home/new").is_file());
    assert!(root.join("bin/busybox").is_file());
    assert_eq!(fs::read_link(root.join("srv/pw")).unwrap(), Path::new("/etc/passwd"));

    // Without a name the image is kept dangling; a RUN is no change.
    let dangling = f.s.ok(&["commit", "--pause=false", NAME]);
    assert!(dangling.trim().starts_with("sha256:"));
    let e = f.s.fails(&["commit", "-c", "RUN rm -rf /", NAME]);
    assert_eq!(e, "rbuild: error: run is not a valid change command");
    // ENTRYPOINT without CMD clears the container's command, as in a build.
    f.s.ok(&["commit", "-c", "ENTRYPOINT [\"/bin/echo\"]", NAME, "ep:1"]);
    let ep = f.s.config("ep:1");
    assert_eq!(ep["config"]["Entrypoint"], serde_json::json!(["/bin/echo"]));
    assert!(ep["config"].get("Cmd").is_none_or(|c| c.is_null()), "{}", ep["config"]);
    assert_nothing_mounted(&f);
}

#[test]
fn cp_out_of_a_stopped_container_follows_docker_path_rules() {
    let f = fixture(vec![]);
    // A file to a new name, and into an existing directory.
    f.cp(&[&format!("{NAME}:/etc/new"), &f.hs("new.txt")]);
    assert_eq!(fs::read_to_string(f.h("new.txt")).unwrap(), "new\n");
    fs::create_dir(f.h("into")).unwrap();
    f.cp(&[&format!("{NAME}:etc/passwd"), &f.hs("into")]);
    assert_eq!(fs::read_to_string(f.h("into/passwd")).unwrap(), CONTAINER_PASSWD);
    // Over an existing file.
    fs::write(f.h("over"), "old").unwrap();
    f.cp(&[&format!("{NAME}:/etc/new"), &f.hs("over")]);
    assert_eq!(fs::read_to_string(f.h("over")).unwrap(), "new\n");

    // A directory to a new name (it becomes that directory), into an existing one, and its
    // content only with `/.`.
    f.cp(&[&format!("{NAME}:/srv"), &f.hs("srvcopy")]);
    assert_eq!(fs::read_to_string(f.h("srvcopy/data")).unwrap(), "data\n");
    let meta = fs::metadata(f.h("srvcopy/data")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "without -a, files belong to the caller");
    assert_eq!(fs::read_link(f.h("srvcopy/pw")).unwrap(), Path::new("/etc/passwd"));
    f.cp(&[&format!("{NAME}:/srv"), &f.hs("into")]);
    assert!(f.h("into/srv/data").is_file());
    fs::create_dir(f.h("merged")).unwrap();
    f.cp(&["-a", &format!("{NAME}:/srv/."), &f.hs("merged")]);
    assert!(f.h("merged/data").is_file() && !f.h("merged/srv").exists());
    let meta = fs::metadata(f.h("merged/data")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 50), "-a keeps the owners");

    // A deleted file is not there; a directory cannot replace a file; a file cannot make a
    // directory; a file is not a directory.
    let e = f.cp_fails(&[&format!("{NAME}:/etc/group"), &f.hs("group")]);
    assert_eq!(e, format!("rbuild: error: No such container:path: {NAME}:/etc/group"));
    let e = f.cp_fails(&[&format!("{NAME}:/nope"), &f.hs("x")]);
    assert_eq!(e, format!("rbuild: error: No such container:path: {NAME}:/nope"));
    let e = f.cp_fails(&[&format!("{NAME}:/srv"), &f.hs("over")]);
    assert!(e.contains("cannot copy a directory to a file"), "{e}");
    let e = f.cp_fails(&[&format!("{NAME}:/etc/new"), &format!("{}/", f.hs("missing"))]);
    assert!(e.contains("no such directory"), "{e}");
    let e = f.cp_fails(&[&format!("{NAME}:/etc/new/"), &f.hs("y")]);
    assert!(e.contains("Not a directory"), "{e}");
    let e = f.cp_fails(&[&format!("{NAME}:/etc/new"), &f.hs("no/such/parent")]);
    assert!(e.contains("No such file or directory"), "{e}");
    let e = f.cp_fails(&[&format!("{NAME}:/etc/new"), &format!("{NAME}:/x")]);
    assert_eq!(e, "rbuild: error: copying between containers is not supported");
    let e = f.cp_fails(&[&f.hs("new.txt"), &f.hs("z")]);
    assert_eq!(e, "rbuild: error: must specify at least one container source");
    let e = f.cp_fails(&["nope:/etc/new", &f.hs("z")]);
    assert_eq!(e, "rbuild: error: no such container: nope");
    assert_nothing_mounted(&f);
}

#[test]
fn cp_out_resolves_symlinks_inside_the_container() {
    let f = fixture(vec![]);
    let host_passwd = fs::read_to_string("/etc/passwd").unwrap();
    assert_ne!(host_passwd, CONTAINER_PASSWD);
    // Without -L the link itself; with -L its target, the container's file, named as the link.
    f.cp(&[&format!("{NAME}:/srv/pw"), &f.hs("link")]);
    assert_eq!(fs::read_link(f.h("link")).unwrap(), Path::new("/etc/passwd"));
    f.cp(&["-L", &format!("{NAME}:/srv/pw"), &f.hs("followed")]);
    assert_eq!(fs::read_to_string(f.h("followed")).unwrap(), CONTAINER_PASSWD);
    fs::create_dir(f.h("dir")).unwrap();
    f.cp(&["-L", &format!("{NAME}:/srv/pw"), &f.hs("dir")]);
    assert_eq!(fs::read_to_string(f.h("dir/pw")).unwrap(), CONTAINER_PASSWD);
    // Symlinks in the middle of the path, absolute or climbing with `..`, stay inside.
    for via in ["/srv/etcdir/passwd", "/srv/up/passwd", "/../../etc/passwd"] {
        let dest = f.h("via");
        let _ = fs::remove_file(&dest);
        f.cp(&[&format!("{NAME}:{via}"), dest.to_str().unwrap()]);
        assert_eq!(fs::read_to_string(&dest).unwrap(), CONTAINER_PASSWD, "through {via}");
    }
    assert_nothing_mounted(&f);
}

/// The entries of a tar stream: path -> (type, data, link target).
fn tar_entries(bytes: &[u8]) -> BTreeMap<String, (tar::EntryType, Vec<u8>, Option<String>)> {
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let link = entry.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.insert(path, (entry.header().entry_type(), data, link));
    }
    out
}

#[test]
fn cp_streams_tar_both_ways() {
    let f = fixture(vec![]);
    let out = f.s.run(&["cp", &format!("{NAME}:/srv"), "-"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let entries = tar_entries(&out.stdout);
    let names: Vec<&str> = entries.keys().map(String::as_str).collect();
    assert_eq!(names, ["srv/", "srv/data", "srv/etcdir", "srv/pw", "srv/up"]);
    assert_eq!(entries["srv/data"].1, b"data\n");
    assert_eq!(entries["srv/pw"].0, tar::EntryType::Symlink);
    assert_eq!(entries["srv/pw"].2.as_deref(), Some("/etc/passwd"));
    // GNU tar reads it too.
    let listed = Command::new("tar")
        .arg("-tvf")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(&out.stdout)?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stdout).contains("1000/50"));

    // Into the container: a tar on stdin lands in the destination directory, owned by the
    // container's root without -a.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o600);
    h.set_uid(4321);
    h.set_gid(4321);
    h.set_mtime(1_000_000_000);
    h.set_size(6);
    b.append_data(&mut h, "./fromtar/deep/file", &b"hello\n"[..]).unwrap();
    let stream = b.into_inner().unwrap();
    let run_in = |args: &[&str], input: &[u8]| {
        let mut child = f.s.cmd().args(args).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    };
    let done = run_in(&["cp", "-", &format!("{NAME}:/srv")], &stream);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let written = f.upper("srv/fromtar/deep/file");
    assert_eq!(fs::read_to_string(&written).unwrap(), "hello\n");
    let meta = fs::metadata(&written).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777, meta.mtime()), (0, 0, 0o600, 1_000_000_000));
    // With -a the owner in the stream stays.
    let done = run_in(&["cp", "-a", "-", &format!("{NAME}:/tmp")], &stream);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert_eq!(fs::metadata(f.upper("tmp/fromtar/deep/file")).unwrap().uid(), 4321);

    // A stream climbing out with `..` is refused, and writes nothing outside.
    let mut evil = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    let name = b"../../../../../../tmp/rbuild-cp-escape";
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    evil.append(&h, &b"evil"[..]).unwrap();
    let done = run_in(&["cp", "-", &format!("{NAME}:/srv")], &evil.into_inner().unwrap());
    assert_eq!(done.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&done.stderr).contains("\"..\" is not allowed"));
    assert!(!Path::new("/tmp/rbuild-cp-escape").exists());
    // The destination must be a directory; a stream that is not a tar is an error.
    let done = run_in(&["cp", "-", &format!("{NAME}:/etc/new")], &stream);
    assert!(String::from_utf8_lossy(&done.stderr).contains("must be a directory"));
    let done = run_in(&["cp", "-", &format!("{NAME}:/srv")], b"not a tar at all");
    assert_eq!(done.status.code(), Some(1));
    assert_nothing_mounted(&f);
}

#[test]
fn cp_into_a_stopped_container_writes_its_upper_and_never_the_host() {
    let f = fixture(vec![]);
    fs::write(f.h("file"), "from host\n").unwrap();
    std::os::unix::fs::chown(f.h("file"), Some(1234), Some(1234)).unwrap();
    fs::create_dir_all(f.h("tree/sub")).unwrap();
    fs::write(f.h("tree/sub/leaf"), "leaf\n").unwrap();
    fs::hard_link(f.h("tree/sub/leaf"), f.h("tree/hard")).unwrap();
    symlink("sub/leaf", f.h("tree/rel")).unwrap();

    f.cp(&[&f.hs("file"), &format!("{NAME}:/srv/")]);
    let meta = fs::metadata(f.upper("srv/file")).unwrap();
    assert_eq!(fs::read_to_string(f.upper("srv/file")).unwrap(), "from host\n");
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "owned by the container's root without -a");
    f.cp(&["-a", &f.hs("file"), &format!("{NAME}:/srv/kept")]);
    assert_eq!(fs::metadata(f.upper("srv/kept")).unwrap().uid(), 1234);

    // A directory to a new path, with its hard link and relative symlink.
    f.cp(&[&f.hs("tree"), &format!("{NAME}:/newtree")]);
    assert_eq!(fs::read_to_string(f.upper("newtree/sub/leaf")).unwrap(), "leaf\n");
    let (a, b) =
        (fs::metadata(f.upper("newtree/sub/leaf")).unwrap(), fs::metadata(f.upper("newtree/hard")).unwrap());
    assert_eq!(a.ino(), b.ino(), "the hard link is kept");
    assert_eq!(fs::read_link(f.upper("newtree/rel")).unwrap(), Path::new("sub/leaf"));
    // Into a directory of the image: copied up, then written.
    f.cp(&[&f.hs("file"), &format!("{NAME}:/root")]);
    assert!(f.upper("root/file").is_file());
    assert!(f.s.ok(&["diff", NAME]).contains("A /root/file\n"));

    // Through a symlink that points at /etc: the container's /etc, not the host's.
    f.cp(&[&f.hs("file"), &format!("{NAME}:/srv/etcdir/injected")]);
    assert!(f.upper("etc/injected").is_file());
    assert!(!Path::new("/etc/injected").exists());
    // Over a symlink at the destination: its target (inside) is replaced, as docker does.
    f.cp(&[&f.hs("file"), &format!("{NAME}:/srv/pw")]);
    assert_eq!(fs::read_to_string(f.upper("etc/passwd")).unwrap(), "from host\n");
    assert_eq!(fs::read_link(f.upper("srv/pw")).unwrap(), Path::new("/etc/passwd"));

    let e = f.cp_fails(&[&f.hs("file"), &format!("{NAME}:/nope/x")]);
    assert_eq!(e, format!("rbuild: error: No such container:path: {NAME}:/nope"));
    let e = f.cp_fails(&[&f.hs("missing"), &format!("{NAME}:/srv")]);
    assert!(e.contains(&f.hs("missing")) && e.contains("No such file or directory"), "{e}");
    let e = f.cp_fails(&[&f.hs("tree"), &format!("{NAME}:/etc/new")]);
    assert!(e.contains("cannot copy a directory to a file"), "{e}");
    assert_nothing_mounted(&f);
}

#[test]
fn cp_on_a_stopped_container_sees_its_bind_mounts_and_read_only_ones_refuse_writes() {
    let data = tempfile::Builder::new().prefix("rbuild-cp-bind-").tempdir().unwrap();
    fs::write(data.path().join("in-bind"), "bound\n").unwrap();
    let rw = tempfile::Builder::new().prefix("rbuild-cp-bind-rw-").tempdir().unwrap();
    let f = fixture(vec![
        runtime::MountRequest::Bind {
            source: data.path().to_path_buf(),
            target: "/data".into(),
            readonly: true,
        },
        runtime::MountRequest::Bind {
            source: rw.path().to_path_buf(),
            target: "/rw".into(),
            readonly: false,
        },
    ]);
    f.cp(&[&format!("{NAME}:/data/in-bind"), &f.hs("got")]);
    assert_eq!(fs::read_to_string(f.h("got")).unwrap(), "bound\n");
    fs::write(f.h("file"), "x\n").unwrap();
    let e = f.cp_fails(&[&f.hs("file"), &format!("{NAME}:/data/")]);
    assert!(e.contains("Read-only file system"), "{e}");
    f.cp(&[&f.hs("file"), &format!("{NAME}:/rw/")]);
    assert_eq!(fs::read_to_string(rw.path().join("file")).unwrap(), "x\n");
    assert!(!f.upper("rw/file").exists(), "written under the mount point instead of into the bind");
    assert_nothing_mounted(&f);
}

/// A process chrooted into `root`, standing in for a running container's PID 1; killed (by its
/// PID) when dropped.
struct Chrooted(Child);

impl Drop for Chrooted {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn cp_on_a_running_container_goes_through_its_root() {
    let f = fixture(vec![]);
    let root = tempfile::Builder::new().prefix("rbuild-cp-running-").tempdir().unwrap();
    fs::create_dir_all(root.path().join("bin")).unwrap();
    fs::create_dir_all(root.path().join("etc")).unwrap();
    fs::copy(test_support::BUSYBOX, root.path().join("bin/busybox")).unwrap();
    fs::write(root.path().join("etc/passwd"), CONTAINER_PASSWD).unwrap();
    fs::write(root.path().join("marker"), "running\n").unwrap();
    symlink("/etc/passwd", root.path().join("pw")).unwrap();
    let child = Command::new("chroot")
        .arg(root.path())
        .args(["/bin/busybox", "sleep", "600"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let proc = Chrooted(child);
    let pid = proc.0.id() as i32;
    // Until chroot has exec'd busybox, /proc/PID/root is still the host's.
    while fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| !e.ends_with("busybox")) {
        std::thread::yield_now();
    }
    let containers = Containers::open(f.s.path()).unwrap();
    let mut c = containers.load(f.c.id()).unwrap();
    c.state.status = Status::Running;
    c.state.pid = pid;
    c.state.pid_start = runtime::container::proc_start_time(pid).unwrap();
    containers.save_state(&c).unwrap();

    f.cp(&[&format!("{NAME}:/marker"), &f.hs("marker")]);
    assert_eq!(fs::read_to_string(f.h("marker")).unwrap(), "running\n");
    f.cp(&["-L", &format!("{NAME}:/pw"), &f.hs("pw")]);
    assert_eq!(fs::read_to_string(f.h("pw")).unwrap(), CONTAINER_PASSWD);
    fs::write(f.h("in"), "into running\n").unwrap();
    f.cp(&[&f.hs("in"), &format!("{NAME}:/")]);
    assert_eq!(fs::read_to_string(root.path().join("in")).unwrap(), "into running\n");
    assert!(!f.upper("in").exists(), "a running container is written through its root, not its upper");
    drop(proc);
}
