//! Layer commit and extraction exactness: every kind of entry, PAX, ownership, determinism,
//! `SOURCE_DATE_EPOCH` and the three compressions. Needs root (mknod, chown, security.* xattrs).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use cache::{CommitOptions, Compression, Digest, Layer, Store, oci};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};

/// A file capability: `cap_net_bind_service=ep` (VFS_CAP_REVISION_2, effective).
const CAP_NET_BIND: [u8; 20] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const EPOCH: i64 = 1_000_000_000; // 2001-09-09

fn opts(compression: Compression, source_date_epoch: Option<i64>) -> CommitOptions {
    CommitOptions { compression, source_date_epoch }
}

fn store(dir: &Path) -> Store {
    Store::open(dir.join("store")).unwrap()
}

/// The blob of `layer`, decompressed by magic bytes, checked against its digests.
fn layer_tar(store: &Store, layer: &Layer) -> Vec<u8> {
    let blob = store.read_blob(&layer.digest).unwrap();
    assert_eq!(Digest::of(&blob), layer.digest);
    assert_eq!(blob.len() as u64, layer.size);
    let mut out = Vec::new();
    match layer.media_type.as_str() {
        oci::MEDIA_TYPE_LAYER_GZIP => {
            assert_eq!(blob[..2], [0x1f, 0x8b]);
            flate2::read::MultiGzDecoder::new(&blob[..]).read_to_end(&mut out).unwrap();
        }
        oci::MEDIA_TYPE_LAYER_ZSTD => {
            assert_eq!(blob[..4], [0x28, 0xb5, 0x2f, 0xfd]);
            zstd::stream::read::Decoder::new(&blob[..]).unwrap().read_to_end(&mut out).unwrap();
        }
        oci::MEDIA_TYPE_LAYER_TAR => out = blob,
        other => panic!("media type {other}"),
    }
    assert_eq!(Digest::of(&out), layer.diff_id);
    out
}

#[derive(Debug)]
struct Entry {
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<Vec<u8>>,
    dev: (u32, u32),
    pax_keys: Vec<String>,
    xattrs: BTreeMap<String, Vec<u8>>,
    data: Vec<u8>,
}

fn entries(tar: &[u8]) -> Vec<(Vec<u8>, Entry)> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path_bytes().into_owned();
        let h = e.header().clone();
        let link = e.link_name_bytes().map(|l| l.into_owned());
        let (mut pax_keys, mut xattrs) = (Vec::new(), BTreeMap::new());
        if let Some(exts) = e.pax_extensions().unwrap() {
            for ext in exts {
                let ext = ext.unwrap();
                let key = ext.key().unwrap().to_string();
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    xattrs.insert(name.to_string(), ext.value_bytes().to_vec());
                } else {
                    pax_keys.push(key);
                }
            }
        }
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let dev = (h.device_major().unwrap().unwrap_or(0), h.device_minor().unwrap().unwrap_or(0));
        let entry = Entry {
            kind: h.entry_type(),
            mode: h.mode().unwrap(),
            uid: e.header().uid().unwrap(),
            gid: e.header().gid().unwrap(),
            mtime: h.mtime().unwrap(),
            link,
            dev,
            pax_keys,
            xattrs,
            data,
        };
        out.push((path, entry));
    }
    out
}

