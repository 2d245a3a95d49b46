#!/bin/bash
# ccmail-milter under a real Postfix (private instance on loopback): smtpd_milters and
# non_smtpd_milters; capture, divert, copy, SIGHUP reload, every 4xx/5xx path (limits,
# disk, backlog, stalled exporter, missing claim table), restart, SIGTERM in flight.
# Captures are checked in spool/new through store::Spool (milter-spool-tool list/show),
# publishes through the claim table (milter-spool-tool ready).
# Usage: postfix_mta_test.sh <ccmail-milter binary> <milter-spool-tool binary>
set -u
MILTER=$1
TOOL=$2
. "${CCMAIL_SOURCE_DIR:-$(dirname "$0")/../..}/tests/mta/postfix.sh"
command -v postfix >/dev/null || { echo "postfix not installed"; exit 1; }

mta_test_init milter-pf

mkdir -p "$T/spool"; chown nobody "$T/spool"
cat > "$T/map" <<MAP
jsmith@corp.example  Smith, John at HUBPO2
kim@cc.example       Kim Lee at HUBPO
MAP
write_conf() {
  milter_conf "$T/ccmail.conf" "milter_socket_group = postfix" "milter_socket_mode = 0660" "milter_user = nobody" \
    "milter_pid_file = $T/run/milter.pid" "claim_table_slots = 256" "log_level = info" "$@"
}
reload() { write_conf "$@"; kill -HUP "$MPID"; sleep 0.5; }
list() { "$TOOL" list "$T/ccmail.conf"; }
captures() { list | wc -l; }
msg() { printf 'From: alice@example.org\r\nTo: %s\r\nSubject: test %s\r\nMessage-ID: <%s@example.org>\r\n\r\nbody %s\r\n' "$1" "$2" "$2" "$3"; }

write_conf
"$MILTER" --stderr -c "$T/ccmail.conf" 2> "$T/milter.log" &
MPID=$!
wait_until 60 "$MPID" ccmail-milter test -S "$T/milter.sock" || { cat "$T/milter.log"; echo "milter did not start"; exit 1; }
# 0. daemon set-up: socket group/mode, pid file, privilege drop, runtime directory.
[ "$(stat -c '%G %a' "$T/milter.sock")" = "postfix 660" ] && pass "socket group postfix, mode 0660" \
  || fail "socket is $(stat -c '%U:%G %a' "$T/milter.sock")"
[ "$(cat "$T/run/milter.pid" 2>/dev/null)" = "$MPID" ] && [ "$(stat -c %U "$T/run/milter.pid")" = nobody ] && pass "pid file, written as milter_user" || fail "pid file"
[ "$(ps -o user= -p "$MPID" | tr -d ' ')" = nobody ] && pass "runs as milter_user" || fail "not running as nobody"
[ "$(stat -c '%U %a' "$T/run" 2>/dev/null)" = "nobody 750" ] && pass "runtime directory created 0750 for the milter user" \
  || fail "runtime directory: $(stat -c '%U %a' "$T/run" 2>&1)"
pf_start "$T/pf" "smtpd_milters = unix:$T/milter.sock" "non_smtpd_milters = unix:$T/milter.sock" \
  "milter_protocol = 6" || exit 1

# 1. divert, mixed recipients: cc:Mail one captured and removed, the other delivered.
msg "jsmith@corp.example, bob@example.org" m1 x | smtp_send $PF_PORT alice@example.org jsmith@corp.example bob@example.org > "$T/r1" \
  && pass "divert mixed accepted" || { cat "$T/r1"; fail "divert mixed not accepted"; }
