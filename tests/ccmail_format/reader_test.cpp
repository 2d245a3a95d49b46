// The reader/validator: the KB184052 sample with counts by our rule, and damaged variants.
#include "ccmail/format/reader.h"

#include <gtest/gtest.h>

#include "ccmail/format/rules.h"
#include "test_util.h"

namespace ccmail::format {
namespace {

using testing::ViolationsText;

FormatSettings Kb() {
  FormatSettings s;
  s.timezone = "UTC";
  return s;
}

// KB184052's sample, its byte counts recomputed with ItemSizeCount().
std::string Kb184052() {
  const std::string item = "This is the message body\r\n";
  const std::string contents = "Text item:\r\n" + std::to_string(ItemSizeCount(item.size())) + "\r\n" + item;
  const std::string body = "From: Grewal, Jeff at Hub\r\nDate: 6/2/98 8:39\r\nTo: Admin at HUBPO2\r\nSubject: Another message\r\n"
                           "Contents:\r\n" + std::to_string(ItemSizeCount(contents.size())) + "\r\n" + contents;
  return "Message:\r\n" + std::to_string(ItemSizeCount(body.size())) + "\r\n" + body;
}

TEST(Reader, AcceptsTheKb184052Sample) {
  const std::string f = Kb184052();
  EXPECT_EQ(f.substr(0, 14), "Message:\r\n150\r");  // 179/58/32 in the KB were hand-edited; ours: 150/42/26
  ReadResult r = ReadImportFile(f, Kb());
  ASSERT_TRUE(r.ok()) << ViolationsText(r);
  ASSERT_EQ(r.messages.size(), 1u);
  const ImportMessage& m = r.messages[0];
  EXPECT_EQ(m.from, "Grewal, Jeff at Hub");
  EXPECT_EQ(m.date, "6/2/98 8:39");
  EXPECT_EQ(m.to, std::vector<std::string>{"Admin at HUBPO2"});
  EXPECT_EQ(m.subject, "Another message");
  ASSERT_EQ(m.items.size(), 1u);
  EXPECT_EQ(m.items[0].title, "");
  EXPECT_EQ(m.items[0].data, "This is the message body\r\n");
  // Two messages back to back.
  r = ReadImportFile(f + f, Kb());
  EXPECT_TRUE(r.ok()) << ViolationsText(r);
  EXPECT_EQ(r.messages.size(), 2u);
  // Auto-detected layout.
  ReadOptions o;
  o.detect_layout = true;
  FormatSettings s = Kb();
  s.itemsize = false;
  r = ReadImportFile(f, s, o);
  EXPECT_TRUE(r.itemsize);
  EXPECT_TRUE(r.ok()) << ViolationsText(r);
}

TEST(Reader, TheKbCountsThemselvesAreRejected) {
  std::string f = Kb184052();
  f.replace(10, 3, "179");
  ReadResult r = ReadImportFile(f, Kb());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.violations[0].offset, 15u);
  EXPECT_NE(r.violations[0].reason.find("Message: count 179 but the message takes 150 bytes"), std::string::npos) << ViolationsText(r);
}

struct Damage {
  const char* name;
  std::string (*apply)(std::string);
  const char* reason;
  long offset;  // -1: do not check
};

std::string Replace(std::string s, const std::string& a, const std::string& b) {
  size_t p = s.find(a);
  if (p == std::string::npos) std::abort();
  return s.replace(p, a.size(), b);
}

TEST(Reader, RejectsDamagedVariantsWithOffsetAndReason) {
  const std::string good = Kb184052();
  const long from = static_cast<long>(good.find("From:"));
  const long item = static_cast<long>(good.find("Text item:"));
  const long data = static_cast<long>(good.find("This is"));
  const Damage cases[] = {
      {"bare LF", [](std::string s) { return Replace(s, "Subject: Another message\r\n", "Subject: Another message\n"); }, "does not end in CRLF", -1},
      {"no Contents", [](std::string s) { return Replace(s, "Contents:\r\n42\r\n", ""); }, "no Contents:", -1},
      {"no From", [](std::string s) { return Replace(s, "From: Grewal, Jeff at Hub\r\n", ""); }, "has no From:", -1},
      {"no recipient", [](std::string s) { return Replace(s, "To: Admin at HUBPO2\r\n", ""); }, "no To:, Cc: or Bcc:", -1},
      {"bad date", [](std::string s) { return Replace(s, "6/2/98 8:39", "2 June 1998"); }, "Date:", -1},
      {"order", [](std::string s) { return Replace(s, "To: Admin at HUBPO2\r\nSubject: Another message\r\n", "Subject: Another message\r\nTo: Admin at HUBPO2\r\n"); }, "out of order", -1},
      {"unknown keyword", [](std::string s) { return Replace(s, "To: Admin", "Xo: Admin"); }, "unknown header line", -1},
      {"item count short", [](std::string s) { return Replace(s, "Text item:\r\n26\r\n", "Text item:\r\n20\r\n"); }, "does not end at a keyword line", -1},
      {"item count long", [](std::string s) { return Replace(s, "Text item:\r\n26\r\n", "Text item:\r\n99\r\n"); }, "runs past the end", -1},
      {"no count", [](std::string s) { return Replace(s, "Text item:\r\n26\r\n", "Text item:\r\n"); }, "expected the byte count of Text item:", -1},
      {"contents count", [](std::string s) { return Replace(s, "Contents:\r\n42", "Contents:\r\n41"); }, "Contents: count 41", -1},
      {"CTRL-Z", [](std::string s) { return Replace(s, "message body", "message\x1a" "body"); }, "CTRL-Z", -1},
      {"NUL", [](std::string s) { return Replace(s, "Another message", std::string("Another\0message", 15)); }, "NUL byte", -1},
      {"trailing ^Z", [](std::string s) { return s + "\x1a"; }, "ends with CTRL-Z", -1},
      {"brackets", [](std::string s) { return Replace(s, "Another message", "[Another] msg  "); }, "[ or ]", -1},
      {"no item", [](std::string s) { return Replace(s, "Contents:\r\n42\r\nText item:\r\n26\r\nThis is the message body\r\n", "Contents:\r\n0\r\n"); }, "has no item", -1},
      {"garbage first", [](std::string s) { return "Hello\r\n" + s; }, "expected \"Message:\"", 0},
  };
  for (const Damage& d : cases) {
    std::string f = d.apply(good);
    ReadResult r = ReadImportFile(f, Kb());
    ASSERT_FALSE(r.ok()) << d.name;
    bool found = false;
    for (const Violation& v : r.violations)
      if (v.reason.find(d.reason) != std::string::npos && (d.offset < 0 || static_cast<long>(v.offset) == d.offset)) found = true;
    EXPECT_TRUE(found) << d.name << ":\n" << ViolationsText(r);
    for (const Violation& v : r.violations) EXPECT_LE(v.offset, f.size()) << d.name;
  }
  (void)from; (void)item; (void)data;
}

TEST(Reader, OffsetsPointAtTheProblem) {
  std::string f = Kb184052();
  const size_t date = f.find("6/2/98");
  f.replace(date, 6, "6/2/9x");
  ReadResult r = ReadImportFile(f, Kb());
  ASSERT_EQ(r.violations.size(), 1u) << ViolationsText(r);
  EXPECT_EQ(r.violations[0].offset, f.find("Date:"));
}

TEST(Reader, FileItemRules) {
  auto build = [](const std::string& name, const std::string& data) {
    std::string items = "Text item:\r\n5\r\nabc\r\nFile item: " + name + "\r\n" + std::to_string(data.size()) + "\r\n" + data + "\r\n";
    std::string body = "From: a@b at INTERNET\r\nDate: 6/2/98 8:39\r\nTo: X\r\nSubject: s\r\nContents:\r\n" + std::to_string(items.size()) + "\r\n" + items;
    return "Message:\r\n" + std::to_string(body.size()) + "\r\n" + body;
  };
  ReadResult r = ReadImportFile(build("DATA.BIN", std::string("\0\x1a\r\nMessage:\r\n", 14)), Kb());
  EXPECT_TRUE(r.ok()) << ViolationsText(r);
  EXPECT_EQ(r.messages[0].items[1].data, std::string("\0\x1a\r\nMessage:\r\n", 14));
  for (const char* bad : {"CON.TXT", "../X.TXT", "lower.txt", "TOOLONGNAME.TXT", "A.B.C"}) {
    r = ReadImportFile(build(bad, "x"), Kb());
    EXPECT_FALSE(r.ok()) << bad;
  }
}

TEST(Reader, KeywordLayoutAndHexFiles) {
  FormatSettings s = Kb();
  s.itemsize = false;
  s.files = FileData::kHex;
  const std::string f =
      "Message:\r\nFrom: a@b at INTERNET\r\nDate: 6/2/98 8:39\r\nTo: X\r\nSubject: s\r\nContents:\r\n"
      "Text item:\r\nline\r\n Message:\r\n  Text item: y\r\n"
      "File item: A.BIN\r\n00FF1A0D\r\n";
  ReadResult r = ReadImportFile(f, s);
  ASSERT_TRUE(r.ok()) << ViolationsText(r);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].items[0].data, "line\r\nMessage:\r\n Text item: y\r\n");
  EXPECT_EQ(r.messages[0].items[1].data, std::string("\0\xff\x1a\r", 4));
  r = ReadImportFile(Replace(f, "00FF1A0D", "00ff1g"), s);
  EXPECT_FALSE(r.ok());
  // An unprotected keyword line inside text starts a new (broken) message.
  r = ReadImportFile(Replace(f, " Message:\r\n", "Message:\r\n"), s);
  EXPECT_FALSE(r.ok());
}

