//! A corpus of malicious layers, generated here, against extraction: each one is either refused
//! with an error naming the entry (and the store keeps nothing of it) or neutralized, and nothing
//! is ever written outside the layer's directory. Needs root (and `unshare` for the user
//! namespace case).

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use cache::{Compression, Error, Store};
use tar::EntryType::{self, Char, Directory, Link, Regular, Symlink};

/// One entry: name, type, link target, data, PAX records.
struct E<'a> {
    name: &'a [u8],
    kind: EntryType,
    link: Option<&'a [u8]>,
    data: &'a [u8],
    pax: Vec<(&'a str, &'a [u8])>,
}

fn e<'a>(name: &'a [u8], kind: EntryType, link: Option<&'a [u8]>, data: &'a [u8]) -> E<'a> {
    E { name, kind, link, data, pax: Vec::new() }
}

/// A tar with entries written byte for byte as given (tar::Builder would check the paths).
fn raw_tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for en in entries {
        if !en.pax.is_empty() {
            b.append_pax_extensions(en.pax.iter().copied()).unwrap();
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(en.kind);
        let n = en.name.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&en.name[..n]);
        if let Some(link) = en.link {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        }
        h.set_mode(if en.kind == Directory { 0o755 } else { 0o644 });
        h.set_size(en.data.len() as u64);
        if en.kind == Char {
            h.set_device_major(1).unwrap();
            h.set_device_minor(1).unwrap();
        }
        h.set_cksum();
        b.append(&h, en.data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A GNU tar whose long name (`././@LongLink`) is `name`.
fn gnu_long_name(name: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(EntryType::GNULongName);
    h.set_mode(0o644);
    let mut data = name.to_vec();
    data.push(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, &data[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..5].copy_from_slice(b"short");
    h.set_entry_type(Regular);
    h.set_mode(0o644);
    h.set_size(4);
    h.set_cksum();
    b.append(&h, &b"evil"[..]).unwrap();
    b.into_inner().unwrap()
}

struct Env {
    store: Store,
    dir: tempfile::TempDir,
    outside: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("victim"), "untouched").unwrap();
        Env { store, dir, outside }
    }

    /// Nothing was written outside: the sentinel directory is empty, the victim file intact,
    /// no layer directory nor temp file is left in the store.
    fn assert_clean(&self, what: &str) {
        assert_eq!(fs::read_dir(self.outside.path()).unwrap().count(), 0, "{what}");
        assert_eq!(fs::read_to_string(self.dir.path().join("victim")).unwrap(), "untouched", "{what}");
        assert!(!self.dir.path().join("evil").exists(), "{what}");
        assert!(!self.store.root().join("evil").exists(), "{what}");
        assert!(!Path::new("/tmp/rbuild-evil").exists(), "{what}");
        assert_eq!(fs::read_dir(self.store.root().join("tmp")).unwrap().count(), 0, "{what}");
    }

    fn unpack(&self, tar: &[u8], compression: Compression) -> cache::Result<std::path::PathBuf> {
        let layer = self.store.import_layer(tar, compression).unwrap();
        self.store.layer_dir(&layer)
    }
}

#[test]
fn breakouts_are_refused_naming_the_entry() {
    let env = Env::new();
    let outside = env.outside.path().as_os_str().as_encoded_bytes().to_vec();
    let victim = env.dir.path().join("victim").as_os_str().as_encoded_bytes().to_vec();
    // (what the error names, the layer)
    let cases: Vec<(&str, Vec<E>)> = vec![
        ("../evil", vec![e(b"../evil", Regular, None, b"evil")]),
        ("a/../../evil", vec![e(b"a/", Directory, None, b""), e(b"a/../../evil", Regular, None, b"e")]),
        ("..", vec![e(b"..", Directory, None, b"")]),
        // A symlink to `/`, `..`, outside, then a file written through it.
        (
            "root/tmp/rbuild-evil",
            vec![e(b"root", Symlink, Some(b"/"), b""), e(b"root/tmp/rbuild-evil", Regular, None, b"e")],
        ),
        ("up/evil", vec![e(b"up", Symlink, Some(b".."), b""), e(b"up/evil", Regular, None, b"e")]),
        ("out/f", vec![e(b"out", Symlink, Some(&outside), b""), e(b"out/f", Regular, None, b"e")]),
        ("out/d/", vec![e(b"out", Symlink, Some(&outside), b""), e(b"out/d/", Directory, None, b"")]),
        // A real directory replaced by a symlink, then written through.
        (
            "d/f",
            vec![
                e(b"d/", Directory, None, b""),
                e(b"d", Symlink, Some(&outside), b""),
                e(b"d/f", Regular, None, b"e"),
            ],
        ),
        // Symlink loops.
        (
            "a/file",
            vec![
                e(b"a", Symlink, Some(b"b"), b""),
                e(b"b", Symlink, Some(b"a"), b""),
                e(b"a/file", Regular, None, b"e"),
            ],
        ),
        ("self/x", vec![e(b"self", Symlink, Some(b"self"), b""), e(b"self/x", Regular, None, b"e")]),
        // Hardlinks to outside: relative, absolute, through a symlink, to a directory.
        ("hl", vec![e(b"hl", Link, Some(b"../../victim"), b"")]),
        ("hl", vec![e(b"hl", Link, Some(&victim), b"")]),
        ("hl", vec![e(b"out", Symlink, Some(&outside), b""), e(b"hl", Link, Some(b"out/x"), b"")]),
        ("hl", vec![e(b"dir/", Directory, None, b""), e(b"hl", Link, Some(b"dir"), b"")]),
        ("hl", vec![e(b"hl", Link, Some(b"missing"), b"")]),
        // A hardlink to a symlink is the symlink's inode, not its target: writing below it is
        // still writing below a symlink.
        (
            "hl/f",
            vec![
                e(b"out", Symlink, Some(&outside), b""),
                e(b"hl", Link, Some(b"out"), b""),
                e(b"hl/f", Regular, None, b"e"),
            ],
        ),
        // Names from PAX and GNU long-name records are checked like any other.
        ("../../evil", vec![E { pax: vec![("path", b"../../evil")], ..e(b"harmless", Regular, None, b"e") }]),
        ("hl", vec![E { pax: vec![("linkpath", b"../victim")], ..e(b"hl", Link, Some(b"fine"), b"") }]),
        // Whiteouts of `.` and `..` (would remove the parent or escape).
        ("d/.wh..", vec![e(b"d/.wh..", Regular, None, b"")]),
        ("d/.wh...", vec![e(b"d/.wh...", Regular, None, b"")]),
        // A file as the layer root.
        ("./", vec![e(b"./", Regular, None, b"x")]),
    ];
    for (entry, layer) in cases {
        let tar = raw_tar(&layer);
        for c in [Compression::Uncompressed, Compression::Gzip, Compression::Zstd] {
            let err = env.unpack(&tar, c).unwrap_err();
            assert!(matches!(err, Error::Layer { .. }), "{entry}: {err}");
            assert!(err.to_string().contains(&format!("'{entry}'")), "{entry}: {err}");
            assert!(fs::read_dir(env.store.root().join("layers")).unwrap().next().is_none(), "{entry}");
            env.assert_clean(entry);
        }
    }
    let err = env.unpack(&gnu_long_name(b"../evil"), Compression::Gzip).unwrap_err();
    assert!(err.to_string().contains("'../evil'"), "{err}");
    env.assert_clean("gnu long name");
}

#[test]
fn harmless_oddities_are_neutralized() {
    let env = Env::new();
    let outside = env.outside.path().as_os_str().as_encoded_bytes().to_vec();
    let tar = raw_tar(&[
        // Absolute paths are confined to the layer, as docker and containerd do.
        e(b"/etc/evil", Regular, None, b"confined"),
        // A symlink replaced by a file of the same name: removed, not followed.
        e(b"l", Symlink, Some(&outside), b""),
        e(b"l", Regular, None, b"file"),
        // Absolute and escaping symlink targets are stored as they are: only ever resolved
        // inside the container.
        e(b"abs", Symlink, Some(b"/etc/shadow"), b""),
        e(b"rel", Symlink, Some(b"../../../../etc/shadow"), b""),
        // overlayfs's own xattrs are never taken from a tar: no forged opaque dir, redirect or
        // metacopy; other trusted.* xattrs are kept.
        E {
            pax: vec![
                ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
                ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
                ("SCHILY.xattr.user.overlay.opaque", b"y"),
                ("SCHILY.xattr.trusted.other", b"kept"),
            ],
            ..e(b"forged/", Directory, None, b"")
        },
        E {
            pax: vec![("SCHILY.xattr.trusted.overlay.metacopy", b"")],
            ..e(b"forged/f", Regular, None, b"f")
        },
        // aufs bookkeeping names are skipped.
        e(b".wh..wh.plnk/", Directory, None, b""),
        // A hardlink to a file of this layer is fine.
        e(b"hl", Link, Some(b"l"), b""),
    ]);
    for c in [Compression::Uncompressed, Compression::Gzip, Compression::Zstd] {
        let dir = env.unpack(&tar, c).unwrap();
        assert_eq!(fs::read_to_string(dir.join("etc/evil")).unwrap(), "confined");
        assert!(!Path::new("/etc/evil").exists());
        assert_eq!(fs::read_to_string(dir.join("l")).unwrap(), "file");
        assert_eq!(fs::read_to_string(dir.join("hl")).unwrap(), "file");
        assert_eq!(fs::read_link(dir.join("abs")).unwrap(), Path::new("/etc/shadow"));
        assert_eq!(fs::read_link(dir.join("rel")).unwrap(), Path::new("../../../../etc/shadow"));
        let names: Vec<String> = xattr::list(dir.join("forged"))
            .unwrap()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("security.")) // e.g. an LSM label the kernel adds
            .collect();
        assert_eq!(names, ["trusted.other"]);
        assert!(xattr::list(dir.join("forged/f")).unwrap().all(|n| !n.to_string_lossy().contains("overlay")));
        assert!(!dir.join(".wh..wh.plnk").exists());
        env.assert_clean("neutralized");
        fs::remove_dir_all(&dir).unwrap();
    }
}

