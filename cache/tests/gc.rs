//! Garbage collection, build-cache pruning and verification on a real store in a temp dir.
//! These tests need root (mknod of whiteouts).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cache::oci::{self, ImageConfig};
use cache::{CacheRecord, Compression, Digest, Image, ImageRef, Layer, Store};
use flate2::write::GzEncoder;

struct Fixture {
    store: Store,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    Fixture { store, _dir: dir }
}

/// A gzip layer holding one file `name` with `content`, imported into the store.
fn layer(store: &Store, name: &str, content: &str) -> Layer {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), flate2::Compression::default()));
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, name, content.as_bytes()).unwrap();
    let gz = builder.into_inner().unwrap().finish().unwrap();
    store.import_layer(&gz[..], Compression::Gzip).unwrap()
}

fn config(layers: &[Layer], tag: &str) -> ImageConfig {
    ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        author: Some(tag.into()),
        rootfs: oci::RootFs {
            kind: "layers".into(),
            diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect(),
        },
        ..Default::default()
    }
}

/// Stores an image over `layers` and tags it `name`.
fn image(store: &Store, name: &str, layers: &[Layer]) -> Image {
    let image = store.put_image(&config(layers, name), layers).unwrap();
    store.tag(&name.parse::<ImageRef>().unwrap(), &image.digest).unwrap();
    image
}

fn record(store: &Store, key: &str, layers: &[Layer]) -> Digest {
    let key = Digest::of(key.as_bytes());
    store.cache_put(&key, &CacheRecord::new(layers.to_vec(), config(layers, key.hex()))).unwrap();
    key
}

fn set_old(path: &Path) {
    let old = SystemTime::now() - Duration::from_secs(2 * 3600);
    File::open(path).unwrap().set_modified(old).unwrap();
}

/// Makes every blob, layer directory and tmp entry two hours old, so only reachability keeps
/// anything.
fn age_everything(store: &Store) {
    for sub in ["blobs/sha256", "layers", "tmp"] {
        for entry in fs::read_dir(store.root().join(sub)).unwrap() {
            set_old(&entry.unwrap().path());
        }
    }
}

fn layer_path(store: &Store, layer: &Layer) -> PathBuf {
    store.root().join("layers").join(layer.diff_id.hex())
}

