// The whole-file configuration check (both daemons' --check) and the rules it enforces.
#include "ccmail/config/check.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "ccmail/config/config.h"
#include "ccmail/exporter/exporter.h"
#include "ccmail/milter/settings.h"
#include "ccmail/testing/temp_dir.h"

namespace ccmail {
namespace {

class CheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(dir_ + "/address-map") << "jsmith@corp.example Smith, John at HUBPO2\n";
  }

  // A valid configuration plus extra lines.
  Status Check(const std::string& extra) {
    Config cfg;
    std::string text = "spool_directory = " + dir_ + "/spool\noutbox_directory = " + dir_ +
                       "/spool/outbox\nruntime_directory = " + dir_ + "/run\naddress_map = " + dir_ +
                       "/address-map\n" + extra;
    CCMAIL_RETURN_IF_ERROR(Config::Parse(text, "/etc/t.conf", &cfg));
    return CheckWholeConfig(cfg);
  }
  test::TempDir temp_{"ccmail-check"};
  std::string dir_ = temp_.path();
};

TEST_F(CheckTest, ValidFileAndDefaultsPass) {
  Status s = Check("");
  EXPECT_TRUE(s.ok()) << s.ToString();
}

// Each daemon used to check only its own keys: a bad exporter or format setting passed
// "ccmail-milter --check" and the other way round.
TEST_F(CheckTest, EveryComponentsKeysAreChecked) {
  for (const char* bad : {"batch_max_messages = 0\n", "codepage = 999\n", "milter_socket = tcp:25\n",
                          "recipient_limit = none\n", "claim_table_slots = 0\n", "default_postoffice = AUX\n",
                          "percent_route_postoffices = NUL\n"}) {
    Status s = Check(bad);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_NE(s.message().find("/etc/t.conf"), std::string::npos) << bad << s.message();
  }
}

TEST_F(CheckTest, SocketModeWithAnyBitForOtherIsRefused) {
  for (const char* mode : {"0777", "0666", "0664", "0662", "0661", "0604"}) {
    Status s = Check(std::string("milter_socket_mode = ") + mode + "\n");
    EXPECT_FALSE(s.ok()) << mode;
    EXPECT_NE(s.message().find("/etc/t.conf:5: milter_socket_mode: " + std::string(mode)), std::string::npos)
        << s.message();
  }
  for (const char* mode : {"0660", "0600", "0640"}) EXPECT_TRUE(Check(std::string("milter_socket_mode = ") + mode + "\n").ok()) << mode;
  // The daemon itself refuses it too, not only --check.
  Config cfg;
  ASSERT_TRUE(cfg.Set("milter_socket_mode", "0777").ok());
  milter::MilterSettings ms;
  EXPECT_FALSE(milter::MilterSettings::FromConfig(cfg, &ms).ok());
}

TEST_F(CheckTest, DedupWindowBelowTheMtaQueueLifetimeIsRefused) {
  for (const char* w : {"1h", "4d", "119h", "0"}) {
    Status s = Check(std::string("dedup_window = ") + w + "\n");
    EXPECT_FALSE(s.ok()) << w;
    EXPECT_NE(s.message().find("dedup_window"), std::string::npos) << s.message();
  }
  for (const char* w : {"5d", "120h", "7d", "2w"}) EXPECT_TRUE(Check(std::string("dedup_window = ") + w + "\n").ok()) << w;
  EXPECT_EQ(kMinDedupWindow, std::chrono::hours(120));
  Config cfg;
  ASSERT_TRUE(cfg.Set("dedup_window", "1d").ok());
  exporter::ExporterOptions opt;
  EXPECT_FALSE(exporter::ExporterOptions::FromConfig(cfg, &opt).ok());  // the exporter refuses it at start
}

TEST_F(CheckTest, AddressMapBreakingTheExportRuleFailsTheCheck) {
  std::ofstream(dir_ + "/address-map") << "evil@corp.example Evil at PO, Boss at HUBPO2\n";
  Status s = Check("");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("address-map:1: bad cc:Mail name"), std::string::npos) << s.message();
}

TEST_F(CheckTest, DirectoryOrUnreadablePathIsAnError) {
  Config cfg;
  Status s = Config::Load(dir_, &cfg);  // a directory used to load as an empty file: all defaults
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(dir_ + ": is a directory"), std::string::npos) << s.message();
  s = Config::Load(dir_ + "/missing.conf", &cfg);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  s = Config::Load("/dev/null", &cfg);  // the commands' "-c /dev/null": all defaults
  EXPECT_TRUE(s.ok()) << s.ToString();
  // The address map path is held to the same rule.
  ASSERT_EQ(mkdir((dir_ + "/map.d").c_str(), 0700), 0);
  Config with_dir_map;
  ASSERT_TRUE(Config::Parse("address_map = " + dir_ + "/map.d\n", "/etc/t.conf", &with_dir_map).ok());
  s = CheckWholeConfig(with_dir_map);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("map.d: is a directory"), std::string::npos) << s.message();
  if (geteuid() != 0) {  // root reads anything
    std::ofstream(dir_ + "/secret.conf") << "log_level = info\n";
    ASSERT_EQ(chmod((dir_ + "/secret.conf").c_str(), 0), 0);
    EXPECT_FALSE(Config::Load(dir_ + "/secret.conf", &cfg).ok());
  }
}

}  // namespace
}  // namespace ccmail
