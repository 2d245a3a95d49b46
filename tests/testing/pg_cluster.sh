#!/bin/bash
# pg_cluster.sh - a private PostgreSQL cluster for one test, never the system service.
#
#   pg_cluster.sh start <dir>   initdb + pg_ctl start in <dir> (created; must not hold a cluster
#                               yet); prints the libpq connection string of database "ccmail"
#                               (user ccmail, password in <dir>/password, socket in <dir>/sock)
#   pg_cluster.sh stop <dir>    pg_ctl stop -m fast (no error when it is not running)
#   pg_cluster.sh kill <dir>    kill -9 of the postmaster (what a crash of the database host
#                               looks like to the bridge); `start` again runs crash recovery
#   pg_cluster.sh freeze <dir>  SIGSTOP of the postmaster and every backend: a server that
#                               accepts connections (the kernel's backlog) and never answers,
#                               like a hung host or a partition without RST
#   pg_cluster.sh thaw <dir> [pid]  SIGCONT of them, but pid (one backend) stays stopped (stop
#                               thaws everything, so a frozen cluster never outlives its test)
#   pg_cluster.sh psql <dir> ... psql as the superuser on database ccmail
#
# The server listens on its Unix socket only (listen_addresses = ''), so no network address is
# ever involved and two tests never collide on a port. Authentication is scram-sha-256 for every
# connection: the bridge's password-file path is exercised. Run as root (CI), the server runs as
# the unprivileged user "postgres" (initdb refuses root); the directory is handed to that user.
set -euo pipefail

die() { echo "pg_cluster.sh: $*" >&2; exit 1; }
bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [[ -x "$d/initdb" ]] || die "no PostgreSQL server binaries (apt-get install postgresql-15)"
  echo "$d"
}
as_owner() {  # runs "$@" as the cluster's owner
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
conninfo() { echo "host=$1/sock port=5432 dbname=ccmail user=ccmail"; }

# Sends signal $2 to the postmaster of cluster $1 and to its children (the backends) but
# the child $3 (optional).
signal_cluster() {
  local pid
  pid=$(head -1 "$1/data/postmaster.pid" 2>/dev/null) || return 0
  [[ -e /proc/$pid ]] || return 0
  # The postmaster first on SIGSTOP, so it forks no backend that the list below would miss.
  [[ "$2" == STOP ]] && kill -STOP "$pid"
  for child in $(pgrep -P "$pid" || true); do
    [[ "$child" == "${3:-}" ]] || kill "-$2" "$child" 2>/dev/null || true
  done
  [[ "$2" == STOP ]] || kill "-$2" "$pid"
}

cmd=${1:-}; dir=${2:-}
[[ -n "$cmd" && -n "$dir" ]] || die "usage: pg_cluster.sh start|stop|kill|psql <dir> [args]"
BIN=$(bindir)

case "$cmd" in
start)
  if [[ -f "$dir/data/PG_VERSION" ]]; then   # a restart after kill/stop keeps the data
    # After a kill pg_ctl notes the stale postmaster.pid ("another server might be running");
    # the server itself decides and runs crash recovery.
    as_owner "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null 2>&1 ||
      { tail -20 "$dir/server.log" >&2; die "restart failed"; }
    conninfo "$dir"; exit 0
  fi
  mkdir -p "$dir/sock"
  chmod 755 "$dir"
  umask 077
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/password"
  su_pw=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  echo "$su_pw" >"$dir/su-password"
  [[ $(id -u) -eq 0 ]] && chown -R postgres: "$dir"
  chmod 644 "$dir/password"   # the bridge under test may run as another user
  as_owner "$BIN/initdb" -D "$dir/data" -U postgres --pwfile="$dir/su-password" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$dir/sock'
unix_socket_permissions = 0777
port = 5432
fsync = on
synchronous_commit = on
max_connections = 50
shared_buffers = 32MB
EOF
  as_owner "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
    { tail -20 "$dir/server.log" >&2; die "start failed"; }
  pw=$(cat "$dir/password")
  PGPASSWORD="$su_pw" as_owner env PGPASSWORD="$su_pw" "$BIN/psql" -q -h "$dir/sock" -p 5432 -U postgres -d postgres \
    -v ON_ERROR_STOP=1 -c "CREATE ROLE ccmail LOGIN PASSWORD '$pw'" -c "CREATE DATABASE ccmail OWNER ccmail" >/dev/null
  conninfo "$dir"
  ;;
stop)
  [[ -f "$dir/data/PG_VERSION" ]] || exit 0
  signal_cluster "$dir" CONT
  as_owner "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  ;;
kill)
  pid=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null) || die "no postmaster.pid in $dir/data"
  kill -9 "$pid"
  # The children notice the postmaster's death and exit. Wait until every process of the
  # cluster is gone and reaped (a zombie postmaster still "exists" for the next start's lock
  # file check), so a restart right after this finds the data directory free.
  for _ in $(seq 200); do
    [[ -e /proc/$pid ]] || pgrep -f -- "$dir/data" >/dev/null 2>&1 || break
    pkill -9 -f -- "$dir/data" 2>/dev/null || true
    sleep 0.05
  done
  [[ ! -e /proc/$pid ]] || die "postmaster $pid did not go away"
  ;;
freeze) signal_cluster "$dir" STOP ;;
thaw) signal_cluster "$dir" CONT "${3:-}" ;;
psql)
  shift 2
  su_pw=$(cat "$dir/su-password")
  as_owner env PGPASSWORD="$su_pw" "$BIN/psql" -h "$dir/sock" -p 5432 -U postgres -d ccmail "$@"
  ;;
*) die "unknown command $cmd" ;;
esac
