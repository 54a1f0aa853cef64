//! BuildKit's build checks, on the cases of BuildKit's own tests
//! (`frontend/dockerfile/dockerfile_check_test.go`): the same Dockerfile in, the same rule
//! names, messages and lines out. A case whose Dockerfile starts with an empty line keeps it
//! (the lines count from there), as in BuildKit's Go raw strings.

use frontend::{BaseConfig, ImageResolver, LowerOptions, build_definition};

struct Images;

impl ImageResolver for Images {
    fn resolve(&self, _: &str) -> Result<BaseConfig, frontend::ResolveError> {
        Ok(BaseConfig {
            env: vec!["PATH=/usr/bin:/bin".into()],
            working_dir: None,
            on_build: vec![],
            platform: None,
        })
    }
}

/// The build checks of `text` (every stage's, as `--check`), as (rule, message, line), sorted
/// by line and message as BuildKit's test harness sorts them.
fn lint_with(text: &str, args: &[(&str, &str)]) -> Vec<(String, String, usize)> {
    let options = LowerOptions {
        build_args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    };
    let def = build_definition("Dockerfile", text, &options, &Images).expect("lowers");
    let mut out: Vec<_> = def.lint.iter().map(|w| (w.rule.clone(), w.detail.clone(), w.line)).collect();
    out.sort_by(|a, b| (a.2, &a.1).cmp(&(b.2, &b.1)));
    out
}

fn lint(text: &str) -> Vec<(String, String, usize)> {
    lint_with(text, &[])
}

fn w(rule: &str, detail: &str, line: usize) -> (String, String, usize) {
    (rule.into(), detail.into(), line)
}

/// An image that is only ever linux/s390x (a registry image of one manifest).
struct S390x;

impl ImageResolver for S390x {
    fn resolve(&self, _: &str) -> Result<BaseConfig, frontend::ResolveError> {
        let platform = frontend::Platform::parse("linux/s390x").ok();
        Ok(BaseConfig { env: vec![], working_dir: None, on_build: vec![], platform })
    }
}

/// BuildKit's validateBaseImagePlatform: the image's os/architecture against the stage's
/// platform (the target's, or FROM --platform's); a variant alone does not count.
#[test]
fn invalid_base_image_platform() {
    let lint_for = |text: &str, platform: &str| -> Vec<(String, String, usize)> {
        let options = LowerOptions {
            platform: Some(frontend::Platform::parse(platform).unwrap()),
            ..Default::default()
        };
        let def = build_definition("Dockerfile", text, &options, &S390x).expect("lowers");
        def.lint.iter().map(|w| (w.rule.clone(), w.detail.clone(), w.line)).collect()
    };
    assert_eq!(
        lint_for("\nFROM img:1\n", "linux/arm64"),
        [w(
            "InvalidBaseImagePlatform",
            "Base image img:1 was pulled with platform \"linux/s390x\", expected \"linux/arm64\" for current build",
            2
        )]
    );
    assert_eq!(lint_for("\nFROM img:1\n", "linux/s390x"), []);
    assert_eq!(
        lint_for(
            "\nFROM --platform=$BUILDPLATFORM img:1 AS b\nFROM scratch\nCOPY --from=b / /\n",
            "linux/s390x"
        )
        .len(),
        1
    );
}

#[test]
fn stage_names_and_from_as_casing() {
    let t01 = "\n# warning: stage name should be lowercase\n#\nFROM scratch AS BadStageName\n\n\
               # warning: 'as' should match 'FROM' cmd casing.\n#\nFROM scratch as base2\n\nFROM scratch AS base3\n";
    assert_eq!(
        lint(t01),
        [
            w("StageNameCasing", "Stage name 'BadStageName' should be lowercase", 4),
            w("FromAsCasing", "'as' and 'FROM' keywords' casing do not match", 8)
        ]
    );
    let t02 = "\n# warning: 'AS' should match 'from' cmd casing.\n#\nfrom scratch AS base\n\nfrom scratch as base2\n";
    assert_eq!(lint(t02), [w("FromAsCasing", "'AS' and 'from' keywords' casing do not match", 4)]);
    let t14 = "\nFROM scratch AS scratch\nFROM scratch AS context\n";
    assert_eq!(
        lint(t14),
        [
            w(
                "ReservedStageName",
                "Stage name should not use the same name as reserved stage \"scratch\"",
                2
            ),
            w(
                "ReservedStageName",
                "Stage name should not use the same name as reserved stage \"context\"",
                3
            )
        ]
    );
    assert!(lint("\nFROM scratch\nFROM scratch AS a\n").is_empty());
}

