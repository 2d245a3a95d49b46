// SubmitLedger over SQLite: small prepared statements, one transaction per state change.
#include "ccmail/submitter/submit_ledger.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "ccmail/common/clock.h"

namespace ccmail::submitter {

namespace {

constexpr const char* kSchema = R"SQL(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS files(
  file_id TEXT PRIMARY KEY, post_office TEXT NOT NULL, name TEXT NOT NULL,
  taken_ms INTEGER NOT NULL, messages INTEGER NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages(
  file_id TEXT NOT NULL, idx INTEGER NOT NULL, message_id TEXT NOT NULL, author TEXT NOT NULL,
  recipients TEXT NOT NULL, state TEXT NOT NULL, reply TEXT NOT NULL, settled_ms INTEGER NOT NULL,
  attempts INTEGER NOT NULL, resubmissions INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(file_id, idx));
CREATE INDEX IF NOT EXISTS messages_by_id ON messages(message_id);
CREATE INDEX IF NOT EXISTS files_by_state ON files(state);
INSERT OR IGNORE INTO meta(key, value) VALUES('schema', 2), ('in_doubt_resubmitted', 0);
)SQL";

constexpr const char* kMessageColumns =
    "file_id, idx, message_id, author, recipients, state, reply, settled_ms, attempts, resubmissions";
// The columns INSERT gives (resubmissions keeps its default).
constexpr const char* kInsertedMessageColumns =
    "file_id, idx, message_id, author, recipients, state, reply, settled_ms, attempts";
constexpr const char* kFileColumns = "file_id, post_office, name, taken_ms, messages, state";

std::string JoinLines(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out.push_back('\n');
    out += s;
  }
  return out;
}

std::vector<std::string> SplitLines(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < s.size()) {
    size_t nl = s.find('\n', start);
    if (nl == std::string::npos) nl = s.size();
    out.push_back(s.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

}  // namespace

const char* MessageStateName(MessageState s) {
  switch (s) {
    case MessageState::kPending: return "pending";
    case MessageState::kInDoubt: return "in_doubt";
    case MessageState::kSent: return "sent";
    case MessageState::kPartial: return "partial";
    case MessageState::kRefused: return "refused";
    case MessageState::kQuarantined: return "quarantined";
  }
  return "?";
}

bool ParseMessageState(std::string_view name, MessageState* out) {
  for (MessageState s : {MessageState::kPending, MessageState::kInDoubt, MessageState::kSent, MessageState::kPartial,
                         MessageState::kRefused, MessageState::kQuarantined}) {
    if (name == MessageStateName(s)) {
      *out = s;
      return true;
    }
  }
  return false;
}

struct SubmitLedger::Impl {
  std::string path;
  sqlite3* db = nullptr;
  bool read_only = false;

  ~Impl() {
    if (db) sqlite3_close(db);
  }

  Status Error(const std::string& what, int rc) const {
    std::string msg = "submit ledger " + path + ": " + what + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    if (rc == SQLITE_FULL) return Status::NoSpace(msg);
    if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) return Status::Corrupt(msg);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) return Status::Busy(msg);
    return Status::FromErrno(msg, EIO);
  }

  Status Exec(const char* sql, const std::string& what) {
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
    sqlite3_free(err);
    return rc == SQLITE_OK ? Status::Ok() : Error(what, rc);
  }

  Status Writable(const char* what) const {
    if (read_only) return Status::InvalidArgument("submit ledger " + path + " is open read-only: cannot " + what);
    return Status::Ok();
  }
};

namespace {

// A prepared statement that finalizes itself; Bind* take 1-based positions.
class Stmt {
 public:
  Stmt(SubmitLedger::Impl* im, const std::string& sql) : im_(im) {
    rc_ = sqlite3_prepare_v2(im->db, sql.c_str(), -1, &st_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(st_); }
  Status Prepared(const std::string& what) const { return rc_ == SQLITE_OK ? Status::Ok() : im_->Error(what, rc_); }
  void Bind(int i, const std::string& s) { sqlite3_bind_text(st_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT); }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(st_, i, v); }
  // SQLITE_ROW -> *row = true; SQLITE_DONE -> false; else the error.
  Status Step(const std::string& what, bool* row = nullptr) {
    int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) {
      if (row) *row = true;
      return Status::Ok();
    }
    if (rc == SQLITE_DONE) {
      if (row) *row = false;
      return Status::Ok();
    }
    return im_->Error(what, rc);
  }
  std::string Text(int col) const {
    const unsigned char* t = sqlite3_column_text(st_, col);
    return t ? std::string(reinterpret_cast<const char*>(t), static_cast<size_t>(sqlite3_column_bytes(st_, col))) : "";
  }
  int64_t Int(int col) const { return sqlite3_column_int64(st_, col); }
  int Changes() const { return sqlite3_changes(im_->db); }

