// The daemons' shared set-up (config/daemon): options, config load, fatal/pid/reload lines.
#include "ccmail/config/daemon.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "ccmail/common/log.h"

namespace ccmail::daemon {
namespace {

// Parses `args` (after the program name) with the common options plus the exporter's --drain.
struct Parsed {
  DaemonOptions options;
  bool drain = false;
  int rc = 0;
};

Parsed Parse(std::vector<std::string> args) {
  Parsed p;
  CLI::App app{"test daemon"};
  AddDaemonOptions(app, &p.options);
  app.add_flag("--drain", p.drain, "extra flag of one daemon");
  args.insert(args.begin(), "test-daemon");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  p.rc = ParseCommandLine(app, static_cast<int>(argv.size()), argv.data());
  return p;
}

class DaemonSetup : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("NOTIFY_SOCKET");  // sd_notify must be a no-op here
    LogInit("daemon-test", LogTarget::kStderr);
    dir_ = std::filesystem::temp_directory_path() / ("ccmail-daemon-test." + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    ASSERT_TRUE(std::filesystem::create_directory(dir_));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string WriteConfig(const std::string& text) {
    std::string path = dir_ + "/ccmail-bridge.conf";
    std::ofstream(path) << text;
    return path;
  }

  std::string dir_;
};

TEST(DaemonOptionsParse, DefaultsWhenNothingIsGiven) {
  Parsed p = Parse({});
  EXPECT_EQ(p.rc, -1);
  EXPECT_EQ(p.options.config_path, "/etc/ccmail-bridge/ccmail-bridge.conf");
  EXPECT_TRUE(p.options.overrides.empty());
  EXPECT_FALSE(p.options.check);
  EXPECT_FALSE(p.options.to_stderr);
}

TEST(DaemonOptionsParse, EveryCommonOptionAndTheDaemonsOwn) {
  Parsed p = Parse({"-c", "/x.conf", "-o", "log_level=debug", "-o", "capture_mode=copy", "--check", "--stderr",
                    "--drain"});
  EXPECT_EQ(p.rc, -1);
  EXPECT_EQ(p.options.config_path, "/x.conf");
  EXPECT_EQ(p.options.overrides, (std::vector<std::string>{"log_level=debug", "capture_mode=copy"}));
  EXPECT_TRUE(p.options.check);
  EXPECT_TRUE(p.options.to_stderr);
  EXPECT_TRUE(p.drain);
  EXPECT_EQ(Parse({"--config", "/y.conf"}).options.config_path, "/y.conf");
}

TEST(DaemonOptionsParse, HelpExitsZeroAndUsageErrorsExitNonZero) {
  testing::internal::CaptureStdout();
  EXPECT_EQ(Parse({"--help"}).rc, 0);
  std::string help = testing::internal::GetCapturedStdout();
  for (const char* option : {"--config", "--check", "--stderr", "-o"})
    EXPECT_NE(help.find(option), std::string::npos) << option << " missing from:\n" << help;

  testing::internal::CaptureStderr();
  int unknown = Parse({"--no-such-option"}).rc;
  int missing_value = Parse({"-c"}).rc;
  testing::internal::GetCapturedStderr();
  EXPECT_GT(unknown, 0);
  EXPECT_GT(missing_value, 0);
}

TEST_F(DaemonSetup, LoadConfigAppliesTheFileThenTheOverridesThenTheLogLevel) {
  DaemonOptions options;
  options.config_path = WriteConfig("capture_mode = copy\nlog_level = warning\n");
  Config cfg;
  ASSERT_TRUE(LoadConfig(options, &cfg).ok());
  EXPECT_EQ(cfg.GetRaw("capture_mode"), "copy");
  EXPECT_EQ(LogGetLevel(), LogLevel::kWarning);

  options.overrides = {"log_level=debug"};
  Config overridden;
  ASSERT_TRUE(LoadConfig(options, &overridden).ok());
  EXPECT_EQ(LogGetLevel(), LogLevel::kDebug);
  LogSetLevel(LogLevel::kInfo);
}

TEST_F(DaemonSetup, LoadConfigErrorsNameTheFileOrTheOverride) {
  DaemonOptions options;
  options.config_path = dir_ + "/missing.conf";
  Config cfg;
  Status s = LoadConfig(options, &cfg);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("missing.conf"), std::string::npos) << s.ToString();

  options.config_path = WriteConfig("capture_mode = copy\n");
  options.overrides = {"no_such_setting=1"};
  Config with_bad_override;
  s = LoadConfig(options, &with_bad_override);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("no_such_setting"), std::string::npos) << s.ToString();

  options.overrides = {"log_level=loud"};
  Config with_bad_level;
  EXPECT_FALSE(LoadConfig(options, &with_bad_level).ok());
}

TEST_F(DaemonSetup, FatalLogsTheStatusAndGivesExitOne) {
  testing::internal::CaptureStderr();
  EXPECT_EQ(Fatal(Status::Unavailable("cannot bind")), 1);
  EXPECT_EQ(Fatal("spool", Status::NoSpace("no space")), 1);
  std::string log = testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("fatal: " + Status::Unavailable("cannot bind").ToString()), std::string::npos) << log;
  EXPECT_NE(log.find("fatal: spool: " + Status::NoSpace("no space").ToString()), std::string::npos) << log;
}

TEST_F(DaemonSetup, PidFileIsWrittenRemovedOrOnlyWarnedAbout) {
  const std::string pid_file = dir_ + "/d.pid";
  WritePidFileIfConfigured(pid_file);
  std::ifstream in(pid_file);
  pid_t written = 0;
  in >> written;
  EXPECT_EQ(written, getpid());
  RemovePidFileIfConfigured(pid_file);
  EXPECT_FALSE(std::filesystem::exists(pid_file));

  testing::internal::CaptureStderr();
  WritePidFileIfConfigured("");  // none configured: nothing to say
  WritePidFileIfConfigured(dir_ + "/no/such/dir/d.pid");
  RemovePidFileIfConfigured("");
  std::string log = testing::internal::GetCapturedStderr();
  EXPECT_EQ(log.find("no pid file"), log.rfind("no pid file")) << "one warning only:\n" << log;
  EXPECT_NE(log.find("no pid file: "), std::string::npos) << log;
}

TEST_F(DaemonSetup, ReloadLogsTheDoneLineOrKeepsTheRunningConfiguration) {
  int calls = 0;
  testing::internal::CaptureStderr();
  ReloadConfig([&] { ++calls; return Status::Ok(); }, "reloaded x.conf (details)");
  ReloadConfig([&] { ++calls; return Status::InvalidArgument("x.conf:3: bad value"); }, "not logged");
  LogUsr2Ignored("ccmail-test");
  std::string log = testing::internal::GetCapturedStderr();
  EXPECT_EQ(calls, 2);
  EXPECT_NE(log.find("reloaded x.conf (details)"), std::string::npos) << log;
  EXPECT_EQ(log.find("not logged"), std::string::npos) << log;
  EXPECT_NE(log.find("reload failed, keeping the running configuration: "), std::string::npos) << log;
  EXPECT_NE(log.find("x.conf:3: bad value"), std::string::npos) << log;
  EXPECT_NE(log.find("SIGUSR2 has no meaning for ccmail-test; ignored"), std::string::npos) << log;
}

}  // namespace
}  // namespace ccmail::daemon
