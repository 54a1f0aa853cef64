//! Shared by the registry tests: stores with an image in them, clients that read no real
//! credentials file.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use cache::oci::{History, ImageConfig, Layer, RootFs};
use cache::{Compression, Digest, Image, Store};
use registry::{Client, Credentials, Options, Outcome, Progress};

pub struct TempStore {
    pub dir: tempfile::TempDir,
    pub store: Store,
}

pub fn empty_store() -> TempStore {
    let dir = tempfile::Builder::new().prefix("rbuild-registry-store-").tempdir().expect("temp store dir");
    let store = Store::open(dir.path().join("store")).expect("open store");
    TempStore { dir, store }
}

fn config(diff_ids: Vec<Digest>, created_by: &str) -> ImageConfig {
    ImageConfig {
        created: Some("2000-01-01T00:00:00Z".into()),
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs { kind: "layers".into(), diff_ids },
        history: vec![History {
            created: Some("2000-01-01T00:00:00Z".into()),
            created_by: Some(created_by.into()),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A store holding the busybox rootfs as a one-layer image, imported the way `rbuild import`
/// does (gzip layer from the rootfs tar, a config, a manifest), tagged `busybox:latest`.
pub fn busybox_store() -> (TempStore, Image) {
    let t = empty_store();
    let tar = t.dir.path().join("busybox.tar");
    test_support::write_busybox_rootfs_tar(&tar).expect("busybox rootfs tar");
    let file = std::fs::File::open(&tar).expect("open rootfs tar");
    let layer = t.store.import_layer(std::io::BufReader::new(file), Compression::Gzip).expect("import layer");
    let image =
        t.store.put_image(&config(vec![layer.diff_id.clone()], "rbuild import"), &[layer]).expect("put");
    t.store.tag(&"busybox:latest".parse().unwrap(), &image.digest).expect("tag");
    (t, image)
}

/// A store holding a one-layer image whose layer is an uncompressed tar of one file of
/// `size` random bytes.
pub fn random_image_store(size: usize) -> (TempStore, Image) {
    let t = empty_store();
    let mut data = vec![0u8; size];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ size as u64 ^ std::process::id() as u64;
    for chunk in data.chunks_mut(8) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
    }
    let mut tar = tar::Builder::new(Vec::with_capacity(size + 4096));
    let mut h = tar::Header::new_ustar();
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_mtime(946684800);
    tar.append_data(&mut h, "random.bin", &data[..]).expect("tar");
    let bytes = tar.into_inner().expect("tar bytes");
    let (digest, len) = t.store.ingest_blob(&bytes[..], None).expect("ingest layer");
    let layer = Layer {
        digest: digest.clone(),
        diff_id: digest,
        size: len,
        media_type: cache::oci::MEDIA_TYPE_LAYER_TAR.into(),
    };
    let image = t.store.put_image(&config(vec![layer.diff_id.clone()], "random"), &[layer]).expect("put");
    (t, image)
}

/// Events a client reported, for assertions.
#[derive(Clone, Default)]
pub struct Events(pub Arc<Mutex<Vec<Progress>>>);

impl Events {
    pub fn outcomes(&self) -> Vec<(Digest, Outcome)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Progress::Done { digest, outcome, .. } => Some((digest.clone(), outcome.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// A client whose only credentials file is `auth` (nothing from $HOME), and its event log.
pub fn client_with(auth: &Path) -> (Client, Events) {
    let events = Events::default();
    let log = events.0.clone();
    let options = Options {
        credentials: Credentials::file(auth),
        progress: Some(Arc::new(move |p: &Progress| log.lock().unwrap().push(p.clone()))),
        ..Options::default()
    };
    (Client::new(options).expect("client"), events)
}

/// A client with no credentials at all.
pub fn client() -> (Client, Events) {
    let events = Events::default();
    let log = events.0.clone();
    let options = Options {
        credentials: Credentials::none(),
        progress: Some(Arc::new(move |p: &Progress| log.lock().unwrap().push(p.clone()))),
        ..Options::default()
    };
    (Client::new(options).expect("client"), events)
}

/// The names under the store's `blobs/sha256/`.
pub fn blob_names(store: &Store) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store.root().join("blobs/sha256"))
        .expect("blobs dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Runs a command, panicking with its output unless it succeeds; returns stdout.
pub fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn write_file(path: &Path, data: &[u8]) {
    let mut f = std::fs::File::create(path).expect("create");
    f.write_all(data).expect("write");
}
