#include "ccmail/mtaconf/check_mta.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace ccmail::mtaconf {
namespace {

const char* kOurs = "unix:/var/spool/postfix/ccmail-bridge/milter.sock";
const char* kChroot = "/var/spool/postfix";

TEST(ParsePostfixMilterList, CommasSpacesAndBraces) {
  EXPECT_EQ(ParsePostfixMilterList(""), std::vector<std::string>{});
  EXPECT_EQ(ParsePostfixMilterList("unix:/a, inet:127.0.0.1:8891 local:/b"),
            (std::vector<std::string>{"unix:/a", "inet:127.0.0.1:8891", "local:/b"}));
  EXPECT_EQ(ParsePostfixMilterList("{ unix:/a, connect_timeout=10s }, inet:h:1"),
            (std::vector<std::string>{"unix:/a", "inet:h:1"}));
}

TEST(SocketsMatch, PostfixChrootRelativeAndFull) {
  EXPECT_TRUE(SocketsMatch("unix:/ccmail-bridge/milter.sock", kOurs, kChroot));
  EXPECT_TRUE(SocketsMatch("unix:/var/spool/postfix/ccmail-bridge/milter.sock", kOurs, kChroot));
  EXPECT_TRUE(SocketsMatch("local:/ccmail-bridge//milter.sock", kOurs, kChroot));
  EXPECT_TRUE(SocketsMatch("unix:ccmail-bridge/milter.sock", kOurs, kChroot));
  EXPECT_FALSE(SocketsMatch("unix:/ccmail-bridge/other.sock", kOurs, kChroot));
  EXPECT_FALSE(SocketsMatch("inet:127.0.0.1:8891", kOurs, kChroot));
}

TEST(SocketsMatch, InetSpellings) {
  EXPECT_TRUE(SocketsMatch("inet:127.0.0.1:10025", "inet:10025@127.0.0.1", kChroot));
  EXPECT_TRUE(SocketsMatch("inet:localhost:10025", "inet:10025@localhost", kChroot));
  EXPECT_FALSE(SocketsMatch("inet:127.0.0.1:10026", "inet:10025@127.0.0.1", kChroot));
  EXPECT_TRUE(SocketsMatch("inet:10025@127.0.0.1", "inet:10025@127.0.0.1", ""));  // Sendmail
  EXPECT_TRUE(SocketsMatch("inet:[::1]:10025", "inet6:10025@::1", kChroot));
}

TEST(Spelling, PostfixAndSendmail) {
  EXPECT_EQ(PostfixSpelling(kOurs, kChroot), "unix:/ccmail-bridge/milter.sock");
  EXPECT_EQ(PostfixSpelling("unix:/run/ccmail-bridge/m.sock", kChroot), "unix:/run/ccmail-bridge/m.sock");
  EXPECT_EQ(PostfixSpelling("inet:10025@127.0.0.1", kChroot), "inet:127.0.0.1:10025");
  EXPECT_EQ(SendmailSpelling(kOurs), "unix:/var/spool/postfix/ccmail-bridge/milter.sock");
  EXPECT_EQ(SendmailSpelling("inet:10025@127.0.0.1"), "inet:10025@127.0.0.1");
}

int Count(const std::vector<Finding>& fs, Verdict v) {
  int n = 0;
  for (const Finding& f : fs) n += f.verdict == v;
  return n;
}

TEST(CheckPostfix, Complete) {
  auto fs = CheckPostfix("unix:/ccmail-bridge/milter.sock", "unix:/ccmail-bridge/milter.sock", "tempfail", kOurs, kChroot);
  EXPECT_EQ(Count(fs, Verdict::kOk), 3);
}

TEST(CheckPostfix, MissingAndWrongWithFixes) {
  auto fs = CheckPostfix("inet:127.0.0.1:8891", "", "accept", kOurs, kChroot);
  ASSERT_EQ(fs.size(), 3u);
  EXPECT_EQ(fs[0].verdict, Verdict::kMissing);
  EXPECT_EQ(fs[0].fix, "postconf -e 'smtpd_milters = inet:127.0.0.1:8891, unix:/ccmail-bridge/milter.sock'");
  EXPECT_EQ(fs[1].verdict, Verdict::kMissing);
  EXPECT_EQ(fs[1].fix, "postconf -e 'non_smtpd_milters = unix:/ccmail-bridge/milter.sock'");
  EXPECT_EQ(fs[2].verdict, Verdict::kWrong);
  EXPECT_EQ(fs[2].fix, "postconf -e 'milter_default_action = tempfail'");
}

TEST(CheckSendmailMc, FoundWithTempfail) {
  std::string mc =
      "divert(-1)dnl\n"
      "dnl INPUT_MAIL_FILTER(`old', `S=unix:/x')dnl\n"
      "INPUT_MAIL_FILTER(`ccmail-bridge', `S=unix:/var/spool/postfix/ccmail-bridge/milter.sock, F=T, T=S:30s;R:5m')dnl\n"
      "MAILER(smtp)dnl\n";
  auto fs = CheckSendmailMc(mc, "/etc/mail/sendmail.mc", kOurs);
  ASSERT_EQ(fs.size(), 1u);
  EXPECT_EQ(fs[0].verdict, Verdict::kOk);
}

TEST(CheckSendmailMc, CommentedOrNoTempfail) {
  auto missing = CheckSendmailMc(
      "dnl INPUT_MAIL_FILTER(`ccmail-bridge', `S=unix:/var/spool/postfix/ccmail-bridge/milter.sock, F=T')dnl\n",
      "sendmail.mc", kOurs);
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_EQ(missing[0].verdict, Verdict::kMissing);
  EXPECT_NE(missing[0].fix.find("INPUT_MAIL_FILTER(`ccmail-bridge', `S=unix:/var/spool/postfix/ccmail-bridge/milter.sock, F=T"),
            std::string::npos);
  auto no_t = CheckSendmailMc(
      "INPUT_MAIL_FILTER(`ccmail-bridge', `S=unix:/var/spool/postfix/ccmail-bridge/milter.sock')dnl\n", "sendmail.mc", kOurs);
  ASSERT_EQ(no_t.size(), 1u);
  EXPECT_EQ(no_t[0].verdict, Verdict::kWrong);
}

TEST(CheckSendmailCf, DefinedAndListed) {
  std::string cf =
      "O InputMailFilters=ccmail-bridge\n"
      "Xccmail-bridge, S=unix:/var/spool/postfix/ccmail-bridge/milter.sock, F=T, T=S:30s;R:5m;E:10m\n";
  EXPECT_EQ(CheckSendmailCf(cf, "sendmail.cf", kOurs)[0].verdict, Verdict::kOk);
  std::string not_listed = "Xccmail-bridge, S=unix:/var/spool/postfix/ccmail-bridge/milter.sock, F=T\n";
  EXPECT_EQ(CheckSendmailCf(not_listed, "sendmail.cf", kOurs)[0].verdict, Verdict::kMissing);
  EXPECT_EQ(CheckSendmailCf("O InputMailFilters=x\nXx, S=inet:1@h\n", "sendmail.cf", kOurs)[0].verdict, Verdict::kMissing);
}

// CheckMta end to end with a fake postconf script and absent Sendmail files.
class CheckMtaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mtaconf-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string FakePostconf(const std::string& lines, int rc = 0) {
    std::string path = dir_ + "/postconf";
    std::ofstream(path) << "#!/bin/sh\n[ \"$1\" = -h ] || exit 9\nprintf '%s' '" << lines << "'\nexit " << rc << "\n";
    chmod(path.c_str(), 0755);
    return path;
  }
  CheckMtaOptions Options() {
    CheckMtaOptions o;
    o.milter_socket = kOurs;
    o.sendmail_mc = dir_ + "/absent.mc";
    o.sendmail_cf = dir_ + "/absent.cf";
    return o;
  }
  std::string dir_;
};

