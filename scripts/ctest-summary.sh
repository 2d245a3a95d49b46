#!/usr/bin/env bash
# ctest-summary.sh LOG - the counts of one ctest run, for scripts/test.sh:
#   passed=N failed=N skipped=N total=N
#   skipped: NAME...          (only when some test was skipped)
# ctest counts a test that exited with its SKIP_RETURN_CODE (77) among the passed ones
# ("100% tests passed"); here it is skipped, never passed. Exit 1 when LOG has no summary
# line (ctest did not finish).
set -euo pipefail
log="${1:?usage: ctest-summary.sh LOG}"
line="$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n1 || true)"
[ -n "$line" ] || exit 1
nfail="$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")"
total="$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$line")"
mapfile -t skipped < <(sed -n -E 's/.*Test +#[0-9]+: ([^ ]+) .*\*\*\*Skipped.*/\1/p' "$log")
echo "passed=$((total - nfail - ${#skipped[@]})) failed=$nfail skipped=${#skipped[@]} total=$total"
[ "${#skipped[@]}" -eq 0 ] || echo "skipped: ${skipped[*]}"
