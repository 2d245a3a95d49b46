// What the cc:Mail user reads is what was sent: one test per fidelity rule of docs/FORMAT.md.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "ccmail/format/converter.h"
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

// Item 1: adjacent base64 words, the first padded, are decoded one by one.
TEST(Fidelity, AdjacentPaddedEncodedWordsKeepEveryWord) {
  const std::string msg =
      "From: a@b.example\nTo: jsmith@ccmail.corp.example\n"
      "Subject: =?utf-8?B?YQ==?= =?utf-8?B?Yg==?=\n"
      "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=m\n\n"
      "--m\nContent-Type: text/plain\n\nbody\n"
      "--m\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=\"=?utf-8?B?YQ==?= =?utf-8?B?Yg==?=.pdf\"\n\nx\n"
      "--m\nContent-Type: application/pdf; name=\"=?utf-8?B?Yw==?=\n =?utf-8?B?ZA==?=.pdf\"\n\nx\n"
      "--m\nContent-Type: message/rfc822\n\nFrom: =?utf-8?B?Q2Fyb2w=?= =?utf-8?B?IEs=?= <carol@x.example>\n"
      "Subject: =?utf-8?B?SW5uZXI=?=\n =?utf-8?B?IHRpdGxl?=\n\ninner\n"
      "--m--\n";
  ReadResult r = ConvertAndRead(msg);
  ASSERT_EQ(r.messages.size(), 1u);
  const ImportMessage& m = r.messages[0];
  EXPECT_EQ(m.subject, "ab");
  ASSERT_GE(m.items.size(), 4u);
  EXPECT_EQ(m.items[1].title, "AB.PDF");
  EXPECT_EQ(m.items[2].title, "CD.PDF");
  EXPECT_EQ(m.items[3].title, "Inner title");
  EXPECT_NE(m.items[3].data.find("From: Carol K <carol@x.example>"), std::string::npos) << m.items[3].data;
}

TEST(Fidelity, ACharacterSplitAcrossTwoWordsStaysOneCharacter) {
  // "é" = C3 A9 split over two words of one charset; Q and B mixed; words of two charsets.
  const std::string msg =
      "From: a@b.example\nTo: jsmith@ccmail.corp.example\n"
      "Subject: =?UTF-8?B?Y8M=?= =?utf-8?Q?=A9?= =?iso-8859-1?Q?_=E9t=E9?= plain =?us-ascii?Q?x?=\n\nbody\n";
  ReadResult r = ConvertAndRead(msg);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].subject, "c\x82 \x82t\x82 plain x");
}

// Item 2: the From line is the author; the envelope sender is only the fallback.
std::string FromLine(const std::string& msg, const std::string& envelope, const FormatSettings& s = TestSettings()) {
  UniqueFd fd = testing::MemFile(msg);
  ConvertInput in;
  in.fd = fd.get();
  in.length = msg.size();
  in.envelope_sender = envelope;
  in.recipients = DefaultRecipients();
  in.received = 1795520000;
  StringSink sink;
  Status st = Converter(s).Convert(in, &sink, nullptr);
  EXPECT_TRUE(st.ok()) << st.ToString();
  ReadResult r = ReadImportFile(sink.str(), s);
  EXPECT_TRUE(r.ok()) << ViolationsText(r);
  return r.messages.empty() ? std::string() : r.messages[0].from;
}

TEST(Fidelity, FromLineShowsTheAuthorNotTheEnvelope) {
  const std::string list_mail =
      "From: \"Doe, Alice\" <alice@example.org>\nSender: list-bounces@lists.example\n"
      "To: jsmith@ccmail.corp.example\nSubject: s\n\nbody\n";
  EXPECT_EQ(FromLine(list_mail, "list-bounces+jsmith=ccmail.corp.example@lists.example"), "alice@example.org at INTERNET");
  const std::string dsn = "From: Mail Delivery System <MAILER-DAEMON@mx.example>\nTo: jsmith@ccmail.corp.example\nSubject: s\n\nb\n";
  EXPECT_EQ(FromLine(dsn, ""), "MAILER-DAEMON@mx.example at INTERNET");
  // Missing or invalid From: Sender, then the envelope.
  const std::string no_from = "Sender: sec@example.org\nTo: jsmith@ccmail.corp.example\nSubject: s\n\nb\n";
  EXPECT_EQ(FromLine(no_from, "env@example.net"), "sec@example.org at INTERNET");
  const std::string bad_from = "From: just a name\nTo: jsmith@ccmail.corp.example\nSubject: s\n\nb\n";
  EXPECT_EQ(FromLine(bad_from, "env@example.net"), "env@example.net at INTERNET");
  const std::string group_from = "From: team: carol@example.org, dave@example.org;\nSubject: s\n\nb\n";
  EXPECT_EQ(FromLine(group_from, "env@example.net"), "carol@example.org at INTERNET");
  // The old choice stays available.
  FormatSettings envelope = TestSettings();
  envelope.sender_source = SenderSource::kEnvelope;
  EXPECT_EQ(FromLine(list_mail, "list-bounces@lists.example", envelope), "list-bounces@lists.example at INTERNET");
  EXPECT_EQ(FromLine(dsn, "", envelope), "MAILER-DAEMON at INTERNET");
}

