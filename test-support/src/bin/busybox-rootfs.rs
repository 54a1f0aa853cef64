//! `busybox-rootfs OUT.tar`: writes the busybox rootfs tar that tests and the demo import as
//! their base image.

fn main() {
    let Some(out) = std::env::args_os().nth(1) else {
        eprintln!("usage: busybox-rootfs OUT.tar");
        std::process::exit(2);
    };
    if let Err(e) = test_support::write_busybox_rootfs_tar(std::path::Path::new(&out)) {
        eprintln!("busybox-rootfs: {e}");
        std::process::exit(1);
    }
}