 private:
  SubmitLedger::Impl* im_;
  sqlite3_stmt* st_ = nullptr;
  int rc_ = SQLITE_OK;
};

SubmitFile FileFromRow(const Stmt& st) {
  SubmitFile f;
  f.file_id = st.Text(0);
  f.post_office = st.Text(1);
  f.name = st.Text(2);
  f.taken_ms = st.Int(3);
  f.messages = static_cast<int>(st.Int(4));
  f.state = st.Text(5);
  return f;
}

SubmitMessage MessageFromRow(const Stmt& st) {
  SubmitMessage m;
  m.file_id = st.Text(0);
  m.idx = static_cast<int>(st.Int(1));
  m.message_id = st.Text(2);
  m.author = st.Text(3);
  m.recipients = SplitLines(st.Text(4));
  if (!ParseMessageState(st.Text(5), &m.state)) m.state = MessageState::kPending;
  m.reply = st.Text(6);
  m.settled_ms = st.Int(7);
  m.attempts = static_cast<int>(st.Int(8));
  m.resubmissions = static_cast<int>(st.Int(9));
  return m;
}

// BEGIN IMMEDIATE ... COMMIT, rolled back when the body fails.
template <typename Body>
Status InTransaction(SubmitLedger::Impl* im, const char* what, Body body) {
  CCMAIL_RETURN_IF_ERROR(im->Writable(what));
  CCMAIL_RETURN_IF_ERROR(im->Exec("BEGIN IMMEDIATE", std::string(what) + ": begin"));
  Status s = body();
  if (s.ok()) s = im->Exec("COMMIT", std::string(what) + ": commit");
  if (!s.ok()) (void)im->Exec("ROLLBACK", "rollback");
  return s;
}

// Schema 1 (before per-message resubmission counts) -> 2, in one transaction.
Status UpgradeSchema(SubmitLedger::Impl* im) {
  {
    Stmt version(im, "SELECT value FROM meta WHERE key = 'schema'");  // finalized before the ALTER
    CCMAIL_RETURN_IF_ERROR(version.Prepared("read the schema"));
    bool row = false;
    CCMAIL_RETURN_IF_ERROR(version.Step("read the schema", &row));
    if (!row) return Status::Corrupt("submit ledger " + im->path + ": no schema row");
    if (version.Int(0) >= 2) return Status::Ok();
  }
  return InTransaction(im, "upgrade the schema", [&] {
    CCMAIL_RETURN_IF_ERROR(im->Exec("ALTER TABLE messages ADD COLUMN resubmissions INTEGER NOT NULL DEFAULT 0",
                                    "upgrade the schema: add messages.resubmissions"));
    return im->Exec("UPDATE meta SET value = 2 WHERE key = 'schema'", "upgrade the schema: version 2");
  });
}

}  // namespace

