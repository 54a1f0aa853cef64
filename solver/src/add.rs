//! ADD: extracting local tar archives into a mounted snapshot, and downloading URLs.
//!
//! Archives are recognized by content, never by name: plain tar (`ustar` at offset 257), gzip,
//! bzip2 and xz. Extraction is confined to the image root:
//!
//! - entry names are cleaned; a leading `/` is dropped (as Docker and GNU tar do), so
//!   `/etc/evil` lands in `<dest>/etc/evil`; a name whose `..` climbs above `dest` is
//!   rejected, as Docker does (`../escape` fails the step);
//! - every entry's parent is resolved with [`inroot::resolve`] against the image root, so a
//!   symlink (from the image or from earlier in the archive) never leads outside the root;
//!   the entry's own last component is replaced, never followed;
//! - hard links must point inside `dest` too.
//!
//! Entries keep their mode and mtime; their owner is the archive's unless `--chown` (Docker's
//! behaviour); `--chmod` sets the permission bits of every entry except symlinks. Existing
//! files are replaced, existing directories are merged (and take the entry's mode and owner).

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use cache::{Digest, HashingWriter};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;

use hostutil::inroot;

use crate::copy::{FileError, chown, mkdir_all};

/// Why a local archive could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{}", archive.display())]
    Read {
        archive: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: decompressing xz", archive.display())]
    Xz {
        archive: PathBuf,
        #[source]
        source: lzma_rs::error::Error,
    },
    #[error("{}: archive entry {:?} is outside the destination", archive.display(), entry.display())]
    Outside { archive: PathBuf, entry: PathBuf },
    #[error("{}: {}", archive.display(), entry.display())]
    Entry {
        archive: PathBuf,
        entry: PathBuf,
        #[source]
        source: EntryError,
    },
    #[error(transparent)]
    File(#[from] FileError),
}

/// Why one entry of an archive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("{op}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0} without a target")]
    NoTarget(&'static str),
    #[error("hard link target {:?} is outside the destination", .0.display())]
    LinkOutside(PathBuf),
}

fn entry_io(op: &'static str) -> impl Fn(io::Error) -> EntryError {
    move |source| EntryError::Io { op, source }
}

/// Why an ADD of a URL failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("downloading {url}: HTTP status {status}")]
    Status { url: String, status: reqwest::StatusCode },
    #[error("downloading {url}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("downloading {url}")]
    Write {
        url: String,
        #[source]
        source: io::Error,
    },
    #[error("checksum mismatch for {url}: expected {expected}, got {actual}")]
    Checksum { url: String, expected: String, actual: Digest },
    #[error("invalid checksum {0:?}: expected sha256:<64 hex digits>")]
    BadChecksum(String),
    #[error("--checksum needs exactly one source, an http(s) URL")]
    ChecksumNeedsOneUrl,
    #[error("cannot name the file downloaded from {0}: give a destination file")]
    Unnamed(String),
}

/// The compression of a tar archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Tar,
    Gzip,
    Bzip2,
    Xz,
}

/// Whether the file at `path` is a tar archive ADD extracts, by its first bytes. Compressed
/// files are taken as archives by their magic alone (as Docker does: a `.gz` that is not a
/// tar then fails to extract).
pub fn archive_kind(path: &Path) -> io::Result<Option<ArchiveKind>> {
    let mut head = Vec::with_capacity(512);
    File::open(path)?.take(512).read_to_end(&mut head)?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Some(ArchiveKind::Gzip)
    } else if head.starts_with(b"BZh") {
        Some(ArchiveKind::Bzip2)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Some(ArchiveKind::Xz)
    } else if head.len() >= 262 && &head[257..262] == b"ustar" || is_v7_tar_header(&head) {
        Some(ArchiveKind::Tar)
    } else {
        None
    })
}

/// A pre-POSIX (v7) tar header has no magic: accept a first block whose checksum is right and
/// whose name is not empty (Docker accepts any file its tar reader can read a header from).
fn is_v7_tar_header(head: &[u8]) -> bool {
    if head.len() < 512 || head[0] == 0 {
        return false;
    }
    let field = &head[148..156];
    let digits: String =
        field.iter().take_while(|&&b| b != 0).map(|&b| b as char).collect::<String>().trim().to_string();
    let Ok(expected) = u32::from_str_radix(&digits, 8) else { return false };
    let sum: u32 = head[..512]
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { u32::from(b' ') } else { u32::from(b) })
        .sum();
    sum == expected
}

