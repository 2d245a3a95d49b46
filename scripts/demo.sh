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
#    the Internet recipient's copy went, then stops everything and keeps the directory.
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
cmake --build "$build" -j "$(nproc)" --target ccmail-milter ccmail-exporter ccmailctl ccmail-lint

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
  say "Stopping Postfix, ccmail-milter, ccmail-exporter and the sink"
  KEEP=1 e2e_cleanup
  if [ "$rc" = 0 ]; then
    echo "Everything ran in $T and is kept there:"
    echo "  $T/bridge/outbox/<PO>/   cc:Mail import files (*.CCM), manifests (*.MAN), WATERMRK"
    echo "  $T/ccmail.conf           the bridge's configuration; $T/address-map the address map"
    echo "  $T/milter.log $T/exporter.log $T/pf/maillog   the logs"
    echo "  $T/internet/*.eml $T/sink.log   what the Internet sink received"
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
