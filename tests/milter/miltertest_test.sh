#!/bin/bash
# Runs OpenDKIM's miltertest script miltertest_capture.lua against the real daemon.
# Usage: miltertest_test.sh <ccmail-milter binary> <milter-spool-tool binary>
set -u
MILTER=$1
TOOL=$2
HERE=$(cd "$(dirname "$0")" && pwd)
. "${CCMAIL_SOURCE_DIR:-$HERE/../..}/tests/mta/postfix.sh"  # milter_conf
command -v miltertest >/dev/null || { echo "miltertest not installed (apt-get install miltertest)"; exit 1; }
T=$(mktemp -d /tmp/ccmail-miltertest.XXXXXX)
MPID=
TABLE=ccmail-mt-$$
cleanup() { [ -n "$MPID" ] && kill "$MPID" 2>/dev/null && wait "$MPID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
printf 'jsmith@corp.example  Smith, John at HUBPO2\nkim@cc.example  Kim Lee at HUBPO\n' > "$T/map"
milter_conf "$T/ccmail.conf" "milter_socket_group =" "milter_user =" "reject_unknown = yes" "message_size_limit = 2k"
mkdir -p "$T/spool"
"$MILTER" --stderr -c "$T/ccmail.conf" 2> "$T/milter.log" &
MPID=$!
for i in $(seq 1 600); do [ -S "$T/milter.sock" ] && break; kill -0 "$MPID" 2>/dev/null || break; sleep 0.1; done
CCMAIL_SOCK="unix:$T/milter.sock" timeout 60 miltertest -s "$HERE/miltertest_capture.lua" 2>&1
rc=$?
[ -f "$T/milter.pid" ] || { echo "FAIL: no pid file"; rc=1; }
[ -d "$T/run" ] || { echo "FAIL: runtime directory not created"; rc=1; }
"$TOOL" list "$T/ccmail.conf" > "$T/list" || { echo "FAIL: a spool file does not verify"; rc=1; }
cat "$T/list"
n=$(wc -l < "$T/list")
ready=$("$TOOL" ready "$T/ccmail.conf")
kill "$MPID"; wait "$MPID"; MPID=
cat "$T/milter.log"
[ "$n" = 2 ] || { echo "FAIL: $n captures, want 2"; rc=1; }
[ "$(grep -c ' key_ok=1 ' "$T/list")" = 2 ] || { echo "FAIL: content key does not match the stored message"; rc=1; }
grep -q 'from=alice@example.org .*rcpt=jsmith@corp.example|Smith, John|HUBPO2$' "$T/list" || { echo "FAIL: jsmith meta"; rc=1; }
grep -q 'rcpt=kim@cc.example|Kim Lee|HUBPO$' "$T/list" || { echo "FAIL: kim meta"; rc=1; }
[ "$ready" = 2 ] || { echo "FAIL: $ready READY slots, want 2"; rc=1; }
id=$(grep jsmith "$T/list" | cut -d' ' -f1)
"$TOOL" show "$T/ccmail.conf" "$id" | grep -q '^Subject: miltertest one' || { echo "FAIL: captured message content"; rc=1; }
# (the queue id {i} is checked under real Postfix in postfix_mta_test.sh; miltertest 1.0's
# mt.macro values did not reach smfi_getsymval here, so it is not asserted in this test)
grep -q ': capture=' "$T/milter.log" || { echo "FAIL: no capture log line"; rc=1; }
[ -n "$(ls -A "$T/spool/spool/tmp")" ] && { echo "FAIL: tmp files left"; rc=1; }
[ $rc = 0 ] && echo PASS
exit $rc
