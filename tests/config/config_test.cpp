#include "ccmail/config/config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "ccmail/config/paths.h"
#include "ccmail/config/settings.h"

namespace ccmail {
namespace {

TEST(Config, DefaultsComeFromTheSettingsTable) {
  Config cfg;
  std::string mode;
  ASSERT_TRUE(cfg.GetEnum("capture_mode", {"divert", "copy"}, &mode).ok());
  EXPECT_EQ(mode, "divert");
  EXPECT_EQ(cfg.Where("capture_mode"), "default");
  EXPECT_FALSE(cfg.IsSet("capture_mode"));
}

TEST(Config, ParsesMainCfSyntaxWithCommentsAndContinuations) {
  Config cfg;
  Status s = Config::Parse(
      "# a comment\n"
      "\n"
      "ccmail_domains = corp.example,\n"
      "    branch.example  other.example\n"
      "message_size_limit = 10m\n"
      "batch_max_delay=250ms\n"
      "gateway_postoffice = INTERNET # not a comment in main.cf syntax\n",
      "test.conf", &cfg);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::vector<std::string> domains;
  ASSERT_TRUE(cfg.GetList("ccmail_domains", &domains).ok());
  EXPECT_EQ(domains, (std::vector<std::string>{"corp.example", "branch.example", "other.example"}));
  uint64_t size = 0;
  ASSERT_TRUE(cfg.GetSize("message_size_limit", &size).ok());
  EXPECT_EQ(size, 10u << 20);
  std::chrono::milliseconds d{};
  ASSERT_TRUE(cfg.GetDuration("batch_max_delay", &d).ok());
  EXPECT_EQ(d.count(), 250);
  EXPECT_EQ(cfg.GetRaw("gateway_postoffice"), "INTERNET # not a comment in main.cf syntax");
  EXPECT_EQ(cfg.Where("message_size_limit"), "test.conf:5");
}

TEST(Config, UnknownDuplicateAndMalformedLinesNameFileAndLine) {
  Config cfg;
  Status s = Config::Parse("log_level = info\ncaptur_mode = copy\n", "a.conf", &cfg);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("a.conf:2: unknown setting \"captur_mode\""), std::string::npos) << s.message();

  s = Config::Parse("log_level = info\nlog_level = debug\n", "b.conf", &cfg);
  EXPECT_NE(s.message().find("b.conf:2: \"log_level\" is already set at b.conf:1"), std::string::npos)
      << s.message();

  s = Config::Parse("just words\n", "c.conf", &cfg);
  EXPECT_NE(s.message().find("c.conf:1: expected \"name = value\""), std::string::npos) << s.message();

  s = Config::Parse("  leading continuation\n", "d.conf", &cfg);
  EXPECT_NE(s.message().find("d.conf:1: continuation line"), std::string::npos) << s.message();
}

TEST(Config, BadValuesNameTheSettingAndWhatWasExpected) {
  Config cfg;
  ASSERT_TRUE(Config::Parse("reject_unknown = maybe\nmessage_size_limit = 10 parsecs\n"
                            "batch_max_delay = soon\nclaim_table_slots = 0\nmilter_socket_mode = 0999\n",
                            "e.conf", &cfg).ok());
  bool b;
  Status s = cfg.GetBool("reject_unknown", &b);
  EXPECT_EQ(s.message(), "e.conf:1: reject_unknown = \"maybe\": expected yes or no");
  uint64_t n;
  EXPECT_NE(cfg.GetSize("message_size_limit", &n).message().find("e.conf:2"), std::string::npos);
  std::chrono::milliseconds d{};
  EXPECT_NE(cfg.GetDuration("batch_max_delay", &d).message().find("e.conf:3"), std::string::npos);
  EXPECT_NE(cfg.GetUInt("claim_table_slots", 4, 1u << 24, &n).message().find("from 4 to 16777216"),
            std::string::npos);
  unsigned mode;
  EXPECT_FALSE(cfg.GetMode("milter_socket_mode", &mode).ok());
}

TEST(Config, SizesAndDurationsRejectOverflow) {
  Config cfg;
  ASSERT_TRUE(cfg.Set("backlog_limit_bytes", "99999999999999999t").ok());
  uint64_t n;
  EXPECT_FALSE(cfg.GetSize("backlog_limit_bytes", &n).ok());
  ASSERT_TRUE(cfg.Set("dedup_window", "2w").ok());
  std::chrono::milliseconds d{};
  ASSERT_TRUE(cfg.GetDuration("dedup_window", &d).ok());
  EXPECT_EQ(d.count(), 14LL * 86400 * 1000);
  EXPECT_EQ(cfg.Where("dedup_window"), "command line");
  EXPECT_FALSE(cfg.Set("no_such_setting", "1").ok());
}

// The one duration parser: settings (GetDuration) and `ccmailctl drain --timeout` use it.
TEST(Config, ParseDurationUnitsAndRefusals) {
  std::chrono::milliseconds d{};
  const std::pair<const char*, int64_t> good[] = {
      {"500ms", 500}, {"30", 30000}, {"30s", 30000}, {"5m", 300000}, {"2h", 7200000},
      {"7d", 7LL * 86400000}, {"1w", 7LL * 86400000}, {"10 M", 600000}, {"0", 0},
  };
  for (const auto& [text, ms] : good) {
    Status s = ParseDuration(text, &d);
    ASSERT_TRUE(s.ok()) << text << ": " << s.ToString();
    EXPECT_EQ(d.count(), ms) << text;
  }
  for (const char* text : {"", "s", "soon", "5x", "-5s", "1.5h", "99999999999999999999"}) {
    Status s = ParseDuration(text, &d);
    EXPECT_FALSE(s.ok()) << text;
    EXPECT_NE(s.message().find("a duration such as"), std::string::npos) << text << ": " << s.message();
  }
  Status s = ParseDuration("9999999999999999999w", &d);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "a shorter duration");
  Config cfg;
  ASSERT_TRUE(cfg.Set("batch_max_delay", "5x").ok());
  EXPECT_NE(cfg.GetDuration("batch_max_delay", &d).message().find("batch_max_delay = \"5x\": expected a duration"),
            std::string::npos);
}

