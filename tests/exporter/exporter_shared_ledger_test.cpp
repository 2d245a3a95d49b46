// Two exporters (relays "a" and "b", each with its own spool and claim table) on one shared
// PostgreSQL ledger and one shared outbox: a message re-sent to the other relay after its
// 250 is exported once (by whichever relay commits first) and a DUP on the other; batch
// names, manifests and watermarks carry the relay id, so the relays never collide.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace ccmail::exporter