/// Extracts the archive `file` into `dest_rel` (a directory inside the image mounted at
/// `root`, created if missing). `tmp` is a directory for the decompressed xz stream.
pub fn extract(
    root: &Path,
    file: &Path,
    kind: ArchiveKind,
    dest_rel: &Path,
    owner: Option<(u32, u32)>,
    chmod: Option<u32>,
    tmp: &Path,
) -> Result<(), ArchiveError> {
    let read = |source| ArchiveError::Read { archive: file.to_path_buf(), source };
    let f = File::open(file).map_err(read)?;
    let reader: Box<dyn Read> = match kind {
        ArchiveKind::Tar => Box::new(BufReader::new(f)),
        ArchiveKind::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(f))),
        ArchiveKind::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(BufReader::new(f))),
        ArchiveKind::Xz => {
            // lzma-rs decodes xz into a writer: go through a temporary file.
            let mut out = tempfile::tempfile_in(tmp).map_err(read)?;
            let mut w = io::BufWriter::new(&mut out);
            lzma_rs::xz_decompress(&mut BufReader::new(f), &mut w)
                .map_err(|source| ArchiveError::Xz { archive: file.to_path_buf(), source })?;
            w.flush().map_err(read)?;
            drop(w);
            out.rewind().map_err(read)?;
            Box::new(BufReader::new(out))
        }
    };
    mkdir_all(root, dest_rel, owner.unwrap_or((0, 0)))?;
    let mut archive = tar::Archive::new(reader);
    let mut dirs: Vec<(PathBuf, u64)> = Vec::new();
    for entry in archive.entries().map_err(read)? {
        let mut entry = entry.map_err(read)?;
        let raw = entry.path().map_err(read)?.into_owned();
        let Some(rel) = confine(&raw) else {
            return Err(ArchiveError::Outside { archive: file.to_path_buf(), entry: raw });
        };
        if rel.as_os_str().is_empty() {
            continue; // `./` itself
        }
        let target_rel = dest_rel.join(&rel);
        match write_entry(root, dest_rel, &target_rel, &mut entry, owner, chmod) {
            Ok(Some(dir)) => dirs.push(dir),
            Ok(None) => {}
            Err(source) => {
                return Err(ArchiveError::Entry { archive: file.to_path_buf(), entry: raw, source });
            }
        }
    }
    // Directory mtimes last: writing their contents changed them.
    for (p, mtime) in dirs.iter().rev() {
        set_mtime(p, *mtime).map_err(|e| FileError::Io {
            op: "set the mtime of",
            path: p.clone(),
            source: e.into(),
        })?;
    }
    Ok(())
}

/// `name` cleaned and relative: `/` and `.` dropped, `..` applied; `None` when it climbs above
/// the start.
fn confine(name: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(n) => out.push(n),
            // Climbing above the start is `None`.
            Component::ParentDir => out.pop().then_some(())?,
            _ => {}
        }
    }
    Some(out)
}

/// Writes one entry; returns a directory and its mtime, to be set after its contents.
fn write_entry<R: Read>(
    root: &Path,
    dest_rel: &Path,
    target_rel: &Path,
    entry: &mut tar::Entry<'_, R>,
    owner: Option<(u32, u32)>,
    chmod: Option<u32>,
) -> Result<Option<(PathBuf, u64)>, EntryError> {
    let header = entry.header();
    let kind = header.entry_type();
    // Archives in the wild leave numeric fields empty: such a field counts as 0 (0644 for a
    // mode), as Go's archive/tar reads them.
    let mode = chmod.unwrap_or(header.mode().unwrap_or(0o644) & 0o7777);
    let mtime = header.mtime().unwrap_or(0);
    let implicit = owner.unwrap_or((0, 0));
    let owner = match owner {
        Some(o) => o,
        None => (header.uid().unwrap_or(0) as u32, header.gid().unwrap_or(0) as u32),
    };
    let parent_rel = target_rel.parent().unwrap_or(Path::new(""));
    let name = target_rel.file_name().ok_or(FileError::NoFileName { path: target_rel.to_path_buf() })?;
    // Missing parents (archives need not list them) are created like `mkdir -p`, owned by
    // `--chown` or root.
    mkdir_all(root, parent_rel, implicit)?;
    let parent = inroot::resolve(root, parent_rel).map_err(entry_io("resolve"))?;
    let target = parent.join(name);
    let existing = fs::symlink_metadata(&target).ok();
    if kind.is_dir() {
        match existing {
            Some(m) if m.is_dir() => {}
            Some(_) => {
                fs::remove_file(&target).map_err(entry_io("replace"))?;
                fs::create_dir(&target).map_err(entry_io("mkdir"))?;
            }
            None => fs::create_dir(&target).map_err(entry_io("mkdir"))?,
        }
        chown(&target, owner)?;
        fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(entry_io("chmod"))?;
        return Ok(Some((target, mtime)));
    }
    match existing {
        Some(m) if m.is_dir() => fs::remove_dir_all(&target).map_err(entry_io("replace"))?,
        Some(_) => fs::remove_file(&target).map_err(entry_io("replace"))?,
        None => {}
    }
    if kind.is_file() || kind == tar::EntryType::Continuous || kind == tar::EntryType::GNUSparse {
        let mut out = File::create(&target).map_err(entry_io("create"))?;
        io::copy(entry, &mut out).map_err(entry_io("write"))?;
    } else if kind.is_symlink() {
        let link = entry.link_name().map_err(entry_io("read"))?.ok_or(EntryError::NoTarget("symlink"))?;
        symlink(&link, &target).map_err(entry_io("symlink"))?;
        chown(&target, owner)?;
        set_mtime(&target, mtime).map_err(|e| entry_io("set the mtime")(e.into()))?;
        return Ok(None);
    } else if kind.is_hard_link() {
        let link = entry.link_name().map_err(entry_io("read"))?.ok_or(EntryError::NoTarget("hard link"))?;
        let Some(link_rel) = confine(&link) else {
            return Err(EntryError::LinkOutside(link.into_owned()));
        };
        let src = inroot::resolve(root, &dest_rel.join(link_rel)).map_err(entry_io("resolve"))?;
        fs::hard_link(&src, &target).map_err(entry_io("hard link"))?;
        return Ok(None);
    } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
        let sflag = if kind.is_character_special() {
            SFlag::S_IFCHR
        } else if kind.is_block_special() {
            SFlag::S_IFBLK
        } else {
            SFlag::S_IFIFO
        };
        let dev = makedev(
            header.device_major().ok().flatten().unwrap_or(0) as u64,
            header.device_minor().ok().flatten().unwrap_or(0) as u64,
        );
        mknod(&target, sflag, Mode::from_bits_truncate(mode), dev)
            .map_err(|e| entry_io("mknod")(e.into()))?;
    } else {
        // pax/GNU extension headers are consumed by the tar crate; anything else is skipped.
        return Ok(None);
    }
    chown(&target, owner)?;
    // chown clears setuid/setgid bits, so the mode goes last.
    fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(entry_io("chmod"))?;
    set_mtime(&target, mtime).map_err(|e| entry_io("set the mtime")(e.into()))?;
    Ok(None)
}

