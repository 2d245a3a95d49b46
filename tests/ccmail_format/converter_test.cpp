// The writer, rule by rule; every output is also checked by the reader.
#include "ccmail/format/converter.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <thread>

#include "ccmail/format/reader.h"
#include "ccmail/format/rules.h"
#include "convert_fixture.h"
#include "test_util.h"

namespace ccmail::format {
namespace {

using testing::ConvertAndRead;
using testing::ConvertText;
using testing::DefaultRecipients;
using testing::TestSettings;
using testing::ViolationsText;

const char kHead[] =
    "From: Bob Builder <bob@partner.example>\n"
    "To: John Smith <jsmith@ccmail.corp.example>\n"
    "Subject: Hello\n"
    "Date: Tue, 24 Nov 2026 09:31:00 +0000\n";

std::string B64(const std::string& data) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0, col = 0;
  for (; i + 2 < data.size(); i += 3) {
    uint32_t v = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8) | uint8_t(data[i + 2]);
    out += t[v >> 18]; out += t[(v >> 12) & 63]; out += t[(v >> 6) & 63]; out += t[v & 63];
    if ((col += 4) == 76) { out += "\n"; col = 0; }
  }
  if (i + 1 == data.size()) {
    uint32_t v = uint8_t(data[i]) << 16;
    out += t[v >> 18]; out += t[(v >> 12) & 63]; out += "==";
  } else if (i + 2 == data.size()) {
    uint32_t v = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8);
    out += t[v >> 18]; out += t[(v >> 12) & 63]; out += t[(v >> 6) & 63]; out += "=";
  }
  return out + "\n";
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(g());
  return s;
}

TEST(Converter, ExactLayoutOfASimpleMessage) {
  std::string out;
  ASSERT_TRUE(ConvertText(std::string(kHead) + "\nThis is the message body\n", TestSettings(), &out,
                          {{"jsmith@ccmail.corp.example", {"Smith, John", "HUBPO2"}}}).ok());
  const std::string text_item = "This is the message body\r\n";
  const std::string headers_start = "Text item: Headers\r\n";
  ASSERT_EQ(out.rfind("Message:\r\n", 0), 0u);
  size_t contents = out.find("Contents:\r\n");
  ASSERT_NE(contents, std::string::npos);
  const size_t count_end0 = out.find("\r\n", 10) + 2;
  EXPECT_EQ(out.substr(count_end0, contents - count_end0),
            "From: bob@partner.example at INTERNET\r\n"
            "Date: 11/24/26 9:31\r\n"
            "To: Smith, John\r\n"
            "Subject: Hello\r\n");
  EXPECT_NE(out.find("Text item:\r\n26\r\n" + text_item + headers_start), std::string::npos) << out;
  ReadResult r = ReadImportFile(out, TestSettings());
  ASSERT_TRUE(r.ok()) << ViolationsText(r);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].items[0].data, text_item);
  EXPECT_EQ(r.messages[0].items[1].title, "Headers");
  // The count after Message: covers everything to the end of the message.
  const size_t count_end = out.find("\r\n", 10) + 2;
  EXPECT_EQ(std::stoull(out.substr(10, count_end - 12)), out.size() - count_end);
}

TEST(Converter, KeywordLayoutHasNoCountsAndProtectsBodyLines) {
  FormatSettings s = TestSettings();
  s.itemsize = false;
  s.files = FileData::kHex;
  std::string raw;
  ReadResult r = ConvertAndRead(std::string(kHead) + "\nMessage:\nText item: x\n message: already indented\nplain\n", s, &raw);
  EXPECT_EQ(raw.find("Message:\r\nFrom:"), 0u) << raw.substr(0, 200);
  EXPECT_NE(raw.find("\r\n Message:\r\n Text item: x\r\n  message: already indented\r\nplain\r\n"), std::string::npos) << raw;
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].items[0].data, "Message:\r\nText item: x\r\n message: already indented\r\nplain\r\n");
}

