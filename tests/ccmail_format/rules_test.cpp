// One test per uncertain rule of rules.h, plus the settings loader.
#include "ccmail/format/rules.h"

#include <gtest/gtest.h>

#include "ccmail/config/config.h"
#include "test_util.h"

namespace ccmail::format {
namespace {

using testing::TestSettings;

TEST(ItemSizeCount, CountsExactlyTheSection) {
  EXPECT_EQ(ItemSizeCount(0), 0u);
  EXPECT_EQ(ItemSizeCount(26), 26u);
}

TEST(KeywordProtection, ProtectsKeywordLookingLinesOnly) {
  EXPECT_TRUE(NeedsKeywordProtection("Message:"));
  EXPECT_TRUE(NeedsKeywordProtection("message: lower"));
  EXPECT_TRUE(NeedsKeywordProtection("  Contents:"));
  EXPECT_TRUE(NeedsKeywordProtection("Text item: x"));
  EXPECT_TRUE(NeedsKeywordProtection("File item: EVIL.EXE"));
  EXPECT_TRUE(NeedsKeywordProtection("Fax item:"));
  EXPECT_TRUE(NeedsKeywordProtection("\tMessage:"));
  EXPECT_TRUE(NeedsKeywordProtection("To: someone"));
  EXPECT_TRUE(NeedsKeywordProtection("bcc: someone"));
  EXPECT_FALSE(NeedsKeywordProtection("Tom: someone"));
  EXPECT_FALSE(NeedsKeywordProtection("The message: hello"));
  EXPECT_FALSE(NeedsKeywordProtection("item: alone"));
  EXPECT_FALSE(NeedsKeywordProtection(""));
}

TEST(Dates, FormatsLikeTheExchangeSamples) {
  FormatSettings s = TestSettings();
  // 1998-06-02 08:39 UTC (KB184052) and 1998-02-10 11:28 (KB181186).
  EXPECT_EQ(FormatCcDate(896776740, s), "6/2/98 8:39");
  EXPECT_EQ(FormatCcDate(887110080, s), "2/10/98 11:28");
  s.date_format = DateFormat::kMdy4;
  EXPECT_EQ(FormatCcDate(896776740, s), "6/2/1998 8:39");
  s.date_format = DateFormat::kDmy2;
  EXPECT_EQ(FormatCcDate(896776740, s), "2/6/98 8:39");
  s.date_format = DateFormat::kDmy4;
  EXPECT_EQ(FormatCcDate(946684800, s), "1/1/2000 0:00");
  s.date_format = DateFormat::kMdy2;
  EXPECT_EQ(FormatCcDate(946684800, s), "1/1/00 0:00");  // Y2K: two digits, zero padded
}

TEST(Dates, UsesThePostOfficeTimeZone) {
  FormatSettings s = TestSettings();
  s.timezone = "Europe/Berlin";
  EXPECT_EQ(FormatCcDate(896776740, s), "6/2/98 10:39");  // CEST = UTC+2
  s.timezone = "America/New_York";
  EXPECT_EQ(FormatCcDate(896776740, s), "6/2/98 4:39");
}

TEST(Dates, ParseIsTheInverseAndStrict) {
  FormatSettings s = TestSettings();
  for (DateFormat f : {DateFormat::kMdy2, DateFormat::kMdy4, DateFormat::kDmy2, DateFormat::kDmy4}) {
    s.date_format = f;
    for (time_t t : {896776740L, 946684800L, 1795000000L}) {
      auto back = ParseCcDate(FormatCcDate(t, s), s);
      ASSERT_TRUE(back.has_value());
      EXPECT_EQ(*back, t - t % 60);
    }
  }
  s.date_format = DateFormat::kMdy2;
  EXPECT_FALSE(ParseCcDate("13/2/98 8:39", s));
  EXPECT_FALSE(ParseCcDate("2/30/98 8:39", s));
  EXPECT_FALSE(ParseCcDate("6/2/1998 8:39", s));
  EXPECT_FALSE(ParseCcDate("6/2/98 8:39 PM", s));
  EXPECT_FALSE(ParseCcDate("6/2/98 24:00", s));
  EXPECT_FALSE(ParseCcDate("6/2/98 8:9", s));
  EXPECT_FALSE(ParseCcDate("", s));
}

TEST(Recipients, LocalPostOfficeIsBareOthersGetAt) {
  FormatSettings s = TestSettings();
  EXPECT_EQ(FormatRecipient({"Smith, John", "HUBPO2"}, s), "Smith, John");
  EXPECT_EQ(FormatRecipient({"Smith, John", "hubpo2"}, s), "Smith, John");
  EXPECT_EQ(FormatRecipient({"Admin", "OTHERPO"}, s), "Admin at OTHERPO");
  EXPECT_EQ(FormatRecipient({"Evil\r\nTo: X", "PO"}, s), "Evil??To: X at PO");
}

TEST(Sender, AddressAtGatewayWithoutCommasQuotesOrSpaces) {
  FormatSettings s = TestSettings();
  EXPECT_EQ(FormatSender("jdoe@example.com", s), "jdoe@example.com at INTERNET");
  EXPECT_EQ(FormatSender("<jdoe@example.com>", s), "jdoe@example.com at INTERNET");
  EXPECT_EQ(FormatSender("", s), "MAILER-DAEMON at INTERNET");
  EXPECT_EQ(FormatSender("\"Doe, John at X\"@example.com", s), "Doe._John_at_X@example.com at INTERNET");
  EXPECT_EQ(FormatSender("a\r\nMessage:@x", s), "a__Message:@x at INTERNET");
  s.uppercase_sender = true;
  s.gateway_postoffice = "PMDF";
  EXPECT_EQ(FormatSender("service@example.com", s), "SERVICE@EXAMPLE.COM at PMDF");
}

TEST(Subject, OneLineBracketsAndLength) {
  FormatSettings s = TestSettings();
  EXPECT_EQ(CleanSubject("Hi\r\nMessage:\r\nTo: Evil", s), "Hi Message: To: Evil");
  EXPECT_EQ(CleanSubject("[EXT] Re: [list] x", s), "(EXT) Re: (list) x");
  EXPECT_EQ(CleanSubject(std::string(100, 'a'), s), std::string(60, 'a'));
  EXPECT_EQ(CleanSubject(std::string_view("a\0b\x1a" "c", 5), s), "a b c");
  EXPECT_EQ(CleanSubject("Gr\xC3\xBC\xC3\x9F" "e \xE2\x82\xAC", s), "Gr\x81\xE1" "e ?");  // CP850 (not 858): no euro
  s.codepage = CodePage::kCp437;
  EXPECT_EQ(CleanSubject("\xE2\x82\xAC", s), "?");  // no euro in CP437
  s.codepage = CodePage::kCp1252;
  EXPECT_EQ(CleanSubject("\xE2\x82\xAC", s), "\x80");
  s.subject_brackets = false;
  EXPECT_EQ(CleanSubject("[x]", s), "[x]");
  EXPECT_EQ(CleanSubject("   padded   subject   ", s), "padded subject");
}

TEST(FileNames, Sanitised83UniqueAndNoDevices) {
  FormatSettings s = TestSettings();
  std::set<std::string> used;
  EXPECT_EQ(DosFileName("invoice.pdf", "application/pdf", s, &used), "INVOICE.PDF");
  EXPECT_EQ(DosFileName("invoice.pdf", "application/pdf", s, &used), "INVOIC~1.PDF");
  EXPECT_EQ(DosFileName("INVOICE.PDF", "application/pdf", s, &used), "INVOIC~2.PDF");
  EXPECT_EQ(DosFileName("../../etc/passwd", "text/plain", s, &used), "PASSWD.TXT");
  EXPECT_EQ(DosFileName("C:\\dir\\evil.exe", "", s, &used), "EVIL.EXE");
  EXPECT_EQ(DosFileName("CON.txt", "text/plain", s, &used), "_CON.TXT");
  EXPECT_EQ(DosFileName("lpt1", "application/octet-stream", s, &used), "_LPT1.BIN");
  EXPECT_EQ(DosFileName("com9.doc", "", s, &used), "_COM9.DOC");
  EXPECT_EQ(DosFileName("..", "application/pdf", s, &used), "ATTACH.PDF");
  EXPECT_EQ(DosFileName("", "image/gif", s, &used), "ATTACH.GIF");
  EXPECT_EQ(DosFileName("Quarterly Report 2026.docx", "", s, &used), "QUARTERL.DOC");
  EXPECT_EQ(DosFileName("na\xC3\xAFve.txt", "", s, &used), "NA_VE.TXT");
  EXPECT_EQ(DosFileName("noext", "image/png", s, &used), "NOEXT.PNG");
  s.mime_type_map["application/x-foo"] = "FOO";
  EXPECT_EQ(DosFileName("data", "application/x-foo", s, &used), "DATA.FOO");
  s.long_filenames = true;
  EXPECT_EQ(DosFileName("Quarterly Report 2026.docx", "", s, &used), "Quarterly Report 2026.DOCX");
  std::set<std::string> fresh;
  EXPECT_EQ(DosFileName("con", "text/plain", s, &fresh), "_con.TXT");
  for (const std::string& n : used) EXPECT_FALSE(IsDosDeviceName(n)) << n;
}

TEST(FileNames, DeviceNameDetection) {
  for (const char* d : {"CON", "con.txt", "PRN", "AUX.X", "NUL", "COM1", "LPT9.DAT", "CLOCK$"}) EXPECT_TRUE(IsDosDeviceName(d)) << d;
  for (const char* d : {"CONS", "COM0", "LPT10", "NULL.TXT", "ACON"}) EXPECT_FALSE(IsDosDeviceName(d)) << d;
}

TEST(MimeTypes, BuiltInAndAdministratorMap) {
  FormatSettings s = TestSettings();
  EXPECT_EQ(ExtensionForMimeType("IMAGE/GIF", s), "GIF");
  EXPECT_EQ(ExtensionForMimeType("application/postscript; x=y", s), "PS");
  EXPECT_EQ(ExtensionForMimeType("text/x-whatever", s), "TXT");
  EXPECT_EQ(ExtensionForMimeType("application/x-unknown", s), "DAT");
  s.mime_type_map["application/x-unknown"] = "UNK";
  EXPECT_EQ(ExtensionForMimeType("application/x-unknown", s), "UNK");
}

TEST(MimeTypes, TheWayBackReversesTheMap) {
  FormatSettings s;
  EXPECT_EQ(MimeTypeForExtension("GIF", s), "image/gif");
  EXPECT_EQ(MimeTypeForExtension("pdf", s), "application/pdf");
  EXPECT_EQ(MimeTypeForExtension("TXT", s), "text/plain");  // the first type of TXT, not text/enriched
  EXPECT_EQ(MimeTypeForExtension("DOC", s), "application/msword");
  EXPECT_EQ(MimeTypeForExtension("DAT", s), "application/octet-stream");
  EXPECT_EQ(MimeTypeForExtension("EML", s), "application/octet-stream");
  EXPECT_EQ(MimeTypeForExtension("XYZ", s), "application/octet-stream");
  EXPECT_EQ(MimeTypeForExtension("", s), "application/octet-stream");
  s.mime_type_map["application/x-foo"] = "FOO";
  s.mime_type_map["image/x-special-gif"] = "GIF";  // the administrator's rule comes first
  EXPECT_EQ(MimeTypeForExtension("foo", s), "application/x-foo");
  EXPECT_EQ(MimeTypeForExtension("GIF", s), "image/x-special-gif");
  // Every built-in type whose extension is reversed comes back to a type of that extension.
  FormatSettings plain;
  for (const char* type : {"image/png", "application/zip", "text/html", "audio/mpeg", "video/mp4"})
    EXPECT_EQ(ExtensionForMimeType(MimeTypeForExtension(ExtensionForMimeType(type, plain), plain), plain),
              ExtensionForMimeType(type, plain)) << type;
}

TEST(Settings, DefaultsMatchTheDecidedTable) {
  Config cfg;
  FormatSettings fs;
  ASSERT_TRUE(LoadFormatSettings(cfg, &fs).ok());
  EXPECT_TRUE(fs.itemsize);
  EXPECT_EQ(fs.codepage, CodePage::kCp850);
  EXPECT_EQ(fs.date_format, DateFormat::kMdy2);
  EXPECT_EQ(fs.gateway_postoffice, "INTERNET");
  EXPECT_EQ(fs.header_limit, 4000u);
  EXPECT_EQ(fs.subject_max, 60u);
  EXPECT_EQ(fs.text_item_max, 20000u);
  EXPECT_EQ(fs.max_items, 20u);
  EXPECT_EQ(fs.files, FileData::kRaw);
  EXPECT_TRUE(fs.headers_item);
}

TEST(Settings, ErrorsNameFileAndLine) {
  Config cfg;
  ASSERT_TRUE(Config::Parse("itemsize = yes\ncodepage = 1252\nmime_type_map = application/x-foo FOO, text/x-bar BAR\n"
                            "date_format = dmy4\ntimezone = Europe/Berlin\n", "/etc/t.conf", &cfg).ok());
  FormatSettings fs;
  ASSERT_TRUE(LoadFormatSettings(cfg, &fs).ok());
  EXPECT_EQ(fs.codepage, CodePage::kCp1252);
  EXPECT_EQ(fs.date_format, DateFormat::kDmy4);
  EXPECT_EQ(fs.mime_type_map.at("text/x-bar"), "BAR");

  struct Case { const char* text; const char* expect; };
  for (const Case& c : {Case{"x = 1\n", ""}, Case{"\ncodepage = 1251\n", "/etc/t.conf:2"},
                        Case{"timezone = Mars/Base\n", "/etc/t.conf:1: timezone"},
                        Case{"mime_type_map = application/x-foo\n", "/etc/t.conf:1: mime_type_map"},
                        Case{"mime_type_map = nonsense FOO\n", "not a MIME type"},
                        Case{"itemsize = no\n", "files"},
                        Case{"header_limit = 100\n", "/etc/t.conf:1"},
                        Case{"gateway_postoffice = A,B\n", "/etc/t.conf:1: gateway_postoffice"}}) {
    Config bad;
    Status ps = Config::Parse(c.text, "/etc/t.conf", &bad);
    if (!ps.ok()) continue;  // unknown setting names are the config parser's business
    Status s = LoadFormatSettings(bad, &fs);
    EXPECT_FALSE(s.ok()) << c.text;
    EXPECT_NE(s.message().find(c.expect), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace ccmail::format
