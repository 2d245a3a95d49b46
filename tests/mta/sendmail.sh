# tests/mta/sendmail.sh - a private Sendmail 8.17 (Debian's binaries unpacked by
# fetch-sendmail.sh, since sendmail-bin cannot be installed beside Postfix) on loopback.
#
# Source it from bash (after postfix.sh, for mta_free_port and smtp_send), then:
#   sm_start DIR MILTER_SPEC    # cf built from DIR/test.mc with INPUT_MAIL_FILTER(ccmail, S=MILTER_SPEC,
#                               # F=T); daemon on 127.0.0.1:$SM_PORT; queue-only delivery
#                               # (DeliveryMode=queue, no queue runner): every accepted
#                               # message stays in DIR/queue as qf/df files, so a test reads
#                               # the recipients Sendmail kept from the qf file
#   sm_stop DIR                 # always call it (trap)
#   sm_queue_rcpts DIR QID      # recipients (R lines) still in the queue file of QID
# Returns 77 from sm_start when Sendmail cannot be fetched or started (the caller skips).
# No DNS: nocanonify, a hosts-only service switch, unresolvable sender domains accepted,
# no ident lookups, and a qualified host name in a private UTS namespace (unshare).
# Needs root (the daemon binds and runs its children as root) and m4.

sm_start() {
  local dir=$1 spec=$2
  # The cache scripts/install-deps.sh filled; a test never downloads.
  SM_ROOT=$(bash "$(dirname "${BASH_SOURCE[0]}")/fetch-sendmail.sh" --no-download 2>"$dir.fetch.log") || {
    cat "$dir.fetch.log" >&2; return 77; }
  SM_PORT=$(mta_free_port)
  mkdir -p "$dir/queue"
  chmod 700 "$dir/queue"
  printf 'hosts files\naliases files\n' > "$dir/service.switch"
  printf '127.0.0.1 localhost mta-test.localdomain %s\n' "$(hostname)" > "$dir/hosts"
  : > "$dir/aliases"
  cat > "$dir/test.mc" <<MC
divert(-1)
divert(0)dnl
OSTYPE(\`linux')dnl
define(\`confDOMAIN_NAME', \`mta-test.localdomain')dnl
define(\`confDONT_PROBE_INTERFACES', \`True')dnl
define(\`confSERVICE_SWITCH_FILE', \`$dir/service.switch')dnl
define(\`confHOSTS_FILE', \`$dir/hosts')dnl
define(\`ALIAS_FILE', \`$dir/aliases')dnl
define(\`QUEUE_DIR', \`$dir/queue')dnl
define(\`STATUS_FILE', \`$dir/statistics')dnl
define(\`confPID_FILE', \`$dir/sendmail.pid')dnl
define(\`confHOST_STATUS_DIRECTORY', \`')dnl
define(\`confDELIVERY_MODE', \`queue')dnl
define(\`confBIND_OPTS', \`-DNSRCH -DEFNAMES')dnl
define(\`confTO_RESOLVER_RETRANS', \`1s')dnl
define(\`confTO_RESOLVER_RETRY', \`1')dnl
define(\`confTO_IDENT', \`0s')dnl
define(\`confMILTER_LOG_LEVEL', \`20')dnl
define(\`confLOG_LEVEL', \`20')dnl
define(\`confDONT_BLAME_SENDMAIL', \`TrustStickyBit')dnl
FEATURE(\`nocanonify')dnl
FEATURE(\`accept_unresolvable_domains')dnl
FEATURE(\`promiscuous_relay')dnl
DAEMON_OPTIONS(\`Port=$SM_PORT, Addr=127.0.0.1, Name=MTA')dnl
INPUT_MAIL_FILTER(\`ccmail', \`S=$spec, F=T, T=S:30s;R:30s;E:5m')dnl
MAILER(\`smtp')dnl
MC
  m4 -D_CF_DIR_="$SM_ROOT/usr/share/sendmail/cf/" "$SM_ROOT/usr/share/sendmail/cf/m4/cf.m4" "$dir/test.mc" \
    > "$dir/test.cf" 2>"$dir/m4.log" || { cat "$dir/m4.log" >&2; return 77; }
  # Sendmail qualifies the host name BEFORE it reads the cf: an unqualified name ("vm")
  # makes it sleep 60 s ("My unqualified host name unknown; sleeping for retry"). A
  # private UTS namespace gives the daemon a qualified name without touching the host's.
  local uts=()
  unshare --uts true 2>/dev/null && uts=(unshare --uts sh -c 'hostname mta-test.localdomain && exec "$@"' sh)
  "${uts[@]}" env LD_LIBRARY_PATH="$SM_ROOT/usr/lib/x86_64-linux-gnu" "$SM_ROOT/usr/libexec/sendmail/sendmail" \
    -C "$dir/test.cf" -bd -L sm-test >"$dir/start.log" 2>&1 || { cat "$dir/start.log" >&2; return 77; }
  wait_until 60 "" "sendmail on 127.0.0.1:$SM_PORT" pf_listening "$SM_PORT" && return 0
  cat "$dir/start.log" >&2; return 77
}

sm_stop() {
  local dir=$1 pid
  [ -f "$dir/sendmail.pid" ] || return 0
  pid=$(head -1 "$dir/sendmail.pid")
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  local i
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

# qf file format: lines starting with R are recipients ("R<flags>:<address>").
sm_queue_rcpts() {
  local dir=$1 qid=$2
  sed -n 's/^R[A-Z]*:<\{0,1\}\([^>]*\)>\{0,1\}$/\1/p' "$dir/queue/qf$qid" 2>/dev/null
}
