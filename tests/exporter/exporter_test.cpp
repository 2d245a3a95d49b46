// Unit tests of each exporter step, in-process (fork only where a crash must happen).
#include "ccmail/exporter/exporter.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <thread>

#include "exporter_test_util.h"
#include "round_steps.h"

namespace ccmail::exporter {
namespace {

using namespace ccmail::exporter::testing;

const Rcpt kJane{"jane@corp.example", "Doe, Jane", "HQ"};
const Rcpt kRick{"rick@corp.example", "Roe, Rick", "HQ"};
const Rcpt kBert{"bert@branch.example", "Bo, Bert", "BRANCH"};

std::unique_ptr<Exporter> OpenExporter(const ExporterOptions& o) {
  std::unique_ptr<Exporter> ex;
  Status s = Exporter::Open(o, &ex);
  EXPECT_TRUE(s.ok()) << s.ToString();
  if (!ex) return nullptr;
  s = ex->Recover();
  EXPECT_TRUE(s.ok()) << s.ToString();
  return ex;
}

void DrainOnce(const ExporterOptions& o) {
  auto ex = OpenExporter(o);
  ASSERT_NE(ex, nullptr);
  Status s = ex->Drain();
  ASSERT_TRUE(s.ok()) << s.ToString();
}

// Runs Open+Recover+Drain in a child with CCMAIL_CRASH_AT / CCMAIL_FAIL_AT set; returns
// the child's wait status.
int DrainInChild(const ExporterOptions& o, const std::string& crash_at) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("CCMAIL_CRASH_AT", crash_at.c_str(), 1);
    store::ReloadFaultSpecFromEnv();
    std::unique_ptr<Exporter> ex;
    if (!Exporter::Open(o, &ex).ok() || !ex->Recover().ok() || !ex->Drain().ok()) ::_exit(3);
    ::_exit(0);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  return st;
}

std::multiset<std::string> Recipients(const std::vector<Seen>& seen) {
  std::multiset<std::string> r;
  for (const auto& s : seen) r.insert(s.post_office + ":" + s.recipient);
  return r;
}

TEST(ExporterTest, TwoPostOfficesAreTwoBatchFilesInOneCommit) {
  Bed bed;
  ExporterOptions o = bed.Options();
  auto ex = OpenExporter(o);
  ASSERT_NE(ex, nullptr);
  store::CaptureId id = bed.Capture(1, {kJane, kBert});
  ASSERT_TRUE(ex->Drain().ok());
  ExporterCounters c = ex->counters();
  EXPECT_EQ(c.rounds, 1u);
  EXPECT_EQ(c.batches, 2u);
  EXPECT_EQ(c.exported, 2u);
  ex.reset();
  auto seen = ReadOutbox(bed.paths.outbox_directory);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(Recipients(seen), (std::multiset<std::string>{"BRANCH:Bo, Bert", "HQ:Doe, Jane"}));
  for (const auto& s : seen) EXPECT_EQ(s.capture_id, id.ToString());
  // Both batches were written by one transaction: consecutive seqs, both in the ledger.
  std::unique_ptr<store::Ledger> l;
  ASSERT_TRUE(store::Ledger::Open(bed.paths.ledger_path, &l).ok());
  std::vector<store::LedgerBatch> b;
  ASSERT_TRUE(l->ListBatchesSince(0, &b).ok());
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[1].seq, b[0].seq + 1);
  Watermark wm;
  ASSERT_TRUE(ReadWatermark(bed.paths.outbox_directory + "/HQ", &wm).ok());
  ASSERT_TRUE(ReadWatermark(bed.paths.outbox_directory + "/BRANCH", &wm).ok());
  ExpectQuiescent(bed.paths);
}

TEST(ExporterTest, LedgerCommitBatchesIsAllOrNothing) {
  Bed bed;
  std::unique_ptr<store::Ledger> l;
  ASSERT_TRUE(store::Ledger::Open(bed.dir + "/l.db", &l).ok());
  ASSERT_TRUE(l->BumpEpoch(nullptr).ok());
  store::CaptureId id = store::CaptureId::New();
  std::vector<store::LedgerBatch> v(2);
  v[0].post_office = "HQ";
  v[0].file_name = "A.CCM";
  v[0].capture_ids = {id};
  v[0].deliveries = {{id, Bed::Key(1), "x at HQ", store::DeliveryKind::kExported}};
  v[1].post_office = "BR";
  v[1].file_name = "B.CCM";
  v[1].seq = 99;  // the caller predicted a wrong seq: nothing may be committed
  v[1].deliveries = {{id, Bed::Key(1), "y at BR", store::DeliveryKind::kExported}};
  Status s = l->CommitBatches(&v);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
  bool found = true;
  ASSERT_TRUE(l->HasCapture(id, &found).ok());
  EXPECT_FALSE(found);
  v[1].seq = 0;
  ASSERT_TRUE(l->CommitBatches(&v).ok());
  EXPECT_EQ(v[1].seq, v[0].seq + 1);
  ASSERT_TRUE(l->HasCapture(id, &found).ok());
  EXPECT_TRUE(found);
  store::LedgerBatch b;
  ASSERT_TRUE(l->FindBatchByName("B.CCM", &b).ok());
  EXPECT_EQ(b.post_office, "BR");
  std::vector<store::LedgerBatch> latest;
  ASSERT_TRUE(l->LatestBatchPerPostOffice(&latest).ok());
  EXPECT_EQ(latest.size(), 2u);
}

