// The KB Q184524 race: many claimer processes x threads race to claim the same
// published entries; every entry must be claimed exactly once, none lost.
#include <sched.h>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "shm_test_util.h"

namespace ccmail::shm {
namespace {

using namespace ccmail::shm::testing;

TEST(Q184524, EightProcessesTimesEightThreadsClaimEachEntryExactlyOnce) {
  const double scale = Scale();
  const uint64_t total = static_cast<uint64_t>(1000000 * scale);
  const int kClaimProcs = 8, kClaimThreads = 8, kProducers = 4;
  if (scale != 1.0)
    std::printf("NOTE: entries scaled by %.3f (CCMAIL_SHM_TEST_SCALE / sanitizer build): %llu entries\n", scale,
                static_cast<unsigned long long>(total));
  TestTable tt(4096, 64);
  std::unique_ptr<ClaimTable> table;
  ASSERT_TRUE(ClaimTable::Open(tt.opt, &table).ok());

  auto* counts = SharedArray<std::atomic<uint32_t>>(total);  // claims per capture id
  auto* ctl = SharedArray<std::atomic<uint64_t>>(8);         // [0] claimed total, [1] producers done, [2] published
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);

  std::vector<pid_t> kids;
  for (int p = 0; p < kProducers; ++p) {
    kids.push_back(ForkRun([&, p] {
      std::unique_ptr<ClaimTable> t;
      if (!ClaimTable::Open(tt.opt, &t).ok()) return 2;
      std::unique_ptr<Registration> r;
      if (!t->Register(Role::kMilter, &r).ok()) return 3;
      for (uint64_t id = p; id < total; id += kProducers) {
        // Table full: wait for the claimers (a real milter would count an
        // overflow and leave the capture to the spool scan; tested elsewhere).
        while (!t->Publish(*r, IdOf(id), id).ok()) {
          if (std::chrono::steady_clock::now() > deadline) return 4;
          t->RingDoorbell();
          sched_yield();
        }
        ctl[2].fetch_add(1);
        if ((id / kProducers) % 32 == 0) t->RingDoorbell();
      }
      t->RingDoorbell();
      ctl[1].fetch_add(1);
      return 0;
    }));
  }
  for (int p = 0; p < kClaimProcs; ++p) {
    kids.push_back(ForkRun([&] {
      std::unique_ptr<ClaimTable> t;
      if (!ClaimTable::Open(tt.opt, &t).ok()) return 2;
      std::unique_ptr<Registration> r;
      if (!t->Register(Role::kExporter, &r).ok()) return 3;
      std::atomic<int> bad{0};
      std::vector<std::thread> th;
      for (int k = 0; k < kClaimThreads; ++k) {
        th.emplace_back([&] {
          std::vector<Claim> c;
          while (ctl[0].load(std::memory_order_relaxed) < total) {
            if (std::chrono::steady_clock::now() > deadline) {
              bad = 4;
              return;
            }
            uint32_t bell = t->DoorbellValue();
            c.clear();
            if (t->ClaimReady(*r, 16, &c) == 0) {
              t->WaitDoorbell(bell, std::chrono::milliseconds(2));
              continue;
            }
            for (auto& cl : c) {
              uint64_t id = NumOf(cl.capture_id);
              if (id >= total || cl.size != id) {
                bad = 5;
                continue;
              }
              counts[id].fetch_add(1, std::memory_order_relaxed);
              if (!t->Complete(*r, cl).ok()) bad = 6;
              ctl[0].fetch_add(1, std::memory_order_relaxed);
            }
          }
        });
      }
      for (auto& x : th) x.join();
      return bad.load();
    }));
  }
  auto t0 = std::chrono::steady_clock::now();
  for (pid_t k : kids) EXPECT_EQ(WaitExit(k), 0);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%llu entries, %d producer procs, %d x %d claimer threads: %.2f s (%.0f entries/s)\n",
              static_cast<unsigned long long>(total), kProducers, kClaimProcs, kClaimThreads, secs, total / secs);

  uint64_t zero = 0, multi = 0;
  for (uint64_t i = 0; i < total; ++i) {
    uint32_t c = counts[i].load();
    if (c == 0) ++zero;
    if (c > 1) ++multi;
  }
  EXPECT_EQ(ctl[2].load(), total);
  EXPECT_EQ(zero, 0u) << "entries never claimed (lost)";
  EXPECT_EQ(multi, 0u) << "entries claimed more than once (Q184524)";
  EXPECT_EQ(ctl[0].load(), total);
  for (uint32_t i = 0; i < table->slot_count(); ++i) EXPECT_EQ(table->Slot(i).state, SlotState::kFree);
  FreeShared(counts, total);
  FreeShared(ctl, 8);
}

}  // namespace
}  // namespace ccmail::shm
