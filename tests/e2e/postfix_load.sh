#!/bin/bash
# e2e postfix_load: the whole bridge under load behind a real Postfix, with crashes.
#   10,000 messages over 20 parallel SMTP sessions + 500 through sendmail(1) (non_smtpd_milters),
#   1 KB .. 5 MB (mostly small), recipients cc:Mail only / mixed / none; the exporter SIGKILLed
#   every 1-4 s and restarted, the milter SIGKILLed and restarted once; the client retries
#   every 4xx and every lost connection. Then: every accepted delivery is in the outbox exactly
#   once (manifests + ccmail-lint on every batch), nothing else is, Internet recipients got their
#   copy through Postfix (loopback sink), and `ccmailctl status` shows an empty backlog.
# CCMAIL_E2E_SCALE (default 1.0) scales the message counts (the ASan build runs a fraction).
set -u
. "${CCMAIL_SOURCE_DIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init postfix_load
e2e_find_bins || exit 1
N_SMTP=${E2E_LOAD_SMTP:-10000}
N_SENDMAIL=${E2E_LOAD_SENDMAIL:-500}

e2e_write_map
e2e_write_conf
e2e_start_sink || fail "sink"
e2e_supervise_exporter
e2e_start_milter || fail "milter"
e2e_start_postfix || fail "postfix"
e2e_log "postfix on 127.0.0.1:$PF_PORT, sink on $SINK_PORT, scale $SCALE, dir $T"

E2E="$E2E_PY $E2E_SRC/tests/e2e/e2e.py"
$E2E send --map "$T/address-map" --prefix s --count "$N_SMTP" --scale "$SCALE" --seed 11 \
  --port "$PF_PORT" --sessions 20 --deadline 300 --log "$T/sent-smtp.jsonl" > "$T/send.out" 2>&1 &
SEND=$!; E2E_PIDS+=($SEND)
$E2E sendmail --map "$T/address-map" --prefix m --count "$N_SENDMAIL" --scale "$SCALE" --seed 12 \
  --max-size 1048576 --postfix-conf "$T/pf/etc" --log "$T/sent-sendmail.jsonl" > "$T/sendmail.out" 2>&1 &
SM=$!; E2E_PIDS+=($SM)

e2e_exporter_killer 1 4
# The milter restart: once, when about a third of the messages are through, with SIGKILL
# (messages in flight get 4xx from Postfix, milter_default_action = tempfail, and are retried).
e2e_kill_milter_after "$(awk -v n="$N_SMTP" -v s="$SCALE" 'BEGIN{printf "%d", n * s / 3}')" "$SEND" ||
  fail "milter restart"

wait $SEND; wait $SM
cat "$T/send.out" "$T/sendmail.out"
touch "$T/stop-killing"
wait "${E2E_PIDS[@]}" 2>/dev/null
kills=$(cat "$T/exporter.kills" 2>/dev/null || echo 0)
e2e_log "exporter SIGKILLed $kills times; restarts: $(grep -c '^supervisor:' "$T/exporter.log")"
[ "$kills" -ge 1 ] || fail "the exporter was never killed during the run"
e2e_drain 180 || fail "drain"
e2e_check_backlog || { cat "$T/status.txt"; fail "backlog not empty"; }
e2e_verify postfix_load "$T/sent-smtp.jsonl" "$T/sent-sendmail.jsonl"; rc=$?
e2e_finish || rc=1
[ $rc = 0 ] || e2e_dump_logs 40
exit $rc
