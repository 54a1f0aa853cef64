//! Layer commit/import/unpack and overlay snapshots, on real files and real overlay mounts.
//! These tests need root (mknod, chown, trusted.* xattrs, mount).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cache::{CommitOptions, Compression, Digest, Error, Layer, Store, oci};
use flate2::read::GzDecoder;

struct Fixture {
    store: Store,
    // Dropped after the store (and after any snapshot or mount a test holds, which are locals).
    dir: tempfile::TempDir,
}

fn opts(compression: Compression) -> CommitOptions {
    CommitOptions { compression, source_date_epoch: None }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    Fixture { store, dir }
}

/// Unmounts `path` when dropped, for mounts a test makes itself.
struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    link: Option<String>,
    size: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// The uncompressed tar of a stored layer blob.
fn layer_tar(store: &Store, layer: &Layer) -> Vec<u8> {
    let blob = store.read_blob(&layer.digest).unwrap();
    assert_eq!(Digest::of(&blob), layer.digest);
    assert_eq!(blob.len() as u64, layer.size);
    let tar = if blob.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(&blob[..]).read_to_end(&mut out).unwrap();
        out
    } else {
        blob
    };
    assert_eq!(Digest::of(&tar), layer.diff_id);
    tar
}

/// The entries of a tar in order, by path.
fn entries(tar: &[u8]) -> Vec<(String, Entry)> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let h = e.header().clone();
        let link = e.link_name_bytes().map(|l| String::from_utf8(l.into_owned()).unwrap());
        let mut xattrs = Vec::new();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for ext in exts {
                let ext = ext.unwrap();
                if let Some(name) = ext.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
        out.push((
            path,
            Entry {
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                link,
                size: e.size(),
                xattrs,
            },
        ));
    }
    out
}

fn paths(tar: &[u8]) -> Vec<String> {
    entries(tar).into_iter().map(|(p, _)| p).collect()
}

fn write(path: impl AsRef<Path>, data: &str) {
    fs::write(path, data).unwrap();
}

