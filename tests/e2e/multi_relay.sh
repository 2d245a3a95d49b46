#!/bin/bash
# e2e multi_relay: two relays, one PostgreSQL ledger, exactly once across the site (issue 19).
#   A private PostgreSQL cluster (tests/testing/pg_cluster.sh: Unix socket in $T/pg, no system
#   service) holds the shared ledger. Two private Postfix relays on 127.0.0.1 (two ports), each
#   with its own ccmail-milter, spool, claim table and ccmail-exporter (ledger = the cluster,
#   ledger_password_file, relay_id relay-a / relay-b), both publishing into ONE shared outbox
#   (the batch names carry the relay id, each relay has its own WATERMRK.<relay id>).
#   The load is split over both relays; 5% of the messages, once one relay answered 250, are sent
#   again, byte for byte, to the OTHER relay (an SMTP client that lost the 250 and retries on the
#   next MX). During the load each exporter is SIGKILLed (and restarted, like systemd does) every
#   2-4 s, and once the postmaster is SIGKILLed and restarted (crash recovery).
#   Then both relays drain and the outbox files (batch files + manifests, ccmail-lint) are checked:
#     multi_relay: sent=N resent=R exported=E duplicates=0 lost=0
#   and the test fails on any duplicate or loss, or when the re-sends never reached the ledger as
#   duplicates (the test would have proved nothing).
# CCMAIL_E2E_SCALE scales the message count (default 1.0 = 1200 messages; 0.1 under ASan, but
# never fewer than 300).
# E2E_MULTI_OUTBOX=separate gives each relay its own outbox (checked together, as one site's).
# E2E_MULTI_LEDGER=sqlite gives each relay its own SQLite ledger instead (two outboxes): the site
# issue 19 fixes, where a re-sent message is exported once per relay; the run must then FAIL
# with duplicates, which shows the check can fail.
# Exit 77 (skipped): not root, no Postfix, or no PostgreSQL server binaries.
set -u
. "${CCMAIL_SOURCE_DIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init multi_relay
e2e_find_bins || exit 1
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "e2e multi_relay: SKIP (no PostgreSQL server binaries; scripts/install-deps.sh installs postgresql-15)"
  exit 77
fi
N=${E2E_MULTI_COUNT:-1200}
LEDGER_KIND=${E2E_MULTI_LEDGER:-postgresql}
OUTBOX_MODE=${E2E_MULTI_OUTBOX:-shared}
[ "$LEDGER_KIND" = sqlite ] && OUTBOX_MODE=separate   # without relay ids the batch names collide
PGC="$E2E_SRC/tests/testing/pg_cluster.sh"
RELAYS=(a b)
declare -A MPIDS=() PORTS=() SUPS=()

multi_cleanup() {
  local r
  for r in "${RELAYS[@]}"; do
    pf_stop "$T/$r/pf"
    [ -n "${MPIDS[$r]:-}" ] && kill "${MPIDS[$r]}" 2>/dev/null && wait "${MPIDS[$r]}" 2>/dev/null
  done
  bash "$PGC" stop "$T/pg" >/dev/null 2>&1
}
E2E_CLEANUP_HOOK=multi_cleanup

