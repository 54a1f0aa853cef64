//! What overlayfs copied up without changing it is not part of a step's diff.
//!
//! A step's upper directory holds everything it touched, and overlayfs copies a file up for
//! reasons that change nothing a layer records: a hard link to it (`ln a b` copies `a` up),
//! `chown` or `chmod` to the values it has, an open for writing that writes nothing. BuildKit's
//! overlay differ (`util/overlay/overlay_linux.go`, `Changes` with `sameDirent`) leaves such
//! entries out of the layer, and so do we, by removing them from the upper directory before it
//! is committed (and then used as the layer's own directory, where the lower file shows
//! through, identical). Same means BuildKit's test made strict: type and mode, owner, device
//! number and xattrs equal (BuildKit compares only `security.capability`; the layer records
//! every xattr, so a change of another is a change); for a non-directory also the size and the
//! mtime, and then always the content (a symlink's target). BuildKit trusts an mtime with
//! nanoseconds and compares content only when both are truncated to the second, but files
//! written in one clock tick share an mtime, so `mv /a /b` over a same-sized `b` would be lost;
//! and here the upper directory becomes the layer's own, so a wrong guess would reach the next
//! step too. Only entries whose metadata all match are read. A directory goes when it is the
//! same and, once its unchanged entries are gone, empty (BuildKit records a directory only when
//! it changed or holds a change). Nothing below an opaque directory is compared: the lower one
//! is hidden there. Anything that cannot be read counts as changed.

use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[cfg(test)]
use crate::userns::opaque_xattr;
use crate::userns::{is_overlay_xattr, is_whiteout};

/// Removes from `upper` the entries that are the same as in `lowers` (layer directories in
/// overlay format, topmost first). Returns how many entries were removed.
pub fn drop_unchanged_copy_ups(upper: &Path, lowers: &[PathBuf]) -> io::Result<usize> {
    let mut removed = 0;
    walk(upper, lowers.to_vec(), &mut removed)?;
    Ok(removed)
}

/// `dir` in the upper directory, and the lower directories visible under it, topmost first.
fn walk(dir: &Path, lowers: Vec<PathBuf>, removed: &mut usize) -> io::Result<()> {
    if lowers.is_empty() || is_opaque(dir) {
        // Nothing of the image is here: every entry below is new.
        return Ok(());
    }
    for entry in fs::read_dir(dir).map_err(at(dir))? {
        let entry = entry.map_err(at(dir))?;
        let name = entry.file_name();
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(at(&path))?;
        if is_whiteout(&meta) {
            continue;
        }
        // The entry the image has at this path, if one is visible.
        let Some((lower_path, lower_meta)) = lowers.iter().find_map(|l| {
            let p = l.join(&name);
            fs::symlink_metadata(&p).ok().map(|m| (p, m))
        }) else {
            continue;
        };
        if is_whiteout(&lower_meta) {
            continue;
        }
        if meta.is_dir() {
            if !lower_meta.is_dir() {
                continue;
            }
            walk(&path, visible_below(&lowers, &name), removed)?;
            if same_dirent(&meta, &lower_meta, &path, &lower_path)
                && !is_opaque(&path)
                && fs::read_dir(&path).map_err(at(&path))?.next().is_none()
            {
                fs::remove_dir(&path).map_err(at(&path))?;
                *removed += 1;
            }
        } else if same_dirent(&meta, &lower_meta, &path, &lower_path) {
            fs::remove_file(&path).map_err(at(&path))?;
            *removed += 1;
        }
    }
    Ok(())
}

/// An I/O error that names the path it happened at.
fn at(path: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The lower directories visible at `name` below directories `lowers`: from the top, each that
/// has a directory there, down to the first opaque one, or a layer that hides the rest (a
/// whiteout or a non-directory).
fn visible_below(lowers: &[PathBuf], name: &std::ffi::OsStr) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for l in lowers {
        let p = l.join(name);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                let opaque = is_opaque(&p);
                out.push(p);
                if opaque {
                    break;
                }
            }
            Ok(_) => break,
            Err(_) => continue,
        }
    }
    out
}

/// BuildKit's `sameDirent`, made strict (see the module docs). An error is "not the same".
fn same_dirent(a: &Metadata, b: &Metadata, a_path: &Path, b_path: &Path) -> bool {
    if a.mode() != b.mode() || a.uid() != b.uid() || a.gid() != b.gid() || a.rdev() != b.rdev() {
        return false;
    }
    if !a.is_dir() && (a.size() != b.size() || a.mtime() != b.mtime() || a.mtime_nsec() != b.mtime_nsec()) {
        return false;
    }
    match (xattrs(a_path), xattrs(b_path)) {
        (Some(x), Some(y)) if x == y => {}
        _ => return false,
    }
    if a.file_type().is_symlink() {
        return matches!((fs::read_link(a_path), fs::read_link(b_path)), (Ok(x), Ok(y)) if x == y);
    }
    if !a.is_file() || a.size() == 0 {
        return true;
    }
    same_content(a_path, b_path).unwrap_or(false)
}

