// Two exporters (relays "a" and "b", each with its own spool and claim table) on one shared
// PostgreSQL ledger and one shared outbox: a message re-sent to the other relay after its
// 250 is exported once (by whichever relay commits first) and a DUP on the other; batch
// names, manifests and watermarks carry the relay id, so the relays never collide.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "exporter_test_util.h"
#include "ledger_pg_cluster.h"

namespace ccmail::exporter {
namespace {
using store::test::LedgerPgCluster;
using namespace ccmail::exporter::testing;

const ::testing::Environment* const kSharedSkipReporter =
    ::testing::AddGlobalTestEnvironment(new store::test::LedgerPgSkipReporter);

const Rcpt kJane{"jane@corp.example", "Doe, Jane", "HQ"};

std::unique_ptr<Exporter> OpenRelay(const ExporterOptions& o) {
  std::unique_ptr<Exporter> ex;
  Status s = Exporter::Open(o, &ex);
  EXPECT_TRUE(s.ok()) << s.ToString();
  if (!s.ok()) return nullptr;
  s = ex->Recover();
  EXPECT_TRUE(s.ok()) << s.ToString();
  return s.ok() ? std::move(ex) : nullptr;
}

class SharedLedgerExporter : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!LedgerPgCluster::Available()) {
      LedgerPgCluster::NoteSkipped();
      GTEST_SKIP() << LedgerPgCluster::kMissing;
    }
    ASSERT_TRUE(LedgerPgCluster::Get().started());
    target_ = LedgerPgCluster::Get().NewDatabase("a");
  }
  ExporterOptions Relay(Bed& bed, const std::string& relay, const std::string& outbox) {
    ExporterOptions o = bed.Options();
    o.ledger = target_;
    o.ledger.relay_id = relay;
    o.paths.outbox_directory = outbox;
    return o;
  }
  store::LedgerTarget target_;
};

TEST_F(SharedLedgerExporter, AMessageResentToTheOtherRelayIsExportedOnce) {
  Bed a, b;
  const std::string outbox = a.paths.outbox_directory;  // one outbox for both relays
  auto ea = OpenRelay(Relay(a, "a", outbox));
  auto eb = OpenRelay(Relay(b, "b", outbox));
  ASSERT_NE(ea, nullptr);
  ASSERT_NE(eb, nullptr);
  EXPECT_STREQ(ea->ledger_backend(), "postgresql");
  // The same message (same content key and recipient) captured by both relays, plus one
  // message each of its own.
  a.Capture(1, {kJane});
  b.Capture(1, {kJane});
  a.Capture(2, {kJane});
  b.Capture(3, {kJane});
  ASSERT_TRUE(ea->Drain().ok());
  ASSERT_TRUE(eb->Drain().ok());
  EXPECT_EQ(ea->counters().exported, 2u);
  EXPECT_EQ(eb->counters().exported, 1u);
  EXPECT_EQ(eb->counters().dups, 1u);
  // Both relays' first batch has epoch 1 seq 1: only the relay id keeps the names apart.
  const std::string hq = outbox + "/HQ";
  EXPECT_TRUE(fs::exists(hq + "/" + BatchFileName(1, 1, "a"))) << BatchFileName(1, 1, "a");
  EXPECT_TRUE(fs::exists(hq + "/" + BatchFileName(1, 1, "b")));
  EXPECT_EQ(BatchFileName(1, 1, "a"), "a-00100001.CCM");
  size_t deliveries = 0;
  std::multiset<std::string> keys;
  for (const auto& f : fs::directory_iterator(hq)) {
    const std::string name = f.path().filename();
    if (name.size() < 4 || name.substr(name.size() - 4) != ".MAN") continue;
    std::vector<ManifestEntry> entries;
    const std::string text = Slurp(f.path());
    ASSERT_TRUE(ParseManifest(text, &entries).ok()) << name;
    EXPECT_NE(text.find(" relay=" + name.substr(0, 1)), std::string::npos) << text;
    for (const auto& e : entries) keys.insert(e.content_key);
    deliveries += entries.size();
  }
  EXPECT_EQ(deliveries, 3u);  // keys 1, 2, 3 once each
  EXPECT_EQ(keys.size(), std::set<std::string>(keys.begin(), keys.end()).size()) << "a delivery exported twice";
  Watermark wm;
  ASSERT_TRUE(ReadWatermark(hq, &wm, "a").ok());
  ASSERT_TRUE(ReadWatermark(hq, &wm, "b").ok());
  EXPECT_FALSE(ReadWatermark(hq, &wm).ok());  // no single-relay watermark
  // Each relay checks its own history at start: both reopen cleanly.
  ea.reset();
  eb.reset();
  EXPECT_NE(OpenRelay(Relay(a, "a", outbox)), nullptr);
  EXPECT_NE(OpenRelay(Relay(b, "b", outbox)), nullptr);
}

