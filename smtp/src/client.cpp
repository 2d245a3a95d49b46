// SMTP client session: blocking writes, replies awaited with poll() against a deadline.
#include "ccmail/smtp/client.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>

namespace ccmail::smtp {
namespace {

using Clock = std::chrono::steady_clock;

std::string HostName() {
  char h[256] = {};
  if (::gethostname(h, sizeof h - 1) != 0 || h[0] == '\0') return "localhost";
  return h;
}

bool SafeAddress(const std::string& a) { return a.find_first_of("<>\r\n") == std::string::npos; }

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

bool IsPermanent(const Status& s) { return s.code() == Status::Code::kInvalidArgument; }

Status Endpoint::Parse(std::string_view spec, std::string_view setting, Endpoint* out) {
  Endpoint r;
  const std::string s(spec);
  const std::string name = std::string(setting) + " '" + s + "'";
  std::string port;
  bool has_port = false;
  if (!s.empty() && s[0] == '[') {
    size_t close = s.find(']');
    if (close == std::string::npos) return Status::InvalidArgument(name + ": missing ']'");
    r.host = s.substr(1, close - 1);
    if (close + 1 < s.size()) {
      if (s[close + 1] != ':') return Status::InvalidArgument(name + ": expected ':' after ']'");
      port = s.substr(close + 2);
      has_port = true;
    }
  } else {
    size_t colon = s.rfind(':');
    if (colon != std::string::npos && s.find(':') != colon)
      return Status::InvalidArgument(name + ": write an IPv6 address as [address]:port");
    r.host = s.substr(0, colon);
    if (colon != std::string::npos) {
      port = s.substr(colon + 1);
      has_port = true;
    }
  }
  if (r.host.empty()) return Status::InvalidArgument(name + ": no host");
  if (has_port) {
    char* end = nullptr;
    unsigned long p = std::strtoul(port.c_str(), &end, 10);
    if (port.empty() || *end != '\0' || p == 0 || p > 65535)
      return Status::InvalidArgument(name + ": the port must be 1-65535");
    r.port = static_cast<uint16_t>(p);
  }
  *out = std::move(r);
  return Status::Ok();
}

std::string Endpoint::ToString() const {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string DotStuff(std::string_view message) {
  std::string out;
  out.reserve(message.size() + message.size() / 40 + 8);
  bool bol = true;
  for (size_t i = 0; i < message.size(); ++i) {
    char c = message[i];
    if (bol && c == '.') out.push_back('.');
    bol = false;
    if (c == '\r' && i + 1 < message.size() && message[i + 1] == '\n') continue;
    if (c == '\n') {
      out.append("\r\n");
      bol = true;
      continue;
    }
    out.push_back(c);
  }
  if (!bol) out.append("\r\n");
  out.append(".\r\n");
  return out;
}

Client::Client(Endpoint relay, ClientOptions options)
    : relay_(std::move(relay)), options_(std::move(options)), relay_name_(relay_.ToString()) {}

Client::~Client() = default;

Status Client::Connect() {
  struct addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  struct addrinfo* res = nullptr;
  const std::string port = std::to_string(relay_.port);
  int rc = ::getaddrinfo(relay_.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) return Status::Unavailable("SMTP relay " + relay_name_ + ": " + ::gai_strerror(rc));
  int last = ECONNREFUSED;
  const int timeout_ms = static_cast<int>(options_.timeout.count());
  for (auto* ai = res; ai != nullptr && !fd_.valid(); ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol));
    if (!fd.valid()) {
      last = errno;
      continue;
    }
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        last = errno;
        continue;
      }
      struct pollfd p = {fd.get(), POLLOUT, 0};
      int n;
      do n = ::poll(&p, 1, timeout_ms);
      while (n < 0 && errno == EINTR);
      if (n == 0) {
        last = ETIMEDOUT;
        continue;
      }
      int err = 0;
      socklen_t len = sizeof err;
      if (n < 0 || ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        last = n < 0 ? errno : (err ? err : errno);
        continue;
      }
    }
    // Blocking from here: writes wait at most the time-out, reads go through poll().
    ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
    struct timeval tv = {static_cast<time_t>(timeout_ms / 1000), static_cast<suseconds_t>((timeout_ms % 1000) * 1000)};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    fd_ = std::move(fd);
  }
  ::freeaddrinfo(res);
  if (!fd_.valid()) return Status::FromErrno("connect to SMTP relay " + relay_name_, last);
  return Status::Ok();
}

