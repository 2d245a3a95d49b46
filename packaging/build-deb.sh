#!/bin/bash
# build-deb.sh - build the ccmail-bridge .deb and check it with lintian.
#
# usage: bash packaging/build-deb.sh [outdir]        (default outdir: /tmp/ccmail-deb)
#
# Copies the source tree (without build dirs and .git) to a temporary directory,
# puts packaging/debian in place as debian/, copies the systemd units, sysusers.d
# and tmpfiles.d files under the names dh_installsystemd/dh_installsysusers/
# dh_installtmpfiles expect, runs dpkg-buildpackage -us -uc -b (tests are not
# built: the suite runs in CI) and lintian. Exit status: non-zero when the build
# fails or lintian reports an error.
# Needs: dpkg-dev, debhelper (>= 13), lintian, fakeroot and the Build-Depends of
# packaging/debian/control (scripts/install-deps.sh installs all of them).
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
outdir="${1:-/tmp/ccmail-deb}"
mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"
work="$(mktemp -d /tmp/ccmail-deb-build.XXXXXX)"
trap 'rm -rf "$work"' EXIT

for tool in dpkg-buildpackage dh lintian; do
  command -v "$tool" >/dev/null || { echo "build-deb.sh: $tool not found (apt-get install dpkg-dev debhelper lintian)" >&2; exit 2; }
done

pkgsrc="$work/ccmail-bridge"
mkdir -p "$pkgsrc"
# Source tree without VCS data, build directories or editor litter.
tar -C "$src" \
    --exclude=.git --exclude='./build*' --exclude='./cmake-build-*' --exclude='./out' \
    --exclude='./debian' --exclude='*.swp' --exclude='__pycache__' \
    -cf - . | tar -C "$pkgsrc" -xf -
cp -a "$src/packaging/debian" "$pkgsrc/debian"
cp "$src/packaging/systemd/ccmail-milter.service"   "$pkgsrc/debian/ccmail-bridge.ccmail-milter.service"
cp "$src/packaging/systemd/ccmail-milter.socket"    "$pkgsrc/debian/ccmail-bridge.ccmail-milter.socket"
cp "$src/packaging/systemd/ccmail-exporter.service" "$pkgsrc/debian/ccmail-bridge.ccmail-exporter.service"
cp "$src/packaging/systemd/ccmail-submitter.service" "$pkgsrc/debian/ccmail-bridge.ccmail-submitter.service"
cp "$src/packaging/systemd/ccmail-bridge.sysusers"  "$pkgsrc/debian/ccmail-bridge.sysusers"
cp "$src/packaging/systemd/ccmail-bridge.tmpfiles"  "$pkgsrc/debian/ccmail-bridge.tmpfiles"

(cd "$pkgsrc" && DEB_BUILD_OPTIONS="nocheck parallel=${CCMAIL_DEB_JOBS:-2}" dpkg-buildpackage -us -uc -b)

shopt -s nullglob
debs=("$work"/ccmail-bridge_*.deb)
[ ${#debs[@]} -gt 0 ] || { echo "build-deb.sh: no .deb produced" >&2; exit 1; }
cp "$work"/*.deb "$work"/*.changes "$work"/*.buildinfo "$outdir"/
changes=("$outdir"/ccmail-bridge_*.changes)

echo "== lintian"
lintian --fail-on error --info --display-info --suppress-tags-from-file /dev/null \
  "${changes[-1]}"
echo "build-deb.sh: built $(ls "$outdir"/ccmail-bridge_*.deb | grep -v dbgsym)"
