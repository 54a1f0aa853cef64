#!/usr/bin/env bash
# Times rbuild on the demo (two stages: COPY, RUN, ENV, WORKDIR, COPY --from, CMD) with
# hyperfine and prints the medians: a cold --no-cache build, a fully cached rebuild, and
# `run --rm busybox true`. Needs root; installs hyperfine and busybox-static if missing.
# Usage: bench/build.sh [RUNS]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
need=()
command -v hyperfine >/dev/null || need+=(hyperfine)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release -q --bin rbuild --bin busybox-rootfs
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rb="$PWD/target/release/rbuild --root $tmp/store"
target/release/busybox-rootfs "$tmp/busybox.tar"
$rb import "$tmp/busybox.tar" busybox:latest >/dev/null
ctx=testdata/demo
hyperfine -N --style basic --warmup 2 --runs "$runs" --export-json "$tmp/out.json" \
  -n cold-no-cache "$rb build -q --no-cache -t bench:cold $ctx" \
  -n cached-rebuild "$rb build -q -t bench:cached $ctx" \
  -n "run --rm true" "$rb run --rm busybox true" >/dev/null
python3 - "$tmp/out.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(f"{r['command']:<16} median {r['median']*1000:7.1f} ms  (min {r['min']*1000:.1f}, max {r['max']*1000:.1f}, {len(r['times'])} runs)")
PY
