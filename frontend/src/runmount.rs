//! `RUN --mount`, `--network` and `--security` as BuildKit's Dockerfile frontend reads them.
//!
//! BuildKit reads a `--mount` value twice. When the file is parsed (`instructions.Parse`, before
//! anything is dispatched) only the CSV syntax and `from` are checked ([`precheck_mount`]): a
//! `from` cannot use variables. When the RUN is dispatched, every value is expanded with the
//! RUN's environment and the whole mount is validated ([`parse_mount`], BuildKit's `parseMount`),
//! then turned into what the step mounts ([`lower_mount`], BuildKit's `dispatchRunMounts`,
//! `dispatchSecret`). `--network` and `--security` are checked at parse time, unexpanded.
//!
//! Everything here is pure: errors are BuildKit's messages, located by the caller.

use hostutil::goparse::{self, CsvError, csv_fields};
use hostutil::gopath;

use crate::expand::ExpandError;
use crate::parser::{go_quote, suggest};
use crate::{CacheSharing, CopyFrom, RunMount, RunNetwork, RunSecurity};

/// A `RUN --mount` (or `--network`, `--security`) value BuildKit would refuse, in its words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountFlagError {
    #[error("failed to parse csv mounts: {0}")]
    Csv(CsvError),
    #[error("'from' doesn't support variable expansion, define alias stage instead")]
    FromVariable,
    #[error("failed to process \"{word}\": {error}")]
    Expand { word: String, error: ExpandError },
    #[error("unexpected key '{key}' for mount type '{typ}'")]
    KeyForType { key: String, typ: &'static str },
    #[error("invalid field '{0}' must be a key=value pair")]
    NotKeyValue(String),
    #[error("invalid value for {key}: {value}")]
    Value { key: String, value: String },
    #[error("unsupported mount type {}{}", go_quote(value), did_you_mean(suggestion))]
    Type { value: String, suggestion: Option<String> },
    #[error("unsupported sharing value {}{}", go_quote(value), did_you_mean(suggestion))]
    Sharing { value: String, suggestion: Option<String> },
    #[error("invalid value {value} for {key}")]
    Number { key: &'static str, value: String },
    #[error("unexpected key '{key}' in '{field}'{}", did_you_mean(suggestion))]
    Key { key: String, field: String, suggestion: Option<String> },
    #[error("{name} not allowed for {} type mounts", go_quote(typ))]
    NotAllowed { name: &'static str, typ: &'static str },
    #[error("secret mount should not have a from")]
    SecretFrom,
    #[error("secret mount should not define sharing")]
    SecretSharing,
    #[error("invalid secret mount. one of source, target required")]
    SecretTarget,
    #[error("both source and id can't be set")]
    SecretSourceAndId,
    #[error("invalid cache sharing set for {0} mount")]
    SharingNotCache(&'static str),
    #[error("invalid mount target {}", go_quote(.0))]
    Target(String),
    #[error("invalid network mode {}", go_quote(.0))]
    Network(String),
    #[error("security {} is not valid", go_quote(.0))]
    Security(String),
}

/// BuildKit's hint after a misspelled value: ` (did you mean cache?)`.
fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default()
}

/// `type=` of a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    fn name(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

const MOUNT_TYPES: [&str; 5] = ["bind", "cache", "tmpfs", "secret", "ssh"];
const SHARING_MODES: [&str; 3] = ["shared", "private", "locked"];
/// The keys BuildKit suggests from, in its order.
const MOUNT_KEYS: [&str; 19] = [
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// BuildKit's `instructions.Mount`: one `--mount` after expansion and validation, before its
/// defaults and the WORKDIR are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    pub typ: MountType,
    /// `from=` after expansion (empty when not given).
    pub from: String,
    pub source: String,
    /// `target=`/`dst=`/`destination=` as written (after expansion).
    pub target: String,
    pub readonly: bool,
    /// `size=` in bytes; 0 is no limit.
    pub size: u64,
    /// `id=`.
    pub id: String,
    pub sharing: Option<CacheSharing>,
    pub required: bool,
    pub env: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// The parse-time check of a `--mount` value (BuildKit's `parseMount` without an expander):
/// the CSV syntax, and a `from` without variables (a `$` is allowed only as the last
/// character). Returns the last `from=` value as written, which names the stage or image the
/// mount reads (BuildKit resolves it before expansion); empty when there is none.
pub(crate) fn precheck_mount(value: &str) -> Result<String, MountFlagError> {
    let fields = csv_fields(value).map_err(MountFlagError::Csv)?;
    let mut from = String::new();
    for field in fields {
        let Some((key, value)) = field.split_once('=') else { continue };
        if key.to_lowercase() == "from" {
            if value.find('$').is_some_and(|i| i != value.len() - 1) {
                return Err(MountFlagError::FromVariable);
            }
            from = value.to_owned();
        }
    }
    Ok(from)
}

/// BuildKit's `parseMount` at dispatch: `expand` is applied to every value (not to keys nor
/// to bare keys), then keys are read in order (so `required` and `size` must come after the
/// `type` they need) and the result is validated.
pub(crate) fn parse_mount(
    value: &str,
    expand: &mut dyn FnMut(&str) -> Result<String, ExpandError>,
) -> Result<Mount, MountFlagError> {
    let fields = csv_fields(value).map_err(MountFlagError::Csv)?;
    let mut m = Mount {
        typ: MountType::Bind,
        from: String::new(),
        source: String::new(),
        target: String::new(),
        readonly: false,
        size: 0,
        id: String::new(),
        sharing: None,
        required: false,
        env: None,
        mode: None,
        uid: None,
        gid: None,
    };
    let mut ro_auto = true;
    for field in &fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_lowercase(), Some(v)),
            None => (field.to_lowercase(), None),
        };
        let unexpected = |typ: MountType| MountFlagError::KeyForType { key: key.clone(), typ: typ.name() };
        let Some(value) = value else {
            match key.as_str() {
                "readonly" | "ro" => {
                    m.readonly = true;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = false;
                    ro_auto = false;
                }
                "required" if matches!(m.typ, MountType::Secret | MountType::Ssh) => m.required = true,
                "required" => return Err(unexpected(m.typ)),
                _ => return Err(MountFlagError::NotKeyValue(field.clone())),
            }
            continue;
        };
        let value =
            expand(value).map_err(|error| MountFlagError::Expand { word: value.to_string(), error })?;
        let invalid = || MountFlagError::Value { key: key.clone(), value: value.clone() };
        match key.as_str() {
            "type" => {
                m.typ = match value.to_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        let suggestion = suggest(&value, &MOUNT_TYPES, true);
                        return Err(MountFlagError::Type { value, suggestion });
                    }
                }
            }
            "from" => m.from = value,
            "source" | "src" => m.source = value,
            "target" | "dst" | "destination" => m.target = value,
            "readonly" | "ro" => {
                m.readonly = goparse::parse_bool(&value).ok_or_else(invalid)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !goparse::parse_bool(&value).ok_or_else(invalid)?;
                ro_auto = false;
            }
            "required" if matches!(m.typ, MountType::Secret | MountType::Ssh) => {
                m.required = goparse::parse_bool(&value).ok_or_else(invalid)?;
            }
            "required" => return Err(unexpected(m.typ)),
            "size" if m.typ == MountType::Tmpfs => {
                m.size = hostutil::units::ram_in_bytes(&value).ok_or_else(invalid)?
            }
            "size" => return Err(unexpected(m.typ)),
            "id" => m.id = value,
            "sharing" => {
                m.sharing = Some(match value.to_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => {
                        let suggestion = suggest(&value, &SHARING_MODES, true);
                        return Err(MountFlagError::Sharing { value, suggestion });
                    }
                })
            }
            "mode" | "uid" | "gid" => {
                let (key, radix) = match key.as_str() {
                    "mode" => ("mode", 8),
                    "uid" => ("uid", 10),
                    _ => ("gid", 10),
                };
                let n = goparse::parse_u32(&value, radix).ok_or(MountFlagError::Number { key, value })?;
                *match key {
                    "mode" => &mut m.mode,
                    "uid" => &mut m.uid,
                    _ => &mut m.gid,
                } = Some(n);
            }
            "env" => m.env = Some(value),
            _ => {
                let suggestion = suggest(&key, &MOUNT_KEYS, true);
                return Err(MountFlagError::Key { key, field: field.clone(), suggestion });
            }
        }
    }

    if !matches!(m.typ, MountType::Secret | MountType::Ssh | MountType::Cache) {
        for (name, set) in [("mode", m.mode.is_some()), ("uid", m.uid.is_some()), ("gid", m.gid.is_some())] {
            if set {
                return Err(MountFlagError::NotAllowed { name, typ: m.typ.name() });
            }
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.typ, MountType::Cache | MountType::Tmpfs);
    }
    if m.typ == MountType::Secret {
        if !m.from.is_empty() {
            return Err(MountFlagError::SecretFrom);
        }
        if m.sharing.is_some() {
            return Err(MountFlagError::SecretSharing);
        }
        if m.source.is_empty() && m.target.is_empty() && m.id.is_empty() {
            return Err(MountFlagError::SecretTarget);
        }
        if !m.source.is_empty() && !m.id.is_empty() {
            return Err(MountFlagError::SecretSourceAndId);
        }
    }
    if m.sharing.is_some() && m.typ != MountType::Cache {
        return Err(MountFlagError::SharingNotCache(m.typ.name()));
    }
    Ok(m)
}