// The committer stages the ledger rows while it writes the batch files: staged rows are
// nobody's to see (not even a reader on another connection) until CommitStaged, and an
// aborted stage leaves nothing behind and no transaction open.
TEST(ExporterTest, LedgerStagedRowsCountOnlyOnceCommitted) {
  Bed bed;
  std::unique_ptr<store::Ledger> l, reader;
  ASSERT_TRUE(store::Ledger::Open(bed.dir + "/l.db", &l).ok());
  ASSERT_TRUE(l->BumpEpoch(nullptr).ok());
  ASSERT_TRUE(store::Ledger::OpenReadOnly(bed.dir + "/l.db", &reader).ok());
  const store::CaptureId id = store::CaptureId::New();
  std::vector<store::LedgerBatch> v;
  for (const auto& [post_office, rcpt] : {std::pair<std::string, std::string>{"HQ", "x at HQ"}, {"BR", "y at BR"}}) {
    store::LedgerBatch b;
    b.post_office = post_office;
    b.file_name = post_office + ".CCM";
    b.deliveries.push_back({id, Bed::Key(1), rcpt, store::DeliveryKind::kExported});
    v.push_back(std::move(b));
  }
  v[0].capture_ids = {id};  // recorded with the first batch, as the exporter does
  bool found = true;
  ASSERT_TRUE(l->StageBatches(v).ok());
  EXPECT_EQ(l->StageBatches(v).code(), Status::Code::kInvalidArgument);  // one staged commit at a time
  ASSERT_TRUE(reader->HasCapture(id, &found).ok());
  EXPECT_FALSE(found);
  l->AbortStaged();
  ASSERT_TRUE(l->HasCapture(id, &found).ok());
  EXPECT_FALSE(found);
  EXPECT_EQ(l->CommitStaged(&v).code(), Status::Code::kInvalidArgument);  // nothing staged any more

  ASSERT_TRUE(l->StageBatches(v).ok());
  ASSERT_TRUE(reader->HasCapture(id, &found).ok());
  EXPECT_FALSE(found);
  ASSERT_TRUE(l->CommitStaged(&v).ok());
  EXPECT_NE(v[0].seq, 0u);
  EXPECT_EQ(v[1].seq, v[0].seq + 1);
  EXPECT_EQ(v[0].epoch, l->epoch());
  ASSERT_TRUE(reader->HasCapture(id, &found).ok());
  EXPECT_TRUE(found);
  bool exported = false;
  ASSERT_TRUE(reader->IsExported(Bed::Key(1), "y at BR", &exported).ok());
  EXPECT_TRUE(exported);
  // The same deliveries again: staging fails (already exported) and leaves no transaction open.
  std::vector<store::LedgerBatch> again = v;
  for (auto& b : again) b.seq = 0;
  EXPECT_EQ(l->StageBatches(again).code(), Status::Code::kAlreadyExists);
  store::CaptureId other = store::CaptureId::New();
  std::vector<store::LedgerBatch> fresh(1);
  fresh[0].capture_ids = {other};  // a capture with no file (all DUP)
  fresh[0].deliveries = {{other, Bed::Key(1), "x at HQ", store::DeliveryKind::kDup}};
  ASSERT_TRUE(l->CommitBatches(&fresh).ok());  // BEGIN works: no transaction was left open
  EXPECT_EQ(fresh[0].seq, v[1].seq + 1);
}

