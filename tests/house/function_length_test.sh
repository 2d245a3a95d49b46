#!/usr/bin/env bash
# function_length_test.sh - no function in the production code is longer than a reader can hold.
#
#   function_length_test.sh SOURCE_DIR [LIMIT]
#
# Lists every C++ function definition of the production folders (tests/ and bench/ are not
# production) with universal-ctags and fails on any longer than LIMIT lines (100), unless it is
# named in allowed_long_functions.txt with its reason: data tables only.
# The negative control: a planted 101-line function must be reported (checked first, so a
# ctags that finds nothing cannot pass this test).
set -euo pipefail
src=${1:?usage: function_length_test.sh SOURCE_DIR [LIMIT]}
limit=${2:-100}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
production=(milter store shm exporter ctl config common ccmail_format mtaconf smtp submitter)

if ! command -v ctags >/dev/null || ! ctags --version 2>/dev/null | grep -q 'Universal Ctags'; then
  echo "function_length_test: universal-ctags is not installed (scripts/install-deps.sh)" >&2
  exit 77
fi

# path:line name length, for every function over the limit below the given directories.
long_functions() {
  ctags -R --languages=C++ --kinds-C++=f --fields=+ne -x --_xformat='%{end} %{line} %F %N' "$@" |
    awk -v limit="$limit" '{ n = $1 - $2 + 1; if (n > limit) print $3 ":" $2, $4, n }'
}

# Negative control.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
{ echo 'int Planted() {'; for i in $(seq 1 99); do echo "  int v$i = $i; (void)v$i;"; done; echo '  return 0;'; echo '}'; } > "$tmp/planted.cpp"
if ! long_functions "$tmp" | grep -q ' Planted '; then
  echo "function_length_test: the negative control failed: a $((limit + 2))-line function was not found" >&2
  exit 1
fi

cd "$src"
allowed=$( (grep -v '^#' "$here/allowed_long_functions.txt" || true) | awk 'NF {print $1}')
status=0
while read -r place name lines; do
  if grep -qxF "${place%%:*}:$name" <<<"$allowed"; then continue; fi
  echo "function_length_test: $place $name is $lines lines (limit $limit): split it into named steps" >&2
  status=1
done < <(long_functions "${production[@]}")
[ "$status" -eq 0 ] && echo "function_length_test: no production function over $limit lines"
exit "$status"