Status Client::Write(std::string_view data, const char* what) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd_.get(), data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return Status::Unavailable("SMTP relay " + relay_name_ + ": " + what + " not taken within " +
                                   std::to_string(options_.timeout.count()) + "ms");
      return Status::FromErrno(std::string("write ") + what + " to SMTP relay " + relay_name_, errno);
    }
    off += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status Client::ReadReply(Reply* reply, const char* what) {
  *reply = Reply{};
  const auto deadline = Clock::now() + options_.timeout;
  for (;;) {
    size_t eol = in_.find('\n');
    if (eol == std::string::npos) {
      if (in_.size() > 64 * 1024) return Status::Unavailable("SMTP relay " + relay_name_ + ": reply line too long");
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      struct pollfd p = {fd_.get(), POLLIN, 0};
      int n = left > 0 ? ::poll(&p, 1, static_cast<int>(left)) : 0;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::FromErrno("poll SMTP relay " + relay_name_, errno);
      if (n == 0)
        return Status::Unavailable("SMTP relay " + relay_name_ + ": no reply to " + what + " within " +
                                   std::to_string(options_.timeout.count()) + "ms");
      char buf[4096];
      ssize_t r = ::read(fd_.get(), buf, sizeof buf);
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (r < 0) return Status::FromErrno("read from SMTP relay " + relay_name_, errno);
      if (r == 0) return Status::Unavailable("SMTP relay " + relay_name_ + " closed the connection (awaiting the reply to " + what + ")");
      in_.append(buf, static_cast<size_t>(r));
      continue;
    }
    std::string line = in_.substr(0, eol);
    in_.erase(0, eol + 1);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const bool digits = line.size() >= 3 && std::isdigit(static_cast<unsigned char>(line[0])) &&
                        std::isdigit(static_cast<unsigned char>(line[1])) &&
                        std::isdigit(static_cast<unsigned char>(line[2])) && (line.size() == 3 || line[3] == ' ' || line[3] == '-');
    if (!digits)
      return Status::Unavailable("SMTP relay " + relay_name_ + ": not an SMTP reply to " + what + ": " + line.substr(0, 80));
    const int code = std::atoi(line.substr(0, 3).c_str());
    if (reply->code != 0 && reply->code != code)
      return Status::Unavailable("SMTP relay " + relay_name_ + ": mixed codes in one reply to " + what + ": " + line.substr(0, 80));
    reply->code = code;
    reply->line = line;
    if (line.size() > 3 && line[3] == '-') {
      if (std::string_view(what) == "EHLO") extensions_.push_back(Upper(line.substr(4)));
      continue;
    }
    if (std::string_view(what) == "EHLO" && line.size() > 4) extensions_.push_back(Upper(line.substr(4)));
    last_ = *reply;
    return Status::Ok();
  }
}

Status Client::Expect(int want_class, const char* what, Reply* out) {
  Reply r;
  CCMAIL_RETURN_IF_ERROR(ReadReply(&r, what));
  if (out) *out = r;
  if (r.code / 100 == want_class) return Status::Ok();
  std::string msg = "SMTP relay " + relay_name_ + " answered " + what + ": " + r.line;
  return r.permanent() ? Status::InvalidArgument(msg) : Status::Unavailable(msg);
}

Status Client::Open() {
  CCMAIL_RETURN_IF_ERROR(Connect());
  CCMAIL_RETURN_IF_ERROR(Expect(2, "the greeting"));
  const std::string helo = options_.helo_name.empty() ? HostName() : options_.helo_name;
  CCMAIL_RETURN_IF_ERROR(Write("EHLO " + helo + "\r\n", "EHLO"));
  extensions_.clear();
  Status s = Expect(2, "EHLO");
  if (s.ok()) {
    esmtp_ = true;
    for (size_t i = 1; i < extensions_.size(); ++i)  // the first line is the greeting
      if (extensions_[i] == "PIPELINING" || extensions_[i].rfind("PIPELINING ", 0) == 0) pipelining_ = true;
    return Status::Ok();
  }
  if (!IsPermanent(s)) return s;
  extensions_.clear();
  CCMAIL_RETURN_IF_ERROR(Write("HELO " + helo + "\r\n", "HELO"));
  return Expect(2, "HELO");
}

