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

namespace ccmail::shm::detail {

// Point names (ARCHITECTURE.md "I/O and fault injection").
inline constexpr const char* kPointSlotReserved = "slot.reserved";          // T1, producer
inline constexpr const char* kPointSlotPayloadWritten = "slot.payload.written";
inline constexpr const char* kPointSlotReady = "slot.ready";                // T2, producer
inline constexpr const char* kPointSlotClaimed = "slot.claimed";            // T3, exporter
inline constexpr const char* kPointSlotFreed = "slot.freed";                // T4, exporter
inline constexpr const char* kPointTableReset = "recovery.table.reset";     // invalid segment replaced
inline constexpr const char* kPointReadyFree = "recovery.ready.free";       // R3
inline constexpr const char* kPointCreateBeforeFallocate = "shm.create.before_fallocate";
inline constexpr const char* kPointCreateBeforeReady = "shm.create.before_ready";

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
