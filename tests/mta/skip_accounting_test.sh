#!/bin/bash
# A skipped MTA test is never counted as passed, and a test never downloads Sendmail:
#  1. scripts/ctest-summary.sh on the output of a real ctest run (a throw-away CMake project
#     with one passing, one failing and one skipped test, SKIP_RETURN_CODE 77): the skipped
#     one is counted as skipped and named, not passed (ctest itself says "67% passed").
#  2. tests/mta/fetch-sendmail.sh --no-download (what tests/mta/sendmail.sh runs) with an
#     empty cache fails at once, names scripts/install-deps.sh and downloads nothing.
set -u
SRC=${CCMAIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
T=$(mktemp -d /tmp/ccmail-skip-test.XXXXXX)
trap 'rm -rf "$T"' EXIT
FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }

mkdir -p "$T/proj"
cat > "$T/proj/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.16)
project(skipdemo NONE)
enable_testing()
add_test(NAME good COMMAND sh -c "exit 0")
add_test(NAME bad COMMAND sh -c "exit 1")
add_test(NAME sendmail_like COMMAND sh -c "echo 'SKIP: Sendmail cannot be fetched or started here'; exit 77")
set_tests_properties(sendmail_like PROPERTIES SKIP_RETURN_CODE 77)
CM
cmake -S "$T/proj" -B "$T/build" >/dev/null 2>&1 || { echo "cmake failed"; exit 1; }
(cd "$T/build" && ctest > "$T/ctest.log" 2>&1)
out=$(bash "$SRC/scripts/ctest-summary.sh" "$T/ctest.log")
[ "$(head -n1 <<<"$out")" = "passed=1 failed=1 skipped=1 total=3" ] && pass "skipped test not counted as passed ($(head -n1 <<<"$out"))" \
  || { cat "$T/ctest.log"; fail "ctest-summary: $out"; }
grep -qx 'skipped: sendmail_like' <<<"$out" && pass "skipped test named" || fail "skipped test not named: $out"
grep -q 'tests passed, 1 tests failed out of 3' "$T/ctest.log" && pass "(ctest's own line counts it as passed)" \
  || fail "unexpected ctest summary line"
echo "100% tests passed, 0 tests failed out of 0" > "$T/empty.log"
[ "$(bash "$SRC/scripts/ctest-summary.sh" "$T/empty.log")" = "passed=0 failed=0 skipped=0 total=0" ] && pass "no tests" || fail "no tests"
bash "$SRC/scripts/ctest-summary.sh" /dev/null >/dev/null && fail "a log without a summary line is accepted" || pass "no summary line: exit 1"

mkdir -p "$T/cache"
if msg=$(bash "$SRC/tests/mta/fetch-sendmail.sh" --no-download "$T/cache" 2>&1); then
  fail "--no-download with an empty cache succeeded: $msg"
else
  grep -q 'scripts/install-deps.sh' <<<"$msg" && pass "--no-download names install-deps.sh" || fail "message: $msg"
fi
[ -z "$(ls -A "$T/cache")" ] && pass "nothing downloaded" || fail "files appeared in the cache: $(ls "$T/cache")"
grep -q 'fetch-sendmail.sh" --no-download' "$SRC/tests/mta/sendmail.sh" && pass "tests/mta/sendmail.sh never downloads" \
  || fail "tests/mta/sendmail.sh calls fetch-sendmail.sh without --no-download"

[ $FAILS = 0 ] && echo PASS || { echo "$FAILS failure(s)"; exit 1; }
