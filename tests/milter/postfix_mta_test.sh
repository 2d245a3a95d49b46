#!/bin/bash
# ccmail-milter under a real Postfix (private instance on loopback): smtpd_milters and
# non_smtpd_milters; capture, divert, copy, SIGHUP reload, and every 4xx/5xx path.
# Usage: postfix_mta_test.sh <ccmail-milter binary>
set -u
MILTER=$1
. "${CCMAIL_SOURCE_DIR:-$(dirname "$0")/../..}/tests/mta/postfix.sh"
command -v postfix >/dev/null || { echo "postfix not installed"; exit 1; }

T=$(mktemp -d /tmp/ccmail-milter-pf.XXXXXX)
chmod 755 "$T"
MPID=
cleanup() {
  pf_stop "$T/pf"
  [ -n "$MPID" ] && kill "$MPID" 2>/dev/null && wait "$MPID" 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }

mkdir -p "$T/spool"; chown nobody "$T/spool"
cat > "$T/map" <<MAP
jsmith@corp.example  Smith, John at HUBPO2
kim@cc.example       Kim Lee at HUBPO
MAP
write_conf() {
  cat > "$T/ccmail.conf" <<CONF
milter_socket = unix:$T/milter.sock
milter_socket_group = postfix
milter_socket_mode = 0660
milter_user = nobody
milter_pid_file = $T/milter.pid
spool_directory = $T/spool
address_map = $T/map
ccmail_domains = cc.example
log_level = info
CONF
  local l; for l in "$@"; do echo "$l" >> "$T/ccmail.conf"; done
}
reload() { write_conf "$@"; kill -HUP "$MPID"; sleep 0.5; }
captures() { ls "$T/spool/milter-interim/new" 2>/dev/null | grep -c '\.meta$'; }
msg() { printf 'From: alice@example.org\r\nTo: %s\r\nSubject: test %s\r\nMessage-ID: <%s@example.org>\r\n\r\nbody %s\r\n' "$1" "$2" "$2" "$3"; }

write_conf
"$MILTER" --stderr -c "$T/ccmail.conf" 2> "$T/milter.log" &
MPID=$!
for i in $(seq 1 50); do [ -S "$T/milter.sock" ] && break; sleep 0.1; done
[ -S "$T/milter.sock" ] || { cat "$T/milter.log"; echo "milter did not start"; exit 1; }
pf_start "$T/pf" "smtpd_milters = unix:$T/milter.sock" "non_smtpd_milters = unix:$T/milter.sock" \
  "milter_protocol = 6" || exit 1

# 1. divert, mixed recipients: cc:Mail one captured and removed, the other delivered.
msg "jsmith@corp.example, bob@example.org" m1 x | smtp_send $PF_PORT alice@example.org jsmith@corp.example bob@example.org > "$T/r1" \
  && pass "divert mixed accepted" || { cat "$T/r1"; fail "divert mixed not accepted"; }
