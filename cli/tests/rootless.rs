//! Rootless rbuild, end to end, as a real unprivileged user: this test (as root) creates a user,
//! runs `rbuild` as that user (no RBUILD_ROOT, no --root: the store must land in
//! `~/.local/share/rbuild`), and removes the user again, also when it fails.
//!
//! Two passes over the same user: first with the subordinate id range Debian's `useradd` gives
//! (every id maps: `USER app` works), then with the range taken away (only root maps: `USER app`
//! fails with the "not mapped" error, everything else works). It is skipped, with
//! `skipped: <reason>`, only when the kernel refuses user namespaces, never on other errors.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_rbuild");

/// What rbuild prints when user namespaces are not available here (see
/// `executor::userns::EnterError::Unavailable`): the one reason to skip.
const UNAVAILABLE: &str = "rbuild: error: rootless: user namespaces are not available";

/// A user made with `useradd -m`, removed with `userdel -r` (home, and its /etc/subuid and
/// /etc/subgid lines) when dropped.
struct TestUser {
    name: String,
    uid: u32,
    home: PathBuf,
}

impl TestUser {
    fn create() -> TestUser {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("rbt{}x{:x}", std::process::id(), nanos & 0xffff);
        run_ok(Command::new("useradd").args(["-m", "-s", "/bin/sh", &name]));
        // From here on, dropping `user` removes it again.
        let mut user = TestUser { uid: 0, home: PathBuf::new(), name };
        let entry = nix::unistd::User::from_name(&user.name).unwrap().expect("the new user is in passwd");
        (user.uid, user.home) = (entry.uid.as_raw(), entry.dir);
        user
    }

    /// The user's subordinate range in `file` (`/etc/subuid` or `/etc/subgid`), as (start, count).
    fn range(&self, file: &str) -> Option<(u64, u64)> {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 3 && f[0] == self.name).then(|| (f[1].parse().unwrap(), f[2].parse().unwrap()))
        })
    }

    /// Gives the user a range in both files unless it has one (useradd adds one on Debian, but
    /// not where login.defs says SUB_UID_COUNT 0): after every range in use.
    fn ensure_range(&self) -> (u64, u64) {
        if let (Some(u), Some(g)) = (self.range("/etc/subuid"), self.range("/etc/subgid")) {
            assert_eq!(u, g, "the test expects the same subordinate uid and gid ranges");
            return u;
        }
        let end = |file: &str| {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            text.lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    Some(f.get(1)?.parse::<u64>().ok()? + f.get(2)?.parse::<u64>().ok()?)
                })
                .max()
                .unwrap_or(0)
        };
        let start = end("/etc/subuid").max(end("/etc/subgid")).max(100_000);
        let spec = format!("{start}-{}", start + 65535);
        run_ok(Command::new("usermod").args(["--add-subuids", &spec, "--add-subgids", &spec, &self.name]));
        (start, 65536)
    }

    fn remove_range(&self) {
        let (start, count) = self.ensure_range();
        let spec = format!("{start}-{}", start + count - 1);
        run_ok(Command::new("usermod").args(["--del-subuids", &spec, "--del-subgids", &spec, &self.name]));
        assert!(self.range("/etc/subuid").is_none() && self.range("/etc/subgid").is_none());
    }

    /// `rbuild ARGS` as this user, in its home, with a minimal environment.
    fn rbuild(&self, args: &[&str]) -> Output {
        Command::new("setpriv")
            .args(["--reuid", &self.name, "--regid", &self.name, "--init-groups", "--"])
            .arg(self.home.join("bin/rbuild"))
            .args(args)
            .env_clear()
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("PATH", "/usr/bin:/bin")
            .env("RBUILD_CONFIG", test_support::OFFLINE)
            .current_dir(&self.home)
            .output()
            .expect("setpriv runs")
    }

    /// [`TestUser::rbuild`], which must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.rbuild(args);
        assert!(out.status.success(), "rbuild {args:?} as {} failed:\n{}", self.name, show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// [`TestUser::rbuild`], which must fail; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.rbuild(args);
        assert!(
            !out.status.success(),
            "rbuild {args:?} as {} should have failed:\n{}",
            self.name,
            show(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn store(&self) -> PathBuf {
        self.home.join(".local/share/rbuild")
    }

    /// Writes a file in the home, owned by the user.
    fn write(&self, rel: &str, contents: &[u8]) -> PathBuf {
        let path = self.home.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        self.chown(&path);
        path
    }

    fn chown(&self, path: &Path) {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.uid)).unwrap();
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // Also deletes the store, whose files belong to subordinate ids the user itself could
        // not remove outside its namespace.
        let _ = Command::new("userdel").args(["-r", &self.name]).output();
    }
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", show(&out));
}

