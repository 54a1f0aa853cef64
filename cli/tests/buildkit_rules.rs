//! BuildKit's results on Dockerfiles nobody here wrote (issue 14's rules), each checked the
//! way a user would: the image's files and config. Where the differential corpus's old oracle
//! (Docker 20.10's BuildKit) and today's BuildKit differ, today's wins; solver/README.md
//! ("BuildKit's rules") names the BuildKit source of each.

use test_support::{Httpd, TestStore, context};

fn store() -> TestStore {
    let s = TestStore::new(env!("CARGO_BIN_EXE_rbuild"));
    s.import_busybox();
    s
}

fn sh(s: &TestStore, image: &str, script: &str) -> String {
    s.ok(&["run", "--rm", "--network", "none", image, "sh", "-c", script])
}

#[test]
fn scratch_stage_has_workdir_root_and_path() {
    let s = store();
    let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "x")]);
    s.ok(&["build", "-t", "scratch:1", ctx.path().to_str().unwrap()]);
    let c = s.config("scratch:1");
    assert_eq!(c["config"]["WorkingDir"], "/");
    assert_eq!(c["config"]["Env"][0], "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
}

/// `--chown=${EMPTY}:${EMPTY}` is `--chown=:`, an explicit chown to 0:0; an empty `--chown=`
/// is no chown (a stage's owners stay).
#[test]
fn copy_chown_of_empty_values() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox AS owned\nRUN touch /f && chown 1000:1000 /f\n\
         FROM busybox\nARG EMPTY\n\
         COPY --from=owned --chown=${EMPTY}:${EMPTY} /f /explicit\n\
         COPY --from=owned --chown=${EMPTY} /f /kept\n",
    )]);
    s.ok(&["build", "-t", "chown:1", ctx.path().to_str().unwrap()]);
    assert_eq!(sh(&s, "chown:1", "stat -c '%u:%g' /explicit /kept"), "0:0\n1000:1000\n");

    // `root` is 0 without /etc/passwd (BuildKit's `parseUID`): on scratch, and with --link.
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox AS owned\nRUN touch /f && chown 1000:1000 /f\n\
             FROM scratch AS bare\nCOPY --from=owned --chown=root:root /f /f\n\
             FROM busybox\nCOPY --link --from=owned --chown=root /f /linked\nCOPY --from=bare /f /bare\n",
    )]);
    s.ok(&["build", "-t", "chown:2", ctx.path().to_str().unwrap()]);
    assert_eq!(sh(&s, "chown:2", "stat -c '%u:%g' /linked /bare"), "0:0\n0:0\n");
}

/// Several sources onto a destination that is not a directory: no error, each copied onto it
/// in turn, the last (in lexical order for a pattern) wins; onto a directory they go inside.
#[test]
fn several_sources_onto_a_non_directory_destination() {
    let s = store();
    let ctx = context(&[
        ("Dockerfile", "FROM busybox\nCOPY *.txt /out\nCOPY a.txt b.txt /pair\nCOPY *.txt /tmp\n"),
        ("a.txt", "a\n"),
        ("b.txt", "b\n"),
    ]);
    s.ok(&["build", "-t", "several:1", ctx.path().to_str().unwrap()]);
    assert_eq!(sh(&s, "several:1", "cat /out; cat /pair; cat /tmp/a.txt /tmp/b.txt"), "b\nb\na\nb\n");
}

/// A pattern that matches nothing copies nothing and creates nothing; a missing directory
/// under the pattern is still an error.
#[test]
fn a_pattern_that_matches_nothing_is_no_error() {
    let s = store();
    let ctx = context(&[
        ("Dockerfile", "FROM busybox\nCOPY nomatch* /nodst/\nCOPY f nomatch* /dst/\n"),
        ("f", "x"),
    ]);
    s.ok(&["build", "-t", "empty:1", ctx.path().to_str().unwrap()]);
    assert_eq!(sh(&s, "empty:1", "test -e /nodst || echo absent; cat /dst/f"), "absent\nx");
    let ctx = context(&[("Dockerfile", "FROM busybox\nCOPY nodir/*.txt /dst/\n")]);
    let line = s.fails(&["build", ctx.path().to_str().unwrap()]);
    assert!(line.contains("\"nodir/*.txt\": not found in the build context"), "{line}");
}