fn is_whiteout(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

fn is_opaque(path: &Path) -> bool {
    xattr::get(path, "trusted.overlay.opaque").unwrap().as_deref() == Some(b"y")
}

fn layers_dir_entries(store: &Store) -> Vec<PathBuf> {
    fs::read_dir(store.root().join("layers")).unwrap().map(|e| e.unwrap().path()).collect()
}

fn blob_count(store: &Store) -> usize {
    fs::read_dir(store.root().join("blobs/sha256")).unwrap().count()
}

#[test]
fn commit_writes_exact_entries_deterministically() {
    let f = fixture();
    let upper = f.dir.path().join("upper");
    fs::create_dir(&upper).unwrap();
    write(upper.join("a.txt"), "hello");
    xattr::set(upper.join("a.txt"), "user.test", b"1").unwrap();
    fs::create_dir(upper.join("sub")).unwrap();
    write(upper.join("sub/inner"), "inner");
    std::os::unix::fs::symlink("a.txt", upper.join("link")).unwrap();
    write(upper.join("h1"), "linked");
    fs::hard_link(upper.join("h1"), upper.join("sub/h2")).unwrap();
    write(upper.join("suid"), "#!/bin/sh\n");
    std::os::unix::fs::chown(upper.join("suid"), Some(1000), Some(1000)).unwrap();
    fs::set_permissions(upper.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    let long = format!("sub/{}", "x".repeat(120));
    write(upper.join(&long), "long");
    nix::unistd::mkfifo(&upper.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();
    fs::set_permissions(upper.join("sub"), fs::Permissions::from_mode(0o750)).unwrap();

    let layer = f.store.commit_layer(&upper, &opts(Compression::Gzip)).unwrap();
    assert_eq!(layer.media_type, oci::MEDIA_TYPE_LAYER_GZIP);
    let tar = layer_tar(&f.store, &layer);
    let got: BTreeMap<_, _> = entries(&tar).into_iter().collect();
    assert_eq!(
        paths(&tar),
        ["a.txt", "fifo", "h1", "link", "sub/", "sub/h2", "sub/inner", long.as_str(), "suid"]
    );
    let e = &got["a.txt"];
    assert_eq!((e.kind, e.size), (tar::EntryType::Regular, 5));
    assert_eq!(e.xattrs, vec![("user.test".to_string(), b"1".to_vec())]);
    assert_eq!(got["fifo"].kind, tar::EntryType::Fifo);
    assert_eq!(got["fifo"].mode, 0o640);
    assert_eq!(got["h1"].kind, tar::EntryType::Regular);
    assert_eq!(got["sub/h2"].kind, tar::EntryType::Link);
    assert_eq!(got["sub/h2"].link.as_deref(), Some("h1"));
    assert_eq!(got["link"].kind, tar::EntryType::Symlink);
    assert_eq!(got["link"].link.as_deref(), Some("a.txt"));
    assert_eq!(got["sub/"].kind, tar::EntryType::Directory);
    assert_eq!(got["sub/"].mode, 0o750);
    assert_eq!(got[long.as_str()].size, 4);
    let suid = &got["suid"];
    assert_eq!((suid.mode, suid.uid, suid.gid), (0o4755, 1000, 1000));
    assert!(got.values().all(|e| e.xattrs.iter().all(|(n, _)| !n.starts_with("trusted.overlay."))));

    let again = f.store.commit_layer(&upper, &opts(Compression::Gzip)).unwrap();
    assert_eq!(again, layer);
    let plain = f.store.commit_layer(&upper, &opts(Compression::Uncompressed)).unwrap();
    assert_eq!(plain.media_type, oci::MEDIA_TYPE_LAYER_TAR);
    assert_eq!(plain.diff_id, layer.diff_id);
    assert_eq!(plain.digest, plain.diff_id);

    // And it unpacks to the same tree.
    let dir = f.store.layer_dir(&layer).unwrap();
    assert_eq!(fs::read_to_string(dir.join(&long)).unwrap(), "long");
    assert_eq!(xattr::get(dir.join("a.txt"), "user.test").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(fs::read_link(dir.join("link")).unwrap(), Path::new("a.txt"));
    let (h1, h2) = (fs::metadata(dir.join("h1")).unwrap(), fs::metadata(dir.join("sub/h2")).unwrap());
    assert_eq!(h1.ino(), h2.ino());
    let s = fs::metadata(dir.join("suid")).unwrap();
    assert_eq!((s.mode() & 0o7777, s.uid(), s.gid()), (0o4755, 1000, 1000));
    assert_eq!(fs::metadata(dir.join("sub")).unwrap().mode() & 0o7777, 0o750);
    assert!(fs::symlink_metadata(dir.join("fifo")).unwrap().file_type().is_fifo());
    let m = fs::metadata(upper.join("a.txt")).unwrap().mtime();
    assert_eq!(fs::metadata(dir.join("a.txt")).unwrap().mtime(), m);
    // The unpacked tree commits to the very same layer.
    assert_eq!(f.store.commit_layer(&dir, &opts(Compression::Gzip)).unwrap(), layer);
}

#[test]
fn empty_upper_is_a_valid_layer() {
    let f = fixture();
    let upper = f.dir.path().join("upper");
    fs::create_dir(&upper).unwrap();
    let layer = f.store.commit_layer(&upper, &opts(Compression::Gzip)).unwrap();
    assert!(paths(&layer_tar(&f.store, &layer)).is_empty());
    let dir = f.store.layer_dir(&layer).unwrap();
    assert_eq!(fs::read_dir(dir).unwrap().count(), 0);
}

#[test]
fn overlay_round_trip_whiteouts_and_opaque_dirs() {
    let f = fixture();
    let base_src = f.dir.path().join("base");
    fs::create_dir_all(base_src.join("dir/sub")).unwrap();
    write(base_src.join("keep"), "keep");
    write(base_src.join("del"), "del");
    write(base_src.join("dir/old1"), "old1");
    write(base_src.join("dir/sub/old2"), "old2");
    let base = f.store.commit_layer(&base_src, &opts(Compression::Gzip)).unwrap();
    let base_dir = f.store.layer_dir(&base).unwrap();
    assert_eq!(base_dir, f.store.root().join("layers").join(base.diff_id.hex()));
    assert_eq!(fs::read_to_string(base_dir.join("dir/sub/old2")).unwrap(), "old2");

    let snap = f.store.create_snapshot(std::slice::from_ref(&base)).unwrap();
    assert_eq!(snap.lowers, vec![base_dir.clone()]);
    {
        let m = snap.mount().unwrap();
        let merged = &m.target;
        assert_eq!(fs::read_to_string(merged.join("keep")).unwrap(), "keep");
        fs::remove_file(merged.join("del")).unwrap();
        fs::remove_dir_all(merged.join("dir")).unwrap();
        fs::create_dir(merged.join("dir")).unwrap();
        write(merged.join("dir/new"), "new");
        write(merged.join("added"), "added");
    }
    let upper = snap.upper();
    assert!(is_whiteout(&upper.join("del")));
    assert!(is_opaque(&upper.join("dir")));

    let new = f.store.commit_layer(&upper, &opts(Compression::Gzip)).unwrap();
    let tar = layer_tar(&f.store, &new);
    assert_eq!(paths(&tar), ["added", ".wh.del", "dir/", "dir/.wh..wh..opq", "dir/new"]);
    let got: BTreeMap<_, _> = entries(&tar).into_iter().collect();
    assert_eq!(got[".wh.del"].kind, tar::EntryType::Regular);
    assert_eq!(got[".wh.del"].size, 0);

    // Adopting the upper makes it the layer's directory...
    f.store.adopt_layer_dir(&new, &upper).unwrap();
    assert!(!upper.exists());
    let new_dir = f.store.layer_dir(&new).unwrap();
    assert_eq!(fs::read_to_string(new_dir.join("dir/new")).unwrap(), "new");
    // ...and unpacking the blob from scratch gives the same overlay format.
    fs::remove_dir_all(&new_dir).unwrap();
    let new_dir = f.store.layer_dir(&new).unwrap();
    assert!(is_whiteout(&new_dir.join("del")));
    assert!(is_opaque(&new_dir.join("dir")));
    assert_eq!(fs::read_to_string(new_dir.join("dir/new")).unwrap(), "new");
    drop(snap);

    let snap = f.store.create_snapshot(&[base.clone(), new.clone()]).unwrap();
    assert_eq!(snap.lowers, vec![new_dir.clone(), base_dir.clone()]);
    let m = snap.mount().unwrap();
    let merged = m.target.clone();
    assert!(!merged.join("del").exists());
    assert_eq!(fs::read_to_string(merged.join("keep")).unwrap(), "keep");
    assert_eq!(fs::read_to_string(merged.join("added")).unwrap(), "added");
    let names: Vec<_> = fs::read_dir(merged.join("dir")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["new"]);

    // The read-only views: 2 layers (overlay), 1 layer (bind), none (empty dir).
    let view = f.store.mount_readonly(&[base.clone(), new.clone()]).unwrap();
    assert!(!view.path().join("del").exists());
    assert!(view.path().join("added").exists());
    assert!(fs::write(view.path().join("x"), "x").is_err());
    drop(view);
    let view = f.store.mount_readonly(std::slice::from_ref(&base)).unwrap();
    assert!(view.path().join("del").exists());
    assert!(fs::write(view.path().join("x"), "x").is_err());
    drop(view);
    let view = f.store.mount_readonly(&[]).unwrap();
    assert_eq!(fs::read_dir(view.path()).unwrap().count(), 0);
    drop(view);

    // Dropping the snapshot (while mounted) unmounts and removes it.
    let dir = snap.dir.clone();
    drop(snap);
    drop(m);
    assert!(!dir.exists());
    assert_eq!(fs::read_dir(f.store.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn adopt_removes_upper_when_layer_already_unpacked() {
    let f = fixture();
    let upper = f.store.root().join("tmp/upper-test");
    fs::create_dir(&upper).unwrap();
    write(upper.join("f"), "f");
    let layer = f.store.commit_layer(&upper, &opts(Compression::Gzip)).unwrap();
    let dir = f.store.layer_dir(&layer).unwrap();
    f.store.adopt_layer_dir(&layer, &upper).unwrap();
    assert!(!upper.exists());
    assert_eq!(fs::read_to_string(dir.join("f")).unwrap(), "f");
}

#[test]
fn scratch_snapshot_has_an_empty_lower() {
    let f = fixture();
    let snap = f.store.create_snapshot(&[]).unwrap();
    assert_eq!(snap.lowers, vec![snap.dir.join("lower")]);
    assert!(snap.dir.join("lock").is_file());
    {
        let m = snap.mount().unwrap();
        write(m.target.join("hello"), "hi");
    }
    let layer = f.store.commit_layer(&snap.upper(), &opts(Compression::Uncompressed)).unwrap();
    assert_eq!(paths(&layer_tar(&f.store, &layer)), ["hello"]);
    let dir = snap.dir.clone();
    drop(snap);
    assert!(!dir.exists());
}

#[test]
fn deep_stacks_mount_past_the_option_length_limit() {
    let f = fixture();
    let mut layers = Vec::new();
    for i in 0..60 {
        let src = f.dir.path().join(format!("l{i}"));
        fs::create_dir(&src).unwrap();
        write(src.join(format!("f{i}")), &i.to_string());
        write(src.join("top"), &i.to_string());
        layers.push(f.store.commit_layer(&src, &opts(Compression::Uncompressed)).unwrap());
    }
    let snap = f.store.create_snapshot(&layers).unwrap();
    let total: usize = snap.lowers.iter().map(|l| l.as_os_str().len() + 1).sum();
    assert!(total > 4096, "the test needs a long lowerdir list, got {total}");
    let m = snap.mount().unwrap();
    for i in 0..60 {
        assert_eq!(fs::read_to_string(m.target.join(format!("f{i}"))).unwrap(), i.to_string());
    }
    assert_eq!(fs::read_to_string(m.target.join("top")).unwrap(), "59");
    write(m.target.join("new"), "new");
    drop(m);
    assert!(snap.upper().join("new").is_file());
    let view = f.store.mount_readonly(&layers).unwrap();
    assert_eq!(fs::read_to_string(view.path().join("top")).unwrap(), "59");
    drop(view);
}

/// One entry of [`raw_tar`]: name, type, link target, data.
type RawEntry<'a> = (&'a [u8], tar::EntryType, Option<&'a [u8]>, &'a [u8]);

/// A tar with entries written byte for byte as given (no path checks, unlike tar::Builder).
fn raw_tar(entries: &[RawEntry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(*kind);
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        if let Some(link) = link {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        }
        h.set_mode(if *kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn malicious_layers_are_rejected_and_write_nothing_outside() {
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    let f = fixture();
    let outside = tempfile::tempdir().unwrap();
    let outside_path = outside.path().as_os_str().as_encoded_bytes().to_vec();
    let x = f.dir.path().join("x");
    write(&x, "x");

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("../evil", raw_tar(&[(b"../evil", Regular, None, b"evil")])),
        ("a/../../evil", raw_tar(&[(b"a/", Directory, None, b""), (b"a/../../evil", Regular, None, b"e")])),
        (
            "link/file",
            raw_tar(&[(b"link", Symlink, Some(&outside_path), b""), (b"link/file", Regular, None, b"evil")]),
        ),
        (
            "link/sub/file",
            raw_tar(&[(b"link", Symlink, Some(&outside_path), b""), (b"link/sub/file", Regular, None, b"e")]),
        ),
        ("hl", raw_tar(&[(b"hl", Link, Some(b"../../x"), b"")])),
        ("hl", raw_tar(&[(b"hl", Link, Some(b"/etc/passwd"), b"")])),
        (
            "hl2",
            raw_tar(&[(b"link", Symlink, Some(&outside_path), b""), (b"hl2", Link, Some(b"link/f"), b"")]),
        ),
        (".wh..", raw_tar(&[(b"d/.wh..", Regular, None, b"")])),
    ];
    for (entry, tar) in cases {
        let layer = f.store.import_layer(&tar[..], Compression::Uncompressed).unwrap();
        let err = f.store.layer_dir(&layer).unwrap_err();
        assert!(matches!(err, Error::Layer { .. }), "{entry}: {err}");
        assert!(err.to_string().contains(entry), "{entry}: {err}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "{entry}");
        assert!(layers_dir_entries(&f.store).is_empty(), "{entry}");
        assert_eq!(fs::read_dir(f.store.root().join("tmp")).unwrap().count(), 0, "{entry}");
        assert_eq!(fs::read_to_string(&x).unwrap(), "x");
    }
    assert!(!f.dir.path().join("evil").exists());
    assert!(!f.store.root().join("evil").exists());

    // Absolute paths are confined to the layer (the leading `/` is dropped), as docker does.
    let tar = raw_tar(&[(b"/etc/evil", Regular, None, b"confined")]);
    let layer = f.store.import_layer(&tar[..], Compression::Uncompressed).unwrap();
    let dir = f.store.layer_dir(&layer).unwrap();
    assert_eq!(fs::read_to_string(dir.join("etc/evil")).unwrap(), "confined");
    assert!(!Path::new("/etc/evil").exists());

    // A symlink replaced by a later entry of the same name is removed, not followed.
    let tar = raw_tar(&[(b"l", Symlink, Some(&outside_path), b""), (b"l", Regular, None, b"file")]);
    let layer = f.store.import_layer(&tar[..], Compression::Uncompressed).unwrap();
    let dir = f.store.layer_dir(&layer).unwrap();
    assert_eq!(fs::read_to_string(dir.join("l")).unwrap(), "file");
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn blob_not_matching_its_digest_is_refused() {
    let f = fixture();
    let src = f.dir.path().join("src");
    fs::create_dir(&src).unwrap();
    write(src.join("file"), &"data ".repeat(1000));
    let layer = f.store.commit_layer(&src, &opts(Compression::Uncompressed)).unwrap();
    let path = f.store.blob_path(&layer.digest);
    let mut bytes = fs::read(&path).unwrap();
    bytes[600] ^= 1; // in the file's data: still a well-formed tar
    fs::write(&path, &bytes).unwrap();
    let err = f.store.layer_dir(&layer).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(layers_dir_entries(&f.store).is_empty());
    assert_eq!(fs::read_dir(f.store.root().join("tmp")).unwrap().count(), 0);

    // A gzip blob whose bytes are fine but whose diff id is not.
    let gz = f.store.commit_layer(&src, &opts(Compression::Gzip)).unwrap();
    let wrong = Layer { diff_id: Digest::of(b"something else"), ..gz.clone() };
    let err = f.store.layer_dir(&wrong).unwrap_err();
    assert!(matches!(err, Error::Layer { .. }) && err.to_string().contains("diff id"), "{err}");
    assert!(layers_dir_entries(&f.store).is_empty());
    // A corrupted gzip blob.
    let path = f.store.blob_path(&gz.digest);
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let err = f.store.layer_dir(&gz).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(layers_dir_entries(&f.store).is_empty());
}

#[test]
fn import_gzip_and_plain_tar_alike_and_reject_garbage() {
    let f = fixture();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    b.append_data(&mut h, "etc/hostname", &b"hello"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o755);
    b.append_data(&mut h, "var/", &b""[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();

    let from_plain = f.store.import_layer(&tar[..], Compression::Gzip).unwrap();
    let from_gz = f.store.import_layer(&gz[..], Compression::Gzip).unwrap();
    assert_eq!(from_plain.diff_id, Digest::of(&tar));
    assert_eq!(from_plain, from_gz);
    assert_eq!(from_plain.media_type, oci::MEDIA_TYPE_LAYER_GZIP);
    let stored_plain = f.store.import_layer(&gz[..], Compression::Uncompressed).unwrap();
    assert_eq!(stored_plain.digest, Digest::of(&tar));
    assert_eq!(layer_tar(&f.store, &from_gz), tar);
    let dir = f.store.layer_dir(&from_gz).unwrap();
    assert_eq!(fs::read_to_string(dir.join("etc/hostname")).unwrap(), "hello");

    let blobs = blob_count(&f.store);
    let mut bad_gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    bad_gz.write_all(&b"not a tar, only text ".repeat(100)).unwrap();
    let bad_gz = bad_gz.finish().unwrap();
    let garbage: [&[u8]; 4] =
        [b"", &b"this is not a tar archive\n".repeat(100), &[0x1f, 0x8b, 1, 2, 3], &bad_gz];
    for input in garbage {
        let err = f.store.import_layer(input, Compression::Gzip).unwrap_err();
        assert!(matches!(err, Error::Layer { .. }), "{err}");
        assert_eq!(blob_count(&f.store), blobs);
        assert_eq!(fs::read_dir(f.store.root().join("tmp")).unwrap().count(), 0);
    }
}

#[test]
fn stale_snapshots_are_removed_but_live_ones_kept() {
    let f = fixture();
    let live = f.store.create_snapshot(&[]).unwrap();
    let snapshots = f.store.root().join("snapshots");
    // A dead build's snapshot: its lock file is there but nobody holds it, and its merged/ is
    // still mounted.
    let dead = snapshots.join("dead");
    for sub in ["upper", "work", "merged", "lower"] {
        fs::create_dir_all(dead.join(sub)).unwrap();
    }
    write(dead.join("lock"), "");
    write(dead.join("upper/file"), "f");
    nix::mount::mount(
        Some("tmpfs"),
        &dead.join("merged"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let _unmount = Unmount(dead.join("merged"));
    write(dead.join("merged/in-mount"), "m");
    // One that died before even making its lock file.
    let dead2 = snapshots.join("dead2");
    fs::create_dir_all(dead2.join("upper")).unwrap();

    assert_eq!(f.store.remove_stale_snapshots().unwrap(), 2);
    assert!(!dead.exists());
    assert!(!dead2.exists());
    assert!(live.dir.join("upper").is_dir());
    assert_eq!(f.store.remove_stale_snapshots().unwrap(), 0);
    let dir = live.dir.clone();
    drop(live);
    assert!(!dir.exists());
}
