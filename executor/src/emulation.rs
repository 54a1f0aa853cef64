//! Running another architecture's programs: the kernel's binfmt_misc and QEMU user emulation.
//!
//! A process of a foreign architecture (an arm64 `sh` on an x86_64 machine) runs when the
//! kernel has a binfmt_misc entry whose magic matches its ELF header: the kernel then runs the
//! entry's interpreter (Debian's `qemu-aarch64-static`) with the program as argument. The entry
//! must have the `F` (fix binary) flag: the kernel opens the interpreter when the entry is
//! registered, so it works inside a sandbox whose root (after `pivot_root`) has no
//! `/usr/libexec/qemu-binfmt`. Without `F` the interpreter is looked up in the sandbox's root
//! at every exec, and fails there.
//!
//! [`ensure`] is what the solver and the runtime call before running a platform's programs:
//! native platforms need nothing; for the others it uses an entry the host registered (under
//! QEMU's own name, `qemu-<arch>`, which Debian's `systemd-binfmt` files, `binfmt-support` and
//! tonistiigi/binfmt all use), or registers one from the `binfmt.d` file that Debian's
//! `qemu-user-static` installs, adding `F` when the file lacks it. Registering needs root and
//! changes the whole machine, as `systemd-binfmt` does at boot: it is what a user who installed
//! `qemu-user-static` asked for, and rbuild never removes or replaces an entry.
//!
//! QEMU turns the guest's syscalls into the host's, so the sandbox's seccomp filter, which
//! sees only host syscalls, applies to an emulated process as to a native one.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where binfmt_misc is mounted.
const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// Where `systemd-binfmt` reads registrations from, most important first (`binfmt.d(5)`).
const CONF_DIRS: &[&str] =
    &["/etc/binfmt.d", "/run/binfmt.d", "/usr/local/lib/binfmt.d", "/usr/lib/binfmt.d"];

/// How this machine runs a platform's programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runner {
    /// The CPU runs them (the host's own architecture, or its 32-bit compat mode: 386 on
    /// amd64).
    Native,
    /// Through the binfmt_misc entry `entry`, whose interpreter is `interpreter`.
    Emulated { entry: String, interpreter: PathBuf },
}

impl std::fmt::Display for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Runner::Native => f.write_str("native"),
            Runner::Emulated { entry, interpreter } => {
                write!(f, "emulated by {} (binfmt_misc entry {entry})", interpreter.display())
            }
        }
    }
}

/// Why a platform's programs cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum EmulationError {
    #[error("platform {platform}: rbuild knows no emulator for architecture {architecture:?}")]
    Unknown { platform: String, architecture: String },
    #[error(
        "platform {platform} needs QEMU user emulation, and this machine has none for {qemu}: install \
         Debian's qemu-user-static (no binfmt_misc entry qemu-{qemu}, no qemu-{qemu}.conf in {dirs})",
        dirs = CONF_DIRS.join(", ")
    )]
    Missing { platform: String, qemu: &'static str },
    #[error(
        "platform {platform}: the binfmt_misc entry qemu-{qemu} has no F (fix binary) flag, so its \
         interpreter {interpreter} is not found inside a container; register it again with F (as \
         Debian's qemu-user-static does: `echo -1 > {BINFMT_DIR}/qemu-{qemu}`, then \
         `systemctl restart systemd-binfmt` or run rbuild again)"
    )]
    NoFixBinary { platform: String, qemu: &'static str, interpreter: String },
    #[error(
        "platform {platform} needs QEMU user emulation and binfmt_misc has no qemu-{qemu} entry; \
         registering one needs root (run rbuild as root once, or `systemctl restart systemd-binfmt`)"
    )]
    NotRoot { platform: String, qemu: &'static str },
    #[error("platform {platform}: the binfmt_misc entry qemu-{qemu} is disabled")]
    Disabled { platform: String, qemu: &'static str },
    #[error("platform {platform}: {action}")]
    Io {
        platform: String,
        action: String,
        #[source]
        source: io::Error,
    },
    #[error("platform {platform}: {path}: not a binfmt_misc registration ({reason})")]
    BadConf { platform: String, path: PathBuf, reason: String },
}

/// QEMU's name for a Go/OCI architecture (`qemu-<name>-static`, `qemu-<name>.conf`).
fn qemu_name(architecture: &str) -> Option<&'static str> {
    Some(match architecture {
        "amd64" => "x86_64",
        "386" => "i386",
        "arm64" => "aarch64",
        "arm" => "arm",
        "ppc64le" => "ppc64le",
        "ppc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "mips64le" => "mips64el",
        "mips64" => "mips64",
        "mipsle" => "mipsel",
        "mips" => "mips",
        "loong64" => "loongarch64",
        _ => return None,
    })
}