// Item 5: NULs in structure lines, and nothing dropped without a notice.
ReadResult ConvertFromMemory(const std::string& msg, ConvertResult* res) {
  ConvertInput in;
  in.data = msg.data();
  in.length = msg.size();
  in.envelope_sender = "bob@partner.example";
  in.recipients = DefaultRecipients();
  in.received = 1795520000;
  StringSink sink;
  Status st = Converter(TestSettings()).Convert(in, &sink, res);
  EXPECT_TRUE(st.ok()) << st.ToString();
  ReadResult r = ReadImportFile(sink.str(), TestSettings());
  EXPECT_TRUE(r.ok()) << ViolationsText(r);
  return r;
}

const ImportItem* FindItem(const ImportMessage& m, const std::string& title) {
  for (const ImportItem& it : m.items)
    if (it.title == title) return &it;
  return nullptr;
}

TEST(Fidelity, ANulInsideTheBoundaryKeepsEveryPart) {
  const std::string msg = std::string(
      "From: a@b.example\nTo: jsmith@ccmail.corp.example\nSubject: nul\nMIME-Version: 1.0\n"
      "Content-Type: multipart/mixed; boundary=\"ab\0cd\"\n\n--ab\0cd\nContent-Type: text/plain\n\nhello\n"
      "--ab\0cd\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=x.pdf\n"
      "Content-Transfer-Encoding: binary\n\nP\0F\n--ab\0cd--\n", 304);
  ASSERT_EQ(msg.back(), '\n');
  for (bool from_memory : {false, true}) {
    ConvertResult res;
    ReadResult r;
    if (from_memory) {
      r = ConvertFromMemory(msg, &res);
    } else {
      r = ConvertAndRead(msg, TestSettings(), nullptr, DefaultRecipients(), &res);
    }
    ASSERT_EQ(r.messages.size(), 1u);
    const ImportMessage& m = r.messages[0];
    ASSERT_GE(m.items.size(), 3u);
    EXPECT_EQ(m.items[0].data, "hello\r\n");
    EXPECT_EQ(m.items[1].title, "X.PDF");
    EXPECT_EQ(m.items[1].data, std::string("P\0F", 3));  // data lines keep their NUL
    const ImportItem* notice = FindItem(m, "Notice");
    ASSERT_NE(notice, nullptr);
    EXPECT_NE(notice->data.find("NUL"), std::string::npos) << notice->data;
    EXPECT_FALSE(res.notices.empty());
  }
}

TEST(Fidelity, HeaderLinesCutAtANulStaySeparate) {
  const std::string msg = std::string(
      "From: a@b.example\nTo: jsmith@ccmail.corp.example\nSubject: before\0after\nX-Other: one\n"
      "Content-Type: text/plain\n\nbody\n", 115);
  ConvertResult res;
  ReadResult r = ConvertAndRead(msg, TestSettings(), nullptr, DefaultRecipients(), &res);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].subject, "before?after");
  const ImportItem* headers = FindItem(r.messages[0], "Headers");
  ASSERT_NE(headers, nullptr);
  EXPECT_NE(headers->data.find("\r\nX-Other: one\r\n"), std::string::npos) << headers->data;
  EXPECT_NE(FindItem(r.messages[0], "Notice"), nullptr);
}

