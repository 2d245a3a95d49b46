// Crash tests: kill -9 at every spool and ledger crash point (real child processes),
// and simulated power loss proving where the fsyncs must be.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>

#include <gtest/gtest.h>

#include "ccmail/store/content_key.h"
#include "ccmail/store/io.h"
#include "ccmail/store/ledger.h"
#include "ccmail/store/power_loss_io.h"
#include "ccmail/store/spool.h"
#include "test_util.h"

namespace ccmail::store {
namespace {
using test::CaptureOne;
using test::CountFiles;
using test::RunChild;
using test::TempDir;
using test::VerifyAllNew;

TEST(SpoolCrash, KillAtEveryPointNeverLeavesHalfFileInNew) {
  for (const auto& point : SpoolCaptureCrashPoints()) {
    for (int n : {1, 2, 3}) {
      TempDir d;
      std::string root = d.path() + "/spool";
      std::string spec = point + ":" + std::to_string(n);
      // The child captures 3 messages and reports how many commits returned OK via exit
      // code (only reached when no kill happened).
      int st = RunChild(spec, [&] {
        std::unique_ptr<Spool> sp;
        if (!Spool::Open(root, &sp).ok()) return 100;
        int ok = 0;
        for (int i = 0; i < 3; ++i) {
          CaptureId id;
          if (CaptureOne(sp.get(), i, &id).ok()) ++ok;
        }
        return ok;
      });
      std::unique_ptr<Spool> sp;
      ASSERT_TRUE(Spool::Open(root, &sp).ok());
      size_t in_new = VerifyAllNew(sp.get());
      size_t in_tmp = CountFiles(sp->tmp_dir());
      bool killed = WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
      // spool.tmp.written passes 3 times per capture (header, two appends) + 1 in Commit.
      ASSERT_TRUE(killed || (WIFEXITED(st) && WEXITSTATUS(st) == 3)) << spec << " status " << st;
      if (killed) {
        EXPECT_LE(in_new + in_tmp, 3u) << spec;
        EXPECT_LE(in_tmp, 1u) << spec;  // at most the one being written
        // A kill after the rename means the capture is in new/ (complete), never in tmp/.
        if (point == kCrashSpoolRenamed || point == kCrashSpoolDirFsynced) {
          EXPECT_EQ(in_tmp, 0u) << spec;
          EXPECT_EQ(in_new, static_cast<size_t>(n)) << spec;
        } else if (point != kCrashSpoolTmpWritten) {
          EXPECT_EQ(in_new, static_cast<size_t>(n - 1)) << spec;
          EXPECT_EQ(in_tmp, 1u) << spec;
        }
        // The janitor removes the dead writer's tmp file; new/ is untouched.
        size_t removed = 0;
        ASSERT_TRUE(sp->CleanTmp([](const std::string&) { return false; }, &removed).ok());
        EXPECT_EQ(removed, in_tmp);
        EXPECT_EQ(VerifyAllNew(sp.get()), in_new);
      } else {
        EXPECT_EQ(in_new, 3u) << spec;
      }
    }
  }
}

TEST(SpoolCrash, RandomInstantKillsNeverTearNew) {
  // Children capture in a loop; the parent kills them at random instants.
  TempDir d;
  std::string root = d.path() + "/spool";
  std::mt19937 rng(static_cast<unsigned>(getpid()));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int kills = 0;
  for (; kills < 200 && std::chrono::steady_clock::now() < deadline; ++kills) {
    pid_t pid = fork();
    if (pid == 0) {
      std::unique_ptr<Spool> sp;
      if (!Spool::Open(root, &sp).ok()) _exit(100);
      for (int i = 0;; ++i) {
        CaptureId id;
        (void)CaptureOne(sp.get(), i % 50, &id);
      }
    }
    usleep(500 + rng() % 8000);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
  }
  std::unique_ptr<Spool> sp;
  ASSERT_TRUE(Spool::Open(root, &sp).ok());
  VerifyAllNew(sp.get());
  EXPECT_LE(CountFiles(sp->tmp_dir()), static_cast<size_t>(kills));
  EXPECT_EQ(CountFiles(sp->corrupt_dir()), 0u);
}

// Power loss: with the real protocol every acknowledged capture survives any random
// subset of lost non-durable operations; without the directory fsync some are lost.
size_t LostAcknowledged(bool skip_dir_fsync, int rounds, uint64_t seed) {
  size_t lost = 0;
  for (int r = 0; r < rounds; ++r) {
    TempDir d;
    std::string root = d.path() + "/spool";
    std::unique_ptr<Spool> setup;
    EXPECT_TRUE(Spool::Open(root, &setup).ok());  // directories exist durably before
    PowerLossIo io(seed + static_cast<uint64_t>(r));
    io.set_skip_dir_fsync(skip_dir_fsync);
    std::unique_ptr<Spool> sp;
    EXPECT_TRUE(Spool::Open(root, &sp, &io).ok());
    std::vector<CaptureId> acked;
    for (int i = 0; i < 4; ++i) {
      CaptureId id;
      if (CaptureOne(sp.get(), i, &id).ok()) acked.push_back(id);
    }
    // One capture in flight (not acknowledged) at the crash.
    std::unique_ptr<SpoolWriter> w;
    EXPECT_TRUE(sp->Begin(&w).ok());
    EXPECT_TRUE(w->Append("partial", 7).ok());
    io.SimulateCrash();
    w.reset();
    std::unique_ptr<Spool> after;
    EXPECT_TRUE(Spool::Open(root, &after).ok());
    for (const auto& id : acked) {
      SpoolEntry e;
      Status s = after->VerifyOnly(id, &e);
      if (!s.ok()) ++lost;
    }
    // Nothing unacknowledged or torn ever appears in new/.
    std::vector<CaptureId> ids;
    EXPECT_TRUE(after->ListPending(&ids).ok());
    for (const auto& id : ids) {
      SpoolEntry e;
      EXPECT_TRUE(after->VerifyOnly(id, &e).ok() || skip_dir_fsync);
    }
  }
  return lost;
}

TEST(PowerLoss, RealProtocolNeverLosesAcknowledgedCapture) {
  EXPECT_EQ(LostAcknowledged(false, 60, 1234), 0u);
}

TEST(PowerLoss, MissingDirectoryFsyncIsCaught) {
  EXPECT_GT(LostAcknowledged(true, 60, 1234), 0u);
}

TEST(PowerLoss, RemoveIsDurableOnlyAfterDirFsync) {
  TempDir d;
  std::string root = d.path() + "/spool";
  std::unique_ptr<Spool> sp0;
  ASSERT_TRUE(Spool::Open(root, &sp0).ok());
  CaptureId id;
  ASSERT_TRUE(CaptureOne(sp0.get(), 1, &id).ok());
  // Unlink without dir fsync may come back after power loss (so recovery must check the
  // ledger); with SyncNewDir it is gone for good.
  bool came_back = false;
  for (uint64_t seed = 0; seed < 20 && !came_back; ++seed) {
    PowerLossIo io(seed);
    std::unique_ptr<Spool> sp;
    ASSERT_TRUE(Spool::Open(root, &sp, &io).ok());
    ASSERT_TRUE(sp->Remove(id, /*sync_dir=*/false).ok());
    io.SimulateCrash();
    came_back = std::filesystem::exists(root + "/new/" + id.ToString());
  }
  EXPECT_TRUE(came_back);
  PowerLossIo io(99);
  std::unique_ptr<Spool> sp;
  ASSERT_TRUE(Spool::Open(root, &sp, &io).ok());
  ASSERT_TRUE(sp->Remove(id, true).ok());
  io.SimulateCrash();
  EXPECT_FALSE(std::filesystem::exists(root + "/new/" + id.ToString()));
}

// Ledger: a child commits batches and is killed before/after a COMMIT; the parent
// reopens: integrity ok, epochs strictly increase, every batch wholly present or absent.
TEST(LedgerCrash, CommitPointIsAtomicUnderKill) {
  TempDir d;
  std::string path = d.path() + "/ledger.db";
  uint64_t last_epoch = 0;
  int rounds = 0;
  for (const char* point : {kCrashLedgerCommitBefore, kCrashLedgerCommitAfter, kCrashLedgerEpoch}) {
    for (int n : {1, 2, 5}) {
      std::string spec = std::string(point) + ":" + std::to_string(n);
      int st = RunChild(spec, [&] {
        std::unique_ptr<Ledger> l;
        if (!Ledger::Open(path, &l).ok()) return 100;
        if (!l->BumpEpoch(nullptr).ok()) return 101;
        for (int b = 0; b < 8; ++b) {
          LedgerBatch batch;
          batch.post_office = "PO";
          batch.file_name = "b" + std::to_string(b);
          for (int m = 0; m < 16; ++m) {
            CaptureId id = CaptureId::New();
            batch.capture_ids.push_back(id);
            ContentKey k = ContentKeyOfMessage("s", id.ToString());
            batch.deliveries.push_back({id, k, "r1", DeliveryKind::kExported});
            batch.deliveries.push_back({id, k, "r2", DeliveryKind::kExported});
          }
          std::vector<LedgerBatch> one_batch{std::move(batch)};
          if (!l->CommitBatches(&one_batch).ok()) return 102;
        }
        return 0;
      });
      ++rounds;
      bool expect_kill = !(std::string(point) == kCrashLedgerEpoch && n > 1);
      if (expect_kill) ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << spec << " " << st;
      else ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << spec << " " << st;
      std::unique_ptr<Ledger> l;
      ASSERT_TRUE(Ledger::Open(path, &l).ok());
      Status ic = l->IntegrityCheck();
      ASSERT_TRUE(ic.ok()) << ic.ToString();
      uint64_t e = 0;
      ASSERT_TRUE(l->BumpEpoch(&e).ok());
      EXPECT_GT(e, last_epoch);
      last_epoch = e;
      LedgerCounters c;
      ASSERT_TRUE(l->Counters(&c).ok());
      // Every batch has 16 captures and 32 deliveries: totals are exact multiples.
      EXPECT_EQ(c.captures, c.batches * 16) << spec;
      EXPECT_EQ(c.exported, c.batches * 32) << spec;
      std::vector<LedgerBatch> bs;
      ASSERT_TRUE(l->ListBatchesSince(0, &bs).ok());
      for (size_t i = 1; i < bs.size(); ++i) {
        EXPECT_GT(bs[i].seq, bs[i - 1].seq);
        EXPECT_GE(bs[i].epoch, bs[i - 1].epoch);
      }
    }
  }
  EXPECT_EQ(rounds, 9);
}

}  // namespace
}  // namespace ccmail::store
