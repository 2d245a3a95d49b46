// io.h - every durability step of the spool and ledger goes through DurableIo.
//
// SYNOPSIS
//   DurableIo& io = DurableIo::Real();
//   UniqueFd fd; CCMAIL_RETURN_IF_ERROR(io.CreateExclusive(path, 0600, &fd));
//   CCMAIL_RETURN_IF_ERROR(io.WriteAll(fd.get(), buf, n, "spool.tmp.written"));
//   CCMAIL_RETURN_IF_ERROR(io.Fsync(fd.get(), path));
//
// DESCRIPTION
//   One small interface for create-exclusive, write, fsync, close, rename, fsync-dir and
//   unlink, so tests can (a) kill the process at a named step, (b) make a step fail with
//   ENOSPC/EIO/a short write, and (c) simulate a power loss that keeps only what was
//   fsync'd (PowerLossIo).
//
//   CrashPoint("name"): when the environment has CCMAIL_CRASH_AT=name:N, the N-th pass of
//   that point in this process raises SIGKILL. CCMAIL_FAIL_AT=name:N:ENOSPC|EIO|SHORT makes
//   the N-th pass return the injected error instead (InjectedFailure). Several
//   specifications may be given separated by ','. Both are read once per process
//   (ReloadFaultSpecFromEnv() re-reads, for tests that set the variable after fork()).
//
// FAILURES
//   Every call returns a Status naming the operation and the path. A failed fsync is
//   reported once; callers must never fsync the same file again and continue (fsyncgate):
//   they abandon the file.
//
// THREAD SAFETY
//   Real() is thread-safe. Crash point counters are atomic. PowerLossIo is thread-safe.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ccmail/common/status.h"
#include "ccmail/common/unique_fd.h"

namespace ccmail::store {

// Crash point names used by the store (design 6.1). Tests enumerate them.
inline constexpr const char* kCrashSpoolTmpCreated = "spool.tmp.created";
inline constexpr const char* kCrashSpoolTmpWritten = "spool.tmp.written";
inline constexpr const char* kCrashSpoolTmpFsynced = "spool.tmp.fsynced";
inline constexpr const char* kCrashSpoolRenamed = "spool.renamed";
inline constexpr const char* kCrashSpoolDirFsynced = "spool.dir.fsynced";
inline constexpr const char* kCrashSpoolUnlinked = "spool.unlinked";
inline constexpr const char* kCrashSpoolUnlinkDirFsynced = "spool.unlink.dir.fsynced";
inline constexpr const char* kCrashLedgerCommitBefore = "ledger.commit.before";
inline constexpr const char* kCrashLedgerCommitAfter = "ledger.commit.after";
inline constexpr const char* kCrashLedgerEpoch = "recovery.epoch";
inline constexpr const char* kCrashPrune = "prune.k";

// All spool crash points in protocol order (capture path).
const std::vector<std::string>& SpoolCaptureCrashPoints();
// Every crash point name the store defines.
const std::vector<std::string>& AllStoreCrashPoints();

// Injected failure kinds.
enum class FaultKind { kNone, kNoSpace, kIoError, kShortWrite };

// Passes the named point: SIGKILLs the process when CCMAIL_CRASH_AT selects this pass;
// sleeps when CCMAIL_DELAY_AT="<point>:<pass>:<milliseconds>[,...]" selects it (a slow disk,
// for the tests of MTA timeouts).
void CrashPoint(const char* name);
// Returns the injected failure for this pass of `name` (kNone normally). Counts the pass.
FaultKind InjectedFailure(const char* name);
// Re-reads CCMAIL_CRASH_AT / CCMAIL_FAIL_AT and resets all pass counters.
void ReloadFaultSpecFromEnv();

class DurableIo {
 public:
  virtual ~DurableIo() = default;

  // The process-wide real implementation (POSIX calls + crash points + injected faults).
  static DurableIo& Real();

  // open(O_CREAT|O_EXCL|O_WRONLY|O_CLOEXEC). Crash point/fault name: "<point>".
  virtual Status CreateExclusive(const std::string& path, mode_t mode, UniqueFd* fd,
                                 const char* point = nullptr) = 0;
  // Writes all n bytes (retrying EINTR and partial writes). `point` names the fault point
  // (a SHORT fault writes half and returns kIoError, as a full disk would).
  virtual Status WriteAll(int fd, const void* data, size_t n, const std::string& what,
                          const char* point = nullptr) = 0;
  // The same for a large file that nobody reads soon (an outbox batch, read once by IMPORT
  // later): RealIo writes the block-aligned bulk with O_DIRECT, past the page cache, when
  // the file system allows it, and the rest normally. Durability still needs Fsync. Same
  // fault point semantics as WriteAll; other implementations just call WriteAll.
  virtual Status WriteAllUncached(int fd, const void* data, size_t n, const std::string& what,
                                  const char* point = nullptr) {
    return WriteAll(fd, data, n, what, point);
  }
  // fsync(fd). Never retry on failure.
  virtual Status Fsync(int fd, const std::string& what, const char* point = nullptr) = 0;
  // close(fd) and report its error (NFS-style checking).
  virtual Status Close(UniqueFd* fd, const std::string& what) = 0;
  // rename(from, to) (atomic replacement within one file system).
  virtual Status Rename(const std::string& from, const std::string& to, const char* point = nullptr) = 0;
  // open(dir, O_DIRECTORY) + fsync + close: makes creates/renames/unlinks in it durable.
  virtual Status FsyncDir(const std::string& dir, const char* point = nullptr) = 0;
  // unlink(path). ENOENT is reported as kNotFound.
  virtual Status Unlink(const std::string& path, const char* point = nullptr) = 0;
};

// A test implementation layered on the real file system that simulates power loss: it
// records every operation that is not yet durable (file contents written since the last
// fsync of that file; creates, renames and unlinks since the last fsync of their
// directory). SimulateCrash() undoes a random subset of the non-durable operations on
// the real tree, as if the machine had lost power, then forgets them all.
//
// Model (ext4 data=ordered-like, but pessimistic): a file's unsynced bytes may be lost
// (file truncated to its last fsynced length); a directory entry change not followed by
// an fsync of that directory may be lost (create -> entry gone; rename -> reverted;
// unlink -> file back with the content it had when unlinked).
class PowerLossIo : public DurableIo {
 public:
  explicit PowerLossIo(uint64_t seed);
  ~PowerLossIo() override;

  Status CreateExclusive(const std::string& path, mode_t mode, UniqueFd* fd,
                         const char* point = nullptr) override;
  Status WriteAll(int fd, const void* data, size_t n, const std::string& what,
                  const char* point = nullptr) override;
  Status Fsync(int fd, const std::string& what, const char* point = nullptr) override;
  Status Close(UniqueFd* fd, const std::string& what) override;
  Status Rename(const std::string& from, const std::string& to, const char* point = nullptr) override;
  Status FsyncDir(const std::string& dir, const char* point = nullptr) override;
  Status Unlink(const std::string& path, const char* point = nullptr) override;

  // When true, FsyncDir does nothing (to prove a test catches a missing directory fsync).
  void set_skip_dir_fsync(bool skip);
  // Loses a random subset of non-durable operations on disk. Returns how many were lost.
  size_t SimulateCrash();
  // Number of operations currently not durable.
  size_t PendingCount() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace ccmail::store
