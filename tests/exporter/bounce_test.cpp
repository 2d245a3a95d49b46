#include "ccmail/exporter/bounce.h"
#include "ccmail/testing/temp_dir.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "ccmail/format/converter.h"

namespace ccmail::exporter {
namespace {

namespace fs = std::filesystem;

void Spit(const std::string& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

ManifestEntry Entry(char c, std::string rcpt, std::string sender) {
  return {std::string(32, c), std::string(64, c), std::move(rcpt), std::move(sender)};
}

TEST(MatchUndeliverableTest, MatchesInBatchOrderAndCountsStrays) {
  format::ImportMessage a, b, stray;
  a.to = {"Doe, Jane"};
  a.subject = "first";
  b.cc = {"Doe, Jane at HQ"};
  b.subject = "second";
  stray.to = {"Doe, Janet at HQ"};
  std::vector<ManifestEntry> man{Entry('1', "Doe, Jane", "x@a.example"), Entry('2', "Roe, Rick", "y@b.example"),
                                 Entry('3', "Doe, Jane", "z@c.example")};
  size_t unmatched = 0;
  auto t = MatchUndeliverable({a, stray, b}, man, &unmatched);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].delivery.sender, "x@a.example");
  EXPECT_EQ(t[0].subject, "first");
  EXPECT_EQ(t[1].delivery.sender, "z@c.example");
  EXPECT_EQ(unmatched, 1u);
}

TEST(BounceRelayTest, ParsesHostAndPort) {
  BounceRelay r;
  ASSERT_TRUE(BounceRelay::Parse("127.0.0.1:25", &r).ok());
  EXPECT_EQ(r.host, "127.0.0.1");
  EXPECT_EQ(r.port, 25);
  ASSERT_TRUE(BounceRelay::Parse("mail.example", &r).ok());
  EXPECT_EQ(r.port, 25);
  ASSERT_TRUE(BounceRelay::Parse("[::1]:2525", &r).ok());
  EXPECT_EQ(r.host, "::1");
  EXPECT_EQ(r.port, 2525);
  EXPECT_EQ(r.ToString(), "[::1]:2525");
  for (const char* bad : {"", ":25", "host:", "host:0", "host:70000", "host:2x", "::1:25", "[::1]x", "[::1"})
    EXPECT_FALSE(BounceRelay::Parse(bad, &r).ok()) << bad;
}

// A loopback SMTP server: each connection gets the next scripted behaviour and records the
// transaction.
class SmtpSink {
 public:
  enum class Mode { kAccept, kTempfailRcpt, kRejectRcpt, kTempfailDot };
  SmtpSink() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    EXPECT_EQ(::listen(fd_, 8), 0);
    thread_ = std::thread([this] { Serve(); });
  }
  ~SmtpSink() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  void SetMode(Mode m) {
    std::lock_guard<std::mutex> g(mu_);
    mode_ = m;
  }
  uint16_t port() const { return port_; }
  std::vector<std::string> transcripts() {
    std::lock_guard<std::mutex> g(mu_);
    return transcripts_;
  }

 private:
  void Serve() {
    while (!stop_) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      Mode m;
      {
        std::lock_guard<std::mutex> g(mu_);
        m = mode_;
      }
      std::string t = Session(c, m);
      ::close(c);
      std::lock_guard<std::mutex> g(mu_);
      transcripts_.push_back(t);
    }
  }
  static bool ReadLine(int c, std::string* buf, std::string* line) {
    for (;;) {
      size_t eol = buf->find("\r\n");
      if (eol != std::string::npos) {
        *line = buf->substr(0, eol);
        buf->erase(0, eol + 2);
        return true;
      }
      char tmp[4096];
      ssize_t n = ::read(c, tmp, sizeof tmp);
      if (n <= 0) return false;
      buf->append(tmp, static_cast<size_t>(n));
    }
  }
  static void Say(int c, const std::string& s) { (void)!::write(c, (s + "\r\n").data(), s.size() + 2); }
  static std::string Session(int c, Mode m) {
    std::string buf, line, t;
    Say(c, "220 sink ESMTP");
    bool data = false;
    while (ReadLine(c, &buf, &line)) {
      if (data) {
        if (line == ".") {
          data = false;
          t += ".\n";
          Say(c, m == Mode::kTempfailDot ? "451 4.3.0 try later" : "250 2.0.0 Ok: queued as SINK1");
          continue;
        }
        t += line + "\n";
        continue;
      }
      t += line + "\n";
      if (line.rfind("EHLO", 0) == 0) {
        Say(c, "250-sink");
        Say(c, "250 8BITMIME");
      } else if (line.rfind("RCPT", 0) == 0) {
        Say(c, m == Mode::kTempfailRcpt ? "451 4.7.1 greylisted" : m == Mode::kRejectRcpt ? "550 5.1.1 no such user" : "250 2.1.5 Ok");
      } else if (line == "DATA") {
        Say(c, "354 go ahead");
        data = true;
      } else if (line == "QUIT") {
        Say(c, "221 bye");
        break;
      } else {
        Say(c, "250 2.0.0 Ok");
      }
    }
    return t;
  }

  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  Mode mode_ = Mode::kAccept;
  std::vector<std::string> transcripts_;
  std::thread thread_;
};

