//! Helpers shared by rbuild's tests and its demo: the busybox base image made from Debian's
//! `busybox-static`, a temporary store driven through the real `rbuild` binary, and local
//! servers (registry, S3, a byte-counting proxy) on 127.0.0.1.
//!
//! Nothing here is part of rbuild itself.

pub mod containers;
pub mod dockerapi;
pub mod harness;
pub mod outside;
pub mod proxy;
pub mod registry;
pub mod s3;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A config file (`RBUILD_CONFIG`) that blocks Docker Hub: no test may reach beyond this
/// machine, and a short name (`busybox`) the store lacks must fail rather than go out.
pub const OFFLINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/offline.toml");

/// Where Debian's `busybox-static` puts its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Users and groups of the test base image: root, a regular user `app` (1000) and `nobody`.
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
app:x:1000:1000:app:/home/app:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\napp:x:1000:\nstaff:x:50:app\nnogroup:x:65534:\n";

/// A fixed mtime, so that importing the rootfs twice gives the same layer digest.
const MTIME: u64 = 946684800; // 2000-01-01

/// Writes a busybox rootfs as a tar to `out`: `/bin/busybox` from the host (it must be the
/// static one), a symlink for every applet it lists, `/etc/passwd`, `/etc/group`, `/tmp`
/// (1777), `/root` and `/home/app`.
pub fn write_busybox_rootfs_tar(out: &Path) -> io::Result<()> {
    let busybox = Path::new(BUSYBOX);
    if !busybox.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{BUSYBOX} not found: install Debian's busybox-static (apt-get install busybox-static)"),
        ));
    }
    let list = Command::new(busybox).arg("--list-full").output()?;
    if !list.status.success() {
        return Err(io::Error::other(format!("{BUSYBOX} --list-full failed")));
    }
    let applets = String::from_utf8_lossy(&list.stdout).into_owned();

    let mut tar = tar::Builder::new(File::create(out)?);
    let dir = |tar: &mut tar::Builder<File>, path: &str, mode: u32, uid: u64| -> io::Result<()> {
        let mut h = header(tar::EntryType::Directory, mode, uid);
        tar.append_data(&mut h, path, io::empty())
    };
    let mut dirs: Vec<&str> =
        vec!["bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "home", "root", "tmp", "dev", "proc", "sys"];
    dirs.sort_unstable();
    for d in dirs {
        let mode = match d {
            "tmp" => 0o1777,
            "root" => 0o700,
            _ => 0o755,
        };
        dir(&mut tar, d, mode, 0)?;
    }
    dir(&mut tar, "home/app", 0o755, 1000)?;

    let mut h = header(tar::EntryType::Regular, 0o755, 0);
    h.set_size(busybox.metadata()?.len());
    tar.append_data(&mut h, "bin/busybox", File::open(busybox)?)?;
    for (path, body) in [("etc/passwd", PASSWD), ("etc/group", GROUP)] {
        let mut h = header(tar::EntryType::Regular, 0o644, 0);
        h.set_size(body.len() as u64);
        tar.append_data(&mut h, path, body.as_bytes())?;
    }
    let mut links: Vec<&str> = applets.lines().map(|l| l.trim().trim_start_matches('/')).collect();
    links.sort_unstable();
    links.dedup();
    for link in links {
        if link.is_empty() || link == "bin/busybox" || !link.contains('/') {
            continue;
        }
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        tar.append_link(&mut h, link, "/bin/busybox")?;
    }
    tar.into_inner()?.sync_all()
}

fn header(kind: tar::EntryType, mode: u32, id: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(id);
    h.set_gid(id);
    h.set_mtime(MTIME);
    h.set_size(0);
    h
}

/// A store in a temporary directory, driven through the `rbuild` binary. Dropping it removes
/// the directory, after unmounting anything a failed test left mounted under it.
pub struct TestStore {
    pub root: tempfile::TempDir,
    pub bin: PathBuf,
    /// The config file every command gets as `RBUILD_CONFIG` ([`OFFLINE`] unless a test that
    /// runs its own registry points Docker Hub's mirror at it).
    pub config: PathBuf,
}

