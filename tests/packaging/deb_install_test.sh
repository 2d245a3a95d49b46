#!/bin/bash
# deb_install_test.sh - the ccmail-bridge .deb from build to purge, on this machine.
#
#   1. bash packaging/build-deb.sh (dpkg-buildpackage + lintian, must pass)
#   2. apt-get install -y ./ccmail-bridge_*.deb
#   2b. accounts, modes and units of the permission model (SECURITY-DESIGN): group
#      ccmail-milter holds the MTA's user (moved out of group ccmail, as on an upgrade
#      from a version that put it there), modes of every bridge directory, the units
#      (milter as ccmail, ccmail-milter.socket, no /dev/shm), init scripts, the m4 file,
#      tmpfiles never creating /var/spool/postfix, dpkg-statoverride kept by postinst
#   3. start ccmail-milter and ccmail-exporter: systemctl when PID 1 is systemd, otherwise
#      each unit's ExecStart with the unit's settings applied by unshare/mount/setpriv
#      (unit_exec.sh: User/Group/SupplementaryGroups, NoNewPrivileges, UMask, empty
#      CapabilityBoundingSet, LimitNOFILE, PrivateTmp, ProtectHome, ProtectSystem=strict with
#      ReadWritePaths; the seccomp/kernel settings are printed as NOT applied) and checked on
#      the running processes; the milter gets its socket from tests/milter/socket_supervisor.py
#      as ccmail-milter.socket hands it over (fd 3, LISTEN_FDS/LISTEN_PID, SocketUser/Group/Mode)
#   4. configure the local Postfix on 127.0.0.1 only, with the postconf lines of
#      packaging/MTA-SETUP.md; ccmailctl check-mta must then say "configured"
#   5. swaks to a cc:Mail recipient; the import file must appear in the outbox
#   5b. smtp-source load through the system Postfix while the milter is restarted on the
#      inherited socket: no 4xx, every message exported exactly once (outbox manifests)
#   5c. deliver_command (IMPORT stand-in) exits 5 with a .UND file: the exporter's DSN
#      reaches the sender's local mailbox /var/mail/<test user> through Postfix
#   5d. ccmailctl check-mta fails in each broken setup (postfix not in ccmail-milter, smtpd
#      unchrooted, milter/socket stopped, dedup_window < queue lifetime, no main.cf), and
#      passes again after each is restored
#   6. apt-get remove: data kept; apt-get purge: nothing left but what README.Debian lists
#      under "After purge" (files named *ccmail* compared with a snapshot before install)
# Postfix's main.cf and master.cf are saved and restored, Postfix stopped again at the end.
# Load size: CCMAIL_PKGTEST_MESSAGES (200 per run), _SESSIONS (10), _RESTARTS (3), _INTERVAL (1.5 s).
# Exit 77 (ctest SKIP) when not root or when the Debian tools are missing.
# Set CCMAIL_DEB_DIR to reuse an already built .deb (skips step 1).
set -uo pipefail

