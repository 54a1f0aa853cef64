//! Lowering Dockerfiles into stages and steps, asserted on the output structs.

use frontend::{
    AddOp, Base, BaseConfig, BuildDefinition, ConfigOp, CopyFrom, CopyOp, Error, Healthcheck, ImageResolver,
    InlineFile, Location, LowerOptions, Op, RunMount, RunNetwork, RunOp, RunSecurity, Step, build_definition,
};

/// Knows `busybox` (PATH and FOO set, WORKDIR /home) and `alpine` (no WORKDIR).
struct FakeResolver;

impl ImageResolver for FakeResolver {
    fn resolve(&self, reference: &str) -> Result<BaseConfig, frontend::ResolveError> {
        match reference {
            "busybox" | "busybox:1" => Ok(BaseConfig {
                env: vec!["PATH=/usr/bin:/bin".into(), "FOO=from-image".into()],
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
            "triggers" => Ok(BaseConfig {
                env: vec!["FOO=base".into()],
                working_dir: None,
                on_build: vec!["RUN echo $FOO".into(), "ENV T=$FOO".into()],
                platform: None,
            }),
            other => Err(format!("image {other} not found").into()),
        }
    }
}

fn lower_with(text: &str, options: &LowerOptions) -> Result<BuildDefinition, Error> {
    build_definition("Dockerfile", text, options, &FakeResolver)
}

fn lower(text: &str) -> BuildDefinition {
    lower_with(text, &LowerOptions::default()).unwrap()
}

/// The error as the CLI prints it: the message, then each cause.
fn lower_err(text: &str) -> String {
    hostutil::errors::one_line(&lower_with(text, &LowerOptions::default()).unwrap_err())
}

fn with_args(args: &[(&str, &str)]) -> LowerOptions {
    LowerOptions {
        build_args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        target: None,
        ..Default::default()
    }
}

fn loc(line: usize, column: usize) -> Location {
    Location { file: "Dockerfile".into(), line, column }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn ops(def: &BuildDefinition, stage: usize) -> Vec<Op> {
    def.stages[stage].steps.iter().map(|s| s.op.clone()).collect()
}

fn run_op(op: &Op) -> &RunOp {
    match op {
        Op::Run(run) => run,
        other => panic!("not a RUN: {other:?}"),
    }
}

#[test]
fn two_stages_lower_exactly() {
    let def = lower(
        "FROM busybox AS build\n\
         WORKDIR /src\n\
         COPY main.c .\n\
         RUN cc -o app main.c\n\
         \n\
         FROM scratch\n\
         COPY --from=build /src/app /app\n\
         CMD [\"/app\"]\n",
    );
    assert_eq!(def.target, 1);
    assert!(def.warnings.is_empty(), "{:?}", def.warnings);
    let build = &def.stages[0];
    assert_eq!(build.index, 0);
    assert_eq!(build.name.as_deref(), Some("build"));
    assert_eq!(build.base, Base::Image("busybox".into()));
    assert_eq!(build.location, loc(1, 1));
    assert_eq!(build.text, "FROM busybox AS build");
    assert_eq!(build.display_name(), "build");
    assert_eq!(
        build.steps,
        vec![
            Step { location: loc(2, 1), text: "WORKDIR /src".into(), op: Op::Workdir("/src".into()) },
            Step {
                location: loc(3, 1),
                text: "COPY main.c .".into(),
                op: Op::Copy(CopyOp {
                    exclude: vec![],
                    parents: false,
                    link: false,
                    heredocs: vec![],
                    sources: strings(&["main.c"]),
                    dest: ".".into(),
                    from: None,
                    chown: None,
                    chmod: None,
                    created_by: "COPY main.c .".into(),
                }),
            },
            Step {
                location: loc(4, 1),
                text: "RUN cc -o app main.c".into(),
                op: Op::Run(RunOp {
                    args: strings(&["/bin/sh", "-c", "cc -o app main.c"]),
                    build_args: vec![],
                    proxy_env: vec![],
                    created_by: "RUN /bin/sh -c cc -o app main.c".into(),
                    mounts: vec![],
                    network: RunNetwork::Default,
                    security: RunSecurity::Sandbox,
                }),
            },
        ]
    );
    let app = &def.stages[1];
    assert_eq!(app.name, None);
    assert_eq!(app.display_name(), "stage-1");
    assert_eq!(app.base, Base::Scratch);
    assert_eq!(app.location, loc(6, 1));
    assert_eq!(
        ops(&def, 1),
        vec![
            Op::Copy(CopyOp {
                exclude: vec![],
                parents: false,
                link: false,
                heredocs: vec![],
                sources: strings(&["/src/app"]),
                dest: "/app".into(),
                from: Some(CopyFrom::Stage(0)),
                chown: None,
                chmod: None,
                created_by: "COPY /src/app /app".into(),
            }),
            Op::Config(ConfigOp::Cmd(strings(&["/app"]))),
        ]
    );
}

#[test]
fn env_and_workdir_expand_with_base_image_env() {
    let def = lower(
        "FROM busybox\n\
         ENV A=one B=${FOO}-x PATH=$PATH:/opt\n\
         ENV C=$A D=\"two words\" E='$A'\n\
         ENV legacy value with  spaces\n\
         WORKDIR rel/$A\n\
         WORKDIR ../b/./c\n\
         WORKDIR /abs//$FOO/\n\
         USER ${A:-nobody}:$A\n\
         LABEL version=\"1.0\" who=$A\n\
         COPY --chown=$A:$A --chmod=755 $FOO ${A}.txt /dst/$A/\n",
    );
    assert_eq!(
        ops(&def, 0),
        vec![
            Op::Config(ConfigOp::Env(pairs(&[
                ("A", "one"),
                ("B", "from-image-x"),
                ("PATH", "/usr/bin:/bin:/opt")
            ]))),
            Op::Config(ConfigOp::Env(pairs(&[("C", "one"), ("D", "two words"), ("E", "$A")]))),
            Op::Config(ConfigOp::Env(pairs(&[("legacy", "value with  spaces")]))),
            Op::Workdir("/home/rel/one".into()),
            Op::Workdir("/home/rel/b/c".into()),
            Op::Workdir("/abs/from-image".into()),
            Op::Config(ConfigOp::User("one:one".into())),
            Op::Config(ConfigOp::Label(pairs(&[("version", "1.0"), ("who", "one")]))),
            Op::Copy(CopyOp {
                exclude: vec![],
                parents: false,
                link: false,
                heredocs: vec![],
                sources: strings(&["from-image", "one.txt"]),
                dest: "/dst/one/".into(),
                from: None,
                chown: Some("one:one".into()),
                chmod: Some(0o755),
                // BuildKit's history text names --chown/--chmod too.
                created_by: "COPY --chown=one:one --chmod=755 from-image one.txt /dst/one/".into(),
            }),
        ]
    );
}

#[test]
fn env_pairs_expand_against_the_env_before_the_instruction() {
    let def = lower("FROM scratch\nENV A=1\nENV A=2 B=$A\nENV C=$A\n");
    assert_eq!(ops(&def, 0)[1], Op::Config(ConfigOp::Env(pairs(&[("A", "2"), ("B", "1")]))));
    assert_eq!(ops(&def, 0)[2], Op::Config(ConfigOp::Env(pairs(&[("C", "2")]))));
}

#[test]
fn run_cmd_entrypoint_are_not_expanded() {
    let def =
        lower("FROM busybox\nENV X=1\nRUN echo $X \"${X}\"\nCMD echo $X\nENTRYPOINT [\"echo\", \"$X\"]\n");
    let ops = ops(&def, 0);
    assert_eq!(run_op(&ops[1]).args, strings(&["/bin/sh", "-c", "echo $X \"${X}\""]));
    assert_eq!(ops[2], Op::Config(ConfigOp::Cmd(strings(&["/bin/sh", "-c", "echo $X"]))));
    assert_eq!(ops[3], Op::Config(ConfigOp::Entrypoint(strings(&["echo", "$X"]))));
}

#[test]
fn global_and_stage_args() {
    let text = "ARG BASE=busy\n\
                ARG TAG=box\n\
                ARG ONLY_GLOBAL=g\n\
                FROM ${BASE}${TAG}\n\
                RUN echo 1\n\
                ARG TAG\n\
                ARG LOCAL=l-$TAG\n\
                ENV E=$ONLY_GLOBAL/$TAG/$LOCAL\n\
                RUN echo 2\n\
                FROM alpine\n\
                ENV E=${LOCAL:-unset}\n";
    let def = lower(text);
    assert_eq!(def.stages[0].base, Base::Image("busybox".into()));
    let ops0 = ops(&def, 0);
    // No ARG in scope yet: no build args.
    assert_eq!(run_op(&ops0[0]).build_args, Vec::<String>::new());
    assert_eq!(run_op(&ops0[0]).created_by, "RUN /bin/sh -c echo 1");
    assert_eq!(ops0[1], Op::Config(ConfigOp::Arg(vec![("TAG".into(), Some("box".into()))])));
    assert_eq!(ops0[2], Op::Config(ConfigOp::Arg(vec![("LOCAL".into(), Some("l-box".into()))])));
    // The global ONLY_GLOBAL is not visible without `ARG ONLY_GLOBAL` in the stage.
    assert_eq!(ops0[3], Op::Config(ConfigOp::Env(pairs(&[("E", "/box/l-box")]))));
    let run = run_op(&ops0[4]);
    assert_eq!(run.build_args, strings(&["TAG=box", "LOCAL=l-box"]));
    assert_eq!(run.created_by, "RUN |2 TAG=box LOCAL=l-box /bin/sh -c echo 2");
    // Stage args do not leak into the next stage.
    assert_eq!(ops(&def, 1)[0], Op::Config(ConfigOp::Env(pairs(&[("E", "unset")]))));

    // --build-arg overrides global and stage defaults.
    let def = lower_with(text, &with_args(&[("TAG", "box:1"), ("LOCAL", "cli")])).unwrap();
    assert_eq!(def.stages[0].base, Base::Image("busybox:1".into()));
    assert_eq!(ops(&def, 0)[3], Op::Config(ConfigOp::Env(pairs(&[("E", "/box:1/cli")]))));
    assert!(def.warnings.is_empty(), "{:?}", def.warnings);
}

#[test]
fn env_overrides_arg_and_arg_without_value() {
    let def = lower("FROM scratch\nARG V=arg\nARG NOVALUE\nENV V=env\nENV W=$V\nRUN true\n");
    let ops = ops(&def, 0);
    assert_eq!(ops[1], Op::Config(ConfigOp::Arg(vec![("NOVALUE".into(), None)])));
    assert_eq!(ops[3], Op::Config(ConfigOp::Env(pairs(&[("W", "env")]))));
    let run = run_op(&ops[4]);
    // V is in the image config now, NOVALUE has no value: nothing beyond the config.
    assert_eq!(run.build_args, Vec::<String>::new());
    assert_eq!(run.created_by, "RUN |2 V=env NOVALUE= /bin/sh -c true");
}

#[test]
fn unused_build_arg_warns_and_proxies_reach_run() {
    let def = lower_with(
        "FROM scratch\nARG USED\nRUN true\n",
        &with_args(&[("USED", "1"), ("ZZZ", "2"), ("AAA", "3"), ("http_proxy", "http://p:3128")]),
    )
    .unwrap();
    assert_eq!(def.warnings, ["[Warning] One or more build-args [AAA ZZZ] were not consumed"]);
    let ops = ops(&def, 0);
    let run = run_op(&ops[1]);
    assert_eq!(run.build_args, strings(&["USED=1"]));
    assert_eq!(run.proxy_env, strings(&["HTTP_PROXY=http://p:3128", "http_proxy=http://p:3128"]));
    // Proxies stay out of history.
    assert_eq!(run.created_by, "RUN |1 USED=1 /bin/sh -c true");
}

#[test]
fn predefined_platform_args() {
    let arch = hostutil::platform::host().architecture;
    let def = lower("FROM busybox AS b\nRUN echo $TARGETARCH\nARG TARGETARCH\nARG BUILDPLATFORM\nRUN x\n");
    // Not in the stage before `ARG TARGETARCH`; the global value after.
    assert_eq!(run_op(&ops(&def, 0)[0]).build_args, Vec::<String>::new());
    assert_eq!(
        run_op(&ops(&def, 0)[3]).build_args,
        vec![format!("TARGETARCH={arch}"), format!("BUILDPLATFORM={}", hostutil::platform::host())]
    );
    // Usable in FROM (global).
    let err = lower_err("FROM ${TARGETOS}-${TARGETARCH}\n");
    assert_eq!(err, format!("Dockerfile:1:1: FROM linux-{arch}: image linux-{arch} not found"));
}

#[test]
fn continuation_lines_are_joined() {
    let def = lower(
        "FROM busybox\n\
         RUN echo a \\\n  && echo b \\\n# a comment inside\n\n     && echo c\n\
         RUN [\"echo\", \\\n  \"x\"]\n",
    );
    let step = &def.stages[0].steps[0];
    assert_eq!(step.text, "RUN echo a   && echo b      && echo c");
    assert_eq!(run_op(&step.op).args, strings(&["/bin/sh", "-c", "echo a   && echo b      && echo c"]));
    assert_eq!(def.stages[0].steps[1].location, loc(7, 1));
    assert_eq!(run_op(&def.stages[0].steps[1].op).args, strings(&["echo", "x"]));
    assert_eq!(run_op(&def.stages[0].steps[1].op).created_by, "RUN echo x");

    // With `# escape=`` the backtick continues lines and backslashes are literal.
    let def = lower("# escape=`\nFROM busybox\nRUN dir c:\\ `\n  /w\nENV P=c:\\x\n");
    assert_eq!(run_op(&ops(&def, 0)[0]).args[2], "dir c:\\   /w");
    assert_eq!(ops(&def, 0)[1], Op::Config(ConfigOp::Env(pairs(&[("P", "c:\\x")]))));
}

#[test]
fn shell_changes_run_and_cmd_wrapping() {
    let def = lower(
        "FROM busybox AS a\nSHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]\nRUN echo hi | cat\nCMD echo cmd\n\
         FROM a\nENTRYPOINT run me\n",
    );
    let ops0 = ops(&def, 0);
    assert_eq!(ops0[0], Op::Config(ConfigOp::Shell(strings(&["/bin/bash", "-o", "pipefail", "-c"]))));
    assert_eq!(run_op(&ops0[1]).args, strings(&["/bin/bash", "-o", "pipefail", "-c", "echo hi | cat"]));
    assert_eq!(run_op(&ops0[1]).created_by, "RUN /bin/bash -o pipefail -c echo hi | cat");
    assert_eq!(
        ops0[2],
        Op::Config(ConfigOp::Cmd(strings(&["/bin/bash", "-o", "pipefail", "-c", "echo cmd"])))
    );
    // A stage built on another inherits its SHELL.
    assert_eq!(def.stages[1].base, Base::Stage(0));
    assert_eq!(
        ops(&def, 1)[0],
        Op::Config(ConfigOp::Entrypoint(strings(&["/bin/bash", "-o", "pipefail", "-c", "run me"])))
    );
    assert!(lower_err("FROM busybox\nSHELL /bin/bash -c\n").starts_with("Dockerfile:2:"));
}

#[test]
fn stage_based_on_stage_inherits_env_and_workdir() {
    let def = lower("FROM busybox AS Base\nENV A=1\nWORKDIR app\nFROM BASE\nWORKDIR sub\nENV B=$A$FOO\n");
    assert_eq!(def.stages[0].name.as_deref(), Some("base"));
    assert_eq!(def.stages[1].base, Base::Stage(0));
    assert_eq!(ops(&def, 1)[0], Op::Workdir("/home/app/sub".into()));
    assert_eq!(ops(&def, 1)[1], Op::Config(ConfigOp::Env(pairs(&[("B", "1from-image")]))));
}

#[test]
fn expose_is_normalized() {
    let def = lower("FROM scratch\nENV P=\"8080 9090/udp\"\nEXPOSE 80 443/TCP $P 7000-7002/sctp 80/tcp\n");
    assert_eq!(
        ops(&def, 0)[1],
        Op::Config(ConfigOp::Expose(strings(&[
            "80/tcp",
            "443/tcp",
            "8080/tcp",
            "9090/udp",
            "7000/sctp",
            "7001/sctp",
            "7002/sctp"
        ])))
    );
    assert_eq!(lower_err("FROM scratch\nEXPOSE 80/icmp\n"), "Dockerfile:2:8: invalid proto: icmp");
    assert_eq!(lower_err("FROM scratch\nEXPOSE http\n"), "Dockerfile:2:8: invalid containerPort: http");
}

#[test]
fn volume_stopsignal_maintainer() {
    let def = lower(
        "FROM scratch\nENV D=/data\nVOLUME [\"$D\", \"/logs\"]\nVOLUME /a $D\nSTOPSIGNAL SIGKILL\nMAINTAINER Me <me@x>\n",
    );
    let ops = ops(&def, 0);
    assert_eq!(ops[1], Op::Config(ConfigOp::Volume(strings(&["/data", "/logs"]))));
    assert_eq!(ops[2], Op::Config(ConfigOp::Volume(strings(&["/a", "/data"]))));
    assert_eq!(ops[3], Op::Config(ConfigOp::StopSignal("SIGKILL".into())));
    assert_eq!(ops[4], Op::Config(ConfigOp::Maintainer("Me <me@x>".into())));
    assert_eq!(def.lint.len(), 1);
    assert_eq!(
        def.lint[0].short(),
        "MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (line 6)"
    );
    assert_eq!(lower_err("FROM scratch\nSTOPSIGNAL SIGNOPE\n"), "Dockerfile:2:12: Invalid signal: SIGNOPE");
}

#[test]
fn copy_from_by_name_index_and_image() {
    let def = lower(
        "FROM busybox AS one\nFROM busybox AS two\n\
         COPY --from=ONE /a /a\nCOPY --from=0 /b /b\nCOPY --from=alpine /c /c\n",
    );
    let froms: Vec<_> = ops(&def, 1)
        .iter()
        .map(|op| match op {
            Op::Copy(c) => c.from.clone(),
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        froms,
        vec![Some(CopyFrom::Stage(0)), Some(CopyFrom::Stage(0)), Some(CopyFrom::Image("alpine".into()))]
    );
}

#[test]
fn copy_from_later_or_own_stage_is_an_error() {
    assert_eq!(
        lower_err("FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\n"),
        "Dockerfile:2:6: cannot copy from stage \"b\", it needs to be defined before current stage \"a\""
    );
    assert_eq!(
        lower_err("FROM busybox\nCOPY --from=1 /x /x\nFROM busybox\n"),
        "Dockerfile:2:6: cannot copy from stage \"1\", it needs to be defined before current stage \"stage-0\""
    );
    assert_eq!(
        lower_err("FROM busybox AS a\nCOPY --from=a /x /x\n"),
        "Dockerfile:2:6: circular dependency detected on stage: a"
    );
    assert_eq!(lower_err("FROM busybox\nCOPY --from=7 /x /x\n"), "Dockerfile:2:6: invalid stage index 7");
    assert_eq!(
        lower_err("FROM busybox\nCOPY --chmod=rwx a /\n"),
        "Dockerfile:2:6: invalid chmod parameter: rwx"
    );
    assert_eq!(
        lower_err("FROM busybox\nCOPY --link=maybe a /\n"),
        "Dockerfile:2:6: expecting boolean value for flag --link, not: maybe"
    );
}

#[test]
fn errors_carry_locations() {
    // BuildKit suggests the closest instruction.
    assert_eq!(
        lower_err("FROM busybox\n\nFOO bar\n"),
        "Dockerfile:3:1: unknown instruction: FOO (did you mean FROM?)"
    );
    assert_eq!(
        lower_err("FROM busybox\nCOPPY a b\n"),
        "Dockerfile:2:1: unknown instruction: COPPY (did you mean COPY?)"
    );
    assert_eq!(lower_err("RUN x\nFROM busybox\n"), "Dockerfile:1:1: no build stage in current context");
    assert_eq!(lower_err(""), "Dockerfile:1:1: the Dockerfile cannot be empty");
    assert_eq!(lower_err("# just a comment\n"), "Dockerfile:1:1: file with no instructions");
    assert_eq!(lower_err("ARG A=1\n"), "Dockerfile:1:1: dockerfile contains no stages to build");
    assert_eq!(lower_err("ARG X\nFROM ${X}\n"), "Dockerfile:2:1: base name (${X}) should not be blank");
    assert_eq!(lower_err("FROM nope\n"), "Dockerfile:1:1: FROM nope: image nope not found");
    assert_eq!(
        lower_err("FROM busybox AS 1x\n"),
        "Dockerfile:1:17: invalid name for build stage: \"1x\", name can't start with a number or contain symbols"
    );
    assert_eq!(
        lower_err("ARG S=a\nFROM busybox AS a\nFROM busybox\nCOPY --from=$S /x /y\n"),
        "Dockerfile:4:6: variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround"
    );
    assert_eq!(
        lower_err("FROM busybox\nENV A=${B:?must_be_set}\n"),
        "Dockerfile:2:5: failed to process \"${B:?must_be_set}\": B: must_be_set"
    );
    assert_eq!(lower_err("FROM busybox\nENV =x\n"), "Dockerfile:2:5: ENV names can not be blank");
    assert_eq!(
        lower_err("FROM busybox\n  RUN --device=/dev/null true\n"),
        "Dockerfile:2:7: RUN --device is not supported yet"
    );
    let err = lower_with("FROM busybox\nFOO\n", &LowerOptions::default()).unwrap_err();
    assert_eq!(err.location(), &loc(2, 1));
}

#[test]
fn target_selects_a_stage() {
    let text = "FROM busybox AS Build\nFROM alpine AS final\n";
    assert_eq!(lower(text).target, 1);
    let options = LowerOptions { build_args: vec![], target: Some("BUILD".into()), ..Default::default() };
    assert_eq!(lower_with(text, &options).unwrap().target, 0);
    let options = LowerOptions { build_args: vec![], target: Some("nope".into()), ..Default::default() };
    assert_eq!(
        lower_with(text, &options).unwrap_err().to_string(),
        "Dockerfile:1:1: target stage \"nope\" could not be found"
    );
    // TARGETSTAGE is the target's name.
    let options = LowerOptions { build_args: vec![], target: Some("build".into()), ..Default::default() };
    let def = lower_with("FROM busybox AS build\nARG TARGETSTAGE\nRUN x\nFROM alpine\n", &options).unwrap();
    assert_eq!(run_op(&ops(&def, 0)[1]).build_args, strings(&["TARGETSTAGE=build"]));
}

/// `--platform` (LowerOptions::platform) sets the TARGET args and every stage's platform;
/// `FROM --platform` sets its stage's, normalized; BUILDPLATFORM stays the host's.
#[test]
fn platforms_of_the_build_and_of_each_stage() {
    let host = frontend::Platform::host();
    let arm64 = frontend::Platform::parse("linux/arm64").unwrap();
    let options = LowerOptions { platform: Some(arm64.clone()), ..Default::default() };
    let def = lower_with(
        "FROM --platform=$BUILDPLATFORM busybox AS b\nARG TARGETARCH BUILDARCH\nRUN x\n\
         FROM busybox\nARG TARGETPLATFORM\nRUN y\nFROM --platform=linux/arm/v7 busybox\n",
        &options,
    )
    .unwrap();
    assert!(def.warnings.is_empty(), "{:?}", def.warnings);
    assert_eq!(def.stages[0].platform, host);
    assert_eq!(def.stages[1].platform, arm64);
    assert_eq!(def.stages[2].platform.to_string(), "linux/arm/v7");
    assert_eq!(
        run_op(&ops(&def, 0)[1]).build_args,
        strings(&["TARGETARCH=arm64", &format!("BUILDARCH={}", host.architecture)])
    );
    assert_eq!(run_op(&ops(&def, 1)[1]).build_args, strings(&["TARGETPLATFORM=linux/arm64"]));
    // Without --platform everything is the host's.
    let def = lower("FROM --platform=linux/arm64/v8 busybox\nFROM busybox\n");
    assert_eq!(def.stages[0].platform, arm64);
    assert_eq!(def.stages[1].platform, host);
    let e = lower_with("FROM --platform=linux busybox\n", &LowerOptions::default()).unwrap_err();
    assert_eq!(e.to_string(), "Dockerfile:1:1: failed to parse platform linux: invalid platform");
}

#[test]
fn run_heredoc() {
    let def = lower("FROM busybox\nRUN <<EOF\necho a\necho b\nEOF\nRUN <<EOF bash\necho c\nEOF\nCMD x\n");
    let ops = ops(&def, 0);
    assert_eq!(run_op(&ops[0]).args, strings(&["/bin/sh", "-c", "echo a\necho b\n"]));
    assert_eq!(def.stages[0].steps[0].text, "RUN <<EOF (echo a...)");
    assert_eq!(run_op(&ops[1]).args, strings(&["/bin/sh", "-c", "<<EOF bash\necho c\nEOF"]));
    assert_eq!(ops[2], Op::Config(ConfigOp::Cmd(strings(&["/bin/sh", "-c", "x"]))));
    // A script with `#!`: a file of its own at /dev/pipes/NAME, run by path through the shell.
    let def = lower("FROM busybox\nRUN <<-SCRIPT\n\t#!/bin/sh\n\techo hi\n\tSCRIPT\n");
    let run = run_op(&def.stages[0].steps[0].op).clone();
    assert_eq!(run.args, strings(&["/bin/sh", "-c", "/dev/pipes/SCRIPT"]));
    assert_eq!(
        run.mounts,
        [RunMount::File {
            target: "/dev/pipes/SCRIPT".into(),
            content: "#!/bin/sh\necho hi\n".into(),
            mode: 0o755
        }]
    );
}

#[test]
fn crlf_and_bom() {
    let def = lower("\u{feff}FROM busybox\r\nRUN echo a \\\r\n  b\r\nENV A=1\r\n");
    assert_eq!(run_op(&ops(&def, 0)[0]).args[2], "echo a   b");
    assert_eq!(def.stages[0].steps[1].location, loc(4, 1));
    assert_eq!(ops(&def, 0)[1], Op::Config(ConfigOp::Env(pairs(&[("A", "1")]))));
}

#[test]
fn from_an_earlier_stage_by_name_or_index() {
    let def = lower("FROM busybox AS base\nENV X=1\nFROM base\nRUN echo $X\nFROM 0\n");
    assert_eq!(def.stages[1].base, Base::Stage(0));
    assert_eq!(def.stages[2].base, Base::Stage(0));
    // A number that is not an earlier stage is an image reference, as in Docker.
    assert!(lower_err("FROM busybox\nFROM 7\n").contains("image 7 not found"));
    // The stage inherits the earlier stage's ENV for expansion.
    let def = lower("FROM busybox AS base\nENV X=1\nFROM 0\nENV Y=$X\n");
    assert_eq!(ops(&def, 1), vec![Op::Config(ConfigOp::Env(pairs(&[("Y", "1")])))]);
}

fn file(name: &str, content: &str) -> InlineFile {
    InlineFile { name: name.into(), content: content.into() }
}

#[test]
fn copy_heredocs_expand_unless_quoted() {
    let def = lower(
        "FROM busybox\nENV NAME=world\nCOPY <<EOF <<'RAW' /dst/\nhello $NAME \"q\" 'x'\nEOF\nkeep $NAME\nRAW\n\
         COPY <<-EOF /one\n\tindented $NAME\n\tEOF\n",
    );
    let ops = ops(&def, 0);
    assert_eq!(
        ops[1],
        Op::Copy(CopyOp {
            exclude: vec![],
            parents: false,
            link: false,
            sources: vec![],
            heredocs: vec![file("EOF", "hello world \"q\" 'x'\n"), file("RAW", "keep $NAME\n")],
            dest: "/dst/".into(),
            from: None,
            chown: None,
            chmod: None,
            created_by: "COPY <<EOF <<RAW /dst/".into(),
        })
    );
    match &ops[2] {
        Op::Copy(c) => assert_eq!(c.heredocs, vec![file("EOF", "indented world\n")]),
        other => panic!("{other:?}"),
    }
    assert_eq!(def.stages[0].steps[2].location, loc(8, 1));
    assert_eq!(
        lower_err("FROM busybox\nCOPY a <<EOF\nx\nEOF\n"),
        "Dockerfile:2:8: COPY cannot accept a heredoc as a destination"
    );
}

#[test]
fn run_heredocs_anywhere_in_the_command() {
    let def = lower(
        "FROM busybox\nRUN cat <<A > /a && cat <<\"B\" > /b\na $X\nA\nb\nB\nRUN <<-EOF\n\techo tab\n\tEOF\n\
         RUN [\"cat\", \"<<EOF\"]\n",
    );
    let ops = ops(&def, 0);
    assert_eq!(
        run_op(&ops[0]).args,
        strings(&["/bin/sh", "-c", "cat <<A > /a && cat <<\"B\" > /b\na $X\nA\nb\nB"])
    );
    assert_eq!(run_op(&ops[1]).args, strings(&["/bin/sh", "-c", "echo tab\n"]));
    assert_eq!(def.stages[0].steps[1].text, "RUN <<-EOF (echo tab)");
    // Exec form has no heredocs: the next line is an instruction.
    assert_eq!(run_op(&ops[2]).args, strings(&["cat", "<<EOF"]));
    assert!(
        lower_err("FROM busybox\nRUN <<EOF\nunterminated\n").contains("Dockerfile:2:1: unterminated heredoc")
    );
}

#[test]
fn add_lowers_sources_urls_and_flags() {
    let sum = format!("sha256:{}", "ab".repeat(32));
    let def = lower(&format!(
        "FROM busybox\nENV V=1\nADD --chown=1:$V --chmod=644 a-$V.tar https://example.com/f.txt /d/\n\
         ADD --checksum={sum} https://example.com/x.tgz /x\nADD <<EOF /inline\n$V\nEOF\n"
    ));
    let ops = ops(&def, 0);
    assert_eq!(
        ops[1],
        Op::Add(AddOp {
            sources: strings(&["a-1.tar"]),
            urls: strings(&["https://example.com/f.txt"]),
            heredocs: vec![],
            dest: "/d/".into(),
            chown: Some("1:1".into()),
            chmod: Some(0o644),
            checksum: None,
            git: vec![],
            keep_git_dir: false,
            exclude: vec![],
            link: false,
            unpack: None,
            created_by: "ADD --chown=1:1 --chmod=644 a-1.tar https://example.com/f.txt /d/".into(),
        })
    );
    match &ops[2] {
        Op::Add(a) => assert_eq!((a.checksum.as_deref(), a.urls.len()), (Some(sum.as_str()), 1)),
        other => panic!("{other:?}"),
    }
    match &ops[3] {
        Op::Add(a) => assert_eq!(a.heredocs, vec![file("EOF", "1\n")]),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        lower_err(&format!("FROM busybox\nADD --checksum={sum} a /b\n")),
        "Dockerfile:2:5: checksum requires HTTP(S) or Git sources"
    );
    assert_eq!(
        lower_err("FROM busybox\nADD --checksum=sha256:abc https://e.com/a /b\n"),
        "Dockerfile:2:5: invalid checksum digest length"
    );
    let def = lower("FROM busybox\nADD --keep-git-dir https://h.example/a/b.git#main:sub /src\n");
    match &def.stages[0].steps[0].op {
        Op::Add(a) => {
            assert_eq!(a.git, ["https://h.example/a/b.git#main:sub"]);
            assert!(a.keep_git_dir && a.urls.is_empty() && a.sources.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        lower_err("FROM busybox\nADD --checksum=xyz git@h.example:a/b /src\n"),
        "Dockerfile:2:5: invalid git checksum \"xyz\": expected a commit id"
    );
    assert!(
        lower_err("FROM busybox\nADD --keep-git-dir a /b\n")
            .starts_with("Dockerfile:2:5: ADD --keep-git-dir")
    );
    // --exclude, --link (not with --chmod, as BuildKit), --unpack.
    let def = lower(
        "FROM busybox\nADD --exclude=x --exclude=y --link a /b\nADD --link --chmod=600 --unpack=false a /c\n",
    );
    let steps = &def.stages[0].steps;
    let (Op::Add(a), Op::Add(b)) = (&steps[0].op, &steps[1].op) else { panic!("{steps:?}") };
    assert_eq!((a.exclude.clone(), a.link, a.unpack), (strings(&["x", "y"]), true, None));
    assert_eq!((b.link, b.unpack), (false, Some(false)));
    assert_eq!(
        lower_err("FROM busybox\nADD a\n"),
        "Dockerfile:2:5: ADD requires at least two arguments, but only one was provided. Destination could not be determined"
    );
}

#[test]
fn healthcheck_lowers_like_docker() {
    let def = lower(
        "FROM busybox\nHEALTHCHECK NONE\nHEALTHCHECK CMD [\"curl\", \"-f\", \"x\"]\n\
         HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=1h --start-interval=0s --retries=3 \\\n  CMD curl -f x || exit 1\n",
    );
    let ops = ops(&def, 0);
    let none = Healthcheck {
        test: strings(&["NONE"]),
        interval: None,
        timeout: None,
        start_period: None,
        start_interval: None,
        retries: None,
    };
    assert_eq!(ops[0], Op::Config(ConfigOp::Healthcheck(none.clone())));
    assert_eq!(
        ops[1],
        Op::Config(ConfigOp::Healthcheck(Healthcheck {
            test: strings(&["CMD", "curl", "-f", "x"]),
            ..none.clone()
        }))
    );
    assert_eq!(
        ops[2],
        Op::Config(ConfigOp::Healthcheck(Healthcheck {
            test: strings(&["CMD-SHELL", "curl -f x || exit 1"]),
            interval: Some(90_000_000_000),
            timeout: Some(500_000_000),
            start_period: Some(3_600_000_000_000),
            start_interval: Some(0),
            retries: Some(3),
        }))
    );
    assert_eq!(
        lower_err("FROM busybox\nHEALTHCHECK --interval=10us CMD x\n"),
        "Dockerfile:2:13: Interval \"interval\" cannot be less than 1ms"
    );
    assert_eq!(
        lower_err("FROM busybox\nHEALTHCHECK --retries=-1 CMD x\n"),
        "Dockerfile:2:13: --retries cannot be negative (-1)"
    );
    assert_eq!(
        lower_err("FROM busybox\nHEALTHCHECK --intervall=1s CMD x\n"),
        "Dockerfile:2:13: unknown flag: --intervall (did you mean interval?)"
    );
    assert_eq!(
        lower_err("FROM busybox\nHEALTHCHECK CONNECT x\n"),
        "Dockerfile:2:13: Unknown type \"CONNECT\" in HEALTHCHECK (try CMD)"
    );
    assert_eq!(
        lower_err("FROM busybox\nHEALTHCHECK CMD\n"),
        "Dockerfile:2:1: Missing command after HEALTHCHECK CMD"
    );
    assert_eq!(
        lower_err("FROM busybox\nHEALTHCHECK NONE x\n"),
        "Dockerfile:2:1: HEALTHCHECK NONE takes no arguments"
    );
}

#[test]
fn onbuild_records_and_runs_triggers() {
    let def = lower(
        "FROM busybox AS base\nONBUILD RUN echo hi\nonbuild COPY <<EOF /f\nx\nEOF\n\
         FROM base\nENV A=1\nFROM triggers\nENV FOO=mine\n",
    );
    assert_eq!(
        ops(&def, 0),
        vec![
            Op::Config(ConfigOp::Onbuild("RUN echo hi".into())),
            Op::Config(ConfigOp::Onbuild("COPY <<EOF /f\nx\nEOF".into())),
        ]
    );
    // A stage built on `base` runs its triggers first, located at the FROM.
    let steps = &def.stages[1].steps;
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[0].location, loc(6, 1));
    assert_eq!(steps[0].text, "ONBUILD RUN echo hi");
    assert_eq!(run_op(&steps[0].op).args, strings(&["/bin/sh", "-c", "echo hi"]));
    match &steps[1].op {
        Op::Copy(c) => assert_eq!((c.heredocs.clone(), c.dest.as_str()), (vec![file("EOF", "x\n")], "/f")),
        other => panic!("{other:?}"),
    }
    // Triggers of an image, expanded with the new stage's env.
    let steps = &def.stages[2].steps;
    assert_eq!(steps[0].text, "ONBUILD RUN echo $FOO");
    assert_eq!(steps[1].op, Op::Config(ConfigOp::Env(pairs(&[("T", "base")]))));
    assert_eq!(steps[2].location, loc(9, 1));
    assert_eq!(
        lower_err("FROM busybox\nONBUILD ONBUILD RUN x\n"),
        "Dockerfile:2:1: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    );
    assert_eq!(
        lower_err("FROM busybox\nONBUILD FROM x\n"),
        "Dockerfile:2:1: FROM isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        lower_err("FROM busybox\nONBUILD maintainer x\n"),
        "Dockerfile:2:1: MAINTAINER isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        lower_err("FROM busybox\nONBUILD\n"),
        "Dockerfile:2:1: ONBUILD requires at least one argument"
    );
}

#[test]
fn actionable_errors_with_source_line() {
    let err = lower_with("FROM busybox\n  COPPY a b\n", &LowerOptions::default()).unwrap_err();
    assert_eq!(err.to_string(), "Dockerfile:2:3: unknown instruction: COPPY (did you mean COPY?)");
    assert_eq!(err.source_line(), Some("  COPPY a b"));
    assert_eq!(
        lower_err("FROM busybox\nCOPY --foo a b\n"),
        "Dockerfile:2:6: unknown flag: --foo (did you mean from?)"
    );
    assert_eq!(
        lower_err("FROM busybox\nCOPY --chown a b\n"),
        "Dockerfile:2:6: missing a value on flag: --chown"
    );
    assert_eq!(lower_err("FROM busybox\nRUN --bar x\n"), "Dockerfile:2:5: unknown flag: --bar");
    assert_eq!(
        lower_err("FROM busybox\nSHELL /bin/sh -c\n"),
        "Dockerfile:2:7: SHELL requires the arguments to be in JSON form"
    );
    assert_eq!(lower_err("FROM busybox\nUSER\n"), "Dockerfile:2:1: USER requires exactly one argument");
    assert_eq!(lower_err("FROM busybox\nENV\n"), "Dockerfile:2:1: ENV requires at least one argument");
    assert_eq!(lower_err("FROM busybox\nENV A\n"), "Dockerfile:2:5: ENV must have two arguments");
    assert_eq!(
        lower_err("FROM busybox\nCMD [\"a\", 1]\n"),
        "Dockerfile:2:5: when using JSON array syntax, arrays must be comprised of strings only"
    );
    assert_eq!(lower_err("FROM a b\n"), "Dockerfile:1:1: FROM requires either one or three arguments");
    let err = frontend::build_definition_bytes(
        "Dockerfile",
        b"FROM busybox\nRUN echo \xff\n",
        &LowerOptions::default(),
        &FakeResolver,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "Dockerfile:2:10: the Dockerfile is not valid UTF-8");
}

#[test]
fn parser_warnings_and_directives() {
    let def = lower("# syntax=docker/dockerfile:1\n# check=skip=all\nFROM busybox\nRUN a \\\n\n  b\n");
    assert_eq!(run_op(&ops(&def, 0)[0]).args[2], "a   b");
    // `# check=skip=all`: no build check warns.
    assert!(def.lint.is_empty() && def.warnings.is_empty(), "{:?}", def.lint);
    assert_eq!(def.notes.len(), 1);
    assert!(
        def.notes[0].starts_with("# syntax=docker/dockerfile:1: read by rbuild's own"),
        "{:?}",
        def.notes
    );
    for ok in ["docker.io/docker/dockerfile:1.7-labs", "docker/dockerfile-upstream:master@sha256:0123"] {
        assert_eq!(lower(&format!("# syntax={ok}\nFROM busybox\n")).notes.len(), 1, "{ok}");
    }
    assert_eq!(
        lower_err("# syntax=example.com/my/frontend:2\nFROM busybox\n"),
        "Dockerfile:1:1: # syntax=example.com/my/frontend:2: rbuild reads Dockerfiles with its own frontend and cannot run the frontend image example.com/my/frontend:2"
    );
    let parsed = frontend::parse("Dockerfile", "# syntax=x\nFROM a\n").unwrap();
    assert_eq!(parsed.directive("syntax"), Some("x"));
    assert_eq!(
        frontend::dump_ast("FROM a\nonbuild run [\"x\"]\n").unwrap(),
        "(from \"a\")\n(onbuild (run \"x\"))\n"
    );
}

/// No input makes the frontend panic: a deterministic sweep of Dockerfile-like fragments.
#[test]
fn no_panic_on_odd_inputs() {
    let pieces = [
        "FROM a",
        "FROM",
        "\n",
        "\r\n",
        " ",
        "\t",
        "\\",
        "`",
        "#",
        "# escape=`",
        "RUN",
        "COPY",
        "ADD",
        "<<",
        "<<-",
        "EOF",
        "'",
        "\"",
        "[",
        "]",
        ",",
        "--",
        "--x=",
        "=",
        "$",
        "${",
        "}",
        "ONBUILD",
        "HEALTHCHECK",
        "CMD",
        "ENV",
        "ARG",
        "é",
        "\u{feff}",
        "\u{0}",
        "AS",
        "x",
        "LABEL",
        "SHELL",
        "EXPOSE",
        "VOLUME",
        "WORKDIR",
        "USER",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..4000 {
        let mut text = String::new();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 24) as usize;
        for i in 0..len {
            let r = seed.rotate_left(i as u32 * 5) as usize;
            text.push_str(pieces[r % pieces.len()]);
            if r.is_multiple_of(3) {
                text.push(' ');
            }
        }
        let _ = frontend::dump_ast(&text);
        let _ = lower_with(&text, &LowerOptions::default());
        let _ = frontend::build_definition_bytes(
            "Dockerfile",
            &text.as_bytes()[..text.len() / 2],
            &LowerOptions::default(),
            &FakeResolver,
        );
    }
}

#[test]
fn needed_stages_follow_from_copy_and_run_mounts() {
    let def = lower(
        "FROM busybox AS a\nFROM busybox AS b\nFROM busybox AS c\nFROM a AS d\n\
         FROM busybox\nCOPY --from=b /x /x\nRUN --mount=type=cache,from=d,target=/c true\n",
    );
    assert_eq!(def.needed_stages(), [true, true, false, true, true]);
    assert_eq!(def.stages[4].dependencies(), [1, 3]);
    assert_eq!(def.stages[3].dependencies(), [0]);
}

#[test]
fn named_contexts_replace_stages_and_images_but_not_stage_references() {
    assert_eq!(frontend::context_key("docker.io/library/Alpine:latest"), "alpine");
    assert_eq!(frontend::context_key("alpine:3.19"), "alpine:3.19");
    let mut options = LowerOptions::default();
    options.named_contexts.insert("base".into(), "busybox:1".into());
    options.named_contexts.insert("node".into(), "alpine".into());
    options.named_contexts.insert("files".into(), "sha256:0123".into());
    let def = lower_with(
        "FROM scratch AS base\nRUN never\nFROM docker.io/library/node:latest\n\
         COPY --from=base /a /a\nCOPY --from=files /b /b\n",
        &options,
    )
    .unwrap();
    // The replaced stage is its context's image, without its instructions.
    assert_eq!(def.stages[0].base, Base::Image("busybox:1".into()));
    assert!(def.stages[0].steps.is_empty());
    assert_eq!(def.stages[1].base, Base::Image("alpine".into()));
    let from = |i: usize| match &def.stages[1].steps[i].op {
        Op::Copy(c) => c.from.clone(),
        other => panic!("{other:?}"),
    };
    // A stage's name still means the stage (which the context replaced).
    assert_eq!(from(0), Some(CopyFrom::Stage(0)));
    assert_eq!(from(1), Some(CopyFrom::Image("sha256:0123".into())));
}

/// A stage name given twice is a warning (DuplicateStageName), not an error, as in today's
/// BuildKit: FROM takes the last stage of that name before it, `COPY --from` and `--target` the
/// last one in the file.
#[test]
fn duplicate_stage_names_resolve_as_buildkit() {
    let def = lower(
        "FROM busybox AS a\nFROM scratch AS a\nFROM a AS b\nFROM busybox AS a\nFROM busybox\nCOPY --from=a /x /y\n",
    );
    assert_eq!(def.stages.len(), 5);
    assert_eq!(def.stages[2].base, Base::Stage(1));
    let Op::Copy(copy) = &def.stages[4].steps[0].op else { panic!("not a copy") };
    assert_eq!(copy.from, Some(CopyFrom::Stage(3)));
    assert_eq!(def.lint.iter().filter(|w| w.rule == "DuplicateStageName").count(), 2);
    let options = LowerOptions { target: Some("a".into()), ..Default::default() };
    assert_eq!(
        lower_with("FROM busybox AS a\nFROM scratch AS a\nFROM busybox\n", &options).unwrap().target,
        1
    );
    // The last "a" comes after the COPY: BuildKit's error, not the earlier "a".
    assert_eq!(
        lower_err("FROM busybox AS a\nFROM busybox AS c\nCOPY --from=a /x /y\nFROM scratch AS a\n"),
        "Dockerfile:3:6: cannot copy from stage \"a\", it needs to be defined before current stage \"c\""
    );
}
