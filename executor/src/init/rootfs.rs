//! The sandbox's filesystem, from PID 1 of the new mount namespace: the overlay rootfs, the
//! standard filesystems (proc, dev, sys, cgroup), the user's mounts (resolved inside the
//! rootfs before `pivot_root`), masked paths, then `pivot_root` itself.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use hostutil::{inroot, mountinfo};
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, pivot_root};

use super::{Result, fail, in_userns, io, os, unmapped};
use crate::spec::{CgroupFs, Plan, PlanMount, SecretFile};
use crate::userns;

pub(super) fn mount_overlay(plan: &Plan) -> Result<()> {
    let ov = &plan.overlay;
    let open_dir = |p: &Path| {
        open(p, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(os(format!("open layer directory {}", p.display())))
    };
    // The layers are named through /proc/self/fd, so the host's paths appear neither in the
    // sandbox's mountinfo nor against the one-page limit on mount options with many layers.
    let lowers = ov.lowers.iter().map(|p| open_dir(p)).collect::<Result<Vec<_>>>()?;
    let upper = open_dir(&ov.upper)?;
    let work = open_dir(&ov.work)?;
    let fd_path = |fd: &OwnedFd| format!("/proc/self/fd/{}", fd.as_raw_fd());
    let data = format!(
        "lowerdir={},upperdir={},workdir={}{}",
        lowers.iter().map(fd_path).collect::<Vec<_>>().join(":"),
        fd_path(&upper),
        fd_path(&work),
        userxattr()
    );
    mount(Some("overlay"), &ov.target, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
        .map_err(os(format!("mount overlay at {}", ov.target.display())))
}

/// A directory in the rootfs to mount on; refuses symlinks, which could point to the host.
fn mount_point(root: &Path, name: &str) -> Result<PathBuf> {
    let path = root.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => Ok(path),
        Ok(_) => Err(fail(format!("mount point /{name}"), "exists in the rootfs and is not a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(&path).map_err(io(format!("create mount point /{name}")))?;
            Ok(path)
        }
        Err(e) => Err(io(format!("inspect mount point /{name}"))(e)),
    }
}

fn do_mount(source: &str, target: &Path, fstype: &str, flags: MsFlags, data: Option<&str>) -> Result<()> {
    mount(Some(source), target, Some(fstype), flags, data)
        .map_err(os(format!("mount {fstype} at {}", target.display())))
}

pub(super) fn mount_standard_fs(root: &Path, shm_size: Option<u64>) -> Result<()> {
    let nosuid_noexec_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    do_mount("proc", &mount_point(root, "proc")?, "proc", nosuid_noexec_nodev, None)?;

    let dev = mount_point(root, "dev")?;
    do_mount(
        "tmpfs",
        &dev,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    // Bind mounts of the host's nodes rather than mknod, which a user namespace forbids.
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let node = dev.join(name);
        File::create(&node).map_err(io(format!("create /dev/{name}")))?;
        let host = format!("/dev/{name}");
        mount(Some(host.as_str()), &node, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(os(format!("bind-mount {host}")))?;
    }
    let pts = dev.join("pts");
    std::fs::create_dir(&pts).map_err(io("create /dev/pts"))?;
    do_mount(
        "devpts",
        &pts,
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    let shm = dev.join("shm");
    std::fs::create_dir(&shm).map_err(io("create /dev/shm"))?;
    // docker's default is 64 MiB (`--shm-size` changes it).
    let shm_data = format!("mode=1777,size={}", shm_size.unwrap_or(64 << 20));
    do_mount("shm", &shm, "tmpfs", nosuid_noexec_nodev, Some(&shm_data))?;
    let mqueue = dev.join("mqueue");
    std::fs::create_dir(&mqueue).map_err(io("create /dev/mqueue"))?;
    do_mount("mqueue", &mqueue, "mqueue", nosuid_noexec_nodev, None)?;
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(to, dev.join(link)).map_err(io(format!("create symlink /dev/{link}")))?;
    }

    let sys = mount_point(root, "sys")?;
    match mount(Some("sysfs"), &sys, Some("sysfs"), nosuid_noexec_nodev | MsFlags::MS_RDONLY, None::<&str>) {
        // In a user namespace, sysfs can only be mounted for a network namespace that namespace
        // owns; with the host's network (`--network=host`) bind the host's /sys read-only
        // instead, as rootless runc and crun do.
        Err(Errno::EPERM) if in_userns() => bind_host_sys(&sys),
        r => r.map_err(os(format!("mount sysfs at {}", sys.display()))),
    }
}

/// The host's /sys with everything mounted below it (the host's cgroup filesystems...) at `sys`,
/// each mount read-only, nosuid, nodev and noexec, as a fresh sysfs would be.
fn bind_host_sys(sys: &Path) -> Result<()> {
    let step = "bind-mount the host's /sys (rootless, host network)";
    mount(Some("/sys"), sys, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(os(step))?;
    let mut targets: Vec<PathBuf> = mountinfo::read()
        .map_err(io(step))?
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(sys))
        .collect();
    // Parents first: a child's mount point must be reached through its (already read-only)
    // parent, which is fine for a remount.
    targets.sort_by_key(|p| p.components().count());
    targets.dedup();
    let extra = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    for target in targets {
        remount_readonly_with(&target, extra)?;
    }
    Ok(())
}

/// The overlay option a user namespace needs: without it overlayfs wants `trusted.*` xattrs,
/// which only real root may set, and ignores the store's `user.overlay.opaque` markers.
fn userxattr() -> &'static str {
    if in_userns() { ",userxattr" } else { "" }
}

/// The cgroup filesystems, read-only, under the (read-only) /sys. Mounted from inside the
/// cgroup namespace, each shows the sandbox's own cgroup as its root.
pub(super) fn mount_cgroup_fs(root: &Path, mounts: &[CgroupFs]) -> Result<()> {
    if mounts.is_empty() {
        return Ok(());
    }
    let base = root.join("sys/fs/cgroup");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV | MsFlags::MS_RELATIME;
    let v2_only = mounts.len() == 1 && mounts[0].dir.is_empty();
    if !v2_only {
        do_mount("tmpfs", &base, "tmpfs", flags, Some("mode=755,size=64k"))?;
    }
    for m in mounts {
        let dir = base.join(&m.dir);
        if !m.dir.is_empty() {
            std::fs::create_dir(&dir).map_err(io(format!("create /sys/fs/cgroup/{}", m.dir)))?;
        }
        let data = (!m.data.is_empty()).then_some(m.data.as_str());
        do_mount("cgroup", &dir, &m.fstype, flags | MsFlags::MS_RDONLY, data)?;
    }
    if !v2_only {
        mount(
            None::<&str>,
            &base,
            None::<&str>,
            flags | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(os("make /sys/fs/cgroup read-only"))?;
    }
    Ok(())
}

/// The terminal on stdin, bound at /dev/console, as runc shows a container's terminal.
/// A bind's source must be a mount of our namespace, so the terminal is bound from its path
/// (`/dev/pts/N`) in the host's tree, which this namespace copied; a terminal that is not
/// found there (one from another mount namespace) is left out of /dev.
pub(super) fn mount_console(root: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(path) = std::fs::read_link("/proc/self/fd/0") else { return Ok(()) };
    let (Ok(ours), Ok(found)) = (std::fs::metadata("/proc/self/fd/0"), std::fs::metadata(&path)) else {
        return Ok(());
    };
    if (ours.dev(), ours.ino(), ours.rdev()) != (found.dev(), found.ino(), found.rdev()) {
        return Ok(());
    }
    let console = root.join("dev/console");
    File::create(&console).map_err(io("create /dev/console"))?;
    mount(Some(&path), &console, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(os(format!("bind the terminal {} at /dev/console", path.display())))
}

/// The host-side file descriptors a mount needs (opened before `pivot_root`).
type Sources = Vec<OwnedFd>;

pub(super) fn open_sources(dest: &str, mount: &PlanMount) -> Result<Sources> {
    let open_path = |p: &Path| {
        open(p, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(os(format!("open the source of the mount at {dest}: {}", p.display())))
    };
    Ok(match mount {
        PlanMount::Bind { source, .. } => vec![open_path(source)?],
        PlanMount::Overlay { lowers, upper } => {
            let mut fds = lowers.iter().map(|p| open_path(p)).collect::<Result<Vec<_>>>()?;
            if let Some((u, w)) = upper {
                fds.push(open_path(u)?);
                fds.push(open_path(w)?);
            }
            fds
        }
        PlanMount::Tmpfs { .. } | PlanMount::Secret(_) => Vec::new(),
    })
}

fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Creates `path` (a directory, or an empty file) if missing; `path` was resolved with
/// [`hostutil::inroot::resolve`], so the missing part holds no symlink.
fn mount_target(dest: &str, path: &Path, dir: bool) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("create mount point {dest}")))?;
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() == dir => Ok(()),
        Ok(_) => Err(fail(
            format!("mount at {dest}"),
            if dir {
                "it is a file in the image, and the mount is a directory"
            } else {
                "it is a directory in the image, and the mount is a file"
            },
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir {
                std::fs::create_dir(path).map_err(io(format!("create mount point {dest}")))
            } else {
                File::create(path).map(drop).map_err(io(format!("create mount point {dest}")))
            }
        }
        Err(e) => Err(io(format!("inspect mount point {dest}"))(e)),
    }
}

/// Makes the mount at `dest` read-only, keeping the flags (nosuid, nodev, ...) it has: a
/// remount that drops a locked flag fails.
pub(super) fn remount_readonly(dest: &Path) -> Result<()> {
    remount_readonly_with(dest, MsFlags::empty())
}

/// [`remount_readonly`], adding `extra` flags.
fn remount_readonly_with(dest: &Path, extra: MsFlags) -> Result<()> {
    use nix::sys::statvfs::{FsFlags, statvfs};
    let have = statvfs(dest).map_err(os(format!("statfs {}", dest.display())))?.flags();
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | extra;
    for (st, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if have.contains(st) {
            flags |= ms;
        }
    }
    mount(None::<&str>, dest, None::<&str>, flags, None::<&str>)
        .map_err(os(format!("make {} read-only", dest.display())))
}

pub(super) fn user_mount(root: &Path, dest: &str, mount_spec: &PlanMount, fds: &Sources) -> Result<()> {
    let at = inroot::resolve(root, Path::new(dest)).map_err(io(format!("resolve the mount point {dest}")))?;
    let at = at.as_path();
    match mount_spec {
        PlanMount::Bind { readonly, populate, source: source_path } => {
            let source = &fds[0];
            let dir =
                nix::sys::stat::fstat(source).map_err(os(format!("stat the source of {dest}")))?.st_mode
                    & libc::S_IFMT
                    == libc::S_IFDIR;
            if *populate && dir && std::fs::symlink_metadata(at).is_ok_and(|m| m.is_dir()) {
                use std::os::fd::AsFd;
                crate::populate::fill_if_empty(at, source.as_fd(), source_path)
                    .map_err(|m| fail(format!("fill the volume at {dest} from the image"), m))?;
            }
            mount_target(dest, at, dir)?;
            mount(
                Some(fd_path(source).as_str()),
                at,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(os(format!("bind mount at {dest}")))?;
            if *readonly {
                remount_readonly(at)?;
            }
            Ok(())
        }
        PlanMount::Overlay { lowers, upper } => {
            mount_target(dest, at, true)?;
            let lower = fds[..lowers.len()].iter().map(fd_path).collect::<Vec<_>>().join(":");
            let mut data = format!("lowerdir={lower}");
            if upper.is_some() {
                let n = lowers.len();
                data.push_str(&format!(",upperdir={},workdir={}", fd_path(&fds[n]), fd_path(&fds[n + 1])));
            }
            data.push_str(userxattr());
            let flags = if upper.is_some() { MsFlags::empty() } else { MsFlags::MS_RDONLY };
            mount(Some("overlay"), at, Some("overlay"), flags, Some(data.as_str()))
                .map_err(os(format!("overlay mount at {dest}")))
        }
        PlanMount::Tmpfs { size } => {
            mount_target(dest, at, true)?;
            let data = match size {
                Some(size) => format!("mode=1777,size={size}"),
                None => "mode=1777".to_string(),
            };
            mount(
                Some("tmpfs"),
                at,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(data.as_str()),
            )
            .map_err(os(format!("tmpfs mount at {dest}")))
        }
        PlanMount::Secret(secret) => mount_secret(root, dest, at, secret),
    }
}

/// A file with the secret's bytes on a private tmpfs, bound read-only at `dest`; the tmpfs's
/// own mount point is detached right away, so only `dest` shows it.
fn mount_secret(root: &Path, dest: &str, at: &Path, secret: &SecretFile) -> Result<()> {
    // In the sandbox's own /dev tmpfs, never on a disk.
    let stage = root.join("dev/.rbuild-secret");
    let stage = stage.as_path();
    let step = format!("secret mount at {dest}");
    std::fs::create_dir(stage).map_err(io(step.clone()))?;
    let size = format!("mode=0700,size={}", secret.contents.len() + 4096);
    // noexec unless the file is meant to run (a RUN heredoc script has mode 0755).
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if secret.mode & 0o111 == 0 {
        flags |= MsFlags::MS_NOEXEC;
    }
    mount(Some("tmpfs"), stage, Some("tmpfs"), flags, Some(size.as_str())).map_err(os(step.clone()))?;
    let file = stage.join("secret");
    std::fs::write(&file, &secret.contents).map_err(io(step.clone()))?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(secret.mode & 0o7777))
        .map_err(io(step.clone()))?;
    std::os::unix::fs::chown(&file, Some(secret.uid), Some(secret.gid)).map_err(|e| {
        if e.raw_os_error() == Some(libc::EINVAL) && in_userns() {
            let (kind, id) = unmapped(secret.uid, secret.gid);
            fail(step.clone(), userns::not_mapped_message(kind, id, userns::host_user().as_deref()))
        } else {
            io(step.clone())(e)
        }
    })?;
    mount_target(dest, at, false)?;
    mount(Some(&file), at, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(os(step.clone()))?;
    remount_readonly(at)?;
    umount2(stage, MntFlags::MNT_DETACH).map_err(os(step.clone()))?;
    std::fs::remove_dir(stage).map_err(io(step))
}

/// Docker's masked paths (files get /dev/null, directories an empty read-only tmpfs) and
/// read-only paths (bound onto themselves, read-only). Paths this kernel lacks are skipped.
pub(super) fn mask_paths(masked: &[String], readonly: &[String]) -> Result<()> {
    for p in masked {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => {
                mount(Some("tmpfs"), p.as_str(), Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0"))
                    .map_err(os(format!("mask {p}")))?
            }
            Ok(_) => mount(Some("/dev/null"), p.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(os(format!("mask {p}")))?,
            Err(_) => {}
        }
    }
    for p in readonly {
        if std::fs::symlink_metadata(p).is_err() {
            continue;
        }
        mount(Some(p.as_str()), p.as_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(os(format!("bind {p} read-only")))?;
        remount_readonly(Path::new(p))?;
    }
    Ok(())
}

pub(super) fn enter_rootfs(root: &Path) -> Result<()> {
    chdir(root).map_err(os(format!("chdir to {}", root.display())))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; detaching "." then
    // removes it, without needing a directory for it inside the rootfs.
    pivot_root(".", ".").map_err(os(format!("pivot_root to {}", root.display())))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(os("detach the old root"))?;
    chdir("/").map_err(os("chdir to /"))
}
