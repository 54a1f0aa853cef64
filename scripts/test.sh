#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this). Needs root on Debian:
# the tests make real namespaces and mounts, check our images with skopeo and umoci, and create
# a user to run rbuild rootless (with uidmap's newuidmap/newgidmap); the registry tests start
# Debian's docker-registry on 127.0.0.1 (htpasswd -B from apache2-utils for the auth one), the
# S3 tests moto's S3 server (moto[server] from PyPI); the container tests make bridges, veths and
# nftables rules (nft) and remove them.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
[ -x /bin/busybox ] || need+=(busybox-static)
command -v skopeo >/dev/null || need+=(skopeo)
command -v umoci >/dev/null || need+=(umoci)
command -v newuidmap >/dev/null || need+=(uidmap)
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
command -v htpasswd >/dev/null || need+=(apache2-utils)
# Published container ports get NAT rules through nft (a userland proxy works without it).
command -v nft >/dev/null || need+=(nftables)
# Rootless build steps get their network from slirp4netns; the network tests' "outside world"
# is set up with iproute2's `ip netns`.
command -v slirp4netns >/dev/null || need+=(slirp4netns)
command -v ip >/dev/null || need+=(iproute2)
# `--ssh` tests start ssh-agent and copy ssh-add into their image.
command -v ssh-agent >/dev/null || need+=(openssh-client)
# Git contexts (`rbuild build git://...`) go through the git command; a test serves one.
command -v git >/dev/null || need+=(git)
# The API service's judge is the unchanged docker CLI (Debian's docker.io); no dockerd is
# started by the tests (Debian's policy-rc.d keeps the package from starting one here).
[ -x /usr/bin/docker ] || need+=(docker.io)
# ... and docker-compose 1.29 and docker-py 5 (python3-docker), driven as their users drive them.
[ -x /usr/bin/docker-compose ] || need+=(docker-compose)
/usr/bin/python3 -c 'import docker' 2>/dev/null || need+=(python3-docker)
# The service's socket activation is tested with systemd's own activator (no systemd runs).
[ -x /usr/bin/systemd-socket-activate ] || need+=(systemd)
# Multi-platform builds run foreign RUN steps through QEMU user emulation (rbuild registers the
# binfmt_misc entries from the package's binfmt.d files).
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The S3 cache tests (registry/tests/s3.rs) start moto's S3 server, moto_server, on 127.0.0.1.
python3 -c 'import moto.server' 2>/dev/null || python3 -m pip install -q 'moto[server]'
# testcontainers-python (cli/tests/api_testcontainers.rs) wants docker-py 7, so it gets a venv
# of its own beside Debian's docker-py 5 that docker-compose needs.
tc=/opt/rbuild-test/testcontainers
"$tc/bin/python" -c 'import testcontainers' 2>/dev/null ||
  { python3 -m venv "$tc" && "$tc/bin/pip" install -q 'testcontainers==4.15.0'; }
# slirp4netns opens /dev/net/tun as the unprivileged user: Debian's udev makes it 0666, a
# container (as some CI machines are) may have it 0600.
# The multi-platform tests' base images: Debian's busybox-static for arm64, armhf and i386.
bash scripts/foreign-busybox.sh
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then chmod 0666 /dev/net/tun; fi
# No test may reach beyond this machine: Docker Hub (short names) is blocked for every rbuild
# the suite runs; tests that need a registry start their own on 127.0.0.1.
export RBUILD_CONFIG="$PWD/test-support/offline.toml"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
cargo test --workspace
# Tests that cannot run on this machine pass after printing `skipped: <reason>`; libtest hides
# a passing test's output, so show those reasons here.
echo "tests skipped on this machine, and why:"
for t in "-p frontend --test conformance" "-p executor --test cgroup" "-p runtime --test network" "-p cli --test rootless"; do
  # shellcheck disable=SC2086
  cargo test -q $t -- --nocapture --test-threads=1 2>&1 | grep -o 'skipped: .*' || true
done
