//! `SOURCE_DATE_EPOCH`: two `--no-cache` builds of the same Dockerfile and context give the same
//! manifest digest. Real builds (with RUN steps) over the busybox test image: needs root. The
//! sandbox re-executes this binary as its init, so it has its own `main` (`harness = false`).

use std::path::{Path, PathBuf};

use cache::oci;
use cache::{Compression, Image, Store};
use solver::{BuildOptions, Event, Progress};

struct Quiet;
impl Progress for Quiet {
    fn event(&self, _: Event<'_>) {}
}

const DOCKERFILE: &str = "FROM busybox
RUN mkdir -p /data/sub && echo one > /data/one && echo two > /data/sub/two && ln -s one /data/link \\
    && ln /data/one /data/hard && touch /data/empty
COPY . /app/
WORKDIR /work
RUN echo done > /work/done
";

fn build(store: &Store, context: &std::path::Path, epoch: Option<i64>, compression: Compression) -> Image {
    let options = BuildOptions {
        context: context.to_path_buf(),
        dockerfile: DOCKERFILE.into(),
        dockerfile_name: "Dockerfile".into(),
        no_cache: true,
        source_date_epoch: epoch,
        compression,
        ..Default::default()
    };
    solver::build(store, &options, &Quiet).unwrap().image
}

fn main() {
    // SAFETY: first thing in main: no thread has started.
    unsafe {
        test_support::harness::main(
            "rbuild-reproducible-test-",
            &[("same_epoch_same_manifest_digest", |scratch: &PathBuf| {
                same_epoch_same_manifest_digest(scratch)
            })],
            Path::to_path_buf,
        )
    }
}

fn same_epoch_same_manifest_digest(scratch: &Path) {
    let store = test_support::store_with_busybox(scratch);
    let context = test_support::context(&[("hello.txt", "hello\n"), ("dir/nested", "nested\n")]);
    let epoch = 1_700_000_000; // 2023-11-14T22:13:20Z

    let a = build(&store, context.path(), Some(epoch), Compression::Gzip);
    // Let the clock move on a second, so that unclamped times would differ.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = build(&store, context.path(), Some(epoch), Compression::Gzip);
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.manifest.layers.len(), 5, "busybox, RUN, COPY, WORKDIR, RUN");

    let config = &a.config;
    assert_eq!(config.created.as_deref(), Some("2023-11-14T22:13:20Z"));
    let created: Vec<_> = config.history.iter().map(|h| h.created.as_deref().unwrap()).collect();
    assert_eq!(created[0], "2000-01-01T00:00:00Z", "the base image's history is older: kept");
    assert!(created[1..].iter().all(|c| *c == "2023-11-14T22:13:20Z"), "{created:?}");

    // zstd builds are reproducible too, and differ from gzip ones only in their blobs.
    let z1 = build(&store, context.path(), Some(epoch), Compression::Zstd);
    let z2 = build(&store, context.path(), Some(epoch), Compression::Zstd);
    assert_eq!(z1.digest, z2.digest);
    assert_ne!(z1.digest, a.digest);
    assert!(z1.manifest.layers[1..].iter().all(|l| l.media_type == oci::MEDIA_TYPE_LAYER_ZSTD));

    // Without an epoch, the times of the build show.
    let c = build(&store, context.path(), None, Compression::Gzip);
    assert_ne!(c.digest, a.digest);
}