/// `RUN` alone is `sh -c ""`: it succeeds and changes nothing.
#[test]
fn an_empty_run_succeeds() {
    let s = store();
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN\nRUN echo after > /after\n")]);
    s.ok(&["build", "-t", "emptyrun:1", ctx.path().to_str().unwrap()]);
    assert_eq!(sh(&s, "emptyrun:1", "cat /after"), "after\n");
    let history = s.config("emptyrun:1")["history"].clone();
    assert_eq!(history[1]["created_by"], "RUN /bin/sh -c ", "{history}");
}

/// WORKDIR through a symlink whose target does not exist yet creates the target.
#[test]
fn workdir_through_a_dangling_symlink_creates_its_target() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN mkdir /a && ln -s /target /a/link\nWORKDIR /a/link/sub\nRUN pwd -P > /pwd\n",
    )]);
    s.ok(&["build", "-t", "wd:1", ctx.path().to_str().unwrap()]);
    assert_eq!(
        sh(&s, "wd:1", "cat /pwd; readlink /a/link; test -d /target/sub && echo dir"),
        "/target/sub\n/target\ndir\n"
    );
    assert_eq!(s.config("wd:1")["config"]["WorkingDir"], "/a/link/sub");
    // The link itself as the WORKDIR, its target's parents missing (buildah's workdir-symlink).
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox
RUN ln -sf /var/lib/tempest /tempest
WORKDIR /tempest
RUN pwd -P > /pwd
WORKDIR /tempest/lowerdir
",
    )]);
    s.ok(&["build", "-t", "wd:2", ctx.path().to_str().unwrap()]);
    assert_eq!(
        sh(&s, "wd:2", "cat /pwd; test -d /var/lib/tempest/lowerdir && echo dir"),
        "/var/lib/tempest\ndir\n"
    );
}

/// `.dockerignore` with `subdir` then `!*/sub1*`: today's fsutil walks into the excluded
/// directory (the exception is a pattern, not a prefix) and `subdir/sub1.txt` is in.
#[test]
fn dockerignore_reinclude_through_a_pattern() {
    let s = store();
    let ctx = context(&[
        ("Dockerfile", "FROM busybox\nCOPY . /ctx/\n"),
        (".dockerignore", "subdir\n!*/sub1*\n"),
        ("subdir/sub1.txt", "1"),
        ("subdir/sub2.txt", "2"),
    ]);
    s.ok(&["build", "-t", "ign:1", ctx.path().to_str().unwrap()]);
    assert_eq!(sh(&s, "ign:1", "cd /ctx/subdir && ls"), "sub1.txt\n");
}

/// `ADD --chown` of a local archive owns every extracted file (today's BuildKit applies the
/// chown to unpacked entries); without it, the archive's owners stay.
#[test]
fn add_chown_applies_to_extracted_archives() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nADD --chown=1000:1000 local.tar /dst/\nADD local.tar /keep/\n",
    )]);
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("foo"), "x").unwrap();
    let tar = std::process::Command::new("tar")
        .args(["--owner=33", "--group=33", "-C"])
        .arg(src.path())
        .arg("-cf")
        .arg(ctx.path().join("local.tar"))
        .arg("foo")
        .status()
        .unwrap();
    assert!(tar.success());
    s.ok(&["build", "-t", "addchown:1", ctx.path().to_str().unwrap()]);
    assert_eq!(
        sh(&s, "addchown:1", "stat -c '%u:%g' /dst /dst/foo /keep/foo"),
        "1000:1000\n1000:1000\n33:33\n"
    );
}