impl TestStore {
    /// The store's size as a user measures it: `du -sbc --apparent-size` of the directories
    /// `cache::Store::size` counts (its README, "Size").
    pub fn size_by_du(&self) -> u64 {
        let out = Command::new("du")
            .args(["-sbc", "--apparent-size"])
            .args(["blobs", "layers", "cache", "snapshots", "tmp"].map(|d| self.path().join(d)))
            .output()
            .expect("du runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let total = text.lines().last().and_then(|l| l.split_whitespace().next()).expect("du's total line");
        total.parse().expect("du prints bytes")
    }

    /// A new empty store; `bin` is the `rbuild` binary (`env!("CARGO_BIN_EXE_rbuild")`).
    pub fn new(bin: &str) -> TestStore {
        let root = tempfile::Builder::new().prefix("rbuild-test-").tempdir().expect("temp dir for the store");
        TestStore { root, bin: PathBuf::from(bin), config: PathBuf::from(OFFLINE) }
    }

    /// `rbuild --root <store>` ready for more arguments, with the store's config file.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.root.path()).env_remove("RBUILD_ROOT").env("RBUILD_CONFIG", &self.config);
        c
    }

    /// Makes `registry` (`127.0.0.1:PORT`) Docker Hub's only source for this store, as an
    /// air-gapped machine's config would: short names (`busybox`) are pulled from it, Docker Hub
    /// itself is never contacted. The config file lives in the store's directory.
    pub fn use_hub_mirror(&mut self, registry: &str) {
        let path = self.root.path().join("rbuild-config.toml");
        let text = format!("[registries.\"docker.io\"]\nmirrors = [\"{registry}\"]\nblocked = true\n");
        std::fs::write(&path, text).expect("write the config file");
        self.config = path;
    }

    /// Runs `rbuild --root <store> ARGS...` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("rbuild binary runs")
    }

    /// Runs `rbuild ARGS...`, panicking with its output unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rbuild {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command expected to fail: exit 1, no panic, exactly one `rbuild: error:` line,
    /// which is returned.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "rbuild {args:?}: expected exit 1:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("rbuild: error: ")).collect();
        assert_eq!(errors.len(), 1, "expected exactly one error line:\n{stderr}");
        errors[0].to_string()
    }

    /// Imports the busybox rootfs as `busybox:latest` and returns the image name.
    pub fn import_busybox(&self) -> &'static str {
        let tar = self.root.path().join("busybox-rootfs.tar");
        write_busybox_rootfs_tar(&tar).expect("busybox rootfs tar");
        self.ok(&["import", tar.to_str().expect("utf-8 temp path"), "busybox:latest"]);
        "busybox:latest"
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// `rbuild save --format oci` of `image`, read back: its files by path, and the image
    /// manifest (`index.json`'s first entry).
    fn saved_oci(&self, image: &str) -> (std::collections::HashMap<String, Vec<u8>>, serde_json::Value) {
        let tar_path = self.root.path().join(format!("saved-{}.tar", image.replace([':', '/'], "_")));
        self.ok(&["save", "--format", "oci", "-o", tar_path.to_str().expect("utf-8 temp path"), image]);
        let mut files = std::collections::HashMap::new();
        let mut archive = tar::Archive::new(File::open(&tar_path).expect("saved archive"));
        for entry in archive.entries().expect("archive entries") {
            let mut entry = entry.expect("archive entry");
            let path = entry.path().expect("entry path").to_string_lossy().into_owned();
            let mut body = Vec::new();
            io::Read::read_to_end(&mut entry, &mut body).expect("entry body");
            files.insert(path, body);
        }
        let _ = std::fs::remove_file(&tar_path);
        let index = blob_json(&files, "index.json");
        let mut manifest = blob_json(&files, &blob_path(&index["manifests"][0]["digest"]));
        // A multi-platform image is saved whole: its image for this machine's platform.
        if manifest.get("manifests").is_some() {
            let host = hostutil::platform::host().architecture;
            let list = manifest["manifests"].as_array().expect("an index lists manifests").clone();
            let ours =
                list.iter().find(|m| m["platform"]["architecture"] == host).expect("the host's platform");
            manifest = blob_json(&files, &blob_path(&ours["digest"]));
        }
        (files, manifest)
    }

    /// The entry paths of each of `image`'s layers, bottom first, from `rbuild save`.
    pub fn layer_entries(&self, image: &str) -> Vec<Vec<String>> {
        let (files, manifest) = self.saved_oci(image);
        let layers = manifest["layers"].as_array().expect("layers").clone();
        layers
            .iter()
            .map(|l| {
                let bytes = &files[&blob_path(&l["digest"])];
                let reader = cache::decompressed(io::Cursor::new(bytes.clone())).expect("layer compression");
                let mut tar = tar::Archive::new(reader);
                tar.entries()
                    .expect("layer entries")
                    .map(|e| e.expect("layer entry").path().expect("path").to_string_lossy().into_owned())
                    .collect()
            })
            .collect()
    }

    /// The image config of `image`, byte for byte as `rbuild save --format oci` exports it:
    /// `index.json` -> manifest -> config blob, read from the archive. (skopeo's `--config`
    /// re-encodes through OCI's struct and drops Docker's fields such as `Healthcheck`.)
    pub fn config(&self, image: &str) -> serde_json::Value {
        let (files, manifest) = self.saved_oci(image);
        blob_json(&files, &blob_path(&manifest["config"]["digest"]))
    }
}

