//! Real builds of hand-lowered definitions (WORKDIR, heredocs, ADD, HEALTHCHECK, ONBUILD) in a
//! temporary store over the busybox test image. They mount overlays, so they need root.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cache::{Image, Store};
use frontend::{
    AddOp, Base, BuildDefinition, ConfigOp, CopyOp, Healthcheck, InlineFile, Location, Op, Stage, Step,
};
use solver::{BuildOptions, BuildOutput, Event, Progress};

/// An error as the CLI prints it: the message, then each cause.
fn message(e: &solver::Error) -> String {
    hostutil::errors::one_line(e)
}

struct Quiet;
impl Progress for Quiet {
    fn event(&self, _: Event<'_>) {}
}

/// A store with `busybox:latest` imported, and an empty context directory.
struct Env {
    store: Store,
    root: tempfile::TempDir,
    context: tempfile::TempDir,
    base_layers: usize,
}

impl Env {
    fn new() -> Env {
        let root = tempfile::Builder::new().prefix("rbuild-solver-test-").tempdir().unwrap();
        let context = tempfile::Builder::new().prefix("rbuild-solver-ctx-").tempdir().unwrap();
        let store = test_support::store_with_busybox(root.path());
        Env { store, root, context, base_layers: 1 }
    }

    fn options(&self, tags: &[&str]) -> BuildOptions {
        BuildOptions {
            context: self.context.path().to_path_buf(),
            dockerfile: String::new(),
            dockerfile_name: "Dockerfile".into(),
            build_args: vec![],
            target: None,
            tags: tags.iter().map(|t| t.parse().unwrap()).collect(),
            ..Default::default()
        }
    }

    fn build(&self, def: &BuildDefinition) -> solver::Result<BuildOutput> {
        solver::build_definition(&self.store, def, &self.options(&[]), &Quiet)
    }

    fn build_tagged(&self, def: &BuildDefinition, tag: &str) -> solver::Result<BuildOutput> {
        solver::build_definition(&self.store, def, &self.options(&[tag]), &Quiet)
    }

    /// Runs `f` on the built image's rootfs, mounted read-only.
    fn with_rootfs<T>(&self, image: &Image, f: impl FnOnce(&Path) -> T) -> T {
        let view = self.store.mount_readonly(&image.layers()).unwrap();
        let out = f(view.path());
        drop(view);
        out
    }

    fn ctx(&self, rel: &str) -> PathBuf {
        self.context.path().join(rel)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Nothing may stay mounted under the store once the builds are over.
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self.root.path().to_string_lossy().into_owned();
        let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&root)).collect();
        if !std::thread::panicking() {
            assert!(left.is_empty(), "mounts left behind: {left:#?}");
        }
    }
}

fn step(op: Op) -> Step {
    Step { location: Location { file: "Dockerfile".into(), line: 1, column: 1 }, text: format!("{op:?}"), op }
}

fn stage(base: Base, ops: Vec<Op>) -> Stage {
    Stage {
        index: 0,
        name: None,
        base,
        location: Location { file: "Dockerfile".into(), line: 1, column: 1 },
        text: "FROM".into(),
        steps: ops.into_iter().map(step).collect(),
        platform: hostutil::platform::Platform::host(),
    }
}

fn def(ops: Vec<Op>) -> BuildDefinition {
    BuildDefinition {
        stages: vec![stage(Base::Image("busybox:latest".into()), ops)],
        target: 0,
        warnings: vec![],
        notes: vec![],
        lint: vec![],
        check: Default::default(),
    }
}

fn heredoc(name: &str, content: &str) -> InlineFile {
    InlineFile { name: name.into(), content: content.into() }
}

fn copy_heredocs(heredocs: Vec<InlineFile>, dest: &str, chmod: Option<u32>) -> Op {
    Op::Copy(CopyOp {
        exclude: vec![],
        parents: false,
        link: false,
        sources: vec![],
        heredocs,
        dest: dest.into(),
        from: None,
        chown: None,
        chmod,
        created_by: "COPY heredoc".into(),
    })
}

