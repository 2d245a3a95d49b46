#!/bin/bash
# tests/mta/fetch-sendmail.sh - unpack Debian's Sendmail beside Postfix (they conflict as
# installed packages) into a cache directory, for tests that need a real Sendmail.
# Usage: fetch-sendmail.sh [--no-download] [CACHE_DIR]
#   CACHE_DIR defaults to $CCMAIL_SENDMAIL_CACHE or /var/cache/ccmail-bridge-tests/sendmail.
#   scripts/install-deps.sh runs it at install time (the package archive is reachable then);
#   the tests run it with --no-download: they use that cache and never download while they
#   run (offline CI). Without the cache they fail to start Sendmail and skip (77), which
#   scripts/test.sh reports loudly and counts as not passed (a failure when CI=true).
# Prints the root of the unpacked tree. Run the daemon with
#   LD_LIBRARY_PATH=$ROOT/usr/lib/x86_64-linux-gnu $ROOT/usr/libexec/sendmail/sendmail -C test.cf -bd \
#     -OQueueDirectory=DIR -OPidFile=DIR/pid -OStatusFile=DIR/st -OHostStatusDirectory=
# and build test.cf with: m4 -D_CF_DIR_=$ROOT/usr/share/sendmail/cf/ test.mc > test.cf
# (OSTYPE(`linux'), not `debian': the debian ostype includes files of the installed package).
# tests/mta/sendmail.sh does all of that (sm_start/sm_stop); tests/milter/sendmail_mta_test.sh
# uses it. The earlier "451 4.3.2 Please try again later" came from Sendmail's safefile()
# check of the milter socket: a socket under /tmp (world-writable) is refused as "unsafe:
# World writable directory", the filter is marked unusable and F=T tempfails every message.
# The harness sets DontBlameSendmail=TrustStickyBit (/tmp is sticky); a production socket
# under /run/ccmail-bridge or Postfix's spool needs no such option.
set -eu
download=1
if [ "${1:-}" = --no-download ]; then download=0; shift; fi
CACHE=${1:-${CCMAIL_SENDMAIL_CACHE:-/var/cache/ccmail-bridge-tests/sendmail}}
ROOT=$CACHE/root
if [ ! -x "$ROOT/usr/libexec/sendmail/sendmail" ]; then
  if [ $download = 0 ]; then
    echo "Sendmail is not unpacked in $CACHE: run scripts/install-deps.sh (it fetches it while the package archive is reachable)" >&2
    exit 1
  fi
  mkdir -p "$CACHE"
  (cd "$CACHE" && apt-get download sendmail-bin sendmail-cf sendmail-base libwrap0 >/dev/null 2>&1) || {
    echo "apt-get download of sendmail-bin sendmail-cf sendmail-base libwrap0 failed" >&2; exit 1; }
  for f in "$CACHE"/*.deb; do dpkg -x "$f" "$ROOT"; done
  # setgid would make the loader ignore LD_LIBRARY_PATH (libwrap0 lives in the cache)
  chmod ug-s "$ROOT/usr/libexec/sendmail/sendmail"
fi
command -v m4 >/dev/null || { echo "m4 missing (apt-get install m4)" >&2; exit 1; }
echo "$ROOT"
