//! Images out and back in: OCI and Docker archives checked by skopeo and umoci, and `load`.

use std::path::Path;
use std::process::Command;

use test_support::{TestStore, context};

fn store() -> TestStore {
    let s = TestStore::new(env!("CARGO_BIN_EXE_rbuild"));
    s.import_busybox();
    s
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An image whose RUN deletes a base file and empties a base directory, and adds files.
fn build_changed_image(s: &TestStore) {
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY app.txt /app/app.txt\nRUN rm /etc/group && rm -rf /home && mkdir /home && touch /home/new && echo ran > /ran\n",
        ),
        ("app.txt", "app\n"),
    ]);
    s.ok(&["build", "-t", "changed:v1", ctx.path().to_str().unwrap()]);
}

#[test]
fn oci_archive_is_accepted_by_skopeo_and_umoci_with_whiteouts_applied() {
    if !test_support::installed("skopeo") || !test_support::installed("umoci") {
        return;
    }
    let s = store();
    build_changed_image(&s);
    let tar = s.path().join("x.tar");
    s.ok(&["save", "--format", "oci", "-o", tar.to_str().unwrap(), "changed:v1"]);
    let inspect = run_ok(Command::new("skopeo").args(["inspect", &format!("oci-archive:{}", tar.display())]));
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 3, "{inspect}");

    let layout = tempfile::tempdir().unwrap();
    run_ok(Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(layout.path()));
    let bundle = tempfile::tempdir().unwrap();
    let bundle_dir = bundle.path().join("b");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image", &format!("{}:v1", layout.path().display())])
            .arg(&bundle_dir),
    );
    let rootfs = bundle_dir.join("rootfs");
    assert_eq!(std::fs::read_to_string(rootfs.join("app/app.txt")).unwrap(), "app\n");
    assert_eq!(std::fs::read_to_string(rootfs.join("ran")).unwrap(), "ran\n");
    assert!(!rootfs.join("etc/group").exists(), "whiteout of /etc/group not applied");
    assert!(rootfs.join("etc/passwd").exists());
    let home: Vec<_> =
        std::fs::read_dir(rootfs.join("home")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(home, vec![std::ffi::OsString::from("new")], "opaque /home not applied");
    assert!(rootfs.join("bin/busybox").is_file());
}

#[test]
fn docker_archive_is_accepted_by_skopeo_and_both_formats_load_back() {
    if !test_support::installed("skopeo") {
        return;
    }
    let s = store();
    build_changed_image(&s);
    let docker = s.path().join("d.tar");
    let oci = s.path().join("o.tar");
    s.ok(&["save", "-o", docker.to_str().unwrap(), "changed:v1"]);
    s.ok(&["save", "--format", "oci", "-o", oci.to_str().unwrap(), "changed:v1"]);
    run_ok(Command::new("skopeo").args(["inspect", &format!("docker-archive:{}", docker.display())]));

    for archive in [&docker, &oci] {
        let fresh = TestStore::new(env!("CARGO_BIN_EXE_rbuild"));
        let out = fresh.ok(&["load", "-i", archive.to_str().unwrap()]);
        assert_eq!(out, "Loaded image: changed:v1\n");
        assert_eq!(fresh.ok(&["run", "--rm", "changed:v1", "cat", "/ran", "/app/app.txt"]), "ran\napp\n");
        let gone = fresh.run(&["run", "--rm", "changed:v1", "cat", "/etc/group"]);
        assert_eq!(gone.status.code(), Some(1), "deleted file is back after load of {}", archive.display());
        assert!(fresh.ok(&["images"]).contains("changed"));
    }
}

#[test]
fn import_and_images_list_the_base_image() {
    let s = store();
    let out = s.ok(&["images"]);
    assert!(out.lines().next().unwrap().starts_with("REPOSITORY"));
    assert!(out.lines().any(|l| l.starts_with("busybox ") && l.contains(" latest ")), "{out}");
    let ids = s.ok(&["images", "-q"]);
    assert_eq!(ids.lines().count(), 1);
    // The same rootfs imported again under another tag shares the layer blob.
    let again = s.path().join("again.tar");
    test_support::write_busybox_rootfs_tar(&again).unwrap();
    s.ok(&["import", again.to_str().unwrap(), "busybox:again"]);
    let images = s.ok(&["images", "--no-trunc"]);
    assert_eq!(images.lines().count(), 3, "{images}");
    let blobs = std::fs::read_dir(s.path().join("blobs/sha256")).unwrap().count();
    // One layer, two configs and two manifests (their `created` times differ).
    assert_eq!(blobs, 5);
    let _ = Path::new("");
}

