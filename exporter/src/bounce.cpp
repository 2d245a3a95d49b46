// .UND -> delivery status notifications, queued durably and sent over SMTP to the local MTA.
#include "ccmail/exporter/bounce.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "ccmail/common/log.h"
#include "ccmail/common/name_hash.h"
#include "ccmail/common/unique_fd.h"
#include "ccmail/smtp/client.h"

namespace ccmail::exporter {
namespace {

Status Slurp(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot open " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return Status::Ok();
}

// Import files address recipients as "Name at PO"; the manifest holds the bare name.
bool SameRecipient(const std::string& und_name, const std::string& rcpt) {
  if (und_name == rcpt) return true;
  return und_name.size() > rcpt.size() + 4 && und_name.compare(0, rcpt.size(), rcpt) == 0 &&
         und_name.compare(rcpt.size(), 4, " at ") == 0 &&
         und_name.find(' ', rcpt.size() + 4) == std::string::npos;
}

bool Names(const format::ImportMessage& m, const std::string& rcpt) {
  for (const auto* list : {&m.to, &m.cc, &m.bcc})
    for (const auto& r : *list)
      if (SameRecipient(r, rcpt)) return true;
  return false;
}


std::string HostName() {
  char h[256] = {};
  if (::gethostname(h, sizeof h - 1) != 0 || h[0] == '\0') return "localhost";
  return h;
}

std::string Rfc5322Date(time_t t) {
  struct tm tm;
  ::localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S %z", &tm);
  return buf;
}

// Header values come from mail (subjects, addresses): no line break may get through.
std::string OneLine(std::string v) {
  for (char& c : v)
    if (c == '\r' || c == '\n') c = ' ';
  return v;
}

bool ValidQueueName(const std::string& n) {
  if (n.empty() || n.size() > 200 || n[0] == '.') return false;
  for (char c : n)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') return false;
  return true;
}

Status FsyncDir(const std::string& dir) {
  UniqueFd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d.valid()) return Status::FromErrno("open " + dir, errno);
  if (::fsync(d.get()) != 0) return Status::FromErrno("fsync " + dir, errno);
  return Status::Ok();
}

// The queue file: plain write(2) of all bytes.
Status WriteAll(int fd, std::string_view data, const std::string& what) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(what, errno);
    }
    off += static_cast<size_t>(n);
  }
  return Status::Ok();
}

constexpr std::string_view kQueueHead = "ccmail-bounce v1 to=<";

// A queued file: "ccmail-bounce v1 to=<addr>\n" then the message.
Status ReadQueued(const std::string& path, std::string* to, std::string* message) {
  std::string text;
  CCMAIL_RETURN_IF_ERROR(Slurp(path, &text));
  size_t eol = text.find('\n');
  if (text.compare(0, kQueueHead.size(), kQueueHead) != 0 || eol == std::string::npos ||
      eol < kQueueHead.size() + 2 || text[eol - 1] != '>')
    return Status::Corrupt(path + ": not a queued bounce");
  *to = text.substr(kQueueHead.size(), eol - 1 - kQueueHead.size());
  *message = text.substr(eol + 1);
  return Status::Ok();
}

