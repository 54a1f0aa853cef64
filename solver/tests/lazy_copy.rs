//! A COPY that nothing later in the build reads is written straight from the context into its
//! layer (`solver/src/lazy_copy.rs`): the layer must be the one the eager copy gives, byte for
//! byte, and the image must hold the files. Real builds over the busybox test image, with RUN
//! steps: needs root, and has its own `main` (the sandbox re-executes this binary as its init).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use cache::{Image, Store};
use solver::{BuildOptions, Event, Progress};

struct Quiet;
impl Progress for Quiet {
    fn event(&self, _: Event<'_>) {}
}

/// Later than every mtime the test sets, earlier than now: each time the build takes from
/// the clock is clamped to it, the ones it keeps from the context and the image are not.
const EPOCH: i64 = 1_000_000;

/// The image the COPYs land on: a symlinked directory, a private one with an old mtime, a
/// file to replace.
const SETUP: &str = "FROM busybox
RUN mkdir -p /srv/app/sub /srv/app/sub2 && ln -s /srv/app /app && chmod 700 /srv/app/sub \\
    && echo old > /srv/app/old && touch -d @5 /srv/app/sub /srv
";

fn build(store: &Store, context: &Path, dockerfile: String) -> Image {
    let options = BuildOptions {
        context: context.to_path_buf(),
        dockerfile,
        dockerfile_name: "Dockerfile".into(),
        source_date_epoch: Some(EPOCH),
        ..Default::default()
    };
    match solver::build(store, &options, &Quiet) {
        Ok(out) => out.image,
        Err(e) => panic!("{}", hostutil::errors::one_line(&e)),
    }
}

/// A context with nested directories, a setuid file, a symlink, an empty directory, and old
/// mtimes everywhere (the directories' differ from their files').
fn context() -> tempfile::TempDir {
    let ctx = test_support::context(&[
        ("tree/a", "a\n"),
        ("tree/sub/b", "b\n"),
        ("tree/sub/deep/c", "c\n"),
        ("tree/etc/newconf", "conf\n"),
        ("top.txt", "top\n"),
    ]);
    let p = ctx.path();
    std::fs::create_dir(p.join("tree/empty")).unwrap();
    std::os::unix::fs::symlink("../a", p.join("tree/sub/link")).unwrap();
    std::fs::set_permissions(p.join("tree/sub/b"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    let touch = |at: &str, paths: &[PathBuf]| {
        let ok = Command::new("touch").args(["-h", "-d", at]).args(paths).status().unwrap().success();
        assert!(ok, "touch");
    };
    let all: Vec<PathBuf> = walkdir::WalkDir::new(p).into_iter().map(|e| e.unwrap().into_path()).collect();
    touch("@100", &all);
    touch("@200", &[p.join("tree"), p.join("tree/sub")]);
    ctx
}

fn main() {
    // SAFETY: first thing in main: no thread has started.
    unsafe {
        test_support::harness::main(
            "rbuild-lazy-copy-test-",
            &[
                ("the_layer_is_the_eager_copys", |scratch: &PathBuf| the_layer_is_the_eager_copys(scratch)),
                ("the_image_has_the_files", |scratch: &PathBuf| the_image_has_the_files(scratch)),
                ("a_copy_another_stage_reads_is_made_eagerly", |scratch: &PathBuf| {
                    a_copy_another_stage_reads_is_made_eagerly(scratch)
                }),
            ],
            Path::to_path_buf,
        )
    }
}

fn last_layer(image: &Image) -> cache::Layer {
    image.layers().last().cloned().expect("a layer")
}

fn unpacked(store: &Store, layer: &cache::Layer) -> bool {
    store.root().join("layers").join(layer.diff_id.hex()).exists()
}

fn the_layer_is_the_eager_copys(scratch: &Path) {
    let ctx = context();
    let lazy_store = test_support::store_with_busybox(&scratch.join("lazy"));
    let eager_store = test_support::store_with_busybox(&scratch.join("eager"));
    // (COPY, whether it is written lazily: the others replace a file of the image, which the
    // plan leaves to the eager copy.)
    let cases = [
        ("COPY tree /new/", true),
        ("COPY tree /app/", true),
        ("COPY --chown=1:2 --chmod=640 top.txt tree/etc /etc/", true),
        ("COPY tree /", true),
        ("COPY tree tree/sub /srv/", true),
        ("COPY --exclude=*.txt --exclude=sub/b . /x/", true),
        ("COPY top.txt /newdir/deeper/file.txt", true),
        ("COPY top.txt /srv/app/sub/renamed", true),
        ("COPY --link tree /app/", true),
        ("COPY . .", true),
        ("COPY top.txt /etc/passwd", false),
        ("COPY tree/sub/b /srv/app/old", false),
    ];
    for (copy, lazy) in cases {
        let lazily = build(&lazy_store, ctx.path(), format!("{SETUP}{copy}\n"));
        // A RUN after it reads the rootfs: the COPY's files are made.
        let eagerly = build(&eager_store, ctx.path(), format!("{SETUP}{copy}\nRUN true\n"));
        let (l, e) = (last_layer(&lazily), last_layer(&eagerly));
        assert_eq!(lazily.layers().len(), 3, "{copy}: busybox, RUN, COPY");
        assert_eq!(l.diff_id, e.diff_id, "{copy}: the layers differ");
        assert_eq!(l.digest, e.digest, "{copy}: the blobs differ");
        assert!(unpacked(&eager_store, &e), "{copy}: the eager copy's files are its layer's");
        assert_eq!(!unpacked(&lazy_store, &l), lazy, "{copy}: lazy: {lazy}");
    }
}

fn the_image_has_the_files(scratch: &Path) {
    let ctx = context();
    let store = test_support::store_with_busybox(scratch);
    let image = build(&store, ctx.path(), format!("{SETUP}COPY --chown=7:8 tree /app/\nCMD [\"sh\"]\n"));
    assert!(!unpacked(&store, &last_layer(&image)), "written lazily");
    // What a container of the image sees (the layer unpacked now).
    let view = store.mount_readonly(&image.layers()).unwrap();
    let root = view.path();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    assert_eq!(read("srv/app/a"), "a\n");
    assert_eq!(read("srv/app/sub/deep/c"), "c\n");
    assert_eq!(read("srv/app/old"), "old\n", "the image's file is still there");
    assert_eq!(std::fs::read_link(root.join("srv/app/sub/link")).unwrap(), Path::new("../a"));
    let b = std::fs::metadata(root.join("srv/app/sub/b")).unwrap();
    assert_eq!((b.mode() & 0o7777, b.uid(), b.gid(), b.mtime()), (0o4755, 7, 8, 100));
    let sub = std::fs::metadata(root.join("srv/app/sub")).unwrap();
    // Merged into the image's directory: its owner and mode stay, the source's mtime is taken.
    assert_eq!((sub.mode() & 0o7777, sub.uid(), sub.mtime()), (0o700, 0, 200));
    assert!(root.join("srv/app/empty").is_dir());
    assert_eq!(std::fs::metadata(root.join("srv/app/empty")).unwrap().uid(), 7);
    drop(view);
    assert!(unpacked(&store, &last_layer(&image)), "unpacked when first needed");
}

fn a_copy_another_stage_reads_is_made_eagerly(scratch: &Path) {
    let ctx = context();
    let store = test_support::store_with_busybox(scratch);
    let dockerfile = "FROM busybox AS files\nCOPY tree /t\nFROM busybox\nCOPY --from=files /t/sub /s\n";
    let image = build(&store, ctx.path(), dockerfile.into());
    let view = store.mount_readonly(&image.layers()).unwrap();
    assert_eq!(std::fs::read_to_string(view.path().join("s/deep/c")).unwrap(), "c\n");
    drop(view);
    // The final stage's COPY --from is not from the context: made eagerly too.
    assert!(unpacked(&store, &last_layer(&image)));
}