fn add(sources: &[&str], urls: &[String], dest: &str) -> AddOp {
    AddOp {
        sources: sources.iter().map(|s| s.to_string()).collect(),
        urls: urls.to_vec(),
        heredocs: vec![],
        dest: dest.into(),
        chown: None,
        chmod: None,
        checksum: None,
        git: vec![],
        keep_git_dir: false,
        exclude: vec![],
        link: false,
        unpack: None,
        created_by: "ADD".into(),
    }
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn owner(p: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

#[test]
fn workdir_creates_a_missing_dir_owned_by_the_user_and_adds_a_layer_only_then() {
    let env = Env::new();
    let out = env
        .build(&def(vec![
            Op::Config(ConfigOp::User("app".into())),
            Op::Workdir("/data/sub".into()),
            Op::Config(ConfigOp::User("1234".into())),
            Op::Workdir("/num".into()),
        ]))
        .unwrap();
    let cfg = &out.image.config;
    assert_eq!(cfg.config.working_dir.as_deref(), Some("/num"));
    assert_eq!(out.image.layers().len(), env.base_layers + 2);
    env.with_rootfs(&out.image, |root| {
        assert_eq!(owner(&root.join("data")), (1000, 1000));
        assert_eq!(owner(&root.join("data/sub")), (1000, 1000));
        assert_eq!(mode(&root.join("data/sub")), 0o755);
        // A numeric USER without a group: the gid is the uid (BuildKit's file ops).
        assert_eq!(owner(&root.join("num")), (1234, 1234));
    });

    // Existing directories are left alone: no layer, history marks the step empty.
    let out = env
        .build(&def(vec![Op::Config(ConfigOp::User("nobody".into())), Op::Workdir("/home/app".into())]))
        .unwrap();
    assert_eq!(out.image.layers().len(), env.base_layers);
    let last = out.image.config.history.last().unwrap();
    assert!(last.empty_layer);
    assert_eq!(out.image.config.config.working_dir.as_deref(), Some("/home/app"));
    env.with_rootfs(&out.image, |root| {
        assert_eq!(owner(&root.join("home/app")), (1000, 1000));
        assert_eq!(mode(&root.join("home/app")), 0o755);
    });

    // The same definition again is fully cached.
    let again = env
        .build(&def(vec![Op::Config(ConfigOp::User("nobody".into())), Op::Workdir("/home/app".into())]))
        .unwrap();
    assert_eq!((again.executed, again.cached), (0, 2));
    assert_eq!(again.image.digest, out.image.digest);
}

#[test]
fn copy_heredocs_to_a_file_and_into_a_directory() {
    let env = Env::new();
    let out = env
        .build(&def(vec![
            copy_heredocs(vec![heredoc("EOF", "hello\n")], "/etc/greeting", None),
            copy_heredocs(vec![heredoc("A", "one\n"), heredoc("B", "two\n")], "/hd", None),
            copy_heredocs(vec![heredoc("run", "#!/bin/sh\necho hi\n")], "/bin/", Some(0o755)),
        ]))
        .unwrap();
    assert_eq!(out.image.layers().len(), env.base_layers + 3);
    env.with_rootfs(&out.image, |root| {
        assert_eq!(fs::read_to_string(root.join("etc/greeting")).unwrap(), "hello\n");
        assert_eq!(mode(&root.join("etc/greeting")), 0o644);
        assert_eq!(owner(&root.join("etc/greeting")), (0, 0));
        assert_eq!(fs::read_to_string(root.join("hd/A")).unwrap(), "one\n");
        assert_eq!(fs::read_to_string(root.join("hd/B")).unwrap(), "two\n");
        assert_eq!(mode(&root.join("hd")), 0o755);
        assert_eq!(fs::read_to_string(root.join("bin/run")).unwrap(), "#!/bin/sh\necho hi\n");
        assert_eq!(mode(&root.join("bin/run")), 0o755);
    });
    // The content is part of the key.
    let changed =
        env.build(&def(vec![copy_heredocs(vec![heredoc("EOF", "bye\n")], "/etc/greeting", None)])).unwrap();
    assert_eq!(changed.executed, 1);
    env.with_rootfs(&changed.image, |root| {
        assert_eq!(fs::read_to_string(root.join("etc/greeting")).unwrap(), "bye\n");
    });
}

const MTIME: u64 = 1_234_567_890;

/// A tar with a directory, two files, a symlink, owned 42:43.
fn sample_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut entry = |kind: tar::EntryType, path: &str, mode: u32, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(42);
        h.set_gid(43);
        h.set_mtime(MTIME);
        h.set_size(data.len() as u64);
        match link {
            Some(l) => b.append_link(&mut h, path, l).unwrap(),
            None => b.append_data(&mut h, path, data).unwrap(),
        }
    };
    entry(tar::EntryType::Directory, "d/", 0o750, b"", None);
    entry(tar::EntryType::Regular, "d/f.txt", 0o640, b"file in d\n", None);
    entry(tar::EntryType::Symlink, "d/l", 0o777, b"", Some("f.txt"));
    entry(tar::EntryType::Regular, "x.sh", 0o755, b"#!/bin/sh\n", None);
    b.into_inner().unwrap()
}

