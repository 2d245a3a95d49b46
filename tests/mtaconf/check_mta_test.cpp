#include "ccmail/mtaconf/check_mta.h"
#include "ccmail/testing/temp_dir.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
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
  test::TempDir temp_{"mtaconf-test"};
  std::string dir_ = temp_.path();
};

// Real Postfix configuration directories (postconf -c DIR) and a real listening socket, each
// broken setup that makes every message get 451 must make the report fail.
class RealPostfixTest : public CheckMtaTest {
 protected:
  void SetUp() override {
    CheckMtaTest::SetUp();
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (connects as the postfix user)";
    if (std::system("command -v postconf >/dev/null") != 0 || !::getpwnam("postfix"))
      GTEST_SKIP() << "postfix is not installed (scripts/install-deps.sh)";
    ::chmod(dir_.c_str(), 0755);
    queue_ = dir_ + "/queue";
    std::filesystem::create_directories(queue_ + "/ccmail-bridge");
    std::filesystem::create_directories(dir_ + "/etc");
    ::chmod(queue_.c_str(), 0755);
    socket_ = queue_ + "/ccmail-bridge/milter.sock";
  }
  void TearDown() override {
    if (lfd_ >= 0) ::close(lfd_);
    CheckMtaTest::TearDown();
  }
  // main.cf with the given milter lists (and extra lines), master.cf with smtpd and cleanup
  // chrooted or not.
  void WritePostfix(const std::string& milters, bool chrooted, const std::string& extra = "") {
    std::ofstream(dir_ + "/etc/main.cf") << "compatibility_level = 3.6\nqueue_directory = " << queue_
                                         << "\nmail_owner = postfix\nsmtpd_milters = " << milters
                                         << "\nnon_smtpd_milters = " << milters << "\nmilter_default_action = tempfail\n"
                                         << extra;
    const char* c = chrooted ? "y" : "n";
    std::ofstream(dir_ + "/etc/master.cf") << "smtp inet n - " << c << " - - smtpd\ncleanup unix n - " << c
                                           << " - 0 cleanup\n";
  }
  // The milter's socket: directory 0750 and socket 0660, group `group`.
  void Listen(const std::string& group) {
    lfd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", socket_.c_str());
    ASSERT_EQ(::bind(lfd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    ASSERT_EQ(::listen(lfd_, 8), 0);
    struct group* g = ::getgrnam(group.c_str());
    ASSERT_NE(g, nullptr) << group;
    const std::string sock_dir = queue_ + "/ccmail-bridge";
    ASSERT_EQ(::chown(sock_dir.c_str(), 0, g->gr_gid), 0);
    ASSERT_EQ(::chmod(sock_dir.c_str(), 0750), 0);
    ASSERT_EQ(::chown(socket_.c_str(), 0, g->gr_gid), 0);
    ASSERT_EQ(::chmod(socket_.c_str(), 0660), 0);
  }
  CheckMtaOptions RealOptions() {
    CheckMtaOptions o = Options();
    o.milter_socket = "unix:" + socket_;
    o.postfix_config_directory = dir_ + "/etc";
    o.dedup_window = std::chrono::hours(24 * 7);
    return o;
  }
  std::string queue_, socket_;
  int lfd_ = -1;
};

TEST_F(RealPostfixTest, ConfiguredChrootedWithThePostfixUserInTheSocketGroup) {
  WritePostfix("unix:/ccmail-bridge/milter.sock", true);
  Listen("postfix");
  MtaReport r = CheckMta(RealOptions());
  EXPECT_TRUE(r.postfix_present);
  EXPECT_TRUE(r.ok()) << r.ToText();
  EXPECT_NE(r.ToText().find("ok      postfix: connect to " + socket_ + " as postfix"), std::string::npos) << r.ToText();
}

TEST_F(RealPostfixTest, NoMainCfIsPostfixNotConfigured) {
  MtaReport r = CheckMta(RealOptions());
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.ToText().find("MISSING postfix: Postfix not configured = no " + dir_ + "/etc/main.cf"), std::string::npos)
      << r.ToText();
}

TEST_F(RealPostfixTest, PostfixNotInTheSocketGroupFails) {
  WritePostfix("unix:/ccmail-bridge/milter.sock", true);
  Listen("root");
  MtaReport r = CheckMta(RealOptions());
  EXPECT_FALSE(r.ok()) << r.ToText();
  EXPECT_NE(r.ToText().find("WRONG   postfix: connect to " + socket_ + " as postfix = Permission denied"),
            std::string::npos) << r.ToText();
}

TEST_F(RealPostfixTest, ChrootRelativePathWithUnchrootedDaemonsFails) {
  WritePostfix("unix:/ccmail-bridge/milter.sock", false);
  Listen("postfix");
  MtaReport r = CheckMta(RealOptions());
  EXPECT_FALSE(r.ok()) << r.ToText();
  EXPECT_NE(r.ToText().find("WRONG   postfix: smtpd_milters (not chrooted)"), std::string::npos) << r.ToText();
  EXPECT_NE(r.ToText().find("use unix:" + socket_), std::string::npos) << r.ToText();
  // The full path is right for unchrooted daemons.
  WritePostfix("unix:" + socket_, false);
  r = CheckMta(RealOptions());
  EXPECT_TRUE(r.ok()) << r.ToText();
  // ... and wrong for chrooted ones (they would look in queue_directory + full path).
  WritePostfix("unix:" + socket_, true);
  EXPECT_FALSE(CheckMta(RealOptions()).ok());
}

TEST_F(RealPostfixTest, MissingSocketFails) {
  WritePostfix("unix:/ccmail-bridge/milter.sock", true);
  MtaReport r = CheckMta(RealOptions());
  EXPECT_FALSE(r.ok()) << r.ToText();
  EXPECT_NE(r.ToText().find("MISSING postfix: milter socket " + socket_), std::string::npos) << r.ToText();
}

TEST_F(RealPostfixTest, MilterListsMissing) {
  WritePostfix("", true);
  Listen("postfix");
  MtaReport r = CheckMta(RealOptions());
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.ToText().find("postconf -e 'non_smtpd_milters = unix:/ccmail-bridge/milter.sock'"), std::string::npos)
      << r.ToText();
}

