# Sourced by bench/build.sh, bench/build-network.sh and bench/run.sh (from the repository's
# root): installs hyperfine and busybox-static if missing, builds the release binaries, and
# makes a temporary store holding busybox:latest. `$rb` runs rbuild on that store, `$tmp` is
# the scratch directory. On exit, `bench_cleanup_extra` (if the script defines one) runs, the
# store's bridges are taken down (they live as long as the store, as docker0) and `$tmp` goes.
need=()
command -v hyperfine >/dev/null || need+=(hyperfine)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release -q --bin rbuild --bin busybox-rootfs
tmp=$(mktemp -d)
rb="$PWD/target/release/rbuild --root $tmp/store"
bench_cleanup() {
  if declare -F bench_cleanup_extra >/dev/null; then bench_cleanup_extra; fi
  $rb network prune -f >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap bench_cleanup EXIT
target/release/busybox-rootfs "$tmp/busybox.tar"
$rb import "$tmp/busybox.tar" busybox:latest >/dev/null
