// The settings ledger, ledger_password_file and relay_id as a LedgerTarget.
#include <gtest/gtest.h>

#include "ccmail/config/config.h"
#include "ccmail/config/ledger_target.h"

namespace ccmail {
namespace {

Status TargetOf(const std::string& text, store::LedgerTarget* t) {
  Config cfg;
  Status s = Config::Parse(text, "l.conf", &cfg);
  if (!s.ok()) return s;
  BridgePaths p = BridgePaths::UnderDirectory("/srv/cc");
  return LedgerTargetFromConfig(cfg, p, t);
}

TEST(LedgerTargetFromConfig, EmptyLedgerIsTheSqliteFileInTheSpoolDirectory) {
  store::LedgerTarget t;
  ASSERT_TRUE(TargetOf("log_level = info\n", &t).ok());
  EXPECT_EQ(t.location, "/srv/cc/state/ledger.db");
  EXPECT_EQ(t.relay_id, "");
  // A relay id or a password file without a shared ledger is a mistake, said so.
  Status s = TargetOf("relay_id = mx1\n", &t);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("relay_id"), std::string::npos) << s.ToString();
  EXPECT_EQ(TargetOf("ledger_password_file = /etc/pw\n", &t).code(), Status::Code::kInvalidArgument);
}

TEST(LedgerTargetFromConfig, PostgresNeedsAValidRelayId) {
  store::LedgerTarget t;
  Status s = TargetOf("ledger = host=db1 dbname=ccmail user=ccmail\n", &t);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("relay_id is required"), std::string::npos) << s.ToString();
  EXPECT_EQ(TargetOf("ledger = postgresql://db1/ccmail\nrelay_id = mx 1\n", &t).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(TargetOf("ledger = postgresql://db1/ccmail\nrelay_id = mx1\nledger_password_file = pw\n", &t).code(),
            Status::Code::kInvalidArgument);  // relative
  EXPECT_EQ(TargetOf("ledger = /var/lib/ledger.db\n", &t).code(), Status::Code::kInvalidArgument);
  ASSERT_TRUE(TargetOf("ledger = postgresql://db1/ccmail\nrelay_id = mx1\nledger_password_file = /etc/ccmail-bridge/pgpass\n", &t)
                  .ok());
  EXPECT_EQ(t.location, "postgresql://db1/ccmail");
  EXPECT_EQ(t.relay_id, "mx1");
  EXPECT_EQ(t.password_file, "/etc/ccmail-bridge/pgpass");
}

// ledger_timeout reaches the target (the PostgreSQL ledger's statement, lock and answer
// bound); out of range is refused naming the setting.
TEST(LedgerTargetFromConfig, LedgerTimeoutIsPassedOnAndBounded) {
  store::LedgerTarget t;
  const std::string pg = "ledger = postgresql://db1/ccmail\nrelay_id = mx1\n";
  ASSERT_TRUE(TargetOf(pg, &t).ok());
  EXPECT_EQ(t.timeout_ms, 30000);
  ASSERT_TRUE(TargetOf(pg + "ledger_timeout = 2s\n", &t).ok());
  EXPECT_EQ(t.timeout_ms, 2000);
  for (const char* bad : {"ledger_timeout = 500ms\n", "ledger_timeout = 2h\n", "ledger_timeout = soon\n"}) {
    Status s = TargetOf(pg + bad, &t);
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("ledger_timeout"), std::string::npos) << s.ToString();
  }
}

}  // namespace
}  // namespace ccmail
