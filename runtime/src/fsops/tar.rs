//! The tar streams of `cp CONTAINER:SRC -` and `cp - CONTAINER:DEST`.
//!
//! Written by hand, as the layer writer in cache/ is: ustar headers, with a PAX extended header
//! only for what ustar cannot hold (names or link targets over 100 bytes, sizes from 8 GiB, ids
//! from 2097152). Read the same way, plus what other tools write: GNU long names (`L`/`K`),
//! global PAX headers (ignored), base-256 numbers, old-style directories (`name/` as a file).

use std::io::{self, Read, Write};

use super::tree::{Entry, Kind, Meta, Sink};
use crate::{Error, Result};

const BLOCK: usize = 512;

/// Writes entries as a tar stream whose first entry is named `root` (`etc`, or `.` for the
/// content of a directory); an empty `root` leaves the root entry out and names the rest from
/// it (`bin/sh`), as `export` does.
pub(crate) struct TarSink<W: Write> {
    out: W,
    root: Vec<u8>,
}

impl<W: Write> TarSink<W> {
    pub fn new(out: W, root: Vec<u8>) -> TarSink<W> {
        TarSink { out, root }
    }

    fn name(&self, rel: &[u8]) -> Vec<u8> {
        let mut name = self.root.clone();
        if !rel.is_empty() {
            if !name.is_empty() {
                name.push(b'/');
            }
            name.extend_from_slice(rel);
        }
        name
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(stdout_err)
    }
}

fn stdout_err(e: io::Error) -> Error {
    Error::Io { path: "-".into(), source: e }
}

/// A numeric header field: octal digits and a NUL; `false` if `value` does not fit.
fn octal(field: &mut [u8], value: u64) -> bool {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    if s.len() > digits {
        field[..digits].fill(b'0');
        field[digits] = 0;
        return false;
    }
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
    true
}

/// Copies `value` into a NUL-padded field; `false` if it does not fit.
fn text(field: &mut [u8], value: &[u8]) -> bool {
    field.fill(0);
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
    value.len() <= field.len()
}

/// Appends the PAX record `"<len> <key>=<value>\n"`, `<len>` counting the whole record.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn checksum(h: &mut [u8; BLOCK]) {
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// A ustar header block; fields that do not fit are returned as PAX records.
fn header(name: &[u8], link: &[u8], flag: u8, meta: &Meta, size: u64, dev: u64) -> ([u8; BLOCK], Vec<u8>) {
    let mut h = [0u8; BLOCK];
    let mut pax = Vec::new();
    if !text(&mut h[0..100], name) {
        pax_record(&mut pax, "path", name);
    }
    octal(&mut h[100..108], u64::from(meta.mode));
    if !octal(&mut h[108..116], u64::from(meta.uid)) {
        pax_record(&mut pax, "uid", meta.uid.to_string().as_bytes());
    }
    if !octal(&mut h[116..124], u64::from(meta.gid)) {
        pax_record(&mut pax, "gid", meta.gid.to_string().as_bytes());
    }
    if !octal(&mut h[124..136], size) {
        pax_record(&mut pax, "size", size.to_string().as_bytes());
    }
    octal(&mut h[136..148], u64::try_from(meta.mtime).unwrap_or(0));
    h[156] = flag;
    if !text(&mut h[157..257], link) {
        pax_record(&mut pax, "linkpath", link);
    }
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    octal(&mut h[329..337], major);
    octal(&mut h[337..345], minor);
    checksum(&mut h);
    (h, pax)
}

