#include "crash_point.h"

#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

namespace ccmail::shm::detail {

bool g_crash_armed = false;

namespace {
std::string g_name;
long g_target = 0;
std::atomic<long> g_hits{0};
}  // namespace

// Called once when a table is opened (and again after fork by tests that set
// the env in a child): parses CCMAIL_CRASH_AT=name:N.
void InitCrashPoints() {
  const char* env = std::getenv("CCMAIL_CRASH_AT");
  g_crash_armed = false;
  g_hits.store(0);
  if (env == nullptr) return;
  const char* colon = std::strrchr(env, ':');
  if (colon == nullptr) return;
  g_name.assign(env, colon - env);
  g_target = std::strtol(colon + 1, nullptr, 10);
  g_crash_armed = g_target > 0 && !g_name.empty();
}

void CrashPointSlow(const char* name) {
  if (g_name != name) return;
  if (g_hits.fetch_add(1) + 1 == g_target) ::raise(SIGKILL);
}

}  // namespace ccmail::shm::detail
