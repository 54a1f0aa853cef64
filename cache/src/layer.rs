//! Layers: an overlay upperdir committed as an OCI layer tar, and a layer blob unpacked into
//! a directory in overlay format for use as a lowerdir.
//!
//! Unpacked layers live in `layers/<diff-id hex>/`. They are keyed by diff id rather than by
//! chain id on purpose: under overlayfs a lowerdir holds only that layer's own changes (with
//! whiteouts and opaque markers kept as overlay understands them), so its content depends on
//! the layer alone and not on the layers below it. Two images sharing a layer at different
//! positions in their stacks share one directory.

mod pgzip;
mod tarw;
mod unpack;

use std::cell::RefCell;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use flate2::read::MultiGzDecoder;

use crate::Store;
use crate::error::{Error, IoContext, Result};
use crate::oci::{self, Layer};
use crate::{Digest, Hasher, HashingWriter};

/// How a committed layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Parallel gzip (independent members of [`pgzip::CHUNK`] bytes each, deflate level 6).
    #[default]
    Gzip,
    /// Multithreaded zstd, level 3, with a content checksum.
    Zstd,
    Uncompressed,
}

impl Compression {
    /// The OCI media type of a layer blob compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => oci::MEDIA_TYPE_LAYER_GZIP,
            Compression::Zstd => oci::MEDIA_TYPE_LAYER_ZSTD,
            Compression::Uncompressed => oci::MEDIA_TYPE_LAYER_TAR,
        }
    }

    /// `gzip`, `zstd` or `uncompressed`, as `--compression` spells them.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Uncompressed => "uncompressed",
        }
    }

    /// The compression named `name` (see [`Compression::name`]).
    pub fn from_name(name: &str) -> Option<Compression> {
        [Compression::Gzip, Compression::Zstd, Compression::Uncompressed]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// One entry of a layer given as a list ([`Store::commit_entries`]) rather than as an
/// upperdir: what the upperdir would hold at `path`, with the metadata it would have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Relative to the image's root, no `/` at either end.
    pub path: PathBuf,
    pub kind: TreeKind,
    /// Permission bits (and setuid, setgid, sticky).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since 1970.
    pub mtime: i64,
    /// A file whose xattrs the entry has (overlayfs's own left out): a directory of the image
    /// that overlayfs would have copied up with them. None: no xattrs.
    pub xattrs_from: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeKind {
    Dir,
    /// `size` bytes read from `source` (opened without following a symlink).
    File {
        source: PathBuf,
        size: u64,
    },
    Symlink {
        target: PathBuf,
    },
}

/// How [`Store::commit_layer`] writes a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitOptions {
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH` (seconds since 1970): every entry's mtime later than this becomes
    /// this (BuildKit's `rewrite-timestamp`); earlier ones are kept. Negative counts as 0.
    pub source_date_epoch: Option<i64>,
}

impl Store {
    /// Tars `upper` (a directory in overlay format: whiteouts as 0/0 char devices, opaque dirs
    /// marked with `trusted.overlay.opaque=y`) into an OCI layer blob and stores it.
    ///
    /// The tar is the same bytes for the same tree (see [`tarw`]); with the same options, so is
    /// the blob. The diff id and the blob digest are computed in the same streaming pass.
    pub fn commit_layer(&self, upper: &Path, options: &CommitOptions) -> Result<Layer> {
        let sink = LayerSink::new(self.temp_file()?, options.compression)?;
        let clamp = options.source_date_epoch.map(|e| u64::try_from(e).unwrap_or(0));
        let LayerSink { writer, compression, path } = sink;
        let (writer, written) = write_on_thread(writer, |w| tarw::write_upper(upper, w, &path, clamp));
        // The thread below failing (a full disk) is the cause of the tar's failure to write.
        let writer = writer.at(&path)?;
        written?;
        self.store_sink(LayerSink { writer, compression, path })
    }

    /// Writes `entries` as an OCI layer blob and stores it, without the tree existing anywhere:
    /// the layer a COPY would have left in an upperdir, read straight from its sources (the
    /// same bytes as [`Store::commit_layer`] of that upperdir). Sorted here by path, so each
    /// directory comes before its contents, as a walk of the upperdir gives them. Nothing is
    /// unpacked: [`Store::layer_dir`] does that when a snapshot first needs the layer.
    pub fn commit_entries(&self, mut entries: Vec<TreeEntry>, options: &CommitOptions) -> Result<Layer> {
        entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        let sink = LayerSink::new(self.temp_file()?, options.compression)?;
        let clamp = options.source_date_epoch.map(|e| u64::try_from(e).unwrap_or(0));
        let LayerSink { writer, compression, path } = sink;
        let (writer, written) = write_on_thread(writer, |w| tarw::write_entries(&entries, w, &path, clamp));
        let writer = writer.at(&path)?;
        written?;
        self.store_sink(LayerSink { writer, compression, path })
    }

    /// Stores a tar stream (plain, gzip or zstd, told apart by its first bytes) as a layer
    /// blob compressed with `compression`, e.g. for `import`.
    pub fn import_layer(&self, tar: impl Read, compression: Compression) -> Result<Layer> {
        let bad = |reason: String| Error::Layer { layer: "(import)".into(), reason };
        let input = decompressed(tar).map_err(|e| bad(format!("reading the input: {e}")))?;
        let mut sink = LayerSink::new(self.temp_file()?, compression)?;
        let mut tee = Tee { reader: input, sink: &mut sink.writer, error: None, len: 0 };
        let checked = validate_tar(&mut tee);
        if let Some(e) = tee.error.take() {
            return Err(Error::Io { path: sink.path.clone(), source: e });
        }
        checked.map_err(|e| bad(format!("not a valid tar archive: {e}")))?;
        if tee.len < 1024 {
            // The smallest valid tar is its two zero end blocks; this also catches empty input,
            // which the tar reader would take for an empty archive.
            return Err(bad(format!("not a tar archive: only {} bytes", tee.len)));
        }
        self.store_sink(sink)
    }

    /// The directory `layers/<diff-id hex>/` holding `layer` unpacked in overlay format,
    /// unpacking the blob first if no process has done so yet.
    pub fn layer_dir(&self, layer: &Layer) -> Result<PathBuf> {
        self.unpack_with(layer, || self.open_blob(&layer.digest))
    }

    /// Unpacks `layer` from `blob`, its blob's bytes as they arrive (a download, while it is
    /// also being stored), unless it is unpacked already (then `blob` is dropped unread). The
    /// same checks as [`Store::layer_dir`]: the blob's digest and the tar's diff id, nothing
    /// left behind on any error; a caller can always fall back to [`Store::layer_dir`].
    pub fn unpack_layer_from(&self, layer: &Layer, blob: impl Read) -> Result<()> {
        self.unpack_with(layer, || Ok(blob)).map(drop)
    }

    fn unpack_with<R: Read>(&self, layer: &Layer, blob: impl FnOnce() -> Result<R>) -> Result<PathBuf> {
        let dir = self.unpacked_path(layer);
        if is_dir(&dir) {
            return Ok(dir);
        }
        let _lock = self.lock(&format!("layer-{}", layer.diff_id.hex()))?;
        if is_dir(&dir) {
            return Ok(dir);
        }
        // Unpack into a private directory under tmp/ and rename it into place only once all of
        // it is written and verified: a crash or a bad blob never leaves a partial layer.
        let tmp = self.temp_dir("unpack-")?;
        let root = tmp.path().join("root");
        fs::create_dir(&root).at(&root)?;
        unpack::unpack_blob(blob()?, layer, &root)?;
        fs::rename(&root, &dir).at(&dir)?;
        Ok(dir)
    }

    /// Takes a just-committed upperdir as the unpacked form of `layer`, so it is never unpacked
    /// from its blob. If the layer is already unpacked, `upper` is removed instead.
    pub fn adopt_layer_dir(&self, layer: &Layer, upper: &Path) -> Result<()> {
        let dir = self.unpacked_path(layer);
        let _lock = self.lock(&format!("layer-{}", layer.diff_id.hex()))?;
        // Young for gc's grace period until a cache record references it (an upperdir's own
        // mtime may be as old as the step).
        if fs::symlink_metadata(&dir).is_ok() {
            crate::gc::touch(&dir);
            return fs::remove_dir_all(upper).at(upper);
        }
        fs::rename(upper, &dir).at(&dir)?;
        crate::gc::touch(&dir);
        Ok(())
    }

    fn unpacked_path(&self, layer: &Layer) -> PathBuf {
        self.root().join("layers").join(layer.diff_id.hex())
    }

    fn store_sink(&self, sink: LayerSink) -> Result<Layer> {
        let media_type = sink.compression.media_type();
        let path = sink.path.clone();
        let (tmp, diff_id, digest, size) = sink.finish().at(&path)?;
        if !self.keep_blob(&digest) {
            self.commit_blob(tmp, &digest)?;
        }
        Ok(Layer { digest, diff_id, size, media_type: media_type.to_string() })
    }
}

fn is_dir(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

/// The compressed blob, hashed as written to its temp file.
type BlobWriter = HashingWriter<BufWriter<tempfile::NamedTempFile>>;

/// The compressor stage of a layer sink: gzip or zstd with the blob hashed after it, or nothing.
enum Compressor {
    Gzip(pgzip::ParGzWriter<BlobWriter>),
    Zstd(zstd::stream::write::Encoder<'static, BlobWriter>),
    Plain(BufWriter<tempfile::NamedTempFile>),
}

impl Write for Compressor {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Gzip(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
            Compressor::Plain(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Gzip(w) => w.flush(),
            Compressor::Zstd(w) => w.flush(),
            Compressor::Plain(w) => w.flush(),
        }
    }
}

/// The zstd level of [`Compression::Zstd`] (zstd's own default).
const ZSTD_LEVEL: i32 = 3;

/// A zstd encoder with one worker per core. zstd's multithreaded output is the same for any
/// number of workers from 1 up (it differs only from the single-threaded mode, 0 workers, which
/// is never used here), so blobs do not depend on the machine.
fn zstd_encoder<W: Write>(out: W) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut enc = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    enc.multithread(u32::try_from(workers).unwrap_or(1).max(1))?;
    enc.include_checksum(true)?;
    Ok(enc)
}

/// tar -> hash (diff id) -> compress -> hash (digest) -> temp file, in one streaming pass.
struct LayerSink {
    writer: HashingWriter<Compressor>,
    compression: Compression,
    path: PathBuf,
}

impl LayerSink {
    fn new(tmp: tempfile::NamedTempFile, compression: Compression) -> Result<LayerSink> {
        let path = tmp.path().to_path_buf();
        let file = BufWriter::with_capacity(256 * 1024, tmp);
        let inner = match compression {
            Compression::Gzip => Compressor::Gzip(pgzip::ParGzWriter::new(
                HashingWriter::new(file),
                flate2::Compression::default(),
            )),
            Compression::Zstd => Compressor::Zstd(zstd_encoder(HashingWriter::new(file)).at(&path)?),
            Compression::Uncompressed => Compressor::Plain(file),
        };
        Ok(LayerSink { writer: HashingWriter::new(inner), compression, path })
    }

    /// The temp file, the diff id, the blob digest and the blob size.
    fn finish(self) -> io::Result<(tempfile::NamedTempFile, Digest, Digest, u64)> {
        let (inner, diff_id, diff_len) = self.writer.finish();
        let (file, digest, size) = match inner {
            Compressor::Gzip(gz) => gz.finish()?.finish(),
            Compressor::Zstd(z) => z.finish()?.finish(),
            Compressor::Plain(file) => (file, diff_id.clone(), diff_len),
        };
        let tmp = file.into_inner().map_err(|e| e.into_error())?;
        Ok((tmp, diff_id, digest, size))
    }
}

/// Bytes in flight between the tar thread and the hash/compress thread: 4 chunks of 1 MiB.
const CHUNK: usize = 1024 * 1024;
const CHUNKS: usize = 4;

/// Runs `produce` with a writer whose bytes reach `out` on another thread, in [`CHUNK`]s: the
/// tar is made (files walked and read, headers written) on this thread while that one hashes
/// it (the diff id), feeds the compressor and hashes the blob: the two sha256 passes (0.85 s
/// of CPU for 1 GiB) leave the serial thread, which is what limits a commit when the machine
/// has more cores than the compressor needs. On two cores a zstd commit is CPU-bound either
/// way (6.9 s of CPU in 3.9 s; `cargo bench -p cache --bench layer`). Returns `out` (or the
/// error that stopped it) and `produce`'s result (an error writing, if `out` failed first).
fn write_on_thread<W: Write + Send, T>(
    out: W,
    produce: impl FnOnce(&mut ChunkWriter) -> T,
) -> (io::Result<W>, T) {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(CHUNKS);
        let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let worker = scope.spawn(move || -> io::Result<W> {
            let mut out = out;
            for mut chunk in rx {
                out.write_all(&chunk)?;
                chunk.clear();
                let _ = back_tx.send(chunk);
            }
            Ok(out)
        });
        let mut w = ChunkWriter { tx: Some(tx), buf: Vec::with_capacity(CHUNK), back: back_rx };
        let produced = produce(&mut w);
        let _ = w.send();
        drop(w);
        let out =
            worker.join().unwrap_or_else(|_| Err(io::Error::other("the layer's compressor thread panicked")));
        (out, produced)
    })
}

/// The writing end of [`write_on_thread`].
struct ChunkWriter {
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
    /// Chunks the thread has written, for reuse.
    back: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self.back.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let full = std::mem::replace(&mut self.buf, next);
        let tx = self.tx.as_ref().ok_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))?;
        // The thread stopped on an error: it is returned from the join.
        tx.send(full).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the layer's compressor stopped"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads through `reader` as a tar archive to its end, so every byte of it passes through.
fn validate_tar(reader: &mut impl Read) -> io::Result<()> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        io::copy(&mut entry, &mut io::sink())?;
    }
    // The padding after the end-of-archive blocks is part of the stream (and of the diff id).
    io::copy(&mut archive.into_inner(), &mut io::sink())?;
    Ok(())
}

/// A reader that copies everything read into `sink`; a failure to write is kept apart from read
/// errors so it can be reported against the right file.
struct Tee<'a, R, W> {
    reader: R,
    sink: &'a mut W,
    error: Option<io::Error>,
    len: u64,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        if let Err(e) = self.sink.write_all(&buf[..n]) {
            self.error = Some(e);
            return Err(io::Error::other("writing the layer blob failed"));
        }
        self.len += n as u64;
        Ok(n)
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Reads the first bytes of `reader` and returns a reader over the whole stream, decompressed
/// if it starts with the gzip magic `1f 8b` (all members read) or the zstd magic
/// `28 b5 2f fd` (all frames read), as is otherwise.
pub fn decompressed<'a>(mut reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        match reader.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let whole = io::Cursor::new(head).take(n as u64).chain(reader);
    if head[..n].starts_with(&GZIP_MAGIC) {
        Ok(Box::new(MultiGzDecoder::new(io::BufReader::with_capacity(256 * 1024, whole))))
    } else if head[..n] == ZSTD_MAGIC {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(io::BufReader::with_capacity(
            256 * 1024,
            whole,
        ))?))
    } else {
        Ok(Box::new(whole))
    }
}

/// A reader that hashes everything read through it into a shared hasher, so the hash can be
/// read after the reader has disappeared inside a decompressor.
struct HashingReader<R> {
    inner: R,
    state: Rc<RefCell<Hasher>>,
}

impl<R> HashingReader<R> {
    fn new(inner: R) -> (Self, Rc<RefCell<Hasher>>) {
        let state = Rc::new(RefCell::new(Hasher::new()));
        (HashingReader { inner, state: state.clone() }, state)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.state.borrow_mut().update(&buf[..n]);
        Ok(n)
    }
}