/// BuildKit's `dispatchRunMounts`/`dispatchSecret` for one parsed mount: defaults, the target
/// resolved against `workdir`, the source cleaned. `from` is the resolved `from=` (the caller
/// resolves it, since it knows the stages); tmpfs mounts ignore it, as BuildKit does.
pub(crate) fn lower_mount(
    m: &Mount,
    workdir: &str,
    from: Option<CopyFrom>,
) -> Result<RunMount, MountFlagError> {
    match m.typ {
        MountType::Ssh => return Ok(lower_ssh(m)),
        MountType::Secret => return Ok(lower_secret(m)),
        _ => {}
    }
    // A relative target is relative to the WORKDIR; an empty one is the WORKDIR itself.
    let target = if m.target.starts_with('/') {
        gopath::clean(&m.target)
    } else {
        gopath::clean(&format!("/{workdir}/{}", m.target))
    };
    if target == "/" {
        return Err(MountFlagError::Target(target));
    }
    let source = gopath::clean(&format!("/{}", m.source)).trim_start_matches('/').to_owned();
    Ok(match m.typ {
        MountType::Cache => RunMount::Cache {
            target,
            // The default id is the target as written, cleaned (not resolved against WORKDIR).
            id: if m.id.is_empty() { gopath::clean(&m.target) } else { m.id.clone() },
            sharing: m.sharing.unwrap_or_default(),
            readonly: m.readonly,
            from,
            source,
            mode: m.mode.unwrap_or(0o755),
            uid: m.uid.unwrap_or(0),
            gid: m.gid.unwrap_or(0),
        },
        MountType::Tmpfs => RunMount::Tmpfs { target, size: (m.size > 0).then_some(m.size) },
        _ => RunMount::Bind { target, from, source, readwrite: !m.readonly },
    })
}

