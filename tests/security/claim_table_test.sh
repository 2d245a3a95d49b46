#!/bin/bash
# Claim-table attacks (issue "Safe on a shared host"), played as REAL unprivileged users
# (`nobody`, and the MTA user `postfix` in the milter-socket group AND the bridge group,
# the most an MTA user could ever be given) against the REAL ccmail-milter and
# ccmail-exporter running as the dedicated user ccmail-sectest. Mail is sent with
# miltertest as `postfix`; every message the milter accepted must be in the outbox exactly
# once at the end, and every attack must leave both daemons running.
#   1. /dev/shm squat: an empty file under the table's old /dev/shm name
#   2. a well-formed table made by `nobody`, mode 0666, under the old /dev/shm name, then
#      truncated while the daemons run (SIGBUS before the table moved)
#   3. as nobody and as postfix: truncate/write/replace the table, create files in the
#      runtime directory, hold the registry and init locks (live.lock, <name>.init.lock)
#   4. a runtime directory left group-writable: exporter exits 78, milter answers 451
#      4.3.0 (never crashes) until it is 0750 again; ccmailctl as a group member reads the table
# Usage: claim_table_test.sh <ccmail-milter> <ccmail-exporter> <ccmailctl>
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
sec_init claim-table
command -v miltertest >/dev/null || { echo "FAIL: miltertest not installed (apt-get install miltertest)"; exit 1; }
getent passwd postfix >/dev/null || { echo "FAIL: no user postfix (Postfix is a test dependency)"; exit 1; }

D=ccmail-sectest          # the bridge user; its primary group stands in for `ccmail`
MG=ccmail-sectest-milter  # stands in for `ccmail-milter`: the MTA user's only way in
sec_user "$D" "$MG"
MTA="postfix:$MG,$D"
NOBODY=nobody
ADMIN="nobody:$D"         # an administrator in the bridge group (read-only access)
sec_copy_bins "$1" "$2" "$3" "$HERE/hold_locks.py" "$HERE/send.lua"
MILTER=$SEC_BIN/$(basename "$1") EXPORTER=$SEC_BIN/$(basename "$2") CTL=$SEC_BIN/$(basename "$3")
TABLE=ccmail-sec-$$
SHM=/dev/shm/$TABLE-v1
RUN=$T/run
REG=16
SEC_CLEANUP_HOOK='rm -f "$SHM"'

mkdir -p "$T/bridge/spool" "$T/bridge/outbox" "$T/sock"
chown -R "$D:$D" "$T/bridge"
chmod 750 "$T/bridge" "$T/bridge/outbox"
chmod 700 "$T/bridge/spool"
install -d -o "$D" -g "$D" -m 750 "$RUN"   # as systemd's RuntimeDirectory= makes it
chown "$D:$MG" "$T/sock"
chmod 2750 "$T/sock"   # setgid: the socket the unprivileged milter makes gets group $MG
printf 'jsmith@corp.example  Smith, John at HUBPO2\n' > "$T/map"
cat > "$T/ccmail.conf" <<CONF
spool_directory = $T/bridge/spool
outbox_directory = $T/bridge/outbox
runtime_directory = $RUN
claim_table_name = $TABLE
claim_table_slots = 64
claim_table_registry = $REG
bridge_group = $D
milter_socket = unix:$T/sock/milter.sock
milter_socket_group = $MG
milter_socket_mode = 0660
milter_user =
milter_pid_file = $RUN/ccmail-milter.pid
exporter_user =
exporter_pid_file = $RUN/ccmail-exporter.pid
address_map = $T/map
ccmail_domains = corp.example
spool_min_free = 1m
CONF
chmod 644 "$T/map" "$T/ccmail.conf"
ACCEPTED=()
MPID= XPID=
# SEC_PHASES="2 4" plays only those attacks (to see each one fail against an old build).
phase() { [[ " ${SEC_PHASES:-1 2 3 4} " == *" $1 "* ]]; }

