// Property test: generated messages -> write -> read give back the same fields,
// the text after code-page conversion, and the same attachment bytes.
#include <gtest/gtest.h>
#include <iconv.h>

#include <random>

#include "ccmail/format/rules.h"
#include "test_util.h"

namespace ccmail::format {
namespace {

using testing::ConvertText;
using testing::TestSettings;
using testing::ViolationsText;

// Independent of the writer's tables: glibc iconv, UTF-8 -> code page.
std::string IconvTo(const std::string& utf8, const char* cp) {
  iconv_t cd = iconv_open(cp, "UTF-8");
  std::string out(utf8.size() * 2 + 8, '\0');
  char* ip = const_cast<char*>(utf8.data());
  size_t il = utf8.size();
  char* op = out.data();
  size_t ol = out.size();
  size_t r = iconv(cd, &ip, &il, &op, &ol);
  iconv_close(cd);
  EXPECT_NE(r, static_cast<size_t>(-1));
  out.resize(out.size() - ol);
  return out;
}

std::string Base64(const std::string& d) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string o;
  for (size_t i = 0; i < d.size(); i += 3) {
    uint32_t v = uint8_t(d[i]) << 16;
    if (i + 1 < d.size()) v |= uint8_t(d[i + 1]) << 8;
    if (i + 2 < d.size()) v |= uint8_t(d[i + 2]);
    o += t[v >> 18];
    o += t[(v >> 12) & 63];
    o += i + 1 < d.size() ? t[(v >> 6) & 63] : '=';
    o += i + 2 < d.size() ? t[v & 63] : '=';
    if (o.size() % 77 == 76) o += "\n";
  }
  return o + "\n";
}

TEST(RoundTrip, GeneratedMessagesSurviveWriteAndRead) {
  // Characters every supported code page has, so the expected text is exact.
  const std::vector<std::string> alphabet = {"a", "b", "Z", "0", " ", ".", ",", "-", "\xC3\xA9", "\xC3\xBC", "\xC3\x84",
                                             "\xC3\x9F", "\xC3\xB1", "\xC3\xA7", "Message:", "Text item:", "To: x"};
  std::mt19937 rng(20261124);
  const int kMessages = 150;
  for (int n = 0; n < kMessages; ++n) {
    FormatSettings s = TestSettings();
    s.itemsize = rng() % 3 != 0;
    s.files = (!s.itemsize || rng() % 2) ? FileData::kHex : FileData::kRaw;
    s.codepage = rng() % 2 ? CodePage::kCp850 : CodePage::kCp1252;
    s.date_format = static_cast<DateFormat>(rng() % 4);
    // Body: random lines of random "words", some keyword-looking.
    std::string body;
    const int lines = 1 + static_cast<int>(rng() % 40);
    for (int l = 0; l < lines; ++l) {
      const int words = static_cast<int>(rng() % 12);
      for (int w = 0; w < words; ++w) body += alphabet[rng() % alphabet.size()];
      if (body.empty() || body.back() == '\n') body += "x";
      body += "\n";
    }
    std::string subject = "S";  // at most 41 bytes: one encoded word on one line
    for (int w = 0; w < static_cast<int>(rng() % 20); ++w) subject += alphabet[rng() % 13];
    // Attachments of random bytes.
    std::vector<std::string> files(rng() % 4);
    for (std::string& f : files) {
      f.resize(rng() % 5000);
      for (char& c : f) c = static_cast<char>(rng());
    }
    std::string msg = "From: Gen <gen@partner.example>\nTo: jsmith@ccmail.corp.example\nCc: mgarcia@ccmail.corp.example\n"
                      "Subject: =?UTF-8?B?" + Base64(subject).substr(0, Base64(subject).size() - 1) + "?=\n"
                      "Date: Tue, 24 Nov 2026 09:31:00 +0000\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=RT\n\n"
                      "--RT\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n" + body;
    for (size_t i = 0; i < files.size(); ++i)
      msg += "--RT\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"f" + std::to_string(i) +
             ".bin\"\nContent-Transfer-Encoding: base64\n\n" + Base64(files[i]);
    msg += "--RT--\n";

    std::string out;
    ASSERT_TRUE(ConvertText(msg, s, &out).ok()) << msg;
    ReadResult r = ReadImportFile(out, s);
    ASSERT_TRUE(r.ok()) << ViolationsText(r) << out;
    ASSERT_EQ(r.messages.size(), 1u);
    const ImportMessage& m = r.messages[0];
    EXPECT_EQ(m.to, std::vector<std::string>{"Smith, John"});
    EXPECT_EQ(m.cc, std::vector<std::string>{"Garcia, Maria"});
    EXPECT_EQ(m.from, "gen@partner.example at INTERNET");
    EXPECT_EQ(m.date, FormatCcDate(1795512660, s));  // 2026-11-24 09:31 UTC
    const char* cp = s.codepage == CodePage::kCp850 ? "IBM850" : "WINDOWS-1252";
    std::string want_subject = IconvTo(subject, cp);
    // CleanSubject collapses spaces and trims; compare on that basis.
    std::string collapsed;
    for (char c : want_subject) if (!(c == ' ' && (collapsed.empty() || collapsed.back() == ' '))) collapsed.push_back(c);
    if (collapsed.size() > 60) collapsed.resize(60);
    while (!collapsed.empty() && collapsed.back() == ' ') collapsed.pop_back();
    EXPECT_EQ(m.subject, collapsed);
    std::string want_body;
    for (size_t p = 0; p < body.size();) { size_t e = body.find('\n', p); want_body += IconvTo(body.substr(p, e - p), cp) + "\r\n"; p = e + 1; }
    ASSERT_EQ(m.items.size(), 1 + files.size() + 1);
    EXPECT_EQ(m.items[0].data, want_body);
    for (size_t i = 0; i < files.size(); ++i) {
      EXPECT_EQ(m.items[1 + i].title, "F" + std::to_string(i) + ".BIN");
      EXPECT_EQ(m.items[1 + i].data, files[i]) << "attachment " << i << " of message " << n;
    }
    EXPECT_EQ(m.items.back().title, "Headers");
  }
}

}  // namespace
}  // namespace ccmail::format
