//! The instructions that change the image config or the stage's state: ENV, LABEL, WORKDIR,
//! EXPOSE, VOLUME, STOPSIGNAL, SHELL, MAINTAINER, HEALTHCHECK, ONBUILD.

use super::*;
use hostutil::goparse::parse_go_duration;

/// An EXPOSE port BuildKit (go-connections' `nat.ParsePortSpecs`) would refuse.
#[derive(Debug, thiserror::Error)]
pub(super) enum PortError {
    #[error("invalid proto: {0}")]
    Proto(String),
    #[error("no port specified: {0}<empty>")]
    NoPort(String),
    #[error("invalid containerPort: {0}")]
    ContainerPort(String),
}

/// Normalizes one EXPOSE spec (`80`, `80/udp`, `8000-8002/tcp`) into `port/proto` entries.
pub(super) fn normalize_ports(spec: &str) -> Result<Vec<String>, PortError> {
    let parts: Vec<&str> = spec.split('/').collect();
    let (port, proto) = match parts.as_slice() {
        [port] => (*port, "tcp"),
        [port, "", ..] => (*port, "tcp"),
        [port, proto, ..] => (*port, *proto),
        [] => (spec, "tcp"),
    };
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(PortError::Proto(proto));
    }
    // `ip:hostPort:containerPort`: only the container port is exposed.
    let port = port.rsplit(':').next().unwrap_or(port);
    if port.is_empty() {
        return Err(PortError::NoPort(spec.to_string()));
    }
    let invalid = || PortError::ContainerPort(port.to_string());
    let (start, end) = match port.split_once('-') {
        Some((a, b)) => (a.parse::<u16>().map_err(|_| invalid())?, b.parse::<u16>().map_err(|_| invalid())?),
        None => {
            let p = port.parse::<u16>().map_err(|_| invalid())?;
            (p, p)
        }
    };
    if end < start {
        return Err(invalid());
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// Whether `signal` is one `moby/sys/signal.ParseSignal` accepts on Linux.
pub(super) fn valid_signal(signal: &str) -> bool {
    if let Ok(n) = signal.parse::<i64>() {
        return n != 0;
    }
    let upper = signal.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    const NAMES: [&str; 35] = [
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
        "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
        "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "UNUSED",
    ];
    if NAMES.contains(&name) || name == "RTMIN" || name == "RTMAX" {
        return true;
    }
    let rt = |prefix: &str, sep: char| {
        name.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix(sep))
            .and_then(|n| n.parse::<u8>().ok())
            .is_some_and(|n| (1..=15).contains(&n) || (prefix == "RTMAX" && (1..=14).contains(&n)))
    };
    rt("RTMIN", '+') || rt("RTMAX", '-')
}

/// BuildKit's `parseOptInterval`: `None` when not given; 0, or at least 1ms.
pub(super) fn healthcheck_interval(ctx: &Ctx<'_>, flags: &Flags, name: &str) -> Result<Option<u64>, Error> {
    let Some((value, pos)) = flags.get(name) else { return Ok(None) };
    if value.is_empty() {
        return Ok(None);
    }
    let d = parse_go_duration(value).map_err(|e| ctx.err(pos, e))?;
    if d == 0 {
        return Ok(Some(0));
    }
    if d < 1_000_000 {
        return Err(ctx.err(pos, format!("Interval \"{name}\" cannot be less than 1ms")));
    }
    Ok(Some(d as u64))
}

pub(super) fn lower_env_or_label(
    ctx: &mut Ctx<'_>,
    ins: &Instruction,
    state: &mut StageState,
) -> Result<Op, Error> {
    // Every pair is expanded against the environment before this instruction.
    let mut expanded = Vec::new();
    for (i, triple) in ins.args.chunks(3).enumerate() {
        let p = ins.arg_pos(i * 3);
        let k = triple.first().map_or("", String::as_str);
        let v = triple.get(1).map_or("", String::as_str);
        expanded.push((ctx.expand(k, &state.env, p)?, ctx.expand(v, &state.env, p)?));
    }
    Ok(if ins.name == "env" {
        for (k, v) in &expanded {
            set_env(&mut state.env, k, v);
            set_env(&mut state.config_env, k, v);
        }
        Op::Config(ConfigOp::Env(expanded))
    } else {
        Op::Config(ConfigOp::Label(expanded))
    })
}

pub(super) fn lower_workdir(
    ctx: &mut Ctx<'_>,
    ins: &Instruction,
    state: &mut StageState,
) -> Result<Op, Error> {
    let p = ins.args_pos;
    let path = ctx.expand(ins.args.first().map_or("", String::as_str), &state.env, p)?;
    if path.is_empty() {
        return Err(ctx.err(p, "cannot normalize nothing"));
    }
    let path = if path.starts_with('/') {
        gopath::clean(&path)
    } else {
        gopath::clean(&format!("/{}/{path}", state.workdir))
    };
    state.workdir = path.clone();
    Ok(Op::Workdir(path))
}

