#!/bin/bash
# e2e sendmail: the same checks as postfix_load with a real Sendmail 8.17 in front of the bridge
# (Debian's binaries unpacked by tests/mta/fetch-sendmail.sh; INPUT_MAIL_FILTER with F=T).
# 1,000 messages over 10 parallel sessions, cc:Mail only / mixed / none, the exporter SIGKILLed
# every 1-4 s and restarted, the milter SIGKILLed and restarted once. Sendmail queues only (no delivery agent runs in the test), so the
# Internet recipients are checked in Sendmail's own queue files: every accepted message's
# non-cc:Mail recipients are there, its cc:Mail recipients are not (divert).
# Skips (77) when Sendmail cannot be fetched or started here, saying so.
set -u
. "${CCMAIL_SOURCE_DIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init sendmail
e2e_find_bins || exit 1
if [ ! -f "$E2E_SRC/tests/mta/sendmail.sh" ]; then
  echo "e2e sendmail: SKIP (no Sendmail harness: tests/mta/sendmail.sh is missing)"; exit 77
fi
. "$E2E_SRC/tests/mta/sendmail.sh"
N=${E2E_SM_COUNT:-1000}

e2e_write_map
e2e_write_conf
e2e_supervise_exporter
e2e_start_milter || fail "milter"
mkdir -p "$T/sm"
E2E_CLEANUP_HOOK='sm_stop "$T/sm"'
# sm_start runs in a UTS namespace of its own whose host name is fully qualified: Sendmail
# sleeps 60 s at start when it cannot qualify an unqualified host name (no DNS here), and the
# machine's own host name must not be changed. The daemon stays in that namespace.
unshare --uts bash -c 'hostname mta-test.localdomain || exit 1
  . "$1/tests/e2e/lib.sh"; . "$1/tests/mta/sendmail.sh"
  sm_start "$2/sm" "unix:$2/sock/milter.sock"; rc=$?
  echo "${SM_PORT:-}" > "$2/sm.port"; exit $rc' sm_start "$E2E_SRC" "$T"; rc=$?
SM_PORT=$(cat "$T/sm.port" 2>/dev/null)
if [ $rc = 77 ]; then echo "e2e sendmail: SKIP (Sendmail cannot be fetched or started here; see $T/sm.fetch.log)"; exit 77; fi
[ $rc = 0 ] || fail "sendmail did not start"
e2e_log "sendmail on 127.0.0.1:$SM_PORT, scale $SCALE"

e2e_exporter_killer 1 4
$E2E_PY "$E2E_SRC/tests/e2e/e2e.py" send --map "$T/address-map" --prefix sm --count "$N" --scale "$SCALE" \
  --seed 41 --port "$SM_PORT" --sessions 10 --max-size 2097152 --deadline 180 --log "$T/sent.jsonl" > "$T/send.out" 2>&1 &
SEND=$!; E2E_PIDS+=($SEND)
# The milter SIGKILLed and restarted once, a third of the way through (F=T: Sendmail answers 4xx
# while it is gone, the client retries).
e2e_kill_milter_after "$(awk -v n="$N" -v s="$SCALE" 'BEGIN{printf "%d", n * s / 3}')" "$SEND" ||
  fail "milter restart"
wait $SEND || fail "client"
cat "$T/send.out"
touch "$T/stop-killing"
wait "${E2E_PIDS[@]}" 2>/dev/null
e2e_log "exporter SIGKILLed $(cat "$T/exporter.kills" 2>/dev/null || echo '?') times"

# Internet recipients: what Sendmail kept in its queue, as "id<TAB>recipient" (the sink format).
for qf in "$T"/sm/queue/qf*; do
  [ -e "$qf" ] || continue
  id=$(sed -n 's/^H[^X]*X-E2E-Id:[ \t]*\([A-Za-z0-9._-]*\).*/\1/p' "$qf" | head -1)
  sed -n 's/^R[A-Z]*:<\{0,1\}\([^>]*\)>\{0,1\}$/\1/p' "$qf" | while read -r r; do printf '%s\t%s\n' "${id:--}" "$r"; done
done > "$T/sink.log"
e2e_log "$(wc -l < "$T/sink.log") Internet deliveries queued by Sendmail"

"$CTL" -c "$T/ccmail.conf" drain --timeout 120s > "$T/drain.out" 2>&1 || { cat "$T/drain.out"; fail "drain"; }
e2e_check_backlog || { cat "$T/status.txt"; fail "backlog not empty"; }
e2e_verify sendmail "$T/sent.jsonl"; rc=$?
e2e_finish || rc=1
[ $rc = 0 ] || e2e_dump_logs 40
exit $rc