TEST(Converter, OnlyEnvelopeRecipientsBecomeAddresseeLines) {
  // The safety hazard: IMPORT delivers to every To/Cc/Bcc line.
  const std::string msg =
      "From: Bob <bob@partner.example>\n"
      "To: John Smith <jsmith@ccmail.corp.example>, Other Person <other@ccmail.corp.example>\n"
      "Cc: Maria <MGarcia@CCMail.Corp.Example>, Ext <ext@partner.example>\n"
      "Bcc: hidden@ccmail.corp.example\n"
      "Subject: roles\n\nBody\n";
  std::vector<ConvertRecipient> rc = DefaultRecipients();
  rc.push_back({"<lee@ccmail.corp.example>", {"Lee, Ann", "OTHERPO"}});
  ReadResult r = ConvertAndRead(msg, TestSettings(), nullptr, rc);
  ASSERT_EQ(r.messages.size(), 1u);
  const ImportMessage& m = r.messages[0];
  EXPECT_EQ(m.to, std::vector<std::string>{"Smith, John"});
  EXPECT_EQ(m.cc, std::vector<std::string>{"Garcia, Maria"});
  EXPECT_EQ(m.bcc, std::vector<std::string>{"Lee, Ann at OTHERPO"});
  // The other visible recipients are in the Headers item only.
  EXPECT_NE(m.items.back().data.find("other@ccmail.corp.example"), std::string::npos);
  EXPECT_NE(m.items.back().data.find("hidden@ccmail.corp.example"), std::string::npos);
}

TEST(Converter, ADuplicateRecipientGetsOneLine) {
  // IMPORT delivers once per addressee line: a repeated cc:Mail user would get the message twice.
  std::vector<ConvertRecipient> rc = DefaultRecipients();
  rc.push_back({"JSmith@ccmail.corp.example", {"SMITH, JOHN", "hubpo2"}});
  rc.push_back({"alias-of-john@ccmail.corp.example", {"Smith, John", "HUBPO2"}});
  ReadResult r = ConvertAndRead(std::string(kHead) + "\nx\n", TestSettings(), nullptr, rc);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].to, std::vector<std::string>{"Smith, John"});
  EXPECT_EQ(r.messages[0].bcc, std::vector<std::string>{"Garcia, Maria"});
}

TEST(Converter, HostileSubjectAndDisplayNamesCannotInjectLines) {
  for (bool itemsize : {true, false}) {
    FormatSettings s = TestSettings();
    s.itemsize = itemsize;
    s.files = itemsize ? FileData::kRaw : FileData::kHex;
    const std::string msg =
        "From: =?UTF-8?Q?Eve=0D=0AMessage:=0D=0ATo:_Evil_at_HUBPO?= <eve@evil.example>\n"
        "To: =?UTF-8?B?Sm9obg0KVG86IEV2aWwgYXQgSFVCUE8=?= <jsmith@ccmail.corp.example>\n"
        "Subject: =?UTF-8?Q?Hi=0D=0AMessage:=0D=0ATo:_Evil_at_HUBPO=0D=0AContents:?=\n"
        "\nBody\r\nMessage:\r\nTo: Evil at HUBPO\r\nContents:\r\nText item:\r\n";
    std::string raw;
    ReadResult r = ConvertAndRead(msg, s, &raw);
    ASSERT_EQ(r.messages.size(), 1u) << raw;
    EXPECT_EQ(r.messages[0].to, std::vector<std::string>{"Smith, John"});
    EXPECT_EQ(r.messages[0].bcc, std::vector<std::string>{"Garcia, Maria"});
    EXPECT_TRUE(r.messages[0].cc.empty());
    EXPECT_EQ(r.messages[0].subject, "Hi Message: To: Evil at HUBPO Contents:");
    EXPECT_EQ(r.messages[0].from, "eve@evil.example at INTERNET");
    size_t count = 0;
    for (size_t p = 0; (p = raw.find("\r\nMessage:\r\n", p)) != std::string::npos; ++p) ++count;
    if (!itemsize) {
      EXPECT_EQ(count, 0u) << "an unprotected Message: line in keyword layout";
      size_t to_lines = 0;
      for (size_t p = 0; (p = raw.find("\r\nTo: ", p)) != std::string::npos; ++p) ++to_lines;
      EXPECT_EQ(to_lines, 1u) << "only the one envelope To: line may start with To:";
    }
  }
}

