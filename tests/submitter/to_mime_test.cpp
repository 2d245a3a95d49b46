// The way back, rule by rule: hand-written EXPORT text -> reader -> ConvertExportMessage ->
// the MIME parsed again with GMime.
#include "ccmail/submitter/to_mime.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace ccmail::submitter
