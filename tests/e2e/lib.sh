# tests/e2e/lib.sh - the whole bridge on loopback, for the end-to-end suite and scripts/demo.sh.
#
# Source it from bash (set -u friendly), then:
#   e2e_init NAME                 # checks root/postfix (exit 77 otherwise), makes $T, traps EXIT,
#                                 # sets SCALE; fail MSG prints the logs' tails and exits 1
#   e2e_find_bins                 # MILTER EXPORTER CTL LINT from $CCMAIL_BINARY_DIR (or env)
#   e2e_write_map; e2e_write_conf [extra lines]   # $T/address-map, $T/ccmail.conf
#   e2e_start_sink                # loopback SMTP sink standing in for the Internet ($SINK_PORT)
#   e2e_start_milter / e2e_stop_milter / e2e_kill_milter / e2e_kill_milter_after N CLIENT_PID
#   e2e_start_exporter / e2e_supervise_exporter (restarts it whenever it dies, like systemd)
#   e2e_start_postfix             # private Postfix: smtpd on 127.0.0.1:$PF_PORT, smtpd_milters and
#                                 # non_smtpd_milters = ccmail-milter, everything else relayed to the sink
#   e2e_drain SECONDS             # waits until Postfix's queue and the bridge's backlog are empty
#   e2e_verify SCENARIO LOGS...   # the checker (e2e.py verify): prints the summary line
#   e2e_finish                    # SIGTERM to exporter and milter: clean exit, no sanitizer report
# Everything lives in $T (a temp dir); e2e_cleanup (the EXIT trap) stops every process started
# here by its pid, stops Postfix, and deletes $T (with the claim table in $T/run) unless KEEP=1.
# Postfix is started with `postfix -c $T/pf/etc` by tests/mta/postfix.sh's pf_start, with the
# transports overridden to relay to the sink; /etc/postfix and a running system MTA are never
# touched.

