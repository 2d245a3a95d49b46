#!/bin/bash
# e2e q184524: the duplicate that gave the bridge its reason to exist (Microsoft KB Q184524,
# RFC 1047). The client sends a message, loses the connection after the final dot without
# seeing the 250, and sends the same message again. Postfix queues both copies, the milter
# captures both; the exporter must export each delivery once. Three rounds:
#   same_batch   retries right after the dropped copies (both can land in one batch)
#   after_export the first copies are exported (ccmailctl drain) before the retries arrive
#   new_epoch    the exporter is SIGKILLed and restarted between the copies (ledger dedup
#                across exporter epochs)
#   local_no_id  messages without Message-ID and Date from 127.0.0.1: Postfix treats the client
#                as local (local_header_rewrite_clients = permit_inet_interfaces, the default)
#                and adds a Message-Id embedding the queue id and the arrival Date, different
#                for each copy; the content key must leave them out (store/content_key.h)
# and a fifth, the same duplicate from the other side:
#   milter_timeout  the milter answers after Postfix's milter_content_timeout (a slow disk,
#                CCMAIL_DELAY_AT): Postfix tempfails the client although the capture is
#                already durable, the client retries, the bridge must still export once
set -u
. "${CCMAIL_SOURCE_DIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init q184524
e2e_find_bins || exit 1
N=${E2E_Q_COUNT:-150}

e2e_write_map
e2e_write_conf
e2e_start_sink || fail "sink"
e2e_supervise_exporter
e2e_start_milter || fail "milter"
e2e_start_postfix || fail "postfix"

E2E="$E2E_PY $E2E_SRC/tests/e2e/e2e.py"
common=(--map "$T/address-map" --count "$N" --scale "$SCALE" --port "$PF_PORT" --sessions 5
        --max-size 262144 --medium-fraction 0.05 --log "$T/sent.jsonl")
$E2E q184524 "${common[@]}" --prefix qa --seed 21 || fail "round same_batch"
$E2E q184524 "${common[@]}" --prefix qb --seed 22 \
  --between "$CTL -c $T/ccmail.conf drain --timeout 120s >/dev/null 2>&1" || fail "round after_export"
$E2E q184524 "${common[@]}" --prefix qc --seed 23 \
  --between "sleep 1; kill -9 \$(cat $T/exporter.pid.e2e); sleep 1" || fail "round new_epoch"
# The copies of one message differ by a second at least, so the Date Postfix adds differs too.
$E2E q184524 "${common[@]}" --prefix qe --seed 25 --no-id-date --between "sleep 1.1" || fail "round local_no_id"


# Round milter_timeout: every odd capture waits 2.5 s after it is durable, before the milter
# answers; Postfix gives up after 1 s and replies 451 to the client, which retries.
NT=$($E2E_PY -c "print(max(2, int(20 * $SCALE)))")
delays=$(seq 1 2 $((4 * NT)) | sed 's/.*/spool.wal.synced:&:2500/' | paste -sd, -)
e2e_stop_milter
CCMAIL_DELAY_AT="$delays" e2e_start_milter || fail "milter with delays"
postconf -c "$T/pf/etc" -e "milter_content_timeout = 1s" && postfix -c "$T/pf/etc" reload >/dev/null 2>&1 ||
  fail "postfix reload"
sleep 1
$E2E send --map "$T/address-map" --count "$NT" --scale 1 --port "$PF_PORT" --sessions 2 --ccmail-only 1 \
  --max-size 65536 --medium-fraction 0 --prefix qd --seed 24 --retry-delay 0.5 \
  --log "$T/sent-timeout.jsonl" || fail "round milter_timeout"
timeouts=$(grep -c 'milter unix:.*timed out\|milter unix:.*[Tt]imeout' "$T/pf/maillog")
e2e_log "milter_timeout: Postfix timed out on the milter $timeouts time(s)"
[ "$timeouts" -ge 1 ] || fail "Postfix never timed out on the milter: the round proved nothing"
e2e_stop_milter
e2e_start_milter || fail "milter"
postconf -c "$T/pf/etc" -e "milter_content_timeout = 120s" && postfix -c "$T/pf/etc" reload >/dev/null 2>&1

e2e_drain 120 || fail "drain"
# The test means something only if Postfix really queued both copies of most messages.
copies=$(grep -c 'message-id=<q[abc]-' "$T/pf/maillog")
# Round local_no_id: the Message-Ids Postfix made up (its myhostname), one per copy.
generated=$(grep -c 'message-id=<[^>]*@mta-test.localdomain>' "$T/pf/maillog")
sent_bare=$(grep -c '"id": "qe-' "$T/sent.jsonl")
e2e_log "local_no_id: Postfix generated the Message-Id of $generated copies of $sent_bare messages"
[ "$generated" -ge $((sent_bare * 3 / 2)) ] || fail "Postfix generated only $generated Message-Ids for $sent_bare bare messages sent twice: the round proved nothing"
copies=$((copies + generated))
sent=$(wc -l < "$T/sent.jsonl")
e2e_log "Postfix queued $copies copies of $sent messages (dropped first copy + retry)"
[ "$copies" -ge $((sent * 3 / 2)) ] || fail "only $copies copies queued for $sent messages: the dropped sends did not reach the queue"
e2e_check_backlog || { cat "$T/status.txt"; fail "backlog not empty"; }
# And the bridge must have seen the second copies and recorded them as duplicates (otherwise
# the test proved nothing): nearly every exported delivery had a second capture.
$E2E_PY - "$T/status.json" <<'PY' || fail "the ledger did not record the retried copies as duplicates"
import json, sys
led = json.load(open(sys.argv[1])).get("ledger", {})
exp, dup = led.get("exported", 0), led.get("duplicates", 0)
print("ledger: %d deliveries exported, %d recorded as duplicates of a retry" % (exp, dup))
sys.exit(0 if exp > 0 and dup >= 0.9 * exp else 1)
PY
e2e_verify q184524 "$T/sent.jsonl" "$T/sent-timeout.jsonl"; rc=$?
e2e_finish || rc=1
[ $rc = 0 ] || e2e_dump_logs 40
exit $rc
