// durable_write_bench - what one durable capture costs the machine, per message, in two
// layouts of the spool (issue 17: is an appended segment worth its redesign?).
//
//   durable_write_bench DIR [threads=20] [seconds per point=3] [message bytes=10240] [pairs=3]
//
//   file     today's spool: per message create in tmp/, write, fsync, close, rename into new/,
//            an fsync of new/ shared by the commits that overlap it (group commit, as
//            store::Spool does), and the consumer's unlink + last close (the exporter's part).
//   segment  the alternative: every writer appends its message at a reserved offset of one
//            pre-written segment file and waits for an fdatasync that started after its write
//            (one fdatasync per group, as LevelDB's log does); nothing created or unlinked.
//            store::SpoolWal does this (plus, still, a file per message that is not synced).
//   direct   the segment written with O_DIRECT | O_DSYNC: each write durable on return, no
//            page cache and no separate fdatasync, but nothing shared between writers.
//
// Per point: messages/s, CPU microseconds per message of the whole process (getrusage: user +
// system of every thread, which includes the kernel's work of the system calls) and syncs per
// message. The three layouts alternate, `pairs` times, in one run on one disk.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "run_threads.h"

namespace {

[[noreturn]] void Die(const std::string& what) {
  std::perror(what.c_str());
  std::exit(1);
}

double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// A commit returns after a sync that STARTED after the commit's own write: the rule that makes
// a shared sync cover every member of its group (store::Spool::SyncNewDirCoveringRename).
class GroupSync {
 public:
  explicit GroupSync(std::function<void()> sync) : sync_(std::move(sync)) {}
  void Wait() {
    std::unique_lock<std::mutex> lk(mu_);
    const uint64_t need = started_ + 1;
    while (done_ < need) {
      if (running_) {
        cv_.wait(lk);
        continue;
      }
      running_ = true;
      const uint64_t mine = ++started_;
      lk.unlock();
      sync_();
      lk.lock();
      done_ = mine;
      running_ = false;
      cv_.notify_all();
    }
  }
  uint64_t syncs() const { return started_; }