pf_wait_log "$T/pf" 'to=<bob@example.org>.*status=sent' 20 || fail "bob not delivered"
sleep 0.5
grep -q 'to=<jsmith@corp.example>' "$T/pf/maillog" && fail "jsmith delivered by the MTA despite divert" || pass "jsmith diverted"
list > "$T/l1" || fail "a spool file does not verify"
[ "$(wc -l < "$T/l1")" = 1 ] && grep -q ' from=alice@example.org .* key_ok=1 rcpt=jsmith@corp.example|Smith, John|HUBPO2$' "$T/l1" \
  && pass "capture durable in spool/new with meta and content key" || { cat "$T/l1"; fail "no capture for jsmith"; }
f1=$(cut -d' ' -f1 "$T/l1")
q1=$(sed -n 's/.* qid=\([^ ]*\) .*/\1/p' "$T/l1")
[ -n "$q1" ] && grep -q "$q1: .*to=<bob@example.org>" "$T/pf/maillog" && pass "queue id $q1 recorded in the spool meta" \
  || fail "queue id missing in meta ($q1)"
"$TOOL" show "$T/ccmail.conf" "$f1" > "$T/m1"
grep -q '^Subject: test m1' "$T/m1" && grep -q '^body x' "$T/m1" \
  && pass "captured headers and body" || fail "capture content wrong"
[ "$("$TOOL" ready "$T/ccmail.conf")" = 1 ] && pass "published in the claim table" || fail "no READY slot"
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

# 4b. no Message-ID and no Date: Postfix adds both (127.0.0.1 is in local_header_rewrite_clients
# by default; pickup always), new for every copy. Two SMTP copies, as after a lost 250, must
# have one content key (store/content_key.h); two identical sendmail(1) submissions (a cron
# mail sent twice) keep two keys.
bare() { printf 'From: alice@example.org\r\nTo: kim@cc.example\r\nSubject: %s\r\n\r\nsame body\r\n' "$1"; }
keys_of() { list | grep " from=$1 " | sed -n 's/.* key=\([0-9a-f]*\) .*/\1/p' | sort -u | wc -l; }
for i in 1 2; do
  bare "bare smtp" | smtp_send $PF_PORT bare-smtp@example.org kim@cc.example > "$T/r4b" || { cat "$T/r4b"; fail "bare SMTP copy $i not accepted"; }
  bare "bare local" | pf_sendmail "$T/pf" -f bare-local@example.org kim@cc.example || fail "bare sendmail(1) copy $i failed"
  sleep 1.1  # another second: another Date
done
wait_until 20 "" "bare captures" test "$(captures)" = 8
grep -c 'message-id=<[0-9]*\.[0-9A-F]*@mta-test.localdomain>' "$T/pf/maillog" | grep -qx 4 \
  && pass "Postfix generated the Message-Id of the four bare copies" || fail "Postfix did not generate 4 Message-Ids"
[ "$(list | grep -c ' from=bare-.* key_ok=1 ')" = 4 ] && pass "bare copies captured, keys verify" || { list; fail "bare copies"; }
[ "$(keys_of bare-smtp@example.org)" = 1 ] && pass "SMTP retry without Message-ID/Date: one content key" \
  || { list; fail "SMTP copies without Message-ID/Date got different content keys"; }
[ "$(keys_of bare-local@example.org)" = 2 ] && pass "two local submissions without Message-ID/Date: two content keys" \
  || { list; fail "local submissions without Message-ID/Date collapsed into one content key"; }

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
chmod 000 "$T/spool/spool/tmp"
msg jsmith@corp.example m10 x | smtp_send $PF_PORT alice@example.org jsmith@corp.example > "$T/r10"
chmod 700 "$T/spool/spool/tmp"
grep -q 'DATA 451 4.3.0' "$T/r10" && pass "451 4.3.0" || { cat "$T/r10"; fail "no 451 4.3.0"; }

# 13. backlog full -> 452 4.3.1 (nothing exports here, so the backlog is every capture so far).
n=$(captures)
reload "backlog_limit_messages = $n"
msg jsmith@corp.example m13 x | smtp_send $PF_PORT alice@example.org jsmith@corp.example > "$T/r13"
grep -q 'DATA 452 4.3.1' "$T/r13" && pass "backlog 452 4.3.1" || { cat "$T/r13"; fail "no backlog 452"; }
[ "$(captures)" = "$n" ] && pass "nothing captured on backlog 452" || fail "captured despite backlog 452"