SubmitLedger::SubmitLedger(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SubmitLedger::~SubmitLedger() = default;
const std::string& SubmitLedger::path() const { return impl_->path; }

Status SubmitLedger::Open(const std::string& path, std::unique_ptr<SubmitLedger>* out) {
  auto im = std::make_unique<Impl>();
  im->path = path;
  int rc = sqlite3_open_v2(path.c_str(), &im->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) return im->Error("open", rc);
  sqlite3_busy_timeout(im->db, 5000);
  ::chmod(path.c_str(), 0600);
  CCMAIL_RETURN_IF_ERROR(im->Exec("PRAGMA journal_mode=WAL", "journal_mode=WAL"));
  CCMAIL_RETURN_IF_ERROR(im->Exec("PRAGMA synchronous=FULL", "synchronous=FULL"));
  CCMAIL_RETURN_IF_ERROR(im->Exec(kSchema, "create the schema"));
  CCMAIL_RETURN_IF_ERROR(UpgradeSchema(im.get()));
  out->reset(new SubmitLedger(std::move(im)));
  return Status::Ok();
}

Status SubmitLedger::OpenReadOnly(const std::string& path, std::unique_ptr<SubmitLedger>* out) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno("submit ledger " + path, errno);
  auto im = std::make_unique<Impl>();
  im->path = path;
  im->read_only = true;
  int rc = sqlite3_open_v2(path.c_str(), &im->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) return im->Error("open read-only", rc);
  sqlite3_busy_timeout(im->db, 5000);
  Stmt check(im.get(), "SELECT value FROM meta WHERE key = 'schema'");
  CCMAIL_RETURN_IF_ERROR(check.Prepared("read the schema"));
  bool row = false;
  CCMAIL_RETURN_IF_ERROR(check.Step("read the schema", &row));
  if (!row) return Status::Corrupt("submit ledger " + path + ": no schema row");
  if (check.Int(0) < 2)
    return Status::InvalidArgument("submit ledger " + path + " has schema " + std::to_string(check.Int(0)) +
                                   ": start ccmail-submitter once to upgrade it");
  out->reset(new SubmitLedger(std::move(im)));
  return Status::Ok();
}

Status SubmitLedger::RecordFile(const SubmitFile& file, bool* inserted) {
  return InTransaction(impl_.get(), "record file", [&] {
    Stmt st(impl_.get(), std::string("INSERT OR IGNORE INTO files(") + kFileColumns + ") VALUES(?,?,?,?,?,?)");
    CCMAIL_RETURN_IF_ERROR(st.Prepared("record file " + file.file_id));
    st.Bind(1, file.file_id);
    st.Bind(2, file.post_office);
    st.Bind(3, file.name);
    st.Bind(4, file.taken_ms ? file.taken_ms : WallClockMs());
    st.Bind(5, static_cast<int64_t>(file.messages));
    st.Bind(6, file.state);
    CCMAIL_RETURN_IF_ERROR(st.Step("record file " + file.file_id));
    *inserted = st.Changes() > 0;
    return Status::Ok();
  });
}

Status SubmitLedger::GetFile(const std::string& file_id, SubmitFile* out) {
  Stmt st(impl_.get(), std::string("SELECT ") + kFileColumns + " FROM files WHERE file_id = ?");
  CCMAIL_RETURN_IF_ERROR(st.Prepared("read file " + file_id));
  st.Bind(1, file_id);
  bool row = false;
  CCMAIL_RETURN_IF_ERROR(st.Step("read file " + file_id, &row));
  if (!row) return Status::NotFound("submit ledger " + impl_->path + ": no file " + file_id);
  *out = FileFromRow(st);
  return Status::Ok();
}

Status SubmitLedger::SetFileState(const std::string& file_id, std::string_view state, int messages) {
  return InTransaction(impl_.get(), "set file state", [&] {
    Stmt st(impl_.get(), "UPDATE files SET state = ?, messages = ? WHERE file_id = ?");
    CCMAIL_RETURN_IF_ERROR(st.Prepared("set state of file " + file_id));
    st.Bind(1, std::string(state));
    st.Bind(2, static_cast<int64_t>(messages));
    st.Bind(3, file_id);
    CCMAIL_RETURN_IF_ERROR(st.Step("set state of file " + file_id));
    if (st.Changes() == 0) return Status::NotFound("submit ledger " + impl_->path + ": no file " + file_id);
    return Status::Ok();
  });
}

namespace {
Status ListFilesWhere(SubmitLedger::Impl* im, const std::string& where, std::vector<SubmitFile>* out) {
  out->clear();
  Stmt st(im, std::string("SELECT ") + kFileColumns + " FROM files " + where + " ORDER BY taken_ms, file_id");
  CCMAIL_RETURN_IF_ERROR(st.Prepared("list files"));
  for (;;) {
    bool row = false;
    CCMAIL_RETURN_IF_ERROR(st.Step("list files", &row));
    if (!row) return Status::Ok();
    out->push_back(FileFromRow(st));
  }
}
}  // namespace

Status SubmitLedger::OpenFiles(std::vector<SubmitFile>* out) {
  return ListFilesWhere(impl_.get(), std::string("WHERE state = '") + kFileTaken + "'", out);
}

Status SubmitLedger::ListFiles(std::vector<SubmitFile>* out) { return ListFilesWhere(impl_.get(), "", out); }

