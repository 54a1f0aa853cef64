#!/usr/bin/env bash
# BuildKit's result on Dockerfiles nobody here wrote: runs ../shared/differential/differential.py
# over buildah's tests/bud corpus (301 Dockerfiles) with BuildKit (the private dockerd of
# ../shared/bench/peers-setup.sh) as the oracle and this checkout's release rbuild as the
# subject, and prints the two scores (cases BuildKit builds that rbuild matches, cases BuildKit
# refuses that rbuild refuses) and the difference categories. Nothing leaves the machine: the
# harness skips cases that would need a registry or the network (see its README).
#
# The corpus is not in this repository and this machine cannot reach GitHub: export it from a
# snapshot of containers/buildah (the harness's README says how) into CORPUS, by default
# /tmp/research/buildah-bud/tests/bud. Needs root; takes about 7 minutes on 2 cores. Each
# case's outcome and differences stay in WORKDIR/results-rbuild.json (/tmp/diff, or /tmp/diff-today).
# Usage: bench/differential.sh [CORPUS] [extra differential.py flags, e.g. --only copy-]
#
# ORACLE=today uses today's BuildKit instead (buildkitd through buildctl, bench/buildkit-oracle.sh
# starts it; bench/differential_today.py adapts the harness): the oracle the project follows.
# ORACLE=docker (the default) is the harness's own, dockerd 20.10's BuildKit 0.8.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-/tmp/research/buildah-bud/tests/bud}
shift || true
oracle=${ORACLE:-docker}
harness=../shared/differential/differential.py
[ -f "$harness" ] || { echo "differential.sh: $harness is missing (../shared)" >&2; exit 1; }
[ -d "$corpus" ] || { echo "differential.sh: no corpus at $corpus (see ../shared/differential/README.md)" >&2; exit 1; }
case $oracle in
  docker)
    # dockerd (BuildKit), podman's base images and the debootstrap base: idempotent.
    if ! [ -S /tmp/peers/docker.sock ]; then bash ../shared/bench/peers-setup.sh >/dev/null; fi
    run=(python3 "$harness")
    workdir=/tmp/diff ;;
  today)
    # The base images come from containers-storage (peers-setup.sh puts them there).
    if ! skopeo inspect containers-storage:localhost/busybox:test >/dev/null 2>&1; then
      bash ../shared/bench/peers-setup.sh >/dev/null
    fi
    bench/buildkit-oracle.sh start
    run=(python3 bench/differential_today.py)
    workdir=/tmp/diff-today ;;
  *) echo "differential.sh: ORACLE is docker or today" >&2; exit 2 ;;
esac
cargo build --release -q --bin rbuild
root=$(mktemp -d)
trap 'target/release/rbuild --root "$root" network prune -f >/dev/null 2>&1 || true; rm -rf "$root"' EXIT
"${run[@]}" --corpus "$corpus" --workdir "$workdir" --subject rbuild --rbuild target/release/rbuild \
  --rbuild-root "$root" "$@" | tail -n 40