/// A file of a saved archive, as JSON.
fn blob_json(files: &std::collections::HashMap<String, Vec<u8>>, path: &str) -> serde_json::Value {
    serde_json::from_slice(files.get(path).unwrap_or_else(|| panic!("{path} missing from the archive")))
        .expect("JSON in the archive")
}

/// Where a descriptor's digest (`sha256:...`) lives in an OCI layout.
fn blob_path(digest: &serde_json::Value) -> String {
    format!("blobs/sha256/{}", &digest.as_str().expect("digest")["sha256:".len()..])
}

impl Drop for TestStore {
    fn drop(&mut self) {
        // Containers a test left (it failed half-way, or kept them on purpose) and the bridges
        // of its networks: removed through rbuild, which knows exactly what it made.
        if self.root.path().join("containers").is_dir()
            && let Ok(out) = self.cmd().args(["ps", "-a", "-q", "--no-trunc"]).output()
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = self.cmd().args(["rm", "-f", "-v", id]).output();
            }
        }
        if self.root.path().join("networks").is_dir() {
            let _ = self.cmd().args(["network", "prune", "-f"]).output();
        }
        unmount_under(self.root.path());
    }
}

/// `../shared/<rel>` of the workspace (third-party data the project is given beside its
/// checkout). A clone made elsewhere (`git clone /work/main /tmp/fresh`) finds it beside the
/// repository it was cloned from, when that origin is a local path.
pub fn shared_path(rel: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let beside = |repo: &Path| repo.join("../shared").join(rel);
    let here = beside(&root);
    if here.exists() {
        return here;
    }
    let origin = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["config", "--get", "remote.origin.url"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    match origin.filter(|o| o.is_absolute()).map(|o| beside(&o)) {
        Some(there) if there.exists() => there,
        _ => here,
    }
}

/// A test that cannot run here returns after printing `skipped: <reason>` (what
/// `scripts/test.sh` collects and shows). For what CI always provides (`../shared/conformance`),
/// under `CI=true` the skip is a failure instead: CI must never go green checking nothing.
pub fn skip_unless_ci(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{reason}, and CI=true: this test must run in CI");
    }
    println!("skipped: {reason}");
}

/// Debian's static busybox for `goarch` (`arm64`, `arm`, `386`), which `scripts/foreign-busybox.sh`
/// (run by `scripts/test.sh`) unpacks into the workspace's `target/foreign-busybox/`; `amd64` or
/// this machine's own architecture is the host's `/bin/busybox`.
pub fn foreign_busybox(goarch: &str) -> Option<PathBuf> {
    if goarch == hostutil::platform::host().architecture {
        return Some(PathBuf::from("/bin/busybox"));
    }
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/foreign-busybox").join(goarch).join("busybox");
    path.is_file().then_some(path)
}

/// Whether this kernel has binfmt_misc, which running another architecture's programs needs.
pub fn kernel_has_binfmt_misc() -> bool {
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.lines().any(|l| l.ends_with("binfmt_misc")))
}