E2E_SRC=${CCMAIL_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
E2E_PY=${E2E_PY:-python3}
E2E_USER=${E2E_USER:-nobody}
E2E_GROUP=${E2E_GROUP:-nogroup}
E2E_PIDS=()
. "$E2E_SRC/tests/mta/postfix.sh"   # pf_start, pf_stop, mta_free_port, wait_until, smtp_send
MPID= XPID= SUPPID= SINKPID=
T=

e2e_log() { echo "[$(date +%H:%M:%S)] $*"; }
# A scenario's failure: what failed, the tail of every log, exit 1 (the EXIT trap cleans up).
fail() { echo "FAIL: $*"; e2e_dump_logs 40; exit 1; }

e2e_init() {
  E2E_NAME=$1
  # Message counts are multiplied by SCALE (the ASan build runs a fraction).
  SCALE=${CCMAIL_E2E_SCALE:-${E2E_DEFAULT_SCALE:-1.0}}
  if [ "$(id -u)" -ne 0 ]; then echo "e2e $E2E_NAME: SKIP (needs root: Postfix's master runs as root)"; exit 77; fi
  if ! command -v postfix >/dev/null || ! command -v postconf >/dev/null; then
    echo "e2e $E2E_NAME: SKIP (postfix is not installed; scripts/install-deps.sh installs it)"; exit 77
  fi
  T=$(mktemp -d "/tmp/ccmail-e2e-$E2E_NAME.XXXXXX")
  chmod 755 "$T"
  E2E_TABLE="ccmail-e2e-${T##*.}"
  trap e2e_cleanup EXIT
  trap 'exit 130' INT TERM
}

e2e_cleanup() {
  local rc=$?
  [ -n "$SUPPID" ] && kill "$SUPPID" 2>/dev/null && wait "$SUPPID" 2>/dev/null
  SUPPID=
  e2e_stop_exporter
  e2e_stop_milter
  pf_stop "$T/pf"
  [ -n "$SINKPID" ] && kill "$SINKPID" 2>/dev/null && wait "$SINKPID" 2>/dev/null
  local p
  for p in "${E2E_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${E2E_PIDS[@]}"; do wait "$p" 2>/dev/null; done
  [ -n "${E2E_CLEANUP_HOOK:-}" ] && eval "$E2E_CLEANUP_HOOK"
  if [ -n "$T" ] && [ -d "$T" ]; then
    if [ "${KEEP:-0}" = 1 ] || [ "$rc" != 0 -a "${KEEP_ON_FAIL:-0}" = 1 ]; then
      echo "e2e: files kept in $T"
    else
      rm -rf "$T"
    fi
  fi
  return $rc
}

# Binaries: CMake passes their paths; by hand, CCMAIL_BINARY_DIR is enough.
e2e_find_bins() {
  local b=${CCMAIL_BINARY_DIR:-$E2E_SRC/build/release}
  MILTER=${E2E_MILTER:-$b/milter/ccmail-milter}
  EXPORTER=${E2E_EXPORTER:-$b/exporter/ccmail-exporter}
  CTL=${E2E_CTL:-$b/ctl/ccmailctl}
  LINT=${E2E_LINT:-$b/ccmail_format/ccmail-lint}
  local x missing=
  for x in "$MILTER" "$EXPORTER" "$CTL" "$LINT"; do [ -x "$x" ] || missing="$missing $x"; done
  if [ -n "$missing" ]; then echo "e2e ${E2E_NAME:-}: FAIL: not built:$missing"; return 1; fi
}

# Users of the demo and the tests: three post offices, and Internet recipients elsewhere.
e2e_write_map() {
  cat > "$T/address-map" <<'MAP'
# SMTP address                   cc:Mail name at post office
jsmith@ccmail.corp.example       Smith, John at HUBPO2
admin@ccmail.corp.example        Admin at HUBPO2
tnguyen@ccmail.corp.example      Nguyen, Thanh at HUBPO2
mgarcia@ccmail.corp.example      Garcia, Maria at SALESPO
rkumar@ccmail.corp.example       Kumar, Ravi at SALESPO
lchen@ccmail.corp.example        Chen, Li at SALESPO
obrien@ccmail.corp.example       O'Brien, Sean at FINPO
afischer@ccmail.corp.example     Fischer, Anna at FINPO
MAP
}

# e2e_write_conf ["name = value"...]: the bridge's config; the state dir is ${E2E_STATE:-$T/bridge}.
e2e_write_conf() {
  local base=${E2E_STATE:-$T/bridge}
  mkdir -p "$base/spool" "$base/outbox" "$T/run" "$T/sock"
  chown -R "$E2E_USER:$E2E_GROUP" "$base" "$T/run"
  chmod 770 "$base" "$base/spool" "$base/outbox"
  chmod 750 "$T/run"   # the claim table refuses a group-writable runtime directory
  cat > "$T/ccmail.conf" <<CONF
# ccmail-bridge configuration written by tests/e2e/lib.sh for one private run
spool_directory = $base/spool
outbox_directory = $base/outbox
runtime_directory = $T/run
claim_table_name = $E2E_TABLE
bridge_group = $E2E_GROUP
milter_socket = unix:$T/sock/milter.sock
milter_socket_group = postfix
milter_socket_mode = 0660
milter_user = $E2E_USER
milter_pid_file = $T/run/ccmail-milter.pid
exporter_user = $E2E_USER
exporter_pid_file = $T/run/ccmail-exporter.pid
ccmail_domains = ccmail.corp.example
address_map = $T/address-map
spool_min_free = 16m
log_level = info
CONF
  conf_set "$T/ccmail.conf" "$@"   # extra lines replace the default of their name
}

e2e_start_sink() {
  rm -f "$T/sink.port"
  $E2E_PY "$E2E_SRC/tests/e2e/e2e.py" sink --log "$T/sink.log" --ready "$T/sink.port" ${E2E_SINK_DUMP:+--dump "$E2E_SINK_DUMP"} 2> "$T/sink.err" &
  SINKPID=$!
  wait_until 60 "$SINKPID" "sink" test -s "$T/sink.port" || { cat "$T/sink.err"; echo "sink did not start"; return 1; }
  SINK_PORT=$(cat "$T/sink.port")
}

e2e_start_milter() {
  rm -f "$T/sock/milter.sock"
  "$MILTER" --stderr -c "$T/ccmail.conf" "$@" >> "$T/milter.log" 2>&1 &
  MPID=$!
  wait_until 60 "$MPID" "ccmail-milter" test -S "$T/sock/milter.sock" && return 0
  tail -20 "$T/milter.log"; echo "ccmail-milter did not start"; return 1
}

# Once the milter has logged WANT captures (or the client CLIENT_PID is gone), SIGKILLs it and
# starts it again: the MTA answers 4xx for messages in flight (tempfail) and the client retries.
e2e_kill_milter_after() {
  local want=$1 client=$2 i
  for i in $(seq 1 600); do
    [ "$(grep -c 'capture=' "$T/milter.log")" -ge "$want" ] && break
    kill -0 "$client" 2>/dev/null || break
    sleep 0.2
  done
  e2e_log "killing the milter (kill -9) and starting it again"
  e2e_kill_milter
  sleep 1
  e2e_start_milter
}

e2e_stop_milter() {
  [ -n "$MPID" ] || return 0
  kill "$MPID" 2>/dev/null && wait "$MPID" 2>/dev/null
  MPID=
}

e2e_kill_milter() {
  [ -n "$MPID" ] || return 0
  kill -9 "$MPID" 2>/dev/null; wait "$MPID" 2>/dev/null
  MPID=
}

e2e_start_exporter() {
  "$EXPORTER" --stderr -c "$T/ccmail.conf" "$@" >> "$T/exporter.log" 2>&1 &
  XPID=$!
  echo "$XPID" > "$T/exporter.pid.e2e"
}

e2e_stop_exporter() {
  [ -n "$XPID" ] || return 0
  kill "$XPID" 2>/dev/null && wait "$XPID" 2>/dev/null
  XPID=
}

# Like systemd's Restart=always: a background loop that restarts the exporter when it exits
# (killed with SIGKILL by a test, or exited after an I/O error it treats as a crash).
# Its pid goes to $T/exporter.pid.e2e so a killer can find the current one.
e2e_supervise_exporter() {
  (
    trap 'kill $x 2>/dev/null; wait $x; echo "supervisor: exporter $x stopped with status $?" >> "$T/exporter.log"; exit 0' TERM
    n=0
    while :; do
      "$EXPORTER" --stderr -c "$T/ccmail.conf" >> "$T/exporter.log" 2>&1 &
      x=$!
      echo "$x" > "$T/exporter.pid.e2e"
      wait $x
      rc=$?
      n=$((n + 1))
      echo "supervisor: exporter $x exited with $rc (start $n)" >> "$T/exporter.log"
      sleep 0.3
    done
  ) 2>> "$T/exporter.log" &
  SUPPID=$!
  sleep 0.5
}

# Kills the exporter with SIGKILL every MIN..MAX seconds (random) until $T/stop-killing exists.
e2e_exporter_killer() {
  local min=$1 max=$2
  (
    kills=0
    while [ ! -e "$T/stop-killing" ]; do
      sleep "$(awk -v a="$min" -v b="$max" -v s="$RANDOM" 'BEGIN{srand(s); printf "%.2f", a + rand() * (b - a)}')"
      [ -e "$T/stop-killing" ] && break
      p=$(cat "$T/exporter.pid.e2e" 2>/dev/null)
      [ -n "$p" ] && kill -9 "$p" 2>/dev/null && kills=$((kills + 1))
    done
    echo "$kills" > "$T/exporter.kills"
  ) &
  E2E_PIDS+=($!)
}

e2e_ctl() { "$CTL" -c "$T/ccmail.conf" "$@"; }

# The bridge's Postfix: milters on both paths, tempfail when the milter is unreachable, and every
# non-cc:Mail recipient relayed to the sink on loopback. Limits raised so that 20 parallel
# sessions and retries after 4xx are not slowed down by Postfix's anti-abuse delays.
e2e_start_postfix() {
  pf_start "$T/pf" \
    "smtpd_milters = unix:$T/sock/milter.sock" \
    "non_smtpd_milters = unix:$T/sock/milter.sock" \
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
    "delay_warning_time = 0" \
    "$@"
}

# Postfix's queue: number of files in incoming, active, deferred, hold and maildrop.
e2e_pf_queue() {
  find "$T/pf/queue/incoming" "$T/pf/queue/active" "$T/pf/queue/deferred" "$T/pf/queue/hold" \
    "$T/pf/queue/maildrop" -type f 2>/dev/null | wc -l
}

# Waits until Postfix has nothing queued and `ccmailctl drain` says the bridge exported
# everything. Prints how long it took.
e2e_drain() {
  local secs=${1:-120} start=$SECONDS
  while [ $((SECONDS - start)) -lt "$secs" ]; do
    [ "$(e2e_pf_queue)" = 0 ] && break
    postqueue -c "$T/pf/etc" -f >/dev/null 2>&1 || true
    sleep 1
  done
  local left=$((secs - (SECONDS - start)))
  [ $left -lt 10 ] && left=10
  if ! timeout $((left + 10)) "$CTL" -c "$T/ccmail.conf" drain --timeout "${left}s" > "$T/drain.out" 2>&1; then
    echo "ccmailctl drain failed or timed out:"; tail -5 "$T/drain.out"
    return 1
  fi
  e2e_log "drained in $((SECONDS - start))s (postfix queue $(e2e_pf_queue))"
}

# ccmailctl status must show an empty backlog, and the spool (spool/new, out/tmp) must agree.
e2e_check_backlog() {
  "$CTL" -c "$T/ccmail.conf" status > "$T/status.txt" 2>&1
  local rc=$?
  "$CTL" -c "$T/ccmail.conf" --json status > "$T/status.json" 2>/dev/null
  local base=${E2E_STATE:-$T/bridge}
  local pending parts
  pending=$(find "$base/spool/spool/new" -type f 2>/dev/null | wc -l)
  parts=$(find "$base/spool/out/tmp" -type f 2>/dev/null | wc -l)
  $E2E_PY - "$T/status.json" "$pending" "$rc" "$parts" <<'PY'
import json, sys
path, pending, rc, parts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
bad = []
if rc != 0:
    bad.append("ccmailctl status exit %d" % rc)
try:
    st = json.load(open(path))
except Exception as e:
    st = None
    bad.append("ccmailctl status --json unreadable: %s" % e)
def walk(o, pre=""):
    if isinstance(o, dict):
        for k, v in o.items():
            yield from walk(v, pre + "." + k if pre else k)
    else:
        yield pre, o
if st is not None:
    found = False
    for k, v in walk(st):
        lk = k.lower()
        if ("backlog" in lk or "pending" in lk) and isinstance(v, (int, float)) and not isinstance(v, bool):
            found = True
            if v != 0:
                bad.append("status %s = %s" % (k, v))
    if not found:
        bad.append("status --json has no backlog/pending count")
if pending:
    bad.append("%d files left in spool/new" % pending)
if parts:
    bad.append("%d files left in out/tmp" % parts)
led = (st or {}).get("ledger") or {}
print("ledger: " + " ".join("%s=%s" % (k, led[k]) for k in ("epoch", "captures", "exported", "duplicates", "batches") if k in led))
print("backlog: " + ("empty" if not bad else "; ".join(bad)))
sys.exit(1 if bad else 0)
PY
}

# Stops the exporter (and its supervisor) and the milter with SIGTERM, as systemd does, and
# fails when one of them did not exit 0 or a sanitizer (ASan, LSan, UBSan builds) reported
# anything in their logs during the run.
e2e_finish() {
  local bad=0 rc
  if [ -n "$SUPPID" ]; then
    kill "$SUPPID" 2>/dev/null; wait "$SUPPID" 2>/dev/null; SUPPID=
    grep -q 'supervisor: exporter [0-9]* stopped with status 0$' "$T/exporter.log" \
      || { echo "problem: ccmail-exporter did not stop cleanly: $(grep 'stopped with status' "$T/exporter.log" | tail -1)"; bad=1; }
  fi
  if [ -n "$XPID" ]; then
    kill "$XPID" 2>/dev/null; wait "$XPID"; rc=$?; XPID=
    [ $rc = 0 ] || { echo "problem: ccmail-exporter exited with status $rc on SIGTERM"; bad=1; }
  fi
  if [ -n "$MPID" ]; then
    kill "$MPID" 2>/dev/null; wait "$MPID"; rc=$?; MPID=
    [ $rc = 0 ] || { echo "problem: ccmail-milter exited with status $rc on SIGTERM"; bad=1; }
  fi
  local san
  san=$(grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: [A-Za-z]*Sanitizer' "$T/milter.log" "$T/exporter.log" 2>/dev/null)
  if [ -n "$san" ]; then
    echo "$san" | head -5; echo "problem: sanitizer report in the daemons' logs"; bad=1
  fi
  return $bad
}

e2e_verify() {
  local scenario=$1; shift
  $E2E_PY "$E2E_SRC/tests/e2e/e2e.py" verify --scenario "$scenario" --map "$T/address-map" \
    --outbox "${E2E_STATE:-$T/bridge}/outbox" --sink "$T/sink.log" --lint "$LINT" --conf "$T/ccmail.conf" "$@"
}

# Shows the last lines of every log (on failure).
e2e_dump_logs() {
  local f
  for f in "$T/milter.log" "$T/exporter.log" "$T/pf/maillog" "$T/sink.err"; do
    [ -f "$f" ] && { echo "--- $f (tail)"; tail -n "${1:-30}" "$f"; }
  done
}