TEST(Converter, NulAndCtrlZNeverReachText) {
  std::string msg = std::string(kHead);
  msg.replace(msg.find("Subject: Hello"), 14, "Subject: =?UTF-8?Q?a=00b=1Ac?=");
  msg += "\nNUL:";
  msg.push_back('\0');
  msg += " SUB:\x1a ESC:\x1b end\n";
  std::string raw;
  ReadResult r = ConvertAndRead(msg, TestSettings(), &raw);
  EXPECT_EQ(raw.find('\0'), std::string::npos);
  EXPECT_EQ(raw.find('\x1a'), std::string::npos);
  EXPECT_EQ(raw.find('\x1b'), std::string::npos);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].items[0].data, "NUL:? SUB:? ESC:? end\r\n");
}

TEST(Converter, PicksThePlainAlternativeAndRendersHtmlOnly) {
  const std::string alt = std::string(kHead) +
      "MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/html\n\n<p>HTML</p>\n"
      "--b\nContent-Type: text/plain\n\nPlain text\n--b--\n";
  ReadResult r = ConvertAndRead(alt, TestSettings());
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].items[0].data, "Plain text\r\n");
  EXPECT_EQ(r.messages[0].items.size(), 2u);  // text + Headers: the HTML alternative is not attached

  const std::string html = std::string(kHead) +
      "MIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n<html><head><style>x{}</style></head><body><h1>Title</h1>"
      "<p>A &amp; B &lt;c&gt; caf&eacute;</p><script>evil()</script></body></html>\n";
  r = ConvertAndRead(html, TestSettings());
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].items[0].data, "Title\r\n\r\nA & B <c> caf\x82\r\n");
}

TEST(Converter, AttachmentsKeepTheirBytesAndGetDosNames) {
  const std::string pdf = RandomBytes(70000, 1);
  const std::string bin = std::string("\0\x1a\r\nMessage:\r\nTo: Evil\r\n", 25) + RandomBytes(1000, 2);
  const std::string msg = std::string(kHead) +
      "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=m\n\n--m\nContent-Type: text/plain\n\nSee files.\n"
      "--m\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=\"Q3 invoice.pdf\"\nContent-Transfer-Encoding: base64\n\n" + B64(pdf) +
      "--m\nContent-Type: text/plain; charset=utf-8\nContent-Disposition: attachment; filename=\"../notes.txt\"\nContent-Transfer-Encoding: quoted-printable\n\nA=3DB caf=C3=A9=\n done\n"
      "--m\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=CON\nContent-Transfer-Encoding: base64\n\n" + B64(bin) +
      "--m--\n";
  for (FileData fd : {FileData::kRaw, FileData::kHex}) {
    FormatSettings s = TestSettings();
    s.files = fd;
    ReadResult r = ConvertAndRead(msg, s);
    ASSERT_EQ(r.messages.size(), 1u);
    const auto& items = r.messages[0].items;
    ASSERT_EQ(items.size(), 5u);
    EXPECT_EQ(items[1].title, "Q3INVOIC.PDF");
    EXPECT_EQ(items[1].data, pdf);
    EXPECT_EQ(items[2].title, "NOTES.TXT");
    EXPECT_EQ(items[2].data, "A=B caf\xC3\xA9 done");  // file bytes are not converted (the last LF belongs to the boundary)
    EXPECT_EQ(items[3].title, "_CON.BIN");
    EXPECT_EQ(items[3].data, bin);
  }
}

