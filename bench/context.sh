#!/usr/bin/env bash
# Build-context reader figures: (a) walk + sha256 of a 1 GiB context (8 x 128 MiB of random
# data, in the page cache) without the hash cache, in GB/s, beside openssl's single-core
# sha256; (b) 10,000 files of 1-4 KiB: files/s cold (no hash cache) and warm (cache hits).
# Usage: bench/context.sh        (needs ~1.1 GiB free under ${TMPDIR:-/tmp}; removed at exit)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p solver --example context_bench 2>&1 | grep -E '^error' -A5 || true
bin=target/release/examples/context_bench
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== CPU"
echo "cores: $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "sha_ni flag: $(grep -o -m1 sha_ni /proc/cpuinfo | head -1 || echo absent)"

echo "== sha256, one core"
if command -v openssl >/dev/null; then
  openssl speed -evp sha256 -bytes 16384 -seconds 2 2>/dev/null | awk '/^sha256|^SHA256/ {
    v=$NF; sub(/k$/,"",v); printf "openssl speed -evp sha256 (16 KiB blocks): %.2f GB/s\n", v*1000/1e9 }'
  openssl speed -multi "$(nproc)" -evp sha256 -bytes 16384 -seconds 2 2>/dev/null | awk '/^sha256|^SHA256/ {
    v=$NF; sub(/k$/,"",v); printf "openssl speed -multi '"$(nproc)"' (all cores together): %.2f GB/s\n", v*1000/1e9 }'
else
  echo "openssl not installed"
fi
"$bin" sha

echo "== (a) 1 GiB context of large files"
mkdir "$tmp/big"
for i in 1 2 3 4 5 6 7 8; do head -c 128M /dev/urandom >"$tmp/big/blob$i"; done
cat "$tmp"/big/* >/dev/null
"$bin" big "$tmp/big"
rm -rf "$tmp/big"

echo "== (b) 10,000 small files"
mkdir "$tmp/small"
python3 - "$tmp/small" <<'PY'
import os, random, sys
root = sys.argv[1]
rnd = random.Random(1)
for i in range(10000):
    d = os.path.join(root, f"d{i // 100:03}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05}"), "wb") as f:
        f.write(rnd.randbytes(rnd.randint(1024, 4096)))
PY
sleep 1 # older than the hash cache's racy window
"$bin" small "$tmp/small"

echo "== (c) 100,000 files, 100 MiB of content (compare.sh's figure c), beside tar reading them"
command -v gcc >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null; }
gcc -O2 -o "$tmp/gen-files" bench/gen-files.c
mkdir -p "$tmp/tree"
"$tmp/gen-files" "$tmp/tree/files" 100000 100 7
find "$tmp/tree" -type f -exec cat {} + >/dev/null
sleep 1
"$bin" small "$tmp/tree"
# GNU tar does not read file contents when its output is /dev/null: a pipe makes it.
best=
for _ in 1 2 3; do
  s=$(date +%s%N); tar -cf - -C "$tmp" tree | cat >/dev/null; e=$(( ($(date +%s%N) - s) / 1000000 ))
  [ -z "$best" ] || [ "$e" -lt "$best" ] && best=$e
done
echo "tar -cf - | cat >/dev/null of the same tree: ${best} ms (best of 3)"
