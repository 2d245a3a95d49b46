#!/usr/bin/python3
# The "hold the registry locks" attack: opens live.lock and the table's init lock (read-only
# is enough to lock), takes an OFD read lock on every registry byte and flock on the init
# lock, prints HELD and keeps them for SECONDS. Exits 1 when it cannot open the files.
# Usage: hold_locks.py RUNTIME_DIR TABLE_NAME REGISTRY SECONDS
import fcntl, os, struct, sys, time

run, name, nreg, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
try:
    live = os.open(os.path.join(run, "live.lock"), os.O_RDONLY)
    init = os.open(os.path.join(run, name + ".init.lock"), os.O_RDONLY)
except OSError as e:
    print("cannot open the lock files: %s" % e)
    sys.exit(1)
F_OFD_SETLK = 37
for i in range(nreg):
    fcntl.fcntl(live, F_OFD_SETLK, struct.pack("hhqqi", fcntl.F_RDLCK, os.SEEK_SET, i, 1, 0) + b"\0" * 4)
fcntl.flock(init, fcntl.LOCK_EX)
print("HELD", flush=True)
time.sleep(secs)
