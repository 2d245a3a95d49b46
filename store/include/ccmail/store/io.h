// io.h - every durability step of the spool, the outbox and the exporter goes through DurableIo.
//
// SYNOPSIS
//   DurableIo& io = DurableIo::Real();
//   UniqueFd fd; CCMAIL_RETURN_IF_ERROR(io.CreateExclusive(path, 0600, &fd));
//   CCMAIL_RETURN_IF_ERROR(io.WriteAll(fd.get(), buf, n, "spool.tmp.written"));
//   CCMAIL_RETURN_IF_ERROR(io.Fsync(fd.get(), path));
//
// DESCRIPTION
//   One small interface for create-exclusive, write, fsync, close, rename (replacing or not),
//   mkdir, fsync-dir and unlink, so tests can (a) kill the process at a named step, (b) make a
//   step fail with ENOSPC/EIO/a short write, and (c) simulate a power loss that keeps only
//   what was fsync'd (PowerLossIo, in the test-only library ccmail_store_testing). Components take a DurableIo* (nullptr: Real()); a test
//   derives from DurableIoWrapper and overrides only the calls it changes (LevelDB's
//   Env/EnvWrapper pattern).
//
//   A named point fires in ONE layer: a point passed to a DurableIo call is passed by that
//   call (fail: the operation is not done; crash: right after it is done); a point that
//   marks a step of a component (a ledger commit, a claim-table transition, a recovery step)
//   is passed by FaultPoint() in that component. So `name:N` counts the passes of one step.
//
//   CrashPoint("name"): when the environment has CCMAIL_CRASH_AT=name:N, the N-th pass of
//   that point in this process raises SIGKILL. CCMAIL_FAIL_AT=name:N:ENOSPC|EIO|SHORT makes
//   the N-th pass return the injected error instead (InjectedFailure): ENOSPC and SHORT give
//   kNoSpace (SHORT after writing half, at a write point), EIO gives kIoError. Several
//   specifications may be given separated by ','. Both are read once per process
//   (ReloadFaultSpecFromEnv() re-reads, for tests that set the variable after fork()).
//
// ERRORS
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

// Crash point names used by the store (docs/DESIGN.md §9.1). Tests enumerate them.
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
// The failure CCMAIL_FAIL_AT injects at this pass of `name` (counted like InjectedFailure) as
// a Status naming `what`; Ok normally. For a step that checks before it runs and passes
// CrashPoint(name) after it, as the DurableIo calls do.
Status InjectedError(const char* name, const std::string& what);
// InjectedError, then (when Ok) CrashPoint: a named step of a component checked in one
// place. The caller handles the failure as a real error of that step.
Status FaultPoint(const char* name, const std::string& what);
// How many failures CCMAIL_FAIL_AT injected in this process (tests check theirs happened).
uint64_t InjectedFailureCount();
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
  // (a SHORT fault writes half and returns kNoSpace (ENOSPC), as a full disk would).
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
  // pwrite of all n bytes at `offset` (retrying EINTR and partial writes); the descriptor's
  // own offset is not used. For a log whose writers reserve their offsets (the spool's
  // write-ahead log, several threads at once). Same fault point semantics as WriteAll.
  virtual Status PWriteAll(int fd, const void* data, size_t n, uint64_t offset, const std::string& what,
                           const char* point = nullptr) = 0;
  // fdatasync(fd): the file's data and the metadata needed to read it back, not its times.
  // Over blocks that are already allocated and written (a preallocated log) it writes only
  // the data. A durability barrier like Fsync; never retry on failure.
  virtual Status Fdatasync(int fd, const std::string& what, const char* point = nullptr) = 0;
  // close(fd) and report its error (NFS-style checking).
  virtual Status Close(UniqueFd* fd, const std::string& what) = 0;
  // rename(from, to) (atomic replacement within one file system).
  virtual Status Rename(const std::string& from, const std::string& to, const char* point = nullptr) = 0;
  // rename(from, to) that never replaces: kAlreadyExists when `to` exists, whatever it holds
  // (renameat2 RENAME_NOREPLACE; link + unlink where the file system lacks it, so a crash in
  // between may leave both names on one inode: SameFile() tells).
  virtual Status RenameNoReplace(const std::string& from, const std::string& to, const char* point = nullptr) = 0;
  // mkdir(path, mode); *created = false (and Ok) when it already exists. Durable once its
  // parent is fsynced (FsyncDir).
  virtual Status MakeDir(const std::string& path, mode_t mode, bool* created, const char* point = nullptr) = 0;
  // open(dir, O_DIRECTORY) + fsync + close: makes creates/renames/unlinks in it durable.
  virtual Status FsyncDir(const std::string& dir, const char* point = nullptr) = 0;
  // unlink(path). ENOENT is reported as kNotFound.
  virtual Status Unlink(const std::string& path, const char* point = nullptr) = 0;

  // The same steps into a directory the caller holds open (dir_fd, whose path is dir), for a
  // hot path that renames into and fsyncs one directory per message: RealIo renames with
  // renameat and fsyncs the descriptor (no open and close of the directory per fsync, and
  // the rename and its fsync surely name the same directory). These defaults forward to the
  // path-based calls, so a test double that overrides those still sees every step (the
  // DurableIoWrapper therefore does not forward these two). Same points, same errors.
  virtual Status RenameInto(const std::string& from, int /*dir_fd*/, const std::string& dir, const std::string& name,
                            const char* point = nullptr) {
    return Rename(from, dir + "/" + name, point);
  }
  virtual Status FsyncDirFd(int /*dir_fd*/, const std::string& dir, const char* point = nullptr) {
    return FsyncDir(dir, point);
  }
};

