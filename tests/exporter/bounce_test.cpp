#include "ccmail/exporter/bounce.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ccmail/format/converter.h"

namespace ccmail::exporter {
namespace {

namespace fs = std::filesystem;

std::string Slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void Spit(const std::string& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

ManifestEntry Entry(char c, std::string rcpt, std::string sender) {
  return {std::string(32, c), std::string(64, c), std::move(rcpt), std::move(sender)};
}

TEST(MatchUndeliverableTest, MatchesInBatchOrderAndCountsStrays) {
  format::ImportMessage a, b, stray;
  a.to = {"Doe, Jane"};
  a.subject = "first";
  b.cc = {"Doe, Jane at HQ"};
  b.subject = "second";
  stray.to = {"Doe, Janet at HQ"};
  std::vector<ManifestEntry> man{Entry('1', "Doe, Jane", "x@a.example"), Entry('2', "Roe, Rick", "y@b.example"),
                                 Entry('3', "Doe, Jane", "z@c.example")};
  size_t unmatched = 0;
  auto t = MatchUndeliverable({a, stray, b}, man, &unmatched);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].delivery.sender, "x@a.example");
  EXPECT_EQ(t[0].subject, "first");
  EXPECT_EQ(t[1].delivery.sender, "z@c.example");
  EXPECT_EQ(unmatched, 1u);
}

// End to end: a real import file made by the converter serves as the .UND; a fake
// sendmail captures argv and the notice.
TEST(BounceTest, UndFileLeadsToOneBouncePerUndeliverableDelivery) {
  char tmpl[] = "/tmp/ccmail-bounce-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  const char* src = std::getenv("CCMAIL_SOURCE_DIR");
  std::string eml = std::string(src ? src : CCMAIL_TEST_SOURCE_DIR) + "/tests/corpus/01-plain-ascii.eml";
  int fd = ::open(eml.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << eml;
  struct stat st;
  ASSERT_EQ(::fstat(fd, &st), 0);
  format::FormatSettings settings;
  format::Converter conv(settings);
  format::ConvertInput in;
  in.fd = fd;
  in.length = static_cast<uint64_t>(st.st_size);
  in.envelope_sender = "bob@partner.example";
  in.recipients = {{"jane@corp.example", {"Doe, Jane", "HQ"}}};
  in.received = 1700000000;
  format::StringSink sink;
  format::ConvertResult cr;
  Status cs = conv.Convert(in, &sink, &cr);
  ::close(fd);
  ASSERT_TRUE(cs.ok()) << cs.message();
  Spit(dir + "/00100001.UND", sink.str());
  Spit(dir + "/00100001.MAN",
       FormatManifest(1, 1, "HQ", "00100001.CCM",
                      {Entry('a', "Roe, Rick", "other@x.example"), Entry('b', "Doe, Jane", "bob@partner.example")}));
  Spit(dir + "/sendmail", "#!/bin/sh\necho \"$@\" >> " + dir + "/argv\ncat >> " + dir + "/mail\n");
  ASSERT_EQ(::chmod((dir + "/sendmail").c_str(), 0755), 0);

  int bounced = 0;
  size_t unmatched = 0;
  Status s = BounceUndeliverable(dir + "/00100001.UND", dir + "/00100001.MAN", "HQ", dir + "/sendmail", settings,
                                 &bounced, &unmatched);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(bounced, 1);
  EXPECT_EQ(unmatched, 0u);
  EXPECT_EQ(Slurp(dir + "/argv"), "-oi -f <> -- bob@partner.example\n");
  std::string mail = Slurp(dir + "/mail");
  EXPECT_NE(mail.find("To: <bob@partner.example>"), std::string::npos) << mail;
  EXPECT_NE(mail.find("Doe, Jane"), std::string::npos);
  EXPECT_NE(mail.find("Corpus message"), std::string::npos);
  EXPECT_NE(mail.find(std::string(32, 'b')), std::string::npos);

  // A failing sendmail is reported, so the caller retries.
  Spit(dir + "/sendmail", "#!/bin/sh\ncat >/dev/null\nexit 75\n");
  s = BounceUndeliverable(dir + "/00100001.UND", dir + "/00100001.MAN", "HQ", dir + "/sendmail", settings, &bounced,
                          &unmatched);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(bounced, 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ccmail::exporter