/// Builds `name` from busybox with `/who` holding `marker`.
fn build_marked(s: &TestStore, name: &str, marker: &str) -> tempfile::TempDir {
    let ctx = context(&[("Dockerfile", &format!("FROM busybox\nRUN echo {marker} > /who\n"))]);
    s.ok(&["build", "-q", "-t", name, ctx.path().to_str().unwrap()]);
    ctx
}

#[test]
fn several_images_in_one_archive_both_formats() {
    let s = store();
    let _a = build_marked(&s, "multi/a:1", "a");
    let _b = build_marked(&s, "multi/b:2", "b");
    s.ok(&["tag", "multi/a:1", "multi/a:latest"]);
    for format in ["docker", "oci"] {
        let tar = s.path().join(format!("multi-{format}.tar"));
        let t = tar.to_str().unwrap();
        s.ok(&["save", "--format", format, "-o", t, "multi/a:1", "multi/b:2", "multi/a:latest", "busybox"]);
        let fresh = TestStore::new(env!("CARGO_BIN_EXE_rbuild"));
        let out = fresh.ok(&["load", "-i", t]);
        for name in ["multi/a:1", "multi/b:2", "multi/a:latest", "busybox:latest"] {
            assert!(out.contains(&format!("Loaded image: {name}\n")), "{format}: {out}");
        }
        assert_eq!(fresh.ok(&["run", "--rm", "multi/a:1", "cat", "/who"]), "a\n");
        assert_eq!(fresh.ok(&["run", "--rm", "multi/b:2", "cat", "/who"]), "b\n");
        let ids = fresh.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
        let id_of =
            |n: &str| ids.lines().find(|l| l.starts_with(&format!("{n} "))).unwrap().split(' ').nth(1);
        assert_eq!(id_of("multi/a:1"), id_of("multi/a:latest"), "{ids}");
        assert_ne!(id_of("multi/a:1"), id_of("multi/b:2"), "{ids}");
        assert_eq!(ids.lines().count(), 4, "{ids}");
        // The base layer is shared: stored once in the archive.
        let mut names: Vec<String> = tar::Archive::new(std::fs::File::open(&tar).unwrap())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "{format}: an entry is written twice");

        if test_support::installed("skopeo") {
            // skopeo picks each image out of the archive by name.
            let pick = |image: &str| {
                let src = match format {
                    "docker" => format!("docker-archive:{t}:{image}"),
                    // Our OCI index names each manifest by its tag (ref.name), as skopeo does.
                    _ => format!("oci-archive:{t}:{}", image.rsplit_once(':').unwrap().1),
                };
                run_ok(Command::new("skopeo").args(["inspect", "--config", &src]))
            };
            let a: serde_json::Value = serde_json::from_str(&pick("multi/a:1")).unwrap();
            let b: serde_json::Value = serde_json::from_str(&pick("multi/b:2")).unwrap();
            assert_ne!(a["rootfs"]["diff_ids"], b["rootfs"]["diff_ids"]);
        }
    }
}

#[test]
fn archives_made_by_skopeo_load_and_run() {
    if !test_support::installed("skopeo") {
        return;
    }
    let s = store();
    let _ctx = build_marked(&s, "src:1", "from skopeo");
    let ours = s.path().join("ours.tar");
    s.ok(&["save", "--format", "oci", "-o", ours.to_str().unwrap(), "src:1"]);
    let docker = s.path().join("skopeo-docker.tar");
    let oci = s.path().join("skopeo-oci.tar");
    run_ok(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &format!("oci-archive:{}", ours.display()),
        &format!("docker-archive:{}:made/by:skopeo", docker.display()),
    ]));
    run_ok(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &format!("docker-archive:{}", docker.display()),
        &format!("oci-archive:{}:oci-ref", oci.display()),
    ]));
    let fresh = TestStore::new(env!("CARGO_BIN_EXE_rbuild"));
    assert_eq!(fresh.ok(&["load", "-i", docker.to_str().unwrap()]), "Loaded image: made/by:skopeo\n");
    assert_eq!(fresh.ok(&["run", "--rm", "made/by:skopeo", "cat", "/who"]), "from skopeo\n");
    // A bare ref.name (no repository) is not an image name: the image loads by ID.
    let out = fresh.ok(&["load", "-i", oci.to_str().unwrap()]);
    let id = out.strip_prefix("Loaded image ID: ").unwrap_or_else(|| panic!("{out}")).trim().to_string();
    assert_eq!(fresh.ok(&["run", "--rm", &id, "cat", "/who"]), "from skopeo\n");
    let listed = fresh.ok(&["images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert!(listed.contains(&format!("<none>:<none> {id}\n")), "{listed}");
    let inspect: serde_json::Value = serde_json::from_str(&fresh.ok(&["inspect", "made/by:skopeo"])).unwrap();
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 2);
}
