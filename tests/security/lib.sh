# tests/security/lib.sh - shared helpers of the security suite (ctest label `security`):
# real users, real daemons, attacks played as another real user.
#
# Source it from bash, then:
#   sec_init NAME                 # needs root (exit 77 otherwise); makes $T (0755), traps EXIT
#   sec_user NAME [GROUP...]      # creates system user NAME (and groups) if missing; idempotent
#   as_user USER[:GROUPS] CMD...  # runs CMD as the real user USER (its uid and primary gid) with
#                                 # exactly the supplementary GROUPS (comma separated; none if
#                                 # omitted): setpriv, no capabilities, no way back to root
#   sec_copy_bins BIN...          # copies binaries to $T/bin (0755): the build tree may sit where
#                                 # other users cannot traverse; prints nothing, sets SEC_BIN
#   sec_expect_denied DESC USER[:GROUPS] CMD...   # the attack must fail (non-zero exit); else FAIL
#   sec_start DAEMON_VAR LOG USER[:GROUPS] CMD... # starts a daemon as USER in the background;
#                                 # its pid goes into the variable named DAEMON_VAR; stopped at exit
#   sec_alive PID DESC            # FAIL unless the process is still running (no SIGBUS, no exit)
#   pass MSG / fail MSG           # fail prints the logs in $T/*.log and exits 1
# Tests that add their own files here: one script (or gtest) per file, registered in
# CMakeLists.txt with ccmail_security_test().

SEC_SRC=${CCMAIL_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SEC_PIDS=()
T=

pass() { echo "ok: $*"; }
fail() {
  echo "FAIL: $*"
  local f
  for f in "$T"/*.log; do [ -f "$f" ] && { echo "---- $f"; tail -n 30 "$f"; }; done
  exit 1
}

sec_init() {
  SEC_NAME=$1
  if [ "$(id -u)" -ne 0 ]; then echo "security $SEC_NAME: SKIP (needs root to create and switch users)"; exit 77; fi
  command -v setpriv >/dev/null || { echo "security $SEC_NAME: SKIP (setpriv missing: util-linux)"; exit 77; }
  T=$(mktemp -d "/tmp/ccmail-sec-$SEC_NAME.XXXXXX")
  chmod 755 "$T"
  trap sec_cleanup EXIT
  trap 'exit 130' INT TERM
}

sec_cleanup() {
  local rc=$? p
  for p in "${SEC_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${SEC_PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
  [ -n "${SEC_CLEANUP_HOOK:-}" ] && eval "$SEC_CLEANUP_HOOK"
  if [ -n "$T" ] && [ -d "$T" ]; then
    if [ "${KEEP:-0}" = 1 ]; then echo "security: files kept in $T"; else rm -rf "$T"; fi
  fi
  return $rc
}

sec_group() { getent group "$1" >/dev/null || groupadd --system "$1"; }

sec_user() {
  local u=$1 g
  shift
  if ! getent passwd "$u" >/dev/null; then
    sec_group "$u"
    useradd --system --gid "$u" --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$u"
  fi
  for g in "$@"; do sec_group "$g"; done
}

as_user() {
  local spec=$1 u groups
  shift
  u=${spec%%:*}
  groups=
  [ "$spec" != "$u" ] && groups=${spec#*:}
  local gid
  gid=$(id -g "$u") || return 125
  local ex=  # sec_start: the background subshell becomes the daemon (its pid is $!)
  [ -n "${SEC_EXEC:-}" ] && ex=exec
  if [ -n "$groups" ]; then
    $ex setpriv --reuid="$u" --regid="$gid" --groups="$groups" --inh-caps=-all -- "$@"
  else
    $ex setpriv --reuid="$u" --regid="$gid" --clear-groups --inh-caps=-all -- "$@"
  fi
}

sec_copy_bins() {
  mkdir -p "$T/bin"
  local b
  for b in "$@"; do cp "$b" "$T/bin/" || return 1; done
  chmod 755 "$T/bin" "$T"/bin/*
  SEC_BIN=$T/bin
}

sec_expect_denied() {
  local desc=$1
  shift
  if as_user "$@" >> "$T/attacks.out" 2>&1; then fail "attack succeeded: $desc (as ${1%%:*})"; fi
  pass "denied: $desc (as ${1%%:*})"
}

sec_start() {
  local var=$1 log=$2
  shift 2
  SEC_EXEC=1 as_user "$@" >> "$log" 2>&1 &
  local pid=$!
  SEC_PIDS+=("$pid")
  printf -v "$var" '%s' "$pid"
}

sec_alive() { kill -0 "$1" 2>/dev/null || fail "$2 is gone (exit or signal): $(tail -n 3 "$T"/*.log 2>/dev/null)"; }

# wait_for SECONDS CMD...: polls CMD every 0.1 s; returns 1 on timeout.
wait_for() {
  local n=$(( $1 * 10 ))
  shift
  for _ in $(seq 1 "$n"); do "$@" && return 0; sleep 0.1; done
  return 1
}
