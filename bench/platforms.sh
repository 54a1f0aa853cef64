#!/usr/bin/env bash
# What a second platform costs: hyperfine times --no-cache builds of one small Dockerfile
# (two RUN steps doing a little shell work on busybox) for this machine's platform, for arm64
# alone (every RUN under QEMU user emulation), and for both in one build (an image index), and
# prints the medians. buildx is not in Debian 12, so the comparison is rbuild with itself.
# Needs root, qemu-user-static and the foreign busyboxes (scripts/foreign-busybox.sh); installs
# hyperfine and busybox-static if missing. amd64 hosts only.
# Usage: bench/platforms.sh [RUNS]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
# shellcheck source=bench/common.sh
. bench/common.sh
command -v qemu-aarch64-static >/dev/null || { echo "install qemu-user-static" >&2; exit 1; }
bash scripts/foreign-busybox.sh
mkdir "$tmp/base" "$tmp/ctx"
cp /bin/busybox "$tmp/base/busybox-amd64"
cp target/foreign-busybox/arm64/busybox "$tmp/base/busybox-arm64"
printf 'FROM scratch\nARG TARGETARCH\nCOPY busybox-$TARGETARCH /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n' \
  > "$tmp/base/Dockerfile"
$rb build -q --platform linux/amd64,linux/arm64 -t base:1 "$tmp/base" >/dev/null
cat > "$tmp/ctx/Dockerfile" <<'DF'
FROM base:1
RUN for i in $(seq 1 3000); do echo "line $i"; done > /n && md5sum /n > /sum && wc -l /n
RUN uname -m > /arch && tar -cf /etc.tar /etc /bin 2>/dev/null; gzip -9 /etc.tar
DF
hyperfine -N --style basic --warmup 2 --runs "$runs" --export-json "$tmp/out.json" \
  -n "linux/amd64" "$rb build -q --no-cache --platform linux/amd64 $tmp/ctx" \
  -n "linux/arm64 (QEMU)" "$rb build -q --no-cache --platform linux/arm64 $tmp/ctx" \
  -n "linux/amd64,linux/arm64" "$rb build -q --no-cache --platform linux/amd64,linux/arm64 $tmp/ctx" >/dev/null
python3 - "$tmp/out.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
base = r[0]["median"]
for x in r:
    print(f"{x['command']:<26} median {x['median']*1000:7.1f} ms  ({x['median']/base:4.2f}x native; min {x['min']*1000:.1f}, max {x['max']*1000:.1f})")
PY