TEST_F(CheckMtaTest, PostfixConfigured) {
  CheckMtaOptions o = Options();
  o.postconf_command = FakePostconf("unix:/ccmail-bridge/milter.sock\nunix:/ccmail-bridge/milter.sock\ntempfail\n");
  MtaReport r = CheckMta(o);
  EXPECT_TRUE(r.postfix_present);
  EXPECT_FALSE(r.sendmail_present);
  EXPECT_TRUE(r.ok()) << r.ToText();
}

TEST_F(CheckMtaTest, PostfixUnconfigured) {
  CheckMtaOptions o = Options();
  o.postconf_command = FakePostconf("\n\ntempfail\n");
  MtaReport r = CheckMta(o);
  EXPECT_FALSE(r.ok());
  std::string text = r.ToText();
  EXPECT_NE(text.find("MISSING postfix: smtpd_milters"), std::string::npos) << text;
  EXPECT_NE(text.find("postconf -e 'non_smtpd_milters = unix:/ccmail-bridge/milter.sock'"), std::string::npos) << text;
}

TEST_F(CheckMtaTest, NoMtaAtAll) {
  CheckMtaOptions o = Options();
  o.postconf_command = dir_ + "/no-such-postconf";
  MtaReport r = CheckMta(o);
  EXPECT_FALSE(r.postfix_present);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.ToText().find("no MTA found"), std::string::npos);
}

TEST_F(CheckMtaTest, SendmailOnlyConfigured) {
  CheckMtaOptions o = Options();
  o.postconf_command = dir_ + "/no-such-postconf";
  std::ofstream(o.sendmail_mc) << "INPUT_MAIL_FILTER(`ccmail-bridge', `S=unix:/var/spool/postfix/ccmail-bridge/milter.sock, F=T')dnl\n";
  MtaReport r = CheckMta(o);
  EXPECT_TRUE(r.sendmail_present);
  EXPECT_TRUE(r.ok()) << r.ToText();
}

}  // namespace
}  // namespace ccmail::mtaconf
