#!/usr/bin/env bash
# rbuild beside BuildKit (a private dockerd), buildah and podman, one hyperfine run per figure,
# on the workloads real builds spend their time in (issue 18):
#   a  the small two-stage Dockerfile of ../shared/bench: cold (--no-cache) and fully cached
#   b  a RUN that writes 1 GiB in 100,000 files of mixed sizes (half compressible), cold
#   c  a context of 100,000 files (100 MiB): first build, no-op rebuild, one file changed
#   d  `run --rm IMAGE true` with --network none and with the default network
#   e  pull of a 500 MiB, 5-layer image from the local registry, then `run` of it
#   f  a cold build of `COPY tree /d`, a 500 MB, 40,000-file context (the image only built and
#      stored, as in a build-and-push pipeline)
# Writes bench/results/compare.{json,md} (medians, and each peer's time over rbuild's) and
# bench/results/compare.png (gnuplot), and prints the table.
#
# Peers are used where ../shared/bench/peers-setup.sh installed them (run first if they are not
# prepared: it installs and starts them, ~1 min); a missing peer only drops its rows. Needs
# root, gcc (the file generator is a static C program run inside the images), hyperfine and
# gnuplot (installed if missing). Every address used is 127.0.0.1 or a namespace of the tools.
#
# `bench/compare.sh --quick` (under 2 minutes) times rbuild alone on a, c (no-op) and d, and
# prints each median beside the one in bench/results/compare.json: a slowdown shows before a
# commit. Noisy 2-core machines: compare ratios over 1.3 or so, not a few percent.
#
# Usage: bench/compare.sh [--quick] [RUNS]   (RUNS: for the fast figures, default 10; the slow
# ones, b, c's first build, e and f, take 3)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
quick=0
if [ "${1:-}" = --quick ]; then quick=1; shift; fi
runs=${1:-10}
slow=3
PEERS_DIR=${PEERS_DIR:-/tmp/peers}
export PEERS_DIR
shared=${SHARED_DIR:-$root/../shared}
results=$root/bench/results

need=()
command -v hyperfine >/dev/null || need+=(hyperfine)
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ $quick = 0 ] && [ ! -f "$PEERS_DIR/ctx/Dockerfile" ]; then
  bash "$shared/bench/peers-setup.sh"