fn compress(kind: &str, data: &[u8]) -> Vec<u8> {
    match kind {
        "tar" => data.to_vec(),
        "tar.gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "tar.bz2" => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "tar.xz" => {
            let mut out = Vec::new();
            lzma_rs::xz_compress(&mut &data[..], &mut out).unwrap();
            out
        }
        _ => unreachable!(),
    }
}

#[test]
fn add_extracts_local_archives_and_copies_other_files() {
    let env = Env::new();
    let tar = sample_tar();
    let kinds = ["tar", "tar.gz", "tar.bz2", "tar.xz"];
    let mut ops = Vec::new();
    for k in kinds {
        // Named without an archive extension: detection is by content.
        fs::write(env.ctx(&format!("sample-{}", k.replace('.', "-"))), compress(k, &tar)).unwrap();
        ops.push(Op::Add(add(&[&format!("sample-{}", k.replace('.', "-"))], &[], &format!("/x/{k}"))));
    }
    fs::write(env.ctx("notes.txt"), "just text\n").unwrap();
    fs::set_permissions(env.ctx("notes.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    ops.push(Op::Add(add(&["notes.txt"], &[], "/notes.txt")));
    let mut chowned = add(&["sample-tar"], &[], "/owned/");
    chowned.chown = Some("app".into());
    ops.push(Op::Add(chowned));
    let out = env.build(&def(ops)).unwrap();
    env.with_rootfs(&out.image, |root| {
        for k in kinds {
            let d = root.join("x").join(k);
            assert_eq!(mode(&d.join("d")), 0o750, "{k}");
            assert_eq!(owner(&d.join("d")), (42, 43), "{k}");
            assert_eq!(fs::metadata(d.join("d")).unwrap().mtime() as u64, MTIME, "{k}");
            assert_eq!(fs::read_to_string(d.join("d/f.txt")).unwrap(), "file in d\n", "{k}");
            assert_eq!(mode(&d.join("d/f.txt")), 0o640, "{k}");
            assert_eq!(fs::metadata(d.join("d/f.txt")).unwrap().mtime() as u64, MTIME, "{k}");
            assert_eq!(fs::read_link(d.join("d/l")).unwrap(), Path::new("f.txt"), "{k}");
            assert_eq!(mode(&d.join("x.sh")), 0o755, "{k}");
            assert!(!d.join(format!("sample-{}", k.replace('.', "-"))).exists(), "{k}");
        }
        assert_eq!(fs::read_to_string(root.join("notes.txt")).unwrap(), "just text\n");
        assert_eq!(mode(&root.join("notes.txt")), 0o640);
        assert_eq!(owner(&root.join("notes.txt")), (0, 0));
        assert_eq!(owner(&root.join("owned/d/f.txt")), (1000, 1000));
    });
    // A touched archive keeps the cache; other archive content misses it.
    let one = || def(vec![Op::Add(add(&["sample-tar"], &[], "/x/tar"))]);
    let f = fs::File::options().write(true).open(env.ctx("sample-tar")).unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    drop(f);
    let again = env.build(&one()).unwrap();
    assert_eq!((again.executed, again.cached), (0, 1));
    let mut other = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(3);
    other.append_data(&mut h, "other.txt", &b"new"[..]).unwrap();
    fs::write(env.ctx("sample-tar"), other.into_inner().unwrap()).unwrap();
    let changed = env.build(&one()).unwrap();
    assert_eq!((changed.executed, changed.cached), (1, 0));
    env.with_rootfs(&changed.image, |root| {
        assert_eq!(fs::read_to_string(root.join("x/tar/other.txt")).unwrap(), "new");
    });
}

/// A tar entry written with a raw name (the tar crate refuses `..` in paths); the first one of
/// an archive in the old (v7) format, which has no magic, when `v7`.
fn raw_entry(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, name: &str, data: &[u8], link: &str) {
    raw_entry_in(b, kind, name, data, link, false)
}

fn raw_entry_in(
    b: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    name: &str,
    data: &[u8],
    link: &str,
    v7: bool,
) {
    let mut h = if v7 { tar::Header::new_old() } else { tar::Header::new_gnu() };
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_mtime(MTIME);
    h.set_size(data.len() as u64);
    let old = h.as_old_mut();
    old.name[..name.len()].copy_from_slice(name.as_bytes());
    old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_cksum();
    b.append(&h, data).unwrap();
}

#[test]
fn add_of_a_malicious_archive_writes_nothing_outside_the_root() {
    let env = Env::new();
    let sentinel = tempfile::Builder::new().prefix("rbuild-sentinel-").tempdir().unwrap();
    let s = sentinel.path().to_string_lossy().into_owned();
    assert!(!Path::new("/etc/rbuild-evil").exists());

    // `..` climbing out of the destination: the step fails.
    let mut b = tar::Builder::new(Vec::new());
    let up = format!("{}{}/escape", "../".repeat(12), s.trim_start_matches('/'));
    raw_entry(&mut b, tar::EntryType::Regular, &up, b"x", "");
    fs::write(env.ctx("up.tar"), b.into_inner().unwrap()).unwrap();
    let err =
        env.build(&def(vec![Op::Add(add(&["up.tar"], &[], "/x/"))])).map_err(|e| message(&e)).unwrap_err();
    assert!(err.contains("outside the destination"), "{err}");
    assert!(!sentinel.path().join("escape").exists());
    // The same in a v7 archive (no magic: recognized by its header checksum).
    let mut b = tar::Builder::new(Vec::new());
    raw_entry_in(&mut b, tar::EntryType::Regular, &up, b"x", "", true);
    fs::write(env.ctx("up.tar"), b.into_inner().unwrap()).unwrap();
    let err =
        env.build(&def(vec![Op::Add(add(&["up.tar"], &[], "/x/"))])).map_err(|e| message(&e)).unwrap_err();
    assert!(err.contains("outside the destination"), "{err}");
    assert!(!sentinel.path().join("escape").exists());

    // Absolute names and symlinks to absolute paths stay inside the image root.
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(&mut b, tar::EntryType::Regular, &format!("{s}/abs"), b"abs", "");
    raw_entry(&mut b, tar::EntryType::Regular, "/etc/rbuild-evil", b"evil", "");
    raw_entry(&mut b, tar::EntryType::Symlink, "link", b"", "/");
    raw_entry(&mut b, tar::EntryType::Regular, "link/etc/rbuild-evil", b"via link", "");
    raw_entry(&mut b, tar::EntryType::Symlink, "hostlink", b"", &s);
    raw_entry(&mut b, tar::EntryType::Regular, "hostlink/evil", b"via hostlink", "");
    fs::write(env.ctx("abs.tar"), b.into_inner().unwrap()).unwrap();
    let out = env.build(&def(vec![Op::Add(add(&["abs.tar"], &[], "/x/"))])).unwrap();
    assert_eq!(fs::read_dir(sentinel.path()).unwrap().count(), 0, "the sentinel dir got files");
    assert!(!Path::new("/etc/rbuild-evil").exists());
    env.with_rootfs(&out.image, |root| {
        assert_eq!(
            fs::read_to_string(root.join("x").join(s.trim_start_matches('/')).join("abs")).unwrap(),
            "abs"
        );
        assert_eq!(fs::read_to_string(root.join("x/etc/rbuild-evil")).unwrap(), "evil");
        // `link -> /` is the image's root.
        assert_eq!(fs::read_to_string(root.join("etc/rbuild-evil")).unwrap(), "via link");
        assert_eq!(
            fs::read_to_string(root.join(s.trim_start_matches('/')).join("evil")).unwrap(),
            "via hostlink"
        );
    });
}

/// A tiny HTTP server on 127.0.0.1 serving `files` (path → body); others are 404.
struct Server {
    port: u16,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

const LAST_MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
const LAST_MODIFIED_SECS: i64 = 1_445_412_480;

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let files: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let shared = files.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let _ = serve(conn, &shared);
            }
        });
        Server { port, files }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn put(&self, path: &str, body: &[u8]) {
        self.files.lock().unwrap().insert(path.into(), body.to_vec());
    }
}

