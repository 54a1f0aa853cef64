//! Figures for the build-context reader (run by `bench/context.sh`).
//!
//! `context_bench big DIR`: walk + checksum of everything in DIR without the hash cache, GB/s.
//! `context_bench small DIR`: files/s cold (no hash cache) and warm (every digest cached).
//! `context_bench sha`: single-core sha256 throughput of `cache::Hasher` on 16 KiB blocks.
//!
//! The context modules are private to the solver, so they are compiled in here directly.
#![allow(dead_code)]

#[path = "../src/context.rs"]
mod context;
#[path = "../src/dockerignore.rs"]
mod dockerignore;
#[path = "../src/fsutil.rs"]
mod fsutil;

use std::path::{Path, PathBuf};
use std::time::Instant;

fn run(dir: &Path, cache: Option<&Path>) -> (f64, u64, usize, usize) {
    let t = Instant::now();
    let ctx = context::Context::load(dir, None, cache).expect("load");
    let (_, list) = ctx.checksum(&[PathBuf::new()]).expect("checksum");
    let secs = t.elapsed().as_secs_f64();
    let files = list.iter().filter(|(_, v)| v.starts_with("sha256:")).count();
    let bytes = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    (secs, bytes, files, ctx.files_hashed())
}

fn main() {
    // As rbuild's main: SIGIO (a lease break) must not end the process, or large files are read
    // instead of mapped.
    // SAFETY: SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGIO, libc::SIG_IGN) };
    let args: Vec<String> = std::env::args().collect();
    let threads = rayon::current_num_threads();
    match args.get(1).map(String::as_str) {
        Some("sha") => {
            let block = vec![7u8; 16 * 1024];
            let t = Instant::now();
            let mut n = 0u64;
            let mut h = cache::Hasher::new();
            while t.elapsed().as_secs_f64() < 2.0 {
                for _ in 0..1024 {
                    h.update(&block);
                }
                n += 1024 * block.len() as u64;
            }
            let _ = h.finish();
            println!("cache::Hasher (sha2) 1 core: {:.2} GB/s", n as f64 / t.elapsed().as_secs_f64() / 1e9);
        }
        Some("big") => {
            let dir = Path::new(&args[2]);
            let mut best = f64::MAX;
            let mut size = 0;
            for _ in 0..3 {
                let (secs, bytes, _, hashed) = run(dir, None);
                assert!(hashed > 0);
                best = best.min(secs);
                size = bytes;
            }
            println!(
                "load+checksum {:.2} GiB, no hash cache, {threads} threads: {:.3} s = {:.2} GB/s (best of 3)",
                size as f64 / (1u64 << 30) as f64,
                best,
                size as f64 / best / 1e9
            );
        }
        Some("small") => {
            let dir = Path::new(&args[2]);
            let cache_dir = tempfile::tempdir().expect("tempdir");
            let (cold, _, files, hashed) = run(dir, None);
            println!(
                "{files} small files, cold (no hash cache): {cold:.3} s = {:.0} files/s ({hashed} read)",
                files as f64 / cold
            );
            let (fill, _, _, _) = run(dir, Some(cache_dir.path()));
            println!("  filling the hash cache: {fill:.3} s");
            let (warm, _, files, hashed) = run(dir, Some(cache_dir.path()));
            println!(
                "{files} small files, warm (hash cache hits): {warm:.3} s = {:.0} files/s ({hashed} read)",
                files as f64 / warm
            );
        }
        _ => eprintln!("usage: context_bench sha | big DIR | small DIR"),
    }
}