# relay_conf R: relay R's ccmail.conf in $T/R: its own spool, claim table and outbox
# ($T/outbox when shared), and the site's ledger.
relay_conf() {
  local r=$1 d=$T/$1 outbox=$T/outbox
  [ "$OUTBOX_MODE" = shared ] || outbox=$T/$1/outbox
  mkdir -p "$d/spool" "$d/run" "$d/sock" "$outbox"
  chown -R "$E2E_USER:$E2E_GROUP" "$d/spool" "$d/run" "$outbox"
  chmod 770 "$d/spool" "$outbox"
  chmod 750 "$d/run"   # the claim table refuses a group-writable runtime directory
  cat > "$d/ccmail.conf" <<CONF
# relay $r of tests/e2e/multi_relay.sh
spool_directory = $d/spool
outbox_directory = $outbox
runtime_directory = $d/run
claim_table_name = $E2E_TABLE-$r
bridge_group = $E2E_GROUP
milter_socket = unix:$d/sock/milter.sock
milter_socket_group = postfix
milter_socket_mode = 0660
milter_user = $E2E_USER
milter_pid_file = $d/run/ccmail-milter.pid
exporter_user = $E2E_USER
exporter_pid_file = $d/run/ccmail-exporter.pid
ccmail_domains = ccmail.corp.example
address_map = $T/address-map
spool_min_free = 16m
log_level = info
CONF
  if [ "$LEDGER_KIND" = postgresql ]; then
    printf '%s\n' "ledger = $CONNINFO" "ledger_password_file = $T/ledger.password" "relay_id = relay-$r" >> "$d/ccmail.conf"
  fi
}

relay_start_milter() {
  local r=$1 d=$T/$1
  rm -f "$d/sock/milter.sock"
  "$MILTER" --stderr -c "$d/ccmail.conf" >> "$d/milter.log" 2>&1 &
  MPIDS[$r]=$!
  wait_until 60 "${MPIDS[$r]}" "ccmail-milter $r" test -S "$d/sock/milter.sock" && return 0
  tail -20 "$d/milter.log"; return 1
}

# Restart=always, as lib.sh's e2e_supervise_exporter, for relay R; the current exporter's pid
# is in $T/R/exporter.pid.e2e for the killer.
relay_supervise_exporter() {
  local r=$1 d=$T/$1
  (
    trap 'kill $x 2>/dev/null; wait $x; echo "supervisor: exporter $x stopped with status $?" >> "$d/exporter.log"; exit 0' TERM
    n=0
    while :; do
      "$EXPORTER" --stderr -c "$d/ccmail.conf" >> "$d/exporter.log" 2>&1 &
      x=$!
      echo "$x" > "$d/exporter.pid.e2e"
      wait $x
      rc=$?
      n=$((n + 1))
      echo "supervisor: exporter $x exited with $rc (start $n)" >> "$d/exporter.log"
      sleep 0.3
    done
  ) 2>> "$d/exporter.log" &
  SUPS[$r]=$!
  E2E_PIDS+=($!)
}

relay_start_postfix() {
  local r=$1 d=$T/$1
  # lib.sh's e2e_start_postfix settings, with this relay's milter socket and queue.
  pf_start "$d/pf" \
    "smtpd_milters = unix:$d/sock/milter.sock" \
    "non_smtpd_milters = unix:$d/sock/milter.sock" \
    "milter_protocol = 6" \
    "milter_connect_timeout = 10s" \
    "milter_command_timeout = 60s" \
    "milter_content_timeout = 120s" \
    "default_transport = smtp" \
    "relay_transport = smtp" \
    "local_transport = error:no local delivery in the e2e MTA" \
    "relayhost = [127.0.0.1]:$SINK_PORT" \
    "smtp_tls_security_level = none" \
    "message_size_limit = 20480000" \
    "default_process_limit = 100" \
    "smtpd_client_connection_count_limit = 0" \
    "smtpd_error_sleep_time = 0" \
    "smtpd_soft_error_limit = 1000" \
    "smtpd_hard_error_limit = 1000" \
    "in_flow_delay = 0" \
    "queue_run_delay = 5s" \
    "minimal_backoff_time = 5s" \
    "maximal_backoff_time = 10s" \
    "bounce_queue_lifetime = 1h" \
    "delay_warning_time = 0" || return 1
  PORTS[$r]=$PF_PORT
}

relay_queue() {
  find "$T/$1/pf/queue/incoming" "$T/$1/pf/queue/active" "$T/$1/pf/queue/deferred" \
    "$T/$1/pf/queue/hold" "$T/$1/pf/queue/maildrop" -type f 2>/dev/null | wc -l
}

