//! Image archives against the real tools that read and write them (skopeo, umoci).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use cache::oci::{self, ContainerConfig, ImageConfig, Layer, Platform, RootFs};
use cache::{ArchiveFormat, Digest, Error, Image, ImageRef, Store};
use flate2::Compression;
use flate2::write::GzEncoder;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A small rootfs tar: `etc/`, `etc/hello` ("hi\n") and a symlink `etc/link` -> `hello`.
fn rootfs_tar() -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "etc/", std::io::empty())?;
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(3);
    b.append_data(&mut h, "etc/hello", &b"hi\n"[..])?;
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    b.append_link(&mut h, "etc/link", "hello")?;
    b.into_inner()
}

/// Stores a one-layer image tagged `demo:v1` and returns it.
fn demo_image(store: &Store) -> Result<Image, Box<dyn std::error::Error>> {
    let tar = rootfs_tar()?;
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&tar)?;
    let gz = gz.finish()?;
    let layer = Layer {
        digest: store.write_blob(&gz)?,
        diff_id: Digest::of(&tar),
        size: gz.len() as u64,
        media_type: oci::MEDIA_TYPE_LAYER_GZIP.to_string(),
    };
    let config = ImageConfig {
        architecture: Platform::host().architecture,
        os: "linux".to_string(),
        config: ContainerConfig { cmd: Some(vec!["/bin/sh".to_string()]), ..Default::default() },
        rootfs: RootFs { kind: "layers".to_string(), diff_ids: vec![layer.diff_id.clone()] },
        ..Default::default()
    };
    let image = store.put_image(&config, &[layer])?;
    store.tag(&"demo:v1".parse()?, &image.digest)?;
    Ok(image)
}

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: Store,
    image: Image,
}

fn env() -> Result<Env, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().to_path_buf();
    let store = Store::open(root.join("store"))?;
    let image = demo_image(&store)?;
    Ok(Env { _dir: dir, root, store, image })
}

impl Env {
    fn save(&self, format: ArchiveFormat, file: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
        let out = self.root.join(file);
        let name: ImageRef = "demo:v1".parse()?;
        self.store.save(&[(Some(name), self.image.clone())], format, &out)?;
        Ok(out)
    }

    fn fresh_store(&self, name: &str) -> Result<Store, Box<dyn std::error::Error>> {
        Ok(Store::open(self.root.join(name))?)
    }
}

fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipping the {tool} part of this test: {tool} is not installed");
    }
    found
}

fn run(cmd: &mut Command) -> Result<String, Box<dyn std::error::Error>> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The entries of a tar file, by path.
fn tar_entries(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, Box<dyn std::error::Error>> {
    let mut entries = BTreeMap::new();
    let mut archive = tar::Archive::new(fs::File::open(path)?);
    for e in archive.entries()? {
        let mut e = e?;
        let name = e.path()?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data)?;
        entries.insert(name, data);
    }
    Ok(entries)
}

fn write_tar(path: &Path, files: &[(&str, &[u8])]) -> TestResult {
    let mut b = tar::Builder::new(fs::File::create(path)?);
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, *data)?;
    }
    b.into_inner()?.sync_all()?;
    Ok(())
}

fn no_temp_files(dir: &Path) -> TestResult {
    let leftovers: Vec<_> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left behind: {leftovers:?}");
    Ok(())
}

