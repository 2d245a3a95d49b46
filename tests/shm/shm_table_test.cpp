// Claim table: transitions, header validation, reboot, dead creator, tiny
// table overflow, registry liveness (SIGSTOP, reused pid), doorbell, split brain.
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "ccmail/config/config.h"
#include "shm_test_util.h"

namespace ccmail::shm {
namespace {

using namespace ccmail::shm::testing;
using std::chrono::milliseconds;

std::unique_ptr<ClaimTable> MustOpen(const TableOptions& opt) {
  std::unique_ptr<ClaimTable> t;
  Status s = ClaimTable::Open(opt, &t);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return t;
}

TEST(ClaimTable, FullCycleAndGenerations) {
  TestTable tt(8, 4);
  auto t = MustOpen(tt.opt);
  std::unique_ptr<Registration> prod, exp;
  ASSERT_TRUE(t->Register(Role::kMilter, &prod).ok());
  ASSERT_TRUE(t->Register(Role::kExporter, &exp).ok());
  ASSERT_NE(prod->index(), exp->index());
  ASSERT_TRUE(t->Publish(*prod, IdOf(42), 1234).ok());
  int ready = 0;
  for (uint32_t i = 0; i < t->slot_count(); ++i) {
    if (t->Slot(i).state == SlotState::kReady) {
      ++ready;
      EXPECT_EQ(t->Slot(i).owner, prod->index());
      EXPECT_EQ(t->Slot(i).gen, 0u);
    }
  }
  EXPECT_EQ(ready, 1);
  std::vector<Claim> c;
  ASSERT_EQ(t->ClaimReady(*exp, 10, &c), 1u);
  EXPECT_EQ(NumOf(c[0].capture_id), 42u);
  EXPECT_EQ(c[0].size, 1234u);
  EXPECT_EQ(c[0].publisher, prod->index());
  EXPECT_EQ(t->Slot(c[0].slot).state, SlotState::kClaimed);
  EXPECT_EQ(t->Slot(c[0].slot).owner, exp->index());
  // Nothing else to claim; a second claimer cannot take the same slot.
  std::vector<Claim> c2;
  EXPECT_EQ(t->ClaimReady(*prod, 10, &c2), 0u);
  // Complete by the wrong registration is refused; by the claimer it works once.
  EXPECT_FALSE(t->Complete(*prod, c[0]).ok());
  ASSERT_TRUE(t->Complete(*exp, c[0]).ok());
  EXPECT_FALSE(t->Complete(*exp, c[0]).ok());
  EXPECT_EQ(t->Slot(c[0].slot).state, SlotState::kFree);
  EXPECT_EQ(t->Slot(c[0].slot).gen, 1u);
}

TEST(ClaimTable, TinyTableOverflowLosesNothingWithSpoolScan) {
  TestTable tt(4, 4);
  auto t = MustOpen(tt.opt);
  std::unique_ptr<Registration> prod, exp;
  ASSERT_TRUE(t->Register(Role::kMilter, &prod).ok());
  ASSERT_TRUE(t->Register(Role::kExporter, &exp).ok());
  std::set<uint64_t> spool;     // durable captures (what a spool scan lists)
  std::set<uint64_t> exported;  // the "ledger"
  uint64_t full = 0, claimed_twice = 0;
  uint64_t next = 1;
  for (int round = 0; round < 2000; ++round) {
    int burst = 1 + round % 9;  // sometimes more than the table holds
    for (int k = 0; k < burst; ++k) {
      uint64_t id = next++;
      spool.insert(id);  // durable first, then publish
      Status s = t->Publish(*prod, IdOf(id), id);
      if (!s.ok()) {
        ASSERT_TRUE(s.IsNoSpace()) << s.ToString();
        ++full;
      }
    }
    std::vector<Claim> c;
    t->ClaimReady(*exp, 2, &c);  // slow exporter: at most 2 per round
    for (auto& cl : c) {
      if (!exported.insert(NumOf(cl.capture_id)).second) ++claimed_twice;
      spool.erase(NumOf(cl.capture_id));
      ASSERT_TRUE(t->Complete(*exp, cl).ok());
    }
    if (round % 50 == 49) {  // periodic spool scan: captures without a slot
      std::vector<Claim> pending;
      t->ClaimReady(*exp, 1000, &pending);
      std::set<uint64_t> in_table;
      for (auto& cl : pending) in_table.insert(NumOf(cl.capture_id));
      for (uint64_t id : spool) {
        if (!exported.insert(id).second) ++claimed_twice;
      }
      spool.clear();
      for (auto& cl : pending) ASSERT_TRUE(t->Complete(*exp, cl).ok());  // R3-like: already exported
    }
  }
  // final drain
  std::vector<Claim> c;
  t->ClaimReady(*exp, 1000, &c);
  for (auto& cl : c) {
    exported.insert(NumOf(cl.capture_id));
    spool.erase(NumOf(cl.capture_id));
    ASSERT_TRUE(t->Complete(*exp, cl).ok());
  }
  for (uint64_t id : spool) exported.insert(id);
  EXPECT_GT(full, 100u);
  EXPECT_EQ(t->Stats().overflow_count, full);
  EXPECT_EQ(claimed_twice, 0u);
  EXPECT_EQ(exported.size(), next - 1);  // every capture exported once, none lost
  for (uint32_t i = 0; i < t->slot_count(); ++i) EXPECT_EQ(t->Slot(i).state, SlotState::kFree);
}

TEST(ClaimTable, RefusesOtherLayoutSizeAndBoot) {
  TestTable tt(64, 8);
  { auto t = MustOpen(tt.opt); }
  TableOptions o = tt.opt;
  o.create_if_missing = false;
  std::unique_ptr<ClaimTable> t;
  o.slots = 128;
  Status s = ClaimTable::Open(o, &t);
  EXPECT_TRUE(s.IsCorrupt()) << s.ToString();
  EXPECT_NE(s.message().find("64 slots"), std::string::npos) << s.ToString();
  o.slots = 64;
  o.boot_id = kBootB;
  s = ClaimTable::Open(o, &t);
  EXPECT_TRUE(s.IsCorrupt()) << s.ToString();
  EXPECT_NE(s.message().find("another boot"), std::string::npos) << s.ToString();

  // A different layout version written into the header is refused too.
  std::string path = ClaimTable::TablePath(tt.opt);
  {
    int fd = ::open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    uint32_t v = 99;
    ASSERT_EQ(::pwrite(fd, &v, 4, 8), 4);  // layout_version follows the 8-byte magic
    ::close(fd);
  }
  o.boot_id = kBootA;
  s = ClaimTable::Open(o, &t);
  EXPECT_TRUE(s.IsCorrupt()) << s.ToString();
  EXPECT_NE(s.message().find("layout version 99"), std::string::npos) << s.ToString();
  // Truncated segment: refused with a size message.
  ASSERT_EQ(::truncate(path.c_str(), 100), 0);
  s = ClaimTable::Open(o, &t);
  EXPECT_FALSE(s.ok());
  // The exporter (recreate_if_invalid) replaces it with a valid empty table.
  o.recreate_if_invalid = true;
  s = ClaimTable::Open(o, &t);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(t->slot_count(), 64u);
}

TEST(ClaimTable, RebootRecreatesEmptyTable) {
  TestTable tt(16, 4);
  uint64_t inc1;
  {
    auto t = MustOpen(tt.opt);
    std::unique_ptr<Registration> r;
    ASSERT_TRUE(t->Register(Role::kMilter, &r).ok());
    ASSERT_TRUE(t->Publish(*r, IdOf(1), 1).ok());
    inc1 = t->Stats().incarnation;
  }
  // reboot: /run (tmpfs) emptied, new boot id
  ASSERT_TRUE(ClaimTable::Remove(tt.opt).ok());
  TableOptions o = tt.opt;
  o.boot_id = kBootB;
  auto t = MustOpen(o);
  EXPECT_NE(t->Stats().incarnation, inc1);
  for (uint32_t i = 0; i < t->slot_count(); ++i) EXPECT_EQ(t->Slot(i).state, SlotState::kFree);
  // stale boot id without removal: milter refuses, exporter recreates
  TableOptions m = tt.opt;  // boot A again
  std::unique_ptr<ClaimTable> t2;
  EXPECT_TRUE(ClaimTable::Open(m, &t2).IsCorrupt());
  m.recreate_if_invalid = true;
  ASSERT_TRUE(ClaimTable::Open(m, &t2).ok());
}

TEST(ClaimTable, CreatorKilledMidInitIsRecovered) {
  for (const char* point : {"shm.create.before_ready", "shm.create.before_fallocate"}) {
    TestTable tt(32, 4);
    pid_t pid = ForkRun([&] {
      ::setenv("CCMAIL_CRASH_AT", (std::string(point) + ":1").c_str(), 1);
      std::unique_ptr<ClaimTable> t;
      (void)ClaimTable::Open(tt.opt, &t);
      return 0;  // not reached
    });
    ASSERT_EQ(WaitExit(pid), 1000 + SIGKILL) << point;
    std::string path = ClaimTable::TablePath(tt.opt);
    struct stat st;
    ASSERT_EQ(::stat(path.c_str(), &st), 0) << point << ": the dead creator left its segment";
    // A milter that may not create reports it; the next opener that may create recovers.
    TableOptions o = tt.opt;
    o.create_if_missing = false;
    std::unique_ptr<ClaimTable> t;
    Status s = ClaimTable::Open(o, &t);
    EXPECT_FALSE(s.ok()) << point;
    o.create_if_missing = true;
    s = ClaimTable::Open(o, &t);
    ASSERT_TRUE(s.ok()) << point << ": " << s.ToString();
    std::unique_ptr<Registration> r;
    ASSERT_TRUE(t->Register(Role::kMilter, &r).ok());
    EXPECT_TRUE(t->Publish(*r, IdOf(5), 5).ok());
  }
}

// The reset of an invalid (stale boot) segment is itself killable: the next
// opener finishes it.
TEST(ClaimTable, KilledDuringTableResetIsRecovered) {
  TestTable tt(16, 4);
  { auto t = MustOpen(tt.opt); }
  TableOptions o = tt.opt;
  o.boot_id = kBootB;
  o.recreate_if_invalid = true;
  pid_t pid = ForkRun([&] {
    ::setenv("CCMAIL_CRASH_AT", "recovery.table.reset:1", 1);
    std::unique_ptr<ClaimTable> t;
    (void)ClaimTable::Open(o, &t);
    return 0;
  });
  ASSERT_EQ(WaitExit(pid), 1000 + SIGKILL);
  auto t = MustOpen(o);
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->CheckSameSegment().ok());
}

// CCMAIL_FAIL_AT at the creation and reset steps: Open reports the failure, and the next Open
// (no fault) gives a working table.
TEST(ClaimTable, InjectedFailuresAtCreateAndResetAreReportedThenRecovered) {
  for (const char* point : {"shm.create.before_fallocate", "shm.create.before_ready"}) {
    TestTable tt(16, 4);
    ::setenv("CCMAIL_FAIL_AT", (std::string(point) + ":1:ENOSPC").c_str(), 1);
    std::unique_ptr<ClaimTable> t;
    Status s = ClaimTable::Open(tt.opt, &t);
    ::unsetenv("CCMAIL_FAIL_AT");
    EXPECT_FALSE(s.ok()) << point << ": the injected failure was ignored";
    s = ClaimTable::Open(tt.opt, &t);
    ASSERT_TRUE(s.ok()) << point << ": " << s.ToString();
    std::unique_ptr<Registration> r;
    ASSERT_TRUE(t->Register(Role::kMilter, &r).ok());
    EXPECT_TRUE(t->Publish(*r, IdOf(5), 5).ok());
  }
  TestTable tt(16, 4);
  { auto t = MustOpen(tt.opt); }
  TableOptions o = tt.opt;
  o.boot_id = kBootB;
  o.recreate_if_invalid = true;
  ::setenv("CCMAIL_FAIL_AT", "recovery.table.reset:1:EIO", 1);
  std::unique_ptr<ClaimTable> failed;
  Status s = ClaimTable::Open(o, &failed);
  ::unsetenv("CCMAIL_FAIL_AT");
  EXPECT_FALSE(s.ok()) << "recovery.table.reset: the injected failure was ignored";
  auto t = MustOpen(o);
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->CheckSameSegment().ok());
}

