// The wall clock helpers read the same clock as std::chrono::system_clock, in ns and ms.
#include "ccmail/common/clock.h"

#include <gtest/gtest.h>

#include <chrono>

namespace ccmail {
namespace {

int64_t SystemClockMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch()).count();
}

TEST(Clock, WallClockIsTheSystemClockSinceTheEpoch) {
  const int64_t before = SystemClockMs();
  const int64_t ms = WallClockMs();
  const uint64_t ns = WallClockNs();
  const int64_t after = SystemClockMs();
  EXPECT_LE(before, ms);
  EXPECT_LE(ms, after);
  EXPECT_GE(static_cast<int64_t>(ns / 1000000u), ms);
  EXPECT_LE(static_cast<int64_t>(ns / 1000000u), after);
  EXPECT_GT(ms, int64_t{1600000000000});  // after 2020: epoch-based, not time since boot
}

TEST(Clock, NanosecondsAdvance) {
  const uint64_t a = WallClockNs();
  uint64_t b = WallClockNs();
  for (int i = 0; i < 1000000 && b == a; ++i) b = WallClockNs();
  EXPECT_GT(b, a);
}

}  // namespace
}  // namespace ccmail