fn serve(mut conn: TcpStream, files: &Mutex<HashMap<String, Vec<u8>>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let body = files.lock().unwrap().get(&path).cloned();
    match body {
        Some(b) => {
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: {LAST_MODIFIED}\r\nConnection: close\r\n\r\n",
                b.len()
            )?;
            conn.write_all(&b)?;
        }
        None => {
            conn.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
            )?;
        }
    }
    let _ = reader.read(&mut [0; 1]);
    Ok(())
}

#[test]
fn add_downloads_urls_checks_checksums_and_keys_on_content() {
    let env = Env::new();
    let server = Server::start();
    server.put("/files/hello.txt", b"hello from the server\n");
    let url = server.url("/files/hello.txt");

    let out = env
        .build(&def(vec![
            Op::Add(add(&[], std::slice::from_ref(&url), "/downloads/")),
            Op::Add(add(&[], std::slice::from_ref(&url), "/renamed.txt")),
        ]))
        .unwrap();
    env.with_rootfs(&out.image, |root| {
        let f = root.join("downloads/hello.txt");
        assert_eq!(fs::read_to_string(&f).unwrap(), "hello from the server\n");
        assert_eq!(mode(&f), 0o600);
        assert_eq!(owner(&f), (0, 0));
        assert_eq!(fs::metadata(&f).unwrap().mtime(), LAST_MODIFIED_SECS);
        assert_eq!(fs::read_to_string(root.join("renamed.txt")).unwrap(), "hello from the server\n");
    });

    // Same content: cached; changed content: the step runs again.
    let one = || def(vec![Op::Add(add(&[], std::slice::from_ref(&url), "/downloads/"))]);
    let first = env.build(&one()).unwrap();
    assert_eq!((first.executed, first.cached), (0, 1));
    server.put("/files/hello.txt", b"changed\n");
    let changed = env.build(&one()).unwrap();
    assert_eq!((changed.executed, changed.cached), (1, 0));
    env.with_rootfs(&changed.image, |root| {
        assert_eq!(fs::read_to_string(root.join("downloads/hello.txt")).unwrap(), "changed\n");
    });

    // --checksum: right passes, wrong fails naming both digests and tags nothing.
    let digest = cache::Digest::of(b"changed\n").to_string();
    let mut right = add(&[], std::slice::from_ref(&url), "/sum/");
    right.checksum = Some(digest.clone());
    right.chmod = Some(0o644);
    let out = env.build_tagged(&def(vec![Op::Add(right)]), "sum:ok").unwrap();
    env.with_rootfs(&out.image, |root| {
        assert_eq!(fs::read_to_string(root.join("sum/hello.txt")).unwrap(), "changed\n");
        assert_eq!(mode(&root.join("sum/hello.txt")), 0o644);
    });
    let wrong_sum = format!("sha256:{}", "0".repeat(64));
    let mut wrong = add(&[], std::slice::from_ref(&url), "/sum/");
    wrong.checksum = Some(wrong_sum.clone());
    let err = env.build_tagged(&def(vec![Op::Add(wrong)]), "sum:bad").map_err(|e| message(&e)).unwrap_err();
    assert!(err.contains(&url) && err.contains(&wrong_sum) && err.contains(&digest), "{err}");
    assert!(env.store.resolve("sum:bad").is_err());

    // 404: one line with the URL and the status.
    let missing = server.url("/nope.txt");
    let err = env.build(&def(vec![Op::Add(add(&[], std::slice::from_ref(&missing), "/"))])).unwrap_err();
    let msg = message(&err);
    assert!(msg.contains(&missing) && msg.contains("404") && !msg.contains('\n'), "{msg}");

    // Connection refused: a port nothing listens on (bound then closed).
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let refused = format!("http://127.0.0.1:{closed}/x");
    let msg =
        message(&env.build(&def(vec![Op::Add(add(&[], std::slice::from_ref(&refused), "/"))])).unwrap_err());
    assert!(msg.contains(&refused), "{msg}");
}

