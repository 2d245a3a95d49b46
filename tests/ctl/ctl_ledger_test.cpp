// ccmailctl and the ledger's backend: status and verify name the backend (sqlite or
// postgresql) and its location, never with a password, and list every relay of a shared
// PostgreSQL ledger (that part runs when the PostgreSQL server binaries are installed and the
// test runs as root: tests/testing/pg_cluster.sh starts a private cluster on a Unix socket).
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <regex>

#include <gtest/gtest.h>

#include "ccmail/ctl/ledger_location.h"
#include "ctl_test_util.h"
#include "json_check.h"

namespace ccmail::ctl::test {
namespace {

const store::SpoolRecipient kJohn{"jsmith@corp.example", "Smith, John", "HUBPO2"};

Json ParseOrFail(const std::string& text) {
  Json j;
  std::string error;
  EXPECT_TRUE(JsonParser::Parse(text, &j, &error)) << error << "\n" << text;
  return j;
}

// A "key   value" line of the text output (any indentation and padding).
bool HasLine(const std::string& text, const std::string& key, const std::string& value) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    size_t k = l.find_first_not_of(' ');
    if (k == std::string::npos || l.compare(k, key.size(), key) != 0) continue;
    size_t v = l.find_first_not_of(' ', k + key.size());
    if (v == k + key.size() || v == std::string::npos) continue;
    if (l.compare(v, std::string::npos, value) == 0) return true;
  }
  return false;
}

// ---------------------------------------------------------------- SQLite

