//! The image commands as a user sees them: `images` (formats, filters), `tag`, `rmi`,
//! `inspect`, `history`, `image prune`, `system df`, `import --change`, `build --output`.

use std::fs;
use std::path::Path;
use std::process::Command;

use test_support::{TestStore, context};

fn store() -> TestStore {
    let s = TestStore::new(env!("CARGO_BIN_EXE_rbuild"));
    s.import_busybox();
    s
}

/// Builds `tag` from a Dockerfile that removes `/etc/group`, adds `/hi` and `/app.txt`;
/// returns the context (kept alive by the caller) and the build's image digest.
fn build(s: &TestStore, extra: &[&str], marker: &str) -> (tempfile::TempDir, String) {
    let ctx = context(&[
        (
            "Dockerfile",
            &format!(
                "FROM busybox\nRUN echo {marker} > /hi && rm /etc/group\nCOPY app.txt /app.txt\n\
                 CMD [\"cat\", \"/hi\"]\n"
            ),
        ),
        ("app.txt", "app\n"),
    ]);
    let mut args = vec!["build", "-q"];
    args.extend_from_slice(extra);
    args.push(ctx.path().to_str().unwrap());
    let digest = s.ok(&args).trim().to_string();
    (ctx, digest)
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

/// The cells of a table line (columns are separated by at least 3 spaces, as docker's are).
fn cells(line: &str) -> Vec<&str> {
    line.split("   ").map(str::trim).filter(|c| !c.is_empty()).collect()
}

#[test]
fn images_lists_in_docker_columns_and_formats() {
    let s = store();
    let (_c, digest) = build(&s, &["-t", "app:1"], "one");
    let id = &digest[7..19];

    let out = s.ok(&["images"]);
    let l = lines(&out);
    assert_eq!(l.len(), 3, "{out}");
    // Docker's tabwriter layout: at least 10 columns a cell, 3 spaces of padding.
    assert!(l[0].starts_with("REPOSITORY   TAG       IMAGE ID       CREATED   "), "{out}");
    assert_eq!(cells(l[0]), ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
    assert!(l[1].starts_with(&format!("app          1         {id}   ")), "{out}");
    // Columns line up under their headers.
    assert_eq!(l[0].find("SIZE"), l[1].rfind("   ").map(|i| i + 3), "{out}");
    assert!(l[1].contains(" ago ") && l[1].ends_with("MB"), "{out}");
    assert!(l[2].starts_with("busybox      latest    "), "newest first: {out}");

    assert_eq!(s.ok(&["images", "-q", "app"]), format!("{id}\n"));
    assert_eq!(s.ok(&["images", "-q", "--no-trunc", "app:1"]), format!("{digest}\n"));
    assert_eq!(s.ok(&["images", "-q", "app:2"]), "");
    assert_eq!(s.ok(&["images", "-q", "app:*"]), format!("{id}\n"));
    assert_eq!(s.ok(&["images", "-q", "docker.io/library/busybox"]).lines().count(), 1);

    let digests = s.ok(&["images", "--digests", "app"]);
    assert!(digests.starts_with("REPOSITORY   TAG       DIGEST "), "{digests}");
    assert!(digests.lines().nth(1).unwrap().contains(&digest), "{digests}");

    let names = s.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{ .ID }}"]);
    assert_eq!(lines(&names)[0], format!("app:1 {id}"), "{names}");
    let table = s.ok(&["images", "--format", "table {{.Repository}}\\t{{.Size}}", "busybox"]);
    let t = lines(&table);
    assert_eq!(t[0], "REPOSITORY   SIZE");
    assert!(t[1].starts_with("busybox      ") && t[1].ends_with("MB"), "{table}");

    let json = s.ok(&["images", "--format", "json"]);
    let rows: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["Repository"], "app");
    assert_eq!(rows[0]["Tag"], "1");
    assert_eq!(rows[0]["ID"], id);
    assert_eq!(rows[0]["Digest"], digest.as_str());
    assert!(rows[0]["CreatedSince"].as_str().unwrap().ends_with(" ago"));
    assert!(rows[0]["CreatedAt"].as_str().unwrap().ends_with(" +0000 UTC"));
    assert!(rows[0]["Size"].as_str().unwrap().ends_with("MB"));
    let same: serde_json::Value =
        serde_json::from_str(s.ok(&["images", "--format", "{{json .}}", "app"]).trim()).unwrap();
    assert_eq!(same["ID"], id);

    let e = s.fails(&["images", "--format", "{{.Nope}}"]);
    assert!(e.contains("{{.Nope}}") && e.contains(".Repository"), "{e}");
    assert_eq!(s.ok(&["image", "ls", "-q", "app"]), format!("{id}\n"));
}

