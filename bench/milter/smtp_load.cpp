// smtp-load: the load generator of bench/milter/run_postfix_bench.sh. Like smtp-source (N
// parallel sessions, one message per connection) but it also measures each message's latency:
// from sending MAIL FROM to reading the 250 after the final dot, the part of a transaction a
// milter can slow down. One thread, poll(), no pipelining (each command waits for its reply).
// Prints one line: messages, failures, seconds, msg/s, p50 and p99 latency in ms.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

enum class Phase { kConnect, kGreeting, kEhlo, kMail, kRcpt, kData, kBody, kQuit };

struct Session {
  int fd = -1;
  Phase phase = Phase::kConnect;
  std::string out;  // bytes still to send
  std::string in;   // bytes received, not yet a complete reply
  Clock::time_point mail_sent;
  Clock::time_point replied[4];  // the replies to MAIL, RCPT, DATA and the final dot
};

struct Options {
  sockaddr_in addr{};
  int sessions = 20;
  long messages = 1000;
  size_t size = 10240;
  std::string from, rcpt;
  double slow_ms = 0;  // SMTP_LOAD_SLOW_MS: report each message this slow, step by step
};

struct Totals {
  long started = 0, done = 0, failed = 0;
  std::vector<double> latency_ms;
  int errors_shown = 0;
};

std::string MakeMessage(const Options& o) {
  std::string m = "From: <" + o.from + ">\r\nTo: <" + o.rcpt + ">\r\nSubject: smtp-load\r\n\r\n";
  const std::string line(78, 'x');
  while (m.size() < o.size) m += line + "\r\n";
  return m + ".\r\n";
}

// A complete reply: its last line has a space after the code. Returns the code, 0 if incomplete.
int TakeReply(std::string* in) {
  size_t start = 0;
  while (true) {
    size_t eol = in->find("\r\n", start);
    if (eol == std::string::npos) return 0;
    if (eol - start >= 3 && (eol - start == 3 || (*in)[start + 3] == ' ')) {
      int code = std::atoi(in->substr(start, 3).c_str());
      in->erase(0, eol + 2);
      return code > 0 ? code : -1;
    }
    start = eol + 2;
  }
}

bool StartConnect(const Options& o, Session* s) {
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) return false;
  int one = 1;
  setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(s->fd, reinterpret_cast<const sockaddr*>(&o.addr), sizeof o.addr) != 0 && errno != EINPROGRESS) {
    close(s->fd);
    s->fd = -1;
    return false;
  }
  s->phase = Phase::kConnect;
  s->in.clear();
  s->out.clear();
  return true;
}

void Finish(Session* s) {
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
}

void Fail(Session* s, Totals* t, const char* what, int code) {
  if (t->errors_shown++ < 5) std::fprintf(stderr, "smtp-load: %s failed (reply %d)\n", what, code);
  ++t->failed;
  Finish(s);
}

// One line on stderr per slow message: how long each step waited for its reply, so that a
// stall can be placed (MAIL/RCPT/DATA: smtpd and the milter's envelope steps; dot: the
// content, cleanup and the queue file).
void ReportSlow(const Session& s, double total_ms) {
  auto ms = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  std::fprintf(stderr, "slow %.1f ms: MAIL %.1f RCPT %.1f DATA %.1f dot %.1f\n", total_ms, ms(s.mail_sent, s.replied[0]),
               ms(s.replied[0], s.replied[1]), ms(s.replied[1], s.replied[2]), ms(s.replied[2], s.replied[3]));
}

// The reply code each phase waits for, and the step's name for an error message.
struct Expected {
  int code;
  const char* what;
};

Expected ExpectedReply(Phase phase) {
  switch (phase) {
    case Phase::kConnect:
    case Phase::kGreeting: return {220, "greeting"};
    case Phase::kEhlo: return {250, "EHLO"};
    case Phase::kMail: return {250, "MAIL"};
    case Phase::kRcpt: return {250, "RCPT"};
    case Phase::kData: return {354, "DATA"};
    case Phase::kBody: return {250, "end of data"};
    case Phase::kQuit: return {221, "QUIT"};
  }
  return {0, "?"};
}

