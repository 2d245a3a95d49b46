#!/bin/bash
# doc_refs_test.sh - the docs name only code that exists, and the code cites only the docs.
#
# Checks, in a source tree (default: the one this script lives in, or CCMAIL_SOURCE_DIR):
#   1. every `path` and `path:Function` (or `path:Class::Method`) named in docs/ARCHITECTURE.md
#      and docs/DESIGN.md: the file exists, and the function is DEFINED in it (universal-ctags,
#      kind f; a Class:: prefix must match the end of the definition's scope);
#   2. every "DESIGN.md §N.N" cited by those docs or by a source file names a numbered
#      section heading of docs/DESIGN.md;
#   3. no source file (C++, shell, Python, CMake) cites the design reference outside the
#      repository ("shared/reference", "exactly-once-design") or a bare "design 5.6" /
#      "Decision 10" on a line without docs/DESIGN.md.
# Before checking the real tree it runs the same checker on small planted trees: one good
# (must pass) and one bad per kind of mistake (each must fail), so a checker that finds
# nothing cannot pass unnoticed.
set -u

die() { echo "doc_refs_test: $*" >&2; exit 2; }
command -v ctags >/dev/null 2>&1 || die "ctags not found (universal-ctags; scripts/install-deps.sh installs it)"
ctags --version 2>/dev/null | grep -q 'Universal Ctags' || die "ctags is not universal-ctags"

# Repository paths as the docs write them: a top-level component folder, then a file with
# one of these extensions. Include-style paths (ccmail/store/io.h) and absolute paths are
# not repository paths and are skipped by the leading-character rule.
readonly TOP='(milter|store|shm|exporter|ctl|config|common|ccmail_format|mtaconf|tests|scripts|packaging|bench|cmake|docs|demo)'
readonly PATH_RE="(?<![A-Za-z0-9_./-])${TOP}/[A-Za-z0-9_./+-]*[A-Za-z0-9_]\.(cpp|h|sh|py|md|txt|cmake)(:[A-Za-z_~][A-Za-z0-9_~]*(::[A-Za-z_~][A-Za-z0-9_~]*)*)?"

declare -A TAGS_CACHE=()

# Does `file` define function `ref` ("Name" or "Class::Name" or "A::B::Name")?
defines() {
  local file=$1 ref=$2 name scope
  name=${ref##*::}
  scope=""
  [[ $ref == *::* ]] && scope=${ref%::*}
  local lang=()
  case $file in
    *.cpp | *.h) lang=('--languages=C++' '--kinds-C++=f') ;;
    *.sh) lang=('--languages=Sh' '--kinds-Sh=f') ;;
    *.py) lang=('--languages=Python' '--kinds-Python=fm') ;;
    *) return 1 ;;
  esac
  # One ctags run per file, not per reference.
  if [ -z "${TAGS_CACHE[$file]+set}" ]; then
    TAGS_CACHE[$file]=$(ctags -x "${lang[@]}" --_xformat='%N %{scope}' "$file" 2>/dev/null)
  fi
  local n sc
  while read -r n sc; do
    [ "$n" = "$name" ] || continue
    if [ -z "$scope" ] || [ "$sc" = "$scope" ] || [[ $sc == *"::$scope" ]]; then return 0; fi
  done <<<"${TAGS_CACHE[$file]}"
  return 1
}

# Section numbers ("2", "2.10", "6.5") that docs/DESIGN.md has as headings.
design_sections() {
  grep -oP '^#{2,4} \K[0-9]+(\.[0-9]+)*(?=\.? )' "$1/docs/DESIGN.md" 2>/dev/null
}