impl<W: Write> Sink for TarSink<W> {
    fn put(&mut self, entry: &Entry, data: &mut dyn Read) -> Result<()> {
        if self.root.is_empty() && entry.path.is_empty() {
            return Ok(());
        }
        let mut name = self.name(&entry.path);
        let (flag, link, size, dev) = match &entry.kind {
            Kind::Dir => {
                name.push(b'/');
                (b'5', Vec::new(), 0, 0)
            }
            Kind::File(size) => (b'0', Vec::new(), *size, 0),
            Kind::Symlink(target) => (b'2', target.clone(), 0, 0),
            Kind::Hardlink(first) => (b'1', self.name(first), 0, 0),
            Kind::Char(dev) => (b'3', Vec::new(), 0, *dev),
            Kind::Block(dev) => (b'4', Vec::new(), 0, *dev),
            Kind::Fifo => (b'6', Vec::new(), 0, 0),
        };
        let (h, pax) = header(&name, &link, flag, &entry.meta, size, dev);
        if !pax.is_empty() {
            let meta = Meta { mode: 0o644, uid: 0, gid: 0, mtime: 0, mtime_nsec: 0 };
            let (ph, _) = header(b"PaxHeader", b"", b'x', &meta, pax.len() as u64, 0);
            self.write(&ph)?;
            self.write(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        self.write(&h)?;
        if size > 0 {
            let copied = io::copy(&mut data.take(size), &mut self.out).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => Error::Conflict(e.to_string()),
                _ => stdout_err(e),
            })?;
            if copied < size {
                return Err(Error::Conflict(format!(
                    "{}: file changed as we read it",
                    String::from_utf8_lossy(&name)
                )));
            }
            self.pad(size)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.write(&[0u8; 2 * BLOCK])?;
        self.out.flush().map_err(stdout_err)
    }
}

impl<W: Write> TarSink<W> {
    fn pad(&mut self, len: u64) -> Result<()> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.write(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }
}

fn bad(reason: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("reading the tar stream: {reason}"))
}

/// A numeric field: octal (NUL- or space-terminated, maybe space-padded) or GNU base-256.
fn number(field: &[u8]) -> Result<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return Err(bad("a negative number in a header"));
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or_else(|| bad("a number too large"))?;
        }
        return Ok(v);
    }
    let s: Vec<u8> =
        field.iter().copied().skip_while(|&b| b == b' ').take_while(|&b| b != 0 && b != b' ').collect();
    if s.is_empty() {
        return Ok(0);
    }
    let s = std::str::from_utf8(&s).map_err(|_| bad("a number that is not octal"))?;
    u64::from_str_radix(s, 8).map_err(|_| bad(format!("{s:?} is not an octal number")))
}

/// A header's NUL-terminated text field.
fn field_text(field: &[u8]) -> Vec<u8> {
    field.iter().copied().take_while(|&b| b != 0).collect()
}

