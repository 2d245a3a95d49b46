// ledger_pg_cluster.h - ONE private PostgreSQL cluster per test binary for the ledger tests
// (tests/testing/pg_cluster.sh in a temporary directory, Unix socket only, stopped at exit).
//
// SYNOPSIS
//   if (!LedgerPgCluster::Available()) GTEST_SKIP() << LedgerPgCluster::kMissing;
//   LedgerPgCluster& pg = LedgerPgCluster::Get();          // started on first use
//   store::LedgerTarget t = pg.NewDatabase("r1");          // a fresh database per test
//   pg.Kill(); pg.Restart();                               // postmaster kill -9, crash recovery
//   pg.Freeze(); pg.Thaw();                                // SIGSTOP / SIGCONT of the whole server
//   pg.Thaw(pid);                                          // ... but backend pid stays stopped
//
// A test binary that skipped a PostgreSQL test because the server binaries are missing exits
// 77 at the end (ctest SKIP_RETURN_CODE), so scripts/test.sh counts it as skipped (a failure
// under CI=true) instead of passed.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "ccmail/store/ledger.h"
#include "ccmail/testing/temp_dir.h"

namespace ccmail::store::test {

class LedgerPgCluster {
 public:
  static constexpr const char* kMissing =
      "PostgreSQL server binaries missing (apt-get install postgresql-15, or scripts/install-deps.sh)";

  static bool Available() {
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator("/usr/lib/postgresql", ec);
         !ec && it != std::filesystem::directory_iterator(); ++it)
      if (std::filesystem::exists(it->path() / "bin" / "initdb")) return true;
    return false;
  }

  // Records a skip: the binary exits 77 after its tests (see the header comment).
  static void NoteSkipped() { skipped_ = true; }
  static bool Skipped() { return skipped_; }

  static LedgerPgCluster& Get() {
    static LedgerPgCluster* cluster = [] {
      auto* c = new LedgerPgCluster();
      c->Start();
      std::atexit([] { Stop(); });
      instance_ = c;
      return c;
    }();
    return *cluster;
  }

  bool started() const { return !conninfo_.empty(); }
  const std::string& dir() const { return dir_->path(); }
  std::string password_file() const { return dir() + "/password"; }

  // A new empty database owned by the bridge's role; the target for relay_id.
  LedgerTarget NewDatabase(const std::string& relay_id) {
    const std::string db = "t" + std::to_string(++databases_);
    EXPECT_EQ(Run("psql " + dir() + " -q -c 'CREATE DATABASE " + db + " OWNER ccmail' >/dev/null"), 0);
    return Target(db, relay_id);
  }
  LedgerTarget Target(const std::string& db, const std::string& relay_id) const {
    LedgerTarget t;
    t.location = "host=" + dir() + "/sock port=5432 dbname=" + db + " user=ccmail";
    t.password_file = password_file();
    t.relay_id = relay_id;
    return t;
  }
  // The current database of a target ("dbname=tN").
  int Psql(const std::string& db, const std::string& sql) {
    return Run("psql " + dir() + " -q -d " + db + " -v ON_ERROR_STOP=1 -c \"" + sql + "\" >/dev/null");
  }

  int Kill() { return Run("kill " + dir()); }
  int Restart() { return Run("start " + dir() + " >/dev/null"); }
  int Freeze() { return Run("freeze " + dir()); }
  int Thaw(const std::string& keep_stopped = "") { return Run("thaw " + dir() + " " + keep_stopped); }
  // The first value psql prints for sql ("" on failure).
  std::string PsqlValue(const std::string& db, const std::string& sql) {
    std::FILE* p = ::popen(("bash " + Script() + " psql " + dir() + " -At -d " + db + " -c \"" + sql + "\"").c_str(), "r");
    if (!p) return "";
    char line[256] = "";
    if (!std::fgets(line, sizeof line, p)) line[0] = 0;
    ::pclose(p);
    std::string v = line;
    while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.pop_back();
    return v;
  }

 private:
  LedgerPgCluster() : dir_(std::make_unique<ccmail::test::TempDir>("ccmail-pg")) {}

  static std::string Script() {
    const char* src = std::getenv("CCMAIL_SOURCE_DIR");
    return std::string(src ? src : ".") + "/tests/testing/pg_cluster.sh";
  }
  static int Run(const std::string& args) {
    const int rc = std::system(("bash " + Script() + " " + args).c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
  }
  void Start() {
    std::FILE* p = ::popen(("bash " + Script() + " start " + dir()).c_str(), "r");
    if (!p) return;
    char line[1024];
    if (std::fgets(line, sizeof line, p)) conninfo_ = line;
    if (::pclose(p) != 0) conninfo_.clear();
    // A binary killed by the ctest time-out runs no atexit: a watcher stops the cluster and
    // removes its directory once this process is gone.
    // setsid: a time-out that kills this process group does not take the watcher with it.
    std::system(("setsid -f bash -c 'while kill -0 " + std::to_string(::getpid()) + " 2>/dev/null; do sleep 1; done; bash " +
                 Script() + " stop " + dir() + "; rm -rf " + dir() + "' >/dev/null 2>&1 </dev/null")
                    .c_str());
  }
  static void Stop() {
    if (instance_ && instance_->started()) Run("stop " + instance_->dir());
    delete instance_;
    instance_ = nullptr;
  }

  std::unique_ptr<ccmail::test::TempDir> dir_;
  std::string conninfo_;
  int databases_ = 0;
  static inline LedgerPgCluster* instance_ = nullptr;
  static inline bool skipped_ = false;
};

// Exits 77 after all tests when a PostgreSQL test was skipped (ctest SKIP_RETURN_CODE 77).
class LedgerPgSkipReporter : public ::testing::Environment {
 public:
  void TearDown() override {
    if (LedgerPgCluster::Skipped() && ::testing::UnitTest::GetInstance()->Passed()) {
      std::fflush(nullptr);
      std::_Exit(77);
    }
  }
};

}  // namespace ccmail::store::test
