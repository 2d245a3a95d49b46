#!/bin/bash
# deb_build_test.sh OUTDIR - builds the .deb with packaging/build-deb.sh (dpkg-buildpackage +
# lintian, both must pass) into OUTDIR for deb_install_test.sh. A test of its own so that the
# long compile runs beside the other tests instead of holding the Postfix lock.
# Exit 77 (ctest SKIP) when the Debian packaging tools are missing.
set -uo pipefail
out="${1:?usage: deb_build_test.sh OUTDIR}"
command -v dpkg-buildpackage >/dev/null || { echo "SKIPPED: dpkg-buildpackage not installed"; exit 77; }
command -v dh >/dev/null || { echo "SKIPPED: debhelper not installed"; exit 77; }
src="${CCMAIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
rm -rf "$out"
exec bash "$src/packaging/build-deb.sh" "$out"
