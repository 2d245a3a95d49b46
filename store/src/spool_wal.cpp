// spool_wal.cpp - segments, the shared fdatasync, the checkpoint thread (spool_wal.h).
#include "ccmail/store/spool_wal.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "ccmail/common/log.h"

namespace ccmail::store {
namespace {

constexpr char kRecordMagic[8] = {'C', 'C', 'M', 'W', 'A', 'L', 'R', '1'};
constexpr size_t kRecordHeader = 56;  // magic 8 | id 32 | size 8 | crc 4 | zero 4
constexpr uint64_t kAlign = 4096;

uint64_t AlignUp(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

void PutLe(char* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
uint64_t GetLe(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(p[i]);
  return v;
}
uint32_t HeaderCrc(const char* header) {
  return static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(header), 48));
}

}  // namespace

struct SpoolWal::Segment {
  std::string path;
  UniqueFd fd;
  uint64_t size = 0;
  // Guarded by Impl::mu.
  uint64_t next_offset = 0;
  int in_flight = 0;
  bool sealed = false;
  std::vector<CaptureId> ids;
  // The shared fdatasync: appends are numbered when their pwrite is done; a sync covers
  // every append numbered before it started.
  std::mutex sync_mu;
  std::condition_variable sync_cv;
  uint64_t writes_done = 0;
  uint64_t synced_upto = 0;
  bool syncing = false;
  uint64_t failed_from = 0;  // first append number a failed write or sync may have lost; 0 = none
  std::atomic<bool> abandoned{false};  // failed_from != 0, readable under Impl::mu
  Status failure;
};

struct SpoolWal::Impl {
  std::string tag;
  DurableIo* io;
  MakeDurableFn make_durable;
  std::mutex mu;
  std::condition_variable cv;  // the checkpoint thread waits on it
  std::shared_ptr<Segment> active;
  std::deque<std::shared_ptr<Segment>> sealed;
  // The next segment, prepared ahead by the checkpoint thread so that a rollover does not
  // make the captures of that moment wait for 4 MiB of zeros and three syncs.
  std::shared_ptr<Segment> spare;
  bool spare_wanted = false;  // set when the active segment is half full
  std::atomic<uint64_t> next_seq{1};
  uint64_t checkpoints = 0;
  bool stopping = false;
  std::thread checkpointer;
};

SpoolWal::Pin& SpoolWal::Pin::operator=(Pin&& o) noexcept {
  if (this != &o) {
    Release();
    wal_ = o.wal_;
    segment_ = std::move(o.segment_);
    o.wal_ = nullptr;
  }
  return *this;
}

void SpoolWal::Pin::Release() {
  if (wal_ && segment_) wal_->Unpin(segment_.get());
  wal_ = nullptr;
  segment_.reset();
}

SpoolWal::SpoolWal(std::string dir, std::string tag, DurableIo* io, WalOptions options, MakeDurableFn make_durable)
    : dir_(std::move(dir)), options_(options), impl_(std::make_unique<Impl>()) {
  impl_->tag = std::move(tag);
  impl_->io = io;
  impl_->make_durable = std::move(make_durable);
}

bool SpoolWal::IsSegmentName(const std::string& name) {
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == name.size()) return false;
  for (size_t i = dot + 1; i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return false;
  return name.find('/') == std::string::npos && name[0] != '.';
}

Status SpoolWal::Open(const std::string& dir, const std::string& tag, DurableIo* io, WalOptions options,
                      MakeDurableFn make_durable, std::unique_ptr<SpoolWal>* out) {
  if (!io) io = &DurableIo::Real();
  if (options.segment_bytes < 4 * kAlign || options.segment_bytes % kAlign != 0)
    return Status::InvalidArgument("spool log: segment size must be a multiple of 4096 and at least 16 KiB");
  if (AlignUp(kRecordHeader + options.max_image_bytes) > options.segment_bytes)
    return Status::InvalidArgument("spool log: a record of max_image_bytes does not fit in a segment");
  bool created = false;
  CCMAIL_RETURN_IF_ERROR(io->MakeDir(dir, 0700, &created));
  if (created) CCMAIL_RETURN_IF_ERROR(io->FsyncDir(ParentDirectory(dir)));
  std::unique_ptr<SpoolWal> wal(new SpoolWal(dir, tag, io, options, std::move(make_durable)));
  // The first segment now: the first capture does not wait for it, and a spool directory
  // the writer cannot use shows at start.
  CCMAIL_RETURN_IF_ERROR(wal->PrepareSegment(&wal->impl_->active));
  Impl* impl = wal->impl_.get();
  SpoolWal* self = wal.get();
  impl->checkpointer = std::thread([self, impl] {
    std::unique_lock<std::mutex> lock(impl->mu);
    for (;;) {
      std::shared_ptr<Segment> ready;
      for (auto it = impl->sealed.begin(); it != impl->sealed.end(); ++it) {
        if ((*it)->in_flight == 0) {
          ready = *it;
          impl->sealed.erase(it);
          break;
        }
      }
      if (!ready) {
        if (impl->stopping && impl->sealed.empty()) return;
        if (!impl->stopping && impl->spare_wanted && !impl->spare) {
          impl->spare_wanted = false;  // set again when the next active segment is half full
          lock.unlock();
          std::shared_ptr<Segment> spare;
          Status s = self->PrepareSegment(&spare);
          if (!s.ok()) LogWarning("spool log: preparing the next segment: %s", s.ToString().c_str());
          lock.lock();
          if (spare && !impl->spare) impl->spare = std::move(spare);
          else if (spare) self->DropUnusedSegment(spare.get());
          continue;
        }
        impl->cv.wait(lock);
        continue;
      }
      lock.unlock();
      Status s = ready->ids.empty() ? Status::Ok() : impl->make_durable(ready->ids);
      if (s.ok()) {
        s = impl->io->Unlink(ready->path);
        if (s.ok()) s = impl->io->FsyncDir(self->dir_);
      }
      if (!s.ok())
        LogWarning("spool log: checkpoint of %s failed, left for the exporter's replay: %s", ready->path.c_str(),
                   s.ToString().c_str());
      (void)impl->io->Close(&ready->fd, ready->path);  // releases its flock: replayable if still there
      lock.lock();
      ++impl->checkpoints;
    }
  });
  *out = std::move(wal);
  return Status::Ok();
}

SpoolWal::~SpoolWal() {
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    if (impl_->active) {
      impl_->active->sealed = true;
      impl_->sealed.push_back(std::move(impl_->active));
    }
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->checkpointer.joinable()) impl_->checkpointer.join();
  if (impl_->spare) {
    DropUnusedSegment(impl_->spare.get());
    // Not needed for safety (an empty segment replays to nothing), but a clean stop leaves
    // no segment behind, even after a power loss.
    Status s = impl_->io->FsyncDir(dir_);
    if (!s.ok()) LogWarning("spool log: %s", s.ToString().c_str());
  }
}