// The exporter's durable steps (its spool side, out/tmp, the outbox, recovery) all go
// through ExporterOptions::io: with an io that refuses every no-replace rename nothing is
// published, and every step seen is one the injected io did.
class CountingIo : public store::DurableIoWrapper {
 public:
  std::atomic<int> renames_noreplace{0}, unlinks{0}, dir_fsyncs{0}, fsyncs{0}, mkdirs{0};
  bool refuse_publish = false;
  Status Fsync(int fd, const std::string& w, const char* p) override {
    ++fsyncs;
    return DurableIoWrapper::Fsync(fd, w, p);
  }
  Status RenameNoReplace(const std::string& a, const std::string& b, const char* p) override {
    ++renames_noreplace;
    if (refuse_publish) return Status::FromErrno("rename " + b + " (test)", EIO);
    return DurableIoWrapper::RenameNoReplace(a, b, p);
  }
  Status Unlink(const std::string& f, const char* p) override {
    ++unlinks;
    return DurableIoWrapper::Unlink(f, p);
  }
  Status FsyncDir(const std::string& d, const char* p) override {
    ++dir_fsyncs;
    return DurableIoWrapper::FsyncDir(d, p);
  }
  Status MakeDir(const std::string& d, mode_t m, bool* created, const char* p) override {
    ++mkdirs;
    return DurableIoWrapper::MakeDir(d, m, created, p);
  }
};

TEST(ExporterTest, EveryDurableStepGoesThroughTheInjectedIo) {
  Bed bed;
  ExporterOptions o = bed.Options();
  CountingIo io;
  o.io = &io;
  bed.Capture(1, {kJane, kBert});
  io.refuse_publish = true;
  {
    auto ex = OpenExporter(o);
    ASSERT_NE(ex, nullptr);
    bool did = false;
    for (int i = 0; i < 50 && ex->counters().rounds == 0; ++i) ASSERT_TRUE(ex->RunOnce(&did).ok());
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(ex->RunOnce(&did).ok());  // committed, not published
    EXPECT_EQ(ex->counters().rounds, 1u);
    EXPECT_TRUE(ReadOutbox(bed.paths.outbox_directory).empty());
    EXPECT_GE(io.renames_noreplace.load(), 2);
    io.refuse_publish = false;
    ASSERT_TRUE(ex->Drain().ok());
  }
  EXPECT_EQ(Recipients(ReadOutbox(bed.paths.outbox_directory)),
            (std::multiset<std::string>{"BRANCH:Bo, Bert", "HQ:Doe, Jane"}));
  EXPECT_GE(io.fsyncs.load(), 6);       // 2 manifests, 2 batches, 2 watermarks
  EXPECT_GE(io.unlinks.load(), 1);      // the spool file
  EXPECT_GE(io.dir_fsyncs.load(), 6);   // out/tmp, both post-office dirs, spool/new, ...
  EXPECT_GE(io.mkdirs.load(), 2);       // the post-office directories
  ExpectQuiescent(bed.paths);
}

// The steps of a round, run one by one on the test's thread: open + resolve, convert (no
// helper thread), classify against given ledger answers into one commit job.
TEST(ExporterTest, RoundStepsRunWithoutThreads) {
  Bed bed;
  const Rcpt kGhost{"ghost@corp.example", "", ""};
  store::CaptureId a = bed.Capture(1, {kJane, kBert}, false);
  store::CaptureId b = bed.Capture(1, {kJane}, false);  // an SMTP retry of a: Jane is a DUP
  store::CaptureId c = bed.Capture(2, {kGhost}, false);  // unroutable
  store::CaptureId d = bed.Capture(3, {kJane}, false);   // the ledger knows the capture
  store::CaptureId e = bed.Capture(4, {kRick}, false);   // the ledger has the delivery
  std::vector<store::CaptureId> ids = {a, b, c, d, e};
  std::sort(ids.begin(), ids.end());
  std::unique_ptr<store::Spool> spool;
  ASSERT_TRUE(store::Spool::Open(bed.paths.spool_root, &spool).ok());

  RoundPrep r;
  OpenAndResolve(*spool, nullptr, ids, 64 << 20, 400, &r);
  ASSERT_EQ(r.items.size(), 5u);
  EXPECT_TRUE(r.deferred.empty());
  EXPECT_FALSE(r.retry_error);
  format::Converter cv{format::FormatSettings{}};
  ConvertRound(cv, 1, &r.items);
  std::vector<char> in_ledger;
  for (const auto& it : r.items) in_ledger.push_back(it.id == d);
  const KeySet ledger_keys = {{Bed::Key(4), "Roe, Rick at HQ"}};
  RoundPlan plan = ClassifyRound(cv, in_ledger, ledger_keys, 64 << 20, &r.items);

  EXPECT_EQ(plan.known, std::vector<store::CaptureId>{d});
  ASSERT_EQ(plan.quarantine.size(), 1u);
  EXPECT_EQ(r.items[plan.quarantine[0].first].id, c);
  EXPECT_NE(plan.quarantine[0].second.find("ghost@corp.example"), std::string::npos) << plan.quarantine[0].second;
  EXPECT_TRUE(plan.corrupt.empty());
  EXPECT_TRUE(plan.deferred.empty());
  ASSERT_NE(plan.job, nullptr);
  const CommitJob& job = *plan.job;
  EXPECT_EQ(job.exported, 2u);  // Jane once, Bert once
  EXPECT_EQ(job.dups, 2u);      // Jane again (the retry), Rick (in the ledger)
  std::vector<store::CaptureId> done = job.done, want = {a, b, e};
  std::sort(done.begin(), done.end());
  std::sort(want.begin(), want.end());
  EXPECT_EQ(done, want);
  EXPECT_EQ(job.fds.size(), 3u);
  ASSERT_EQ(job.batches.size(), 2u);
  ASSERT_EQ(job.batches.at("HQ").entries.size(), 1u);
  EXPECT_EQ(job.batches.at("HQ").entries[0].recipient, "Doe, Jane");
  ASSERT_EQ(job.batches.at("BRANCH").entries.size(), 1u);
  EXPECT_EQ(job.batches.at("BRANCH").entries[0].recipient, "Bo, Bert");
  EXPECT_NE(job.batches.at("HQ").content.find("Doe, Jane"), std::string::npos);
  size_t recorded = job.nofile.capture_ids.size();
  for (const auto& [post_office, batch] : job.batches) recorded += batch.ledger.capture_ids.size();
  EXPECT_EQ(recorded, 3u) << "each capture recorded exactly once";
}