TEST(Converter, AttachedMessagesStayReadable) {
  const std::string msg = std::string(kHead) +
      "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=m\n\n--m\nContent-Type: text/plain\n\nForwarding.\n"
      "--m\nContent-Type: message/rfc822\n\nFrom: Carol <carol@x.example>\nTo: Dave <dave@x.example>\nSubject: =?UTF-8?Q?Inner_[subject]?=\n"
      "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=i\n\n--i\nContent-Type: text/plain\n\nInner text.\n"
      "--i\nContent-Type: image/gif\nContent-Disposition: attachment; filename=pic.gif\n\nGIF89a\n--i--\n--m--\n";
  ReadResult r = ConvertAndRead(msg, TestSettings());
  ASSERT_EQ(r.messages.size(), 1u);
  const auto& items = r.messages[0].items;
  ASSERT_EQ(items.size(), 4u);
  EXPECT_EQ(items[1].title, "Inner (subject)");
  EXPECT_NE(items[1].data.find("From: Carol <carol@x.example>\r\n"), std::string::npos) << items[1].data;
  EXPECT_NE(items[1].data.find("Inner text.\r\n"), std::string::npos);
  EXPECT_EQ(items[2].title, "PIC.GIF");
}

TEST(Converter, NestingAndItemCapsLeaveANotice) {
  std::string deep = "Content-Type: text/plain\n\ndeep text\n";
  for (int i = 0; i < 12; ++i)
    deep = "Content-Type: multipart/mixed; boundary=d" + std::to_string(i) + "\n\n--d" + std::to_string(i) + "\n" + deep + "--d" + std::to_string(i) + "--\n";
  ConvertResult res;
  ReadResult r = ConvertAndRead(std::string(kHead) + "MIME-Version: 1.0\n" + deep, TestSettings(), nullptr, DefaultRecipients(), &res);
  ASSERT_EQ(r.messages.size(), 1u);
  ASSERT_EQ(res.notices.size(), 1u);
  EXPECT_NE(res.notices[0].find("nested deeper than 8"), std::string::npos);
  EXPECT_EQ(r.messages[0].items[r.messages[0].items.size() - 2].title, "Notice");

  std::string many = std::string(kHead) + "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=m\n\n--m\nContent-Type: text/plain\n\nbody\n";
  for (int i = 0; i < 30; ++i)
    many += "--m\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=f" + std::to_string(i) + ".pdf\n\nx\n";
  many += "--m--\n";
  res = {};
  r = ConvertAndRead(many, TestSettings(), nullptr, DefaultRecipients(), &res);
  ASSERT_EQ(r.messages.size(), 1u);
  // Text, 16 files (max_file_items, docs/FORMAT.md §3.8), the notice naming the other 14, Headers.
  EXPECT_EQ(r.messages[0].items.size(), 19u);
  EXPECT_EQ(r.messages[0].items[16].title, "F15.PDF");
  EXPECT_EQ(r.messages[0].items[17].title, "Notice");
  EXPECT_NE(r.messages[0].items[17].data.find("f29.pdf"), std::string::npos);
  EXPECT_NE(r.messages[0].items[17].data.find("14 more file(s)"), std::string::npos);
}

TEST(Converter, SmallItemLimitsStillGiveValidFiles) {
  // The smallest allowed text items and item count: notices and Headers are cut at line ends.
  FormatSettings s = TestSettings();
  s.text_item_max = 256;
  s.max_items = 4;
  std::string many = std::string(kHead) + "X-Long: " + std::string(600, 'h') + "\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=m\n\n--m\nContent-Type: text/plain\n\n" +
                     std::string(1000, 'b') + "\n";
  for (int i = 0; i < 40; ++i)
    many += "--m\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=longer-name-" + std::to_string(i) + ".pdf\n\nx\n";
  many += "--m--\n";
  ReadResult r = ConvertAndRead(many, s);
  ASSERT_EQ(r.messages.size(), 1u);
  const auto& items = r.messages[0].items;
  ASSERT_EQ(items.size(), 4u);
  EXPECT_EQ(items[1].title, "UNNAMED.TXT");  // the body survives every cap
  EXPECT_EQ(items[1].data, std::string(1000, 'b') + "\r\n");
  EXPECT_EQ(items[2].title, "Notice");
  EXPECT_EQ(items[3].title, "Headers");
}