 private:
  std::function<void()> sync_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t started_ = 0, done_ = 0;
  bool running_ = false;
};

struct Point {
  double per_second, cpu_us, syncs_per_message;
};

Point Run(int threads, double secs, const std::function<void(int, uint64_t)>& one, const std::function<uint64_t()>& syncs) {
  const uint64_t syncs0 = syncs();
  const double cpu0 = CpuSeconds();
  const ccmail::bench::ThreadRun run = ccmail::bench::RunThreads(threads, secs, one);
  const double cpu = CpuSeconds() - cpu0;
  const double n = static_cast<double>(run.calls);
  return {run.per_second(), cpu * 1e6 / n, static_cast<double>(syncs() - syncs0) / n};
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "/var/tmp/ccmail-durable-write-bench";
  const int threads = argc > 2 ? std::atoi(argv[2]) : 20;
  const double secs = argc > 3 ? std::atof(argv[3]) : 3.0;
  const size_t size = argc > 4 ? std::strtoul(argv[4], nullptr, 10) : 10240;
  const int pairs = argc > 5 ? std::atoi(argv[5]) : 3;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/tmp");
  std::filesystem::create_directories(dir + "/new");
  const std::string message(size, 'x');

  // file: one file per message.
  const int new_fd = ::open((dir + "/new").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const int tmp_fd = ::open((dir + "/tmp").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (new_fd < 0 || tmp_fd < 0) Die("open " + dir);
  GroupSync dir_sync([&] {
    if (::fsync(new_fd) != 0) Die("fsync new/");
  });
  std::atomic<uint64_t> file_syncs{0};
  auto file_one = [&](int t, uint64_t i) {
    const std::string name = std::to_string(t) + "-" + std::to_string(i);
    const int fd = ::openat(tmp_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) Die("create");
    if (::write(fd, message.data(), message.size()) != static_cast<ssize_t>(message.size())) Die("write");
    if (::fsync(fd) != 0) Die("fsync");
    file_syncs.fetch_add(1, std::memory_order_relaxed);
    ::close(fd);
    if (::renameat(tmp_fd, name.c_str(), new_fd, name.c_str()) != 0) Die("rename");
    dir_sync.Wait();
    // The consumer's part (the exporter): open, unlink, last close (frees the inode).
    const int rd = ::openat(new_fd, name.c_str(), O_RDONLY | O_CLOEXEC);
    if (rd < 0 || ::unlinkat(new_fd, name.c_str(), 0) != 0) Die("unlink");
    ::close(rd);
  };

  // segment: one pre-written file, appended at reserved offsets, one fdatasync per group.
  // Wraps around (a recycled log); sized so that a point never wraps onto unsynced data.
  const uint64_t segment_bytes = 512ULL << 20;
  const int seg_fd = ::open((dir + "/segment").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (seg_fd < 0) Die("segment");
  {
    const std::string zeros(1 << 20, '\0');
    for (uint64_t off = 0; off < segment_bytes; off += zeros.size())
      if (::pwrite(seg_fd, zeros.data(), zeros.size(), static_cast<off_t>(off)) != static_cast<ssize_t>(zeros.size()))
        Die("pre-write segment");
    if (::fsync(seg_fd) != 0) Die("fsync segment");
  }
  GroupSync seg_sync([&] {
    if (::fdatasync(seg_fd) != 0) Die("fdatasync segment");
  });
  std::atomic<uint64_t> next_offset{0};
  const uint64_t record = (size + 64 + 4095) / 4096 * 4096;  // header + message, page aligned
  auto segment_one = [&](int, uint64_t) {
    const uint64_t off = next_offset.fetch_add(record) % (segment_bytes - record);
    if (::pwrite(seg_fd, message.data(), message.size(), static_cast<off_t>(off)) != static_cast<ssize_t>(message.size()))
      Die("pwrite");
    seg_sync.Wait();
  };

  // direct: the same segment written with O_DIRECT | O_DSYNC from an aligned buffer: each
  // write is durable when it returns (no page cache, no separate fdatasync, no grouping).
  const int direct_fd = ::open((dir + "/segment").c_str(), O_WRONLY | O_DIRECT | O_DSYNC | O_CLOEXEC);
  if (direct_fd < 0) Die("open segment O_DIRECT");
  void* aligned = nullptr;
  if (::posix_memalign(&aligned, 4096, record) != 0) Die("posix_memalign");
  std::memset(aligned, 'x', record);
  std::atomic<uint64_t> direct_writes{0};
  auto direct_one = [&](int, uint64_t) {
    const uint64_t off = next_offset.fetch_add(record) % (segment_bytes - record) / 4096 * 4096;
    if (::pwrite(direct_fd, aligned, record, static_cast<off_t>(off)) != static_cast<ssize_t>(record))
      Die("pwrite O_DIRECT");
    direct_writes.fetch_add(1, std::memory_order_relaxed);
  };

  std::printf("# %d threads, %zu-byte messages, %.1f s per point, dir %s\n", threads, size, secs, dir.c_str());
  std::printf("%-8s %10s %14s %14s\n", "layout", "msg/s", "CPU us/msg", "syncs/msg");
  for (int p = 0; p < pairs; ++p) {
    Point f = Run(threads, secs, file_one, [&] { return file_syncs.load() + dir_sync.syncs(); });
    std::printf("%-8s %10.0f %14.1f %14.2f\n", "file", f.per_second, f.cpu_us, f.syncs_per_message);
    Point s = Run(threads, secs, segment_one, [&] { return seg_sync.syncs(); });
    std::printf("%-8s %10.0f %14.1f %14.2f\n", "segment", s.per_second, s.cpu_us, s.syncs_per_message);
    Point d = Run(threads, secs, direct_one, [&] { return direct_writes.load(); });
    std::printf("%-8s %10.0f %14.1f %14.2f\n", "direct", d.per_second, d.cpu_us, d.syncs_per_message);
    std::fflush(stdout);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