#[test]
fn oci_archive_is_read_by_skopeo_and_umoci() -> TestResult {
    let env = env()?;
    let out = env.save(ArchiveFormat::Oci, "demo-oci.tar")?;
    no_temp_files(&env.root)?;
    let layer = &env.image.manifest.layers[0].digest;

    let entries = tar_entries(&out)?;
    assert_eq!(entries["oci-layout"], br#"{"imageLayoutVersion":"1.0.0"}"#);
    let index: serde_json::Value = serde_json::from_slice(&entries["index.json"])?;
    assert_eq!(index["manifests"][0]["digest"], env.image.digest.as_str());
    assert_eq!(index["manifests"][0]["annotations"][oci::ANNOTATION_REF_NAME], "v1");
    assert_eq!(index["manifests"][0]["annotations"][oci::ANNOTATION_IMAGE_NAME], "demo:v1");
    assert_eq!(entries[&format!("blobs/sha256/{}", layer.hex())], env.store.read_blob(layer)?);

    if have("skopeo") {
        let inspect =
            run(Command::new("skopeo").arg("inspect").arg(format!("oci-archive:{}", out.display())))?;
        let inspect: serde_json::Value = serde_json::from_str(&inspect)?;
        assert_eq!(inspect["Layers"][0], layer.as_str(), "{inspect}");
        assert_eq!(inspect["Digest"], env.image.digest.as_str(), "{inspect}");
    }
    if have("umoci") {
        let layout = env.root.join("layout");
        fs::create_dir(&layout)?;
        run(Command::new("tar").arg("-xf").arg(&out).arg("-C").arg(&layout))?;
        let bundle = env.root.join("bundle");
        run(Command::new("umoci")
            .arg("unpack")
            .arg("--rootless")
            .arg("--image")
            .arg(format!("{}:v1", layout.display()))
            .arg(&bundle))?;
        assert_eq!(fs::read_to_string(bundle.join("rootfs/etc/hello"))?, "hi\n");
        assert_eq!(fs::read_link(bundle.join("rootfs/etc/link"))?, Path::new("hello"));
    }
    Ok(())
}

#[test]
fn docker_archive_is_read_by_skopeo() -> TestResult {
    let env = env()?;
    let out = env.save(ArchiveFormat::Docker, "demo-docker.tar")?;
    no_temp_files(&env.root)?;
    let diff_id = &env.image.config.rootfs.diff_ids[0];

    let entries = tar_entries(&out)?;
    let manifest: serde_json::Value = serde_json::from_slice(&entries["manifest.json"])?;
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["demo:v1"]));
    assert_eq!(manifest[0]["Config"], format!("blobs/sha256/{}", env.image.config_digest.hex()));
    let layer_path = manifest[0]["Layers"][0].as_str().ok_or("no layer in manifest.json")?;
    assert_eq!(Digest::of(&entries[layer_path]), *diff_id);
    assert_eq!(
        entries[manifest[0]["Config"].as_str().ok_or("no config")?],
        env.store.read_blob(&env.image.config_digest)?
    );
    let repositories: serde_json::Value = serde_json::from_slice(&entries["repositories"])?;
    assert_eq!(repositories["demo"]["v1"], env.image.config_digest.hex());

    if have("skopeo") {
        let inspect =
            run(Command::new("skopeo").arg("inspect").arg(format!("docker-archive:{}", out.display())))?;
        let inspect: serde_json::Value = serde_json::from_str(&inspect)?;
        assert_eq!(inspect["Layers"][0], diff_id.as_str(), "{inspect}");
    }
    Ok(())
}

#[test]
fn saved_archives_load_back_into_an_empty_store() -> TestResult {
    let env = env()?;
    let oci_tar = env.save(ArchiveFormat::Oci, "oci.tar")?;
    let docker_tar = env.save(ArchiveFormat::Docker, "docker.tar")?;

    let store = env.fresh_store("from-oci")?;
    let loaded = store.load(&oci_tar)?;
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].reference.as_ref().map(ToString::to_string).as_deref(), Some("demo:v1"));
    assert_eq!(loaded[0].image.digest, env.image.digest);
    assert_eq!(store.resolve("demo:v1")?.digest, env.image.digest);
    assert_eq!(store.read_blob(&env.image.digest)?, env.store.read_blob(&env.image.digest)?);

    let store = env.fresh_store("from-docker")?;
    let loaded = store.load(&docker_tar)?;
    assert_eq!(loaded.len(), 1);
    let image = store.resolve("demo:v1")?;
    assert_eq!(image.config_digest, env.image.config_digest);
    assert_eq!(loaded[0].image.digest, image.digest);
    assert_eq!(image.config, env.image.config);
    // Docker archives hold layers uncompressed: the blob is the tar its diff id names.
    let layer = &image.layers()[0];
    assert_eq!(layer.digest, layer.diff_id);
    assert_eq!(layer.media_type, oci::MEDIA_TYPE_LAYER_TAR);
    assert_eq!(Digest::of(&store.read_blob(&layer.digest)?), layer.diff_id);

    // A store that already holds everything loads the archive again without complaint.
    assert_eq!(store.load(&docker_tar)?[0].image.digest, image.digest);
    Ok(())
}