#[test]
fn empty_continuation() {
    let t03 = "\nFROM scratch\n# warning: empty continuation line\nCOPY Dockerfile \\\n\n.\nCOPY Dockerfile \\\n.\n";
    assert_eq!(lint(t03), [w("NoEmptyContinuation", "Empty continuation line", 6)]);
}

#[test]
fn consistent_instruction_casing() {
    let case = |text: &str| lint(text);
    let msg = |cmd: &str, casing: &str| {
        format!("Command '{cmd}' should match the case of the command majority ({casing})")
    };
    assert_eq!(
        case("\n# warning\n#\nFrom scratch as base\nFROM scratch AS base2\n"),
        [w("ConsistentInstructionCasing", &msg("From", "uppercase"), 4)]
    );
    assert_eq!(
        case("\nFROM scratch\n# warning\ncopy Dockerfile /foo\nCOPY Dockerfile /bar\n"),
        [w("ConsistentInstructionCasing", &msg("copy", "uppercase"), 4)]
    );
    assert_eq!(
        case("\n# warning\n#\nfrOM scratch as base\nfrom scratch as base2\n"),
        [w("ConsistentInstructionCasing", &msg("frOM", "lowercase"), 4)]
    );
    assert_eq!(
        case("\nfrom scratch\n# warning\nCOPY Dockerfile /foo\ncopy Dockerfile /bar\n"),
        [w("ConsistentInstructionCasing", &msg("COPY", "lowercase"), 4)]
    );
    assert_eq!(
        case("\n# w\n#\nfrom scratch\nCOPY Dockerfile /foo\nCOPY Dockerfile /bar\nCOPY Dockerfile /baz\n"),
        [w("ConsistentInstructionCasing", &msg("from", "uppercase"), 4)]
    );
    assert_eq!(
        case("\n# w\n#\nFROM scratch\ncopy Dockerfile /foo\ncopy Dockerfile /bar\ncopy Dockerfile /baz\n"),
        [w("ConsistentInstructionCasing", &msg("FROM", "lowercase"), 4)]
    );
    assert!(case("\nfrom scratch\ncopy Dockerfile /foo\ncopy Dockerfile /bar\n").is_empty());
    assert!(case("\nFROM scratch\nCOPY Dockerfile /foo\nCOPY Dockerfile /bar\n").is_empty());
    assert!(case("\nFROM alpine\nRUN <<'EOT'\nenv\nEOT\n").is_empty(), "a heredoc's body is no instruction");
    // buildx's --check cases: a 0-0 tie is uppercase.
    assert_eq!(
        case("\nfrOM busybox as base\ncOpy Dockerfile .\n\t"),
        [
            w("ConsistentInstructionCasing", &msg("frOM", "uppercase"), 2),
            w("ConsistentInstructionCasing", &msg("cOpy", "uppercase"), 3)
        ]
    );
}

