// The submitter's rounds: export job, taking files, reading, converting, submitting, settling.
#include "ccmail/submitter/engine.h"

#include <dirent.h>
#include <fcntl.h>
#include <glib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "ccmail/common/clock.h"
#include "ccmail/common/log.h"
#include "ccmail/common/name_hash.h"
#include "ccmail/common/unique_fd.h"
#include "ccmail/exporter/bounce.h"
#include "ccmail/submitter/inbox_file.h"
#include "ccmail/submitter/submit_ledger.h"
#include "inbox.h"

namespace ccmail::submitter {
namespace {

using Clock = std::chrono::steady_clock;

std::string Sha256Hex(std::string_view bytes) {
  gchar* hex = g_compute_checksum_for_data(G_CHECKSUM_SHA256, reinterpret_cast<const guchar*>(bytes.data()),
                                           bytes.size());
  std::string out(hex);
  g_free(hex);
  return out;
}


Status ReadWholeFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::FromErrno("open " + path, errno ? errno : ENOENT);
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::FromErrno("read " + path, EIO);
  *out = ss.str();
  return Status::Ok();
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// RFC 3463 status from a reply such as "550 5.1.1 unknown", else the class default.
std::string EnhancedStatus(const std::string& reply) {
  if (reply.size() > 8 && (reply[4] == '4' || reply[4] == '5') && reply[5] == '.') {
    size_t end = reply.find(' ', 4);
    return reply.substr(4, end == std::string::npos ? std::string::npos : end - 4);
  }
  return reply.rfind('4', 0) == 0 ? "4.0.0" : "5.0.0";
}

std::string OneLine(std::string v) {
  for (char& c : v)
    if (c == '\r' || c == '\n') c = ' ';
  return v;
}

struct Deferral {
  Clock::time_point next;
  int attempts = 0;
};

}  // namespace

const std::vector<std::string>& SubmitCrashPoints() {
  static const std::vector<std::string> kPoints = {kCrashTakeCopied,   kCrashTakeRecorded, kCrashTakeUnlinked,
                                                   kCrashNoticeQueued, kCrashDataBefore,   kCrashAccepted,
                                                   kCrashCommitted};
  return kPoints;
}

std::string SubmitterStateDir(const std::string& spool_directory) { return spool_directory + "/submitter"; }
std::string SubmitLedgerPath(const std::string& state_dir) { return state_dir + "/ledger.db"; }
std::string SubmitterMetricsPath(const std::string& state_dir) { return state_dir + "/metrics"; }

std::string SubmitterMetrics::ToText() const {
  std::string out;
  auto line = [&](const char* name, uint64_t v) { out += std::string(name) + " " + std::to_string(v) + "\n"; };
  line("files_taken", files_taken);
  line("files_open", files_open);
  line("files_quarantined", files_quarantined);
  line("messages_sent", messages_sent);
  line("partial", partial);
  line("refused", refused);
  line("quarantined", quarantined);
  line("pending", pending);
  line("in_doubt", in_doubt);
  line("in_doubt_resubmitted", in_doubt_resubmitted);
  line("notices_pending", notices_pending);
  line("deferred_files", deferred_files);
  line("last_round_ms", last_round_ms);
  line("window_count", window_count);
  line("window_last_us", window_last_us);
  line("window_max_us", window_max_us);
  line("window_total_us", window_total_us);
  return out;
}


Status SubmitterOptions::FromConfig(const Config& cfg, SubmitterOptions* out) {
  SubmitterOptions o;
  std::string spool, relay;
  CCMAIL_RETURN_IF_ERROR(cfg.GetString("spool_directory", &spool));
  if (spool.empty() || spool[0] != '/') return cfg.Invalid("spool_directory", "an absolute path");
  o.state_dir = SubmitterStateDir(spool);
  CCMAIL_RETURN_IF_ERROR(cfg.GetString("inbox_directory", &o.inbox_directory));
  if (o.inbox_directory.empty() || o.inbox_directory[0] != '/')
    return cfg.Invalid("inbox_directory", "an absolute path");
  CCMAIL_RETURN_IF_ERROR(cfg.GetSize("inbox_max_file_size", &o.inbox_max_file_size));
  if (o.inbox_max_file_size == 0) return cfg.Invalid("inbox_max_file_size", "a size above 0");
  CCMAIL_RETURN_IF_ERROR(cfg.GetString("export_command", &o.export_command));
  CCMAIL_RETURN_IF_ERROR(cfg.GetDuration("export_interval", &o.export_interval));
  CCMAIL_RETURN_IF_ERROR(cfg.GetString("submit_relay", &relay));
  if (Status s = smtp::Endpoint::Parse(relay, "submit_relay", &o.relay); !s.ok())
    return Status::InvalidArgument(cfg.Where("submit_relay") + ": " + s.message());
  CCMAIL_RETURN_IF_ERROR(cfg.GetDuration("submit_timeout", &o.smtp.timeout));
  CCMAIL_RETURN_IF_ERROR(cfg.GetDuration("submit_retry_min", &o.retry_min));
  CCMAIL_RETURN_IF_ERROR(cfg.GetDuration("submit_retry_max", &o.retry_max));
  CCMAIL_RETURN_IF_ERROR(cfg.GetDuration("taken_retention", &o.taken_retention));
  if (o.export_interval.count() < 1000) return cfg.Invalid("export_interval", "at least 1s");
  if (o.smtp.timeout.count() < 1) return cfg.Invalid("submit_timeout", "a duration above 0");
  if (o.retry_min.count() < 1) o.retry_min = std::chrono::milliseconds(1);
  if (o.retry_max < o.retry_min) o.retry_max = o.retry_min;
  CCMAIL_RETURN_IF_ERROR(format::LoadFormatSettings(cfg, &o.format));
  *out = std::move(o);
  return Status::Ok();
}

struct Submitter::Impl {
  SubmitterOptions opt;
  store::DurableIo* io = nullptr;
  std::unique_ptr<SubmitLedger> ledger;
  std::unique_ptr<exporter::BounceQueue> notices;
  UniqueFd lock_fd;
  std::unique_ptr<smtp::Client> client;  // one session per round, opened when needed
  std::map<std::string, Deferral> deferred;       // file_id -> next try
  std::map<std::string, Deferral> export_due;     // post office -> next export_command run
  Clock::time_point next_prune{};                 // the first round prunes
  mutable std::mutex metrics_mu;
  SubmitterMetrics metrics;
  // Why the inbox ("") or a post office directory could not be listed at the last scan: a
  // change is logged once, not every scan.
  std::map<std::string, std::string> listing_trouble;

