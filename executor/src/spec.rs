//! The wire format between [`crate::run`] and the re-executed init: an OCI runtime spec plus
//! the overlay layers, which OCI's `root` (a single path) cannot describe.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{Linux, LinuxNamespace, LinuxNamespaceType, Process as OciProcess, Root, Spec, User};
use serde::{Deserialize, Serialize};

use crate::{Error, NetworkMode, Rootfs, SandboxSpec};

/// The Dockerfile `USER` string, unresolved: only the init can read the rootfs's /etc/passwd,
/// so `process.user.uid/gid` in the OCI spec are placeholders until then.
pub const USER_ANNOTATION: &str = "org.rbuild.user";

/// What the init reads, as JSON, from the file descriptor named on its command line.
///
/// The init honours, from `oci`: `process.args/env/cwd`, `hostname`, `root.path` (where the
/// overlay is mounted), `linux.namespaces` (types only; joining by path is not supported) and
/// the [`USER_ANNOTATION`]. The standard /proc, /dev and /sys mounts are fixed, not read from
/// `mounts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitConfig {
    pub oci: Spec,
    pub overlay: Rootfs,
}

impl InitConfig {
    pub fn new(spec: &SandboxSpec) -> Result<InitConfig, Error> {
        validate(spec)?;
        let mut process = OciProcess::default();
        process
            .set_args(Some(spec.process.args.clone()))
            .set_env(Some(spec.process.env.clone()))
            .set_cwd(PathBuf::from(&spec.process.cwd))
            .set_user(User::default())
            // Not applied yet (capabilities, rlimits and no_new_privileges are later issues), so
            // the spec must not claim them.
            .set_capabilities(None)
            .set_rlimits(None)
            .set_no_new_privileges(None);

        let mut namespaces = vec![
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Pid,
        ];
        match spec.network {
            NetworkMode::None => namespaces.push(LinuxNamespaceType::Network),
        }
        let mut linux = Linux::default();
        linux
            .set_namespaces(Some(
                namespaces
                    .into_iter()
                    .map(|typ| {
                        let mut ns = LinuxNamespace::default();
                        ns.set_typ(typ);
                        ns
                    })
                    .collect(),
            ))
            .set_resources(None)
            .set_masked_paths(None)
            .set_readonly_paths(None);

        let mut root = Root::default();
        root.set_path(spec.rootfs.target.clone()).set_readonly(None);

        let mut oci = Spec::default();
        oci.set_root(Some(root))
            .set_mounts(None)
            .set_process(Some(process))
            .set_hostname(Some(spec.hostname.clone()))
            .set_annotations(Some(HashMap::from([(USER_ANNOTATION.to_string(), spec.process.user.clone())])))
            .set_linux(Some(linux));
        Ok(InitConfig { oci, overlay: spec.rootfs.clone() })
    }
}

fn validate(spec: &SandboxSpec) -> Result<(), Error> {
    let invalid = |m: String| Err(Error::InvalidSpec(m));
    if spec.process.args.is_empty() {
        return invalid("process.args is empty".into());
    }
    if !spec.process.cwd.starts_with('/') {
        return invalid(format!("process.cwd {:?} is not absolute", spec.process.cwd));
    }
    if spec.rootfs.lowers.is_empty() {
        return invalid("rootfs has no lower layer".into());
    }
    let strings =
        spec.process.args.iter().chain(&spec.process.env).chain([&spec.process.cwd, &spec.hostname]);
    if let Some(s) = strings.into_iter().find(|s| s.contains('\0')) {
        return invalid(format!("{s:?} contains a NUL byte"));
    }
    if let Some(e) = spec.process.env.iter().find(|e| !e.contains('=')) {
        return invalid(format!("environment entry {e:?} is not NAME=value"));
    }
    let paths = spec.rootfs.lowers.iter().chain([&spec.rootfs.upper, &spec.rootfs.work, &spec.rootfs.target]);
    if let Some(p) = paths.into_iter().find(|p| !p.is_absolute()) {
        return invalid(format!("rootfs path {} is not absolute", p.display()));
    }
    Ok(())
}

/// What the init needs, pulled out of an [`InitConfig`] with every field it relies on checked.
#[derive(Debug)]
pub(crate) struct Plan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    pub hostname: Option<String>,
    pub namespaces: CloneFlags,
    pub overlay: Rootfs,
}

impl Plan {
    pub fn from_config(config: InitConfig) -> Result<Plan, String> {
        let oci = config.oci;
        let process = oci.process().as_ref().ok_or("spec has no process")?;
        let args = process.args().clone().unwrap_or_default();
        if args.is_empty() {
            return Err("spec has no process.args".into());
        }
        let cwd = path_str(process.cwd())?;
        let target = oci.root().as_ref().ok_or("spec has no root")?.path();
        if target != config.overlay.target.as_path() {
            return Err(format!(
                "root.path {} is not the overlay target {}",
                target.display(),
                config.overlay.target.display()
            ));
        }
        let mut namespaces = CloneFlags::empty();
        for ns in oci.linux().as_ref().and_then(|l| l.namespaces().as_ref()).into_iter().flatten() {
            if ns.path().is_some() {
                return Err(format!("joining an existing {} namespace is not supported", ns.typ()));
            }
            namespaces |= match ns.typ() {
                LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
                LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
                LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
                LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
                LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
                LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
                other => return Err(format!("{other} namespaces are not supported yet")),
            };
        }
        // Without these two the overlay and pivot_root would act on the host, and our
        // PID-1-reaps-everything design would not hold.
        let required = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID;
        if !namespaces.contains(required) {
            return Err("the mount and pid namespaces are required".into());
        }
        let user =
            oci.annotations().as_ref().and_then(|a| a.get(USER_ANNOTATION)).cloned().unwrap_or_default();
        Ok(Plan {
            args,
            env: process.env().clone().unwrap_or_default(),
            cwd,
            user,
            hostname: oci.hostname().clone(),
            namespaces,
            overlay: config.overlay,
        })
    }
}

fn path_str(p: &Path) -> Result<String, String> {
    p.to_str().map(str::to_string).ok_or_else(|| format!("path {} is not UTF-8", p.display()))
}