/// The entry's xattrs (not following a symlink), overlayfs's own left out; `None` when they
/// cannot be read.
fn xattrs(path: &Path) -> Option<Vec<(std::ffi::OsString, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in xattr::list(path).ok()? {
        if is_overlay_xattr(name.as_encoded_bytes()) {
            continue;
        }
        let value = xattr::get(path, &name).ok()??;
        out.push((name, value));
    }
    out.sort();
    Some(out)
}

fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (fs::File::open(a)?, fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Opaque, or unreadable (then nothing below is compared, nothing removed).
fn is_opaque(dir: &Path) -> bool {
    crate::userns::is_opaque(dir).unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(p: &Path, content: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    /// Copies `from` to `to` as overlayfs's copy-up does: content, mode and times kept.
    fn copy_up(from: &Path, to: &Path) {
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(from, to).unwrap();
        let m = fs::metadata(from).unwrap();
        fs::File::options().write(true).open(to).unwrap().set_modified(m.modified().unwrap()).unwrap();
    }

    #[test]
    fn unchanged_copy_ups_go_changes_stay() {
        let t = tempfile::tempdir().unwrap();
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        for f in ["d/same", "d/content", "d/mode", "d/linked", "other/same"] {
            write(&lower.join(f), "x");
        }
        copy_up(&lower.join("d/same"), &upper.join("d/same"));
        copy_up(&lower.join("d/content"), &upper.join("d/content"));
        fs::write(upper.join("d/content"), "y").unwrap();
        copy_up(&lower.join("d/mode"), &upper.join("d/mode"));
        fs::set_permissions(upper.join("d/mode"), fs::Permissions::from_mode(0o600)).unwrap();
        // `ln d/linked d/new`: the copy-up and the new name are one inode in the upper dir.
        copy_up(&lower.join("d/linked"), &upper.join("d/linked"));
        fs::hard_link(upper.join("d/linked"), upper.join("d/new")).unwrap();
        copy_up(&lower.join("other/same"), &upper.join("other/same"));
        write(&upper.join("fresh/file"), "z");
        // `mv /d/other /d/moved` over a file of the same size and mtime: changed all the same.
        write(&lower.join("d/moved"), "1");
        write(&upper.join("d/moved"), "2");
        let lower_times = fs::metadata(lower.join("d/moved")).unwrap().modified().unwrap();
        fs::File::options()
            .write(true)
            .open(upper.join("d/moved"))
            .unwrap()
            .set_modified(lower_times)
            .unwrap();
        // Another xattr than the capabilities is a change (the layer records it).
        copy_up(&lower.join("d/same"), &upper.join("d/xattr"));
        fs::copy(lower.join("d/same"), lower.join("d/xattr")).unwrap();
        copy_up(&lower.join("d/xattr"), &upper.join("d/xattr"));
        xattr::set(upper.join("d/xattr"), "user.note", b"1").unwrap();

        assert_eq!(drop_unchanged_copy_ups(&upper, &[lower]).unwrap(), 4);
        let left = |p: &str| upper.join(p).exists();
        assert!(!left("d/same") && !left("d/linked") && !left("other"));
        assert!(left("d/content") && left("d/mode") && left("d/new") && left("fresh/file"));
        assert!(left("d/moved") && left("d/xattr"));
        assert_eq!(fs::metadata(upper.join("d/new")).unwrap().nlink(), 1);
    }

    #[test]
    fn nothing_below_an_opaque_directory_or_a_hiding_layer_is_compared() {
        let t = tempfile::tempdir().unwrap();
        let (bottom, top, upper) = (t.path().join("bottom"), t.path().join("top"), t.path().join("upper"));
        write(&bottom.join("a/f"), "x");
        write(&bottom.join("b/f"), "x");
        // The top layer replaces b with a file: b/f of the bottom layer is not in the image.
        write(&top.join("b"), "file");
        copy_up(&bottom.join("a/f"), &upper.join("a/f"));
        xattr::set(upper.join("a"), opaque_xattr(), b"y").unwrap();
        fs::remove_file(top.join("b")).unwrap();
        fs::create_dir(top.join("b")).unwrap();
        xattr::set(top.join("b"), opaque_xattr(), b"y").unwrap();
        copy_up(&bottom.join("b/f"), &upper.join("b/f"));
        assert_eq!(drop_unchanged_copy_ups(&upper, &[top, bottom]).unwrap(), 0);
        assert!(upper.join("a/f").exists() && upper.join("b/f").exists());
    }
}
