#!/bin/bash
# Runs OpenDKIM's miltertest script miltertest_capture.lua against the real daemon.
# Usage: miltertest_test.sh <ccmail-milter binary>
set -u
MILTER=$1
HERE=$(cd "$(dirname "$0")" && pwd)
command -v miltertest >/dev/null || { echo "miltertest not installed (apt-get install miltertest)"; exit 1; }
T=$(mktemp -d /tmp/ccmail-miltertest.XXXXXX)
MPID=
cleanup() { [ -n "$MPID" ] && kill "$MPID" 2>/dev/null && wait "$MPID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
printf 'jsmith@corp.example  Smith, John at HUBPO2\nkim@cc.example  Kim Lee at HUBPO\n' > "$T/map"
cat > "$T/ccmail.conf" <<CONF
milter_socket = unix:$T/milter.sock
milter_socket_group =
milter_user =
milter_pid_file = $T/milter.pid
spool_directory = $T/spool
address_map = $T/map
ccmail_domains = cc.example
reject_unknown = yes
message_size_limit = 2k
CONF
mkdir -p "$T/spool"
"$MILTER" --stderr -c "$T/ccmail.conf" 2> "$T/milter.log" &
MPID=$!
for i in $(seq 1 50); do [ -S "$T/milter.sock" ] && break; sleep 0.1; done
CCMAIL_SOCK="unix:$T/milter.sock" timeout 60 miltertest -s "$HERE/miltertest_capture.lua"
rc=$?
n=$(ls "$T/spool/milter-interim/new" | grep -vc '\.meta$')
[ -f "$T/milter.pid" ] || { echo "FAIL: no pid file"; rc=1; }
kill "$MPID"; wait "$MPID"; MPID=
cat "$T/milter.log"
[ "$n" = 2 ] || { echo "FAIL: $n captures, want 2"; rc=1; }
# (the queue id {i} is checked under real Postfix in postfix_mta_test.sh; miltertest 1.0's
# mt.macro values did not reach smfi_getsymval here, so it is not asserted in this test)
grep -q ': capture=' "$T/milter.log" || { echo "FAIL: no capture log line"; rc=1; }
[ -n "$(ls -A "$T/spool/milter-interim/tmp")" ] && { echo "FAIL: tmp files left"; rc=1; }
[ $rc = 0 ] && echo PASS
exit $rc