fn show(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const DOCKERFILE: &str = r#"FROM busybox AS base
COPY hello.txt /data/hello.txt
RUN echo built > /data/built.txt && rm /etc/group && rm -r /usr/sbin && mkdir /usr/sbin \
 && touch /usr/sbin/only
RUN --network=host ls /sys/class/net > /data/net.txt \
 && awk '$5 ~ "^/sys" && $6 !~ "^ro" { print "writable", $5 }' /proc/self/mountinfo >> /data/net.txt
CMD ["sh", "-c", "cat /data/hello.txt /data/built.txt; test -e /etc/group || echo no-group; ls /usr/sbin"]

FROM base AS user
USER app
RUN id > /tmp/id.txt && echo "app wrote" > /tmp/app.txt
CMD ["sh", "-c", "cat /tmp/id.txt /tmp/app.txt; whoami"]
"#;

/// The entries of `image`'s layer tars, from `rbuild save`: (path, uid).
fn saved_entries(user: &TestUser, image: &str) -> Vec<(String, u64)> {
    let out = user.home.join(format!("{image}.tar"));
    user.ok(&["save", "-o", out.to_str().unwrap(), image]);
    let mut blobs = std::collections::HashMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(&out).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut body).unwrap();
        blobs.insert(path, body);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&blobs["manifest.json"]).unwrap();
    let mut entries = Vec::new();
    for layer in manifest[0]["Layers"].as_array().unwrap() {
        let bytes = &blobs[layer.as_str().unwrap()];
        let reader: Box<dyn std::io::Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::GzDecoder::new(&bytes[..]))
        } else {
            Box::new(&bytes[..])
        };
        for e in tar::Archive::new(reader).entries().unwrap() {
            let e = e.unwrap();
            entries.push((e.path().unwrap().to_string_lossy().into_owned(), e.header().uid().unwrap()));
        }
    }
    entries
}