TEST(ExporterTest, DedupByCaptureIdSlotAndScanAndRepublish) {
  Bed bed;
  ExporterOptions o = bed.Options();
  auto ex = OpenExporter(o);
  ASSERT_NE(ex, nullptr);
  store::CaptureId id = bed.Capture(1, {kJane});
  // The same capture announced twice more (a second slot; the spool scan finds it too).
  ASSERT_TRUE(bed.ptable->Publish(*bed.preg, id.bytes, 10).ok());
  ASSERT_TRUE(ex->Drain().ok());
  // And once more after it was exported: R3-like path in the loop (id already in the ledger).
  ASSERT_TRUE(bed.ptable->Publish(*bed.preg, id.bytes, 10).ok());
  bed.ptable->RingDoorbell();
  ASSERT_TRUE(ex->Drain().ok());
  EXPECT_EQ(ex->counters().exported, 1u);
  EXPECT_GE(ex->counters().skipped_known, 1u);
  ex.reset();
  auto seen = ReadOutbox(bed.paths.outbox_directory);
  EXPECT_EQ(seen.size(), 1u);
  for (uint32_t i = 0; i < bed.ptable->slot_count(); ++i) EXPECT_EQ(bed.ptable->Slot(i).state, shm::SlotState::kFree);
  ExpectQuiescent(bed.paths);
}

TEST(ExporterTest, DedupByContentKeyAndRecipientAcrossRoundsAndWithinOne) {
  Bed bed;
  ExporterOptions o = bed.Options();
  {
    auto ex = OpenExporter(o);
    bed.Capture(7, {kJane});
    ASSERT_TRUE(ex->Drain().ok());
    // An SMTP retry of the same message (same content key) with one more recipient, and two
    // copies of another message captured in the same round.
    bed.Capture(7, {kJane, kRick});
    bed.Capture(8, {kBert});
    bed.Capture(8, {kBert});
    ASSERT_TRUE(ex->Drain().ok());
    ExporterCounters c = ex->counters();
    EXPECT_EQ(c.exported, 3u);  // Jane once, Rick once, Bert once
    EXPECT_EQ(c.dups, 2u);      // Jane (ledger), Bert (same round)
    EXPECT_EQ(c.captures, 4u);
  }
  auto seen = ReadOutbox(bed.paths.outbox_directory);
  EXPECT_EQ(Recipients(seen), (std::multiset<std::string>{"BRANCH:Bo, Bert", "HQ:Doe, Jane", "HQ:Roe, Rick"}));
  std::unique_ptr<store::Ledger> l;
  ASSERT_TRUE(store::Ledger::Open(bed.paths.ledger_path, &l).ok());
  store::LedgerCounters lc;
  ASSERT_TRUE(l->Counters(&lc).ok());
  EXPECT_EQ(lc.exported, 3u);
  EXPECT_EQ(lc.dups, 2u);
  EXPECT_EQ(lc.captures, 4u);
  ExpectQuiescent(bed.paths);
}

// Every notice waiting in spool_directory/bounce for bounce_relay (bounce.h), concatenated.
std::string QueuedNotices(const std::string& spool_directory) {
  std::string all;
  if (fs::exists(spool_directory + "/bounce"))
    for (const auto& e : fs::directory_iterator(spool_directory + "/bounce"))
      if (e.is_regular_file() && e.path().extension() == ".msg") all += Slurp(e.path().string());
  return all;
}