TEST(Reader, ExportedFilesKeepEveryReaderRuleButOurWritersOwn) {
  // What cc:Mail EXPORT writes and our writer never does: a bare local author, a date and time
  // after the file name, a long subject with brackets, lower-case hex.
  const std::string text =
      "Message:\r\nFrom: Smith, John\r\nDate: 6/2/98 8:39\r\nTo: jdoe@example.com at INTERNET\r\n"
      "Subject: [Budget] a subject that is longer than the sixty characters our writer keeps\r\n"
      "Contents:\r\nText item: \r\nSee attached\r\nFile item: ABC.WK4 5/6/97 3:10PM\r\n0a0bff\r\n";
  FormatSettings s;
  s.itemsize = false;
  s.files = FileData::kHex;
  ReadResult strict = ReadImportFile(text, s, {});
  EXPECT_EQ(strict.violations.size(), 6u) << ViolationsText(strict);  // From, subject x2, file name x2, hex
  ReadResult exported = ReadImportFile(text, s, {.exported = true});
  EXPECT_TRUE(exported.ok()) << ViolationsText(exported);
  ASSERT_EQ(exported.messages.size(), 1u);
  EXPECT_EQ(exported.messages[0].from, "Smith, John");
  ASSERT_EQ(exported.messages[0].items.size(), 2u);
  EXPECT_EQ(exported.messages[0].items[1].title, "ABC.WK4 5/6/97 3:10PM");
  EXPECT_EQ(exported.messages[0].items[1].data, "\x0a\x0b\xff");
  // The rules every file follows still hold: an empty From, a missing Contents.
  ReadResult broken = ReadImportFile("Message:\r\nFrom: \r\nDate: 6/2/98 8:39\r\nTo: x at INTERNET\r\nSubject: s\r\n", s,
                                     {.exported = true});
  EXPECT_FALSE(broken.ok());
  EXPECT_NE(ViolationsText(broken).find("From: is empty"), std::string::npos) << ViolationsText(broken);
}

TEST(Reader, GarbageNeverCrashesAndIsReported) {
  for (const std::string& g : {std::string(""), std::string("\r\n"), std::string("Message:"), std::string("Message:\r\n99999999999\r\n"),
                               std::string("Message:\r\n5\r\nFrom:"), std::string(1000, '\0')}) {
    ReadResult r = ReadImportFile(g, Kb());
    EXPECT_FALSE(r.ok());
  }
}

}  // namespace
}  // namespace ccmail::format