dump_multi_logs() {
  local f
  for f in "$T"/{a,b}/milter.log "$T"/{a,b}/exporter.log "$T"/{a,b}/pf/maillog "$T/pg/server.log" "$T/sink.err"; do
    [ -f "$f" ] && { echo "--- $f (tail)"; tail -n "${1:-30}" "$f"; }
  done
}
fail() { echo "FAIL: $*"; dump_multi_logs 40; exit 1; }

# ---------------------------------------------------------------- the site
mkdir -p "$T/pg"
CONNINFO=$(bash "$PGC" start "$T/pg") || fail "PostgreSQL cluster"
install -m 0600 -o "$E2E_USER" -g "$E2E_GROUP" "$T/pg/password" "$T/ledger.password"
e2e_write_map
e2e_start_sink || fail "sink"
for r in "${RELAYS[@]}"; do
  relay_conf "$r"
  relay_supervise_exporter "$r"
  relay_start_milter "$r" || fail "milter $r"
  relay_start_postfix "$r" || fail "postfix $r"
done
e2e_log "ledger: $LEDGER_KIND $CONNINFO, outbox $OUTBOX_MODE; relay a on 127.0.0.1:${PORTS[a]}, relay b on 127.0.0.1:${PORTS[b]}, sink on $SINK_PORT, scale $SCALE, dir $T"

# ---------------------------------------------------------------- the load, with kills
# At least 300 messages whatever the scale: the load must last long enough for both exporters'
# kills and the postmaster's to fall inside it (the ASan build runs the same kills, less mail).
total=$($E2E_PY -c "print(max(300, int($N * $SCALE)))")
$E2E_PY "$E2E_SRC/tests/e2e/multi_relay.py" send --map "$T/address-map" --prefix mr --count "$total" \
  --scale 1 --seed 31 --ports "${PORTS[a]}" "${PORTS[b]}" --sessions 10 --deadline 240 \
  --resend-fraction 0.05 --log "$T/sent.jsonl" --progress "$T/progress" > "$T/send.out" 2>&1 &
SEND=$!; E2E_PIDS+=($SEND)

# Each exporter in turn, SIGKILLed every 2-4 s until the load is sent.
(
  kills_a=0 kills_b=0 turn=a
  while [ ! -e "$T/stop-killing" ]; do
    sleep "$(awk -v s="$RANDOM" 'BEGIN{srand(s); printf "%.2f", 2 + rand() * 2}')"
    [ -e "$T/stop-killing" ] && break
    p=$(cat "$T/$turn/exporter.pid.e2e" 2>/dev/null)
    if [ -n "$p" ] && kill -9 "$p" 2>/dev/null; then
      if [ $turn = a ]; then kills_a=$((kills_a + 1)); else kills_b=$((kills_b + 1)); fi
    fi
    if [ $turn = a ]; then turn=b; else turn=a; fi
  done
  echo "$kills_a $kills_b" > "$T/exporter.kills"
) &
KILLER=$!; E2E_PIDS+=($KILLER)

# The postmaster, once, when 30% of the messages are through: kill -9, 3 s down, crash recovery
# (the load goes on meanwhile and after it).
pg_killed=0
while kill -0 "$SEND" 2>/dev/null; do
  if [ "$(cat "$T/progress" 2>/dev/null || echo 0)" -ge $((total * 3 / 10)) ]; then
    e2e_log "killing the PostgreSQL postmaster (kill -9); restart in 3 s"
    bash "$PGC" kill "$T/pg" || fail "pg_cluster.sh kill"
    pg_killed=1
    sleep 3
    bash "$PGC" start "$T/pg" > /dev/null || fail "PostgreSQL restart after the kill"
    e2e_log "PostgreSQL restarted (crash recovery done)"
    break
  fi
  sleep 0.2
