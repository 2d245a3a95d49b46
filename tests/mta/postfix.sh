# tests/mta/postfix.sh - a private Postfix instance on loopback, for tests and benchmarks.
#
# Source it from bash, then:
#   pf_start DIR [main.cf lines...]   # config in DIR/etc, queue in DIR/queue, log in DIR/maillog;
#                                     # smtpd on 127.0.0.1:$PF_PORT (a free port); every delivery
#                                     # goes to the discard transport, logged in the maillog,
#                                     # unless a line given here names another (`name = value`
#                                     # replaces the default of that name; master.cf has smtp)
#   pf_stop DIR                       # always call it (trap): stops master, waits for it
#   pf_wait_log DIR REGEX [seconds]   # waits until the maillog matches
#   pf_sendmail DIR args...           # Postfix's sendmail(1) against this instance (-C DIR/etc)
#   mta_free_port                     # prints a free TCP port on 127.0.0.1
#   conf_set FILE "name = value"...   # replaces (or appends) settings in main.cf or ccmail.conf
#   milter_conf FILE "name = value"...  # a milter test's ccmail.conf in $T (socket, pid file, spool,
#                                     # run dir, claim table $TABLE of 64 slots, map $T/map, domain
#                                     # cc.example), then the given settings (conf_set)
#   wait_until SECS PID WHAT CMD...   # runs CMD every 0.1 s until it succeeds (0), PID (may be
#                                     # empty) exits (1, says so) or SECS pass (1, says so)
#   smtp_send PORT FROM RCPT... < message   # one SMTP transaction; prints the server replies;
#                                           # returns 0 when the final reply is 2xx
#   mta_test_init NAME                # a test of one milter (pid in $MPID) behind this Postfix in
#                                     # $T/pf: makes $T=/tmp/ccmail-NAME.XXXXXX (0755), TABLE, FAILS,
#                                     # pass MSG / fail MSG (counts), and an EXIT trap that stops
#                                     # Postfix and the milter, removes the claim table and $T
#                                     # (kept when KEEP is set)
# Needs root (Postfix's master runs as root, mail_owner = postfix). Loopback only.

mta_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Generous limits on purpose: CI runs these next to a package build on 2 cores, where a
# Python or Postfix start has been seen to take more than 10 s. A dead PID ends the wait early,
# so a real failure is still reported at once.
wait_until() {
  local secs=$1 pid=$2 what=$3; shift 3
  local deadline=$((SECONDS + secs))
  while :; do
    "$@" 2>/dev/null && return 0
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      echo "$what: process $pid exited before it was ready" >&2; return 1
    fi
    [ "$SECONDS" -ge "$deadline" ] && { echo "$what: not ready after ${secs}s" >&2; return 1; }
    sleep 0.1
  done
}

mta_test_init() {
  T=$(mktemp -d "/tmp/ccmail-$1.XXXXXX")
  chmod 755 "$T"
  MPID=
  TABLE=ccmail-$1-$$
  FAILS=0
  fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
  pass() { echo "ok: $*"; }
  trap mta_test_cleanup EXIT
}

mta_test_cleanup() {
  pf_stop "$T/pf"
  [ -n "$MPID" ] && kill "$MPID" 2>/dev/null && wait "$MPID" 2>/dev/null
  rm -f "/dev/shm/$TABLE-v1" "$T/run/$TABLE-v1"
  [ -n "${KEEP:-}" ] || rm -rf "$T"
}

pf_listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1"); }

# conf_set FILE "name = value"...: each line replaces the line of that name (or is appended).
# For main.cf and ccmail.conf alike (ccmail.conf refuses a setting given twice).
conf_set() {
  local file=$1 line name; shift
  for line in "$@"; do
    name=${line%%=*}; name=${name// /}
    sed -i "/^$name *=/d" "$file"
    echo "$line" >> "$file"
  done
}

milter_conf() {
  local file=$1; shift
  cat > "$file" <<CONF
milter_socket = unix:$T/milter.sock
milter_pid_file = $T/milter.pid
spool_directory = $T/spool
runtime_directory = $T/run
claim_table_name = $TABLE
claim_table_slots = 64
bridge_group =
address_map = $T/map
ccmail_domains = cc.example
CONF
  conf_set "$file" "$@"
}

pf_start() {
  local dir=$1; shift
  PF_PORT=$(mta_free_port)
  mkdir -p "$dir/etc" "$dir/queue" "$dir/data"
  chown postfix "$dir/data"
  : > "$dir/maillog"; chmod 666 "$dir/maillog"
  cat > "$dir/etc/main.cf" <<MAIN
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mta-test.localdomain
mydomain = localdomain
myorigin = localdomain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains =
smtpd_relay_restrictions = permit_mynetworks, reject
default_transport = discard
local_transport = discard
relay_transport = discard
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
smtputf8_enable = no
milter_default_action = tempfail
alias_maps =
alias_database =
MAIN
  conf_set "$dir/etc/main.cf" "$@"
  cat > "$dir/etc/master.cf" <<MASTER
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
MASTER
  postfix -c "$dir/etc" set-permissions >/dev/null 2>&1 || true
  postfix -c "$dir/etc" check >"$dir/check.log" 2>&1 || { cat "$dir/check.log"; return 1; }
  postfix -c "$dir/etc" start >"$dir/start.log" 2>&1 || { cat "$dir/start.log"; return 1; }
  wait_until 60 "" "postfix on 127.0.0.1:$PF_PORT" pf_listening "$PF_PORT"
}

pf_stop() {
  local dir=$1
  [ -f "$dir/etc/main.cf" ] || return 0
  postfix -c "$dir/etc" stop >/dev/null 2>&1 || true
  local pidf="$dir/queue/pid/master.pid" i
  for i in $(seq 1 50); do
    [ -f "$pidf" ] && kill -0 "$(tr -d ' ' < "$pidf")" 2>/dev/null || return 0
    sleep 0.1
  done
  postfix -c "$dir/etc" abort >/dev/null 2>&1 || true
}

pf_wait_log() {
  local dir=$1 re=$2 secs=${3:-20} i
  for i in $(seq 1 $((secs * 10))); do
    grep -Eq "$re" "$dir/maillog" && return 0
    sleep 0.1
  done
  echo "timeout waiting for /$re/ in $dir/maillog" >&2; return 1
}

pf_sendmail() {
  local dir=$1; shift
  /usr/sbin/sendmail -C "$dir/etc" "$@"
}

smtp_send() {
  local port=$1 from=$2; shift 2
  python3 -c "$MTA_SMTP_SEND_PY" "$port" "$from" "$@"
}

# The message comes on stdin, so the program is passed with -c.
MTA_SMTP_SEND_PY=$(cat <<'PY'
import smtplib, sys
port, sender, rcpts = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
msg = sys.stdin.buffer.read()
s = smtplib.SMTP("127.0.0.1", port, timeout=30)
s.ehlo("test.localdomain")
code, text = s.mail(sender); print("MAIL", code, text.decode())
ok = 0
for r in rcpts:
    code, text = s.rcpt(r); print("RCPT", r, code, text.decode())
    ok += code // 100 == 2
if ok == 0:
    s.quit(); sys.exit(1)
try:
    code, text = s.data(msg)
except smtplib.SMTPDataError as e:
    code, text = e.smtp_code, e.smtp_error
print("DATA", code, text.decode())
s.quit()
sys.exit(0 if code // 100 == 2 else 1)
PY
)