/// A tree with one of everything a layer can hold. `reverse` creates it in the opposite order
/// (other inode numbers, other readdir order), which must not change the tar.
fn make_tree(root: &Path, reverse: bool) {
    fs::create_dir(root).unwrap();
    let long_dir = "d".repeat(90);
    let long_name = format!("{long_dir}/{}", "n".repeat(150));
    let long_target = format!("/{}", "t".repeat(200));
    let mut steps: Vec<Box<dyn Fn()>> = vec![
        Box::new(|| {
            fs::create_dir_all(root.join("etc/sub")).unwrap();
            fs::write(root.join("etc/sub/conf"), "conf").unwrap();
        }),
        Box::new(|| {
            fs::write(root.join("ping"), "ELF").unwrap();
            fs::set_permissions(root.join("ping"), fs::Permissions::from_mode(0o755)).unwrap();
            xattr::set(root.join("ping"), "security.capability", &CAP_NET_BIND).unwrap();
            xattr::set(root.join("ping"), "user.b", b"2").unwrap();
            xattr::set(root.join("ping"), "user.a", b"1").unwrap();
            xattr::set(root.join("ping"), "trusted.mine", b"t").unwrap();
        }),
        Box::new(|| {
            fs::create_dir_all(root.join("links")).unwrap();
            fs::write(root.join("links/one"), "same inode").unwrap();
            fs::hard_link(root.join("links/one"), root.join("links/two")).unwrap();
            fs::hard_link(root.join("links/one"), root.join("zz-three")).unwrap();
        }),
        Box::new(|| {
            symlink("../etc/sub/conf", root.join("rel-link")).unwrap();
            symlink("/does/not/exist", root.join("dangling")).unwrap();
            symlink(&long_target, root.join("long-link")).unwrap();
        }),
        Box::new(|| {
            mknod(&root.join("null"), SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(1, 3))
                .unwrap();
            mknod(&root.join("loop0"), SFlag::S_IFBLK, Mode::from_bits_truncate(0o660), makedev(7, 0))
                .unwrap();
            nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
            // mknod obeys the umask.
            fs::set_permissions(root.join("null"), fs::Permissions::from_mode(0o666)).unwrap();
            fs::set_permissions(root.join("loop0"), fs::Permissions::from_mode(0o660)).unwrap();
        }),
        Box::new(|| {
            fs::create_dir(root.join("tmp")).unwrap();
            fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
            fs::write(root.join("owned"), "x").unwrap();
            // Beyond the ustar field's 7 octal digits: PAX uid/gid records.
            std::os::unix::fs::chown(root.join("owned"), Some(3_000_000), Some(2_500_000)).unwrap();
            fs::set_permissions(root.join("owned"), fs::Permissions::from_mode(0o6750)).unwrap();
        }),
        Box::new(|| {
            fs::create_dir(root.join(&long_dir)).unwrap();
            fs::write(root.join(&long_name), "long").unwrap();
            fs::hard_link(root.join(&long_name), root.join("long-hardlink")).unwrap();
        }),
        Box::new(|| {
            let big = vec![0xa5u8; 3 << 20];
            fs::write(root.join("big"), &big).unwrap();
        }),
    ];
    if reverse {
        steps.reverse();
    }
    for step in &steps {
        step();
    }
    // Same mtimes in both trees, set last (writing into a directory changes its mtime).
    for e in walkdir::WalkDir::new(root).contents_first(true) {
        let e = e.unwrap();
        let t = nix::sys::time::TimeSpec::new(1_500_000_000, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            e.path(),
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
}

#[test]
fn every_kind_of_entry_commits_and_extracts_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let tree = dir.path().join("tree");
    make_tree(&tree, false);
    let long_dir = "d".repeat(90);
    let long_name = format!("{long_dir}/{}", "n".repeat(150));

    let gz = store.commit_layer(&tree, &opts(Compression::Gzip, None)).unwrap();
    let zst = store.commit_layer(&tree, &opts(Compression::Zstd, None)).unwrap();
    let plain = store.commit_layer(&tree, &opts(Compression::Uncompressed, None)).unwrap();
    assert_eq!(gz.media_type, oci::MEDIA_TYPE_LAYER_GZIP);
    assert_eq!(zst.media_type, oci::MEDIA_TYPE_LAYER_ZSTD);
    assert_eq!(plain.media_type, oci::MEDIA_TYPE_LAYER_TAR);
    assert_eq!(gz.diff_id, plain.diff_id);
    assert_eq!(zst.diff_id, plain.diff_id);
    assert_eq!(plain.digest, plain.diff_id);
    let tar = layer_tar(&store, &gz);
    assert_eq!(layer_tar(&store, &zst), tar);
    assert_eq!(layer_tar(&store, &plain), tar);

    let list = entries(&tar);
    let names: Vec<String> = list.iter().map(|(p, _)| String::from_utf8_lossy(p).into_owned()).collect();
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| a.trim_end_matches('/').cmp(b.trim_end_matches('/')));
    assert_eq!(names, sorted, "entries sorted by name, each directory before its contents");
    let got: BTreeMap<String, Entry> = names.into_iter().zip(list.into_iter().map(|(_, e)| e)).collect();
    use tar::EntryType as T;

    // Hardlinks: the first name (in tar order) is the file, the others link to it.
    assert_eq!(got["links/one"].kind, T::Regular);
    assert_eq!(got["links/one"].data, b"same inode");
    for other in ["links/two", "zz-three"] {
        assert_eq!(got[other].kind, T::Link, "{other}");
        assert_eq!(got[other].link.as_deref(), Some(&b"links/one"[..]));
        assert!(got[other].data.is_empty());
    }
    assert_eq!(got[long_name.as_str()].kind, T::Regular, "ddd.../nnn sorts before long-hardlink");
    assert_eq!(got[long_name.as_str()].data, b"long");
    assert_eq!(got["long-hardlink"].kind, T::Link);
    assert_eq!(got["long-hardlink"].link.as_deref(), Some(long_name.as_bytes()));
    assert_eq!(got["long-hardlink"].pax_keys, ["linkpath"]);
    // Symlinks, stored verbatim, long target through PAX linkpath.
    assert_eq!(got["rel-link"].kind, T::Symlink);
    assert_eq!(got["rel-link"].link.as_deref(), Some(&b"../etc/sub/conf"[..]));
    assert_eq!(got["dangling"].link.as_deref(), Some(&b"/does/not/exist"[..]));
    assert_eq!(got["long-link"].link.as_ref().unwrap().len(), 201);
    assert_eq!(got["long-link"].pax_keys, ["linkpath"]);
    assert_eq!(got[long_name.as_str()].pax_keys, ["path"]);
    // xattrs, sorted, including security.capability and trusted.* other than overlay's.
    let x = &got["ping"].xattrs;
    assert_eq!(x.keys().collect::<Vec<_>>(), ["security.capability", "trusted.mine", "user.a", "user.b"]);
    assert_eq!(x["security.capability"], CAP_NET_BIND);
    // Devices and fifos.
    assert_eq!((got["null"].kind, got["null"].dev, got["null"].mode), (T::Char, (1, 3), 0o666));
    assert_eq!((got["loop0"].kind, got["loop0"].dev, got["loop0"].mode), (T::Block, (7, 0), 0o660));
    assert_eq!((got["fifo"].kind, got["fifo"].mode), (T::Fifo, 0o600));
    // Modes and ownership, PAX for ids beyond ustar's range.
    assert_eq!(got["tmp/"].mode, 0o1777);
    let o = &got["owned"];
    assert_eq!((o.mode, o.uid, o.gid), (0o6750, 3_000_000, 2_500_000));
    assert_eq!(o.pax_keys, ["uid", "gid"]);
    assert_eq!(got["big"].data.len(), 3 << 20);
    // Only what we chose: no atime/ctime/uname/gname/mtime PAX records anywhere.
    for (name, e) in &got {
        for k in &e.pax_keys {
            assert!(["path", "linkpath", "uid", "gid", "size"].contains(&k.as_str()), "{name}: {k}");
        }
        assert_eq!(e.mtime, 1_500_000_000, "{name}");
    }

    // Extraction of each blob gives the same tree, which commits to the same layer again.
    for layer in [&gz, &zst, &plain] {
        let out = store.layer_dir(layer).unwrap();
        check_tree(&out, &long_name);
        assert_eq!(store.commit_layer(&out, &opts(Compression::Uncompressed, None)).unwrap(), plain);
        fs::remove_dir_all(&out).unwrap();
    }
}