#[test]
fn json_args_maintainer_and_multiple_instructions() {
    let json = |cmd: &str| {
        format!("JSON arguments recommended for {cmd} to prevent unintended behavior related to OS signals")
    };
    assert_eq!(lint("\nFROM scratch\nCMD mycommand\n"), [w("JSONArgsRecommended", &json("CMD"), 3)]);
    assert_eq!(
        lint("\nFROM scratch\nENTRYPOINT mycommand\n"),
        [w("JSONArgsRecommended", &json("ENTRYPOINT"), 3)]
    );
    assert!(lint("\nFROM scratch\nSHELL [\"/usr/bin/customshell\"]\nCMD mycommand\n").is_empty());
    assert!(
        lint("\nFROM scratch AS base\nSHELL [\"/usr/bin/customshell\"]\n\nFROM base\nCMD mycommand\n")
            .is_empty()
    );
    assert_eq!(
        lint("\nFROM scratch\nMAINTAINER me@example.org\n"),
        [w("MaintainerDeprecated", "Maintainer instruction is deprecated in favor of using label", 3)]
    );
    let multiple = |cmd: &str| {
        format!(
            "Multiple {cmd} instructions should not be used in the same stage because only the last one will be used"
        )
    };
    let t33 = "\nFROM scratch\nENTRYPOINT [\"/myapp\"]\nENTRYPOINT [\"/myotherapp\"]\nCMD [\"/myapp\"]\nCMD [\"/myotherapp\"]\n\
               HEALTHCHECK CMD [\"/myapp\"]\nHEALTHCHECK CMD [\"/myotherapp\"]\n";
    assert_eq!(
        lint(t33),
        [
            w("MultipleInstructionsDisallowed", &multiple("ENTRYPOINT"), 3),
            w("MultipleInstructionsDisallowed", &multiple("CMD"), 5),
            w("MultipleInstructionsDisallowed", &multiple("HEALTHCHECK"), 7)
        ]
    );
    let t34 = "\nFROM scratch\nENTRYPOINT [\"/myapp\"]\nCMD [\"/myapp\"]\nHEALTHCHECK CMD [\"/myapp\"]\n\
               COPY <<EOF /a.txt\nHello, World!\nEOF\nENTRYPOINT [\"/myotherapp\"]\nCMD [\"/myotherapp\"]\n\
               HEALTHCHECK CMD [\"/myotherapp\"]\n";
    assert_eq!(
        lint(t34),
        [
            w("MultipleInstructionsDisallowed", &multiple("ENTRYPOINT"), 3),
            w("MultipleInstructionsDisallowed", &multiple("CMD"), 4),
            w("MultipleInstructionsDisallowed", &multiple("HEALTHCHECK"), 5)
        ]
    );
    let t35 = "\nFROM scratch AS a\nENTRYPOINT [\"/myapp\"]\nCMD [\"/myapp\"]\nHEALTHCHECK CMD [\"/myapp\"]\n\
               FROM a AS b\nENTRYPOINT [\"/myotherapp\"]\nCMD [\"/myotherapp\"]\nHEALTHCHECK CMD [\"/myotherapp\"]\n";
    assert!(lint(t35).is_empty());
}

#[test]
fn from_arguments_and_platforms() {
    for ok in [
        "\nARG base=scratch\nFROM $base\nCOPY Dockerfile .\n",
        "\nARG BUILDPLATFORM=linux/amd64\nFROM --platform=$BUILDPLATFORM scratch\nCOPY Dockerfile .\n",
        "\nFROM --platform=$BUILDPLATFORM scratch\nCOPY Dockerfile .\n",
        "\nARG DEBUG\nFROM scratch${DEBUG}\nCOPY Dockerfile .\n",
        "\nARG DEBUG\nFROM scra${DEBUG:-tch}\nCOPY Dockerfile .\n",
        "\nFROM --platform=linux/amd64 scratch AS my_amd64_stage\n",
        "\nFROM --platform=linux/amd64 scratch AS linux\n",
    ] {
        assert!(lint(ok).is_empty(), "{ok:?}: {:?}", lint(ok));
    }
    assert_eq!(
        lint("\nARG tag=latest\nFROM busybox:${tag}${version} AS b\nCOPY Dockerfile .\n"),
        [w("UndefinedArgInFrom", "FROM argument 'version' is not declared", 3)]
    );
    assert_eq!(
        lint("\nFROM --platform=$TARGETPLATFORM scratch\n"),
        [w(
            "RedundantTargetPlatform",
            "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
            2
        )]
    );
    assert_eq!(
        lint("\nFROM --platform=${TARGETPLATFORM} scratch\n"),
        [w(
            "RedundantTargetPlatform",
            "Setting platform to predefined ${TARGETPLATFORM} in FROM is redundant as this is the default behavior",
            2
        )]
    );
    assert_eq!(
        lint("\nFROM --platform=linux/amd64 scratch\n"),
        [w(
            "FromPlatformFlagConstDisallowed",
            "FROM --platform flag should not use constant value \"linux/amd64\"",
            2
        )]
    );
}

