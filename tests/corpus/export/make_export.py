#!/usr/bin/env python3
"""make_export.py - writes the hand-written cc:Mail EXPORT files of this directory.

The files are spelled out here line by line, NOT produced by the project's writer, so that the
reverse path (ccmail-submitter) is tested against an independent rendering of
docs/FORMAT.md sections 2-3 (and the format reference it is built on, sections 2.x):

  HUBPO2/EXPCOUNT.CCM   the /ITEMSIZE layout (byte counts after Message:, Contents:, each item),
                        raw file data followed by CRLF (raw_file_crlf = yes), code page 850
  SALESPO/EXPKEYWD.CCM  the keyword layout (no counts; /FILES/HEX file data, 76 digits a line,
                        one leading space protecting keyword-looking text lines), code page 850

Counts follow docs/FORMAT.md 2.3: the bytes from after the count line to the end of the section
(items: data only; Contents: every item block with keyword, count lines and raw terminators;
Message: the header lines, Contents:, its count line and the Contents block).
Run it again after changing a message: python3 make_export.py (writes next to itself).
"""
import os

CP = "cp850"
HERE = os.path.dirname(os.path.abspath(__file__))


def lines(*ls):
    return b"".join(l.encode(CP) + b"\r\n" for l in ls)


# A binary "spreadsheet": every byte value, CRLFs, a CTRL-Z and a keyword look-alike inside.
WK4 = bytes(range(256)) + b"\r\nMessage:\r\n123\r\n\x1a\x00" + bytes(range(255, -1, -1))
NOTES = lines("Minutes of the 9/11 meeting", "", "1. Budget approved", "2. Next meeting: Friday")
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"

# (headers as (keyword, value) pairs, items as (kind, title, bytes))
COUNTED = [
    ([("From", "Smith, John at HUBPO2"), ("Date", "6/2/98 8:39"),
      ("To", "pat@partner.example at INTERNET"), ("Subject", "Quarterly figures")],
     [("Text", "", lines("Hello Pat,", "", "the figures are attached (Lotus 1-2-3).", "", "John")),
      ("File", "Q3.WK4 5/6/97 3:10PM", WK4)]),
    ([("From", "Smith, John at HUBPO2"), ("Date", "12/31/99 23:59"),
      ("To", "alice@partner.example at INTERNET"), ("To", "Garcia, Maria at SALESPO"),
      ("Cc", "bob@partner.example at internet"), ("Bcc", "carol@partner.example at INTERNET"),
      ("Subject", "Réunion à Zürich, café à 10h")],
     [("Text", "", lines("Bonjour à tous,", "", "la réunion a lieu à Zürich. Café à 10h.", "Grüße, Ñandú")),
      ("Text", "", lines("A second text item: the P.S.", "Message: this line is text, not a keyword"))]),
    ([("From", "Doe, Jane at HUBPO2"), ("Date", "1/5/02 14:07"),
      ("To", "dave@partner.example at INTERNET"), ("Subject", "Minutes from an unmapped author")],
     [("Text", "", lines("Jane Doe is not in the address map: her address comes from the pattern.")),
      ("File", "NOTES.TXT 9-11-1998", NOTES)]),
    ([("From", "Admin"), ("Date", "3/4/05 9:00"),
      ("To", "ops@partner.example at INTERNET"), ("Cc", "Nguyen, Thanh"),
      ("Subject", "Bare author name on the inbox post office")],
     [("Text", "", lines("From: Admin without a post office belongs to HUBPO2.", "To: a look-alike line in counted data"))]),
]

KEYWORD = [
    ([("From", "Garcia, Maria at SALESPO"), ("Date", "12/1/98 10:05"),
      ("To", "erin@partner.example at INTERNET"), ("Subject", "Report attached")],
     [("Text", "", lines("Erin,", "", "Message: this line starts like a keyword and is protected.",
                         "To: so is this one, it is no recipient.", "", "Maria")),
      ("File", "REPORT.PDF 12/1/98 10:05AM", PDF)]),
    ([("From", "Lee, Kim at SALESPO"), ("Date", "7/14/01 18:30"),
      ("To", "Kumar, Ravi at SALESPO"), ("Bcc", "frank@partner.example at INTERNET"),
      ("Subject", "Fête: señor Müller's notes")],
     [("Text", "", lines("Unmapped author, a cc:Mail To: and an Internet Bcc only.", "Ça va? Ôui.")),
      ("File", "DATA.BIN 7/14/01 6:30PM", bytes(range(0, 256, 3)))]),
    ([("From", "Kumar, Ravi at SALESPO"), ("Date", "2/29/00 0:01"),
      ("To", "gina@partner.example at Internet"), ("To", "hank@partner.example at INTERNET"),
      ("Cc", "Chen, Li"), ("Subject", "Leap day, two Internet recipients")],
     [("Text", "", lines("Two Internet recipients and a bare cc:Mail Cc that is not submitted."))]),
]

KEYWORDS = ("message:", "contents:", "text item:", "file item:", "from:", "date:", "to:", "cc:", "bcc:", "subject:")


def header_block(headers):
    return b"".join(("%s: %s" % kv).encode(CP) + b"\r\n" for kv in headers)


def item_keyword(kind, title):
    kw = "%s item:" % kind
    return (kw + (" " + title if title else "")).encode(CP) + b"\r\n"


def counted(messages):
    out = b""
    for headers, items in messages:
        contents = b""
        for kind, title, data in items:
            contents += item_keyword(kind, title) + b"%d\r\n" % len(data) + data
            if kind == "File":
                contents += b"\r\n"  # raw_file_crlf = yes: not in the item count
        body = header_block(headers) + b"Contents:\r\n" + b"%d\r\n" % len(contents) + contents
        out += b"Message:\r\n" + b"%d\r\n" % len(body) + body
    return out


def protect(text):
    out = []
    for line in text.split(b"\r\n")[:-1]:
        if line.lstrip(b" \t").lower().startswith(tuple(k.encode() for k in KEYWORDS)):
            line = b" " + line
        out.append(line + b"\r\n")
    return b"".join(out)


def hexlines(data):
    h = data.hex().upper()
    return b"".join(h[i:i + 76].encode() + b"\r\n" for i in range(0, len(h), 76))


def keyword(messages):
    out = b""
    for headers, items in messages:
        out += b"Message:\r\n" + header_block(headers) + b"Contents:\r\n"
        for kind, title, data in items:
            out += item_keyword(kind, title) + (protect(data) if kind == "Text" else hexlines(data))
    return out


def main():
    for po, name, data in (("HUBPO2", "EXPCOUNT.CCM", counted(COUNTED)),
                           ("SALESPO", "EXPKEYWD.CCM", keyword(KEYWORD))):
        os.makedirs(os.path.join(HERE, po), exist_ok=True)
        with open(os.path.join(HERE, po, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