/// Whether the CPU runs `architecture`'s programs itself: the host's, and 386 on amd64 (the
/// kernel's IA32 emulation, which Debian's kernels have).
fn is_native(architecture: &str) -> bool {
    let host = crate::host_architecture();
    architecture == host || (host == "amd64" && architecture == "386")
}

/// What runs `os/architecture` programs here, without changing anything: native, an existing
/// usable entry, or why not (a missing entry that [`ensure`] would register is `Missing`).
pub fn probe(os: &str, architecture: &str) -> Result<Runner, EmulationError> {
    let platform = format!("{os}/{architecture}");
    if os != "linux" {
        return Err(EmulationError::Unknown { platform, architecture: format!("{os}/{architecture}") });
    }
    if is_native(architecture) {
        return Ok(Runner::Native);
    }
    let qemu = qemu_name(architecture).ok_or_else(|| EmulationError::Unknown {
        platform: platform.clone(),
        architecture: architecture.into(),
    })?;
    match read_entry(&format!("qemu-{qemu}")) {
        Some(entry) => entry.usable(&platform, qemu),
        None => Err(EmulationError::Missing { platform, qemu }),
    }
}

/// Makes `os/architecture` programs runnable here, registering QEMU's binfmt_misc entry from
/// its `binfmt.d` file when the host has none (see the module doc), and says how they run.
pub fn ensure(os: &str, architecture: &str) -> Result<Runner, EmulationError> {
    match probe(os, architecture) {
        Err(EmulationError::Missing { platform, qemu }) => register(&platform, qemu),
        other => other,
    }
}

/// Every platform this machine can run now or after [`ensure`], each with how (for `rbuild
/// system info`); a platform whose entry is unusable is listed with the reason.
pub fn platforms() -> Vec<(String, Result<Runner, String>)> {
    const ALL: &[&str] =
        &["amd64", "386", "arm64", "arm", "ppc64le", "s390x", "riscv64", "mips64le", "mips64", "loong64"];
    let mut out = Vec::new();
    for arch in ALL {
        let platform = format!("linux/{arch}");
        match probe("linux", arch) {
            Ok(runner) => out.push((platform, Ok(runner))),
            Err(EmulationError::Missing { qemu, .. }) => {
                if let Some(conf) = find_conf(qemu) {
                    let how = format!("emulated once registered from {}", conf.display());
                    out.push((platform, Err(how)));
                }
            }
            Err(e) => out.push((platform, Err(hostutil::errors::one_line(&e)))),
        }
    }
    out
}

/// A binfmt_misc entry as its file in [`BINFMT_DIR`] shows it.
struct Entry {
    enabled: bool,
    interpreter: String,
    flags: String,
}

impl Entry {
    fn usable(self, platform: &str, qemu: &'static str) -> Result<Runner, EmulationError> {
        if !self.enabled {
            return Err(EmulationError::Disabled { platform: platform.into(), qemu });
        }
        if !self.flags.contains('F') {
            return Err(EmulationError::NoFixBinary {
                platform: platform.into(),
                qemu,
                interpreter: self.interpreter,
            });
        }
        Ok(Runner::Emulated { entry: format!("qemu-{qemu}"), interpreter: self.interpreter.into() })
    }
}

/// The entry `name`, if binfmt_misc is mounted and has it.
fn read_entry(name: &str) -> Option<Entry> {
    let text = fs::read_to_string(Path::new(BINFMT_DIR).join(name)).ok()?;
    Some(parse_entry(&text))
}

fn parse_entry(text: &str) -> Entry {
    let mut entry = Entry { enabled: false, interpreter: String::new(), flags: String::new() };
    for line in text.lines() {
        if line == "enabled" {
            entry.enabled = true;
        } else if let Some(i) = line.strip_prefix("interpreter ") {
            entry.interpreter = i.to_string();
        } else if let Some(f) = line.strip_prefix("flags: ") {
            entry.flags = f.to_string();
        }
    }
    entry
}

/// The first `qemu-<qemu>.conf` of the `binfmt.d` directories.
fn find_conf(qemu: &str) -> Option<PathBuf> {
    CONF_DIRS.iter().map(|d| Path::new(d).join(format!("qemu-{qemu}.conf"))).find(|p| p.is_file())
}

