#!/usr/bin/env bash
# Debian's static busybox for other architectures, for the multi-platform tests: arm64, arm/v7
# (armhf) and 386 (i386), unpacked from their .debs into DIR/<GOARCH>/busybox. Adds those
# architectures to dpkg (so apt can download their packages; nothing of them is installed).
# Usage: scripts/foreign-busybox.sh [DIR]   (default: target/foreign-busybox)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-target/foreign-busybox}
declare -A goarch=([arm64]=arm64 [armhf]=arm [i386]=386)
missing=()
for deb in "${!goarch[@]}"; do
  [ -x "$dir/${goarch[$deb]}/busybox" ] || missing+=("$deb")
done
[ ${#missing[@]} -eq 0 ] && exit 0
added=0
for deb in "${missing[@]}"; do
  if ! dpkg --print-foreign-architectures | grep -qx "$deb"; then
    dpkg --add-architecture "$deb"
    added=1
  fi
done
if [ "$added" = 1 ] || ! apt-cache show "busybox-static:${missing[0]}" >/dev/null 2>&1; then
  apt-get update -qq
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for deb in "${missing[@]}"; do
  (cd "$work" && apt-get download -qq "busybox-static:$deb" 2>/dev/null)
  mkdir -p "$work/$deb" "$dir/${goarch[$deb]}"
  dpkg-deb -x "$work"/busybox-static_*_"$deb".deb "$work/$deb"
  install -m 0755 "$work/$deb/bin/busybox" "$dir/${goarch[$deb]}/busybox"
done