TEST(ExporterTest, UnconvertibleAndUnroutableAreQuarantinedNotifiedAndNeverRetried) {
  Bed bed;
  ExporterOptions o = bed.Options();
  o.notify_sender_on_quarantine = true;
  auto ex = OpenExporter(o);
  // A cc:Mail name whose To: line alone exceeds header_limit: the converter refuses it.
  Rcpt huge{"huge@corp.example", std::string(5000, 'X'), "HQ"};
  store::CaptureId bad1 = bed.Capture(1, {huge}, true, "victim@example.org");
  store::CaptureId bad2 = bed.Capture(2, {{"nobody@corp.example", "", ""}}, true, "");  // no PO, null sender
  bed.Capture(3, {kJane});
  ASSERT_TRUE(ex->Drain().ok());
  EXPECT_EQ(ex->counters().quarantined, 2u);
  EXPECT_EQ(ex->counters().exported, 1u);
  EXPECT_TRUE(fs::exists(bed.paths.quarantine_dir + "/" + bad1.ToString()));
  EXPECT_TRUE(fs::exists(bed.paths.quarantine_dir + "/" + bad2.ToString()));
  // Queued for bounce_relay (nothing listens in the test bed: they stay queued).
  std::string notices = QueuedNotices(bed.paths.spool_directory);
  EXPECT_NE(notices.find("ccmail-bounce v1 to=<victim@example.org>\n"), std::string::npos) << notices;
  EXPECT_NE(notices.find(bad1.ToString()), std::string::npos);
  EXPECT_EQ(notices.find(bad2.ToString()), std::string::npos) << "the null sender must never get a notice";
  ASSERT_TRUE(ex->Drain().ok());  // nothing comes back
  EXPECT_EQ(ex->counters().quarantined, 2u);
  ex.reset();
  EXPECT_EQ(ReadOutbox(bed.paths.outbox_directory).size(), 1u);
  ExpectQuiescent(bed.paths);
}

// Two captures of one message in one round; the first fails conversion (quarantined). The
// second must not be recorded as a DUP of a delivery that never happened.
TEST(ExporterTest, CopyOfAQuarantinedCaptureInTheSameRoundIsStillExported) {
  Bed bed;
  ExporterOptions o = bed.Options();
  auto ex = OpenExporter(o);
  Rcpt huge{"huge@corp.example", std::string(5000, 'X'), "HQ"};
  for (int i = 0; i < 12; ++i) bed.Capture(static_cast<uint64_t>(100 + i), {kRick});  // enough for helper threads
  // Forced ids: the failing copy sorts first in the round.
  const uint8_t r1[10] = {0}, r2[10] = {1};
  const store::CaptureId first = store::CaptureId::FromParts(1700000000000, r1);
  const store::CaptureId second = store::CaptureId::FromParts(1700000000000, r2);
  bed.Capture(1, {huge, kJane}, true, "sender@example.org", 0, &first);
  bed.Capture(1, {kJane}, true, "sender@example.org", 0, &second);
  ASSERT_TRUE(ex->Drain().ok());
  EXPECT_EQ(ex->counters().quarantined, 1u);
  EXPECT_EQ(ex->counters().exported, 13u);
  EXPECT_EQ(ex->counters().dups, 0u);
  ex.reset();
  auto seen = ReadOutbox(bed.paths.outbox_directory);
  EXPECT_EQ(std::count_if(seen.begin(), seen.end(), [](const Seen& s) { return s.recipient == "Doe, Jane"; }), 1);
}

TEST(ExporterTest, CommittedPartIsRolledForwardAtStart) {
  Bed bed;
  ExporterOptions o = bed.Options();
  store::CaptureId id = bed.Capture(1, {kJane, kBert});
  // Killed right after the ledger commit: two .part files (+ manifests), spool file kept.
  int st = DrainInChild(o, "ledger.commit.after:1");
  ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << st;
  EXPECT_EQ(CountFiles(bed.paths.out_tmp), 4u);
  EXPECT_TRUE(fs::exists(bed.paths.spool_root + "/new/" + id.ToString()));
  EXPECT_TRUE(ReadOutbox(bed.paths.outbox_directory).empty());
  {
    auto ex = OpenExporter(o);  // recovery alone finishes the job
    ASSERT_NE(ex, nullptr);
    EXPECT_EQ(CountFiles(bed.paths.out_tmp), 0u);
    EXPECT_FALSE(fs::exists(bed.paths.spool_root + "/new/" + id.ToString()));
    ASSERT_TRUE(ex->Drain().ok());
    EXPECT_EQ(ex->counters().exported, 0u) << "must not be exported again";
  }
  auto seen = ReadOutbox(bed.paths.outbox_directory);
  EXPECT_EQ(Recipients(seen), (std::multiset<std::string>{"BRANCH:Bo, Bert", "HQ:Doe, Jane"}));
  ExpectQuiescent(bed.paths);
}

