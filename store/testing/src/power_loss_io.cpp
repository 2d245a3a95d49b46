// power_loss_io.cpp - a DurableIo that can forget whatever was not made durable.
//
// Like SQLite's crash VFS (src/test6.c) and LazyFS's "lose unfsynced writes": every
// operation really happens on disk, and the ones not yet covered by an fsync (file data)
// or a directory fsync (create/rename/unlink) are remembered; SimulateCrash() undoes a
// random subset of them, newest first, which is what a power loss may leave behind.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <vector>

#include "ccmail/store/power_loss_io.h"

namespace ccmail::store {

namespace {
struct DirOp {
  enum Kind { kCreate, kRename, kUnlink, kMkdir } kind;
  std::string dir;      // the directory whose fsync makes it durable
  std::string path;     // create/unlink: the name; rename: the new name
  std::string from;     // rename: the old name
  std::string content;  // unlink: the bytes the file had; rename: those of the file it replaced
  bool replaced = false;  // rename: `path` existed before and comes back with `content`
};
struct FileState {
  uint64_t durable_len = 0;
  uint64_t len = 0;
  // Overwrites inside the file since its last sync: (offset, the bytes they replaced).
  std::vector<std::pair<uint64_t, std::string>> unsynced_overwrites;
};

Status ReadWhole(const std::string& path, std::string* out) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path, errno);
  out->clear();
  char buf[65536];
  for (;;) {
    ssize_t r = ::read(fd.get(), buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("read " + path, errno);
    }
    if (r == 0) break;
    out->append(buf, static_cast<size_t>(r));
  }
  return Status::Ok();
}
}  // namespace

struct PowerLossIo::State {
  mutable std::mutex mu;
  std::mt19937_64 rng;
  bool skip_dir_fsync = false;
  uint64_t power_cut_at = 0;
  uint64_t syncs = 0;
  std::map<int, std::string> fd_path;
  std::map<std::string, FileState> files;  // by current path
  std::vector<DirOp> ops;
};

PowerLossIo::PowerLossIo(uint64_t seed) : state_(std::make_unique<State>()) { state_->rng.seed(seed); }
PowerLossIo::~PowerLossIo() = default;

void PowerLossIo::set_skip_dir_fsync(bool skip) {
  std::lock_guard<std::mutex> l(state_->mu);
  state_->skip_dir_fsync = skip;
}

void PowerLossIo::set_power_cut_at_sync(uint64_t n) {
  std::lock_guard<std::mutex> l(state_->mu);
  state_->power_cut_at = n;
}

uint64_t PowerLossIo::sync_count() const {
  std::lock_guard<std::mutex> l(state_->mu);
  return state_->syncs;
}

// Called with the lock held after each barrier.
void PowerLossIo::MaybeCutPowerLocked() {
  ++state_->syncs;
  if (state_->power_cut_at == 0 || state_->syncs != state_->power_cut_at) return;
  // The machine stops here: whatever another thread does after this is never durable
  // either, so the lock is kept until _exit.
  SimulateCrashLocked();
  ::_exit(kPowerCutExit);
}

Status PowerLossIo::CreateExclusive(const std::string& path, mode_t mode, UniqueFd* fd, const char* point) {
  CCMAIL_RETURN_IF_ERROR(DurableIo::Real().CreateExclusive(path, mode, fd, point));
  const int r = fd->get();
  std::lock_guard<std::mutex> l(state_->mu);
  state_->fd_path[r] = path;
  state_->files[path] = FileState{};
  state_->ops.push_back(DirOp{DirOp::kCreate, ParentDirectory(path), path, "", "", false});
  return Status::Ok();
}

Status PowerLossIo::WriteAll(int fd, const void* data, size_t n, const std::string& what, const char* point) {
  Status s = DurableIo::Real().WriteAll(fd, data, n, what, point);
  std::lock_guard<std::mutex> l(state_->mu);
  auto it = state_->fd_path.find(fd);
  if (it != state_->fd_path.end()) {
    struct stat st;
    if (::fstat(fd, &st) == 0) state_->files[it->second].len = static_cast<uint64_t>(st.st_size);
  }
  return s;
}

