//! `--change` (`import -c`, `commit -c`): Dockerfile config instructions applied to an image
//! config, each read exactly as the same line in a Dockerfile would be.

use cache::oci::ContainerConfig;
use frontend::{ConfigOp, Op};

/// Why a `--change` could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The line does not parse or lower as a Dockerfile instruction.
    #[error(transparent)]
    Dockerfile(#[from] frontend::Error),
    /// An instruction that makes no sense as a change (`RUN`, `COPY`, `FROM`...).
    #[error("{0} is not a valid change command")]
    NotAllowed(String),
}

/// The instructions docker accepts as a change (its `validCommitCommands`).
const CHANGE_INSTRUCTIONS: [&str; 11] = [
    "cmd",
    "entrypoint",
    "env",
    "expose",
    "healthcheck",
    "label",
    "onbuild",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// The image a change's `FROM` names: only its ENV and WORKDIR are asked for (to expand
/// variables and resolve a relative WORKDIR), and they are the config's being changed.
const CHANGE_BASE: &str = "rbuild-change-base";

struct ChangeBase<'a>(&'a ContainerConfig);

impl frontend::ImageResolver for ChangeBase<'_> {
    fn resolve(&self, _reference: &str) -> Result<frontend::BaseConfig, frontend::ResolveError> {
        Ok(frontend::BaseConfig {
            env: self.0.env.clone().unwrap_or_default(),
            working_dir: self.0.working_dir.clone(),
            on_build: Vec::new(),
            platform: None,
        })
    }
}

/// Applies `changes` to `config` in order, each read as a Dockerfile line is (variables
/// expanded with the config's ENV, a relative WORKDIR against its WORKDIR, the JSON or shell
/// form of CMD and ENTRYPOINT). As in a build, an ENTRYPOINT clears the CMD unless a CMD came
/// before it among the changes. Errors name the change as `--change:LINE:COL`.
pub fn apply_changes(config: &mut ContainerConfig, changes: &[String]) -> Result<(), ChangeError> {
    if changes.is_empty() {
        return Ok(());
    }
    // Applied to a copy: a change that fails leaves the config as it was.
    let mut changed = config.clone();
    let text = changes.join("\n");
    for ins in frontend::parse("--change", &text)?.instructions {
        if !CHANGE_INSTRUCTIONS.contains(&ins.name.as_str()) {
            return Err(ChangeError::NotAllowed(ins.name));
        }
    }
    let dockerfile = format!("FROM {CHANGE_BASE}\n{text}\n");
    let definition = frontend::build_definition(
        "--change",
        &dockerfile,
        &frontend::LowerOptions::default(),
        &ChangeBase(&changed),
    )
    .map_err(|e| without_from(e, &text))?;
    let mut cmd_set = false;
    for step in &definition.stages[definition.target].steps {
        match &step.op {
            Op::Workdir(dir) => changed.working_dir = Some(dir.clone()),
            Op::Config(op) => {
                crate::apply_config(&mut changed, op, cmd_set);
                cmd_set |= matches!(op, ConfigOp::Cmd(_));
            }
            _ => return Err(ChangeError::NotAllowed(step.text.clone())),
        }
    }
    *config = changed;
    Ok(())
}

/// An error located in the lowered text (the changes after a `FROM` line), located in the
/// changes themselves.
fn without_from(e: frontend::Error, changes: &str) -> frontend::Error {
    match e {
        frontend::Error::Syntax { mut location, message, .. } if location.line > 1 => {
            location.line -= 1;
            let source_line = changes.lines().nth(location.line - 1).map(str::to_string);
            frontend::Error::Syntax { location, message, source_line }
        }
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(c: &mut ContainerConfig, changes: &[&str]) -> Result<(), ChangeError> {
        apply_changes(c, &changes.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn changes_apply_in_order_with_expansion() {
        let mut c = ContainerConfig {
            env: Some(vec!["PATH=/bin".into(), "HOME=/root".into()]),
            cmd: Some(vec!["sh".into()]),
            working_dir: Some("/srv".into()),
            ..Default::default()
        };
        let changes = [
            "ENV GREETING=hi HOMEDIR=$HOME",
            "LABEL a=b",
            "WORKDIR app",
            "ENTRYPOINT [\"/bin/echo\"]",
            "EXPOSE 80",
        ];
        apply(&mut c, &changes).unwrap();
        assert_eq!(c.env_get("HOMEDIR"), Some("/root"));
        assert_eq!(c.env_get("GREETING"), Some("hi"));
        assert_eq!(c.working_dir.as_deref(), Some("/srv/app"));
        assert_eq!(c.entrypoint, Some(vec!["/bin/echo".to_string()]));
        assert_eq!(c.cmd, None, "ENTRYPOINT without a CMD in the changes clears CMD");
        assert!(c.exposed_ports.unwrap().contains_key("80/tcp"));
        assert_eq!(c.labels.unwrap()["a"], "b");
    }

    /// What `import -c` took before it shared this path (its own hand-written parser).
    #[test]
    fn import_changes_of_every_form() {
        let mut c = ContainerConfig::default();
        let changes = [
            "CMD [\"/bin/sh\", \"-c\", \"echo hi\"]",
            "ENV A=1 B=\"two words\"",
            "ENV C three four",
            "EXPOSE 80 53/udp",
            "workdir /srv",
            "USER app",
            "STOPSIGNAL SIGINT",
            "VOLUME /data",
        ];
        apply(&mut c, &changes).unwrap();
        assert_eq!(c.cmd.as_deref().unwrap()[2], "echo hi");
        assert_eq!(c.env.as_deref().unwrap(), ["A=1", "B=two words", "C=three four"]);
        assert!(c.exposed_ports.as_ref().unwrap().contains_key("53/udp"));
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!((c.user.as_deref(), c.stop_signal.as_deref()), (Some("app"), Some("SIGINT")));
        assert!(c.volumes.unwrap().contains_key("/data"));
        let mut shell = ContainerConfig::default();
        apply(&mut shell, &["CMD echo hi"]).unwrap();
        assert_eq!(shell.cmd.unwrap(), ["/bin/sh", "-c", "echo hi"]);
    }

    #[test]
    fn bad_changes_are_refused_with_the_reason() {
        let mut c = ContainerConfig::default();
        let e = apply(&mut c, &["RUN true"]).unwrap_err();
        assert!(matches!(&e, ChangeError::NotAllowed(i) if i == "run"), "{e}");
        assert_eq!(e.to_string(), "run is not a valid change command");
        let e = apply(&mut c, &["LABEL a=b", "ENV"]).unwrap_err();
        assert!(matches!(e, ChangeError::Dockerfile(_)), "{e}");
        assert!(e.to_string().starts_with("--change:2:"), "{e}");
        assert_eq!(c, ContainerConfig::default(), "a failed change leaves the config as it was");
    }
}
