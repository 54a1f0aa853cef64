#!/usr/bin/env bash
# Times rbuild with hyperfine and prints the medians: a cold --no-cache build and a fully
# cached rebuild of the demo (two stages: COPY, RUN, ENV, WORKDIR, COPY --from, CMD), a no-op
# rebuild of a 20-step Dockerfile over a 10,000-file context, and `run --rm busybox true`. Needs root; installs hyperfine and busybox-static if missing.
# Usage: bench/build.sh [RUNS]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
# shellcheck source=bench/common.sh
. bench/common.sh
ctx=testdata/demo
# A 20-step Dockerfile over a 10,000-file context (100 dirs x 100 files of 1-4 KiB).
big=$tmp/big
mkdir -p "$big"
python3 - "$big" <<'PY'
import os, random, sys
root = sys.argv[1]
random.seed(1)
for d in range(100):
    os.makedirs(f"{root}/src/d{d:03}", exist_ok=True)
    for f in range(100):
        with open(f"{root}/src/d{d:03}/f{f:03}.txt", "wb") as fh:
            fh.write(random.randbytes(random.randint(1024, 4096)))
steps = ["FROM busybox AS build", "WORKDIR /app", "COPY src/ /app/src/", "RUN find /app/src -type f | wc -l > /count",
         "ENV A=1", "ENV B=2", "LABEL x=y", "RUN echo one > /one", "RUN echo two > /two", "COPY src/d000 /d0/",
         "FROM busybox", "WORKDIR /srv", "COPY --from=build /count /srv/count", "COPY --from=build /one /two /srv/",
         "ENV C=3", "USER app", "EXPOSE 8080", "LABEL y=z", "CMD [\"cat\", \"/srv/count\"]", "STOPSIGNAL SIGTERM"]
open(f"{root}/Dockerfile", "w").write("\n".join(steps) + "\n")
PY
$rb build -q -t bench:big "$big" >/dev/null
hyperfine -N --style basic --warmup 2 --runs "$runs" --export-json "$tmp/out.json" \
  -n cold-no-cache "$rb build -q --no-cache -t bench:cold $ctx" \
  -n cached-rebuild "$rb build -q -t bench:cached $ctx" \
  -n "noop-20-steps-10k-files" "$rb build -q -t bench:big $big" \
  -n "run --rm true" "$rb run --rm busybox true" >/dev/null
python3 - "$tmp/out.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(f"{r['command']:<24} median {r['median']*1000:7.1f} ms  (min {r['min']*1000:.1f}, max {r['max']*1000:.1f}, {len(r['times'])} runs)")
PY