size_t Files(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) ++n;
  return n;
}

struct BounceFixture : ::testing::Test {
  void SetUp() override {
    // A real import file made by the converter serves as the .UND.
    const char* src = std::getenv("CCMAIL_SOURCE_DIR");
    std::string eml = std::string(src ? src : CCMAIL_TEST_SOURCE_DIR) + "/tests/corpus/01-plain-ascii.eml";
    int fd = ::open(eml.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << eml;
    struct stat st;
    ASSERT_EQ(::fstat(fd, &st), 0);
    format::Converter conv(settings);
    format::ConvertInput in;
    in.fd = fd;
    in.length = static_cast<uint64_t>(st.st_size);
    in.envelope_sender = "bob@partner.example";
    in.recipients = {{"jane@corp.example", {"Doe, Jane", "HQ"}}};
    in.received = 1700000000;
    format::StringSink sink;
    format::ConvertResult cr;
    Status cs = conv.Convert(in, &sink, &cr);
    ::close(fd);
    ASSERT_TRUE(cs.ok()) << cs.message();
    Spit(dir + "/00100001.UND", sink.str());
    Spit(dir + "/00100001.MAN",
         FormatManifest(1, 1, "HQ", "00100001.CCM",
                        {Entry('a', "Roe, Rick", "other@x.example"), Entry('b', "Doe, Jane", "bob@partner.example")}));
  }
  std::unique_ptr<BounceQueue> Queue(uint16_t port) {
    BounceRelay relay;
    relay.port = port;
    relay.timeout = std::chrono::seconds(10);
    std::unique_ptr<BounceQueue> q;
    EXPECT_TRUE(BounceQueue::Open(dir + "/bounce", relay, std::chrono::seconds(1), std::chrono::seconds(2), &q).ok());
    return q;
  }
  Status Bounce(BounceQueue* q, int* queued, size_t* unmatched) {
    return BounceUndeliverable(dir + "/00100001.UND", dir + "/00100001.MAN", "HQ", q, settings, queued, unmatched);
  }
  test::TempDir temp{"ccmail-bounce"};
  std::string dir = temp.path();
  format::FormatSettings settings;
};

// A .UND leads to one RFC 3464 notice per undeliverable delivery, over SMTP with the null
// sender; it stays queued (durably) through a refused connection and a 4xx, and is removed
// only after the 250.
TEST_F(BounceFixture, NoticeIsQueuedDurablyAndRemovedOnlyAfterThe250) {
  SmtpSink sink;
  // A port with nothing listening: the relay is down.
  int probe = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(probe, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(probe, reinterpret_cast<sockaddr*>(&a), &len);
  const uint16_t dead_port = ntohs(a.sin_port);
  ::close(probe);

  auto down = Queue(dead_port);
  int queued = 0;
  size_t unmatched = 0;
  ASSERT_TRUE(Bounce(down.get(), &queued, &unmatched).ok());
  EXPECT_EQ(queued, 1);
  EXPECT_EQ(unmatched, 0u);
  EXPECT_EQ(down->Pending(), 1u);
  BounceFlushResult r = down->Flush();
  EXPECT_EQ(r.deferred, 1);
  EXPECT_EQ(down->Pending(), 1u) << "a notice the MTA did not take must stay queued";
  // Queueing the same .UND again (the deliver job retried) adds no second notice.
  ASSERT_TRUE(Bounce(down.get(), &queued, &unmatched).ok());
  EXPECT_EQ(down->Pending(), 1u);
  down.reset();

  // A new exporter run finds it; the MTA answers 451 to RCPT, then 451 to the final dot.
  auto q = Queue(sink.port());
  sink.SetMode(SmtpSink::Mode::kTempfailRcpt);
  r = q->Flush();
  EXPECT_EQ(r.deferred, 1);
  EXPECT_EQ(q->Pending(), 1u);
  sink.SetMode(SmtpSink::Mode::kTempfailDot);
  r = q->Flush();
  EXPECT_EQ(r.deferred, 1);
  EXPECT_EQ(q->Pending(), 1u);
  sink.SetMode(SmtpSink::Mode::kAccept);
  r = q->Flush();
  EXPECT_EQ(r.sent, 1);
  EXPECT_EQ(q->Pending(), 0u);
  EXPECT_EQ(Files(dir + "/bounce"), 0u);

  auto t = sink.transcripts();
  ASSERT_EQ(t.size(), 3u);
  const std::string& mail = t.back();
  EXPECT_NE(mail.find("MAIL FROM:<>\n"), std::string::npos) << mail;
  EXPECT_NE(mail.find("RCPT TO:<bob@partner.example>\n"), std::string::npos) << mail;
  EXPECT_NE(mail.find("To: <bob@partner.example>"), std::string::npos) << mail;
  EXPECT_NE(mail.find("Content-Type: multipart/report; report-type=delivery-status;"), std::string::npos) << mail;
  EXPECT_NE(mail.find("Content-Type: message/delivery-status"), std::string::npos) << mail;
  EXPECT_NE(mail.find("Final-Recipient: x-ccmail; Doe, Jane at HQ\n"), std::string::npos) << mail;
  EXPECT_NE(mail.find("Action: failed\nStatus: 5.1.1\n"), std::string::npos) << mail;
  EXPECT_NE(mail.find("Corpus message"), std::string::npos) << mail;
  EXPECT_NE(mail.find(std::string(32, 'b')), std::string::npos) << mail;
  EXPECT_EQ(mail.find(std::string(32, 'a')), std::string::npos) << "only the undeliverable delivery is bounced";
}

TEST_F(BounceFixture, PermanentRefusalKeepsTheNoticeForThePostmaster) {
  SmtpSink sink;
  sink.SetMode(SmtpSink::Mode::kRejectRcpt);
  auto q = Queue(sink.port());
  ASSERT_TRUE(q->Add("q-1", "gone@example.org", "Subject: x\n\n.leading dot\nbody\n").ok());
  BounceFlushResult r = q->Flush();
  EXPECT_EQ(r.rejected, 1);
  EXPECT_EQ(q->Pending(), 0u);
  EXPECT_TRUE(fs::exists(dir + "/bounce/rejected/q-1.msg"));
  EXPECT_FALSE(q->Add("../x", "a@b", "x").ok());
  EXPECT_FALSE(q->Add("q-2", "a@b>\r\nRCPT TO:<c@d", "x").ok());
}

TEST_F(BounceFixture, SenderThreadRetriesUntilAccepted) {
  SmtpSink sink;
  sink.SetMode(SmtpSink::Mode::kTempfailRcpt);
  auto q = Queue(sink.port());
  q->Start();
  ASSERT_TRUE(q->Add("q-1", "a@example.org", "Subject: x\n\n..two dots\n.\nend\n").ok());
  for (int i = 0; i < 100 && sink.transcripts().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(q->Pending(), 1u);
  sink.SetMode(SmtpSink::Mode::kAccept);
  for (int i = 0; i < 300 && q->Pending() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(q->Pending(), 0u) << "retried after retry_min (1 s)";
  auto t = sink.transcripts();
  ASSERT_GE(t.size(), 2u);
  // Dot-stuffed on the wire: a line starting with '.' got another one.
  EXPECT_NE(t.back().find("\n...two dots\n..\nend\n.\n"), std::string::npos) << t.back();
}

}  // namespace
}  // namespace ccmail::exporter
