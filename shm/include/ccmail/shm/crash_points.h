// crash_points.h - the names of the claim table's fault points (CCMAIL_CRASH_AT=name:N,
// CCMAIL_FAIL_AT=name:N:KIND; the contract is store/include/ccmail/store/io.h).
//
// Each is passed by the claim table only (shm/src/claim_table.cpp), so `:N` counts passes of
// one transition; other layers refer to these constants and never pass them themselves.
#pragma once

namespace ccmail::shm {

inline constexpr const char* kCrashSlotReserved = "slot.reserved";        // T1, milter
inline constexpr const char* kCrashSlotPayloadWritten = "slot.payload.written";
inline constexpr const char* kCrashSlotReady = "slot.ready";              // T2, milter
inline constexpr const char* kCrashSlotClaimed = "slot.claimed";          // T3, ClaimReady
inline constexpr const char* kCrashSlotFreed = "slot.freed";              // T4, Complete
inline constexpr const char* kCrashTableReset = "recovery.table.reset";   // Open: invalid segment replaced
inline constexpr const char* kCrashReadyFree = "recovery.ready.free";     // R3, FreeReadyIf
inline constexpr const char* kCrashCreateBeforeFallocate = "shm.create.before_fallocate";
inline constexpr const char* kCrashCreateBeforeReady = "shm.create.before_ready";

}  // namespace ccmail::shm
