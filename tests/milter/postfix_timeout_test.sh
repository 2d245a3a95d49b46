#!/bin/bash
# Postfix's milter timeouts against the milter's slowest step, the spool fsync at end of
# message (a slow disk simulated with CCMAIL_DELAY_AT=spool.wal.synced:N:ms, the fdatasync of the
# spool log that makes a capture durable):
#   1. milter_content_timeout (1s) shorter than the fsync (4s): Postfix gives up and answers
#      4xx (milter_default_action = tempfail); never 2xx, the message goes nowhere. The client
#      retries; the capture made after the timeout is deduplicated by the exporter (e2e
#      q184524 round milter_timeout).
#   2. the next message, no delay: 250.
#   3. the recommended milter_content_timeout (300s, Postfix's default): the same slow fsync
#      only delays the 250.
#   4. milter_default_action = accept with the short timeout: Postfix accepts silently
#      without a capture - the setting ccmailctl check-mta reports as WRONG.
# Usage: postfix_timeout_test.sh <ccmail-milter binary> <milter-spool-tool binary>
set -u
MILTER=$1
TOOL=$2
. "${CCMAIL_SOURCE_DIR:-$(dirname "$0")/../..}/tests/mta/postfix.sh"
command -v postfix >/dev/null || { echo "postfix not installed"; exit 1; }
mta_test_init milter-timeout

mkdir -p "$T/spool"; chown nobody "$T/spool"
echo "kim@cc.example  Kim Lee at HUBPO" > "$T/map"
milter_conf "$T/ccmail.conf" "milter_socket_group = postfix" "milter_socket_mode = 0660" "milter_user = nobody"
# Passes 1 and 3 of the spool log's fdatasync take 4 s.
CCMAIL_DELAY_AT="spool.wal.synced:1:4000,spool.wal.synced:3:4000" \
  "$MILTER" --stderr -c "$T/ccmail.conf" 2> "$T/milter.log" &
MPID=$!
wait_until 60 "$MPID" ccmail-milter test -S "$T/milter.sock" || { cat "$T/milter.log"; exit 1; }
pf_start "$T/pf" "smtpd_milters = unix:$T/milter.sock" "non_smtpd_milters = unix:$T/milter.sock" \
  "milter_protocol = 6" "milter_default_action = tempfail" "milter_content_timeout = 1s" || exit 1
msg() { printf 'From: alice@example.org\r\nTo: kim@cc.example\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\nbody\r\n' "$1" "$1"; }
captures() { "$TOOL" list "$T/ccmail.conf" | wc -l; }

# 1. slow fsync, short content timeout -> 4xx, not delivered.
msg slow1 | smtp_send $PF_PORT alice@example.org kim@cc.example > "$T/r1"
grep -qE '^DATA 4[0-9][0-9] ' "$T/r1" && pass "slow fsync beyond milter_content_timeout: $(grep ^DATA "$T/r1")" \
  || { cat "$T/r1"; fail "no 4xx when the milter is slower than milter_content_timeout"; }
grep -q 'milter unix:.*timed out\|milter unix:.*[Tt]imeout' "$T/pf/maillog" && pass "Postfix logged the milter timeout" \
  || fail "no milter timeout in the maillog"
sleep 4
grep -q 'to=<kim@cc.example>.*status=' "$T/pf/maillog" && fail "the timed-out message was delivered" || pass "timed-out message went nowhere"

# 2. no delay -> 250.
msg fast2 | smtp_send $PF_PORT alice@example.org kim@cc.example > "$T/r2" && pass "next message 250" \
  || { cat "$T/r2"; fail "next message not accepted"; }

# 3. the recommended timeout: the same slow fsync only delays the 250.
postconf -c "$T/pf/etc" -e "milter_content_timeout = 300s" && postfix -c "$T/pf/etc" reload >/dev/null 2>&1
sleep 1
start=$SECONDS
msg slow3 | smtp_send $PF_PORT alice@example.org kim@cc.example > "$T/r3" \
  && pass "slow fsync within milter_content_timeout = 300s: 250 after $((SECONDS - start))s" \
  || { cat "$T/r3"; fail "slow fsync with the recommended timeout not accepted"; }
"$TOOL" list "$T/ccmail.conf" | grep -q ' key_ok=1 ' && pass "captures verify" || fail "captures"

# 4. milter_default_action = accept: the timeout becomes a silent accept without capture.
postconf -c "$T/pf/etc" -e "milter_content_timeout = 1s" "milter_default_action = accept" &&
  postfix -c "$T/pf/etc" reload >/dev/null 2>&1
kill "$MPID"; wait "$MPID" 2>/dev/null; MPID=
CCMAIL_DELAY_AT="spool.wal.synced:1:4000" "$MILTER" --stderr -c "$T/ccmail.conf" 2>> "$T/milter.log" &
MPID=$!
wait_until 60 "$MPID" ccmail-milter test -S "$T/milter.sock" || exit 1
sleep 1
msg slow4 | smtp_send $PF_PORT alice@example.org kim@cc.example > "$T/r4"
grep -qE '^DATA 2[0-9][0-9] ' "$T/r4" && pass "with milter_default_action = accept the timeout is a silent 250 (why check-mta requires tempfail)" \
  || { cat "$T/r4"; fail "expected the silent accept of milter_default_action = accept"; }

echo "--- milter log"; cat "$T/milter.log"
[ $FAILS = 0 ] && echo PASS || { echo "--- maillog"; cat "$T/pf/maillog"; echo "$FAILS failure(s)"; exit 1; }