fi
cargo build --release -q --bin rbuild --bin busybox-rootfs
tmp=$(mktemp -d /var/tmp/rbuild-compare.XXXXXX)
store=$tmp/store
rb="$root/target/release/rbuild --root $store"
cleanup() {
  $rb network prune -f >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# The base image every tool builds on: the peers' busybox, or rbuild's own for --quick.
base=localhost/busybox:test
if [ -f "$PEERS_DIR/ctx/Dockerfile" ] && curl -fs http://127.0.0.1:5000/v2/busybox/tags/list >/dev/null 2>&1; then
  base_source=127.0.0.1:5000/busybox:test
  $rb pull -q $base_source >/dev/null
  $rb tag $base_source $base
  ctx_a=$PEERS_DIR/ctx
else
  base_source=$base
  target/release/busybox-rootfs "$tmp/busybox.tar"
  $rb import "$tmp/busybox.tar" $base >/dev/null
  ctx_a=$tmp/ctx-a
  mkdir -p "$ctx_a"
  cp "$root/testdata/demo/"* "$ctx_a/" 2>/dev/null || true
  sed "s|^FROM busybox|FROM $base|" "$root/testdata/demo/Dockerfile" > "$ctx_a/Dockerfile"
fi

D="/usr/bin/docker -H unix://$PEERS_DIR/docker.sock"
have_docker=0; have_podman=0; have_buildah=0; have_crun=0
if [ $quick = 0 ]; then
  $D info >/dev/null 2>&1 && have_docker=1
  command -v podman >/dev/null && podman image exists $base 2>/dev/null && have_podman=1
  command -v buildah >/dev/null && [ $have_podman = 1 ] && have_buildah=1
  [ $have_podman = 1 ] && podman --runtime crun run --rm --network=none $base true >/dev/null 2>&1 && have_crun=1
fi
B="--pull=never --network=none --layers"
# Each figure's hyperfine JSON, kept outside $tmp so that a run that stops half-way keeps what
# it measured (`python3 bench/compare_report.py bench/results/raw bench/results 0` redoes the
# report from it).
json=$results/raw
[ $quick = 1 ] && json=$tmp/json
# FIGURES="a d" runs only those letters (default: all); the other figures' JSON stays, so the
# report covers every figure measured last.
only=${FIGURES:-a b c d e f}
want() { case " $only " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
mkdir -p "$json"
for f in $only; do rm -f "$json/$f"-*.json; done
# hyperfine over name/command pairs; the JSON goes to $json/$1.json. A figure whose command
# fails is reported and left out; the others go on.
bench() {
  local figure=$1 n=$2
  shift 2
  if hyperfine -N --style basic --warmup "${WARMUP:-1}" --runs "$n" --export-json "$json/$figure.json" "$@" >/dev/null; then
    echo "  $figure done" >&2
  else
    echo "  $figure FAILED (a command exited non-zero; rerun it by hand to see why): left out" >&2
    rm -f "$json/$figure.json"
  fi
}
# The peers' rows for a build of context $2 tagged $1 (extra args in $3).
peer_builds() {
  local tag=$1 ctx=$2 extra=${3:-}
  rows=()
  [ $have_docker = 1 ] && rows+=(-n "BuildKit" "env DOCKER_BUILDKIT=1 $D build -q --network=none $extra -t localhost/$tag:docker $ctx")
  [ $have_buildah = 1 ] && rows+=(-n "buildah" "buildah bud -q $B $extra -t localhost/$tag:buildah $ctx")
  [ $have_podman = 1 ] && rows+=(-n "podman" "podman build -q $B $extra -t localhost/$tag:podman $ctx")
  return 0
}

if want a; then
echo "a: the small Dockerfile" >&2
peer_builds rb-bench "$ctx_a" --no-cache
bench a-cold "$runs" -n rbuild "$rb build -q --network=none --no-cache -t rb-bench:rbuild $ctx_a" "${rows[@]}"
peer_builds rb-bench "$ctx_a"
WARMUP=2 bench a-cached "$runs" -n rbuild "$rb build -q --network=none -t rb-bench:rbuild $ctx_a" "${rows[@]}"
fi

if [ $quick = 0 ] && want b; then
  echo "b: a RUN that writes 1 GiB in 100,000 files" >&2
  mkdir "$tmp/ctx-b"
  gcc -O2 -static -o "$tmp/ctx-b/gen-files" "$root/bench/gen-files.c"
  printf 'FROM %s\nCOPY gen-files /gen\nRUN /gen /data 100000 1024\n' $base > "$tmp/ctx-b/Dockerfile"
  peer_builds rb-big "$tmp/ctx-b" --no-cache
  WARMUP=0 bench b-1gib-run "$slow" -n rbuild "$rb build -q --network=none --no-cache -t rb-big:rbuild $tmp/ctx-b" "${rows[@]}"
  # The big layers are not needed again: give the disk back.
  $rb rmi rb-big:rbuild >/dev/null; $rb builder prune >/dev/null; $rb system prune -f >/dev/null
  [ $have_docker = 1 ] && { $D rmi -f localhost/rb-big:docker >/dev/null 2>&1; $D builder prune -af >/dev/null 2>&1 || true; }
  [ $have_podman = 1 ] && { podman rmi -f localhost/rb-big:podman localhost/rb-big:buildah >/dev/null 2>&1 || true; podman image prune -f >/dev/null 2>&1 || true; }
fi

gcc -O2 -static -o "$tmp/gen-files" "$root/bench/gen-files.c"
if want c; then
echo "c: a context of 100,000 files" >&2
mkdir "$tmp/ctx-c"
"$tmp/gen-files" "$tmp/ctx-c/files" 100000 100 7
printf 'FROM %s\nCOPY files /files\nRUN find /files -type f | wc -l\n' $base > "$tmp/ctx-c/Dockerfile"
if [ $quick = 0 ]; then
  # First build: rbuild from a store that has only the base image (no context digests
  # remembered); the peers with --no-cache (and BuildKit's cache pruned).
  cp -a "$store" "$tmp/store-base"
  rows=()
  [ $have_docker = 1 ] && rows+=(-n "BuildKit" --prepare "sh -c '$D builder prune -af >/dev/null'" "env DOCKER_BUILDKIT=1 $D build -q --network=none --no-cache -t localhost/rb-ctx:docker $tmp/ctx-c")
  [ $have_buildah = 1 ] && rows+=(-n "buildah" --prepare true "buildah bud -q $B --no-cache -t localhost/rb-ctx:buildah $tmp/ctx-c")
  [ $have_podman = 1 ] && rows+=(-n "podman" --prepare true "podman build -q $B --no-cache -t localhost/rb-ctx:podman $tmp/ctx-c")
  WARMUP=0 bench c-first "$slow" -n rbuild --prepare "sh -c 'rm -rf $tmp/store-c && cp -a $tmp/store-base $tmp/store-c'" \
    "$root/target/release/rbuild --root $tmp/store-c build -q --network=none -t rb-ctx:rbuild $tmp/ctx-c" "${rows[@]}"
  rm -rf "$tmp/store-c" "$tmp/store-base"
  peer_builds rb-ctx "$tmp/ctx-c"
  WARMUP=2 bench c-noop "$runs" -n rbuild "$rb build -q --network=none -t rb-ctx:rbuild $tmp/ctx-c" "${rows[@]}"
  touch_one="sh -c 'date +%s%N > $tmp/ctx-c/files/00/f000000'"
  rows=()
  [ $have_docker = 1 ] && rows+=(-n "BuildKit" --prepare "$touch_one" "env DOCKER_BUILDKIT=1 $D build -q --network=none -t localhost/rb-ctx:docker $tmp/ctx-c")
  [ $have_buildah = 1 ] && rows+=(-n "buildah" --prepare "$touch_one" "buildah bud -q $B -t localhost/rb-ctx:buildah $tmp/ctx-c")
  [ $have_podman = 1 ] && rows+=(-n "podman" --prepare "$touch_one" "podman build -q $B -t localhost/rb-ctx:podman $tmp/ctx-c")
  WARMUP=1 bench c-one-changed "$runs" -n rbuild --prepare "$touch_one" "$rb build -q --network=none -t rb-ctx:rbuild $tmp/ctx-c" "${rows[@]}"
else
  $rb build -q --network=none -t rb-ctx:rbuild "$tmp/ctx-c" >/dev/null
  WARMUP=2 bench c-noop "$runs" -n rbuild "$rb build -q --network=none -t rb-ctx:rbuild $tmp/ctx-c"
fi
fi

if [ $quick = 0 ] && want f; then
  echo "f: COPY of a 500 MB, 40,000-file context" >&2
  mkdir "$tmp/ctx-f"
  "$tmp/gen-files" "$tmp/ctx-f/tree" 40000 500 7
  printf 'FROM %s\nCOPY tree /d\n' $base > "$tmp/ctx-f/Dockerfile"
  # Each rbuild run starts from a store holding only the base image (a small one, copied:
  # the main store holds c's 100,000-file layers by now).
  fbase="$tmp/store-f-base"
  "$root/target/release/rbuild" --root "$fbase" pull -q "$base_source" >/dev/null 2>&1 \
    || "$root/target/release/rbuild" --root "$fbase" import "$tmp/busybox.tar" "$base" >/dev/null
  "$root/target/release/rbuild" --root "$fbase" tag "$base_source" "$base" 2>/dev/null || true
  rows=()
  [ $have_docker = 1 ] && rows+=(-n "BuildKit" --prepare "sh -c '$D rmi -f localhost/rb-copy:docker >/dev/null 2>&1; $D builder prune -af >/dev/null'" "env DOCKER_BUILDKIT=1 $D build -q --network=none --no-cache -t localhost/rb-copy:docker $tmp/ctx-f")
  [ $have_buildah = 1 ] && rows+=(-n "buildah" --prepare true "buildah bud -q $B --no-cache -t localhost/rb-copy:buildah $tmp/ctx-f")
  [ $have_podman = 1 ] && rows+=(-n "podman" --prepare true "podman build -q $B --no-cache -t localhost/rb-copy:podman $tmp/ctx-f")
  WARMUP=0 bench f-copy "$slow" -n rbuild --prepare "sh -c 'rm -rf $tmp/store-f && cp -a $fbase $tmp/store-f'" \
    "$root/target/release/rbuild --root $tmp/store-f build -q --network=none -t rb-copy:rbuild $tmp/ctx-f" "${rows[@]}"
  rm -rf "$tmp/store-f" "$fbase" "$tmp/ctx-f"
  [ $have_docker = 1 ] && { $D rmi -f localhost/rb-copy:docker >/dev/null 2>&1; $D builder prune -af >/dev/null 2>&1 || true; }
  [ $have_podman = 1 ] && { podman rmi -f localhost/rb-copy:podman localhost/rb-copy:buildah >/dev/null 2>&1 || true; podman image prune -f >/dev/null 2>&1 || true; }
fi

if want d; then
echo "d: run --rm IMAGE true" >&2
rows=()
[ $have_podman = 1 ] && rows+=(-n "podman+runc, none" "podman --runtime runc run --rm --network=none $base true"
                               -n "podman+runc, bridge" "podman --runtime runc run --rm $base true")
[ $have_crun = 1 ] && rows+=(-n "podman+crun, none" "podman --runtime crun run --rm --network=none $base true")
[ $have_docker = 1 ] && rows+=(-n "docker, none" "$D run --rm --network=none $base true")
WARMUP=3 bench d-run "$runs" -n "rbuild, none" "$rb run --rm --network none $base true" \
  -n "rbuild, bridge" "$rb run --rm $base true" "${rows[@]}"
fi

if [ $quick = 0 ] && want e; then
  echo "e: pull of a 500 MiB, 5-layer image, then run" >&2
  mkdir "$tmp/ctx-e"
  cp "$tmp/gen-files" "$tmp/ctx-e/gen-files"
  { printf 'FROM %s\nCOPY gen-files /gen\n' $base
    for i in 1 2 3 4 5; do echo "RUN /gen /l$i 200 100 $i"; done
    echo "RUN rm /gen"; } > "$tmp/ctx-e/Dockerfile"
  big=127.0.0.1:5000/rb-bench-big:1
  $rb build -q --network=none -t $big "$tmp/ctx-e" >/dev/null
  $rb push -q $big >/dev/null
  pulls="$tmp/pull-store"
  rows=()
  [ $have_podman = 1 ] && rows+=(-n "podman" --prepare "sh -c 'podman rmi -f $big >/dev/null 2>&1; true'" "podman pull -q --tls-verify=false $big")
  [ $have_docker = 1 ] && rows+=(-n "docker" --prepare "sh -c '$D rmi -f $big >/dev/null 2>&1; true'" "$D pull -q $big")
  WARMUP=0 bench e-pull "$slow" -n rbuild --prepare "sh -c 'rm -rf $pulls'" "$root/target/release/rbuild --root $pulls pull -q $big" "${rows[@]}"
  rows=()
  [ $have_podman = 1 ] && rows+=(-n "podman" "podman --runtime runc run --rm --network=none $big true")
  [ $have_docker = 1 ] && rows+=(-n "docker" "$D run --rm --network=none $big true")
  WARMUP=2 bench e-run "$runs" -n rbuild "$root/target/release/rbuild --root $pulls run --rm --network none $big true" "${rows[@]}"
  rm -rf "$pulls"
  [ $have_podman = 1 ] && { podman rmi -f $big >/dev/null 2>&1 || true; }
  [ $have_docker = 1 ] && { $D rmi -f $big >/dev/null 2>&1 || true; }
fi

python3 "$root/bench/compare_report.py" "$json" "$results" $quick
