// clock.h - the wall clock as the bridge records it (spool ages, ledger rows, heartbeats).
//
// SYNOPSIS
//   slot.enqueue_ns = WallClockNs();
//   ledger->Prune(WallClockMs() - window_ms, ...);
//
// DESCRIPTION
//   CLOCK_REALTIME since the Unix epoch: these values are stored (files, the ledger, the
//   shared claim table) and compared across processes and restarts, which a monotonic
//   clock cannot do. Intervals inside one process use std::chrono::steady_clock instead.
#pragma once

#include <cstdint>

namespace ccmail {

uint64_t WallClockNs();
int64_t WallClockMs();

}  // namespace ccmail