  std::string TakenDir(const std::string& po) const { return opt.state_dir + "/taken/" + po; }
  std::string TakenPath(const SubmitFile& f) const { return TakenDir(f.post_office) + "/" + f.file_id; }
  std::string QuarantineDir() const { return opt.state_dir + "/quarantine"; }

  Status MakeDir(const std::string& dir) {
    bool created = false;
    CCMAIL_RETURN_IF_ERROR(io->MakeDir(dir, 0700, &created));
    if (created) CCMAIL_RETURN_IF_ERROR(io->FsyncDir(store::ParentDirectory(dir)));
    return Status::Ok();
  }

  // tmp, fsync, rename over `path`, directory fsync.
  Status WriteDurably(const std::string& path, std::string_view text, const char* point = nullptr) {
    const std::string dir = store::ParentDirectory(path);
    const std::string tmp = dir + "/." + path.substr(dir.size() + 1) + ".tmp";
    (void)io->Unlink(tmp);
    UniqueFd fd;
    CCMAIL_RETURN_IF_ERROR(io->CreateExclusive(tmp, 0600, &fd));
    Status s = io->WriteAll(fd.get(), text.data(), text.size(), "write " + tmp);
    if (s.ok()) s = io->Fsync(fd.get(), tmp);
    if (s.ok()) s = io->Close(&fd, tmp);
    if (s.ok()) s = io->Rename(tmp, path);
    if (!s.ok()) {
      (void)io->Unlink(tmp);
      return s;
    }
    return io->FsyncDir(dir, point);
  }

  void Defer(const std::string& file_id, const std::string& why) {
    Deferral& d = deferred[file_id];
    auto delay = opt.retry_min;
    for (int i = 0; i < d.attempts && delay < opt.retry_max; ++i) delay *= 2;
    if (delay > opt.retry_max) delay = opt.retry_max;
    ++d.attempts;
    d.next = Clock::now() + delay;
    LogWarning("submitter: file %s waits %lldms (try %d): %s", file_id.substr(0, 16).c_str(),
               static_cast<long long>(delay.count()), d.attempts, why.c_str());
    client.reset();  // a failed session is not reused
  }

  // ---- (1) the site's EXPORT job ----
  void RunExportJobs(const std::vector<std::string>& post_offices) {
    if (opt.export_command.empty()) return;
    const auto now = Clock::now();
    for (const std::string& po : post_offices) {
      Deferral& due = export_due[po];
      if (now < due.next) continue;
      exporter::DeliverOutcome outcome;
      int exit_status = 0;
      std::string published;
      Status s = RunExportCommand(opt.export_command, opt.inbox_directory + "/" + po, po, &outcome, &exit_status,
                                  &published);
      if (s.ok() && (outcome == exporter::DeliverOutcome::kDone || outcome == exporter::DeliverOutcome::kUndeliverable)) {
        if (outcome == exporter::DeliverOutcome::kUndeliverable)
          LogWarning("export_command for %s exited 5 (some messages undeliverable); taking what it wrote", po.c_str());
        if (!published.empty()) LogInfo("export_command for %s wrote %s", po.c_str(), published.c_str());
        due.attempts = 0;
        due.next = now + opt.export_interval;
        continue;
      }
      auto delay = opt.retry_min;
      for (int i = 0; i < due.attempts && delay < opt.retry_max; ++i) delay *= 2;
      if (delay > opt.retry_max) delay = opt.retry_max;
      if (delay > opt.export_interval) delay = opt.export_interval;
      ++due.attempts;
      due.next = now + delay;
      if (!s.ok())
        LogError("export_command for %s: %s", po.c_str(), s.ToString().c_str());
      else
        LogError("export_command for %s exited %d (%s), retried in %lldms", po.c_str(), exit_status,
                 exporter::DeliverOutcomeName(outcome), static_cast<long long>(delay.count()));
    }
  }

