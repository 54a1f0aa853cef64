//! The mount flags of `create` and `run`: `-v`/`--volume`, `--mount` and `--tmpfs`, read with
//! docker's syntax and rules and failing with docker's words, plus the anonymous volumes an
//! image's `VOLUME`s add. Each value becomes a [`MountRequest`], stored with the container.
//!
//! Parsing does not touch the store: an anonymous volume comes out with an empty name, and
//! gets its random one when the container is created (`Volumes::create(None, .., true)`).
//! The one side effect is docker's: a `-v` host directory that does not exist is created.

use std::path::{Path, PathBuf};

use hostutil::goparse;
use hostutil::gopath::clean;
use hostutil::units::ram_in_bytes;

use crate::spec::MountRequest;
use crate::volume::{Error, valid_name};

/// Every mount a container's flags ask for: `-v` values, then `--mount`, then `--tmpfs`. Two
/// on one path fail as docker's `Duplicate mount point`. Only once all parse is a missing `-v`
/// host directory created, so a bad flag leaves the host as it was.
pub fn parse_mounts(
    volumes: &[String],
    mounts: &[String],
    tmpfs: &[String],
) -> Result<Vec<MountRequest>, Error> {
    let mut out = Vec::new();
    let mut to_create = Vec::new();
    for v in volumes {
        let (m, create) = parse_volume_spec(v)?;
        if create && let MountRequest::Bind { source, .. } = &m {
            to_create.push(source.clone());
        }
        out.push(m);
    }
    for m in mounts {
        out.push(parse_mount(m)?);
    }
    for t in tmpfs {
        out.push(parse_tmpfs(t)?);
    }
    for (i, m) in out.iter().enumerate() {
        if out[..i].iter().any(|o| o.target() == m.target()) {
            return Err(Error::InvalidMount(format!("Duplicate mount point: {}", m.target())));
        }
    }
    for source in to_create {
        create_bind_source(&source)?;
    }
    Ok(out)
}

/// One `-v`/`--volume` value: `NAME:/path[:opts]` (a named volume), `/host/path:/path[:opts]`
/// (a bind mount; a relative `./dir` or `../dir` is taken from the current directory, as
/// docker's CLI does), or `/path` (an anonymous volume, not named yet). Options, comma-separated: `ro`/`rw`,
/// `nocopy` (volumes), `z`/`Z` (SELinux labels: nothing to do here), and the propagation
/// (`rprivate`...) and consistency (`cached`...) modes docker accepts and which change
/// nothing here. A host directory that does not exist is created, as docker's `-v` does.
pub fn parse_volume(spec: &str) -> Result<MountRequest, Error> {
    let (m, create) = parse_volume_spec(spec)?;
    if create && let MountRequest::Bind { source, .. } = &m {
        create_bind_source(source)?;
    }
    Ok(m)
}

const RW_MODES: &[&str] = &["rw", "ro"];
const LABEL_MODES: &[&str] = &["z", "Z"];
const PROPAGATION_MODES: &[&str] = &["private", "rprivate", "shared", "rshared", "slave", "rslave"];
const COPY_MODES: &[&str] = &["nocopy"];
const CONSISTENCY_MODES: &[&str] = &["consistent", "cached", "delegated"];

/// Docker's check of a `-v` mode: known words, at most one of each kind.
fn valid_mode(mode: &str) -> bool {
    if mode.is_empty() {
        return true;
    }
    let kinds = [RW_MODES, LABEL_MODES, PROPAGATION_MODES, COPY_MODES, CONSISTENCY_MODES];
    let mut counts = [0; 5];
    for word in mode.split(',') {
        match kinds.iter().position(|k| k.contains(&word)) {
            Some(i) => counts[i] += 1,
            None => return false,
        }
    }
    counts.iter().all(|&n| n <= 1)
}

