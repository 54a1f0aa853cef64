//! Writing an overlay upperdir as an OCI layer tar.
//!
//! The tar is written by hand (ustar headers, with PAX extended headers for long names, large
//! numbers and xattrs) rather than through `tar::Builder`, so the output is exactly what we
//! choose: no atime/ctime, no user or group names, entries in a fixed order (sorted by name at
//! every level, whatever order the directory lists them in), mtimes in whole seconds (clamped to
//! `SOURCE_DATE_EPOCH` when given), PAX headers with a fixed name and mtime 0. Committing the
//! same tree twice gives the same bytes.

use std::collections::HashMap;
use std::fs::{Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use tar::{EntryType, Header};

use super::{TreeEntry, TreeKind};
use crate::error::{Error, IoContext, Result};

pub(super) const WHITEOUT_PREFIX: &[u8] = b".wh.";
pub(super) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

const BLOCK: usize = 512;

/// Writes `upper` as a layer tar to `out`, every mtime later than `clamp` (when given) written
/// as `clamp`. Errors name the file in `upper` that could not be read, or `sink_path` when
/// writing failed.
pub(super) fn write_upper(
    upper: &Path,
    out: &mut impl Write,
    sink_path: &Path,
    clamp: Option<u64>,
) -> Result<()> {
    let mut w = TarWriter { out, sink_path, buf: Vec::new() };
    let base_header = |meta: &Metadata, kind: EntryType| clamped(base_header(meta, kind), clamp);
    // Sorted by name in the upper at every level, each directory before its contents, so the
    // order is deterministic (a whiteout `.wh.x` comes where `x` sorts).
    let walk = walkdir::WalkDir::new(upper).follow_links(false).min_depth(1).sort_by_file_name();
    // Inodes with more than one link already written, by (dev, ino) -> first path.
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for entry in walk {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(upper).to_path_buf();
            Error::Io { path, source: e.into() }
        })?;
        let path = entry.path();
        let meta = entry.metadata().map_err(|e| Error::Io { path: path.to_path_buf(), source: e.into() })?;
        let rel = path.strip_prefix(upper).unwrap_or(path).as_os_str().as_bytes().to_vec();
        let ft = meta.file_type();

        if crate::userns::is_whiteout(&meta) {
            // An overlay whiteout. Not subject to hardlink detection: overlayfs shares one
            // whiteout inode between many names.
            let name = whiteout_name(&rel, WHITEOUT_PREFIX);
            let mut h = base_header(&meta, EntryType::Regular);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            w.append(h, &name, None, &[], 0, io::empty(), path)?;
            continue;
        }

        let xattrs = read_xattrs(path)?;
        if ft.is_dir() {
            let mut name = rel.clone();
            name.push(b'/');
            let h = base_header(&meta, EntryType::Directory);
            w.append(h, &name, None, &xattrs, 0, io::empty(), path)?;
            if is_opaque(path)? {
                let mut marker = name;
                marker.extend_from_slice(OPAQUE_MARKER);
                let mut h = base_header(&meta, EntryType::Regular);
                h.set_mode(0o644);
                h.set_uid(0);
                h.set_gid(0);
                w.append(h, &marker, None, &[], 0, io::empty(), path)?;
            }
            continue;
        }

        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = links.get(&key) {
                let mut h = base_header(&meta, EntryType::Link);
                h.set_size(0);
                w.append(h, &rel, Some(&first.clone()), &xattrs, 0, io::empty(), path)?;
                continue;
            }
            links.insert(key, rel.clone());
        }

        if ft.is_file() {
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)
                .at(path)?;
            let h = base_header(&meta, EntryType::Regular);
            w.append(h, &rel, None, &xattrs, meta.len(), file, path)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(path).at(path)?;
            let h = base_header(&meta, EntryType::Symlink);
            w.append(h, &rel, Some(target.as_os_str().as_bytes()), &xattrs, 0, io::empty(), path)?;
        } else if ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_char_device() { EntryType::Char } else { EntryType::Block };
            let mut h = base_header(&meta, kind);
            let (major, minor) = (nix::sys::stat::major(meta.rdev()), nix::sys::stat::minor(meta.rdev()));
            let too_big = |_| Error::Layer {
                layer: "(commit)".into(),
                reason: format!(
                    "{}: device number {major}:{minor} does not fit a tar header",
                    path.display()
                ),
            };
            h.set_device_major(u32::try_from(major).map_err(too_big)?).at(path)?;
            h.set_device_minor(u32::try_from(minor).map_err(too_big)?).at(path)?;
            w.append(h, &rel, None, &xattrs, 0, io::empty(), path)?;
        } else if ft.is_fifo() {
            let h = base_header(&meta, EntryType::Fifo);
            w.append(h, &rel, None, &xattrs, 0, io::empty(), path)?;
        }
        // Sockets cannot be represented in a tar; like docker, leave them out.
    }
    w.out.write_all(&[0u8; 2 * BLOCK]).at(w.sink_path)?;
    Ok(())
}

