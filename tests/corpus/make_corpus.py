#!/usr/bin/env python3
"""make_corpus.py - writes the ccmail_format test corpus (tests/corpus/NN-name.eml).

Deterministic (fixed seed): rerun to regenerate after editing. Every message is
addressed to jsmith@ccmail.corp.example (To) and/or mgarcia@ccmail.corp.example
(Cc), which corpus_test.cpp passes as the envelope recipients.
"""
import base64, os, quopri, random

random.seed(184052)
HERE = os.path.dirname(os.path.abspath(__file__))
files = {}

def hdr(subject="Corpus message", frm="Bob Builder <bob@partner.example>",
        to="John Smith <jsmith@ccmail.corp.example>", cc=None, date="Tue, 24 Nov 2026 09:31:00 +0000",
        extra=""):
    h = ""
    if frm is not None: h += f"From: {frm}\n"
    if to is not None: h += f"To: {to}\n"
    if cc is not None: h += f"Cc: {cc}\n"
    if subject is not None: h += f"Subject: {subject}\n"
    if date is not None: h += f"Date: {date}\n"
    h += f"Message-ID: <corpus-{len(files)}@partner.example>\n"
    return h + extra

def b64(data):
    s = base64.b64encode(data).decode()
    return "\n".join(s[i:i+76] for i in range(0, len(s), 76)) + "\n"

def add(name, text):
    files[name] = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text

def rnd(n):
    return bytes(random.getrandbits(8) for _ in range(n))

MIME = "MIME-Version: 1.0\n"
add("plain-ascii", hdr() + "\nHello John,\n\nthe meeting is at 10.\n\nBob\n")
add("plain-crlf", (hdr("CRLF line ends") + "\nLine one\nLine two\n").replace("\n", "\r\n"))
add("plain-utf8", hdr("=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=", extra=MIME + "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n") + "\nGrüße aus Köln, señor García. ¿Qué tal? 5 € — ok\n")
add("latin1-8bit", (hdr("Latin-1 body", extra=MIME + "Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n")).encode() + "\nCafé crème, Müller, Straße\n".encode("latin-1"))
add("broken-utf8", (hdr("Declared UTF-8, really Latin-1", extra=MIME + "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n")).encode() + "\nInvalid: caf\xe9 \xff\xfe end\n".encode("latin-1"))
add("unknown-charset", (hdr("Unknown charset", extra=MIME + "Content-Type: text/plain; charset=x-no-such-charset\nContent-Transfer-Encoding: 8bit\n")).encode() + "\nBytes: \xe4\xf6\xfc\n".encode("latin-1"))
add("unlabeled-8bit", (hdr("No MIME headers but 8-bit")).encode() + "\nRaw UTF-8 without labels: Ärger über Öl\n".encode())
add("iso-2022-jp", (hdr("=?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?=", extra=MIME + "Content-Type: text/plain; charset=ISO-2022-JP\nContent-Transfer-Encoding: 7bit\n")).encode() + b"\n\x1b$BF|K\\8l\x1b(B text\n")
add("koi8r", (hdr("=?KOI8-R?B?8NLJ18XU?=", extra=MIME + "Content-Type: text/plain; charset=koi8-r\nContent-Transfer-Encoding: 8bit\n")).encode() + "\nПривет мир\n".encode("koi8-r"))
add("cp1252-quotes", (hdr("Smart quotes", extra=MIME + "Content-Type: text/plain; charset=windows-1252\nContent-Transfer-Encoding: quoted-printable\n")) + "\n=93quoted=94 =80 100 =96 dash\n")
add("encoded-words-mixed", hdr("=?iso-8859-1?q?caf=E9?= and =?utf-8?b?0J/RgNC40LLQtdGC?= [tag] plus a long tail that goes past sixty characters easily", frm="=?utf-8?q?M=C3=BCller=2C_Hans?= <hans@partner.example>") + "\nBody.\n")
add("qp-soft-breaks", hdr("QP soft breaks", extra=MIME + "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n") + "\n" + "This is a long line that is soft=\n broken in quoted-printable and has =C3=A9 accents.=\n\nSecond paragraph=3D equals.\n")
add("flowed", hdr("format=flowed", extra=MIME + "Content-Type: text/plain; charset=us-ascii; format=flowed\n") + "\nA flowed paragraph that \ncontinues here.\n> quoted\n")
alt = "alt1"
add("alternative", hdr("Alternative", extra=MIME + f'Content-Type: multipart/alternative; boundary="{alt}"\n') + f"\n--{alt}\nContent-Type: text/plain; charset=utf-8\n\nPlain version.\n--{alt}\nContent-Type: text/html; charset=utf-8\n\n<p>HTML <b>version</b></p>\n--{alt}--\n")
add("alternative-html-first", hdr("HTML listed first", extra=MIME + f'Content-Type: multipart/alternative; boundary="{alt}"\n') + f"\n--{alt}\nContent-Type: text/html; charset=utf-8\n\n<p>HTML first</p>\n--{alt}\nContent-Type: text/plain; charset=utf-8\n\nPlain second.\n--{alt}--\n")
add("html-only", hdr("HTML only", extra=MIME + "Content-Type: text/html; charset=utf-8\n") + "\n<html><head><title>t</title><style>p{}</style></head><body><h1>Title</h1><p>Para &amp; more &lt;tags&gt; &#233;t&eacute;</p><ul><li>one</li><li>two</li></ul><script>alert(1)</script><table><tr><td>a</td><td>b</td></tr></table></body></html>\n")
add("related-html", hdr("Related HTML with image", extra=MIME + 'Content-Type: multipart/related; boundary="r1"\n') + '\n--r1\nContent-Type: text/html; charset=utf-8\n\n<p>See <img src="cid:img1"></p>\n--r1\nContent-Type: image/png\nContent-ID: <img1>\nContent-Transfer-Encoding: base64\n\n' + b64(b"\x89PNG\r\n\x1a\n" + rnd(300)) + "--r1--\n")
def mixed(subject, parts, boundary="m1", body="See attachments.\n", extra_hdr=""):
    s = hdr(subject, extra=MIME + f'Content-Type: multipart/mixed; boundary="{boundary}"\n' + extra_hdr) + f"\n--{boundary}\nContent-Type: text/plain; charset=utf-8\n\n{body}"
    for p in parts:
        s += f"--{boundary}\n" + p
    return s + f"--{boundary}--\n"