start_exporter() { sec_start XPID "$T/exporter.log" "$D" "$EXPORTER" --stderr -c "$T/ccmail.conf"; }
start_milter() {
  rm -f "$T/sock/milter.sock"
  sec_start MPID "$T/milter.log" "$D" "$MILTER" --stderr -c "$T/ccmail.conf"
  wait_for 30 test -S "$T/sock/milter.sock" || fail "the milter did not open its socket"
}
start_both() { start_exporter; start_milter; sleep 0.5; sec_alive "$XPID" "ccmail-exporter"; sec_alive "$MPID" "ccmail-milter"; }
stop() { [ -n "${1:-}" ] && kill "$1" 2>/dev/null && wait "$1" 2>/dev/null; }
stop_both() { stop "$MPID"; stop "$XPID"; MPID= XPID=; }

# send TAG N WANT: N messages as the MTA user; WANT accepted|refused for every one of them.
send() {
  local tag=$1 n=$2 want=$3 out=$T/send-$1.out
  CCMAIL_SOCK="unix:$T/sock/milter.sock" SEC_N=$n SEC_TAG=$tag as_user "$MTA" timeout 60 miltertest -s "$SEC_BIN/send.lua" > "$out" 2>&1
  local got
  got=$(grep -c "^${want^^} " "$out")
  [ "$got" = "$n" ] || { cat "$out"; fail "$tag: $got of $n messages $want"; }
  [ "$want" = accepted ] && ACCEPTED+=($(awk '/^ACCEPTED /{print $2}' "$out"))
  pass "$tag: $n messages $want"
}

# ---- 1. an empty file squatting the table's old /dev/shm name
if phase 1; then
as_user "$NOBODY" sh -c ": > '$SHM'" || fail "cannot prepare the squat"
start_both
[ "$(stat -c %U:%a "$RUN/$TABLE-v1")" = "$D:640" ] || fail "table is $(stat -c %U:%a "$RUN/$TABLE-v1" 2>&1), want $D:640"
[ "$(stat -c %a "$RUN/live.lock")" = 600 ] || fail "live.lock is $(stat -c %a "$RUN/live.lock"), want 600"
send squat 3 accepted
sec_alive "$XPID" "ccmail-exporter"; sec_alive "$MPID" "ccmail-milter"
fi

# ---- 2. a well-formed table of nobody's, mode 0666, then truncated under the daemons
if phase 2; then
stop_both
rm -f "$SHM"
mkdir -p "$T/evil/spool" "$T/evil/run" "$T/evil/outbox"
chown -R "$NOBODY" "$T/evil"
chmod 700 "$T/evil/run"
sed -e "s|$T/bridge/|$T/evil/|; s|^runtime_directory = .*|runtime_directory = $T/evil/run|" \
    -e "s|^bridge_group = .*|bridge_group =|; s|^milter_pid_file.*||; s|^exporter_pid_file.*||" "$T/ccmail.conf" > "$T/evil.conf"
chmod 644 "$T/evil.conf"
as_user "$NOBODY" "$EXPORTER" --stderr -c "$T/evil.conf" --drain >> "$T/evil.log" 2>&1 || fail "nobody's own exporter failed"
if [ ! -e "$SHM" ]; then as_user "$NOBODY" cp "$T/evil/run/$TABLE-v1" "$SHM" || fail "cannot copy nobody's table"; fi
as_user "$NOBODY" chmod 0666 "$SHM" || fail "cannot chmod nobody's table"
start_both
send forged 3 accepted
as_user "$NOBODY" truncate -s 0 "$SHM" && pass "nobody truncated $SHM (harmless now)"
sec_expect_denied "truncate the claim table" "$NOBODY" truncate -s 0 "$RUN/$TABLE-v1"
send after-truncate 3 accepted
sleep 1
sec_alive "$XPID" "ccmail-exporter"; sec_alive "$MPID" "ccmail-milter"
fi

