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

impl fmt::Display for HostPlatform {
    /// BuildKit's format: `linux/amd64`, `linux/arm/v7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
