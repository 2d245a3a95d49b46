// ccmailctl and the ledger's backend: the location it prints never carries a password.
#include <gtest/gtest.h>

#include "ccmail/ctl/ledger_location.h"

namespace ccmail::ctl::test {
namespace {

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

}  // namespace
}  // namespace ccmail::ctl::test