TEST(Config, LoadReportsMissingFileWithItsPath) {
  Config cfg;
  Status s = Config::Load("/nonexistent/ccmail-bridge.conf", &cfg);
  EXPECT_TRUE(s.IsNotFound());
  EXPECT_NE(s.message().find("/nonexistent/ccmail-bridge.conf"), std::string::npos);
}

// Every command's -o option goes through ApplyOverrides: blanks around '=' are ignored, the
// value wins over the file, and a bad item is named in the error.
TEST(Config, OverridesFromTheCommandLine) {
  Config cfg;
  ASSERT_TRUE(Config::Parse("log_level = info\n", "t.conf", &cfg).ok());
  ASSERT_TRUE(cfg.ApplyOverrides({"log_level=debug", " batch_max_messages = 16 ", "milter_socket=unix:/a=b"}).ok());
  std::string v;
  ASSERT_TRUE(cfg.GetString("log_level", &v).ok());
  EXPECT_EQ(v, "debug");
  EXPECT_EQ(cfg.Where("log_level"), "command line");
  EXPECT_EQ(cfg.GetRaw("batch_max_messages"), "16");
  EXPECT_EQ(cfg.GetRaw("milter_socket"), "unix:/a=b");  // only the first '=' separates
  for (const char* bad : {"log_level", "=debug", " = x"}) {
    Status s = cfg.ApplyOverrides({bad});
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_NE(s.message().find("expected name=value"), std::string::npos) << s.ToString();
  }
  Status s = cfg.ApplyOverrides({"no_such_setting=1"});
  EXPECT_NE(s.message().find("-o no_such_setting=1"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("unknown setting"), std::string::npos) << s.ToString();
  ASSERT_TRUE(cfg.ApplyOverrides({"log_level=loud"}).ok());  // checked when used
  EXPECT_FALSE(cfg.ApplyLogLevel().ok());
  ASSERT_TRUE(cfg.ApplyOverrides({"log_level=info"}).ok());
  EXPECT_TRUE(cfg.ApplyLogLevel().ok());
}

TEST(Settings, EveryDefaultIsDocumentedAndNamesAreUnique) {
  std::set<std::string_view> names;
  for (const SettingSpec& s : AllSettings()) {
    EXPECT_TRUE(names.insert(s.name).second) << "duplicate setting " << s.name;
    EXPECT_FALSE(s.meaning.empty()) << s.name;
    EXPECT_FALSE(s.component.empty()) << s.name;
  }
}

// The layout every program derives from the three directory settings: the milter writes and
// the exporter reads the same files only because both ask BridgePaths.
TEST(BridgePaths, DerivesTheLayoutFromTheDirectorySettings) {
  Config cfg;
  ASSERT_TRUE(Config::Parse("spool_directory = /srv/cc//\noutbox_directory = /srv/out\n"
                            "runtime_directory = /run/cc\n",
                            "p.conf", &cfg)
                  .ok());
  BridgePaths p;
  ASSERT_TRUE(BridgePaths::FromConfig(cfg, &p).ok());
  EXPECT_EQ(p.spool_directory, "/srv/cc");
  EXPECT_EQ(p.spool_root, "/srv/cc/spool");
  EXPECT_EQ(p.quarantine_dir, "/srv/cc/spool/corrupt");
  EXPECT_EQ(p.ledger_path, "/srv/cc/ledger.db");
  EXPECT_EQ(p.exporter_lock, "/srv/cc/exporter.lock");
  EXPECT_EQ(p.out_tmp, "/srv/cc/out/tmp");
  EXPECT_EQ(p.outbox_directory, "/srv/out");
  EXPECT_EQ(p.runtime_directory, "/run/cc");
}

TEST(BridgePaths, RelativeDirectoriesAreRefusedWithWhereAndWhy) {
  Config cfg;
  ASSERT_TRUE(Config::Parse("spool_directory = spool\n", "rel.conf", &cfg).ok());
  BridgePaths p;
  Status s = BridgePaths::FromConfig(cfg, &p);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("rel.conf:1"), std::string::npos) << s.ToString();
  EXPECT_NE(s.ToString().find("absolute"), std::string::npos) << s.ToString();
}

TEST(BridgePaths, UnderDirectoryKeepsEverythingInside) {
  BridgePaths p = BridgePaths::UnderDirectory("/tmp/x/");
  for (const std::string& d : {p.spool_root, p.ledger_path, p.out_tmp, p.outbox_directory, p.runtime_directory})
    EXPECT_EQ(d.rfind("/tmp/x/", 0), 0u) << d;
}

}  // namespace
}  // namespace ccmail