done
wait $SEND
cat "$T/send.out"
touch "$T/stop-killing"
wait $KILLER
read -r kills_a kills_b < "$T/exporter.kills"
e2e_log "exporter SIGKILLed: relay a $kills_a times, relay b $kills_b times"
[ "$pg_killed" = 1 ] || fail "the load ended before the postmaster was killed: the run proved nothing"
[ "$kills_a" -ge 1 ] && [ "$kills_b" -ge 1 ] || fail "an exporter was never killed during the load"
# While the postmaster was down an exporter pauses and retries (issue 19), it does not exit:
# every exit but our SIGKILLs (137) fails the test.
exits=$(cat "$T"/{a,b}/exporter.log | awk '/^supervisor: exporter [0-9]+ exited with / && $6 != 137' | wc -l)
[ "$exits" = 0 ] || fail "an exporter exited $exits time(s) on its own: $(grep -h 'exited with' "$T"/{a,b}/exporter.log | grep -v 'with 137' | head -3)"

# ---------------------------------------------------------------- drain both relays
start=$SECONDS
while [ $((SECONDS - start)) -lt 120 ]; do
  [ "$(relay_queue a)" = 0 ] && [ "$(relay_queue b)" = 0 ] && break
  for r in "${RELAYS[@]}"; do postqueue -c "$T/$r/pf/etc" -f >/dev/null 2>&1 || true; done
  sleep 1
done
# An exporter restarted during the postmaster's outage holds its lock only once the ledger
# answered (until then it waits and retries); `ccmailctl drain` needs a running exporter.
relay_exporter_running() { "$CTL" -c "$T/$1/ccmail.conf" status 2>/dev/null | grep -Eq '^exporter +running'; }
for r in "${RELAYS[@]}"; do
  wait_until 90 "" "exporter $r running" relay_exporter_running "$r" || fail "exporter $r not running after the load"
  timeout 200 "$CTL" -c "$T/$r/ccmail.conf" drain --timeout 180s > "$T/$r/drain.out" 2>&1 ||
    { tail -5 "$T/$r/drain.out"; fail "relay $r did not drain"; }
  "$CTL" -c "$T/$r/ccmail.conf" status > "$T/$r/status.txt" 2>&1 ||
    { cat "$T/$r/status.txt"; fail "ccmailctl status of relay $r"; }
  "$CTL" -c "$T/$r/ccmail.conf" --json status > "$T/$r/status.json" 2>/dev/null
done
e2e_log "drained in $((SECONDS - start))s; checking the outbox"

# ---------------------------------------------------------------- the proof, from the outbox files
# The checker (e2e.py verify) reads ONE outbox with one WATERMRK per post office. The relays'
# batches and watermarks are checked through a view of hard links in $T/checked: every batch
# file and manifest of every outbox (names carry the relay id; with SQLite ledgers they do not,
# and get the relay's letter in front), and, where a relay published into a post office, its
# own watermark (WATERMRK.<relay id>) must be there; it stands in for that post office's WATERMRK.
if [ "$OUTBOX_MODE" = shared ]; then outboxes=("$T/outbox"); else outboxes=("$T/a/outbox" "$T/b/outbox"); fi
for ob in "${outboxes[@]}"; do
  for f in "$ob"/*/*; do
    [ -f "$f" ] || continue
    name=${f##*/}; po=${f%/*}; po=${po##*/}
    mkdir -p "$T/checked/$po"
    case $name in
      WATERMRK*) ;;
      *) if [ "$LEDGER_KIND" = sqlite ]; then r=${ob%/outbox}; ln "$f" "$T/checked/$po/${r##*/}-$name"; else ln "$f" "$T/checked/$po/$name"; fi ;;
    esac
  done
  for d in "$ob"/*/; do
    [ -d "$d" ] || continue
    po=${d%/}; po=${po##*/}
    for r in "${RELAYS[@]}"; do
      if [ "$LEDGER_KIND" = sqlite ]; then
        [ "$ob" = "$T/$r/outbox" ] || continue
        batches=("$d"*.CCM); wm=WATERMRK
      else
        batches=("$d"relay-$r-*.CCM); wm=WATERMRK.relay-$r
      fi
      [ -e "${batches[0]}" ] || continue
      [ -f "$d$wm" ] || fail "relay $r published into $ob/$po but left no $wm"
      ln -f "$d$wm" "$T/checked/$po/WATERMRK"
    done
  done