def att(name, ctype, data, enc="base64", disp="attachment"):
    fn = f'; filename="{name}"' if name is not None else ""
    body = b64(data) if enc == "base64" else quopri.encodestring(data).decode() + "\n"
    return f"Content-Type: {ctype}\nContent-Disposition: {disp}{fn}\nContent-Transfer-Encoding: {enc}\n\n{body}"
add("attach-pdf", mixed("PDF attached", [att("invoice.pdf", "application/pdf", b"%PDF-1.4\n" + rnd(5000))]))
add("attach-png-zip-docx", mixed("Several types", [att("photo.png", "image/png", rnd(20000)), att("archive.zip", "application/zip", rnd(7000)),
    att("Quarterly Report 2026.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", rnd(9000))]))
add("attach-qp-text", mixed("QP text attachment", [att("notes.txt", "text/plain; charset=utf-8", "Ünïcode notes\nline 2 = equals\n".encode(), enc="quoted-printable")]))
add("attach-no-name", mixed("Attachments without names", [att(None, "application/pdf", rnd(1000)), att(None, "image/gif", rnd(500)), att(None, "application/x-unknown-thing", rnd(100))]))
add("attach-duplicate-names", mixed("Same name thrice", [att("report.txt", "text/plain", b"a\n"), att("report.txt", "text/plain", b"b\n"), att("REPORT.TXT", "text/plain", b"c\n")]))
add("attach-hostile-names", mixed("Hostile file names", [att("../../etc/passwd", "text/plain", b"x\n"), att("C:\\Windows\\system32\\evil.exe", "application/octet-stream", b"MZ" + rnd(100)),
    att("CON.txt", "text/plain", b"con\n"), att("lpt1", "application/octet-stream", b"lpt\n"), att("..", "application/octet-stream", b"dots\n"),
    att("a" * 300 + ".verylongextension", "application/octet-stream", b"long\n"), att("na\u00efve r\u00e9sum\u00e9.pdf", "application/pdf", b"%PDF\n")]))
