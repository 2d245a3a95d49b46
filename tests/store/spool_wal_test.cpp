// The spool's write-ahead log (store/include/ccmail/store/spool_wal.h): commits through the
// log, checkpoints, the replay of a dead writer's segments after a kill or a power loss,
// injected faults, concurrent commits, what the replay leaves alone, and reading records
// after a hole.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "ccmail/store/io.h"
#include "ccmail/store/power_loss_io.h"
#include "ccmail/store/spool.h"
#include "ccmail/store/spool_wal.h"
#include "test_util.h"

namespace ccmail::store {
namespace {
using test::Body;
using test::CaptureOne;
using test::CountFiles;
using test::RunChild;
using test::Slurp;
using test::TempDir;
using test::VerifyAllNew;
using test::WriteAndCommit;

// Small segments: a seal every 16 or so captures of Body(i).
WalOptions SmallSegments() {
  WalOptions o;
  o.segment_bytes = 64 << 10;
  o.max_image_bytes = 16 << 10;
  return o;
}

// Opens `root` as writer `tag` through `io` (nullptr: the real one), with the log on small segments.
::testing::AssertionResult OpenLogged(const std::string& root, std::unique_ptr<Spool>* sp, DurableIo* io = nullptr,
                                      const std::string& tag = "w1") {
  Status s = Spool::Open(root, sp, io, tag);
  if (s.ok()) s = (*sp)->EnableWal(SmallSegments());
  if (!s.ok()) return ::testing::AssertionFailure() << root << ": " << s.ToString();
  return ::testing::AssertionSuccess();
}

const auto kNoneKnown = [](const CaptureId&, bool* known) {
  *known = false;
  return Status::Ok();
};

std::vector<std::string> SegmentPaths(const std::string& wal_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(wal_dir, ec); !ec && it != std::filesystem::directory_iterator();
       ++it)
    out.push_back(it->path().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<CaptureId> RecordIds(const std::string& segment_path) {
  std::vector<CaptureId> ids;
  const std::string bytes = Slurp(segment_path);
  for (const auto& r : SpoolWal::ReadSegment(bytes)) ids.push_back(r.id);
  return ids;
}

bool InNew(Spool* sp, const CaptureId& id) { return std::filesystem::exists(sp->new_dir() + "/" + id.ToString()); }

// new/<id> verifies and its message is exactly Body(i).
::testing::AssertionResult HoldsBody(Spool* sp, const CaptureId& id, int i) {
  SpoolEntry e;
  Status s = sp->VerifyOnly(id, &e);
  if (!s.ok()) return ::testing::AssertionFailure() << id.ToString() << ": " << s.ToString();
  std::string message(e.message_length, '\0');
  if (pread(e.fd.get(), message.data(), message.size(), e.message_offset) != static_cast<ssize_t>(message.size()))
    return ::testing::AssertionFailure() << id.ToString() << ": short read";
  if (message != Body(i)) return ::testing::AssertionFailure() << id.ToString() << " does not hold Body(" << i << ")";
  return ::testing::AssertionSuccess();
}

// A writer process: it captures Body(0..captures-1) through the log and dies without
// destroying its Spool (no checkpoint), so its segment is left for the replay.
struct WriterPlan {
  std::string root;
  std::string tag = "w1";
  std::string crash_at;          // CCMAIL_CRASH_AT in the child ("" = none)
  int captures = 3;
  uint64_t power_loss_seed = 0;  // != 0: through PowerLossIo, power lost after the captures
  uint64_t power_cut_at_sync = 0;       // with power_loss_seed: PowerLossIo::set_power_cut_at_sync
  bool checkpoint_before_crash = false;  // destroys the Spool (its checkpoint) before the power loss
  WalOptions wal = SmallSegments();
};

// What the child reported through its pipe before it died: (body index, id).
struct WriterReport {
  int wait_status = 0;
  std::vector<std::pair<int, CaptureId>> begun;
  std::vector<std::pair<int, CaptureId>> acked;  // Commit returned Ok
};

WriterReport RunWriter(const WriterPlan& plan) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  auto report = [&](char what, int i, const CaptureId& id) {
    const std::string line = std::string(1, what) + " " + std::to_string(i) + " " + id.ToString() + "\n";
    return write(fds[1], line.data(), line.size()) == static_cast<ssize_t>(line.size());
  };
  WriterReport out;
  out.wait_status = RunChild(plan.crash_at, [&] {
    close(fds[0]);
    std::unique_ptr<PowerLossIo> power_loss;
    if (plan.power_loss_seed != 0) {
      power_loss = std::make_unique<PowerLossIo>(plan.power_loss_seed);
      power_loss->set_power_cut_at_sync(plan.power_cut_at_sync);
    }
    std::unique_ptr<Spool> sp;
    if (!Spool::Open(plan.root, &sp, power_loss.get(), plan.tag).ok()) return 100;
    if (!sp->EnableWal(plan.wal).ok()) return 101;
    for (int i = 0; i < plan.captures; ++i) {
      std::unique_ptr<SpoolWriter> w;
      if (!sp->Begin(&w).ok() || !report('B', i, w->id())) return 102;
      if (!WriteAndCommit(w.get(), Body(i)).ok()) return 103;
      if (!report('A', i, w->id())) return 104;
    }
    if (plan.checkpoint_before_crash) sp.reset();
    if (power_loss) {
      // One capture in flight, never acknowledged, when the power goes.
      std::unique_ptr<SpoolWriter> w;
      if (sp && (!sp->Begin(&w).ok() || !w->Append("partial", 7).ok())) return 105;
      power_loss->SimulateCrash();
    }
    _exit(0);  // no destructor: the segment is not checkpointed
    return 0;
  });
  close(fds[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  std::istringstream lines(text);
  char what;
  int i;
  std::string hex;
  while (lines >> what >> i >> hex) {
    auto id = CaptureId::Parse(hex);
    EXPECT_TRUE(id.has_value()) << hex;
    if (id) (what == 'A' ? out.acked : out.begun).emplace_back(i, *id);
  }
  return out;
}

bool ExitedOk(int wait_status) { return WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0; }

// ---- the power-loss model of a log's overwrites ----

// PowerLossIo remembers an overwrite with the bytes it replaced, also on a descriptor opened
// write-only (CreateExclusive opens a log segment so): a power loss before the file's sync
// may bring the old bytes back, one after it never does. Without this the power-loss tests
// below could not see a missing log sync.
TEST(PowerLossIoModel, UnsyncedOverwriteOfAWriteOnlyFileMayBeLost) {
  int reverted = 0;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    for (bool sync : {false, true}) {
      TempDir d;
      PowerLossIo io(seed);
      const std::string path = d.path() + "/segment";
      UniqueFd fd;
      ASSERT_TRUE(io.CreateExclusive(path, 0600, &fd).ok());
      const std::string zeros(8192, '\0');
      ASSERT_TRUE(io.WriteAll(fd.get(), zeros.data(), zeros.size(), path).ok());
      ASSERT_TRUE(io.Fsync(fd.get(), path).ok());
      ASSERT_TRUE(io.FsyncDir(d.path()).ok());
      const std::string record(100, 'R');
      ASSERT_TRUE(io.PWriteAll(fd.get(), record.data(), record.size(), 4096, path).ok());
      if (sync) {
        ASSERT_TRUE(io.Fdatasync(fd.get(), path).ok());
      }
      EXPECT_EQ(io.PendingCount(), sync ? 0u : 1u) << "seed " << seed;
      io.SimulateCrash();
      const std::string after = Slurp(path);
      ASSERT_EQ(after.size(), zeros.size());
      if (after.compare(4096, record.size(), record) != 0) {
        EXPECT_FALSE(sync) << "seed " << seed;
        EXPECT_EQ(after, zeros) << "seed " << seed;
        ++reverted;
      }
    }
  }
  EXPECT_GT(reverted, 0);
}

// ---- 1. commits through the log ----

TEST(SpoolWal, CommitsLeaveVerifyingFilesAndASegmentThatTheCheckpointRemoves) {
  TempDir d;
  const std::string root = d.path() + "/spool";
  std::unique_ptr<Spool> sp;
  ASSERT_TRUE(Spool::Open(root, &sp).ok());
  ASSERT_TRUE(sp->EnableWal().ok());
  EXPECT_TRUE(sp->wal_enabled());
  EXPECT_FALSE(sp->EnableWal().ok());  // once per Spool
  std::vector<CaptureId> ids(5);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(CaptureOne(sp.get(), i, &ids[i]).ok()) << i;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(HoldsBody(sp.get(), ids[i], i));
  EXPECT_EQ(CountFiles(sp->tmp_dir()), 0u);
  EXPECT_EQ(sp->Stats().count, 5u);
  // One segment, holding each capture's whole file as its record, in commit order.
  const auto segments = SegmentPaths(sp->wal_dir());
  ASSERT_EQ(segments.size(), 1u);
  const std::string bytes = Slurp(segments[0]);
  EXPECT_EQ(bytes.size(), WalOptions{}.segment_bytes);  // preallocated
  const auto records = SpoolWal::ReadSegment(bytes);
  ASSERT_EQ(records.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(records[i].id, ids[i]);
    EXPECT_EQ(records[i].image, Slurp(sp->new_dir() + "/" + ids[i].ToString())) << i;
    EXPECT_EQ(records[i].offset % 4096, 56u);
  }
  EXPECT_EQ(sp->wal()->checkpoints_done(), 0u);  // the active segment is not sealed

  sp.reset();  // seals and checkpoints
  EXPECT_EQ(CountFiles(root + "/wal"), 0u);
  ASSERT_TRUE(Spool::Open(root, &sp).ok());
  EXPECT_EQ(VerifyAllNew(sp.get()), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(HoldsBody(sp.get(), ids[i], i));
}

// Counts the durability steps of the two commit paths by their named points.
class CountingIo : public DurableIoWrapper {
 public:
  Status Fsync(int fd, const std::string& what, const char* point = nullptr) override {
    if (point && std::strcmp(point, kCrashSpoolTmpFsynced) == 0) ++file_fsyncs;
    return DurableIoWrapper::Fsync(fd, what, point);
  }
  Status Fdatasync(int fd, const std::string& what, const char* point = nullptr) override {
    if (point && std::strcmp(point, kCrashSpoolWalSynced) == 0) ++log_syncs;
    return DurableIoWrapper::Fdatasync(fd, what, point);
  }
  Status FsyncDir(const std::string& dir, const char* point = nullptr) override {
    if (point && std::strcmp(point, kCrashSpoolDirFsynced) == 0) ++new_dir_fsyncs;
    return DurableIoWrapper::FsyncDir(dir, point);
  }
  std::atomic<int> file_fsyncs{0}, log_syncs{0}, new_dir_fsyncs{0};
};

TEST(SpoolWal, CaptureLargerThanARecordIsCommittedTheFileWay) {
  TempDir d;
  const std::string root = d.path() + "/spool";
  CountingIo io;
  std::unique_ptr<Spool> sp;
  ASSERT_TRUE(OpenLogged(root, &sp, &io));
  auto capture = [&](const std::string& body, CaptureId* id) {
    std::unique_ptr<SpoolWriter> w;
    CCMAIL_RETURN_IF_ERROR(sp->Begin(&w));
    *id = w->id();
    return WriteAndCommit(w.get(), body);
  };
  auto expect_steps = [&](int file, int log, int dir, const char* what) {
    EXPECT_EQ(io.file_fsyncs.load(), file) << what;
    EXPECT_EQ(io.log_syncs.load(), log) << what;
    EXPECT_EQ(io.new_dir_fsyncs.load(), dir) << what;
  };
  const std::string small = Body(1);
  const std::string large(40000, 'L');
  // Its appended bytes fit in a record, but not with the metadata and trailer of Commit.
  const std::string boundary(SmallSegments().max_image_bytes - 16 - 8, 'B');
  CaptureId small_id, large_id, boundary_id;
  ASSERT_TRUE(capture(small, &small_id).ok());
  expect_steps(0, 1, 0, "small: one log sync, no file or directory fsync");
  ASSERT_TRUE(capture(large, &large_id).ok());
  expect_steps(1, 1, 1, "large: the file way");
  ASSERT_TRUE(capture(boundary, &boundary_id).ok());
  expect_steps(2, 1, 2, "boundary: the file way");
  ASSERT_EQ(SegmentPaths(sp->wal_dir()).size(), 1u);
  EXPECT_EQ(RecordIds(SegmentPaths(sp->wal_dir())[0]), std::vector<CaptureId>{small_id});
  EXPECT_EQ(VerifyAllNew(sp.get()), 3u);
  sp.reset();
  EXPECT_EQ(CountFiles(root + "/wal"), 0u);
  ASSERT_TRUE(Spool::Open(root, &sp).ok());
  EXPECT_EQ(VerifyAllNew(sp.get()), 3u);
  SpoolEntry e;
  ASSERT_TRUE(sp->VerifyOnly(large_id, &e).ok());
  EXPECT_EQ(e.message_length, large.size());
  ASSERT_TRUE(sp->VerifyOnly(boundary_id, &e).ok());
  EXPECT_EQ(e.message_length, boundary.size());
}

// ---- 2. power loss ----

// A writer child commits 6 captures through PowerLossIo(seed) and loses power; a new
// writer then opens the spool, replays the log (or not). Returns how many acknowledged
// captures are missing or do not hold their bytes.
size_t LostAfterPowerLoss(uint64_t seed, bool replay, WalReplayTally* tally) {
  TempDir d;
  const std::string root = d.path() + "/spool";
  {
    std::unique_ptr<Spool> setup;  // the directories exist durably before
    EXPECT_TRUE(Spool::Open(root, &setup).ok());
  }
  WriterPlan plan;
  plan.root = root;
  plan.captures = 6;
  plan.power_loss_seed = seed;
  const WriterReport w = RunWriter(plan);
  EXPECT_TRUE(ExitedOk(w.wait_status)) << "seed " << seed << " status " << w.wait_status;
  EXPECT_EQ(w.acked.size(), 6u) << "seed " << seed;
  std::unique_ptr<Spool> sp;
  if (replay) {
    // The replay must make what it restores durable: the power goes again right after it.
    PowerLossIo io(seed + 7777);
    EXPECT_TRUE(Spool::Open(root, &sp, &io, "w2").ok());
    Status s = sp->ReplayWal(kNoneKnown, tally);
    EXPECT_TRUE(s.ok()) << s.ToString();
    io.SimulateCrash();
    sp.reset();
  }
  EXPECT_TRUE(Spool::Open(root, &sp, nullptr, "w3").ok());
  if (replay) {
    EXPECT_EQ(CountFiles(sp->wal_dir()), 0u) << "seed " << seed;
    EXPECT_EQ(VerifyAllNew(sp.get()), 6u) << "seed " << seed;  // nothing torn, nothing extra
  }
  size_t lost = 0;
  for (const auto& [i, id] : w.acked)
    if (!HoldsBody(sp.get(), id, i)) ++lost;
  return lost;
}

constexpr uint64_t kPowerLossSeeds = 40;

TEST(SpoolWalPowerLoss, ReplayKeepsEveryAcknowledgedCapture) {
  WalReplayTally total;
  for (uint64_t seed = 1; seed <= kPowerLossSeeds; ++seed) {
    WalReplayTally tally;
    EXPECT_EQ(LostAfterPowerLoss(seed, true, &tally), 0u) << "seed " << seed;
    EXPECT_EQ(tally.segments, 1u) << "seed " << seed;
    EXPECT_EQ(tally.made_durable + tally.restored, 6u) << "seed " << seed;
    EXPECT_EQ(tally.torn, 0u) << "seed " << seed;
    total.restored += tally.restored;
    total.made_durable += tally.made_durable;
  }
  // Both branches of the replay ran: files rewritten from their record, files only fsynced.
  EXPECT_GT(total.restored, 0u);
  EXPECT_GT(total.made_durable, 0u);
}

// The negative control: the power-loss model does lose or tear acknowledged captures whose
// files were never fsynced; only the replay brings them back.
TEST(SpoolWalPowerLoss, WithoutReplayAcknowledgedCapturesAreLost) {
  size_t lost = 0;
  for (uint64_t seed = 1; seed <= kPowerLossSeeds; ++seed) lost += LostAfterPowerLoss(seed, false, nullptr);
  EXPECT_GT(lost, 0u);
}

// The checkpoint deletes a segment only once the files of its captures are durable: a
// writer that checkpointed everything (its Spool destroyed) then loses power keeps them all,
// with no segment left to replay.
TEST(SpoolWalPowerLoss, CheckpointedCapturesSurviveWithoutALog) {
  size_t lost = 0;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    TempDir d;
    WriterPlan plan;
    plan.root = d.path() + "/spool";
    plan.captures = 20;  // two segments: one sealed while the writer runs
    plan.power_loss_seed = seed;
    plan.checkpoint_before_crash = true;
    {
      std::unique_ptr<Spool> setup;
      ASSERT_TRUE(Spool::Open(plan.root, &setup).ok());
    }
    const WriterReport w = RunWriter(plan);
    ASSERT_TRUE(ExitedOk(w.wait_status)) << "seed " << seed << " status " << w.wait_status;
    ASSERT_EQ(w.acked.size(), 20u);
    std::unique_ptr<Spool> sp;
    ASSERT_TRUE(Spool::Open(plan.root, &sp, nullptr, "w2").ok());
    EXPECT_EQ(CountFiles(sp->wal_dir()), 0u) << "seed " << seed;
    for (const auto& [i, id] : w.acked)
      if (!HoldsBody(sp.get(), id, i)) ++lost;
  }
  EXPECT_EQ(lost, 0u);
}

// The machine stops at the N-th durability barrier (a log sync, a file or directory fsync of
// a checkpoint, a new segment's): whatever was acknowledged before is there after the replay,
// and nothing torn is in new/. Small segments, so the cut also lands inside checkpoints.
TEST(SpoolWalPowerLoss, PowerCutAtAnySyncThenReplayKeepsEveryAcknowledgedCapture) {
  int cuts = 0;
  for (uint64_t n = 1; n <= 100; n += 2) {
    TempDir d;
    WriterPlan plan;
    plan.root = d.path() + "/spool";
    plan.captures = 40;
    plan.power_loss_seed = 1000 + n;
    plan.power_cut_at_sync = n;
    plan.checkpoint_before_crash = true;
    {
      std::unique_ptr<Spool> setup;
      ASSERT_TRUE(Spool::Open(plan.root, &setup).ok());
    }
    const WriterReport w = RunWriter(plan);
    const bool cut = WIFEXITED(w.wait_status) && WEXITSTATUS(w.wait_status) == PowerLossIo::kPowerCutExit;
    ASSERT_TRUE(cut || ExitedOk(w.wait_status)) << "cut at " << n << " status " << w.wait_status;
    if (cut) ++cuts;
    std::unique_ptr<Spool> sp;
    ASSERT_TRUE(Spool::Open(plan.root, &sp, nullptr, "w2").ok());
    WalReplayTally tally;
    Status s = sp->ReplayWal(kNoneKnown, &tally);
    ASSERT_TRUE(s.ok()) << "cut at " << n << ": " << s.ToString();
    EXPECT_EQ(CountFiles(sp->wal_dir()), 0u) << "cut at " << n;
    VerifyAllNew(sp.get());
    for (const auto& [i, id] : w.acked) EXPECT_TRUE(HoldsBody(sp.get(), id, i)) << "cut at " << n;
  }
  EXPECT_GT(cuts, 40);  // a whole run passes about 93: the cuts landed inside it
}

// ---- 3. kill at the log's crash points ----

TEST(SpoolWalCrash, KillAtEachLogPointThenReplayKeepsEveryAcknowledgedCapture) {
  for (const char* point : {kCrashSpoolWalWritten, kCrashSpoolWalSynced, kCrashSpoolRenamed}) {
    for (int n : {1, 2, 3}) {
      const std::string spec = std::string(point) + ":" + std::to_string(n);
      TempDir d;
      WriterPlan plan;
      plan.root = d.path() + "/spool";
      plan.crash_at = spec;
      plan.captures = 3;
      const WriterReport w = RunWriter(plan);
      ASSERT_TRUE(WIFSIGNALED(w.wait_status) && WTERMSIG(w.wait_status) == SIGKILL) << spec << " " << w.wait_status;
      ASSERT_EQ(w.acked.size(), static_cast<size_t>(n - 1)) << spec;
      ASSERT_EQ(w.begun.size(), static_cast<size_t>(n)) << spec;
      const bool renamed = std::string(point) == kCrashSpoolRenamed;

      std::unique_ptr<Spool> sp;
      ASSERT_TRUE(Spool::Open(plan.root, &sp, nullptr, "w2").ok());
      ASSERT_EQ(CountFiles(sp->wal_dir()), 1u) << spec;
      WalReplayTally tally;
      Status s = sp->ReplayWal(kNoneKnown, &tally);
      ASSERT_TRUE(s.ok()) << spec << " " << s.ToString();
      EXPECT_EQ(tally.segments, 1u) << spec;
      EXPECT_EQ(tally.live_skipped, 0u) << spec;
      EXPECT_EQ(tally.torn, 0u) << spec;
      // The killed capture's record was whole (the points pass after the write), and a kill
      // loses nothing already written: it is back even though it was never acknowledged.
      EXPECT_EQ(tally.restored, renamed ? 0u : 1u) << spec;
      EXPECT_EQ(tally.made_durable, renamed ? static_cast<uint64_t>(n) : static_cast<uint64_t>(n - 1)) << spec;
      EXPECT_EQ(CountFiles(sp->wal_dir()), 0u) << spec;
      EXPECT_EQ(VerifyAllNew(sp.get()), static_cast<size_t>(n)) << spec;
      for (const auto& [i, id] : w.acked) EXPECT_TRUE(HoldsBody(sp.get(), id, i)) << spec;
      EXPECT_TRUE(HoldsBody(sp.get(), w.begun.back().second, w.begun.back().first)) << spec;

      // The dead writer's tmp file (never renamed) is the janitor's; the replay left none.
      size_t removed = 0;
      ASSERT_TRUE(sp->CleanTmp([](const std::string& tag) { return tag != "w1"; }, &removed).ok());
      EXPECT_EQ(removed, renamed ? 0u : 1u) << spec;
      EXPECT_EQ(CountFiles(sp->tmp_dir()), 0u) << spec;
      EXPECT_EQ(VerifyAllNew(sp.get()), static_cast<size_t>(n)) << spec;
    }
  }
}

// ---- 4. injected faults ----

TEST(SpoolWal, FailedLogWriteOrSyncFailsOnlyItsCommitAndTheNextUseANewSegment) {
  struct Case {
    const char* spec;
    int failing;  // index of the capture whose commit fails
  };
  for (const Case& c : {Case{"spool.wal.synced:1:EIO", 0}, Case{"spool.wal.written:1:EIO", 0},
                        Case{"spool.wal.written:1:SHORT", 0}, Case{"spool.wal.synced:2:EIO", 1}}) {
    TempDir d;
    const std::string root = d.path() + "/spool";
    std::unique_ptr<Spool> sp;
    ASSERT_TRUE(OpenLogged(root, &sp));
    const uint64_t injected_before = InjectedFailureCount();
    setenv("CCMAIL_FAIL_AT", c.spec, 1);
    ReloadFaultSpecFromEnv();
    std::vector<CaptureId> ids(4);
    std::vector<Status> results;
    for (int i = 0; i < 4; ++i) results.push_back(CaptureOne(sp.get(), i, &ids[i]));
    const uint64_t injected = InjectedFailureCount() - injected_before;
    unsetenv("CCMAIL_FAIL_AT");
    ReloadFaultSpecFromEnv();
    EXPECT_EQ(injected, 1u) << c.spec;
    for (int i = 0; i < 4; ++i) {
      if (i == c.failing) {
        EXPECT_FALSE(results[i].ok()) << c.spec;
        EXPECT_TRUE(results[i].code() == Status::Code::kIoError || results[i].code() == Status::Code::kNoSpace)
            << c.spec << " " << results[i].ToString();
        EXPECT_NE(results[i].message().find(ids[i].ToString()), std::string::npos) << results[i].ToString();
        EXPECT_FALSE(InNew(sp.get(), ids[i])) << c.spec;
      } else {
        EXPECT_TRUE(results[i].ok()) << c.spec << " " << i << " " << results[i].ToString();
        EXPECT_TRUE(HoldsBody(sp.get(), ids[i], i)) << c.spec;
      }
    }
    EXPECT_EQ(CountFiles(sp->tmp_dir()), 0u) << c.spec;
    // The failed segment is never synced again: the commits after the failure went into
    // segment 2, and only they.
    const std::string second = sp->wal_dir() + "/w1.00000002";
    ASSERT_TRUE(std::filesystem::exists(second)) << c.spec;
    EXPECT_FALSE(std::filesystem::exists(sp->wal_dir() + "/w1.00000003")) << c.spec;
    EXPECT_EQ(RecordIds(second), std::vector<CaptureId>(ids.begin() + c.failing + 1, ids.end())) << c.spec;
    sp.reset();
    EXPECT_EQ(CountFiles(root + "/wal"), 0u) << c.spec;
    ASSERT_TRUE(Spool::Open(root, &sp).ok());
    EXPECT_EQ(VerifyAllNew(sp.get()), 3u) << c.spec;
  }
}

// A record whose header holds but whose image does not verify (its write never completed, so
// it was never acknowledged) is counted and skipped: nothing torn reaches new/.
TEST(SpoolWalReplay, SkipsATornRecordAndRestoresTheOthers) {
  TempDir d;
  const std::string root = d.path() + "/spool";
  std::unique_ptr<Spool> sp;
  ASSERT_TRUE(OpenLogged(root, &sp));
  std::vector<CaptureId> ids(2);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(CaptureOne(sp.get(), i, &ids[i]).ok());
  std::string bytes = Slurp(SegmentPaths(sp->wal_dir())[0]);
  const auto records = SpoolWal::ReadSegment(bytes);
  ASSERT_EQ(records.size(), 2u);
  bytes[records[0].offset + 100] ^= 0x20;  // inside the first capture's message
  ASSERT_TRUE(test::WriteFile(sp->wal_dir() + "/dead.00000001", bytes));
  for (const CaptureId& id : ids) ASSERT_TRUE(sp->Remove(id).ok());
  std::unique_ptr<Spool> replayer;
  ASSERT_TRUE(Spool::Open(root, &replayer, nullptr, "w2").ok());
  WalReplayTally tally;
  ASSERT_TRUE(replayer->ReplayWal(kNoneKnown, &tally).ok());
  EXPECT_EQ(tally.torn, 1u);
  EXPECT_EQ(tally.restored, 1u);
  EXPECT_FALSE(InNew(replayer.get(), ids[0]));
  EXPECT_TRUE(HoldsBody(replayer.get(), ids[1], 1));
  EXPECT_EQ(CountFiles(replayer->tmp_dir()), 0u);
  EXPECT_EQ(CountFiles(replayer->corrupt_dir()), 0u);
}

// Holds the first capture's rename into new/ until the main thread says so, and meanwhile
// watches the log segment of that capture.
class HeldRename : public DurableIoWrapper {
 public:
  explicit HeldRename(std::string new_dir) : new_dir_(std::move(new_dir)) {}
  Status Rename(const std::string& from, const std::string& to, const char* point = nullptr) override {
    if (to.rfind(new_dir_ + "/", 0) == 0 && !held_.exchange(true)) {
      std::unique_lock<std::mutex> l(mu_);
      in_rename_ = true;
      cv_.notify_all();
      cv_.wait(l, [&] { return release_; });
    }
    return DurableIoWrapper::Rename(from, to, point);
  }
  void WaitUntilHeld() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return in_rename_; });
  }
  void Release() {
    std::lock_guard<std::mutex> l(mu_);
    release_ = true;
    cv_.notify_all();
  }