/// A directory in `layers/` for a layer no blob or record has, with the awkward things real
/// layer directories hold: a whiteout device and a mode-000 overlay work dir with a file in it.
fn orphan_layer_dir(store: &Store) -> PathBuf {
    let dir = store.root().join("layers").join(Digest::of(b"orphan layer").hex());
    fs::create_dir_all(dir.join("work/work/inner")).unwrap();
    fs::write(dir.join("work/work/inner/file"), b"x").unwrap();
    fs::write(dir.join("data"), vec![7u8; 5000]).unwrap();
    nix::sys::stat::mknod(
        &dir.join("gone"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        nix::sys::stat::makedev(0, 0),
    )
    .unwrap();
    fs::set_permissions(dir.join("work/work/inner"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(dir.join("work/work"), fs::Permissions::from_mode(0o000)).unwrap();
    dir
}

fn assert_image_intact(store: &Store, image: &Image) {
    let read = store.image(&image.digest).unwrap();
    assert!(store.has_blob(&read.config_digest));
    for l in read.layers() {
        assert!(store.has_blob(&l.digest), "layer blob {} of {} is gone", l.digest, image.digest);
    }
}

#[test]
fn gc_keeps_what_tags_and_records_reach_and_deletes_old_orphans() {
    let f = fixture();
    let store = &f.store;
    let (l1, l2, l3, l4, l5) = (
        layer(store, "a", "one"),
        layer(store, "b", "two"),
        layer(store, "c", "three"),
        layer(store, "d", "four"),
        layer(store, "e", "five"),
    );
    let app = image(store, "app:v1", &[l1.clone(), l2.clone()]);
    record(store, "step", &[l1.clone(), l3.clone()]);
    // An image reachable only through a tagged image index.
    let indexed =
        store.put_image(&config(std::slice::from_ref(&l5), "indexed"), std::slice::from_ref(&l5)).unwrap();
    let index = oci::Index {
        schema_version: 2,
        media_type: Some(oci::MEDIA_TYPE_INDEX.into()),
        manifests: vec![oci::Descriptor {
            media_type: oci::MEDIA_TYPE_MANIFEST.into(),
            digest: indexed.digest.clone(),
            size: 1,
            annotations: BTreeMap::new(),
            platform: None,
        }],
        annotations: BTreeMap::new(),
    };
    let index_digest = store.write_blob(&serde_json::to_vec(&index).unwrap()).unwrap();
    store.tag(&"multi:v1".parse().unwrap(), &index_digest).unwrap();

    for l in [&l1, &l2, &l3, &l4, &l5] {
        store.layer_dir(l).unwrap();
    }
    let orphan_blob = store.write_blob(b"nobody refers to me").unwrap();
    let orphan_dir = orphan_layer_dir(store);
    let old_tmp = store.root().join("tmp/unpack-old");
    fs::create_dir_all(old_tmp.join("root/x")).unwrap();
    fs::write(old_tmp.join("root/x/f"), b"partial").unwrap();
    age_everything(store);
    let young_tmp = store.root().join("tmp/ingest-young");
    fs::write(&young_tmp, b"being written").unwrap();

    let report = store.gc().unwrap();
    assert_eq!(report.blobs, 2, "{report:?}"); // the orphan blob and l4's
    assert_eq!(report.layers, 2, "{report:?}"); // l4's directory and the orphan one
    assert_eq!(report.tmp_entries, 1, "{report:?}");
    assert_eq!(report.cache_records, 0);
    assert!(report.blob_bytes >= "nobody refers to me".len() as u64 + l4.size);
    assert!(report.layer_bytes >= 5000);
    assert!(report.to_string().starts_with("Deleted 2 blobs, 2 layers, 0 cache records, 1 temp entry ("));

    assert!(!store.has_blob(&orphan_blob));
    assert!(!store.has_blob(&l4.digest));
    assert!(!orphan_dir.exists());
    assert!(!layer_path(store, &l4).exists());
    assert!(!old_tmp.exists());
    assert!(young_tmp.exists());
    assert_image_intact(store, &app);
    assert_image_intact(store, &indexed);
    assert!(store.has_blob(&index_digest));
    assert!(store.has_blob(&l3.digest));
    for l in [&l1, &l2, &l3, &l5] {
        assert!(layer_path(store, l).is_dir(), "layer dir of {} is gone", l.diff_id);
    }
    let verify = store.verify().unwrap();
    assert!(verify.is_ok(), "{verify}");
    assert_eq!(verify.images, 2);
    assert_eq!(verify.cache_records, 1);

    // Nothing left to collect.
    let again = store.gc().unwrap();
    assert_eq!(again, cache::PruneReport::default());
    assert_eq!(again.to_string(), "Deleted 0 blobs, 0 layers, 0 cache records (0 B)");
}

#[test]
fn young_orphans_survive_the_grace_period() {
    let f = fixture();
    let store = &f.store;
    let l = layer(store, "a", "fresh");
    store.layer_dir(&l).unwrap();
    let blob = store.write_blob(b"just written").unwrap();
    let report = store.gc().unwrap();
    assert_eq!(report, cache::PruneReport::default());
    assert!(store.has_blob(&blob));
    assert!(store.has_blob(&l.digest));
    assert!(layer_path(store, &l).is_dir());

    // Writing an existing old blob again makes it young again (it is about to be referenced).
    age_everything(store);
    assert_eq!(store.write_blob(b"just written").unwrap(), blob);
    let report = store.gc().unwrap();
    assert_eq!(report.blobs, 1, "only the layer blob goes: {report:?}");
    assert!(store.has_blob(&blob));
    assert!(!store.has_blob(&l.digest));
}

#[test]
fn prune_build_cache_removes_records_and_their_layers_but_keeps_images() {
    let f = fixture();
    let store = &f.store;
    let base = layer(store, "base", "base");
    let step = layer(store, "step", "step");
    let app = image(store, "app:v1", std::slice::from_ref(&base));
    let k1 = record(store, "k1", std::slice::from_ref(&base));
    let k2 = record(store, "k2", &[base.clone(), step.clone()]);
    store.layer_dir(&base).unwrap();
    store.layer_dir(&step).unwrap();
    let context = store.root().join("cache/context");
    fs::create_dir_all(&context).unwrap();
    fs::write(context.join("hashes.json"), b"{}").unwrap();
    age_everything(store);

    // A plain gc keeps all of it.
    assert_eq!(store.gc().unwrap().blobs, 0);

    let report = store.prune_build_cache().unwrap();
    assert_eq!(report.cache_records, 2, "{report:?}");
    assert_eq!(report.blobs, 1, "{report:?}");
    assert_eq!(report.layers, 1, "{report:?}");
    assert!(store.cache_get(&k1).unwrap().is_none());
    assert!(store.cache_get(&k2).unwrap().is_none());
    assert!(!context.exists());
    assert!(!store.has_blob(&step.digest));
    assert!(!layer_path(store, &step).exists());
    assert!(layer_path(store, &base).is_dir());
    assert_image_intact(store, &app);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn untag_then_gc_removes_the_unshared_blobs() {
    let f = fixture();
    let store = &f.store;
    let shared = layer(store, "shared", "shared");
    let only_a = layer(store, "a", "only in a");
    let only_b = layer(store, "b", "only in b");
    let a = image(store, "a:latest", &[shared.clone(), only_a.clone()]);
    let b = image(store, "b:latest", &[shared.clone(), only_b.clone()]);
    age_everything(store);
    assert_eq!(store.untag(&"a:latest".parse().unwrap()).unwrap(), Some(a.digest.clone()));

    let report = store.gc().unwrap();
    assert_eq!(report.blobs, 3, "manifest, config and layer of a: {report:?}");
    assert!(!store.has_blob(&a.digest));
    assert!(!store.has_blob(&a.config_digest));
    assert!(!store.has_blob(&only_a.digest));
    assert!(store.has_blob(&shared.digest));
    assert_image_intact(store, &b);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn verify_reports_corrupt_and_missing_blobs() {
    let f = fixture();
    let store = &f.store;
    let l1 = layer(store, "a", "one");
    let l2 = layer(store, "b", "two");
    let l3 = layer(store, "c", "three");
    image(store, "app:v1", &[l1.clone(), l2.clone()]);
    let key = record(store, "k", std::slice::from_ref(&l3));
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!((report.images, report.cache_records), (1, 1));
    assert!(report.blobs >= 5);

    // Flip a byte of l1's blob.
    let path = store.blob_path(&l1.digest);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    File::create(&path).unwrap().write_all(&bytes).unwrap();
    // Lose l2's and l3's.
    fs::remove_file(store.blob_path(&l2.digest)).unwrap();
    fs::remove_file(store.blob_path(&l3.digest)).unwrap();

    let report = store.verify().unwrap();
    let problems = report.problems.join("\n");
    assert_eq!(report.problems.len(), 3, "{problems}");
    assert!(problems.contains(&format!("blob {} is corrupt", l1.digest)), "{problems}");
    assert!(problems.contains(&format!("image app:v1: layer blob {} is missing", l2.digest)), "{problems}");
    assert!(
        problems.contains(&format!("{}.json: layer blob {} is missing", key.hex(), l3.digest)),
        "{problems}"
    );
}

#[test]
fn live_snapshots_keep_their_layers_and_stale_ones_go() {
    let f = fixture();
    let store = &f.store;
    // Referenced by nothing but the live snapshot.
    let lower = layer(store, "lower", "lower");
    let live = store.create_snapshot(std::slice::from_ref(&lower)).unwrap();
    fs::write(live.upper().join("new"), b"written by a step").unwrap();
    let layers_json: Vec<Digest> =
        serde_json::from_slice(&fs::read(live.dir.join("layers.json")).unwrap()).unwrap();
    assert_eq!(layers_json, vec![lower.diff_id.clone()]);

    // A snapshot left by a killed build: its lock file is not held.
    let stale = store.root().join("snapshots").join(format!("{:032x}", 7));
    fs::create_dir_all(stale.join("work/work")).unwrap();
    fs::create_dir_all(stale.join("upper")).unwrap();
    fs::write(stale.join("upper/f"), b"left over").unwrap();
    fs::write(stale.join("lock"), b"").unwrap();
    fs::set_permissions(stale.join("work/work"), fs::Permissions::from_mode(0o000)).unwrap();
    age_everything(store);

    let report = store.gc().unwrap();
    assert_eq!(report.snapshots, 1, "{report:?}");
    assert!(report.snapshot_bytes >= 9);
    assert_eq!(report.layers, 0, "{report:?}");
    assert!(!stale.exists());
    assert!(live.dir.is_dir());
    assert!(live.upper().join("new").is_file());
    assert!(layer_path(store, &lower).is_dir());

    // Once the snapshot is gone its lower is garbage like any other.
    drop(live);
    let report = store.gc().unwrap();
    assert_eq!(report.layers, 1, "{report:?}");
    assert!(!layer_path(store, &lower).exists());
}

#[test]
fn gc_removes_old_unheld_step_locks_and_keeps_held_or_young_ones() {
    let f = fixture();
    let locks = f.store.root().join("locks");
    let old_free = locks.join(format!("step-{}.lock", "a".repeat(64)));
    let old_held = locks.join(format!("step-{}.lock", "b".repeat(64)));
    let young = locks.join(format!("step-{}.lock", "c".repeat(64)));
    for p in [&old_free, &old_held, &young] {
        File::create(p).unwrap();
    }
    set_old(&old_free);
    set_old(&old_held);
    let held = f.store.lock(&format!("step-{}", "b".repeat(64))).unwrap();
    f.store.gc().unwrap();
    assert!(!old_free.exists(), "an old, unheld step lock survived");
    assert!(old_held.exists(), "a held step lock was removed");
    assert!(young.exists(), "a young step lock was removed");
    drop(held);
}

#[test]
fn dangling_images_survive_gc_until_pruned() {
    let f = fixture();
    let store = &f.store;
    let old_layer = layer(store, "old", "old");
    let new_layer = layer(store, "new", "new");
    let old = image(store, "app:1", std::slice::from_ref(&old_layer));
    let new = image(store, "app:1", std::slice::from_ref(&new_layer));
    assert_eq!(store.dangling_images().unwrap(), vec![old.digest.clone()]);
    age_everything(store);

    let report = store.gc().unwrap();
    assert_eq!(report.blobs, 0, "{report:?}");
    assert_image_intact(store, &old);
    assert!(store.verify().unwrap().is_ok());

    let removed = store.prune_images(false, &Default::default()).unwrap();
    assert_eq!(removed.len(), 1);
    let report = store.gc().unwrap();
    assert_eq!(report.blobs, 3, "manifest, config and layer of the old image: {report:?}");
    assert!(!store.has_blob(&old_layer.digest));
    assert_image_intact(store, &new);
}