std::vector<std::string> QueuedNames(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (struct dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n.size() > 4 && n[0] != '.' && n.compare(n.size() - 4, 4, ".msg") == 0) names.push_back(n);
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

std::vector<BounceTarget> MatchUndeliverable(const std::vector<format::ImportMessage>& und,
                                             const std::vector<ManifestEntry>& manifest, size_t* unmatched) {
  std::vector<BounceTarget> out;
  std::vector<bool> used(manifest.size(), false);
  *unmatched = 0;
  size_t start = 0;  // order-preserving: never match behind the previous match
  for (const auto& m : und) {
    bool found = false;
    for (size_t i = start; i < manifest.size(); ++i) {
      if (used[i] || !Names(m, manifest[i].recipient)) continue;
      used[i] = true;
      start = i + 1;
      out.push_back({manifest[i], m.subject});
      found = true;
      break;
    }
    if (!found) ++*unmatched;
  }
  return out;
}

Status BounceUndeliverable(const std::string& und_path, const std::string& manifest_path,
                           const std::string& post_office, BounceQueue* queue,
                           const format::FormatSettings& settings, int* queued, size_t* unmatched) {
  *queued = 0;
  *unmatched = 0;
  std::string und_text, man_text;
  Status s = Slurp(und_path, &und_text);
  if (!s.ok()) return s;
  s = Slurp(manifest_path, &man_text);
  if (!s.ok()) return s;
  std::vector<ManifestEntry> manifest;
  s = ParseManifest(man_text, &manifest);
  if (!s.ok()) return Status::Corrupt(manifest_path + ": " + s.message());
  format::ReadOptions opt;
  opt.keep_data = false;
  opt.detect_layout = true;
  format::ReadResult rr = format::ReadImportFile(und_text, settings, opt);
  for (const auto& t : MatchUndeliverable(rr.messages, manifest, unmatched)) {
    const ManifestEntry& d = t.delivery;
    if (d.sender.empty()) continue;  // null sender: never bounce a bounce
    FailedDelivery f;
    f.recipient = post_office.empty() ? d.recipient : d.recipient + " at " + post_office;
    f.status = "5.1.1";
    f.diagnostic = "cc:Mail IMPORT reported the message undeliverable";
    std::string explanation =
        "Your message could not be delivered to the cc:Mail recipient\n"
        "    " + OneLine(f.recipient) + "\n"
        "cc:Mail IMPORT reported it undeliverable (the name is unknown or the\n"
        "mailbox cannot take it).\n\n"
        "Subject:     " + OneLine(t.subject) + "\n"
        "Capture id:  " + d.capture_id + "\n"
        "Content key: " + d.content_key + "\n";
    // One notice per delivery: queueing the same .UND again finds it already queued.
    const std::string name = "und-" + d.capture_id + "-" + StableNameHash(post_office + "\n" + d.recipient);
    s = queue->Add(name, d.sender, DeliveryStatusNotice(d.sender, "Undeliverable: " + t.subject, explanation, f, name));
    if (!s.ok()) return s;
    ++*queued;
  }
  return Status::Ok();
}

Status BounceRelay::Parse(std::string_view spec, BounceRelay* out) {
  smtp::Endpoint e;
  CCMAIL_RETURN_IF_ERROR(smtp::Endpoint::Parse(spec, "bounce_relay", &e));
  BounceRelay r;
  r.host = std::move(e.host);
  r.port = e.port;
  *out = std::move(r);
  return Status::Ok();
}

std::string BounceRelay::ToString() const {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string DeliveryStatusNotice(const std::string& to, const std::string& subject, const std::string& explanation,
                                 const FailedDelivery& failed, const std::string& message_id_seed) {
  const std::string host = HostName();
  const time_t now = ::time(nullptr);
  const std::string boundary = "ccmail-dsn-" + StableNameHash(message_id_seed + "/" + std::to_string(now));
  return "From: Mail Delivery System <MAILER-DAEMON@" + host + ">\n"
         "To: <" + OneLine(to) + ">\n"
         "Subject: " + OneLine(subject) + "\n"
         "Date: " + Rfc5322Date(now) + "\n"
         "Message-ID: <ccmail-bridge." + message_id_seed + "." + std::to_string(now) + "@" + host + ">\n"
         "Auto-Submitted: auto-replied\n"
         "MIME-Version: 1.0\n"
         "Content-Type: multipart/report; report-type=delivery-status;\n"
         "\tboundary=\"" + boundary + "\"\n"
         "\n"
         "This is a delivery status notification (RFC 3464).\n"
         "\n"
         "--" + boundary + "\n"
         "Content-Type: text/plain; charset=utf-8\n"
         "\n" + explanation +
         "\n--" + boundary + "\n"
         "Content-Type: message/delivery-status\n"
         "\n"
         "Reporting-MTA: dns; " + host + "\n"
         "\n"
         "Final-Recipient: " + failed.recipient_type + "; " + OneLine(failed.recipient) + "\n"
         "Action: failed\n"
         "Status: " + failed.status + "\n"
         "Diagnostic-Code: x-ccmail; " + OneLine(failed.diagnostic) + "\n"
         "\n--" + boundary + "--\n";
}

Status SendOverSmtp(const BounceRelay& relay, const std::string& to, const std::string& message, std::string* reply) {
  smtp::Endpoint endpoint;
  endpoint.host = relay.host;
  endpoint.port = relay.port;
  smtp::ClientOptions options;
  options.timeout = relay.timeout;
  // The null sender: a bounce must never bounce.
  return smtp::SendMail(endpoint, options, "", {OneLine(to)}, message, reply);
}

BounceQueue::BounceQueue(std::string dir, BounceRelay relay, std::chrono::seconds retry_min,
                         std::chrono::seconds retry_max)
    : dir_(std::move(dir)), relay_(std::move(relay)), retry_min_(retry_min), retry_max_(retry_max) {}

Status BounceQueue::Open(std::string dir, BounceRelay relay, std::chrono::seconds retry_min,
                         std::chrono::seconds retry_max, std::unique_ptr<BounceQueue>* out) {
  for (const std::string& d : {dir, dir + "/rejected"})
    if (::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) return Status::FromErrno("mkdir " + d, errno);
  if (retry_min.count() < 1) retry_min = std::chrono::seconds(1);
  if (retry_max < retry_min) retry_max = retry_min;
  out->reset(new BounceQueue(std::move(dir), std::move(relay), retry_min, retry_max));
  return Status::Ok();
}

BounceQueue::~BounceQueue() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status BounceQueue::Add(const std::string& name, const std::string& to, const std::string& message) {
  if (!ValidQueueName(name)) return Status::InvalidArgument("bounce queue: bad name '" + name + "'");
  if (to.empty() || to.find_first_of("<>\r\n") != std::string::npos)
    return Status::InvalidArgument("bounce queue: bad recipient '" + OneLine(to) + "'");
  const std::string path = dir_ + "/" + name + ".msg", tmp = dir_ + "/." + name + ".tmp";
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) return Status::Ok();  // queued already, not yet sent
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return Status::FromErrno("create " + tmp, errno);
  Status s = WriteAll(fd.get(), std::string(kQueueHead) + to + ">\n" + message, "write " + tmp);
  if (s.ok() && ::fsync(fd.get()) != 0) s = Status::FromErrno("fsync " + tmp, errno);
  fd.reset();
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = Status::FromErrno("rename " + tmp, errno);
  if (s.ok()) s = FsyncDir(dir_);
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  {
    std::lock_guard<std::mutex> g(mu_);
    added_ = true;
  }
  cv_.notify_all();
  return Status::Ok();
}

size_t BounceQueue::Pending() const { return QueuedNames(dir_).size(); }

BounceFlushResult BounceQueue::Flush() {
  std::lock_guard<std::mutex> one_pass(flush_mu_);
  BounceFlushResult r;
  for (const std::string& n : QueuedNames(dir_)) {
    const std::string path = dir_ + "/" + n;
    std::string to, message, reply;
    Status s = ReadQueued(path, &to, &message);
    if (s.ok()) s = SendOverSmtp(relay_, to, message, &reply);
    if (s.ok()) {
      // Accepted (250): only now may the notice go.
      if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        LogError("bounce %s sent to <%s> but not removed from %s (it may be sent again): %s", n.c_str(), to.c_str(),
                 dir_.c_str(), std::strerror(errno));
      else
        (void)FsyncDir(dir_);
      LogInfo("bounce %s to <%s> accepted by %s: %s", n.c_str(), to.c_str(), relay_.ToString().c_str(), reply.c_str());
      ++r.sent;
      continue;
    }
    if (s.code() == Status::Code::kInvalidArgument || s.code() == Status::Code::kCorrupt) {
      const std::string kept = dir_ + "/rejected/" + n;
      if (::rename(path.c_str(), kept.c_str()) == 0) (void)FsyncDir(dir_);
      LogError("bounce %s to <%s> refused for good, kept as %s: %s", n.c_str(), to.c_str(), kept.c_str(),
               s.ToString().c_str());
      ++r.rejected;
      continue;
    }
    LogWarning("bounce %s to <%s> not accepted yet, kept for a retry: %s", n.c_str(), to.c_str(), s.ToString().c_str());
    ++r.deferred;
  }
  return r;
}

void BounceQueue::Start() {
  if (thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> g(mu_);
    added_ = true;  // whatever an earlier run left in the queue
  }
  thread_ = std::thread([this] { Loop(); });
}

void BounceQueue::Loop() {
  std::chrono::seconds delay = retry_min_;
  bool waiting_retry = false;
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_) {
    if (!added_) {
      if (waiting_retry)
        cv_.wait_for(lk, delay, [this] { return stop_ || added_; });
      else
        cv_.wait(lk, [this] { return stop_ || added_; });
      if (stop_) break;
    }
    added_ = false;
    lk.unlock();
    BounceFlushResult r = Flush();
    lk.lock();
    if (r.deferred > 0) {
      delay = waiting_retry ? std::min(retry_max_, delay * 2) : retry_min_;
      waiting_retry = true;
    } else {
      waiting_retry = false;
      delay = retry_min_;
    }
  }
}

}  // namespace ccmail::exporter