# Source files to scan for citations: tracked files when the tree is a git checkout.
source_files() {
  local root=$1
  if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$root" ls-files -- '*.cpp' '*.h' '*.sh' '*.py' '*.cmake' '*CMakeLists.txt'
  else
    (cd "$root" && find . -path ./build -prune -o -path './build-*' -prune -o -type f \
      \( -name '*.cpp' -o -name '*.h' -o -name '*.sh' -o -name '*.py' -o -name '*.cmake' -o -name CMakeLists.txt \) \
      -print | sed 's|^\./||')
  fi
}

# Checks the tree at $1; prints one line per problem; returns the number of problems (max 255).
check_tree() {
  local root=$1 bad=0 doc ref file fn line sec
  local sections
  sections=$(design_sections "$root" | tr '\n' ' ')
  for doc in docs/ARCHITECTURE.md docs/DESIGN.md; do
    if [ ! -f "$root/$doc" ]; then
      echo "$doc: missing"
      bad=$((bad + 1))
      continue
    fi
    # 1. file and function references
    while IFS= read -r ref; do
      file=${ref%%:*}
      fn=""
      [[ $ref == *:* ]] && fn=${ref#*:}
      if [ ! -f "$root/$file" ]; then
        echo "$doc: $ref: no file $file"
        bad=$((bad + 1))
      elif [ -n "$fn" ] && ! defines "$root/$file" "$fn"; then
        echo "$doc: $ref: $file defines no function $fn"
        bad=$((bad + 1))
      fi
    done < <(grep -oP "$PATH_RE" "$root/$doc" | sort -u)
    # 2. section citations
    while IFS= read -r sec; do
      if [[ " $sections " != *" $sec "* ]]; then
        echo "$doc: cites DESIGN.md §$sec, which has no such section"
        bad=$((bad + 1))
      fi
    done < <(grep -oP '(?:DESIGN\.md )?§\K[0-9]+(\.[0-9]+)*' "$root/$doc" | sed 's/\.$//' | sort -u)
  done
  # 3. citations in source files (one grep per pattern over all of them: CI machines are slow)
  local files=()
  mapfile -t files < <(source_files "$root" | grep -v '^tests/docs/')  # this checker names the patterns
  if [ "${#files[@]}" -gt 0 ]; then
    while IFS= read -r line; do
      echo "cites a document outside the repository: $line"
      bad=$((bad + 1))
    done < <(cd "$root" && grep -nE 'shared/reference|exactly-once-design' -- "${files[@]}" 2>/dev/null)
    while IFS= read -r line; do
      echo "cites the design by a number without docs/DESIGN.md: $line"
      bad=$((bad + 1))
    done < <(cd "$root" && grep -niE '\bdesign (section |decision )?[0-9]+(\.[0-9]+)*\b|\bdecision [0-9]+\b' -- "${files[@]}" 2>/dev/null |
               grep -v 'DESIGN\.md')
    while IFS= read -r line; do
      sec=${line##*§}
      sec=${sec%.}
      if [[ " $sections " != *" $sec "* ]]; then
        echo "cites docs/DESIGN.md §$sec, which has no such section: ${line%%:*}"
        bad=$((bad + 1))
      fi
    done < <(cd "$root" && grep -oHP '(DESIGN\.md[^§\n]{0,3}|(?<=[ ,(]))§[0-9]+(\.[0-9]+)*' -- "${files[@]}" 2>/dev/null | sort -u)
  fi
  [ "$bad" -gt 255 ] && bad=255
  return "$bad"
}

# ---- negative controls: the checker must catch each planted mistake ----
# The planted docs hold Markdown backticks, not command substitutions.
# shellcheck disable=SC2016
self_test() {
  local t rc failed=0
  t=$(mktemp -d) || die "mktemp"
  trap 'rm -rf "$t"' RETURN
  plant() {  # a small good tree
    rm -rf "$t/tree"
    TAGS_CACHE=()
    mkdir -p "$t/tree/docs" "$t/tree/store/src" "$t/tree/scripts"
    cat >"$t/tree/store/src/spool.cpp" <<'EOF'
namespace ccmail::store {
class Spool { public: int Begin(); };
int Spool::Begin() { return 0; }
int Helper(int x) { return x; }
}  // namespace ccmail::store
EOF
    printf '#!/bin/sh\nsetup() {\n  :\n}\n' >"$t/tree/scripts/x.sh"
    printf '# D\n\n## 1. One\n\n### 1.2 Two\n\nSee `store/src/spool.cpp:Spool::Begin`.\n' >"$t/tree/docs/DESIGN.md"
    printf '# A\n\n`store/src/spool.cpp:Helper`, store/src/spool.cpp, `scripts/x.sh:setup`, DESIGN.md §1.2.\n' \
      >"$t/tree/docs/ARCHITECTURE.md"
    printf '// spool.h - cites docs/DESIGN.md §1.2 and the path /etc/x/store/y.h\n' >"$t/tree/store/src/spool.h"
  }
  plant
  if ! check_tree "$t/tree" >"$t/out" 2>&1; then
    echo "self-test: a good tree fails:"
    sed 's/^/    /' "$t/out"
    failed=1
  fi
  # Every kind of mistake at once, each with a marker its report line must carry.
  plant
  echo 'And `store/src/spool.cpp:Spool::NoSuchFunction`.' >>"$t/tree/docs/ARCHITECTURE.md"
  echo 'And `store/src/spool.cpp:Other::Begin`.' >>"$t/tree/docs/DESIGN.md"
  echo 'And `store/src/gone.cpp:Helper`.' >>"$t/tree/docs/ARCHITECTURE.md"
  echo 'And store/src/gone.h in prose.' >>"$t/tree/docs/DESIGN.md"
  echo 'See DESIGN.md §7.3.' >>"$t/tree/docs/ARCHITECTURE.md"
  echo '// round.cpp - one export round (design 5.6).' >"$t/tree/store/src/round.cpp"
  echo '# see ../shared/reference/exactly-once-design.md' >"$t/tree/scripts/y.sh"
  echo '// back-pressure (Decision 10)' >"$t/tree/store/src/a.h"
  echo '// see docs/DESIGN.md §9.9' >"$t/tree/store/src/b.h"
  check_tree "$t/tree" >"$t/out" 2>&1
  local marker what
  while IFS='|' read -r marker what; do
    if ! grep -qF -- "$marker" "$t/out"; then
      echo "self-test: not caught: $what"
      failed=1
    fi
  done <<'MARKERS'
Spool::NoSuchFunction|a function the file does not define
Other::Begin|a method of the wrong class
gone.cpp|a file that does not exist
gone.h|a path alone that does not exist
§7.3|a DESIGN.md section that does not exist
store/src/round.cpp:1:|a source comment citing design 5.6
scripts/y.sh:1:|a source comment citing ../shared/reference
store/src/a.h:1:|a source comment citing a bare Decision number
store/src/b.h|a source comment citing a DESIGN.md section that does not exist
MARKERS
  [ "$failed" -eq 0 ] || sed 's/^/    checker said: /' "$t/out"
  return "$failed"
}

root=${1:-${CCMAIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}}
[ -f "$root/docs/ARCHITECTURE.md" ] || die "$root is not a ccmail-bridge source tree"

if ! self_test; then
  echo "doc_refs_test: FAILED: the checker misses a planted mistake"
  exit 1
fi
out=$(check_tree "$root")
rc=$?
if [ "$rc" -ne 0 ]; then
  echo "$out"
  echo "doc_refs_test: FAILED: $(echo "$out" | grep -c .) problem(s) in $root"
  exit 1
fi
n=$(cat "$root/docs/ARCHITECTURE.md" "$root/docs/DESIGN.md" | grep -oP "$PATH_RE" | sort -u | wc -l)
echo "doc_refs_test: ok: $n file/function references in docs/ARCHITECTURE.md and docs/DESIGN.md exist; no source cites the design outside docs/DESIGN.md"