# 14. stalled exporter (heartbeat and progress an hour old, work pending) -> 451 4.3.0;
# a healthy heartbeat admits again.
reload
"$TOOL" exporter "$T/ccmail.conf" 3600 5 || fail "cannot publish exporter state"
msg jsmith@corp.example m14 x | smtp_send $PF_PORT alice@example.org jsmith@corp.example > "$T/r14"
grep -q 'DATA 451 4.3.0.*stalled' "$T/r14" && pass "stalled exporter 451 4.3.0" || { cat "$T/r14"; fail "no stall 451"; }
"$TOOL" exporter "$T/ccmail.conf" 0 0
msg jsmith@corp.example m14b x | smtp_send $PF_PORT alice@example.org jsmith@corp.example > "$T/r14b" \
  && pass "healthy exporter admits" || { cat "$T/r14b"; fail "not admitted after a fresh heartbeat"; }
[ "$(captures)" = $((n + 1)) ] && pass "captured after the stall" || fail "captures=$(captures), want $((n + 1))"

# 18. SIGHUP in the middle of a transaction, on an open connection: the connection stays,
# the message in flight keeps the divert snapshot taken at MAIL, the next one uses copy.
n=$(captures)
rm -f "$T/go"
python3 - "$PF_PORT" "$T/go" > "$T/r18" <<'PY' &
import os, smtplib, sys, time
port, go = int(sys.argv[1]), sys.argv[2]
s = smtplib.SMTP("127.0.0.1", port, timeout=30)
s.ehlo("test.localdomain")
def send(tag, wait):
    print("MAIL", *s.mail("alice@example.org"))
    print("RCPT", *s.rcpt("kim@cc.example"), flush=True)
    while wait and not os.path.exists(go):
        time.sleep(0.05)
    try:
        code, text = s.data(("From: alice@example.org\r\nSubject: test %s\r\n\r\nx\r\n" % tag).encode())
    except smtplib.SMTPDataError as e:
        code, text = e.smtp_code, e.smtp_error
    print("DATA", code, text.decode(), flush=True)
send("m18a", True)
send("m18b", False)
s.quit()
PY
PYPID=$!
for i in $(seq 1 100); do grep -q '^RCPT' "$T/r18" && break; sleep 0.1; done
reload "capture_mode = copy"
touch "$T/go"
wait $PYPID
[ "$(grep -c '^DATA 250 ' "$T/r18")" = 2 ] && pass "both messages on the reloaded connection accepted" || { cat "$T/r18"; fail "SIGHUP mid-transaction"; }
[ "$(captures)" = $((n + 2)) ] && pass "both captured" || fail "captures=$(captures), want $((n + 2))"
pf_wait_log "$T/pf" 'to=<kim@cc.example>.*status=sent' 20
sleep 1
[ "$(grep -c 'to=<kim@cc.example>.*status=sent' "$T/pf/maillog")" = 1 ] \
  && pass "in-flight message kept divert, the next one used copy" || fail "kim delivered $(grep -c 'to=<kim@cc.example>.*status=sent' "$T/pf/maillog") times, want 1"
reload

# 15. claim table removed under the milter -> 451 4.3.0 (the milter never recreates it).
rm -f "$T/run/$TABLE-v1"
msg jsmith@corp.example m15 x | smtp_send $PF_PORT alice@example.org jsmith@corp.example > "$T/r15"
grep -q 'DATA 451 4.3.0.*claim table missing' "$T/r15" && pass "table missing 451 4.3.0" || { cat "$T/r15"; fail "no 451 for a missing table"; }
sleep 1.1  # past the re-attach interval: still missing, still 451, still not recreated by the milter
msg jsmith@corp.example m15b x | smtp_send $PF_PORT alice@example.org jsmith@corp.example > "$T/r15b"
grep -q ' 451 4.3.0' "$T/r15b" && [ ! -e "$T/run/$TABLE-v1" ] && pass "table stays missing, 451" || { cat "$T/r15b"; fail "table missing case 2"; }
[ "$(captures)" = $((n + 2)) ] && pass "nothing captured without a table" || fail "captured without a table"