TEST(CtlLedger, StatusAndVerifyNameTheSqliteBackend) {
  BridgeDir b;
  store::CaptureId one = b.Capture("carol@example.com", {kJohn}, 1000);
  b.Export({one}, "HUBPO2");
  b.CloseLedger();
  const std::string path = b.paths().ledger_path;

  RunResult r = b.Run({"status"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(HasLine(r.out, "ledger", "sqlite " + path)) << r.out;
  EXPECT_FALSE(Contains(r.out, "relay id")) << r.out;
  EXPECT_FALSE(Contains(r.out, "last commit")) << "no relays table for the one relay of SQLite:\n" << r.out;

  r = b.Run({"--json", "status"});
  ASSERT_EQ(r.rc, 0) << r.err;
  Json j = ParseOrFail(r.out);
  EXPECT_EQ(j.Str("ledger.backend"), "sqlite");
  EXPECT_EQ(j.Str("ledger.location"), path);
  EXPECT_EQ(j.Str("ledger.path"), path);
  EXPECT_EQ(j.Str("ledger.relay_id"), "");
  ASSERT_EQ(j.Size("ledger.relays"), 1u);
  EXPECT_EQ(j.Str("ledger.relays.0.relay_id"), "");
  EXPECT_EQ(j.Int("ledger.relays.0.exported"), 1);
  EXPECT_EQ(j.Int("ledger.relays.0.last_seq"), 1);

  r = b.Run({"verify"});
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_TRUE(Contains(r.out, "ledger: ok (quick_check), sqlite " + path + ", epoch 1, last batch seq 1")) << r.out;
  r = b.Run({"--json", "verify"});
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  j = ParseOrFail(r.out);
  EXPECT_EQ(j.Str("backend"), "sqlite");
  EXPECT_EQ(j.Str("ledger"), path);
  EXPECT_EQ(j.Size("relays"), 1u);
}

TEST(CtlLedger, MissingLedgerStillNamesItsBackend) {
  BridgeDir b;
  RunResult r = b.Run({"status"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(HasLine(r.out, "ledger", "none yet (sqlite " + b.paths().ledger_path + ")")) << r.out;
  r = b.Run({"--json", "status"});
  Json j = ParseOrFail(r.out);
  EXPECT_EQ(j.Str("ledger.state"), "missing");
  EXPECT_EQ(j.Str("ledger.backend"), "sqlite");
  EXPECT_EQ(j.Size("ledger.relays"), 0u);
}

TEST(MaskLedgerLocation, SqlitePathsAreShownAsTheyAre) {
  EXPECT_EQ(MaskLedgerLocation("/var/spool/ccmail-bridge/ledger.db"), "/var/spool/ccmail-bridge/ledger.db");
  EXPECT_EQ(MaskLedgerLocation("/srv/a=b/ledger.db"), "/srv/a=b/ledger.db");
  EXPECT_EQ(MaskLedgerLocation(""), "");
}

TEST(MaskLedgerLocation, UriPasswordInUserInfoAndQuery) {
  EXPECT_EQ(MaskLedgerLocation("postgresql://ccmail:s3cret@db1.corp.example:5432/ccmail"),
            "postgresql://ccmail:***@db1.corp.example:5432/ccmail");
  EXPECT_EQ(MaskLedgerLocation("postgres://ccmail@db1/ccmail?sslmode=require&password=s3cret&connect_timeout=5"),
            "postgres://ccmail@db1/ccmail?sslmode=require&password=***&connect_timeout=5");
  EXPECT_EQ(MaskLedgerLocation("POSTGRESQL://u:p%40ss@h1,h2/db?PASSWORD=x"), "POSTGRESQL://u:***@h1,h2/db?PASSWORD=***");
  // An '@' in the password itself: the last '@' of the authority ends the user info.
  EXPECT_EQ(MaskLedgerLocation("postgresql://u:a@b@db1/ccmail"), "postgresql://u:***@db1/ccmail");
  // No password anywhere: unchanged.
  EXPECT_EQ(MaskLedgerLocation("postgresql://ccmail@db1/ccmail?target_session_attrs=read-write"),
            "postgresql://ccmail@db1/ccmail?target_session_attrs=read-write");
  EXPECT_EQ(MaskLedgerLocation("postgresql:///ccmail?host=/run/postgresql"), "postgresql:///ccmail?host=/run/postgresql");
}

TEST(MaskLedgerLocation, KeywordPasswordPlainQuotedAndEscaped) {
  EXPECT_EQ(MaskLedgerLocation("host=db1 dbname=ccmail user=ccmail password=s3cret"),
            "host=db1 dbname=ccmail user=ccmail password=***");
  EXPECT_EQ(MaskLedgerLocation("host=db1 password = 'it\\'s a secret' dbname=ccmail"),
            "host=db1 password = *** dbname=ccmail");
  EXPECT_EQ(MaskLedgerLocation("password=a\\ b host=db1"), "password=*** host=db1");
  EXPECT_EQ(MaskLedgerLocation("PassWord=x"), "PassWord=***");
  // A key that only ends in "password" is not the password (and the socket path stays).
  EXPECT_EQ(MaskLedgerLocation("host=/tmp/x/sock port=5432 dbname=ccmail user=ccmail"),
            "host=/tmp/x/sock port=5432 dbname=ccmail user=ccmail");
  EXPECT_EQ(MaskLedgerLocation("host=db1 passfile=/etc/pgpass"), "host=db1 passfile=/etc/pgpass");
  // An unterminated quote hides everything after password=.
  EXPECT_EQ(MaskLedgerLocation("host=db1 password='abc def"), "host=db1 password=***");
}

// ---------------------------------------------------------------- PostgreSQL

// A private cluster for one test (tests/testing/pg_cluster.sh), stopped at the end.
class PgCluster {
 public:
  PgCluster() {
    if (::geteuid() != 0) { skip_ = "needs root (the cluster runs as the postgres user)"; return; }
    if (::system("ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1") != 0) {
      skip_ = "no PostgreSQL server binaries (postgresql-15)";
      return;
    }
    ::chmod(dir_.c_str(), 0755);
    std::string cmd = "bash " CCMAIL_SOURCE_DIR "/tests/testing/pg_cluster.sh start " + dir_ + "/pg";
    FILE* f = ::popen(cmd.c_str(), "r");
    char buf[512] = {0};
    if (f && ::fgets(buf, sizeof buf, f)) conninfo_ = buf;
    int rc = f ? ::pclose(f) : -1;
    while (!conninfo_.empty() && conninfo_.back() == '\n') conninfo_.pop_back();
    started_ = rc == 0 && !conninfo_.empty();
  }
  ~PgCluster() {
    if (started_) (void)::system(("bash " CCMAIL_SOURCE_DIR "/tests/testing/pg_cluster.sh stop " + dir_ + "/pg").c_str());
  }
  const std::string& skip() const { return skip_; }
  bool started() const { return started_; }
  const std::string& conninfo() const { return conninfo_; }
  std::string password_file() const { return dir_ + "/pg/password"; }

 private:
  ::ccmail::test::TempDir temp_{"ccmail-ctl-pg"};
  std::string dir_ = temp_.path();
  std::string skip_, conninfo_;
  bool started_ = false;
};

store::LedgerTarget PgTarget(const PgCluster& pg, const std::string& relay) {
  store::LedgerTarget t;
  t.location = pg.conninfo();
  t.password_file = pg.password_file();
  t.relay_id = relay;
  return t;
}

// One round of relay `relay`: the delivery (key, recipient), exported or a duplicate.
void CommitOne(store::Ledger* l, const store::ContentKey& key, store::DeliveryKind kind) {
  store::LedgerBatch b;
  b.post_office = "HUBPO2";
  b.file_name = "B" + l->relay_id() + ".CCM";
  store::CaptureId id = store::CaptureId::New();
  b.capture_ids.push_back(id);
  b.deliveries.push_back({id, key, "Smith, John at HUBPO2", kind});
  std::vector<store::LedgerBatch> batches{b};
  Status s = l->CommitBatches(&batches);
  ASSERT_TRUE(s.ok()) << s.ToString();
}

TEST(CtlLedger, PostgresStatusAndVerifyListEveryRelay) {
  PgCluster pg;
  if (!pg.skip().empty()) GTEST_SKIP() << pg.skip();
  ASSERT_TRUE(pg.started()) << "pg_cluster.sh start failed";
  store::ContentKey key;
  key.bytes[0] = 0x19;
  for (const char* relay : {"mx1", "mx2"}) {
    std::unique_ptr<store::Ledger> l;
    Status s = store::OpenLedger(PgTarget(pg, relay), &l);
    ASSERT_TRUE(s.ok()) << s.ToString();
    uint64_t epoch = 0;
    ASSERT_TRUE(l->BumpEpoch(&epoch).ok());
    // mx1 exports the delivery, mx2 gets the client's retry of it: a duplicate.
    CommitOne(l.get(), key, std::string(relay) == "mx1" ? store::DeliveryKind::kExported : store::DeliveryKind::kDup);
  }

  BridgeDir b;
  std::ofstream(b.config_path(), std::ios::app) << "ledger = " << pg.conninfo() << "\n"
                                                << "ledger_password_file = " << pg.password_file() << "\n"
                                                << "relay_id = mx2\n";
  RunResult r = b.Run({"status"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(HasLine(r.out, "ledger", "postgresql " + pg.conninfo())) << r.out;
  EXPECT_TRUE(HasLine(r.out, "relay id", "mx2")) << r.out;
  EXPECT_TRUE(HasLine(r.out, "exported", "1")) << "the site's total:\n" << r.out;
  EXPECT_TRUE(HasLine(r.out, "duplicates", "1")) << r.out;
  EXPECT_TRUE(Contains(r.out, "last commit")) << r.out;
  // relay, epoch, last seq, batches, exported, duplicates, last commit
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\\bmx1 +1 +1 +1 +1 +0 +[0-9]"))) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\\bmx2 \\(this\\) +1 +1 +1 +0 +1 +[0-9]"))) << r.out;
  // The password itself appears nowhere.
  std::ifstream pwf(pg.password_file());
  std::string password;
  std::getline(pwf, password);
  ASSERT_FALSE(password.empty());
  EXPECT_FALSE(Contains(r.out, password));

  r = b.Run({"--json", "status"});
  ASSERT_EQ(r.rc, 0) << r.err;
  Json j = ParseOrFail(r.out);
  EXPECT_EQ(j.Str("ledger.state"), "ok") << j.Str("ledger.error");
  EXPECT_EQ(j.Str("ledger.backend"), "postgresql");
  EXPECT_EQ(j.Str("ledger.relay_id"), "mx2");
  ASSERT_EQ(j.Size("ledger.relays"), 2u);
  std::map<std::string, std::pair<int64_t, int64_t>> rows;  // relay -> (exported, duplicates)
  for (size_t i = 0; i < 2; ++i) {
    std::string at = "ledger.relays." + std::to_string(i) + ".";
    rows[j.Str(at + "relay_id")] = {j.Int(at + "exported"), j.Int(at + "duplicates")};
    EXPECT_GT(j.Int(at + "last_commit_ms"), 0);
  }
  EXPECT_EQ(rows["mx1"], std::make_pair(int64_t{1}, int64_t{0}));
  EXPECT_EQ(rows["mx2"], std::make_pair(int64_t{0}, int64_t{1}));

  r = b.Run({"verify"});
  EXPECT_TRUE(Contains(r.out + r.err, "postgresql " + pg.conninfo())) << r.out << r.err;
  EXPECT_TRUE(Contains(r.out, "mx1")) << r.out << r.err;
}

}  // namespace
}  // namespace ccmail::ctl::test
