#!/usr/bin/env bash
# reverse_path.sh - the way back end to end (issue 18): cc:Mail EXPORT files -> ccmail-submitter
# -> a private Postfix on 127.0.0.1 -> an SMTP sink that keeps every message (reverse_path.py sink).
#
#  1. round trip, first leg: corpus mail sent over SMTP to a cc:Mail user goes through
#     ccmail-milter and ccmail-exporter into an import file (outbox/HUBPO2/*.CCM);
#  2. EXPORT files: generated ones (the project's writer, ccmail-convert, over tests/corpus, with
#     the header turned around: a cc:Mail author writing to Internet addresses), the hand-written
#     ones of tests/corpus/export (both layouts), and the round trip's import files "as if
#     exported" (the cc:Mail user forwards them to the Internet) are renamed into
#     inbox_directory/<PO>/ one by one while the submitter is killed with SIGKILL every 0.4-1.5 s
#     and restarted (like systemd's Restart=);
#  3. the keyword-layout files (files = hex) in a second phase, the submitter restarted with
#     itemsize = no, files = hex;
#  4. `ccmailctl check-mta` probes the same Postfix as submit_relay (up to RCPT, never DATA);
#  5. reverse_path.py verify compares every message at the sink with its source (envelope
#     sender and recipients, subject, text items, attachments byte for byte; Python's email
#     package decodes), the round trip with the original Internet message, and prints
#     "reverse_path: files=F messages=M delivered=D duplicates=X lost=L"; lost must be 0, and a
#     recipient may hold a message more than once only as often as the submit ledger says that
#     message was sent again while in doubt (`ccmailctl submitter list`: resubmissions; the
#     messages' counts must add up to in_doubt_resubmitted).
# Exit 77: not root, or Postfix missing (e2e_init). Everything on 127.0.0.1, in a temp dir.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init reverse_path
e2e_find_bins || exit 1
b=${CCMAIL_BINARY_DIR:-$E2E_SRC/build/release}
SUBMITTER=${E2E_SUBMITTER:-$b/submitter/ccmail-submitter}
CONVERT=${E2E_CONVERT:-$b/ccmail_format/ccmail-convert}
for x in "$SUBMITTER" "$CONVERT"; do [ -x "$x" ] || { echo "reverse_path: FAIL: not built: $x"; exit 1; }; done
RP="$E2E_PY $E2E_SRC/tests/e2e/reverse_path.py"
STATE=$T/bridge
INBOX=$STATE/inbox
SUBPID= SUBSUP=
E2E_CLEANUP_HOOK='rp_stop_submitter'
# lib.sh's fail shows the bridge's logs; the submitter's is ours.
rp_fail() { echo "--- $T/submitter.log (tail)"; tail -n 40 "$T/submitter.log" 2>/dev/null; fail "$@"; }

rp_stop_submitter() {
  [ -n "$SUBSUP" ] && { kill "$SUBSUP" 2>/dev/null; wait "$SUBSUP" 2>/dev/null; SUBSUP=; }
  return 0
}

# Like systemd's Restart=: restarts the submitter whenever it dies; its pid in $T/submitter.pid.e2e.
rp_supervise_submitter() {
  (
    trap 'kill $x 2>/dev/null; wait $x; echo "supervisor: submitter $x stopped with status $?" >> "$T/submitter.log"; exit 0' TERM
    n=0
    while :; do
      "$SUBMITTER" --stderr -c "$T/ccmail.conf" "$@" >> "$T/submitter.log" 2>&1 &
      x=$!
      echo "$x" > "$T/submitter.pid.e2e"
      wait $x
      echo "supervisor: submitter $x exited with $? (start $((n += 1)))" >> "$T/submitter.log"
      sleep 0.2
    done
  ) 2>> "$T/submitter.log" &
  SUBSUP=$!
}

rp_killer() {
  (
    kills=0
    while [ ! -e "$T/stop-killing" ]; do
      sleep "$(awk -v s="$RANDOM" 'BEGIN{srand(s); printf "%.2f", 0.4 + rand() * 1.1}')"
      [ -e "$T/stop-killing" ] && break
      p=$(cat "$T/submitter.pid.e2e" 2>/dev/null)
      [ -n "$p" ] && kill -9 "$p" 2>/dev/null && kills=$((kills + 1))
    done
    echo "$kills" > "$T/submitter.kills"
  ) &
  E2E_PIDS+=($!)
}