fn check_tree(out: &Path, long_name: &str) {
    let meta = |p: &str| fs::symlink_metadata(out.join(p)).unwrap();
    assert_eq!(fs::read_to_string(out.join("etc/sub/conf")).unwrap(), "conf");
    let one = meta("links/one");
    assert_eq!(one.nlink(), 3);
    assert_eq!(meta("links/two").ino(), one.ino());
    assert_eq!(meta("zz-three").ino(), one.ino());
    assert_eq!(meta(long_name).ino(), meta("long-hardlink").ino());
    assert_eq!(fs::read_link(out.join("rel-link")).unwrap(), Path::new("../etc/sub/conf"));
    assert_eq!(fs::read_link(out.join("dangling")).unwrap(), Path::new("/does/not/exist"));
    assert_eq!(fs::read_link(out.join("long-link")).unwrap().as_os_str().len(), 201);
    assert_eq!(xattr::get(out.join("ping"), "security.capability").unwrap().unwrap(), CAP_NET_BIND);
    assert_eq!(xattr::get(out.join("ping"), "trusted.mine").unwrap().unwrap(), b"t");
    assert_eq!(meta("ping").mode() & 0o7777, 0o755);
    let null = meta("null");
    assert!(null.file_type().is_char_device());
    assert_eq!((nix::sys::stat::major(null.rdev()), nix::sys::stat::minor(null.rdev())), (1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    let lp = meta("loop0");
    assert!(lp.file_type().is_block_device());
    assert_eq!((nix::sys::stat::major(lp.rdev()), nix::sys::stat::minor(lp.rdev())), (7, 0));
    assert!(meta("fifo").file_type().is_fifo());
    assert_eq!(meta("tmp").mode() & 0o7777, 0o1777);
    let o = meta("owned");
    assert_eq!((o.mode() & 0o7777, o.uid(), o.gid()), (0o6750, 3_000_000, 2_500_000));
    assert_eq!(fs::read(out.join("big")).unwrap(), vec![0xa5u8; 3 << 20]);
    for p in ["etc", "etc/sub", "ping", "rel-link", "tmp", "big"] {
        assert_eq!(meta(p).mtime(), 1_500_000_000, "{p}");
    }
}

#[test]
fn same_tree_gives_byte_identical_blobs_whatever_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    make_tree(&a, false);
    make_tree(&b, true);
    for c in [Compression::Gzip, Compression::Zstd, Compression::Uncompressed] {
        let la = store.commit_layer(&a, &opts(c, None)).unwrap();
        let lb = store.commit_layer(&b, &opts(c, None)).unwrap();
        assert_eq!(la, lb, "{c:?}");
    }
    // zstd's multithreaded output does not depend on how many threads a machine has: a 1-core
    // encoder and a 4-core one give the same bytes (the layer's own one uses all cores).
    let tar = layer_tar(&store, &store.commit_layer(&a, &opts(Compression::Uncompressed, None)).unwrap());
    let zstd_with = |workers: u32| {
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.multithread(workers).unwrap();
        enc.include_checksum(true).unwrap();
        std::io::Write::write_all(&mut enc, &tar).unwrap();
        enc.finish().unwrap()
    };
    let z = store.commit_layer(&a, &opts(Compression::Zstd, None)).unwrap();
    assert_eq!(zstd_with(1), store.read_blob(&z.digest).unwrap());
    assert_eq!(zstd_with(4), zstd_with(1));
}

#[test]
fn source_date_epoch_clamps_mtimes_only_downwards() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("new-dir")).unwrap();
    fs::write(tree.join("new-dir/new"), "new").unwrap();
    fs::write(tree.join("old"), "old").unwrap();
    symlink("old", tree.join("link")).unwrap();
    let old = nix::sys::time::TimeSpec::new(EPOCH - 1000, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &tree.join("old"),
        &old,
        &old,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();

    let layer = store.commit_layer(&tree, &opts(Compression::Gzip, Some(EPOCH))).unwrap();
    let blob = store.read_blob(&layer.digest).unwrap();
    // gzip header: no FNAME/FEXTRA flags, mtime 0.
    assert_eq!(blob[3], 0);
    assert_eq!(blob[4..8], [0, 0, 0, 0]);
    let got: BTreeMap<_, _> = entries(&layer_tar(&store, &layer))
        .into_iter()
        .map(|(p, e)| (String::from_utf8(p).unwrap(), e))
        .collect();
    assert_eq!(got["old"].mtime, (EPOCH - 1000) as u64);
    for p in ["new-dir/", "new-dir/new", "link"] {
        assert_eq!(got[p].mtime, EPOCH as u64, "{p}");
    }
    assert!(got.values().all(|e| e.pax_keys.is_empty()));

    // Touching the files again changes nothing in the layer.
    fs::write(tree.join("new-dir/new"), "new").unwrap();
    let again = store.commit_layer(&tree, &opts(Compression::Gzip, Some(EPOCH))).unwrap();
    assert_eq!(again, layer);
    // A negative epoch clamps to 1970.
    let neg = store.commit_layer(&tree, &opts(Compression::Uncompressed, Some(-5))).unwrap();
    let tar = layer_tar(&store, &neg);
    assert!(entries(&tar).iter().all(|(_, e)| e.mtime == 0));
}