/// A store under `dir/store` holding the busybox rootfs as `busybox:latest` (one gzip layer,
/// this host's platform, created and its history dated 2000-01-01), for tests that drive the
/// library crates directly rather than the binary.
pub fn store_with_busybox(dir: &Path) -> cache::Store {
    use cache::oci::{History, ImageConfig, Platform, RootFs};
    let store = cache::Store::open(dir.join("store")).expect("open the store");
    let tar = dir.join("busybox.tar");
    write_busybox_rootfs_tar(&tar).expect("busybox rootfs tar");
    let file = io::BufReader::new(File::open(&tar).expect("busybox rootfs tar"));
    let layer = store.import_layer(file, cache::Compression::Gzip).expect("import the busybox layer");
    std::fs::remove_file(&tar).expect("remove the rootfs tar");
    let platform = Platform::host();
    let config = ImageConfig {
        created: Some("2000-01-01T00:00:00Z".into()),
        architecture: platform.architecture,
        os: platform.os,
        rootfs: RootFs { kind: "layers".into(), diff_ids: vec![layer.diff_id.clone()] },
        history: vec![History {
            created: Some("2000-01-01T00:00:00Z".into()),
            created_by: Some("import".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let image = store.put_image(&config, &[layer]).expect("store the busybox image");
    let name = "busybox:latest".parse::<cache::ImageRef>().expect("a valid name");
    store.tag(&name, &image.digest).expect("tag busybox:latest");
    store
}

/// Whether the program `name` is on PATH; if not, says `skipped: ...` (the caller returns).
pub fn installed(name: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        println!("skipped: {name} is not installed (scripts/test.sh installs it)");
    }
    found
}

/// Unmounts every mount point at or below `dir`, deepest first, by exact path.
pub fn unmount_under(dir: &Path) {
    let mut targets = hostutil::mountinfo::mount_points_under(dir);
    targets.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for t in targets {
        if let Ok(c) = std::ffi::CString::new(t.as_os_str().as_encoded_bytes()) {
            // SAFETY: umount2 with a valid NUL-terminated path has no memory-safety concerns.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// A context directory for a build, filled from `(path, content)` pairs.
pub fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("rbuild-ctx-").tempdir().expect("temp context dir");
    for (path, content) in files {
        let p = dir.path().join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("context subdir");
        }
        std::fs::write(&p, content).expect("context file");
    }
    dir
}

/// Copies the host's `binary` and the shared libraries `ldd` says it loads into `root` (paths
/// kept, symlinks resolved), so that a test image built from busybox gets a real glibc tool
/// (`getent`, `ssh-add`) by `COPY root/ /`.
pub fn copy_host_binary(binary: &Path, root: &Path) {
    let ldd = Command::new("ldd").arg(binary).output().expect("ldd");
    let mut files = vec![binary.to_path_buf()];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line.split("=>").last().unwrap_or(line).split_whitespace().next().unwrap_or("");
        if path.starts_with('/') {
            files.push(path.into());
        }
    }
    for f in files {
        let to = root.join(f.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(to.parent().expect("a parent")).expect("create the directory");
        // The file itself, not a symlink to it: the image has no /lib to point into.
        std::fs::copy(std::fs::canonicalize(&f).expect("canonical path"), &to).expect("copy");
    }
}

/// A free TCP port on 127.0.0.1 (bound and released: the kernel does not hand it out again at
/// once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// The body of `GET /` on 127.0.0.1:`port`, as a browser on the host would get it; the answer
/// must be a 200.
pub fn http_get(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the port");
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send the request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read the answer");
    assert!(answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

/// `GET /` on 127.0.0.1:`port`: the whole answer (status line, headers, body), or `None` when
/// nothing answers there whole (yet).
pub fn try_http_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// The body of `GET /` on 127.0.0.1:`port` once it serves a 200 (up to 30 s). A published
/// port accepts before the server in the container listens (its proxy then drops the
/// connection, as docker's does), so a user retries; so does this.
pub fn http_get_when_served(port: u16) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let answer = try_http_get(port);
        if let Some(a) = &answer
            && (a.starts_with("HTTP/1.0 200") || a.starts_with("HTTP/1.1 200"))
        {
            return a.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
        }
        assert!(std::time::Instant::now() < deadline, "no 200 on port {port}: {answer:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Waits (up to 5 s) until something accepts connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16) {
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("nothing listens on 127.0.0.1:{port}");
}

/// The host's busybox httpd serving `dir` on 127.0.0.1, on a port of its own; killed (by PID)
/// and reaped when dropped.
pub struct Httpd {
    child: std::process::Child,
    pub port: u16,
}

impl Httpd {
    pub fn serve(dir: &Path) -> Httpd {
        let port = free_port();
        let child = std::process::Command::new("/bin/busybox")
            .args(["httpd", "-f", "-p", &format!("127.0.0.1:{port}"), "-h"])
            .arg(dir)
            .spawn()
            .expect("busybox httpd (busybox-static)");
        let server = Httpd { child, port };
        wait_for_port(port);
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{}", self.port, path.trim_start_matches('/'))
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
