// The ledger's contract, run against both backends (SQLite file; PostgreSQL in ONE private
// cluster per binary, a fresh database per test), then what only a shared ledger has: two
// relays racing on one delivery, two exporters with one relay id, a postmaster killed during
// COMMIT, an unreachable server, a lock held by another session, a server that stopped
// answering (SIGSTOP), and the password kept out of messages.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "ccmail/store/capture_id.h"
#include "ccmail/store/content_key.h"
#include "ccmail/store/ledger.h"
#include "ledger_pg_cluster.h"
#include "test_util.h"

namespace ccmail::store {
namespace {
using test::LedgerPgCluster;
using test::TempDir;

const ::testing::Environment* const kSkipReporter =
    ::testing::AddGlobalTestEnvironment(new test::LedgerPgSkipReporter);

const char kMsg[] =
    "From: Alice <alice@example.com>\r\n"
    "To: bob@example.com\r\n"
    "Subject: hello\r\n"
    "Message-ID: <1@example.com>\r\n"
    "\r\n"
    "Body line 1\r\n";

enum class Backend { kSqlite, kPostgres };

// Opens the backend's ledger of this test: the file dir_/ledger.db, or the test's database
// as relay `relay` (default "r1").
class LedgerTest : public ::testing::Test {
 protected:
  void StartPostgres() {
    if (!LedgerPgCluster::Available()) {
      LedgerPgCluster::NoteSkipped();
      GTEST_SKIP() << LedgerPgCluster::kMissing;
    }
    ASSERT_TRUE(LedgerPgCluster::Get().started()) << "tests/testing/pg_cluster.sh start failed";
    target_ = LedgerPgCluster::Get().NewDatabase("r1");
  }
  bool postgres() const { return IsPostgresLocation(target_.location); }
  LedgerTarget Target(const std::string& relay = "r1") const {
    LedgerTarget t = target_;
    if (postgres()) t.relay_id = relay;
    return t;
  }
  Status Open(std::unique_ptr<Ledger>* out, const std::string& relay = "r1") { return OpenLedger(Target(relay), out); }

  TempDir dir_;
  LedgerTarget target_{dir_.path() + "/ledger.db", "", ""};
};

class LedgerContract : public LedgerTest, public ::testing::WithParamInterface<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::kPostgres) StartPostgres();
  }
};

class SharedLedger : public LedgerTest {
 protected:
  void SetUp() override { StartPostgres(); }
};

LedgerBatch MakeBatch(const std::vector<std::pair<ContentKey, std::string>>& d, CaptureId* id_out = nullptr) {
  LedgerBatch b;
  b.post_office = "PO1";
  b.file_name = "b.ccm";
  CaptureId id = CaptureId::New();
  if (id_out) *id_out = id;
  b.capture_ids.push_back(id);
  for (const auto& [k, r] : d) b.deliveries.push_back({id, k, r, DeliveryKind::kExported});
  return b;
}

// One batch through the exporter's commit call, its seq/epoch/created_ms copied back.
Status CommitOne(Ledger* ledger, LedgerBatch* batch) {
  std::vector<LedgerBatch> batches{*batch};
  Status s = ledger->CommitBatches(&batches);
  if (s.ok()) *batch = batches[0];
  return s;
}

// The database name of a PostgreSQL target ("... dbname=tN ...").
std::string DbName(const LedgerTarget& t) {
  const size_t from = t.location.find("dbname=") + 7;
  return t.location.substr(from, t.location.find(' ', from) - from);
}