/// Parses a `-v` value; the flag says whether its host directory is to be created if missing.
fn parse_volume_spec(spec: &str) -> Result<(MountRequest, bool), Error> {
    let invalid = || Error::InvalidMount(format!("invalid volume specification: '{spec}'"));
    if spec.matches(':').count() > 2 {
        return Err(invalid());
    }
    let parts: Vec<&str> = spec.splitn(3, ':').collect();
    let (source, target, mode) = match parts[..] {
        ["", ..] => return Err(invalid()),
        [target] => ("", target, ""),
        // A mode without a source is no volume: `/data:ro`.
        [_, second] if valid_mode(second) => return Err(invalid()),
        [source, target] => (source, target, ""),
        [source, target, mode] => (source, target, mode),
        _ => return Err(invalid()),
    };
    if !valid_mode(mode) {
        return Err(Error::InvalidMount(format!("invalid mode: {mode}")));
    }
    let words: Vec<&str> = mode.split(',').collect();
    let readonly = words.contains(&"ro");
    let nocopy = words.contains(&"nocopy");
    let propagation = words.iter().any(|w| PROPAGATION_MODES.contains(w));
    let source = if !source.starts_with('/') && source.starts_with('.') {
        absolute(source)?
    } else {
        source.to_string()
    };
    let is_bind = source.starts_with('/');
    let kind = if is_bind { "bind" } else { "volume" };
    let config_error = |e: String| {
        Error::InvalidMount(format!(
            "invalid volume specification: '{spec}': invalid mount config for type \"{kind}\": {e}"
        ))
    };
    let target = check_target(target).map_err(|e| config_error(e.to_string()))?;
    if is_bind {
        if nocopy {
            return Err(config_error("field VolumeOptions must not be specified".into()));
        }
        let source = PathBuf::from(clean(&source));
        return Ok((MountRequest::Bind { source, target, readonly }, true));
    }
    if propagation {
        return Err(config_error("field BindOptions must not be specified".into()));
    }
    let anonymous = source.is_empty();
    let name = if anonymous { String::new() } else { source };
    if !anonymous && !valid_name(&name) {
        return Err(Error::InvalidName(name));
    }
    Ok((MountRequest::Volume { name, target, readonly, anonymous, nocopy }, false))
}

/// A container path docker refuses as a mount target, in its words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("field Target must not be empty")]
    Empty,
    #[error("invalid specification: destination can't be '/'")]
    Root,
    #[error("invalid mount path: '{0}' mount path must be absolute")]
    Relative(String),
}

/// Docker's checks of a container path, then the path cleaned (`/data/` is `/data`).
fn check_target(target: &str) -> Result<String, TargetError> {
    if target.is_empty() {
        return Err(TargetError::Empty);
    }
    if clean(&target.replace('\\', "/")) == "/" {
        return Err(TargetError::Root);
    }
    if !target.starts_with('/') {
        return Err(TargetError::Relative(target.to_string()));
    }
    Ok(clean(target))
}

/// A relative host path made absolute from the current directory, as Go's `filepath.Abs`.
fn absolute(path: &str) -> Result<String, Error> {
    let cwd = std::env::current_dir().map_err(|source| Error::Io { path: PathBuf::from("."), source })?;
    let cwd = cwd.to_str().ok_or_else(|| {
        Error::InvalidMount(format!("{path}: the current directory {} is not UTF-8", cwd.display()))
    })?;
    Ok(clean(&format!("{cwd}/{path}")))
}

/// A missing `-v` host directory, made as docker makes it (mode 0755, parents too).
fn create_bind_source(source: &Path) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    if source.symlink_metadata().is_ok() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(source).map_err(|e| {
        Error::InvalidMount(format!(
            "error while creating mount source path '{}': mkdir {}: {e}",
            source.display(),
            source.display()
        ))
    })
}

