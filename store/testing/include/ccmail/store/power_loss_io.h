// power_loss_io.h - PowerLossIo, a DurableIo for tests that simulates a power loss.
//
// Test-only: built as ccmail_store_testing, which only test programs link; no daemon or
// tool carries it.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "ccmail/common/status.h"
#include "ccmail/common/unique_fd.h"
#include "ccmail/store/io.h"

namespace ccmail::store {

// A test implementation layered on the real file system that simulates power loss: it
// records every operation that is not yet durable (file contents written since the last
// fsync of that file; creates, renames and unlinks since the last fsync of their
// directory). SimulateCrash() undoes a random subset of the non-durable operations on
// the real tree, as if the machine had lost power, then forgets them all.
//
// Model (ext4 data=ordered-like, but pessimistic): a file's unsynced bytes may be lost
// (file truncated to its last fsynced length); a directory entry change not followed by
// an fsync of that directory may be lost (create -> entry gone; rename -> reverted;
// unlink -> file back with the content it had when unlinked; mkdir -> directory gone when it
// is still empty). Named points are passed to the real implementation (crash/fail apply).
class PowerLossIo : public DurableIo {
 public:
  explicit PowerLossIo(uint64_t seed);
  ~PowerLossIo() override;

  Status CreateExclusive(const std::string& path, mode_t mode, UniqueFd* fd,
                         const char* point = nullptr) override;
  Status WriteAll(int fd, const void* data, size_t n, const std::string& what,
                  const char* point = nullptr) override;
  Status Fsync(int fd, const std::string& what, const char* point = nullptr) override;
  // An overwrite inside the file is remembered with the bytes it replaced; a crash may
  // restore them (each overwrite on its own) until the next Fsync/Fdatasync of that file.
  Status PWriteAll(int fd, const void* data, size_t n, uint64_t offset, const std::string& what,
                   const char* point = nullptr) override;
  // Like Fsync for the file's bytes (and a durability barrier for set_power_cut_at_sync).
  Status Fdatasync(int fd, const std::string& what, const char* point = nullptr) override;
  Status Close(UniqueFd* fd, const std::string& what) override;
  Status Rename(const std::string& from, const std::string& to, const char* point = nullptr) override;
  Status RenameNoReplace(const std::string& from, const std::string& to, const char* point = nullptr) override;
  Status MakeDir(const std::string& path, mode_t mode, bool* created, const char* point = nullptr) override;
  Status FsyncDir(const std::string& dir, const char* point = nullptr) override;
  Status Unlink(const std::string& path, const char* point = nullptr) override;

  // Power cut at the N-th durability barrier (Fsync or FsyncDir, counted from 1, whether it
  // succeeds or not): that call does its fsync, then SimulateCrash() and _exit(kPowerCutExit),
  // as if the machine stopped right there. 0 (the default): never. For a forked child.
  static constexpr int kPowerCutExit = 77;
  void set_power_cut_at_sync(uint64_t n);
  // Durability barriers passed so far.
  uint64_t sync_count() const;
  // When true, FsyncDir does nothing (to prove a test catches a missing directory fsync).
  void set_skip_dir_fsync(bool skip);
  // Loses a random subset of non-durable operations on disk. Returns how many were lost.
  size_t SimulateCrash();
  // Number of operations currently not durable.
  size_t PendingCount() const;

 private:
  void RecordRename(const std::string& from, const std::string& to, std::string* replaced);
  void MaybeCutPowerLocked();
  size_t SimulateCrashLocked();
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace ccmail::store
