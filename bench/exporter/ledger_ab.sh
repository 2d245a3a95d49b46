#!/bin/bash
# ledger_ab.sh - the two ledger backends side by side on this machine, in one run: the
# exporter's drain rate (exporter_bench) and the round commit latency (ledger_bench), SQLite
# and PostgreSQL alternated, the load average before each run recorded.
#
#   bench/exporter/ledger_ab.sh BUILD_DIR [dir] [messages] [pairs] [batch] [rounds]
#   (default dir /var/tmp/ccmail-ledger-ab, 20000 messages, 2 pairs, batch 256, 200 rounds)
#
# BUILD_DIR is a Release build with -DCCMAIL_BENCH=ON (exporter_bench, ledger_bench). PostgreSQL
# is a private cluster in <dir>/pg (tests/testing/pg_cluster.sh: initdb + pg_ctl, Unix socket
# only, fsync on, synchronous_commit on, the Debian defaults otherwise), stopped at the end; it
# runs as root's "postgres" user, so run this as root. Both ledgers live on the same file system.
set -eu
build=$1
dir=${2:-/var/tmp/ccmail-ledger-ab}
messages=${3:-20000}
pairs=${4:-2}
batch=${5:-256}
rounds=${6:-200}
src=$(cd "$(dirname "$0")/../.." && pwd)
pgc="$src/tests/testing/pg_cluster.sh"
xb="$build/bench/exporter/exporter_bench"
lb="$build/bench/exporter/ledger_bench"
for b in "$xb" "$lb"; do [ -x "$b" ] || { echo "ledger_ab.sh: $b not built (-DCCMAIL_BENCH=ON)" >&2; exit 1; }; done

bash "$pgc" stop "$dir/pg" 2>/dev/null || true
rm -rf "$dir"; mkdir -p "$dir"; chmod 755 "$dir"
trap 'bash "$pgc" stop "$dir/pg" >/dev/null 2>&1 || true' EXIT
pg=$(bash "$pgc" start "$dir/pg")
export CCMAIL_BENCH_PG_PASSWORD_FILE="$dir/pg/password"

printf '# %s, %s messages x batch %s (drain), %s rounds (commit), %s pairs, %s CPUs, %s\n' \
  "$dir" "$messages" "$batch" "$rounds" "$pairs" "$(nproc)" "$(uname -r)"
printf '# PostgreSQL: %s\n' "$("$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/postgres" --version)"
echo "## drain (exporter_bench: Exporter::Open + Recover + Drain of the backlog)"
printf '%-10s %-6s %s\n' ledger load1 "batch messages seconds cpu_s drained/s fsync/s_x_batch ratio"
i=0
while [ "$i" -lt "$pairs" ]; do
  for ledger in sqlite postgresql; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    if [ "$ledger" = sqlite ]; then
      line=$("$xb" "$dir/x" "$messages" "$batch" | tail -n 1)
    else
      line=$(CCMAIL_BENCH_LEDGER="$pg" CCMAIL_BENCH_LEDGER_PASSWORD_FILE="$dir/pg/password" \
        "$xb" "$dir/x" "$messages" "$batch" | tail -n 1)
    fi
    printf '%-10s %-6s %s\n' "$ledger" "$load" "$line"
  done
  i=$((i + 1))
done
echo "## round commit (ledger_bench: AreExported + CommitBatches, one transaction per round)"
printf '%-6s %-10s %6s %7s %9s %9s %9s %10s %13s\n' load1 backend batch rounds "p50 ms" "p99 ms" "max ms" rounds/s deliveries/s
i=0
while [ "$i" -lt "$pairs" ]; do
  load=$(cut -d' ' -f1 /proc/loadavg)
  "$lb" "$dir/l" "$rounds" "1,$batch" "$pg" | tail -n +3 | sed "s/^/$(printf '%-6s ' "$load")/"
  i=$((i + 1))
done