/// Mount points a RUN needed (a `--mount` target, /etc/hosts...) leave no trace, parents
/// included: BuildKit's Dockerfile frontend sets `removeMountStubsRecursive`.
#[test]
fn mount_stubs_are_removed_with_their_parents() {
    let s = store();
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN --mount=type=tmpfs,target=/new/deep/dir true\n")]);
    s.ok(&["build", "-t", "stubs:1", ctx.path().to_str().unwrap()]);
    assert_eq!(sh(&s, "stubs:1", "test -e /new || echo gone"), "gone\n");
    assert_eq!(s.layer_entries("stubs:1").len(), 1, "the RUN added no layer");
}

/// `COPY --exclude=PATTERN` (repeatable, .dockerignore syntax, matched against each source's
/// own paths): excluded files stay out of the image and out of the cache key.
#[test]
fn copy_exclude_keeps_files_out_of_the_image_and_the_cache_key() {
    let s = store();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY --exclude=*.md --exclude=node_modules . /app/\n\
             COPY --exclude=*.txt hom* /mydir/\n",
        ),
        ("README.md", "readme"),
        ("src/a.rs", "fn main() {}"),
        ("sub/docs.md", "nested"),
        ("node_modules/x.js", "1"),
        ("home.txt", "t"),
        ("homework.rs", "w"),
    ]);
    let dir = ctx.path().to_str().unwrap();
    let meta = s.path().join("meta.json");
    let build = || {
        s.ok(&["build", "--metadata-file", meta.to_str().unwrap(), "-t", "excl:1", dir]);
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        m["rbuild.steps.cached"].as_u64().unwrap()
    };
    assert_eq!(build(), 0);
    let files = sh(&s, "excl:1", "cd /app && find . -type f | sort; ls /mydir");
    assert_eq!(files, "./Dockerfile\n./home.txt\n./homework.rs\n./src/a.rs\n./sub/docs.md\nhomework.rs\n");
    // A change in an excluded file is no change for the step.
    std::fs::write(ctx.path().join("node_modules/x.js"), "2").unwrap();
    std::fs::write(ctx.path().join("README.md"), "changed").unwrap();
    assert_eq!(build(), 2);
    std::fs::write(ctx.path().join("src/a.rs"), "fn main() { }").unwrap();
    assert_eq!(build(), 0, "an included file's change misses (and the step after it)");
}

/// `COPY --parents` keeps each match's directories below the destination, from the context
/// root or from a `/./` pivot in its source; a directory source keeps its own name.
#[test]
fn copy_parents_keeps_directories_and_pivots() {
    let s = store();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox AS files\nCOPY . /src/\n\
             FROM busybox\n\
             COPY --parents x/a.txt y/a.txt /no_parents/\n\
             COPY --parents */a.txt /glob/\n\
             COPY --parents ./x/./sub/b.txt /pivot/\n\
             COPY --parents dir /d/\n\
             COPY --from=files --parents /src/./x/sub /stage/\n",
        ),
        ("x/a.txt", "xa"),
        ("y/a.txt", "ya"),
        ("x/sub/b.txt", "xb"),
        ("dir/inner/c.txt", "c"),
    ]);
    s.ok(&["build", "-t", "parents:1", ctx.path().to_str().unwrap()]);
    let files =
        sh(&s, "parents:1", "for d in /no_parents /glob /pivot /d /stage; do find $d -type f | sort; done");
    assert_eq!(
        files,
        "/no_parents/x/a.txt\n/no_parents/y/a.txt\n/glob/x/a.txt\n/glob/y/a.txt\n/pivot/sub/b.txt\n\
         /d/dir/inner/c.txt\n/stage/x/sub/b.txt\n"
    );
    assert_eq!(sh(&s, "parents:1", "cat /glob/y/a.txt"), "ya");
}