#[test]
fn workdir_key_value_expose_and_secrets() {
    assert_eq!(
        lint("\nFROM scratch\nWORKDIR app/\n"),
        [w(
            "WorkdirRelativePath",
            "Relative workdir \"app/\" can have unexpected results if the base image changes",
            3
        )]
    );
    assert!(lint("\nFROM scratch AS a\nWORKDIR /app\nFROM a AS b\nWORKDIR subdir/\n").is_empty());
    assert_eq!(
        lint("\nFROM scratch\nENV testkey value\nLABEL key value\n"),
        [
            w(
                "LegacyKeyValueFormat",
                "\"ENV key=value\" should be used instead of legacy \"ENV key value\" format",
                3
            ),
            w(
                "LegacyKeyValueFormat",
                "\"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format",
                4
            )
        ]
    );
    assert!(lint("\nFROM scratch\nENV testkey=value\nLABEL key=value\n").is_empty());
    assert_eq!(
        lint("\nFROM scratch\nEXPOSE 80/TcP 8080/TCP 8080/udp\n"),
        [
            w("ExposeProtoCasing", "Defined protocol '80/TcP' in EXPOSE instruction should be lowercase", 3),
            w(
                "ExposeProtoCasing",
                "Defined protocol '8080/TCP' in EXPOSE instruction should be lowercase",
                3
            )
        ]
    );
    let found = |p: &str| {
        format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{p}'")
    };
    assert_eq!(
        lint("\nFROM scratch\nEXPOSE 127.0.0.1:80:80 [::1]:8080:8080 5000:5000 8000\n"),
        [
            w("ExposeInvalidFormat", &found("127.0.0.1:80:80"), 3),
            w("ExposeInvalidFormat", &found("5000:5000"), 3),
            w("ExposeInvalidFormat", &found("[::1]:8080:8080"), 3)
        ]
    );
    let t44 = "# check=skip=InvalidDefinitionDescription\nFROM scratch\nARG SECRET_PASSPHRASE\nENV SUPER_Secret=foo\n\
               ENV password=bar secret=baz\nARG super_duper_secret_token=foo auth=bar\nENV apikey=bar sunflower=foo\n\
               ENV git_key=\nENV PUBLIC_KEY=\nARG public_token\nARG SECRET_PASSPHRASE_FILE\n\
               ENV password_file=bar secret_File=baz\nARG AUTH_MODULE_VERSION\n";
    let secret = |what: &str| format!("Do not use ARG or ENV instructions for sensitive data ({what})");
    assert_eq!(
        lint(t44),
        [
            w("SecretsUsedInArgOrEnv", &secret("ARG \"SECRET_PASSPHRASE\""), 3),
            w("SecretsUsedInArgOrEnv", &secret("ENV \"SUPER_Secret\""), 4),
            w("SecretsUsedInArgOrEnv", &secret("ENV \"password\""), 5),
            w("SecretsUsedInArgOrEnv", &secret("ENV \"secret\""), 5),
            w("SecretsUsedInArgOrEnv", &secret("ARG \"auth\""), 6),
            w("SecretsUsedInArgOrEnv", &secret("ARG \"super_duper_secret_token\""), 6),
            w("SecretsUsedInArgOrEnv", &secret("ENV \"apikey\""), 7),
            w("SecretsUsedInArgOrEnv", &secret("ENV \"git_key\""), 8)
        ]
    );
}

