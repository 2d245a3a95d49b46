// crash_point.h - named fault points inside the claim-table transitions.
//
// The contract is the store's (store/include/ccmail/store/io.h): CCMAIL_CRASH_AT=name:N raises
// SIGKILL at the N-th pass of `name` in this process, CCMAIL_FAIL_AT=name:N:KIND makes the N-th
// pass fail, CCMAIL_DELAY_AT sleeps. crash_point.cpp delegates to it; only the armed flag lives
// here. Every point below is passed by the claim table only (one layer, so `:N` counts passes
// of one step): ShmFailAt() right before the transition (a failure means it is not done, and
// the caller takes the table's usual way out: overflow to the spool scan, a claim left for
// the next turn, an error), ShmCrashPoint() right after it.
// The disabled case costs one predictable branch on a cached flag (hot path).
#pragma once

#include "ccmail/shm/crash_points.h"

namespace ccmail::shm::detail {

// Point names: public in ccmail/shm/crash_points.h (ARCHITECTURE.md "I/O and fault injection").
inline constexpr const char* kPointSlotReserved = kCrashSlotReserved;
inline constexpr const char* kPointSlotPayloadWritten = kCrashSlotPayloadWritten;
inline constexpr const char* kPointSlotReady = kCrashSlotReady;
inline constexpr const char* kPointSlotClaimed = kCrashSlotClaimed;
inline constexpr const char* kPointSlotFreed = kCrashSlotFreed;
inline constexpr const char* kPointTableReset = kCrashTableReset;
inline constexpr const char* kPointReadyFree = kCrashReadyFree;
inline constexpr const char* kPointCreateBeforeFallocate = kCrashCreateBeforeFallocate;
inline constexpr const char* kPointCreateBeforeReady = kCrashCreateBeforeReady;

extern bool g_crash_armed;  // CCMAIL_CRASH_AT, CCMAIL_FAIL_AT or CCMAIL_DELAY_AT set at first use
void CrashPointSlow(const char* name);
bool FailAtSlow(const char* name);
void InitCrashPoints();

inline void ShmCrashPoint(const char* name) {
  if (__builtin_expect(g_crash_armed, 0)) CrashPointSlow(name);
}
// True when CCMAIL_FAIL_AT selects this pass of `name`: the caller does not do the step.
inline bool ShmFailAt(const char* name) { return __builtin_expect(g_crash_armed, 0) && FailAtSlow(name); }

}  // namespace ccmail::shm::detail