#[test]
fn saving_twice_gives_identical_archives() -> TestResult {
    let env = env()?;
    for format in [ArchiveFormat::Oci, ArchiveFormat::Docker] {
        let a = env.save(format, "a.tar")?;
        let a = fs::read(a)?;
        let b = fs::read(env.save(format, "b.tar")?)?;
        assert!(a == b, "{format:?} archives differ");
    }
    // Every entry is owned by root with a fixed mtime.
    let mut archive = tar::Archive::new(fs::File::open(env.root.join("a.tar"))?);
    for e in archive.entries()? {
        let e = e?;
        let h = e.header();
        assert_eq!((h.uid()?, h.gid()?, h.mtime()?), (0, 0, 0));
        let mode = if h.entry_type().is_dir() { 0o755 } else { 0o644 };
        assert_eq!(h.mode()?, mode);
    }
    Ok(())
}

#[test]
fn a_failed_save_leaves_nothing_behind() -> TestResult {
    let env = env()?;
    let mut broken = env.image.clone();
    broken.manifest.layers[0].digest = Digest::of(b"not stored");
    let out = env.root.join("broken.tar");
    let err = env.store.save(&[(None, broken)], ArchiveFormat::Oci, &out).unwrap_err();
    assert!(matches!(err, Error::BlobNotFound(_)), "{err}");
    assert!(!out.exists());
    no_temp_files(&env.root)?;
    Ok(())
}

/// Loading `archive` fails with a message naming it, and leaves `store` without tags.
fn assert_load_fails(store: &Store, archive: &Path, expect: &str) -> TestResult {
    let err = match store.load(archive) {
        Ok(images) => return Err(format!("{} loaded: {images:?}", archive.display()).into()),
        Err(e) => e,
    };
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(matches!(err, Error::Archive { .. }), "{msg}");
    assert!(msg.contains(&archive.display().to_string()), "{msg}");
    assert!(msg.contains(expect), "{msg} does not say {expect:?}");
    assert!(store.tags()?.is_empty());
    assert_eq!(fs::read_dir(store.root().join("tmp"))?.count(), 0, "temp files left in the store");
    Ok(())
}

