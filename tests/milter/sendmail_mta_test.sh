#!/bin/bash
# ccmail-milter under a real Sendmail 8.17 (Debian's binaries, unpacked beside Postfix by
# tests/mta/fetch-sendmail.sh) on loopback with INPUT_MAIL_FILTER(F=T): capture with the
# queue id, divert (recipient gone from the queue file), copy (recipient kept), a 4xx
# (452 4.3.1 at end of data, nothing queued), 550 at RCPT, and 451 4.3.2 when the milter
# is gone (F=T: never accept without it). Sendmail queues only (DeliveryMode=queue), so
# the recipients it kept are read from its qf file.
# Usage: sendmail_mta_test.sh <ccmail-milter binary> <milter-spool-tool binary>
# Exit 77 (skip) only when Sendmail cannot be fetched or started.
set -u
MILTER=$1
TOOL=$2
SRC=${CCMAIL_SOURCE_DIR:-$(dirname "$0")/../..}
. "$SRC/tests/mta/postfix.sh"   # mta_test_init, mta_free_port, smtp_send, milter_conf
. "$SRC/tests/mta/sendmail.sh"

mta_test_init milter-sm
trap 'sm_stop "$T/sm"; mta_test_cleanup' EXIT  # Sendmail, not Postfix: stop it first

mkdir -p "$T/spool" "$T/sm"; chown nobody "$T/spool"
printf 'jsmith@corp.example  Smith, John at HUBPO2\nkim@cc.example       Kim Lee at HUBPO\n' > "$T/map"
write_conf() {
  milter_conf "$T/ccmail.conf" "milter_socket_group =" "milter_socket_mode = 0600" "milter_user = nobody" \
    "reject_unknown = yes" "$@"
}
reload() { write_conf "$@"; kill -HUP "$MPID"; sleep 0.5; }
list() { "$TOOL" list "$T/ccmail.conf"; }
captures() { list | wc -l; }
msg() { printf 'From: alice@example.org\r\nTo: %s\r\nSubject: test %s\r\n\r\nbody %s\r\n' "$1" "$2" "$2"; }
qid_of() { sed -n 's/^DATA 250 2.0.0 \([^ ]*\) .*/\1/p' "$1"; }

write_conf
"$MILTER" --stderr -c "$T/ccmail.conf" 2> "$T/milter.log" &
MPID=$!
wait_until 60 "$MPID" ccmail-milter test -S "$T/milter.sock" || { cat "$T/milter.log"; echo "milter did not start"; exit 1; }
sm_start "$T/sm" "unix:$T/milter.sock"; rc=$?
if [ $rc = 77 ]; then echo "SKIP: Sendmail cannot be fetched or started here"; exit 77; fi
[ $rc = 0 ] || exit 1

# 1. divert, mixed recipients: jsmith captured (with Sendmail's queue id) and removed, bob kept.
msg "jsmith@corp.example, bob@example.org" s1 | smtp_send $SM_PORT alice@example.org jsmith@corp.example bob@example.org > "$T/r1" \
  && pass "divert mixed accepted" || { cat "$T/r1"; fail "divert mixed not accepted"; }
q1=$(qid_of "$T/r1")
[ "$(sm_queue_rcpts "$T/sm" "$q1")" = "bob@example.org" ] && pass "jsmith removed from Sendmail's queue file, bob kept" \
  || { cat "$T/sm/queue/qf$q1"; fail "queue file recipients wrong"; }
list > "$T/l1" || fail "a spool file does not verify"
grep -q " qid=$q1 from=alice@example.org .* key_ok=1 rcpt=jsmith@corp.example|Smith, John|HUBPO2$" "$T/l1" \
  && pass "capture durable in spool/new with queue id $q1" || { cat "$T/l1"; fail "no capture for jsmith"; }
"$TOOL" show "$T/ccmail.conf" "$(cut -d' ' -f1 "$T/l1")" | grep -q '^Subject: test s1' && pass "captured content" || fail "content"
grep -q "$q1: capture=.*ccmail=<jsmith@corp.example>" "$T/milter.log" && pass "log line with queue id" || fail "log line"

# 2. only cc:Mail recipients: 250, and Sendmail keeps nothing (no queue file).
msg kim@cc.example s2 | smtp_send $SM_PORT alice@example.org kim@cc.example > "$T/r2" && pass "cc:Mail-only accepted" || { cat "$T/r2"; fail "cc:Mail-only"; }
q2=$(qid_of "$T/r2")
[ -n "$q2" ] && [ ! -e "$T/sm/queue/qf$q2" ] && pass "nothing left for Sendmail to deliver" || fail "qf$q2 still queued"
[ "$(captures)" = 2 ] && pass "second capture" || fail "captures=$(captures), want 2"

# 3. copy mode after SIGHUP: captured and left in Sendmail's queue.
reload "capture_mode = copy"
msg jsmith@corp.example s3 | smtp_send $SM_PORT alice@example.org jsmith@corp.example > "$T/r3" || fail "copy not accepted"
q3=$(qid_of "$T/r3")
[ "$(sm_queue_rcpts "$T/sm" "$q3")" = "jsmith@corp.example" ] && pass "copy: recipient kept" || fail "copy: recipient not kept"
[ "$(captures)" = 3 ] && pass "copy captured" || fail "captures=$(captures), want 3"

# 4. reject_unknown: 550 5.1.1 at RCPT.
msg nobody@cc.example s4 | smtp_send $SM_PORT alice@example.org nobody@cc.example > "$T/r4"
grep -q 'RCPT nobody@cc.example 550 5.1.1' "$T/r4" && pass "550 5.1.1" || { cat "$T/r4"; fail "no 550 5.1.1"; }

# 5. 4xx at end of data (spool disk low): 452 4.3.1, nothing captured, nothing queued.
reload "spool_min_free = 1000t"
before=$(ls "$T/sm/queue" | grep -c '^qf')
msg jsmith@corp.example s5 | smtp_send $SM_PORT alice@example.org jsmith@corp.example > "$T/r5"
grep -q 'DATA 452 4.3.1' "$T/r5" && pass "452 4.3.1" || { cat "$T/r5"; fail "no 452 4.3.1"; }
[ "$(captures)" = 3 ] && pass "nothing captured on 452" || fail "captured despite 452"
[ "$(ls "$T/sm/queue" | grep -c '^qf')" = "$before" ] && pass "nothing queued on 452" || fail "queued despite 452"

# 6. milter gone: F=T makes Sendmail answer 4xx, never accept.
kill "$MPID"; wait "$MPID"; rc=$?; MPID=
[ $rc = 0 ] && pass "SIGTERM clean exit" || fail "milter exit $rc"
msg jsmith@corp.example s6 | smtp_send $SM_PORT alice@example.org jsmith@corp.example > "$T/r6"
grep -qE '(MAIL|RCPT|DATA) 4[0-9][0-9] ' "$T/r6" && pass "4xx without milter" || { cat "$T/r6"; fail "no 4xx without milter"; }

echo "--- milter log"; cat "$T/milter.log"
[ $FAILS = 0 ] && echo "PASS" || { echo "$FAILS failure(s)"; exit 1; }