Status PowerLossIo::Fsync(int fd, const std::string& what, const char* point) {
  Status s = DurableIo::Real().Fsync(fd, what, point);
  std::lock_guard<std::mutex> l(state_->mu);
  auto it = state_->fd_path.find(fd);
  if (it == state_->fd_path.end()) {
    // A descriptor opened outside this DurableIo (a checkpoint or a replay opens a file by
    // name to fsync it): its current name tells which file became durable.
    char link[64], target[4096];
    std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = ::readlink(link, target, sizeof target - 1);
    if (n > 0) {
      auto f = state_->files.find(std::string(target, static_cast<size_t>(n)));
      if (s.ok() && f != state_->files.end()) {
        f->second.durable_len = f->second.len;
        f->second.unsynced_overwrites.clear();
      }
    }
  }
  if (s.ok() && it != state_->fd_path.end()) {
    auto& f = state_->files[it->second];
    f.durable_len = f.len;
    f.unsynced_overwrites.clear();
  }
  MaybeCutPowerLocked();
  return s;
}

Status PowerLossIo::PWriteAll(int fd, const void* data, size_t n, uint64_t offset, const std::string& what,
                              const char* point) {
  std::string before;
  struct stat st;
  if (::fstat(fd, &st) == 0 && offset < static_cast<uint64_t>(st.st_size)) {
    // The bytes it replaces, read through a descriptor of our own: `fd` may be write-only
    // (CreateExclusive opens so), and a failed read would leave the overwrite unremembered.
    char link[64];
    std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    UniqueFd reader(::open(link, O_RDONLY | O_CLOEXEC));
    before.resize(std::min<uint64_t>(n, static_cast<uint64_t>(st.st_size) - offset));
    ssize_t r = reader.valid() ? ::pread(reader.get(), before.data(), before.size(), static_cast<off_t>(offset)) : -1;
    before.resize(r > 0 ? static_cast<size_t>(r) : 0);
  }
  Status s = DurableIo::Real().PWriteAll(fd, data, n, offset, what, point);
  std::lock_guard<std::mutex> l(state_->mu);
  auto it = state_->fd_path.find(fd);
  if (it != state_->fd_path.end()) {
    FileState& f = state_->files[it->second];
    if (!before.empty()) f.unsynced_overwrites.emplace_back(offset, std::move(before));
    if (::fstat(fd, &st) == 0) f.len = static_cast<uint64_t>(st.st_size);
  }
  return s;
}

Status PowerLossIo::Fdatasync(int fd, const std::string& what, const char* point) {
  Status s = DurableIo::Real().Fdatasync(fd, what, point);
  std::lock_guard<std::mutex> l(state_->mu);
  auto it = state_->fd_path.find(fd);
  if (s.ok() && it != state_->fd_path.end()) {
    auto& f = state_->files[it->second];
    f.durable_len = f.len;
    f.unsynced_overwrites.clear();
  }
  MaybeCutPowerLocked();
  return s;
}

Status PowerLossIo::Close(UniqueFd* fd, const std::string& what) {
  {
    std::lock_guard<std::mutex> l(state_->mu);
    state_->fd_path.erase(fd->get());
  }
  return DurableIo::Real().Close(fd, what);
}

Status PowerLossIo::Rename(const std::string& from, const std::string& to, const char* point) {
  std::string old;
  const bool replaced = ReadWhole(to, &old).ok();
  CCMAIL_RETURN_IF_ERROR(DurableIo::Real().Rename(from, to, point));
  RecordRename(from, to, replaced ? &old : nullptr);
  return Status::Ok();
}

Status PowerLossIo::RenameNoReplace(const std::string& from, const std::string& to, const char* point) {
  CCMAIL_RETURN_IF_ERROR(DurableIo::Real().RenameNoReplace(from, to, point));
  RecordRename(from, to, nullptr);
  return Status::Ok();
}

Status PowerLossIo::MakeDir(const std::string& path, mode_t mode, bool* created, const char* point) {
  CCMAIL_RETURN_IF_ERROR(DurableIo::Real().MakeDir(path, mode, created, point));
  if (*created) {
    std::lock_guard<std::mutex> l(state_->mu);
    state_->ops.push_back(DirOp{DirOp::kMkdir, ParentDirectory(path), path, "", "", false});
  }
  return Status::Ok();
}