#[test]
fn healthcheck_and_onbuild_are_stored_and_onbuild_is_not_inherited() {
    let env = Env::new();
    let hc = Healthcheck {
        test: vec!["CMD-SHELL".into(), "true".into()],
        interval: Some(30_000_000_000),
        timeout: None,
        start_period: Some(5_000_000_000),
        start_interval: None,
        retries: Some(3),
    };
    let parent = def(vec![
        Op::Config(ConfigOp::Healthcheck(hc)),
        Op::Config(ConfigOp::Onbuild("RUN echo one".into())),
        Op::Config(ConfigOp::Onbuild("COPY . /app".into())),
        Op::Config(ConfigOp::Maintainer("someone".into())),
    ]);
    let out = env.build_tagged(&parent, "parent:latest").unwrap();
    let c = &env.store.image(&out.image.digest).unwrap().config;
    assert_eq!(
        c.config.healthcheck,
        Some(serde_json::json!({
            "Test": ["CMD-SHELL", "true"], "Interval": 30_000_000_000u64,
            "StartPeriod": 5_000_000_000u64, "Retries": 3
        }))
    );
    assert_eq!(c.config.on_build, Some(vec!["RUN echo one".to_string(), "COPY . /app".to_string()]));
    assert_eq!(c.author.as_deref(), Some("someone"));

    // FROM the image: triggers cleared, the healthcheck kept.
    let child = BuildDefinition {
        stages: vec![stage(Base::Image("parent:latest".into()), vec![])],
        target: 0,
        warnings: vec![],
        notes: vec![],
        lint: vec![],
        check: Default::default(),
    };
    let out = env.build(&child).unwrap();
    assert_eq!(out.image.config.config.on_build, None);
    assert!(out.image.config.config.healthcheck.is_some());

    // FROM another stage: the same.
    let mut second = stage(Base::Stage(0), vec![Op::Config(ConfigOp::Env(vec![("A".into(), "1".into())]))]);
    second.index = 1;
    let staged = BuildDefinition {
        stages: vec![parent.stages[0].clone(), second],
        target: 1,
        warnings: vec![],
        notes: vec![],
        lint: vec![],
        check: Default::default(),
    };
    let out = env.build(&staged).unwrap();
    assert_eq!(out.image.config.config.on_build, None);
    assert_eq!(out.image.config.config.env_get("A"), Some("1"));
}

#[test]
fn invalid_definitions_are_errors() {
    let env = Env::new();
    let mut d = def(vec![]);
    d.target = 3;
    assert!(env.build(&d).map_err(|e| message(&e)).unwrap_err().contains("target stage 3"));
    let d = BuildDefinition {
        stages: vec![stage(Base::Stage(0), vec![])],
        target: 0,
        warnings: vec![],
        notes: vec![],
        lint: vec![],
        check: Default::default(),
    };
    assert!(env.build(&d).is_err());
}
