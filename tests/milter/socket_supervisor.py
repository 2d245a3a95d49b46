#!/usr/bin/env python3
"""Runs ccmail-milter the way systemd does and restarts it on request, for restart tests.

With --inherit the supervisor holds the listening unix socket, like ccmail-milter.socket,
and passes it to every milter it starts (fd 3, LISTEN_FDS=1, LISTEN_PID=<the milter's pid>);
without it each milter binds the socket itself, like the service without the socket unit.
A restart is `systemctl restart`: SIGTERM, wait for the exit, start a new one.

  socket_supervisor.py --socket PATH [--inherit] [--group G] --ready FILE --restarts N
                       --interval S --go FILE -- MILTER ARGS...
Writes "ready" to FILE once the first milter listens; waits for FILE --go to exist, then
restarts N times, every S seconds, appends one line per restart to FILE.restarts and writes
FILE.done. Stops the milter on SIGTERM.
"""
import argparse
import grp
import os
import signal
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--inherit", action="store_true")
    ap.add_argument("--group", default="")
    ap.add_argument("--ready", required=True)
    ap.add_argument("--go", required=True)
    ap.add_argument("--restarts", type=int, default=10)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd

    listener = None
    if a.inherit:
        if os.path.exists(a.socket):
            os.unlink(a.socket)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        listener.bind(a.socket)
        os.umask(old)
        if a.group:
            os.chown(a.socket, -1, grp.getgrnam(a.group).gr_gid)
        os.chmod(a.socket, 0o660)
        listener.listen(socket.SOMAXCONN)  # systemd's default Backlog=

    def spawn():
        pid = os.fork()
        if pid == 0:
            env = dict(os.environ)
            if listener is not None:
                if listener.fileno() != 3:
                    os.dup2(listener.fileno(), 3)
                os.set_inheritable(3, True)
                env["LISTEN_FDS"] = "1"
                env["LISTEN_PID"] = str(os.getpid())
            os.execve(cmd[0], cmd, env)
        return pid

    def listening():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(a.socket)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def wait_listening(pid):
        # With --inherit the socket answers at once (it is the supervisor's); a started
        # milter shows up in its log, which the caller watches. Without it, wait for the bind.
        for _ in range(600):
            if a.inherit or listening():
                return True
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return False
            time.sleep(0.05)
        return False

    child = [spawn()]
    stopping = [False]

    def on_term(signum, frame):
        stopping[0] = True
        os.kill(child[0], signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    if not wait_listening(child[0]):
        print("socket_supervisor: the milter did not start", file=sys.stderr)
        return 1
    with open(a.ready, "w") as f:
        f.write("ready\n")
    while not os.path.exists(a.go) and not stopping[0]:
        time.sleep(0.05)
    for i in range(a.restarts):
        if stopping[0]:
            break
        time.sleep(a.interval)
        t0 = time.monotonic()
        os.kill(child[0], signal.SIGTERM)
        os.waitpid(child[0], 0)
        child[0] = spawn()
        ok = wait_listening(child[0])
        with open(a.go + ".restarts", "a") as f:
            f.write("restart %d: %.2f s from SIGTERM to a listening successor%s\n"
                    % (i + 1, time.monotonic() - t0, "" if ok else " (did not start)"))
    with open(a.go + ".done", "w") as f:
        f.write("done\n")
    while True:
        try:
            pid, status = os.waitpid(child[0], 0)
            return 0 if stopping[0] else 1
        except InterruptedError:
            continue


if __name__ == "__main__":
    sys.exit(main())
