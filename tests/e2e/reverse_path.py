#!/usr/bin/env python3
"""reverse_path.py - the independent side of tests/e2e/reverse_path.sh (issue 18, the way back).

  sink     --dir DIR --ready FILE      SMTP sink on 127.0.0.1: every message as DIR/NNNNNN.eml with
                                       DIR/NNNNNN.json (envelope sender and recipients)
  generate --convert BIN --conf CONF --out DIR --corpus DIR [--per-file N]
                                       EXPORT-like files from tests/corpus mail: the project's own
                                       writer (ccmail-convert) makes the messages, then the header
                                       lines are turned around (author = a cc:Mail user, recipients
                                       = Internet addresses at the gateway) and the Message count
                                       is recomputed; items are left exactly as the writer made them
  reexport --out DIR --plan TSV FILE...         import files from the outbox "as if exported": same rewrite
  verify   --inbox-copy DIR --sink DIR --map MAP [--roundtrip DIR] [--submit-ledger JSON...]
                                       compares every message at the sink with its source and prints
                                       reverse_path: files=F messages=M delivered=D duplicates=X lost=L

The EXPORT reader here is a second implementation of docs/FORMAT.md sections 2-3 (both layouts,
raw and hex file data), and the received mail is decoded with Python's email package, so neither
side of the comparison shares code with ccmail-submitter.
"""
import argparse
import asyncio
import email
import email.policy
import glob
import hashlib
import json
import os
import re
import subprocess
import sys

CP = "cp850"
GATEWAY = "INTERNET"
KEYWORDS = (b"message:", b"contents:", b"text item:", b"file item:", b"from:", b"date:", b"to:",
            b"cc:", b"bcc:", b"subject:")
ITEM_RE = re.compile(rb"^(Text|File) item:(?: (.*))?$")
# cc:Mail's EXPORT puts a date (and time) after a file item's name: "ABC.WK4 5/6/97 3:10PM".
FILE_DATE_RE = re.compile(r"\s+\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}(\s+\d{1,2}:\d{2}\s*([AaPp][Mm])?)?$")


# ------------------------------------------------------------------ the EXPORT reader

class ExportError(Exception):
    pass


def _line(data, pos):
    end = data.find(b"\r\n", pos)
    if end < 0:
        raise ExportError("offset %d: line without CRLF" % pos)
    return data[pos:end], end + 2


def parse_export(data, files="raw", raw_crlf=True):
    """Returns [(headers [(key, value bytes)], items [(kind, title, bytes)])]."""
    first, p = _line(data, 0)
    if first != b"Message:":
        raise ExportError("does not start with Message:")
    counted = _line(data, p)[0].isdigit()
    return _parse_counted(data, files, raw_crlf) if counted else _parse_keyword(data)


def _headers(data, pos, stop):
    headers = []
    while True:
        line, pos = _line(data, pos)
        if line == b"Contents:":
            return headers, pos
        k, sep, v = line.partition(b": ")
        if not sep:
            raise ExportError("offset %d: header line %r" % (pos, line))
        headers.append((k.decode("ascii"), v))
        if stop is not None and pos >= stop:
            raise ExportError("no Contents:")


def _parse_counted(data, files, raw_crlf):
    msgs, pos = [], 0
    while pos < len(data):
        line, pos = _line(data, pos)
        if line != b"Message:":
            raise ExportError("offset %d: expected Message:" % pos)
        n, pos = _line(data, pos)
        end = pos + int(n)
        headers, pos = _headers(data, pos, end)
        c, pos = _line(data, pos)
        cend = pos + int(c)
        items = []
        while pos < cend:
            kw, pos = _line(data, pos)
            m = ITEM_RE.match(kw)
            if not m:
                raise ExportError("offset %d: expected an item, got %r" % (pos, kw))
            k, pos = _line(data, pos)
            body = data[pos:pos + int(k)]
            pos += int(k)
            kind = m.group(1).decode()
            if kind == "File":
                if files == "hex":
                    body = bytes.fromhex(body.replace(b"\r\n", b"").decode("ascii"))
                elif raw_crlf:
                    pos += 2
            items.append((kind, (m.group(2) or b"").decode(CP), body))
        if pos != cend or cend != end:
            raise ExportError("counts disagree at offset %d" % pos)
        msgs.append((headers, items))
    return msgs