/// One `--mount` value: comma-separated `key=value` fields (CSV: a field may be quoted):
/// `type=volume|bind|tmpfs` (default volume), `source`/`src`, `target`/`destination`/`dst`,
/// `readonly`/`ro[=BOOL]`, `volume-nocopy[=BOOL]`, `tmpfs-size=`, `tmpfs-mode=` (octal),
/// `bind-propagation=` and `consistency=` (accepted; nothing to do here). A bind's source must
/// exist; a volume without a source is anonymous (not named yet).
pub fn parse_mount(value: &str) -> Result<MountRequest, Error> {
    let flag_error =
        |e: String| Error::InvalidMount(format!("invalid argument \"{value}\" for \"--mount\" flag: {e}"));
    let mut kind = "volume".to_string();
    let (mut source, mut target) = (None::<String>, None::<String>);
    let mut readonly = false;
    let (mut volume_opts, mut bind_opts, mut tmpfs_opts) = (false, false, false);
    let mut nocopy = false;
    let (mut size, mut mode) = (None, None);
    for field in goparse::csv_fields(value).map_err(|e| flag_error(e.to_string()))? {
        let Some((key, val)) = field.split_once('=') else {
            match field.to_ascii_lowercase().as_str() {
                "readonly" | "ro" => readonly = true,
                "volume-nocopy" => {
                    volume_opts = true;
                    nocopy = true;
                }
                _ => return Err(flag_error(format!("invalid field '{field}' must be a key=value pair"))),
            }
            continue;
        };
        let key = key.to_ascii_lowercase();
        let bad_value = || flag_error(format!("invalid value for {key}: {val}"));
        match key.as_str() {
            "type" => kind = val.to_ascii_lowercase(),
            "source" | "src" => source = Some(val.to_string()),
            "target" | "dst" | "destination" => target = Some(val.to_string()),
            "readonly" | "ro" => readonly = goparse::parse_bool(val).ok_or_else(bad_value)?,
            "consistency" => {}
            "bind-propagation" => bind_opts = true,
            "volume-nocopy" => {
                volume_opts = true;
                nocopy = goparse::parse_bool(val).ok_or_else(bad_value)?;
            }
            "tmpfs-size" => {
                tmpfs_opts = true;
                size = Some(ram_in_bytes(val).ok_or_else(bad_value)?);
            }
            "tmpfs-mode" => {
                tmpfs_opts = true;
                mode = Some(goparse::parse_u32(val, 8).ok_or_else(bad_value)?);
            }
            "volume-driver" | "volume-label" | "volume-opt" | "volume-subpath" | "bind-nonrecursive"
            | "bind-recursive" | "bind-create-src" | "image-subpath" => {
                return Err(flag_error(format!(
                    "{key} is not supported (local volumes and plain binds only)"
                )));
            }
            _ => return Err(flag_error(format!("unexpected key '{key}' in '{field}'"))),
        }
    }
    let Some(target) = target.filter(|t| !t.is_empty()) else {
        return Err(flag_error("target is required".into()));
    };
    for (set, prefix, of) in
        [(volume_opts, "volume", "volume"), (bind_opts, "bind", "bind"), (tmpfs_opts, "tmpfs", "tmpfs")]
    {
        if set && kind != of {
            return Err(flag_error(format!("cannot mix '{prefix}-*' options with mount type '{kind}'")));
        }
    }
    let config_error =
        |e: String| Error::InvalidMount(format!("invalid mount config for type \"{kind}\": {e}"));
    let target = check_target(&target).map_err(|e| config_error(e.to_string()))?;
    let source = source.unwrap_or_default();
    match kind.as_str() {
        "bind" => {
            if source.is_empty() {
                return Err(config_error("field Source must not be empty".into()));
            }
            let source = if source == "." || source.starts_with("./") { absolute(&source)? } else { source };
            if !source.starts_with('/') {
                return Err(config_error(format!(
                    "invalid mount path: '{source}' mount path must be absolute"
                )));
            }
            let source = PathBuf::from(clean(&source));
            if source.symlink_metadata().is_err() {
                return Err(config_error(format!("bind source path does not exist: {}", source.display())));
            }
            Ok(MountRequest::Bind { source, target, readonly })
        }
        "volume" => {
            let anonymous = source.is_empty();
            if readonly && anonymous {
                return Err(config_error("must not set ReadOnly mode when using anonymous volumes".into()));
            }
            let name = if anonymous { String::new() } else { source };
            if !anonymous && !valid_name(&name) {
                return Err(Error::InvalidName(name));
            }
            Ok(MountRequest::Volume { name, target, readonly, anonymous, nocopy })
        }
        "tmpfs" => {
            if !source.is_empty() {
                return Err(config_error("field Source must not be specified".into()));
            }
            if readonly {
                return Err(config_error("a read-only tmpfs is not supported yet".into()));
            }
            Ok(MountRequest::Tmpfs { target, size, mode })
        }
        _ => Err(config_error("mount type unknown".into())),
    }
}

