#!/usr/bin/env python3
"""multi_relay.py - the load of tests/e2e/multi_relay.sh: two relays, one client population.

  send   every message goes to relay A or relay B (alternately, from the deterministic plan of
         e2e.py); a --resend-fraction of them, once relay X answered 250, is sent again to the
         OTHER relay: the same bytes, the same Message-ID, what an SMTP client that lost the 250
         of X and retries on the next MX does. Every 4xx or lost connection is retried on the same
         relay until --deadline. One JSON line per message in --log (the format e2e.py verify
         reads), with "relay" and "resent" ("accepted" / "gave_up" / absent) added.
         --progress FILE: the number of messages finished so far, rewritten as the load goes
         (multi_relay.sh times its kills by it).
"""
import argparse
import json
import os
import random
import smtplib
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402  (the plan, the messages and one SMTP transaction, shared with e2e.py)


def deliver(port, p, msg, args, deadline, stats):
    """Sends msg to 127.0.0.1:port until a 2xx, a 5xx or the deadline. Returns (outcome, attempts)."""
    attempts = 0
    while time.time() < deadline:
        attempts += 1
        conn = None
        try:
            conn = smtplib.SMTP("127.0.0.1", port, timeout=args.timeout)
            conn.ehlo("e2e.localdomain")
            res, code = e2e.smtp_once(conn, p, msg)
            if res == "ok":
                return "accepted", attempts
            if res == "perm":
                return "rejected", attempts
            stats.add("tempfail", code)
        except (smtplib.SMTPException, OSError):
            stats.add("lost")
        finally:
            if conn is not None:
                try:
                    conn.quit()
                except Exception:
                    try:
                        conn.close()
                    except Exception:
                        pass
        time.sleep(args.retry_delay * (0.5 + random.random()))
    return "gave_up", attempts


def cmd_send(args):
    amap = e2e.load_map(args.map)
    plan = e2e.make_plan(args, amap)
    ports = args.ports
    rnd = random.Random(args.seed + 7)
    for i, p in enumerate(plan):
        p["relay"] = i % len(ports)
        p["resend"] = rnd.random() < args.resend_fraction
    random.Random(args.seed + 1).shuffle(plan)
    queue, results, qlock = list(plan), [], threading.Lock()
    stats = e2e.Stats()
    deadline = time.time() + args.deadline
    done = [0]

    def worker():
        while True:
            with qlock:
                if not queue:
                    return
                p = queue.pop()
            msg = e2e.build_message(p)
            outcome, attempts = deliver(ports[p["relay"]], p, msg, args, deadline, stats)
            r = {"id": p["id"], "kind": p["kind"], "rcpts": p["rcpts"], "size": p["size"],
                 "outcome": outcome, "attempts": attempts, "last": None, "via": "smtp",
                 "relay": p["relay"]}
            if p["resend"] and outcome == "accepted":
                other = (p["relay"] + 1) % len(ports)
                r["resent"], _ = deliver(ports[other], p, msg, args, deadline, stats)
            with qlock:
                results.append(r)
                done[0] += 1
                if args.progress:
                    tmp = args.progress + ".tmp"
                    with open(tmp, "w") as f:
                        f.write("%d\n" % done[0])
                    os.replace(tmp, args.progress)

    t0 = time.time()
    threads = [threading.Thread(target=worker) for _ in range(args.sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    e2e.write_results(args.log, results)
    acc = sum(1 for r in results if r["outcome"] == "accepted")
    resent = sum(1 for r in results if r.get("resent") == "accepted")
    resend_failed = sum(1 for r in results if r.get("resent") not in (None, "accepted"))
    per_relay = [sum(1 for r in results if r["relay"] == i and r["outcome"] == "accepted") for i in range(len(ports))]
    print("send %s: %d messages, %d accepted (per relay %s), %d re-sent to the other relay after "
          "their 250 (%d re-sends not accepted), %d tempfail replies %s, %d lost connections, %.1fs" %
          (args.prefix, len(results), acc, per_relay, resent, resend_failed, stats.tempfails,
           json.dumps(stats.codes, sort_keys=True), stats.disconnects, time.time() - t0), flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("send")
    p.add_argument("--map", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--ccmail-only", type=float, default=0.6)
    p.add_argument("--mixed", type=float, default=0.25)
    p.add_argument("--max-size", type=int, default=1024 * 1024)
    p.add_argument("--large-fraction", type=float, default=0.0)
    p.add_argument("--medium-fraction", type=float, default=0.01)
    p.add_argument("--log", required=True)
    p.add_argument("--ports", type=int, nargs="+", required=True)
    p.add_argument("--sessions", type=int, default=10)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--deadline", type=float, default=240)
    p.add_argument("--retry-delay", type=float, default=0.3)
    p.add_argument("--resend-fraction", type=float, default=0.05)
    p.add_argument("--progress")
    args = ap.parse_args()
    return {"send": cmd_send}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