TEST_P(LedgerContract, EpochBatchDedupPrune) {
  ContentKey k1 = ContentKeyOfMessage("a", kMsg), k2 = ContentKeyOfMessage("b", kMsg);
  uint64_t e1 = 0, e2 = 0;
  {
    std::unique_ptr<Ledger> l;
    ASSERT_TRUE(Open(&l).ok());
    LedgerBatch early = MakeBatch({{k1, "x"}});
    EXPECT_EQ(CommitOne(l.get(), &early).code(), Status::Code::kInvalidArgument);  // no epoch yet
    ASSERT_TRUE(l->BumpEpoch(&e1).ok());
    CaptureId c1;
    LedgerBatch b = MakeBatch({{k1, "bob@x"}, {k1, "carol@x"}}, &c1);
    ASSERT_TRUE(CommitOne(l.get(), &b).ok());
    EXPECT_EQ(b.seq, 1u);
    EXPECT_EQ(b.epoch, e1);
    bool f = false;
    ASSERT_TRUE(l->HasCapture(c1, &f).ok());
    EXPECT_TRUE(f);
    ASSERT_TRUE(l->HasCapture(CaptureId::New(), &f).ok());
    EXPECT_FALSE(f);
    ASSERT_TRUE(l->IsExported(k1, "bob@x", &f).ok());
    EXPECT_TRUE(f);
    ASSERT_TRUE(l->IsExported(k1, "dave@x", &f).ok());
    EXPECT_FALSE(f);
    ASSERT_TRUE(l->IsExported(k2, "bob@x", &f).ok());
    EXPECT_FALSE(f);
    // Exporting (k1, bob) again is refused, atomically: the whole batch is absent.
    LedgerBatch again = MakeBatch({{k2, "bob@x"}, {k1, "bob@x"}});
    EXPECT_EQ(CommitOne(l.get(), &again).code(), Status::Code::kAlreadyExists);
    ASSERT_TRUE(l->IsExported(k2, "bob@x", &f).ok());
    EXPECT_FALSE(f);
    // The retry recorded as DUP next to a new recipient.
    CaptureId c2 = CaptureId::New();
    LedgerBatch dup;
    dup.post_office = "PO1";
    dup.file_name = "c.ccm";
    dup.capture_ids = {c2};
    dup.deliveries = {{c2, k1, "bob@x", DeliveryKind::kDup}, {c2, k1, "dave@x", DeliveryKind::kExported}};
    ASSERT_TRUE(CommitOne(l.get(), &dup).ok());
    EXPECT_EQ(dup.seq, 2u);
    LedgerCounters c;
    ASSERT_TRUE(l->Counters(&c).ok());
    EXPECT_EQ(c.batches, 2u);
    EXPECT_EQ(c.captures, 2u);
    EXPECT_EQ(c.exported, 3u);
    EXPECT_EQ(c.dups, 1u);
    EXPECT_TRUE(l->IntegrityCheck().ok());
  }
  {
    std::unique_ptr<Ledger> l;
    ASSERT_TRUE(Open(&l).ok());
    ASSERT_TRUE(l->BumpEpoch(&e2).ok());
    EXPECT_GT(e2, e1);
    // Prune: nothing before spool_clean_seq is set, then everything older than cutoff.
    uint64_t del = 0;
    int64_t future = 1LL << 50;
    ASSERT_TRUE(l->Prune(future, 1, &del).ok());
    EXPECT_EQ(del, 0u);
    ASSERT_TRUE(l->SetSpoolCleanSeq(1).ok());
    ASSERT_TRUE(l->Prune(future, 1, &del).ok());
    EXPECT_EQ(del, 3u);  // two deliveries + one capture of batch 1, one row per txn
    bool f = true;
    ASSERT_TRUE(l->IsExported(k1, "bob@x", &f).ok());
    EXPECT_FALSE(f);
    ASSERT_TRUE(l->IsExported(k1, "dave@x", &f).ok());
    EXPECT_TRUE(f);
    ASSERT_TRUE(l->Prune(0, 10, &del).ok());
    EXPECT_EQ(del, 0u);
    // Sequence numbers never go back after pruning.
    LedgerBatch b = MakeBatch({{k2, "z"}});
    ASSERT_TRUE(CommitOne(l.get(), &b).ok());
    EXPECT_EQ(b.seq, 3u);
    EXPECT_TRUE(l->IntegrityCheck().ok());
  }
  {
    // Fencing: a stale exporter whose epoch was bumped by another cannot commit.
    std::unique_ptr<Ledger> a, b;
    ASSERT_TRUE(Open(&a).ok());
    ASSERT_TRUE(a->BumpEpoch(nullptr).ok());
    ASSERT_TRUE(Open(&b).ok());
    ASSERT_TRUE(b->BumpEpoch(nullptr).ok());
    LedgerBatch x = MakeBatch({{k2, "late"}});
    EXPECT_EQ(CommitOne(a.get(), &x).code(), Status::Code::kBusy);
  }
}

