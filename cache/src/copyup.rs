//! What overlayfs copied up without changing it is not part of a step's diff.
//!
//! A step's upper directory holds everything it touched, and overlayfs copies a file up for
//! reasons that change nothing a layer records: a hard link to it (`ln a b` copies `a` up),
//! `chown` or `chmod` to the values it has, an open for writing that writes nothing. BuildKit's
//! overlay differ (`util/overlay/overlay_linux.go`, `Changes` with `sameDirent`) leaves such
//! entries out of the layer, and so do we, by removing them from the upper directory before it
//! is committed (and then used as the layer's own directory, where the lower file shows
//! through, identical). Same means BuildKit's test: type and mode, owner, device number and
//! the `security.capability` xattr equal; for a non-directory also the size and the mtime's
//! seconds, then either equal nanoseconds or, when both are zero (a truncated timestamp), equal
//! content (a symlink's target). A directory goes when it is the same and, once its unchanged
//! entries are gone, empty (BuildKit records a directory only when it changed or holds a
//! change). Nothing below an opaque directory is compared: the lower one is hidden there.

use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::userns::opaque_xattr;

const CAPABILITY_XATTR: &str = "security.capability";

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
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)?;
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
            if same_dirent(&meta, &lower_meta, &path, &lower_path)?
                && !is_opaque(&path)
                && fs::read_dir(&path)?.next().is_none()
            {
                fs::remove_dir(&path)?;
                *removed += 1;
            }
        } else if same_dirent(&meta, &lower_meta, &path, &lower_path)? {
            fs::remove_file(&path)?;
            *removed += 1;
        }
    }
    Ok(())
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

/// BuildKit's `sameDirent`.
fn same_dirent(a: &Metadata, b: &Metadata, a_path: &Path, b_path: &Path) -> io::Result<bool> {
    if a.mode() != b.mode() || a.uid() != b.uid() || a.gid() != b.gid() || a.rdev() != b.rdev() {
        return Ok(false);
    }
    if xattr::get(a_path, CAPABILITY_XATTR).ok().flatten()
        != xattr::get(b_path, CAPABILITY_XATTR).ok().flatten()
    {
        return Ok(false);
    }
    if a.is_dir() {
        return Ok(true);
    }
    if a.size() != b.size() || a.mtime() != b.mtime() {
        return Ok(false);
    }
    if a.mtime_nsec() != 0 || b.mtime_nsec() != 0 {
        return Ok(a.mtime_nsec() == b.mtime_nsec());
    }
    if a.file_type().is_symlink() {
        return Ok(fs::read_link(a_path)? == fs::read_link(b_path)?);
    }
    if a.size() == 0 || !a.is_file() {
        return Ok(true);
    }
    same_content(a_path, b_path)
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

/// overlayfs's whiteout: a character device 0:0.
fn is_whiteout(m: &Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    matches!(xattr::get(dir, opaque_xattr()), Ok(Some(v)) if v == b"y")
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

        assert_eq!(drop_unchanged_copy_ups(&upper, &[lower]).unwrap(), 4);
        let left = |p: &str| upper.join(p).exists();
        assert!(!left("d/same") && !left("d/linked") && !left("other"));
        assert!(left("d/content") && left("d/mode") && left("d/new") && left("fresh/file"));
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