pf_wait_log "$T/pf" 'to=<bob@example.org>.*status=sent' 20 || fail "bob not delivered"
sleep 0.5
grep -q 'to=<jsmith@corp.example>' "$T/pf/maillog" && fail "jsmith delivered by the MTA despite divert" || pass "jsmith diverted"
[ "$(captures)" = 1 ] && grep -q 'recipient jsmith@corp.example	Smith, John	HUBPO2' "$T"/spool/milter-interim/new/*.meta \
  && pass "capture written" || fail "no capture for jsmith"
f1=$(ls "$T"/spool/milter-interim/new/ | grep -v meta | head -1)
grep -q '^Subject: test m1' "$T/spool/milter-interim/new/$f1" && grep -q '^body x' "$T/spool/milter-interim/new/$f1" \
  && pass "captured headers and body" || fail "capture content wrong"
grep -q 'capture=.*ccmail=<jsmith@corp.example> (Smith, John at HUBPO2)' "$T/milter.log" && pass "log line" || fail "no log line"
grep -qE 'info: [0-9A-F]{6,}: capture=' "$T/milter.log" && pass "queue id logged" || fail "queue id missing in log"

# 2. divert, only cc:Mail recipients: accepted, delivered nowhere (Postfix drops a message left without recipients).
msg kim@cc.example m2 x | smtp_send $PF_PORT alice@example.org kim@cc.example > "$T/r2" && pass "cc:Mail-only accepted" || { cat "$T/r2"; fail "cc:Mail-only not accepted"; }
sleep 1.5
grep -q 'to=<kim@cc.example>' "$T/pf/maillog" && fail "kim delivered by the MTA" || pass "kim goes nowhere else"
[ "$(captures)" = 2 ] && pass "second capture" || fail "captures=$(captures), want 2"

# 3. copy mode after SIGHUP: captured and delivered.
reload "capture_mode = copy"
msg jsmith@corp.example m3 x | smtp_send $PF_PORT alice@example.org jsmith@corp.example > "$T/r3" || fail "copy not accepted"
pf_wait_log "$T/pf" 'to=<jsmith@corp.example>.*status=sent' 20 && pass "copy delivered" || fail "copy not delivered"
[ "$(captures)" = 3 ] && pass "copy captured" || fail "captures=$(captures), want 3"

# 4. non_smtpd_milters: sendmail(1) -> pickup -> cleanup -> milter.
reload "capture_mode = divert"
msg kim@cc.example m4 x | pf_sendmail "$T/pf" -f alice@example.org kim@cc.example || fail "sendmail(1) failed"
for i in $(seq 1 100); do [ "$(captures)" = 4 ] && break; sleep 0.1; done
[ "$(captures)" = 4 ] && pass "sendmail(1) captured" || fail "sendmail(1) not captured"

# 5. reject_unknown -> 550 5.1.1 at RCPT.
reload "reject_unknown = yes"
msg nobody@cc.example m5 x | smtp_send $PF_PORT alice@example.org nobody@cc.example > "$T/r5"
grep -q 'RCPT nobody@cc.example 550 5.1.1' "$T/r5" && pass "550 5.1.1" || { cat "$T/r5"; fail "no 550 5.1.1"; }

# 6. size limit -> 552 5.3.4.
reload "message_size_limit = 1k"
msg jsmith@corp.example m6 "$(head -c 3000 /dev/zero | tr '\0' x)" | smtp_send $PF_PORT alice@example.org jsmith@corp.example > "$T/r6"
grep -q 'DATA 552 5.3.4' "$T/r6" && pass "552 5.3.4 size" || { cat "$T/r6"; fail "no 552 size"; }

# 7. recipient limit -> 452 4.5.3 for the extra recipient.
reload "recipient_limit = 1"
msg x m7 x | smtp_send $PF_PORT alice@example.org jsmith@corp.example kim@cc.example > "$T/r7"
grep -q 'RCPT kim@cc.example 452 4.5.3' "$T/r7" && pass "452 4.5.3" || { cat "$T/r7"; fail "no 452 4.5.3"; }

# 8. header count -> 552 5.3.4.
reload "header_count_limit = 2"
msg jsmith@corp.example m8 x | smtp_send $PF_PORT alice@example.org jsmith@corp.example > "$T/r8"
grep -q 'DATA 552 5.3.4' "$T/r8" && pass "552 5.3.4 headers" || { cat "$T/r8"; fail "no 552 headers"; }

# 9. spool disk low -> 452 4.3.1, nothing captured.
before=$(captures)
reload "spool_min_free = 1000t"
msg jsmith@corp.example m9 x | smtp_send $PF_PORT alice@example.org jsmith@corp.example > "$T/r9"
grep -q 'DATA 452 4.3.1' "$T/r9" && pass "452 4.3.1" || { cat "$T/r9"; fail "no 452 4.3.1"; }
[ "$(captures)" = "$before" ] && pass "nothing captured on 452" || fail "captured despite 452"

# 10. spool unwritable -> 451 4.3.0.
reload
chmod 000 "$T/spool/milter-interim/tmp"
msg jsmith@corp.example m10 x | smtp_send $PF_PORT alice@example.org jsmith@corp.example > "$T/r10"
chmod 750 "$T/spool/milter-interim/tmp"
grep -q 'DATA 451 4.3.0' "$T/r10" && pass "451 4.3.0" || { cat "$T/r10"; fail "no 451 4.3.0"; }

# 11. no cc:Mail recipient: untouched.
msg bob@example.org m11 x | smtp_send $PF_PORT alice@example.org bob@example.org > "$T/r11" && pass "plain mail accepted" || fail "plain mail"

# 12. milter gone -> MTA tempfails (milter_default_action = tempfail), never accepts.
kill "$MPID"; wait "$MPID"; rc=$?; MPID=
[ $rc = 0 ] && pass "SIGTERM clean exit" || fail "milter exit $rc"
msg jsmith@corp.example m12 x | smtp_send $PF_PORT alice@example.org jsmith@corp.example > "$T/r12"
grep -qE '(RCPT|DATA|MAIL).* 4[0-9][0-9] ' "$T/r12" && pass "4xx without milter" || { cat "$T/r12"; fail "no 4xx without milter"; }

echo "--- milter log"; cat "$T/milter.log"
[ $FAILS = 0 ] && echo "PASS" || { echo "--- maillog"; cat "$T/pf/maillog"; echo "$FAILS failure(s)"; exit 1; }