# Puts FILE into the inbox of PO as EXPORT would (hidden name, then rename) and keeps a copy
# for the verifier.
rp_feed() {
  local po=$1 f=$2 name=${3:-$(basename "$2")}
  mkdir -p "$INBOX/$po" "$T/fed/$po"
  chown "$E2E_USER:$E2E_GROUP" "$INBOX/$po"
  cp "$f" "$T/fed/$po/$name"
  cp "$f" "$INBOX/$po/.$name.tmp"
  chown "$E2E_USER:$E2E_GROUP" "$INBOX/$po/.$name.tmp"
  mv "$INBOX/$po/.$name.tmp" "$INBOX/$po/$name"
}

# Waits until the inbox is empty, Postfix's queue is empty and the sink has at least N messages.
rp_wait() {
  local want=$1 secs=$2 start=$SECONDS
  while [ $((SECONDS - start)) -lt "$secs" ]; do
    local left got
    left=$(find "$INBOX" -type f | wc -l)
    got=$(find "$T/sink" -name '*.eml' | wc -l)
    if [ "$left" = 0 ] && [ "$got" -ge "$want" ] && [ "$(e2e_pf_queue)" = 0 ]; then
      e2e_log "sink has $got messages after $((SECONDS - start))s"; return 0
    fi
    postqueue -c "$T/pf/etc" -f >/dev/null 2>&1 || true
    sleep 1
  done
  echo "after ${secs}s: inbox $(find "$INBOX" -type f | wc -l) files, sink $(find "$T/sink" -name '*.eml' | wc -l)/$want, postfix queue $(e2e_pf_queue)"
  return 1
}

# ---------------------------------------------------------------- the bridge on loopback
e2e_write_map
mkdir -p "$INBOX" "$T/sink"
chown "$E2E_USER:$E2E_GROUP" "$INBOX"
rm -f "$T/sink.port"
$RP sink --dir "$T/sink" --ready "$T/sink.port" 2> "$T/sink.err" &
SINKPID=$!
wait_until 60 "$SINKPID" "sink" test -s "$T/sink.port" || fail "sink did not start"
SINK_PORT=$(cat "$T/sink.port")
e2e_start_postfix || fail "postfix did not start"
e2e_write_conf "local_postoffice = HUBPO2" \
  "inbox_directory = $INBOX" \
  "submit_relay = 127.0.0.1:$PF_PORT" \
  "submit_timeout = 30s" \
  "submitter_user = $E2E_USER" \
  "submitter_pid_file = $T/run/ccmail-submitter.pid" \
  "author_domain = ccmail.corp.example" \
  "origin_marker = reverse-path-e2e"
e2e_start_exporter
e2e_start_milter || fail "milter did not start"

# ---------------------------------------------------------------- 1. round trip, first leg
mkdir -p "$T/roundtrip"
: > "$T/roundtrip/plan.tsv"
i=0
for m in 01-plain-ascii 04-latin1-8bit 18-attach-pdf 19-attach-png-zip-docx 20-attach-qp-text; do
  i=$((i + 1))
  smtp_send "$PF_PORT" "origin$i@partner.example" jsmith@ccmail.corp.example \
    < "$E2E_SRC/tests/corpus/$m.eml" > "$T/roundtrip/$m.smtp" 2>&1 || fail "sending $m: $(tail -2 "$T/roundtrip/$m.smtp")"
  printf '%s\t%s\n' "$E2E_SRC/tests/corpus/$m.eml" "back$i@partner.example" >> "$T/roundtrip/plan.tsv"
done
e2e_drain 90 || fail "the round trip's messages were not exported"
# The cc:Mail user sends each of them on to the Internet, each to its own address (plan.tsv).
$RP reexport --out "$T/roundtrip/export" --plan "$T/roundtrip/plan.tsv" $(find "$STATE/outbox/HUBPO2" -name '*.CCM' | sort) \
  || fail "turning the import files into EXPORT files"