def _parse_keyword(data):
    lines = data.split(b"\r\n")
    if lines[-1] != b"":
        raise ExportError("last line without CRLF")
    lines.pop()
    msgs, i = [], 0
    while i < len(lines):
        if lines[i] != b"Message:":
            raise ExportError("line %d: expected Message:" % i)
        i += 1
        headers = []
        while lines[i] != b"Contents:":
            k, _, v = lines[i].partition(b": ")
            headers.append((k.decode("ascii"), v))
            i += 1
        i += 1
        items = []
        while i < len(lines) and lines[i] != b"Message:":
            m = ITEM_RE.match(lines[i])
            if not m:
                raise ExportError("line %d: expected an item, got %r" % (i, lines[i]))
            i += 1
            body = []
            while i < len(lines) and lines[i] != b"Message:" and not ITEM_RE.match(lines[i]):
                body.append(lines[i])
                i += 1
            kind = m.group(1).decode()
            if kind == "File":
                data_ = bytes.fromhex(b"".join(body).decode("ascii"))
            else:
                # The one leading space that protected a keyword-looking line is removed.
                data_ = b"".join((l[1:] if l.startswith(b" ") and l[1:].lstrip(b" \t").lower().startswith(KEYWORDS)
                                  else l) + b"\r\n" for l in body)
            items.append((kind, (m.group(2) or b"").decode(CP), data_))
        msgs.append((headers, items))
    return msgs


# ------------------------------------------------------------------ what should come out

def load_map(path):
    """cc:Mail (name, PO) in lower case -> SMTP address."""
    rev = {}
    for line in open(path, encoding="utf-8"):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        addr, rest = line.split(None, 1)
        name, _, po = rest.rpartition(" at ")
        rev[(name.strip().lower(), po.strip().lower())] = addr.lower()
    return rev


def author_address(value, inbox_po, rev, domain):
    name, sep, po = value.rpartition(" at ")
    if not sep:
        name, po = value, inbox_po
    hit = rev.get((name.strip().lower(), po.strip().lower()))
    if hit:
        return hit
    # unmapped_author = pattern, "{first}.{last}@{domain}" from "Last, First".
    last, _, first = name.partition(",")
    parts = [p for p in (first.strip(), last.strip()) if p]
    return (".".join(re.sub(r"\s+", ".", p) for p in parts) + "@" + domain).lower()


def internet_address(value):
    addr, sep, po = value.rpartition(" at ")
    if sep and po.strip().upper() == GATEWAY and "@" in addr:
        return addr.strip().lower()
    return None


def norm_text(s):
    return s.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")


def expected_message(headers, items, inbox_po, rev, domain):
    h = {}
    for k, v in headers:
        h.setdefault(k.lower(), []).append(v.decode(CP))
    rcpts = set()
    for k in ("to", "cc", "bcc"):
        for v in h.get(k, []):
            a = internet_address(v)
            if a:
                rcpts.add(a)
    texts, headers_items, files = [], [], []
    for kind, title, data in items:
        if kind == "Text":
            t = norm_text(data.decode(CP))
            if title == "Headers":
                headers_items.append(t)
            elif t.strip():
                texts.append(t)
        else:
            files.append((FILE_DATE_RE.sub("", title), data))
    return {
        "from": author_address(h["from"][0], inbox_po, rev, domain),
        "rcpts": sorted(rcpts),
        "bcc": sorted(a for a in (internet_address(v) for v in h.get("bcc", [])) if a),
        "subject": h.get("subject", [""])[0],
        "texts": texts,
        "headers_items": headers_items,
        "files": files,
    }


