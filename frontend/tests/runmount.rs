//! `RUN --mount`, `--network`, `--security`: lowered as BuildKit's Dockerfile frontend does.

use frontend::{
    BaseConfig, BuildDefinition, CacheSharing, CopyFrom, Error, ImageResolver, LowerOptions, Op, RunMount,
    RunNetwork, RunOp, RunSecurity, build_definition,
};

/// `busybox` has WORKDIR /home and `FOO=from-image`; `alpine` has no WORKDIR.
struct FakeResolver;

impl ImageResolver for FakeResolver {
    fn resolve(&self, reference: &str) -> Result<BaseConfig, frontend::ResolveError> {
        match reference {
            "busybox" => Ok(BaseConfig {
                env: vec!["PATH=/bin".into(), "FOO=from-image".into()],
                working_dir: Some("/home".into()),
                on_build: vec![],
                platform: None,
            }),
            "alpine" => Ok(BaseConfig {
                env: vec!["PATH=/bin".into()],
                working_dir: None,
                on_build: vec![],
                platform: None,
            }),
            "onbuild" => Ok(BaseConfig {
                env: vec![],
                working_dir: None,
                on_build: vec!["RUN --mount=type=cache,target=/c make".into()],
                platform: None,
            }),
            other => Err(format!("image {other} not found").into()),
        }
    }
}

fn lower_with(text: &str, args: &[(&str, &str)]) -> Result<BuildDefinition, Error> {
    let options = LowerOptions {
        build_args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        target: None,
        ..Default::default()
    };
    build_definition("Dockerfile", text, &options, &FakeResolver)
}

fn lower_err(text: &str) -> String {
    lower_with(text, &[]).unwrap_err().to_string()
}

/// The RUN steps of the last stage.
fn runs(text: &str) -> Vec<RunOp> {
    runs_with(text, &[])
}

fn runs_with(text: &str, args: &[(&str, &str)]) -> Vec<RunOp> {
    let def = lower_with(text, args).unwrap();
    let stage = def.stages.last().unwrap();
    stage
        .steps
        .iter()
        .filter_map(|s| match &s.op {
            Op::Run(run) => Some(run.clone()),
            _ => None,
        })
        .collect()
}

/// The mounts of the only RUN of the last stage.
fn mounts(text: &str) -> Vec<RunMount> {
    let runs = runs(text);
    assert_eq!(runs.len(), 1);
    runs[0].mounts.clone()
}

fn bind(target: &str, from: Option<CopyFrom>, source: &str, readwrite: bool) -> RunMount {
    RunMount::Bind { target: target.into(), from, source: source.into(), readwrite }
}

#[allow(clippy::too_many_arguments)]
fn cache(
    target: &str,
    id: &str,
    sharing: CacheSharing,
    readonly: bool,
    from: Option<CopyFrom>,
    source: &str,
    mode: u32,
    uid: u32,
    gid: u32,
) -> RunMount {
    RunMount::Cache {
        target: target.into(),
        id: id.into(),
        sharing,
        readonly,
        from,
        source: source.into(),
        mode,
        uid,
        gid,
    }
}

fn secret(
    id: &str,
    target: Option<&str>,
    env: Option<&str>,
    required: bool,
    mode: u32,
    uid: u32,
    gid: u32,
) -> RunMount {
    RunMount::Secret {
        id: id.into(),
        target: target.map(Into::into),
        env: env.map(Into::into),
        required,
        mode,
        uid,
        gid,
    }
}

#[test]
fn no_flags_means_no_mounts_default_network_and_sandbox() {
    let run = &runs("FROM alpine\nRUN true\n")[0];
    assert!(run.mounts.is_empty());
    assert_eq!((run.network, run.security), (RunNetwork::Default, RunSecurity::Sandbox));
}

