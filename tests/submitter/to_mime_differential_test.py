#!/usr/bin/env python3
"""Differential test of the way back: random cc:Mail EXPORT messages (both layouts) ->
to_mime_diff_tool (reader + ConvertExportMessage) -> Python's email package, an independent
MIME decoder, must find the author, recipients, date, subject, every text item and every file
byte for byte. Seed 1 and a random seed (printed on failure; --seed S reproduces)."""
import argparse
import datetime
import email
import email.policy
import email.utils
import random
import subprocess
import sys
import zoneinfo

TZ = zoneinfo.ZoneInfo("Europe/Berlin")
# Characters code pages 850 and 1252 both have, so either can carry them.
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
EXTRA = "äöüÄÖÜßéèñçÅø£¿¡«»"
PUNCT = " .,-()!?'/&%+=\t"
TYPES = {"TXT": "text/plain", "PDF": "application/pdf", "GIF": "image/gif", "ZIP": "application/zip",
         "XYZ": "application/octet-stream", "DAT": "application/octet-stream"}


def word(rng, alphabet=LETTERS, lo=1, hi=10):
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def subject(rng):
    parts = []
    for _ in range(rng.randint(1, 8)):
        r = rng.random()
        if r < 0.15:
            parts.append(rng.choice(["=?utf-8?q?x?=", "=?", "?=", "[tag]", "=?ISO-8859-1?B?SGk=?="]))
        elif r < 0.4:
            parts.append(word(rng, LETTERS + EXTRA))
        else:
            parts.append(word(rng))
    return " ".join(parts)


def text_line(rng):
    r = rng.random()
    if r < 0.05:
        return ""
    if r < 0.1:
        return "."
    if r < 0.15:
        return "x" * rng.randint(900, 1500)
    if r < 0.2:
        return "From the start"
    if r < 0.25:
        return "Message: looks like a keyword"  # protected by one space in the keyword layout
    return " ".join(word(rng, LETTERS + EXTRA + PUNCT, 1, 12) for _ in range(rng.randint(1, 10))).rstrip(" \t")


def needs_protection(line):
    s = line.lstrip(" \t").lower()
    if s.startswith(("message:", "contents:", "from:", "date:", "to:", "cc:", "bcc:", "subject:")):
        return True
    head, _, rest = s.partition(" ")
    return rest.startswith("item:")


