//! The host's platform in OCI terms (Go's `GOOS/GOARCH/GOARM` spelling), as BuildKit's
//! `platforms.DefaultSpec()` gives it: what `BUILDPLATFORM` says, what a `FROM scratch` config
//! records, and which entry of a multi-platform image this machine runs.

use std::fmt;

/// An OCI platform of this machine: `os`, `architecture` and, where the architecture has them,
/// `variant` (`v7` for 32-bit arm, as containerd's default; empty otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPlatform {
    pub os: &'static str,
    pub architecture: &'static str,
    pub variant: &'static str,
}

/// The platform rbuild was compiled for, which is the one it runs on.
pub fn host() -> HostPlatform {
    let (architecture, variant) = oci_arch(std::env::consts::ARCH, cfg!(target_endian = "little"));
    HostPlatform { os: "linux", architecture, variant }
}

/// Rust's `target_arch` as Go's `GOARCH` (and arm's variant).
fn oci_arch(rust_arch: &'static str, little_endian: bool) -> (&'static str, &'static str) {
    match rust_arch {
        "x86_64" => ("amd64", ""),
        "x86" => ("386", ""),
        "aarch64" => ("arm64", ""),
        "arm" => ("arm", "v7"),
        "powerpc64" if little_endian => ("ppc64le", ""),
        "powerpc64" => ("ppc64", ""),
        "riscv64" => ("riscv64", ""),
        "s390x" => ("s390x", ""),
        "loongarch64" => ("loong64", ""),
        "mips64" if little_endian => ("mips64le", ""),
        other => (other, ""),
    }
}

/// `os/arch[/variant]`, the one spelling of both platform types.
fn write_platform(f: &mut fmt::Formatter<'_>, os: &str, arch: &str, variant: &str) -> fmt::Result {
    write!(f, "{os}/{arch}")?;
    if !variant.is_empty() {
        write!(f, "/{variant}")?;
    }
    Ok(())
}

impl fmt::Display for HostPlatform {
    /// BuildKit's format: `linux/amd64`, `linux/arm/v7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_platform(f, self.os, self.architecture, self.variant)
    }
}

/// A platform to build for or run: `os`, `architecture` (Go's `GOARCH`) and `variant` (empty
/// when none), normalized as containerd's `platforms.Normalize` does, so `linux/arm64/v8`,
/// `linux/aarch64` and `linux/arm64` are one platform, and `linux/arm` is `linux/arm/v7`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: String,
}

/// A `--platform` value that is not `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformError(pub String);

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid platform {:?}: expected os/arch[/variant], e.g. linux/arm64", self.0)
    }
}

impl std::error::Error for PlatformError {}

impl Platform {
    /// This machine's platform.
    pub fn host() -> Platform {
        let h = host();
        Platform { os: h.os.into(), architecture: h.architecture.into(), variant: h.variant.into() }
    }

    /// Parses `os/arch[/variant]` (or `local`, the host), normalizing the spelling.
    pub fn parse(value: &str) -> Result<Platform, PlatformError> {
        let bad = || PlatformError(value.to_string());
        let lower = value.trim().to_ascii_lowercase();
        if lower == "local" {
            return Ok(Platform::host());
        }
        let parts: Vec<&str> = lower.split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, ""),
            [os, arch, variant] if !variant.is_empty() => (*os, *arch, *variant),
            _ => return Err(bad()),
        };
        let ok =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok(os) || !ok(arch) || !(variant.is_empty() || ok(variant)) {
            return Err(bad());
        }
        let (architecture, variant) = match (arch, variant) {
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64", if v == "v1" { "" } else { v }),
            ("i386" | "i686" | "386", v) => ("386", v),
            ("aarch64" | "arm64", "v8" | "8") => ("arm64", ""),
            ("aarch64" | "arm64", v) => ("arm64", v),
            ("armhf" | "armv7l" | "armv7", "") => ("arm", "v7"),
            ("armel" | "armv6l" | "armv6", "") => ("arm", "v6"),
            ("arm", "") => ("arm", "v7"),
            ("arm", v @ ("5" | "6" | "7" | "8")) => (
                "arm",
                if v == "5" {
                    "v5"
                } else if v == "6" {
                    "v6"
                } else if v == "7" {
                    "v7"
                } else {
                    "v8"
                },
            ),
            (a, v) => (a, v),
        };
        Ok(Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.to_string(),
        })
    }
}

impl fmt::Display for Platform {
    /// BuildKit's format: `linux/amd64`, `linux/arm/v7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_platform(f, &self.os, &self.architecture, &self.variant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_normalize_as_containerd() {
        let p = |s: &str| Platform::parse(s).unwrap().to_string();
        assert_eq!(p("linux/arm64/v8"), "linux/arm64");
        assert_eq!(p("linux/aarch64"), "linux/arm64");
        assert_eq!(p("linux/arm"), "linux/arm/v7");
        assert_eq!(p("linux/arm/v6"), "linux/arm/v6");
        assert_eq!(p("Linux/AMD64"), "linux/amd64");
        assert_eq!(p("linux/x86_64"), "linux/amd64");
        assert_eq!(p("linux/i386"), "linux/386");
        assert_eq!(Platform::parse("local").unwrap(), Platform::host());
        assert_eq!(Platform::host().to_string(), host().to_string());
        for bad in ["linux", "linux/", "/amd64", "linux/amd64/v2/x", "linux/am d64", ""] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rust_architectures_map_to_go_names() {
        assert_eq!(oci_arch("x86_64", true), ("amd64", ""));
        assert_eq!(oci_arch("arm", true), ("arm", "v7"));
        assert_eq!(oci_arch("powerpc64", true), ("ppc64le", ""));
        assert_eq!(oci_arch("powerpc64", false), ("ppc64", ""));
        assert_eq!(oci_arch("aarch64", true), ("arm64", ""));
    }

    #[test]
    fn display_is_buildkits() {
        let p = HostPlatform { os: "linux", architecture: "arm", variant: "v7" };
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert_eq!(HostPlatform { variant: "", ..p }.to_string(), "linux/arm");
        assert!(host().to_string().starts_with("linux/"));
    }
}