// Advances a session on one complete reply: checks it, then sends the next command.
void OnReply(const Options& o, const std::string& message, Session* s, Totals* t, int code) {
  if (s->phase == Phase::kQuit) return Finish(s);
  const Expected want = ExpectedReply(s->phase);
  if (code != want.code) return Fail(s, t, want.what, code);
  if (s->phase >= Phase::kMail && s->phase <= Phase::kBody)
    s->replied[static_cast<int>(s->phase) - static_cast<int>(Phase::kMail)] = Clock::now();
  switch (s->phase) {
    case Phase::kConnect:
    case Phase::kGreeting: s->out = "EHLO smtp-load.example\r\n", s->phase = Phase::kEhlo; break;
    case Phase::kEhlo:
      s->out = "MAIL FROM:<" + o.from + ">\r\n";
      s->mail_sent = Clock::now();  // the latency counts from here
      s->phase = Phase::kMail;
      break;
    case Phase::kMail: s->out = "RCPT TO:<" + o.rcpt + ">\r\n", s->phase = Phase::kRcpt; break;
    case Phase::kRcpt: s->out = "DATA\r\n", s->phase = Phase::kData; break;
    case Phase::kData: s->out = message, s->phase = Phase::kBody; break;
    case Phase::kBody:
      t->latency_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s->mail_sent).count());
      if (o.slow_ms > 0 && t->latency_ms.back() >= o.slow_ms) ReportSlow(*s, t->latency_ms.back());
      ++t->done;
      s->out = "QUIT\r\n";
      s->phase = Phase::kQuit;
      break;
    case Phase::kQuit: break;
  }
}

// Handles the poll events of one session: connect, send what is pending, take the replies.
void Service(const Options& o, const std::string& message, Session* s, Totals* t, short revents) {
  if (s->phase == Phase::kConnect && (revents & (POLLOUT | POLLERR | POLLHUP))) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return Fail(s, t, "connect", -err);
    s->phase = Phase::kGreeting;
  }
  if ((revents & POLLOUT) && !s->out.empty()) {
    ssize_t n = write(s->fd, s->out.data(), s->out.size());
    if (n < 0 && errno != EAGAIN) return Fail(s, t, "write", -errno);
    if (n > 0) s->out.erase(0, static_cast<size_t>(n));
  }
  if (revents & (POLLIN | POLLHUP | POLLERR)) {
    char buf[4096];
    ssize_t n = read(s->fd, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EAGAIN)) {
      if (s->phase == Phase::kQuit) return Finish(s);
      return Fail(s, t, "read (connection closed)", static_cast<int>(n));
    }
    if (n > 0) s->in.append(buf, static_cast<size_t>(n));
    for (int code; s->fd >= 0 && (code = TakeReply(&s->in)) != 0;) OnReply(o, message, s, t, code);
  }
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

bool ParseArgs(int argc, char** argv, Options* o) {
  if (argc != 8) return false;
  o->addr.sin_family = AF_INET;
  o->addr.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[2])));
  if (inet_pton(AF_INET, argv[1], &o->addr.sin_addr) != 1) return false;
  o->sessions = std::atoi(argv[3]);
  o->messages = std::atol(argv[4]);
  o->size = static_cast<size_t>(std::atol(argv[5]));
  o->from = argv[6];
  o->rcpt = argv[7];
  return o->sessions > 0 && o->messages > 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!ParseArgs(argc, argv, &o)) {
    std::fprintf(stderr, "usage: smtp-load HOST PORT SESSIONS MESSAGES SIZE FROM RCPT\n");
    return 2;
  }
  if (const char* slow = std::getenv("SMTP_LOAD_SLOW_MS")) o.slow_ms = std::atof(slow);
  const std::string message = MakeMessage(o);
  std::vector<Session> sessions(static_cast<size_t>(o.sessions));
  Totals t;
  t.latency_ms.reserve(static_cast<size_t>(o.messages));
  const auto t0 = Clock::now();
  std::vector<pollfd> pfds;
  while (t.done + t.failed < o.messages) {
    pfds.clear();
    for (Session& s : sessions) {
      if (s.fd < 0 && t.started < o.messages) {
        if (!StartConnect(o, &s)) {
          std::perror("smtp-load: connect");
          return 1;
        }
        ++t.started;
      }
      if (s.fd >= 0) {
        short ev = POLLIN;
        if (s.phase == Phase::kConnect || !s.out.empty()) ev |= POLLOUT;
        pfds.push_back({s.fd, ev, 0});
      }
    }
    if (pfds.empty()) break;
    if (poll(pfds.data(), pfds.size(), 60000) <= 0) {
      std::fprintf(stderr, "smtp-load: no progress for 60 s\n");
      return 1;
    }
    size_t k = 0;
    for (Session& s : sessions) {
      if (s.fd < 0 || k >= pfds.size() || pfds[k].fd != s.fd) continue;
      if (pfds[k].revents) Service(o, message, &s, &t, pfds[k].revents);
      ++k;
    }
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("messages %ld failed %ld seconds %.3f msg/s %.1f p50_ms %.2f p99_ms %.2f\n", t.done, t.failed, secs,
              static_cast<double>(t.done) / secs, Percentile(t.latency_ms, 0.5), Percentile(t.latency_ms, 0.99));
  return t.failed == 0 ? 0 : 1;
}