/// In a user namespace (rootless rbuild) device nodes cannot be made and are left out, as Docker
/// does there; fifos and everything else are kept. Runs itself again under `unshare -r`.
#[test]
fn device_nodes_are_left_out_in_a_user_namespace() {
    const CHILD: &str = "RBUILD_TEST_USERNS_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let status = std::process::Command::new("unshare")
            .args(["--user", "--map-root-user"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", "device_nodes_are_left_out_in_a_user_namespace", "--test-threads=1"])
            .env(CHILD, "1")
            .status()
            .unwrap();
        assert!(status.success(), "the test in a user namespace failed");
        return;
    }
    assert!(cache::userns::in_userns());
    let env = Env::new();
    let tar = raw_tar(&[
        e(b"dev/", Directory, None, b""),
        e(b"dev/mem", Char, None, b""),
        e(b"dev/fifo", EntryType::Fifo, None, b""),
        e(b"file", Regular, None, b"kept"),
    ]);
    let dir = env.unpack(&tar, Compression::Gzip).unwrap();
    assert!(!dir.join("dev/mem").exists());
    assert!(fs::symlink_metadata(dir.join("dev/fifo")).unwrap().file_type().is_fifo());
    assert_eq!(fs::read_to_string(dir.join("file")).unwrap(), "kept");
    env.assert_clean("userns");
}