def received_message(eml_path):
    raw = open(eml_path, "rb").read()
    env = json.load(open(eml_path[:-4] + ".json"))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    texts, files, file_types, header_blocks = [], [], [], []
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part.get_content_type() == "text/rfc822-headers":
            # A Headers item (an earlier Internet message's header block) travels as a part of
            # its own, never as header fields: neither text nor a file of the message.
            header_blocks.append(norm_text(part.get_content()))
            continue
        fn = part.get_filename()
        if fn or part.get_content_disposition() == "attachment":
            files.append((fn or "", part.get_payload(decode=True) or b""))
            file_types.append((part.get_content_type(), files[-1][1]))
        elif part.get_content_type() == "text/plain":
            texts.append(norm_text(part.get_content()))
    return {
        "path": eml_path,
        "from": env["mail_from"].lower(),
        "rcpts": sorted(set(r.lower() for r in env["rcpts"])),
        "subject": str(msg.get("subject", "")),
        "texts": texts,
        "files": files,
        "file_types": file_types,
        "header_blocks": header_blocks,
        "msg": msg,
        "raw": raw,
    }


def group_deliveries(deliveries):
    """The MTA splits one submission by destination (one SMTP delivery per domain): the
    deliveries of one Message-ID are one message with the union of their recipients. A
    recipient that got the same Message-ID twice is a duplicate (a resubmission that the MTA
    delivered again)."""
    groups, order = {}, []
    for d in deliveries:
        key = str(d["msg"].get("Message-ID", "")) or d["path"]
        if key not in groups:
            groups[key] = dict(d, rcpt_count={})
            order.append(key)
        g = groups[key]
        for r in d["rcpts"]:
            g["rcpt_count"][r] = g["rcpt_count"].get(r, 0) + 1
            g.setdefault("rcpt_files", {}).setdefault(r, []).append(os.path.basename(d["path"]))
    dups = 0
    out = []
    for key in order:
        g = groups[key]
        g["rcpts"] = sorted(g["rcpt_count"])
        dups += sum(n - 1 for n in g["rcpt_count"].values())
        out.append(g)
    return out, dups


def signature(m, drop_texts=()):
    texts = tuple(t for t in m["texts"] if t not in drop_texts)
    files = tuple(sorted((n.upper(), hashlib.sha256(d).hexdigest()) for n, d in m["files"]))
    return (m["from"], tuple(m["rcpts"]), m["subject"], texts, files)


def explain(exp, got):
    out = []
    for k in ("from", "rcpts", "subject"):
        if exp[k] != got[k]:
            out.append("%s: expected %r, got %r" % (k, exp[k], got[k]))
    gt = [t for t in got["texts"] if t not in exp["headers_items"]]
    if exp["texts"] != gt:
        out.append("texts: expected %r, got %r" % ([t[:80] for t in exp["texts"]], [t[:80] for t in gt]))
    ef = sorted((n.upper(), len(d), hashlib.sha256(d).hexdigest()[:12]) for n, d in exp["files"])
    gf = sorted((n.upper(), len(d), hashlib.sha256(d).hexdigest()[:12]) for n, d in got["files"])
    if ef != gf:
        out.append("files: expected %r, got %r" % (ef, gf))
    return "; ".join(out) or "(identical?)"


def header_problems(exp, got):
    """What must (not) be in the header of every delivered message."""
    msg, bad = got["msg"], []
    if msg.get("Bcc") is not None:
        bad.append("a Bcc: header field")
    # What the submitter wrote: every field but the MTA's Received (Postfix's "for <rcpt>").
    written = "\n".join("%s: %s" % (k, v) for k, v in msg.items() if k.lower() != "received").lower()
    for a in exp["bcc"]:
        if a in written:
            bad.append("Bcc recipient %s in the header" % a)
    if not msg.get("X-Ccmail-Bridge-Origin"):
        bad.append("no X-Ccmail-Bridge-Origin")
    if not msg.get("Message-ID") or not msg.get("Date") or not msg.get("From"):
        bad.append("missing Message-ID/Date/From")
    return bad