fn set_mtime(path: &Path, secs: u64) -> nix::Result<()> {
    let t = TimeSpec::new(secs as i64, 0);
    utimensat(nix::fcntl::AT_FDCWD, path, &t, &t, UtimensatFlags::NoFollowSymlink)
}

/// A URL downloaded to a temporary file.
#[derive(Debug)]
pub struct Download {
    pub file: tempfile::NamedTempFile,
    pub digest: Digest,
    /// The `Last-Modified` header, if any.
    pub last_modified: Option<SystemTime>,
}

/// Downloads `url` into `file` (a fresh temp file in the store's `tmp/`), hashing it as it
/// streams. With `expected` (`sha256:<hex>`), a different digest is an error and the file is
/// dropped. Proxies come from the environment (`HTTPS_PROXY`, `NO_PROXY`...), as for every
/// client of rbuild's HTTP stack (reqwest).
pub fn download(
    url: &str,
    file: tempfile::NamedTempFile,
    expected: Option<&str>,
) -> Result<Download, DownloadError> {
    let transport = |source| DownloadError::Transport { url: url.to_string(), source };
    let client = reqwest::blocking::Client::builder()
        .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        // The blocking client applies this to the response head and to each read of the body:
        // a slow download goes on as long as bytes keep coming.
        .timeout(Duration::from_secs(300))
        .build()
        .map_err(transport)?;
    let mut resp = client.get(url).send().map_err(transport)?;
    if !resp.status().is_success() {
        return Err(DownloadError::Status { url: url.to_string(), status: resp.status() });
    }
    let last_modified = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let write = |source| DownloadError::Write { url: url.to_string(), source };
    let mut w = HashingWriter::new(io::BufWriter::new(file));
    io::copy(&mut resp, &mut w).map_err(write)?;
    let (buf, digest, _) = w.finish();
    let file = buf.into_inner().map_err(|e| write(e.into_error()))?;
    if let Some(expected) = expected
        && expected != digest.as_str()
    {
        return Err(DownloadError::Checksum {
            url: url.to_string(),
            expected: expected.to_string(),
            actual: digest,
        });
    }
    Ok(Download { file, digest, last_modified })
}

/// The file name a URL is saved under: its path's last segment.
pub fn url_file_name(url: &str) -> Option<String> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let path = rest.split_once('/').map(|(_, p)| p).unwrap_or("");
    let name = path.rsplit('/').next().unwrap_or("");
    (!name.is_empty() && name != "." && name != "..").then(|| name.to_string())
}

/// Checks a `--checksum` value: `sha256:` and 64 hex digits.
pub fn parse_checksum(s: &str) -> Result<String, DownloadError> {
    let d: Digest = s.to_ascii_lowercase().parse().map_err(|_| DownloadError::BadChecksum(s.to_string()))?;
    Ok(d.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_confined_and_url_names_found() {
        assert_eq!(confine(Path::new("/etc/evil")), Some(PathBuf::from("etc/evil")));
        assert_eq!(confine(Path::new("./a/../b")), Some(PathBuf::from("b")));
        assert_eq!(confine(Path::new("../escape")), None);
        assert_eq!(confine(Path::new("a/../../x")), None);
        assert_eq!(url_file_name("http://h:1/a/b.tar.gz?x=1").as_deref(), Some("b.tar.gz"));
        assert_eq!(url_file_name("https://h/"), None);
        assert_eq!(url_file_name("https://h"), None);
    }
}