TEST(Fidelity, AMultipartWithoutReadablePartsIsNotSilent) {
  const std::string msg =
      "From: a@b.example\nTo: jsmith@ccmail.corp.example\nSubject: lost\nMIME-Version: 1.0\n"
      "Content-Type: multipart/mixed; boundary=never\n\n--other\nContent-Type: text/plain\n\nhello\n--other--\n";
  ConvertResult res;
  ReadResult r = ConvertAndRead(msg, TestSettings(), nullptr, DefaultRecipients(), &res);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].items[0].data, "(no text: the message has no text part)\r\n");
  const ImportItem* notice = FindItem(r.messages[0], "Notice");
  ASSERT_NE(notice, nullptr);
  EXPECT_NE(notice->data.find("boundary \"never\""), std::string::npos) << notice->data;
}

// Item 4: 7-bit charsets that are not ASCII-compatible are decoded too.
std::string BodyIn(const std::string& charset, const std::string& cte, const std::string& body) {
  const std::string msg = "From: a@b.example\nTo: jsmith@ccmail.corp.example\nSubject: s\nMIME-Version: 1.0\n"
                          "Content-Type: text/plain; charset=" + charset + "\nContent-Transfer-Encoding: " + cte +
                          "\n\n" + body;
  ReadResult r = ConvertAndRead(msg);
  return r.messages.empty() ? std::string() : r.messages[0].items[0].data;
}

TEST(Fidelity, SevenBitCharsetsThatAreNotAsciiAreDecoded) {
  EXPECT_EQ(BodyIn("utf-16le", "base64", "SABlAGwAbABvAA0ACgBXAPYAcgBsAGQADQAKAA==\n"), "Hello\r\nW\x94rld\r\n");
  EXPECT_EQ(BodyIn("utf-16", "base64", "//5IAGUAbABsAG8ADQAKAA==\n"), "Hello\r\n");
  EXPECT_EQ(BodyIn("utf-7", "7bit", "Hi +AOk-t+AOk 1+-1\n"), "Hi \x82t\x82 1+1\r\n");
  EXPECT_EQ(BodyIn("iso-2022-jp", "7bit", "\x1b$B$3$s$K$A$O\x1b(B abc\n"), "????? abc\r\n");
  // Plain ASCII text in an ASCII-compatible charset is unchanged.
  EXPECT_EQ(BodyIn("iso-8859-1", "7bit", "a+b~c\\d\n"), "a+b~c\\d\r\n");
  const std::string msg = "From: a@b.example\nTo: jsmith@ccmail.corp.example\nSubject: =?utf-7?Q?Hi_+AOk-?=\n\nb\n";
  ReadResult r = ConvertAndRead(msg);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].subject, "Hi \x82");
}

// Item 7: the doubtful rows, settled (docs/FORMAT.md).
std::string Headed(const std::string& extra, const std::string& body = "x\n") {
  return "From: a@b.example\nTo: jsmith@ccmail.corp.example\n" + extra + "\n" + body;
}

TEST(Fidelity, AtMostSixteenFileItems) {
  std::string msg = Headed("Subject: files\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=m\n",
                           "--m\nContent-Type: text/plain\n\nbody\n");
  for (int i = 0; i < 17; ++i)
    msg += "--m\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=f" + std::to_string(i) + ".pdf\n\nx\n";
  msg += "--m--\n";
  ReadResult r = ConvertAndRead(msg);
  ASSERT_EQ(r.messages.size(), 1u);
  size_t files = 0;
  for (const ImportItem& it : r.messages[0].items) files += it.kind == ImportItem::Kind::kFile;
  EXPECT_EQ(files, 16u);
  const ImportItem* notice = FindItem(r.messages[0], "Notice");
  ASSERT_NE(notice, nullptr);
  EXPECT_NE(notice->data.find("f16.pdf"), std::string::npos) << notice->data;
}

TEST(Fidelity, OldDatesAreShownAsWritten) {
  ReadResult r = ConvertAndRead(Headed("Subject: old\nDate: Mon, 2 Jun 1998 08:39:00 +0000\n"));
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].date, "6/2/98 8:39");
  // Before 1970 the two-digit year would read as 20xx: the arrival time.
  r = ConvertAndRead(Headed("Subject: older\nDate: Mon, 2 Jun 1969 08:39:00 +0000\n"));
  EXPECT_EQ(r.messages[0].date, FormatCcDate(1795520000, TestSettings()));
}

TEST(Fidelity, RawInvalidUtf8InTheSubjectIsAQuestionMark) {
  ReadResult r = ConvertAndRead(Headed("Subject: caf\xe9 ok \xc3\xa9t\xc3\xa9\n"));
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].subject, "caf? ok \x82t\x82");
}