done
$E2E_PY "$E2E_SRC/tests/e2e/e2e.py" verify --scenario multi_relay --map "$T/address-map" \
  --outbox "$T/checked" --sink "$T/sink.log" --lint "$LINT" --conf "$T/a/ccmail.conf" \
  "$T/sent.jsonl" > "$T/verify.out" 2>&1
rc=$?
cat "$T/verify.out"
$E2E_PY - "$T/verify.out" "$T/sent.jsonl" "$T/address-map" "$T/a/status.json" "$T/b/status.json" "$rc" <<'PY' || rc=1
import json, re, sys
verify_out, sent_log, map_path, status_a, status_b, rc = sys.argv[1:7]
line = [l for l in open(verify_out) if l.startswith("e2e multi_relay: ")]
if not line:
    print("problem: e2e.py verify printed no summary line"); sys.exit(1)
f = dict(re.findall(r"(\w+)=(\d+)", line[-1]))
amap = set()
for l in open(map_path):
    l = l.strip()
    if l and not l.startswith("#"):
        amap.add(l.split()[0].lower())
sent = [json.loads(l) for l in open(sent_log)]
resent = [r for r in sent if r.get("resent") == "accepted"]
resent_cc = sum(1 for r in resent for a in r["rcpts"] if a.lower() in amap)
print("multi_relay: sent=%s resent=%d exported=%s duplicates=%s lost=%s" %
      (f.get("sent", "?"), len(resent), f.get("exported", "?"), f.get("duplicates", "?"), f.get("lost", "?")))
bad = int(rc) != 0
# The re-sends must have reached the bridge and been recorded as duplicates in the shared ledger,
# otherwise the run proved nothing about dedup across relays.
dups = 0
for path in (status_a, status_b):
    try:
        led = json.load(open(path)).get("ledger", {})
    except Exception as e:
        print("problem: %s unreadable: %s" % (path, e)); bad = True; continue
    dups = max(dups, int(led.get("duplicates", 0)))   # the shared total, the same from each relay
if len(resent) == 0 or resent_cc == 0:
    print("problem: no message was re-sent to the other relay"); bad = True
elif dups < resent_cc:
    print("problem: the ledger recorded %d duplicates, fewer than the %d cc:Mail deliveries re-sent "
          "to the other relay" % (dups, resent_cc)); bad = True
else:
    print("ledger: %d deliveries recorded as duplicates (%d re-sent to the other relay)" % (dups, resent_cc))
sys.exit(1 if bad else 0)
PY

# ---------------------------------------------------------------- clean stop of every daemon
e2e_log "stopping the daemons"
for r in "${RELAYS[@]}"; do
  kill "${SUPS[$r]}" 2>/dev/null; wait "${SUPS[$r]}" 2>/dev/null
  grep -q 'supervisor: exporter [0-9]* stopped with status 0$' "$T/$r/exporter.log" ||
    { echo "problem: exporter $r did not stop cleanly: $(grep 'stopped with status' "$T/$r/exporter.log" | tail -1)"; rc=1; }
  kill "${MPIDS[$r]}" 2>/dev/null; wait "${MPIDS[$r]}"; mrc=$?; MPIDS[$r]=
  [ $mrc = 0 ] || { echo "problem: ccmail-milter $r exited with status $mrc on SIGTERM"; rc=1; }
done
san=$(grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: [A-Za-z]*Sanitizer' "$T"/{a,b}/milter.log "$T"/{a,b}/exporter.log 2>/dev/null)
[ -z "$san" ] || { echo "$san" | head -5; echo "problem: sanitizer report in the daemons' logs"; rc=1; }
e2e_log "done"
[ $rc = 0 ] || dump_multi_logs 40
exit $rc
