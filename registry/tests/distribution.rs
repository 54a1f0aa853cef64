//! Pull and push against a real registry (Debian's docker-registry on 127.0.0.1), checked
//! with skopeo both ways.

mod common;

use std::process::Command;

use cache::{Digest, ImageRef};
use common::*;
use registry::{Error, Outcome};
use test_support::registry::TestRegistry;

fn r(s: &str) -> ImageRef {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn push_then_pull_into_an_empty_store_gives_the_same_image() {
    let reg = TestRegistry::start();
    let (src, image) = busybox_store();
    let (client, events) = client();
    let target = r(&format!("{}/test/busybox:1", reg.host()));

    let pushed = client.push(&src.store, &image, &target).expect("push");
    assert_eq!(pushed, image.digest);
    let outcomes = events.outcomes();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert!(outcomes.iter().all(|(_, o)| *o == Outcome::Transferred), "{outcomes:?}");

    // Pushing again moves nothing: every blob is already there.
    events.clear();
    assert_eq!(client.push(&src.store, &image, &target).expect("second push"), image.digest);
    assert!(events.outcomes().iter().all(|(_, o)| *o == Outcome::AlreadyPresent));

    // Another repository of the same registry gets its blobs by cross-repository mount.
    events.clear();
    let other = r(&format!("{}/other/bb:2", reg.host()));
    assert_eq!(client.push(&src.store, &image, &other).expect("push to other repo"), image.digest);
    let outcomes = events.outcomes();
    assert_eq!(outcomes.len(), 2);
    for (_, o) in &outcomes {
        assert_eq!(*o, Outcome::Mounted { from: format!("{}/test/busybox", reg.host()) });
    }

    let dst = empty_store();
    events.clear();
    let pulled = client.pull(&dst.store, &target, None).expect("pull");
    assert_eq!(pulled.digest, image.digest);
    assert_eq!(pulled.config_digest, image.config_digest);
    assert_eq!(pulled.layers(), image.layers());
    for layer in image.layers() {
        assert_eq!(dst.store.read_blob(&layer.digest).unwrap(), src.store.read_blob(&layer.digest).unwrap());
    }
    assert_eq!(dst.store.resolve(&target.to_string()).expect("tagged").digest, image.digest);
    // The pull leaves the image ready to run: every layer is unpacked, with the files of the
    // source image.
    for layer in image.layers() {
        let unpacked = dst.store.root().join("layers").join(layer.diff_id.hex());
        assert!(unpacked.is_dir(), "{} not unpacked by the pull", layer.diff_id);
        let names = |dir: &std::path::Path| {
            let mut n: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
            n.sort();
            n
        };
        let theirs = names(&src.store.layer_dir(&layer).unwrap());
        assert!(!theirs.is_empty());
        assert_eq!(names(&unpacked), theirs);
    }
    assert!(events.outcomes().iter().all(|(_, o)| *o == Outcome::Transferred));
    assert!(events.0.lock().unwrap().iter().any(|e| matches!(e, registry::Progress::Bytes { .. })));

    // Pulling again fetches no blob.
    events.clear();
    client.pull(&dst.store, &target, None).expect("second pull");
    assert!(events.outcomes().iter().all(|(_, o)| *o == Outcome::AlreadyPresent));

    // By digest too.
    let by_digest = r(&format!("{}/test/busybox@{}", reg.host(), image.digest));
    assert_eq!(
        client.pull(&empty_store().store, &by_digest, None).expect("pull by digest").digest,
        image.digest
    );
}

#[test]
fn skopeo_reads_what_we_push_and_we_pull_what_skopeo_pushes() {
    let reg = TestRegistry::start();
    let (src, image) = busybox_store();
    let (client, _) = client();
    let ours = format!("{}/ours/busybox:v1", reg.host());
    client.push(&src.store, &image, &r(&ours)).expect("push");

    let out =
        run(Command::new("skopeo").args(["inspect", "--tls-verify=false", &format!("docker://{ours}")]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("skopeo inspect JSON");
    assert_eq!(v["Digest"], image.digest.to_string());
    assert_eq!(v["Layers"][0], image.layers()[0].digest.to_string());
    assert_eq!(v["Architecture"], "amd64");

    // skopeo copies it out byte for byte: the layer file equals our blob.
    let dir = src.dir.path().join("skopeo-dir");
    run(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{ours}"),
        &format!("dir:{}", dir.display()),
    ]));
    let layer = &image.layers()[0];
    assert_eq!(
        std::fs::read(dir.join(layer.digest.hex())).unwrap(),
        src.store.read_blob(&layer.digest).unwrap()
    );

    // And the other way: an OCI archive `rbuild save` writes, put into the registry by skopeo
    // as it is and converted to Docker's schema 2, is pulled by us.
    let archive = src.dir.path().join("busybox-oci.tar");
    src.store
        .save(&[(Some(r("busybox:latest")), image.clone())], cache::ArchiveFormat::Oci, &archive)
        .expect("save OCI archive");
    for (format, tag) in [("oci", "oci"), ("v2s2", "docker")] {
        let theirs = format!("{}/skopeo/busybox:{tag}", reg.host());
        run(Command::new("skopeo").args([
            "copy",
            "--dest-tls-verify=false",
            "--format",
            format,
            &format!("oci-archive:{}", archive.display()),
            &format!("docker://{theirs}"),
        ]));
        let dst = empty_store();
        let pulled =
            client.pull(&dst.store, &r(&theirs), None).unwrap_or_else(|e| panic!("pull {theirs}: {e}"));
        let inspect = run(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{theirs}"),
        ]));
        let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
        assert_eq!(v["Digest"], pulled.digest.to_string(), "{format}");
        assert_eq!(pulled.config.rootfs.diff_ids, image.config.rootfs.diff_ids, "{format}");
        assert_eq!(pulled.layers()[0].digest, image.layers()[0].digest, "{format}");
        if format == "oci" {
            assert_eq!(pulled.digest, image.digest, "skopeo kept the OCI manifest as it was");
        } else {
            assert_eq!(
                pulled.manifest.media_type.as_deref(),
                Some(cache::oci::MEDIA_TYPE_DOCKER_MANIFEST),
                "skopeo wrote Docker's schema 2"
            );
            // A Docker-schema image we pulled pushes back as it is.
            let again = format!("{}/again/busybox:docker", reg.host());
            assert_eq!(
                client.push(&dst.store, &pulled, &r(&again)).expect("push docker manifest"),
                pulled.digest
            );
        }
    }
}

