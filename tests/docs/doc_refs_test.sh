#!/bin/bash
# doc_refs_test.sh - the docs name only code that exists, and the code cites only the docs.
#
# Checks, in a source tree (default: the one this script lives in, or CCMAIL_SOURCE_DIR):
#   1. every `path` and `path:Function` (or `path:Class::Method`) named in docs/ARCHITECTURE.md,
#      docs/DESIGN.md and docs/FORMAT.md: the file exists, and the function is DEFINED in it
#      (universal-ctags, kind f; a Class:: prefix must match the end of the definition's scope);
#   2. every "DESIGN.md §N.N" and "FORMAT.md §N.N" cited by those docs or by a source file
#      names a numbered section heading of that doc. A bare "§N.N" belongs to the doc named
#      last before it on the same line, else to the doc it is in (DESIGN.md for
#      ARCHITECTURE.md and for source files);
#   3. no source file (C++, shell, Python, CMake) and no doc cites a reference outside the
#      repository ("shared/reference", "exactly-once-design", "ccmail-format.md"), and no
#      source file cites a bare "design 5.6" / "Decision 10" on a line without
#      docs/DESIGN.md, or the format reference's numbers ("reference 8.7") on a line without
#      docs/FORMAT.md.
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
readonly TOP='(milter|store|shm|exporter|ctl|config|common|ccmail_format|mtaconf|smtp|submitter|tests|scripts|packaging|bench|cmake|docs|demo)'
readonly PATH_RE="(?<![A-Za-z0-9_./-])${TOP}/[A-Za-z0-9_./+-]*[A-Za-z0-9_]\.(cpp|h|sh|py|md|txt|cmake)(:[A-Za-z_~][A-Za-z0-9_~]*(::[A-Za-z_~][A-Za-z0-9_~]*)*)?"

# The format reference's section numbers: "reference 8.7", "Reference (2.3)", "reference §2",
# and a "reference" that ends its line (its number on the next one).
readonly FORMAT_REF_RE='\breference (section )?[(§]?[0-9]+(\.[0-9]+)*\b|\breference *"?$'

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

# Section numbers ("2", "2.10", "6.5") that docs/$2 (DESIGN.md, FORMAT.md) has as headings.
doc_sections() {
  grep -oP '^#{2,4} \K[0-9]+(\.[0-9]+)*(?=\.? )' "$1/docs/$2" 2>/dev/null
}