pub(super) fn lower_expose(
    ctx: &mut Ctx<'_>,
    ins: &Instruction,
    state: &mut StageState,
) -> Result<Op, Error> {
    let mut ports: Vec<String> = Vec::new();
    for (i, arg) in ins.args.iter().enumerate() {
        let p = ins.arg_pos(i);
        for word in ctx.expand_words(arg, &state.env, p)? {
            for port in normalize_ports(&word).map_err(|e| ctx.err(p, e))? {
                if !ports.contains(&port) {
                    ports.push(port);
                }
            }
        }
    }
    Ok(Op::Config(ConfigOp::Expose(ports)))
}

pub(super) fn lower_volume(
    ctx: &mut Ctx<'_>,
    ins: &Instruction,
    state: &mut StageState,
) -> Result<Op, Error> {
    let pos = ins_pos(ins);
    let mut volumes = Vec::new();
    for (i, word) in ins.args.iter().enumerate() {
        let v = ctx.expand(word, &state.env, ins.arg_pos(i))?;
        if v.is_empty() {
            return Err(ctx.err(pos, "VOLUME specified can not be an empty string"));
        }
        volumes.push(v);
    }
    Ok(Op::Config(ConfigOp::Volume(volumes)))
}

pub(super) fn lower_stopsignal(
    ctx: &mut Ctx<'_>,
    ins: &Instruction,
    state: &mut StageState,
) -> Result<Op, Error> {
    let value = ctx.expand(ins.args.first().map_or("", String::as_str), &state.env, ins.args_pos)?;
    if !valid_signal(&value) {
        return Err(ctx.err(ins.args_pos, format!("Invalid signal: {value}")));
    }
    Ok(Op::Config(ConfigOp::StopSignal(value)))
}

pub(super) fn lower_shell(ins: &Instruction, state: &mut StageState) -> Result<Op, Error> {
    state.shell = ins.args.clone();
    Ok(Op::Config(ConfigOp::Shell(ins.args.clone())))
}

/// MAINTAINER (its deprecation is the MaintainerDeprecated check's).
pub(super) fn lower_maintainer(ins: &Instruction) -> Result<Op, Error> {
    Ok(Op::Config(ConfigOp::Maintainer(ins.args.first().cloned().unwrap_or_default())))
}

pub(super) fn lower_healthcheck(ctx: &mut Ctx<'_>, ins: &Instruction, flags: &Flags) -> Result<Op, Error> {
    let pos = ins_pos(ins);
    let typ = ins.args.first().map(|t| t.to_uppercase()).unwrap_or_default();
    Ok(if typ == "NONE" {
        Op::Config(ConfigOp::Healthcheck(Healthcheck {
            test: vec!["NONE".into()],
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        }))
    } else {
        if typ != "CMD" {
            return Err(ctx.err(ins.args_pos, format!("Unknown type \"{typ}\" in HEALTHCHECK (try CMD)")));
        }
        let cmd: Vec<String> = ins.args.iter().skip(1).cloned().collect();
        if cmd.is_empty() {
            return Err(ctx.err(pos, "Missing command after HEALTHCHECK CMD"));
        }
        let mut test = vec![if ins.json { "CMD".to_owned() } else { "CMD-SHELL".to_owned() }];
        test.extend(cmd);
        let retries = match flags.get("retries") {
            None | Some(("", _)) => None,
            Some((v, fpos)) => {
                let n: i32 = v.parse().map_err(|_| {
                    ctx.err(fpos, format!("strconv.ParseInt: parsing \"{v}\": invalid syntax"))
                })?;
                if n < 0 {
                    return Err(ctx.err(fpos, format!("--retries cannot be negative ({n})")));
                }
                Some(n as u32)
            }
        };
        Op::Config(ConfigOp::Healthcheck(Healthcheck {
            test,
            interval: healthcheck_interval(ctx, flags, "interval")?,
            timeout: healthcheck_interval(ctx, flags, "timeout")?,
            start_period: healthcheck_interval(ctx, flags, "start-period")?,
            start_interval: healthcheck_interval(ctx, flags, "start-interval")?,
            retries,
        }))
    })
}

pub(super) fn lower_onbuild(ins: &Instruction, state: &mut StageState) -> Result<Op, Error> {
    // BuildKit's `Expression`: the text after ONBUILD, heredoc bodies appended.
    let original = ins.original.trim_start();
    let after = original.get(ins.keyword.len()..).unwrap_or_default().trim_start();
    let mut trigger = after.to_owned();
    for doc in &ins.heredocs {
        trigger.push('\n');
        trigger.push_str(&doc.content);
        trigger.push_str(&doc.name);
    }
    state.on_build.push(trigger.clone());
    Ok(Op::Config(ConfigOp::Onbuild(trigger)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(normalize_ports("80").unwrap(), ["80/tcp"]);
        assert_eq!(normalize_ports("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(normalize_ports("8000-8002/tcp").unwrap(), ["8000/tcp", "8001/tcp", "8002/tcp"]);
        assert_eq!(normalize_ports("80/icmp").unwrap_err().to_string(), "invalid proto: icmp");
        assert!(normalize_ports("http").is_err());
        assert!(normalize_ports("9-1").is_err());
    }

    #[test]
    fn signals() {
        assert!(
            valid_signal("SIGTERM")
                && valid_signal("kill")
                && valid_signal("9")
                && valid_signal("SIGRTMIN+3")
        );
        assert!(!valid_signal("SIGFOO") && !valid_signal("0"));
    }
}
