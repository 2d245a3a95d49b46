#!/bin/bash
# Remote-sender attacks (issue "Safe on a shared host") against a REAL ccmail-milter behind a
# private Postfix on 127.0.0.1, then the real ccmail-exporter over what was captured:
#   - user%PO@domain naming any post office (ZZTOP, and DOS device names AUX, NUL, CON)
#   - a quoted local part through "@domain PO" that would write "Evil at PO, Boss at BRANCHPO"
#   - control characters (TAB, ESC) in the envelope sender, which must not add manifest
#     columns or forge log lines
# Checks: each hostile recipient gets its own 5xx at RCPT, the valid co-recipients of the same
# message are captured and exported exactly once, nothing is quarantined, no post office
# directory named after a hostile one exists, every manifest line has exactly four fields.
# Usage: remote_sender_test.sh <ccmail-milter> <ccmail-exporter>
set -u
MILTER=$1
EXPORTER=$2
. "${CCMAIL_SOURCE_DIR:-$(dirname "$0")/../..}/tests/mta/postfix.sh"
command -v postfix >/dev/null || { echo "postfix not installed"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (private Postfix)"; exit 77; }

mta_test_init sec-remote

mkdir -p "$T/spool" "$T/outbox"
chown nobody "$T/spool" "$T/outbox"
cat > "$T/map" <<MAP
kim@cc.example       Kim Lee at HUBPO
@branch.example      BRANCHPO
MAP
milter_conf "$T/ccmail.conf" "milter_socket_group = postfix" "milter_socket_mode = 0660" "milter_user = nobody" \
  "exporter_user = nobody" "exporter_pid_file = $T/exporter.pid" "outbox_directory = $T/outbox" \
  "claim_table_slots = 256" "default_postoffice = HUBPO" "log_level = info"

"$MILTER" --check -c "$T/ccmail.conf" 2> "$T/check.log" && pass "configuration passes --check" \
  || { cat "$T/check.log"; fail "--check refused the test configuration"; }
"$MILTER" --stderr -c "$T/ccmail.conf" 2> "$T/milter.log" &
MPID=$!
wait_until 60 "$MPID" ccmail-milter test -S "$T/milter.sock" || { cat "$T/milter.log"; echo "milter did not start"; exit 1; }
pf_start "$T/pf" "smtpd_milters = unix:$T/milter.sock" "milter_protocol = 6" || exit 1

msg() { printf 'From: attacker@example.org\r\nTo: kim@cc.example\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\nbody %s\r\n' "$1" "$1" "$1"; }

# 1. One message, hostile recipients between valid ones.
msg m1 | smtp_send $PF_PORT attacker@example.org kim@cc.example 'x%ZZTOP@cc.example' 'x%AUX@cc.example' \
  'x%nul@branch.example' 'x%CON@cc.example' '"Evil at PO, Boss"@branch.example' '"Boss;Evil"@cc.example' \
  pat@branch.example bob@example.org > "$T/r1"
rcpt_reply() {  # "<code> <enhanced code>" of the RCPT reply for $1 (which may hold spaces)
  local line
  line=$(grep -F "RCPT $1 " "$T/r1" | head -1)
  line=${line#"RCPT $1 "}
  echo "$line" | cut -d' ' -f1-2
}
for r in 'x%ZZTOP@cc.example' 'x%AUX@cc.example' 'x%nul@branch.example' 'x%CON@cc.example'; do
  [ "$(rcpt_reply "$r")" = "550 5.1.1" ] && pass "$r: 550 5.1.1 at RCPT" || fail "$r: got '$(rcpt_reply "$r")', want 550 5.1.1"
done
for r in '"Evil at PO, Boss"@branch.example' '"Boss;Evil"@cc.example'; do
  [ "$(rcpt_reply "$r")" = "553 5.1.3" ] && pass "$r: 553 5.1.3 at RCPT" || fail "$r: got '$(rcpt_reply "$r")', want 553 5.1.3"
done
for r in kim@cc.example pat@branch.example bob@example.org; do
  [ "$(rcpt_reply "$r" | cut -c1)" = 2 ] && pass "$r accepted" || fail "$r: got '$(rcpt_reply "$r")'"
done
grep -q '^DATA 250' "$T/r1" && pass "message accepted for the valid recipients" || { cat "$T/r1"; fail "DATA not 250"; }

# 2. Control characters in the envelope sender (a quoted local part may carry TAB and ESC).
SENDER=$(printf '"ev\til\033[2J"@example.org')
msg m2 | smtp_send $PF_PORT "$SENDER" kim@cc.example > "$T/r2"
grep -q '^DATA 250' "$T/r2" && pass "message with a TAB/ESC sender accepted" || { cat "$T/r2"; fail "control-character sender: $(tail -1 "$T/r2")"; }
sleep 1

# 3. Export everything that was captured.
timeout 120 "$EXPORTER" --stderr --drain -c "$T/ccmail.conf" 2> "$T/exporter.log" \
  && pass "exporter --drain" || { tail -20 "$T/exporter.log"; fail "exporter --drain failed"; }

dirs=$(cd "$T/outbox" && find . -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort | tr '\n' ' ')
[ "$dirs" = "BRANCHPO HUBPO " ] && pass "post office directories: $dirs" || fail "post office directories: '$dirs' (want BRANCHPO HUBPO)"
for bad in ZZTOP AUX NUL CON; do
  find "$T/outbox" "$T/spool" -iname "$bad" | grep -q . && fail "a $bad directory or file exists"
done
quarantined=$(find "$T/spool" -path '*quarantine*' -type f | wc -l)
[ "$quarantined" = 0 ] && pass "nothing quarantined" || fail "$quarantined quarantined file(s)"

# Every manifest line: four TAB-separated fields; no raw control character anywhere.
mans=$(find "$T/outbox" -name '*.MAN')
[ -n "$mans" ] || fail "no manifest"
bad_lines=$(cat $mans | grep -v '^# ccmail-bridge manifest' | awk -F'\t' 'NF != 4' | wc -l)
[ "$bad_lines" = 0 ] && pass "every manifest line has 4 fields" || fail "$bad_lines manifest line(s) without exactly 4 fields"
LC_ALL=C grep -q $'\033' $mans && fail "raw ESC in a manifest" || pass "no raw ESC in manifests"
grep -qF 'ev\til\x1b[2J' $mans && pass "the sender's TAB and ESC are escaped in the manifest" || fail "escaped sender not found in the manifest"
# Recipients (cc:Mail names) exported exactly once per message: kim twice (m1, m2), pat once.
cat $mans | grep -v '^#' | cut -f3 | sort | uniq -c | sed 's/^ *//' > "$T/rcpts"
grep -qx '2 Kim Lee' "$T/rcpts" && grep -qx '1 pat' "$T/rcpts" && [ "$(wc -l < "$T/rcpts")" = 2 ] \
  && pass "valid co-recipients exported exactly once per message" || { cat "$T/rcpts"; fail "exported recipients wrong"; }
# Nothing of the hostile names reached an import file.
grep -l 'Evil\|ZZTOP\|at AUX\|at NUL\|at CON' "$T/outbox"/*/*.CCM 2>/dev/null | grep -q . \
  && fail "a hostile name is in an import file" || pass "no hostile name in any import file"

# The logs: no raw control character, so no forged line.
LC_ALL=C grep -q $'\033' "$T/milter.log" "$T/exporter.log" && fail "raw ESC in a log" || pass "no raw ESC in the logs"
grep -qF 'ev\til\x1b[2J' "$T/milter.log" && pass "the milter log shows the sender escaped" || fail "escaped sender not in the milter log"

[ "$FAILS" = 0 ] && echo "PASS" || { echo "$FAILS failure(s); milter log:"; tail -20 "$T/milter.log"; exit 1; }
