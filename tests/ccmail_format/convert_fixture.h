// convert_fixture.h - the converter tests' round trip: convert, then check with the reader.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "ccmail/format/converter.h"
#include "ccmail/format/reader.h"
#include "test_util.h"

namespace ccmail::format::testing {

// Converts, validates with the reader (a violation fails the test), returns the parsed messages.
inline ReadResult ConvertAndRead(const std::string& msg, const FormatSettings& s = TestSettings(),
                                 std::string* raw = nullptr, std::vector<ConvertRecipient> rcpts = DefaultRecipients(),
                                 ConvertResult* res = nullptr) {
  std::string out;
  Status st = ConvertText(msg, s, &out, std::move(rcpts), res);
  EXPECT_TRUE(st.ok()) << st.ToString();
  ReadResult r = ReadImportFile(out, s);
  EXPECT_TRUE(r.ok()) << ViolationsText(r) << "\n" << out.substr(0, 3000);
  if (raw) *raw = out;
  return r;
}

}  // namespace ccmail::format::testing
