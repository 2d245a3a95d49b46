#!/bin/bash
# Process lifecycle of both daemons on a shared host (issue "Safe on a shared host"):
#  1. the pid file is written by the unprivileged daemon and never through a planted link;
#  2. an exiting milter leaves a successor's socket at its path alone;
#  3. a second milter refuses a socket a running milter listens on (and leaves it alone);
#  4. a stale socket of a killed milter is replaced;
#  5. SIGUSR1 (status line) and SIGUSR2 (ignored) kill neither daemon.
# Runs as root (the daemons drop to user nobody). Usage: process_lifecycle_test.sh <milter> <exporter>
set -u
MILTER=$1
EXPORTER=$2
. "${CCMAIL_SOURCE_DIR:-$(dirname "$0")/../..}/tests/mta/postfix.sh"  # milter_conf
[ "$(id -u)" = 0 ] || { echo "needs root (the daemons start as root and drop to nobody)"; exit 77; }
T=$(mktemp -d /tmp/ccmail-lifecycle.XXXXXX)
chmod 755 "$T"
TABLE=ccmail-lc-$$
PIDS=()
fail=0
problem() { echo "FAIL: $*"; fail=1; }
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -f /dev/shm/"$TABLE"-v* 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
mkdir -p "$T/spool" "$T/outbox" "$T/run" "$T/sock"
chown nobody "$T/spool" "$T/outbox" "$T/run" "$T/sock"
chmod 0750 "$T/run"
printf 'jsmith@cc.example  Smith, John at HUBPO2\n' > "$T/map"
milter_conf "$T/ccmail.conf" "milter_socket = unix:$T/sock/milter.sock" "milter_socket_group =" "milter_user = nobody" \
  "milter_pid_file = $T/run/ccmail-milter.pid" "exporter_user = nobody" \
  "exporter_pid_file = $T/run/ccmail-exporter.pid" "outbox_directory = $T/outbox"
chmod 644 "$T/ccmail.conf" "$T/map"