# ------------------------------------------------------------------ verify

def sources(args):
    """Every message put into the inbox with Internet recipients: what the sink must receive."""
    rev = load_map(args.map) if args.map else {}
    expected, files = [], 0
    for path in sorted(glob.glob(os.path.join(args.inbox_copy, "*", "*"))):
        po = os.path.basename(os.path.dirname(path))
        files += 1
        mode = "hex" if po in args.hex_po else "raw"
        try:
            msgs = parse_export(open(path, "rb").read(), files=mode)
        except ExportError as e:
            raise ExportError("%s: %s" % (path, e))
        for i, (h, items) in enumerate(msgs):
            e = expected_message(h, items, po, rev, args.domain)
            e["source"] = "%s#%d" % (os.path.relpath(path, args.inbox_copy), i + 1)
            if e["rcpts"]:
                expected.append(e)
    return expected, files


def cmd_count(args):
    print(len(sources(args)[0]))
    return 0


def load_resubmissions(paths):
    """Message-ID -> resubmissions, and their sum, from ccmailctl's JSON message lists."""
    out, total = {}, 0
    for path in paths:
        for m in json.load(open(path)):
            n = int(m.get("resubmissions", 0))
            out[m["message_id"]] = out.get(m["message_id"], 0) + n
            total += n
    return out, total


def cmd_verify(args):
    try:
        expected, files = sources(args)
    except ExportError as e:
        print("reverse_path: cannot read a source: %s" % e)
        return 1
    received, split_dups = group_deliveries([received_message(p) for p in sorted(glob.glob(os.path.join(args.sink, "*.eml")))])
    resubmissions, counted_total = load_resubmissions(args.submit_ledger) if args.submit_ledger else ({}, 0)
    # A copy beyond the first is allowed only where the submit ledger says the message was sent
    # again while in doubt, and only as many times as it says, for each of its recipients.
    over = []
    for g in received:
        mid = str(g["msg"].get("Message-ID", ""))
        allowed = resubmissions.get(mid, 0)
        for r, n in sorted(g["rcpt_count"].items()):
            if n > 1:
                verdict = "within the message's %d resubmission(s)" % allowed if n - 1 <= allowed else "NOT COUNTED"
                print("DUPLICATE %s to <%s>: %d deliveries (%s), %s" % (
                    mid, r, n, " ".join(g["rcpt_files"][r]), verdict))
                if n - 1 > allowed:
                    over.append((mid, r))
    want = {}
    for e in expected:
        want.setdefault(signature(e), []).append(e)
    seen, problems, unknown = {}, [], []
    for g in received:
        sig = None
        for e in expected:
            if signature(g, e["headers_items"]) == signature(e):
                sig = signature(e)
                break
        if sig is None:
            unknown.append(g)
            continue
        e = want[sig][0]
        seen[sig] = seen.get(sig, 0) + 1
        for p in header_problems(e, g):
            problems.append("%s (%s): %s" % (e["source"], os.path.basename(g["path"]), p))
    lost = [e for e in expected if signature(e) not in seen]
    # The same source under another Message-ID is never a resubmission (the id is derived from
    # the message): any such copy fails.
    distinct_id_dups = sum(max(0, n - len(want[s])) for s, n in seen.items())
    for s, n in seen.items():
        if n > len(want[s]):
            print("DUPLICATE %s %r: %d arrivals under distinct Message-IDs for %d source(s)" % (
                want[s][0]["source"], want[s][0]["subject"], n, len(want[s])))
    dups = split_dups + distinct_id_dups
    delivered = sum(min(n, len(want[s])) for s, n in seen.items())
    for e in lost:
        near = [g for g in received if g["subject"] == e["subject"]] or received[:1]
        print("LOST %s %r: %s" % (e["source"], e["subject"],
                                   explain(e, near[0]) if near else "nothing at the sink"))
    for g in unknown:
        print("UNEXPECTED at the sink %s: from=%s rcpts=%s subject=%r" % (
            os.path.basename(g["path"]), g["from"], g["rcpts"], g["subject"]))
    for p in problems:
        print("HEADER " + p)
    rt_bad = roundtrip(args, received) if args.roundtrip else 0
    print("reverse_path: files=%d messages=%d delivered=%d duplicates=%d lost=%d" % (
        files, len(expected), delivered, dups, len(lost)))
    consistent = args.in_doubt_resubmitted is None or counted_total == args.in_doubt_resubmitted
    if not consistent:
        print("FAIL: the messages' resubmissions add up to %d, in_doubt_resubmitted says %d" % (
            counted_total, args.in_doubt_resubmitted))
    if over or distinct_id_dups:
        print("FAIL: %d duplicate(s) outside the counted window (%d under another Message-ID)" % (
            len(over) + distinct_id_dups, distinct_id_dups))
    ok = not lost and not unknown and not problems and not rt_bad and not over and not distinct_id_dups and consistent
    return 0 if ok else 1


