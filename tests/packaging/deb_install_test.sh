#!/bin/bash
# deb_install_test.sh - the ccmail-bridge .deb from build to purge, on this machine.
#
#   1. bash packaging/build-deb.sh (dpkg-buildpackage + lintian, must pass)
#   2. apt-get install -y ./ccmail-bridge_*.deb
#   3. start ccmail-milter and ccmail-exporter: systemctl when PID 1 is systemd,
#      otherwise the units' exact ExecStart commands (milter as root, it drops to
#      ccmail itself; exporter as User=ccmail, as in the unit)
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
pids=()
cleanup() {
  set +e
  step "cleanup"
  if [ "$use_systemd" = no ]; then for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; sleep 1
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; fi
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
step "apt-get install $deb"
DEBIAN_FRONTEND=noninteractive apt-get install -y "$deb" || fail "apt-get install"
for f in /usr/sbin/ccmail-milter /usr/sbin/ccmail-exporter /usr/bin/ccmailctl /usr/bin/ccmail-convert /usr/bin/ccmail-lint \
         /etc/ccmail-bridge/ccmail-bridge.conf /etc/ccmail-bridge/address-map \
         /usr/share/man/man5/ccmail-bridge.conf.5.gz /usr/share/doc/ccmail-bridge/MTA-SETUP.md; do
  [ -e "$f" ] || fail "$f not installed"
done
getent passwd ccmail >/dev/null || fail "user ccmail not created"
[ "$(stat -c '%U %a' /var/spool/ccmail-bridge)" = "ccmail 700" ] || fail "spool owner/mode: $(stat -c '%U %a' /var/spool/ccmail-bridge)"
id -nG postfix | tr ' ' '\n' | grep -qx ccmail || fail "postfix user not in group ccmail"
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

unit_exec() {  # the ExecStart= command line of an installed unit
  sed -n 's/^ExecStart=//p' "/usr/lib/systemd/system/$1" /lib/systemd/system/"$1" 2>/dev/null | head -1
}
step "start the services (systemd: $use_systemd)"
if [ "$use_systemd" = yes ]; then
  systemctl restart ccmail-exporter ccmail-milter || fail "systemctl start"
  systemctl is-active ccmail-exporter ccmail-milter || fail "services not active"
else
  # Same preparation as the units: RuntimeDirectory=ccmail-bridge (0770 ccmail).
  install -d -o ccmail -g ccmail -m 0770 /run/ccmail-bridge
  exp_cmd="$(unit_exec ccmail-exporter.service)"; mil_cmd="$(unit_exec ccmail-milter.service)"
  [ -n "$exp_cmd" ] && [ -n "$mil_cmd" ] || fail "cannot read ExecStart of the units"
  echo "exporter (as ccmail): $exp_cmd"
  # shellcheck disable=SC2086
  setpriv --reuid=ccmail --regid=ccmail --init-groups --no-new-privs $exp_cmd > "$work/exporter.log" 2>&1 &
  pids+=($!)
  echo "milter (as root, drops to ccmail): $mil_cmd"
  # shellcheck disable=SC2086
  $mil_cmd > "$work/milter.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do [ -S /var/spool/postfix/ccmail-bridge/milter.sock ] && break; sleep 0.1; done
fi
[ -S /var/spool/postfix/ccmail-bridge/milter.sock ] || { cat "$work"/*.log 2>/dev/null; fail "milter socket not there"; }

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
if [ "$use_systemd" = no ]; then for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; pids=(); fi
postfix stop >/dev/null 2>&1
DEBIAN_FRONTEND=noninteractive apt-get remove -y ccmail-bridge || fail "apt-get remove"
[ -f "$found" ] || fail "remove deleted the outbox (only purge may)"
[ -f /etc/ccmail-bridge/ccmail-bridge.conf ] || fail "remove deleted the conffile"
step "apt-get purge"
DEBIAN_FRONTEND=noninteractive apt-get purge -y ccmail-bridge || fail "apt-get purge"
left=""
for p in /etc/ccmail-bridge /var/spool/ccmail-bridge /var/spool/postfix/ccmail-bridge /run/ccmail-bridge \
         /usr/sbin/ccmail-milter /usr/sbin/ccmail-exporter /usr/bin/ccmailctl /usr/share/doc/ccmail-bridge \
         /usr/lib/systemd/system/ccmail-milter.service /lib/systemd/system/ccmail-milter.service; do
  [ -e "$p" ] && left="$left $p"
done
ls /dev/shm | grep -q '^ccmail-bridge' && left="$left /dev/shm/$(ls /dev/shm | grep '^ccmail-bridge' | tr '\n' ' ')"
[ -z "$left" ] || fail "left after purge:$left"
dpkg -l ccmail-bridge 2>/dev/null | grep -q '^[ir]' && fail "dpkg still knows ccmail-bridge"
echo "after purge only the system user/group remain (Debian keeps them): $(getent passwd ccmail | cut -d: -f1,3)"
id -nG postfix | tr ' ' '\n' | grep -qx ccmail && fail "postfix still in group ccmail after purge"
echo "PASS"
exit 0
