#!/usr/bin/env bash
# What the build network costs a RUN step: hyperfine times a --no-cache build of ten
# `RUN true` steps with the default network (each step its own namespace and veth pair on the
# build bridge) and with --network=none, and prints the medians and the difference per step.
# The issue's budget: a default-network RUN starts within 5 ms of a --network=none one.
# Needs root; installs hyperfine and busybox-static if missing.
# Usage: bench/build-network.sh [RUNS]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
# shellcheck source=bench/common.sh
. bench/common.sh
mkdir "$tmp/ctx"
{ echo "FROM busybox"; for i in $(seq 1 10); do echo "RUN echo $i > /dev/null"; done; } > "$tmp/ctx/Dockerfile"
# The first build makes the bridge (once per store); the warmups take that.
hyperfine -N --style basic --warmup 3 --runs "$runs" --export-json "$tmp/out.json" \
  -n "10 RUN, --network=default" "$rb build -q --no-cache $tmp/ctx" \
  -n "10 RUN, --network=none" "$rb build -q --no-cache --network=none $tmp/ctx" >/dev/null
python3 - "$tmp/out.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
for x in r:
    print(f"{x['command']:<28} median {x['median']*1000:7.1f} ms  (min {x['min']*1000:.1f}, max {x['max']*1000:.1f})")
d = (r[0]["median"] - r[1]["median"]) * 1000 / 10
print(f"default network costs {d:.2f} ms per RUN step (budget: 5 ms)")
PY