 private:
  const std::string new_dir_;
  std::atomic<bool> held_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool in_rename_ = false, release_ = false;
};

// A sealed segment is not checkpointed while one of its captures is between its log sync and
// its rename into new/: the checkpoint would find no file to fsync and delete the only
// durable copy of an acknowledged capture.
TEST(SpoolWal, CheckpointWaitsForACaptureNotYetRenamed) {
  TempDir d;
  const std::string root = d.path() + "/spool";
  HeldRename io(root + "/new");
  std::unique_ptr<Spool> sp;
  ASSERT_TRUE(OpenLogged(root, &sp, &io));
  CaptureId held_id;
  Status held_status;
  std::thread held([&] { held_status = CaptureOne(sp.get(), 0, &held_id); });
  struct ReleaseAtExit {  // a failed ASSERT must not leave the thread blocked
    HeldRename& io;
    std::thread& thread;
    ~ReleaseAtExit() {
      io.Release();
      if (thread.joinable()) thread.join();
    }
  } release_at_exit{io, held};
  io.WaitUntilHeld();
  const std::string first = sp->wal_dir() + "/w1.00000001";
  // Enough captures to seal the first segment (16 records of Body(i) fill 64 KiB).
  for (int i = 1; i <= 20; ++i) {
    CaptureId id;
    ASSERT_TRUE(CaptureOne(sp.get(), i, &id).ok()) << i;
  }
  ASSERT_TRUE(std::filesystem::exists(sp->wal_dir() + "/w1.00000002"));  // the first is sealed
  bool first_kept = true;
  for (int k = 0; k < 50 && first_kept; ++k) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    first_kept = std::filesystem::exists(first);
  }
  EXPECT_TRUE(first_kept) << "the segment was checkpointed before its capture was renamed";
  EXPECT_EQ(sp->wal()->checkpoints_done(), 0u);
  io.Release();
  held.join();
  ASSERT_TRUE(held_status.ok()) << held_status.ToString();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::filesystem::exists(first) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_FALSE(std::filesystem::exists(first));  // checkpointed once the capture is in new/
  EXPECT_TRUE(HoldsBody(sp.get(), held_id, 0));
}

