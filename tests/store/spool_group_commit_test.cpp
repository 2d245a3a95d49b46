// The group commit of the spool's new/ fsync (store/include/ccmail/store/spool.h): concurrent
// commits share directory fsyncs, and a commit that returned Ok still survives a power loss.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <latch>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "ccmail/store/io.h"
#include "ccmail/store/power_loss_io.h"
#include "ccmail/store/spool.h"
#include "test_util.h"

namespace ccmail::store {
namespace {
using test::TempDir;

constexpr int kCommits = 8;

// Counts the fsyncs of one directory and makes the first of them slow in a way that shows
// whether a commit waited for an fsync that started after its rename: that fsync takes effect
// (is passed on to the target) at once, then returns only after every commit has renamed its
// file, plus a pause in which they reach their wait. A commit that renamed meanwhile is not
// covered by it.
class SlowFirstDirSync : public DurableIoWrapper {
 public:
  // pause: how long the first fsync still waits after the last rename. A commit descheduled
  // longer than that between its rename and its wait needs an fsync of its own (a loaded
  // host), which only makes the count of fsyncs higher.
  SlowFirstDirSync(DurableIo* target, std::string dir, std::chrono::milliseconds pause)
      : DurableIoWrapper(target), dir_(std::move(dir)), pause_(pause) {}

  Status Rename(const std::string& from, const std::string& to, const char* point = nullptr) override {
    Status s = DurableIoWrapper::Rename(from, to, point);
    std::lock_guard<std::mutex> l(mu_);
    ++renames_;
    cv_.notify_all();
    return s;
  }
  Status FsyncDir(const std::string& dir, const char* point = nullptr) override {
    if (dir != dir_) return DurableIoWrapper::FsyncDir(dir, point);
    const bool first = dir_syncs_.fetch_add(1) == 0;
    Status s = DurableIoWrapper::FsyncDir(dir, point);
    if (first) {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait_for(l, std::chrono::seconds(20), [&] { return renames_ >= kCommits; });
      l.unlock();
      std::this_thread::sleep_for(pause_);
    }
    return s;
  }
  int dir_syncs() const { return dir_syncs_.load(); }

 private:
  const std::string dir_;
  const std::chrono::milliseconds pause_;
  std::atomic<int> dir_syncs_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  int renames_ = 0;
};

SpoolMeta Meta(int i) {
  SpoolMeta m;
  m.queue_id = "4QID" + std::to_string(i);
  m.envelope_sender = "alice@example.org";
  m.recipients.push_back({"bob@cc.example", "Bob", "PO1"});
  m.received_ms = 1700000000000 + i;
  return m;
}

// kCommits threads capture one message each at the same moment; returns the ids whose
// Commit returned Ok.
std::vector<CaptureId> CommitConcurrently(Spool* sp) {
  std::vector<CaptureId> ids(kCommits);
  std::vector<char> ok(kCommits, 0);
  std::latch start(kCommits);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCommits; ++i) {
    threads.emplace_back([&, i] {
      std::unique_ptr<SpoolWriter> w;
      if (!sp->Begin(&w).ok()) return;
      ids[i] = w->id();
      const std::string body = "Subject: group " + std::to_string(i) + "\r\n\r\nbody\r\n";
      if (!w->Append(body.data(), body.size()).ok()) return;
      start.arrive_and_wait();
      Status s = w->Commit(Meta(i));
      EXPECT_TRUE(s.ok()) << s.ToString();
      ok[i] = s.ok();
    });
  }
  for (auto& t : threads) t.join();
  std::vector<CaptureId> committed;
  for (int i = 0; i < kCommits; ++i)
    if (ok[i]) committed.push_back(ids[i]);
  return committed;
}

TEST(SpoolGroupCommit, ConcurrentCommitsShareDirectoryFsyncs) {
  TempDir d;
  const std::string root = d.path() + "/spool";
  SlowFirstDirSync io(nullptr, root + "/new", std::chrono::milliseconds(500));
  std::unique_ptr<Spool> sp;
  ASSERT_TRUE(Spool::Open(root, &sp, &io).ok());
  std::vector<CaptureId> committed = CommitConcurrently(sp.get());
  ASSERT_EQ(committed.size(), static_cast<size_t>(kCommits));
  // The first fsync runs alone; the commits that arrive while it runs share the next.
  EXPECT_LT(io.dir_syncs(), kCommits);
  EXPECT_GE(io.dir_syncs(), 2);
  for (const CaptureId& id : committed) {
    SpoolEntry e;
    EXPECT_TRUE(sp->VerifyOnly(id, &e).ok()) << id.ToString();
  }
  EXPECT_EQ(sp->Stats().count, static_cast<uint64_t>(kCommits));
}

TEST(SpoolGroupCommit, LoneCommitSyncsTheDirectoryItself) {
  TempDir d;
  const std::string root = d.path() + "/spool";
  struct Counting : DurableIoWrapper {
    using DurableIoWrapper::DurableIoWrapper;
    int syncs = 0;
    Status FsyncDir(const std::string& dir, const char* point = nullptr) override {
      ++syncs;
      return DurableIoWrapper::FsyncDir(dir, point);
    }
  } counting;
  std::unique_ptr<Spool> sp;
  ASSERT_TRUE(Spool::Open(root, &sp, &counting).ok());
  counting.syncs = 0;
  for (int i = 0; i < 3; ++i) {
    std::unique_ptr<SpoolWriter> w;
    ASSERT_TRUE(sp->Begin(&w).ok());
    ASSERT_TRUE(w->Append("x\r\n", 3).ok());
    ASSERT_TRUE(w->Commit(Meta(i)).ok());
    EXPECT_EQ(counting.syncs, i + 1);
  }
}

// Every commit that returned Ok survives a power loss right after the last one returned,
// although they shared directory fsyncs. A commit that returned on an fsync that started
// before its rename (the one the slow first fsync stands for) would be lost here in some
// of the rounds.
TEST(SpoolGroupCommit, AcknowledgedCommitsSurvivePowerLoss) {
  size_t lost = 0, acknowledged = 0;
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    TempDir d;
    const std::string root = d.path() + "/spool";
    std::unique_ptr<Spool> setup;
    ASSERT_TRUE(Spool::Open(root, &setup).ok());  // the directories exist durably before
    PowerLossIo power(seed);
    SlowFirstDirSync io(&power, root + "/new", std::chrono::milliseconds(100));
    std::unique_ptr<Spool> sp;
    ASSERT_TRUE(Spool::Open(root, &sp, &io).ok());
    std::vector<CaptureId> committed = CommitConcurrently(sp.get());
    acknowledged += committed.size();
    power.SimulateCrash();
    std::unique_ptr<Spool> after;
    ASSERT_TRUE(Spool::Open(root, &after).ok());
    for (const CaptureId& id : committed) {
      SpoolEntry e;
      if (!after->VerifyOnly(id, &e).ok()) ++lost;
    }
  }
  EXPECT_EQ(acknowledged, 12u * kCommits);
  EXPECT_EQ(lost, 0u);
}

}  // namespace
}  // namespace ccmail::store
