#!/usr/bin/env python3
"""Differential test of the converter against Python's email package.

Generates random messages (structure, charsets, transfer encodings, folding, encoded
names), converts each with the project's converter and reads the import file back with the
project's reader (format_diff_tool), then compares what the cc:Mail user would read with
what Python decodes from the same message: subject, author, recipients, and every item in
order: the main text and each further inline text/plain part (no Content-Disposition or
`inline`, any charset and transfer encoding, interleaved with the attachments) as an untitled
text item after the documented code-page mapping (docs/FORMAT.md), each attachment (text/plain
ones too) as a file item byte for byte. The trailing Headers item must be present and last; a
Notice item is a failure.

Usage: differential_test.py --tool format_diff_tool [--count N] [--seed S] [--keep DIR]
Runs the fixed seed 1 and one random seed (printed); a failure prints the seed and the
message, so `--seed S` reproduces it.
"""
import argparse
import base64
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from email import policy
from email.header import Header
from email.parser import BytesParser
from email.utils import formataddr

CODEPAGE = "cp850"
SUBJECT_MAX = 60

# Charsets where Python's codecs and glibc iconv agree on every character we generate.
TEXT_CHARSETS = ["us-ascii", "utf-8", "iso-8859-1", "iso-8859-15", "windows-1252", "koi8-r",
                 "utf-16le", "utf-16be", "utf-16", "utf-7", "iso-2022-jp", "iso-8859-2"]
WORDS = ["hello", "world", "report", "Grüße", "café", "naïve", "Ærø", "Привет", "мир",
         "こんにちは", "日本", "€100", "x+y", "a~b", "back\\slash", "tab\there", "Łódź", "[tag]",
         "quote\"d", "semi;colon", "comma,", "=?not?encoded?=", "żółw", "ß", "½", "—dash—"]
NAME_CHARS = "abcdefghXYZ0123456789éüßЖ_-"


def encodable(text, charset):
    try:
        text.encode(py_codec(charset))
        return True
    except UnicodeEncodeError:
        return False


def py_codec(charset):
    return {"us-ascii": "ascii", "windows-1252": "cp1252"}.get(charset, charset)


def random_text(rng, charset, lines):
    out = []
    for _ in range(lines):
        words = [w for w in rng.sample(WORDS, rng.randint(1, 8)) if encodable(w, charset)]
        if not words:
            words = ["plain"]
        out.append(" ".join(words))
    return "\n".join(out) + "\n"


def qp(data, binary=False):
    """Quoted-printable that never leaves a CR or trailing white space raw (quopri does, and
    decoders then disagree). binary: LF is encoded too, lines break only softly."""
    out, line = [], b""
    for i, b in enumerate(data):
        if b == 0x0A and not binary:
            if line.endswith((b" ", b"\t")):
                line = line[:-1] + b"=%02X" % line[-1]
            out.append(line + b"\n")
            line = b""
            continue
        tok = bytes([b]) if (33 <= b <= 126 and b != 0x3D) or b == 0x20 else b"=%02X" % b
        if len(line) + len(tok) > 75:
            out.append(line + b"=\n")
            line = b""
        line += tok
    if line.endswith((b" ", b"\t")):
        line = line[:-1] + b"=%02X" % line[-1]
    out.append(line + b"\n")
    return b"".join(out)


def encode_body(rng, data, ascii_only):
    """(cte, encoded bytes) for body bytes."""
    choices = ["base64", "quoted-printable"]
    if ascii_only and b"\r" not in data and all(len(l) < 900 for l in data.split(b"\n")):
        choices += ["7bit", "8bit"]
    elif b"\r" not in data and b"\0" not in data and all(len(l) < 900 for l in data.split(b"\n")):
        choices.append("8bit")
    cte = rng.choice(choices)
    if cte == "base64":
        enc = base64.encodebytes(data)
    elif cte == "quoted-printable":
        enc = qp(data)
    else:
        enc = data if data.endswith(b"\n") else data + b"\n"
    return cte, enc


def encoded_header(rng, text, charset=None):
    """text as an RFC 2047 header value, split into several words like common mailers do."""
    if all(ord(c) < 128 for c in text) and rng.random() < 0.5:
        return text
    cs = charset or rng.choice(["utf-8", "utf-8", "iso-8859-1", "koi8-r", "iso-2022-jp", "utf-7"])
    if not encodable(text, cs):
        cs = "utf-8"
    h = Header(text, charset=cs, maxlinelen=rng.randint(20, 76))
    return h.encode()


