//! BuildKit's build checks (its Dockerfile linter): the rules, with BuildKit's names,
//! descriptions, messages and documentation URLs, and the `# check=` configuration. The
//! lowering pass runs them (`lower/lint.rs`) on every build; `rbuild build --check` runs only
//! them. Read from moby/buildkit's `frontend/dockerfile/linter/ruleset.go` and `linter.go`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    pub description: &'static str,
    pub experimental: bool,
}

impl Rule {
    /// `https://docs.docker.com/go/dockerfile/rule/<kebab-case name>/`, as BuildKit's.
    pub fn url(&self) -> String {
        let bytes = self.name.as_bytes();
        let mut kebab = String::new();
        for (i, &b) in bytes.iter().enumerate() {
            if b.is_ascii_uppercase() {
                let prev_lower = i > 0 && bytes[i - 1].is_ascii_lowercase();
                let next_lower = bytes.get(i + 1).is_some_and(u8::is_ascii_lowercase);
                if i != 0 && (prev_lower || next_lower) {
                    kebab.push('-');
                }
                kebab.push(b.to_ascii_lowercase() as char);
            } else {
                kebab.push(b as char);
            }
        }
        format!("https://docs.docker.com/go/dockerfile/rule/{kebab}/")
    }
}

macro_rules! rules {
    ($($id:ident $name:literal $desc:literal $exp:literal;)*) => {
        $(pub const $id: Rule = Rule { name: $name, description: $desc, experimental: $exp };)*
        /// Every rule, in BuildKit's order.
        pub const RULES: &[Rule] = &[$($id),*];
    };
}

rules! {
    STAGE_NAME_CASING "StageNameCasing" "Stage names should be lowercase" false;
    FROM_AS_CASING "FromAsCasing" "The 'as' keyword should match the case of the 'from' keyword" false;
    NO_EMPTY_CONTINUATION "NoEmptyContinuation" "Empty continuation lines will become errors in a future release" false;
    CONSISTENT_INSTRUCTION_CASING "ConsistentInstructionCasing" "All commands within the Dockerfile should use the same casing (either upper or lower)" false;
    DUPLICATE_STAGE_NAME "DuplicateStageName" "Stage names should be unique" false;
    RESERVED_STAGE_NAME "ReservedStageName" "Reserved words should not be used as stage names" false;
    JSON_ARGS_RECOMMENDED "JSONArgsRecommended" "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals" false;
    MAINTAINER_DEPRECATED "MaintainerDeprecated" "The MAINTAINER instruction is deprecated, use a label instead to define an image author" false;
    UNDEFINED_ARG_IN_FROM "UndefinedArgInFrom" "FROM command must use declared ARGs" false;
    WORKDIR_RELATIVE_PATH "WorkdirRelativePath" "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes" false;
    UNDEFINED_VAR "UndefinedVar" "Variables should be defined before their use" false;
    MULTIPLE_INSTRUCTIONS_DISALLOWED "MultipleInstructionsDisallowed" "Multiple instructions of the same type should not be used in the same stage" false;
    LEGACY_KEY_VALUE_FORMAT "LegacyKeyValueFormat" "Legacy key/value format with whitespace separator should not be used" false;
    INVALID_BASE_IMAGE_PLATFORM "InvalidBaseImagePlatform" "Base image platform does not match expected target platform" false;
    REDUNDANT_TARGET_PLATFORM "RedundantTargetPlatform" "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior" false;
    SECRETS_USED_IN_ARG_OR_ENV "SecretsUsedInArgOrEnv" "Sensitive data should not be used in the ARG or ENV commands" false;
    INVALID_DEFAULT_ARG_IN_FROM "InvalidDefaultArgInFrom" "Default value for global ARG results in an empty or invalid base image name" false;
    FROM_PLATFORM_FLAG_CONST_DISALLOWED "FromPlatformFlagConstDisallowed" "FROM --platform flag should not use a constant value" false;
    COPY_IGNORED_FILE "CopyIgnoredFile" "Attempting to Copy file that is excluded by .dockerignore" false;
    INVALID_DEFINITION_DESCRIPTION "InvalidDefinitionDescription" "Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment." true;
    EXPOSE_PROTO_CASING "ExposeProtoCasing" "Protocol in EXPOSE instruction should be lowercase" false;
    EXPOSE_INVALID_FORMAT "ExposeInvalidFormat" "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release" false;
}

/// One warning of a build check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LintWarning {
    pub rule: String,
    pub description: String,
    pub url: String,
    /// The rule's message for this place (`Stage name 'X' should be lowercase`).
    pub detail: String,
    /// The first line of the instruction it is about (1-based).
    pub line: usize,
    /// The stage it was found in by a rule that BuildKit runs while dispatching the stage:
    /// a build reports those only for the stages the target needs (`--check` for all).
    pub stage: Option<usize>,
}

