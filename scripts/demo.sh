#!/usr/bin/env bash
# demo.sh - see the bridge work, on this machine, without touching its mail setup.
#
#   sudo bash scripts/demo.sh
#
# 1. installs the Debian packages (scripts/install-deps.sh; skip with CCMAIL_SKIP_DEPS=1),
# 2. builds Release into ${CCMAIL_BUILD_ROOT:-build}/release (reused when already built),
# 3. in a new temporary directory: a private Postfix on 127.0.0.1 (a free port, `postfix -c DIR`;
#    /etc/postfix and the system's own MTA are never touched) with smtpd_milters = ccmail-milter,
#    ccmail-milter and ccmail-exporter with a configuration of their own, and a small SMTP sink
#    on loopback standing in for the Internet,
# 4. sends the sample messages in demo/mail/ with swaks, to cc:Mail users on two post offices and
#    to one Internet recipient, waits for `ccmailctl drain`,
# 5. shows the outbox, an import file, the manifests, ccmail-lint, `ccmailctl status`, and where
#    the Internet recipient's copy went,
# 6. the way back: starts ccmail-submitter, puts a cc:Mail EXPORT file (John Smith answers Alice,
#    with a file attached) into the inbox, and shows the Internet message that came out at the
#    sink and `ccmailctl submitter status`, then stops everything and keeps the directory.
#
# Environment: CCMAIL_SKIP_DEPS=1, CCMAIL_BUILD_ROOT=DIR, CCMAIL_DEMO_DIR=DIR (default: mktemp).
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_root="${CCMAIL_BUILD_ROOT:-$src/build}"
build="$build_root/release"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: run as root (Postfix's master process runs as root; install-deps.sh calls apt-get)" >&2
  exit 1
fi

if [ "${CCMAIL_SKIP_DEPS:-0}" != 1 ]; then
  say "Installing dependencies (scripts/install-deps.sh)"
  bash "$src/scripts/install-deps.sh"
fi
for tool in postfix swaks python3; do
  command -v "$tool" >/dev/null || { echo "demo.sh: $tool is missing (run scripts/install-deps.sh)" >&2; exit 1; }
done

say "Building Release in $build"
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" -j "$(nproc)" --target ccmail-milter ccmail-exporter ccmailctl ccmail-lint ccmail-submitter

# The test library runs the same setup the end-to-end suite uses (tests/e2e/lib.sh).
export CCMAIL_SOURCE_DIR="$src" CCMAIL_BINARY_DIR="$build"
set +u
. "$src/tests/e2e/lib.sh"
set -u
KEEP=1

if [ -n "${CCMAIL_DEMO_DIR:-}" ]; then
  T=$CCMAIL_DEMO_DIR; mkdir -p "$T"
else
  T=$(mktemp -d /tmp/ccmail-demo.XXXXXX)
fi
chmod 755 "$T"
E2E_NAME=demo
E2E_TABLE="ccmail-demo-${T##*.}"
demo_exit() {
  local rc=$?
  set +e
  say "Stopping Postfix, ccmail-milter, ccmail-exporter, ccmail-submitter and the sink"
  KEEP=1 e2e_cleanup
  if [ "$rc" = 0 ]; then
    echo "Everything ran in $T and is kept there:"
    echo "  $T/bridge/outbox/<PO>/   cc:Mail import files (*.CCM), manifests (*.MAN), WATERMRK"
    echo "  $T/ccmail.conf           the bridge's configuration; $T/address-map the address map"
    echo "  $T/milter.log $T/exporter.log $T/pf/maillog   the logs"
    echo "  $T/internet/*.eml $T/sink.log   what the Internet sink received"
    echo "  $T/bridge/inbox/<PO>/    cc:Mail EXPORT files for ccmail-submitter (the way back); $T/submitter.log"
    echo "Remove it with: rm -rf $T"
  else
    echo "demo.sh FAILED (exit $rc); logs kept in $T"
  fi
  exit "$rc"
}
trap demo_exit EXIT
trap 'exit 130' INT TERM

e2e_find_bins
cp "$src/demo/address-map" "$T/address-map"
E2E_SINK_DUMP=$T/internet
e2e_write_conf "local_postoffice = HUBPO2"

say "Starting a private Postfix, ccmail-milter and ccmail-exporter in $T"
e2e_start_sink
e2e_start_exporter
e2e_start_milter
e2e_start_postfix
echo "Postfix:  postfix -c $T/pf/etc, smtpd on 127.0.0.1:$PF_PORT, smtpd_milters = unix:$T/sock/milter.sock"
echo "Internet: everything else is relayed to a sink on 127.0.0.1:$SINK_PORT ($T/sink.log)"

say "Sending the sample messages in demo/mail/ with swaks"
send() {  # send FILE FROM RCPT...
  local f=$1 from=$2; shift 2
  local to; to=$(IFS=,; echo "$*")
  echo "-- $(basename "$f"): from $from to $to"
  local out="$T/swaks-$(basename "$f" .eml).log"
  if swaks --server 127.0.0.1 --port "$PF_PORT" --helo demo.localdomain --from "$from" --to "$to" \
       --data "$f" --suppress-data > "$out" 2>&1; then
    echo "   server: $(grep -E '^ *<- +[0-9]{3} ' "$out" | grep -v ' 221 ' | tail -1 | sed 's/^ *<- *//')"
  else
    cat "$out"; echo "demo.sh: swaks failed for $f" >&2; return 1
  fi
}
send "$src/demo/mail/01-plain.eml" alice@partner.example jsmith@ccmail.corp.example admin@ccmail.corp.example
send "$src/demo/mail/02-attachment.eml" bob@partner.example mgarcia@ccmail.corp.example
send "$src/demo/mail/03-international.eml" renee@partner.example \
  jsmith@ccmail.corp.example mgarcia@ccmail.corp.example pat@partner.example
send "$src/demo/mail/04-status-report.eml" ops@partner.example \
  admin@ccmail.corp.example rkumar@ccmail.corp.example

say "Waiting until everything is exported (ccmailctl drain)"
e2e_drain 60

outbox="$T/bridge/outbox"
say "The outbox: one directory per cc:Mail post office"
(cd "$outbox" && find . -type f | sort | xargs ls -l)

first=$(find "$outbox" -name '*.CCM' | sort | head -1)
if [ -n "$first" ]; then
  say "An import file for cc:Mail IMPORT: $first (first 40 lines, as text)"
  head -n 40 "$first" | tr -d '\r' | cut -c1-100
fi

say "The manifests: capture id, content key, cc:Mail recipient, envelope sender"
for m in $(find "$outbox" -name '*.MAN' | sort); do echo "-- $m"; cat "$m"; done

say "ccmail-lint on every import file"
"$LINT" -c "$T/ccmail.conf" -v $(find "$outbox" -name '*.CCM' | sort)

say "ccmailctl status"
e2e_ctl status

say "The Internet recipient"
echo "pat@partner.example was not a cc:Mail user: Postfix delivered that copy over SMTP to the"
echo "loopback sink standing in for the Internet. The sink's log ($T/sink.log: message, recipient):"
cat "$T/sink.log"
echo "The copy itself, as the sink received it: $(ls "$T"/internet/*.eml 2>/dev/null | tr '\n' ' ')"
grep -E 'to=<pat@partner.example>.*status=' "$T/pf/maillog" | sed 's/^/  maillog: /' || true

say "The way back: a cc:Mail EXPORT file in, an Internet message out (ccmail-submitter)"
inbox="$T/bridge/inbox"
mkdir -p "$inbox/HUBPO2"
chown -R "$E2E_USER:$E2E_GROUP" "$inbox"
conf_set "$T/ccmail.conf" "inbox_directory = $inbox" "submit_relay = 127.0.0.1:$PF_PORT" \
  "submitter_user = $E2E_USER" "submitter_pid_file = $T/run/ccmail-submitter.pid"
echo "ccmail-submitter reads $inbox/<PO>/ and submits to the private Postfix (submit_relay = 127.0.0.1:$PF_PORT)"
"$build/submitter/ccmail-submitter" --stderr -c "$T/ccmail.conf" >> "$T/submitter.log" 2>&1 &
E2E_PIDS+=($!)
# What cc:Mail's EXPORT (/ITEMSIZE layout, code page 850) leaves for the gateway: John Smith on
# HUBPO2 answers Alice on the Internet (alice@partner.example at the gateway post office INTERNET)
# and attaches a file; Maria on SALESPO gets a copy inside cc:Mail (not submitted).
python3 - "$inbox/HUBPO2/.EXPORT01.TXT.tmp" <<'PY'
import sys
def lines(*ls): return b"".join(l.encode("cp850") + b"\r\n" for l in ls)
text = lines("Hello Alice,", "", "thanks for the figures. Our comments are attached.", "", "John")
notes = lines("1. Q3 looks right.", "2. Café budget: approved.")
items = b"Text item:\r\n%d\r\n" % len(text) + text + b"File item: NOTES.TXT 12/6/26 9:15AM\r\n%d\r\n" % len(notes) + notes + b"\r\n"
head = lines("From: Smith, John at HUBPO2", "Date: 12/6/26 9:15", "To: alice@partner.example at INTERNET",
             "Cc: Garcia, Maria at SALESPO", "Subject: Re: Quarterly figures")
body = head + b"Contents:\r\n%d\r\n" % len(items) + items
open(sys.argv[1], "wb").write(b"Message:\r\n%d\r\n" % len(body) + body)
PY
chown "$E2E_USER:$E2E_GROUP" "$inbox/HUBPO2/.EXPORT01.TXT.tmp"
before=$(ls "$T"/internet/*.eml 2>/dev/null | wc -l)
mv "$inbox/HUBPO2/.EXPORT01.TXT.tmp" "$inbox/HUBPO2/EXPORT01.TXT"
echo "-- $inbox/HUBPO2/EXPORT01.TXT (code page 850, shown in UTF-8):"
iconv -f CP850 -t UTF-8 < "$inbox/HUBPO2/EXPORT01.TXT" | tr -d '\r' | sed 's/^/   /'
for _ in $(seq 1 300); do
  [ "$(ls "$T"/internet/*.eml 2>/dev/null | wc -l)" -gt "$before" ] && break
  postqueue -c "$T/pf/etc" -f >/dev/null 2>&1 || true
  sleep 0.2
done
out=$(ls "$T"/internet/*.eml 2>/dev/null | sort | tail -n +"$((before + 1))" | head -1)
[ -n "$out" ] || { tail -20 "$T/submitter.log"; echo "demo.sh: the EXPORT file did not come out at the sink" >&2; exit 1; }
say "The Internet message that came out at the sink: $out"
sed -n '1,60p' "$out" | tr -d '\r' | cut -c1-100
say "ccmailctl submitter status"
e2e_ctl submitter status