/// `name` as the entries of a copy name things: relative, `/`-separated, without `.`; `..`
/// anywhere is refused, a leading `/` dropped (the stream's root is the destination).
pub(crate) fn entry_path(name: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                return Err(bad(format!(
                    "{}: a path with \"..\" is not allowed",
                    String::from_utf8_lossy(name)
                )));
            }
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(out)
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` at a clean end of input before the first byte.
fn read_block(r: &mut dyn Read, buf: &mut [u8]) -> Result<bool> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) if n == 0 => return Ok(false),
            Ok(0) => return Err(bad("the stream ends in the middle of a header")),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io { path: "-".into(), source: e }),
        }
    }
    Ok(true)
}

fn read_data(r: &mut dyn Read, size: u64, limit: u64) -> Result<Vec<u8>> {
    if size > limit {
        return Err(bad(format!("an extended header of {size} bytes")));
    }
    let mut data = vec![0u8; size as usize];
    if !read_block(r, &mut data)? && size > 0 {
        return Err(bad("the stream ends in the middle of an entry"));
    }
    skip(r, padding(size))?;
    Ok(data)
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn skip(r: &mut dyn Read, n: u64) -> Result<()> {
    let copied =
        io::copy(&mut r.take(n), &mut io::sink()).map_err(|e| Error::Io { path: "-".into(), source: e })?;
    if copied < n {
        return Err(bad("the stream ends in the middle of an entry"));
    }
    Ok(())
}

/// What PAX and GNU headers said about the next entry.
#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u32>,
    gid: Option<u32>,
    mtime: Option<(i64, i64)>,
}

impl Pending {
    fn pax(&mut self, records: &[u8]) -> Result<()> {
        let mut rest = records;
        while !rest.is_empty() {
            let space = rest.iter().position(|&b| b == b' ').ok_or_else(|| bad("a malformed PAX record"))?;
            let len: usize = std::str::from_utf8(&rest[..space])
                .ok()
                .and_then(|s| s.parse().ok())
                .filter(|&l| l > space + 1 && l <= rest.len())
                .ok_or_else(|| bad("a malformed PAX record"))?;
            let record = &rest[space + 1..len - 1];
            rest = &rest[len..];
            let Some(eq) = record.iter().position(|&b| b == b'=') else { continue };
            let (key, value) = (&record[..eq], &record[eq + 1..]);
            let num = |v: &[u8]| std::str::from_utf8(v).ok().and_then(|s| s.parse::<u64>().ok());
            match key {
                b"path" => self.path = Some(value.to_vec()),
                b"linkpath" => self.link = Some(value.to_vec()),
                b"size" => self.size = Some(num(value).ok_or_else(|| bad("a bad PAX size"))?),
                b"uid" => self.uid = num(value).and_then(|n| u32::try_from(n).ok()),
                b"gid" => self.gid = num(value).and_then(|n| u32::try_from(n).ok()),
                b"mtime" => {
                    let s = String::from_utf8_lossy(value);
                    let (secs, frac) = s.split_once('.').unwrap_or((&s, ""));
                    if let Ok(secs) = secs.parse::<i64>() {
                        let digits: String = frac.chars().take(9).collect();
                        let nanos = format!("{digits:0<9}").parse::<i64>().unwrap_or(0);
                        self.mtime = Some((secs, nanos));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Reads a tar stream into `sink`, entry paths made relative ([`entry_path`]). Returns the
/// bytes of file data.
pub(crate) fn read_tar(r: &mut dyn Read, sink: &mut dyn Sink) -> Result<u64> {
    let mut block = [0u8; BLOCK];
    let mut pending = Pending::default();
    let mut bytes = 0;
    let mut headers = 0;
    loop {
        if !read_block(r, &mut block)? {
            if headers == 0 {
                return Err(bad("the stream is empty"));
            }
            break;
        }
        if block.iter().all(|&b| b == 0) {
            break;
        }
        headers += 1;
        let not_tar = || bad("not a tar stream (a header's checksum is wrong)");
        let stored = number(&block[148..156]).map_err(|_| not_tar())?;
        let mut unsigned: u64 = 0;
        let mut signed: i64 = 0;
        for (i, &b) in block.iter().enumerate() {
            let b = if (148..156).contains(&i) { b' ' } else { b };
            unsigned += u64::from(b);
            signed += i64::from(b as i8);
        }
        if stored != unsigned && i64::try_from(stored).ok() != Some(signed) {
            return Err(not_tar());
        }
        let flag = block[156];
        let size = pending.size.take().map_or_else(|| number(&block[124..136]), Ok)?;
        match flag {
            b'x' => {
                let records = read_data(r, size, 1 << 20)?;
                pending.pax(&records)?;
                continue;
            }
            b'g' => {
                read_data(r, size, 1 << 20)?;
                continue;
            }
            b'L' | b'K' => {
                let mut value = read_data(r, size, 1 << 20)?;
                while value.last() == Some(&0) {
                    value.pop();
                }
                if flag == b'L' {
                    pending.path = Some(value)
                } else {
                    pending.link = Some(value)
                }
                continue;
            }
            _ => {}
        }
        let p = std::mem::take(&mut pending);
        let raw_name = p.path.unwrap_or_else(|| {
            let name = field_text(&block[0..100]);
            let prefix = if &block[257..262] == b"ustar" { field_text(&block[345..500]) } else { Vec::new() };
            if prefix.is_empty() { name } else { [prefix, b"/".to_vec(), name].concat() }
        });
        let path = entry_path(&raw_name)?;
        let link = p.link.unwrap_or_else(|| field_text(&block[157..257]));
        let (mtime, mtime_nsec) = match p.mtime {
            Some(t) => t,
            None => (i64::try_from(number(&block[136..148])?).unwrap_or(0), 0),
        };
        let id = |v: u64, what: &str| u32::try_from(v).map_err(|_| bad(format!("{what} {v} out of range")));
        let meta = Meta {
            mode: (number(&block[100..108])? & 0o7777) as u32,
            uid: match p.uid {
                Some(u) => u,
                None => id(number(&block[108..116])?, "uid")?,
            },
            gid: match p.gid {
                Some(g) => g,
                None => id(number(&block[116..124])?, "gid")?,
            },
            mtime,
            mtime_nsec,
        };
        let dev = || -> Result<u64> {
            let (major, minor) = (number(&block[329..337])?, number(&block[337..345])?);
            let (major, minor) = (id(major, "device major")?, id(minor, "device minor")?);
            Ok(nix::sys::stat::makedev(u64::from(major), u64::from(minor)))
        };
        let old_dir = raw_name.ends_with(b"/") && matches!(flag, b'0' | 0 | b'7');
        let kind = match flag {
            _ if old_dir => Kind::Dir,
            b'0' | 0 | b'7' => Kind::File(size),
            b'1' => Kind::Hardlink(entry_path(&link)?),
            b'2' => Kind::Symlink(link),
            b'3' => Kind::Char(dev()?),
            b'4' => Kind::Block(dev()?),
            b'5' => Kind::Dir,
            b'6' => Kind::Fifo,
            other => {
                return Err(bad(format!(
                    "{}: unsupported entry type {:?}",
                    String::from_utf8_lossy(&raw_name),
                    char::from(other)
                )));
            }
        };
        if let Kind::Hardlink(first) = &kind
            && first.is_empty()
        {
            return Err(bad(format!("{}: a hard link to the root", String::from_utf8_lossy(&raw_name))));
        }
        let data_len = if matches!(kind, Kind::File(_)) { size } else { 0 };
        let mut data = r.take(data_len);
        sink.put(&Entry { path, kind, meta }, &mut data)?;
        let left = data.limit();
        skip(r, left + padding(size) + (size - data_len))?;
        bytes += data_len;
    }
    sink.finish()?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps every entry it is given, with its data.
    #[derive(Default)]
    struct Collect(Vec<(Entry, Vec<u8>)>);

    impl Sink for Collect {
        fn put(&mut self, entry: &Entry, data: &mut dyn Read) -> Result<()> {
            let mut buf = Vec::new();
            data.read_to_end(&mut buf).unwrap();
            self.0.push((entry.clone(), buf));
            Ok(())
        }
        fn finish(&mut self) -> Result<()> {
            Ok(())
        }
    }

    fn meta() -> Meta {
        Meta { mode: 0o4755, uid: 3_000_000, gid: 7, mtime: 1_700_000_000, mtime_nsec: 0 }
    }

    #[test]
    fn what_is_written_reads_back() {
        let long = "d/".repeat(80) + "file";
        let mut out = Vec::new();
        let mut w = TarSink::new(&mut out, b"root".to_vec());
        w.put(&Entry { path: vec![], kind: Kind::Dir, meta: meta() }, &mut io::empty()).unwrap();
        let entry = Entry { path: long.clone().into_bytes(), kind: Kind::File(5), meta: meta() };
        w.put(&entry, &mut &b"hello"[..]).unwrap();
        let link = Entry { path: b"l".to_vec(), kind: Kind::Symlink(b"/etc/passwd".to_vec()), meta: meta() };
        w.put(&link, &mut io::empty()).unwrap();
        let hard =
            Entry { path: b"h".to_vec(), kind: Kind::Hardlink(long.clone().into_bytes()), meta: meta() };
        w.put(&hard, &mut io::empty()).unwrap();
        w.finish().unwrap();
        assert_eq!(out.len() % BLOCK, 0);

        let mut got = Collect::default();
        assert_eq!(read_tar(&mut &out[..], &mut got).unwrap(), 5);
        let paths: Vec<String> =
            got.0.iter().map(|(e, _)| String::from_utf8_lossy(&e.path).into_owned()).collect();
        assert_eq!(paths, ["root", &format!("root/{long}"), "root/l", "root/h"]);
        assert_eq!(got.0[1].1, b"hello");
        assert_eq!(got.0[1].0.meta, meta());
        assert_eq!(got.0[2].0.kind, Kind::Symlink(b"/etc/passwd".to_vec()));
        assert_eq!(got.0[3].0.kind, Kind::Hardlink(format!("root/{long}").into_bytes()));
    }

    #[test]
    fn dot_dot_is_refused_and_leading_slashes_dropped() {
        assert_eq!(entry_path(b"/./a//b/").unwrap(), b"a/b");
        assert_eq!(entry_path(b"./").unwrap(), b"");
        assert!(entry_path(b"a/../../b").is_err());
    }

    #[test]
    fn garbage_is_not_a_tar() {
        let junk = vec![b'x'; 1024];
        let err = read_tar(&mut &junk[..], &mut Collect::default()).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        let err = read_tar(&mut &b""[..], &mut Collect::default()).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }
}
