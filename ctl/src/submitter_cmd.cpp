// submitter_cmd.cpp - `ccmailctl submitter ...` (see submitter_cmd.h).
#include "submitter_cmd.h"

#include <signal.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string_view>

#include "ccmail/common/clock.h"
#include "ccmail/config/settings.h"
#include "ccmail/ctl/json.h"
#include "ccmail/mtaconf/check_submit_relay.h"
#include "ccmail/submitter/submit_ledger.h"
#include "format.h"

namespace ccmail::ctl {

struct SubmitterCli {
  CLI::App* status = nullptr;
  CLI::App* list = nullptr;
  CLI::App* show = nullptr;
  CLI::App* requeue = nullptr;
  CLI::App* metrics = nullptr;
  std::string list_state;
  std::string list_file;
  size_t limit = 1000;
  std::string show_key;
  std::vector<std::string> requeue_keys;
  bool requeue_all = false;
};

namespace {

namespace fs = std::filesystem;
using submitter::MessageState;
using submitter::SubmitCounters;
using submitter::SubmitFile;
using submitter::SubmitLedger;
using submitter::SubmitMessage;

struct WayBackPaths {
  std::string state_dir;  // <spool_directory>/submitter
  std::string ledger;
  std::string quarantine;
  std::string notices;
  std::string inbox;
  std::string pid_file;
};

Status Paths(const Context& ctx, WayBackPaths* p) {
  p->state_dir = ctx.paths.spool_directory + "/submitter";
  p->ledger = p->state_dir + "/ledger.db";
  p->quarantine = p->state_dir + "/quarantine";
  p->notices = p->state_dir + "/notices";
  CCMAIL_RETURN_IF_ERROR(ctx.cfg.GetString("inbox_directory", &p->inbox));
  return ctx.cfg.GetString("submitter_pid_file", &p->pid_file);
}

// The daemon's rule for a complete inbox file: not hidden, not .tmp or .part.
bool CompleteName(const std::string& name) {
  auto ends = [&](const char* suffix) {
    std::string_view s(suffix);
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  return !name.empty() && name[0] != '.' && !ends(".tmp") && !ends(".part");
}

struct DirCount {
  PartState state = PartState::kMissing;
  std::string error;
  uint64_t files = 0;
  uint64_t bytes = 0;
  std::optional<int64_t> oldest_ms;
  std::map<std::string, uint64_t> per_post_office;
};

int64_t MtimeMs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
}

// Regular files of dir (depth 1) whose name passes keep; with per_subdir, of its sub-directories.
void CountFiles(const std::string& dir, bool per_subdir, bool (*keep)(const std::string&), DirCount* out) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return;
  out->state = PartState::kOk;
  auto count_in = [&](const fs::path& d, const std::string& po) {
    std::error_code e;
    for (fs::directory_iterator it(d, e), end; !e && it != end; it.increment(e)) {
      std::string name = it->path().filename().string();
      struct stat st;
      if (!keep(name) || ::lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      ++out->files;
      out->bytes += static_cast<uint64_t>(st.st_size);
      if (!po.empty()) ++out->per_post_office[po];
      int64_t m = MtimeMs(st);
      if (!out->oldest_ms || m < *out->oldest_ms) out->oldest_ms = m;
    }
    if (e) {
      out->state = PartState::kError;
      out->error = d.string() + ": " + e.message();
    }
  };
  if (!per_subdir) {
    count_in(dir, "");
    return;
  }
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec) && !it->is_symlink(ec)) count_in(it->path(), it->path().filename().string());
  }
  if (ec) {
    out->state = PartState::kError;
    out->error = dir + ": " + ec.message();
  }
}