# ---- 3. the runtime directory and its files, as nobody and as the MTA user
if phase 3; then
[ -n "$MPID" ] || start_both
for who in "$NOBODY" "$MTA"; do
  sec_expect_denied "truncate the claim table" "$who" truncate -s 0 "$RUN/$TABLE-v1"
  sec_expect_denied "write into the claim table" "$who" sh -c "printf x | dd of='$RUN/$TABLE-v1' conv=notrunc status=none"
  sec_expect_denied "replace the claim table" "$who" ln -sf /dev/null "$RUN/$TABLE-v1"
  sec_expect_denied "create a file in the runtime directory" "$who" touch "$RUN/planted"
  sec_expect_denied "open live.lock (registry locks)" "$who" sh -c ": < '$RUN/live.lock'"
  sec_expect_denied "truncate live.lock" "$who" truncate -s 0 "$RUN/live.lock"
done
# The lock attack for real: hold every registry byte and the init lock while the milter restarts.
SEC_EXEC=1 as_user "$MTA" "$SEC_BIN/hold_locks.py" "$RUN" "$TABLE" "$REG" 30 > "$T/locks.out" 2>&1 &
LOCKER=$!
SEC_PIDS+=("$LOCKER")
wait_for 5 grep -q . "$T/locks.out"
grep -q HELD "$T/locks.out" && fail "postfix holds the registry and init locks: $(cat "$T/locks.out")"
pass "denied: hold the registry locks (as postfix): $(cat "$T/locks.out")"
stop "$MPID"; MPID=
start_milter
send locks 3 accepted
stop "$LOCKER"
fi

# ---- 4. a group-writable runtime directory is refused, without a crash, until repaired
if phase 4; then
stop_both
chmod 770 "$RUN"
as_user "$D" timeout 20 "$EXPORTER" --stderr -c "$T/ccmail.conf" >> "$T/exporter.log" 2>&1
rc=$?
[ $rc = 78 ] || fail "exporter exit status $rc on a group-writable runtime directory, want 78"
grep -q "runtime_directory $RUN is unsafe" "$T/exporter.log" || fail "no clear exporter log line"
pass "exporter refuses a 0770 runtime directory (exit 78)"
start_milter
send unsafe-dir 2 refused
grep -q "is unsafe" "$T/milter.log" || fail "no clear milter log line"
sec_alive "$MPID" "ccmail-milter"
chmod 750 "$RUN"
start_exporter
sleep 1.2   # the milter's reopen_interval
send repaired 3 accepted
sec_alive "$XPID" "ccmail-exporter"; sec_alive "$MPID" "ccmail-milter"
fi

# ccmailctl as an administrator in the bridge group: reads the table, changes nothing.
as_user "$ADMIN" "$CTL" -c "$T/ccmail.conf" --json status > "$T/ctl.out" 2>&1 || { cat "$T/ctl.out"; fail "ccmailctl status as a group member"; }
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if j["table"]["state"]=="ok" else 1)' "$T/ctl.out" \
  || { cat "$T/ctl.out"; fail "ccmailctl does not read the table as a group member"; }
pass "ccmailctl reads the table as a member of the bridge group"

# ---- nothing lost: every accepted message exported exactly once
wait_for 30 sh -c "[ -z \"\$(ls -A '$T/bridge/spool/spool/new' 2>/dev/null)\" ]" || fail "the exporter did not drain the spool"
stop_both
bad=0
for id in "${ACCEPTED[@]}"; do
  n=$(cat "$T"/bridge/outbox/*/* 2>/dev/null | grep -c "security suite message $id\b")
  [ "$n" = 1 ] || { echo "message $id exported $n times"; bad=1; }
done
for id in unsafe-dir-1 unsafe-dir-2; do
  n=$(cat "$T"/bridge/outbox/*/* 2>/dev/null | grep -c "security suite message $id\b")
  [ "$n" = 0 ] || { echo "refused message $id exported $n times"; bad=1; }
done
[ $bad = 0 ] || { ls -lR "$T/bridge/outbox"; fail "outbox does not hold every accepted message exactly once"; }
pass "${#ACCEPTED[@]} accepted messages, each exported exactly once"
echo PASS