impl LintWarning {
    /// buildx's short form: `Rule: detail (line N)`.
    pub fn short(&self) -> String {
        format!("{}: {} (line {})", self.rule, self.detail, self.line)
    }
}

/// `# check=skip=A,B;error=true;experimental=C` (or the `BUILDKIT_DOCKERFILE_CHECK` build arg).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckConfig {
    pub skip_all: bool,
    pub skip: BTreeSet<String>,
    pub experimental_all: bool,
    pub experimental: BTreeSet<String>,
    /// `error=true`: any warning fails the build.
    pub error: bool,
    /// The configuration at an instruction's first line where a `# check=` in the comments
    /// right above it changes it ([`CheckConfig::merged_with_comments`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_line: BTreeMap<usize, CheckConfig>,
}

impl CheckConfig {
    /// BuildKit's `ParseLintOptions`: at most three `;`-separated `key=value` options.
    pub fn parse(value: &str) -> Result<CheckConfig, String> {
        let mut c = CheckConfig::default();
        let value = value.trim();
        if value.is_empty() {
            return Ok(c);
        }
        for part in value.splitn(3, ';') {
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!("invalid check option {part:?}"));
            };
            let v = v.trim();
            let names = || v.split(',').map(|s| s.trim().to_string()).collect::<BTreeSet<_>>();
            match k.trim() {
                "skip" if v == "all" => c.skip_all = true,
                "skip" => c.skip = names(),
                "experimental" if v == "all" => c.experimental_all = true,
                "experimental" => c.experimental = names(),
                "error" => {
                    c.error = match v {
                        "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
                        "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
                        _ => return Err(format!("failed to parse check option {part:?}: invalid syntax")),
                    }
                }
                k => return Err(format!("invalid check option {k:?}")),
            }
        }
        Ok(c)
    }

    /// BuildKit's `WithMergedConfigFromComments`: the first `check=` among the comments right
    /// above an instruction adds its skips and experimental rules to this configuration, for
    /// the checks BuildKit makes while parsing or dispatching that instruction (every rule but
    /// NoEmptyContinuation, ConsistentInstructionCasing, ReservedStageName and
    /// DuplicateStageName, which it runs over the whole file). Only the value's first word
    /// counts; a value that does not parse leaves the configuration as it is.
    pub fn merged_with_comments(&self, comments: &[String]) -> CheckConfig {
        for comment in comments {
            let mut parser = crate::parser::DirectiveParser::default();
            let Ok(Some(d)) = parser.parse_line(&format!("#{comment}")) else { continue };
            if d.name != "check" {
                continue;
            }
            let word = d.value.split(' ').next().unwrap_or_default();
            let Ok(other) = CheckConfig::parse(word) else { return self.clone() };
            let mut merged = self.clone();
            merged.by_line.clear();
            merged.experimental_all |= other.experimental_all;
            merged.experimental.extend(other.experimental);
            merged.skip_all |= other.skip_all;
            merged.skip.extend(other.skip);
            return merged;
        }
        self.clone()
    }

    /// Whether `rule` runs for the instruction starting at `line`.
    pub fn enabled_at(&self, rule: &Rule, line: usize) -> bool {
        self.by_line.get(&line).unwrap_or(self).enabled(rule)
    }

    /// Whether `rule` runs (BuildKit's `Linter.Run`: `skip=` never turns an experimental rule
    /// off, and only `experimental=` turns it on).
    pub fn enabled(&self, rule: &Rule) -> bool {
        if rule.experimental {
            self.experimental_all || self.experimental.contains(rule.name)
        } else {
            !self.skip_all && !self.skip.contains(rule.name)
        }
    }
}

/// The warnings of one build, as the rules fire.
#[derive(Debug, Default)]
pub(crate) struct Linter {
    pub config: CheckConfig,
    pub warnings: Vec<LintWarning>,
}

impl Linter {
    /// A check about the instruction starting at `line` (a `# check=` right above it applies).
    pub fn run(&mut self, rule: &Rule, line: usize, stage: Option<usize>, detail: String) {
        if self.config.enabled_at(rule, line) {
            self.push(rule, line, stage, detail);
        }
    }

    /// [`Linter::run`] for a check made while parsing `ins`.
    pub fn run_at(&mut self, ins: &crate::parser::Instruction, rule: &Rule, detail: String) {
        self.run(rule, ins.start_line, None, detail);
    }

    /// A check BuildKit runs over the whole file: only the file's configuration applies.
    pub fn run_global(&mut self, rule: &Rule, line: usize, detail: String) {
        if self.config.enabled(rule) {
            self.push(rule, line, None, detail);
        }
    }