def original_parts(path):
    msg = email.message_from_bytes(open(path, "rb").read(), policy=email.policy.default)
    body = msg.get_body(preferencelist=("plain",))
    text = norm_text(body.get_content()) if body is not None else ""
    # The way in writes text in the code page: what it cannot hold arrives as '?'.
    text = text.encode(CP, errors="replace").decode(CP)
    atts = sorted(hashlib.sha256(canonical_text(p.get_content_type(), p.get_payload(decode=True) or b"")).hexdigest()
                  for p in msg.iter_attachments() if not p.is_multipart())
    return str(msg.get("subject", "")), text, atts


def canonical_text(ctype, data):
    # A text/* part's line breaks are CRLF in MIME's canonical form (RFC 2046 4.1.1); the corpus
    # .eml files are stored with LF, so the comparison is of the canonical forms.
    return data.replace(b"\r\n", b"\n") if ctype.startswith("text/") else data


def roundtrip(args, received):
    """Internet -> milter/exporter -> import file -> (as if exported) -> submitter -> sink: the
    subject, the text and the attachments of every original arrive unchanged."""
    bad = 0
    for spec in open(os.path.join(args.roundtrip, "plan.tsv"), encoding="utf-8"):
        eml, rcpt = spec.rstrip("\n").split("\t")
        subject, text, atts = original_parts(eml)
        hits = [g for g in received if rcpt in g["rcpts"]]
        if len(hits) != 1:
            print("ROUNDTRIP %s: %d messages to %s at the sink" % (os.path.basename(eml), len(hits), rcpt))
            bad += 1
            continue
        g = hits[0]
        got_atts = sorted(hashlib.sha256(canonical_text(t, d)).hexdigest() for t, d in g["file_types"])
        why = []
        if g["subject"] != subject:
            why.append("subject %r != %r" % (g["subject"], subject))
        if not g["texts"] or g["texts"][0] != text:
            why.append("text differs: %r != %r" % ((g["texts"] or [""])[0][:120], text[:120]))
        if got_atts != atts:
            why.append("attachments differ (%d vs %d)" % (len(got_atts), len(atts)))
        orig_id = email.message_from_bytes(open(eml, "rb").read(), policy=email.policy.default).get("Message-ID")
        if orig_id and g["msg"].get("Message-ID") == orig_id:
            why.append("the Headers item's Message-ID was re-emitted")
        print("ROUNDTRIP %s: %s" % (os.path.basename(eml), "; ".join(why) if why else "subject, text and %d attachments kept" % len(atts)))
        bad += bool(why)
    return bad


# ------------------------------------------------------------------ EXPORT-like files