  // ---- (2) taking complete files ----
  // Logs a listing's state when it changed since the last scan: `what` "" is the inbox itself.
  void NoteListing(const std::string& what, const std::string& path, const Status& s) {
    auto it = listing_trouble.find(what);
    if (s.ok()) {
      if (it == listing_trouble.end()) return;
      listing_trouble.erase(it);
      LogInfo("submitter: %s %s can be listed again", what.empty() ? "inbox_directory" : "post office directory",
              path.c_str());
      return;
    }
    if (it != listing_trouble.end() && it->second == s.ToString()) return;
    listing_trouble[what] = s.ToString();
    LogWarning("submitter: %s; nothing is taken from it until it can be listed", s.ToString().c_str());
  }

  std::vector<std::string> ListPostOffices() {
    std::vector<std::string> post_offices;
    NoteListing("", opt.inbox_directory, ListInboxPostOffices(opt.inbox_directory, &post_offices));
    // A post office directory gone for good is forgotten silently (it is no longer listed).
    for (auto it = listing_trouble.begin(); it != listing_trouble.end();) {
      const bool listed = it->first.empty() ||
                          std::binary_search(post_offices.begin(), post_offices.end(), it->first);
      it = listed ? std::next(it) : listing_trouble.erase(it);
    }
    return post_offices;
  }

  Status TakeAll(const std::vector<std::string>& post_offices) {
    for (const std::string& po : post_offices) {
      const std::string po_dir = opt.inbox_directory + "/" + po;
      UniqueFd po_fd;
      std::vector<std::string> names;
      Status s = OpenInboxPostOffice(po_dir, &po_fd, &names);
      NoteListing(po, po_dir, s);
      if (!s.ok()) continue;
      for (const std::string& name : names) CCMAIL_RETURN_IF_ERROR(Take(po, po_fd.get(), name));
    }
    return Status::Ok();
  }

  Status Take(const std::string& po, int po_fd, const std::string& name) {
    const std::string po_dir = opt.inbox_directory + "/" + po;
    const std::string src = PrintableName(po_dir + "/" + name);  // for the log: the name is input
    InboxEntry entry;
    if (Status s = ReadInboxEntry(po_fd, name, opt.inbox_max_file_size, &entry); !s.ok()) {
      if (!s.IsNotFound())  // gone since the listing: nothing to take
        LogWarning("submitter: cannot read inbox file %s, left for the next scan: %s", src.c_str(),
                   s.ToString().c_str());
      return Status::Ok();
    }
    if (entry.refusal != InboxRefusal::kNone) {
      SetAside(po_dir, po_fd, name, entry);
      return Status::Ok();
    }
    const std::string& bytes = entry.bytes;
    const std::string id = Sha256Hex(bytes);
    SubmitFile known;
    Status g = ledger->GetFile(id, &known);
    if (g.ok()) {
      LogInfo("submitter: %s has the bytes of %s/%s taken before (file %s): removed from the inbox", src.c_str(),
              known.post_office.c_str(), known.name.c_str(), id.substr(0, 16).c_str());
      return Unlink(po_fd, name, po_dir);
    }
    if (!g.IsNotFound()) return g;
    CCMAIL_RETURN_IF_ERROR(MakeDir(opt.state_dir + "/taken"));
    CCMAIL_RETURN_IF_ERROR(MakeDir(TakenDir(po)));
    const std::string dest = TakenDir(po) + "/" + id;
    if (!Exists(dest)) {
      const std::string tmp = TakenDir(po) + "/." + id + ".tmp";
      (void)io->Unlink(tmp);
      UniqueFd fd;
      CCMAIL_RETURN_IF_ERROR(io->CreateExclusive(tmp, 0600, &fd));
      Status s = io->WriteAll(fd.get(), bytes.data(), bytes.size(), "write " + tmp);
      if (s.ok()) s = io->Fsync(fd.get(), tmp);
      if (s.ok()) s = io->Close(&fd, tmp);
      if (s.ok()) s = io->Rename(tmp, dest);
      if (!s.ok()) {
        (void)io->Unlink(tmp);
        return s;
      }
    }
    // Also after a crash between the rename and this fsync: the name must be durable first.
    CCMAIL_RETURN_IF_ERROR(io->FsyncDir(TakenDir(po), kCrashTakeCopied));
    bool inserted = false;
    CCMAIL_RETURN_IF_ERROR(ledger->RecordFile({id, po, name, 0, 0, kFileTaken}, &inserted));
    CCMAIL_RETURN_IF_ERROR(store::FaultPoint(kCrashTakeRecorded, "record " + src));
    LogInfo("submitter: took %s (%zu bytes) as file %s", src.c_str(), bytes.size(), id.substr(0, 16).c_str());
    return Unlink(po_fd, name, po_dir);
  }

