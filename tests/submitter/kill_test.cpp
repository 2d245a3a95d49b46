// Kill test of the real ccmail-submitter binary (fork/exec, --drain) against an SMTP sink in
// its own process that records every message before answering 250: SIGKILL at every submit.*
// crash point (CCMAIL_CRASH_AT, passes 1 and 2; a point never reached fails the test) and at
// random instants, then restarts until a drain completes. Afterwards every message of the
// input files reached the sink at least once (zero lost), and the copies beyond the first are
// at most in_doubt_resubmitted (only the 250->commit window may duplicate, and it is counted).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <random>
#include <thread>

#include "ccmail/submitter/engine.h"
#include "ccmail/submitter/submit_ledger.h"
#include "ccmail/testing/temp_dir.h"
#include "fake_smtp_server.h"
#include "submitter_test_util.h"

#ifndef CCMAIL_SUBMITTER_BIN
#error "CCMAIL_SUBMITTER_BIN must name the ccmail-submitter binary"
#endif

namespace ccmail::submitter {
namespace {

using ccmail::test::Slurp;
using ccmail::test::TempDir;
using ccmail::test::WriteFile;
using test::ExportMessage;
using test::ExportText;

constexpr int kFiles = 3;
constexpr int kPerFile = 4;

// The sink: a child process serving FakeSmtpServer; each accepted message appends one line
// "<from>\t<subject>\n" to the record file (O_APPEND, one write) before its 250.
class Sink {
 public:
  explicit Sink(const std::string& record) {
    pipe_ok_ = ::pipe(ready_) == 0;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(ready_[0]);
      ccmail::test::FakeSmtpServer server;
      server.script = [](const std::string& cmd) -> std::optional<std::string> {
        if (cmd == "RCPT TO:<gone@partner.example>") return "550 5.1.1 <gone@partner.example>: no such user";
        return std::nullopt;
      };
      const int fd = ::open(record.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      server.on_message = [fd](const ccmail::test::ReceivedMail& m) {
        size_t s = m.data.find("\r\nSubject: ");
        std::string subject = s == std::string::npos ? "?" : m.data.substr(s + 11, m.data.find("\r\n", s + 11) - s - 11);
        if (m.data.rfind("Subject: ", 0) == 0) subject = m.data.substr(9, m.data.find("\r\n") - 9);
        const std::string line = m.from + "\t" + subject + "\n";
        (void)!::write(fd, line.data(), line.size());
      };
      const uint16_t port = server.endpoint().port;
      (void)!::write(ready_[1], &port, sizeof port);
      server.ServeForever();
      ::_exit(0);
    }
    ::close(ready_[1]);
    if (pid_ > 0 && pipe_ok_) (void)!::read(ready_[0], &port_, sizeof port_);
    ::close(ready_[0]);
  }
  ~Sink() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  uint16_t port() const { return port_; }

 private:
  int ready_[2] = {-1, -1};
  bool pipe_ok_ = false;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

pid_t Spawn(const std::string& conf, const std::string& crash_at, const std::string& log) {
  std::vector<std::string> args = {CCMAIL_SUBMITTER_BIN, "-c", conf, "--stderr", "--drain"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string v = *e;
    if (v.rfind("CCMAIL_CRASH_AT=", 0) == 0 || v.rfind("CCMAIL_FAIL_AT=", 0) == 0 || v.rfind("NOTIFY_SOCKET=", 0) == 0)
      continue;
    env.push_back(v);
  }
  if (!crash_at.empty()) env.push_back("CCMAIL_CRASH_AT=" + crash_at);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (fd >= 0) {
      ::dup2(fd, 2);
      ::dup2(fd, 1);
    }
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  if (fd >= 0) ::close(fd);
  return pid;
}

// The wait status, or -1 after timeout_s (the child is killed then).
int WaitFor(pid_t pid, int timeout_s = 60) {
  int st = 0;
  for (int i = 0; i < timeout_s * 200; ++i) {
    if (::waitpid(pid, &st, WNOHANG) == pid) return st;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &st, 0);
  return -1;
}

class KillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const std::string d : {"/spool", "/inbox", "/inbox/HQ"}) ::mkdir((dir_.path() + d).c_str(), 0700);
    conf_ = dir_.path() + "/ccmail-bridge.conf";
    log_ = dir_.path() + "/submitter.log";
    ASSERT_NE(sink_.port(), 0);
    ASSERT_TRUE(WriteFile(conf_, "spool_directory = " + dir_.path() + "/spool\n"
                                 "inbox_directory = " + dir_.path() + "/inbox\n"
                                 "submit_relay = 127.0.0.1:" + std::to_string(sink_.port()) + "\n"
                                 "submit_timeout = 5s\nsubmit_retry_min = 50ms\nsubmit_retry_max = 200ms\n"
                                 "submitter_user =\nsubmitter_pid_file =\n"
                                 "ccmail_domains = example.com\ntimezone = UTC\n"
                                 "origin_marker = killtest\n"));
    // Files of kPerFile messages; in each, one message with a refused recipient beside a good
    // one (partial), and in the first a message whose only recipient is refused.
    for (int f = 0; f < kFiles; ++f) {
      std::string text;
      for (int i = 0; i < kPerFile; ++i) {
        ExportMessage m;
        m.subject = "kill " + std::to_string(f) + "-" + std::to_string(i);
        m.body = "Body of " + m.subject + "\r\n";
        if (f == 0 && i == 3)
          m.to = {"gone@partner.example at INTERNET"};
        else if (i == 1)
          m.to = {"bob@partner.example at INTERNET", "gone@partner.example at INTERNET"};
        else
          m.to = {"bob@partner.example at INTERNET"};
        if (!(f == 0 && i == 3)) expected_.push_back(m.subject);
        text += ExportText(m);
      }
      ASSERT_TRUE(WriteFile(dir_.path() + "/inbox/HQ/EXP" + std::to_string(f) + ".TXT", text));
    }
  }

