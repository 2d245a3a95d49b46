#!/usr/bin/env bash
# install-deps.sh - install every package ccmail-bridge needs to build, test, run the demo
# and build its .deb, from Debian 12's own archive. Idempotent; safe to run again.
#
#   sudo bash scripts/install-deps.sh
#
# Postfix is installed with debconf's "No configuration" answer, so installing it does not
# start or reconfigure a system mailer: the tests and the demo run private Postfix
# instances of their own on 127.0.0.1. Sendmail cannot be installed beside Postfix (both are
# the MTA); its packages are unpacked into /var/cache/ccmail-bridge-tests/sendmail instead
# (tests/mta/fetch-sendmail.sh), here, so the tests need no network.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (it calls apt-get)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
packages=(
  # build
  build-essential g++ cmake ninja-build pkg-config git ca-certificates
  libmilter-dev libboost-dev libgmime-3.0-dev libsqlite3-dev libsystemd-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev zlib1g-dev libpq-dev
  # fuzzing (libFuzzer ships with clang's runtime)
  clang libclang-rt-14-dev
  # tests and demo: real MTA peers and tools
  python3 postfix miltertest m4 swaks sqlite3 procps util-linux e2fsprogs psmisc hyperfine time
  # the shared ledger's tests: private clusters (tests/testing/pg_cluster.sh), no system service
  postgresql-15
  # house checks (tests/house, tests/docs)
  universal-ctags
  # packaging
  debhelper devscripts lintian fakeroot dpkg-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps.sh: all ${#packages[@]} packages already installed"
else
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  # postgresql-15 would create and start a "main" cluster as a system service; the tests start
  # private clusters of their own (tests/testing/pg_cluster.sh) and must not find one running.
  mkdir -p /etc/postgresql-common
  if ! grep -qs '^create_main_cluster *= *false' /etc/postgresql-common/createcluster.conf; then
    echo "create_main_cluster = false" >>/etc/postgresql-common/createcluster.conf
  fi
  echo "install-deps.sh: installing ${missing[*]}"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Sendmail for the Sendmail tests, unpacked into a cache now, while the package archive is
# reachable: the tests never download (tests/mta/fetch-sendmail.sh --no-download).
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! root=$(bash "$src/tests/mta/fetch-sendmail.sh" 2>&1); then
  apt-get update -q && root=$(bash "$src/tests/mta/fetch-sendmail.sh") || {
    echo "install-deps.sh: cannot fetch Sendmail for the tests: $root" >&2; exit 1; }
fi
echo "install-deps.sh: Sendmail for the tests unpacked in $root"
