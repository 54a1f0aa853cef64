//! Every Dockerfile instruction, built for real: the image's config and files must be what
//! `docker build` gives. Expected values come from the Dockerfile reference.

use std::io::Write;

use serde_json::json;
use test_support::{TestStore, context};

fn store() -> TestStore {
    let s = TestStore::new(env!("CARGO_BIN_EXE_rbuild"));
    s.import_busybox();
    s
}

fn build(s: &TestStore, dir: &std::path::Path, extra: &[&str]) -> String {
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    args.push(dir.to_str().unwrap());
    let out = s.run(&args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "build failed:\n{err}");
    err
}

fn sh(s: &TestStore, image: &str, script: &str) -> String {
    s.ok(&["run", "--rm", image, "sh", "-c", script])
}

#[test]
fn shell_changes_run_cmd_and_entrypoint_wrapping() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nSHELL [\"/bin/sh\", \"-ec\"]\nRUN echo \"$0 $-\" > /shell\nCMD echo hi\nENTRYPOINT exec echo\n",
    )]);
    build(&s, ctx.path(), &["-t", "shell:1"]);
    let c = &s.config("shell:1")["config"];
    assert_eq!(c["Shell"], json!(["/bin/sh", "-ec"]));
    assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-ec", "exec echo"]));
    // ENTRYPOINT after CMD in the same stage keeps the CMD.
    assert_eq!(c["Cmd"], json!(["/bin/sh", "-ec", "echo hi"]));
    // `$-` shows `e`: the RUN ran under `/bin/sh -ec`.
    assert_eq!(s.ok(&["run", "--rm", "--entrypoint", "cat", "shell:1", "/shell"]), "/bin/sh ce\n");
}

#[test]
fn stopsignal_volume_expose_label_maintainer_land_in_the_config() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nMAINTAINER Jane <jane@example.com>\nARG SIG=SIGKILL\nSTOPSIGNAL $SIG\n\
         VOLUME [\"/data\", \"/logs\"]\nVOLUME /cache\nEXPOSE 80 443/tcp 53/udp\nLABEL a=b \"c d\"=\"e f\"\n",
    )]);
    build(&s, ctx.path(), &["-t", "meta:1"]);
    let config = s.config("meta:1");
    let c = &config["config"];
    assert_eq!(c["StopSignal"], "SIGKILL");
    assert_eq!(c["Volumes"], json!({"/data": {}, "/logs": {}, "/cache": {}}));
    assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "443/tcp": {}, "53/udp": {}}));
    assert_eq!(c["Labels"], json!({"a": "b", "c d": "e f"}));
    assert_eq!(config["author"], "Jane <jane@example.com>");
}

#[test]
fn healthcheck_is_stored_as_docker_does() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox AS a\nHEALTHCHECK --interval=5m --timeout=3s --retries=2 CMD wget -q -O- http://localhost/ || exit 1\n\
         FROM a AS b\nHEALTHCHECK CMD [\"/bin/true\"]\n\
         FROM b AS c\nHEALTHCHECK NONE\n",
    )]);
    build(&s, ctx.path(), &["-t", "hc:a", "--target", "a"]);
    build(&s, ctx.path(), &["-t", "hc:b", "--target", "b"]);
    build(&s, ctx.path(), &["-t", "hc:c"]);
    assert_eq!(
        s.config("hc:a")["config"]["Healthcheck"],
        json!({"Test": ["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"], "Interval": 300_000_000_000u64, "Timeout": 3_000_000_000u64, "Retries": 2})
    );
    assert_eq!(s.config("hc:b")["config"]["Healthcheck"], json!({"Test": ["CMD", "/bin/true"]}));
    assert_eq!(s.config("hc:c")["config"]["Healthcheck"], json!({"Test": ["NONE"]}));
}

#[test]
fn onbuild_triggers_are_recorded_then_run_in_the_child_and_not_inherited() {
    let s = store();
    let parent = context(&[(
        "Dockerfile",
        "FROM busybox\nONBUILD RUN echo triggered > /triggered\nONBUILD COPY app.txt /app.txt\n",
    )]);
    build(&s, parent.path(), &["-t", "parent:1"]);
    assert_eq!(
        s.config("parent:1")["config"]["OnBuild"],
        json!(["RUN echo triggered > /triggered", "COPY app.txt /app.txt"])
    );
    assert_eq!(s.run(&["run", "--rm", "parent:1", "cat", "/triggered"]).status.code(), Some(1));
    let child = context(&[
        ("Dockerfile", "FROM parent:1\nRUN cat /triggered /app.txt > /both\n"),
        ("app.txt", "from child context\n"),
    ]);
    build(&s, child.path(), &["-t", "child:1"]);
    assert_eq!(sh(&s, "child:1", "cat /both"), "triggered\nfrom child context\n");
    assert!(s.config("child:1")["config"].get("OnBuild").is_none_or(|v| v.is_null() || v == &json!([])));
}