add("attach-rfc2231-name", mixed("RFC 2231 file name", ["Content-Type: application/pdf\nContent-Disposition: attachment;\n filename*0*=utf-8''%C3%9Cbersicht%20;\n filename*1*=Q4.pdf\nContent-Transfer-Encoding: base64\n\n" + b64(rnd(200))]))
add("attach-empty", mixed("Zero-byte attachment", [att("empty.dat", "application/octet-stream", b"")]))
add("attach-binary-ctrl", mixed("Binary with NUL, CTRL-Z and CRLF Message:", [att("evil.bin", "application/octet-stream", b"\x00\x1a\r\nMessage:\r\n123\r\nTo: Evil\r\n" + bytes(range(256)))]))
add("many-attachments", mixed("Forty attachments", [att(f"file{i:02d}.txt", "text/plain", f"attachment {i}\n".encode()) for i in range(40)]))
inner = hdr("Inner message", frm="Carol <carol@elsewhere.example>", to="Dave <dave@elsewhere.example>") + "\nThis is the forwarded text.\n"
add("forward-rfc822", mixed("Fwd: Inner message", ["Content-Type: message/rfc822\nContent-Disposition: inline\n\n" + inner]))
inner2 = mixed("Inner with attachment", [att("inner.pdf", "application/pdf", rnd(800))], boundary="in1")
add("forward-nested", mixed("Fwd: with attachment inside", ["Content-Type: message/rfc822\n\n" + inner2]))
deep = "Deepest text.\n"
s = ""
for level in range(20):
    s = f'Content-Type: multipart/mixed; boundary="d{level}"\n\n--d{level}\n' + (s if s else "Content-Type: text/plain\n\n" + deep) + f"--d{level}--\n"
