//! The build network, end to end: every RUN in a namespace of its own on the build bridge,
//! reaching "the outside world" (a namespace this test makes, see `test_support::outside`)
//! through NAT, by address and by an `--add-host` name; `--network=none` (flag or per step)
//! cannot; /etc/resolv.conf and /etc/hosts in every RUN and in no layer (no /etc/hostname, as
//! BuildKit: the name is the UTS hostname only); proxy
//! build args in RUN's environment only.

use std::path::Path;

use test_support::outside::{Outside, PAGE};
use test_support::{TestStore, context};

fn store() -> TestStore {
    let s = TestStore::new(env!("CARGO_BIN_EXE_rbuild"));
    s.import_busybox();
    s
}

/// The files of `image`'s root, through `rbuild run`.
fn cat(s: &TestStore, image: &str, file: &str) -> String {
    s.ok(&["run", "--rm", "--network", "none", image, "cat", file])
}

#[test]
fn default_network_reaches_outside_by_address_and_added_name_and_none_cannot() {
    let outside = Outside::start();
    let s = store();
    let url = outside.url();
    let by_name = url.replace(&outside.ip.to_string(), "outside.test");
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM busybox\n\
             COPY glibc/ /\n\
             RUN wget -q -O /by-address.txt {url} && wget -q -O /by-name.txt {by_name}\n\
             RUN cat /etc/resolv.conf > /resolv.txt && hostname > /hostname.txt \
                 && {{ test -e /etc/hostname || echo absent; }} > /no-hostname-file.txt \
                 && getent hosts localhost > /localhost.txt && getent hosts outside.test > /outside.txt \
                 && getent hosts rbuild-sandbox > /self.txt && cat /proc/net/dev > /netdev.txt\n\
             RUN --network=none cat /etc/resolv.conf > /resolv-none.txt \
                 && getent hosts localhost > /localhost-none.txt && cat /proc/net/dev > /netdev-none.txt\n"
        ),
    )]);
    // busybox has no getent: glibc's, for glibc's resolver.
    test_support::copy_host_binary(Path::new("/usr/bin/getent"), &ctx.path().join("glibc"));
    let add_host = format!("outside.test:{}", outside.ip);
    s.ok(&["build", "--add-host", &add_host, "-t", "net:1", ctx.path().to_str().unwrap()]);

    assert_eq!(cat(&s, "net:1", "/by-address.txt"), PAGE);
    assert_eq!(cat(&s, "net:1", "/by-name.txt"), PAGE);
    assert_eq!(cat(&s, "net:1", "/hostname.txt"), "rbuild-sandbox\n");
    assert_eq!(cat(&s, "net:1", "/no-hostname-file.txt"), "absent\n");
    assert!(cat(&s, "net:1", "/localhost.txt").contains("localhost"));
    assert!(cat(&s, "net:1", "/outside.txt").starts_with(&format!("{} ", outside.ip)));
    // The step's own name is on its address on the build network.
    assert!(cat(&s, "net:1", "/self.txt").starts_with("10."), "{}", cat(&s, "net:1", "/self.txt"));
    let resolv = cat(&s, "net:1", "/resolv.txt");
    assert!(resolv.contains("nameserver "), "{resolv}");
    assert!(
        !resolv.contains("nameserver 127."),
        "a loopback resolver is unreachable from the step:\n{resolv}"
    );
    let ifaces = |text: String| -> Vec<String> {
        text.lines().skip(2).map(|l| l.split(':').next().unwrap().trim().to_string()).collect()
    };
    assert_eq!(ifaces(cat(&s, "net:1", "/netdev.txt")), ["lo", "eth0"]);
    assert_eq!(ifaces(cat(&s, "net:1", "/netdev-none.txt")), ["lo"]);
    assert!(!cat(&s, "net:1", "/resolv-none.txt").contains("nameserver"));
    assert!(cat(&s, "net:1", "/localhost-none.txt").contains("localhost"));

    // No RUN layer touches /etc: the two files were mounts, and their stubs are gone.
    let layers = s.layer_entries("net:1");
    assert_eq!(layers.len(), 5, "busybox, COPY and three RUNs: {layers:?}");
    for layer in &layers[2..] {
        let etc: Vec<&String> = layer.iter().filter(|p| p.starts_with("etc")).collect();
        assert!(etc.is_empty(), "a RUN layer has {etc:?}");
    }

    // No network: the build's flag, and a step's own.
    let wget = format!("FROM busybox\nRUN wget -q -O /page {url}\n");
    let ctx = context(&[("Dockerfile", &wget)]);
    let line = s.fails(&["build", "--network=none", "-t", "none:1", ctx.path().to_str().unwrap()]);
    assert!(line.contains("(the step ran with --network=none)"), "{line}");
    let per_step = wget.replace("RUN wget", "RUN --network=none wget");
    let ctx = context(&[("Dockerfile", &per_step)]);
    let line = s.fails(&["build", "-t", "none:2", ctx.path().to_str().unwrap()]);
    assert!(line.contains("(the step ran with --network=none)"), "{line}");
    assert!(s.ok(&["images", "-q", "none"]).is_empty(), "a failed build named an image");

    // The build's `--network=host` needs no --allow; a Dockerfile's still does.
    let ctx = context(&[("Dockerfile", &wget)]);
    s.ok(&["build", "--network=host", "-t", "host:1", ctx.path().to_str().unwrap()]);
    assert_eq!(cat(&s, "host:1", "/page"), PAGE);
    let ctx = context(&[("Dockerfile", &wget.replace("RUN wget", "RUN --network=host wget"))]);
    let line = s.fails(&["build", "-t", "host:2", ctx.path().to_str().unwrap()]);
    assert!(line.contains("network.host"), "{line}");
}

#[test]
fn proxy_build_args_reach_run_but_not_the_image_or_the_cache_key() {
    let s = store();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo \"$HTTP_PROXY $http_proxy $NO_PROXY\" > /proxy.txt\n",
    )]);
    let dir = ctx.path().to_str().unwrap();
    let meta = s.path().join("meta.json");
    let build = |proxy: &str| {
        s.ok(&[
            "build",
            "--build-arg",
            &format!("HTTP_PROXY={proxy}"),
            "--build-arg",
            "no_proxy=localhost",
            "--metadata-file",
            meta.to_str().unwrap(),
            "-t",
            "proxy:1",
            dir,
        ]);
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        m["rbuild.steps.cached"].as_u64().unwrap()
    };
    assert_eq!(build("http://proxy.test:3128"), 0);
    assert_eq!(cat(&s, "proxy:1", "/proxy.txt"), "http://proxy.test:3128 http://proxy.test:3128 localhost\n");
    let env = s.config("proxy:1")["config"]["Env"].to_string();
    assert!(!env.to_ascii_lowercase().contains("proxy"), "a proxy in the image's config: {env}");
    // Another proxy is not another build: the RUN stays cached.
    assert_eq!(build("http://other.test:8080"), 1);
}

#[test]
fn bad_network_flags_are_one_line_errors() {
    let s = store();
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN true\n")]);
    let dir = ctx.path().to_str().unwrap();
    let line = s.fails(&["build", "--network=bogus", dir]);
    assert!(line.contains("\"bogus\" is not a build network: use default, none or host"), "{line}");
    let line = s.fails(&["build", "--add-host", "nocolon", dir]);
    assert!(line.contains("--add-host \"nocolon\": use HOST:IP"), "{line}");
    let line = s.fails(&["build", "--add-host", "h:not-an-ip", dir]);
    assert!(line.contains("is not an IP address"), "{line}");
}