class Msg:
    def __init__(self, rng, index):
        self.rng = rng
        self.index = index
        r = rng.random()
        if r < 0.3:
            self.from_line, self.author, self.author_name = "Smith, John at HUBPO2", "jsmith@corp.example", "Smith, John"
        elif r < 0.4:
            self.from_line, self.author, self.author_name = "Garcia, Maria", "mgarcia@corp.example", "Garcia, Maria"
        elif r < 0.5:
            a = word(rng).lower() + "@partner.example"
            self.from_line, self.author, self.author_name = a + " at INTERNET", a, ""
        else:
            last, first = word(rng, LETTERS[:26]), word(rng, LETTERS[:26])
            self.from_line = f"{last.capitalize()}, {first.capitalize()} at HUBPO2"
            self.author, self.author_name = f"{first}.{last}@corp.example", f"{last.capitalize()}, {first.capitalize()}"
        when = datetime.datetime(rng.randint(1970, 2069), rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
                                 rng.randint(0, 59))
        self.when = when.replace(tzinfo=TZ)
        self.date_line = f"{when.month}/{when.day}/{when.year % 100:02d} {when.hour}:{when.minute:02d}"
        self.to, self.cc, self.bcc = [], [], []
        self.rcpt, self.vis_to, self.vis_cc = [], [], []
        for kind, lines, visible in (("to", self.to, self.vis_to), ("cc", self.cc, self.vis_cc), ("bcc", self.bcc, None)):
            for _ in range(rng.randint(1 if kind == "to" else 0, 3)):
                addr = word(rng).lower() + "@" + word(rng, LETTERS[:26], 2, 6).lower() + ".example"
                form = rng.randint(0, 4)
                if form == 0:
                    line = f"{addr} at INTERNET"
                elif form == 1:
                    line = f"{addr} at internet"
                elif form == 2:
                    line = f"Some, Body <{addr}> at INTERNET"
                elif form == 3:
                    line, addr = ("Garcia, Maria", None) if kind != "bcc" else (f"{addr} at INTERNET", addr)
                else:
                    line, addr = "Unmapped, Person", None
                lines.append(line)
                if addr is None:
                    if line == "Garcia, Maria" and visible is not None and "mgarcia@corp.example" not in self.vis_to + self.vis_cc:
                        visible.append("mgarcia@corp.example")
                    continue
                if addr not in self.rcpt:
                    self.rcpt.append(addr)
                if visible is not None and addr not in self.vis_to + self.vis_cc:
                    visible.append(addr)
        self.subject = subject(rng)
        self.items = []  # (kind, title, data bytes); text data already code page bytes
        self.texts, self.files = [], []
        for _ in range(rng.randint(1, 5)):
            if rng.random() < 0.6:
                lines = [text_line(rng) for _ in range(rng.randint(1, 8))]
                if rng.random() < 0.1:
                    lines = ["   ", ""]  # blank: dropped
                text = "\r\n".join(lines) + "\r\n"
                self.items.append(("text", "", text))
                if text.strip(" \t\r\n"):
                    self.texts.append("\n".join(lines) + "\n")
            else:
                ext = rng.choice(list(TYPES))
                name = word(rng, LETTERS[26:52], 1, 8) + "." + ext
                if any(name == f[0] for f in self.files):
                    continue
                title = name + rng.choice(["", " 5/6/97 3:10PM", " 9-11-1998", " 12.1.99 23:59"])
                data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 3000)))
                self.items.append(("file", title, data))
                self.files.append((name, data, TYPES[ext]))
        if not self.rcpt:
            self.refused = True
        else:
            self.refused = False

    def export(self, cp, itemsize, hexfiles):
        def enc(s):
            return s.encode(cp)

        head = [b"From: " + enc(self.from_line), b"Date: " + enc(self.date_line)]
        head += [b"To: " + enc(x) for x in self.to] + [b"Cc: " + enc(x) for x in self.cc] + [b"Bcc: " + enc(x) for x in self.bcc]
        head.append(b"Subject: " + enc(self.subject))
        blocks = b""
        for kind, title, data in self.items:
            kw = (b"Text item: " if kind == "text" else b"File item: ") + enc(title) + b"\r\n"
            if kind == "text":
                lines = data.split("\r\n")[:-1]
                if not itemsize:
                    lines = [(" " + l) if needs_protection(l) else l for l in lines]
                body = b"".join(enc(l) + b"\r\n" for l in lines)
            elif hexfiles:
                h = data.hex().upper()
                body = b"".join(h[i:i + 76].encode() + b"\r\n" for i in range(0, len(h), 76))
            else:
                body = data
            if itemsize:
                block = kw + str(len(body)).encode() + b"\r\n" + body + (b"\r\n" if kind == "file" and not hexfiles else b"")
            else:
                block = kw + body
            blocks += block
        if itemsize:
            contents = b"Contents:\r\n" + str(len(blocks)).encode() + b"\r\n" + blocks
            rest = b"".join(h + b"\r\n" for h in head) + contents
            return b"Message:\r\n" + str(len(rest)).encode() + b"\r\n" + rest
        return b"Message:\r\n" + b"".join(h + b"\r\n" for h in head) + b"Contents:\r\n" + blocks


def parse_records(out):
    records, pos = [], 0
    while pos < len(out):
        nl = out.index(b"\n", pos)
        line = out[pos:nl].decode()
        pos = nl + 1
        if line.startswith("MESSAGE "):
            records.append({"rcpt": []})
        elif line.startswith("MIME "):
            n = int(line[5:])
            records[-1]["mime"] = out[pos:pos + n]
            pos += n + 1
        else:
            key, _, value = line.partition(" ")
            if key == "RCPT":
                records[-1]["rcpt"].append(value)
            else:
                records[-1][key] = value
    return records


