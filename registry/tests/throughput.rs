//! Push and pull throughput over loopback against `skopeo copy` of the same image. Ignored by
//! default; run with
//! `cargo test --release -p registry --test throughput -- --ignored --nocapture`
//! (RBUILD_BENCH_MIB sets the layer size, default 100).

mod common;

use std::process::Command;
use std::time::Instant;

use common::*;
use test_support::registry::TestRegistry;

#[test]
#[ignore = "benchmark"]
fn push_and_pull_throughput_against_skopeo() {
    let mib: usize = std::env::var("RBUILD_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let reg = TestRegistry::start();
    let (src, image) = random_image_store(mib << 20);
    let size: u64 = image.layers().iter().map(|l| l.size).sum();
    let (client, _) = client();
    let rate = |secs: f64| size as f64 / (1 << 20) as f64 / secs;

    let t = Instant::now();
    client.push(&src.store, &image, &format!("{}/bench/ours:1", reg.host()).parse().unwrap()).expect("push");
    let push = t.elapsed().as_secs_f64();

    let dst = empty_store();
    let t = Instant::now();
    client.pull(&dst.store, &format!("{}/bench/ours:1", reg.host()).parse().unwrap(), None).expect("pull");
    let pull = t.elapsed().as_secs_f64();

    // skopeo: the same image as an OCI layout directory, pushed to a fresh repository, then
    // pulled back into a fresh directory.
    let archive = src.dir.path().join("bench-oci.tar");
    src.store.save(&[(None, image.clone())], cache::ArchiveFormat::Oci, &archive).expect("save");
    let layout = src.dir.path().join("layout");
    run(Command::new("skopeo").args([
        "copy",
        &format!("oci-archive:{}", archive.display()),
        &format!("oci:{}:x", layout.display()),
    ]));
    let t = Instant::now();
    run(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:x", layout.display()),
        &format!("docker://{}/bench/skopeo:1", reg.host()),
    ]));
    let skopeo_push = t.elapsed().as_secs_f64();
    let out = src.dir.path().join("skopeo-out");
    let t = Instant::now();
    run(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/bench/skopeo:1", reg.host()),
        &format!("oci:{}:x", out.display()),
    ]));
    let skopeo_pull = t.elapsed().as_secs_f64();

    println!("image: {:.1} MiB, one uncompressed layer, loopback registry", size as f64 / (1 << 20) as f64);
    println!(
        "push: rbuild {push:.2}s ({:.0} MiB/s), skopeo {skopeo_push:.2}s ({:.0} MiB/s), ratio {:.2}",
        rate(push),
        rate(skopeo_push),
        push / skopeo_push
    );
    println!(
        "pull: rbuild {pull:.2}s ({:.0} MiB/s), skopeo {skopeo_pull:.2}s ({:.0} MiB/s), ratio {:.2}",
        rate(pull),
        rate(skopeo_pull),
        pull / skopeo_pull
    );
}
