// What the cc:Mail user reads is what was sent: one test per fidelity rule of docs/FORMAT.md.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ccmail/format/converter.h"
#include "ccmail/format/reader.h"
#include "test_util.h"

namespace ccmail::format {
namespace {

using testing::ConvertText;
using testing::DefaultRecipients;
using testing::TestSettings;
using testing::ViolationsText;

ReadResult ConvertAndRead(const std::string& msg, const FormatSettings& s = TestSettings(),
                          std::vector<ConvertRecipient> rcpts = DefaultRecipients(), ConvertResult* res = nullptr,
                          std::string* raw = nullptr) {
  std::string out;
  Status st = ConvertText(msg, s, &out, std::move(rcpts), res);
  EXPECT_TRUE(st.ok()) << st.ToString();
  ReadResult r = ReadImportFile(out, s);
  EXPECT_TRUE(r.ok()) << ViolationsText(r) << "\n" << out.substr(0, 3000);
  if (raw) *raw = out;
  return r;
}

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

}  // namespace
}  // namespace ccmail::format