def turn_around(msg_bytes, author, rcpts, itemsize):
    """One message of an import file with its header lines replaced: From = the cc:Mail author,
    one To: per Internet recipient at the gateway. The Contents block is kept byte for byte."""
    head, sep, rest = msg_bytes.partition(b"\r\nContents:\r\n")
    if not sep:
        raise ExportError("no Contents:")
    lines = head.split(b"\r\n")
    keep = [l for l in lines if l.startswith((b"Date: ", b"Subject: "))]
    new = [b"From: " + author.encode(CP)] + [l for l in keep if l.startswith(b"Date: ")]
    new += [b"To: " + (r + " at " + GATEWAY).encode(CP) for r in rcpts]
    new += [l for l in keep if l.startswith(b"Subject: ")]
    body = b"\r\n".join(new) + b"\r\nContents:\r\n" + rest
    if itemsize:
        return b"Message:\r\n%d\r\n" % len(body) + body
    return b"Message:\r\n" + body


def split_messages(data):
    """Import file -> the bytes of each message (counted layout: by the Message count)."""
    out, pos = [], 0
    counted = data.split(b"\r\n", 2)[1].isdigit()
    if counted:
        while pos < len(data):
            line, p = _line(data, pos)
            n, p = _line(data, p)
            out.append(data[p:p + int(n)])
            pos = p + int(n)
        return out, True
    parts = re.split(rb"(?:^|(?<=\r\n))Message:\r\n", data)
    return [p for p in parts if p], False


def write_atomic(path, data):
    with open(path + ".part", "wb") as f:
        f.write(data)
    os.rename(path + ".part", path)