// ---- 5. concurrent commits ----

TEST(SpoolWal, ConcurrentCommitsSealAndCheckpointManySegments) {
  constexpr int kThreads = 8, kPerThread = 100;
  TempDir d;
  const std::string root = d.path() + "/spool";
  std::unique_ptr<Spool> sp;
  ASSERT_TRUE(OpenLogged(root, &sp));
  std::vector<std::vector<CaptureId>> ids(kThreads, std::vector<CaptureId>(kPerThread));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int k = 0; k < kPerThread; ++k)
        if (!CaptureOne(sp.get(), (t * kPerThread + k) % 50, &ids[t][k]).ok()) ++failures;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  std::set<CaptureId> distinct;
  for (const auto& v : ids) distinct.insert(v.begin(), v.end());
  EXPECT_EQ(distinct.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(VerifyAllNew(sp.get()), static_cast<size_t>(kThreads * kPerThread));
  // Sealed segments are checkpointed while the writer runs, not only at its end.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (sp->wal()->checkpoints_done() <= 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_GT(sp->wal()->checkpoints_done(), 1u);
  sp.reset();
  EXPECT_EQ(CountFiles(root + "/wal"), 0u);
  ASSERT_TRUE(Spool::Open(root, &sp).ok());
  EXPECT_EQ(VerifyAllNew(sp.get()), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(CountFiles(sp->tmp_dir()), 0u);
  for (int t = 0; t < kThreads; ++t)
    for (int k = 0; k < kPerThread; k += 37) EXPECT_TRUE(HoldsBody(sp.get(), ids[t][k], (t * kPerThread + k) % 50));
}

// ---- 6. what the replay leaves alone ----

// The live writer's one segment holds exactly `ids`; once the writer is gone (its checkpoint
// ran) no segment is left and every capture i of `ids` holds Body(i) in new/.
void ExpectLoggedThenCheckpointed(const std::string& root, std::unique_ptr<Spool>* writer, Spool* reader,
                                  const std::vector<CaptureId>& ids) {
  const auto segments = SegmentPaths(root + "/wal");
  ASSERT_EQ(segments.size(), 1u);
  EXPECT_EQ(RecordIds(segments[0]), ids);
  writer->reset();
  EXPECT_EQ(CountFiles(root + "/wal"), 0u);
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_TRUE(HoldsBody(reader, ids[i], static_cast<int>(i)));
}

TEST(SpoolWalReplay, LeavesALiveWritersSegmentAlone) {
  TempDir d;
  const std::string root = d.path() + "/spool";
  std::unique_ptr<Spool> live;
  ASSERT_TRUE(OpenLogged(root, &live));
  CaptureId a, b;
  ASSERT_TRUE(CaptureOne(live.get(), 0, &a).ok());
  ASSERT_TRUE(CaptureOne(live.get(), 1, &b).ok());
  std::unique_ptr<Spool> replayer;
  ASSERT_TRUE(Spool::Open(root, &replayer, nullptr, "w2").ok());
  WalReplayTally tally;
  ASSERT_TRUE(replayer->ReplayWal(kNoneKnown, &tally).ok());
  EXPECT_EQ(tally.live_skipped, 1u);
  EXPECT_EQ(tally.segments, 0u);
  EXPECT_EQ(tally.made_durable + tally.restored + tally.already_done, 0u);
  ExpectLoggedThenCheckpointed(root, &live, replayer.get(), {a, b});
}

TEST(SpoolWalReplay, SkipsCapturesTheLedgerKnowsOrThatAreQuarantined) {
  TempDir d;
  WriterPlan plan;
  plan.root = d.path() + "/spool";
  plan.captures = 3;
  const WriterReport w = RunWriter(plan);
  ASSERT_TRUE(ExitedOk(w.wait_status)) << w.wait_status;
  ASSERT_EQ(w.acked.size(), 3u);
  const CaptureId exported = w.acked[0].second, quarantined = w.acked[1].second, pending = w.acked[2].second;
  std::unique_ptr<Spool> sp;
  ASSERT_TRUE(Spool::Open(plan.root, &sp, nullptr, "w2").ok());
  // The exporter committed `exported` to its ledger and removed its file; an administrator's
  // tool quarantined the other.
  ASSERT_TRUE(sp->Remove(exported).ok());
  ASSERT_TRUE(sp->Quarantine(quarantined, "test: quarantined").ok());
  std::vector<CaptureId> asked;
  WalReplayTally tally;
  Status s = sp->ReplayWal(
      [&](const CaptureId& id, bool* known) {
        asked.push_back(id);
        *known = id == exported;
        return Status::Ok();
      },
      &tally);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(asked.size(), 3u);
  EXPECT_EQ(tally.segments, 1u);
  EXPECT_EQ(tally.already_done, 2u);
  EXPECT_EQ(tally.made_durable, 1u);
  EXPECT_EQ(tally.restored, 0u);
  EXPECT_FALSE(InNew(sp.get(), exported));
  EXPECT_FALSE(InNew(sp.get(), quarantined));
  EXPECT_TRUE(std::filesystem::exists(sp->corrupt_dir() + "/" + quarantined.ToString()));
  EXPECT_TRUE(HoldsBody(sp.get(), pending, 2));
  EXPECT_EQ(CountFiles(sp->wal_dir()), 0u);
}

// A capture committed through the log has an unsynced file. Once it is quarantined it is out
// of new/, so neither the checkpoint nor a replay looks after it: Quarantine itself must make
// its bytes durable. Same process, same PowerLossIo for the commit, the move and the crash.
TEST(SpoolWalPowerLoss, AQuarantinedCaptureKeepsItsBytes) {
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    TempDir d;
    const std::string root = d.path() + "/spool";
    PowerLossIo io(seed);
    std::unique_ptr<Spool> sp;
    ASSERT_TRUE(Spool::Open(root, &sp, &io, "w1").ok());
    ASSERT_TRUE(io.FsyncDir(d.path()).ok());
    ASSERT_TRUE(io.FsyncDir(root).ok());
    ASSERT_TRUE(sp->EnableWal(SmallSegments()).ok());
    CaptureId id;
    ASSERT_TRUE(CaptureOne(sp.get(), 3, &id).ok());
    ASSERT_TRUE(sp->Quarantine(id, "test: unconvertible").ok());
    io.SimulateCrash();
    SpoolEntry e;
    Status s = sp->VerifyQuarantined(id, &e);
    ASSERT_TRUE(s.ok()) << "seed " << seed << ": " << s.ToString();
    EXPECT_EQ(std::string(e.message_data(), e.message_length), Body(3)) << "seed " << seed;
  }
}

