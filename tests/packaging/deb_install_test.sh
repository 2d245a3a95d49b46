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
#   3. start ccmail-milter and ccmail-exporter: systemctl when PID 1 is systemd,
#      otherwise the units' ExecStart commands as User=ccmail (milter: and group
#      ccmail-milter); stopped at remove by prerm (or the init scripts' stop, which
#      finds them by name, where policy-rc.d denies invoke-rc.d)
#   4. configure the local Postfix on 127.0.0.1 only, with the postconf lines of
#      packaging/MTA-SETUP.md; ccmailctl check-mta must then say "configured"
#   5. swaks to a cc:Mail recipient; the import file must appear in the outbox
#   6. apt-get remove: data kept; apt-get purge: nothing of ours left but the
#      ccmail user/group (kept by Debian practice)
# Postfix's main.cf is saved and restored, Postfix stopped again at the end.
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
work="$(mktemp -d /tmp/ccmail-pkgtest.XXXXXX)"
step() { echo; echo "== $*"; }
fail() { echo "FAIL: $*"; exit 1; }

use_systemd=no
if [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ] && [ -d /run/systemd/system ]; then use_systemd=yes; fi

main_cf=/etc/postfix/main.cf
had_main_cf=no
postfix_was_running=no
cleanup() {
  set +e
  step "cleanup"
  if [ "$use_systemd" = no ]; then
    [ -x /etc/init.d/ccmail-milter ] && /etc/init.d/ccmail-milter stop >/dev/null 2>&1
    [ -x /etc/init.d/ccmail-exporter ] && /etc/init.d/ccmail-exporter stop >/dev/null 2>&1
  fi
  if dpkg -s ccmail-bridge >/dev/null 2>&1; then apt-get purge -y ccmail-bridge >/dev/null 2>&1; fi
  postfix stop >/dev/null 2>&1
  if [ "$had_main_cf" = yes ]; then cp -p "$work/main.cf.orig" "$main_cf"; else rm -f "$main_cf"; fi
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
CONF
echo 'jsmith@ccmail.test   Smith, John at HUBPO2' >> /etc/ccmail-bridge/address-map
/usr/sbin/ccmail-milter -c /etc/ccmail-bridge/ccmail-bridge.conf --check || fail "ccmail-milter --check"

step "start the services (systemd: $use_systemd)"
if [ "$use_systemd" = yes ]; then
  systemctl restart ccmail-exporter ccmail-milter || fail "systemctl start"
  systemctl is-active ccmail-exporter ccmail-milter || fail "services not active"
else
  # No systemd: the units' ExecStart commands as their User=/SupplementaryGroups= say (the
  # init scripts are checked above; they are stopped through below).
  exp_cmd="$(sed -n 's/^ExecStart=//p' "$unitdir/ccmail-exporter.service")"
  mil_cmd="$(sed -n 's/^ExecStart=//p' "$unitdir/ccmail-milter.service")"
  [ -n "$exp_cmd" ] && [ -n "$mil_cmd" ] || fail "cannot read ExecStart of the units"
  # shellcheck disable=SC2086
  setpriv --reuid=ccmail --regid=ccmail --init-groups --no-new-privs $exp_cmd > "$work/exporter.log" 2>&1 &
  # shellcheck disable=SC2086
  setpriv --reuid=ccmail --regid=ccmail --groups=ccmail-milter --no-new-privs $mil_cmd > "$work/milter.log" 2>&1 &
  for _ in $(seq 1 100); do [ -S /var/spool/postfix/ccmail-bridge/milter.sock ] && break; sleep 0.1; done
fi
[ -S /var/spool/postfix/ccmail-bridge/milter.sock ] || { cat "$work"/*.log 2>/dev/null; fail "milter socket not there"; }
want_mode /var/spool/postfix/ccmail-bridge/milter.sock "ccmail:ccmail-milter 660"
[ "$(ps -o user= -C ccmail-milter | sort -u | tr -d ' ')" = ccmail ] || fail "ccmail-milter does not run as ccmail"

# ---- 4. Postfix, as MTA-SETUP.md says, on loopback only -----------------------
step "configure Postfix (loopback only) as documented"
if [ -f "$main_cf" ]; then had_main_cf=yes; cp -p "$main_cf" "$work/main.cf.orig"; fi
if postfix status >/dev/null 2>&1; then postfix_was_running=yes; fi
[ -f "$main_cf" ] || cp /usr/share/postfix/main.cf.debian "$main_cf"
postconf -e 'inet_interfaces = loopback-only' 'inet_protocols = ipv4' 'myhostname = mx.pkgtest.invalid' \
  'mydestination = localhost' 'mynetworks = 127.0.0.0/8' 'relayhost =' \
  'relay_domains = ccmail.test' 'transport_maps =' 'default_transport = discard:pkgtest' \
  'relay_transport = discard:pkgtest' 'smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination'
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

# ---- 6. remove, purge ------------------------------------------------------
step "stop services, apt-get remove (data kept)"
# The daemons stay running: the package's prerm must stop them (init script or systemd).
# A policy-rc.d that denies every action (containers) makes invoke-rc.d a no-op; then the
# init scripts' stop is run here and prerm's invoke-rc.d call was checked above.
if [ "$use_systemd" = no ] && [ -x /usr/sbin/policy-rc.d ]; then
  /usr/sbin/policy-rc.d ccmail-milter stop >/dev/null 2>&1; prc=$?
  if [ $prc = 101 ]; then
    echo "policy-rc.d denies invoke-rc.d: stopping through the init scripts"
    /etc/init.d/ccmail-milter stop; /etc/init.d/ccmail-exporter stop
  fi
fi
postfix stop >/dev/null 2>&1
DEBIAN_FRONTEND=noninteractive apt-get remove -y ccmail-bridge || fail "apt-get remove"
running() { pgrep -x ccmail-milter >/dev/null || pgrep -x ccmail-exporter >/dev/null; }
for _ in $(seq 1 50); do running || break; sleep 0.2; done
running && fail "daemons still running after apt-get remove: $(pgrep -a ccmail-)"
[ -f "$found" ] || fail "remove deleted the outbox (only purge may)"
[ -f /etc/ccmail-bridge/ccmail-bridge.conf ] || fail "remove deleted the conffile"
step "apt-get purge"
DEBIAN_FRONTEND=noninteractive apt-get purge -y ccmail-bridge || fail "apt-get purge"
left=""
for p in /etc/ccmail-bridge /var/spool/ccmail-bridge /var/spool/postfix/ccmail-bridge /run/ccmail-bridge /run/ccmail-milter \
         /usr/sbin/ccmail-milter /usr/sbin/ccmail-exporter /usr/bin/ccmailctl /usr/share/doc/ccmail-bridge \
         /usr/lib/systemd/system/ccmail-milter.service /lib/systemd/system/ccmail-milter.service; do
  [ -e "$p" ] && left="$left $p"
done
ls /dev/shm | grep -q '^ccmail-bridge' && left="$left /dev/shm/$(ls /dev/shm | grep '^ccmail-bridge' | tr '\n' ' ')"
[ -z "$left" ] || fail "left after purge:$left"
dpkg -l ccmail-bridge 2>/dev/null | grep -q '^[ir]' && fail "dpkg still knows ccmail-bridge"
echo "after purge only the system user/group remain (Debian keeps them): $(getent passwd ccmail | cut -d: -f1,3)"
id -nG postfix | tr ' ' '\n' | grep -qx ccmail && fail "postfix still in group ccmail after purge"
id -nG postfix | tr ' ' '\n' | grep -qx ccmail-milter && fail "postfix still in group ccmail-milter after purge"
echo "PASS"
exit 0