// Rebuild support: ImportBatches keeps what the ledger has and adds the rest, RaiseFloor
// never lowers, BackupTo is a standalone copy that never overwrites (SQLite; PostgreSQL refuses it).
TEST_P(LedgerContract, ImportRaiseFloorAndBackup) {
  const std::string copy = dir_.path() + "/copy.db";
  ContentKey k1 = ContentKeyOfMessage("a", kMsg), k2 = ContentKeyOfMessage("b", kMsg);
  std::unique_ptr<Ledger> l;
  ASSERT_TRUE(Open(&l).ok());
  uint64_t e = 0;
  ASSERT_TRUE(l->BumpEpoch(&e).ok());
  LedgerBatch b = MakeBatch({{k1, "bob@x"}});
  ASSERT_TRUE(CommitOne(l.get(), &b).ok());
  if (postgres()) {
    // A SQLite-only operation: a clear refusal naming the tool to use instead.
    Status bs = l->BackupTo(copy);
    EXPECT_EQ(bs.code(), Status::Code::kInvalidArgument);
    EXPECT_NE(bs.message().find("pg_dump"), std::string::npos) << bs.ToString();
  } else {
    ASSERT_TRUE(l->BackupTo(copy).ok());
    EXPECT_EQ(l->BackupTo(copy).code(), Status::Code::kAlreadyExists);
    EXPECT_FALSE(std::filesystem::exists(copy + "-wal"));
  }

  LedgerBatch again = b;  // already recorded: kept as it is
  LedgerBatch later = MakeBatch({{k1, "bob@x"}, {k2, "carol@x"}});
  later.seq = 7;
  later.epoch = 5;
  later.file_name = "00500007.CCM";
  uint64_t nb = 0, nd = 0;
  ASSERT_TRUE(l->ImportBatches({again, later}, &nb, &nd).ok());
  EXPECT_EQ(nb, 1u);
  EXPECT_EQ(nd, 1u);  // carol; bob was exported already
  bool f = false;
  ASSERT_TRUE(l->IsExported(k2, "carol@x", &f).ok());
  EXPECT_TRUE(f);
  ASSERT_TRUE(l->RaiseFloor(5, 7).ok());
  ASSERT_TRUE(l->RaiseFloor(2, 3).ok());  // never lowers
  LedgerCounters c;
  ASSERT_TRUE(l->Counters(&c).ok());
  EXPECT_EQ(c.epoch, 5u);
  EXPECT_EQ(c.last_seq, 7u);
  uint64_t next = 0;
  ASSERT_TRUE(l->NextSeq(&next).ok());
  EXPECT_EQ(next, 8u);
  ASSERT_TRUE(l->BumpEpoch(&e).ok());
  EXPECT_EQ(e, 6u);
  EXPECT_TRUE(l->QuickCheck().ok());
  l.reset();
  if (postgres()) return;

  std::unique_ptr<Ledger> backup;
  ASSERT_TRUE(Ledger::OpenReadOnly(copy, &backup).ok());
  ASSERT_TRUE(backup->Counters(&c).ok());
  EXPECT_EQ(c.last_seq, 1u);
  ASSERT_TRUE(backup->IsExported(k1, "bob@x", &f).ok());
  EXPECT_TRUE(f);
  ASSERT_TRUE(backup->IsExported(k2, "carol@x", &f).ok());
  EXPECT_FALSE(f);
}


INSTANTIATE_TEST_SUITE_P(Backends, LedgerContract, ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         [](const ::testing::TestParamInfo<Backend>& p) {
                           return p.param == Backend::kSqlite ? std::string("sqlite") : std::string("postgresql");
                         });