# 11. no cc:Mail recipient: untouched.
msg bob@example.org m11 x | smtp_send $PF_PORT alice@example.org bob@example.org > "$T/r11" && pass "plain mail accepted" || fail "plain mail"

[ -z "$(ls -A "$T/spool/spool/tmp")" ] && pass "no tmp files left" || { ls -l "$T/spool/spool/tmp"; fail "tmp files left"; }

# 16. restart: a milter STARTING without a table creates it (create_if_missing at start only).
kill "$MPID"; wait "$MPID"; MPID=
"$MILTER" --stderr -c "$T/ccmail.conf" 2>> "$T/milter.log" &
MPID=$!
wait_until 60 "$MPID" ccmail-milter test -e "$T/run/$TABLE-v1" -a -S "$T/milter.sock"
[ -e "$T/run/$TABLE-v1" ] && pass "table created at start" || fail "no table after restart"
n=$(captures)

# 17. SIGTERM with a message in flight (MAIL and RCPT done): a new transaction gets
# 451 4.3.2, but the message in flight is finished and captured before the milter exits 0.
python3 - "$PF_PORT" "$MPID" > "$T/r17" <<'PY'
import os, signal, smtplib, sys, time
port, pid = int(sys.argv[1]), int(sys.argv[2])
s = smtplib.SMTP("127.0.0.1", port, timeout=30)
s.ehlo("test.localdomain")
print("MAIL", *s.mail("alice@example.org"))
print("RCPT", *s.rcpt("jsmith@corp.example"))
os.kill(pid, signal.SIGTERM)
time.sleep(0.5)
s2 = smtplib.SMTP("127.0.0.1", port, timeout=30)  # a new transaction while draining
s2.ehlo("test.localdomain")
print("DRAIN MAIL", *s2.mail("alice@example.org"))
s2.close()
time.sleep(0.5)
try:
    code, text = s.data(b"From: alice@example.org\r\nSubject: test m17\r\n\r\nin flight\r\n")
except smtplib.SMTPDataError as e:
    code, text = e.smtp_code, e.smtp_error
print("DATA", code, text.decode())
s.quit()
PY
wait "$MPID"; rc=$?; MPID=
grep -q '^DATA 250 ' "$T/r17" && [ "$(captures)" = $((n + 1)) ] && pass "message in flight at SIGTERM finished and captured" \
  || { cat "$T/r17"; fail "message in flight at SIGTERM lost or tempfailed (captures $(captures), want $((n + 1)))"; }
grep -q '^DRAIN MAIL 451 b.4.3.2 cc:Mail gateway restarting' "$T/r17" && pass "new transaction while draining: 451 4.3.2" \
  || { cat "$T/r17"; fail "no 451 4.3.2 while draining"; }
[ $rc = 0 ] && pass "SIGTERM clean exit" || fail "milter exit $rc"

# 12. milter gone -> MTA tempfails (milter_default_action = tempfail), never accepts.
msg jsmith@corp.example m12 x | smtp_send $PF_PORT alice@example.org jsmith@corp.example > "$T/r12"
grep -qE '(RCPT|DATA|MAIL).* 4[0-9][0-9] ' "$T/r12" && pass "4xx without milter" || { cat "$T/r12"; fail "no 4xx without milter"; }

echo "--- milter log"; cat "$T/milter.log"
[ $FAILS = 0 ] && echo "PASS" || { echo "--- maillog"; cat "$T/pf/maillog"; echo "$FAILS failure(s)"; exit 1; }