fn is_opaque(path: &Path) -> Result<bool> {
    crate::userns::is_opaque(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

/// `dir/name` -> `dir/<prefix>name`.
fn whiteout_name(rel: &[u8], prefix: &[u8]) -> Vec<u8> {
    let split = rel.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let mut out = rel[..split].to_vec();
    out.extend_from_slice(prefix);
    out.extend_from_slice(&rel[split..]);
    out
}

fn base_header(meta: &Metadata, kind: EntryType) -> Header {
    header(kind, meta.mode(), meta.uid(), meta.gid(), meta.mtime())
}

fn header(kind: EntryType, mode: u32, uid: u32, gid: u32, mtime: i64) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode & 0o7777);
    h.set_uid(u64::from(uid));
    h.set_gid(u64::from(gid));
    h.set_mtime(u64::try_from(mtime).unwrap_or(0));
    h.set_size(0);
    zero_devices(&mut h);
    h
}

/// `h`'s mtime made no later than `clamp`.
fn clamped(mut h: Header, clamp: Option<u64>) -> Header {
    if let (Some(max), Ok(mtime)) = (clamp, h.mtime())
        && mtime > max
    {
        h.set_mtime(max);
    }
    h
}

/// Writes `entries` (sorted by path, each directory before its contents) as a layer tar to
/// `out`, with the same headers [`write_upper`] gives an upperdir holding them: the layer of a
/// COPY written straight from its sources (see [`TreeEntry`]).
pub(super) fn write_entries(
    entries: &[TreeEntry],
    out: &mut impl Write,
    sink_path: &Path,
    clamp: Option<u64>,
) -> Result<()> {
    let mut w = TarWriter { out, sink_path, buf: Vec::new() };
    for e in entries {
        let rel = e.path.as_os_str().as_bytes();
        let xattrs = match &e.xattrs_from {
            Some(p) => read_xattrs(p)?,
            None => Vec::new(),
        };
        let head = |kind| clamped(header(kind, e.mode, e.uid, e.gid, e.mtime), clamp);
        match &e.kind {
            TreeKind::Dir => {
                let mut name = rel.to_vec();
                name.push(b'/');
                w.append(head(EntryType::Directory), &name, None, &xattrs, 0, io::empty(), &e.path)?;
            }
            TreeKind::File { source, size } => {
                let file = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(source)
                    .at(source)?;
                w.append(head(EntryType::Regular), rel, None, &xattrs, *size, file, source)?;
            }
            TreeKind::Symlink { target } => {
                let link = Some(target.as_os_str().as_bytes());
                w.append(head(EntryType::Symlink), rel, link, &xattrs, 0, io::empty(), &e.path)?;
            }
        }
    }
    w.out.write_all(&[0u8; 2 * BLOCK]).at(w.sink_path)?;
    Ok(())
}

/// Device numbers `0000000`, as GNU tar and Go's archive/tar write them for every entry
/// (strict readers refuse an all-NUL numeric field).
fn zero_devices(h: &mut Header) {
    if let Some(ustar) = h.as_ustar_mut() {
        ustar.dev_major.copy_from_slice(b"0000000\0");
        ustar.dev_minor.copy_from_slice(b"0000000\0");
    }
}

