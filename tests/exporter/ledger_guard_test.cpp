// The ledger cannot be silently lost or rolled back: a missing, emptied, older or damaged
// ledger stops the exporter (exit 65, reason in `ccmailctl status`); `ccmailctl ledger
// backup` + restore + `ccmailctl ledger rebuild` is exactly once again, also with kill -9
// in the middle; a flipped byte in any page class is refused, never a duplicate.
#include "ccmail/exporter/ledger_guard.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <set>
#include <sstream>

#include "ccmail/common/unique_fd.h"
#include "ccmail/ctl/ctl.h"
#include "ccmail/exporter/singleton.h"
#include "exporter_test_util.h"

namespace ccmail::exporter {
namespace {

using namespace ccmail::exporter::testing;

const Rcpt kJane{"jane@corp.example", "Doe, Jane", "HQ"};
const Rcpt kRick{"rick@corp.example", "Roe, Rick", "HQ"};
const Rcpt kBert{"bert@branch.example", "Bo, Bert", "BRANCH"};

// Open + Recover + Drain; returns the first failure.
Status DrainAll(const ExporterOptions& o) {
  std::unique_ptr<Exporter> ex;
  CCMAIL_RETURN_IF_ERROR(Exporter::Open(o, &ex));
  CCMAIL_RETURN_IF_ERROR(ex->Recover());
  return ex->Drain();
}

// Open+Recover+Drain in a child killed (SIGKILL) at crash_at; returns the wait status.
int DrainInChild(const ExporterOptions& o, const std::string& crash_at) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("CCMAIL_CRASH_AT", crash_at.c_str(), 1);
    store::ReloadFaultSpecFromEnv();
    ::_exit(DrainAll(o).ok() ? 0 : 3);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  return st;
}

struct Ctl {
  int rc = -1;
  std::string out, err;
};
Ctl RunCtl(const std::string& conf, std::vector<std::string> args) {
  args.insert(args.begin(), {"ccmailctl", "-c", conf});
  std::ostringstream out, err;
  Ctl r;
  r.rc = ctl::RunCtl(args, out, err, ctl::CtlEnvironment{});
  r.out = out.str();
  r.err = err.str();
  return r;
}

void RemoveLedger(const BridgePaths& p) {
  for (const char* suffix : {"", "-wal", "-shm"}) ::unlink((p.ledger_path + suffix).c_str());
}
void RestoreLedger(const BridgePaths& p, const std::string& backup) {
  RemoveLedger(p);
  fs::copy_file(backup, p.ledger_path);
}

// (content key, post office, recipient) -> how many times it is in the outbox.
std::map<std::string, int> Exported(const BridgePaths& p) {
  std::map<std::string, int> n;
  for (const auto& s : ReadOutbox(p.outbox_directory)) ++n[s.content_key + " " + s.post_office + " " + s.recipient];
  return n;
}
void ExpectEachOnce(const BridgePaths& p, size_t deliveries) {
  auto n = Exported(p);
  EXPECT_EQ(n.size(), deliveries);
  for (const auto& [k, c] : n) EXPECT_EQ(c, 1) << k << " exported " << c << " times";
}

// Every file in the outbox with its content: a published batch is never replaced.
std::map<std::string, std::string> OutboxFiles(const BridgePaths& p) {
  std::map<std::string, std::string> f;
  for (const auto& e : fs::recursive_directory_iterator(p.outbox_directory))
    if (e.is_regular_file() && e.path().filename() != "WATERMRK") f[e.path().string()] = Slurp(e.path());
  return f;
}
void ExpectNothingReplaced(const std::map<std::string, std::string>& before, const BridgePaths& p) {
  auto now = OutboxFiles(p);
  for (const auto& [path, text] : before) {
    ASSERT_TRUE(now.count(path)) << path << " disappeared";
    EXPECT_EQ(now[path], text) << path << " was overwritten";
  }
}

TEST(LedgerGuard, FreshInstallStartsAndAnEmptyOutboxNeedsNoLedger) {
  Bed bed;
  bed.Capture(1, {kJane});
  Status s = DrainAll(bed.Options());
  ASSERT_TRUE(s.ok()) << s.ToString();
  ExpectEachOnce(bed.paths, 1);
  EXPECT_FALSE(fs::exists(LedgerRefusalPath(bed.paths)));
  // A ledger removed before anything was ever published: nothing to contradict.
  Bed fresh;
  fs::create_directories(fresh.paths.outbox_directory + "/HQ");
  RemoveLedger(fresh.paths);
  s = DrainAll(fresh.Options());
  EXPECT_TRUE(s.ok()) << s.ToString();
}

// Moving ledger.db away or zeroing it used to start epoch 1 over: same batch names, new
// content, and a re-sent message exported again.
TEST(LedgerGuard, MissingOrZeroedLedgerIsRefusedAndNotCreated) {
  for (bool zero : {false, true}) {
    SCOPED_TRACE(zero ? "zeroed" : "missing");
    Bed bed;
    bed.Capture(1, {kJane, kBert});
    bed.Capture(2, {kRick});
    ASSERT_TRUE(DrainAll(bed.Options()).ok());
    auto before = OutboxFiles(bed.paths);
    RemoveLedger(bed.paths);
    if (zero) Spit(bed.paths.ledger_path, "");
    bed.Capture(1, {kJane, kBert});  // the SMTP retry of message 1
    std::unique_ptr<Exporter> ex;
    Status s = Exporter::Open(bed.Options(), &ex);
    ASSERT_TRUE(IsLedgerRefusal(s)) << s.ToString();
    EXPECT_NE(s.message().find(zero ? "is empty" : "is missing"), std::string::npos) << s.message();
    EXPECT_EQ(fs::exists(bed.paths.ledger_path), zero);
    if (zero) {
      EXPECT_EQ(fs::file_size(bed.paths.ledger_path), 0u);
    }
    std::string why;
    ASSERT_TRUE(ReadLedgerRefusal(bed.paths, &why).ok());
    EXPECT_NE(why.find("ledger refused"), std::string::npos);
    // ccmailctl status says why; verify fails.
    const std::string conf = bed.WriteConfig();
    Ctl st = RunCtl(conf, {"status"});
    EXPECT_NE(st.out.find("stopped because"), std::string::npos) << st.out;
    EXPECT_NE(st.out.find("ledger refused"), std::string::npos) << st.out;
    EXPECT_EQ(RunCtl(conf, {"verify"}).rc, 1);
    // Rebuilt from the manifests: the retry is a duplicate, no name is reused.
    if (zero) RemoveLedger(bed.paths);
    Ctl rb = RunCtl(conf, {"ledger", "rebuild"});
    ASSERT_EQ(rb.rc, 0) << rb.err;
    EXPECT_NE(rb.out.find("3 exported deliverie(s) added"), std::string::npos) << rb.out;
    Ctl v = RunCtl(conf, {"verify"});
    EXPECT_EQ(v.rc, 0) << v.err;
    s = DrainAll(bed.Options());
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_FALSE(fs::exists(LedgerRefusalPath(bed.paths)));
    ExpectEachOnce(bed.paths, 3);
    ExpectNothingReplaced(before, bed.paths);
    ExpectQuiescent(bed.paths);
  }
}

// The documented restore procedure: `ledger backup`, later an older copy restored; the
// exporter refuses it until `ledger rebuild`, then a re-send of everything is exported
// once, and new batches get names above every published one.
TEST(LedgerGuard, RestoredOlderBackupIsRefusedUntilRebuiltThenExactlyOnce) {
  Bed bed;
  const std::string conf = bed.WriteConfig();
  bed.Capture(1, {kJane});
  ASSERT_TRUE(DrainAll(bed.Options()).ok());
  const std::string backup = bed.dir + "/ledger-backup.db";
  Ctl b = RunCtl(conf, {"ledger", "backup", backup});
  ASSERT_EQ(b.rc, 0) << b.err;
  EXPECT_NE(RunCtl(conf, {"ledger", "backup", backup}).rc, 0) << "a backup never overwrites";
  {
    std::unique_ptr<store::Ledger> l;
    ASSERT_TRUE(store::Ledger::Open(backup, &l).ok());
    EXPECT_TRUE(l->QuickCheck().ok());
  }
  bed.Capture(2, {kRick, kBert});
  bed.Capture(3, {kJane});
  ASSERT_TRUE(DrainAll(bed.Options()).ok());
  auto before = OutboxFiles(bed.paths);
  RestoreLedger(bed.paths, backup);
  for (uint64_t k : {1, 2, 3}) bed.Capture(k, {kJane, kRick, kBert});  // every message re-sent
  std::unique_ptr<Exporter> ex;
  Status s = Exporter::Open(bed.Options(), &ex);
  ASSERT_TRUE(IsLedgerRefusal(s)) << s.ToString();
  EXPECT_NE(s.message().find("older than the outbox"), std::string::npos) << s.message();
  Ctl v = RunCtl(conf, {"verify"});
  EXPECT_EQ(v.rc, 1);
  EXPECT_NE(v.err.find("older than the outbox"), std::string::npos) << v.err;
  Ctl rb = RunCtl(conf, {"ledger", "rebuild"});
  ASSERT_EQ(rb.rc, 0) << rb.err;
  s = DrainAll(bed.Options());
  ASSERT_TRUE(s.ok()) << s.ToString();
  // 1: Jane; 2: Rick, Bert; 3: Jane; the re-sends add Rick and Bert to 1 and 3, Jane to 2.
  ExpectEachOnce(bed.paths, 9);
  ExpectNothingReplaced(before, bed.paths);
  ExpectQuiescent(bed.paths);
  // A running exporter is never rebuilt under.
  UniqueFd lock;
  ASSERT_TRUE(AcquireExporterLock(bed.paths.exporter_lock, &lock).ok());
  EXPECT_EQ(RunCtl(conf, {"ledger", "rebuild"}).rc, 1);
}

// Batches the deliver_command archived (gone from the outbox) come back with --from.
TEST(LedgerGuard, RebuildReadsArchivedManifests) {
  Bed bed;
  const std::string conf = bed.WriteConfig();
  bed.Capture(1, {kJane});
  bed.Capture(2, {kBert});
  ASSERT_TRUE(DrainAll(bed.Options()).ok());
  const std::string archive = bed.dir + "/archive";
  fs::create_directories(archive);
  for (const auto& post_office : {"HQ", "BRANCH"})
    for (const auto& e : fs::directory_iterator(bed.paths.outbox_directory + "/" + post_office))
      if (e.path().filename() != "WATERMRK") fs::rename(e.path(), archive + "/" + e.path().filename().string());
  RemoveLedger(bed.paths);
  ASSERT_TRUE(IsLedgerRefusal(DrainAll(bed.Options())));  // the watermarks remain
  Ctl rb = RunCtl(conf, {"ledger", "rebuild", "--from", archive});
  ASSERT_EQ(rb.rc, 0) << rb.err;
  EXPECT_NE(rb.out.find("2 exported deliverie(s) added"), std::string::npos) << rb.out;
  bed.Capture(1, {kJane});
  bed.Capture(2, {kBert});
  ASSERT_TRUE(DrainAll(bed.Options()).ok());
  EXPECT_TRUE(ReadOutbox(bed.paths.outbox_directory).empty()) << "the re-sends were exported again";
}

// kill -9 at each exporter point with an older backup restored + rebuilt before the
// restart: every (message, recipient) is in the outbox exactly once.
TEST(LedgerGuard, KillAtEachPointThenRestoreOlderBackupAndRebuildIsExactlyOnce) {
  for (const char* point : {"batch.tmpdir.fsynced:1", "ledger.commit.after:1", "batch.renamed:1", "batch.dir.fsynced:1",
                            "watermark.fsynced:1", "spool.unlinked:1", "recovery.epoch:1"}) {
    SCOPED_TRACE(point);
    Bed bed;
    const std::string conf = bed.WriteConfig();
    bed.Capture(1, {kJane, kBert});
    ASSERT_TRUE(DrainAll(bed.Options()).ok());
    const std::string backup = bed.dir + "/backup.db";
    ASSERT_EQ(RunCtl(conf, {"ledger", "backup", backup}).rc, 0);
    bed.Capture(2, {kRick});
    bed.Capture(3, {kJane, kBert});
    if (std::string(point).rfind("recovery.", 0) == 0) {
      ASSERT_TRUE(DrainAll(bed.Options()).ok());
    }
    int st = DrainInChild(bed.Options(), point);
    ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "status " << st;
    RestoreLedger(bed.paths, backup);
    Ctl rb = RunCtl(conf, {"ledger", "rebuild"});
    ASSERT_EQ(rb.rc, 0) << rb.err;
    Status s = DrainAll(bed.Options());
    ASSERT_TRUE(s.ok()) << s.ToString();
    for (uint64_t k : {1, 2, 3}) bed.Capture(k, {kJane, kRick, kBert});
    s = DrainAll(bed.Options());
    ASSERT_TRUE(s.ok()) << s.ToString();
    ExpectEachOnce(bed.paths, 9);
    ExpectQuiescent(bed.paths);
  }
}

// ---- corruption of each page class ----

struct PageOf {
  std::string name;  // table or index (sqlite_schema for page 1)
  bool leaf = true;
};
std::map<int64_t, PageOf> PageMap(const std::string& db_path) {
  std::map<int64_t, PageOf> m;
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT name, pageno, pagetype FROM dbstat", -1, &st, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  while (st && sqlite3_step(st) == SQLITE_ROW)
    m[sqlite3_column_int64(st, 1)] = {reinterpret_cast<const char*>(sqlite3_column_text(st, 0)),
                                      std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 2))) == "leaf"};
  sqlite3_finalize(st);
  sqlite3_close(db);
  return m;
}