TEST(Fidelity, AnUnknownCharsetKeepsItsTrailingByte) {
  // Unknown charset: UTF-8 when valid, else windows-1252, byte for byte (0xC3 = U+00C3 = CP850 0xC7).
  EXPECT_EQ(BodyIn("x-unknown-foo", "8bit", "abc\xc3"), "abc\xc7\r\n");
  EXPECT_EQ(BodyIn("x-unknown-foo", "8bit", "abc\xc3\xa9"), "abc\x82\r\n");
  EXPECT_EQ(BodyIn("utf-8", "8bit", "abc\xc3"), "abc?\r\n");
}

TEST(Fidelity, TheCrlfAfterRawFileDataIsASetting) {
  const std::string msg = Headed("Subject: f\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=m\n",
                                 "--m\nContent-Type: text/plain\n\nbody\n--m\nContent-Type: application/pdf\n"
                                 "Content-Disposition: attachment; filename=a.pdf\n\nPDF\n--m--\n");
  for (bool crlf : {true, false}) {
    FormatSettings s = TestSettings();
    s.raw_file_crlf = crlf;
    std::string raw;
    ReadResult r = ConvertAndRead(msg, s, &raw);
    ASSERT_EQ(r.messages.size(), 1u);
    EXPECT_EQ(r.messages[0].items[1].data, "PDF");
    EXPECT_NE(raw.find(crlf ? "File item: A.PDF\r\n3\r\nPDF\r\nText item: Headers" : "File item: A.PDF\r\n3\r\nPDFText item: Headers"),
              std::string::npos) << raw;
    // The other setting's reader sees the difference.
    FormatSettings other = s;
    other.raw_file_crlf = !crlf;
    EXPECT_FALSE(ReadImportFile(raw, other).ok());
  }
}

// Item 3: the header block IMPORT buffers (Message: .. Contents: count) stays within header_limit.
TEST(Fidelity, FourHundredRecipientsOnTwoPostOfficesSplitIntoCopiesThatFit) {
  const std::string msg = Headed("Subject: a subject long enough to matter for the header block, 60 chars\n", "body\n");
  for (bool itemsize : {true, false}) {
    FormatSettings s = TestSettings();
    s.itemsize = itemsize;
    s.files = itemsize ? FileData::kRaw : FileData::kHex;
    EXPECT_EQ(s.header_limit, 4000u);
    std::vector<ConvertTarget> targets(2);
    std::vector<StringSink> sinks(2);
    std::multiset<std::string> wanted;
    for (int office_index = 0; office_index < 2; ++office_index) {
      for (int i = 0; i < 200; ++i) {
        const std::string name = "Recipient" + std::to_string(i) + ", Person";
        const std::string office = office_index == 0 ? "HUBPO2" : "FARAWAYPO";
        targets[office_index].recipients.push_back({"r" + std::to_string(office_index) + "_" + std::to_string(i) + "@ccmail.corp.example", {name, office}});
        wanted.insert(office_index == 0 ? name : name + " at " + office);
      }
      targets[office_index].out = &sinks[office_index];
    }
    ConvertInput in;
    in.data = msg.data();
    in.length = msg.size();
    in.envelope_sender = "bob@partner.example";
    in.received = 1795520000;
    ASSERT_TRUE(Converter(s).ConvertForEach(in, targets).ok());
    std::multiset<std::string> got;
    for (int office_index = 0; office_index < 2; ++office_index) {
      const std::string& raw = sinks[office_index].str();
      ReadResult r = ReadImportFile(raw, s);
      EXPECT_TRUE(r.ok()) << ViolationsText(r);
      EXPECT_GE(r.messages.size(), 2u);
      for (size_t m = 0; m < r.messages.size(); ++m) {
        // Exactly what IMPORT buffers: from "Message:" to the end of the Contents: count line.
        const size_t start = r.messages[m].offset;
        size_t end = raw.find("\r\nContents:\r\n", start) + 13;
        if (itemsize) end = raw.find("\r\n", end) + 2;
        EXPECT_LE(end - start, 4000u) << "copy " << m << " of post office " << office_index;
        for (const auto* list : {&r.messages[m].to, &r.messages[m].cc, &r.messages[m].bcc})
          got.insert(list->begin(), list->end());
      }
    }
    EXPECT_EQ(got, wanted) << "every recipient in exactly one copy";
  }
}

}  // namespace
}  // namespace ccmail::format
