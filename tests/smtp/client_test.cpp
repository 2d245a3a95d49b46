// smtp::Client against FakeSmtpServer: pipelining, per-recipient replies, HELO fallback,
// dot-stuffing, time-outs, garbage, and the permanent/temporary split of the Status.
#include "ccmail/smtp/client.h"

#include <gtest/gtest.h>

#include <chrono>

#include "fake_smtp_server.h"

namespace ccmail::smtp {
namespace {

using test::FakeSmtpServer;

ClientOptions Fast(int ms = 2000) {
  ClientOptions o;
  o.timeout = std::chrono::milliseconds(ms);
  o.helo_name = "client.test";
  return o;
}

TEST(SmtpEndpoint, ParsesHostPortAndIpv6) {
  Endpoint e;
  ASSERT_TRUE(Endpoint::Parse("mx.example:2525", "submit_relay", &e).ok());
  EXPECT_EQ(e.host, "mx.example");
  EXPECT_EQ(e.port, 2525);
  ASSERT_TRUE(Endpoint::Parse("[::1]:26", "submit_relay", &e).ok());
  EXPECT_EQ(e.host, "::1");
  EXPECT_EQ(e.ToString(), "[::1]:26");
  ASSERT_TRUE(Endpoint::Parse("localhost", "submit_relay", &e).ok());
  EXPECT_EQ(e.port, 25);
  Status s = Endpoint::Parse("::1:25", "submit_relay", &e);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("submit_relay"), std::string::npos);
  EXPECT_FALSE(Endpoint::Parse("host:0", "x", &e).ok());
  EXPECT_FALSE(Endpoint::Parse(":25", "x", &e).ok());
}

TEST(SmtpDotStuff, DoublesLeadingDotsAndEndsWithCrlfDot) {
  EXPECT_EQ(DotStuff("a\n.b\n..c"), "a\r\n..b\r\n...c\r\n.\r\n");
  EXPECT_EQ(DotStuff("x\r\n.\r\n"), "x\r\n..\r\n.\r\n");
  EXPECT_EQ(DotStuff(""), ".\r\n");
}

TEST(SmtpClient, PipelinesTheEnvelopeAndGetsAReplyPerRecipient) {
  FakeSmtpServer server;
  server.script = [](const std::string& cmd) -> std::optional<std::string> {
    if (cmd == "RCPT TO:<gone@example.net>") return "550 5.1.1 no such user";
    if (cmd == "RCPT TO:<full@example.net>") return "452 4.2.2 mailbox full";
    return std::nullopt;
  };
  server.Start();
  Client c(server.endpoint(), Fast());
  ASSERT_TRUE(c.Open().ok());
  EXPECT_TRUE(c.esmtp());
  EXPECT_TRUE(c.pipelining());
  std::vector<Reply> rcpt;
  ASSERT_TRUE(c.Envelope("jane@example.com", {"a@example.net", "gone@example.net", "full@example.net"}, &rcpt).ok());
  ASSERT_EQ(rcpt.size(), 3u);
  EXPECT_EQ(rcpt[0].code, 250);
  EXPECT_EQ(rcpt[1].code, 550);
  EXPECT_TRUE(rcpt[1].permanent());
  EXPECT_EQ(rcpt[2].code, 452);
  EXPECT_FALSE(rcpt[2].permanent());
  Reply done;
  ASSERT_TRUE(c.Data("Subject: hi\n\n.dot line\nend\n", &done).ok());
  EXPECT_EQ(done.code, 250);
  c.Quit();
  server.Stop();
  // MAIL and every RCPT arrived in one read: one write by the client.
  bool together = false;
  for (const auto& chunk : server.chunks())
    if (chunk.size() == 4 && chunk[0] == "MAIL FROM:<jane@example.com>" && chunk[3] == "RCPT TO:<full@example.net>")
      together = true;
  EXPECT_TRUE(together);
  auto mails = server.messages();
  ASSERT_EQ(mails.size(), 1u);
  EXPECT_EQ(mails[0].recipients, (std::vector<std::string>{"a@example.net"}));
  EXPECT_EQ(mails[0].data, "Subject: hi\r\n\r\n.dot line\r\nend\r\n");
}

TEST(SmtpClient, WithoutPipeliningWaitsForEachReply) {
  FakeSmtpServer server;
  server.pipelining = false;
  server.Start();
  Client c(server.endpoint(), Fast());
  ASSERT_TRUE(c.Open().ok());
  EXPECT_FALSE(c.pipelining());
  std::vector<Reply> rcpt;
  ASSERT_TRUE(c.Envelope("j@x", {"a@y", "b@y"}, &rcpt).ok());
  c.Quit();
  server.Stop();
  for (const auto& chunk : server.chunks()) EXPECT_EQ(chunk.size(), 1u) << chunk[0];
}

TEST(SmtpClient, FallsBackToHeloWhenEhloIsRefused) {
  FakeSmtpServer server;
  server.script = [](const std::string& cmd) -> std::optional<std::string> {
    if (cmd.rfind("EHLO", 0) == 0) return "502 5.5.2 what?";
    return std::nullopt;
  };
  server.Start();
  std::string reply;
  ASSERT_TRUE(SendMail(server.endpoint(), Fast(), "", {"a@y"}, "x\n", &reply).ok()) << reply;
  server.Stop();
  auto cmds = server.commands();
  ASSERT_GE(cmds.size(), 2u);
  EXPECT_EQ(cmds[1], "HELO client.test");
  EXPECT_EQ(cmds[2], "MAIL FROM:<>");
}

TEST(SmtpClient, FiveHundredsArePermanentFourHundredsTemporary) {
  for (const char* reply : {"554 5.7.1 go away", "451 4.3.0 try later"}) {
    FakeSmtpServer server;
    const std::string r = reply;
    server.script = [r](const std::string& cmd) -> std::optional<std::string> {
      if (cmd == ".") return r;
      return std::nullopt;
    };
    server.Start();
    std::string last;
    Status s = SendMail(server.endpoint(), Fast(), "j@x", {"a@y"}, "body\n", &last);
    server.Stop();
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(IsPermanent(s), r[0] == '5') << s.ToString();
    EXPECT_EQ(last, r);
    EXPECT_NE(s.message().find("the end of the message"), std::string::npos) << s.ToString();
  }
}

TEST(SmtpClient, ARefusedRecipientFailsSendMail) {
  FakeSmtpServer server;
  server.script = [](const std::string& cmd) -> std::optional<std::string> {
    if (cmd.rfind("RCPT", 0) == 0) return "550 5.1.1 unknown";
    return std::nullopt;
  };
  server.Start();
  Status s = SendMail(server.endpoint(), Fast(), "", {"a@y"}, "x\n", nullptr);
  server.Stop();
  EXPECT_TRUE(IsPermanent(s)) << s.ToString();
  EXPECT_TRUE(server.messages().empty());
}

TEST(SmtpClient, MailFromRefusedIsAnError) {
  FakeSmtpServer server;
  server.script = [](const std::string& cmd) -> std::optional<std::string> {
    if (cmd.rfind("MAIL", 0) == 0) return "553 5.1.8 bad sender";
    if (cmd.rfind("RCPT", 0) == 0) return "503 5.5.1 need MAIL";
    return std::nullopt;
  };
  server.Start();
  Client c(server.endpoint(), Fast());
  ASSERT_TRUE(c.Open().ok());
  std::vector<Reply> rcpt;
  Status s = c.Envelope("bad@x", {"a@y", "b@y"}, &rcpt);
  EXPECT_TRUE(IsPermanent(s)) << s.ToString();
  // Every pipelined reply was read: the session stays in step for RSET.
  EXPECT_TRUE(c.Reset().ok());
  c.Quit();
  server.Stop();
}

TEST(SmtpClient, NoReplyWithinTheTimeoutIsTemporary) {
  FakeSmtpServer server;
  server.script = [](const std::string& cmd) -> std::optional<std::string> {
    if (cmd == ".") return std::string();  // swallows the message, never answers
    return std::nullopt;
  };
  server.Start();
  const auto start = std::chrono::steady_clock::now();
  Status s = SendMail(server.endpoint(), Fast(300), "j@x", {"a@y"}, "x\n", nullptr);
  const auto took = std::chrono::steady_clock::now() - start;
  server.Stop();
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("no reply"), std::string::npos) << s.ToString();
  EXPECT_LT(took, std::chrono::seconds(3));
}