TEST(SpoolWalReplay, KeepsTheSegmentWhenTheLedgerCannotAnswer) {
  TempDir d;
  WriterPlan plan;
  plan.root = d.path() + "/spool";
  plan.captures = 1;
  const WriterReport w = RunWriter(plan);
  ASSERT_TRUE(ExitedOk(w.wait_status)) << w.wait_status;
  ASSERT_EQ(w.acked.size(), 1u);
  std::unique_ptr<Spool> sp;
  ASSERT_TRUE(Spool::Open(plan.root, &sp, nullptr, "w2").ok());
  ASSERT_TRUE(sp->Remove(w.acked[0].second).ok());  // as if lost
  WalReplayTally tally;
  Status s = sp->ReplayWal([](const CaptureId&, bool*) { return Status::Unavailable("ledger is down"); }, &tally);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("ledger is down"), std::string::npos) << s.ToString();
  EXPECT_EQ(CountFiles(sp->wal_dir()), 1u);
  ASSERT_TRUE(sp->ReplayWal(kNoneKnown, &tally).ok());
  EXPECT_EQ(tally.restored, 1u);
  EXPECT_TRUE(HoldsBody(sp.get(), w.acked[0].second, 0));
  EXPECT_EQ(CountFiles(sp->wal_dir()), 0u);
}