/// BuildKit's `dispatchSecret`: `source` is the id too; the id defaults to the target's file
/// name; the file goes to the target, or `/run/secrets/<id>` unless `env` is given. BuildKit
/// passes a relative secret target through as it is, which the runtime resolves against the
/// container's root (not the WORKDIR), so that is where it goes here.
/// BuildKit's `dispatchSSH`: the id defaults to `default`, the target stays unset (the solver
/// numbers the sockets), mode 0600.
fn lower_ssh(m: &Mount) -> RunMount {
    RunMount::Ssh {
        id: if m.id.is_empty() { "default".into() } else { m.id.clone() },
        target: (!m.target.is_empty()).then(|| gopath::clean(&format!("/{}", m.target))),
        required: m.required,
        mode: m.mode.unwrap_or(0o600),
        uid: m.uid.unwrap_or(0),
        gid: m.gid.unwrap_or(0),
    }
}

fn lower_secret(m: &Mount) -> RunMount {
    let id = if !m.source.is_empty() {
        m.source.clone()
    } else if !m.id.is_empty() {
        m.id.clone()
    } else {
        gopath::base(&m.target)
    };
    let target = if !m.target.is_empty() {
        Some(gopath::clean(&format!("/{}", m.target)))
    } else if m.env.is_none() {
        Some(format!("/run/secrets/{}", gopath::base(&id)))
    } else {
        None
    };
    RunMount::Secret {
        id,
        target,
        env: m.env.clone(),
        required: m.required,
        mode: m.mode.unwrap_or(0o400),
        uid: m.uid.unwrap_or(0),
        gid: m.gid.unwrap_or(0),
    }
}

