#!/usr/bin/env python3
"""e2e.py - load generator, SMTP sink and checker for the end-to-end suite (tests/e2e/).

Subcommands (each writes JSON lines so the shell scripts stay small):
  send      SMTP client: N messages over P parallel sessions, every 4xx / lost connection retried
            until a deadline; one line per message in --log (id, sender, recipients, outcome).
  sendmail  the same messages through sendmail(1) (Postfix's, -C DIR): accepted = exit status 0.
  q184524   per message: DATA, final dot, then the connection is dropped before the reply is read
            (RFC 1047); then the message is sent again normally.
  sink      a loopback SMTP server standing in for the Internet: logs "id<TAB>rcpt" per delivery.
  verify    reads the outbox (manifests + import files, ccmail-lint on every batch), the sink log
            and the send logs; prints ONE summary line
              e2e <scenario>: sent=N accepted=N exported=N duplicates=N lost=N
            and exits 1 unless duplicates=0, lost=0 and nothing unexpected is in the outbox.

Every message has a unique id (X-E2E-Id header, Message-ID <id@e2e.example>, Subject "e2e <id>")
and the envelope sender "<id>@e2e-sender.example", so every manifest line (which carries the
envelope sender) and every import file (whose Headers item and Subject carry the id) maps back to
what was sent. The counts in the summary: sent/accepted are messages; exported, duplicates and
lost are deliveries (message, recipient): a cc:Mail delivery is (id, post office, cc:Mail name),
an Internet delivery is (id, address) seen by the sink.
"""
import argparse
import asyncio
import base64
import json
import os
import random
import re
import select
import socket
import smtplib
import subprocess
import sys
import threading
import time

SENDER_DOMAIN = "e2e-sender.example"
ID_RE = re.compile(rb"X-E2E-Id:[ \t]*([A-Za-z0-9._-]+)", re.I)
SUBJECT_ID_RE = re.compile(rb"^Subject: e2e ([A-Za-z0-9._-]+)", re.M)


# ---------------------------------------------------------------- address map and plans

def load_map(path):
    """address map: 'addr  Name at PO' -> {addr: (PO, Name)}"""
    m = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            addr, rest = line.split(None, 1)
            name, _, po = rest.rpartition(" at ")
            m[addr.lower()] = (po.strip(), name.strip())
    return m


