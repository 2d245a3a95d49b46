// StableNameHash must keep its values: queued notice names written by an older version depend on it.
#include "ccmail/common/name_hash.h"

#include <gtest/gtest.h>

namespace ccmail {
namespace {

TEST(StableNameHashTest, KeepsTheValuesQueuedNamesWereWrittenWith) {
  // FNV-1a 64 from the start value 1469598103934665603 (what the exporter's bounce queue and
  // the submitter's notices used when each had its own copy of this function).
  EXPECT_EQ(StableNameHash(""), "14650fb0739d0383");
  EXPECT_EQ(StableNameHash("a"), "44bd8ad473cd9906");
  EXPECT_EQ(StableNameHash("foobar"), "88fad7c0a8ff07f2");
}

TEST(StableNameHashTest, EveryByteCounts) {
  EXPECT_NE(StableNameHash("HQ\njane@example.com"), StableNameHash("HQ\njane@example.con"));
  EXPECT_NE(StableNameHash(std::string("a\0b", 3)), StableNameHash(std::string("a\0c", 3)));
  EXPECT_EQ(StableNameHash("\xff\xfe").size(), 16u);
}

}  // namespace
}  // namespace ccmail