Status SubmitLedger::DoneFileSettledMs(const std::string& file_id, int64_t* settled_ms) {
  *settled_ms = 0;
  // One statement is one read transaction: the state and the times are of the same moment.
  Stmt st(impl_.get(), std::string("SELECT f.state, COALESCE((SELECT MAX(m.settled_ms) FROM messages m "
                                   "WHERE m.file_id = f.file_id), f.taken_ms), (SELECT COUNT(*) FROM messages m "
                                   "WHERE m.file_id = f.file_id AND m.state = 'quarantined') "
                                   "FROM files f WHERE f.file_id = ?"));
  CCMAIL_RETURN_IF_ERROR(st.Prepared("read settled time of file " + file_id));
  st.Bind(1, file_id);
  bool row = false;
  CCMAIL_RETURN_IF_ERROR(st.Step("read settled time of file " + file_id, &row));
  if (!row) return Status::NotFound("submit ledger " + impl_->path + ": no file " + file_id);
  if (st.Text(0) == kFileDone && st.Int(2) == 0) *settled_ms = st.Int(1);
  return Status::Ok();
}

Status SubmitLedger::RecordMessage(const SubmitMessage& m) {
  return InTransaction(impl_.get(), "record message", [&] {
    const std::string what = "record message " + m.file_id + ":" + std::to_string(m.idx);
    Stmt ins(impl_.get(), std::string("INSERT OR IGNORE INTO messages(") + kInsertedMessageColumns +
                              ") VALUES(?,?,?,?,?,'pending','',0,0)");
    CCMAIL_RETURN_IF_ERROR(ins.Prepared(what));
    ins.Bind(1, m.file_id);
    ins.Bind(2, static_cast<int64_t>(m.idx));
    ins.Bind(3, m.message_id);
    ins.Bind(4, m.author);
    ins.Bind(5, JoinLines(m.recipients));
    CCMAIL_RETURN_IF_ERROR(ins.Step(what));
    if (ins.Changes() > 0) return Status::Ok();
    Stmt up(impl_.get(),
            "UPDATE messages SET message_id = ?, author = ?, recipients = ? WHERE file_id = ? AND idx = ? "
            "AND state IN ('pending', 'in_doubt')");
    CCMAIL_RETURN_IF_ERROR(up.Prepared(what));
    up.Bind(1, m.message_id);
    up.Bind(2, m.author);
    up.Bind(3, JoinLines(m.recipients));
    up.Bind(4, m.file_id);
    up.Bind(5, static_cast<int64_t>(m.idx));
    return up.Step(what);
  });
}

Status SubmitLedger::GetMessage(const std::string& file_id, int idx, SubmitMessage* out) {
  Stmt st(impl_.get(), std::string("SELECT ") + kMessageColumns + " FROM messages WHERE file_id = ? AND idx = ?");
  const std::string what = "read message " + file_id + ":" + std::to_string(idx);
  CCMAIL_RETURN_IF_ERROR(st.Prepared(what));
  st.Bind(1, file_id);
  st.Bind(2, static_cast<int64_t>(idx));
  bool row = false;
  CCMAIL_RETURN_IF_ERROR(st.Step(what, &row));
  if (!row) return Status::NotFound("submit ledger " + impl_->path + ": no message " + file_id + ":" + std::to_string(idx));
  *out = MessageFromRow(st);
  return Status::Ok();
}

Status SubmitLedger::MarkInDoubt(const std::string& file_id, int idx, bool* resubmission) {
  *resubmission = false;
  return InTransaction(impl_.get(), "mark in doubt", [&] {
    SubmitMessage m;
    CCMAIL_RETURN_IF_ERROR(GetMessage(file_id, idx, &m));
    if (IsSettled(m.state))
      return Status::InvalidArgument("submit ledger: message " + file_id + ":" + std::to_string(idx) + " is " +
                                     MessageStateName(m.state) + ", not to be sent");
    const std::string what = "mark " + file_id + ":" + std::to_string(idx) + " in doubt";
    Stmt st(impl_.get(), "UPDATE messages SET state = 'in_doubt', attempts = attempts + 1 WHERE file_id = ? AND idx = ?");
    CCMAIL_RETURN_IF_ERROR(st.Prepared(what));
    st.Bind(1, file_id);
    st.Bind(2, static_cast<int64_t>(idx));
    CCMAIL_RETURN_IF_ERROR(st.Step(what));
    if (m.state == MessageState::kInDoubt) {
      *resubmission = true;
      Stmt count(impl_.get(), "UPDATE messages SET resubmissions = resubmissions + 1 WHERE file_id = ? AND idx = ?");
      CCMAIL_RETURN_IF_ERROR(count.Prepared("count a resubmission of " + file_id + ":" + std::to_string(idx)));
      count.Bind(1, file_id);
      count.Bind(2, static_cast<int64_t>(idx));
      CCMAIL_RETURN_IF_ERROR(count.Step("count a resubmission of " + file_id + ":" + std::to_string(idx)));
      CCMAIL_RETURN_IF_ERROR(impl_->Exec(
          "UPDATE meta SET value = value + 1 WHERE key = 'in_doubt_resubmitted'", "count a resubmission"));
    }
    return Status::Ok();
  });
}

