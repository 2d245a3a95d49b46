// .UND -> bounce notices through sendmail(1).
#include "ccmail/exporter/bounce.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

extern char** environ;

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

std::string Notice(const BounceTarget& t, const std::string& postoffice) {
  const auto& d = t.delivery;
  return "From: MAILER-DAEMON (ccmail-bridge)\n"
         "To: <" + d.sender + ">\n"
         "Subject: Undeliverable: " + t.subject + "\n"
         "Auto-Submitted: auto-replied\n"
         "MIME-Version: 1.0\n"
         "Content-Type: text/plain; charset=utf-8\n"
         "\n"
         "Your message could not be delivered to the cc:Mail recipient\n"
         "    " + d.recipient + " (post office " + postoffice + ")\n"
         "cc:Mail IMPORT reported it undeliverable (the name is unknown or the\n"
         "mailbox cannot take it).\n\n"
         "Subject:     " + t.subject + "\n"
         "Capture id:  " + d.capture_id + "\n"
         "Content key: " + d.content_key + "\n";
}

}  // namespace

Status SendNotice(const std::string& sendmail_path, const std::string& to, const std::string& text) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return Status::FromErrno("pipe", errno);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[0], 0);
  std::string a0 = sendmail_path, a1 = "-oi", a2 = "-f", a3 = "<>", a4 = "--", a5 = to;
  char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data(), a4.data(), a5.data(), nullptr};
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, sendmail_path.c_str(), &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(p[0]);
  if (rc != 0) {
    ::close(p[1]);
    return Status::FromErrno("spawn " + sendmail_path, rc);
  }
  size_t off = 0;
  bool write_failed = false;
  while (off < text.size()) {
    ssize_t n = ::write(p[1], text.data() + off, text.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      write_failed = true;
      break;
    }
    off += static_cast<size_t>(n);
  }
  ::close(p[1]);
  int wst = 0;
  while (::waitpid(pid, &wst, 0) < 0) {
    if (errno != EINTR) return Status::FromErrno("waitpid " + sendmail_path, errno);
  }
  if (write_failed || !WIFEXITED(wst) || WEXITSTATUS(wst) != 0)
    return Status::Unavailable(sendmail_path + " failed sending bounce to <" + to + ">");
  return Status::Ok();
}


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
                           const std::string& postoffice, const std::string& sendmail_path,
                           const format::FormatSettings& settings, int* bounced, size_t* unmatched) {
  *bounced = 0;
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
    if (t.delivery.sender.empty()) continue;  // null sender: never bounce a bounce
    s = SendNotice(sendmail_path, t.delivery.sender, Notice(t, postoffice));
    if (!s.ok()) return s;
    ++*bounced;
  }
  return Status::Ok();
}

}  // namespace ccmail::exporter