// The group may read the table (ccmailctl), never write it; the lock files are the
// bridge user's alone, since a read-only descriptor can already hold locks.
TEST(ClaimTable, GroupModeIs0640AndLockFilesAre0600) {
  struct group* g = ::getgrgid(::getgid());
  if (g == nullptr) GTEST_SKIP() << "no group entry for gid " << ::getgid();
  TestTable tt(8, 2);
  tt.opt.group = g->gr_name;
  auto t = MustOpen(tt.opt);
  EXPECT_EQ(t->path(), tt.opt.runtime_directory + "/" + tt.opt.name + "-v1");
  struct stat st;
  ASSERT_EQ(::stat(t->path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  EXPECT_EQ(st.st_gid, ::getgid());
  for (const std::string& lock : {std::string("/live.lock"), "/" + tt.opt.name + ".init.lock"}) {
    ASSERT_EQ(::stat((tt.opt.runtime_directory + lock).c_str(), &st), 0) << lock;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << lock;
  }
}

TEST(Registry, FullRegistryIsNoSpaceAndDestroyedEntriesAreReused) {
  TestTable tt(8, 3);
  auto t = MustOpen(tt.opt);
  std::vector<std::unique_ptr<Registration>> regs(3);
  for (auto& r : regs) ASSERT_TRUE(t->Register(Role::kMilter, &r).ok());
  std::unique_ptr<Registration> extra;
  Status s = t->Register(Role::kMilter, &extra);
  EXPECT_TRUE(s.IsNoSpace()) << s.ToString();
  uint32_t idx = regs[1]->index();
  uint64_t rg = regs[1]->rgen();
  EXPECT_TRUE(t->IsRegistrationCurrent(idx, rg));
  regs[1].reset();
  EXPECT_FALSE(t->IsRegistrationCurrent(idx, rg));
  EXPECT_EQ(t->Entry(idx).state, RegistryView::State::kFree);
  ASSERT_TRUE(t->Register(Role::kMilter, &extra).ok());
  EXPECT_EQ(extra->index(), idx);
  EXPECT_EQ(extra->rgen(), rg + 1);
}

TEST(ClaimTable, OptionsFromConfig) {
  Config cfg;
  ASSERT_TRUE(Config::Parse("claim_table_slots = 128\nclaim_table_registry = 8\nclaim_table_name = x-claims\n"
                            "runtime_directory = /run/x\nbridge_group = mail\n",
                            "test.conf", &cfg)
                  .ok());
  TableOptions o;
  ASSERT_TRUE(TableOptionsFromConfig(cfg, &o).ok());
  EXPECT_EQ(o.slots, 128u);
  EXPECT_EQ(o.registry, 8u);
  EXPECT_EQ(o.name, "x-claims");
  EXPECT_EQ(o.runtime_directory, "/run/x");
  EXPECT_EQ(o.group, "mail");
  Config bad;
  ASSERT_TRUE(Config::Parse("claim_table_registry = 70000\n", "bad.conf", &bad).ok());
  EXPECT_FALSE(TableOptionsFromConfig(bad, &o).ok());
}

TEST(ClaimTable, BootIdOfThisKernelParses) {
  std::array<uint8_t, 16> b{};
  ASSERT_TRUE(ReadBootId(&b).ok());
  EXPECT_NE(b, (std::array<uint8_t, 16>{}));
  TestTable tt(8, 2);
  tt.opt.boot_id.clear();  // real boot id
  auto t = MustOpen(tt.opt);
  ASSERT_TRUE(t);
  TableOptions o = tt.opt;
  o.boot_id = "not-a-uuid";
  std::unique_ptr<ClaimTable> t2;
  EXPECT_EQ(ClaimTable::Open(o, &t2).code(), Status::Code::kInvalidArgument);
}

TEST(ClaimTable, ModeIs0600WithoutGroup) {
  TestTable tt(8, 2);
  auto t = MustOpen(tt.opt);
  struct stat st;
  ASSERT_EQ(::stat(t->path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  TableOptions o = tt.opt;
  o.name += "-g";
  o.group = "no-such-group-ccmail-test";
  std::unique_ptr<ClaimTable> t2;
  Status s = ClaimTable::Open(o, &t2);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
}

TEST(ClaimTable, SplitBrainDetected) {
  TestTable tt(8, 2);
  auto t = MustOpen(tt.opt);
  EXPECT_TRUE(t->CheckSameSegment().ok());
  ASSERT_TRUE(ClaimTable::Remove(tt.opt).ok());
  EXPECT_EQ(t->CheckSameSegment().code(), Status::Code::kUnavailable);
  auto t2 = MustOpen(tt.opt);  // someone recreates it under us
  Status s = t->CheckSameSegment();
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_NE(s.message().find("split brain"), std::string::npos) << s.ToString();
  EXPECT_TRUE(t2->CheckSameSegment().ok());
}

TEST(ClaimTable, DoorbellWakesAnotherProcess) {
  TestTable tt(8, 4);
  auto t = MustOpen(tt.opt);
  uint32_t seen = t->DoorbellValue();
  EXPECT_FALSE(t->WaitDoorbell(seen, milliseconds(20)));  // times out
  pid_t pid = ForkRun([&] {
    std::unique_ptr<ClaimTable> c;
    if (!ClaimTable::Open(tt.opt, &c).ok()) return 2;
    ::usleep(100000);
    c->RingDoorbell();
    return 0;
  });
  auto t0 = std::chrono::steady_clock::now();
  bool woke = false;
  while (!woke && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5))
    woke = t->WaitDoorbell(seen, milliseconds(2000));
  EXPECT_TRUE(woke);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1900));
  EXPECT_EQ(WaitExit(pid), 0);
}

TEST(ClaimTable, HeaderStatsRoundTrip) {
  TestTable tt(8, 2);
  auto t = MustOpen(tt.opt);
  ExporterState st;
  st.epoch = 7;
  st.heartbeat_ns = 111;
  st.progress_ns = 99;
  st.exported_total = 5;
  st.backlog_count = 3;
  st.backlog_bytes = 4096;
  st.pid = ::getpid();
  t->PublishExporterState(st);
  auto other = MustOpen(tt.opt);
  TableStats s = other->Stats();
  EXPECT_EQ(s.exporter.epoch, 7u);
  EXPECT_EQ(s.exporter.heartbeat_ns, 111u);
  EXPECT_EQ(s.exporter.progress_ns, 99u);
  EXPECT_EQ(s.exporter.backlog_bytes, 4096u);
  EXPECT_EQ(s.exporter.pid, ::getpid());
  EXPECT_EQ(s.slots, 8u);
}

// A SIGSTOPped owner keeps its OFD lock: its RESERVED slot and registry entry
// are not touched by recovery. After SIGKILL they are.
TEST(Registry, StoppedOwnerIsNotDeadKilledOwnerIs) {
  TestTable tt(8, 4);
  auto t = MustOpen(tt.opt);
  auto* sync = SharedArray<std::atomic<int>>(2);
  pid_t pid = ForkRun([&] {
    std::unique_ptr<ClaimTable> c;
    if (!ClaimTable::Open(tt.opt, &c).ok()) return 2;
    std::unique_ptr<Registration> r;
    if (!c->Register(Role::kMilter, &r).ok()) return 3;
    sync[1] = static_cast<int>(r->index());
    sync[0] = 1;
    ::raise(SIGSTOP);
    (void)c->Publish(*r, IdOf(1), 1);
    ::pause();
    return 0;
  });
  while (sync[0].load() == 0) ::usleep(1000);
  int st;
  ASSERT_EQ(::waitpid(pid, &st, WUNTRACED), pid);
  ASSERT_TRUE(WIFSTOPPED(st));
  uint32_t idx = static_cast<uint32_t>(sync[1].load());
  std::unique_ptr<Registration> me;
  ASSERT_TRUE(t->Register(Role::kExporter, &me).ok());
  EXPECT_TRUE(t->IsEntryAlive(idx));
  RecoveryReport rep = t->RecoverDeadOwners(*me);
  EXPECT_EQ(rep.dead_registrations, 0u);
  EXPECT_EQ(t->Entry(idx).state, RegistryView::State::kLive);
  ::kill(pid, SIGKILL);
  EXPECT_EQ(WaitExit(pid), 1000 + SIGKILL);
  EXPECT_FALSE(t->IsEntryAlive(idx));
  rep = t->RecoverDeadOwners(*me);
  EXPECT_EQ(rep.dead_registrations, 1u);
  EXPECT_EQ(t->Entry(idx).state, RegistryView::State::kFree);
  FreeShared(sync, 2);
}

TEST(Registry, StoppedPublisherInsideReservedKeepsItsSlot) {
  TestTable tt(8, 4);
  auto t = MustOpen(tt.opt);
  auto* flag = SharedArray<std::atomic<int>>(1);
  pid_t pid = ForkRun([&] {
    std::unique_ptr<ClaimTable> c;
    if (!ClaimTable::Open(tt.opt, &c).ok()) return 2;
    std::unique_ptr<Registration> r;
    if (!c->Register(Role::kMilter, &r).ok()) return 3;
    // The parent stops us at arbitrary instants, some inside T1..T2.
    flag[0] = 1;
    for (;;) (void)c->Publish(*r, IdOf(7), 7), ::usleep(100);
    return 0;
  });
  while (flag[0].load() == 0) ::usleep(1000);
  std::unique_ptr<Registration> me;
  ASSERT_TRUE(t->Register(Role::kExporter, &me).ok());
  // Stop it at an arbitrary instant, several times; recovery never frees a
  // slot of the stopped (alive) owner.
  for (int i = 0; i < 20; ++i) {
    ::usleep(500 + 97 * i);
    ::kill(pid, SIGSTOP);
    int st;
    ASSERT_EQ(::waitpid(pid, &st, WUNTRACED), pid);
    RecoveryReport rep = t->RecoverDeadOwners(*me);
    EXPECT_EQ(rep.reserved_freed, 0u);
    EXPECT_EQ(rep.dead_registrations, 0u);
    std::vector<Claim> c;
    t->ClaimReady(*me, 100, &c);
    for (auto& cl : c) ASSERT_TRUE(t->Complete(*me, cl).ok());
    ::kill(pid, SIGCONT);
  }
  ::kill(pid, SIGKILL);
  WaitExit(pid);
  FreeShared(flag, 1);
}

// A reused pid is a different registration: the dead registrant's entry is
// dead (lock released) while a live process with the same pid is alive.
TEST(Registry, ReusedPidIsNotTakenForTheDeadRegistrant) {
  TestTable tt(8, 4);
  auto t = MustOpen(tt.opt);
  auto* sync = SharedArray<std::atomic<int>>(4);
  pid_t victim = ForkRun([&] {
    std::unique_ptr<ClaimTable> c;
    if (!ClaimTable::Open(tt.opt, &c).ok()) return 2;
    std::unique_ptr<Registration> r;
    if (!c->Register(Role::kMilter, &r).ok()) return 3;
    sync[1] = static_cast<int>(r->index());
    sync[0] = 1;
    ::pause();
    return 0;
  });
  while (sync[0].load() == 0) ::usleep(1000);
  uint32_t dead_idx = static_cast<uint32_t>(sync[1].load());
  uint64_t dead_rgen = t->Entry(dead_idx).rgen;
  ::kill(victim, SIGKILL);
  ASSERT_EQ(WaitExit(victim), 1000 + SIGKILL);

  // Get a new process with the victim's pid: as root set ns_last_pid, else
  // fork/exit until reused (bounded).
  auto t0 = std::chrono::steady_clock::now();
  pid_t reused = -1;
  sync[0] = 0;
  for (int attempt = 0; attempt < 70000 && reused < 0; ++attempt) {
    if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(40)) break;
    if (attempt % 64 == 0) {
      std::ofstream ns("/proc/sys/kernel/ns_last_pid");
      if (ns) ns << (victim - 1) << std::flush;
    }
    pid_t p = ForkRun([&] {
      if (::getpid() != victim) return 0;
      std::unique_ptr<ClaimTable> c;
      if (!ClaimTable::Open(tt.opt, &c).ok()) return 2;
      std::unique_ptr<Registration> r;
      if (!c->Register(Role::kMilter, &r).ok()) return 3;
      sync[2] = static_cast<int>(r->index());
      sync[0] = 1;
      ::pause();
      return 0;
    });
    if (p == victim) {
      reused = p;
      while (sync[0].load() == 0) ::usleep(1000);
    } else {
      WaitExit(p);
    }
  }
  if (reused < 0) {
    FreeShared(sync, 4);
    GTEST_SKIP() << "pid " << victim << " not reused within bounds";
  }
  uint32_t new_idx = static_cast<uint32_t>(sync[2].load());
  // Same pid alive; the old registration is not current, the new one is.
  EXPECT_FALSE(t->IsRegistrationCurrent(dead_idx, dead_rgen) && new_idx != dead_idx);
  EXPECT_TRUE(t->IsRegistrationCurrent(new_idx, t->Entry(new_idx).rgen));
  std::unique_ptr<Registration> me;
  ASSERT_TRUE(t->Register(Role::kExporter, &me).ok());
  RecoveryReport rep = t->RecoverDeadOwners(*me);
  EXPECT_EQ(t->Entry(new_idx).state, RegistryView::State::kLive);
  EXPECT_EQ(t->Entry(new_idx).pid, victim);
  if (new_idx != dead_idx) {
    EXPECT_EQ(rep.dead_registrations, 1u);
    EXPECT_EQ(t->Entry(dead_idx).state, RegistryView::State::kFree);
  } else {
    EXPECT_EQ(rep.dead_registrations, 0u);  // the entry was reused: rgen differs
    EXPECT_GT(t->Entry(new_idx).rgen, dead_rgen);
  }
  ::kill(reused, SIGKILL);
  WaitExit(reused);
  FreeShared(sync, 4);
}

}  // namespace
}  // namespace ccmail::shm
