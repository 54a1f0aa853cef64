#!/usr/bin/env bash
# A build farm's cache (issue 17): the build cache of a 500 MiB, 5-layer image exported to a
# local registry and imported by an empty builder, rbuild beside BuildKit.
#   export     store A (which built the image) writes its cache: rbuild a fully cached build with
#              `--cache-to type=registry,mode=max`; BuildKit (20.10, no buildx: inline cache, the
#              cache BuildKit has there) `docker push` of the image built with
#              BUILDKIT_INLINE_CACHE=1
#   import     an empty builder builds the same Dockerfile with `--cache-from`: every step hits,
#              the layers come from the registry (BuildKit after `builder prune -af` and rmi)
#   re-export  A exports again with nothing changed (target: no layer upload, under 0.5 s)
# "Sent" is what the registry stored in between (its storage directory grew by), the bytes an
# export had to upload. Runs on a registry of its own (Debian's docker-registry on a free
# loopback port) so nothing else writes there. BuildKit's rows need the private dockerd of
# ../shared/bench/peers-setup.sh (left out without it).
#
# Usage: bench/farm.sh [RUNS]   (default 3; medians printed)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${1:-3}
PEERS_DIR=${PEERS_DIR:-/tmp/peers}
cargo build --release -q --bin rbuild --bin busybox-rootfs
tmp=$(mktemp -d /var/tmp/rbuild-farm.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
R=127.0.0.1:$port
cat > "$tmp/registry.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $tmp/registry
  delete:
    enabled: true
http:
  addr: $R
YML
regpid=
D="/usr/bin/docker -H unix://$PEERS_DIR/docker.sock"
rb() { local s=$1; shift; "$root/target/release/rbuild" --root "$tmp/$s" "$@"; }
cleanup() {
  kill "$regpid" 2>/dev/null || true
  for s in a b; do [ -d "$tmp/$s" ] && rb $s network prune -f >/dev/null 2>&1; done
  rm -rf "$tmp"
}
trap cleanup EXIT
# An empty registry holding only the base image: before each export, so every one uploads what
# the first would (a registry keeps a blob once for all its repositories).
fresh_registry() {
  if [ -n "$regpid" ]; then kill "$regpid"; wait "$regpid" 2>/dev/null || true; fi
  rm -rf "$tmp/registry"
  /usr/bin/docker-registry serve "$tmp/registry.yml" > "$tmp/registry.log" 2>&1 &
  regpid=$!
  for _ in $(seq 100); do curl -fs "http://$R/v2/" >/dev/null && break; sleep 0.1; done
  rb a push -q busybox:latest "$R/bb:1" >/dev/null
}
target/release/busybox-rootfs "$tmp/busybox.tar"
rb a import "$tmp/busybox.tar" busybox:latest >/dev/null
fresh_registry
mkdir -p "$tmp/ctx"
{
  echo "FROM $R/bb:1"
  for i in 1 2 3 4 5; do echo "RUN head -c 104857600 /dev/urandom > /layer$i"; done
} > "$tmp/ctx/Dockerfile"
stored() { du -sb "$tmp/registry" 2>/dev/null | cut -f1; }
now() { date +%s.%N; }
# time_and_bytes CMD...: prints "SECONDS BYTES" (the registry's growth while CMD ran).
time_and_bytes() {
  local before t0 t1
  before=$(stored); t0=$(now)
  "$@" >/dev/null 2>&1
  t1=$(now)
  echo "$(echo "$t1 - $t0" | bc) $(( $(stored) - before ))"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mb() { awk -v b="$1" 'BEGIN {printf "%.1f MB", b / 1e6}'; }

declare -A T B
measure() { # name CMD... (run $runs times, each after its own prepare step in $prepare)
  local name=$1; shift
  local times=() bytes=()
  for _ in $(seq "$runs"); do
    [ -n "${prepare:-}" ] && eval "$prepare" >/dev/null 2>&1
    read -r t b < <(time_and_bytes "$@")
    times+=("$t"); bytes+=("$b")
  done
  T[$name]=$(printf '%s\n' "${times[@]}" | median)
  B[$name]=$(printf '%s\n' "${bytes[@]}" | median)
  echo "  $name: ${T[$name]} s, sent $(mb "${B[$name]}")" >&2
}

echo "rbuild" >&2
rb a build -q --network=none -t app:1 "$tmp/ctx" >/dev/null
prepare=fresh_registry
export_rb() { rb a build -q --network=none -t app:1 --cache-to "type=registry,ref=$R/rb/cache:1,mode=max" "$tmp/ctx"; }
measure rb-export export_rb
prepare="rb b network prune -f; rm -rf $tmp/b"
import_rb() { rb b build -q --network=none -t app:1 --cache-from "type=registry,ref=$R/rb/cache:1" "$tmp/ctx"; }
measure rb-import import_rb
prepare=''
measure rb-reexport export_rb

if $D info >/dev/null 2>&1; then
  echo "BuildKit (docker 20.10, inline cache)" >&2
  export_bk() {
    $D tag localhost/farm:bk "$R/bk/app:1"
    $D push "$R/bk/app:1"
  }
  env DOCKER_BUILDKIT=1 $D build -q --network=none --build-arg BUILDKIT_INLINE_CACHE=1 -t localhost/farm:bk "$tmp/ctx" >/dev/null
  prepare=fresh_registry
  measure bk-export export_bk
  prepare="$D rmi -f localhost/farm:bk $R/bk/app:1; $D builder prune -af"
  import_bk() { env DOCKER_BUILDKIT=1 $D build -q --network=none --cache-from "$R/bk/app:1" -t localhost/farm:bk "$tmp/ctx"; }
  measure bk-import import_bk
  prepare=''
  measure bk-reexport export_bk
  $D rmi -f localhost/farm:bk >/dev/null 2>&1 || true
fi

cell() { # name: "T s, sent B" (import: the time alone; nothing is sent)
  local t=${T[$1]:-} b=${B[$1]:-}
  [ -z "$t" ] && return 0
  if [[ $1 == *import ]]; then printf '%.2f s' "$t"; else printf '%.2f s, sent %s' "$t" "$(mb "$b")"; fi
}
printf '\n| the cache of a 500 MiB, 5-layer image (median of %s) | rbuild | BuildKit (docker 20.10, inline) |\n|---|---:|---:|\n' "$runs"
for row in export import reexport; do
  printf '| %s | %s | %s |\n' "$row" "$(cell rb-$row)" "$(cell bk-$row)"
done