/// `RUN --network=`, checked as written (BuildKit does not expand it).
pub(crate) fn parse_network(value: &str) -> Result<RunNetwork, MountFlagError> {
    match value {
        "default" => Ok(RunNetwork::Default),
        "none" => Ok(RunNetwork::None),
        "host" => Ok(RunNetwork::Host),
        _ => Err(MountFlagError::Network(value.to_string())),
    }
}

/// `RUN --security=`, checked as written.
pub(crate) fn parse_security(value: &str) -> Result<RunSecurity, MountFlagError> {
    match value {
        "sandbox" => Ok(RunSecurity::Sandbox),
        "insecure" => Ok(RunSecurity::Insecure),
        _ => Err(MountFlagError::Security(value.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<Mount, MountFlagError> {
        parse_mount(value, &mut |w| Ok(w.to_owned()))
    }

    fn lower(value: &str, workdir: &str) -> Result<RunMount, MountFlagError> {
        lower_mount(&parse(value)?, workdir, None)
    }

    #[test]
    fn go_helpers() {
        assert_eq!(goparse::parse_u32("0755", 8), Some(0o755));
        assert_eq!(goparse::parse_u32("+1", 10), None);
        assert_eq!(goparse::parse_u32("8", 8), None);
        assert_eq!(goparse::parse_u32("4294967296", 10), None);
        assert_eq!(goparse::parse_bool("T"), Some(true));
        assert_eq!(goparse::parse_bool("yes"), None);
    }

    #[test]
    fn bind_defaults_and_keys() {
        let bind = |target: &str, source: &str, readwrite| RunMount::Bind {
            target: target.into(),
            from: None,
            source: source.into(),
            readwrite,
        };
        assert_eq!(lower("target=/src", "/").unwrap(), bind("/src", "", false));
        assert_eq!(
            lower("type=BIND,dst=src,source=./a/../b/,rw", "/app").unwrap(),
            bind("/app/src", "b", true)
        );
        assert_eq!(
            lower("destination=/x/,src=../../etc,readwrite=true", "/").unwrap(),
            bind("/x", "etc", true)
        );
        assert_eq!(lower("target=/x,rw,ro", "/").unwrap(), bind("/x", "", false));
        assert_eq!(lower("target=/x,ro=false", "/").unwrap(), bind("/x", "", true));
        assert_eq!(lower("Target=/x,RW=0", "/").unwrap(), bind("/x", "", false));
        // No target: the WORKDIR itself, an error when it is the root.
        assert_eq!(lower("source=a", "/w").unwrap(), bind("/w", "a", false));
        assert_eq!(lower("source=a", "/").unwrap_err().to_string(), "invalid mount target \"/\"");
        assert_eq!(lower("target=/a/..", "/").unwrap_err().to_string(), "invalid mount target \"/\"");
        // `id`, `env` are accepted and ignored.
        assert_eq!(lower("target=/x,id=foo,env=E", "/").unwrap(), bind("/x", "", false));
    }

    #[test]
    fn cache_defaults_and_keys() {
        assert_eq!(
            lower("type=cache,target=/root/.cache/", "/").unwrap(),
            RunMount::Cache {
                target: "/root/.cache".into(),
                id: "/root/.cache".into(),
                sharing: CacheSharing::Shared,
                readonly: false,
                from: None,
                source: "".into(),
                mode: 0o755,
                uid: 0,
                gid: 0,
            }
        );
        assert_eq!(
            lower(
                "type=cache,target=cache,id=x,sharing=LOCKED,ro,mode=0700,uid=1000,gid=1001,source=/s/",
                "/w"
            )
            .unwrap(),
            RunMount::Cache {
                target: "/w/cache".into(),
                // The default id would be the target as written: `cache`.
                id: "x".into(),
                sharing: CacheSharing::Locked,
                readonly: true,
                from: None,
                source: "s".into(),
                mode: 0o700,
                uid: 1000,
                gid: 1001,
            }
        );
        match lower("type=cache,target=./c/", "/w").unwrap() {
            RunMount::Cache { id, target, sharing, .. } => {
                assert_eq!((id.as_str(), target.as_str(), sharing), ("c", "/w/c", CacheSharing::Shared));
            }
            other => panic!("{other:?}"),
        }
        match lower("type=cache,target=/c,sharing=private,readonly=false", "/").unwrap() {
            RunMount::Cache { sharing, readonly, .. } => {
                assert_eq!((sharing, readonly), (CacheSharing::Private, false))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tmpfs_and_secret() {
        assert_eq!(
            lower("type=tmpfs,target=/t", "/").unwrap(),
            RunMount::Tmpfs { target: "/t".into(), size: None }
        );
        assert_eq!(
            lower("type=tmpfs,target=t,size=64m", "/w").unwrap(),
            RunMount::Tmpfs { target: "/w/t".into(), size: Some(64 << 20) }
        );
        assert_eq!(
            lower("type=tmpfs,dst=/t,size=0", "/").unwrap(),
            RunMount::Tmpfs { target: "/t".into(), size: None }
        );
        let secret =
            |id: &str, target: Option<&str>, env: Option<&str>, required, mode, uid, gid| RunMount::Secret {
                id: id.into(),
                target: target.map(Into::into),
                env: env.map(Into::into),
                required,
                mode,
                uid,
                gid,
            };
        assert_eq!(
            lower("type=secret,id=tok", "/w").unwrap(),
            secret("tok", Some("/run/secrets/tok"), None, false, 0o400, 0, 0)
        );
        assert_eq!(
            lower("type=secret,target=/etc/token", "/").unwrap(),
            secret("token", Some("/etc/token"), None, false, 0o400, 0, 0)
        );
        // A relative secret target is under the root, not the WORKDIR.
        assert_eq!(
            lower("type=secret,source=aws,target=cfg,required,mode=0440,uid=1,gid=2", "/w").unwrap(),
            secret("aws", Some("/cfg"), None, true, 0o440, 1, 2)
        );
        assert_eq!(
            lower("type=secret,id=tok,env=TOKEN,required=false", "/").unwrap(),
            secret("tok", None, Some("TOKEN"), false, 0o400, 0, 0)
        );
        assert_eq!(
            lower("type=secret,id=tok,env=TOKEN,target=/t", "/").unwrap(),
            secret("tok", Some("/t"), Some("TOKEN"), false, 0o400, 0, 0)
        );
        assert_eq!(
            lower("type=secret,id=a/b", "/").unwrap(),
            secret("a/b", Some("/run/secrets/b"), None, false, 0o400, 0, 0)
        );
    }

    #[test]
    fn expansion_applies_to_values_only() {
        let mut seen = Vec::new();
        let m = parse_mount("type=$T,target=$D,rw", &mut |w| {
            seen.push(w.to_owned());
            Ok(w.replace("$T", "cache").replace("$D", "/d"))
        })
        .unwrap();
        assert_eq!(seen, ["$T", "$D"]);
        assert_eq!((m.typ, m.target.as_str(), m.readonly), (MountType::Cache, "/d", false));
        let err = parse_mount("target=$X", &mut |_| Err(ExpandError::BadSubstitution)).unwrap_err();
        assert_eq!(err.to_string(), "failed to process \"$X\": syntax error: bad substitution");
    }

    #[test]
    fn errors_are_buildkits() {
        let err = |v: &str| parse(v).unwrap_err().to_string();
        assert_eq!(err("type=tmp"), "unsupported mount type \"tmp\" (did you mean tmpfs?)");
        assert_eq!(err("type=volume"), "unsupported mount type \"volume\"");
        assert_eq!(err("typ=tmpfs"), "unexpected key 'typ' in 'typ=tmpfs' (did you mean type?)");
        assert_eq!(err("Foo=1"), "unexpected key 'foo' in 'Foo=1' (did you mean from?)");
        assert_eq!(err("Bogus=1"), "unexpected key 'bogus' in 'Bogus=1'");
        assert_eq!(err("target=/x,shared"), "invalid field 'shared' must be a key=value pair");
        assert_eq!(err("target=/x,"), "invalid field '' must be a key=value pair");
        assert_eq!(
            err("type=cache,sharing=share"),
            "unsupported sharing value \"share\" (did you mean shared?)"
        );
        assert_eq!(err("type=cache,mode=0999"), "invalid value 0999 for mode");
        assert_eq!(err("type=cache,uid=-1"), "invalid value -1 for uid");
        assert_eq!(err("type=cache,gid=x"), "invalid value x for gid");
        assert_eq!(err("target=/x,ro=maybe"), "invalid value for ro: maybe");
        assert_eq!(err("target=/x,readwrite=2"), "invalid value for readwrite: 2");
        assert_eq!(err("type=tmpfs,size=lots"), "invalid value for size: lots");
        assert_eq!(err("type=secret,id=a,required=nope"), "invalid value for required: nope");
        // Keys that depend on the type see the type given so far.
        assert_eq!(err("size=1m,type=tmpfs"), "unexpected key 'size' for mount type 'bind'");
        assert_eq!(err("required,type=secret,id=a"), "unexpected key 'required' for mount type 'bind'");
        assert_eq!(err("type=cache,required=true"), "unexpected key 'required' for mount type 'cache'");
        assert_eq!(err("target=/x,mode=0644"), "mode not allowed for \"bind\" type mounts");
        assert_eq!(err("type=tmpfs,target=/x,uid=1"), "uid not allowed for \"tmpfs\" type mounts");
        assert_eq!(err("target=/x,gid=1"), "gid not allowed for \"bind\" type mounts");
        assert_eq!(err("type=secret,id=a,from=x"), "secret mount should not have a from");
        assert_eq!(err("type=secret,id=a,sharing=locked"), "secret mount should not define sharing");
        assert_eq!(err("type=secret,env=A"), "invalid secret mount. one of source, target required");
        assert_eq!(err("type=secret,id=a,source=b"), "both source and id can't be set");
        assert_eq!(err("target=/x,sharing=locked"), "invalid cache sharing set for bind mount");
        assert_eq!(
            err("a\"b"),
            "failed to parse csv mounts: parse error on line 1, column 2: bare \" in non-quoted-field"
        );
        assert_eq!(
            lower("type=ssh", "/").unwrap(),
            RunMount::Ssh {
                id: "default".into(),
                target: None,
                required: false,
                mode: 0o600,
                uid: 0,
                gid: 0
            }
        );
        assert_eq!(
            lower("type=ssh,id=gh,target=run/s.sock,required,mode=0666,uid=1000", "/app").unwrap(),
            RunMount::Ssh {
                id: "gh".into(),
                target: Some("/run/s.sock".into()),
                required: true,
                mode: 0o666,
                uid: 1000,
                gid: 0
            }
        );
    }

    #[test]
    fn precheck_is_csv_and_from_only() {
        assert_eq!(precheck_mount("type=nope,from=build,FROM=Other,x").unwrap(), "Other");
        assert_eq!(precheck_mount("target=/x").unwrap(), "");
        assert_eq!(precheck_mount("from=a$").unwrap(), "a$");
        assert_eq!(
            precheck_mount("from=$stage").unwrap_err().to_string(),
            "'from' doesn't support variable expansion, define alias stage instead"
        );
        assert_eq!(precheck_mount("").unwrap_err().to_string(), "failed to parse csv mounts: EOF");
    }

    #[test]
    fn network_and_security() {
        assert_eq!(parse_network("default"), Ok(RunNetwork::Default));
        assert_eq!(parse_network("none"), Ok(RunNetwork::None));
        assert_eq!(parse_network("host"), Ok(RunNetwork::Host));
        assert_eq!(parse_network("HOST").unwrap_err().to_string(), "invalid network mode \"HOST\"");
        assert_eq!(parse_network("").unwrap_err().to_string(), "invalid network mode \"\"");
        assert_eq!(parse_security("sandbox"), Ok(RunSecurity::Sandbox));
        assert_eq!(parse_security("insecure"), Ok(RunSecurity::Insecure));
        assert_eq!(parse_security("root").unwrap_err().to_string(), "security \"root\" is not valid");
    }
}