def cmd_generate(args):
    os.makedirs(args.out, exist_ok=True)
    emls = sorted(glob.glob(os.path.join(args.corpus, "*.eml")))[:args.limit]
    batch, nfile, nmsg, skipped = [], 0, 0, []
    author = "Smith, John at HUBPO2"

    def flush():
        nonlocal batch, nfile
        if batch:
            nfile += 1
            write_atomic(os.path.join(args.out, "GEN%05d.CCM" % nfile), b"".join(batch))
            batch = []
    for i, eml in enumerate(emls):
        r = subprocess.run([args.convert, "-c", args.conf, "-f", "sender%d@partner.example" % i,
                            "-r", "jsmith@ccmail.corp.example", "-t", "946684800", eml],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != 0:
            skipped.append(os.path.basename(eml))
            continue
        msgs, itemsize = split_messages(r.stdout)
        for m in msgs:
            # Each corpus message to its own Internet recipient(s): a lost one is named by it.
            rc = ["gen%03d@partner.example" % i] + (["gen%03d-cc@other.example" % i] if i % 3 == 0 else [])
            batch.append(turn_around(m, author, rc, itemsize))
            nmsg += 1
            if len(batch) >= args.per_file:
                flush()
    flush()
    print("generated %d messages in %d files from %d corpus messages (ccmail-convert refused %d: %s)" % (
        nmsg, nfile, len(emls), len(skipped), " ".join(skipped)))
    return 0


def cmd_reexport(args):
    """Outbox import files -> EXPORT-like files: the cc:Mail recipient sends each message on to
    the Internet (the round trip's last leg), to the address the plan gives its original. The
    original is recognised by its Message-ID, which the import file keeps in its Headers item."""
    os.makedirs(args.out, exist_ok=True)
    by_id = {}
    for spec in open(args.plan, encoding="utf-8"):
        eml, rcpt = spec.rstrip("\n").split("\t")
        mid = email.message_from_bytes(open(eml, "rb").read(), policy=email.policy.default).get("Message-ID")
        by_id[mid.strip().encode()] = rcpt
    for src in args.files:
        msgs, itemsize = split_messages(open(src, "rb").read())
        out = []
        for m in msgs:
            hits = [r for mid, r in by_id.items() if mid in m]
            if len(hits) != 1:
                raise ExportError("%s: a message that is not one of the plan's originals" % src)
            out.append(turn_around(m, "Smith, John at HUBPO2", hits, itemsize))
        write_atomic(os.path.join(args.out, os.path.basename(src)), b"".join(out))
    return 0


# ------------------------------------------------------------------ sink

class Sink:
    def __init__(self, d):
        self.dir, self.count = d, 0

    async def handle(self, reader, writer):
        async def reply(s):
            writer.write(s.encode() + b"\r\n")
            await writer.drain()
        try:
            await reply("220 sink.reverse ESMTP")
            mail_from, rcpts = None, []
            while True:
                line = await reader.readline()
                if not line:
                    break
                cmd = line.decode("latin-1").strip()
                up = cmd.upper()
                if up.startswith("EHLO"):
                    await reply("250-sink.reverse\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 SIZE 100000000")
                elif up.startswith("HELO"):
                    await reply("250 sink.reverse")
                elif up.startswith("MAIL FROM:"):
                    m = re.search(r"<([^>]*)>", cmd)
                    mail_from, rcpts = (m.group(1) if m else ""), []
                    await reply("250 2.1.0 ok")
                elif up.startswith("RCPT TO:"):
                    m = re.search(r"<([^>]*)>", cmd)
                    rcpts.append(m.group(1) if m else "")
                    await reply("250 2.1.5 ok")
                elif up == "DATA":
                    await reply("354 go")
                    keep = []
                    while True:
                        dl = await reader.readline()
                        if not dl or dl == b".\r\n":
                            break
                        keep.append(dl[1:] if dl.startswith(b"..") else dl)
                    if not dl:
                        break
                    self.count += 1
                    base = os.path.join(self.dir, "%06d" % self.count)
                    write_atomic(base + ".json", json.dumps({"mail_from": mail_from, "rcpts": rcpts}).encode())
                    write_atomic(base + ".eml", b"".join(keep))
                    await reply("250 2.0.0 stored")
                elif up == "RSET":
                    mail_from, rcpts = None, []
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
    os.makedirs(args.dir, exist_ok=True)
    sink = Sink(args.dir)

    async def main():
        server = await asyncio.start_server(sink.handle, "127.0.0.1", 0, limit=1 << 24)
        write_atomic(args.ready, b"%d\n" % server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("sink")
    p.add_argument("--dir", required=True)
    p.add_argument("--ready", required=True)
    p = sub.add_parser("generate")
    p.add_argument("--convert", required=True)
    p.add_argument("--conf", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--per-file", type=int, default=4)
    p.add_argument("--limit", type=int, default=1000)
    p = sub.add_parser("reexport")
    p.add_argument("--out", required=True)
    p.add_argument("--plan", required=True, help="plan.tsv: original .eml TAB Internet recipient")
    p.add_argument("files", nargs="+", help="import files of the outbox")
    for name in ("verify", "count"):
        p = sub.add_parser(name)
        p.add_argument("--inbox-copy", required=True, help="copy of every file put into the inbox, DIR/<PO>/<name>")
        p.add_argument("--map", required=name == "verify")
        p.add_argument("--domain", default="ccmail.corp.example")
        p.add_argument("--hex-po", action="append", default=[], help="post office whose files use hex file data")
        if name == "verify":
            p.add_argument("--sink", required=True)
            p.add_argument("--roundtrip", help="DIR with plan.tsv (original .eml, Internet recipient)")
            p.add_argument("--submit-ledger", action="append", help="JSON of `ccmailctl --json submitter list --state ...`: "
                           "each message's resubmissions (copies a recipient may hold beyond the first)")
            p.add_argument("--in-doubt-resubmitted", type=int, help="the ledger's total, which the messages must add up to")
    args = ap.parse_args()
    return {"sink": cmd_sink, "generate": cmd_generate, "reexport": cmd_reexport, "verify": cmd_verify,
            "count": cmd_count}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