#[test]
fn build_and_run_as_an_unprivileged_user() {
    let test = "rootless";
    assert!(nix::unistd::geteuid().is_root(), "{test}: must run as root (it creates a user)");
    let started = std::time::Instant::now();
    let user = TestUser::create();

    // The test binary's directory under target/ may not be reachable by the user: copy it.
    let bin = user.home.join("bin/rbuild");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tar = user.home.join("busybox.tar");
    test_support::write_busybox_rootfs_tar(&tar).unwrap();
    user.chown(&tar);
    user.write("ctx/Dockerfile", DOCKERFILE.as_bytes());
    user.write("ctx/hello.txt", b"hello from the context\n");

    // Pass 1: subordinate ids. Which needs newuidmap (scripts/test.sh installs uidmap).
    let (start, _) = user.ensure_range();
    assert!(
        Path::new("/usr/bin/newuidmap").exists() || Path::new("/bin/newuidmap").exists(),
        "{test}: newuidmap is missing: apt-get install uidmap"
    );
    let pre = user.rbuild(&["images"]);
    if !pre.status.success() {
        let err = String::from_utf8_lossy(&pre.stderr);
        if let Some(line) = err.lines().find(|l| l.starts_with(UNAVAILABLE)) {
            println!("skipped: {test}: {line}");
            return;
        }
        panic!("{test}: rbuild images as {} failed:\n{}", user.name, show(&pre));
    }
    let store = user.store();
    assert!(store.join("layers").is_dir(), "the rootless store is not in ~/.local/share/rbuild");
    assert_eq!(std::fs::metadata(&store).unwrap().permissions().mode() & 0o777, 0o700);
    assert!(!Path::new("/var/lib/rbuild").join("idmap").exists());
    let idmap = std::fs::read_to_string(store.join("idmap")).unwrap();
    assert_eq!(
        idmap,
        format!("uid_map: 0 {0} 1, 1 {start} 65536\ngid_map: 0 {0} 1, 1 {start} 65536\n", user.uid)
    );

    user.ok(&["import", "busybox.tar", "busybox:latest"]);
    let build = ["build", "--progress=plain", "--allow", "network.host", "-t", "demo", "ctx"];
    user.ok(&build);
    let out = user.ok(&["run", "--rm", "demo"]);
    assert_eq!(out, "uid=1000(app) gid=1000\napp wrote\napp\n");
    let base =
        ["build", "--progress=plain", "--allow", "network.host", "--target", "base", "-t", "base", "ctx"];
    user.ok(&base);
    let out = user.ok(&["run", "--rm", "base"]);
    assert_eq!(out, "hello from the context\nbuilt\nno-group\nonly\n");
    // With the host's network, /sys is the host's, bound read-only, every mount below it too.
    let net = user.ok(&["run", "--rm", "base", "cat", "/data/net.txt"]);
    assert!(net.lines().any(|l| l == "lo") && !net.contains("writable"), "{net}");
    // A rootless step's default network is slirp4netns's: out through the host's sockets.
    let outside = test_support::outside::Outside::start();
    let dockerfile = format!(
        "FROM busybox\nRUN wget -q -O /page.txt {} && cat /etc/resolv.conf > /resolv.txt\n",
        outside.url()
    );
    user.write("net/Dockerfile", dockerfile.as_bytes());
    user.ok(&["build", "--progress=plain", "-t", "net", "net"]);
    assert_eq!(user.ok(&["run", "--rm", "net", "cat", "/page.txt"]), test_support::outside::PAGE);
    let resolv = user.ok(&["run", "--rm", "net", "cat", "/resolv.txt"]);
    assert!(resolv.starts_with("nameserver 10.0.2.3\n"), "{resolv}");
    drop(outside);

    // The layers are what root would have committed: image ids, whiteouts, an opaque directory.
    let entries = saved_entries(&user, "demo");
    let find = |p: &str| {
        entries
            .iter()
            .find(|(path, ..)| path == p)
            .unwrap_or_else(|| panic!("{p} is not in the layers of demo"))
    };
    assert_eq!(find("etc/.wh.group").1, 0);
    assert_eq!(find("usr/sbin/.wh..wh..opq").1, 0);
    assert_eq!(find("tmp/app.txt").1, 1000);
    assert_eq!(find("home/app").1, 1000, "the imported layer keeps its owners");
    assert!(!entries.iter().any(|(p, ..)| p.contains("overlay")));
    // On the host, container uid 1000 is the 1000th subordinate id.
    let layers = std::fs::read_dir(store.join("layers")).unwrap();
    let app_file = layers
        .filter_map(Result::ok)
        .map(|e| e.path().join("tmp/app.txt"))
        .find(|p| p.exists())
        .expect("a layer has tmp/app.txt");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&app_file).unwrap()) as u64,
        start + 999
    );

    // Pass 2: the range taken away, only root maps. The old store refuses the new mapping.
    user.remove_range();
    let err = user.fails(&["images"]);
    assert!(err.contains("it was made with the id mapping"), "{err}");
    std::fs::remove_dir_all(&store).unwrap();

    user.ok(&["import", "busybox.tar", "busybox:latest"]);
    user.ok(&base);
    let out = user.ok(&["run", "--rm", "base"]);
    assert_eq!(out, "hello from the context\nbuilt\nno-group\nonly\n");
    let err = user.fails(&build);
    let expected = format!("uid 1000 is not mapped: add a range for {} in /etc/subuid", user.name);
    assert!(err.contains(&expected), "{err}");
    assert!(err.contains("USER app") || err.contains("RUN id"), "{err}");
    let idmap = std::fs::read_to_string(store.join("idmap")).unwrap();
    assert_eq!(idmap, format!("uid_map: 0 {0} 1\ngid_map: 0 {0} 1\n", user.uid));
    println!("{test}: both passes in {:?}", started.elapsed());
}
