#!/bin/sh
# ab.sh - exporter_bench of two builds side by side, runs alternated, load average recorded.
#
#   bench/exporter/ab.sh BEFORE_BENCH AFTER_BENCH [dir] [messages] [pairs] [batch]
#   (default dir /var/tmp/ccmail-ab, 100000 messages, 3 pairs, batch 256)
#
# BEFORE_BENCH / AFTER_BENCH are exporter_bench binaries of the two trees, e.g.
#   git -C <repo> archive 18d9166 | tar -x -C /var/tmp/before
#   cmake -S /var/tmp/before -B /var/tmp/before/build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCCMAIL_BENCH=ON
#   ninja -C /var/tmp/before/build exporter_bench
# and the same for the tree under test. One line per run: build, load average (1 min) before
# the run, then exporter_bench's result line (batch, messages, seconds, cpu s, drained/s, ...).
set -eu
before=$1
after=$2
dir=${3:-/var/tmp/ccmail-ab}
messages=${4:-100000}
pairs=${5:-3}
batch=${6:-256}
printf '# %s, %s messages x batch %s, %s pairs, %s CPUs\n' "$dir" "$messages" "$batch" "$pairs" "$(nproc)"
printf '%-7s %-6s %s\n' build load1 "batch messages seconds cpu_s drained/s fsync/s_x_batch ratio"
i=0
while [ "$i" -lt "$pairs" ]; do
  for build in before after; do
    if [ "$build" = before ]; then bin=$before; else bin=$after; fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    line=$("$bin" "$dir" "$messages" "$batch" | tail -n 1)
    printf '%-7s %-6s %s\n' "$build" "$load" "$line"
  done
  i=$((i + 1))
done