// The race the shared index decides: relay c holds an uncommitted EXPORTED row for the
// delivery when relay b's round looks it up (not exported yet) and stages it; b's insert
// waits, c commits, b's round fails on the unique index and is re-planned: the copy becomes
// a DUP, nothing of it is exported by b, nothing is lost (the capture leaves b's spool).
TEST_F(SharedLedgerExporter, ADeliveryExportedByAnotherRelayMidRoundIsReplannedAsDup) {
  Bed b;
  auto eb = OpenRelay(Relay(b, "b", b.paths.outbox_directory));
  ASSERT_NE(eb, nullptr);
  std::unique_ptr<store::Ledger> c;
  store::LedgerTarget tc = target_;
  tc.relay_id = "c";
  ASSERT_TRUE(store::OpenLedger(tc, &c).ok());
  ASSERT_TRUE(c->BumpEpoch(nullptr).ok());
  const std::string rcpt = kJane.name + " at " + kJane.post_office;  // the exporter's dedup key
  store::LedgerBatch held;
  held.post_office = "HQ";
  held.file_name = "c-00100001.CCM";
  store::CaptureId cid = store::CaptureId::New();
  held.capture_ids = {cid};
  held.deliveries = {{cid, Bed::Key(7), rcpt, store::DeliveryKind::kExported}};
  std::vector<store::LedgerBatch> vc{held};
  ASSERT_TRUE(c->StageBatches(vc).ok());
  b.Capture(7, {kJane});
  Status drained;
  std::thread t([&] { drained = eb->Drain(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // b's round is waiting on c's row
  ASSERT_TRUE(c->CommitStaged(&vc).ok());
  t.join();
  ASSERT_TRUE(drained.ok()) << drained.ToString();
  EXPECT_EQ(eb->counters().exported, 0u);
  EXPECT_EQ(eb->counters().dups, 1u);
  EXPECT_GE(eb->counters().abandoned, 1u);  // the round that lost the race
  std::vector<store::CaptureId> left;
  std::unique_ptr<store::Spool> spool;
  ASSERT_TRUE(store::Spool::Open(b.paths.spool_root, &spool).ok());
  ASSERT_TRUE(spool->ListPending(&left).ok());
  EXPECT_TRUE(left.empty());
  size_t files = 0;
  if (fs::exists(b.paths.outbox_directory + "/HQ"))
    for (const auto& f : fs::directory_iterator(b.paths.outbox_directory + "/HQ"))
      files += f.path().extension() == ".CCM";
  EXPECT_EQ(files, 0u);
}

// The daemon with its shared ledger down at start: it stays up, says so once, and exports
// as soon as the server is back (no exit, no systemd restart loop); SIGTERM ends it cleanly.
TEST_F(SharedLedgerExporter, DaemonWaitsForAnUnreachableLedgerAndExportsWhenItIsBack) {
  LedgerPgCluster& pg = LedgerPgCluster::Get();
  Bed bed;
  bed.Capture(11, {kJane});
  const std::string conf = bed.WriteConfig("ledger = " + target_.location + "\nledger_password_file = " +
                                           target_.password_file + "\nrelay_id = solo\n");
  ASSERT_EQ(pg.Kill(), 0);
  const std::string log = bed.dir + "/exporter.log";
  std::string arg0 = CCMAIL_EXPORTER_BIN, arg1 = "-c", arg3 = "--stderr";
  std::string conf_arg = conf;
  char* argv[] = {arg0.data(), arg1.data(), conf_arg.data(), arg3.data(), nullptr};
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execv(argv[0], argv);
    ::_exit(127);
  }
  std::this_thread::sleep_for(std::chrono::seconds(4));
  int st = 0;
  EXPECT_EQ(::waitpid(pid, &st, WNOHANG), 0) << "the exporter exited while the ledger was down: " << Slurp(log);
  ASSERT_EQ(pg.Restart(), 0);
  const std::string published = bed.paths.outbox_directory + "/HQ/" + BatchFileName(1, 1, "solo");
  for (int i = 0; i < 600 && !fs::exists(published); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_TRUE(fs::exists(published)) << Slurp(log);
  ::kill(pid, SIGTERM);
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << Slurp(log);
  const std::string text = Slurp(log);
  size_t downs = 0;
  for (size_t p = 0; (p = text.find("shared ledger unreachable", p)) != std::string::npos; ++p) ++downs;
  EXPECT_EQ(downs, 1u) << text;  // once per state change, not once per try
  EXPECT_NE(text.find("shared ledger reachable again"), std::string::npos) << text;
}

}  // namespace
}  // namespace ccmail::exporter