    fn push(&mut self, rule: &Rule, line: usize, stage: Option<usize>, detail: String) {
        self.warnings.push(LintWarning {
            rule: rule.name.into(),
            description: rule.description.into(),
            url: rule.url(),
            detail,
            line,
            stage,
        });
    }
}

/// Whether `s` parses as distribution's normalized image reference
/// (`[domain[:port]/]path[:tag][@digest]`, lower-case path components, not a bare 64-hex id).
pub fn is_valid_reference(s: &str) -> bool {
    if s.is_empty() || s.len() > 255 + 200 {
        return false;
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let Some((alg, hex)) = d.split_once(':') else { return false };
        let alg_ok = alg.starts_with(|c: char| c.is_ascii_alphabetic())
            && alg.chars().all(|c| c.is_ascii_alphanumeric() || "-_+.".contains(c));
        if !alg_ok || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return false;
        }
    }
    // The tag is after the last ':' that follows the last '/'.
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let mut chars = t.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !first_ok || t.len() > 128 || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
            return false;
        }
    }
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    if name.len() == 64 && name.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
        return false;
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let domain = parts.remove(0);
        let host = domain.split(':').next().unwrap_or("");
        let host_ok = !host.is_empty()
            && host.split('.').all(|c| {
                !c.is_empty()
                    && !c.starts_with('-')
                    && !c.ends_with('-')
                    && c.chars().all(|x| x.is_ascii_alphanumeric() || x == '-')
            });
        if !host_ok {
            return false;
        }
    }
    parts.iter().all(|p| path_component(p))
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn path_component(p: &str) -> bool {
    let b = p.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: `.`, `_`, `__`, or a run of `-`, between alphanumerics.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => i += if b.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || !b.get(i).is_some_and(|&c| alnum(c)) {
            return false;
        }
    }
    true
}

/// `SecretsUsedInArgOrEnv`'s test: a name with a secret-ish word (`password`, `token`...) as
/// one of its `_`-separated parts, and no `public`, `file` or `version` part.
pub fn is_secret_name(name: &str) -> bool {
    let parts: Vec<String> = name.split('_').map(str::to_ascii_lowercase).collect();
    let deny = [
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    let allow = ["public", "file", "version"];
    parts.iter().any(|p| deny.contains(&p.as_str())) && !parts.iter().any(|p| allow.contains(&p.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_kebab_case() {
        assert_eq!(
            JSON_ARGS_RECOMMENDED.url(),
            "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
        );
        assert_eq!(
            FROM_PLATFORM_FLAG_CONST_DISALLOWED.url(),
            "https://docs.docker.com/go/dockerfile/rule/from-platform-flag-const-disallowed/"
        );
    }

    #[test]
    fn check_options() {
        let c = CheckConfig::parse("skip=A, B;error=true").unwrap();
        assert!(c.error && c.skip.contains("A") && c.skip.contains("B"));
        assert!(CheckConfig::parse("skip=all").unwrap().skip_all);
        assert_eq!(CheckConfig::parse("nope").unwrap_err(), "invalid check option \"nope\"");
        assert_eq!(CheckConfig::parse("foo=bar").unwrap_err(), "invalid check option \"foo\"");
        let c = CheckConfig::parse("skip=all;experimental=InvalidDefinitionDescription").unwrap();
        assert!(c.enabled(&INVALID_DEFINITION_DESCRIPTION) && !c.enabled(&STAGE_NAME_CASING));
    }

    #[test]
    fn references() {
        for ok in [
            "busybox",
            "busybox:stable",
            "localhost:5000/a/b:1",
            "docker.io/library/alpine@sha256:0123456789abcdef0123456789abcdef",
            "a__b.c-d---e",
            "scratch",
        ] {
            assert!(is_valid_reference(ok), "{ok}");
        }
        for bad in ["", "busybox:", "Alpine", "a//b", "-a", &"a".repeat(64).replace('a', "f")] {
            assert!(!is_valid_reference(bad), "{bad}");
        }
    }

    #[test]
    fn secret_names() {
        for yes in [
            "SECRET_PASSPHRASE",
            "SUPER_Secret",
            "password",
            "super_duper_secret_token",
            "auth",
            "apikey",
            "git_key",
        ] {
            assert!(is_secret_name(yes), "{yes}");
        }
        for no in [
            "sunflower",
            "PUBLIC_KEY",
            "public_token",
            "SECRET_PASSPHRASE_FILE",
            "password_file",
            "AUTH_MODULE_VERSION",
        ] {
            assert!(!is_secret_name(no), "{no}");
        }
    }
}