#[test]
fn tag_rmi_and_dangling_images() {
    let s = store();
    let (_c, first) = build(&s, &["-t", "app:1"], "one");
    s.ok(&["tag", "app:1", "app:2"]);
    s.ok(&["tag", &first[7..19], "registry.local:5000/team/app"]);
    let ids = s.ok(&["images", "-q", "--no-trunc"]);
    assert_eq!(ids.lines().filter(|l| *l == first).count(), 3, "{ids}");

    // By ID, an image with several names needs -f.
    let e = s.fails(&["rmi", &first[7..19]]);
    assert!(e.contains("must be forced") && e.contains("multiple repositories"), "{e}");
    // A name goes alone while others are left.
    assert_eq!(s.ok(&["rmi", "app:2"]), "Untagged: app:2\n");
    assert_eq!(
        s.ok(&["image", "rm", "registry.local:5000/team/app"]),
        "Untagged: registry.local:5000/team/app:latest\n"
    );
    // The last name: the image goes too.
    assert_eq!(s.ok(&["rmi", "app:1"]), format!("Untagged: app:1\nDeleted: {first}\n"));
    assert!(!s.ok(&["images"]).contains("app"));

    // A tag moved to a new build leaves the old image dangling, as docker does.
    let (_c1, one) = build(&s, &["-t", "app:1"], "one");
    let (_c2, two) = build(&s, &["-t", "app:1"], "two");
    assert_ne!(one, two);
    let out = s.ok(&["images"]);
    assert!(
        out.lines().any(|l| l.starts_with("<none>       <none>    ") && l.contains(&one[7..19])),
        "{out}"
    );
    assert_eq!(s.ok(&["run", "--rm", &one[7..19]]), "one\n");
    // A build without -t is kept dangling too.
    let (_c3, three) = build(&s, &[], "three");
    assert_eq!(s.ok(&["images", "-q"]).lines().count(), 4);

    let e = s.fails(&["rmi", "nothere:1"]);
    assert_eq!(e, "rbuild: error: No such image: nothere:1");
    // Several: each is tried, each failure reported, exit 1.
    let out = s.run(&["rmi", "nothere:1", &three, "nothere:2"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("Deleted: {three}\n"));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.starts_with("rbuild: error: ")).count(),
        2
    );

    // image prune: the dangling one; -a: everything.
    let out = s.ok(&["image", "prune", "-f"]);
    assert!(out.starts_with(&format!("Deleted Images:\ndeleted: {one}\n\nTotal reclaimed space: ")), "{out}");
    let left = s.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(left, "app:1\nbusybox:latest\n");
    assert_eq!(s.ok(&["image", "prune", "-f"]), "Total reclaimed space: 0B\n");
    let out = s.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("untagged: app:1\n") && out.contains(&format!("deleted: {two}\n")), "{out}");
    assert!(out.contains("untagged: busybox:latest\n"), "{out}");
    assert_eq!(s.ok(&["images", "-q"]), "");
    assert!(s.ok(&["system", "verify"]).contains("no problems"));
}

/// docker's rules for an image a container uses: `rmi` refuses it by name and by ID; `-f`
/// takes its names but keeps it, dangling, so the container still starts; `image prune -a`
/// keeps it while the container exists.
#[test]
fn rmi_of_an_image_a_container_uses() {
    let s = store();
    let (_c, digest) = build(&s, &["-t", "used:1"], "used");
    s.ok(&["create", "--name", "user", "--network", "none", "used:1"]);
    let e = s.fails(&["rmi", "used:1"]);
    assert_eq!(
        e,
        format!(
            "rbuild: error: conflict: unable to remove repository reference \"used:1\" (must force) - a \
             container is using its referenced image {}",
            &digest[7..19]
        )
    );
    let e = s.fails(&["rmi", &digest[7..19]]);
    assert!(e.ends_with("image is being used by a container"), "{e}");
    assert_eq!(s.ok(&["rmi", "-f", "used:1"]), "Untagged: used:1\n");
    assert!(s.ok(&["images", "-q", "--no-trunc"]).contains(&digest), "kept, dangling, for its container");
    s.ok(&["image", "prune", "-a", "-f"]);
    assert!(s.ok(&["images", "-q", "--no-trunc"]).contains(&digest), "prune keeps what a container uses");
    assert_eq!(s.ok(&["start", "-a", "user"]), "used\n");
    s.ok(&["rm", "user"]);
    assert_eq!(s.ok(&["rmi", &digest]), format!("Deleted: {digest}\n"));
}