add("deep-nesting", hdr("Twenty levels deep", extra=MIME) + s)
add("digest", hdr("Digest", extra=MIME + 'Content-Type: multipart/digest; boundary="dg"\n') + "\n--dg\n\n" + inner + "--dg\n\n" + inner.replace("Inner message", "Second inner") + "--dg--\n")
add("signed", hdr("Signed", extra=MIME + 'Content-Type: multipart/signed; protocol="application/pgp-signature"; micalg=pgp-sha256; boundary="sg"\n') + "\n--sg\nContent-Type: text/plain\n\nSigned text.\n--sg\nContent-Type: application/pgp-signature; name=\"signature.asc\"\n\n-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\n--sg--\n")
add("calendar", mixed("Invitation", ["Content-Type: text/calendar; method=REQUEST; charset=utf-8\n\nBEGIN:VCALENDAR\nVERSION:2.0\nEND:VCALENDAR\n"]))
add("tnef", mixed("Outlook TNEF", [att("winmail.dat", "application/ms-tnef", rnd(3000))]))
add("partial", hdr("Partial", extra=MIME + 'Content-Type: message/partial; id="abc@x"; number=1; total=2\n') + "\nFrom: x@y\nSubject: part\n\nfirst half\n")
add("long-line", hdr("One 100 KB line") + "\n" + "x" * 100000 + "\n")
add("long-body", hdr("60 KB body, split into items") + "\n" + "".join(f"Line {i:05d} of a long body with some text to fill it.\n" for i in range(1100)))
add("huge-body-many-items", hdr("2 MB body, more than max_items") + "\n" + "".join(f"Row {i:06d} lorem ipsum dolor sit amet consectetur.\n" for i in range(40000)))
many = ", ".join(f"User {i} <user{i:03d}@partner.example>" for i in range(300))
add("long-recipient-list", hdr("Three hundred visible recipients", to=many + ", John Smith <jsmith@ccmail.corp.example>", cc="Maria Garcia <mgarcia@ccmail.corp.example>") + "\nTo many.\n")
add("group-syntax", hdr("Group syntax", to="Team: John Smith <jsmith@ccmail.corp.example>, Other <o@x.example>;", cc="undisclosed-recipients:;") + "\nGroups.\n")
add("bcc-only", hdr("Recipient only in envelope", to="Someone Else <else@partner.example>") + "\nYou were Bcc'd.\n")
add("missing-headers", "Message-ID: <no-from@x>\n\nA message with no From, To, Subject or Date.\n")
add("no-body", hdr("Headers only"))
add("empty-body", hdr("Empty body") + "\n")
add("whitespace-body", hdr("Whitespace body") + "\n   \n\t\n\n")
add("bad-date", hdr("Unparseable date", date="not a date at all") + "\nBody.\n")
add("future-date", hdr("Far future date", date="Fri, 01 Jan 2100 00:00:00 +0000") + "\nBody.\n")
add("y2k-date", hdr("Y2K date", date="Sat, 01 Jan 2000 00:00:00 +0000") + "\nBody.\n")
add("bare-lf-and-cr", (hdr("Mixed line ends")).encode() + b"\nunix\nmac\rdos\r\nend\n")
add("hostile-subject-crlf", hdr("=?UTF-8?Q?Hi=0D=0AMessage:=0D=0ATo:_Evil_at_HUBPO?=", frm="=?UTF-8?Q?Eve=0D=0ATo:_Evil_at_HUBPO?= <eve@evil.example>") + "\nBody.\n")
add("hostile-body-keywords", hdr("Keywords in the body") + "\nMessage:\n123\nFrom: Evil at HUBPO\nTo: Evil at HUBPO\nContents:\nText item: x\nFile item: EVIL.EXE\n  message: indented\nmessage: lower case\n")
add("hostile-controls", (hdr("=?UTF-8?Q?NUL=00_and_SUB=1A_in_subject?=")).encode() + b"\nNUL:\x00 SUB:\x1a ESC:\x1b BEL:\x07 DEL:\x7f end\n")
add("hostile-brackets", hdr("[EXTERNAL] [SPAM] Re: [list] bracketed") + "\nBody.\n")
add("hostile-header-names", hdr("Header named Message", extra="Message: injected\nContents: injected\nX-Text item: 1\n") + "\nBody.\n")
add("broken-base64", mixed("Broken base64", ["Content-Type: application/pdf\nContent-Disposition: attachment; filename=\"bad.pdf\"\nContent-Transfer-Encoding: base64\n\n@@@not base64!!!\nQUJD\n===\n"]))
add("missing-final-boundary", hdr("No closing boundary", extra=MIME + 'Content-Type: multipart/mixed; boundary="open"\n') + "\n--open\nContent-Type: text/plain\n\nText before a missing end.\n--open\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nQUJDREVG\n")
add("uuencode", hdr("uuencoded part", extra=MIME + 'Content-Type: multipart/mixed; boundary="u"\n') + "\n--u\nContent-Type: text/plain\n\nSee uu.\n--u\nContent-Type: application/octet-stream; name=\"hello.txt\"\nContent-Transfer-Encoding: x-uuencode\n\nbegin 644 hello.txt\n%:&5L;&\\*\n`\nend\n--u--\n")
add("attached-html-file", mixed("HTML as attachment", [att("page.html", "text/html", b"<p>attached</p>")]))
add("inline-second-text", mixed("Two inline text parts", ["Content-Type: text/plain; charset=utf-8\nContent-Disposition: inline\n\nSecond inline text.\n"]))
add("bulletin-big-attachment", mixed("1 MB attachment", [att("big.bin", "application/octet-stream", rnd(1 << 20))]))

for old in os.listdir(HERE):
    if old.endswith(".eml"): os.remove(os.path.join(HERE, old))
for i, (name, data) in enumerate(files.items(), 1):
    with open(os.path.join(HERE, f"{i:02d}-{name}.eml"), "wb") as f:
        f.write(data)
print(f"{len(files)} messages written to {HERE}")