/// `# syntax=docker/dockerfile:...` is read by rbuild's own frontend, which says so once in
/// plain progress; another frontend image is a one-line error naming it.
#[test]
fn syntax_directive_is_our_own_frontend_or_an_error() {
    let s = store();
    let ctx = context(&[("Dockerfile", "# syntax=docker/dockerfile:1.7\nFROM busybox\nRUN true\n")]);
    let out = s.run(&["build", "--progress=plain", "-t", "syn:1", ctx.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("read by rbuild's own Dockerfile frontend").count(), 1, "{err}");
    let ctx = context(&[("Dockerfile", "# syntax=example.com/frontend:1\nFROM busybox\n")]);
    let line = s.fails(&["build", ctx.path().to_str().unwrap()]);
    assert!(line.contains("cannot run the frontend image example.com/frontend:1"), "{line}");
}

/// Images `NAME:1` and `NAME:2`: busybox with /base saying 1 or 2.
fn two_bases(s: &TestStore, name: &str) {
    for n in ["1", "2"] {
        let base = context(&[("Dockerfile", &format!("FROM busybox\nRUN echo {n} > /base\n"))]);
        s.ok(&["build", "-t", &format!("{name}:{n}"), base.path().to_str().unwrap()]);
    }
}

/// Builds `dir` with `--build-arg BASE=base` as `tag`; how many steps were cache hits.
fn build_on(s: &TestStore, dir: &std::path::Path, base: &str, tag: &str) -> u64 {
    let meta = s.path().join("meta.json");
    let arg = format!("BASE={base}");
    s.ok(&[
        "build",
        "--build-arg",
        &arg,
        "--metadata-file",
        meta.to_str().unwrap(),
        "-t",
        tag,
        dir.to_str().unwrap(),
    ]);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    m["rbuild.steps.cached"].as_u64().unwrap()
}

/// `COPY --link`: its layer does not depend on the steps before. After the base image changes,
/// the COPY is a cache hit and its layer's digest is the same; the files are where they belong
/// on either base.
#[test]
fn copy_link_layer_survives_a_base_change() {
    let s = store();
    two_bases(&s, "linkbase");
    let ctx = context(&[
        (
            "Dockerfile",
            "ARG BASE\nFROM $BASE\nWORKDIR /srv\nCOPY --link app.txt conf/ ./app/\nRUN cat /base\n",
        ),
        ("app.txt", "app"),
        ("conf/c.ini", "c"),
    ]);
    let build = |base: &str, tag: &str| build_on(&s, ctx.path(), base, tag);
    assert_eq!(build("linkbase:1", "linked:1"), 0);
    // WORKDIR and RUN follow the new base; the linked COPY does not.
    assert_eq!(build("linkbase:2", "linked:2"), 1);
    let copy_layer = |image: &str| s.config(image)["rootfs"]["diff_ids"][3].clone();
    assert_eq!(copy_layer("linked:1"), copy_layer("linked:2"));
    assert_ne!(s.config("linked:1")["rootfs"]["diff_ids"][1], s.config("linked:2")["rootfs"]["diff_ids"][1]);
    assert_eq!(sh(&s, "linked:2", "cat /base /srv/app/app.txt /srv/app/c.ini"), "2\nappc");
}

/// The build checks: a Dockerfile with three problems builds and ends with three warnings,
/// each with its line, as buildx lists them; `--check` prints them with their rule's URL and
/// the lines around them, builds nothing and exits 1; `# check=error=true` fails the build.
#[test]
fn build_checks_warn_check_exits_1_and_error_true_fails() {
    let s = store();
    let dockerfile = "FROM busybox as base\nMAINTAINER me@example.org\nCMD echo hi\n";
    let ctx = context(&[("Dockerfile", dockerfile)]);
    let dir = ctx.path().to_str().unwrap();
    let out = s.run(&["build", "--progress=plain", "-t", "lint:1", dir]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let summary = err.split("\n 3 warnings found:\n").nth(1).unwrap_or_else(|| panic!("no summary:\n{err}"));
    assert_eq!(
        summary.lines().take(3).collect::<Vec<_>>(),
        [
            " - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)",
            " - MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (line 2)",
            " - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 3)",
        ]
    );

    let out = s.run(&["build", "--check", "-t", "checked:1", dir]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("Check complete, 3 warnings have been found!\n"), "{stdout}");
    assert!(
        stdout.contains(
            "\nWARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/\n\
             'as' and 'FROM' keywords' casing do not match\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("   1 | >>> FROM busybox as base\n"), "{stdout}");
    assert!(s.ok(&["images", "-q", "checked"]).is_empty(), "--check built an image");
    let clean = context(&[("Dockerfile", "FROM busybox AS base\nCMD [\"true\"]\n")]);
    let out = s.run(&["build", "--check", clean.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Check complete, no warnings found.\n");

    let strict =
        context(&[("Dockerfile", &format!("# check=error=true;skip=MaintainerDeprecated\n{dockerfile}"))]);
    let line = s.fails(&["build", "-t", "strict:1", strict.path().to_str().unwrap()]);
    assert!(line.ends_with("lint violation found for rules: FromAsCasing, JSONArgsRecommended"), "{line}");
    assert!(s.ok(&["images", "-q", "strict"]).is_empty());
}

/// CopyIgnoredFile needs the context's `.dockerignore`, so it is made where both are known
/// (BuildKit's `testCopyIgnoredFiles` cases): a COPY or ADD of an excluded file warns at its
/// line, before the build fails to find it; a `!` exception turns the check off; `COPY . .`
/// warns only when a pattern excludes every entry of the root.
#[test]
fn copy_ignored_file_check() {
    let s = store();
    let check = |dockerignore: &str, dockerfile: &str| {
        let ctx = context(&[("Dockerfile", dockerfile), (".dockerignore", dockerignore), ("keep", "k")]);
        let out = s.run(&["build", "--check", ctx.path().to_str().unwrap()]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = check("\nDockerfile\n", "\nFROM scratch\nCOPY Dockerfile .\nADD Dockerfile /windy\n");
    assert!(out.starts_with("Check complete, 2 warnings have been found!\n"), "{out}");
    assert!(
        out.contains(
            "WARNING: CopyIgnoredFile - https://docs.docker.com/go/dockerfile/rule/copy-ignored-file/\n\
             Attempting to Copy file \"Dockerfile\" that is excluded by .dockerignore\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("Attempting to Add file \"Dockerfile\" that is excluded by .dockerignore\n"),
        "{out}"
    );
    assert!(out.contains("   3 | >>> COPY Dockerfile .\n"), "{out}");
    let skipped = check("Dockerfile\n", "# check=skip=CopyIgnoredFile\n\nFROM scratch\nCOPY Dockerfile .\n");
    assert_eq!(skipped, "Check complete, no warnings found.\n");
    let from_stage = check(
        "foobar\n",
        "FROM scratch AS base\nCOPY keep /foobar\nFROM base\nCOPY --from=base /foobar /Dockerfile\n",
    );
    assert_eq!(from_stage, "Check complete, no warnings found.\n");
    assert_eq!(
        check("**\n!Dockerfile\n", "FROM scratch\nCOPY ./Dockerfile .\n"),
        "Check complete, no warnings found.\n"
    );
    assert_eq!(check(".*\n", "FROM scratch\nCOPY . .\n"), "Check complete, no warnings found.\n");
    let root = check("*\n", "FROM scratch\nCOPY . .\n");
    assert!(root.contains("Attempting to Copy file \".\" that is excluded by .dockerignore\n"), "{root}");

    // A build prints it at the end, and fails after it on the missing file.
    let ctx = context(&[("Dockerfile", "FROM busybox\nCOPY keep /k\n"), (".dockerignore", "keep\n")]);
    let out = s.run(&["build", "--progress=plain", ctx.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "CopyIgnoredFile: Attempting to Copy file \"keep\" that is excluded by .dockerignore (line 2)"
        ),
        "{err}"
    );
}

/// `ADD --exclude` (as COPY's: relative to a directory source, so `*.log` leaves out only its
/// top-level logs; a file source by its name; an archive it names is extracted all the same, as
/// BuildKit unpacks before its exclude-aware copy), `--unpack=false` (a local archive copied as
/// it is) and `--unpack=true` (a downloaded archive extracted, which ADD of a URL never does by
/// default).
#[test]
fn add_exclude_and_unpack() {
    let s = store();
    let www = tempfile::tempdir().unwrap();
    let ctx = context(&[
        ("dir/a.txt", "a"),
        ("dir/b.log", "b"),
        ("dir/sub/c.log", "c"),
        ("x.txt", "x"),
        ("y.txt", "y"),
        ("note.log", "n"),
    ]);
    let tar = |archive: &std::path::Path, dir: &std::path::Path, name: &str| {
        let ok =
            std::process::Command::new("tar").arg("-czf").arg(archive).arg("-C").arg(dir).arg(name).status();
        assert!(ok.unwrap().success());
    };
    tar(&ctx.path().join("arch.tar.gz"), ctx.path(), "x.txt");
    tar(&ctx.path().join("skip.tar.gz"), ctx.path(), "y.txt");
    tar(&www.path().join("remote.tar.gz"), ctx.path(), "x.txt");
    let httpd = Httpd::serve(www.path());
    let url = httpd.url("remote.tar.gz");
    let dockerfile = format!(
        "FROM busybox\nADD --exclude=*.log dir /d/\nADD --exclude=skip* --exclude=*.log arch.tar.gz skip.tar.gz note.log y.txt /e/\n\
         ADD --unpack=false arch.tar.gz /keep/\nADD arch.tar.gz /unpacked/\n\
         ADD --unpack=true {url} /remote/\nADD {url} /remote-file/\n"
    );
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    s.ok(&["build", "-t", "addflags:1", ctx.path().to_str().unwrap()]);
    let listing = sh(&s, "addflags:1", "cd / && find d e keep unpacked remote remote-file | sort");
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        [
            "d",
            "d/a.txt",
            "d/sub",
            "d/sub/c.log",
            "e",
            "e/x.txt",
            "e/y.txt",
            "keep",
            "keep/arch.tar.gz",
            "remote",
            "remote-file",
            "remote-file/remote.tar.gz",
            "remote/x.txt",
            "unpacked",
            "unpacked/x.txt",
        ]
    );
}

/// `ADD --link`, as `COPY --link`: after the base image changes, the ADD is a cache hit and its
/// layer (here an extracted archive) is the very same.
#[test]
fn add_link_layer_survives_a_base_change() {
    let s = store();
    two_bases(&s, "addlinkbase");
    let ctx =
        context(&[("Dockerfile", "ARG BASE\nFROM $BASE\nADD --link app.tar /srv/\n"), ("app.txt", "app")]);
    let ok = std::process::Command::new("tar")
        .arg("-cf")
        .arg(ctx.path().join("app.tar"))
        .arg("-C")
        .arg(ctx.path())
        .arg("app.txt")
        .status();
    assert!(ok.unwrap().success());
    let build = |base: &str, tag: &str| build_on(&s, ctx.path(), base, tag);
    assert_eq!(build("addlinkbase:1", "addlinked:1"), 0);
    assert_eq!(build("addlinkbase:2", "addlinked:2"), 1);
    let add_layer = |image: &str| s.config(image)["rootfs"]["diff_ids"][2].clone();
    assert_eq!(add_layer("addlinked:1"), add_layer("addlinked:2"));
    assert_eq!(sh(&s, "addlinked:2", "cat /base /srv/app.txt"), "2\napp");
}

/// What overlayfs copied up unchanged is no change, as BuildKit's overlay differ decides: a
/// hard link to an image file records only the new name (a file of its own in the layer), and
/// a `chmod` to the mode a file already has makes no layer at all.
#[test]
fn unchanged_copy_ups_are_not_in_the_layer() {
    let s = store();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY artifact /subdir/artifact\nRUN ln -f /subdir/artifact /subdir/artifact-hardlink\n\
             RUN chmod 644 /subdir/artifact && chown 0:0 /bin/busybox\n",
        ),
        ("artifact", "data"),
    ]);
    std::fs::set_permissions(
        ctx.path().join("artifact"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    s.ok(&["build", "-t", "copyup:1", ctx.path().to_str().unwrap()]);
    let layers = s.layer_entries("copyup:1");
    assert_eq!(layers.len(), 3, "{layers:?}");
    assert_eq!(layers[2], ["subdir/", "subdir/artifact-hardlink"]);
    assert_eq!(sh(&s, "copyup:1", "cat /subdir/artifact /subdir/artifact-hardlink"), "datadata");
}