  // Restarts without a crash point until a drain ends by itself (exit 0).
  void RunToCompletion() {
    for (int i = 0; i < 5; ++i) {
      int st = WaitFor(Spawn(conf_, "", log_));
      if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0) return;
    }
    FAIL() << "the submitter never completed a drain; log:\n" << Slurp(log_);
  }

  // Zero lost, duplicates only as counted, every file done, every message settled.
  void CheckExactlyOnce(const std::string& scenario) {
    std::map<std::string, int> seen;
    int notices = 0;
    const std::string record = Slurp(record_);
    for (size_t start = 0; start < record.size();) {
      size_t nl = record.find('\n', start);
      const std::string line = record.substr(start, nl - start);
      start = nl + 1;
      const size_t tab = line.find('\t');
      if (line.substr(0, tab).empty())
        ++notices;
      else
        ++seen[line.substr(tab + 1)];
    }
    std::unique_ptr<SubmitLedger> ledger;
    ASSERT_TRUE(SubmitLedger::OpenReadOnly(dir_.path() + "/spool/submitter/ledger.db", &ledger).ok()) << scenario;
    SubmitCounters c;
    ASSERT_TRUE(ledger->Counters(&c).ok());
    uint64_t duplicates = 0;
    for (const auto& subject : expected_) {
      EXPECT_GE(seen[subject], 1) << scenario << ": lost " << subject;
      if (seen[subject] > 1) duplicates += static_cast<uint64_t>(seen[subject] - 1);
    }
    EXPECT_EQ(seen.size(), expected_.size()) << scenario << ": something unexpected reached the sink";
    EXPECT_LE(duplicates, c.in_doubt_resubmitted) << scenario << ": a duplicate outside the counted window";
    EXPECT_EQ(c.files_taken, static_cast<uint64_t>(kFiles)) << scenario;
    EXPECT_EQ(c.files_open, 0u) << scenario;
    EXPECT_EQ(c.pending + c.in_doubt, 0u) << scenario;
    EXPECT_EQ(c.sent, static_cast<uint64_t>(kFiles * kPerFile - kFiles - 1)) << scenario;
    EXPECT_EQ(c.partial, static_cast<uint64_t>(kFiles)) << scenario;
    EXPECT_EQ(c.refused, 1u) << scenario;
    // One notice per refused recipient at least (a notice is at-least-once).
    EXPECT_GE(notices, kFiles + 1) << scenario;
    for (int f = 0; f < kFiles; ++f) {
      struct stat st;
      EXPECT_NE(::stat((dir_.path() + "/inbox/HQ/EXP" + std::to_string(f) + ".TXT").c_str(), &st), 0) << scenario;
    }
    duplicates_ = duplicates;
    resubmitted_ = c.in_doubt_resubmitted;
  }

  TempDir dir_{"submitter-kill"};
  std::string record_ = dir_.path() + "/sink.record";
  Sink sink_{record_};
  std::string conf_, log_;
  std::vector<std::string> expected_;
  uint64_t duplicates_ = 0, resubmitted_ = 0;
};

class CrashPointTest : public KillTest, public ::testing::WithParamInterface<std::tuple<std::string, int>> {};

TEST_P(CrashPointTest, KilledAtTheNamedPointThenRestarted) {
  const auto& [point, pass] = GetParam();
  const std::string spec = point + ":" + std::to_string(pass);
  int st = WaitFor(Spawn(conf_, spec, log_));
  ASSERT_TRUE(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
      << spec << " was never reached (status " << st << "); log:\n" << Slurp(log_);
  RunToCompletion();
  CheckExactlyOnce(spec);
  if (point == kCrashAccepted) {
    // Killed inside the window: the MTA had it, the ledger did not; sent again and counted.
    EXPECT_EQ(duplicates_, 1u) << spec;
    EXPECT_GE(resubmitted_, 1u) << spec;
  } else if (point != kCrashDataBefore) {
    EXPECT_EQ(duplicates_, 0u) << spec;
  }
}

std::vector<std::tuple<std::string, int>> AllPoints() {
  std::vector<std::tuple<std::string, int>> out;
  for (const auto& p : SubmitCrashPoints())
    for (int pass : {1, 2}) out.emplace_back(p, pass);
  return out;
}

INSTANTIATE_TEST_SUITE_P(SubmitPoints, CrashPointTest, ::testing::ValuesIn(AllPoints()),
                         [](const ::testing::TestParamInfo<std::tuple<std::string, int>>& p) {
                           std::string n = std::get<0>(p.param) + "_" + std::to_string(std::get<1>(p.param));
                           for (char& ch : n)
                             if (ch == '.') ch = '_';
                           return n;
                         });

TEST_F(KillTest, KilledAtRandomInstants) {
  std::random_device rd;
  const unsigned seed = rd();
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> delay_ms(5, 120);
  int kills = 0;
  for (int i = 0; i < 12; ++i) {
    pid_t pid = Spawn(conf_, "", log_);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    ::kill(pid, SIGKILL);
    int st = WaitFor(pid);
    if (st != -1 && WIFSIGNALED(st)) ++kills;
  }
  RunToCompletion();
  CheckExactlyOnce("random kills, seed " + std::to_string(seed));
  EXPECT_GT(kills, 0);
  RecordProperty("kills", kills);
}

}  // namespace
}  // namespace ccmail::submitter