TEST_F(RealPostfixTest, DedupWindowMustOutlastTheQueueLifetimesWithMargin) {
  WritePostfix("unix:/ccmail-bridge/milter.sock", true, "maximal_queue_lifetime = 5d\nbounce_queue_lifetime = 2d\n");
  Listen("postfix");
  CheckMtaOptions o = RealOptions();
  o.dedup_window = std::chrono::hours(24 * 5);
  MtaReport r = CheckMta(o);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.ToText().find("WRONG   postfix: dedup window"), std::string::npos) << r.ToText();
  o.dedup_window = std::chrono::hours(24 * 6 - 1);  // less than the 1-day margin
  EXPECT_FALSE(CheckMta(o).ok());
  o.dedup_window = std::chrono::hours(24 * 6);
  EXPECT_TRUE(CheckMta(o).ok()) << CheckMta(o).ToText();
  WritePostfix("unix:/ccmail-bridge/milter.sock", true, "maximal_queue_lifetime = 5d\nbounce_queue_lifetime = 9d\n");
  EXPECT_FALSE(CheckMta(o).ok());
}

TEST_F(RealPostfixTest, ShortMilterTimeoutsWarn) {
  WritePostfix("unix:/ccmail-bridge/milter.sock", true, "milter_content_timeout = 10s\nmilter_command_timeout = 2s\n");
  Listen("postfix");
  MtaReport r = CheckMta(RealOptions());
  EXPECT_TRUE(r.ok()) << r.ToText();  // Postfix tempfails then: delayed, not lost
  EXPECT_NE(r.ToText().find("WARNING postfix: milter_content_timeout = 10s"), std::string::npos) << r.ToText();
  EXPECT_NE(r.ToText().find("WARNING postfix: milter_command_timeout = 2s"), std::string::npos) << r.ToText();
}

TEST(PostfixSeconds, Units) {
  EXPECT_EQ(PostfixSeconds("30s", 's'), 30);
  EXPECT_EQ(PostfixSeconds("300", 's'), 300);
  EXPECT_EQ(PostfixSeconds("5d", 's'), 5 * 86400);
  EXPECT_EQ(PostfixSeconds("5", 'd'), 5 * 86400);
  EXPECT_EQ(PostfixSeconds("2h", 's'), 7200);
  EXPECT_EQ(PostfixSeconds("1w", 'd'), 7 * 86400);
  EXPECT_EQ(PostfixSeconds("x", 's'), -1);
  EXPECT_EQ(PostfixSeconds("", 's'), -1);
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