// Runs a replay (another process's recovery) right after the writer creates a new segment,
// before the writer could lock it.
class ReplayAfterSegmentCreate : public DurableIoWrapper {
 public:
  ReplayAfterSegmentCreate(std::string wal_dir, Spool* replayer) : wal_dir_(std::move(wal_dir)), replayer_(replayer) {}
  Status CreateExclusive(const std::string& path, mode_t mode, UniqueFd* fd, const char* point = nullptr) override {
    Status s = DurableIoWrapper::CreateExclusive(path, mode, fd, point);
    if (s.ok() && path.rfind(wal_dir_ + "/", 0) == 0 && !replayed_) {
      replayed_ = true;
      replay_status = replayer_->ReplayWal(kNoneKnown, &tally);
    }
    return s;
  }
  Status replay_status;
  WalReplayTally tally;

 private:
  const std::string wal_dir_;
  Spool* replayer_;
  bool replayed_ = false;
};

// A replay that finds a new segment before its writer locked it may take it for a dead
// writer's and delete it; the writer must then not log into the deleted file (its
// acknowledged records would be in no segment, and their files in new/ are not synced).
TEST(SpoolWalReplay, ANewSegmentTakenByAReplayIsNotUsed) {
  TempDir d;
  const std::string root = d.path() + "/spool";
  std::unique_ptr<Spool> replayer;
  ASSERT_TRUE(Spool::Open(root, &replayer, nullptr, "w2").ok());
  ReplayAfterSegmentCreate io(root + "/wal", replayer.get());
  std::unique_ptr<Spool> sp;
  ASSERT_TRUE(OpenLogged(root, &sp, &io));
  CaptureId a, b;
  ASSERT_TRUE(CaptureOne(sp.get(), 0, &a).ok());
  ASSERT_TRUE(CaptureOne(sp.get(), 1, &b).ok());
  ASSERT_TRUE(io.replay_status.ok()) << io.replay_status.ToString();
  // Whatever the replay did, the acknowledged records are in a segment on disk.
  ExpectLoggedThenCheckpointed(root, &sp, replayer.get(), {a, b});
}