/// `# check=` on the first line, and `BUILDKIT_DOCKERFILE_CHECK`, which replaces it.
#[test]
fn check_options_skip_and_error() {
    let body = "FROM scratch as base\ncopy Dockerfile .\n";
    let from_as = w("FromAsCasing", "'as' and 'FROM' keywords' casing do not match", 2);
    let def = |first: &str, args: &[(&str, &str)]| {
        let options = LowerOptions {
            build_args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        };
        build_definition("Dockerfile", &format!("{first}\n{body}"), &options, &Images).unwrap()
    };
    assert!(def("#check=skip=all", &[]).lint.is_empty());
    assert!(def("#check=skip=ConsistentInstructionCasing,FromAsCasing;error=true", &[]).lint.is_empty());
    let d = def("#check=skip=ConsistentInstructionCasing;error=true", &[]);
    assert_eq!(
        d.lint.iter().map(|w| (w.rule.clone(), w.detail.clone(), w.line)).collect::<Vec<_>>(),
        std::slice::from_ref(&from_as)
    );
    assert!(d.check.error);
    let d = def(
        "#check=skip=all",
        &[("BUILDKIT_DOCKERFILE_CHECK", "skip=ConsistentInstructionCasing;error=true")],
    );
    assert_eq!(d.lint.len(), 1);
    assert!(d.check.error);
    let d = def("#check=error=true", &[("BUILDKIT_DOCKERFILE_CHECK", "skip=all")]);
    assert!(d.lint.is_empty() && !d.check.error);
    let err =
        build_definition("Dockerfile", "#check=bogus\nFROM scratch\n", &LowerOptions::default(), &Images)
            .unwrap_err()
            .to_string();
    assert_eq!(err, "Dockerfile:1:1: failed to parse check options: invalid check option \"bogus\"");
    assert_eq!(lint_with(&format!("#check=skip=ConsistentInstructionCasing\n{body}"), &[]), [from_as]);
}

#[test]
fn undefined_variables() {
    for ok in [
        "\nFROM scratch\nARG foo\nCOPY Dockerfile${foo} .\n",
        "\nFROM alpine AS base\nARG foo=Dockerfile\nFROM base\nCOPY $foo .\n",
        "\nFROM alpine\nRUN echo $PATH\n",
    ] {
        assert!(lint(ok).is_empty(), "{ok:?}: {:?}", lint(ok));
    }
    assert_eq!(
        lint("\nFROM alpine\nCOPY $foo .\nARG foo=bar\nRUN echo $foo\n"),
        [w("UndefinedVar", "Usage of undefined variable '$foo'", 3)]
    );
    assert_eq!(
        lint(
            "\nFROM alpine\nARG DIR_BINARIES=binaries/\nARG DIR_ASSETS=assets/\nARG DIR_CONFIG=config/\nCOPY $DIR_ASSET .\n\t"
        ),
        [w("UndefinedVar", "Usage of undefined variable '$DIR_ASSET' (did you mean $DIR_ASSETS?)", 6)]
    );
    assert_eq!(
        lint("\nFROM alpine\nENV PATH=$PAHT:/tmp/bin\n\t\t"),
        [w("UndefinedVar", "Usage of undefined variable '$PAHT' (did you mean $PATH?)", 3)]
    );
    // Every stage's for --check; a build reports the needed stages' only.
    let t32 = "\nFROM scratch AS first\nCOPY $foo .\nFROM scratch AS second\nCOPY $bar .\n";
    assert_eq!(
        lint(t32),
        [
            w("UndefinedVar", "Usage of undefined variable '$foo'", 3),
            w("UndefinedVar", "Usage of undefined variable '$bar'", 5)
        ]
    );
    let def = build_definition("Dockerfile", t32, &LowerOptions::default(), &Images).unwrap();
    let built: Vec<String> = def.lint_for_build().iter().map(|w| w.short()).collect();
    assert_eq!(built, ["UndefinedVar: Usage of undefined variable '$bar' (line 5)"]);
}

#[test]
fn invalid_default_arg_in_from() {
    let msg =
        |base: &str| format!("Default value for ARG {base} results in empty or invalid base image name");
    assert_eq!(
        lint_with("\nARG VERSION\nFROM busybox:$VERSION\n", &[("VERSION", "latest")]),
        [w("InvalidDefaultArgInFrom", &msg("busybox:$VERSION"), 3)]
    );
    assert_eq!(
        lint_with("\nARG IMAGE\nFROM $IMAGE\n", &[("IMAGE", "busybox:latest")]),
        [w("InvalidDefaultArgInFrom", &msg("$IMAGE"), 3)]
    );
    assert_eq!(
        lint_with("\nARG SFX=\"box:\"\nFROM busy${SFX}\n", &[("SFX", "box:latest")]),
        [w("InvalidDefaultArgInFrom", &msg("busy${SFX}"), 3)]
    );
    for ok in [
        "\nARG VERSION=\"latest\"\nFROM busybox:${VERSION}\n",
        "\nARG BUSYBOX_VARIANT=\"\"\nFROM busybox:stable${BUSYBOX_VARIANT}\n",
        "\n\tARG BUSYBOX_VARIANT\n\tFROM busybox:stable${BUSYBOX_VARIANT}\n\t",
    ] {
        assert!(lint_with(ok, &[("VERSION", "latest"), ("BUSYBOX_VARIANT", "-musl")]).is_empty(), "{ok:?}");
    }
}

