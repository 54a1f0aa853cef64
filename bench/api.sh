#!/usr/bin/env bash
# What the socket costs: `docker run --rm busybox true` with the unchanged docker 20.10 CLI
# (/usr/bin/docker) against `rbuild system service`, beside `rbuild run --rm busybox true` on
# the same store, on the default bridge and with --network none; median and p90 of N runs
# each (hyperfine). With podman installed (../shared/bench sets it up), the same docker CLI
# against `podman system service` is timed too; without it that row is skipped.
# Needs root; installs hyperfine and busybox-static if missing.
# Usage: bench/api.sh [RUNS]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
docker=/usr/bin/docker
[ -x "$docker" ] || { echo "bench/api.sh: $docker not found: apt-get install docker.io" >&2; exit 1; }
service_pid=
podman_pid=
bench_cleanup_extra() {
  for id in $($rb ps -aq --no-trunc 2>/dev/null); do $rb rm -f "$id" >/dev/null 2>&1 || true; done
  if [ -n "$service_pid" ]; then kill "$service_pid" 2>/dev/null || true; wait "$service_pid" 2>/dev/null || true; fi
  if [ -n "$podman_pid" ]; then kill "$podman_pid" 2>/dev/null || true; wait "$podman_pid" 2>/dev/null || true; fi
  podman rmi -f localhost/rbench-busybox >/dev/null 2>&1 || true
}
# shellcheck source=bench/common.sh
. bench/common.sh

sock="$tmp/docker.sock"
$rb system service --time 0 "unix://$sock" </dev/null >"$tmp/service.log" 2>&1 &
service_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { cat "$tmp/service.log" >&2; exit 1; }
export DOCKER_CONFIG="$tmp/docker-config"
mkdir -p "$DOCKER_CONFIG"

# median and p90 of hyperfine's times, in ms
stats() {
  python3 -c '
import json, sys
t = sorted(json.load(open(sys.argv[1]))["results"][0]["times"])
p = lambda q: t[min(len(t) - 1, int(round(q * (len(t) - 1))))] * 1000
print(f"{p(0.5):8.1f} {p(0.9):8.1f}")' "$1"
}
row() {
  local name=$1; shift
  hyperfine -N -w 3 -r "$runs" --export-json "$tmp/h.json" "$@" >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; return 1; }
  printf '%-52s %s\n' "$name" "$(stats "$tmp/h.json")"
}

dk="$docker -H unix://$sock"
printf '%-52s %8s %8s\n' "N=$runs" "median" "p90"
row "rbuild run --rm busybox true" "$rb run --rm busybox true"
row "docker run --rm busybox true (rbuild's socket)" "$dk run --rm busybox true"
row "rbuild run --rm --network none busybox true" "$rb run --rm --network none busybox true"
row "docker run --rm --network none (rbuild's socket)" "$dk run --rm --network none busybox true"
row "docker ps (rbuild's socket)" "$dk ps"
row "docker --version (the CLI alone: no request)" "$docker --version"
if command -v podman >/dev/null; then
  # As ../shared/bench/peers-setup.sh: without CAP_SYS_RESOURCE podman's default rlimits
  # (nofile 1048576, nproc max) cannot be set; no systemd runs, so cgroupfs.
  cat >"$tmp/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
EOF
  export CONTAINERS_CONF="$tmp/containers.conf"
  podman load -q -i "$tmp/busybox.tar" >/dev/null 2>&1 || podman import -q "$tmp/busybox.tar" localhost/rbench-busybox >/dev/null
  psock="$tmp/podman.sock"
  podman system service --time 0 "unix://$psock" </dev/null >"$tmp/podman.log" 2>&1 &
  podman_pid=$!
  for _ in $(seq 100); do [ -S "$psock" ] && break; sleep 0.05; done
  row "docker run --rm --network none (podman's socket)" "$docker -H unix://$psock run --rm --network none localhost/rbench-busybox true"
else
  echo "(podman not installed: its socket is not timed)"
fi