TEST(Converter, HostileShapesStayLinear) {
  // Quadratic scans would hang here (ctest's timeout is the assertion).
  FormatSettings s = TestSettings();
  s.max_items = 1000;
  ReadResult r = ConvertAndRead(std::string(kHead) + "MIME-Version: 1.0\nContent-Type: text/html\n\n" + std::string(2000000, '&') + "\n", s);
  ASSERT_EQ(r.messages.size(), 1u);
  r = ConvertAndRead(std::string(kHead) + "\n" + std::string(4000000, 'y') + "\n", s);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_GE(r.messages[0].items.size(), 200u);
}

TEST(Converter, LongBodiesSplitOrBecomeUnnamedTxt) {
  std::string body;
  for (int i = 0; i < 1000; ++i) body += "Line " + std::to_string(i) + " of a body that is long enough to need splitting.\n";
  const std::string msg = std::string(kHead) + "\n" + body;
  FormatSettings s = TestSettings();
  ReadResult r = ConvertAndRead(msg, s);
  ASSERT_EQ(r.messages.size(), 1u);
  std::string joined;
  size_t texts = 0;
  for (const auto& it : r.messages[0].items) {
    if (it.title == "Headers") continue;
    EXPECT_LE(it.data.size(), 20000u);
    joined += it.data;
    ++texts;
  }
  EXPECT_GE(texts, 3u);
  std::string expect;
  for (size_t p = 0; p < body.size();) { size_t e = body.find('\n', p); expect += body.substr(p, e - p) + "\r\n"; p = e + 1; }
  EXPECT_EQ(joined, expect);

  s.large_body = LargeBody::kFile;
  r = ConvertAndRead(msg, s);
  ASSERT_EQ(r.messages.size(), 1u);
  ASSERT_EQ(r.messages[0].items.size(), 3u);
  EXPECT_EQ(r.messages[0].items[1].title, "UNNAMED.TXT");
  EXPECT_EQ(r.messages[0].items[1].data, expect);

  // One 100 KB line is broken into item-sized pieces.
  r = ConvertAndRead(std::string(kHead) + "\n" + std::string(100000, 'x') + "\n", TestSettings());
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_GE(r.messages[0].items.size(), 6u);
}

TEST(Converter, ManyRecipientsSplitAcrossCopiesUnderTheHeaderLimit) {
  std::vector<ConvertRecipient> rc;
  std::string to = "To: ";
  for (int i = 0; i < 300; ++i) {
    std::string a = "user" + std::to_string(i) + "@ccmail.corp.example";
    rc.push_back({a, {"User Number " + std::to_string(i) + ", Long Name", "HUBPO" + std::to_string(i % 3)}});
    to += (i ? ", " : "") + a;
  }
  std::string raw;
  ConvertResult res;
  ReadResult r = ConvertAndRead("From: b@x.example\n" + to + "\nSubject: many\n\nbody\n", TestSettings(), &raw, rc, &res);
  ASSERT_GT(r.messages.size(), 2u);
  EXPECT_EQ(res.messages_written, static_cast<int>(r.messages.size()));
  std::multiset<std::string> seen;
  for (const auto& m : r.messages) {
    for (const auto& t : m.to) seen.insert(t);
    EXPECT_TRUE(m.cc.empty() && m.bcc.empty());
    EXPECT_EQ(m.items[0].data, "body\r\n");
  }
  EXPECT_EQ(seen.size(), 300u);
  for (const auto& c : rc) EXPECT_EQ(seen.count(FormatRecipient(c.ccmail, TestSettings())), 1u);
}