# ---------------------------------------------------------------- 2. EXPORT files, kill -9 loop
$RP generate --convert "$CONVERT" --conf "$T/ccmail.conf" --corpus "$E2E_SRC/tests/corpus" \
  --out "$T/generated" --per-file 4 || fail "generating EXPORT files"
rp_supervise_submitter
rp_killer
for f in "$T"/generated/*.CCM "$E2E_SRC/tests/corpus/export/HUBPO2/EXPCOUNT.CCM" "$T"/roundtrip/export/*.CCM; do
  case $f in */roundtrip/*) rp_feed HUBPO2 "$f" "RT$(basename "$f")" ;; *) rp_feed HUBPO2 "$f" ;; esac
  sleep 0.3
done
sleep 3
touch "$T/stop-killing"
sleep 2   # the killer has seen the file (it sleeps at most 1.5 s)
e2e_log "submitter killed $(cat "$T/submitter.kills" 2>/dev/null || echo '?') times"
rp_wait "$($RP count --inbox-copy "$T/fed")" 90 || rp_fail "the counted-layout files were not all submitted"
rp_stop_submitter

# ---------------------------------------------------------------- 3. keyword layout, hex files
rp_supervise_submitter -o itemsize=no -o files=hex
rp_feed SALESPO "$E2E_SRC/tests/corpus/export/SALESPO/EXPKEYWD.CCM"
rp_wait "$($RP count --inbox-copy "$T/fed" --hex-po SALESPO)" 60 || rp_fail "the keyword-layout file was not submitted"
sleep 2   # a late duplicate would show up here

# ---------------------------------------------------------------- 4. check-mta knows the relay
# The submitter's part of check-mta against this real Postfix: reachable, the author domain
# accepted as sender, an Internet recipient relayed from 127.0.0.1 (the probe stops before DATA,
# so the sink must not see it: the comparison below would report it as unexpected).
"$CTL" -c "$T/ccmail.conf" --json check-mta > "$T/check-mta.json" 2> "$T/check-mta.err"
$E2E_PY - "$T/check-mta.json" <<'PY' || rp_fail "ccmailctl check-mta does not see a working submit_relay"
import json, sys
found = [f for f in json.load(open(sys.argv[1]))["findings"] if f["mta"] == "submitter"]
for f in found:
    print("check-mta: %s %s = %s" % (f["verdict"], f["what"], f["found"]))
whats = " | ".join(f["what"] for f in found)
ok = len(found) >= 3 and all(f["verdict"] == "ok" for f in found) and "relays Internet mail" in whats
sys.exit(0 if ok else 1)
PY

# ---------------------------------------------------------------- 5. compare
rp_stop_submitter
metrics=$("$CTL" -c "$T/ccmail.conf" submitter metrics --json 2> "$T/metrics.err") || rp_fail "ccmailctl submitter metrics: $(cat "$T/metrics.err")"
in_doubt=$(echo "$metrics" | $E2E_PY -c 'import json,sys; print(json.load(sys.stdin)["in_doubt_resubmitted"])')
e2e_log "in_doubt_resubmitted=$in_doubt"
# Each message's own count bounds the copies each of its recipients may hold beyond the first.
ledger_args=()
for state in sent partial refused; do
  "$CTL" -c "$T/ccmail.conf" --json submitter list --state "$state" -n 0 > "$T/submitted-$state.json" 2> "$T/list.err" \
    || rp_fail "ccmailctl submitter list --state $state: $(cat "$T/list.err")"
  ledger_args+=(--submit-ledger "$T/submitted-$state.json")
done
E2E_SRC=$E2E_SRC $RP verify --inbox-copy "$T/fed" --sink "$T/sink" --map "$T/address-map" \
  --hex-po SALESPO --roundtrip "$T/roundtrip" "${ledger_args[@]}" --in-doubt-resubmitted "$in_doubt" | tee "$T/verify.out"
[ "${PIPESTATUS[0]}" = 0 ] || rp_fail "the sink does not hold exactly what was exported"
e2e_finish || rp_fail "a daemon did not stop cleanly"
grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T/submitter.log" && rp_fail "sanitizer report in submitter.log"
exit 0
