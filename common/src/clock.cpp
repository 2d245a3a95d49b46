#include "ccmail/common/clock.h"

#include <time.h>

namespace ccmail {

uint64_t WallClockNs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

int64_t WallClockMs() { return static_cast<int64_t>(WallClockNs() / 1000000ull); }

}  // namespace ccmail