def build_message(rng, idx):
    env = {"sender": rng.choice(["list-bounces+x=y@lists.example", "", "bob@partner.example"]),
           "rcpts": []}
    rcpts = []
    for k in range(rng.randint(1, 4)):
        rcpts.append((f"u{idx}x{k}@ccmail.corp.example", f"User{k}, Test"))
    env["rcpts"] = rcpts
    lines = []
    author_name = " ".join(rng.sample(WORDS, rng.randint(1, 2)))
    author_addr = rng.choice(["alice@example.org", "Bob.Smith@partner.example", "x_y@sub.example.net"])
    if rng.random() < 0.9:
        if all(ord(c) < 128 for c in author_name):
            lines.append("From: " + formataddr((author_name, author_addr)))
        else:  # base64 words (utf-8), split like common mailers: atoms in a phrase
            lines.append("From: " + Header(author_name, "utf-8", maxlinelen=rng.randint(20, 76)).encode()
                         + f" <{author_addr}>")
    if rng.random() < 0.3:
        lines.append("Sender: sec@example.com")
    to_hdr, cc_hdr = [], []
    for addr, _ in rcpts:
        r = rng.random()
        shown = addr.upper() if rng.random() < 0.2 else addr
        if r < 0.5:
            to_hdr.append(shown)
        elif r < 0.75:
            cc_hdr.append(shown)
    to_hdr.append("other@elsewhere.example")
    lines.append("To: " + ", ".join(to_hdr))
    if cc_hdr:
        lines.append("Cc: " + ",\n ".join(cc_hdr))
    subject = " ".join(rng.sample(WORDS, rng.randint(1, 6)))
    lines.append("Subject: " + encoded_header(rng, subject))
    lines.append("Date: Tue, 24 Nov 2026 09:31:00 +0000")
    lines.append("MIME-Version: 1.0")

    def make_text(cs=None):
        """(charset, body bytes) of a text/plain part in a random charset."""
        cs = cs or rng.choice(TEXT_CHARSETS)
        return cs, random_text(rng, cs, rng.randint(1, 12)).encode(py_codec(cs))

    def text_part(cs, data, disposition=""):
        """A text/plain part; disposition: "" (none) or a Content-Disposition line."""
        ascii_only = all(b < 128 for b in data) and cs not in ("utf-16le", "utf-16be", "utf-16", "utf-7", "iso-2022-jp")
        cte, enc = encode_body(rng, data, ascii_only or cs in ("utf-7", "iso-2022-jp") and b"\r" not in data)
        if cs in ("utf-16le", "utf-16be", "utf-16") and cte not in ("base64", "quoted-printable"):
            cte, enc = "base64", base64.encodebytes(data)
        # An ASCII body sometimes without a charset label (both sides then take it as ASCII).
        label = "" if cs == "us-ascii" and rng.random() < 0.3 else f"; charset={cs}"
        return (f"Content-Type: text/plain{label}\n{disposition}Content-Transfer-Encoding: {cte}\n\n").encode() + enc

    body_cs, body_bytes = make_text()
    nfiles = rng.choice([0, 0, 1, 2, 3])
    # Further inline text/plain parts (each its own text item), interleaved with the files.
    ntexts = rng.choice([0, 0, 0, 1, 1, 2])
    alternative = rng.random() < 0.2

    if nfiles == 0 and ntexts == 0 and not alternative:
        msg = ("\n".join(lines) + "\n").encode() + text_part(body_cs, body_bytes)
        return msg, env
    parts = []
    if alternative:
        html = "<html><body><p>not shown</p></body></html>\n".encode()
        alt = (b"Content-Type: multipart/alternative; boundary=\"alt=_b\"\n\n--alt=_b\n" + text_part(body_cs, body_bytes) +
               b"--alt=_b\nContent-Type: text/html; charset=us-ascii\n\n" + html + b"--alt=_b--\n")
        parts.append(alt)
    else:
        parts.append(text_part(body_cs, body_bytes))
    later = []
    for f in range(nfiles):
        size = rng.choice([0, 1, 2, 3, 57, 100, 1000, 5000])
        data = bytes(rng.getrandbits(8) for _ in range(size))
        ctype = rng.choice(["application/octet-stream", "application/pdf", "image/jpeg", "text/plain"])
        if rng.random() < 0.3 or ctype == "text/plain" and rng.random() < 0.5:
            data = random_text(rng, "utf-8", 3).encode()
        base = str(f) + "".join(rng.choice(NAME_CHARS) for _ in range(rng.randint(0, 5)))
        ext = rng.choice(["pdf", "bin", "txt", "jpeg", ""])
        fname = base + ("." + ext if ext else "")
        cte = rng.choice(["base64", "base64", "quoted-printable"])
        enc = base64.encodebytes(data) if cte == "base64" else qp(data, binary=True)
        if all(ord(c) < 128 for c in fname) and rng.random() < 0.5:
            disp = f'attachment; filename="{fname}"'
        else:
            disp = 'attachment; filename="' + Header(fname, "utf-8", maxlinelen=30).encode().replace("\n", "") + '"'
        if ctype == "text/plain" and rng.random() < 0.5:
            ctype += "; charset=" + rng.choice(["utf-8", "iso-8859-1", "utf-16"])  # a file: bytes untouched
        later.append(f"Content-Type: {ctype}\nContent-Disposition: {disp}\nContent-Transfer-Encoding: {cte}\n\n".encode() + enc)
    for t in range(ntexts):
        cs, data = make_text()
        later.append(text_part(cs, data, rng.choice(["", "", "Content-Disposition: inline\n"])))
    rng.shuffle(later)
    parts += later
    boundary = "=_b" + str(idx) + "_" + "".join(rng.choice("abcXYZ019'()+_,-./:=?") for _ in range(8))
    msg = ("\n".join(lines) + f'\nContent-Type: multipart/mixed; boundary="{boundary}"\n\npreamble\n').encode()
    for p in parts:
        msg += f"--{boundary}\n".encode() + p
    msg += f"--{boundary}--\nepilogue\n".encode()
    return msg, env