/// One `--tmpfs` value: `/path[:options]`, the options as mount(8) takes them for tmpfs:
/// `size=` (bytes, or with a k/m/g suffix), `mode=` (octal), and the flags `rw`, `exec`,
/// `nosuid`, `nodev`, which is how rbuild mounts every tmpfs. Options it cannot honour
/// (`ro`, `noexec`, `uid=`...) fail rather than being dropped.
pub fn parse_tmpfs(value: &str) -> Result<MountRequest, Error> {
    let (target, options) = value.split_once(':').unwrap_or((value, ""));
    let target = check_target(target).map_err(|e| Error::InvalidMount(e.to_string()))?;
    let (mut size, mut mode) = (None, None);
    for option in options.split(',').filter(|o| !o.is_empty()) {
        let unsupported = || {
            Error::InvalidMount(format!(
                "--tmpfs {value}: option {option:?} is not supported (size=, mode=, rw, exec, nosuid, nodev)"
            ))
        };
        match option.split_once('=') {
            Some(("size", v)) => {
                size = Some(ram_in_bytes(v).ok_or_else(|| {
                    Error::InvalidMount(format!(
                        "--tmpfs {value}: invalid size {v:?}: bytes, or with k, m or g (64m)"
                    ))
                })?)
            }
            Some(("mode", v)) => {
                mode = Some(goparse::parse_u32(v, 8).ok_or_else(|| {
                    Error::InvalidMount(format!(
                        "--tmpfs {value}: invalid mode {v:?}: octal permissions (1777)"
                    ))
                })?)
            }
            Some(_) => return Err(unsupported()),
            None if matches!(option, "rw" | "exec" | "nosuid" | "nodev") => {}
            None => return Err(unsupported()),
        }
    }
    Ok(MountRequest::Tmpfs { target, size, mode })
}