skip() { echo "SKIPPED: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (installs a package)"
command -v dpkg-buildpackage >/dev/null || skip "dpkg-buildpackage not installed"
command -v dh >/dev/null || skip "debhelper not installed"
command -v apt-get >/dev/null || skip "apt-get not available"
command -v postconf >/dev/null || skip "postfix not installed (scripts/install-deps.sh)"
command -v swaks >/dev/null || skip "swaks not installed"
if dpkg -s ccmail-bridge >/dev/null 2>&1; then skip "ccmail-bridge is already installed on this machine; not touching it"; fi

src="${CCMAIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
# shellcheck source=unit_exec.sh
. "$src/tests/packaging/unit_exec.sh"
work="$(mktemp -d /tmp/ccmail-pkgtest.XXXXXX)"
step() { echo; echo "== $*"; }
fail() { echo "FAIL: $*"; exit 1; }

use_systemd=no
load_restarts="${CCMAIL_PKGTEST_RESTARTS:-3}"     # milter restarts under load
load_messages="${CCMAIL_PKGTEST_MESSAGES:-200}"   # messages per smtp-source run
load_sessions="${CCMAIL_PKGTEST_SESSIONS:-10}"
load_interval="${CCMAIL_PKGTEST_INTERVAL:-1.5}"   # seconds between restarts
if [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ] && [ -d /run/systemd/system ]; then use_systemd=yes; fi

main_cf=/etc/postfix/main.cf
master_cf=/etc/postfix/master.cf
sender_user=ccpkgsnd   # a local mailbox of the system Postfix: the sender that gets the bounce
made_sender=no
had_main_cf=no
postfix_was_running=no
cleanup() {
  set +e
  step "cleanup"
  # Our daemons by pid, never by name (the init scripts' stop would also hit other tests'
  # ccmail-milter); the supervisor stops its milter on SIGTERM.
  [ "$use_systemd" = yes ] && systemctl stop ccmail-milter.socket ccmail-milter ccmail-exporter 2>/dev/null
  for p in ${supervisor_pid:-} ${exporter_pid:-}; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  if dpkg -s ccmail-bridge >/dev/null 2>&1; then apt-get purge -y ccmail-bridge >/dev/null 2>&1; fi
  postfix stop >/dev/null 2>&1
  if [ "$had_main_cf" = yes ]; then cp -p "$work/main.cf.orig" "$main_cf"; else rm -f "$main_cf"; fi
  [ -f "$work/master.cf.orig" ] && cp -p "$work/master.cf.orig" "$master_cf"
  if [ "$made_sender" = yes ]; then userdel "$sender_user" >/dev/null 2>&1; rm -f "/var/mail/$sender_user"; fi
  if [ "$postfix_was_running" = yes ]; then postfix start >/dev/null 2>&1; fi
  rm -rf "$work"
}
trap cleanup EXIT

# ---- 1. build ------------------------------------------------------------
if [ -n "${CCMAIL_DEB_DIR:-}" ]; then
  debdir="$CCMAIL_DEB_DIR"
else
  step "build the .deb (packaging/build-deb.sh)"
  debdir="$work/deb"
  bash "$src/packaging/build-deb.sh" "$debdir" || fail "build-deb.sh (dpkg-buildpackage or lintian) failed"
fi
deb="$(ls "$debdir"/ccmail-bridge_*.deb | grep -v dbgsym | tail -1)"
[ -f "$deb" ] || fail "no ccmail-bridge .deb in $debdir"
cp "$deb" "$work/"
deb="$work/$(basename "$deb")"
chmod 0644 "$deb"; chmod 0755 "$work"   # apt's _apt sandbox user must read it

# ---- 2. install ----------------------------------------------------------
# Compared with the state after purge (only what README.Debian lists may be new).
files_snapshot() {
  find /etc /var /run /usr /opt /srv -xdev \( -path /var/cache/apt -o -path /var/log -o -path /var/tmp \) -prune \
    -o -name '*ccmail*' -print 2>/dev/null | sort
}
accounts_snapshot() {
  { getent passwd | cut -d: -f1 | sed 's/^/user /'; getent group | cut -d: -f1 | sed 's/^/group /'; } | sort
}
files_snapshot > "$work/files.before"
accounts_snapshot > "$work/accounts.before"
step "as an older version left it: postfix in group ccmail"
getent group ccmail >/dev/null || addgroup --system --quiet ccmail
adduser --quiet postfix ccmail
step "apt-get install $deb"
DEBIAN_FRONTEND=noninteractive apt-get install -y "$deb" || fail "apt-get install"
for f in /usr/sbin/ccmail-milter /usr/sbin/ccmail-exporter /usr/bin/ccmailctl /usr/bin/ccmail-convert /usr/bin/ccmail-lint \
         /etc/ccmail-bridge/ccmail-bridge.conf /etc/ccmail-bridge/address-map \
         /usr/share/man/man5/ccmail-bridge.conf.5.gz /usr/share/doc/ccmail-bridge/MTA-SETUP.md; do
  [ -e "$f" ] || fail "$f not installed"
done
getent passwd ccmail >/dev/null || fail "user ccmail not created"
[ "$(stat -c '%U %a' /var/spool/ccmail-bridge)" = "ccmail 700" ] || fail "spool owner/mode: $(stat -c '%U %a' /var/spool/ccmail-bridge)"
step "accounts, modes, units"
in_group() { id -nG "$1" | tr ' ' '\n' | grep -qx "$2"; }
getent group ccmail-milter >/dev/null || fail "group ccmail-milter not created"
in_group postfix ccmail-milter || fail "postfix user not in group ccmail-milter"
in_group postfix ccmail && fail "postfix user still in group ccmail (it may write bridge files)"
want_mode() {  # want_mode PATH "owner:group mode"
  local got; got="$(stat -c '%U:%G %a' "$1" 2>&1)"
  [ "$got" = "$2" ] || fail "$1 is $got, want $2"
}
want_mode /etc/ccmail-bridge "root:root 755"
want_mode /etc/ccmail-bridge/ccmail-bridge.conf "root:ccmail 640"
want_mode /etc/ccmail-bridge/address-map "root:ccmail 640"
want_mode /var/spool/ccmail-bridge/outbox "ccmail:ccmail 750"
want_mode /run/ccmail-bridge "ccmail:ccmail 750"
want_mode /run/ccmail-milter "ccmail:ccmail-milter 750"
want_mode /var/spool/postfix/ccmail-bridge "ccmail:ccmail-milter 750"
unitdir=/lib/systemd/system; [ -f "$unitdir/ccmail-milter.service" ] || unitdir=/usr/lib/systemd/system
for u in ccmail-milter.service ccmail-milter.socket ccmail-exporter.service; do
  [ -f "$unitdir/$u" ] || fail "$u not installed"
done
unit_key() { sed -n "s/^$2=//p" "$unitdir/$1"; }
[ "$(unit_key ccmail-milter.service User)" = ccmail ] || fail "ccmail-milter.service does not run as ccmail"
[ "$(unit_key ccmail-milter.service SupplementaryGroups)" = ccmail-milter ] || fail "ccmail-milter.service: SupplementaryGroups"
[ -z "$(unit_key ccmail-milter.service CapabilityBoundingSet)" ] || fail "ccmail-milter.service keeps capabilities"
for u in ccmail-milter.service ccmail-exporter.service; do
  [ "$(unit_key $u RuntimeDirectoryMode)" = 0750 ] || fail "$u: RuntimeDirectoryMode"
  [ "$(unit_key $u UMask)" = 0027 ] || fail "$u: UMask"
  grep -q '^ReadWritePaths=.*/dev/shm' "$unitdir/$u" && fail "$u: /dev/shm in ReadWritePaths"
done
[ "$(unit_key ccmail-milter.socket ListenStream)" = /var/spool/postfix/ccmail-bridge/milter.sock ] || fail "socket unit: ListenStream"
[ "$(unit_key ccmail-milter.socket SocketUser):$(unit_key ccmail-milter.socket SocketGroup) $(unit_key ccmail-milter.socket SocketMode)" \
  = "ccmail:ccmail-milter 0660" ] || fail "socket unit: owner/mode"
for f in /etc/init.d/ccmail-milter /etc/init.d/ccmail-exporter; do [ -x "$f" ] || fail "$f not installed"; done
grep -q 'invoke-rc.d\|deb-systemd-invoke' /var/lib/dpkg/info/ccmail-bridge.prerm 2>/dev/null || fail "prerm does not stop the daemons"
[ -f /usr/share/doc/ccmail-bridge/README.Debian ] || fail "README.Debian not installed"
m4=/etc/mail/m4/ccmail-bridge.m4
[ -f "$m4" ] || fail "$m4 not installed"
grep -q "F=T" "$m4" && grep -q "T=S:30s;R:30s;E:5m" "$m4" && grep -q "S=unix:/run/ccmail-milter/milter.sock" "$m4" \
  || fail "$m4: want F=T, the tests' timeouts and Sendmail's socket"
grep -v '^dnl' "$m4" | grep -q '{i}' && fail "$m4 adds the redundant {i}"
tmpf=/usr/lib/tmpfiles.d/ccmail-bridge.conf
[ -f "$tmpf" ] || fail "$tmpf not installed"
awk '$2 ~ /^\/var\//' "$tmpf" | grep -q . && fail "tmpfiles.d touches /var (would create /var/spool/postfix without Postfix, or reset a statoverride at boot)"
step "postinst keeps a dpkg-statoverride"
dpkg-statoverride --update --add ccmail ccmail 0700 /var/spool/ccmail-bridge/outbox || fail "dpkg-statoverride --add"
dpkg-reconfigure -fnoninteractive ccmail-bridge || fail "dpkg-reconfigure"
got="$(stat -c %a /var/spool/ccmail-bridge/outbox)"
dpkg-statoverride --remove /var/spool/ccmail-bridge/outbox
[ "$got" = 700 ] || fail "postinst overrode the statoverride of the outbox (mode $got)"
step "postinst is idempotent: dpkg-reconfigure / reinstall"
DEBIAN_FRONTEND=noninteractive apt-get install -y --reinstall "$deb" >/dev/null || fail "reinstall"
dpkg-reconfigure -fnoninteractive ccmail-bridge || fail "dpkg-reconfigure"

# ---- 3. configure the bridge and start it ----------------------------------
step "configure ccmail-bridge (ccmail_domains, address map)"
cat >> /etc/ccmail-bridge/ccmail-bridge.conf <<'CONF'
ccmail_domains = ccmail.test
default_postoffice = TESTPO
# The site's IMPORT job: reports a message with this subject undeliverable (exit 5 with the
# batch as the .UND file), so the exporter bounces it to the sender through bounce_relay.
deliver_command = grep -q pkgtest-undeliverable "$CCMAIL_BATCH" || exit 0; cp "$CCMAIL_BATCH" "$CCMAIL_UND"; exit 5
CONF
echo 'jsmith@ccmail.test   Smith, John at HUBPO2' >> /etc/ccmail-bridge/address-map
/usr/sbin/ccmail-milter -c /etc/ccmail-bridge/ccmail-bridge.conf --check || fail "ccmail-milter --check"

step "start the services (systemd: $use_systemd)"
# Our daemons only: other tests on the machine may run ccmail-milter from a build tree.
our_pid() { pgrep -o -f "^/usr/sbin/$1 -c /etc/ccmail-bridge/"; }
sock_path="$(unit_key ccmail-milter.socket ListenStream)"
supervisor_pid=""
start_milter() {  # the socket as ccmail-milter.socket makes it, the milter as the service runs
  rm -f "$work/mil.ready" "$work/mil.go" "$work/mil.go.restarts" "$work/mil.go.done"
  if [ "$use_systemd" = yes ]; then
    systemctl start ccmail-milter.socket ccmail-milter || fail "systemctl start ccmail-milter"
    (  # restarts as socket_supervisor.py does them: after the go file, every $2 seconds
      while [ ! -e "$work/mil.go" ]; do sleep 0.05; done
      for i in $(seq 1 "${1:-0}"); do
        sleep "${2:-1}"; systemctl restart ccmail-milter && echo "restart $i: systemctl restart ccmail-milter" >> "$work/mil.go.restarts"
      done
      touch "$work/mil.go.done"
    ) &
    supervisor_pid=$!
    return 0
  fi
  # shellcheck disable=SC2086
  python3 "$src/tests/milter/socket_supervisor.py" --socket "$sock_path" --inherit \
    --group "$(unit_key ccmail-milter.socket SocketGroup)" --ready "$work/mil.ready" --go "$work/mil.go" \
    --restarts "${1:-0}" --interval "${2:-1}" -- /usr/bin/unshare -m --propagation private /bin/sh "$work/run-milter.sh" \
    >> "$work/milter.log" 2>&1 &
  supervisor_pid=$!
  for _ in $(seq 1 100); do [ -e "$work/mil.ready" ] && break; sleep 0.1; done
  [ -e "$work/mil.ready" ] || { cat "$work/milter.log"; fail "socket supervisor did not start the milter"; }
  # socket_supervisor.py sets SocketGroup and SocketMode; SocketUser here (it binds as root).
  chown "$(unit_key ccmail-milter.socket SocketUser)" "$sock_path"
  chmod "$(unit_key ccmail-milter.socket SocketMode)" "$sock_path"
  for _ in $(seq 1 100); do our_pid ccmail-milter >/dev/null && break; sleep 0.1; done
}
stop_milter() {  # systemctl stop ccmail-milter.socket ccmail-milter
  if [ "$use_systemd" = yes ]; then systemctl stop ccmail-milter.socket ccmail-milter; fi
  [ -n "$supervisor_pid" ] || return 0
  kill "$supervisor_pid" 2>/dev/null; wait "$supervisor_pid" 2>/dev/null; supervisor_pid=""
}
if [ "$use_systemd" = yes ]; then
  systemctl restart ccmail-exporter || fail "systemctl start ccmail-exporter"
  start_milter
  systemctl is-active ccmail-exporter ccmail-milter.socket ccmail-milter || fail "services not active"
else
  # No systemd as PID 1: each unit's ExecStart with the unit's settings applied by
  # unshare/mount/setpriv (unit_exec.sh prints what is applied and what is not), the milter
  # handed the listening socket (fd 3, LISTEN_FDS/LISTEN_PID) the way ccmail-milter.socket does.
  echo "systemd is not PID 1: the units' settings applied by unshare/setpriv as follows"
  echo "-- ccmail-exporter.service:"
  unit_exec_command "$unitdir/ccmail-exporter.service" "$work/run-exporter.sh" || fail "ccmail-exporter.service settings"
  echo "-- ccmail-milter.service (socket from ccmail-milter.socket: ListenStream=$sock_path, Backlog=SOMAXCONN):"
  unit_exec_command "$unitdir/ccmail-milter.service" "$work/run-milter.sh" || fail "ccmail-milter.service settings"
  unshare -m --propagation private /bin/sh "$work/run-exporter.sh" > "$work/exporter.log" 2>&1 &
  exporter_pid=$!
  start_milter
fi
[ -S "$sock_path" ] || { cat "$work"/*.log 2>/dev/null; fail "milter socket not there"; }
want_mode "$sock_path" "ccmail:ccmail-milter 660"
for _ in $(seq 1 50); do our_pid ccmail-exporter >/dev/null && break; sleep 0.1; done
pid_user() { local p; p="$(our_pid "$1")"; [ -n "$p" ] && ps -o user= -p "$p" | tr -d ' '; }
[ "$(pid_user ccmail-milter)" = ccmail ] || { cat "$work/milter.log"; fail "ccmail-milter does not run as ccmail"; }
[ "$(pid_user ccmail-exporter)" = ccmail ] || { cat "$work/exporter.log"; fail "ccmail-exporter does not run as ccmail"; }
if [ "$use_systemd" = no ]; then
  step "the daemons run with the units' settings"
  for d in ccmail-milter ccmail-exporter; do
    pid="$(our_pid "$d")"
    st="/proc/$pid/status"
    grep -q '^NoNewPrivs:[[:space:]]*1' "$st" || fail "$d: NoNewPrivs not set"
    grep -q '^CapBnd:[[:space:]]*0000000000000000' "$st" || fail "$d: capability bounding set not empty"
    grep -q '^Umask:[[:space:]]*0027' "$st" || fail "$d: umask $(sed -n 's/^Umask:\t//p' "$st")"
    [ "$(readlink /proc/$pid/ns/mnt)" != "$(readlink /proc/1/ns/mnt)" ] || fail "$d: not in its own mount namespace"
    # Read-only even for root (EROFS); the ReadWritePaths stay writable.
    if nsenter -t "$pid" -m touch /etc/ccmail-bridge/.pkgtest-w 2>/dev/null; then
      rm -f /etc/ccmail-bridge/.pkgtest-w; fail "$d: /etc writable in its namespace (ProtectSystem=strict)"
    fi
    nsenter -t "$pid" -m sh -c 'touch /var/spool/ccmail-bridge/.pkgtest-w && rm /var/spool/ccmail-bridge/.pkgtest-w' \
      || fail "$d: /var/spool/ccmail-bridge not writable in its namespace (ReadWritePaths)"
    nsenter -t "$pid" -m test -e "$work" && fail "$d: sees the host's /tmp (PrivateTmp)"
    echo "$d (pid $pid): $(ps -o user=,group=,supgrp= -p "$pid"), NoNewPrivs=1, CapBnd=0, Umask=0027, own mount namespace: /etc read-only, spool writable, private /tmp"
  done
  tr '\0' '\n' < "/proc/$(our_pid ccmail-milter)/environ" | grep -qx 'LISTEN_FDS=1' || fail "ccmail-milter did not get LISTEN_FDS=1"
fi

# ---- 4. Postfix, as MTA-SETUP.md says, on loopback only -----------------------
step "configure Postfix (loopback only) as documented"
if [ -f "$main_cf" ]; then had_main_cf=yes; cp -p "$main_cf" "$work/main.cf.orig"; fi
cp -p "$master_cf" "$work/master.cf.orig"
if postfix status >/dev/null 2>&1; then postfix_was_running=yes; fi
[ -f "$main_cf" ] || cp /usr/share/postfix/main.cf.debian "$main_cf"
postconf -e 'inet_interfaces = loopback-only' 'inet_protocols = ipv4' 'myhostname = mx.pkgtest.invalid' \
  'mydestination = localhost' 'mynetworks = 127.0.0.0/8' 'relayhost =' \
  'relay_domains = ccmail.test' 'transport_maps =' 'default_transport = discard:pkgtest' \
  'relay_transport = discard:pkgtest' 'smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination' \
  'alias_maps =' 'local_transport = local' "maillog_file = $work/maillog" "maillog_file_prefixes = $work" 'default_process_limit = 100'
if ! getent passwd "$sender_user" >/dev/null; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$sender_user" || fail "useradd $sender_user"
  made_sender=yes
fi
rm -f "/var/mail/$sender_user"
echo "ccmailctl check-mta before (must report missing):"
if /usr/bin/ccmailctl check-mta; then fail "check-mta says configured before Postfix was configured"; fi
# The documented lines, verbatim:
postconf -e 'smtpd_milters = unix:/ccmail-bridge/milter.sock'
postconf -e 'non_smtpd_milters = unix:/ccmail-bridge/milter.sock'
postconf -e 'milter_default_action = tempfail'
postconf -e 'milter_protocol = 6'
/usr/bin/ccmailctl check-mta || fail "check-mta after configuring Postfix"
postfix check || fail "postfix check"
postfix stop >/dev/null 2>&1; postfix start || fail "postfix start"
for _ in $(seq 1 50); do swaks --server 127.0.0.1 --quit-after CONNECT >/dev/null 2>&1 && break; sleep 0.2; done

# ---- 5. mail ------------------------------------------------------------
step "send mail to a cc:Mail recipient"
subject="pkgtest-$$-$(date +%s)"
swaks --server 127.0.0.1 --from sender@example.org --to jsmith@ccmail.test \
  --header "Subject: $subject" --body "hello from the package test" || fail "swaks"
found=""
for _ in $(seq 1 150); do
  found="$(grep -rl -- "$subject" /var/spool/ccmail-bridge/outbox 2>/dev/null | head -1)"
  [ -n "$found" ] && break
  sleep 0.2
done
if [ -z "$found" ]; then
  find /var/spool/ccmail-bridge -type f -ls; tail -20 /var/log/mail.log 2>/dev/null; cat "$work"/*.log 2>/dev/null
  fail "message not found in /var/spool/ccmail-bridge/outbox within 30 s"
fi
echo "outbox: $found"
grep -q "Smith, John" "$found" || fail "recipient name not in $found"

# ---- 5b. restart the milter under load ------------------------------------------
# As `systemctl restart ccmail-milter` with ccmail-milter.socket: the supervisor keeps the
# listening socket and restarts the milter (SIGTERM, wait, start) while smtp-source sends.
# Every message must get 250 (smtp-source stops at the first 4xx; Postfix logs
# milter-reject for each) and be exported exactly once (one manifest line each).
step "restart the milter $load_restarts times under load through the system Postfix"
manifest_lines() {  # SENDER -> the outbox manifest lines (deliveries) of that envelope sender
  find /var/spool/ccmail-bridge/outbox -name '*.MAN' -exec cat {} + 2>/dev/null | grep -v '^#' | awk -F'\t' -v s="$1" '$4 == s'
}
stop_milter
: > "$work/milter.log"
start_milter "$load_restarts" "$load_interval"
[ "$use_systemd" = yes ] || for _ in $(seq 1 100); do grep -q 'listening on' "$work/milter.log" && break; sleep 0.1; done
log_from=$(($(wc -l < "$work/maillog") + 1))
load_sender=load@example.org
touch "$work/mil.go"
sent=0; runs=0; load_rc=0
while :; do
  smtp-source -s "$load_sessions" -m "$load_messages" -l 2000 -f "$load_sender" -t jsmith@ccmail.test \
    127.0.0.1:25 2>> "$work/smtp-source.err" || load_rc=1
  runs=$((runs + 1)); sent=$((sent + load_messages))
  [ "$load_rc" = 0 ] || break
  [ -e "$work/mil.go.done" ] && break
  [ "$runs" -ge 20 ] && break
done
for _ in $(seq 1 300); do [ -e "$work/mil.go.done" ] && break; sleep 0.1; done
restarted=$(grep -c '^restart' "$work/mil.go.restarts" 2>/dev/null)
sed 's/^/  /' "$work/mil.go.restarts" 2>/dev/null
tail -n +"$log_from" "$work/maillog" > "$work/maillog.load"
four=$(grep -cE 'milter-reject: .*: 4[0-9][0-9] ' "$work/maillog.load")
echo "restarts=$restarted smtp-source runs=$runs messages sent=$sent 4xx (maillog milter-reject)=$four smtp-source errors=$(wc -l < "$work/smtp-source.err")"
[ "$restarted" = "$load_restarts" ] || fail "$restarted of $load_restarts milter restarts"
# The 4xx count comes from this log: it must show every message of the load.
logged=$(grep -c "from=<$load_sender>" "$work/maillog.load")
[ "$logged" -ge "$sent" ] || fail "the maillog shows $logged of $sent messages: cannot count 4xx answers from it"
if [ "$four" != 0 ] || [ "$load_rc" != 0 ]; then
  grep -E 'milter-reject|warning: milter' "$work/maillog.load" | head -5; head -5 "$work/smtp-source.err"; tail -20 "$work/milter.log"
  fail "the MTA answered 4xx while the milter restarted on the inherited socket"
fi
exported=0
for _ in $(seq 1 600); do
  exported=$(manifest_lines "$load_sender" | wc -l)
  [ "$exported" -ge "$sent" ] && break
  sleep 0.2
done
sleep 2  # a duplicate would be exported after the last original
exported=$(manifest_lines "$load_sender" | wc -l)
distinct=$(manifest_lines "$load_sender" | cut -f2 | sort -u | wc -l)
captures=$(manifest_lines "$load_sender" | cut -f1 | sort -u | wc -l)
echo "exported: $exported deliveries, $distinct distinct content keys, $captures distinct captures"
[ "$exported" = "$sent" ] && [ "$distinct" = "$sent" ] && [ "$captures" = "$sent" ] \
  || fail "sent $sent messages, the outbox manifests list $exported deliveries ($distinct distinct, $captures captures): not exactly once"

# ---- 5c. a bounce reaches the sender's mailbox ------------------------------------
# deliver_command (the IMPORT stand-in configured above) reports the message undeliverable:
# the exporter, under NoNewPrivileges, sends the DSN with the null sender over SMTP to
# bounce_relay (127.0.0.1:25), and the system Postfix delivers it to the local mailbox.
step "bounce to the local mailbox /var/mail/$sender_user"
und_subject="pkgtest-undeliverable-$$"
swaks --server 127.0.0.1 --from "$sender_user@localhost" --to jsmith@ccmail.test \
  --header "Subject: $und_subject" --body "IMPORT will call this undeliverable" >/dev/null || fail "swaks (bounce message)"
got_dsn=no
for _ in $(seq 1 300); do
  if grep -q "Undeliverable: $und_subject" "/var/mail/$sender_user" 2>/dev/null; then got_dsn=yes; break; fi
  sleep 0.2
done
if [ "$got_dsn" = no ]; then
  ls -lR /var/spool/ccmail-bridge/bounce 2>/dev/null | head; tail -20 "$work/maillog"; tail -20 "$work/exporter.log"
  fail "no delivery status notification for '$und_subject' in /var/mail/$sender_user within 60 s"
fi
grep -q '^Return-Path: <>' "/var/mail/$sender_user" || fail "the DSN was not sent with the null sender"
grep -qi 'multipart/report.*delivery-status' "/var/mail/$sender_user" || grep -qi 'report-type=delivery-status' "/var/mail/$sender_user" \
  || fail "the notice in /var/mail/$sender_user is not a multipart/report DSN"
grep -q 'Status: 5.1.1' "/var/mail/$sender_user" || fail "the DSN has no Status: 5.1.1"
echo "DSN delivered to /var/mail/$sender_user: $(grep -m1 '^Subject:' "/var/mail/$sender_user")"

# ---- 5d. ccmailctl check-mta in each broken setup ----------------------------------
step "ccmailctl check-mta fails in each broken setup"
must_fail_check() {  # WHAT GREP-REGEX: check-mta must exit 1 and name the problem
  local out rc
  out="$(/usr/bin/ccmailctl check-mta 2>&1)"; rc=$?
  if [ "$rc" != 1 ] || ! grep -qE "$2" <<< "$out"; then
    echo "$out"; fail "check-mta with $1: exit $rc, want 1 and a line matching /$2/"
  fi
  echo "  $1: exit 1, $(grep -E "$2" <<< "$out" | head -1 | sed 's/^ *//')"
}
must_pass_check() {
  /usr/bin/ccmailctl check-mta > "$work/check.out" 2>&1 || { cat "$work/check.out"; fail "check-mta after restoring: $1"; }
}
must_pass_check "the working setup"
# 1. postfix not in group ccmail-milter
gpasswd -d postfix ccmail-milter >/dev/null || fail "gpasswd -d postfix ccmail-milter"
must_fail_check "postfix not in group ccmail-milter" '^WRONG +postfix: connect to .* as postfix'
adduser --quiet postfix ccmail-milter
must_pass_check "postfix back in ccmail-milter"
# 2. smtpd not chrooted while smtpd_milters names the chroot-relative socket
old_chroot="$(postconf -Fh smtp/inet/chroot)"
postconf -F 'smtp/inet/chroot = n'
must_fail_check "smtpd unchrooted, milter path chroot-relative" '^WRONG +postfix: smtpd_milters \(not chrooted\)'
postconf -F "smtp/inet/chroot = $old_chroot"
must_pass_check "smtpd chroot restored"
# 3. the socket missing: milter and socket stopped (the socket file removed, as on a fresh boot)
stop_milter
must_fail_check "milter and socket stopped (stale socket file)" '^WRONG +postfix: connect to '
rm -f "$sock_path"
must_fail_check "socket missing" '^MISSING +postfix: milter socket '
start_milter
must_pass_check "milter started again"
# 4. dedup_window (7d default) shorter than the queue lifetime + 1d
old_mql="$(postconf -h maximal_queue_lifetime)"
postconf -e 'maximal_queue_lifetime = 10d'
must_fail_check "dedup_window 7d, maximal_queue_lifetime 10d" '^WRONG +postfix: dedup window'
postconf -e "maximal_queue_lifetime = $old_mql"
must_pass_check "maximal_queue_lifetime restored"
# 5. no main.cf (saved and put back; the test restores it at exit in any case)
mv "$main_cf" "$work/main.cf.checkmta"
must_fail_check "no main.cf" '^MISSING +postfix: Postfix not configured'
mv "$work/main.cf.checkmta" "$main_cf"
must_pass_check "main.cf back"

# ---- 6. remove, purge ------------------------------------------------------
step "stop services, apt-get remove (data kept)"
# The daemons stay running: the package's prerm must stop them (init script or systemd).
# A policy-rc.d that denies every action (containers) makes invoke-rc.d a no-op; then the
# init scripts' stop is run here and prerm's invoke-rc.d call was checked above.
if [ "$use_systemd" = no ] && [ -x /usr/sbin/policy-rc.d ]; then
  /usr/sbin/policy-rc.d ccmail-milter stop >/dev/null 2>&1; prc=$?
  if [ $prc = 101 ]; then
    # Not through the init scripts: they stop by process name (start-stop-daemon --name),
    # which would also stop other tests' ccmail-milter on a shared machine.
    echo "policy-rc.d denies invoke-rc.d: stopping our daemons as systemctl stop would"
    stop_milter
    [ -n "${exporter_pid:-}" ] && kill "$exporter_pid" 2>/dev/null && wait "$exporter_pid" 2>/dev/null
  fi
fi
postfix stop >/dev/null 2>&1
DEBIAN_FRONTEND=noninteractive apt-get remove -y ccmail-bridge || fail "apt-get remove"
running() { our_pid ccmail-milter >/dev/null || our_pid ccmail-exporter >/dev/null; }
for _ in $(seq 1 50); do running || break; sleep 0.2; done
running && fail "daemons still running after apt-get remove: $(pgrep -af '^/usr/sbin/ccmail-')"
[ -f "$found" ] || fail "remove deleted the outbox (only purge may)"
[ -f /etc/ccmail-bridge/ccmail-bridge.conf ] || fail "remove deleted the conffile"
step "apt-get purge"
DEBIAN_FRONTEND=noninteractive apt-get purge -y ccmail-bridge || fail "apt-get purge"
dpkg -l ccmail-bridge 2>/dev/null | grep -q '^[ir]' && fail "dpkg still knows ccmail-bridge"
left=""
for p in /etc/ccmail-bridge /etc/mail/m4/ccmail-bridge.m4 /var/spool/ccmail-bridge /var/spool/postfix/ccmail-bridge /run/ccmail-bridge \
         /run/ccmail-milter /usr/sbin/ccmail-milter /usr/sbin/ccmail-exporter /usr/bin/ccmailctl /usr/share/doc/ccmail-bridge \
         /etc/init.d/ccmail-milter /etc/init.d/ccmail-exporter "$unitdir/ccmail-milter.service" "$unitdir/ccmail-milter.socket" \
         "$unitdir/ccmail-exporter.service"; do
  [ -e "$p" ] && left="$left $p"
done
[ -z "$left" ] || fail "left after purge:$left"
ls /dev/shm | grep -q '^ccmail-bridge' && fail "left after purge: /dev/shm/$(ls /dev/shm | grep '^ccmail-bridge' | tr '\n' ' ')"
# What README.Debian ("After purge") says is kept must be all that is left.
readme="$src/packaging/debian/README.Debian"
kept="$(sed -n '/^After purge/,$p' "$readme" | sed -n 's/^  \(user\|group\) \([a-z0-9_-]*\)$/\1 \2/p')"
[ -n "$kept" ] || fail "$readme lists nothing under 'After purge'"
echo "README.Debian: kept after purge: $(echo $kept)"
while read -r kind name; do
  db=passwd; [ "$kind" = group ] && db=group
  getent "$db" "$name" >/dev/null || fail "README.Debian says $kind $name is kept after purge, but it is gone"
done <<< "$kept"
accounts_snapshot > "$work/accounts.after"
new_accounts="$(comm -13 "$work/accounts.before" "$work/accounts.after" | grep -vx "user $sender_user\|group $sender_user" | grep -vxF "$kept")"
[ -z "$new_accounts" ] || fail "accounts left after purge that README.Debian does not list: $(echo $new_accounts)"
files_snapshot > "$work/files.after"
new_files="$(comm -13 "$work/files.before" "$work/files.after")"
[ -z "$new_files" ] || fail "left after purge (README.Debian lists no file):
$new_files"
for g in $(echo "$kept" | awk '$1 == "group" { print $2 }'); do
  members="$(getent group "$g" | cut -d: -f4)"
  [ -z "$members" ] || fail "group $g still has members after purge: $members"
done
echo "after purge: no file named *ccmail* under /etc /var /run /usr /opt /srv that was not there before, only $(echo $kept) (README.Debian), no members in the kept groups"
echo "PASS"
exit 0