TEST(ExporterTest, UncommittedPartIsDeletedAndRedone) {
  Bed bed;
  ExporterOptions o = bed.Options();
  bed.Capture(1, {kJane, kBert});
  int st = DrainInChild(o, "ledger.commit.before:1");
  ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << st;
  EXPECT_EQ(CountFiles(bed.paths.out_tmp), 4u);
  {
    auto ex = OpenExporter(o);
    EXPECT_EQ(CountFiles(bed.paths.out_tmp), 0u) << "uncommitted .part files must be deleted";
    EXPECT_TRUE(ReadOutbox(bed.paths.outbox_directory).empty());
    ASSERT_TRUE(ex->Drain().ok());
    EXPECT_EQ(ex->counters().exported, 2u);
  }
  EXPECT_EQ(ReadOutbox(bed.paths.outbox_directory).size(), 2u);
  ExpectQuiescent(bed.paths);
}

TEST(ExporterTest, WatermarkLaggingAfterRenameIsAdvancedAtStart) {
  Bed bed;
  ExporterOptions o = bed.Options();
  bed.Capture(1, {kJane});
  int st = DrainInChild(o, "batch.dir.fsynced:1");  // renamed, watermark not written
  ASSERT_TRUE(WIFSIGNALED(st)) << st;
  Watermark wm;
  EXPECT_FALSE(ReadWatermark(bed.paths.outbox_directory + "/HQ", &wm).ok());
  { auto ex = OpenExporter(o); }
  ASSERT_TRUE(ReadWatermark(bed.paths.outbox_directory + "/HQ", &wm).ok());
  EXPECT_EQ(ReadOutbox(bed.paths.outbox_directory).size(), 1u);
}

TEST(ExporterTest, R2AndR3AtStart) {
  Bed bed;
  ExporterOptions o = bed.Options();
  store::CaptureId done_id = bed.Capture(1, {kJane});
  DrainOnce(o);
  // A previous exporter (still registered here) claimed a slot and died before committing.
  store::CaptureId claimed_id = bed.Capture(2, {kRick});
  std::unique_ptr<shm::Registration> prev;
  ASSERT_TRUE(bed.ptable->Register(shm::Role::kExporter, &prev).ok());
  std::vector<shm::Claim> claims;
  ASSERT_EQ(bed.ptable->ClaimReady(*prev, 10, &claims), 1u);
  // A slot for a capture that is already in the ledger (a stale re-announcement).
  ASSERT_TRUE(bed.ptable->Publish(*bed.preg, done_id.bytes, 10).ok());
  auto count = [&](shm::SlotState s) {
    int n = 0;
    for (uint32_t i = 0; i < bed.ptable->slot_count(); ++i) n += bed.ptable->Slot(i).state == s;
    return n;
  };
  EXPECT_EQ(count(shm::SlotState::kClaimed), 1);
  EXPECT_EQ(count(shm::SlotState::kReady), 1);
  {
    std::unique_ptr<Exporter> ex;
    ASSERT_TRUE(Exporter::Open(o, &ex).ok());
    EXPECT_EQ(count(shm::SlotState::kClaimed), 1) << "R2 is a recovery step: after the epoch bump, not in Open";
    ::testing::internal::CaptureStderr();
    ASSERT_TRUE(ex->Recover().ok());
    const std::string log = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(log.find("slots reset 1,"), std::string::npos) << "the recovery line counts the slots R2 reset:\n" << log;
    EXPECT_EQ(count(shm::SlotState::kClaimed), 0) << "R2";
    EXPECT_EQ(count(shm::SlotState::kReady), 1) << "R2 made the claimed slot READY, R3 freed the exported one";
    ASSERT_TRUE(ex->Drain().ok());
    EXPECT_EQ(ex->counters().exported, 1u);
  }
  EXPECT_EQ(count(shm::SlotState::kReady) + count(shm::SlotState::kClaimed), 0);
  auto seen = ReadOutbox(bed.paths.outbox_directory);
  EXPECT_EQ(Recipients(seen), (std::multiset<std::string>{"HQ:Doe, Jane", "HQ:Roe, Rick"}));
  for (const auto& s : seen)
    if (s.recipient == "Roe, Rick") {
      EXPECT_EQ(s.capture_id, claimed_id.ToString());
    }
  ExpectQuiescent(bed.paths);
}