TEST(Converter, CodePageConversionOfEveryCharset) {
  struct Case { std::string ctype; std::string body; std::string expect; };
  for (const Case& c : {Case{"text/plain; charset=utf-8", "Gr\xC3\xBC\xC3\x9F" "e \xE2\x82\xAC", "Gr\x81\xE1" "e ?\r\n"},
                        Case{"text/plain; charset=iso-8859-1", "caf\xE9", "caf\x82\r\n"},
                        Case{"text/plain; charset=utf-8", "bad \xE9\xFF utf8", "bad ?? utf8\r\n"},
                        Case{"text/plain; charset=x-unknown-thing", "caf\xE9", "caf\x82\r\n"},
                        Case{"text/plain", "unlabeled \xC3\xA9", "unlabeled \x82\r\n"},
                        Case{"text/plain; charset=koi8-r", "\xF0\xD2\xC9\xD7\xC5\xD4", "??????\r\n"}}) {
    ReadResult r = ConvertAndRead(std::string(kHead) + "MIME-Version: 1.0\nContent-Type: " + c.ctype + "\nContent-Transfer-Encoding: 8bit\n\n" + c.body + "\n", TestSettings());
    ASSERT_EQ(r.messages.size(), 1u);
    EXPECT_EQ(r.messages[0].items[0].data, c.expect) << c.ctype;
  }
}

TEST(Converter, DateFromTheMessageOrTheReceiveTime) {
  ReadResult r = ConvertAndRead(std::string(kHead) + "\nx\n", TestSettings());
  EXPECT_EQ(r.messages[0].date, "11/24/26 9:31");
  std::string msg = std::string(kHead);
  msg.replace(msg.find("Date: "), std::string::npos, "Date: Fri, 01 Jan 2100 00:00:00 +0000\n\nx\n");
  r = ConvertAndRead(msg, TestSettings());
  EXPECT_EQ(r.messages[0].date, FormatCcDate(1795520000, TestSettings()));  // absurd: the receive time
  r = ConvertAndRead("From: a@b.example\nSubject: no date\n\nx\n", TestSettings());
  EXPECT_EQ(r.messages[0].date, FormatCcDate(1795520000, TestSettings()));
}

TEST(Converter, EmptyBodyGetsAPlaceholderNotAnEmptyItem) {
  ReadResult r = ConvertAndRead(std::string(kHead) + "\n", TestSettings());
  EXPECT_EQ(r.messages[0].items[0].data.rfind("(no text: ", 0), 0u) << r.messages[0].items[0].data;
  FormatSettings s = TestSettings();
  s.headers_item = false;
  r = ConvertAndRead(std::string(kHead), s);
  ASSERT_EQ(r.messages[0].items.size(), 1u);
}

TEST(Converter, UnconvertibleIsDistinctFromIoErrors) {
  std::string out;
  Status s = ConvertText(std::string(kHead) + "\nx\n", TestSettings(), &out, {});
  EXPECT_TRUE(IsUnconvertible(s)) << s.ToString();
  s = ConvertText("", TestSettings(), &out);
  EXPECT_TRUE(IsUnconvertible(s)) << s.ToString();
  s = ConvertText(std::string(kHead) + "\nx\n", TestSettings(), &out,
                  {{"a@b.example", {std::string(5000, 'n'), "PO"}}});
  EXPECT_TRUE(IsUnconvertible(s)) << s.ToString();

  // The input is shorter than the spool metadata says: an I/O problem, not the message's fault.
  UniqueFd fd = testing::MemFile(std::string(kHead) + "\nx\n");
  ConvertInput in;
  in.fd = fd.get();
  in.length = 100000;
  in.recipients = DefaultRecipients();
  StringSink sink;
  s = Converter(TestSettings()).Convert(in, &sink, nullptr);
  EXPECT_EQ(s.code(), Status::Code::kIoError) << s.ToString();
  EXPECT_FALSE(IsUnconvertible(s));

  // A pipe cannot be parsed in place: an input problem of the caller, not of the message.
  int pfd[2];
  ASSERT_EQ(pipe(pfd), 0);
  ConvertInput pin = in;
  pin.fd = pfd[0];
  pin.length = 10;
  s = Converter(TestSettings()).Convert(pin, &sink, nullptr);
  EXPECT_EQ(s.code(), Status::Code::kIoError) << s.ToString();
  close(pfd[0]);
  close(pfd[1]);

  // A failing output keeps its code (disk full).
  class FullSink : public OutputSink {
   public:
    Status Write(const void*, size_t) override { return Status::NoSpace("write outbox: No space left on device"); }
  } full;
  in.length = std::string(kHead).size() + 3;
  s = Converter(TestSettings()).Convert(in, &full, nullptr);
  EXPECT_TRUE(s.IsNoSpace()) << s.ToString();
}