TEST(SmtpClient, GarbageAndClosedConnectionsAreTemporary) {
  {
    FakeSmtpServer server;
    server.script = [](const std::string& cmd) -> std::optional<std::string> {
      if (cmd == "<connect>") return "hello there, not SMTP";
      return std::nullopt;
    };
    server.Start();
    Status s = SendMail(server.endpoint(), Fast(), "j@x", {"a@y"}, "x\n", nullptr);
    server.Stop();
    EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
    EXPECT_NE(s.message().find("not an SMTP reply"), std::string::npos) << s.ToString();
  }
  {
    FakeSmtpServer server;
    server.script = [](const std::string& cmd) -> std::optional<std::string> {
      if (cmd == "DATA") return "CLOSE";
      return std::nullopt;
    };
    server.Start();
    Status s = SendMail(server.endpoint(), Fast(), "j@x", {"a@y"}, "x\n", nullptr);
    server.Stop();
    EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
    EXPECT_NE(s.message().find("closed"), std::string::npos) << s.ToString();
  }
}

TEST(SmtpClient, NobodyListeningIsAConnectError) {
  uint16_t port;
  {
    FakeSmtpServer gone;  // a port that was free a moment ago
    port = gone.endpoint().port;
  }
  Endpoint e;
  e.port = port;
  Status s = SendMail(e, Fast(), "j@x", {"a@y"}, "x\n", nullptr);
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(IsPermanent(s));
  EXPECT_NE(s.message().find("connect"), std::string::npos) << s.ToString();
}

TEST(SmtpClient, RefusesAddressesThatWouldInjectCommands) {
  FakeSmtpServer server;
  server.Start();
  Client c(server.endpoint(), Fast());
  ASSERT_TRUE(c.Open().ok());
  std::vector<Reply> rcpt;
  EXPECT_EQ(c.Envelope("j@x", {"a@y>\r\nRCPT TO:<evil@z"}, &rcpt).code(), Status::Code::kInvalidArgument);
  c.Quit();
  server.Stop();
  for (const auto& cmd : server.commands()) EXPECT_EQ(cmd.find("evil"), std::string::npos);
}

}  // namespace
}  // namespace ccmail::smtp
