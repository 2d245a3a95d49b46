#!/bin/bash
# units_hardened.sh - every daemon unit in packaging/systemd carries the same hardening as
# ccmail-exporter.service (the reference), runs as ccmail and has a man page in the package.
# A new unit that forgets a line (or a line dropped from one) fails here, in seconds.
set -u
src=${CCMAIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
ref=$src/packaging/systemd/ccmail-exporter.service
keys='^(NoNewPrivileges|ProtectSystem|ProtectHome|PrivateTmp|PrivateDevices|ProtectKernel[A-Za-z]*|ProtectControlGroups|ProtectClock|ProtectHostname|RestrictSUIDSGID|RestrictRealtime|RestrictNamespaces|LockPersonality|RestrictAddressFamilies|SystemCallArchitectures|CapabilityBoundingSet|User|Group|UMask)='
want=$(grep -E "$keys" "$ref" | sort)
[ "$(echo "$want" | wc -l)" -ge 18 ] || { echo "FAIL: reference $ref lost its hardening lines"; exit 1; }
bad=0 n=0
for unit in "$src"/packaging/systemd/ccmail-*.service; do
  n=$((n + 1))
  name=$(basename "$unit" .service)
  have=$(grep -E "$keys" "$unit" | sort)
  if [ "$have" != "$want" ]; then
    echo "FAIL: $name.service hardening differs from ccmail-exporter.service:"
    diff <(echo "$want") <(echo "$have") | sed 's/^/  /'
    bad=1
  fi
  grep -qx "packaging/man/$name.8" "$src/packaging/debian/ccmail-bridge.manpages" \
    || { echo "FAIL: packaging/man/$name.8 is not in ccmail-bridge.manpages"; bad=1; }
  [ -f "$src/packaging/man/$name.8" ] || { echo "FAIL: packaging/man/$name.8 missing"; bad=1; }
  grep -q "ccmail-bridge.$name.service" "$src/packaging/build-deb.sh" \
    || { echo "FAIL: build-deb.sh does not copy $name.service"; bad=1; }
  grep -q -- "--name=$name\b" "$src/packaging/debian/rules" \
    || { echo "FAIL: debian/rules does not install $name.service"; bad=1; }
done
[ $bad = 0 ] && echo "units_hardened: $n units, hardening as ccmail-exporter.service"
exit $bad