/// The anonymous volumes (not named yet) an image's `VOLUME`s give a container: one for each
/// path that no explicit mount is on (the same path after cleaning; a relative `VOLUME` is
/// from `/`).
pub fn image_volumes(volumes: &[String], explicit: &[MountRequest]) -> Vec<MountRequest> {
    let mut out: Vec<MountRequest> = Vec::new();
    for v in volumes {
        let target = clean(&format!("/{v}"));
        // A volume over the whole root cannot be mounted; docker's create fails the same path.
        if target == "/" || explicit.iter().chain(&out).any(|m| m.target() == target) {
            continue;
        }
        out.push(MountRequest::Volume {
            name: String::new(),
            target,
            readonly: false,
            anonymous: true,
            nocopy: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<MountRequest, Error>) -> String {
        match r {
            Ok(m) => panic!("expected an error, got {m:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn volume(name: &str, target: &str, readonly: bool, nocopy: bool) -> MountRequest {
        MountRequest::Volume { name: name.into(), target: target.into(), readonly, anonymous: false, nocopy }
    }

    fn bind(source: &str, target: &str, readonly: bool) -> MountRequest {
        MountRequest::Bind { source: source.into(), target: target.into(), readonly }
    }

    fn anonymous_target(m: &MountRequest) -> &str {
        match m {
            MountRequest::Volume { name, target, readonly: false, anonymous: true, nocopy: false } => {
                assert!(name.is_empty(), "an anonymous volume is named at create, not before: {name:?}");
                target
            }
            other => panic!("not an anonymous volume: {other:?}"),
        }
    }

    #[test]
    fn volume_flag_named_volumes_take_options() {
        assert_eq!(
            parse_volume("data:/var/lib/data").unwrap(),
            volume("data", "/var/lib/data", false, false)
        );
        assert_eq!(parse_volume("data:/d/:ro").unwrap(), volume("data", "/d", true, false));
        assert_eq!(parse_volume("data:/d:rw,nocopy").unwrap(), volume("data", "/d", false, true));
        assert_eq!(parse_volume("my.vol_1-x:/d:Z,ro").unwrap(), volume("my.vol_1-x", "/d", true, false));
    }

    #[test]
    fn volume_flag_binds_host_paths_and_creates_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("a/b");
        let spec = format!("{}/:/mnt:ro,z", host.display());
        assert_eq!(parse_volume(&spec).unwrap(), bind(host.to_str().unwrap(), "/mnt", true));
        assert!(host.is_dir(), "a -v host directory that did not exist is created");
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let m = parse_volume(&format!("{}:/etc/f:rprivate", file.display())).unwrap();
        assert_eq!(m, bind(file.to_str().unwrap(), "/etc/f", false));
        assert!(file.is_file(), "an existing file stays a file");
    }

    #[test]
    fn volume_flag_dot_paths_are_from_the_current_directory() {
        let cwd = std::env::current_dir().unwrap();
        let (m, create) = parse_volume_spec("./sub/../x:/x").unwrap();
        assert_eq!(m, bind(cwd.join("x").to_str().unwrap(), "/x", false));
        assert!(create);
        let (m, _) = parse_volume_spec(".:/src:ro").unwrap();
        assert_eq!(m, bind(cwd.to_str().unwrap(), "/src", true));
    }

    #[test]
    fn volume_flag_alone_is_an_anonymous_volume() {
        assert_eq!(anonymous_target(&parse_volume("/data/").unwrap()), "/data");
    }

    #[test]
    fn volume_flag_errors_read_as_docker_s() {
        assert_eq!(err(parse_volume("")), "invalid volume specification: ''");
        assert_eq!(err(parse_volume(":/x")), "invalid volume specification: ':/x'");
        assert_eq!(err(parse_volume("/data:ro")), "invalid volume specification: '/data:ro'");
        assert_eq!(err(parse_volume("a:/b:ro:x")), "invalid volume specification: 'a:/b:ro:x'");
        assert_eq!(err(parse_volume("a:/b:rw,ro")), "invalid mode: rw,ro");
        assert_eq!(err(parse_volume("a:/b:bogus")), "invalid mode: bogus");
        assert_eq!(
            err(parse_volume("x/y:/data")),
            "create x/y: \"x/y\" includes invalid characters for a local volume name, only \
             \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use \
             absolute path"
        );
        assert_eq!(
            err(parse_volume("data:rel")),
            "invalid volume specification: 'data:rel': invalid mount config for type \"volume\": \
             invalid mount path: 'rel' mount path must be absolute"
        );
        assert_eq!(
            err(parse_volume("data")),
            "invalid volume specification: 'data': invalid mount config for type \"volume\": \
             invalid mount path: 'data' mount path must be absolute"
        );
        assert_eq!(
            err(parse_volume("/tmp:/")),
            "invalid volume specification: '/tmp:/': invalid mount config for type \"bind\": \
             invalid specification: destination can't be '/'"
        );
        assert_eq!(err(parse_volume("data:")), "invalid volume specification: 'data:'");
        assert_eq!(
            err(parse_volume("/tmp:/x:nocopy")),
            "invalid volume specification: '/tmp:/x:nocopy': invalid mount config for type \"bind\": \
             field VolumeOptions must not be specified"
        );
        assert_eq!(
            err(parse_volume("data:/x:shared")),
            "invalid volume specification: 'data:/x:shared': invalid mount config for type \"volume\": \
             field BindOptions must not be specified"
        );
    }

    #[test]
    fn mount_flag_reads_every_type() {
        assert_eq!(
            parse_mount("type=volume,source=data,target=/d").unwrap(),
            volume("data", "/d", false, false)
        );
        assert_eq!(parse_mount("src=data,dst=/d,readonly").unwrap(), volume("data", "/d", true, false));
        assert_eq!(
            parse_mount("src=data,destination=/d,ro=false").unwrap(),
            volume("data", "/d", false, false)
        );
        assert_eq!(
            parse_mount("src=data,dst=/d,volume-nocopy,ro=1").unwrap(),
            volume("data", "/d", true, true)
        );
        assert_eq!(
            parse_mount("src=data,dst=/d,volume-nocopy=false").unwrap(),
            volume("data", "/d", false, false)
        );
        assert_eq!(anonymous_target(&parse_mount("type=volume,target=/cache").unwrap()), "/cache");
        assert_eq!(
            parse_mount("type=bind,source=/tmp,target=/mnt,readonly=true,bind-propagation=rprivate").unwrap(),
            bind("/tmp", "/mnt", true)
        );
        assert_eq!(
            parse_mount("TYPE=BIND,Src=/tmp/,Target=/m,consistency=cached").unwrap(),
            bind("/tmp", "/m", false)
        );
        assert_eq!(
            parse_mount("type=tmpfs,dst=/run,tmpfs-size=64m,tmpfs-mode=1770").unwrap(),
            MountRequest::Tmpfs { target: "/run".into(), size: Some(64 << 20), mode: Some(0o1770) }
        );
        assert_eq!(
            parse_mount("\"type=bind\",\"src=/tmp\",\"dst=/a,b\"").unwrap(),
            bind("/tmp", "/a,b", false),
            "quoted CSV fields may hold commas"
        );
    }

    #[test]
    fn mount_flag_bind_of_the_current_directory() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            parse_mount("type=bind,src=.,dst=/src").unwrap(),
            bind(cwd.to_str().unwrap(), "/src", false)
        );
    }

    #[test]
    fn mount_flag_errors_read_as_docker_s() {
        let flag = |v: &str, e: &str| format!("invalid argument \"{v}\" for \"--mount\" flag: {e}");
        assert_eq!(err(parse_mount("type=bind,src=/tmp")), flag("type=bind,src=/tmp", "target is required"));
        assert_eq!(err(parse_mount("")), flag("", "EOF"));
        assert_eq!(
            err(parse_mount("dst=/x,bogus")),
            flag("dst=/x,bogus", "invalid field 'bogus' must be a key=value pair")
        );
        assert_eq!(err(parse_mount("dst=/x,foo=1")), flag("dst=/x,foo=1", "unexpected key 'foo' in 'foo=1'"));
        assert_eq!(
            err(parse_mount("dst=/x,ro=maybe")),
            flag("dst=/x,ro=maybe", "invalid value for ro: maybe")
        );
        assert_eq!(
            err(parse_mount("type=tmpfs,dst=/x,tmpfs-mode=9")),
            flag("type=tmpfs,dst=/x,tmpfs-mode=9", "invalid value for tmpfs-mode: 9")
        );
        assert_eq!(
            err(parse_mount("type=tmpfs,dst=/x,tmpfs-size=lots")),
            flag("type=tmpfs,dst=/x,tmpfs-size=lots", "invalid value for tmpfs-size: lots")
        );
        assert_eq!(
            err(parse_mount("type=bind,src=/tmp,dst=/x,volume-nocopy")),
            flag(
                "type=bind,src=/tmp,dst=/x,volume-nocopy",
                "cannot mix 'volume-*' options with mount type 'bind'"
            )
        );
        assert_eq!(
            err(parse_mount("dst=/x,tmpfs-size=1m")),
            flag("dst=/x,tmpfs-size=1m", "cannot mix 'tmpfs-*' options with mount type 'volume'")
        );
        assert_eq!(
            err(parse_mount("dst=/x,bind-propagation=shared")),
            flag("dst=/x,bind-propagation=shared", "cannot mix 'bind-*' options with mount type 'volume'")
        );
        assert_eq!(
            err(parse_mount("dst=\"/x")),
            flag("dst=\"/x", "parse error on line 1, column 5: bare \" in non-quoted-field")
        );
        assert!(err(parse_mount("dst=/x,volume-driver=nfs")).contains("volume-driver is not supported"));
        assert_eq!(
            err(parse_mount("type=bind,src=/nonexistent-rbuild-test-path,dst=/x")),
            "invalid mount config for type \"bind\": bind source path does not exist: \
             /nonexistent-rbuild-test-path"
        );
        assert_eq!(
            err(parse_mount("type=bind,dst=/x")),
            "invalid mount config for type \"bind\": field Source must not be empty"
        );
        assert_eq!(
            err(parse_mount("type=bind,src=tmp,dst=/x")),
            "invalid mount config for type \"bind\": invalid mount path: 'tmp' mount path must be absolute"
        );
        assert_eq!(
            err(parse_mount("type=volume,dst=/x,ro")),
            "invalid mount config for type \"volume\": must not set ReadOnly mode when using anonymous \
             volumes"
        );
        assert_eq!(
            err(parse_mount("type=tmpfs,src=x,dst=/x")),
            "invalid mount config for type \"tmpfs\": field Source must not be specified"
        );
        assert_eq!(
            err(parse_mount("type=npipe,dst=/x")),
            "invalid mount config for type \"npipe\": mount type unknown"
        );
        assert_eq!(
            err(parse_mount("type=volume,src=/abs,dst=/x")),
            Error::InvalidName("/abs".into()).to_string()
        );
        assert_eq!(
            err(parse_mount("dst=x")),
            "invalid mount config for type \"volume\": invalid mount path: 'x' mount path must be absolute"
        );
    }

    #[test]
    fn tmpfs_flag_reads_size_and_mode() {
        let tmpfs = |target: &str, size, mode| MountRequest::Tmpfs { target: target.into(), size, mode };
        assert_eq!(parse_tmpfs("/run").unwrap(), tmpfs("/run", None, None));
        assert_eq!(
            parse_tmpfs("/run:size=64m,mode=1777").unwrap(),
            tmpfs("/run", Some(64 << 20), Some(0o1777))
        );
        assert_eq!(
            parse_tmpfs("/tmp/:rw,exec,nosuid,nodev,size=4096").unwrap(),
            tmpfs("/tmp", Some(4096), None)
        );
        assert_eq!(err(parse_tmpfs("run")), "invalid mount path: 'run' mount path must be absolute");
        assert_eq!(err(parse_tmpfs("/")), "invalid specification: destination can't be '/'");
        assert!(err(parse_tmpfs("/run:size=half")).contains("invalid size \"half\""));
        assert!(err(parse_tmpfs("/run:mode=rwx")).contains("invalid mode \"rwx\""));
        assert!(err(parse_tmpfs("/run:noexec")).contains("option \"noexec\" is not supported"));
        assert!(err(parse_tmpfs("/run:uid=1000")).contains("option \"uid=1000\" is not supported"));
    }

    #[test]
    fn image_volumes_fill_only_uncovered_paths() {
        let explicit = vec![volume("data", "/data", false, false), bind("/tmp", "/logs", false)];
        let image = [
            "/data/".to_string(),
            "/logs".into(),
            "/cache".into(),
            "/cache".into(),
            "rel".into(),
            "/".into(),
        ];
        let implied = image_volumes(&image, &explicit);
        let targets: Vec<&str> = implied.iter().map(anonymous_target).collect();
        assert_eq!(targets, ["/cache", "/rel"]);
    }

    #[test]
    fn all_flags_together_keep_their_order_and_refuse_duplicates() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all =
            parse_mounts(&s(&["data:/srv/data/deep", "/anon"]), &s(&["type=tmpfs,dst=/srv"]), &s(&["/run"]))
                .unwrap();
        let targets: Vec<&str> = all.iter().map(MountRequest::target).collect();
        assert_eq!(targets, ["/srv/data/deep", "/anon", "/srv", "/run"]);
        let e = parse_mounts(&s(&["ab:/x/"]), &s(&["type=tmpfs,dst=/x"]), &[]).unwrap_err();
        assert_eq!(e.to_string(), "Duplicate mount point: /x");
    }

    #[test]
    fn mount_flags_fail_before_creating_any_host_directory() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("new");
        let volumes = vec![format!("{}:/a", host.display())];
        assert!(parse_mounts(&volumes, &["dst=rel".to_string()], &[]).is_err());
        assert!(!host.exists(), "a failed parse leaves the host untouched");
        parse_mounts(&volumes, &[], &[]).unwrap();
        assert!(host.is_dir());
    }
}
