// singleton.h - the one-exporter rule (docs/DESIGN.md §2.7, §7 step 1).
//
// What it offers: AcquireExporterLock() takes flock(LOCK_EX|LOCK_NB) on a lock file and
// keeps the descriptor; the kernel drops the lock when the process dies, however it dies,
// so no stale-lock cleanup and no pid guessing exist. The lock file is never unlinked (an
// unlink would let a second exporter lock a fresh inode). Epoch fencing in the ledger comes
// on top of this.
//
// ERRORS
//   kBusy when another live process holds the lock (the caller must exit without touching
//   anything); other errors carry the path and errno.
//
// THREAD SAFETY
//   Call once per process at start.
#pragma once

#include <string>

#include "ccmail/common/status.h"
#include "ccmail/common/unique_fd.h"

namespace ccmail::exporter {

Status AcquireExporterLock(const std::string& lock_path, UniqueFd* held);

}  // namespace ccmail::exporter