#[test]
fn every_type_with_its_defaults() {
    assert_eq!(
        mounts(
            "FROM alpine\n\
             RUN --mount=target=/ctx \\\n\
                 --mount=type=cache,target=/root/.cache \\\n\
                 --mount=type=tmpfs,target=/tmp \\\n\
                 --mount=type=secret,id=token \\\n\
                 --mount=type=secret,target=/etc/npmrc \\\n\
                 --mount=type=secret,id=gh,env=GH_TOKEN \\\n\
                 make\n"
        ),
        vec![
            bind("/ctx", None, "", false),
            cache("/root/.cache", "/root/.cache", CacheSharing::Shared, false, None, "", 0o755, 0, 0),
            RunMount::Tmpfs { target: "/tmp".into(), size: None },
            secret("token", Some("/run/secrets/token"), None, false, 0o400, 0, 0),
            secret("npmrc", Some("/etc/npmrc"), None, false, 0o400, 0, 0),
            secret("gh", None, Some("GH_TOKEN"), false, 0o400, 0, 0),
        ]
    );
}

#[test]
fn every_key() {
    assert_eq!(
        mounts(
            "FROM alpine AS build\nFROM alpine\n\
             RUN --mount=type=bind,from=build,source=/out/,target=/in,rw \\\n\
                 --mount=TYPE=Bind,src=a/./b,dst=/b,readwrite=false \\\n\
                 --mount=src=c,destination=/c,readonly=false \\\n\
                 --mount=type=bind,target=/d,rw=true,ro \\\n\
                 --mount=type=cache,id=go,target=/go,sharing=locked,mode=0700,uid=1000,gid=1001,ro \\\n\
                 --mount=type=cache,target=/p,sharing=PRIVATE,from=build,source=seed,readonly=true \\\n\
                 --mount=type=tmpfs,target=/t,size=64m \\\n\
                 --mount=type=tmpfs,target=/u,size=1GiB \\\n\
                 --mount=type=secret,source=aws,target=/root/.aws/credentials,required,mode=0440,uid=1,gid=2 \\\n\
                 --mount=type=secret,id=k,env=KEY,target=/k,required=true \\\n\
                 make\n"
        ),
        vec![
            bind("/in", Some(CopyFrom::Stage(0)), "out", true),
            bind("/b", None, "a/b", false),
            bind("/c", None, "c", true),
            bind("/d", None, "", false),
            cache("/go", "go", CacheSharing::Locked, true, None, "", 0o700, 1000, 1001),
            cache("/p", "/p", CacheSharing::Private, true, Some(CopyFrom::Stage(0)), "seed", 0o755, 0, 0),
            RunMount::Tmpfs { target: "/t".into(), size: Some(64 << 20) },
            RunMount::Tmpfs { target: "/u".into(), size: Some(1 << 30) },
            secret("aws", Some("/root/.aws/credentials"), None, true, 0o440, 1, 2),
            secret("k", Some("/k"), Some("KEY"), true, 0o400, 0, 0),
        ]
    );
}

#[test]
fn csv_quoting() {
    // The flag's own quotes are removed when flags are split (BuildKit's `extractBuilderFlags`),
    // so CSV quotes are written inside single quotes (or escaped).
    assert_eq!(
        mounts("FROM alpine\nRUN --mount='\"target=/a,b\",\"source=x y\"' true\n"),
        vec![bind("/a,b", None, "x y", false)]
    );
    // A CSV `""` is a quote in the value, which expansion then reads as a shell quote.
    assert_eq!(
        mounts("FROM alpine\nRUN --mount='\"target=/\"\"a b\"\"\"' true\n"),
        vec![bind("/a b", None, "", false)]
    );
    assert_eq!(
        lower_err("FROM alpine\nRUN --mount='\"target=/x\"\"y\"' true\n"),
        "Dockerfile:2:5: failed to process \"/x\"y\": unexpected end of statement while looking for matching double-quote"
    );
}