# ---- the documented mapping (docs/FORMAT.md), applied to what Python decodes ----

def to_codepage(text, keep_tab=True):
    out = bytearray()
    for ch in text:
        o = ord(ch)
        if ch == "\t" and keep_tab:
            out += b"\t"
        elif o < 0x20 or 0x7f <= o < 0xa0:
            out += b"?"
        else:
            out += ch.encode(CODEPAGE, errors="replace")
    return bytes(out)


def expected_subject(text):
    line = re.sub(r"[\x00-\x20\x7f]+", " ", text).strip(" ")
    line = line.replace("[", "(").replace("]", ")")
    cp = to_codepage(line)[:SUBJECT_MAX]
    return cp.rstrip(b" ")


def expected_text(text):
    lines = re.split(r"\r\n|\r|\n", text)
    if lines and lines[-1] == "":
        lines.pop()
    return b"".join(to_codepage(l) + b"\r\n" for l in lines)


def usable(addr):
    return bool(re.fullmatch(r"[\x21-\x7e]+@[\x21-\x7e]+", addr or "")) and not re.search(r'[",;\[\]<>()]', addr) \
        and not addr.startswith("@") and not addr.endswith("@")


def first_addr(msg, name):
    h = msg.get(name)
    if h is None:
        return ""
    try:
        addrs = h.addresses
    except Exception:
        return ""
    return addrs[0].addr_spec if addrs else ""


def expectations(raw, env):
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    exp = {}
    exp["subject"] = expected_subject(str(msg.get("subject", "")))
    author = first_addr(msg, "from")
    if not usable(author):
        author = first_addr(msg, "sender")
    if not usable(author):
        author = env["sender"] or "MAILER-DAEMON"
    exp["from"] = (author + " at INTERNET").encode()
    to = {a.addr_spec.lower() for h in msg.get_all("to", []) for a in h.addresses}
    cc = {a.addr_spec.lower() for h in msg.get_all("cc", []) for a in h.addresses}
    roles = {"to": [], "cc": [], "bcc": []}
    for addr, name in env["rcpts"]:
        role = "to" if addr.lower() in to else "cc" if addr.lower() in cc else "bcc"
        roles[role].append(name.encode())
    exp.update(roles)
    # Every item but the trailing Headers, in order: the main text (the first inline text/plain,
    # in multipart/alternative its text/plain alternative), then further inline text/plain parts
    # (text items, no title) and attachments (file items, bytes as transfer-decoded) in message
    # order. The generated texts stay far below text_item_max, so none is split.
    items = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part.get_content_disposition() == "attachment":
            items.append(("file", part.get_payload(decode=True)))
        elif part.get_content_type() == "text/plain":
            items.append(("text", expected_text(part.get_content())))
    exp["items"] = items
    return exp