#[test]
fn add_extracts_local_tar_archives_and_copies_other_files() {
    let s = store();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox\nADD files.tar.gz /opt/\nADD plain.txt /opt/plain.txt\nADD files.tar.gz /kept/archive.tgz/\n",
        ),
        ("plain.txt", "plain\n"),
    ]);
    let gz = std::fs::File::create(ctx.path().join("files.tar.gz")).unwrap();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(gz, flate2::Compression::default()));
    for (path, body, mode) in
        [("app/run.sh", "#!/bin/sh\necho packed\n", 0o755), ("app/conf/x.conf", "x=1\n", 0o600)]
    {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_000_000_000);
        h.set_cksum();
        tar.append_data(&mut h, path, body.as_bytes()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
    build(&s, ctx.path(), &["-t", "add:1"]);
    assert_eq!(
        sh(
            &s,
            "add:1",
            "/opt/app/run.sh; stat -c '%a %n' /opt/app/run.sh /opt/app/conf/x.conf; cat /opt/plain.txt; ls /kept/archive.tgz"
        ),
        "packed\n755 /opt/app/run.sh\n600 /opt/app/conf/x.conf\nplain\napp\n"
    );
}

#[test]
fn arg_and_env_interplay_follows_the_reference() {
    let s = store();
    // From the Dockerfile reference: "Using ARG variables".
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nARG CONT_IMG_VER\nENV CONT_IMG_VER=${CONT_IMG_VER:-v1.0.0}\nRUN echo $CONT_IMG_VER > /ver\n\
         ARG ONLY_ARG=default\nRUN echo \"$ONLY_ARG\" > /only\nENV FIXED=v1.0.0\nARG FIXED\nRUN echo $FIXED > /fixed\n",
    )]);
    build(&s, ctx.path(), &["-t", "args:default"]);
    assert_eq!(sh(&s, "args:default", "cat /ver /only /fixed"), "v1.0.0\ndefault\nv1.0.0\n");
    build(
        &s,
        ctx.path(),
        &["-t", "args:set", "--build-arg", "CONT_IMG_VER=v2.0.1", "--build-arg", "ONLY_ARG=given"],
    );
    assert_eq!(sh(&s, "args:set", "cat /ver /only"), "v2.0.1\ngiven\n");
    let env = s.config("args:set")["config"]["Env"].clone();
    let env: Vec<&str> = env.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(env.contains(&"CONT_IMG_VER=v2.0.1"), "{env:?}");
    assert!(!env.iter().any(|e| e.starts_with("ONLY_ARG=")), "an ARG leaked into ENV: {env:?}");
    // An unused build arg is a warning, not an error.
    let err = build(&s, ctx.path(), &["-t", "args:x", "--build-arg", "UNUSED=1"]);
    assert!(err.contains("UNUSED") && err.contains("not consumed"), "{err}");
}

#[test]
fn target_builds_only_what_the_stage_needs() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox AS base\nRUN echo base > /base\nFROM base AS broken\nRUN exit 1\nFROM base AS wanted\nRUN cat /base > /wanted\nFROM broken\n",
    )]);
    build(&s, ctx.path(), &["-t", "target:1", "--target", "wanted"]);
    assert_eq!(sh(&s, "target:1", "cat /wanted"), "base\n");
    let out = s.run(&["build", "--target", "nosuch", ctx.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
}

#[test]
fn heredocs_in_run_and_copy() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nENV NAME=world\n\
         RUN <<EOF\necho a > /a\necho b > /b\nEOF\n\
         COPY <<EOF /etc/greeting\nhello $NAME\nEOF\n\
         COPY <<'EOF' /etc/literal\nhello $NAME\nEOF\n\
         COPY <<one <<two /multi/\nfirst\none\nsecond\ntwo\n\
         RUN <<-EOF sh\n\techo tabs stripped > /tabs\n\tEOF\n\
         RUN <<SCRIPT\n#!/bin/sh -e\necho \"script $0 $-\" > /script\nSCRIPT\n",
    )]);
    build(&s, ctx.path(), &["-t", "heredoc:1"]);
    assert_eq!(
        sh(&s, "heredoc:1", "cat /a /b /etc/greeting /etc/literal /multi/one /multi/two /tabs /script"),
        "a\nb\nhello world\nhello $NAME\nfirst\nsecond\ntabs stripped\nscript /dev/pipes/SCRIPT e\n"
    );
    // The script ran from its own file, in /dev: nothing of it is in the image.
    let layers = s.layer_entries("heredoc:1");
    assert_eq!(layers.last().map(Vec::as_slice), Some(&["script".to_string()][..]), "the script's RUN layer");
}

#[test]
fn workdir_creates_the_directory() {
    let s = store();
    let ctx =
        context(&[("Dockerfile", "FROM busybox\nWORKDIR /made/by/workdir\nUSER app\nWORKDIR /owned\n")]);
    build(&s, ctx.path(), &["-t", "wd:1"]);
    assert_eq!(s.config("wd:1")["config"]["WorkingDir"], "/owned");
    assert_eq!(
        s.ok(&["run", "--rm", "-u", "0", "wd:1", "stat", "-c", "%u %n", "/made/by/workdir", "/owned"]),
        "0 /made/by/workdir\n1000 /owned\n"
    );
}