TEST(ExporterTest, SecondExporterGetsBusyAndChangesNothing) {
  Bed bed;
  ExporterOptions o = bed.Options();
  auto first = OpenExporter(o);
  ASSERT_NE(first, nullptr);
  uint64_t epoch = first->epoch();
  std::unique_ptr<Exporter> second;
  Status s = Exporter::Open(o, &second);
  EXPECT_EQ(s.code(), Status::Code::kBusy) << s.ToString();
  EXPECT_EQ(second, nullptr);
  std::unique_ptr<store::Ledger> l;
  ASSERT_TRUE(store::Ledger::Open(bed.paths.ledger_path, &l).ok());
  EXPECT_EQ(l->epoch(), epoch);
}

TEST(ExporterTest, FullOutboxDiskIsBackPressureNotLoss) {
  Bed bed;
  ExporterOptions o = bed.Options();
  o.batch_max_messages = 4;
  for (int i = 0; i < 10; ++i) bed.Capture(static_cast<uint64_t>(i + 1), {kJane, kBert});
  // The 2nd .part write and the 3rd ledger commit hit a full disk, and one watermark write.
  ::setenv("CCMAIL_FAIL_AT", "batch.part.written:2:ENOSPC,ledger.commit.before:3:ENOSPC,watermark.written:2:ENOSPC", 1);
  store::ReloadFaultSpecFromEnv();
  {
    auto ex = OpenExporter(o);
    ASSERT_TRUE(ex->Drain().ok());
    EXPECT_EQ(ex->counters().abandoned, 2u);
    EXPECT_EQ(ex->counters().exported, 20u);
  }
  ::unsetenv("CCMAIL_FAIL_AT");
  store::ReloadFaultSpecFromEnv();
  auto seen = ReadOutbox(bed.paths.outbox_directory);
  EXPECT_EQ(seen.size(), 20u);
  std::set<std::pair<std::string, std::string>> uniq;
  for (const auto& s : seen) EXPECT_TRUE(uniq.insert({s.content_key, s.recipient}).second) << "duplicate " << s.recipient;
  ExpectQuiescent(bed.paths);
}

// A round that met a full disk is retried smaller: with room for only part of the backlog the
// exporter must not retry the same too-large round for ever (seen end to end with 2 MB messages).
TEST(ExporterTest, RoundThatHitENOSPCIsRetriedAtHalfSizeThenGrowsBack) {
  Bed bed;
  ExporterOptions o = bed.Options();
  o.batch_max_messages = 8;
  for (int i = 0; i < 16; ++i) bed.Capture(static_cast<uint64_t>(i + 1), {kJane});
  ::setenv("CCMAIL_FAIL_AT", "batch.part.written:1:ENOSPC", 1);
  store::ReloadFaultSpecFromEnv();
  {
    auto ex = OpenExporter(o);
    ASSERT_TRUE(ex->Drain().ok());
    EXPECT_EQ(ex->counters().abandoned, 1u);
    EXPECT_EQ(ex->counters().exported, 16u);
  }
  ::unsetenv("CCMAIL_FAIL_AT");
  store::ReloadFaultSpecFromEnv();
  std::map<std::string, size_t> per_batch;
  for (const auto& s : ReadOutbox(bed.paths.outbox_directory)) ++per_batch[s.batch];
  std::vector<size_t> sizes;
  for (const auto& [name, n] : per_batch) sizes.push_back(n);  // batch names sort by (epoch, seq)
  // The failed round (at most 8) is retried at half its size, then rounds double back.
  ASSERT_GE(sizes.size(), 3u);
  EXPECT_LE(sizes[0], 4u);
  EXPECT_GT(sizes[1], sizes[0]) << "the round size did not grow back after a commit";
  EXPECT_EQ(std::accumulate(sizes.begin(), sizes.end(), size_t{0}), 16u);
  for (size_t n : sizes) EXPECT_LE(n, 8u);
  ExpectQuiescent(bed.paths);
}

// A capture that cannot be read (here a directory where its file should be: EISDIR, also as
// root) is retried, never quarantined or lost, and never blocks the others; a drain reports
// it and ends instead of waiting for ever.
TEST(ExporterTest, DrainEndsWithAnErrorNamingAnUnreadableCapture) {
  Bed bed;
  ExporterOptions o = bed.Options();
  o.backoff_min = std::chrono::milliseconds(5);
  o.backoff_max = std::chrono::milliseconds(20);
  bed.Capture(1, {kJane});
  const store::CaptureId stuck = store::CaptureId::New();
  const std::string stuck_path = bed.paths.spool_root + "/new/" + stuck.ToString();
  ASSERT_EQ(::mkdir(stuck_path.c_str(), 0700), 0);
  auto ex = OpenExporter(o);
  Status s = ex->Drain();
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find(stuck.ToString()), std::string::npos) << s.ToString();
  EXPECT_EQ(ex->counters().exported, 1u) << "the readable capture was held up";
  EXPECT_EQ(ex->counters().quarantined, 0u);
  struct stat st;
  EXPECT_EQ(::stat(stuck_path.c_str(), &st), 0) << "the unreadable capture must stay where it is";
  // Once the cause is fixed (the real file is back), the next drain exports it.
  ASSERT_EQ(::rmdir(stuck_path.c_str()), 0);
  ASSERT_TRUE(ex->Drain().ok());
}

