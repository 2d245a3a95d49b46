#!/usr/bin/env bash
# commands_test.sh CONVERT LINT CORPUS_DIR - every corpus message through
# ccmail-convert | ccmail-lint (both layouts), plus the exit codes of bad input.
set -u
convert="$1" lint="$2" corpus="$3"
fail=0
n=0
common=(-c /dev/null -o local_postoffice=HUBPO2 -o timezone=UTC -f bob@partner.example
        -r 'jsmith@ccmail.corp.example=Smith, John at HUBPO2' -r 'mgarcia@ccmail.corp.example=Garcia, Maria at OTHERPO' -t 1795520000)
for f in "$corpus"/*.eml; do
  for layout in "-o itemsize=yes" "-o itemsize=no -o files=hex"; do
    # shellcheck disable=SC2086
    if ! "$convert" "${common[@]}" $layout "$f" 2>/dev/null | "$lint" -c /dev/null -o timezone=UTC $layout -; then
      echo "FAIL: $f [$layout]"; fail=1
    fi
  done
  n=$((n + 1))
done
# stdin works too, and auto-detection of the layout.
"$convert" "${common[@]}" < "$corpus/01-plain-ascii.eml" | "$lint" -c /dev/null --detect-layout -o itemsize=no -o files=hex - || { echo "FAIL: stdin/detect"; fail=1; }
# Exit codes: 2 for a bad setting, 1 for a file that breaks a rule.
"$convert" "${common[@]}" -o codepage=999 "$corpus/01-plain-ascii.eml" >/dev/null 2>&1; [ $? = 2 ] || { echo "FAIL: bad setting exit code"; fail=1; }
printf 'Message:\r\n1\r\nFrom: x\r\n' | "$lint" -c /dev/null - >/dev/null; [ $? = 1 ] || { echo "FAIL: lint exit code"; fail=1; }
"$convert" "${common[@]}" /nonexistent >/dev/null 2>&1; [ $? = 3 ] || { echo "FAIL: missing file exit code"; fail=1; }
"$convert" --help | grep -q 'Exit status' || { echo "FAIL: convert --help"; fail=1; }
"$lint" --help | grep -q 'Exit status' || { echo "FAIL: lint --help"; fail=1; }
# Usage errors exit 2 (CLI11's own codes are 105..115), for both commands.
"$convert" -c /dev/null "$corpus/01-plain-ascii.eml" >/dev/null 2>&1; rc=$?; [ $rc = 2 ] || { echo "FAIL: convert without -r exit $rc"; fail=1; }
"$convert" "${common[@]}" --no-such-option "$corpus/01-plain-ascii.eml" >/dev/null 2>&1; rc=$?; [ $rc = 2 ] || { echo "FAIL: convert unknown option exit $rc"; fail=1; }
"$lint" -c /dev/null >/dev/null 2>&1; rc=$?; [ $rc = 2 ] || { echo "FAIL: lint without files exit $rc"; fail=1; }
"$lint" -c /dev/null --bogus - </dev/null >/dev/null 2>&1; rc=$?; [ $rc = 2 ] || { echo "FAIL: lint unknown option exit $rc"; fail=1; }
# All or nothing: the second post office's recipient cannot be written (its line alone is over
# header_limit), so nothing reaches stdout, not even the first post office's copy.
long_name=$(printf 'N%.0s' $(seq 1 600))
out=$("$convert" -c /dev/null -o header_limit=512 -o timezone=UTC -f bob@partner.example -t 1795520000 \
       -r 'jsmith@ccmail.corp.example=Smith, John at AAAPO' -r "long@ccmail.corp.example=$long_name at ZZZPO" \
       "$corpus/01-plain-ascii.eml" 2>/dev/null); rc=$?
[ $rc = 1 ] || { echo "FAIL: refused message exit $rc"; fail=1; }
[ -z "$out" ] || { echo "FAIL: refused message left ${#out} bytes on stdout"; fail=1; }
[ "$n" -ge 40 ] || { echo "FAIL: only $n corpus messages"; fail=1; }
echo "commands_test: $n messages, fail=$fail"
exit $fail