#[test]
fn values_are_expanded_with_the_run_environment() {
    let text = "FROM busybox\n\
                ARG CACHE=/root/.cache\n\
                ENV KIND=cache SHARE=locked\n\
                ARG SIZE\n\
                RUN --mount=type=$KIND,target=${CACHE}/pip,id=${ID:-pip},sharing=$SHARE \\\n\
                    --mount=type=tmpfs,target='/tmp dir',size=$SIZE \\\n\
                    --mount=type=secret,id=$FOO,env=TOKEN \\\n\
                    pip install\n";
    let run = &runs_with(text, &[("SIZE", "2m")])[0];
    assert_eq!(
        run.mounts,
        vec![
            cache("/root/.cache/pip", "pip", CacheSharing::Locked, false, None, "", 0o755, 0, 0),
            RunMount::Tmpfs { target: "/tmp dir".into(), size: Some(2 << 20) },
            secret("from-image", None, Some("TOKEN"), false, 0o400, 0, 0),
        ]
    );
    // The default cache id is the expanded target.
    assert_eq!(
        mounts("FROM alpine\nARG D=/d\nRUN --mount=type=cache,target=$D true\n"),
        vec![cache("/d", "/d", CacheSharing::Shared, false, None, "", 0o755, 0, 0)]
    );
    // Splitting the flags consumes one level of escapes, expansion the next: with a backtick as
    // the escape character, a doubled backtick escapes the `$`, a single one is gone by then.
    assert_eq!(
        mounts("# escape=`\nFROM alpine\nRUN --mount=target=/a``$b,source=`$b true\n"),
        vec![bind("/a$b", None, "", false)]
    );
}

#[test]
fn relative_targets_are_resolved_against_the_workdir() {
    assert_eq!(
        mounts(
            "FROM busybox\nWORKDIR src\n\
             RUN --mount=target=ctx --mount=type=cache,target=./cache/ --mount=type=tmpfs,target=../t \\\n\
                 --mount=source=x --mount=type=secret,target=rel/tok make\n"
        ),
        vec![
            bind("/home/src/ctx", None, "", false),
            // The default id is the target as written, cleaned.
            cache("/home/src/cache", "cache", CacheSharing::Shared, false, None, "", 0o755, 0, 0),
            RunMount::Tmpfs { target: "/home/t".into(), size: None },
            // No target: the WORKDIR itself.
            bind("/home/src", None, "x", false),
            // Secrets are not resolved against the WORKDIR: the runtime puts them under the root.
            secret("tok", Some("/rel/tok"), None, false, 0o400, 0, 0),
        ]
    );
    assert_eq!(
        lower_err("FROM alpine\nRUN --mount=source=x true\n"),
        "Dockerfile:2:5: invalid mount target \"/\""
    );
    assert_eq!(
        lower_err("FROM busybox\nRUN --mount=type=cache,target=.. true\n"),
        "Dockerfile:2:5: invalid mount target \"/\""
    );
}

#[test]
fn from_a_stage_by_name_or_index_or_an_image() {
    let text = "FROM alpine AS Build\nFROM alpine\nFROM busybox\n\
                RUN --mount=from=BUILD,target=/a --mount=from=1,target=/b \\\n\
                    --mount=type=cache,from=busybox,source=/x,target=/c --mount=from=,target=/d \\\n\
                    --mount=type=tmpfs,from=build,target=/e true\n";
    let mounts = mounts(text);
    assert_eq!(
        mounts,
        vec![
            bind("/a", Some(CopyFrom::Stage(0)), "", false),
            bind("/b", Some(CopyFrom::Stage(1)), "", false),
            cache(
                "/c",
                "/c",
                CacheSharing::Shared,
                false,
                Some(CopyFrom::Image("busybox".into())),
                "x",
                0o755,
                0,
                0
            ),
            // An empty from is the build context.
            bind("/d", None, "", false),
            RunMount::Tmpfs { target: "/e".into(), size: None },
        ]
    );
    let deps: Vec<_> = mounts.iter().map(RunMount::from_stage).collect();
    assert_eq!(deps, vec![Some(0), Some(1), None, None, None]);
}