// The daemon's loop: once the last round is committed and nothing new arrives, its slots must
// be freed before the exporter goes idle (a slot left CLAIMED holds `ccmailctl drain` and the
// milter's table space until the next mail).
TEST(ExporterTest, IdleDaemonHasFreedEverySlot) {
  Bed bed;
  ExporterOptions o = bed.Options();
  auto ex = OpenExporter(o);
  std::atomic<bool> stop{false};
  Status run_status;
  std::thread t([&] { run_status = ex->Run(stop); });
  for (int i = 0; i < 5; ++i) bed.Capture(static_cast<uint64_t>(i + 1), {kJane});
  bool exported = false, freed = false;
  for (int i = 0; i < 500 && !(exported && freed); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    exported = ex->counters().exported == 5;
    freed = true;
    for (uint32_t s = 0; s < bed.ptable->slot_count(); ++s)
      if (bed.ptable->Slot(s).state != shm::SlotState::kFree) freed = false;
  }
  stop = true;
  bed.ptable->RingDoorbell();
  t.join();
  ASSERT_TRUE(run_status.ok()) << run_status.ToString();
  EXPECT_TRUE(exported);
  EXPECT_TRUE(freed) << "a slot was still in use while the exporter was idle";
}

// deliver_command: 4 -> retried, 1 -> retried with alert and exporting goes on, 5 -> bounce.
TEST(ExporterTest, DeliverCommandExitCodesAndUndBounce) {
  Bed bed;
  // Exit codes come from a list, one per run; on 5 the whole batch is declared undeliverable.
  Spit(bed.dir + "/codes", "4\n1\n5\n");
  Spit(bed.dir + "/deliver",
       "#!/bin/sh\nd=" + bed.dir + "\necho \"$CCMAIL_POSTOFFICE $CCMAIL_BATCH\" >> $d/runs\n"
       "code=$(head -n1 $d/codes); sed -i 1d $d/codes; [ -n \"$code\" ] || code=0\n"
       "[ \"$code\" = 5 ] && cp \"$CCMAIL_BATCH\" \"$CCMAIL_UND\"\nexit $code\n");
  ::chmod((bed.dir + "/deliver").c_str(), 0755);
  ExporterOptions o = bed.Options();
  o.deliver_command = bed.dir + "/deliver";
  o.deliver_retry_min_s = 1;
  o.deliver_retry_max_s = 1;
  auto ex = OpenExporter(o);
  bed.Capture(1, {kJane}, true, "alice@example.org");
  std::atomic<bool> stop{false};
  Status run_status;
  std::thread t([&] { run_status = ex->Run(stop); });
  auto wait_for = [&](const std::string& file, const std::string& what, int secs) {
    for (int i = 0; i < secs * 50; ++i) {
      if (Slurp(file).find(what) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  };
  // After the failing runs (4, then 1) exporting goes on: a second message is exported.
  ASSERT_TRUE(wait_for(bed.dir + "/runs", "HQ", 5));
  bed.Capture(2, {kRick}, true, "carol@example.org");
  bool queued = false;
  for (int i = 0; i < 750 && !queued; ++i) {
    queued = QueuedNotices(bed.paths.spool_directory).find("alice@example.org") != std::string::npos;
    if (!queued) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(queued) << Slurp(bed.dir + "/runs");
  for (int i = 0; i < 250 && ex->counters().exported < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  stop = true;
  t.join();
  ASSERT_TRUE(run_status.ok()) << run_status.ToString();
  ExporterCounters c = ex->counters();
  EXPECT_EQ(c.exported, 2u);
  EXPECT_GE(c.deliver_runs, 3u);
  EXPECT_GE(c.deliver_failures, 2u);
  EXPECT_EQ(c.bounced, 1u);
  std::string b = QueuedNotices(bed.paths.spool_directory);
  EXPECT_NE(b.find("ccmail-bounce v1 to=<alice@example.org>\n"), std::string::npos) << b;
  EXPECT_NE(b.find("report-type=delivery-status"), std::string::npos) << b;
  EXPECT_NE(b.find("Doe, Jane"), std::string::npos) << b;
  EXPECT_EQ(b.find("carol@example.org"), std::string::npos) << "only the undeliverable batch bounces";
}

}  // namespace
}  // namespace ccmail::exporter
