#!/bin/bash
# What ccmail-milter costs a Postfix relay (issue 17): a private Postfix 3.7 on 127.0.0.1,
# discard transport, 10 KB messages, 20 parallel sessions of one message per connection
# (bench/milter/smtp-load, which also times each message from MAIL FROM to the 250 after the
# final dot). Setups, interleaved in every round so that a noisy neighbour hits all alike:
#   none   Postfix without a milter
#   noop   Postfix + bench/milter/noop-milter (a libmilter filter asking for every callback)
#   floor  Postfix + noop-milter --floor: ccmail-milter's negotiation (events, SMFIP_NR_*, macros),
#          every message to a cc:Mail-like recipient received whole and dropped; the libmilter cost
#          under ccmail-milter that no spool design removes
#   cc     Postfix + ccmail-milter (divert), every message for cc:Mail
#   nocc   Postfix + ccmail-milter, no cc:Mail recipient
# With BASE_BUILD_DIR, also cc-base and nocc-base: the milter and exporter of another build
# (e.g. main before a change) in the same rounds. Each ccmail-milter has its own spool and claim
# table and its ccmail-exporter running, draining into an outbox as in production.
#
# Usage (as root): run_postfix_bench.sh BUILD_DIR [messages per run, default 2000]
#                  [rounds, default 3] [BASE_BUILD_DIR]
# BUILD_DIR needs: ninja ccmail-milter ccmail-exporter noop-milter smtp-load
# (BASE_BUILD_DIR: ccmail-milter ccmail-exporter). Environment: SESSIONS (20), SIZE (10240),
# ONLY (a subset of the setups; the ratios need noop in it), PF_SETTINGS (extra main.cf
# lines for every Postfix, separated by ';', e.g. "in_flow_delay = 0"), CCMAIL_CONF_EXTRA
# (lines appended to every ccmail.conf, e.g. "batch_max_delay = 200ms").
#
# Stalls: messages whose RCPT TO waited >= 900 ms for its reply. That is where smtpd connects
# to cleanup, and where Postfix's own flow control (in_flow_delay, 1 s by default) makes
# cleanup pause when receiving gets ahead of the queue manager; with or without a milter
# (seen in `none` too). Counted per run so that a p99 made of them is not read as the milter's.
#
# Per setup, medians over the rounds: msg/s, ratio to noop, p50/p99 latency (ms), p99 added over
# noop, and CPU ms per message of the filter (ccmail: milter + exporter together, /proc/PID/stat
# utime+stime from before the run until the exporter has drained it; the filter process alone
# in the last column). Ends with markdown table rows to paste into docs/PERFORMANCE.md.
set -u
B=$(cd "$1" && pwd); N=${2:-2000}; ROUNDS=${3:-3}; BASE=${4:+$(cd "$4" && pwd)}
SESSIONS=${SESSIONS:-20}; SIZE=${SIZE:-10240}; WARMUP=200
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/tests/mta/postfix.sh"
T=$(mktemp -d /tmp/ccmail-milter-bench.XXXXXX); chmod 755 "$T"
PIDS=()
cleanup() { local d; for d in "$T"/pf-*; do pf_stop "$d"; done; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT

"$B/bench/milter/noop-milter" "unix:$T/noop.sock" & PIDS+=($!); CPU_PIDS_noop=$!
"$B/bench/milter/noop-milter" --floor "unix:$T/floor.sock" & PIDS+=($!); CPU_PIDS_floor=$!

# start_ccmail NAME BUILD: a milter + exporter pair with its own state in $T/NAME.
start_ccmail() {
  local name=$1 build=$2 d=$T/$1
  mkdir -p "$d/spool" "$d/outbox" "$d/run"
  chown -R nobody:nogroup "$d"; chmod 770 "$d/spool" "$d/outbox"; chmod 750 "$d/run"
  printf '@cc.example  BENCHPO\n' > "$d/map"
  cat > "$d/ccmail.conf" <<CONF
milter_socket = unix:$d/milter.sock
milter_socket_group = postfix
milter_socket_mode = 0660
milter_user = nobody
milter_pid_file = $d/run/milter.pid
exporter_user = nobody
exporter_pid_file = $d/run/exporter.pid
spool_directory = $d/spool
outbox_directory = $d/outbox
runtime_directory = $d/run
claim_table_name = ccmail-bench-$$-$name
bridge_group = nogroup
address_map = $d/map
ccmail_domains = cc.example
spool_min_free = 64m
${CCMAIL_CONF_EXTRA:-}
CONF
  "$build/milter/ccmail-milter" --stderr -c "$d/ccmail.conf" 2> "$d/milter.log" & PIDS+=($!)
  local mpid=$!
  wait_until 60 "$mpid" "ccmail-milter $name" test -S "$d/milter.sock" || exit 1
  "$build/exporter/ccmail-exporter" --stderr -c "$d/ccmail.conf" 2> "$d/exporter.log" & PIDS+=($!)
  eval "CPU_PIDS_$name='$mpid $!'"
}
start_ccmail cur "$B"
SETUPS=(none noop floor cc nocc)
SOCK_noop=unix:$T/noop.sock; SOCK_floor=unix:$T/floor.sock; SOCK_cc=unix:$T/cur/milter.sock; SOCK_nocc=$SOCK_cc; SOCK_none=
CPU_PIDS_cc=$CPU_PIDS_cur; CPU_PIDS_nocc=$CPU_PIDS_cur; CPU_PIDS_none=
if [ -n "$BASE" ]; then
  start_ccmail base "$BASE"
  SETUPS+=(cc-base nocc-base)
  SOCK_cc_base=unix:$T/base/milter.sock; SOCK_nocc_base=$SOCK_cc_base
  CPU_PIDS_cc_base=$CPU_PIDS_base; CPU_PIDS_nocc_base=$CPU_PIDS_base
fi
# ONLY="noop cc": run only these setups (e.g. to profile one under perf record -p).
[ -n "${ONLY:-}" ] && read -r -a SETUPS <<< "$ONLY"
wait_until 60 "" "noop-milter" test -S "$T/noop.sock" || exit 1
wait_until 60 "" "noop-milter --floor" test -S "$T/floor.sock" || exit 1
chmod 666 "$T/noop.sock" "$T/floor.sock"

cpu_ticks() { local p t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
backlog() { find "$T"/cur/spool/spool/new "$T"/base/spool/spool/new -type f 2>/dev/null | wc -l; }
drained() { [ "$(backlog)" = 0 ]; }
HZ=$(getconf CLK_TCK)

run() {  # setup name
  local name=$1 v=${1//-/_} rcpt=user@cc.example
  case $name in nocc*) rcpt=user@other.example ;; esac
  local pids; eval "pids=\$CPU_PIDS_$v"
  local port; eval "port=\$PORT_$v"
  "$B/bench/milter/smtp-load" 127.0.0.1 "$port" "$SESSIONS" "$WARMUP" "$SIZE" alice@example.org "$rcpt" >/dev/null
  wait_until 120 "" "exporter drain" drained || true
  local c0=0 c1=0 m0=0 m1=0 first=${pids%% *}
  [ -n "$pids" ] && c0=$(cpu_ticks $pids) && m0=$(cpu_ticks $first)
  local out; out=$(SMTP_LOAD_SLOW_MS=900 "$B/bench/milter/smtp-load" 127.0.0.1 "$port" "$SESSIONS" "$N" "$SIZE" alice@example.org "$rcpt" 2> "$T/slow-$name.txt")
  local stalls; stalls=$(awk '/^slow/ && $7 >= 900' "$T/slow-$name.txt" | wc -l)
  wait_until 120 "" "exporter drain" drained || true
  [ -n "$pids" ] && c1=$(cpu_ticks $pids) && m1=$(cpu_ticks $first)
  local rate p50 p99 cpu cpum
  rate=$(awk '{print $8}' <<< "$out"); p50=$(awk '{print $10}' <<< "$out"); p99=$(awk '{print $12}' <<< "$out")
  cpu=$(echo "($c1 - $c0) * 1000 / $HZ / $N" | bc -l); cpum=$(echo "($m1 - $m0) * 1000 / $HZ / $N" | bc -l)
  printf '  %-10s %8.1f msg/s  p50 %6.2f ms  p99 %7.2f ms  cpu %.3f ms/msg (filter %.3f)  RCPT stalls %d  (%s)\n' "$name" "$rate" "$p50" "$p99" "$cpu" "$cpum" "$stalls" "$out"
  eval "RATE_$v+=($rate); P50_$v+=($p50); P99_$v+=($p99); CPU_$v+=($cpu); CPUM_$v+=($cpum); STALLS_$v+=($stalls)"
}
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

# One Postfix per setup, started once (a restart per run costs more than a run on a loaded host).
for s in "${SETUPS[@]}"; do
  v=${s//-/_}; eval "spec=\$SOCK_$v"
  IFS=';' read -r -a extra <<< "${PF_SETTINGS:-}"
  pf_start "$T/pf-$s" "smtpd_milters = $spec" "default_process_limit = 100" "${extra[@]}" >/dev/null || exit 1
  eval "PORT_$v=$PF_PORT RATE_$v=() P50_$v=() P99_$v=() CPU_$v=() CPUM_$v=() STALLS_$v=()"
done
echo "$(date -u '+%F %H:%M UTC') load average $(cut -d' ' -f1-3 /proc/loadavg); $N messages x $ROUNDS rounds, $SESSIONS sessions, $SIZE bytes"
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r (load $(cut -d' ' -f1 /proc/loadavg))"
  for s in "${SETUPS[@]}"; do run "$s"; done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

declare -A RATE P50 P99 CPU CPUM STALLS
for s in "${SETUPS[@]}"; do
  v=${s//-/_}
  eval "RATE[$s]=\$(median \"\${RATE_$v[@]}\"); P50[$s]=\$(median \"\${P50_$v[@]}\"); P99[$s]=\$(median \"\${P99_$v[@]}\"); CPU[$s]=\$(median \"\${CPU_$v[@]}\"); CPUM[$s]=\$(median \"\${CPUM_$v[@]}\"); STALLS[$s]=\"\${STALLS_$v[*]}\""
done
echo
echo "medians over $ROUNDS rounds; load average at the end $LOAD_END"
echo "| setup | msg/s | ratio to no-op | p50 ms | p99 ms | added p99 over no-op, ms | CPU ms/msg (ccmail: milter + exporter) | of it the filter process | RCPT stalls >= 900 ms per round |"
echo "|---|---|---|---|---|---|---|---|---|"
for s in "${SETUPS[@]}"; do
  printf '| %s | %.1f | %.3f | %.2f | %.2f | %.2f | %s | %s | %s |\n' "$s" "${RATE[$s]}" "$(echo "${RATE[$s]} / ${RATE[noop]}" | bc -l)" \
    "${P50[$s]}" "${P99[$s]}" "$(echo "${P99[$s]} - ${P99[noop]}" | bc -l)" \
    "$([ "$s" = none ] && echo - || printf '%.3f' "${CPU[$s]}")" "$([ "$s" = none ] && echo - || printf '%.3f' "${CPUM[$s]}")" "${STALLS[$s]}"
done
echo "captures left in the spools: $(backlog); exported batches: cur $(find "$T/cur/outbox" -type f | wc -l)${BASE:+, base $(find "$T/base/outbox" -type f | wc -l)}"
for d in "$T"/cur "$T"/base; do [ -d "$d" ] && grep -ciE 'error|warn' "$d/milter.log" "$d/exporter.log" | sed 's/^/log warnings+errors: /'; done
