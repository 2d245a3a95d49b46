// Faults injected into the exporter through its one I/O layer and its named points:
//  - CCMAIL_FAIL_AT at each named point that could only crash before (the claim-table slot
//    transitions, the publish and watermark renames, the ledger's after-commit points,
//    recovery, conversion, quarantine): the step fails, the exporter takes its error path,
//    and once the fault is gone every delivery is in the outbox exactly once;
//  - a power cut (PowerLossIo) at every fsync of a round, the publish and the watermark
//    included: recovery from what the power loss left exports everything exactly once.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>

#include "ccmail/store/power_loss_io.h"
#include "exporter_test_util.h"

namespace ccmail::exporter {
namespace {

using namespace ccmail::exporter::testing;

const Rcpt kJane{"jane@corp.example", "Doe, Jane", "HQ"};
const Rcpt kBert{"bert@branch.example", "Bo, Bert", "BRANCH"};
const Rcpt kGhost{"ghost@corp.example", "", ""};  // unroutable: quarantined

void SetFailAt(const std::string& spec) {
  if (spec.empty())
    ::unsetenv("CCMAIL_FAIL_AT");
  else
    ::setenv("CCMAIL_FAIL_AT", spec.c_str(), 1);
  store::ReloadFaultSpecFromEnv();
}

Status RunExporter(const ExporterOptions& o) {
  std::unique_ptr<Exporter> ex;
  CCMAIL_RETURN_IF_ERROR(Exporter::Open(o, &ex));
  CCMAIL_RETURN_IF_ERROR(ex->Recover());
  return ex->Drain();
}

// Open+Recover+Drain in a child killed at `crash_at` (CCMAIL_CRASH_AT); returns its status.
int CrashInChild(const ExporterOptions& o, const std::string& crash_at) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("CCMAIL_CRASH_AT", crash_at.c_str(), 1);
    store::ReloadFaultSpecFromEnv();
    ::_exit(RunExporter(o).ok() ? 0 : 3);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  return st;
}

// Every delivery exactly once, the unroutable capture quarantined, nothing left behind, every
// claim-table slot free again.
void ExpectExactlyOnce(Bed* bed, const std::multiset<std::string>& want, const std::vector<store::CaptureId>& ghosts,
                       const std::string& ctx) {
  auto seen = ReadOutbox(bed->paths.outbox_directory);
  std::multiset<std::string> got;
  std::set<std::pair<std::string, std::string>> uniq;
  for (const auto& s : seen) {
    got.insert(s.post_office + ":" + s.recipient);
    EXPECT_TRUE(uniq.insert({s.content_key, s.post_office + ":" + s.recipient}).second) << ctx << ": exported twice: " << s.recipient;
  }
  EXPECT_EQ(got, want) << ctx;
  for (const auto& g : ghosts)
    EXPECT_TRUE(fs::exists(bed->paths.quarantine_dir + "/" + g.ToString())) << ctx << ": not quarantined";
  ExpectQuiescent(bed->paths);
  if (bed->ptable) {
    for (uint32_t i = 0; i < bed->ptable->slot_count(); ++i)
      EXPECT_EQ(bed->ptable->Slot(i).state, shm::SlotState::kFree) << ctx << ": slot " << i;
  }
  // Every published batch is covered by its post office's watermark.
  for (const auto& s : seen) {
    Watermark wm;
    ASSERT_TRUE(ReadWatermark(bed->paths.outbox_directory + "/" + s.post_office, &wm).ok()) << ctx << ": " << s.post_office;
    EXPECT_GE(wm.batch_name, s.batch) << ctx << ": watermark of " << s.post_office << " behind " << s.batch;
  }
}

struct FailCase {
  const char* point;
  bool producer;  // a milter-side transition: armed before the captures are published
  bool leftover;  // a recovery step: a crashed exporter must leave work behind first
};

class FailAtEveryPoint : public ::testing::TestWithParam<FailCase> {};

TEST_P(FailAtEveryPoint, StepFailsAndNothingIsLostOrDuplicated) {
  const FailCase c = GetParam();
  const std::string spec = std::string(c.point) + ":1:EIO";
  Bed bed;
  ExporterOptions o = bed.Options();
  std::multiset<std::string> want;
  std::vector<store::CaptureId> ghosts;
  const uint64_t injected_before = store::InjectedFailureCount();
  if (c.producer) SetFailAt(spec);
  store::CaptureId first = bed.Capture(1, {kJane, kBert});
  bed.Capture(2, {kJane});
  ghosts.push_back(bed.Capture(3, {kGhost}));
  want = {"HQ:Doe, Jane", "BRANCH:Bo, Bert", "HQ:Doe, Jane"};
  if (c.leftover) {
    // Committed but not published, spool files still there, slots claimed by a dead exporter;
    // and a slot announcing a capture the ledger already has (R3).
    int st = CrashInChild(o, "ledger.commit.after:1");
    ASSERT_TRUE(WIFSIGNALED(st)) << st;
    ASSERT_TRUE(bed.ptable->Publish(*bed.preg, first.bytes, 10).ok());
    bed.Capture(4, {kBert});
    want.insert("BRANCH:Bo, Bert");
  }
  if (!c.producer) SetFailAt(spec);
  Status failed_run = RunExporter(o);  // may fail: the injected error is a real one
  SetFailAt("");
  EXPECT_GT(store::InjectedFailureCount(), injected_before) << c.point << " never failed";
  Status s = RunExporter(o);
  ASSERT_TRUE(s.ok()) << c.point << ": " << s.ToString() << " (faulty run: " << failed_run.ToString() << ")";
  ExpectExactlyOnce(&bed, want, ghosts, c.point);
}

INSTANTIATE_TEST_SUITE_P(
    Points, FailAtEveryPoint,
    ::testing::Values(FailCase{"slot.reserved", true, false}, FailCase{"slot.payload.written", true, false},
                      FailCase{"slot.ready", true, false}, FailCase{"slot.claimed", false, false},
                      FailCase{"slot.freed", false, false}, FailCase{"batch.renamed", false, false},
                      FailCase{"watermark.renamed", false, false}, FailCase{"watermark.dir.fsynced", false, false},
                      FailCase{"ledger.commit.after", false, false}, FailCase{"recovery.epoch", false, false},
                      FailCase{"recovery.rollforward", false, true}, FailCase{"recovery.spool.unlink", false, true},
                      FailCase{"recovery.slots.reset", false, true}, FailCase{"recovery.ready.free", false, true},
                      FailCase{"prune.k", false, false}, FailCase{"round.converted", false, false},
                      FailCase{"capture.quarantined", false, false}),
    [](const ::testing::TestParamInfo<FailCase>& i) {
      std::string n = i.param.point;
      for (char& ch : n)
        if (ch == '.') ch = '_';
      return n;
    });

// A power cut at the N-th fsync (file or directory) of an exporter run, for every N until
// the run completes: Open, one round to two post offices (the .part files, out/tmp, the
// ledger commit, the renames into each post office, its directory, the watermark) and the
// unlink of the spool files. What PowerLossIo keeps is what a real power loss may keep; the
// next exporter (real I/O) recovers from it.
TEST(ExporterPowerLossTest, PowerCutAtEveryFsyncOfARoundLosesNothing) {
  uint64_t cuts = 0, after_commit = 0;
  for (uint64_t cut = 1; cut < 200; ++cut) {
    Bed bed;
    ExporterOptions o = bed.Options();
    bed.Capture(1, {kJane, kBert});
    bed.Capture(2, {kJane});
    bed.Capture(3, {kBert});
    pid_t pid = ::fork();
    if (pid == 0) {
      store::PowerLossIo io(cut * 7919);
      io.set_power_cut_at_sync(cut);
      o.io = &io;
      ::_exit(RunExporter(o).ok() ? 0 : 3);
    }
    int st = 0;
    ::waitpid(pid, &st, 0);
    ASSERT_TRUE(WIFEXITED(st)) << "cut " << cut << ": status " << st;
    if (WEXITSTATUS(st) == 0) break;  // fewer than `cut` fsyncs: every one was cut once
    ASSERT_EQ(WEXITSTATUS(st), store::PowerLossIo::kPowerCutExit) << "cut " << cut;
    ++cuts;
    {
      std::unique_ptr<store::Ledger> l;
      ASSERT_TRUE(store::Ledger::Open(bed.paths.ledger_path, &l).ok());
      store::LedgerCounters lc;
      ASSERT_TRUE(l->Counters(&lc).ok());
      if (lc.exported > 0) ++after_commit;  // the cut came after the decision: publish phase
    }
    Status s = RunExporter(o);
    ASSERT_TRUE(s.ok()) << "cut " << cut << ": " << s.ToString();
    ExpectExactlyOnce(&bed, {"HQ:Doe, Jane", "BRANCH:Bo, Bert", "HQ:Doe, Jane", "BRANCH:Bo, Bert"}, {},
                      "power cut at fsync " + std::to_string(cut));
    if (::testing::Test::HasFailure()) break;
  }
  std::printf("power cuts: %llu, %llu of them after the ledger commit\n", static_cast<unsigned long long>(cuts),
              static_cast<unsigned long long>(after_commit));
  EXPECT_GE(cuts, 12u) << "the run passed fewer fsyncs than a round has";
  EXPECT_GE(after_commit, 6u) << "no power cut reached publishing and the watermark";
}

}  // namespace
}  // namespace ccmail::exporter
