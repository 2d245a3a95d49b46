#!/bin/bash
# Postfix throughput: smtp-source, 10 KB messages, 20 parallel sessions, discard transport,
# with (a) no milter, (b) noop-milter, (c) ccmail-milter capturing every message (divert)
# into the real spool (store::Spool: fsync, rename, directory fsync) and claim table.
# Usage: run_postfix_bench.sh BUILD_DIR [messages per run, default 2000] [rounds, default 1]
# Rounds interleave none/noop/ccmail so that a noisy neighbour hits all three alike; the
# ratios use the median msg/s of each over the rounds.
# Needs root and postfix. Prints msgs/s per run and the ratios.
set -u
B=$1; N=${2:-2000}; ROUNDS=${3:-1}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/tests/mta/postfix.sh"
T=$(mktemp -d /tmp/ccmail-milter-bench.XXXXXX); chmod 755 "$T"
PIDS=()
TABLE=ccmail-bench-$$
cleanup() { pf_stop "$T/pf"; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT

"$B/bench/milter/noop-milter" "unix:$T/noop.sock" & PIDS+=($!); NOOP_PID=$!
mkdir -p "$T/spool"; chown nobody "$T/spool"
printf '@cc.example  BENCHPO\n' > "$T/map"
cat > "$T/ccmail.conf" <<CONF
milter_socket = unix:$T/ccmail.sock
milter_socket_group = postfix
milter_user = nobody
milter_pid_file = $T/ccmail.pid
spool_directory = $T/spool
runtime_directory = $T/run
claim_table_name = $TABLE
bridge_group =
address_map = $T/map
ccmail_domains = cc.example
spool_min_free = 64m
CONF
"$B/milter/ccmail-milter" --stderr -c "$T/ccmail.conf" 2> "$T/ccmail.log" & PIDS+=($!); CCMAIL_PID=$!
sleep 0.5; chmod 666 "$T/noop.sock"

run() {  # name, milter spec ('' for none)
  local name=$1 spec=$2
  pf_stop "$T/pf"; rm -rf "$T/pf"
  pf_start "$T/pf" "smtpd_milters = $spec" "default_process_limit = 100" >/dev/null || exit 1
  smtp-source -c -s 20 -l 10240 -m 200 -f alice@example.org -t user@cc.example 127.0.0.1:$PF_PORT >/dev/null 2>&1  # warm-up
  local t0 t1
  t0=$(date +%s.%N)
  smtp-source -s 20 -l 10240 -m "$N" -f alice@example.org -t user@cc.example 127.0.0.1:$PF_PORT 2>&1 | tail -1
  t1=$(date +%s.%N)
  local rate; rate=$(echo "$N / ($t1 - $t0)" | bc -l)
  local lat; lat=$(echo "20 * 1000 * ($t1 - $t0) / $N" | bc -l)
  printf '%-14s %8.1f msg/s  %6.2f ms/msg per session\n' "$name" "$rate" "$lat"
  eval "ALL_$name+=($rate)"
}
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
ALL_none=(); ALL_noop=(); ALL_ccmail=()
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r"
  run none ""
  run noop "unix:$T/noop.sock"
  run ccmail "unix:$T/ccmail.sock"
done
R_none=$(median "${ALL_none[@]}"); R_noop=$(median "${ALL_noop[@]}"); R_ccmail=$(median "${ALL_ccmail[@]}")
L_noop=$(echo "20 * 1000 / $R_noop" | bc -l); L_ccmail=$(echo "20 * 1000 / $R_ccmail" | bc -l)
printf 'median msg/s: none %.1f  noop %.1f  ccmail %.1f\n' "$R_none" "$R_noop" "$R_ccmail"
printf 'ratio noop/none   %.3f\n' "$(echo "$R_noop / $R_none" | bc -l)"
printf 'ratio ccmail/noop %.3f   (target >= 0.85)\n' "$(echo "$R_ccmail / $R_noop" | bc -l)"
printf 'added latency ccmail vs noop: %.2f ms per message per session\n' "$(echo "$L_ccmail - $L_noop" | bc -l)"
# CPU time (user+sys) each filter process spent per message: independent of neighbours' load.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" -v n="$2" '{printf "%.3f", ($14 + $15) * 1000 / hz / n}' "/proc/$1/stat"; }
msgs=$(( (N + 200) * ROUNDS ))
echo "filter CPU ms per message: noop $(cpu_ms $NOOP_PID $msgs)  ccmail $(cpu_ms $CCMAIL_PID $msgs)"
echo "captures in spool/new: $(ls "$T/spool/spool/new" | wc -l); READY slots: $("$B/tests/milter/milter-spool-tool" ready "$T/ccmail.conf" 2>/dev/null || echo '?')"