# Section citations in files $2... (relative to root $1), one "DOC SECTION FILE:LINE" a line:
# DOC is the doc named last before the § on its line, else $default_doc. A bare § counts only
# after a space, comma or parenthesis.
cited_sections() {
  local root=$1 default_doc=$2
  shift 2
  (cd "$root" && grep -HnoP '(DESIGN|FORMAT)\.md|(?<=[ ,(])§[0-9]+(\.[0-9]+)*' -- "$@" 2>/dev/null) |
    awk -v def="$default_doc" '{
      n = split($0, f, ":"); where = f[1] ":" f[2]; m = substr($0, length(where) + 2)
      if (where != last) { doc = def; last = where }
      if (m ~ /\.md$/) { doc = m; next }
      print doc, substr(m, 3), where   # "§" is two bytes in UTF-8
    }'
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
  local root=$1 bad=0 doc ref file fn line sec where cited default
  declare -A sections=()
  sections[DESIGN.md]=" $(doc_sections "$root" DESIGN.md | tr '\n' ' ') "
  sections[FORMAT.md]=" $(doc_sections "$root" FORMAT.md | tr '\n' ' ') "
  for doc in docs/ARCHITECTURE.md docs/DESIGN.md docs/FORMAT.md; do
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
    default=DESIGN.md
    [ "$doc" = docs/FORMAT.md ] && default=FORMAT.md
    while read -r cited sec where; do
      if [[ ${sections[$cited]} != *" $sec "* ]]; then
        echo "$where: cites $cited §$sec, which has no such section"
        bad=$((bad + 1))
      fi
    done < <(cited_sections "$root" "$default" "$doc" | sort -u)
    # 3. (docs) references outside the repository
    while IFS= read -r line; do
      echo "cites a document outside the repository: $doc:$line"
      bad=$((bad + 1))
    done < <(grep -nE 'shared/reference|exactly-once-design|ccmail-format\.md|docs/ccmail-format' "$root/$doc" 2>/dev/null)
    while IFS= read -r line; do
      echo "cites the format reference by a number without docs/FORMAT.md: $doc:$line"
      bad=$((bad + 1))
    done < <(grep -niE "$FORMAT_REF_RE" "$root/$doc" 2>/dev/null | grep -v 'FORMAT\.md')
  done
  # 3. citations in source files (one grep per pattern over all of them: CI machines are slow)
  local files=()
  mapfile -t files < <(source_files "$root" | grep -v '^tests/docs/')  # this checker names the patterns
  if [ "${#files[@]}" -gt 0 ]; then
    while IFS= read -r line; do
      echo "cites a document outside the repository: $line"
      bad=$((bad + 1))
    done < <(cd "$root" && grep -nE 'shared/reference|exactly-once-design|ccmail-format\.md|docs/ccmail-format' -- "${files[@]}" 2>/dev/null)
    while IFS= read -r line; do
      echo "cites the design by a number without docs/DESIGN.md: $line"
      bad=$((bad + 1))
    done < <(cd "$root" && grep -niE '\bdesign (section |decision )?[0-9]+(\.[0-9]+)*\b|\bdecision [0-9]+\b' -- "${files[@]}" 2>/dev/null |
               grep -v 'DESIGN\.md')
    while IFS= read -r line; do
      echo "cites the format reference by a number without docs/FORMAT.md: $line"
      bad=$((bad + 1))
    done < <(cd "$root" && grep -niE "$FORMAT_REF_RE" -- "${files[@]}" 2>/dev/null |
               grep -v 'FORMAT\.md')
    while read -r cited sec where; do
      if [[ ${sections[$cited]} != *" $sec "* ]]; then
        echo "cites docs/$cited §$sec, which has no such section: $where"
        bad=$((bad + 1))
      fi
    done < <(cited_sections "$root" DESIGN.md "${files[@]}" | sort -u)
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
    printf '# F\n\n## 2. Layout\n\n### 2.3 Counts\n\nSee §2 and `store/src/spool.cpp:Helper`.\n' >"$t/tree/docs/FORMAT.md"
    printf '// counts: docs/FORMAT.md §2.3, §2; docs/DESIGN.md §1.2; memfd "ccmail-format-test"\n' \
      >"$t/tree/store/src/count.h"
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
  echo 'And `store/src/spool.cpp:Missing`, §7.' >>"$t/tree/docs/FORMAT.md"
  echo 'Facts: ../shared/reference/ccmail-format.md.' >>"$t/tree/docs/FORMAT.md"
  echo '// at most 16 files (reference 8.7)' >"$t/tree/store/src/c.h"
  echo '// the layout (ccmail-format.md, "Defaults")' >"$t/tree/store/src/e.h"
  printf '// the buffer ("Header Buffer Full", reference\n// 2.7)\n' >"$t/tree/store/src/g.h"
  echo '// ---- format (see docs/ccmail-format decisions) ----' >"$t/tree/store/src/h.cpp"
  echo '| `max_file_items` | 16 (reference 8.7) |' >>"$t/tree/docs/ARCHITECTURE.md"
  echo '// docs/FORMAT.md §2.3 and docs/DESIGN.md §2.3' >"$t/tree/store/src/d.h"
  echo '// the header block (docs/FORMAT.md §1.2)' >"$t/tree/store/src/f.h"
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
Missing|a function FORMAT.md names that the file does not define
FORMAT.md §7,|a FORMAT.md section FORMAT.md itself cites that does not exist
repository: docs/FORMAT.md:9:Facts|a doc citing ../shared/reference/ccmail-format.md
store/src/c.h:1:|a source comment citing the format reference's "reference 8.7"
store/src/e.h:1:|a source comment citing ccmail-format.md
store/src/g.h:1:|a source comment citing "reference" with its number on the next line
store/src/h.cpp:1:|a source comment citing docs/ccmail-format
docs/ARCHITECTURE.md:7:|a doc citing "reference 8.7" without FORMAT.md
DESIGN.md §2.3, which has no such section: store/src/d.h|a DESIGN.md section after a FORMAT.md one on the same line
FORMAT.md §1.2, which has no such section: store/src/f.h|a FORMAT.md section that exists only in DESIGN.md
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
n=$(cat "$root/docs/ARCHITECTURE.md" "$root/docs/DESIGN.md" "$root/docs/FORMAT.md" | grep -oP "$PATH_RE" | sort -u | wc -l)
echo "doc_refs_test: ok: $n file/function references in docs/ARCHITECTURE.md, DESIGN.md and FORMAT.md exist; every DESIGN.md/FORMAT.md § cited exists; no source cites the design or the format reference outside docs/"
