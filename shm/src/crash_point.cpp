// crash_point.cpp - the claim table's fault points delegate to the store's CrashPoint() and
// InjectedFailure(), so one CCMAIL_CRASH_AT / CCMAIL_FAIL_AT contract (and one pass counter
// per name) covers the whole process.
// Only the "is anything armed" flag is kept here: the table's hot path must not pay for a
// string comparison when no test armed a crash.
#include "crash_point.h"

#include <cstdlib>
#include <mutex>
#include <string>

#include "ccmail/store/io.h"

namespace ccmail::shm::detail {

bool g_crash_armed = false;

// Called when a table is opened. Tests that fork and set CCMAIL_CRASH_AT in the child need the
// spec read again there; a daemon whose environment did not change keeps its pass counters (a
// reopen must not restart the count of a crash point armed at start).
void InitCrashPoints() {
  static std::mutex mu;
  static std::string last_seen;
  std::string now;
  bool armed = false;
  for (const char* var : {"CCMAIL_CRASH_AT", "CCMAIL_FAIL_AT", "CCMAIL_DELAY_AT"}) {
    const char* env = std::getenv(var);
    armed = armed || env != nullptr;
    now += std::string(var) + "=" + (env ? env : "") + "\n";
  }
  std::lock_guard<std::mutex> lock(mu);
  if (now != last_seen) {
    store::ReloadFaultSpecFromEnv();
    last_seen = now;
  }
  g_crash_armed = armed;
}

void CrashPointSlow(const char* name) { store::CrashPoint(name); }

bool FailAtSlow(const char* name) { return store::InjectedFailure(name) != store::FaultKind::kNone; }

}  // namespace ccmail::shm::detail