#[test]
fn broken_archives_are_rejected() -> TestResult {
    let env = env()?;
    let store = env.fresh_store("target")?;

    let random = env.root.join("random.tar");
    let bytes: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(&random, bytes)?;
    assert_load_fails(&store, &random, "tar")?;

    let empty = env.root.join("empty.tar");
    write_tar(&empty, &[])?;
    assert_load_fails(&store, &empty, "not an image archive (no manifest.json or index.json)")?;

    let bad = Digest::of(b"what the name says");
    let mismatch = env.root.join("mismatch.tar");
    let name = format!("blobs/sha256/{}", bad.hex());
    write_tar(
        &mismatch,
        &[("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#), (&name, b"something else")],
    )?;
    assert_load_fails(&store, &mismatch, &name)?;
    assert!(!store.has_blob(&bad));
    assert!(!store.has_blob(&Digest::of(b"something else")));

    for format in [ArchiveFormat::Oci, ArchiveFormat::Docker] {
        let full = fs::read(env.save(format, "full.tar")?)?;
        let truncated = env.root.join(format!("truncated-{format:?}.tar"));
        fs::write(&truncated, &full[..full.len() / 2])?;
        assert_load_fails(&store, &truncated, "")?;
    }

    // An index naming a manifest the archive lacks.
    let missing = env.root.join("missing.tar");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": oci::MEDIA_TYPE_MANIFEST,
            "digest": env.image.digest,
            "size": 10,
            "annotations": {oci::ANNOTATION_IMAGE_NAME: "demo:v1"},
        }],
    });
    let index = serde_json::to_vec(&index)?;
    write_tar(&missing, &[("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#), ("index.json", &index)])?;
    // (A fresh store: the truncated archives above left whole, verified blobs in `store`.)
    assert_load_fails(&env.fresh_store("target2")?, &missing, env.image.digest.hex())?;
    Ok(())
}

#[test]
fn archive_written_by_skopeo_loads() -> TestResult {
    if !have("skopeo") {
        return Ok(());
    }
    let env = env()?;
    let oci_tar = env.save(ArchiveFormat::Oci, "a.tar")?;
    let docker_tar = env.root.join("b.tar");
    run(Command::new("skopeo")
        .arg("copy")
        .arg("--quiet")
        .arg(format!("oci-archive:{}", oci_tar.display()))
        .arg(format!("docker-archive:{}:other:v2", docker_tar.display())))?;

    let store = env.fresh_store("from-skopeo")?;
    let loaded = store.load(&docker_tar)?;
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].reference.as_ref().map(ToString::to_string).as_deref(), Some("other:v2"));
    let image = store.resolve("other:v2")?;
    assert_eq!(image.config.rootfs.diff_ids, env.image.config.rootfs.diff_ids);
    assert_eq!(image.config.config.cmd, Some(vec!["/bin/sh".to_string()]));
    assert!(store.resolve("demo:v1").is_err());

    // skopeo's OCI archive of the same image loads too, under its ref.name.
    let oci_again = env.root.join("c.tar");
    run(Command::new("skopeo")
        .arg("copy")
        .arg("--quiet")
        .arg(format!("docker-archive:{}", docker_tar.display()))
        .arg(format!("oci-archive:{}:third:v3", oci_again.display())))?;
    let loaded = store.load(&oci_again)?;
    assert_eq!(loaded[0].reference.as_ref().map(ToString::to_string).as_deref(), Some("third:v3"));
    assert_eq!(store.resolve("third:v3")?.config.rootfs.diff_ids, env.image.config.rootfs.diff_ids);
    Ok(())
}

