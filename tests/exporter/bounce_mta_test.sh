#!/bin/bash
# Bounces under the exporter unit's hardening (NoNewPrivileges=yes, User=ccmail): the bounce
# path (bounce-tool: .UND -> queued notice -> SMTP) runs under `setpriv --no-new-privs` as an
# unprivileged user against a private Postfix on 127.0.0.1, and the notice must reach it with
# the null sender. (Postfix's sendmail(1) cannot submit under these restrictions: postdrop is
# setgid postdrop, which no_new_privs ignores, and loops on "Permission denied" writing the
# maildrop; that is why bounces go over SMTP.)
# Usage: bounce_mta_test.sh <bounce-tool binary>
set -u
TOOL=$1
SRC=${CCMAIL_SOURCE_DIR:-$(dirname "$0")/../..}
. "$SRC/tests/mta/postfix.sh"
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (Postfix's master runs as root)"; exit 77; }
command -v postfix >/dev/null || { echo "postfix not installed"; exit 1; }
command -v setpriv >/dev/null || { echo "setpriv (util-linux) not installed"; exit 1; }

T=$(mktemp -d /tmp/ccmail-bounce-mta.XXXXXX)
chmod 755 "$T"
cleanup() { pf_stop "$T/pf"; [ -n "${KEEP:-}" ] || rm -rf "$T"; }
trap cleanup EXIT
FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }
# As the unit runs the exporter: an unprivileged user, no new privileges.
hardened() { setpriv --no-new-privs --reuid=nobody --regid=nogroup --clear-groups "$@"; }

pf_start "$T/pf" || exit 1
mkdir -p "$T/work"; chown nobody "$T/work"
cp "$SRC/tests/corpus/01-plain-ascii.eml" "$T/msg.eml"; chmod 644 "$T/msg.eml"

# 1. The relay is down: the notice stays queued (durable), nothing is lost.
out=$(hardened "$TOOL" "$T/work" "127.0.0.1:$(mta_free_port)" bob@partner.example "$T/msg.eml")
echo "$out" | grep -q 'queued=1 sent=0 deferred=1 rejected=0 pending=1' && pass "relay down: kept queued ($out)" \
  || fail "relay down: $out"
ls "$T/work/bounce/"*.msg >/dev/null 2>&1 && pass "notice file in the bounce queue" || fail "no queued notice file"

# 2. Postfix up: sent, accepted with the null sender, removed from the queue.
out=$(hardened "$TOOL" "$T/work" "127.0.0.1:$PF_PORT" bob@partner.example "$T/msg.eml")
echo "$out" | grep -q 'queued=1 sent=1 deferred=0 rejected=0 pending=0' && pass "sent under no_new_privs ($out)" \
  || fail "not sent: $out"
pf_wait_log "$T/pf" 'from=<>.*' 20 >/dev/null
pf_wait_log "$T/pf" 'to=<bob@partner.example>.*status=sent' 20 && pass "Postfix delivered the bounce to the sender" \
  || fail "bounce not delivered by Postfix"
qid=$(sed -n 's/.*postfix\/smtpd\[[0-9]*\]: \([0-9A-F]*\): client=.*/\1/p' "$T/pf/maillog" | tail -1)
grep -q "$qid: from=<>," "$T/pf/maillog" && pass "null envelope sender" || fail "bounce not sent with MAIL FROM:<> ($qid)"
ls "$T/work/bounce/"*.msg >/dev/null 2>&1 && fail "notice still queued after the 250" || pass "queue empty after the 250"

echo "--- maillog"; cat "$T/pf/maillog"
[ $FAILS = 0 ] && echo "PASS" || { echo "$FAILS failure(s)"; exit 1; }
