// CheckSubmitRelay against a scripted SMTP server on 127.0.0.1 (a thread): what the
// submitter's relay accepts decides each finding, and nothing past RCPT is ever sent.
#include "ccmail/mtaconf/check_submit_relay.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace ccmail::mtaconf {
namespace {

// One session at a time: 220, then answers MAIL and RCPT with the given replies and records
// every command it saw.
class ScriptedRelay {
 public:
  ScriptedRelay(std::string mail_reply, std::string rcpt_reply)
      : mail_(std::move(mail_reply)), rcpt_(std::move(rcpt_reply)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(fd_, 4);
    thread_ = std::thread([this] { Serve(); });
  }
  ~ScriptedRelay() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::string spec() const { return "127.0.0.1:" + std::to_string(port_); }
  std::vector<std::string> commands() const { return commands_; }

 private:
  void Serve() {
    int c = ::accept(fd_, nullptr, nullptr);
    if (c < 0) return;
    auto say = [&](const std::string& s) { (void)!::write(c, (s + "\r\n").data(), s.size() + 2); };
    say("220 relay.test ESMTP");
    std::string buf;
    char tmp[512];
    for (;;) {
      size_t nl;
      while ((nl = buf.find("\r\n")) == std::string::npos) {
        ssize_t n = ::read(c, tmp, sizeof tmp);
        if (n <= 0) {
          ::close(c);
          return;
        }
        buf.append(tmp, static_cast<size_t>(n));
      }
      std::string cmd = buf.substr(0, nl);
      buf.erase(0, nl + 2);
      commands_.push_back(cmd);
      if (cmd.rfind("EHLO", 0) == 0) say("250 relay.test");
      else if (cmd.rfind("MAIL", 0) == 0) say(mail_);
      else if (cmd.rfind("RCPT", 0) == 0) say(rcpt_);
      else if (cmd.rfind("QUIT", 0) == 0) { say("221 bye"); break; }
      else say("250 ok");
    }
    ::close(c);
  }
  std::string mail_, rcpt_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::vector<std::string> commands_;
};

SubmitRelayCheckOptions Options(const std::string& relay) {
  SubmitRelayCheckOptions o;
  o.in_use = true;
  o.submit_relay = relay;
  o.author_domains = {"ccmail.corp.example"};
  o.timeout = std::chrono::seconds(5);
  return o;
}

Verdict Of(const std::vector<Finding>& fs, const std::string& what_prefix) {
  for (const auto& f : fs)
    if (f.what.rfind(what_prefix, 0) == 0) return f.verdict;
  ADD_FAILURE() << "no finding " << what_prefix;
  return Verdict::kInfo;
}

TEST(CheckSubmitRelay, RelayThatTakesTheSubmittersMailIsOkAndNothingIsSent) {
  ScriptedRelay relay("250 2.1.0 Ok", "250 2.1.5 Ok");
  std::vector<Finding> fs = CheckSubmitRelay(Options(relay.spec()));
  EXPECT_EQ(Of(fs, "submit_relay reachable"), Verdict::kOk);
  EXPECT_EQ(Of(fs, "sender ccmail.corp.example"), Verdict::kOk);
  EXPECT_EQ(Of(fs, "relays Internet mail"), Verdict::kOk);
}

TEST(CheckSubmitRelay, NeverSendsData) {
  ScriptedRelay relay("250 2.1.0 Ok", "250 2.1.5 Ok");
  (void)CheckSubmitRelay(Options(relay.spec()));
  // The session ends with QUIT before the destructor runs: give the thread a moment.
  for (int i = 0; i < 100 && (relay.commands().empty() || relay.commands().back() != "QUIT"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::vector<std::string> cmds = relay.commands();
  ASSERT_FALSE(cmds.empty());
  for (const auto& c : cmds) EXPECT_NE(c.rfind("DATA", 0), 0u) << c;
  EXPECT_EQ(cmds.back(), "QUIT");
}

TEST(CheckSubmitRelay, RelayAccessDeniedIsWrongWithAFix) {
  ScriptedRelay relay("250 2.1.0 Ok", "554 5.7.1 <postmaster@example.com>: Relay access denied");
  std::vector<Finding> fs = CheckSubmitRelay(Options(relay.spec()));
  EXPECT_EQ(Of(fs, "relays Internet mail"), Verdict::kWrong);
  for (const auto& f : fs)
    if (f.verdict == Verdict::kWrong) {
      EXPECT_NE(f.found.find("Relay access denied"), std::string::npos) << f.found;
      EXPECT_NE(f.fix.find("mynetworks"), std::string::npos) << f.fix;
    }
}

TEST(CheckSubmitRelay, RefusedAuthorDomainIsWrong) {
  ScriptedRelay relay("553 5.7.1 <ccmail-bridge-check@ccmail.corp.example>: Sender address rejected", "250 ok");
  std::vector<Finding> fs = CheckSubmitRelay(Options(relay.spec()));
  EXPECT_EQ(Of(fs, "sender ccmail.corp.example"), Verdict::kWrong);
}

TEST(CheckSubmitRelay, UnreachableRelayIsMissing) {
  int port;
  {
    ScriptedRelay gone("250", "250");
    port = std::stoi(gone.spec().substr(10));
  }
  std::vector<Finding> fs = CheckSubmitRelay(Options("127.0.0.1:" + std::to_string(port)));
  ASSERT_EQ(fs.size(), 1u);
  EXPECT_EQ(fs[0].verdict, Verdict::kMissing);
  EXPECT_NE(fs[0].fix.find("submit_relay"), std::string::npos);
}

TEST(CheckSubmitRelay, NotInUseIsOnlyANote) {
  SubmitRelayCheckOptions o = Options("127.0.0.1:1");
  o.in_use = false;
  std::vector<Finding> fs = CheckSubmitRelay(o);
  ASSERT_EQ(fs.size(), 1u);
  EXPECT_EQ(fs[0].verdict, Verdict::kInfo);
}

}  // namespace
}  // namespace ccmail::mtaconf
