#!/usr/bin/env bash
# install-deps.sh - install every package ccmail-bridge needs to build, test, run the demo
# and build its .deb, from Debian 12's own archive. Idempotent; safe to run again.
#
#   sudo bash scripts/install-deps.sh
#
# Postfix is installed with debconf's "No configuration" answer, so installing it does not
# start or reconfigure a system mailer: the tests and the demo run private Postfix
# instances of their own on 127.0.0.1. Sendmail cannot be installed beside Postfix (both are
# the MTA); the tests unpack its packages into a directory of their own instead
# (tests/mta/fetch-sendmail.sh).
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
  libgtest-dev libgmock-dev libbenchmark-dev zlib1g-dev
  # fuzzing (libFuzzer ships with clang's runtime)
  clang libclang-rt-14-dev
  # tests and demo: real MTA peers and tools
  python3 postfix miltertest m4 swaks sqlite3 procps util-linux e2fsprogs psmisc hyperfine time
  # packaging
  debhelper devscripts lintian fakeroot dpkg-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps.sh: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "install-deps.sh: installing ${missing[*]}"
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