#[test]
fn auth_registry_needs_a_login() {
    let reg = TestRegistry::start_with_htpasswd("alice", "s3cret");
    let (src, image) = busybox_store();
    let auth = src.dir.path().join("auth.json");
    let (client, _) = client_with(&auth);
    let target = r(&format!("{}/private/busybox:1", reg.host()));

    let err = client.push(&src.store, &image, &target).expect_err("push without credentials");

    eprintln!("{err}");
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("unauthorized: "), "{msg}");
    assert!(msg.ends_with(&format!("(rbuild login {})", reg.host())), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");

    let err = client.login(&reg.host(), "alice", "wrong").expect_err("wrong password");

    eprintln!("{err}");
    assert!(err.to_string().contains("refused user 'alice'"), "{err}");
    assert!(!auth.exists(), "a refused login stores nothing");

    client.login(&reg.host(), "alice", "s3cret").expect("login");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&auth).unwrap()).unwrap();
    assert!(saved["auths"][reg.host()]["auth"].is_string(), "{saved}");

    // A fresh client (no cached auth) reads the stored login.
    let (client, _) = client_with(&auth);
    assert_eq!(client.push(&src.store, &image, &target).expect("push with login"), image.digest);
    let dst = empty_store();
    assert_eq!(client.pull(&dst.store, &target, None).expect("pull with login").digest, image.digest);

    let (anonymous, _) = common::client();
    let err = anonymous.pull(&empty_store().store, &target, None).expect_err("anonymous pull");
    eprintln!("{err}");
    assert!(err.to_string().starts_with("unauthorized: "), "{err}");

    assert!(client.logout(&reg.host()).unwrap());
    let (client, _) = client_with(&auth);
    assert!(matches!(client.pull(&empty_store().store, &target, None), Err(Error::Unauthorized { .. })));
}

#[test]
fn missing_manifest_and_registry_down_are_one_line_errors() {
    let reg = TestRegistry::start();
    let (client, _) = client();
    let t = empty_store();
    let missing = format!("{}/foo:bar", reg.host());
    let err = client.pull(&t.store, &r(&missing), None).expect_err("404");
    eprintln!("{err}");
    assert_eq!(err.to_string(), format!("manifest unknown: {missing}"));

    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let start = std::time::Instant::now();
    let err = client.pull(&t.store, &r(&format!("127.0.0.1:{port}/foo:bar")), None).expect_err("down");
    eprintln!("{err}");
    assert_eq!(err.to_string(), format!("cannot reach 127.0.0.1:{port}: connection refused"));
    assert!(start.elapsed() < std::time::Duration::from_secs(5), "retries back off briefly");
    assert!(blob_names(&t.store).is_empty());
    assert!(t.store.tags().unwrap().is_empty());
}

#[test]
fn a_corrupted_or_truncated_blob_is_rejected_and_not_stored() {
    let reg = TestRegistry::start();
    let (src, image) = busybox_store();
    let (client, _) = client();
    let target = r(&format!("{}/bad/busybox:1", reg.host()));
    client.push(&src.store, &image, &target).expect("push");
    let layer = image.layers()[0].digest.clone();
    let data = reg.blob_data_path(layer.as_str());
    let original = std::fs::read(&data).expect("registry blob file");

    // Same size, one byte flipped.
    let mut bad = original.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    write_file(&data, &bad);
    let dst = empty_store();
    let before = blob_names(&dst.store);
    let err = client.pull(&dst.store, &target, None).expect_err("corrupted blob");
    eprintln!("{err}");
    assert!(matches!(&err, Error::DigestMismatch { digest, .. } if *digest == layer), "{err:?}");
    assert!(err.to_string().contains(layer.as_str()), "{err}");
    assert_no_trace(&dst.store, &before, &layer, &image.digest);

    // Cut short.
    write_file(&data, &original[..original.len() / 2]);
    let err = client.pull(&dst.store, &target, None).expect_err("truncated blob");
    eprintln!("{err}");
    assert!(
        matches!(&err, Error::Truncated { digest, .. } | Error::DigestMismatch { digest, .. } if *digest == layer),
        "{err:?}"
    );
    assert!(err.to_string().contains(layer.as_str()), "{err}");
    assert_no_trace(&dst.store, &before, &layer, &image.digest);

    // Repaired, the pull works.
    write_file(&data, &original);
    assert_eq!(client.pull(&dst.store, &target, None).expect("pull").digest, image.digest);
}

/// Neither the bad layer nor the manifest is stored, no tag was made and `tmp/` is empty.
/// (Blobs that did verify, like the config, may stay: a retry then need not fetch them, and gc
/// sweeps them if the image never arrives.)
fn assert_no_trace(store: &cache::Store, before: &[String], layer: &Digest, manifest: &Digest) {
    let now = blob_names(store);
    assert!(!now.contains(&layer.hex().to_string()));
    assert!(!now.contains(&manifest.hex().to_string()));
    assert!(now.iter().all(|n| before.contains(n) || n != layer.hex()));
    assert!(store.tags().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}