// A directory name as a Prometheus label value: a post office directory is named by whoever
// can write inbox_directory, so a quote, a backslash or a newline must not break the exposition.
std::string PrometheusLabelValue(std::string_view raw) {
  std::string out;
  for (char c : raw) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// The submitter's name for an inbox entry it set aside: .<name>.refused or .<name>.refused.<n>
// (its .reason file is not one).
bool RefusedInboxName(const std::string& name) {
  if (name.size() < 2 || name[0] != '.') return false;
  std::string_view rest(name);
  const size_t dot = rest.find_last_of('.');
  if (dot != std::string_view::npos && dot + 1 < rest.size() &&
      rest.find_first_not_of("0123456789", dot + 1) == std::string_view::npos)
    rest = rest.substr(0, dot);  // .<name>.refused.<n>
  constexpr std::string_view kSuffix = ".refused";
  return rest.size() > kSuffix.size() + 1 && rest.substr(rest.size() - kSuffix.size()) == kSuffix;
}

// Refused entries per post office: whatever their type (a symlink or FIFO is refused too).
void CountRefused(const std::string& inbox, std::map<std::string, uint64_t>* per_post_office, uint64_t* total) {
  std::error_code ec;
  for (fs::directory_iterator it(inbox, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_directory(ec) || it->is_symlink(ec)) continue;
    std::error_code e;
    for (fs::directory_iterator f(it->path(), e), fend; !e && f != fend; f.increment(e)) {
      if (!RefusedInboxName(f->path().filename().string())) continue;
      ++(*per_post_office)[it->path().filename().string()];
      ++*total;
    }
  }
}

bool NotReason(const std::string& name) {
  return name.size() < 7 || name.compare(name.size() - 7, 7, ".reason") != 0;
}
bool NotHidden(const std::string& name) { return !name.empty() && name[0] != '.'; }

struct WayBackState {
  int64_t now_ms = 0;
  WayBackPaths paths;
  PartState ledger = PartState::kMissing;
  std::string ledger_error;
  SubmitCounters counters;
  DirCount inbox, quarantine, notices;
  uint64_t refused_total = 0;                        // inbox entries set aside (.<name>.refused)
  std::map<std::string, uint64_t> refused_per_post_office;
  std::optional<long> pid;  // a live ccmail-submitter named by the pid file
  // The daemon's own "name value" metrics file (<state_dir>/metrics, rewritten every round):
  // what only the running daemon knows (last_round_ms, deferred_files, window_*).
  std::map<std::string, uint64_t> daemon;
};

// Values the ledger gives already are taken from the ledger (the file may be a round old).
bool FromLedger(const std::string& name) {
  for (const char* n : {"files_taken", "files_open", "files_quarantined", "messages_sent", "partial", "refused",
                        "quarantined", "pending", "in_doubt", "in_doubt_resubmitted"})
    if (name == n) return true;
  return false;
}

void ReadDaemonMetrics(const std::string& path, std::map<std::string, uint64_t>* out) {
  std::ifstream f(path);
  std::string name;
  uint64_t value = 0;
  while (f >> name >> value) {
    if (!FromLedger(name)) (*out)[name] = value;
  }
}

// A pid file is trusted only when that process is alive and is a ccmail-submitter.
std::optional<long> LiveSubmitter(const std::string& pid_file) {
  std::ifstream f(pid_file);
  long pid = 0;
  if (!(f >> pid) || pid <= 1) return std::nullopt;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return std::nullopt;
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(comm, name);
  if (name.rfind("ccmail-submit", 0) != 0) return std::nullopt;
  return pid;
}

Status OpenForReading(const WayBackPaths& p, std::unique_ptr<SubmitLedger>* out) {
  return SubmitLedger::OpenReadOnly(p.ledger, out);
}

Status Gather(const Context& ctx, WayBackState* st) {
  st->now_ms = WallClockMs();
  CCMAIL_RETURN_IF_ERROR(Paths(ctx, &st->paths));
  std::unique_ptr<SubmitLedger> l;
  Status s = OpenForReading(st->paths, &l);
  if (s.ok()) s = l->Counters(&st->counters);
  if (s.ok()) {
    st->ledger = PartState::kOk;
  } else if (s.IsNotFound() && !l) {
    st->ledger = PartState::kMissing;
  } else {
    st->ledger = PartState::kError;
    st->ledger_error = s.ToString();
  }
  CountFiles(st->paths.inbox, true, CompleteName, &st->inbox);
  CountRefused(st->paths.inbox, &st->refused_per_post_office, &st->refused_total);
  CountFiles(st->paths.quarantine, false, NotReason, &st->quarantine);
  CountFiles(st->paths.notices, false, NotHidden, &st->notices);
  st->pid = LiveSubmitter(st->paths.pid_file);
  ReadDaemonMetrics(st->paths.state_dir + "/metrics", &st->daemon);
  // The daemon counts its notice queue itself; the directory count is for a stopped daemon.
  if (auto it = st->daemon.find("notices_pending"); it != st->daemon.end()) st->notices.files = it->second;
  st->daemon.erase("notices_pending");
  return Status::Ok();
}

std::string ShortKey(const SubmitMessage& m) { return m.file_id.substr(0, 12) + ":" + std::to_string(m.idx); }

std::string Join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

int Fail(const Io& io, const char* cmd, const Status& s) {
  io.err << "ccmailctl submitter " << cmd << ": " << s.ToString() << "\n";
  return kExitFailure;
}

void CountersJson(JsonWriter& w, const SubmitCounters& c) {
  w.UIntMembers({{"files_taken", c.files_taken}, {"files_open", c.files_open},
                 {"files_quarantined", c.files_quarantined}, {"pending", c.pending}, {"in_doubt", c.in_doubt},
                 {"messages_sent", c.sent}, {"partial", c.partial}, {"refused", c.refused},
                 {"quarantined", c.quarantined}, {"in_doubt_resubmitted", c.in_doubt_resubmitted}});
}

constexpr const char* kRefusedHint =
    "set aside as .<name>.refused with a .reason file: see docs/ADMIN.md, \"The way back: refused inbox entries\"";

int StatusCmd(const Io& io) {
  WayBackState st;
  if (Status s = Gather(io.ctx, &st); !s.ok()) return Fail(io, "status", s);
  const SubmitCounters& c = st.counters;
  if (io.json) {
    JsonWriter w;
    w.BeginObject();
    w.Key("submitter").String(st.pid ? "running" : "not running");
    if (st.pid) w.Key("pid").Int(*st.pid);
    w.Key("ledger").BeginObject().Key("state").String(PartStateName(st.ledger)).Key("path").String(st.paths.ledger);
    if (!st.ledger_error.empty()) w.Key("error").String(st.ledger_error);
    CountersJson(w, c);
    w.EndObject();
    w.Key("inbox").BeginObject().Key("path").String(st.paths.inbox);
    w.UIntMembers({{"backlog_files", st.inbox.files}, {"backlog_bytes", st.inbox.bytes}});
    w.Key("oldest_age_ms").Int(st.inbox.oldest_ms ? std::max<int64_t>(0, st.now_ms - *st.inbox.oldest_ms) : 0);
    w.Key("post_offices").BeginObject();
    for (const auto& [po, n] : st.inbox.per_post_office) w.Key(po).UInt(n);
    w.EndObject();
    w.Key("refused").UInt(st.refused_total);
    w.Key("refused_per_post_office").BeginObject();
    for (const auto& [po, n] : st.refused_per_post_office) w.Key(po).UInt(n);
    w.EndObject();
    if (st.refused_total > 0) w.Key("refused_hint").String(kRefusedHint);
    w.EndObject();
    w.UIntMembers({{"quarantined_files", st.quarantine.files}, {"notices_pending", st.notices.files}});
    w.EndObject();
    io.out << w.Take();
  } else {
    KeyValueText t;
    t.Add("submitter", st.pid ? "running (pid " + std::to_string(*st.pid) + ")" : "not running");
    std::string ledger = st.ledger == PartState::kOk        ? st.paths.ledger
                         : st.ledger == PartState::kMissing ? "none yet (" + st.paths.ledger + ")"
                                                            : "ERROR " + st.ledger_error;
    t.Add("ledger", ledger);
    if (st.ledger == PartState::kOk) {
      t.Add("files", std::to_string(c.files_taken) + " taken, " + std::to_string(c.files_open) + " open, " +
                         std::to_string(c.files_quarantined) + " quarantined", 2);
      t.Add("messages", std::to_string(c.sent) + " sent, " + std::to_string(c.partial) + " partial, " +
                            std::to_string(c.refused) + " refused, " + std::to_string(c.quarantined) +
                            " quarantined", 2);
      t.Add("waiting", std::to_string(c.pending) + " pending, " + std::to_string(c.in_doubt) + " in doubt", 2);
      t.Add("in_doubt_resubmitted", std::to_string(c.in_doubt_resubmitted), 2);
    }
    std::string inbox = std::to_string(st.inbox.files) + " file(s), " + FormatBytes(st.inbox.bytes);
    if (st.inbox.oldest_ms) inbox += ", oldest " + FormatAge(std::max<int64_t>(0, st.now_ms - *st.inbox.oldest_ms));
    if (st.inbox.state == PartState::kMissing) inbox = "missing (" + st.paths.inbox + ")";
    if (st.inbox.state == PartState::kError) inbox = "ERROR " + st.inbox.error;
    t.Add("inbox", inbox);
    for (const auto& [po, n] : st.inbox.per_post_office) t.Add(po, std::to_string(n) + " file(s)", 2);
    std::string refused = std::to_string(st.refused_total) + " entr" + (st.refused_total == 1 ? "y" : "ies");
    if (st.refused_total > 0) refused += std::string(" (") + kRefusedHint + ")";
    t.Add("inbox refused", refused);
    for (const auto& [po, n] : st.refused_per_post_office) t.Add(po, std::to_string(n) + " refused", 2);
    t.Add("quarantined files", std::to_string(st.quarantine.files) + " (" + st.paths.quarantine + ")");
    t.Add("notices pending", std::to_string(st.notices.files));
    if (auto it = st.daemon.find("last_round_ms"); it != st.daemon.end())
      t.Add("last round", std::to_string(it->second) + " ms");
    if (auto it = st.daemon.find("window_max_us"); it != st.daemon.end())
      t.Add("250->commit window", "max " + std::to_string(it->second) + " us");
    io.out << t.Render();
  }
  return st.ledger == PartState::kError ? kExitFailure : kExitOk;
}

int Metrics(const Io& io) {
  WayBackState st;
  if (Status s = Gather(io.ctx, &st); !s.ok()) return Fail(io, "metrics", s);
  if (st.ledger == PartState::kError) io.err << "ccmailctl: submitter ledger: " << st.ledger_error << "\n";
  const SubmitCounters& c = st.counters;
  const bool ledger = st.ledger != PartState::kError;  // missing: every counter is 0
  if (io.json) {
    JsonWriter w;
    w.BeginObject();
    w.Key("running").Bool(st.pid.has_value());
    if (ledger) CountersJson(w, c);
    w.UIntMembers({{"inbox_files", st.inbox.files}, {"inbox_refused", st.refused_total},
                   {"quarantined_files", st.quarantine.files}, {"notices_pending", st.notices.files}});
    for (const auto& [name, value] : st.daemon) w.Key(name).UInt(value);
    w.EndObject();
    io.out << w.Take();
    return ledger ? kExitOk : kExitFailure;
  }
  auto family = [&](const char* name, const char* type, const char* help) {
    io.out << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
  };
  auto sample = [&](const std::string& name, uint64_t v) { io.out << name << " " << v << "\n"; };
  family("ccmail_submitter_up", "gauge", "1 when a ccmail-submitter named by submitter_pid_file is alive.");
  sample("ccmail_submitter_up", st.pid ? 1 : 0);
  family("ccmail_submitter_inbox_files", "gauge", "Complete EXPORT files in inbox_directory not taken yet.");
  sample("ccmail_submitter_inbox_files", st.inbox.files);
  family("ccmail_submitter_inbox_oldest_age_seconds", "gauge", "Age of the oldest file waiting in the inbox.");
  sample("ccmail_submitter_inbox_oldest_age_seconds",
         st.inbox.oldest_ms ? static_cast<uint64_t>(std::max<int64_t>(0, st.now_ms - *st.inbox.oldest_ms) / 1000) : 0);
  // Set-aside entries need an administrator (docs/ADMIN.md): a gauge an alert can fire on.
  family("ccmail_submitter_inbox_refused", "gauge",
         "Inbox entries set aside as .<name>.refused (symlink, special file, several links, too large), per post office.");
  if (st.refused_per_post_office.empty()) sample("ccmail_submitter_inbox_refused", 0);
  for (const auto& [po, n] : st.refused_per_post_office)
    sample("ccmail_submitter_inbox_refused{post_office=\"" + PrometheusLabelValue(po) + "\"}", n);
  family("ccmail_submitter_quarantined_files", "gauge", "Unreadable EXPORT files in submitter/quarantine.");
  sample("ccmail_submitter_quarantined_files", st.quarantine.files);
  family("ccmail_submitter_notices_pending", "gauge", "Notices to cc:Mail authors not yet imported.");
  sample("ccmail_submitter_notices_pending", st.notices.files);
  if (ledger) {
    family("ccmail_submitter_files_taken_total", "counter", "EXPORT files taken from the inbox (ledger).");
    sample("ccmail_submitter_files_taken_total", c.files_taken);
    family("ccmail_submitter_messages", "gauge", "Messages of taken files by state (ledger).");
    sample("ccmail_submitter_messages{state=\"pending\"}", c.pending);
    sample("ccmail_submitter_messages{state=\"in_doubt\"}", c.in_doubt);
    sample("ccmail_submitter_messages{state=\"sent\"}", c.sent);
    sample("ccmail_submitter_messages{state=\"partial\"}", c.partial);
    sample("ccmail_submitter_messages{state=\"refused\"}", c.refused);
    sample("ccmail_submitter_messages{state=\"quarantined\"}", c.quarantined);
    family("ccmail_submitter_in_doubt_resubmitted_total", "counter",
           "Messages submitted again after a crash between DATA and the ledger commit.");
    sample("ccmail_submitter_in_doubt_resubmitted_total", c.in_doubt_resubmitted);
  }
  if (!st.daemon.empty()) {
    family("ccmail_submitter_daemon", "gauge",
           "The running submitter's own figures (its metrics file): last_round_ms, deferred_files, "
           "window_* (the 250 -> ledger commit window, microseconds).");
    for (const auto& [name, value] : st.daemon) sample("ccmail_submitter_daemon{name=\"" + name + "\"}", value);
  }
  return ledger ? kExitOk : kExitFailure;
}

// A file id or a unique prefix of it (at least 8 hex digits), as `list` shows it.
Status ResolveFile(SubmitLedger* l, const std::string& key, SubmitFile* out) {
  if (key.size() < 8) return Status::InvalidArgument("file id " + key + ": give at least 8 hex digits");
  std::vector<SubmitFile> files;
  CCMAIL_RETURN_IF_ERROR(l->ListFiles(&files));
  const SubmitFile* hit = nullptr;
  for (const auto& f : files) {
    if (f.file_id.rfind(key, 0) != 0) continue;
    if (hit) return Status::InvalidArgument("file id prefix " + key + " is ambiguous");
    hit = &f;
  }
  if (!hit) return Status::NotFound("no taken file with id " + key);
  *out = *hit;
  return Status::Ok();
}

int List(const Io& io, const SubmitterCli& cli) {
  WayBackPaths p;
  if (Status s = Paths(io.ctx, &p); !s.ok()) return Fail(io, "list", s);
  MessageState want{};
  if (!cli.list_state.empty() && !submitter::ParseMessageState(cli.list_state, &want)) {
    io.err << "ccmailctl submitter list: --state " << cli.list_state
           << ": expected pending, in_doubt, sent, partial, refused or quarantined\n";
    return kExitUsage;
  }
  std::unique_ptr<SubmitLedger> l;
  Status s = OpenForReading(p, &l);
  if (s.IsNotFound() && !l) {
    if (io.json) io.out << "[]\n";
    else io.out << "no file taken yet (" << p.ledger << " does not exist)\n";
    return kExitOk;
  }
  std::vector<SubmitFile> files;
  if (s.ok()) s = l->ListFiles(&files);
  if (s.ok() && !cli.list_file.empty()) {
    SubmitFile one;
    s = ResolveFile(l.get(), cli.list_file, &one);
    files = {one};
  }
  if (!s.ok()) return Fail(io, "list", s);
  const int64_t now = WallClockMs();
  const bool messages = !cli.list_state.empty() || !cli.list_file.empty();
  JsonWriter w;
  w.BeginArray();
  TextTable files_table({"FILE", "PO", "NAME", "TAKEN", "MESSAGES", "STATE"});
  TextTable msg_table({"MESSAGE", "STATE", "AUTHOR", "RECIPIENTS", "REPLY"});
  size_t shown = 0, total = 0;
  for (const auto& f : files) {
    if (!messages) {
      if (++total > cli.limit && cli.limit) continue;
      ++shown;
      if (io.json) {
        w.BeginObject().StringMembers({{"file_id", f.file_id}, {"post_office", f.post_office}, {"name", f.name},
                                       {"state", f.state}});
        w.Key("taken_ms").Int(f.taken_ms).Key("messages").Int(f.messages).EndObject();
      } else {
        files_table.Add({f.file_id.substr(0, 12), f.post_office, f.name, FormatAge(std::max<int64_t>(0, now - f.taken_ms)),
                         std::to_string(f.messages), f.state});
      }
      continue;
    }
    std::vector<SubmitMessage> ms;
    if (Status ls = l->ListMessages(f.file_id, &ms); !ls.ok()) return Fail(io, "list", ls);
    for (const auto& m : ms) {
      if (!cli.list_state.empty() && m.state != want) continue;
      if (++total > cli.limit && cli.limit) continue;
      ++shown;
      if (io.json) {
        w.BeginObject().StringMembers({{"key", m.file_id + ":" + std::to_string(m.idx)}, {"message_id", m.message_id},
                                       {"state", submitter::MessageStateName(m.state)}, {"author", m.author},
                                       {"reply", m.reply}});
        w.Key("attempts").Int(m.attempts).Key("resubmissions").Int(m.resubmissions);
        w.Key("recipients").BeginArray();
        for (const auto& r : m.recipients) w.String(r);
        w.EndArray().EndObject();
      } else {
        msg_table.Add({ShortKey(m), submitter::MessageStateName(m.state), m.author, Join(m.recipients, ","), m.reply});
      }
    }
  }
  w.EndArray();
  if (io.json) {
    io.out << w.Take();
  } else {
    io.out << (messages ? msg_table.Render() : files_table.Render());
    if (shown < total) io.out << "(" << shown << " of " << total << " shown; -n 0 shows all)\n";
  }
  return kExitOk;
}

int Show(const Io& io, const std::string& key) {
  WayBackPaths p;
  if (Status s = Paths(io.ctx, &p); !s.ok()) return Fail(io, "show", s);
  std::unique_ptr<SubmitLedger> l;
  Status s = OpenForReading(p, &l);
  SubmitMessage m;
  SubmitFile f;
  if (s.ok()) s = l->FindMessage(key, &m);
  if (s.ok()) s = l->GetFile(m.file_id, &f);
  if (!s.ok()) return Fail(io, "show", s);
  const std::string taken = p.state_dir + "/taken/" + f.post_office + "/" + f.file_id;
  std::error_code ec;
  const bool have_bytes = fs::exists(taken, ec);
  if (io.json) {
    JsonWriter w;
    w.BeginObject();
    w.StringMembers({{"file_id", m.file_id}, {"message_id", m.message_id},
                     {"state", submitter::MessageStateName(m.state)}, {"author", m.author}, {"reply", m.reply},
                     {"post_office", f.post_office}, {"file_name", f.name}, {"file_state", f.state}});
    w.Key("index").Int(m.idx).Key("attempts").Int(m.attempts).Key("resubmissions").Int(m.resubmissions);
    w.Key("settled_ms").Int(m.settled_ms);
    w.Key("taken_ms").Int(f.taken_ms);
    w.Key("taken_copy").String(have_bytes ? taken : "");
    w.Key("recipients").BeginArray();
    for (const auto& r : m.recipients) w.String(r);
    w.EndArray().EndObject();
    io.out << w.Take();
    return kExitOk;
  }
  KeyValueText t;
  t.Add("message", m.file_id + ":" + std::to_string(m.idx));
  t.Add("message-id", m.message_id);
  t.Add("state", submitter::MessageStateName(m.state));
  t.Add("author", m.author);
  t.Add("recipients", Join(m.recipients, ", "));
  t.Add("attempts", std::to_string(m.attempts));
  if (m.resubmissions > 0)
    t.Add("resubmitted", std::to_string(m.resubmissions) +
                             " time(s) while in doubt: its recipients may hold as many extra copies");
  if (m.settled_ms) t.Add("settled", FormatUtc(m.settled_ms));
  if (!m.reply.empty()) t.Add("reply", m.reply);
  t.Add("file", f.post_office + "/" + f.name + " (" + std::to_string(f.messages) + " message(s), " + f.state + ")");
  t.Add("taken", FormatUtc(f.taken_ms));
  // A done file's copy goes taken_retention after it settled; a requeue would have nothing to send.
  t.Add("bytes", have_bytes                     ? taken
                 : f.state == submitter::kFileDone ? "not kept (" + taken + " is gone: removed after taken_retention)"
                                                 : "not kept (" + taken + " is gone)");
  if (have_bytes && (m.state == MessageState::kRefused || m.state == MessageState::kQuarantined))
    t.Add("to retry", "ccmailctl submitter requeue " + ShortKey(m));
  io.out << t.Render();
  return kExitOk;
}

int Requeue(const Io& io, const SubmitterCli& cli) {
  WayBackPaths p;
  if (Status s = Paths(io.ctx, &p); !s.ok()) return Fail(io, "requeue", s);
  if (cli.requeue_keys.empty() && !cli.requeue_all) {
    io.err << "ccmailctl submitter requeue: give message keys (FILE:INDEX or Message-ID) or --all\n";
    return kExitUsage;
  }
  // Never create a ledger here: a missing one means there is nothing to requeue.
  {
    std::unique_ptr<SubmitLedger> probe;
    if (Status s = OpenForReading(p, &probe); !s.ok()) return Fail(io, "requeue", s);
  }
  std::unique_ptr<SubmitLedger> l;
  if (Status s = SubmitLedger::Open(p.ledger, &l); !s.ok()) return Fail(io, "requeue", s);
  std::vector<SubmitMessage> targets;
  int rc = kExitOk;
  size_t failed = 0;
  if (cli.requeue_all) {
    std::vector<SubmitFile> files;
    if (Status s = l->ListFiles(&files); !s.ok()) return Fail(io, "requeue", s);
    for (const auto& f : files) {
      std::vector<SubmitMessage> ms;
      if (Status s = l->ListMessages(f.file_id, &ms); !s.ok()) return Fail(io, "requeue", s);
      for (auto& m : ms)
        if (m.state == MessageState::kRefused || m.state == MessageState::kQuarantined) targets.push_back(std::move(m));
    }
  }
  for (const auto& key : cli.requeue_keys) {
    SubmitMessage m;
    if (Status s = l->FindMessage(key, &m); !s.ok()) {
      io.err << "ccmailctl submitter requeue: " << key << ": " << s.ToString() << "\n";
      rc = kExitFailure;
      ++failed;
      continue;
    }
    targets.push_back(std::move(m));
  }
  size_t done = 0, skipped = 0;
  for (const auto& m : targets) {
    // The daemon reads a requeued message from its taken copy: without it, it would only
    // quarantine the file. A copy is gone once taken_retention passed after the file was done.
    SubmitFile f;
    if (Status s = l->GetFile(m.file_id, &f); !s.ok()) return Fail(io, "requeue", s);
    const std::string taken = p.state_dir + "/taken/" + f.post_office + "/" + f.file_id;
    std::error_code ec;
    if (f.state != submitter::kFileQuarantined && !fs::exists(taken, ec)) {
      io.err << "ccmailctl submitter requeue: " << ShortKey(m) << ": its taken copy " << taken
             << " is gone (removed after taken_retention): nothing to send it from; left "
             << submitter::MessageStateName(m.state) << "\n";
      ++skipped;
      if (!cli.requeue_all) {
        rc = kExitFailure;
        ++failed;
      }
      continue;
    }
    if (Status s = l->Requeue(m.file_id, m.idx); !s.ok()) {
      io.err << "ccmailctl submitter requeue: " << ShortKey(m) << ": " << s.ToString() << "\n";
      rc = kExitFailure;
      ++failed;
      continue;
    }
    ++done;
    if (!io.json) io.out << "requeued " << ShortKey(m) << " (was " << submitter::MessageStateName(m.state) << ")\n";
  }
  if (io.json) {
    JsonWriter w;
    w.BeginObject().Key("requeued").UInt(done).Key("failed").UInt(failed).Key("copy_gone").UInt(skipped).EndObject();
    io.out << w.Take();
  } else if (done == 0 && rc == kExitOk) {
    io.out << "nothing to requeue (no refused or quarantined message)\n";
  }
  return rc;
}

}  // namespace

