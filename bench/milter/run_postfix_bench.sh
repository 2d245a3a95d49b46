#!/bin/bash
# Postfix throughput: smtp-source, 10 KB messages, 20 parallel sessions, discard transport,
# with (a) no milter, (b) noop-milter, (c) ccmail-milter capturing every message (divert).
# Usage: run_postfix_bench.sh BUILD_DIR [messages per run, default 2000]
# Needs root and postfix. Prints msgs/s per run and the ratios.
set -u
B=$1; N=${2:-2000}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/tests/mta/postfix.sh"
T=$(mktemp -d /tmp/ccmail-milter-bench.XXXXXX); chmod 755 "$T"
PIDS=()
cleanup() { pf_stop "$T/pf"; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT

"$B/bench/milter/noop-milter" "unix:$T/noop.sock" & PIDS+=($!)
mkdir -p "$T/spool"; chown nobody "$T/spool"
printf '@cc.example  BENCHPO\n' > "$T/map"
cat > "$T/ccmail.conf" <<CONF
milter_socket = unix:$T/ccmail.sock
milter_socket_group = postfix
milter_user = nobody
milter_pid_file = $T/ccmail.pid
spool_directory = $T/spool
address_map = $T/map
ccmail_domains = cc.example
spool_min_free = 64m
CONF
"$B/milter/ccmail-milter" --stderr -c "$T/ccmail.conf" 2> "$T/ccmail.log" & PIDS+=($!)
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
  eval "R_$name=$rate; L_$name=$lat"
}
run none ""
run noop "unix:$T/noop.sock"
run ccmail "unix:$T/ccmail.sock"
printf 'ratio noop/none   %.3f\n' "$(echo "$R_noop / $R_none" | bc -l)"
printf 'ratio ccmail/noop %.3f   (target >= 0.85)\n' "$(echo "$R_ccmail / $R_noop" | bc -l)"
printf 'added latency ccmail vs noop: %.2f ms per message per session\n' "$(echo "$L_ccmail - $L_noop" | bc -l)"
echo "captures: $(ls "$T/spool/milter-interim/new" | grep -vc meta)"