TEST(LedgerTarget, ChoosesTheBackendFromTheLocation) {
  EXPECT_TRUE(IsPostgresLocation("postgresql://db1/ccmail"));
  EXPECT_TRUE(IsPostgresLocation("postgres://db1/ccmail"));
  EXPECT_TRUE(IsPostgresLocation("host=db1 dbname=ccmail"));
  EXPECT_FALSE(IsPostgresLocation("/var/spool/ccmail-bridge/ledger.db"));
  EXPECT_FALSE(IsPostgresLocation("/srv/a=b/ledger.db"));
  EXPECT_FALSE(IsPostgresLocation(""));
  EXPECT_TRUE(IsValidRelayId("mx1"));
  EXPECT_TRUE(IsValidRelayId("relay_B-2"));
  EXPECT_FALSE(IsValidRelayId(""));
  EXPECT_FALSE(IsValidRelayId("mx 1"));
  EXPECT_FALSE(IsValidRelayId(std::string(33, 'a')));
  TempDir d;
  std::unique_ptr<Ledger> l;
  LedgerTarget sqlite{d.path() + "/l.db", "", "mx1"};
  EXPECT_EQ(OpenLedger(sqlite, &l).code(), Status::Code::kInvalidArgument);  // one relay: no relay_id
  sqlite.relay_id.clear();
  ASSERT_TRUE(OpenLedger(sqlite, &l).ok());
  EXPECT_STREQ(l->backend(), "sqlite");
  std::vector<RelayCounters> relays;
  ASSERT_TRUE(l->Relays(&relays).ok());
  ASSERT_EQ(relays.size(), 1u);
  EXPECT_EQ(relays[0].relay_id, "");
  LedgerTarget pg{"host=" + d.path() + " dbname=x", "", ""};
  EXPECT_EQ(OpenLedger(pg, &l).code(), Status::Code::kInvalidArgument);  // relay_id required
  pg.relay_id = "bad id";
  EXPECT_EQ(OpenLedger(pg, &l).code(), Status::Code::kInvalidArgument);
}

// A server that is not there: a clear kUnavailable, quickly (the exporter retries on it).
TEST(LedgerTarget, UnreachableServerIsUnavailableWithinTheTimeout) {
  TempDir d;
  std::unique_ptr<Ledger> l;
  const auto t0 = std::chrono::steady_clock::now();
  Status s = OpenLedger({"host=" + d.path() + " port=5432 dbname=ccmail user=ccmail", "", "mx1"}, &l);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("cannot connect"), std::string::npos) << s.ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(12));
}

// The password never appears in a message: not when it is (wrongly) in the location, not
// when the server refuses it.
TEST_F(SharedLedger, PasswordIsOnlyReadFromItsFileAndNeverShown) {
  std::unique_ptr<Ledger> l;
  LedgerTarget t = Target();
  t.location += " password=sekrit-in-url";
  Status s = OpenLedger(t, &l);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(s.ToString().find("sekrit-in-url"), std::string::npos) << s.ToString();
  t = Target();
  t.password_file = dir_.path() + "/wrong";
  std::ofstream(t.password_file) << "wrong-password-123\n";
  s = OpenLedger(t, &l);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
  EXPECT_EQ(s.ToString().find("wrong-password-123"), std::string::npos) << s.ToString();
  t.password_file = dir_.path() + "/missing";
  EXPECT_FALSE(OpenLedger(t, &l).ok());
  ASSERT_TRUE(OpenLedger(Target(), &l).ok());
  EXPECT_STREQ(l->backend(), "postgresql");
}

// The bridge's connection defaults (connect_timeout, keepalives, application_name...) come
// before the admin's location: a parameter the admin wrote there wins.
TEST_F(SharedLedger, ConnectionParametersOfTheLocationWin) {
  LedgerPgCluster& pg = LedgerPgCluster::Get();
  LedgerTarget t = Target("mx");
  t.location += " connect_timeout=7 application_name=site-ledger";
  std::unique_ptr<Ledger> l;
  ASSERT_TRUE(OpenLedger(t, &l).ok());
  // Fails (division by zero) unless the ledger's session carries the admin's name.
  EXPECT_EQ(pg.Psql(DbName(t), "SELECT 1 / (SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = "
                               "'site-ledger')::int"),
            0);
}

