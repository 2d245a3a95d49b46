// fake_smtp_server.h - an in-process SMTP server for tests, with scripted replies.
//
// SYNOPSIS
//   FakeSmtpServer server;                         // 127.0.0.1, a free port, its own thread
//   server.script = [](const std::string& cmd) -> std::optional<std::string> {
//     if (cmd.rfind("RCPT TO:<bad@", 0) == 0) return "550 5.1.1 no such user";
//     return std::nullopt;                         // the default reply
//   };
//   ... connect to server.endpoint() ...
//   server.messages()  // every message answered 250: envelope + data (dot-unstuffed)
//
// The default replies: greeting 220, EHLO 250 with PIPELINING (unless pipelining = false),
// MAIL/RCPT/RSET 250, DATA 354, the final dot 250, QUIT 221. `script` sees every command
// line (without CRLF) and "." for the end of the data, and may return another reply (several
// lines separated by \r\n), "" for no reply at all (a server that hangs), or "CLOSE" to drop
// the connection. A message is recorded BEFORE its 250 is written (as a real MTA queues it
// first). chunks() records the command lines that arrived in each read(), to see pipelining.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ccmail/smtp/client.h"

namespace ccmail::test {

struct ReceivedMail {
  std::string from;
  std::vector<std::string> recipients;  // accepted ones
  std::string data;                     // unstuffed, CRLF lines, without the final dot
};

class FakeSmtpServer {
 public:
  std::function<std::optional<std::string>(const std::string&)> script;
  // Called with each message before its 250 (the kill test's sink writes it to disk here).
  std::function<void(const ReceivedMail&)> on_message;
  bool pipelining = true;

  FakeSmtpServer() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(listen_fd_, 16);
  }
  ~FakeSmtpServer() { Stop(); }

  // Starts the accept thread (after script/pipelining are set).
  void Start() {
    thread_ = std::thread([this] { Serve(); });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (listen_fd_ >= 0) ::close(listen_fd_);
    listen_fd_ = -1;
  }
  // Serves in the calling thread until `stop` (the kill test's sink process).
  void ServeForever() { Serve(); }

  smtp::Endpoint endpoint() const {
    smtp::Endpoint e;
    e.host = "127.0.0.1";
    e.port = port_;
    return e;
  }
  std::vector<ReceivedMail> messages() const {
    std::lock_guard<std::mutex> g(mu_);
    return messages_;
  }
  std::vector<std::vector<std::string>> chunks() const {
    std::lock_guard<std::mutex> g(mu_);
    return chunks_;
  }
  std::vector<std::string> commands() const {
    std::lock_guard<std::mutex> g(mu_);
    return commands_;
  }
  int sessions() const { return sessions_; }

 private:
  void Serve() {
    while (!stop_) {
      pollfd p = {listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      ++sessions_;
      Session(fd);
      ::close(fd);
    }
  }

  bool Send(int fd, const std::string& reply) {
    std::string out = reply + "\r\n";
    return ::send(fd, out.data(), out.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(out.size());
  }

  // false: close the connection.
  bool Answer(int fd, const std::string& cmd, const std::string& fallback) {
    std::optional<std::string> r = script ? script(cmd) : std::nullopt;
    const std::string reply = r ? *r : fallback;
    if (reply == "CLOSE") return false;
    if (reply.empty()) return true;  // hang: no reply
    last_code_ = reply.substr(0, 3);
    return Send(fd, reply);
  }

  void Session(int fd) {
    std::string in;
    ReceivedMail mail;
    bool in_data = false;
    std::string data;
    if (!Answer(fd, "<connect>", "220 fake.test ESMTP")) return;
    while (!stop_) {
      pollfd p = {fd, POLLIN, 0};
      int n = ::poll(&p, 1, 50);
      if (n <= 0) continue;
      char buf[65536];
      ssize_t r = ::read(fd, buf, sizeof buf);
      if (r <= 0) return;
      in.append(buf, static_cast<size_t>(r));
      std::vector<std::string> chunk;
      for (size_t eol; (eol = in.find("\r\n")) != std::string::npos;) {
        std::string line = in.substr(0, eol);
        in.erase(0, eol + 2);
        if (in_data) {
          if (line == ".") {
            in_data = false;
            mail.data = data;
            std::optional<std::string> s = script ? script(".") : std::nullopt;
            const std::string reply = s ? *s : "250 2.0.0 Ok: queued";
            if (reply == "CLOSE") return;
            if (reply.rfind("250", 0) == 0) {
              if (on_message) on_message(mail);
              std::lock_guard<std::mutex> g(mu_);
              messages_.push_back(mail);
            }
            if (!reply.empty() && !Send(fd, reply)) return;
            mail = ReceivedMail{};
            continue;
          }
          data += (!line.empty() && line[0] == '.' ? line.substr(1) : line) + "\r\n";
          continue;
        }
        chunk.push_back(line);
        {
          std::lock_guard<std::mutex> g(mu_);
          commands_.push_back(line);
        }
        const std::string upper = Upper(line.substr(0, 10));
        std::string fallback = "250 2.0.0 Ok";
        if (upper.rfind("EHLO", 0) == 0)
          fallback = pipelining ? "250-fake.test\r\n250-PIPELINING\r\n250 8BITMIME" : "250-fake.test\r\n250 8BITMIME";
        else if (upper.rfind("QUIT", 0) == 0)
          fallback = "221 2.0.0 Bye";
        else if (upper.rfind("DATA", 0) == 0)
          fallback = mail.recipients.empty() ? "554 5.5.1 no valid recipients" : "354 End data with <CR><LF>.<CR><LF>";
        if (upper.rfind("MAIL FROM:", 0) == 0) {
          mail = ReceivedMail{};
          mail.from = Between(line);
        }
        if (!Answer(fd, line, fallback)) return;
        if (upper.rfind("RCPT TO:", 0) == 0 && last_code_[0] == '2') mail.recipients.push_back(Between(line));
        if (upper.rfind("DATA", 0) == 0 && last_code_ == "354") {
          in_data = true;
          data.clear();
        }
        if (upper.rfind("RSET", 0) == 0) mail = ReceivedMail{};
        if (upper.rfind("QUIT", 0) == 0) return;
      }
      if (!chunk.empty()) {
        std::lock_guard<std::mutex> g(mu_);
        chunks_.push_back(chunk);
      }
    }
  }

  static std::string Upper(std::string s) {
    for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
  }
  static std::string Between(const std::string& line) {
    size_t a = line.find('<'), b = line.rfind('>');
    return a == std::string::npos || b == std::string::npos || b < a ? "" : line.substr(a + 1, b - a - 1);
  }

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> sessions_{0};
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<ReceivedMail> messages_;
  std::vector<std::vector<std::string>> chunks_;
  std::vector<std::string> commands_;
  std::string last_code_ = "000";
};

}  // namespace ccmail::test