void SpoolWal::DropUnusedSegment(Segment* segment) {
  // No record was ever written into it; a lost unlink leaves an empty segment for replay.
  Status u = impl_->io->Unlink(segment->path);
  if (!u.ok() && !u.IsNotFound()) LogWarning("spool log: %s", u.ToString().c_str());
  segment->fd.reset();
}

uint64_t SpoolWal::checkpoints_done() const {
  std::lock_guard<std::mutex> l(impl_->mu);
  return impl_->checkpoints;
}

void SpoolWal::Unpin(Segment* segment) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    wake = --segment->in_flight == 0 && segment->sealed;
  }
  if (wake) impl_->cv.notify_all();
}

// A new segment, written full of zeros and made durable with its name: a record's fdatasync
// then writes only its data (no block allocation, no size change). Prepared under a name a
// replay ignores ("<tag>.<seq>.new"), locked, filled and synced, then renamed to its own name
// with the lock held: a replay never takes a segment before its writer has locked it.
Status SpoolWal::PrepareSegment(std::shared_ptr<Segment>* out) {
  auto fresh = std::make_shared<Segment>();
  fresh->size = options_.segment_bytes;
  Status s;
  std::string preparing;
  for (int attempt = 0; attempt < 1000; ++attempt) {
    char seq[24];
    std::snprintf(seq, sizeof seq, "%08llu", static_cast<unsigned long long>(impl_->next_seq.fetch_add(1)));
    fresh->path = dir_ + "/" + impl_->tag + "." + seq;
    struct stat st;
    if (::stat(fresh->path.c_str(), &st) == 0) continue;  // an earlier process with our tag
    preparing = fresh->path + ".new";
    s = impl_->io->CreateExclusive(preparing, 0600, &fresh->fd);
    if (s.code() == Status::Code::kAlreadyExists) continue;
    if (!s.ok()) break;
    // Until it is locked, a replay may take the file for a dead writer's unfinished one and
    // delete it: wait for the lock (a replay holds it only briefly), then make sure the name
    // still holds the file, else take the next name.
    int locked;
    while ((locked = ::flock(fresh->fd.get(), LOCK_EX)) != 0 && errno == EINTR) {
    }
    struct stat opened;
    if (locked != 0 || ::fstat(fresh->fd.get(), &opened) != 0) {
      s = Status::FromErrno("flock " + preparing, errno);
      fresh->fd.reset();
      (void)impl_->io->Unlink(preparing);
      break;
    }
    if (opened.st_nlink > 0) break;
    fresh->fd.reset();
    s = Status::Busy("spool log: new segment " + preparing + " was removed by a replay");
  }
  if (!s.ok()) return s.WithContext("spool log");
  static const std::string kZeros(256 * 1024, '\0');
  for (uint64_t done = 0; s.ok() && done < fresh->size; done += kZeros.size())
    s = impl_->io->WriteAll(fresh->fd.get(), kZeros.data(),
                            static_cast<size_t>(std::min<uint64_t>(kZeros.size(), fresh->size - done)), preparing);
  if (s.ok()) s = impl_->io->Fsync(fresh->fd.get(), preparing);
  if (s.ok()) s = impl_->io->Rename(preparing, fresh->path);
  if (s.ok()) s = impl_->io->FsyncDir(dir_);
  if (!s.ok()) {
    fresh->fd.reset();
    (void)impl_->io->Unlink(preparing);
    (void)impl_->io->Unlink(fresh->path);
    return s.WithContext("spool log: new segment");
  }
  *out = std::move(fresh);
  return Status::Ok();
}

