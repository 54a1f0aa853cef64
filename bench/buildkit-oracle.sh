#!/usr/bin/env bash
# Starts (or stops) a current BuildKit as the differential oracle of bench/differential_today.py:
# buildkitd (OCI worker, Debian's runc) and a docker-registry holding the base images, both in a
# network namespace that has only loopback. buildkitd always falls back to registry-1.docker.io
# after a mirror; in that namespace neither the fallback nor any RUN can leave the machine. The
# gRPC socket is reachable from the host (unix sockets ignore network namespaces).
#
# buildkitd/buildctl are not built here: put a build of moby/buildkit (v0.24.0 was used, from its
# vendored source with Debian's golang-1.23-go from bookworm-backports) in BUILDKIT_BIN.
# Needs root, docker-registry (Debian), iproute2, util-linux (nsenter), curl.
#
# Usage: bench/buildkit-oracle.sh start|stop
#   BUILDKIT_BIN (default /tmp/buildkit-bin), STATE (default /tmp/bk), NETNS (default bk-oracle)
set -euo pipefail
BIN=${BUILDKIT_BIN:-/tmp/buildkit-bin}
STATE=${STATE:-/tmp/bk}
NS=${NETNS:-bk-oracle}
REGISTRY=127.0.0.1:5000

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  for b in buildkitd buildctl; do
    [ -x "$BIN/$b" ] || { echo "buildkit-oracle: no $BIN/$b (see this script's header)" >&2; exit 1; }
  done
  command -v docker-registry >/dev/null || { echo "buildkit-oracle: apt-get install docker-registry" >&2; exit 1; }
  mkdir -p "$STATE/registry" "$STATE/root"
  cat >"$STATE/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $STATE/registry}, delete: {enabled: true}}
http: {addr: $REGISTRY}
EOF
  cat >"$STATE/buildkitd.toml" <<EOF
root = "$STATE/root"
[grpc]
  address = ["unix://$STATE/buildkitd.sock"]
[worker.oci]
  enabled = true
  binary = "/usr/bin/runc"
  # buildkitd's own namespace: loopback only; the harness also passes force-network-mode=none
  networkMode = "host"
[worker.containerd]
  enabled = false
[registry."docker.io"]
  mirrors = ["$REGISTRY"]
[registry."$REGISTRY"]
  http = true
  insecure = true
[cdi]
  disabled = true
EOF
  [ -e "/run/netns/$NS" ] || ip netns add "$NS"
  ip netns exec "$NS" ip link set lo up
  # nsenter, not `ip netns exec`: that one remounts /sys, which hides the cgroup mounts from runc.
  # nsenter execs the command, so $! is the server's own PID.
  if ! alive "$STATE/registry.pid"; then
    nohup nsenter --net="/run/netns/$NS" docker-registry serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 &
    echo $! >"$STATE/registry.pid"
  fi
  if ! alive "$STATE/buildkitd.pid"; then
    rm -f "$STATE/buildkitd.sock"
    nohup nsenter --net="/run/netns/$NS" "$BIN/buildkitd" --config "$STATE/buildkitd.toml" \
      --oci-worker=true --containerd-worker=false >"$STATE/buildkitd.log" 2>&1 &
    echo $! >"$STATE/buildkitd.pid"
  fi
  for _ in $(seq 60); do
    if "$BIN/buildctl" --addr "unix://$STATE/buildkitd.sock" debug workers >/dev/null 2>&1 &&
      nsenter --net="/run/netns/$NS" curl -fsS -o /dev/null "http://$REGISTRY/v2/" 2>/dev/null; then
      echo "buildkit-oracle: ready ($("$BIN/buildkitd" --version | awk '{print $3}'), socket unix://$STATE/buildkitd.sock)"
      return 0
    fi
    sleep 1
  done
  echo "buildkit-oracle: not ready after 60 s; see $STATE/buildkitd.log and $STATE/registry.log" >&2
  exit 1
}

stop() {
  for name in buildkitd registry; do
    f="$STATE/$name.pid"
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
    kill -0 "$pid" 2>/dev/null && { echo "buildkit-oracle: $name ($pid) outlived SIGTERM" >&2; continue; }
    rm -f "$f"
  done
  if ! [ -e "$STATE/buildkitd.pid" ] && ! [ -e "$STATE/registry.pid" ]; then
    ip netns del "$NS" 2>/dev/null || true
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