#[test]
fn import_and_extract_accept_every_compression_by_magic() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let tree = dir.path().join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("f"), "data ".repeat(10_000)).unwrap();
    let plain = store.commit_layer(&tree, &opts(Compression::Uncompressed, None)).unwrap();
    let tar = layer_tar(&store, &plain);
    let mut zst = Vec::new();
    zstd::stream::copy_encode(&tar[..], &mut zst, 19).unwrap();
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut e, &tar).unwrap();
        e.finish().unwrap()
    };
    for input in [&tar, &zst, &gz] {
        for c in [Compression::Gzip, Compression::Zstd, Compression::Uncompressed] {
            let l = store.import_layer(&input[..], c).unwrap();
            assert_eq!(l.diff_id, plain.diff_id);
            assert_eq!(l.media_type, c.media_type());
            assert_eq!(layer_tar(&store, &l), tar);
        }
    }
    // A foreign zstd blob (single-threaded, level 19, several frames) and a foreign gzip one
    // (one member, level 9) unpack as they are.
    let mut two_frames = Vec::new();
    zstd::stream::copy_encode(&tar[..4096], &mut two_frames, 19).unwrap();
    zstd::stream::copy_encode(&tar[4096..], &mut two_frames, 1).unwrap();
    for blob in [&zst, &two_frames, &gz] {
        let digest = store.write_blob(blob).unwrap();
        let media_type = if blob == &gz { oci::MEDIA_TYPE_LAYER_GZIP } else { oci::MEDIA_TYPE_LAYER_ZSTD };
        let layer = Layer {
            digest,
            diff_id: plain.diff_id.clone(),
            size: blob.len() as u64,
            media_type: media_type.into(),
        };
        let out = store.layer_dir(&layer).unwrap();
        assert_eq!(fs::read_to_string(out.join("f")).unwrap(), "data ".repeat(10_000));
        fs::remove_dir_all(&out).unwrap();
    }
    for name in ["gzip", "zstd", "uncompressed"] {
        assert_eq!(Compression::from_name(name).unwrap().name(), name);
    }
    assert_eq!(Compression::from_name("xz"), None);
}