void AddSubmitRelayFindings(const Context& ctx, mtaconf::MtaReport* report) {
  mtaconf::SubmitRelayCheckOptions opt;
  WayBackPaths p;
  std::string export_command, author_domain;
  Status s = Paths(ctx, &p);
  if (s.ok()) s = ctx.cfg.GetString("submit_relay", &opt.submit_relay);
  if (s.ok()) s = ctx.cfg.GetString("export_command", &export_command);
  if (s.ok()) s = ctx.cfg.GetList("ccmail_domains", &opt.author_domains);
  if (!s.ok()) {
    report->findings.push_back({"submitter", mtaconf::Verdict::kWrong, "configuration", s.ToString(), ""});
    return;
  }
  // author_domain (the unmapped authors' domain) is a sender too, when it is configured (the
  // setting belongs to the conversion; asked only when this build knows it).
  if (FindSetting("author_domain") && ctx.cfg.GetString("author_domain", &author_domain).ok() &&
      !author_domain.empty() &&
      std::find(opt.author_domains.begin(), opt.author_domains.end(), author_domain) == opt.author_domains.end())
    opt.author_domains.push_back(author_domain);
  std::error_code ec;
  bool po_dir = false;
  for (fs::directory_iterator it(p.inbox, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_directory(ec)) po_dir = true;
  opt.in_use = po_dir || !export_command.empty() || fs::exists(p.ledger, ec);
  for (auto& f : mtaconf::CheckSubmitRelay(opt)) report->findings.push_back(std::move(f));
}

std::shared_ptr<SubmitterCli> AddSubmitterCommands(CLI::App* app) {
  auto cli = std::make_shared<SubmitterCli>();
  auto* sub = app->add_subcommand(
      "submitter", "the way back (ccmail-submitter: cc:Mail EXPORT files to Internet mail): status, list, show, "
                   "requeue, metrics");
  sub->require_subcommand(1);
  cli->status = sub->add_subcommand(
      "status", "submitter liveness, ledger counts by state, inbox backlog per post office, quarantine, notices");
  cli->list = sub->add_subcommand(
      "list", "taken files, oldest first; with --state or --file the messages: key, state, author, recipients, reply");
  cli->list->add_option("-s,--state", cli->list_state, "messages in this state (pending, in_doubt, sent, partial, "
                                                       "refused, quarantined)");
  cli->list->add_option("-f,--file", cli->list_file, "messages of this file (id or a prefix of 8+ hex digits)");
  cli->list->add_option("-n,--limit", cli->limit, "show at most this many (0: all)")->capture_default_str();
  cli->show = sub->add_subcommand("show", "one message: state, Message-ID, author, recipients, last reply, its file");
  cli->show->add_option("message", cli->show_key, "FILE:INDEX as `list` prints it, or the Message-ID")->required();
  cli->requeue = sub->add_subcommand(
      "requeue", "put refused or quarantined messages back to pending (the running submitter sends them again)");
  cli->requeue->add_option("message", cli->requeue_keys, "FILE:INDEX or Message-ID (repeatable)");
  cli->requeue->add_flag("--all", cli->requeue_all, "every refused and quarantined message");
  cli->metrics = sub->add_subcommand("metrics", "the way back in Prometheus text format (--json: one object)");
  return cli;
}

bool RunSubmitterCommand(const SubmitterCli& cli, const Io& io, int* rc) {
  if (cli.status->parsed()) *rc = StatusCmd(io);
  else if (cli.list->parsed()) *rc = List(io, cli);
  else if (cli.show->parsed()) *rc = Show(io, cli.show_key);
  else if (cli.requeue->parsed()) *rc = Requeue(io, cli);
  else if (cli.metrics->parsed()) *rc = Metrics(io);
  else return false;
  return true;
}

}  // namespace ccmail::ctl