TEST(Converter, ReadsOnlyItsRangeAndLeavesTheFilePositionAlone) {
  const std::string msg = std::string(kHead) + "\nInside the range\n";
  const std::string file = "JUNK BEFORE\nMessage:\n" + msg + "From: junk after\n\nnot this\n";
  char path[] = "/tmp/ccmail-conv-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, file.data(), file.size()), static_cast<ssize_t>(file.size()));
  ASSERT_EQ(lseek(fd, 7, SEEK_SET), 7);
  ConvertInput in;
  in.fd = fd;
  in.offset = 21;
  in.length = msg.size();
  in.recipients = DefaultRecipients();
  in.received = 1795000000;
  StringSink sink;
  ASSERT_TRUE(Converter(TestSettings()).Convert(in, &sink, nullptr).ok());
  EXPECT_EQ(lseek(fd, 0, SEEK_CUR), 7);
  ReadResult r = ReadImportFile(sink.str(), TestSettings());
  ASSERT_TRUE(r.ok()) << ViolationsText(r);
  EXPECT_EQ(r.messages[0].items[0].data, "Inside the range\r\n");
  EXPECT_EQ(r.messages[0].items[1].data.find("junk"), std::string::npos);
  close(fd);
  unlink(path);
}

TEST(Converter, ConcurrentConversionsGiveIdenticalOutput) {
  const std::string msg = std::string(kHead) +
      "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=m\n\n--m\nContent-Type: text/plain; charset=iso-8859-1\n\ncaf\xE9\n"
      "--m\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=a.pdf\nContent-Transfer-Encoding: base64\n\n" +
      B64(RandomBytes(30000, 9)) + "--m--\n";
  std::string expect;
  ASSERT_TRUE(ConvertText(msg, TestSettings(), &expect).ok());
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        std::string out;
        if (!ConvertText(msg, TestSettings(), &out).ok() || out != expect) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, 0);
}