#[test]
fn duplicate_stage_name() {
    assert_eq!(
        lint("\nFROM scratch AS b\nFROM scratch AS b\n"),
        [w("DuplicateStageName", "Duplicate stage name \"b\", stage names should be unique", 3)]
    );
    assert!(lint("\nFROM scratch AS b1\nFROM scratch AS b2\n").is_empty());
}

#[test]
fn definition_description() {
    // Experimental: on only when asked for, even with skip=all.
    let good = "# check=skip=all;experimental=InvalidDefinitionDescription\n# foo this is the foo\nARG foo=bar\n\n\
                # base this is the base image\nFROM scratch AS base\n\n# version this is the version number\n\
                ARG version=latest\n\n# baz this is the baz\nARG foo=baz bar=qux baz=quux\n#\nARG bit=bat\n\n\
                # comment for something other than ARG or FROM\nCOPY Dockerfile .\n";
    assert!(lint(good).is_empty(), "{:?}", lint(good));
    let bad = "# check=experimental=InvalidDefinitionDescription\n# bar this is the bar\nARG foo=bar\n\
               # BasE this is the BasE image\nFROM scratch AS base\n# definitely a bad comment\nARG version=latest\n\
               # definitely a bad comment\nARG foo=baz bar=qux baz=quux\n";
    let rule = "InvalidDefinitionDescription";
    assert_eq!(
        lint(bad),
        [
            w(rule, "Comment for ARG should follow the format: `# foo <description>`", 3),
            w(rule, "Comment for FROM should follow the format: `# base <description>`", 5),
            w(rule, "Comment for ARG should follow the format: `# version <description>`", 7),
            w(rule, "Comment for ARG should follow the format: `# <arg_key> <description>`", 9),
        ]
    );
    // Not experimental-enabled: nothing.
    assert!(lint("# bar this is the bar\nARG foo=bar\nFROM scratch\n").is_empty());
}

#[test]
fn check_comment_above_an_instruction() {
    // BuildKit merges a `# check=` right above an instruction into the checks made while
    // parsing it (here StageNameCasing and FromAsCasing); the rest of the file is unchanged.
    let text = "FROM scratch AS one\n# check=skip=StageNameCasing\nFROM scratch AS Two\nFROM scratch AS Three\n\
                # check=skip=FromAsCasing\nFROM scratch as four\nFROM scratch as five\n";
    assert_eq!(
        lint(text),
        [
            w("StageNameCasing", "Stage name 'Three' should be lowercase", 4),
            w("FromAsCasing", "'as' and 'FROM' keywords' casing do not match", 7),
        ]
    );
    // An empty `#` line between them ends the comment block: the check applies again.
    let text = "FROM scratch AS one\n# check=skip=StageNameCasing\n#\nFROM scratch AS Two\n";
    assert_eq!(lint(text), [w("StageNameCasing", "Stage name 'Two' should be lowercase", 4)]);
}

#[test]
fn check_comment_above_a_dispatched_instruction() {
    // Not only the parse-time checks: BuildKit merges the comment's config when it dispatches
    // the command too, so a skip above a CMD holds even with error=true for the file.
    let text = "# check=error=true\nFROM busybox\n# check=skip=JSONArgsRecommended\nCMD echo hi\nENTRYPOINT echo hi\n";
    assert_eq!(
        lint(text),
        [w(
            "JSONArgsRecommended",
            "JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related to OS signals",
            5
        )]
    );
    // The whole-file checks keep the file's configuration.
    let text = "FROM busybox AS a\n# check=skip=DuplicateStageName\nFROM busybox AS a\n";
    assert_eq!(
        lint(text),
        [w("DuplicateStageName", "Duplicate stage name \"a\", stage names should be unique", 3)]
    );
}
