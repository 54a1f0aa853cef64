#!/usr/bin/env bash
# Builds rbuild, makes the busybox base image, builds testdata/demo and runs it.
# Needs root on Debian (installs busybox-static if missing). Store: $RBUILD_ROOT or /var/lib/rbuild.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /bin/busybox ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null
fi
cargo build --release -q --bin rbuild --bin busybox-rootfs
rbuild=target/release/rbuild
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
target/release/busybox-rootfs "$tmp/busybox.tar"
"$rbuild" import "$tmp/busybox.tar" busybox:latest >/dev/null
"$rbuild" build -t demo:latest testdata/demo
"$rbuild" run --rm demo:latest