connectable() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(sys.argv[1])' "$1" 2>/dev/null; }
start_milter() {  # start_milter LOG [args]: sets MPID, waits for "listening on"
  local log=$1; shift
  "$MILTER" --stderr -c "$T/ccmail.conf" "$@" >> "$log" 2>&1 &
  MPID=$!; PIDS+=("$MPID")
  for _ in $(seq 1 300); do
    grep -q 'listening on' "$log" && return 0
    kill -0 "$MPID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
logged_within() {  # logged_within SECONDS PATTERN FILE
  for _ in $(seq 1 $(($1 * 10))); do grep -q "$2" "$3" && return 0; sleep 0.1; done
  return 1
}
stopped_within() {  # stopped_within SECONDS PID
  for _ in $(seq 1 $(($1 * 10))); do kill -0 "$2" 2>/dev/null || return 0; sleep 0.1; done
  return 1
}

echo "== 1. pid file: a link planted in its place is replaced, not followed"
echo precious > "$T/victim"
ln -s "$T/victim" "$T/run/ccmail-milter.pid"
start_milter "$T/m1.log" || { cat "$T/m1.log"; problem "milter did not start"; exit 1; }
[ "$(stat -c '%U %a' "$T/sock/milter.sock" 2>/dev/null)" = "nobody 660" ] || problem "socket is $(stat -c '%U:%G %a' "$T/sock/milter.sock" 2>&1), want owner milter_user (nobody), mode 0660"
[ "$(cat "$T/victim")" = precious ] || problem "the milter wrote its pid through a planted symlink into $T/victim"
[ -f "$T/run/ccmail-milter.pid" ] && [ ! -L "$T/run/ccmail-milter.pid" ] || problem "pid file is not a regular file"
[ "$(cat "$T/run/ccmail-milter.pid" 2>/dev/null)" = "$MPID" ] || problem "pid file does not hold the milter's pid $MPID"
[ "$(stat -c %U "$T/run/ccmail-milter.pid" 2>/dev/null)" = nobody ] || problem "pid file not written by the unprivileged daemon (owner $(stat -c %U "$T/run/ccmail-milter.pid" 2>/dev/null))"

echo "== 3. a second milter leaves the running milter's socket alone"
ino_before=$(stat -c %i "$T/sock/milter.sock")
A=$MPID
start_milter "$T/m2.log" -o milter_pid_file="$T/run/second.pid"
B=$MPID
if stopped_within 5 "$B"; then
  wait "$B"; rc=$?
  [ $rc != 0 ] || problem "second milter exited 0 although it could not listen"
  grep -q 'another milter is listening' "$T/m2.log" || { cat "$T/m2.log"; problem "second milter: no clear log line"; }
else
  problem "a second milter started on the socket of a running one"
  kill -9 "$B"; wait "$B" 2>/dev/null
fi
[ "$(stat -c %i "$T/sock/milter.sock" 2>/dev/null)" = "$ino_before" ] || problem "the running milter's socket was replaced"
connectable "$T/sock/milter.sock" || problem "the running milter's socket no longer answers"
[ "$(cat "$T/run/ccmail-milter.pid" 2>/dev/null)" = "$A" ] || problem "the second milter changed the running milter's pid file"

echo "== 2. an exiting milter leaves its successor's socket alone"
mv "$T/sock/milter.sock" "$T/sock/old.sock"   # the old one keeps listening on it
python3 -c 'import socket,sys,time; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8); open(sys.argv[2],"w").close(); time.sleep(120)' \
  "$T/sock/milter.sock" "$T/successor.ready" &
SUCC=$!; PIDS+=("$SUCC")
for _ in $(seq 1 50); do [ -e "$T/successor.ready" ] && break; sleep 0.1; done
echo "$SUCC" > "$T/run/ccmail-milter.pid.succ" && mv "$T/run/ccmail-milter.pid.succ" "$T/run/ccmail-milter.pid"
kill -TERM "$A"
stopped_within 40 "$A" || problem "milter did not stop on SIGTERM"
wait "$A" 2>/dev/null
[ -S "$T/sock/milter.sock" ] || problem "the exiting milter removed its successor's socket"
connectable "$T/sock/milter.sock" || problem "the successor's socket does not answer"
[ "$(cat "$T/run/ccmail-milter.pid" 2>/dev/null)" = "$SUCC" ] || problem "the exiting milter removed its successor's pid file"
kill "$SUCC" 2>/dev/null; wait "$SUCC" 2>/dev/null
rm -f "$T/sock/milter.sock" "$T/sock/old.sock"

echo "== 4. a stale socket (killed milter) is replaced"
start_milter "$T/m3.log" || { cat "$T/m3.log"; problem "milter did not start"; }
kill -9 "$MPID"; wait "$MPID" 2>/dev/null
[ -S "$T/sock/milter.sock" ] || problem "kill -9 left no socket (test setup)"
start_milter "$T/m4.log" || { cat "$T/m4.log"; problem "milter did not start over a stale socket"; }
connectable "$T/sock/milter.sock" || problem "new milter's socket does not answer"
echo "== 5a. SIGUSR1 / SIGUSR2 to the milter"
kill -USR1 "$MPID"
logged_within 5 'status: ' "$T/m4.log" || problem "SIGUSR1: no status line in the milter's log"
kill -0 "$MPID" 2>/dev/null || problem "SIGUSR1 killed the milter"
kill -USR2 "$MPID" 2>/dev/null
logged_within 5 'SIGUSR2 has no meaning' "$T/m4.log" || problem "SIGUSR2: no log line"
kill -0 "$MPID" 2>/dev/null || problem "SIGUSR2 killed the milter"

kill -TERM "$MPID"; wait "$MPID" 2>/dev/null
[ -e "$T/sock/milter.sock" ] && problem "the milter left its own socket behind at exit"
[ -e "$T/run/ccmail-milter.pid" ] && problem "the milter left its own pid file behind at exit"

echo "== 5b. SIGUSR1 / SIGUSR2 to the exporter"
"$EXPORTER" --stderr -c "$T/ccmail.conf" >> "$T/x.log" 2>&1 &
X=$!; PIDS+=("$X")
for _ in $(seq 1 300); do grep -q 'exporter started' "$T/x.log" && break; kill -0 "$X" 2>/dev/null || break; sleep 0.1; done
grep -q 'exporter started' "$T/x.log" || { cat "$T/x.log"; problem "exporter did not start"; }
kill -USR1 "$X"
logged_within 5 'status: ' "$T/x.log" || problem "SIGUSR1: no status line in the exporter's log"
kill -0 "$X" 2>/dev/null || problem "SIGUSR1 killed the exporter"
kill -USR2 "$X" 2>/dev/null
logged_within 5 'SIGUSR2 has no meaning' "$T/x.log" || problem "SIGUSR2: no log line in the exporter's log"
kill -0 "$X" 2>/dev/null || problem "SIGUSR2 killed the exporter"
[ "$(stat -c %U "$T/run/ccmail-exporter.pid" 2>/dev/null)" = nobody ] || problem "exporter pid file not written by the unprivileged daemon"
kill -TERM "$X" 2>/dev/null; wait "$X" 2>/dev/null

if [ $fail != 0 ]; then
  for f in "$T"/*.log; do echo "--- $f"; tail -15 "$f"; done
  exit 1
fi
echo PASS