#[test]
fn shared_blobs_are_written_once() -> TestResult {
    let env = env()?;
    let out = env.root.join("two.tar");
    let images =
        [(Some("demo:v1".parse()?), env.image.clone()), (Some("demo:v2".parse()?), env.image.clone())];
    for format in [ArchiveFormat::Oci, ArchiveFormat::Docker] {
        env.store.save(&images, format, &out)?;
        let mut archive = tar::Archive::new(fs::File::open(&out)?);
        let mut names = Vec::new();
        for e in archive.entries()? {
            names.push(e?.path()?.to_string_lossy().into_owned());
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{format:?}: {names:?}");
        let store = env.fresh_store(&format!("two-{format:?}"))?;
        let loaded = store.load(&out)?;
        assert_eq!(loaded.len(), 2);
        assert_eq!(store.resolve("demo:v1")?.digest, store.resolve("demo:v2")?.digest);
    }
    Ok(())
}

#[test]
fn nested_index_picks_the_host_platform_and_gzip_docker_layers_load() -> TestResult {
    let env = env()?;
    let blob = |d: &Digest| -> Result<(String, Vec<u8>), Box<dyn std::error::Error>> {
        Ok((format!("blobs/sha256/{}", d.hex()), env.store.read_blob(d)?))
    };
    let manifest = blob(&env.image.digest)?;
    let config = blob(&env.image.config_digest)?;
    let layer = blob(&env.image.manifest.layers[0].digest)?;
    let host = Platform::host();
    let other = if host.architecture == "s390x" { "riscv64" } else { "s390x" };
    let nested = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::MEDIA_TYPE_INDEX,
        "manifests": [
            {"mediaType": oci::MEDIA_TYPE_MANIFEST, "digest": Digest::of(b"absent"), "size": 6,
             "platform": {"architecture": other, "os": "linux"}},
            {"mediaType": oci::MEDIA_TYPE_MANIFEST, "digest": env.image.digest, "size": manifest.1.len(),
             "platform": {"architecture": host.architecture, "os": "linux"}},
        ],
    }))?;
    let nested_digest = Digest::of(&nested);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": oci::MEDIA_TYPE_INDEX, "digest": nested_digest, "size": nested.len(),
                       "annotations": {oci::ANNOTATION_REF_NAME: "multi:v1"}}],
    }))?;
    let nested_name = format!("blobs/sha256/{}", nested_digest.hex());
    let oci_tar = env.root.join("multi.tar");
    write_tar(
        &oci_tar,
        &[
            (&manifest.0, &manifest.1),
            (&config.0, &config.1),
            (&layer.0, &layer.1),
            (&nested_name, &nested),
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            ("index.json", &index),
        ],
    )?;
    let store = env.fresh_store("multi")?;
    let loaded = store.load(&oci_tar)?;
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].image.digest, env.image.digest);
    assert_eq!(store.resolve("multi:v1")?.digest, env.image.digest);

    // A legacy-style Docker archive whose layer file is gzip-compressed and whose config is
    // `<hex>.json`: the layer keeps its compressed digest, the diff id is computed.
    let docker_manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("{}.json", env.image.config_digest.hex()),
        "RepoTags": ["gz:v1"],
        "Layers": ["abc/layer.tar"],
    }]))?;
    let docker_tar = env.root.join("gz.tar");
    let config_name = format!("{}.json", env.image.config_digest.hex());
    write_tar(
        &docker_tar,
        &[(&config_name, &config.1), ("abc/layer.tar", &layer.1), ("manifest.json", &docker_manifest)],
    )?;
    let store = env.fresh_store("gz")?;
    store.load(&docker_tar)?;
    let image = store.resolve("gz:v1")?;
    assert_eq!(image.config_digest, env.image.config_digest);
    assert_eq!(image.layers(), env.image.layers());
    // Same config, same layer descriptors: the manifest put_image wrote is the same too.
    assert_eq!(image.digest, env.image.digest);
    Ok(())
}

#[test]
fn multi_member_gzip_and_zstd_layers_save_in_the_docker_format() -> TestResult {
    let env = env()?;
    let tar = rootfs_tar()?;
    let (head, tail) = tar.split_at(512);
    // Two gzip members, as parallel compressors write them.
    let mut blob = Vec::new();
    for part in [head, tail] {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(part)?;
        blob.extend(gz.finish()?);
    }
    let zst = zstd::encode_all(&tar[..], 3)?;
    for (data, media_type) in [(blob, oci::MEDIA_TYPE_LAYER_GZIP), (zst, oci::MEDIA_TYPE_LAYER_ZSTD)] {
        let layer = Layer {
            digest: env.store.write_blob(&data)?,
            diff_id: Digest::of(&tar),
            size: data.len() as u64,
            media_type: media_type.to_string(),
        };
        let image = env.store.put_image(&env.image.config, &[layer])?;
        let out = env.root.join("members.tar");
        env.store.save(&[(Some("members:1".parse()?), image)], ArchiveFormat::Docker, &out)?;
        let files = tar_entries(&out)?;
        assert_eq!(
            files.get(&format!("blobs/sha256/{}", Digest::of(&tar).hex())),
            Some(&tar),
            "{media_type}"
        );
        let store = env.fresh_store(&format!("members-{}", media_type.len()))?;
        let loaded = store.load(&out)?;
        assert_eq!(loaded[0].image.config.rootfs.diff_ids, vec![Digest::of(&tar)]);
    }
    Ok(())
}
