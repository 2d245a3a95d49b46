// crash_point.h - named kill points inside the claim-table transitions.
//
// The contract is the store's CrashPoint() (store/include/ccmail/store/io.h):
// env CCMAIL_CRASH_AT=name:N raises SIGKILL at the N-th pass of `name` in this
// process. crash_point.cpp delegates to it; only the armed flag lives here.
// The disabled case costs one predictable branch on a cached flag (hot path).
#pragma once

namespace ccmail::shm::detail {

extern bool g_crash_armed;  // CCMAIL_CRASH_AT set at first use
void CrashPointSlow(const char* name);
void InitCrashPoints();

inline void ShmCrashPoint(const char* name) {
  if (__builtin_expect(g_crash_armed, 0)) CrashPointSlow(name);
}

}  // namespace ccmail::shm::detail