/// The registration line of a `binfmt.d` file (`:name:type:offset:magic:mask:interpreter:flags`,
/// comments and blank lines skipped), with `F` added to its flags.
fn registration_with_fix_binary(text: &str) -> Result<(String, String), String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .ok_or("no registration line")?;
    let delim = line.chars().next().ok_or("empty line")?;
    let fields: Vec<&str> = line[delim.len_utf8()..].split(delim).collect();
    if fields.len() != 7 {
        return Err(format!("{} fields, expected 7", fields.len()));
    }
    let (name, interpreter, flags) = (fields[0], fields[5], fields[6]);
    if name.is_empty() || interpreter.is_empty() {
        return Err("no name or no interpreter".into());
    }
    let mut fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    if !flags.contains('F') {
        fields[6] = format!("{flags}F");
    }
    let d = delim.to_string();
    Ok((format!("{d}{}", fields.join(&d)), interpreter.to_string()))
}

/// Registers `qemu-<qemu>` from its `binfmt.d` file (mounting binfmt_misc first if needed).
fn register(platform: &str, qemu: &'static str) -> Result<Runner, EmulationError> {
    let io_err = |action: String| {
        let platform = platform.to_string();
        move |source| EmulationError::Io { platform, action, source }
    };
    let Some(conf) = find_conf(qemu) else {
        return Err(EmulationError::Missing { platform: platform.into(), qemu });
    };
    let text = fs::read_to_string(&conf).map_err(io_err(format!("reading {}", conf.display())))?;
    let (line, interpreter) = registration_with_fix_binary(&text).map_err(|reason| {
        EmulationError::BadConf { platform: platform.into(), path: conf.clone(), reason }
    })?;
    if !Path::new(&interpreter).exists() {
        return Err(EmulationError::Missing { platform: platform.into(), qemu });
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(EmulationError::NotRoot { platform: platform.into(), qemu });
    }
    mount_binfmt_misc().map_err(io_err(format!("mounting binfmt_misc on {BINFMT_DIR}")))?;
    let written = fs::OpenOptions::new()
        .write(true)
        .open(Path::new(BINFMT_DIR).join("register"))
        .and_then(|mut f| f.write_all(line.as_bytes()));
    match written {
        Ok(()) => {}
        // Another rbuild (or systemd-binfmt) registered it in the meantime.
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(io_err(format!("registering {} from {}", line, conf.display()))(e)),
    }
    match read_entry(&format!("qemu-{qemu}")) {
        Some(entry) => entry.usable(platform, qemu),
        None => Err(EmulationError::Missing { platform: platform.into(), qemu }),
    }
}

/// Mounts binfmt_misc where the kernel expects it, unless it is there (a machine without
/// systemd, or a container, often has it unmounted).
fn mount_binfmt_misc() -> io::Result<()> {
    if Path::new(BINFMT_DIR).join("register").exists() {
        return Ok(());
    }
    nix::mount::mount(
        Some("binfmt_misc"),
        BINFMT_DIR,
        Some("binfmt_misc"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV | nix::mount::MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debians_registration_keeps_its_fields_and_gains_fix_binary() {
        let conf = "# comment\n:qemu-aarch64:M::\\x7f\\x45\\x4c\\x46:\\xff\\xff\\xff\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OP\n";
        let (line, interp) = registration_with_fix_binary(conf).unwrap();
        assert_eq!(
            line,
            ":qemu-aarch64:M::\\x7f\\x45\\x4c\\x46:\\xff\\xff\\xff\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF"
        );
        assert_eq!(interp, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P");
        let already = ":qemu-arm:M::\\x7f:\\xff:/usr/bin/qemu-arm-static:F";
        assert_eq!(registration_with_fix_binary(already).unwrap().0, already);
        assert!(registration_with_fix_binary(":a:M::x:y:/i").is_err());
        assert!(registration_with_fix_binary("# only a comment\n").is_err());
    }

    #[test]
    fn entries_parse_as_the_kernel_prints_them() {
        let e = parse_entry(
            "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\nmagic 7f45\n",
        );
        assert!(e.enabled);
        assert_eq!(e.flags, "POF");
        let r = e.usable("linux/arm64", "aarch64").unwrap();
        assert_eq!(
            r,
            Runner::Emulated {
                entry: "qemu-aarch64".into(),
                interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".into()
            }
        );
        let no_f = parse_entry("enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: OC\n");
        let e = no_f.usable("linux/arm64", "aarch64").unwrap_err().to_string();
        assert!(e.contains("no F (fix binary) flag"), "{e}");
    }

    #[test]
    fn the_host_and_unknown_architectures() {
        assert_eq!(probe("linux", crate::host_architecture()).unwrap(), Runner::Native);
        let e = probe("linux", "pdp11").unwrap_err().to_string();
        assert_eq!(e, "platform linux/pdp11: rbuild knows no emulator for architecture \"pdp11\"");
        assert!(probe("windows", "amd64").is_err());
        let missing = EmulationError::Missing { platform: "linux/arm64".into(), qemu: "aarch64" }.to_string();
        assert!(missing.contains("install Debian's qemu-user-static"), "{missing}");
    }
}