  // A refused entry never stays where the taker looks: renamed aside with its reason, one error line.
  void SetAside(const std::string& po_dir, int po_fd, const std::string& name, const InboxEntry& entry) {
    const std::string src = PrintableName(po_dir + "/" + name);
    std::string aside;
    const std::string why = std::string(InboxRefusalName(entry.refusal)) + ": " + entry.reason;
    Status s = SetInboxEntryAside(po_fd, name, why, &aside);
    if (aside.empty()) {
      if (!s.IsNotFound())  // else gone since it was looked at: nothing left to refuse
        LogError("submitter: refused inbox entry %s (%s) and cannot set it aside, refused again at the next scan: %s",
                 src.c_str(), why.c_str(), s.ToString().c_str());
      return;
    }
    const std::string moved = PrintableName(po_dir + "/" + aside);
    if (s.ok())
      LogError("submitter: refused inbox entry %s (%s): not read, renamed to %s (reason in %s.reason)", src.c_str(),
               why.c_str(), moved.c_str(), moved.c_str());
    else
      LogError("submitter: refused inbox entry %s (%s): not read, renamed to %s; its reason file failed: %s",
               src.c_str(), why.c_str(), moved.c_str(), s.ToString().c_str());
  }

  // Through the descriptor the file was read from: a symlink renamed over the post office
  // directory since (to the spool, say) cannot redirect the unlink to a same-named file there.
  // (The fsync by path then at worst misses the unlink: the file is recognised by its id later.)
  Status Unlink(int po_fd, const std::string& name, const std::string& po_dir) {
    if (::unlinkat(po_fd, name.c_str(), 0) != 0 && errno != ENOENT)
      return Status::FromErrno("unlink " + PrintableName(po_dir + "/" + name), errno);
    return io->FsyncDir(po_dir, kCrashTakeUnlinked);
  }

  // ---- (3) the open files ----
  Status QuarantineFile(const SubmitFile& f, const std::string& reason) {
    CCMAIL_RETURN_IF_ERROR(MakeDir(QuarantineDir()));
    const std::string text = "file " + f.file_id + "\npost office " + f.post_office + "\nname " + f.name +
                             "\nreason " + OneLine(reason) + "\n";
    CCMAIL_RETURN_IF_ERROR(WriteDurably(QuarantineDir() + "/" + f.file_id + ".reason", text));
    const std::string kept = QuarantineDir() + "/" + f.file_id;
    if (Exists(TakenPath(f))) {
      CCMAIL_RETURN_IF_ERROR(io->Rename(TakenPath(f), kept));
      CCMAIL_RETURN_IF_ERROR(io->FsyncDir(QuarantineDir()));
      CCMAIL_RETURN_IF_ERROR(io->FsyncDir(TakenDir(f.post_office)));
    }
    CCMAIL_RETURN_IF_ERROR(ledger->SetFileState(f.file_id, kFileQuarantined, 0));
    LogError("submitter: %s/%s (file %s) quarantined as %s: %s", f.post_office.c_str(), f.name.c_str(),
             f.file_id.substr(0, 16).c_str(), kept.c_str(), reason.c_str());
    return Status::Ok();
  }

  Status QuarantineMessage(const SubmitFile& f, int idx, const std::string& reason) {
    CCMAIL_RETURN_IF_ERROR(MakeDir(QuarantineDir()));
    const std::string text = "file " + f.file_id + "\npost office " + f.post_office + "\nname " + f.name +
                             "\nmessage " + std::to_string(idx) + "\nreason " + OneLine(reason) + "\n";
    CCMAIL_RETURN_IF_ERROR(
        WriteDurably(QuarantineDir() + "/" + f.file_id + "." + std::to_string(idx) + ".reason", text));
    CCMAIL_RETURN_IF_ERROR(ledger->Settle(f.file_id, idx, MessageState::kQuarantined, reason));
    LogError("submitter: message %d of %s/%s (file %s) quarantined: %s", idx, f.post_office.c_str(), f.name.c_str(),
             f.file_id.substr(0, 16).c_str(), reason.c_str());
    return Status::Ok();
  }