TEST(LedgerGuard, FlippedByteInAnyPageClassIsRefusedNeverADuplicate) {
  Bed bed;
  for (uint64_t k = 1; k <= 150; ++k) bed.Capture(k, {kJane, kRick, kBert}, false);
  Status s = DrainAll(bed.Options());  // closing the last connection checkpoints the WAL
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_FALSE(fs::exists(bed.paths.ledger_path + "-wal"));
  const std::string good = Slurp(bed.paths.ledger_path);
  const auto pages = PageMap(bed.paths.ledger_path);
  const size_t page_size = 4096;
  ASSERT_EQ(good.size() % page_size, 0u);
  auto before = OutboxFiles(bed.paths);

  // Where a damaged byte goes: inside a content key (each copy of it: the deliveries table,
  // its two indexes), inside a capture id (captures and captures_age), in the meta and
  // batches rows, the schema, and the file header.
  struct Damage {
    std::string what;
    size_t offset;
    bool must_refuse;  // false: a byte nothing de-duplicates on (it may be accepted)
  };
  std::vector<Damage> damages;
  std::set<std::string> classes;
  auto add_all = [&](const std::string& needle, size_t within, size_t max_per_class) {
    std::map<std::string, size_t> per_class;
    for (size_t at = good.find(needle); at != std::string::npos; at = good.find(needle, at + 1)) {
      const PageOf& p = pages.at(static_cast<int64_t>(at / page_size) + 1);
      std::string cls = p.name + (p.leaf ? " leaf" : " interior");
      if (per_class[cls]++ >= max_per_class) continue;
      classes.insert(cls);
      damages.push_back({cls, at + within, p.leaf && p.name != "batches"});
    }
  };
  for (uint64_t k : {3, 77, 149}) {
    store::ContentKey key = Bed::Key(k);
    add_all(std::string(reinterpret_cast<const char*>(key.bytes.data()), key.bytes.size()), 3, 2);
  }
  // Capture ids: the first capture's id, as stored (16 bytes).
  {
    std::vector<Seen> seen = ReadOutbox(bed.paths.outbox_directory);
    ASSERT_FALSE(seen.empty());
    auto id = store::CaptureId::Parse(seen.front().capture_id);
    ASSERT_TRUE(id);
    add_all(std::string(reinterpret_cast<const char*>(id->bytes.data()), 16), 9, 2);
  }
  add_all("last_seq", 2, 1);           // the meta row's key
  add_all("CREATE TABLE batches", 7, 1);  // the schema on page 1
  const std::string batch_name = ReadOutbox(bed.paths.outbox_directory).front().batch;
  add_all(batch_name, 1, 1);           // a batches row
  damages.push_back({"header: magic", 3, true});
  damages.push_back({"header: page size", 16, true});
  for (const char* need : {"deliveries leaf", "deliveries_exported leaf", "deliveries_age leaf", "captures leaf",
                           "captures_age leaf", "meta leaf", "batches leaf", "sqlite_schema leaf"})
    EXPECT_TRUE(classes.count(need)) << "no damage placed in a " << need << " page";

  const std::string conf = bed.WriteConfig();
  for (const auto& d : damages) {
    SCOPED_TRACE(d.what + " at offset " + std::to_string(d.offset));
    RemoveLedger(bed.paths);
    std::string bad = good;
    bad[d.offset] = static_cast<char>(bad[d.offset] ^ 0x10);
    Spit(bed.paths.ledger_path, bad);
    // Every message re-sent (three of them are enough to show the duplicate).
    for (uint64_t k : {3, 77, 149}) bed.Capture(k, {kJane, kRick, kBert}, false);
    std::unique_ptr<Exporter> ex;
    s = Exporter::Open(bed.Options(), &ex);
    if (s.ok()) {
      // Accepted only when the damage cannot matter: then nothing is exported twice.
      EXPECT_FALSE(d.must_refuse) << "damage accepted";
      s = ex->Recover();
      if (s.ok()) s = ex->Drain();
      ex.reset();
    } else {
      EXPECT_TRUE(IsLedgerRefusal(s)) << s.ToString();
      EXPECT_EQ(RunCtl(conf, {"verify"}).rc, 1);
    }
    ExpectEachOnce(bed.paths, 450);
    // Clean up for the next case: the sound ledger drops the re-sends as duplicates.
    RemoveLedger(bed.paths);
    Spit(bed.paths.ledger_path, good);
    s = DrainAll(bed.Options());
    ASSERT_TRUE(s.ok()) << s.ToString();
    ExpectEachOnce(bed.paths, 450);
  }
  ExpectNothingReplaced(before, bed.paths);
}

// The daemon's exit status on a refusal is 65 (RestartPreventExitStatus in the unit).
TEST(LedgerGuard, ExporterExitsWith65OnARefusedLedger) {
  Bed bed;
  bed.Capture(1, {kJane});
  ASSERT_TRUE(DrainAll(bed.Options()).ok());
  RemoveLedger(bed.paths);
  const std::string conf = bed.WriteConfig();
  const std::string cmd = std::string(CCMAIL_EXPORTER_BIN) + " -c " + conf + " --stderr --drain 2>" + bed.dir + "/err";
  int st = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), kExitLedgerRefused);
  EXPECT_NE(Slurp(bed.dir + "/err").find("ledger refused"), std::string::npos) << Slurp(bed.dir + "/err");
}

}  // namespace
}  // namespace ccmail::exporter