#[test]
fn prune_without_force_asks_and_no_keeps_everything() {
    let s = store();
    let out = s.cmd().args(["image", "prune", "-a"]).stdin(std::process::Stdio::null()).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Are you sure you want to continue? [y/N]"));
    assert_eq!(s.ok(&["images", "-q"]).lines().count(), 1);
}

#[test]
fn inspect_and_history_show_config_layers_and_steps() {
    let s = store();
    let (_c, digest) = build(&s, &["-t", "app:1"], "one");
    let out = s.ok(&["inspect", "app:1"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let img = &v.as_array().unwrap()[0];
    assert_eq!(img["Id"], digest.as_str());
    assert_eq!(img["RepoTags"], serde_json::json!(["app:1"]));
    assert_eq!(img["RepoDigests"], serde_json::json!([format!("app@{digest}")]));
    assert_eq!(img["Config"]["Cmd"], serde_json::json!(["cat", "/hi"]));
    assert_eq!(img["Os"], "linux");
    assert!(img["Architecture"].is_string() && img["Created"].is_string());
    assert_eq!(img["RootFS"]["Type"], "layers");
    assert_eq!(img["RootFS"]["Layers"].as_array().unwrap().len(), 3);
    assert!(img["Size"].as_u64().unwrap() > 1_000_000);
    assert_eq!(img["Descriptor"]["digest"], digest.as_str());
    assert_eq!(img["Descriptor"]["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let two: serde_json::Value =
        serde_json::from_str(&s.ok(&["image", "inspect", "app:1", "busybox"])).unwrap();
    assert_eq!(two.as_array().unwrap().len(), 2);
    let e = s.fails(&["inspect", "nothere"]);
    // Containers first, then images, as `docker inspect`: hence docker's "object".
    assert_eq!(e, "rbuild: error: No such object: nothere");

    let out = s.ok(&["history", "app:1"]);
    let l = lines(&out);
    assert!(l[0].starts_with("IMAGE          CREATED "), "{out}");
    assert_eq!(cells(l[0]), ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]);
    // CMD, COPY, RUN, import: newest first, the image's ID on the first row.
    assert!(l.len() >= 4, "{out}");
    assert!(l[1].starts_with(&digest[7..19]), "{out}");
    assert!(l[2..].iter().all(|r| r.starts_with("<missing>")), "{out}");
    assert!(out.contains("COPY app.txt /app.txt"), "{out}");
    assert!(l.last().unwrap().contains("rbuild import"), "{out}");
    // CREATED BY is cut at 45 characters with an ellipsis; --no-trunc shows it all.
    assert!(out.contains("RUN /bin/sh -c echo one > /hi && rm /etc/gro…"), "{out}");
    let full = s.ok(&["history", "--no-trunc", "app:1"]);
    assert!(full.contains("echo one > /hi && rm /etc/group") && full.contains(&digest), "{full}");
    let q = s.ok(&["history", "-q", "app:1"]);
    assert_eq!(lines(&q)[0], &digest[7..19]);
    assert_eq!(q.lines().count(), l.len() - 1);
}

#[test]
fn system_df_counts_images_and_build_cache() {
    let s = store();
    let (_c, _) = build(&s, &["-t", "app:1"], "one");
    let out = s.ok(&["system", "df"]);
    let l = lines(&out);
    assert_eq!(l[0], "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE", "{out}");
    assert!(l[1].starts_with("Images          2         0         "), "{out}");
    assert!(l[1].ends_with("(100%)"), "{out}");
    assert_eq!(l[2], "Containers      0         0         0B        0B");
    assert_eq!(l[3], "Local Volumes   0         0         0B        0B");
    assert_eq!(cells(l[4])[0], "Build Cache");
    assert!(cells(l[4])[1].parse::<u32>().unwrap() >= 2, "{out}");

    // A stopped container that wrote 2000 bytes, and a volume it filled with 3000 and keeps.
    s.ok(&["volume", "create", "data"]);
    s.ok(&[
        "run",
        "--network",
        "none",
        "-v",
        "data:/data",
        "app:1",
        "sh",
        "-c",
        "head -c 2000 /dev/zero > /w; head -c 3000 /dev/zero > /data/v",
    ]);
    s.ok(&["volume", "create", "spare"]);
    let out = s.ok(&["system", "df"]);
    let l = lines(&out);
    assert_eq!(cells(l[1])[2], "1", "the container's image is in use: {out}");
    assert_eq!(cells(l[2]), ["Containers", "1", "0", "2kB", "2kB (100%)"], "{out}");
    assert_eq!(cells(l[3]), ["Local Volumes", "2", "1", "3kB", "0B (0%)"], "{out}");
}

#[test]
fn import_applies_changes() {
    let s = TestStore::new(env!("CARGO_BIN_EXE_rbuild"));
    let tar = s.path().join("rootfs.tar");
    test_support::write_busybox_rootfs_tar(&tar).unwrap();
    s.ok(&[
        "import",
        "-c",
        "CMD [\"sh\", \"-c\", \"echo $GREETING from $(pwd)\"]",
        "--change",
        "ENV GREETING=hello",
        "-c",
        "ENV WHO=${GREETING}-there SHELLISH='a b'",
        "-c",
        "WORKDIR /tmp",
        "-m",
        "base image",
        tar.to_str().unwrap(),
        "base:1",
    ]);
    assert_eq!(s.ok(&["run", "--rm", "base:1"]), "hello from /tmp\n");
    assert!(s.ok(&["history", "base:1"]).contains("base image"));
    // The changes go through the Dockerfile parser, as commit's do: variables expand, quotes
    // are removed (a hand-written reader once kept both literally).
    let env = &s.config("base:1")["config"]["Env"];
    assert_eq!(env, &serde_json::json!(["GREETING=hello", "WHO=hello-there", "SHELLISH=a b"]));
    let e = s.fails(&["import", "-c", "RUN true", tar.to_str().unwrap(), "bad:1"]);
    assert!(e.ends_with("run is not a valid change command"), "{e}");
    assert!(!s.ok(&["images"]).contains("bad"));
}

/// The files of a tar, as `path` -> (kind, content).
fn tar_files(path: &Path) -> std::collections::BTreeMap<String, (tar::EntryType, Vec<u8>)> {
    let mut out = std::collections::BTreeMap::new();
    let mut a = tar::Archive::new(fs::File::open(path).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let kind = e.header().entry_type();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut body).unwrap();
        out.insert(name, (kind, body));
    }
    out
}

#[test]
fn build_output_local_and_tar_hold_the_final_rootfs() {
    let s = store();
    let out_dir = tempfile::tempdir().unwrap();
    let local = out_dir.path().join("rootfs");
    // Something in the way: a symlink where the image has a directory is replaced, not followed.
    fs::create_dir(&local).unwrap();
    std::os::unix::fs::symlink(out_dir.path(), local.join("etc")).unwrap();
    let dest = format!("type=local,dest={}", local.display());
    let (_c, _) = build(&s, &["-t", "out:1", "-o", &dest], "local");
    assert_eq!(fs::read_to_string(local.join("hi")).unwrap(), "local\n");
    assert_eq!(fs::read_to_string(local.join("app.txt")).unwrap(), "app\n");
    assert!(fs::symlink_metadata(local.join("etc")).unwrap().is_dir());
    assert!(local.join("etc/passwd").is_file());
    assert!(!local.join("etc/group").exists(), "the whiteout of /etc/group is not applied");
    assert!(fs::symlink_metadata(local.join("bin/sh")).unwrap().file_type().is_symlink());
    assert!(!out_dir.path().join("passwd").exists(), "wrote through a symlink");
    // Without type=image, nothing is named.
    assert!(!s.ok(&["images"]).contains("out"));

    // `-o DIR` is type=local.
    let short = out_dir.path().join("short");
    let (_c, _) = build(&s, &["-o", short.to_str().unwrap()], "short");
    assert_eq!(fs::read_to_string(short.join("hi")).unwrap(), "short\n");

    let tar = out_dir.path().join("rootfs.tar");
    let (_c, _) = build(&s, &["-o", &format!("type=tar,dest={}", tar.display())], "tar");
    let files = tar_files(&tar);
    assert_eq!(files["hi"].1, b"tar\n");
    assert!(files.contains_key("etc/passwd") && !files.contains_key("etc/group"));
    assert!(files.keys().all(|k| !k.contains(".wh.")), "whiteouts in the rootfs tar");
    assert_eq!(files["bin/sh"].0, tar::EntryType::Symlink);
    assert_eq!(files["bin/busybox"].0, tar::EntryType::Regular);

    // To stdout, with `-`.
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN echo stdout > /hi\n")]);
    let bytes = s.cmd().args(["build", "-o", "-", ctx.path().to_str().unwrap()]).output().unwrap();
    assert!(bytes.status.success());
    let stdout_tar = out_dir.path().join("stdout.tar");
    fs::write(&stdout_tar, &bytes.stdout).unwrap();
    assert_eq!(tar_files(&stdout_tar)["hi"].1, b"stdout\n");
}

#[test]
fn build_output_archives_load_elsewhere_and_skopeo_reads_them() {
    let s = store();
    let dir = tempfile::tempdir().unwrap();
    let oci = dir.path().join("oci.tar");
    let docker = dir.path().join("docker.tar");
    let (_c, _) = build(
        &s,
        &[
            "-t",
            "arch:1",
            "-o",
            &format!("type=oci,dest={}", oci.display()),
            "-o",
            &format!("type=docker,dest={},name=other:2", docker.display()),
            "-o",
            "type=image",
        ],
        "archive",
    );
    assert!(s.ok(&["images"]).contains("arch"), "type=image names the image");
    for (archive, names) in [(&oci, vec!["arch:1"]), (&docker, vec!["arch:1", "other:2"])] {
        let fresh = TestStore::new(env!("CARGO_BIN_EXE_rbuild"));
        let out = fresh.ok(&["load", "-i", archive.to_str().unwrap()]);
        for n in &names {
            assert!(out.contains(&format!("Loaded image: {n}\n")), "{out}");
            assert_eq!(fresh.ok(&["run", "--rm", n]), "archive\n");
        }
    }
    if test_support::installed("skopeo") {
        let inspect = |src: String| -> serde_json::Value {
            let out = Command::new("skopeo").args(["inspect", &src]).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            serde_json::from_slice(&out.stdout).unwrap()
        };
        let v = inspect(format!("oci-archive:{}", oci.display()));
        assert_eq!(v["Layers"].as_array().unwrap().len(), 3);
        let v = inspect(format!("docker-archive:{}:other:2", docker.display()));
        assert_eq!(v["Layers"].as_array().unwrap().len(), 3);
    }
}

#[test]
fn bad_outputs_fail_before_building_with_one_line() {
    let s = store();
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN echo ran\n")]);
    let c = ctx.path().to_str().unwrap();
    let e = s.fails(&["build", "-o", "type=foo,dest=x", c]);
    assert_eq!(
        e,
        "rbuild: error: --output \"type=foo,dest=x\": unknown type \"foo\" (image, registry, oci, docker, local, tar)"
    );
    let e = s.fails(&["build", "-o", "type=local", c]);
    assert_eq!(e, "rbuild: error: --output \"type=local\": type=local needs dest=");
    let e = s.fails(&["build", "-o", "type=tar,dest=", c]);
    assert!(e.contains("type=tar needs dest="), "{e}");
    let e = s.fails(&["build", "-o", "dest=x", c]);
    assert!(e.contains("type= is required"), "{e}");
    let e = s.fails(&["build", "-o", "type=oci,dest=x,bogus=1", c]);
    assert!(e.contains("unknown key \"bogus\""), "{e}");
    // Nothing ran, nothing was written.
    assert_eq!(
        fs::read_dir(s.path().join("cache"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json"))
            .count(),
        0
    );
    // A destination that cannot be written: one line, no half file.
    let e = s.fails(&["build", "-o", "type=tar,dest=/nonexistent/dir/x.tar", c]);
    assert!(e.contains("/nonexistent/dir/x.tar"), "{e}");
}