#[test]
fn from_this_or_a_later_stage_is_an_error() {
    assert_eq!(
        lower_err("FROM alpine AS a\nRUN --mount=from=b,target=/x true\nFROM alpine AS b\n"),
        "Dockerfile:2:5: cannot mount from stage \"b\" to \"/x\", stage needs to be defined before current command"
    );
    assert_eq!(
        lower_err("FROM alpine AS a\nRUN --mount=type=cache,from=A,target=/x true\n"),
        "Dockerfile:2:5: circular dependency detected on stage: a"
    );
    assert_eq!(
        lower_err("FROM alpine\nRUN --mount=from=3,target=/x true\n"),
        "Dockerfile:2:5: invalid stage index 3"
    );
}

#[test]
fn from_cannot_use_variables_and_is_checked_before_lowering() {
    // The FROM of line 1 fails only when lowered; the parse-time check of line 3 comes first.
    assert_eq!(
        lower_err("FROM nope\nARG S=build\nRUN --mount=from=$S,target=/x true\n"),
        "Dockerfile:3:5: 'from' doesn't support variable expansion, define alias stage instead"
    );
    assert_eq!(
        lower_err("FROM nope\nRUN --mount=\\\"target=/x true\n"),
        "Dockerfile:2:5: failed to parse csv mounts: parse error on line 1, column 2: extraneous or missing \" in quoted-field"
    );
    assert_eq!(
        lower_err("FROM nope\nRUN --network=$NET true\n"),
        "Dockerfile:2:5: invalid network mode \"$NET\""
    );
    assert_eq!(
        lower_err("FROM nope\nRUN --security=privileged true\n"),
        "Dockerfile:2:5: security \"privileged\" is not valid"
    );
    // Everything else is checked when the RUN is lowered.
    assert_eq!(lower_err("FROM nope\nRUN --mount=type=nope true\n"), "Dockerfile:1:1: FROM nope");
}

#[test]
fn network_and_security() {
    let runs = runs(
        "FROM alpine\nRUN --network=none true\nRUN --network=host --security=insecure true\n\
         RUN --network=default --security=sandbox true\n",
    );
    let got: Vec<_> = runs.iter().map(|r| (r.network, r.security)).collect();
    assert_eq!(
        got,
        vec![
            (RunNetwork::None, RunSecurity::Sandbox),
            (RunNetwork::Host, RunSecurity::Insecure),
            (RunNetwork::Default, RunSecurity::Sandbox),
        ]
    );
    assert_eq!(
        lower_err("FROM alpine\nRUN --network=bridge true\n"),
        "Dockerfile:2:5: invalid network mode \"bridge\""
    );
    assert_eq!(lower_err("FROM alpine\nRUN --network= true\n"), "Dockerfile:2:5: invalid network mode \"\"");
    assert_eq!(
        lower_err("FROM alpine\nRUN --network=none --network=host true\n"),
        "Dockerfile:2:20: duplicate flag specified: --network"
    );
    assert_eq!(
        lower_err("FROM alpine\nRUN --netwrk=none true\n"),
        "Dockerfile:2:5: unknown flag: --netwrk (did you mean network?)"
    );
    assert_eq!(
        lower_err("FROM alpine\nRUN --mount true\n"),
        "Dockerfile:2:5: missing a value on flag: --mount"
    );
}

#[test]
fn history_ignores_the_flags() {
    let runs = runs_with(
        "FROM alpine\nARG V\nRUN --mount=type=cache,target=/c --network=none --security=insecure echo hi\n\
         RUN --mount=target=/x [\"echo\", \"hi\"]\n",
        &[("V", "1")],
    );
    assert_eq!(runs[0].created_by, "RUN |1 V=1 /bin/sh -c echo hi");
    assert_eq!(runs[0].args, vec!["/bin/sh", "-c", "echo hi"]);
    assert_eq!(runs[1].created_by, "RUN |1 V=1 echo hi");
}