// ---- 7. records after a hole ----

TEST(SpoolWalSegment, ReadSegmentFindsRecordsAfterAHoleAndSkipsDamagedOnes) {
  TempDir d;
  const std::string root = d.path() + "/spool";
  std::unique_ptr<Spool> sp;
  ASSERT_TRUE(OpenLogged(root, &sp));
  std::vector<CaptureId> ids(3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(CaptureOne(sp.get(), i, &ids[i]).ok());
  ASSERT_EQ(SegmentPaths(sp->wal_dir()).size(), 1u);
  const std::string bytes = Slurp(SegmentPaths(sp->wal_dir())[0]);
  const auto records = SpoolWal::ReadSegment(bytes);
  ASSERT_EQ(records.size(), 3u);
  constexpr uint64_t kHeader = 56;
  const uint64_t start[3] = {records[0].offset - kHeader, records[1].offset - kHeader, records[2].offset - kHeader};
  auto ids_of = [](const std::string& segment) {
    std::vector<CaptureId> out;
    for (const auto& r : SpoolWal::ReadSegment(segment)) out.push_back(r.id);
    return out;
  };

  // The middle reservation's writer died before writing: zeros where its record would be.
  std::string hole = bytes;
  std::fill(hole.begin() + static_cast<long>(start[1]), hole.begin() + static_cast<long>(start[2]), '\0');
  const auto after_hole = SpoolWal::ReadSegment(hole);
  ASSERT_EQ(after_hole.size(), 2u);
  EXPECT_EQ(after_hole[0].id, ids[0]);
  EXPECT_EQ(after_hole[1].id, ids[2]);
  EXPECT_EQ(after_hole[1].offset, records[2].offset);
  EXPECT_EQ(after_hole[1].image, Slurp(sp->new_dir() + "/" + ids[2].ToString()));

  // A hole at the start of the segment.
  std::string first_hole = bytes;
  std::fill(first_hole.begin(), first_hole.begin() + static_cast<long>(start[1]), '\0');
  EXPECT_EQ(ids_of(first_hole), (std::vector<CaptureId>{ids[1], ids[2]}));
  // A header whose checksum does not hold (a torn header) is skipped, not trusted.
  std::string bad_header = bytes;
  bad_header[start[1] + 9] ^= 1;
  EXPECT_EQ(ids_of(bad_header), (std::vector<CaptureId>{ids[0], ids[2]}));
  // An image cut by the end of the bytes is not returned.
  EXPECT_EQ(ids_of(bytes.substr(0, records[2].offset + records[2].image.size() / 2)),
            (std::vector<CaptureId>{ids[0], ids[1]}));

  // A dead writer's segment with that hole: the replay restores the records after it.
  ASSERT_TRUE(test::WriteFile(sp->wal_dir() + "/dead.00000001", hole));
  ASSERT_TRUE(sp->Remove(ids[0]).ok());
  ASSERT_TRUE(sp->Remove(ids[2]).ok());
  std::unique_ptr<Spool> replayer;
  ASSERT_TRUE(Spool::Open(root, &replayer, nullptr, "w2").ok());
  WalReplayTally tally;
  ASSERT_TRUE(replayer->ReplayWal(kNoneKnown, &tally).ok());
  EXPECT_EQ(tally.segments, 1u);
  EXPECT_EQ(tally.live_skipped, 1u);  // w1's own segment
  EXPECT_EQ(tally.restored, 2u);
  EXPECT_TRUE(HoldsBody(replayer.get(), ids[0], 0));
  EXPECT_TRUE(HoldsBody(replayer.get(), ids[2], 2));
  EXPECT_FALSE(std::filesystem::exists(sp->wal_dir() + "/dead.00000001"));
}

}  // namespace
}  // namespace ccmail::store