void PowerLossIo::RecordRename(const std::string& from, const std::string& to, std::string* replaced) {
  std::lock_guard<std::mutex> l(state_->mu);
  auto it = state_->files.find(from);
  if (it != state_->files.end()) {
    state_->files[to] = it->second;
    state_->files.erase(from);
  }
  for (auto& [fd, p] : state_->fd_path)
    if (p == from) p = to;
  state_->ops.push_back(DirOp{DirOp::kRename, ParentDirectory(to), to, from, replaced ? std::move(*replaced) : "",
                              replaced != nullptr});
}

Status PowerLossIo::FsyncDir(const std::string& dir, const char* point) {
  {
    std::lock_guard<std::mutex> l(state_->mu);
    if (state_->skip_dir_fsync) return Status::Ok();
  }
  Status s = DurableIo::Real().FsyncDir(dir, point);
  std::lock_guard<std::mutex> l(state_->mu);
  if (s.ok()) {
    std::vector<DirOp> keep;
    for (auto& op : state_->ops)
      if (op.dir != dir) keep.push_back(std::move(op));
    state_->ops = std::move(keep);
  }
  MaybeCutPowerLocked();
  return s;
}

Status PowerLossIo::Unlink(const std::string& path, const char* point) {
  std::string content;
  bool saved = ReadWhole(path, &content).ok();
  CCMAIL_RETURN_IF_ERROR(DurableIo::Real().Unlink(path, point));
  std::lock_guard<std::mutex> l(state_->mu);
  state_->files.erase(path);
  if (saved) state_->ops.push_back(DirOp{DirOp::kUnlink, ParentDirectory(path), path, "", std::move(content), false});
  return Status::Ok();
}

size_t PowerLossIo::PendingCount() const {
  std::lock_guard<std::mutex> l(state_->mu);
  size_t n = state_->ops.size();
  for (const auto& [p, f] : state_->files)
    n += (f.len != f.durable_len ? 1 : 0) + f.unsynced_overwrites.size();
  return n;
}

size_t PowerLossIo::SimulateCrash() {
  std::lock_guard<std::mutex> l(state_->mu);
  return SimulateCrashLocked();
}

size_t PowerLossIo::SimulateCrashLocked() {
  State& st = *state_;
  size_t lost = 0;
  auto coin = [&] { return (st.rng() & 1) == 0; };
  // File data first: unsynced bytes may be lost (the file is cut somewhere after its
  // last fsynced length).
  for (auto& [path, f] : st.files) {
    // Overwrites of bytes already in the file may be lost too, newest first (the old bytes
    // come back), each on its own: a disk writes back pages in any order.
    if (!f.unsynced_overwrites.empty()) {
      UniqueFd w(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
      for (auto o = f.unsynced_overwrites.rbegin(); w.valid() && o != f.unsynced_overwrites.rend(); ++o) {
        if (!coin()) continue;
        if (::pwrite(w.get(), o->second.data(), o->second.size(), static_cast<off_t>(o->first)) >= 0) ++lost;
      }
    }
    if (f.len == f.durable_len || !coin()) continue;
    uint64_t keep = f.durable_len + (f.len > f.durable_len ? st.rng() % (f.len - f.durable_len) : 0);
    if (::truncate(path.c_str(), static_cast<off_t>(keep)) == 0) ++lost;
  }
  // Then directory entries, newest first.
  for (auto it = st.ops.rbegin(); it != st.ops.rend(); ++it) {
    if (!coin()) continue;
    const DirOp& op = *it;
    switch (op.kind) {
      case DirOp::kCreate:
        if (::unlink(op.path.c_str()) == 0) ++lost;
        break;
      case DirOp::kRename:
        if (::rename(op.path.c_str(), op.from.c_str()) == 0) {
          ++lost;
          if (op.replaced) {  // the file the rename replaced is back
            UniqueFd fd(::open(op.path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600));
            if (fd.valid()) (void)!::write(fd.get(), op.content.data(), op.content.size());
          }
        }
        break;
      case DirOp::kUnlink: {
        UniqueFd fd(::open(op.path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600));
        if (fd.valid() && ::write(fd.get(), op.content.data(), op.content.size()) >= 0) ++lost;
        break;
      }
      case DirOp::kMkdir:  // a directory that got entries keeps them (losing less is allowed)
        if (::rmdir(op.path.c_str()) == 0) ++lost;
        break;
    }
  }
  st.ops.clear();
  st.files.clear();
  st.fd_path.clear();
  return lost;
}

}  // namespace ccmail::store