  // A notice to the author, durable in notices/ before the message's state says so.
  Status Notice(const SubmitFile& f, int idx, const std::string& author, const std::string& subject,
                const std::string& recipient, const std::string& recipient_type, const std::string& status,
                const std::string& diagnostic, const std::string& explanation) {
    const std::string name = "sub-" + f.file_id.substr(0, 16) + "-" + std::to_string(idx) + "-" + StableNameHash(recipient);
    exporter::FailedDelivery failed;
    failed.recipient_type = recipient_type;
    failed.recipient = recipient;
    failed.status = status;
    failed.diagnostic = diagnostic;
    const std::string text =
        "Your cc:Mail message\n    Subject: " + OneLine(subject) + "\n" + explanation + "\n";
    CCMAIL_RETURN_IF_ERROR(notices->Add(name, author,
                                        exporter::DeliveryStatusNotice(author, "Undeliverable: " + OneLine(subject), text,
                                                                       failed, name)));
    store::CrashPoint(kCrashNoticeQueued);
    return Status::Ok();
  }

  Status ProcessFile(SubmitFile f, bool* ready_work) {
    std::string bytes;
    if (Status s = ReadWholeFile(TakenPath(f), &bytes); !s.ok()) {
      if (Exists(QuarantineDir() + "/" + f.file_id))  // a crash after the move, before the ledger said so
        return ledger->SetFileState(f.file_id, kFileQuarantined, 0);
      return QuarantineFile(f, "its taken copy cannot be read: " + s.ToString());
    }
    format::ReadOptions ro;
    ro.keep_data = true;
    ro.detect_layout = true;
    ro.exported = true;  // cc:Mail's EXPORT wrote it, not our writer
    format::ReadResult rr = format::ReadImportFile(bytes, opt.format, ro);
    if (!rr.ok() || rr.messages.empty()) {
      std::string reason = rr.messages.empty() && rr.ok() ? "no message in the file" : "not a readable cc:Mail EXPORT file:";
      for (size_t i = 0; i < rr.violations.size() && i < 5; ++i)
        reason += " [offset " + std::to_string(rr.violations[i].offset) + ": " + rr.violations[i].reason + "]";
      return QuarantineFile(f, reason);
    }
    const int n = static_cast<int>(rr.messages.size());
    if (f.messages != n) {
      CCMAIL_RETURN_IF_ERROR(ledger->SetFileState(f.file_id, kFileTaken, n));
      f.messages = n;
    }
    for (int idx = 0; idx < n; ++idx) {
      SubmitMessage row;
      Status g = ledger->GetMessage(f.file_id, idx, &row);
      if (g.ok() && IsSettled(row.state)) continue;
      if (!g.ok() && !g.IsNotFound()) return g;
      bool deferred_now = false;
      CCMAIL_RETURN_IF_ERROR(ProcessMessage(f, idx, rr.messages[static_cast<size_t>(idx)], &deferred_now));
      if (deferred_now) return Status::Ok();  // the file's later messages wait with it (order)
      deferred.erase(f.file_id);
    }
    *ready_work = true;
    return ledger->SetFileState(f.file_id, kFileDone, n);
  }

  Status ProcessMessage(const SubmitFile& f, int idx, const format::ImportMessage& m, bool* deferred_now) {
    Submission sub;
    SubmissionRefusal refusal;
    Status cs;
    try {
      cs = opt.convert(m, f.post_office, &sub, &refusal);
    } catch (const std::exception& e) {
      cs = Status::InvalidArgument(std::string("the conversion failed: ") + e.what());
    }
    SubmitMessage row;
    row.file_id = f.file_id;
    row.idx = idx;
    if (!cs.ok()) {
      CCMAIL_RETURN_IF_ERROR(ledger->RecordMessage(row));
      return QuarantineMessage(f, idx, "cannot be converted: " + cs.ToString());
    }
    if (sub.envelope_from.empty() && sub.mime.empty() && refusal.reason.empty()) {
      CCMAIL_RETURN_IF_ERROR(ledger->RecordMessage(row));
      return QuarantineMessage(f, idx, "the conversion gave neither a message nor a refusal");
    }
    if (sub.envelope_from.empty() && sub.mime.empty()) {  // refused by the conversion
      row.author = refusal.author_address;
      CCMAIL_RETURN_IF_ERROR(ledger->RecordMessage(row));
      if (refusal.author_address.empty())
        return QuarantineMessage(f, idx, "refused (" + refusal.reason + ") and no author address to tell");
      CCMAIL_RETURN_IF_ERROR(Notice(f, idx, refusal.author_address, m.subject, m.from, "x-ccmail", "5.6.0",
                                    refusal.reason,
                                    "could not be sent to the Internet:\n    " + OneLine(refusal.reason) +
                                        "\nNothing was sent to any Internet recipient."));
      CCMAIL_RETURN_IF_ERROR(ledger->Settle(f.file_id, idx, MessageState::kRefused, refusal.reason));
      LogWarning("submitter: message %d of file %s refused: %s (notice to <%s>)", idx, f.file_id.substr(0, 16).c_str(),
                 refusal.reason.c_str(), refusal.author_address.c_str());
      return Status::Ok();
    }
    row.message_id = sub.message_id;
    row.author = sub.envelope_from;
    row.recipients = sub.recipients;
    CCMAIL_RETURN_IF_ERROR(ledger->RecordMessage(row));
    if (sub.recipients.empty()) return QuarantineMessage(f, idx, "no Internet recipient");
    return Submit(f, idx, m.subject, sub, deferred_now);
  }

