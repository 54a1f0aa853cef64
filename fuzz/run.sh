#!/usr/bin/env bash
# Seeds fuzz/corpus/parse_lower from the conformance Dockerfiles and testdata, then runs the
# parse_lower fuzz target for the given number of seconds (default 600).
#
#   fuzz/run.sh 600            # extra arguments go to libFuzzer, e.g. fuzz/run.sh 600 -jobs=4
#
# Works on the stable toolchain: `--sanitizer none` keeps cargo-fuzz from passing the
# nightly-only -Zsanitizer=address (see README.md).
set -euo pipefail

seconds="${1:-600}"
shift || true

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
corpus="$here/corpus/parse_lower"
conformance="${CONFORMANCE_DIR:-$root/../shared/conformance/buildkit-parser/testfiles}"
mkdir -p "$corpus" "$here/artifacts/parse_lower"

# Seeds: copied at run time, never committed (corpus/ is in fuzz/.gitignore).
n=0
for f in "$conformance"/*/Dockerfile "$root"/testdata/*/Dockerfile "$root"/testdata/Dockerfile; do
    [ -f "$f" ] || continue
    name="seed-$(basename "$(dirname "$f")")"
    cp "$f" "$corpus/$name"
    n=$((n + 1))
done
# A few hand-written seeds for the harness's steering comments and the stage/target paths.
cat >"$corpus/seed-onbuild" <<'DOCKERFILE'
#onbuild RUN echo triggered
#onbuild ENV FROM_TRIGGER=1
#onbuild WORKDIR sub
FROM base AS first
RUN echo "$FROM_TRIGGER"
FROM first
COPY --from=first /a /b
DOCKERFILE
cat >"$corpus/seed-target" <<'DOCKERFILE'
#target build
ARG BASE=alpine
FROM ${BASE}:3.20 AS build
ARG VERSION
ENV V=${VERSION:-none} W="a b" X=${V}
WORKDIR /src/$V
RUN make \
    all
FROM scratch
COPY --from=build --chown=1:1 /src /out
CMD ["/out/app"]
DOCKERFILE
echo "seeded $n Dockerfiles (+2 hand-written) into $corpus"

cd "$here"
cargo fuzz run parse_lower -O -a --sanitizer none \
    "$corpus" -- -max_total_time="$seconds" -max_len=65536 -timeout=10 -print_final_stats=1 "$@"