// True when both paths name one inode (a hard link left by RenameNoReplace's fallback).
bool SameFile(const std::string& a, const std::string& b);

// The directory whose fsync makes a change of `path`'s name durable: "." for a bare name,
// "/" for a name in the root.
std::string ParentDirectory(const std::string& path);

// Forwards every call to a target (Real() by default). Tests derive from it and override
// only what they change, so a new DurableIo call never silently bypasses them.
class DurableIoWrapper : public DurableIo {
 public:
  explicit DurableIoWrapper(DurableIo* target = nullptr) : target_(target ? target : &Real()) {}
  DurableIo& target() { return *target_; }

  Status CreateExclusive(const std::string& path, mode_t mode, UniqueFd* fd, const char* point = nullptr) override {
    return target_->CreateExclusive(path, mode, fd, point);
  }
  Status WriteAll(int fd, const void* data, size_t n, const std::string& what, const char* point = nullptr) override {
    return target_->WriteAll(fd, data, n, what, point);
  }
  Status WriteAllUncached(int fd, const void* data, size_t n, const std::string& what,
                          const char* point = nullptr) override {
    return target_->WriteAllUncached(fd, data, n, what, point);
  }
  Status Fsync(int fd, const std::string& what, const char* point = nullptr) override {
    return target_->Fsync(fd, what, point);
  }
  Status PWriteAll(int fd, const void* data, size_t n, uint64_t offset, const std::string& what,
                   const char* point = nullptr) override {
    return target_->PWriteAll(fd, data, n, offset, what, point);
  }
  Status Fdatasync(int fd, const std::string& what, const char* point = nullptr) override {
    return target_->Fdatasync(fd, what, point);
  }
  Status Close(UniqueFd* fd, const std::string& what) override { return target_->Close(fd, what); }
  Status Rename(const std::string& from, const std::string& to, const char* point = nullptr) override {
    return target_->Rename(from, to, point);
  }
  Status RenameNoReplace(const std::string& from, const std::string& to, const char* point = nullptr) override {
    return target_->RenameNoReplace(from, to, point);
  }
  Status MakeDir(const std::string& path, mode_t mode, bool* created, const char* point = nullptr) override {
    return target_->MakeDir(path, mode, created, point);
  }
  Status FsyncDir(const std::string& dir, const char* point = nullptr) override { return target_->FsyncDir(dir, point); }
  Status Unlink(const std::string& path, const char* point = nullptr) override { return target_->Unlink(path, point); }

 private:
  DurableIo* target_;
};

}  // namespace ccmail::store