// The exporter converts a message once for all its post offices, from the bytes it already
// read: every target must get exactly what a Convert() of its recipients from the file gives.
TEST(Converter, ConvertForEachFromMemoryEqualsOneConvertPerPostOffice) {
  const std::string pdf = RandomBytes(30000, 7);
  std::string to = "To: ";
  std::vector<ConvertRecipient> hub, sales;
  for (int i = 0; i < 120; ++i) {
    std::string a = "user" + std::to_string(i) + "@ccmail.corp.example";
    (i % 2 ? hub : sales).push_back({a, {"User Number " + std::to_string(i) + ", Long Name", i % 2 ? "HUBPO2" : "SALESPO"}});
    to += (i ? ", " : "") + a;
  }
  sales.push_back({"hidden@ccmail.corp.example", {"Hidden, Bcc", "SALESPO"}});
  const std::string msg = "From: b@x.example\n" + to + "\nSubject: per post office\nMIME-Version: 1.0\n"
      "Content-Type: multipart/mixed; boundary=m\n\n--m\nContent-Type: text/plain\n\nSee the file.\n"
      "--m\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=\"a.pdf\"\n"
      "Content-Transfer-Encoding: base64\n\n" + B64(pdf) + "--m--\n";
  for (FileData fd : {FileData::kRaw, FileData::kHex}) {
    FormatSettings st = TestSettings();
    st.files = fd;
    st.header_limit = 1000;  // forces several copies per post office
    std::string want_hub, want_sales;
    ASSERT_TRUE(ConvertText(msg, st, &want_hub, hub).ok());
    ASSERT_TRUE(ConvertText(msg, st, &want_sales, sales).ok());
    ASSERT_NE(want_hub, want_sales);
    Converter conv(st);
    ConvertInput in;
    in.data = msg.data();
    in.length = msg.size();
    in.envelope_sender = "bob@partner.example";
    in.received = 1795520000;
    in.log_id = "test";
    StringSink a, b;
    ConvertResult ra, rb;
    std::vector<ConvertTarget> targets(2);
    targets[0] = {hub, &a, &ra};
    targets[1] = {sales, &b, &rb};
    ASSERT_TRUE(conv.ConvertForEach(in, targets).ok());
    EXPECT_EQ(a.str(), want_hub);
    EXPECT_EQ(b.str(), want_sales);
    EXPECT_GT(ra.messages_written, 1);
    EXPECT_EQ(ra.bytes_written, a.str().size());
    EXPECT_EQ(rb.bytes_written, b.str().size());
    // The same from the file: only the source of the bytes differs.
    UniqueFd f = testing::MemFile(msg);
    in.data = nullptr;
    in.fd = f.get();
    StringSink c, d;
    targets[0].out = &c;
    targets[1].out = &d;
    ASSERT_TRUE(conv.ConvertForEach(in, targets).ok());
    EXPECT_EQ(c.str(), want_hub);
    EXPECT_EQ(d.str(), want_sales);
  }
}

TEST(Converter, ConvertForEachChecksEveryTargetBeforeWriting) {
  FormatSettings st = TestSettings();
  st.header_limit = 200;
  Converter conv(st);
  const std::string msg = "From: b@x.example\nTo: jsmith@ccmail.corp.example\nSubject: s\n\nbody\n";
  ConvertInput in;
  in.data = msg.data();
  in.length = msg.size();
  in.received = 1795520000;
  StringSink a, b;
  std::vector<ConvertTarget> targets(2);
  targets[0] = {{{"jsmith@ccmail.corp.example", {"Smith, John", "HUBPO2"}}}, &a, nullptr};
  targets[1] = {{{"x@ccmail.corp.example", {std::string(300, 'N'), "SALESPO"}}}, &b, nullptr};
  Status s = conv.ConvertForEach(in, targets);
  EXPECT_TRUE(IsUnconvertible(s)) << s.ToString();
  EXPECT_TRUE(a.str().empty()) << "the first post office's sink was written before the second was checked";
  EXPECT_TRUE(b.str().empty());
  targets[1].recipients.clear();
  EXPECT_TRUE(IsUnconvertible(conv.ConvertForEach(in, targets)));
  // An empty message in memory is unconvertible, not an I/O error to retry for ever.
  in.length = 0;
  targets.resize(1);
  EXPECT_TRUE(IsUnconvertible(conv.ConvertForEach(in, targets)));
}

TEST(Converter, FdSinkWritesEverythingAndReportsErrors) {
  char path[] = "/tmp/ccmail-sink-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  {
    FdSink sink(fd);
    std::string big(200000, 'z');
    ASSERT_TRUE(sink.Write("abc", 3).ok());
    ASSERT_TRUE(sink.Write(big.data(), big.size()).ok());
    ASSERT_TRUE(sink.Flush().ok());
    EXPECT_EQ(sink.bytes_written(), 200003u);
  }
  EXPECT_EQ(lseek(fd, 0, SEEK_END), 200003);
  close(fd);
  unlink(path);
  int ro = open("/dev/null", O_RDONLY);
  FdSink bad(ro);
  std::string big(100000, 'z');
  Status s = bad.Write(big.data(), big.size());
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Status::Code::kIoError);
  close(ro);
}

}  // namespace
}  // namespace ccmail::format
