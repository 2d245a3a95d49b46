#!/usr/bin/env bash
# gen-settings-doc.sh BUILD_DIR - regenerates the settings table in docs/ARCHITECTURE.md
# from config/src/settings.cpp (through the ccmail-settings-dump tool of BUILD_DIR).
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:?usage: gen-settings-doc.sh BUILD_DIR}"
cmake --build "$build" --target ccmail-settings-dump >/dev/null
doc="$src/docs/ARCHITECTURE.md"
table="$(mktemp)"
"$build/config/ccmail-settings-dump" --markdown > "$table"
awk -v table="$table" '
  /<!-- settings-table:begin/ { print; while ((getline line < table) > 0) print line; skip = 1; next }
  /<!-- settings-table:end/   { skip = 0 }
  !skip { print }
' "$doc" > "$doc.new"
mv "$doc.new" "$doc"
rm -f "$table"
echo "gen-settings-doc.sh: updated $doc"
