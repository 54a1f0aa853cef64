#!/usr/bin/env bash
# Times `rbuild push` and `rbuild pull` of a 500 MiB, 5-layer image over loopback against
# `skopeo copy` of the same image, with hyperfine, and prints the medians and the ratios.
#
# The image: 5 layers of 100 MiB of /dev/urandom each (incompressible), gzip-compressed as
# rbuild builds by default (COMPRESSION=uncompressed|zstd to change), no base layer (FROM
# scratch, one COPY per layer). The registry: Debian's docker-registry on 127.0.0.1 with its
# storage in a temp dir, killed by PID at the end. Nothing leaves 127.0.0.1.
#
# - push: to a fresh repository each run, every blob uploaded. Cross-repository mounts are
#   ruled out on both sides: rbuild's mount hints (`blob-sources/`) are removed before each
#   run, and skopeo runs in a private mount namespace with an empty tmpfs over its blob-info
#   cache (/var/lib/containers/cache), so neither knows another repository holds the blobs.
#   skopeo reads the image from an OCI layout made once from `rbuild save --format oci`.
# - pull: into a fresh store (rbuild) / a fresh OCI layout directory (skopeo) each run.
#
# Needs root (builds with RUN, and mounts the tmpfs). Installs hyperfine, skopeo,
# docker-registry and busybox-static if missing.
# Usage: bench/registry.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
compression=${COMPRESSION:-gzip}
need=()
command -v hyperfine >/dev/null || need+=(hyperfine)
command -v skopeo >/dev/null || need+=(skopeo)
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Loopback only: no proxy may see this traffic.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
cargo build --release -q --bin rbuild --bin busybox-rootfs
tmp=$(mktemp -d /var/tmp/rbuild-bench-registry.XXXXXX)
reg_pid=
cleanup() {
  if [ -n "$reg_pid" ]; then
    kill "$reg_pid" 2>/dev/null || true
    wait "$reg_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
rbuild=$PWD/target/release/rbuild
rb="$rbuild --root $tmp/store"

# The registry, as test-support/src/registry.rs starts it.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
host=127.0.0.1:$port
cat >"$tmp/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $tmp/registry
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $host
  secret: rbuild-bench-registry
EOF
(
  for v in $(compgen -e | grep '^REGISTRY_' || true); do unset "$v"; done
  exec /usr/bin/docker-registry serve "$tmp/registry.yml" >"$tmp/registry.log" 2>&1
) &
reg_pid=$!
for _ in $(seq 100); do
  python3 -c "import urllib.request as u; u.urlopen('http://$host/v2/', timeout=1)" 2>/dev/null && break
  kill -0 "$reg_pid" 2>/dev/null || { cat "$tmp/registry.log"; exit 1; }
  sleep 0.1
done

# The image: 5 x 100 MiB of random bytes, one layer each.
target/release/busybox-rootfs "$tmp/busybox.tar"
$rb import "$tmp/busybox.tar" busybox:latest >/dev/null
mkdir -p "$tmp/ctx"
{
  echo "FROM busybox AS gen"
  echo "RUN for i in 1 2 3 4 5; do head -c 104857600 /dev/urandom > /d\$i; done"
  echo "FROM scratch"
  for i in 1 2 3 4 5; do echo "COPY --from=gen /d$i /d$i"; done
} >"$tmp/ctx/Dockerfile"
$rb build -q --compression "$compression" -t bench:500 "$tmp/ctx" >/dev/null
$rb save --format oci -o "$tmp/image.tar" bench:500
skopeo copy -q "oci-archive:$tmp/image.tar" "oci:$tmp/layout:bench"
mib=$(python3 - "$tmp/layout" <<'PY'
import json, os, sys
layout = sys.argv[1]
blob = lambda d: os.path.join(layout, "blobs", *d.split(":"))
index = json.load(open(os.path.join(layout, "index.json")))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
print(f"{sum(l['size'] for l in manifest['layers']) / 2**20:.1f} MiB in {len(manifest['layers'])} layers")
PY
)
echo "image: $mib ($compression), registry $host"
# The source of both pulls.
$rb push -q bench:500 "$host/bench/src:1" >/dev/null

# skopeo with an empty blob-info cache of its own (no mounts from earlier runs' repositories).
skopeo_fresh="unshare -m sh -c 'mkdir -p /var/lib/containers/cache && mount -t tmpfs none /var/lib/containers/cache && exec \"\$0\" \"\$@\"' skopeo"
repo='$(cat /proc/sys/kernel/random/uuid)'
hyperfine --style basic --warmup 1 --runs "$runs" --export-json "$tmp/out.json" \
  -n "rbuild push" --prepare "rm -rf $tmp/store/blob-sources" \
  "$rb push -q bench:500 $host/rb-$repo:1" \
  -n "skopeo push" --prepare "true" \
  "$skopeo_fresh copy -q --dest-tls-verify=false oci:$tmp/layout:bench docker://$host/sk-$repo:1" \
  -n "rbuild pull" --prepare "rm -rf $tmp/pull-store" \
  "$rbuild --root $tmp/pull-store pull -q $host/bench/src:1" \
  -n "skopeo pull" --prepare "rm -rf $tmp/pull-oci" \
  "$skopeo_fresh copy -q --src-tls-verify=false docker://$host/bench/src:1 oci:$tmp/pull-oci:x" >/dev/null
python3 - "$tmp/out.json" <<'PY'
import json, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
for name, r in res.items():
    print(f"{name:<12} median {r['median']:6.2f} s  (min {r['min']:.2f}, max {r['max']:.2f}, {len(r['times'])} runs)")
for op in ("push", "pull"):
    ours, theirs = res[f"rbuild {op}"]["median"], res[f"skopeo {op}"]["median"]
    print(f"{op}: rbuild/skopeo = {ours / theirs:.2f}  (skopeo/rbuild = {theirs / ours:.2f})")
PY