def check(m, rec, fail):
    if m.refused:
        if "REFUSAL" not in rec:
            fail("expected a refusal (no Internet recipient), got " + str({k: v for k, v in rec.items() if k != "mime"}))
        return
    if "MIME" in rec or "mime" not in rec:
        fail("no MIME: " + str(rec))
        return
    raw = rec["mime"]
    if any(b >= 0x80 for b in raw):
        fail("8-bit byte in the message")
    for ln in raw.split(b"\r\n"):
        if b"\n" in ln or b"\r" in ln:
            fail("bare CR or LF")
        if len(ln) > 998:
            fail("line over 998 bytes")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    if rec.get("FROM") != m.author:
        fail(f"envelope from {rec.get('FROM')} != {m.author}")
    if rec["rcpt"] != m.rcpt:
        fail(f"recipients {rec['rcpt']} != {m.rcpt}")
    frm = msg["From"].addresses[0]
    if frm.addr_spec != m.author or frm.display_name != m.author_name:
        fail(f"From {frm.display_name!r} <{frm.addr_spec}> != {m.author_name!r} <{m.author}>")
    for field, want in (("To", m.vis_to), ("Cc", m.vis_cc)):
        got = [a.addr_spec for a in msg[field].addresses] if msg[field] else []
        if got != want:
            fail(f"{field} {got} != {want}")
    if msg["Bcc"] is not None:
        fail("Bcc header present")
    if str(msg["Subject"]) != m.subject.strip(" \t"):
        fail(f"subject {str(msg['Subject'])!r} != {m.subject!r}")
    date = email.utils.parsedate_to_datetime(str(msg["Date"]))
    # zoneinfo's fold=0 reading of the wall clock, written with the offset in force at that instant.
    # (timestamps: PEP 495 makes an inter-zone == false for a time in a gap or fold.)
    if date.timestamp() != m.when.timestamp() or date.utcoffset() != m.when.astimezone(datetime.timezone.utc).astimezone(TZ).utcoffset():
        fail(f"date {msg['Date']} != {m.when.isoformat()}")
    if msg["Message-ID"] != rec["ID"] or not rec["ID"].endswith("@diff.bridge.example>"):
        fail("Message-ID " + str(msg["Message-ID"]))
    if msg["X-Ccmail-Bridge-Origin"] != "diff.bridge.example":
        fail("no origin header")
    texts, files = [], []
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part.get_content_disposition() == "attachment":
            files.append((part.get_filename(), part.get_payload(decode=True), part.get_content_type()))
        else:
            if part.get_content_type() != "text/plain" or part.get_content_charset() != "utf-8":
                fail("text part " + part.get_content_type())
            body = part.get_content().replace("\r\n", "\n")
            texts.append(body)
    want_texts = m.texts if m.texts or m.files else [""]  # nothing at all: one empty text/plain body
    if texts != want_texts:
        fail(f"texts {[t[:80] for t in texts]} != {[t[:80] for t in want_texts]}")
    if files != m.files:
        fail(f"files {[(f[0], len(f[1]), f[2]) for f in files]} != {[(f[0], len(f[1]), f[2]) for f in m.files]}")


def run(tool, seed, count):
    rng = random.Random(seed)
    failures = []
    for batch in range(count // 10):
        cp = rng.choice(["850", "1252"])
        itemsize = rng.random() < 0.5
        hexfiles = not itemsize or rng.random() < 0.5
        msgs = [Msg(rng, i) for i in range(10)]
        data = b"".join(m.export("cp" + cp, itemsize, hexfiles) for m in msgs)
        args = [tool, cp, "hex" if hexfiles else "raw"]
        p = subprocess.run(args, input=data, capture_output=True)
        if p.returncode != 0:
            failures.append(f"seed {seed} batch {batch}: tool exit {p.returncode}: {p.stderr.decode()[:500]}")
            continue
        again = subprocess.run(args, input=data, capture_output=True)
        if again.stdout != p.stdout:
            failures.append(f"seed {seed} batch {batch}: the same input gave different output")
        records = parse_records(p.stdout)
        if len(records) != len(msgs):
            failures.append(f"seed {seed} batch {batch}: {len(records)} records for {len(msgs)} messages")
            continue
        for m, rec in zip(msgs, records):
            def fail(what, m=m, batch=batch):
                failures.append(f"seed {seed} batch {batch} message {m.index} (cp {cp}, itemsize {itemsize}): {what}")
            check(m, rec, fail)
    return failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--seed", type=int)
    a = ap.parse_args()
    seeds = [a.seed] if a.seed is not None else [1, random.SystemRandom().randrange(1 << 31)]
    failures = []
    for seed in seeds:
        failures += run(a.tool, seed, a.count)
    for f in failures[:30]:
        print(f)
    if failures:
        print(f"to_mime_differential_test: {len(failures)} failure(s); seeds {seeds}")
        return 1
    print(f"to_mime_differential_test: ok, {a.count} messages a seed, seeds {seeds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