def check(got, exp):
    problems = []
    if got["status"] != "OK" and not got["status"].startswith("OK"):
        return ["status " + got["status"]]
    if got["violations"]:
        problems.append("reader violations: " + "; ".join(got["violations"]))
    if len(got["messages"]) != 1:
        return problems + [f"{len(got['messages'])} messages"]
    m = got["messages"][0]
    for key in ("subject", "from"):
        if m[key] != exp[key]:
            problems.append(f"{key}: got {m[key]!r} expected {exp[key]!r}")
    for key in ("to", "cc", "bcc"):
        if m[key] != exp[key]:
            problems.append(f"{key}: got {m[key]!r} expected {exp[key]!r}")
    items = m["items"]
    if any(i["title"] == b"Notice" for i in items):
        problems.append("unexpected Notice item: " + repr(next(i["data"] for i in items if i["title"] == b"Notice")))
    if not items or items[-1]["kind"] != "text" or items[-1]["title"] != b"Headers":
        problems.append("the last item is not the Headers text item: " +
                        repr([(i["kind"], i["title"]) for i in items[-1:]]))
    else:
        items = items[:-1]
    if any(i["title"] == b"Headers" for i in items):
        problems.append("a Headers item that is not the last one")
    got_items = [(i["kind"], i["data"]) for i in items if i["title"] != b"Notice"]
    if [k for k, _ in got_items] != [k for k, _ in exp["items"]]:
        problems.append(f"items: got kinds {[k for k, _ in got_items]} expected {[k for k, _ in exp['items']]}")
    for n, ((gk, gd), (ek, ed)) in enumerate(zip(got_items, exp["items"])):
        if gk != ek:
            continue
        if gk == "text" and gd != ed:
            problems.append(f"text item {n}: got {gd!r} expected {ed!r}")
        elif gk == "file" and gd != ed:
            first = next((j for j, (a, b) in enumerate(zip(gd, ed)) if a != b), min(len(gd), len(ed)))
            problems.append(f"file item {n}: got {len(gd)} bytes, expected {len(ed)} (first difference at byte {first})")
    for n, i in enumerate(items):
        if i["kind"] == "text" and i["title"] not in (b"", b"Notice"):
            problems.append(f"text item {n} has the title {i['title']!r} (an untitled inline part expected)")
    return problems


def decode_json(line):
    d = json.loads(line)
    h = bytes.fromhex
    out = {"id": d["id"], "status": h(d["status"]).decode("utf-8", "replace"),
           "violations": [h(v).decode("utf-8", "replace") for v in d["violations"]], "messages": []}
    for m in d["messages"]:
        out["messages"].append({
            "from": h(m["from"]), "subject": h(m["subject"]),
            "to": [h(x) for x in m["to"]], "cc": [h(x) for x in m["cc"]], "bcc": [h(x) for x in m["bcc"]],
            "items": [{"kind": i["kind"], "title": h(i["title"]), "data": h(i["data"])} for i in m["items"]]})
    return out


def run(tool, seed, count, keep):
    rng = random.Random(seed)
    work = keep or tempfile.mkdtemp(prefix="ccmail-diff-")
    os.makedirs(work, exist_ok=True)
    envs = {}
    raws = {}
    for i in range(count):
        raw, env = build_message(rng, i)
        mid = f"{i:05d}"
        raws[mid], envs[mid] = raw, env
        with open(os.path.join(work, mid + ".eml"), "wb") as f:
            f.write(raw)
        with open(os.path.join(work, mid + ".env"), "w", encoding="utf-8") as f:
            f.write(env["sender"] + "\n" + "".join(f"{a}\t{n}\n" for a, n in env["rcpts"]))
    res = subprocess.run([tool, work], stdout=subprocess.PIPE, check=True)
    failures = 0
    for line in res.stdout.decode().splitlines():
        got = decode_json(line)
        mid = got["id"]
        problems = check(got, expectations(raws[mid], envs[mid]))
        if problems:
            failures += 1
            if failures <= 5:
                print(f"--- seed {seed} message {mid}:")
                for p in problems:
                    print("  " + p)
                print(raws[mid].decode("utf-8", "replace")[:3000])
    if not keep:
        shutil.rmtree(work)
    print(f"differential_test: seed {seed}: {count} messages, {failures} differ")
    return failures == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--keep")
    a = ap.parse_args()
    seeds = [a.seed] if a.seed is not None else [1, random.SystemRandom().randrange(1, 2**31)]
    ok = True
    for s in seeds:
        ok = run(a.tool, s, a.count, a.keep) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
