#!/bin/bash
# `systemctl restart ccmail-milter` under load, with and without the inherited socket
# (ccmail-milter.socket), against a private Postfix on 127.0.0.1: SESSIONS parallel SMTP
# sessions send MESSAGES messages (one per connection, to a cc:Mail user) while the milter is
# restarted RESTARTS times (SIGTERM, wait for the exit, start), as socket_supervisor.py does it.
# Counts the 4xx answers Postfix gave for milter reasons (maillog "milter-reject ... 4xx").
# smtp-source ends a whole run at the first 4xx it gets, so the load goes on with a new run
# until the restarts are done: without the inherited socket the 4xx count is a lower bound.
# Fails when the milter run with the inherited socket caused any 4xx.
# Usage: restart_under_load_test.sh <ccmail-milter> [modes: "inherit bind"]
#   env: RESTARTS (3), MESSAGES (600), SESSIONS (10), INTERVAL (1.0 s between restarts)
set -u
MILTER=$1
MODES=${2:-inherit}
RESTARTS=${RESTARTS:-3}
MESSAGES=${MESSAGES:-600}
SESSIONS=${SESSIONS:-10}
INTERVAL=${INTERVAL:-1.0}
HERE=$(cd "$(dirname "$0")" && pwd)
. "${CCMAIL_SOURCE_DIR:-$HERE/../..}/tests/mta/postfix.sh"
command -v postfix >/dev/null || { echo "postfix not installed"; exit 1; }
command -v smtp-source >/dev/null || { echo "smtp-source not installed (package postfix)"; exit 1; }

T=$(mktemp -d /tmp/ccmail-restart.XXXXXX)
chmod 755 "$T"
SUP=
TABLE=ccmail-rs-$$
cleanup() {
  pf_stop "$T/pf"
  [ -n "$SUP" ] && kill "$SUP" 2>/dev/null && wait "$SUP" 2>/dev/null
  rm -f /dev/shm/"$TABLE"-v*
  [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
mkdir -p "$T/spool" "$T/sock"
chown nobody "$T/spool" "$T/sock"
printf 'kim@cc.example  Kim Lee at HUBPO\n' > "$T/map"
milter_conf "$T/ccmail.conf" "milter_socket = unix:$T/sock/milter.sock" "milter_socket_group = postfix" \
  "milter_socket_mode = 0660" "milter_user = nobody" "milter_pid_file =" "claim_table_slots = 65536" \
  "spool_min_free = 16m" "exporter_stall_timeout = 1h" "log_level = info"
pf_start "$T/pf" "smtpd_milters = unix:$T/sock/milter.sock" "milter_protocol = 6" \
  "milter_connect_timeout = 30s" "default_process_limit = 100" || exit 1

rc=0
for mode in $MODES; do
  rm -f "$T/go" "$T/go.restarts" "$T/go.done" "$T/ready"
  : > "$T/pf/maillog"
  inherit=; [ "$mode" = inherit ] && inherit=--inherit
  python3 "$HERE/socket_supervisor.py" --socket "$T/sock/milter.sock" $inherit --group postfix \
    --ready "$T/ready" --go "$T/go" --restarts "$RESTARTS" --interval "$INTERVAL" -- \
    "$MILTER" --stderr -c "$T/ccmail.conf" > "$T/milter-$mode.log" 2>&1 &
  SUP=$!
  wait_until 60 "$SUP" supervisor test -e "$T/ready" || { cat "$T/milter-$mode.log"; exit 1; }
  wait_until 60 "$SUP" milter grep -q 'listening on' "$T/milter-$mode.log" || { cat "$T/milter-$mode.log"; exit 1; }
  start=$SECONDS
  from_line=$(($(wc -l < "$T/pf/maillog") + 1))  # Postfix's start-up probe met no milter yet
  touch "$T/go"
  # Load for as long as the restarts go on (and at least MESSAGES messages).
  runs=0
  while :; do
    smtp-source -s "$SESSIONS" -m "$MESSAGES" -l 2000 -f alice@example.org -t kim@cc.example \
      "127.0.0.1:$PF_PORT" 2>> "$T/smtp-source-$mode.err"
    runs=$((runs + 1))  # smtp-source exits at the first 4xx: a new run continues the load
    [ -e "$T/go.done" ] && break
  done
  secs=$((SECONDS - start))
  kill "$SUP"; wait "$SUP"; SUP=
  sleep 1
  tail -n +"$from_line" "$T/pf/maillog" > "$T/maillog-$mode"
  four=$(grep -cE 'milter-reject: .*: 4[0-9][0-9] ' "$T/maillog-$mode")
  ok=$(grep -c ': capture=' "$T/milter-$mode.log")
  # What the clients saw: Postfix logs a refused milter connection at CONNECT and HELO too,
  # but answers 250 there and the 4xx at MAIL.
  client4=$(grep -E 'milter-reject: .*: 4[0-9][0-9] ' "$T/maillog-$mode" | grep -vcE 'milter-reject: (CONNECT|HELO) ')
  restarted=$(grep -c '^restart' "$T/go.restarts" 2>/dev/null)
  echo "mode=$mode restarts=$restarted smtp_source_runs=$runs captured=$ok client_4xx=$client4 milter_reject_log_lines=$four seconds=$secs"
  sed 's/^/  /' "$T/go.restarts"
  grep -E 'milter-reject' "$T/maillog-$mode" | sed -E 's/.*milter-reject: ([A-Z-]+) .*: (4[0-9][0-9] [0-9.]+ [^;]*).*/\1 \2/' | sort | uniq -c | sed 's/^/  /'
  [ "$restarted" = "$RESTARTS" ] || { echo "FAIL: $mode: $restarted of $RESTARTS restarts"; rc=1; }
  if [ "$mode" = inherit ] && [ "$four" != 0 ]; then
    echo "FAIL: with the inherited socket the MTA answered $four time(s) 4xx during restarts"
    grep -E 'milter-reject|warning: milter' "$T/maillog-$mode" | head -5
    tail -20 "$T/milter-$mode.log"
    rc=1
  fi
done
[ $rc = 0 ] && echo PASS
exit $rc