Status Client::Envelope(const std::string& from, const std::vector<std::string>& recipients,
                        std::vector<Reply>* rcpt_replies) {
  rcpt_replies->clear();
  if (!SafeAddress(from)) return Status::InvalidArgument("SMTP: bad envelope sender '" + from + "'");
  for (const auto& r : recipients)
    if (r.empty() || !SafeAddress(r)) return Status::InvalidArgument("SMTP: bad recipient '" + r + "'");
  if (recipients.empty()) return Status::InvalidArgument("SMTP: no recipient");
  const std::string mail = "MAIL FROM:<" + from + ">\r\n";
  if (pipelining_) {
    // RFC 2920: the whole envelope in one write, then the replies in order.
    std::string batch = mail;
    for (const auto& r : recipients) batch += "RCPT TO:<" + r + ">\r\n";
    CCMAIL_RETURN_IF_ERROR(Write(batch, "MAIL FROM and RCPT TO"));
    Reply mail_reply;
    CCMAIL_RETURN_IF_ERROR(ReadReply(&mail_reply, "MAIL FROM"));
    for (size_t i = 0; i < recipients.size(); ++i) {
      Reply r;
      CCMAIL_RETURN_IF_ERROR(ReadReply(&r, "RCPT TO"));
      rcpt_replies->push_back(r);
    }
    if (mail_reply.code / 100 != 2) {
      rcpt_replies->clear();
      std::string msg = "SMTP relay " + relay_name_ + " answered MAIL FROM:<" + from + ">: " + mail_reply.line;
      return mail_reply.permanent() ? Status::InvalidArgument(msg) : Status::Unavailable(msg);
    }
    return Status::Ok();
  }
  CCMAIL_RETURN_IF_ERROR(Write(mail, "MAIL FROM"));
  Status s = Expect(2, "MAIL FROM");
  if (!s.ok()) return s;
  for (const auto& r : recipients) {
    CCMAIL_RETURN_IF_ERROR(Write("RCPT TO:<" + r + ">\r\n", "RCPT TO"));
    Reply reply;
    CCMAIL_RETURN_IF_ERROR(ReadReply(&reply, "RCPT TO"));
    rcpt_replies->push_back(reply);
  }
  return Status::Ok();
}

Status Client::Data(std::string_view message, Reply* final_reply) {
  *final_reply = Reply{};
  CCMAIL_RETURN_IF_ERROR(Write("DATA\r\n", "DATA"));
  CCMAIL_RETURN_IF_ERROR(Expect(3, "DATA", final_reply));
  CCMAIL_RETURN_IF_ERROR(Write(DotStuff(message), "the message"));
  return Expect(2, "the end of the message", final_reply);
}

Status Client::Reset() {
  CCMAIL_RETURN_IF_ERROR(Write("RSET\r\n", "RSET"));
  return Expect(2, "RSET");
}

void Client::Quit() {
  if (!fd_.valid()) return;
  if (Write("QUIT\r\n", "QUIT").ok()) {
    Reply r;
    const Reply keep = last_;
    (void)ReadReply(&r, "QUIT");
    last_ = keep;  // the interesting reply is the one before
  }
  fd_.reset();
}

Status SendMail(const Endpoint& relay, const ClientOptions& options, const std::string& from,
                const std::vector<std::string>& recipients, std::string_view message, std::string* reply) {
  Client c(relay, options);
  auto done = [&](Status st) {
    if (reply) *reply = c.last_reply().line;
    return st;
  };
  Status s = c.Open();
  if (!s.ok()) return done(s);
  std::vector<Reply> rcpt;
  if (s = c.Envelope(from, recipients, &rcpt); !s.ok()) return done(s);
  for (size_t i = 0; i < rcpt.size(); ++i) {
    if (rcpt[i].code / 100 == 2) continue;
    std::string msg = "SMTP relay " + c.relay_name() + " answered RCPT TO:<" + recipients[i] + ">: " + rcpt[i].line;
    if (reply) *reply = rcpt[i].line;
    return rcpt[i].permanent() ? Status::InvalidArgument(msg) : Status::Unavailable(msg);
  }
  Reply final_reply;
  if (s = c.Data(message, &final_reply); !s.ok()) return done(s);
  c.Quit();
  if (reply) *reply = final_reply.line;
  return Status::Ok();
}

}  // namespace ccmail::smtp