#[test]
fn onbuild_triggers_can_mount() {
    let def = lower_with("FROM onbuild\n", &[]).unwrap();
    match &def.stages[0].steps[0].op {
        Op::Run(run) => assert_eq!(
            run.mounts,
            vec![cache("/c", "/c", CacheSharing::Shared, false, None, "", 0o755, 0, 0)]
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn errors_are_located_at_the_flag() {
    let cases = [
        ("RUN --mount=type=tmp,target=/x true", "2:5: unsupported mount type \"tmp\" (did you mean tmpfs?)"),
        ("RUN --mount=typ=tmpfs true", "2:5: unexpected key 'typ' in 'typ=tmpfs' (did you mean type?)"),
        (
            "RUN --network=none --mount=target=/x,bogus true",
            "2:20: invalid field 'bogus' must be a key=value pair",
        ),
        ("RUN  --mount=type=cache,target=/x,sharing=all true", "2:6: unsupported sharing value \"all\""),
        ("RUN --mount=type=cache,target=/x,mode=rwx true", "2:5: invalid value rwx for mode"),
        ("RUN --mount=type=cache,target=/x,uid=root true", "2:5: invalid value root for uid"),
        ("RUN --mount=type=cache,target=/x,gid=-1 true", "2:5: invalid value -1 for gid"),
        ("RUN --mount=target=/x,ro=yes true", "2:5: invalid value for ro: yes"),
        ("RUN --mount=target=/x,rw=no true", "2:5: invalid value for rw: no"),
        ("RUN --mount=type=tmpfs,target=/x,size=big true", "2:5: invalid value for size: big"),
        ("RUN --mount=target=/x,size=1m true", "2:5: unexpected key 'size' for mount type 'bind'"),
        ("RUN --mount=target=/x,required true", "2:5: unexpected key 'required' for mount type 'bind'"),
        ("RUN --mount=target=/x,mode=0644 true", "2:5: mode not allowed for \"bind\" type mounts"),
        ("RUN --mount=type=tmpfs,target=/x,uid=1 true", "2:5: uid not allowed for \"tmpfs\" type mounts"),
        ("RUN --mount=type=secret,id=a,from=alpine true", "2:5: secret mount should not have a from"),
        ("RUN --mount=type=secret,id=a,sharing=shared true", "2:5: secret mount should not define sharing"),
        ("RUN --mount=type=secret,env=A true", "2:5: invalid secret mount. one of source, target required"),
        ("RUN --mount=type=secret,id=a,src=b true", "2:5: both source and id can't be set"),
        (
            "RUN --mount=type=tmpfs,target=/x,sharing=locked true",
            "2:5: invalid cache sharing set for tmpfs mount",
        ),
        ("RUN --mount=type=ssh,sharing=locked true", "2:5: invalid cache sharing set for ssh mount"),
        (
            "RUN --mount=target=/x --mount=target=${X:?unset} true",
            "2:23: failed to process \"${X:?unset}\": X: unset",
        ),
        ("RUN --mount=target=/x --device=nvidia.com/gpu=all true", "2:23: RUN --device is not supported yet"),
        ("RUN --mount= true", "2:5: failed to parse csv mounts: EOF"),
        (
            "RUN --mount='target=/x,a\"b' true",
            "2:5: failed to parse csv mounts: parse error on line 1, column 12: bare \" in non-quoted-field",
        ),
    ];
    for (line, want) in cases {
        assert_eq!(lower_err(&format!("FROM alpine\n{line}\n")), format!("Dockerfile:{want}"), "{line}");
    }
    // Continuation lines: the flag's own line and column.
    assert_eq!(
        lower_err("FROM alpine\nRUN --network=none \\\n    --mount=type=bogus true\n"),
        "Dockerfile:3:5: unsupported mount type \"bogus\""
    );
}