// Two relays, one delivery, both rounds in flight: exactly one EXPORTED row; the other
// relay's round fails kAlreadyExists with nothing recorded, and its re-planned round (the
// copy as DUP) commits. Relay b's insert waits on a's uncommitted row, then sees it.
TEST_F(SharedLedger, TwoRelaysRacingOnOneDeliveryExportItOnce) {
  std::unique_ptr<Ledger> a, b;
  ASSERT_TRUE(Open(&a, "a").ok());
  ASSERT_TRUE(Open(&b, "b").ok());
  ASSERT_TRUE(a->BumpEpoch(nullptr).ok());
  ASSERT_TRUE(b->BumpEpoch(nullptr).ok());
  const ContentKey k = ContentKeyOfMessage("<alice@example.com>", kMsg);
  // Both looked it up before either committed: not exported yet.
  bool f = true;
  ASSERT_TRUE(a->IsExported(k, "bob at PO1", &f).ok());
  EXPECT_FALSE(f);
  ASSERT_TRUE(b->IsExported(k, "bob at PO1", &f).ok());
  EXPECT_FALSE(f);
  std::vector<LedgerBatch> va{MakeBatch({{k, "bob at PO1"}})};
  std::vector<LedgerBatch> vb{MakeBatch({{k, "bob at PO1"}})};
  ASSERT_TRUE(a->StageBatches(va).ok());
  std::atomic<bool> b_done{false};
  Status b_status;
  std::thread t([&] {
    b_status = b->StageBatches(vb);
    b_done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(b_done) << "relay b did not wait for relay a's uncommitted EXPORTED row";
  ASSERT_TRUE(a->CommitStaged(&va).ok());
  t.join();
  EXPECT_EQ(b_status.code(), Status::Code::kAlreadyExists) << b_status.ToString();
  bool has = true;
  ASSERT_TRUE(b->HasBatch(1, &has).ok());
  EXPECT_FALSE(has);  // nothing of b's round stayed
  // The shared lookup now says exported, so b's re-planned round records the copy as DUP.
  ASSERT_TRUE(b->IsExported(k, "bob at PO1", &f).ok());
  EXPECT_TRUE(f);
  vb[0].deliveries[0].kind = DeliveryKind::kDup;
  ASSERT_TRUE(b->CommitBatches(&vb).ok());
  EXPECT_EQ(vb[0].seq, 1u);  // per relay: b's first batch
  LedgerCounters c;
  ASSERT_TRUE(b->Counters(&c).ok());
  EXPECT_EQ(c.exported, 1u);  // shared totals
  EXPECT_EQ(c.dups, 1u);
  EXPECT_EQ(c.batches, 1u);   // b's own
  std::vector<RelayCounters> relays;
  ASSERT_TRUE(a->Relays(&relays).ok());
  ASSERT_EQ(relays.size(), 2u);
  EXPECT_EQ(relays[0].relay_id, "a");
  EXPECT_EQ(relays[0].exported, 1u);
  EXPECT_EQ(relays[1].relay_id, "b");
  EXPECT_EQ(relays[1].dups, 1u);
  EXPECT_GT(relays[1].last_commit_ms, 0);
}

// Two exporters started with one relay id: the newer one's BumpEpoch waits for the older
// one's round in flight, then the older one is fenced out (kBusy) and the newer one commits.
TEST_F(SharedLedger, SameRelayIdFencesTheOlderExporter) {
  std::unique_ptr<Ledger> older, newer;
  ASSERT_TRUE(Open(&older, "mx").ok());
  ASSERT_TRUE(older->BumpEpoch(nullptr).ok());
  const ContentKey k1 = ContentKeyOfMessage("a", kMsg), k2 = ContentKeyOfMessage("b", kMsg);
  std::vector<LedgerBatch> v1{MakeBatch({{k1, "x"}})};
  ASSERT_TRUE(older->StageBatches(v1).ok());
  ASSERT_TRUE(Open(&newer, "mx").ok());
  std::atomic<bool> bumped{false};
  std::thread t([&] {
    EXPECT_TRUE(newer->BumpEpoch(nullptr).ok());
    bumped = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(bumped) << "the epoch bump did not wait for the round holding the relay row";
  ASSERT_TRUE(older->CommitStaged(&v1).ok());  // its round was fenced in time: it counts
  t.join();
  std::vector<LedgerBatch> v2{MakeBatch({{k2, "x"}})};
  Status s = older->CommitBatches(&v2);
  EXPECT_EQ(s.code(), Status::Code::kBusy) << s.ToString();
  ASSERT_TRUE(newer->CommitBatches(&v2).ok());
  EXPECT_EQ(v2[0].seq, 2u);
  EXPECT_EQ(v2[0].epoch, 2u);
}

// The postmaster dies while the round's COMMIT is in flight: the outcome is unknown, the
// call says so (kUnavailable, never Ok or a guess), and after the restart the database
// answers: the batch is there or not, and the relay goes on from that answer.
TEST_F(SharedLedger, CommitInterruptedByPostmasterKillIsResolvedFromTheDatabase) {
  LedgerPgCluster& pg = LedgerPgCluster::Get();
  const std::string db = target_.location.substr(target_.location.find("dbname=") + 7,
                                                 target_.location.find(' ', target_.location.find("dbname=")) -
                                                     target_.location.find("dbname=") - 7);
  std::unique_ptr<Ledger> l;
  ASSERT_TRUE(Open(&l, "mx").ok());
  ASSERT_TRUE(l->BumpEpoch(nullptr).ok());
  // Make COMMIT take a while (a deferred trigger runs inside it), so the kill lands during it.
  ASSERT_EQ(pg.Psql(db, "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS "
                        "\\$\\$ BEGIN PERFORM pg_sleep(2); RETURN NULL; END \\$\\$; "
                        "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON batches "
                        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow()"),
            0);
  const ContentKey k = ContentKeyOfMessage("a", kMsg);
  std::vector<LedgerBatch> v{MakeBatch({{k, "bob at PO1"}})};
  ASSERT_TRUE(l->StageBatches(v).ok());
  std::thread killer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    EXPECT_EQ(pg.Kill(), 0);
  });
  Status s = l->CommitStaged(&v);
  killer.join();
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("outcome unknown"), std::string::npos) << s.ToString();
  // While the server is down every call says unavailable.
  bool has = true;
  EXPECT_EQ(l->HasBatch(1, &has).code(), Status::Code::kUnavailable);
  ASSERT_EQ(pg.Restart(), 0);
  ASSERT_EQ(pg.Psql(db, "DROP TRIGGER slow_commit ON batches"), 0);
  // Resolved from the database on reconnect: the COMMIT never completed, nothing is there.
  ASSERT_TRUE(l->HasBatch(1, &has).ok());
  EXPECT_FALSE(has);
  bool exported = true;
  ASSERT_TRUE(l->IsExported(k, "bob at PO1", &exported).ok());
  EXPECT_FALSE(exported);
  // The round is redone with the same seq (its .part name) and counts once.
  v[0].seq = 1;
  ASSERT_TRUE(l->CommitBatches(&v).ok());
  ASSERT_TRUE(l->IsExported(k, "bob at PO1", &exported).ok());
  EXPECT_TRUE(exported);
  LedgerCounters c;
  ASSERT_TRUE(l->Counters(&c).ok());
  EXPECT_EQ(c.exported, 1u);
  EXPECT_EQ(c.last_seq, 1u);
}

// Runs call and returns how long it took. A call still blocked after give_up is a failure;
// rescue() then unblocks it (releases what it waits on) so the test ends instead of hanging.
template <typename Call, typename Rescue>
std::chrono::milliseconds TimeCall(Call call, std::chrono::seconds give_up, Rescue rescue) {
  const auto t0 = std::chrono::steady_clock::now();
  std::future<void> done = std::async(std::launch::async, call);
  if (done.wait_for(give_up) != std::future_status::ready) {
    ADD_FAILURE() << "the ledger call was still blocked after " << give_up.count() << " s";
    rescue();
  }
  done.get();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
}

// SIGCONT of the cluster whatever happens in the test (the other tests share it).
class ThawAtExit {
 public:
  explicit ThawAtExit(LedgerPgCluster& pg) : pg_(pg) {}
  ~ThawAtExit() { pg_.Thaw(); }

 private:
  LedgerPgCluster& pg_;
};

// Another session holds a lock the round needs (here the whole relays table, as a DBA's
// maintenance might): the round does not wait for it for ever. The server cancels the wait
// after ledger_timeout and the round fails kUnavailable (the exporter retries it after its
// back-off; kBusy would mean "fenced" and stop it); once the lock is gone the round commits.
TEST_F(SharedLedger, RoundBlockedByAnotherSessionsLockIsUnavailableWithinTheTimeout) {
  LedgerPgCluster& pg = LedgerPgCluster::Get();
  LedgerTarget t = Target("mx");
  t.timeout_ms = 1000;
  std::unique_ptr<Ledger> l;
  ASSERT_TRUE(OpenLedger(t, &l).ok());
  ASSERT_TRUE(l->BumpEpoch(nullptr).ok());
  const std::string db = DbName(t);
  std::thread holder(
      [&] { EXPECT_EQ(pg.Psql(db, "BEGIN; LOCK TABLE relays IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(5); COMMIT"), 0); });
  bool locked = false;
  for (int i = 0; i < 100 && !locked; ++i) {
    // Fails (division by zero) until the holder's lock is granted.
    locked = pg.Psql(db, "SELECT 1 / (SELECT COUNT(*) FROM pg_locks WHERE relation = 'relays'::regclass "
                         "AND mode = 'AccessExclusiveLock' AND granted)::int") == 0;
    if (!locked) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(locked) << "the holder never got its lock";
  const ContentKey k = ContentKeyOfMessage("a", kMsg);
  std::vector<LedgerBatch> v{MakeBatch({{k, "bob at PO1"}})};
  Status s;
  const auto took = TimeCall([&] { s = l->CommitBatches(&v); }, std::chrono::seconds(15), [] {});
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
  EXPECT_LT(took, std::chrono::milliseconds(3500)) << s.ToString();
  holder.join();
  v = {MakeBatch({{k, "bob at PO1"}})};
  ASSERT_TRUE(l->CommitBatches(&v).ok());
  EXPECT_EQ(v[0].seq, 1u);
}

// The server stops answering altogether (postmaster and backends SIGSTOPped: the connection
// is accepted, nothing comes back, statement_timeout cannot fire). A COMMIT in flight is
// given up after twice ledger_timeout with its outcome unknown (never guessed), every call
// meanwhile fails kUnavailable within the bound, and after SIGCONT the ledger reconnects and
// goes on from what the database says.
TEST_F(SharedLedger, StoppedServerIsUnavailableWithinTheTimeoutAndReconnectedAfter) {
  LedgerPgCluster& pg = LedgerPgCluster::Get();
  LedgerTarget t = Target("mx");
  t.timeout_ms = 1000;
  std::unique_ptr<Ledger> l;
  ASSERT_TRUE(OpenLedger(t, &l).ok());
  ASSERT_TRUE(l->BumpEpoch(nullptr).ok());
  const ContentKey k = ContentKeyOfMessage("a", kMsg), k2 = ContentKeyOfMessage("b", kMsg);
  std::vector<LedgerBatch> v{MakeBatch({{k, "bob at PO1"}})};
  ASSERT_TRUE(l->StageBatches(v).ok());
  ThawAtExit thaw(pg);
  ASSERT_EQ(pg.Freeze(), 0);
  Status s;
  // Answer wait (2 s) plus the reconnect's connect_timeout (2 s, libpq's minimum).
  auto took = TimeCall([&] { s = l->CommitStaged(&v); }, std::chrono::seconds(20), [&] { pg.Thaw(); });
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("outcome unknown"), std::string::npos) << s.ToString();
  EXPECT_LT(took, std::chrono::milliseconds(7000)) << s.ToString();
  bool has = false;
  took = TimeCall([&] { s = l->HasBatch(1, &has); }, std::chrono::seconds(20), [&] { pg.Thaw(); });
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
  EXPECT_LT(took, std::chrono::milliseconds(5000)) << s.ToString();
  ASSERT_EQ(pg.Thaw(), 0);
  // Reconnected. The stopped backend may still have run the COMMIT it had received: the next
  // round waits for that transaction (relay row lock) and takes the seq after it.
  std::vector<LedgerBatch> next{MakeBatch({{k2, "bob at PO1"}})};
  ASSERT_TRUE(l->CommitBatches(&next).ok());
  bool first_landed = false;
  ASSERT_TRUE(l->IsExported(k, "bob at PO1", &first_landed).ok());
  EXPECT_EQ(next[0].seq, first_landed ? 2u : 1u);
  LedgerCounters c;
  ASSERT_TRUE(l->Counters(&c).ok());
  EXPECT_EQ(c.exported, first_landed ? 2u : 1u);
  EXPECT_EQ(c.last_seq, next[0].seq);
}

// The server stops while a COMMIT is in flight and comes back, all but the backend of that
// COMMIT (its transaction, holding the relay's row, may still commit). The ledger answers
// nothing until that transaction has ended: a plain read would say "not recorded", and the
// exporter would drop the .part files of a round that is then recorded.
TEST_F(SharedLedger, LostCommitStillInFlightIsWaitedForBeforeAnyAnswer) {
  LedgerPgCluster& pg = LedgerPgCluster::Get();
  LedgerTarget t = Target("mx");
  t.timeout_ms = 1000;
  std::unique_ptr<Ledger> l;
  ASSERT_TRUE(OpenLedger(t, &l).ok());
  ASSERT_TRUE(l->BumpEpoch(nullptr).ok());
  CaptureId id;
  std::vector<LedgerBatch> v{MakeBatch({{ContentKeyOfMessage("a", kMsg), "bob at PO1"}}, &id)};
  ASSERT_TRUE(l->StageBatches(v).ok());
  const std::string old_backend = pg.PsqlValue(
      DbName(t), "SELECT pid FROM pg_stat_activity WHERE application_name = 'ccmail-bridge/mx' AND state = 'idle in transaction'");
  ASSERT_FALSE(old_backend.empty());
  ThawAtExit thaw(pg);
  ASSERT_EQ(pg.Freeze(), 0);
  Status s;
  TimeCall([&] { s = l->CommitStaged(&v); }, std::chrono::seconds(20), [&] { pg.Thaw(); });
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("outcome unknown"), std::string::npos) << s.ToString();
  ASSERT_EQ(pg.Thaw(old_backend), 0);
  bool recorded = false;
  s = l->HasCapture(id, &recorded);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << "answered " << recorded << " while the commit may still land";
  EXPECT_NE(s.message().find("still unknown"), std::string::npos) << s.ToString();
  ASSERT_EQ(pg.Thaw(), 0);
  // The old transaction ends (committed, or ended by idle_in_transaction_session_timeout):
  // from now on the answers agree with each other.
  for (int i = 0; i < 20 && !(s = l->HasCapture(id, &recorded)).ok(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  ASSERT_TRUE(s.ok()) << s.ToString();
  bool has = false;
  ASSERT_TRUE(l->HasBatch(1, &has).ok());
  EXPECT_EQ(has, recorded);
}

// ccmailctl's view: read-only, every relay, no writes.
TEST_F(SharedLedger, ReadOnlySeesEveryRelayAndNeverWrites) {
  std::unique_ptr<Ledger> l, ro;
  ASSERT_TRUE(Open(&l, "a").ok());
  ASSERT_TRUE(l->BumpEpoch(nullptr).ok());
  const ContentKey k = ContentKeyOfMessage("a", kMsg);
  CaptureId id;
  std::vector<LedgerBatch> v{MakeBatch({{k, "bob at PO1"}}, &id)};
  ASSERT_TRUE(l->CommitBatches(&v).ok());
  LedgerTarget t = Target();
  t.relay_id.clear();
  ASSERT_TRUE(OpenLedgerReadOnly(t, &ro).ok());
  std::vector<RelayCounters> relays;
  ASSERT_TRUE(ro->Relays(&relays).ok());
  ASSERT_EQ(relays.size(), 1u);
  EXPECT_EQ(relays[0].relay_id, "a");
  uint64_t seq = 0;
  std::string po, name;
  ASSERT_TRUE(ro->FindCapture(id, &seq, &po, &name).ok());
  EXPECT_EQ(po, "PO1");
  EXPECT_TRUE(ro->QuickCheck().ok());
  EXPECT_EQ(ro->BumpEpoch(nullptr).code(), Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace ccmail::store