namespace {
Status SetMessageState(SubmitLedger::Impl* im, const std::string& file_id, int idx, MessageState state,
                       const std::string& reply, const char* only_from) {
  const std::string what = std::string("set ") + file_id + ":" + std::to_string(idx) + " " + MessageStateName(state);
  Stmt st(im, std::string("UPDATE messages SET state = ?, reply = ?, settled_ms = ? WHERE file_id = ? AND idx = ?") +
                  (only_from ? std::string(" AND state IN (") + only_from + ")" : ""));
  CCMAIL_RETURN_IF_ERROR(st.Prepared(what));
  st.Bind(1, std::string(MessageStateName(state)));
  st.Bind(2, reply);
  st.Bind(3, IsSettled(state) ? WallClockMs() : int64_t{0});
  st.Bind(4, file_id);
  st.Bind(5, static_cast<int64_t>(idx));
  CCMAIL_RETURN_IF_ERROR(st.Step(what));
  if (st.Changes() == 0)
    return only_from ? Status::InvalidArgument("submit ledger: message " + file_id + ":" + std::to_string(idx) +
                                               " is not " + only_from + ": cannot " + what)
                     : Status::NotFound("submit ledger: no message " + file_id + ":" + std::to_string(idx));
  return Status::Ok();
}
}  // namespace

Status SubmitLedger::Settle(const std::string& file_id, int idx, MessageState state, const std::string& reply) {
  if (!IsSettled(state)) return Status::InvalidArgument(std::string("Settle: ") + MessageStateName(state) + " is not final");
  return InTransaction(impl_.get(), "settle message",
                       [&] { return SetMessageState(impl_.get(), file_id, idx, state, reply, nullptr); });
}

Status SubmitLedger::ReturnToPending(const std::string& file_id, int idx, const std::string& reply) {
  return InTransaction(impl_.get(), "return message to pending", [&] {
    return SetMessageState(impl_.get(), file_id, idx, MessageState::kPending, reply, "'in_doubt', 'pending'");
  });
}

Status SubmitLedger::ListMessages(const std::string& file_id, std::vector<SubmitMessage>* out) {
  out->clear();
  Stmt st(impl_.get(), std::string("SELECT ") + kMessageColumns + " FROM messages WHERE file_id = ? ORDER BY idx");
  CCMAIL_RETURN_IF_ERROR(st.Prepared("list messages of " + file_id));
  st.Bind(1, file_id);
  for (;;) {
    bool row = false;
    CCMAIL_RETURN_IF_ERROR(st.Step("list messages of " + file_id, &row));
    if (!row) return Status::Ok();
    out->push_back(MessageFromRow(st));
  }
}