Status SpoolWal::Append(const CaptureId& id, std::string_view image, Pin* pin) {
  if (image.size() > options_.max_image_bytes)
    return Status::InvalidArgument("spool log: capture " + id.ToString() + " is larger than a log record");
  const uint64_t record_len = AlignUp(kRecordHeader + image.size());
  std::shared_ptr<Segment> seg;
  uint64_t offset = 0;
  {
    std::unique_lock<std::mutex> lock(impl_->mu);
    if (!impl_->active || impl_->active->abandoned.load() ||
        impl_->active->next_offset + record_len > impl_->active->size) {
      if (impl_->active) {
        impl_->active->sealed = true;
        impl_->sealed.push_back(std::move(impl_->active));
        impl_->cv.notify_all();
      }
      std::shared_ptr<Segment> fresh = std::move(impl_->spare);
      if (!fresh) {
        // No spare ready (a burst filled half a segment faster than the checkpoint thread
        // prepared one, or its preparation failed): prepared here, under the lock, so that
        // the appends waiting for a segment wait for this one instead of each making its own.
        Status s = PrepareSegment(&fresh);
        if (!s.ok()) return s;
      }
      impl_->spare_wanted = false;
      impl_->active = std::move(fresh);
    }
    seg = impl_->active;
    offset = seg->next_offset;
    seg->next_offset += record_len;
    ++seg->in_flight;
    seg->ids.push_back(id);
    if (!impl_->spare && !impl_->spare_wanted && seg->next_offset * 2 > seg->size) {
      impl_->spare_wanted = true;  // half full: the checkpoint thread prepares the next one
      impl_->cv.notify_all();
    }
  }
  Pin held;
  held.wal_ = this;
  held.segment_ = seg;

  std::string record(kRecordHeader, '\0');
  std::memcpy(record.data(), kRecordMagic, 8);
  const std::string hex = id.ToString();
  std::memcpy(record.data() + 8, hex.data(), 32);
  PutLe(record.data() + 40, image.size(), 8);
  PutLe(record.data() + 48, HeaderCrc(record.data()), 4);
  record.append(image);
  Status written = impl_->io->PWriteAll(seg->fd.get(), record.data(), record.size(), offset, seg->path,
                                        kCrashSpoolWalWritten);

  std::unique_lock<std::mutex> lock(seg->sync_mu);
  const uint64_t number = ++seg->writes_done;
  if (!written.ok() && seg->failed_from == 0) {
    // The bytes of this write are unknown: no later sync of this segment may vouch for it.
    seg->failed_from = 1;
    seg->abandoned = true;
    seg->failure = written;
  }
  while (seg->synced_upto < number && seg->failed_from == 0) {
    if (seg->syncing) {
      seg->sync_cv.wait(lock);
      continue;
    }
    seg->syncing = true;
    const uint64_t target = seg->writes_done;
    lock.unlock();
    Status s = impl_->io->Fdatasync(seg->fd.get(), seg->path, kCrashSpoolWalSynced);
    lock.lock();
    seg->syncing = false;
    if (s.ok()) {
      seg->synced_upto = target;
    } else if (seg->failed_from == 0) {
      seg->failed_from = seg->synced_upto + 1;
      seg->abandoned = true;
      seg->failure = s;
    }
    seg->sync_cv.notify_all();
  }
  const bool lost = seg->failed_from != 0 && seg->failed_from <= number && seg->synced_upto < number;
  Status result = lost ? seg->failure : Status::Ok();
  lock.unlock();
  if (!result.ok()) return result.WithContext("spool log: capture " + id.ToString());
  *pin = std::move(held);
  return Status::Ok();
}

std::vector<SpoolWal::Record> SpoolWal::ReadSegment(std::string_view bytes) {
  std::vector<Record> out;
  uint64_t off = 0;
  while (off + kRecordHeader <= bytes.size()) {
    const char* h = bytes.data() + off;
    if (std::memcmp(h, kRecordMagic, 8) == 0 && GetLe(h + 48, 4) == HeaderCrc(h) && GetLe(h + 52, 4) == 0) {
      const uint64_t size = GetLe(h + 40, 8);
      auto id = CaptureId::Parse(std::string_view(h + 8, 32));
      if (id && size <= bytes.size() - off - kRecordHeader) {
        out.push_back(Record{*id, off + kRecordHeader, bytes.substr(off + kRecordHeader, size)});
        off += AlignUp(kRecordHeader + size);
        continue;
      }
    }
    off += kAlign;
  }
  return out;
}

}  // namespace ccmail::store