  Status Submit(const SubmitFile& f, int idx, const std::string& subject, const Submission& sub, bool* deferred_now) {
    const std::string what = "message " + std::to_string(idx) + " of file " + f.file_id.substr(0, 16);
    if (!client) {
      client = std::make_unique<smtp::Client>(opt.relay, opt.smtp);
      if (Status s = client->Open(); !s.ok()) {
        Defer(f.file_id, "submit_relay: " + s.ToString());
        *deferred_now = true;
        return Status::Ok();
      }
    }
    std::vector<smtp::Reply> rcpt;
    Status es = client->Envelope(sub.envelope_from, sub.recipients, &rcpt);
    if (!es.ok() && !smtp::IsPermanent(es)) {
      Defer(f.file_id, what + ": " + es.ToString());
      *deferred_now = true;
      return Status::Ok();
    }
    if (!es.ok()) {  // MAIL FROM refused for good (or an address the client refuses to send)
      if (!client->Reset().ok()) client.reset();
      return Refuse(f, idx, subject, sub, es.message());
    }
    std::vector<size_t> accepted, refused;
    for (size_t i = 0; i < rcpt.size(); ++i) {
      if (rcpt[i].code / 100 == 2) {
        accepted.push_back(i);
      } else if (rcpt[i].permanent()) {
        refused.push_back(i);
      } else {
        if (!client->Reset().ok()) client.reset();
        Defer(f.file_id, what + ": RCPT TO:<" + sub.recipients[i] + "> answered " + rcpt[i].line);
        *deferred_now = true;
        return Status::Ok();
      }
    }
    if (accepted.empty()) {
      if (!client->Reset().ok()) client.reset();
      for (size_t i : refused)
        CCMAIL_RETURN_IF_ERROR(Notice(f, idx, sub.envelope_from, subject, sub.recipients[i], "rfc822",
                                      EnhancedStatus(rcpt[i].line), rcpt[i].line,
                                      "could not be delivered to\n    " + sub.recipients[i] +
                                          "\nThe mail system answered: " + rcpt[i].line));
      CCMAIL_RETURN_IF_ERROR(ledger->Settle(f.file_id, idx, MessageState::kRefused, rcpt[refused[0]].line));
      LogWarning("submitter: %s: every recipient refused (%s)", what.c_str(), rcpt[refused[0]].line.c_str());
      return Status::Ok();
    }
    // The refused recipients' notices go first: the window after the 250 holds only the commit.
    for (size_t i : refused)
      CCMAIL_RETURN_IF_ERROR(Notice(f, idx, sub.envelope_from, subject, sub.recipients[i], "rfc822",
                                    EnhancedStatus(rcpt[i].line), rcpt[i].line,
                                    "could not be delivered to\n    " + sub.recipients[i] +
                                        "\nThe mail system answered: " + rcpt[i].line +
                                        "\nIt went to the other recipients."));
    bool resubmission = false;
    CCMAIL_RETURN_IF_ERROR(ledger->MarkInDoubt(f.file_id, idx, &resubmission));
    if (resubmission)
      LogWarning("submitter: %s %s was in doubt (sent before, no settled outcome): sending it again", what.c_str(),
                 sub.message_id.c_str());
    store::CrashPoint(kCrashDataBefore);
    smtp::Reply done;
    Status ds = client->Data(sub.mime, &done);
    if (ds.ok()) {
      const auto accepted_at = Clock::now();
      store::CrashPoint(kCrashAccepted);
      CCMAIL_RETURN_IF_ERROR(
          ledger->Settle(f.file_id, idx, refused.empty() ? MessageState::kSent : MessageState::kPartial, done.line));
      const uint64_t window_us = static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - accepted_at).count());
      {
        std::lock_guard<std::mutex> g(metrics_mu);
        ++metrics.window_count;
        metrics.window_last_us = window_us;
        metrics.window_total_us += window_us;
        if (window_us > metrics.window_max_us) metrics.window_max_us = window_us;
      }
      LogDebug("submitter: %s %s accepted (%s); 250->commit window %lluus", what.c_str(), sub.message_id.c_str(),
               done.line.c_str(), static_cast<unsigned long long>(window_us));
      store::CrashPoint(kCrashCommitted);
      return Status::Ok();
    }
    client.reset();
    if (smtp::IsPermanent(ds)) return Refuse(f, idx, subject, sub, ds.message());
    if (done.code >= 400 && done.code < 500) {
      // A 4xx to DATA or to the dot: the MTA has nothing, the next try is no resubmission.
      CCMAIL_RETURN_IF_ERROR(ledger->ReturnToPending(f.file_id, idx, done.line));
    }
    Defer(f.file_id, what + ": " + ds.ToString());
    *deferred_now = true;
    return Status::Ok();
  }

  // The MTA refused the whole message for good: the author hears why, nothing went out.
  Status Refuse(const SubmitFile& f, int idx, const std::string& subject, const Submission& sub, const std::string& why) {
    CCMAIL_RETURN_IF_ERROR(Notice(f, idx, sub.envelope_from, subject, sub.recipients.empty() ? "" : sub.recipients[0], "rfc822",
                                  EnhancedStatus(client ? client->last_reply().line : "5"),
                                  why, "was refused by the mail system:\n    " + OneLine(why)));
    CCMAIL_RETURN_IF_ERROR(ledger->Settle(f.file_id, idx, MessageState::kRefused, why));
    LogWarning("submitter: message %d of file %s refused by submit_relay: %s", idx, f.file_id.substr(0, 16).c_str(),
               why.c_str());
    return Status::Ok();
  }

  Status Round(bool* work_left, bool* ready_work) {
    *work_left = false;
    *ready_work = false;
    const std::vector<std::string> post_offices = ListPostOffices();
    RunExportJobs(post_offices);
    CCMAIL_RETURN_IF_ERROR(TakeAll(post_offices));
    std::vector<SubmitFile> open;
    CCMAIL_RETURN_IF_ERROR(ledger->OpenFiles(&open));
    for (SubmitFile& f : open) {
      auto d = deferred.find(f.file_id);
      if (d != deferred.end() && Clock::now() < d->second.next) continue;
      CCMAIL_RETURN_IF_ERROR(ProcessFile(f, ready_work));
    }
    if (client) {
      client->Quit();
      client.reset();
    }
    CCMAIL_RETURN_IF_ERROR(ledger->OpenFiles(&open));
    *work_left = !open.empty();
    return PruneTaken();
  }

  // ---- (4) removing old taken copies ----
  // The taken/ directory is the list of what is left to prune: the ledger is asked about each
  // copy, so a copy removed already is never looked at again and the pass ends when done.
  Status PruneTaken() {
    if (opt.taken_retention.count() <= 0) return Status::Ok();
    const auto now = Clock::now();
    if (now < next_prune) return Status::Ok();
    next_prune = now + opt.taken_prune_interval;
    const int64_t wall_ms = opt.wall_clock_ms ? opt.wall_clock_ms() : WallClockMs();
    const int64_t cutoff_ms = wall_ms - opt.taken_retention.count();
    const std::string taken = opt.state_dir + "/taken";
    size_t removed = 0;
    bool limited = false;
    for (const std::string& po : ListNames(taken)) {
      for (const std::string& id : ListNames(TakenDir(po))) {
        if (removed >= opt.taken_prune_limit) {
          limited = true;
          break;
        }
        int64_t settled_ms = 0;
        Status s = ledger->DoneFileSettledMs(id, &settled_ms);
        if (s.IsNotFound()) continue;  // a crash before its ledger row: Take decides, not us
        CCMAIL_RETURN_IF_ERROR(s);
        if (settled_ms == 0 || settled_ms > cutoff_ms) continue;  // open, quarantined, or recent
        const std::string path = TakenDir(po) + "/" + id;
        if (Status u = io->Unlink(path); !u.ok() && !u.IsNotFound()) {
          LogWarning("submitter: cannot remove old taken copy %s, tried again at the next pass: %s", path.c_str(),
                     u.ToString().c_str());
          continue;
        }
        ++removed;
      }
      if (limited) break;
    }
    LogInfo("submitter: removed %zu taken cop%s of files done more than taken_retention (%llds) ago%s", removed,
            removed == 1 ? "y" : "ies", static_cast<long long>(opt.taken_retention.count() / 1000),
            limited ? " (the pass's limit: more at the next pass)" : "");
    return Status::Ok();
  }

  // The names in dir that are not hidden (a .tmp being written), sorted; none when it cannot be listed.
  static std::vector<std::string> ListNames(const std::string& dir) {
    std::vector<std::string> out;
    if (DIR* d = ::opendir(dir.c_str())) {
      while (struct dirent* e = ::readdir(d))
        if (e->d_name[0] != '.') out.emplace_back(e->d_name);
      ::closedir(d);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  Status RefreshMetrics(uint64_t round_ms) {
    SubmitCounters c;
    CCMAIL_RETURN_IF_ERROR(ledger->Counters(&c));
    SubmitterMetrics m;
    {
      std::lock_guard<std::mutex> g(metrics_mu);
      metrics.files_taken = c.files_taken;
      metrics.files_open = c.files_open;
      metrics.files_quarantined = c.files_quarantined;
      metrics.messages_sent = c.sent;
      metrics.partial = c.partial;
      metrics.refused = c.refused;
      metrics.quarantined = c.quarantined;
      metrics.pending = c.pending;
      metrics.in_doubt = c.in_doubt;
      metrics.in_doubt_resubmitted = c.in_doubt_resubmitted;
      metrics.notices_pending = notices->Pending();
      metrics.deferred_files = deferred.size();
      metrics.last_round_ms = round_ms;
      m = metrics;
    }
    // Informational (ccmailctl metrics): replaced whole, not fsynced.
    const std::string path = SubmitterMetricsPath(opt.state_dir), tmp = path + ".tmp";
    std::ofstream out(tmp, std::ios::trunc);
    out << m.ToText();
    out.close();
    if (out && ::rename(tmp.c_str(), path.c_str()) != 0)
      LogWarning("submitter: cannot replace %s: %s", path.c_str(), std::strerror(errno));
    return Status::Ok();
  }
};

Submitter::Submitter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Submitter::~Submitter() = default;
const SubmitterOptions& Submitter::options() const { return impl_->opt; }

Status Submitter::Open(SubmitterOptions options, std::unique_ptr<Submitter>* out) {
  if (!options.convert) return Status::InvalidArgument("submitter: no conversion given");
  auto im = std::make_unique<Impl>();
  im->io = options.io ? options.io : &store::DurableIo::Real();
  im->opt = std::move(options);
  const std::string& dir = im->opt.state_dir;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Status::FromErrno("mkdir " + dir, errno);
  const std::string lock = dir + "/submitter.lock";
  im->lock_fd.reset(::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!im->lock_fd.valid()) return Status::FromErrno("open " + lock, errno);
  if (::flock(im->lock_fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return Status::Busy("another ccmail-submitter holds " + lock);
    return Status::FromErrno("flock " + lock, errno);
  }
  for (const std::string& d : {dir + "/taken", dir + "/quarantine"})
    CCMAIL_RETURN_IF_ERROR(im->MakeDir(d));
  CCMAIL_RETURN_IF_ERROR(SubmitLedger::Open(SubmitLedgerPath(dir), &im->ledger));
  exporter::BounceRelay relay;
  relay.host = im->opt.relay.host;
  relay.port = im->opt.relay.port;
  relay.timeout = std::chrono::duration_cast<std::chrono::seconds>(im->opt.smtp.timeout);
  if (relay.timeout.count() < 1) relay.timeout = std::chrono::seconds(1);
  CCMAIL_RETURN_IF_ERROR(exporter::BounceQueue::Open(
      dir + "/notices", relay, std::chrono::duration_cast<std::chrono::seconds>(im->opt.retry_min),
      std::chrono::duration_cast<std::chrono::seconds>(im->opt.retry_max), &im->notices));
  im->notices->Start();
  out->reset(new Submitter(std::move(im)));
  return Status::Ok();
}

Status Submitter::RunOnce(bool* work_left) {
  const auto start = Clock::now();
  bool left = false, ready = false;
  Status s = impl_->Round(&left, &ready);
  if (work_left) *work_left = left;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  Status m = impl_->RefreshMetrics(static_cast<uint64_t>(ms));
  return s.ok() ? m : s;
}

Status Submitter::Run(const std::atomic<bool>& stop, const std::function<void()>& heartbeat) {
  while (!stop) {
    CCMAIL_RETURN_IF_ERROR(RunOnce());
    if (heartbeat) heartbeat();
    const auto until = Clock::now() + impl_->opt.inbox_scan_interval;
    while (!stop && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (heartbeat) heartbeat();
    }
  }
  return Status::Ok();
}

Status Submitter::Drain(std::chrono::milliseconds deadline) {
  const auto end = Clock::now() + deadline;
  for (;;) {
    bool left = false;
    CCMAIL_RETURN_IF_ERROR(RunOnce(&left));
    if (!left) {
      // The notices' thread may not have had its turn: one pass now, so that a drain with the
      // relay up leaves nothing queued (what is deferred stays for the next start).
      (void)impl_->notices->Flush();
      return impl_->RefreshMetrics(impl_->metrics.last_round_ms);
    }
    if (Clock::now() >= end) return Status::Unavailable("submitter: messages still unsettled after the drain's deadline");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

SubmitterMetrics Submitter::metrics() const {
  std::lock_guard<std::mutex> g(impl_->metrics_mu);
  return impl_->metrics;
}

}  // namespace ccmail::submitter
