// The way back, rule by rule: hand-written EXPORT text -> reader -> ConvertExportMessage ->
// the MIME parsed again with GMime.
#include "ccmail/submitter/to_mime.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "ccmail/config/config.h"
#include "to_mime_util.h"

namespace ccmail::submitter {
namespace {

using testing::Convert;
using testing::ExportText;
using testing::ParseMime;
using testing::ReadOne;
using testing::TestMap;
using testing::TestReverseSettings;

TEST(ToMime, PlainMessage) {
  auto map = TestMap();
  ExportText x;
  auto c = Convert(x.Keyword(), TestReverseSettings(), *map);
  ASSERT_TRUE(c.refusal.reason.empty()) << c.refusal.reason;
  EXPECT_EQ(c.out.envelope_from, "jsmith@corp.example");
  EXPECT_EQ(c.out.recipients, std::vector<std::string>{"jdoe@example.com"});
  auto p = ParseMime(c.out.mime);
  ASSERT_TRUE(p->message);
  EXPECT_EQ(p->Addresses(GMIME_ADDRESS_TYPE_FROM), std::vector<std::string>{"jsmith@corp.example"});
  EXPECT_EQ(p->FromName(), "Smith, John");
  EXPECT_EQ(p->Addresses(GMIME_ADDRESS_TYPE_TO), std::vector<std::string>{"jdoe@example.com"});
  EXPECT_EQ(p->DecodedSubject(), "Hello");
  EXPECT_EQ(p->Header("Date"), "Tue, 2 Jun 1998 08:39:00 +0000");
  EXPECT_EQ(p->Header("X-Ccmail-Bridge-Origin"), "bridge1.corp.example");
  EXPECT_EQ(p->Header("Message-ID"), c.out.message_id);
  EXPECT_EQ(p->Header("MIME-Version"), "1.0");
  ASSERT_EQ(p->leaves.size(), 1u);
  EXPECT_EQ(p->leaves[0].content_type, "text/plain");
  EXPECT_EQ(p->leaves[0].charset, "utf-8");
  EXPECT_EQ(p->leaves[0].encoding, "quoted-printable");
  EXPECT_EQ(p->leaves[0].data, "Hi there");
  // Ready for DATA: CRLF lines only, header and body separated by an empty line.
  size_t bare_lf = 0;
  for (size_t i = 0; i < c.out.mime.size(); ++i)
    if (c.out.mime[i] == '\n' && (i == 0 || c.out.mime[i - 1] != '\r')) ++bare_lf;
  EXPECT_EQ(bare_lf, 0u);
  EXPECT_NE(c.out.mime.find("\r\n\r\n"), std::string::npos);
}


// A refusal and nothing to submit.
void ExpectRefused(const testing::Converted& c, const std::string& reason_part) {
  EXPECT_NE(c.refusal.reason.find(reason_part), std::string::npos) << "reason: \"" << c.refusal.reason << "\"";
  EXPECT_TRUE(c.out.mime.empty());
  EXPECT_TRUE(c.out.recipients.empty());
}

testing::Converted ConvertRefusable(const ExportText& x, const ReverseSettings& s) {
  return Convert(x.Keyword(), s, *TestMap());
}

// --- the author ---

TEST(ToMimeAuthor, BareNameBelongsToTheInboxPostOffice) {
  ExportText x;
  x.from = "Garcia, Maria";
  auto c = ConvertRefusable(x, TestReverseSettings());
  EXPECT_EQ(c.out.envelope_from, "mgarcia@corp.example");
  // The same bare name read from another post office's inbox is another (unmapped) user.
  auto other = Convert(x.Keyword(), TestReverseSettings(), *TestMap(), "BRANCHPO");
  EXPECT_EQ(other.out.envelope_from, "maria.garcia@corp.example");
  // A post office named on the From line wins over the inbox's.
  x.from = "Jones, Bob at BRANCHPO";
  EXPECT_EQ(ConvertRefusable(x, TestReverseSettings()).out.envelope_from, "bjones@branch.example");
}

TEST(ToMimeAuthor, UnmappedAuthorGetsThePattern) {
  struct Case { const char* from; const char* pattern; const char* want; };
  const Case cases[] = {
      {"Doe, Jane at HUBPO2", "{first}.{last}@{domain}", "jane.doe@corp.example"},
      {"DOE, JANE", "{first}.{last}@{domain}", "jane.doe@corp.example"},
      {"Jane Q Doe at HUBPO2", "{first}.{last}@{domain}", "jane.q.doe@corp.example"},
      {"Van Dyke, Dick", "{first}.{last}@{domain}", "dick.van.dyke@corp.example"},
      {"Admin at BRANCHPO", "{first}.{last}@{domain}", "admin@corp.example"},  // no first name: no stray dot
      {"Admin at HUBPO2", "{first}.{last}@{domain}", "Admin@ccmail.corp.example"},  // the map's fallback first
      {"O'Brien, Pat", "{first}.{last}@{domain}", "pat.o'brien@corp.example"},
      {"Doe, Jane at HUBPO2", "{last}_{first}@{po}.{domain}", "doe_jane@hubpo2.corp.example"},
      {"Doe, Jane at HUBPO2", "{name}@{domain}", "doe,.jane@corp.example"},  // not an address: see below
  };
  for (const Case& k : cases) {
    ExportText x;
    x.from = k.from;
    ReverseSettings s = TestReverseSettings();
    s.unmapped_author_pattern = k.pattern;
    auto c = ConvertRefusable(x, s);
    if (std::string(k.want).find(',') != std::string::npos) {
      ExpectRefused(c, "gives no valid address");
      EXPECT_EQ(c.refusal.author.name, "Doe, Jane");
      continue;
    }
    EXPECT_TRUE(c.refusal.reason.empty()) << k.from << ": " << c.refusal.reason;
    EXPECT_EQ(c.out.envelope_from, k.want) << k.from << " " << k.pattern;
    auto p = ParseMime(c.out.mime);
    EXPECT_EQ(p->Addresses(GMIME_ADDRESS_TYPE_FROM), std::vector<std::string>{k.want});
  }
}

TEST(ToMimeAuthor, PatternThatGivesNoAddressIsARefusal) {
  ExportText x;
  x.from = "M\x81ller, J\x94rg at HUBPO2";  // CP850: Müller, Jörg
  auto c = ConvertRefusable(x, TestReverseSettings());
  ExpectRefused(c, "gives no valid address");
  EXPECT_EQ(c.refusal.author.name, "M\xC3\xBCller, J\xC3\xB6rg");
  EXPECT_EQ(c.refusal.author.post_office, "HUBPO2");
  EXPECT_EQ(c.refusal.author_address, "");
}

TEST(ToMimeAuthor, RefuseModeRefusesUnmappedAuthorsOnly) {
  ReverseSettings s = TestReverseSettings();
  s.unmapped_author = ReverseSettings::UnmappedAuthor::kRefuse;
  ExportText x;
  x.from = "Doe, Jane at HUBPO2";
  auto c = ConvertRefusable(x, s);
  ExpectRefused(c, "not in the address map");
  EXPECT_EQ(c.refusal.author.name, "Doe, Jane");
  x.from = "Smith, John at HUBPO2";
  EXPECT_EQ(ConvertRefusable(x, s).out.envelope_from, "jsmith@corp.example");
}

TEST(ToMimeAuthor, InternetAuthorThroughTheGatewayStaysTheAuthor) {
  ExportText x;
  x.from = "partner@example.net at INTERNET";
  auto c = ConvertRefusable(x, TestReverseSettings());
  EXPECT_EQ(c.out.envelope_from, "partner@example.net");
  x.from = "";
  format::ImportMessage m = ReadOne(x.Keyword(), TestReverseSettings().format, false);
  OutgoingMessage out;
  Refusal refusal;
  Status st = ConvertExportMessage(m, "HUBPO2", *TestMap(), TestReverseSettings(), &out, &refusal);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("no author"), std::string::npos) << st.ToString();
}

// --- recipients ---

TEST(ToMimeRecipients, GatewayAndForeignAliasFormsGiveTheAddress) {
  ExportText x;
  x.to = {"jdoe@example.com at INTERNET", "second@example.com at internet", "Doe, Jane <jane@foo.example> at Internet",
          "Unexpected, Sally  R  sallyu@fubar.example at INTERNET", "Roe, Rick  r  INTERNET rick@roe.example"};
  auto c = ConvertRefusable(x, TestReverseSettings());
  ASSERT_TRUE(c.refusal.reason.empty()) << c.refusal.reason;
  const std::vector<std::string> want = {"jdoe@example.com", "second@example.com", "jane@foo.example",
                                         "sallyu@fubar.example", "rick@roe.example"};
  EXPECT_EQ(c.out.recipients, want);
  EXPECT_EQ(ParseMime(c.out.mime)->Addresses(GMIME_ADDRESS_TYPE_TO), want);
  // Another gateway name.
  ReverseSettings s = TestReverseSettings();
  s.format.gateway_postoffice = "SMTPGW";
  x.to = {"a@b.example at smtpgw", "c@d.example at INTERNET"};  // INTERNET is now a cc:Mail post office
  auto c2 = ConvertRefusable(x, s);
  EXPECT_EQ(c2.out.recipients, std::vector<std::string>{"a@b.example"});
}

TEST(ToMimeRecipients, CcMailRecipientsAreNotSubmittedBccOnlyInTheEnvelope) {
  ExportText x;
  x.to = {"jdoe@example.com at INTERNET", "Garcia, Maria", "Nobody, Known at HUBPO2"};
  x.cc = {"cc@example.com at INTERNET", "Jones, Bob at BRANCHPO", "JDOE@example.com at INTERNET"};
  x.bcc = {"hidden@example.org at INTERNET", "Smith, John at HUBPO2", "cc@EXAMPLE.com at INTERNET"};
  auto c = ConvertRefusable(x, TestReverseSettings());
  ASSERT_TRUE(c.refusal.reason.empty()) << c.refusal.reason;
  // Envelope: the Internet recipients once each (without case), in order; never a cc:Mail user.
  EXPECT_EQ(c.out.recipients, (std::vector<std::string>{"jdoe@example.com", "cc@example.com", "hidden@example.org"}));
  auto p = ParseMime(c.out.mime);
  // Visible: Internet recipients and the cc:Mail users the map knows (so Reply All reaches them).
  EXPECT_EQ(p->Addresses(GMIME_ADDRESS_TYPE_TO), (std::vector<std::string>{"jdoe@example.com", "mgarcia@corp.example"}));
  EXPECT_EQ(p->Addresses(GMIME_ADDRESS_TYPE_CC), (std::vector<std::string>{"cc@example.com", "bjones@branch.example"}));
  EXPECT_EQ(p->Header("Bcc"), "");
  EXPECT_EQ(c.out.mime.find("hidden@example.org"), std::string::npos);
  EXPECT_EQ(c.out.mime.find("Nobody"), std::string::npos);
}

TEST(ToMimeRecipients, GatewayNameThatIsNotAnAddressGoesBackToTheAuthor) {
  for (const char* bad : {"John Smith at INTERNET", "jdoe@ at INTERNET", "@example.com at INTERNET",
                          "a\"b@example.com at INTERNET", "j\x81rg@example.com at INTERNET", "x@-bad-.example at INTERNET"}) {
    ExportText x;
    x.to = {"ok@example.com at INTERNET"};
    x.cc = {bad};
    auto c = ConvertRefusable(x, TestReverseSettings());
    ExpectRefused(c, "is not an Internet address");
    EXPECT_EQ(c.refusal.author_address, "jsmith@corp.example") << bad;
    EXPECT_EQ(c.refusal.author.name, "Smith, John");
  }
}

TEST(ToMimeRecipients, OnlyCcMailRecipientsIsARefusal) {
  ExportText x;
  x.to = {"Garcia, Maria"};
  ExpectRefused(ConvertRefusable(x, TestReverseSettings()), "no Internet recipient");
}

// --- the date ---

std::string DateHeader(const std::string& date, ReverseSettings s) {
  ExportText x;
  x.date = date;
  format::ImportMessage m = ReadOne(x.Keyword(), s.format, false);
  OutgoingMessage out;
  Refusal refusal;
  Status st = ConvertExportMessage(m, "HUBPO2", *TestMap(), s, &out, &refusal);
  if (!st.ok()) return "error: " + st.message();
  return ParseMime(out.mime)->Header("Date");
}

TEST(ToMimeDate, FormatsOrderPivotAndTimeZone) {
  ReverseSettings s = TestReverseSettings();
  EXPECT_EQ(DateHeader("6/2/98 8:39", s), "Tue, 2 Jun 1998 08:39:00 +0000");
  EXPECT_EQ(DateHeader("12/31/69 23:59", s), "Tue, 31 Dec 2069 23:59:00 +0000");
  EXPECT_EQ(DateHeader("1/1/70 0:00", s), "Thu, 1 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(DateHeader("2/29/2000 12:05", s), "Tue, 29 Feb 2000 12:05:00 +0000");
  EXPECT_EQ(DateHeader("5/6/97 3:10PM", s), "Tue, 6 May 1997 15:10:00 +0000");
  EXPECT_EQ(DateHeader("5/6/97 12:10 am", s), "Tue, 6 May 1997 00:10:00 +0000");
  s.year_pivot = 50;
  EXPECT_EQ(DateHeader("12/31/69 23:59", s), "Wed, 31 Dec 1969 23:59:00 +0000");
  EXPECT_EQ(DateHeader("1/1/49 1:00", s), "Fri, 1 Jan 2049 01:00:00 +0000");
  s = TestReverseSettings();
  s.format.date_format = format::DateFormat::kDmy2;
  EXPECT_EQ(DateHeader("6/2/98 8:39", s), "Fri, 6 Feb 1998 08:39:00 +0000");
  s.format.timezone = "Europe/Berlin";
  EXPECT_EQ(DateHeader("6/2/98 8:39", s), "Fri, 6 Feb 1998 08:39:00 +0100");
  EXPECT_EQ(DateHeader("6/7/98 8:39", s), "Mon, 6 Jul 1998 08:39:00 +0200");
  s.format.timezone = "America/New_York";
  EXPECT_EQ(DateHeader("6/7/98 8:39", s), "Mon, 6 Jul 1998 08:39:00 -0400");
}

TEST(ToMimeDate, UnreadableDateIsNotTheAuthorsFault) {
  ReverseSettings s = TestReverseSettings();
  for (const char* bad : {"13/2/98 8:39", "2/30/98 8:39", "6/2/98", "6/2/98 24:00", "6/2/98 8:60", "yesterday",
                          "6/2/198 8:39", "6/2/98 13:10PM", ""}) {
    EXPECT_EQ(DateHeader(bad, s).rfind("error: ", 0), 0u) << bad;
  }
  s.format.timezone = "Not/AZone";
  EXPECT_EQ(DateHeader("6/2/98 8:39", s).rfind("error: ", 0), 0u);
}

// --- subject and names ---

TEST(ToMimeSubject, CodePageToUtf8WithRfc2047) {
  ExportText x;
  x.subject = "Gr\x81\xE1" "e aus M\x81nchen";  // CP850: Grüße aus München
  x.from = "M\x81ller, Hans";
  auto map_text = std::string("hans@corp.example  M\xC3\xBCller, Hans at HUBPO2\n");
  std::shared_ptr<const format::AddressMap> map;
  ASSERT_TRUE(format::AddressMap::Parse(map_text, "m", {}, &map).ok());
  auto c = Convert(x.Keyword(), TestReverseSettings(), *map);
  auto p = ParseMime(c.out.mime);
  EXPECT_EQ(p->DecodedSubject(), "Gr\xC3\xBC\xC3\x9F" "e aus M\xC3\xBCnchen");
  EXPECT_EQ(p->FromName(), "M\xC3\xBCller, Hans");
  // On the wire: 7-bit only.
  for (unsigned char ch : c.out.mime) ASSERT_LT(ch, 0x80);
  EXPECT_NE(c.out.mime.find("Subject: =?UTF-8?B?"), std::string::npos);
  // windows-1252 reads the same letters from other bytes.
  ReverseSettings s = TestReverseSettings();
  s.format.codepage = format::CodePage::kCp1252;
  x.subject = "Gr\xFC\xDF" "e";
  x.from = "Smith, John";
  EXPECT_EQ(ParseMime(Convert(x.Keyword(), s, *map).out.mime)->DecodedSubject(), "Gr\xC3\xBC\xC3\x9F" "e");
}

TEST(ToMimeSubject, LiteralEncodedWordArrivesLiterally) {
  for (const char* literal : {"=?utf-8?q?not_encoded?=", "see =?ISO-8859-1?B?SGk=?= here", "a =? b"}) {
    ExportText x;
    x.subject = literal;
    auto p = ParseMime(ConvertRefusable(x, TestReverseSettings()).out.mime);
    EXPECT_EQ(p->DecodedSubject(), literal);
  }
  ExportText plain;
  plain.subject = "Plain ASCII (no encoding)";
  auto p = ParseMime(ConvertRefusable(plain, TestReverseSettings()).out.mime);
  EXPECT_EQ(p->Header("Subject"), "Plain ASCII (no encoding)");  // as is on the wire
}

// --- items ---

TEST(ToMimeItems, TextItemsBecomeUtf8TextPartsEmptyOnesDropped) {
  ExportText x;
  x.items = {{"Text item: ", "First line\r\nZweite Zeile: \x84\x94\x81\r\n"},
             {"Text item: blank", "   \r\n\r\n"},
             {"Text item: Notes", "Second part\r\n"}};
  auto c = ConvertRefusable(x, TestReverseSettings());
  auto p = ParseMime(c.out.mime);
  EXPECT_NE(c.out.mime.find("\r\nContent-Type: multipart/mixed"), std::string::npos) << c.out.mime;
  ASSERT_EQ(p->leaves.size(), 2u);
  EXPECT_EQ(p->leaves[0].content_type, "text/plain");
  EXPECT_EQ(p->leaves[0].charset, "utf-8");
  EXPECT_EQ(p->leaves[0].encoding, "quoted-printable");
  EXPECT_EQ(p->leaves[0].data, "First line\r\nZweite Zeile: \xC3\xA4\xC3\xB6\xC3\xBC");
  EXPECT_EQ(p->leaves[0].disposition, "");
  EXPECT_EQ(p->leaves[1].content_type, "text/plain");
  EXPECT_EQ(p->leaves[1].data, "Second part");
  EXPECT_EQ(p->leaves[1].description, "Notes");
}

std::string Hex(const std::string& bytes) {
  std::string out;
  for (size_t i = 0; i < bytes.size(); ++i) {
    out += "0123456789ABCDEF"[static_cast<unsigned char>(bytes[i]) >> 4];
    out += "0123456789ABCDEF"[static_cast<unsigned char>(bytes[i]) & 15];
    if (i % 38 == 37 || i + 1 == bytes.size()) out += "\r\n";
  }
  return out;
}

TEST(ToMimeItems, FileItemsBecomeBase64AttachmentsWithoutTheDateInTheTitle) {
  std::string binary;
  for (int i = 0; i < 256; ++i) binary.push_back(static_cast<char>(i));
  binary += "\r\n.\r\nFrom x\r\n";
  ReverseSettings s = TestReverseSettings();
  s.format.files = format::FileData::kHex;
  ExportText x;
  x.items = {{"Text item: ", "See the files.\r\n"},
             {"File item: ABC.WK4 5/6/97 3:10PM", Hex(binary)},
             {"File item: REPORT.PDF 9-11-1998", Hex("%PDF-1.4 fake")},
             {"File item: PIC.GIF 9.11.98 10:01", Hex("GIF89a")},
             {"File item: NOTES.TXT", Hex("plain\r\ntext\r\n")}};
  auto c = Convert(x.Keyword(), s, *TestMap());
  auto p = ParseMime(c.out.mime);
  ASSERT_EQ(p->leaves.size(), 5u);
  const struct { const char* name; const char* type; std::string data; } want[] = {
      {"ABC.WK4", "application/octet-stream", binary},
      {"REPORT.PDF", "application/pdf", "%PDF-1.4 fake"},
      {"PIC.GIF", "image/gif", "GIF89a"},
      {"NOTES.TXT", "text/plain", "plain\r\ntext\r\n"}};
  for (size_t i = 0; i < 4; ++i) {
    const auto& leaf = p->leaves[i + 1];
    EXPECT_EQ(leaf.filename, want[i].name);
    EXPECT_EQ(leaf.content_type, want[i].type);
    EXPECT_EQ(leaf.encoding, "base64");
    EXPECT_EQ(leaf.disposition, "attachment");
    EXPECT_EQ(leaf.data, want[i].data) << want[i].name;
  }
}

TEST(ToMimeItems, FileNameFromTitleKeepsNamesThatOnlyLookLikeDates) {
  ReverseSettings s = TestReverseSettings();
  s.format.files = format::FileData::kHex;
  s.format.long_filenames = true;
  ExportText x;
  x.items = {{"Text item: ", "x\r\n"}, {"File item: Budget 2026.xls", Hex("a")}, {"File item: 1-2-3.WK1", Hex("b")},
             {"File item: Minutes 5/6/97.doc 5/7/97 9:00", Hex("c")}};
  auto p = ParseMime(Convert(x.Keyword(), s, *TestMap()).out.mime);
  ASSERT_EQ(p->leaves.size(), 4u);
  EXPECT_EQ(p->leaves[1].filename, "Budget 2026.xls");
  EXPECT_EQ(p->leaves[2].filename, "1-2-3.WK1");
  EXPECT_EQ(p->leaves[3].filename, "Minutes 5/6/97.doc");
}

TEST(ToMimeItems, HeadersItemIsNeverReEmittedAsHeaderFields) {
  ExportText x;
  x.items = {{"Text item: ", "Reply text\r\n"},
             {"Text item: Headers",
              "Received: from a by b\r\n Subject: forged subject\r\nX-Evil: 1\r\n Bcc: leak@example.org\r\n"}};
  auto c = ConvertRefusable(x, TestReverseSettings());
  auto p = ParseMime(c.out.mime);
  EXPECT_EQ(p->DecodedSubject(), "Hello");
  EXPECT_EQ(p->Header("X-Evil"), "");
  EXPECT_EQ(p->Header("Received"), "");
  EXPECT_EQ(c.out.recipients, std::vector<std::string>{"jdoe@example.com"});
  const std::string head = c.out.mime.substr(0, c.out.mime.find("\r\n\r\n"));
  EXPECT_EQ(head.find("X-Evil"), std::string::npos);
  ASSERT_EQ(p->leaves.size(), 2u);
  EXPECT_EQ(p->leaves[1].content_type, "text/rfc822-headers");
  EXPECT_EQ(p->leaves[1].disposition, "attachment");
  EXPECT_NE(p->leaves[1].data.find("X-Evil: 1"), std::string::npos);
  // A text item merely titled "Headers" that is not a header block stays a text part.
  x.items = {{"Text item: ", "a\r\n"}, {"Text item: Headers", "just a note, no fields\r\n"}};
  auto p2 = ParseMime(ConvertRefusable(x, TestReverseSettings()).out.mime);
  ASSERT_EQ(p2->leaves.size(), 2u);
  EXPECT_EQ(p2->leaves[1].content_type, "text/plain");
}

// --- loops ---

TEST(ToMimeLoops, OwnOriginMarkerOrTooManyReceivedIsAMailLoop) {
  ExportText x;
  x.items = {{"Text item: ", "x\r\n"}, {"Text item: Headers", "Return-Path: <a@b.example>\r\nx-ccmail-bridge-origin:  BRIDGE1.corp.example \r\n"}};
  ExpectRefused(ConvertRefusable(x, TestReverseSettings()), "mail loop");
  // Another bridge's marker is not our loop.
  x.items[1].second = "Return-Path: <a@b.example>\r\nX-Ccmail-Bridge-Origin: bridge2.corp.example\r\n";
  EXPECT_TRUE(ConvertRefusable(x, TestReverseSettings()).refusal.reason.empty());
  auto received = [](int n) {
    std::string h;
    for (int i = 0; i < n; ++i) h += "Received: from hop" + std::to_string(i) + "\r\n\tby next; Tue, 2 Jun 1998 08:39:00 +0000\r\n";
    return h + "X-Mailer: x\r\n";
  };
  x.items[1].second = received(99);
  EXPECT_TRUE(ConvertRefusable(x, TestReverseSettings()).refusal.reason.empty());
  x.items[1].second = received(100);
  auto c = ConvertRefusable(x, TestReverseSettings());
  ExpectRefused(c, "mail loop: 100 Received");
  EXPECT_EQ(c.refusal.author_address, "jsmith@corp.example");
}

TEST(ToMimeLoops, EveryMessageCarriesTheOriginMarker) {
  ReverseSettings s = TestReverseSettings();
  s.origin_marker = "gw-7.example";
  auto c = ConvertRefusable(ExportText{}, s);
  EXPECT_EQ(ParseMime(c.out.mime)->Header("X-Ccmail-Bridge-Origin"), "gw-7.example");
}

// --- Message-ID ---

TEST(ToMimeMessageId, DerivedFromContentAndOrigin) {
  ReverseSettings s = TestReverseSettings();
  ExportText x;
  auto a = ConvertRefusable(x, s);
  auto b = ConvertRefusable(x, s);
  EXPECT_EQ(a.out.message_id, b.out.message_id);
  EXPECT_EQ(a.out.mime, b.out.mime);  // the same input is the same bytes
  ASSERT_EQ(a.out.message_id.size(), 1 + 32 + 1 + s.origin_marker.size() + 1);
  EXPECT_EQ(a.out.message_id.front(), '<');
  EXPECT_EQ(a.out.message_id.substr(33), "@bridge1.corp.example>");
  EXPECT_EQ(a.out.message_id.find_first_not_of("0123456789abcdef", 1), 33u);
  std::vector<std::string> ids = {a.out.message_id};
  auto differs = [&](const std::string& what, const testing::Converted& c) {
    EXPECT_EQ(std::count(ids.begin(), ids.end(), c.out.message_id), 0) << what;
    ids.push_back(c.out.message_id);
  };
  ReverseSettings other = s;
  other.origin_marker = "bridge2.corp.example";
  differs("origin", ConvertRefusable(x, other));
  differs("post office", Convert(x.Keyword(), s, *TestMap(), "BRANCHPO"));
  ExportText y = x;
  y.items[0].second = "Hi there!\r\n";
  differs("text", ConvertRefusable(y, s));
  y = x;
  y.subject = "Hello.";
  differs("subject", ConvertRefusable(y, s));
  y = x;
  y.date = "6/2/98 8:40";
  differs("date", ConvertRefusable(y, s));
  y = x;
  y.bcc = {"b@example.org at INTERNET"};
  differs("bcc", ConvertRefusable(y, s));
}

// --- both layouts, written by hand ---

TEST(ToMimeLayouts, ItemSizeLayoutWithRawFile) {
  // /ITEMSIZE counts: item = its data; Contents = every item block; Message = the header
  // lines after the count through the end of the Contents block (docs/FORMAT.md §2.3).
  const std::string text =
      "Message:\r\n"
      "207\r\n"
      "From: Smith, John at HUBPO2\r\n"         // 29
      "Date: 6/2/98 8:39\r\n"                   // 19
      "To: jdoe@example.com at INTERNET\r\n"    // 34
      "Cc: Garcia, Maria\r\n"                   // 19
      "Subject: Counted\r\n"                    // 18
      "Contents:\r\n"                           // 11
      "73\r\n"                                  // 4
      "Text item: \r\n"                         // 13
      "25\r\n"                                  // 4
      "Message:\r\nnot a keyword\r\n"           // 25
      "File item: DATA.BIN\r\n"                 // 21
      "5\r\n";                                  // 3
  const std::string bytes = text + std::string("\x00\x01\r\n\xff", 5) + "\r\n";  // 5, then raw_file_crlf
  ReverseSettings s = TestReverseSettings();
  format::ReadResult r = format::ReadImportFile(bytes, s.format, {.detect_layout = true, .exported = true});
  ASSERT_TRUE(r.itemsize);
  for (const auto& v : r.violations) ADD_FAILURE() << v.offset << ": " << v.reason;
  ASSERT_EQ(r.messages.size(), 1u);
  OutgoingMessage out;
  Refusal refusal;
  ASSERT_TRUE(ConvertExportMessage(r.messages[0], "HUBPO2", *TestMap(), s, &out, &refusal).ok());
  auto p = ParseMime(out.mime);
  EXPECT_EQ(p->DecodedSubject(), "Counted");
  ASSERT_EQ(p->leaves.size(), 2u);
  EXPECT_EQ(p->leaves[0].data, "Message:\r\nnot a keyword");
  EXPECT_EQ(p->leaves[1].filename, "DATA.BIN");
  EXPECT_EQ(p->leaves[1].data, std::string("\x00\x01\r\n\xff", 5));
  EXPECT_EQ(p->Addresses(GMIME_ADDRESS_TYPE_CC), std::vector<std::string>{"mgarcia@corp.example"});
}

TEST(ToMimeLayouts, KeywordLayoutWithHexFileAndProtectedLine) {
  const std::string text =
      "Message:\r\n"
      "From: Smith, John at HUBPO2\r\n"
      "Date: 6/2/98 8:39\r\n"
      "To: jdoe@example.com at INTERNET\r\n"
      "Subject: Keywords\r\n"
      "Contents:\r\n"
      "Text item: \r\n"
      "Body\r\n"
      " Message: protected by one space\r\n"
      "File item: DATA.BIN\r\n"
      "00010D0AFF\r\n";
  ReverseSettings s = TestReverseSettings();
  s.format.itemsize = false;
  s.format.files = format::FileData::kHex;
  format::ReadResult r = format::ReadImportFile(text, s.format, {.detect_layout = true, .exported = true});
  ASSERT_FALSE(r.itemsize);
  for (const auto& v : r.violations) ADD_FAILURE() << v.offset << ": " << v.reason;
  ASSERT_EQ(r.messages.size(), 1u);
  OutgoingMessage out;
  Refusal refusal;
  ASSERT_TRUE(ConvertExportMessage(r.messages[0], "HUBPO2", *TestMap(), s, &out, &refusal).ok());
  auto p = ParseMime(out.mime);
  ASSERT_EQ(p->leaves.size(), 2u);
  EXPECT_EQ(p->leaves[0].data, "Body\r\nMessage: protected by one space");
  EXPECT_EQ(p->leaves[1].data, std::string("\x00\x01\r\n\xff", 5));
}

// --- settings ---

TEST(ToMimeSettings, LoadReverseSettingsDefaultsAndErrors) {
  Config config;
  ASSERT_TRUE(Config::Parse("ccmail_domains = ccmail.corp.example, other.example\ntimezone = UTC\n", "test.conf", &config).ok());
  ReverseSettings s;
  Status st = LoadReverseSettings(config, &s);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(s.year_pivot, 70);
  EXPECT_EQ(s.unmapped_author, ReverseSettings::UnmappedAuthor::kPattern);
  EXPECT_EQ(s.unmapped_author_pattern, "{first}.{last}@{domain}");
  EXPECT_EQ(s.author_domain, "ccmail.corp.example");
  EXPECT_FALSE(s.origin_marker.empty());  // the host name
  EXPECT_EQ(s.format.timezone, "UTC");
  ASSERT_TRUE(Config::Parse("year_pivot = 50\nunmapped_author = refuse\nauthor_domain = corp.example\n"
                            "origin_marker = gw1.corp.example\n", "test.conf", &config).ok());
  ASSERT_TRUE(LoadReverseSettings(config, &s).ok());
  EXPECT_EQ(s.year_pivot, 50);
  EXPECT_EQ(s.unmapped_author, ReverseSettings::UnmappedAuthor::kRefuse);
  EXPECT_EQ(s.author_domain, "corp.example");
  EXPECT_EQ(s.origin_marker, "gw1.corp.example");
  const struct { const char* text; const char* error; } bad[] = {
      {"year_pivot = 101\n", "year_pivot"},
      {"unmapped_author = guess\n", "unmapped_author"},
      {"author_domain = corp.example\nunmapped_author_pattern = {first}.{last}\n", "has no '@'"},
      {"author_domain = corp.example\nunmapped_author_pattern = {first}.{middle}@{domain}\n", "unknown field"},
      {"unmapped_author_pattern = {first}@{domain}\n", "author_domain and ccmail_domains are empty"},
      {"author_domain = not a domain\n", "author_domain"},
      {"author_domain = corp.example\norigin_marker = bad marker\n", "origin_marker"},
  };
  for (const auto& b : bad) {
    ASSERT_TRUE(Config::Parse(b.text, "test.conf", &config).ok()) << b.text;
    st = LoadReverseSettings(config, &s);
    EXPECT_FALSE(st.ok()) << b.text;
    EXPECT_NE(st.message().find(b.error), std::string::npos) << st.ToString();
    EXPECT_NE(st.message().find("test.conf"), std::string::npos) << st.ToString();
  }
}

}  // namespace
}  // namespace ccmail::submitter
