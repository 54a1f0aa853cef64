//! Layer commit throughput: 1 GiB of mixed files (many small, some large), generated once under
//! `/tmp/rbuild-layer-bench/tree` (`RBUILD_LAYER_BENCH_DIR` to move it), committed with gzip and
//! with zstd, beside `tar -c | pigz` and `tar -c | zstd -T0` of the same tree (the parallel
//! compressors a user would pick), with each contender's peak RSS.
//!
//! `cargo bench -p cache --bench layer` (needs `tar`, `pigz` and `zstd` on PATH). Prints MB/s
//! of uncompressed tar per second, compression ratios, and rbuild's speed over the pipeline's.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use cache::{CommitOptions, Compression, Store};

const TOTAL: u64 = 1 << 30;
const SMALL_FILES: usize = 40_000;
const LARGE_FILES: usize = 6;

/// A small xorshift generator: the tree is the same on every machine.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `len` bytes like real files: runs of text-ish tokens (compressible) mixed with runs of
/// random bytes (as in binaries and already-compressed data).
fn content(rng: &mut Rng, len: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "the ",
        "layer ",
        "func ",
        "return ",
        "0x00000000 ",
        "if (x) { ",
        "} else { ",
        "\n",
        "import ",
        "struct ",
        "config ",
        "value = ",
        "; ",
        "#include <stdio.h>\n",
        "error ",
        "    ",
    ];
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        if rng.next().is_multiple_of(5) {
            let n = 64 + (rng.next() % 512) as usize;
            out.extend((0..n).map(|_| rng.next() as u8));
        } else {
            for _ in 0..32 {
                out.extend_from_slice(WORDS[(rng.next() % 16) as usize].as_bytes());
            }
        }
    }
    out.truncate(len);
    out
}

fn make_tree(tree: &Path) {
    let done = tree.with_extension("done");
    if done.exists() {
        return;
    }
    let _ = fs::remove_dir_all(tree);
    eprintln!("generating {} ...", tree.display());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut written = 0u64;
    for i in 0..SMALL_FILES {
        let dir = tree.join(format!("small/d{:03}", i % 400));
        fs::create_dir_all(&dir).unwrap();
        let len = 512 + (rng.next() % (12 * 1024)) as usize;
        fs::write(dir.join(format!("f{i:05}.txt")), content(&mut rng, len)).unwrap();
        written += len as u64;
    }
    fs::create_dir_all(tree.join("large")).unwrap();
    let per_large = (TOTAL - written) / LARGE_FILES as u64;
    for i in 0..LARGE_FILES {
        let mut f = fs::File::create(tree.join(format!("large/blob{i}.bin"))).unwrap();
        let mut left = per_large;
        while left > 0 {
            let n = left.min(8 << 20);
            f.write_all(&content(&mut rng, n as usize)).unwrap();
            left -= n;
        }
    }
    fs::write(done, "").unwrap();
}

/// Seconds and compressed bytes of `tar -c -C tree . | <compressor>`.
fn pipeline(tree: &Path, compressor: &[&str]) -> (f64, u64) {
    let start = Instant::now();
    let mut tar = Command::new("tar")
        .args(["-c", "-C"])
        .arg(tree)
        .arg(".")
        .stdout(Stdio::piped())
        .spawn()
        .expect("tar");
    let out = Command::new(compressor[0])
        .args(&compressor[1..])
        .stdin(tar.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .expect("compressor");
    let output = out.wait_with_output().unwrap();
    assert!(tar.wait().unwrap().success() && output.status.success());
    (start.elapsed().as_secs_f64(), output.stdout.len() as u64)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` only checks that it builds
    }
    let base = std::env::var_os("RBUILD_LAYER_BENCH_DIR")
        .map_or_else(|| PathBuf::from("/tmp/rbuild-layer-bench"), PathBuf::from);
    let tree = base.join("tree");
    fs::create_dir_all(&base).unwrap();
    make_tree(&tree);
    let store_dir = tempfile::tempdir_in(&base).unwrap();
    let store = Store::open(store_dir.path()).unwrap();

    // Warm the page cache so every contender reads from memory.
    let _ = pipeline(&tree, &["cat"]);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("layer commit of {} ({cores} cores)", tree.display());
    let only = std::env::var("RBUILD_LAYER_BENCH_ONLY").unwrap_or_default();
    for (name, compression, cmd) in [
        ("gzip", Compression::Gzip, ["pigz", "-c", "-6"]),
        ("zstd", Compression::Zstd, ["zstd", "-c", "-T0"]),
    ] {
        if !only.is_empty() && only != name {
            continue;
        }
        let cpu_before = cpu_seconds();
        let start = Instant::now();
        let layer =
            store.commit_layer(&tree, &CommitOptions { compression, source_date_epoch: None }).unwrap();
        let ours = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu_before;
        let plain = store
            .commit_layer(
                &tree,
                &CommitOptions { compression: Compression::Uncompressed, source_date_epoch: None },
            )
            .unwrap();
        let mb = plain.size as f64 / 1e6;
        let (theirs, their_size) = pipeline(&tree, &cmd);
        println!(
            "  rbuild {name:<5} {:7.1} MB/s  ratio {:.3}   |  tar | {}  {:7.1} MB/s  ratio {:.3}   |  speedup x{:.2}",
            mb / ours,
            plain.size as f64 / layer.size as f64,
            cmd.join(" "),
            mb / theirs,
            plain.size as f64 / their_size as f64,
            theirs / ours,
        );
        println!("         {name} commit: {ours:.2} s wall, {cpu:.2} s CPU (all threads)");
    }
}

/// User + system CPU time of this process, every thread.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF covers every thread of the process.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}
