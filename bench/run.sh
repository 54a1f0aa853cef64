#!/usr/bin/env bash
# Times container start-to-exit with hyperfine and prints the medians: `rbuild run --rm busybox
# true` on the default bridge network (the issue's benchmark), with --network none, with a
# published port, and a detached start + `rm -f`. With podman installed (../shared/bench sets
# it up), `podman run --rm --network=none` of the same image is timed beside it.
# Needs root; installs hyperfine and busybox-static if missing.
# Usage: bench/run.sh [RUNS]   (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-50}
bench_cleanup_extra() {
  for id in $($rb ps -aq --no-trunc 2>/dev/null); do $rb rm -f "$id" >/dev/null 2>&1 || true; done
}
# shellcheck source=bench/common.sh
. bench/common.sh
median() { python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results'][0]; print(f\"{r['median']*1000:.1f} ms\")" "$1"; }
bench() {
  local name=$1; shift
  hyperfine -N -w 5 -r "$runs" --export-json "$tmp/h.json" "$@" >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; return 1; }
  printf '%-44s %s\n' "$name" "$(median "$tmp/h.json")"
}
bench "rbuild run --rm busybox true (bridge)" "$rb run --rm busybox true"
bench "rbuild run --rm --network none busybox true" "$rb run --rm --network none busybox true"
bench "rbuild run --rm -p 127.0.0.1::80 busybox true" "$rb run --rm -p 127.0.0.1::80 busybox true"
bench "rbuild run -d + rm -f (bridge)" "sh -c '$rb rm -f \$($rb run -d busybox sleep 100) >/dev/null'"
if command -v podman >/dev/null; then
  podman load -q -i "$tmp/busybox.tar" >/dev/null 2>&1 || podman import -q "$tmp/busybox.tar" localhost/rbench-busybox >/dev/null
  bench "podman run --rm --network=none busybox true" "podman run --rm --network=none localhost/rbench-busybox true"
  podman rmi -f localhost/rbench-busybox >/dev/null 2>&1 || true
fi