Status SubmitLedger::FindMessage(const std::string& key, SubmitMessage* out) {
  const size_t colon = key.rfind(':');
  bool file_key = colon != std::string::npos && colon >= 8 && colon + 1 < key.size();
  for (size_t i = 0; file_key && i < key.size(); ++i)
    if (i != colon && !std::isxdigit(static_cast<unsigned char>(key[i])) && !(i > colon && std::isdigit(static_cast<unsigned char>(key[i]))))
      file_key = false;
  if (file_key) {
    const std::string prefix = key.substr(0, colon);
    const int idx = std::atoi(key.c_str() + colon + 1);
    Stmt st(impl_.get(), "SELECT file_id FROM files WHERE substr(file_id, 1, ?) = ? LIMIT 2");
    CCMAIL_RETURN_IF_ERROR(st.Prepared("find file " + prefix));
    st.Bind(1, static_cast<int64_t>(prefix.size()));
    st.Bind(2, prefix);
    bool row = false;
    CCMAIL_RETURN_IF_ERROR(st.Step("find file " + prefix, &row));
    if (!row) return Status::NotFound("submit ledger: no file " + prefix);
    const std::string file_id = st.Text(0);
    CCMAIL_RETURN_IF_ERROR(st.Step("find file " + prefix, &row));
    if (row) return Status::InvalidArgument("submit ledger: file id prefix " + prefix + " is ambiguous");
    return GetMessage(file_id, idx, out);
  }
  std::string id = key;
  if (id.empty() || id.front() != '<') id = "<" + id + ">";
  Stmt st(impl_.get(), std::string("SELECT ") + kMessageColumns +
                           " FROM messages WHERE message_id = ? ORDER BY file_id, idx LIMIT 1");
  CCMAIL_RETURN_IF_ERROR(st.Prepared("find message " + id));
  st.Bind(1, id);
  bool row = false;
  CCMAIL_RETURN_IF_ERROR(st.Step("find message " + id, &row));
  if (!row) return Status::NotFound("submit ledger: no message " + key);
  *out = MessageFromRow(st);
  return Status::Ok();
}

Status SubmitLedger::Requeue(const std::string& file_id, int idx) {
  return InTransaction(impl_.get(), "requeue", [&] {
    SubmitFile f;
    CCMAIL_RETURN_IF_ERROR(GetFile(file_id, &f));
    if (f.state == kFileQuarantined)
      return Status::InvalidArgument("submit ledger: file " + file_id +
                                     " was quarantined unread; put it back into the inbox instead");
    CCMAIL_RETURN_IF_ERROR(
        SetMessageState(impl_.get(), file_id, idx, MessageState::kPending, "requeued", "'refused', 'quarantined'"));
    Stmt st(impl_.get(), std::string("UPDATE files SET state = '") + kFileTaken + "' WHERE file_id = ?");
    CCMAIL_RETURN_IF_ERROR(st.Prepared("reopen file " + file_id));
    st.Bind(1, file_id);
    return st.Step("reopen file " + file_id);
  });
}

Status SubmitLedger::Counters(SubmitCounters* out) {
  *out = SubmitCounters{};
  {
    Stmt st(impl_.get(), "SELECT state, COUNT(*) FROM files GROUP BY state");
    CCMAIL_RETURN_IF_ERROR(st.Prepared("count files"));
    for (bool row = true;;) {
      CCMAIL_RETURN_IF_ERROR(st.Step("count files", &row));
      if (!row) break;
      const uint64_t n = static_cast<uint64_t>(st.Int(1));
      out->files_taken += n;
      if (st.Text(0) == kFileTaken) out->files_open += n;
      if (st.Text(0) == kFileQuarantined) out->files_quarantined += n;
    }
  }
  {
    Stmt st(impl_.get(), "SELECT state, COUNT(*) FROM messages GROUP BY state");
    CCMAIL_RETURN_IF_ERROR(st.Prepared("count messages"));
    for (bool row = true;;) {
      CCMAIL_RETURN_IF_ERROR(st.Step("count messages", &row));
      if (!row) break;
      MessageState s;
      if (!ParseMessageState(st.Text(0), &s)) continue;
      const uint64_t n = static_cast<uint64_t>(st.Int(1));
      switch (s) {
        case MessageState::kPending: out->pending = n; break;
        case MessageState::kInDoubt: out->in_doubt = n; break;
        case MessageState::kSent: out->sent = n; break;
        case MessageState::kPartial: out->partial = n; break;
        case MessageState::kRefused: out->refused = n; break;
        case MessageState::kQuarantined: out->quarantined = n; break;
      }
    }
  }
  Stmt st(impl_.get(), "SELECT value FROM meta WHERE key = 'in_doubt_resubmitted'");
  CCMAIL_RETURN_IF_ERROR(st.Prepared("read in_doubt_resubmitted"));
  bool row = false;
  CCMAIL_RETURN_IF_ERROR(st.Step("read in_doubt_resubmitted", &row));
  if (row) out->in_doubt_resubmitted = static_cast<uint64_t>(st.Int(0));
  return Status::Ok();
}

}  // namespace ccmail::submitter