def make_plan(args, amap):
    """The messages to send: deterministic from --seed, so a rerun sends the same thing."""
    rnd = random.Random(args.seed)
    cc_addrs = sorted(amap)
    internet = ["pat@partner.example", "lee@partner.example", "kim@other.example"]
    count = max(1, int(args.count * args.scale))
    plan = []
    for i in range(count):
        mid = "%s-%06d" % (args.prefix, i)
        r = rnd.random()
        if r < args.ccmail_only:
            kind = "ccmail"
            rcpts = rnd.sample(cc_addrs, rnd.choice([1, 1, 2, 3]))
        elif r < args.ccmail_only + args.mixed:
            kind = "mixed"
            rcpts = rnd.sample(cc_addrs, rnd.choice([1, 2])) + rnd.sample(internet, 1)
        else:
            kind = "none"
            rcpts = rnd.sample(internet, rnd.choice([1, 2]))
        # Sizes: mostly 1-16 KB, a few 64 KB-1 MB, a handful up to --max-size (5 MB).
        s = rnd.random()
        if s < args.large_fraction:
            size = rnd.randint(max(1024, args.max_size // 4), args.max_size)
        elif s < args.large_fraction + args.medium_fraction:
            size = rnd.randint(64 * 1024, 1024 * 1024)
        else:
            size = rnd.randint(1024, 16 * 1024)
        size = max(1024, min(size, args.max_size))
        plan.append({"id": mid, "kind": kind, "rcpts": rcpts, "size": size, "seed": rnd.getrandbits(32),
                     "bare": getattr(args, "no_id_date", False)})
    return plan


def build_message(p, rcpts=None):
    """RFC 5322 message of about p['size'] bytes, CRLF line ends, id in headers and subject."""
    mid, size = p["id"], p["size"]
    rcpts = rcpts or p["rcpts"]
    sender = "%s@%s" % (mid, SENDER_DOMAIN)
    # bare: neither Date nor Message-ID, as a local application may send; Postfix adds both
    # (for clients in local_header_rewrite_clients), differently on every attempt.
    ids = "" if p.get("bare") else "Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%s@e2e.example>\r\n" % mid
    hdr = ("From: E2E Sender <%s>\r\nTo: %s\r\nSubject: e2e %s %s\r\n%s"
           "X-E2E-Id: %s\r\nMIME-Version: 1.0\r\n" % (sender, ", ".join(rcpts), mid, p["kind"], ids, mid))
    rnd = random.Random(p["seed"])
    text_line = "line %%06d of %s: the quick brown fox jumps over the lazy dog\r\n" % mid
    if size <= 64 * 1024:
        lines, n = [], len(hdr) + 40
        k = 0
        while n < size:
            ln = text_line % k
            lines.append(ln)
            n += len(ln)
            k += 1
        return (hdr + "Content-Type: text/plain; charset=us-ascii\r\n\r\n" + "".join(lines)).encode()
    # Large: a short text part and a base64 attachment of random bytes.
    raw = rnd.randbytes(int(size * 0.74))
    b64 = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    body = (b"--e2eb\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nAttachment for " + mid.encode() +
            b".\r\n--e2eb\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n"
            b"Content-Disposition: attachment; filename=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
            b64 + b"--e2eb--\r\n")
    return hdr.encode() + b"Content-Type: multipart/mixed; boundary=\"e2eb\"\r\n\r\n" + body


# ---------------------------------------------------------------- SMTP client

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.tempfails = 0
        self.disconnects = 0
        self.codes = {}

    def add(self, what, code=None):
        with self.lock:
            if what == "tempfail":
                self.tempfails += 1
                self.codes[str(code)] = self.codes.get(str(code), 0) + 1
            else:
                self.disconnects += 1


def smtp_once(conn, p, msg):
    """One transaction on an open connection. Returns ('ok'|'temp'|'perm'|'lost', code)."""
    sender = "%s@%s" % (p["id"], SENDER_DOMAIN)
    code, _ = conn.mail(sender)
    if code // 100 != 2:
        return ("temp" if code // 100 == 4 else "perm"), code
    for r in p["rcpts"]:
        code, _ = conn.rcpt(r)
        if code // 100 != 2:
            return ("temp" if code // 100 == 4 else "perm"), code
    try:
        code, _ = conn.data(msg)
    except smtplib.SMTPDataError as e:
        code = e.smtp_code
    if code // 100 == 2:
        return "ok", code
    return ("temp" if code // 100 == 4 else "perm"), code


def client_worker(args, queue, results, stats, qlock, deadline):
    conn = None
    while True:
        with qlock:
            if not queue:
                break
            p = queue.pop()
        msg = build_message(p)
        attempts, outcome, last = 0, "gave_up", None
        while time.time() < deadline:
            attempts += 1
            try:
                if conn is None:
                    conn = smtplib.SMTP("127.0.0.1", args.port, timeout=args.timeout)
                    conn.ehlo("e2e.localdomain")
                res, code = smtp_once(conn, p, msg)
                last = code
                if res == "ok":
                    outcome = "accepted"
                    break
                if res == "perm":
                    outcome = "rejected"
                    break
                stats.add("tempfail", code)
                # Close and retry on a new session, as a sending MTA does: Postfix's smtpd
                # keeps a milter that failed during a session failed (tempfail) until the
                # session ends, so retrying on the same session could never succeed.
                try:
                    conn.quit()
                except Exception:
                    pass
                conn = None
            except (smtplib.SMTPException, OSError):
                stats.add("lost")
                last = "lost"
                try:
                    if conn is not None:
                        conn.close()
                except Exception:
                    pass
                conn = None
            time.sleep(args.retry_delay * (0.5 + random.random()))
        results.append({"id": p["id"], "kind": p["kind"], "rcpts": p["rcpts"], "size": p["size"],
                        "outcome": outcome, "attempts": attempts, "last": last, "via": "smtp"})
    if conn is not None:
        try:
            conn.quit()
        except Exception:
            pass


def cmd_send(args):
    amap = load_map(args.map)
    plan = make_plan(args, amap)
    random.Random(args.seed + 1).shuffle(plan)
    t0 = time.time()
    results, stats = send_all(args, plan)
    acc = sum(1 for r in results if r["outcome"] == "accepted")
    print("send %s: %d messages, %d accepted, %d tempfail replies %s, %d lost connections, %.1fs" %
          (args.prefix, len(results), acc, stats.tempfails, json.dumps(stats.codes, sort_keys=True),
           stats.disconnects, time.time() - t0), flush=True)
    return 0


def send_all(args, queue):
    """Sends every message of queue over args.sessions parallel SMTP clients (retrying 4xx
    until args.deadline), appends the outcomes to args.log; returns (results, stats)."""
    results, stats, qlock = [], Stats(), threading.Lock()
    deadline = time.time() + args.deadline
    threads = [threading.Thread(target=client_worker, args=(args, queue, results, stats, qlock, deadline))
               for _ in range(args.sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    write_results(args.log, results)
    return results, stats


def write_results(path, results):
    with open(path, "a", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")


def cmd_sendmail(args):
    amap = load_map(args.map)
    plan = make_plan(args, amap)
    results, t0, failures = [], time.time(), 0
    for p in plan:
        msg = build_message(p)
        sender = "%s@%s" % (p["id"], SENDER_DOMAIN)
        attempts, outcome = 0, "gave_up"
        while attempts < 5:
            attempts += 1
            r = subprocess.run([args.sendmail, "-C", args.postfix_conf, "-oi", "-f", sender, "--"] + p["rcpts"],
                               input=msg, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if r.returncode == 0:
                outcome = "accepted"
                break
            failures += 1
            time.sleep(0.2)
        results.append({"id": p["id"], "kind": p["kind"], "rcpts": p["rcpts"], "size": p["size"],
                        "outcome": outcome, "attempts": attempts, "last": None, "via": "sendmail"})
    write_results(args.log, results)
    acc = sum(1 for r in results if r["outcome"] == "accepted")
    print("sendmail %s: %d messages, %d accepted, %d failed calls, %.1fs" %
          (args.prefix, len(results), acc, failures, time.time() - t0), flush=True)
    return 0


# ---------------------------------------------------------------- Q184524: drop after the dot

def read_reply(f):
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise OSError("connection closed")
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3]), b"".join(lines)


def drop_after_dot(port, p, msg, timeout):
    """Sends the whole transaction including the final dot, then resets the connection
    without reading the reply: the client cannot know whether the server accepted it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    f = s.makefile("rb")
    try:
        read_reply(f)
        s.sendall(b"EHLO e2e.localdomain\r\n"); read_reply(f)
        s.sendall(b"MAIL FROM:<%s@%s>\r\n" % (p["id"].encode(), SENDER_DOMAIN.encode()))
        if read_reply(f)[0] // 100 != 2:
            return False
        for r in p["rcpts"]:
            s.sendall(b"RCPT TO:<%s>\r\n" % r.encode())
            if read_reply(f)[0] // 100 != 2:
                return False
        s.sendall(b"DATA\r\n")
        if read_reply(f)[0] != 354:
            return False
        data = msg.replace(b"\r\n.", b"\r\n..")
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        s.sendall(data + b".\r\n")
        # RFC 1047: the server got the dot and answered, but the answer never reaches the
        # client. Wait until the reply is there (not read), then reset the connection: the
        # server's work is done, the client saw nothing and will send again. (Resetting any
        # earlier would make the kernel drop data the server had not read yet, and the server
        # would simply discard a message it never finished receiving.)
        select.select([s], [], [], timeout)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        return True
    finally:
        f.close()
        s.close()


def cmd_q184524(args):
    amap = load_map(args.map)
    plan = make_plan(args, amap)
    dropped = 0
    for p in plan:
        try:
            dropped += drop_after_dot(args.port, p, build_message(p), args.timeout)
        except OSError:
            pass
    print("q184524 %s: %d messages sent, connection dropped after the final dot for %d" %
          (args.prefix, len(plan), dropped), flush=True)
    if args.between:
        subprocess.run(["/bin/sh", "-c", args.between], check=False)
    # The retry: the same bytes again, as the sending MTA would after its timeout.
    results, stats = send_all(args, list(plan))
    acc = sum(1 for r in results if r["outcome"] == "accepted")
    print("q184524 %s: retried %d, %d accepted on retry, %d tempfail replies" %
          (args.prefix, len(results), acc, stats.tempfails), flush=True)
    return 0


# ---------------------------------------------------------------- sink

class Sink:
    def __init__(self, log, dump=None):
        self.log = open(log, "a", encoding="utf-8", buffering=1)
        self.count = 0
        self.dump = dump

    async def handle(self, reader, writer):
        async def reply(line):
            writer.write(line.encode() + b"\r\n")
            await writer.drain()
        try:
            await reply("220 sink.e2e ESMTP")
            rcpts = []
            while True:
                line = await reader.readline()
                if not line:
                    break
                cmd = line.decode("latin-1").strip()
                up = cmd.upper()
                if up.startswith("EHLO"):
                    await reply("250-sink.e2e\r\n250-8BITMIME\r\n250 SIZE 100000000")
                elif up.startswith("HELO"):
                    await reply("250 sink.e2e")
                elif up.startswith("MAIL"):
                    rcpts = []
                    await reply("250 2.1.0 ok")
                elif up.startswith("RCPT"):
                    m = re.search(r"<([^>]*)>", cmd)
                    rcpts.append((m.group(1) if m else "").lower())
                    await reply("250 2.1.5 ok")
                elif up == "DATA":
                    await reply("354 go")
                    ident = msgid = None
                    in_header, keep = True, []
                    while True:
                        dl = await reader.readline()
                        if not dl or dl in (b".\r\n", b".\n"):
                            break
                        if in_header:
                            if dl in (b"\r\n", b"\n"):
                                in_header = False
                            elif ident is None and dl[:9].lower() == b"x-e2e-id:":
                                ident = dl[9:].strip().decode("latin-1")
                            elif msgid is None and dl[:11].lower() == b"message-id:":
                                msgid = dl[11:].strip().decode("latin-1")
                        if self.dump:
                            keep.append(dl[1:] if dl.startswith(b"..") else dl)
                    self.count += 1
                    for r in rcpts:
                        self.log.write("%s\t%s\n" % (ident or msgid or "-", r))
                    if self.dump:
                        path = os.path.join(self.dump, "%04d.eml" % self.count)
                        with open(path, "wb") as f:
                            f.write(b"".join(keep))
                    await reply("250 2.0.0 stored")
                elif up == "RSET":
                    rcpts = []
                    await reply("250 ok")
                elif up == "QUIT":
                    await reply("221 bye")
                    break
                else:
                    await reply("250 ok")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def cmd_sink(args):
    if args.dump:
        os.makedirs(args.dump, exist_ok=True)
    sink = Sink(args.log, args.dump)

    async def main():
        server = await asyncio.start_server(sink.handle, "127.0.0.1", args.port, limit=1 << 20)
        # Written then renamed: a waiter that sees the file sees the whole port number.
        with open(args.ready + ".tmp", "w") as f:
            f.write(str(server.sockets[0].getsockname()[1]) + "\n")
        os.rename(args.ready + ".tmp", args.ready)
        async with server:
            await server.serve_forever()
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return 0


# ---------------------------------------------------------------- verify

def parse_manifest(path):
    with open(path, "rb") as f:
        data = f.read().decode("utf-8", "replace")
    lines = data.split("\n")
    head = lines[0]
    if not head.startswith("# ccmail-bridge manifest v1"):
        raise ValueError("%s: bad header %r" % (path, head[:80]))
    m = re.search(r"count=(\d+)", head)
    entries = [l.split("\t") for l in lines[1:] if l]
    if m and int(m.group(1)) != len(entries):
        raise ValueError("%s: count=%s but %d lines (truncated?)" % (path, m.group(1), len(entries)))
    return head, entries


def norm_name(name, po):
    suffix = " at " + po
    if name.upper().endswith(suffix.upper()):
        name = name[: -len(suffix)]
    return name.strip()


def cmd_verify(args):
    amap = load_map(args.map)
    sent = {}
    for logf in args.sent:
        with open(logf, encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                prev = sent.get(r["id"])
                # A message sent twice (q184524: the dropped first copy, then the retry) is one
                # message; it counts as accepted when any attempt got the 2xx.
                if prev is None or r["outcome"] == "accepted":
                    sent[r["id"]] = r
    problems = []
    # Expected deliveries of accepted messages.
    exp_cc, exp_net, attempted_cc = set(), set(), set()
    for r in sent.values():
        for a in r["rcpts"]:
            a = a.lower()
            if a in amap:
                po, name = amap[a]
                attempted_cc.add((r["id"], po, name.upper()))
                if r["outcome"] == "accepted":
                    exp_cc.add((r["id"], po, name.upper()))
            elif r["outcome"] == "accepted":
                exp_net.add((r["id"], a))

    # Outbox: every manifest, every batch linted, ids cross-checked against the batch content.
    got = {}
    batches = mans = 0
    lint_bad = 0
    outbox = args.outbox
    pos = sorted(d for d in os.listdir(outbox) if os.path.isdir(os.path.join(outbox, d))) if os.path.isdir(outbox) else []
    for po in pos:
        d = os.path.join(outbox, po)
        files = sorted(os.listdir(d))
        ccms = [f for f in files if f.upper().endswith(".CCM")]
        for f in files:
            if f.upper().endswith(".PART"):
                problems.append("unexpected .part in outbox: %s/%s" % (po, f))
        for ccm in ccms:
            batches += 1
            stem = ccm[:-4]
            man = os.path.join(d, stem + ".MAN")
            if not os.path.exists(man):
                problems.append("batch without manifest: %s/%s" % (po, ccm))
                continue
            mans += 1
            try:
                _, entries = parse_manifest(man)
            except ValueError as e:
                problems.append(str(e))
                continue
            with open(os.path.join(d, ccm), "rb") as f:
                content = f.read()
            ids_in_file = set(x.decode() for x in ID_RE.findall(content)) or \
                set(x.decode() for x in SUBJECT_ID_RE.findall(content))
            ids_in_man = set()
            for e in entries:
                if len(e) < 4:
                    problems.append("%s: short manifest line %r" % (man, e))
                    continue
                cap, key, rcpt, sender = e[0], e[1], e[2], e[3]
                ident = sender.split("@")[0] if sender.endswith("@" + SENDER_DOMAIN) else None
                if ident is None:
                    problems.append("%s: delivery from unknown sender %r" % (man, sender))
                    continue
                ids_in_man.add(ident)
                k = (ident, po, norm_name(rcpt, po).upper())
                got.setdefault(k, []).append((stem, cap, key))
            if ids_in_man != ids_in_file:
                problems.append("%s/%s: ids in manifest and in import file differ: only manifest %s, only file %s" %
                                (po, ccm, sorted(ids_in_man - ids_in_file)[:5], sorted(ids_in_file - ids_in_man)[:5]))
        # Watermark: present when something was published.
        if ccms and "WATERMRK" not in files:
            problems.append("%s: no WATERMRK" % po)
    # ccmail-lint on every batch, in chunks.
    all_ccm = [os.path.join(outbox, po, f) for po in pos for f in sorted(os.listdir(os.path.join(outbox, po)))
               if f.upper().endswith(".CCM")]
    lint_msgs = 0
    for i in range(0, len(all_ccm), 200):
        chunk = all_ccm[i:i + 200]
        cmd = [args.lint] + (["-c", args.conf] if args.conf else []) + ["-v"] + chunk
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = r.stdout.decode("utf-8", "replace")
        for line in out.splitlines():
            m = re.search(r": OK, (\d+) message", line)
            if m:
                lint_msgs += int(m.group(1))
            else:
                lint_bad += 1
                if lint_bad <= 10:
                    problems.append("ccmail-lint: " + line)
        if r.returncode != 0 and lint_bad == 0:
            lint_bad += 1
            problems.append("ccmail-lint exit %d: %s" % (r.returncode, out[:300]))

    exported = len(got)
    duplicates = sum(len(v) - 1 for v in got.values())
    lost_cc = exp_cc - set(got)
    unexpected = set(got) - attempted_cc
    unacked = set(got) & (attempted_cc - exp_cc)
    # Same content key + recipient twice would be a duplicate too (even under another id).
    keyrc = {}
    for k, v in got.items():
        for (_, _, key) in v:
            keyrc.setdefault((key, k[1], k[2]), 0)
            keyrc[(key, k[1], k[2])] += 1
    key_dups = sum(n - 1 for n in keyrc.values() if n > 1)
    duplicates = max(duplicates, key_dups)

    # Internet recipients, through Postfix to the sink.
    sink = {}
    if args.sink and os.path.exists(args.sink):
        with open(args.sink, encoding="utf-8") as f:
            for line in f:
                ident, _, rcpt = line.rstrip("\n").partition("\t")
                sink[(ident, rcpt)] = sink.get((ident, rcpt), 0) + 1
    lost_net = {k for k in exp_net if k not in sink}
    leaked = [k for k in sink if k[1] in amap and not args.copy_mode]
    if leaked:
        problems.append("%d cc:Mail deliveries also went through SMTP (divert mode), e.g. %s" % (len(leaked), leaked[:3]))
    if unexpected:
        problems.append("%d deliveries in the outbox that were never sent, e.g. %s" % (len(unexpected), sorted(unexpected)[:3]))
    if lost_cc:
        problems.append("%d cc:Mail deliveries lost, e.g. %s" % (len(lost_cc), sorted(lost_cc)[:5]))
    if lost_net:
        problems.append("%d Internet deliveries lost, e.g. %s" % (len(lost_net), sorted(lost_net)[:5]))
    for k, v in sorted(got.items()):
        if len(v) > 1 and duplicates:
            problems.append("duplicate %s in %s" % (k, [x[0] for x in v]))
            break
    n_sent = len(sent)
    n_acc = sum(1 for r in sent.values() if r["outcome"] == "accepted")
    lost = len(lost_cc) + len(lost_net)
    print("details: batches=%d manifests=%d lint_messages=%d lint_failures=%d cc_expected=%d net_expected=%d "
          "net_delivered=%d exported_unacknowledged=%d rejected=%d gave_up=%d" %
          (batches, mans, lint_msgs, lint_bad, len(exp_cc), len(exp_net), len(exp_net) - len(lost_net),
           len(unacked), sum(1 for r in sent.values() if r["outcome"] == "rejected"),
           sum(1 for r in sent.values() if r["outcome"] == "gave_up")))
    for p in problems[:20]:
        print("problem: " + p)
    print("e2e %s: sent=%d accepted=%d exported=%d duplicates=%d lost=%d" %
          (args.scenario, n_sent, n_acc, exported, duplicates, lost), flush=True)
    ok = duplicates == 0 and lost == 0 and not problems and n_acc >= args.min_accepted * n_sent
    if n_acc < args.min_accepted * n_sent:
        print("problem: only %d of %d messages accepted (want >= %.0f%%)" % (n_acc, n_sent, args.min_accepted * 100))
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)

    def plan_args(p):
        p.add_argument("--map", required=True)
        p.add_argument("--prefix", required=True)
        p.add_argument("--count", type=int, default=100)
        p.add_argument("--scale", type=float, default=float(os.environ.get("CCMAIL_E2E_SCALE", "1.0")))
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--ccmail-only", type=float, default=0.6)
        p.add_argument("--mixed", type=float, default=0.25)
        p.add_argument("--max-size", type=int, default=5 * 1024 * 1024)
        p.add_argument("--large-fraction", type=float, default=0.001)
        p.add_argument("--medium-fraction", type=float, default=0.01)
        p.add_argument("--log", required=True)
        p.add_argument("--no-id-date", action="store_true", help="messages without Date and Message-ID")

    def client_args(p):
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--sessions", type=int, default=20)
        p.add_argument("--timeout", type=float, default=120)
        p.add_argument("--deadline", type=float, default=240)
        p.add_argument("--retry-delay", type=float, default=0.3)

    p = sub.add_parser("send"); plan_args(p); client_args(p)
    p = sub.add_parser("sendmail"); plan_args(p)
    p.add_argument("--sendmail", default="/usr/sbin/sendmail")
    p.add_argument("--postfix-conf", required=True)
    p = sub.add_parser("q184524"); plan_args(p); client_args(p)
    p.add_argument("--between", default="", help="shell command run between the dropped sends and the retries")
    p = sub.add_parser("sink")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--log", required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--dump", help="also keep every received message as DIR/NNNN.eml")
    p = sub.add_parser("verify")
    p.add_argument("--scenario", required=True)
    p.add_argument("--map", required=True)
    p.add_argument("--outbox", required=True)
    p.add_argument("--sink")
    p.add_argument("--lint", required=True)
    p.add_argument("--conf")
    p.add_argument("--copy-mode", action="store_true")
    p.add_argument("--min-accepted", type=float, default=1.0,
                   help="fraction of the messages that must have been accepted (every one, by default)")
    p.add_argument("sent", nargs="+")
    args = ap.parse_args()
    return {"send": cmd_send, "sendmail": cmd_sendmail, "q184524": cmd_q184524,
            "sink": cmd_sink, "verify": cmd_verify}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