/// The xattrs of `path` (not following symlinks) that belong in a layer, sorted by name.
fn read_xattrs(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(Error::Io { path: path.to_path_buf(), source: e }),
    };
    let mut out = Vec::new();
    for name in names {
        // overlayfs's own (`trusted.overlay.*`, or `user.overlay.*` under `userxattr`, where
        // it leaves `origin` and `impure` on upper directories): never part of a layer.
        if crate::userns::is_overlay_xattr(name.as_bytes()) {
            continue;
        }
        if let Some(value) = xattr::get(path, &name).at(path)? {
            out.push((name.as_bytes().to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

struct TarWriter<'a, W> {
    out: &'a mut W,
    sink_path: &'a Path,
    /// The read buffer, allocated once: 40,000 small files must not mean 40,000 128 KiB
    /// allocations (each an mmap, page faults and a munmap).
    buf: Vec<u8>,
}

impl<W: Write> TarWriter<'_, W> {
    /// Writes one entry: a PAX header first if needed, then the ustar header and `size` bytes
    /// of `data`. `src` is the file the entry comes from, for errors.
    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        mut header: Header,
        path: &[u8],
        link: Option<&[u8]>,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        size: u64,
        mut data: impl Read,
        src: &Path,
    ) -> Result<()> {
        let mut pax = Vec::new();
        if !set_name_field(&mut header.as_old_mut().name, path) {
            pax_record(&mut pax, b"path", path);
        }
        if let Some(link) = link
            && !set_name_field(&mut header.as_old_mut().linkname, link)
        {
            pax_record(&mut pax, b"linkpath", link);
        }
        header.set_size(size);
        if size > 0o777_7777_7777 {
            pax_record(&mut pax, b"size", size.to_string().as_bytes());
        }
        for (field, value) in [(b"uid", header.uid()), (b"gid", header.gid())] {
            if let Ok(value) = value
                && value > 0o777_7777
            {
                pax_record(&mut pax, field, value.to_string().as_bytes());
            }
        }
        for (name, value) in xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(name);
            pax_record(&mut pax, &key, value);
        }
        let sink = self.sink_path;
        if !pax.is_empty() {
            let mut ph = Header::new_ustar();
            ph.set_entry_type(EntryType::XHeader);
            set_name_field(&mut ph.as_old_mut().name, b"PaxHeader");
            ph.set_mode(0o644);
            ph.set_mtime(0);
            ph.set_size(pax.len() as u64);
            zero_devices(&mut ph);
            ph.set_cksum();
            self.out.write_all(ph.as_bytes()).at(sink)?;
            self.out.write_all(&pax).at(sink)?;
            self.pad(pax.len() as u64)?;
        }
        header.set_cksum();
        self.out.write_all(header.as_bytes()).at(sink)?;
        let mut left = size;
        if size > 0 && self.buf.is_empty() {
            self.buf = vec![0u8; 128 * 1024];
        }
        let buf = &mut self.buf;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match data.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(Error::Io {
                        path: src.to_path_buf(),
                        source: io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being read"),
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Io { path: src.to_path_buf(), source: e }),
            };
            self.out.write_all(&buf[..n]).at(sink)?;
            left -= n as u64;
        }
        self.pad(size)
    }

    fn pad(&mut self, len: u64) -> Result<()> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem]).at(self.sink_path)?;
        }
        Ok(())
    }
}

/// Copies `value` into a NUL-padded header field if it fits; returns false (leaving a
/// truncated copy, as other tar writers do) when it needs a PAX record.
fn set_name_field(field: &mut [u8], value: &[u8]) -> bool {
    field.fill(0);
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
    value.len() <= field.len()
}

/// Appends a PAX record `"<len> <key>=<value>\n"`, where `<len>` counts the whole record
/// including its own digits.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        for value_len in [0, 1, 5, 6, 7, 90, 95, 96, 97, 990, 995, 996, 1000] {
            let mut out = Vec::new();
            pax_record(&mut out, b"path", &vec![b'a'; value_len]);
            let space = out.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&out[..space]).unwrap().parse().unwrap();
            assert_eq!(len, out.len(), "value length {value_len}");
        }
    }

    /// Keeps the first bytes written and counts the rest.
    struct Head {
        head: Vec<u8>,
        total: u64,
    }
    impl Write for Head {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let keep = buf.len().min(4096usize.saturating_sub(self.head.len()));
            self.head.extend_from_slice(&buf[..keep]);
            self.total += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn files_over_8_gib_get_a_pax_size_record() {
        let size = (8u64 << 30) + 3;
        let mut out = Head { head: Vec::new(), total: 0 };
        let mut w = TarWriter { out: &mut out, sink_path: Path::new("sink"), buf: Vec::new() };
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        w.append(h, b"huge", None, &[], size, io::repeat(0).take(size), Path::new("src")).unwrap();
        let pax_header = Header::from_byte_slice(&out.head[..BLOCK]);
        assert_eq!(pax_header.entry_type(), EntryType::XHeader);
        let pax_len = pax_header.size().unwrap() as usize;
        let records = &out.head[BLOCK..BLOCK + pax_len];
        assert_eq!(records, b"19 size=8589934595\n");
        let h = Header::from_byte_slice(&out.head[2 * BLOCK..3 * BLOCK]);
        assert_eq!(h.path_bytes().as_ref(), b"huge");
        // The ustar field holds it too, base-256 as GNU tar writes it.
        assert_eq!(h.size().unwrap(), size);
        assert_eq!(out.total, 3 * BLOCK as u64 + size + (BLOCK as u64 - 3));
        // What tar readers see from the headers alone.
        let mut headers = out.head[..3 * BLOCK].to_vec();
        headers.extend_from_slice(&[0u8; 2 * BLOCK]);
        let mut archive = tar::Archive::new(&headers[..]);
        let entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.size(), size);
    }

    #[test]
    fn whiteout_names() {
        assert_eq!(whiteout_name(b"a", WHITEOUT_PREFIX), b".wh.a");
        assert_eq!(whiteout_name(b"d/e/f", WHITEOUT_PREFIX), b"d/e/.wh.f");
    }
}
