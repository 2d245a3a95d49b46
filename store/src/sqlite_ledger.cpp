// sqlite_ledger.cpp - the single-relay ledger: SQLite WAL + synchronous=FULL; one transaction
// per round.
#include "ccmail/store/ledger.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>

#include "ccmail/common/clock.h"
#include "ccmail/common/unique_fd.h"
#include "ccmail/store/io.h"

namespace ccmail::store {
namespace {

const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches(
  seq INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, post_office TEXT NOT NULL,
  file_name TEXT NOT NULL, created_ms INTEGER NOT NULL, messages INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS captures(
  capture_id BLOB PRIMARY KEY, batch_seq INTEGER NOT NULL, created_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries(
  content_key BLOB NOT NULL, recipient TEXT NOT NULL, kind INTEGER NOT NULL,
  capture_id BLOB NOT NULL, batch_seq INTEGER NOT NULL, created_ms INTEGER NOT NULL,
  PRIMARY KEY(content_key, recipient, kind, capture_id)) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_exported ON deliveries(content_key, recipient) WHERE kind = 1;
CREATE INDEX IF NOT EXISTS deliveries_age ON deliveries(created_ms);
CREATE INDEX IF NOT EXISTS captures_age ON captures(created_ms);
INSERT OR IGNORE INTO meta(key, value) VALUES('schema', 1), ('epoch', 0), ('spool_clean_seq', 0),
  ('exported_total', 0), ('dup_total', 0), ('last_seq', 0);
)sql";

// ccmail_row_hash(v, ...): 32 bits of FNV-1a over the arguments (type, length, bytes), for
// QuickCheck's index-against-table sums (32 bits: a sum over 2^31 rows cannot overflow).
void RowHash(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) {
      h ^= b[i];
      h *= 1099511628211ULL;
    }
  };
  for (int i = 0; i < argc; ++i) {
    const int type = sqlite3_value_type(argv[i]);
    mix(&type, sizeof type);
    if (type == SQLITE_INTEGER) {
      const sqlite3_int64 v = sqlite3_value_int64(argv[i]);
      mix(&v, sizeof v);
    } else if (type != SQLITE_NULL) {
      const void* p = type == SQLITE_BLOB ? sqlite3_value_blob(argv[i]) : static_cast<const void*>(sqlite3_value_text(argv[i]));
      const int n = sqlite3_value_bytes(argv[i]);
      mix(&n, sizeof n);
      if (p) mix(p, static_cast<size_t>(n));
    }
  }
  sqlite3_result_int64(ctx, static_cast<sqlite3_int64>(h >> 32));
}

int RegisterFunctions(sqlite3* db) {
  return sqlite3_create_function_v2(db, "ccmail_row_hash", -1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr, RowHash,
                                    nullptr, nullptr, nullptr);
}

}  // namespace

// The SQLite backend (ledger.h describes the tables); one relay, relay_id "".
class SqliteLedger final : public Ledger {
 public:
  struct Impl;
  static Status Open(const std::string& path, std::unique_ptr<Ledger>* out);
  static Status OpenReadOnly(const std::string& path, std::unique_ptr<Ledger>* out);
  ~SqliteLedger() override;

  const char* backend() const override { return "sqlite"; }
  const std::string& relay_id() const override { return relay_id_; }
  Status Relays(std::vector<RelayCounters>* out) override;
  Status BumpEpoch(uint64_t* new_epoch) override;
  uint64_t epoch() const override { return epoch_; }
  Status NextSeq(uint64_t* seq) override;
  Status CommitBatches(std::vector<LedgerBatch>* batches) override;
  Status StageBatches(const std::vector<LedgerBatch>& batches) override;
  Status CommitStaged(std::vector<LedgerBatch>* batches) override;
  void AbortStaged() override;
  Status FindBatchByName(const std::string& file_name, LedgerBatch* out) override;
  Status LatestBatchPerPostOffice(std::vector<LedgerBatch>* out) override;
  Status HasCaptures(const std::vector<CaptureId>& ids, std::vector<char>* found) override;
  Status AreExported(const std::vector<std::pair<ContentKey, std::string>>& deliveries,
                     std::vector<char>* exported) override;
  Status FindCapture(const CaptureId& id, uint64_t* batch_seq, std::string* post_office,
                     std::string* file_name) override;
  Status CaptureDeliveries(const CaptureId& id, std::vector<CaptureDelivery>* out) override;
  Status HasBatch(uint64_t seq, bool* found) override;
  Status ListBatchesSince(uint64_t after_seq, std::vector<LedgerBatch>* out) override;
  Status SetSpoolCleanSeq(uint64_t seq) override;
  Status Prune(int64_t cutoff_ms, size_t rows_per_txn, uint64_t* deleted) override;
  Status Counters(LedgerCounters* out) override;
  Status IntegrityCheck() override;
  Status QuickCheck() override;
  Status RaiseFloor(uint64_t min_epoch, uint64_t min_last_seq) override;
  Status ImportBatches(const std::vector<LedgerBatch>& batches, uint64_t* added_batches,
                       uint64_t* added_deliveries) override;
  Status BackupTo(const std::string& dest_path) override;

 private:
  explicit SqliteLedger(std::unique_ptr<Impl> impl);
  // The inserts of CommitBatches/StageBatches inside the caller's transaction.
  Status InsertBatches(const std::vector<LedgerBatch>& batches, int64_t now, std::vector<uint64_t>* seqs);
  void FillCommitted(const std::vector<uint64_t>& seqs, int64_t now, std::vector<LedgerBatch>* batches) const;
  // Checks the schema of an opened database and reads its epoch into a new Ledger.
  static Status Adopt(std::unique_ptr<Impl> impl, std::unique_ptr<Ledger>* out);
  std::unique_ptr<Impl> impl_;
  uint64_t epoch_ = 0;
  const std::string relay_id_;
};

struct SqliteLedger::Impl {
  std::string path;
  sqlite3* db = nullptr;
  // Between StageBatches and CommitStaged/AbortStaged: the open transaction's seqs and time.
  bool staged = false;
  std::vector<uint64_t> staged_seqs;
  int64_t staged_now = 0;
  ~Impl() {
    if (db) sqlite3_close_v2(db);
  }
  Status Err(const std::string& what, int rc) const {
    std::string msg = path + ": " + what + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    if (rc == SQLITE_FULL) return Status::NoSpace(msg);
    if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) return Status::Corrupt(msg);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) return Status::Busy(msg);
    if (rc == SQLITE_CONSTRAINT) return Status::AlreadyExists(msg);
    return Status::FromErrno(msg, EIO);
  }
  Status Exec(const char* sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string m = err ? err : sqlite3_errstr(rc);
      sqlite3_free(err);
      return Err(std::string("exec ") + sql + " (" + m + ")", rc);
    }
    return Status::Ok();
  }
};

// A small prepared-statement helper.
class Stmt {
 public:
  Stmt(SqliteLedger::Impl* im, const char* sql) : im_(im) {
    rc_ = sqlite3_prepare_v2(im->db, sql, -1, &st_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(st_); }
  Status ok(const char* what) const { return rc_ == SQLITE_OK ? Status::Ok() : im_->Err(what, rc_); }
  Stmt& Blob(int i, const void* p, int n) {
    sqlite3_bind_blob(st_, i, p, n, SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Text(int i, const std::string& s) {
    sqlite3_bind_text(st_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Int(int i, int64_t v) {
    sqlite3_bind_int64(st_, i, v);
    return *this;
  }
  int Step() { return sqlite3_step(st_); }
  void Reset() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
  }
  int64_t Col(int i) { return sqlite3_column_int64(st_, i); }
  std::string ColText(int i) {
    const unsigned char* t = sqlite3_column_text(st_, i);
    return t ? reinterpret_cast<const char*>(t) : "";
  }
  sqlite3_stmt* raw() { return st_; }

 private:
  SqliteLedger::Impl* im_;
  sqlite3_stmt* st_ = nullptr;
  int rc_;
};

namespace {
Status GetMeta(SqliteLedger::Impl* im, const char* key, uint64_t* v) {
  Stmt st(im, "SELECT value FROM meta WHERE key = ?");
  CCMAIL_RETURN_IF_ERROR(st.ok("prepare meta read"));
  st.Text(1, key);
  int rc = st.Step();
  if (rc == SQLITE_ROW) {
    *v = static_cast<uint64_t>(st.Col(0));
    return Status::Ok();
  }
  if (rc == SQLITE_DONE) return Status::Corrupt(im->path + ": meta row " + key + " missing");
  return im->Err(std::string("read meta ") + key, rc);
}
// Runs sql with ?1 = key and ?2 = value; `what` names the write in errors.
Status WriteMeta(SqliteLedger::Impl* im, const char* sql, const char* prepare_what, const char* what, const char* key,
                 int64_t value) {
  Stmt st(im, sql);
  CCMAIL_RETURN_IF_ERROR(st.ok(prepare_what));
  st.Text(1, key).Int(2, value);
  int rc = st.Step();
  return rc == SQLITE_DONE ? Status::Ok() : im->Err(std::string(what) + " " + key, rc);
}
Status SetMeta(SqliteLedger::Impl* im, const char* key, int64_t v) {
  return WriteMeta(im, "INSERT INTO meta(key, value) VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                   "prepare meta write", "write meta", key, v);
}
Status AddMeta(SqliteLedger::Impl* im, const char* key, int64_t delta) {
  return WriteMeta(im, "UPDATE meta SET value = value + ?2 WHERE key = ?1", "prepare meta add", "update meta", key, delta);
}

// Runs f inside BEGIN IMMEDIATE ... COMMIT; rolls back on error.
// Ends the open transaction: COMMIT when s is ok (crash/fault points `before` and `after`
// around it), else ROLLBACK.
Status EndTxn(SqliteLedger::Impl* im, Status s, const char* before, const char* after) {
  if (s.ok()) {
    if (before) {
      if (FaultKind k = InjectedFailure(before); k != FaultKind::kNone) {
        s = k == FaultKind::kNoSpace ? Status::NoSpace(im->path + ": commit (injected)")
                                     : Status::FromErrno(im->path + ": commit (injected)", EIO);
      } else {
        CrashPoint(before);
      }
    }
  }
  if (s.ok()) {
    s = im->Exec("COMMIT");
    if (s.ok()) {
      // A failure injected here is a COMMIT that was durable but reported as failed.
      if (after) return FaultPoint(after, im->path + ": after commit");
      return s;
    }
  }
  Status r = im->Exec("ROLLBACK");
  (void)r;  // "no transaction is active" after a failed COMMIT that SQLite rolled back
  return s;
}

template <typename F>
Status InTxn(SqliteLedger::Impl* im, F f, const char* before = nullptr, const char* after = nullptr) {
  CCMAIL_RETURN_IF_ERROR(im->Exec("BEGIN IMMEDIATE"));
  return EndTxn(im, f(), before, after);
}

// The columns seq, epoch, post_office, file_name, created_ms of a batches row.
LedgerBatch BatchRow(Stmt* st) {
  LedgerBatch batch;
  batch.seq = static_cast<uint64_t>(st->Col(0));
  batch.epoch = static_cast<uint64_t>(st->Col(1));
  batch.post_office = st->ColText(2);
  batch.file_name = st->ColText(3);
  batch.created_ms = st->Col(4);
  return batch;
}

// PRAGMA integrity_check or quick_check: Ok when it says "ok", kCorrupt with its findings.
Status PragmaCheck(SqliteLedger::Impl* im, const std::string& pragma) {
  Stmt st(im, ("PRAGMA " + pragma).c_str());
  CCMAIL_RETURN_IF_ERROR(st.ok(pragma.c_str()));
  std::string findings;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    if (!findings.empty()) findings += "; ";
    findings += st.ColText(0);
  }
  if (rc != SQLITE_DONE) return im->Err(pragma, rc);
  if (findings != "ok") return Status::Corrupt(im->path + ": " + pragma + ": " + findings);
  return Status::Ok();
}
}  // namespace

SqliteLedger::SqliteLedger(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SqliteLedger::~SqliteLedger() = default;

Status SqliteLedger::Open(const std::string& path, std::unique_ptr<Ledger>* out) {
  auto im = std::make_unique<Impl>();
  im->path = path;
  int rc = sqlite3_open_v2(path.c_str(), &im->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) return im->Err("open", rc);
  sqlite3_busy_timeout(im->db, 5000);
  sqlite3_extended_result_codes(im->db, 0);
  if (int frc = RegisterFunctions(im->db); frc != SQLITE_OK) return im->Err("register functions", frc);
  CCMAIL_RETURN_IF_ERROR(im->Exec("PRAGMA journal_mode=WAL"));
  {
    Stmt st(im.get(), "PRAGMA journal_mode");
    CCMAIL_RETURN_IF_ERROR(st.ok("journal_mode"));
    if (st.Step() != SQLITE_ROW || st.ColText(0) != "wal")
      return Status::Unavailable(path + ": cannot switch to WAL journal mode (file system without shared memory?)");
  }
  CCMAIL_RETURN_IF_ERROR(im->Exec("PRAGMA synchronous=FULL"));
  CCMAIL_RETURN_IF_ERROR(im->Exec("PRAGMA foreign_keys=OFF"));
  // Page cache of up to 32 MiB instead of SQLite's 2 MiB default: the keys are random, so
  // each round's inserts and lookups touch pages all over the indexes, and with the default
  // every one of them is re-read from the file once the ledger outgrows 2 MiB (a few
  // thousand captures). The cache only grows as pages are used; no format change.
  CCMAIL_RETURN_IF_ERROR(im->Exec("PRAGMA cache_size=-32768"));
  // Checkpoint every 10,000 WAL pages (~40 MiB) instead of 1,000. A round of 256 captures
  // dirties ~700 pages scattered over the random-key indexes, so with the default nearly
  // every other commit copied the WAL into the database and fsynced it on the exporter's
  // critical path; with fewer, larger checkpoints the pages hit again in between (upper
  // B-tree levels, the age indexes, meta) are written once: ~20% less commit time in the
  // exporter bench. Costs up to ~40 MiB of WAL on disk; the file is reused, not regrown.
  CCMAIL_RETURN_IF_ERROR(im->Exec("PRAGMA wal_autocheckpoint=10000"));
  SqliteLedger::Impl* raw = im.get();
  CCMAIL_RETURN_IF_ERROR(InTxn(raw, [&] { return raw->Exec(kSchema); }));
  return Adopt(std::move(im), out);
}

Status SqliteLedger::Adopt(std::unique_ptr<Impl> impl, std::unique_ptr<Ledger>* out) {
  uint64_t schema = 0;
  CCMAIL_RETURN_IF_ERROR(GetMeta(impl.get(), "schema", &schema));
  if (schema != 1) return Status::Corrupt(impl->path + ": unknown ledger schema " + std::to_string(schema));
  std::unique_ptr<SqliteLedger> ledger(new SqliteLedger(std::move(impl)));
  CCMAIL_RETURN_IF_ERROR(GetMeta(ledger->impl_.get(), "epoch", &ledger->epoch_));
  *out = std::move(ledger);
  return Status::Ok();
}

namespace {
// One read of the meta table; SQLite opens lazily, so this is where a read-only
// connection finds out whether it can read at all.
int ProbeRead(sqlite3* db) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema'", -1, &st, nullptr);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  return rc;
}
// "file:" URI of a path (RFC 3986 escaping of what SQLite's URI parser treats specially).
std::string FileUri(const std::string& path) {
  std::string u = "file:";
  for (unsigned char c : path) {
    if (c == '%' || c == '?' || c == '#' || c <= ' ' || c >= 0x7f) {
      char buf[4];
      snprintf(buf, sizeof buf, "%%%02X", c);
      u += buf;
    } else {
      u.push_back(static_cast<char>(c));
    }
  }
  return u;
}
}  // namespace

Status SqliteLedger::OpenReadOnly(const std::string& path, std::unique_ptr<Ledger>* out) {
  // SQLITE_OPEN_READONLY never creates the database; checking first gives a clear
  // NotFound instead of SQLite's generic "unable to open database file".
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno("ledger " + path, errno);
  auto im = std::make_unique<Impl>();
  im->path = path;
  int rc = sqlite3_open_v2(path.c_str(), &im->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) return im->Err("open read-only", rc);
  sqlite3_busy_timeout(im->db, 5000);
  sqlite3_extended_result_codes(im->db, 0);
  if (int frc = RegisterFunctions(im->db); frc != SQLITE_OK) return im->Err("register functions", frc);
  rc = ProbeRead(im->db);
  if ((rc == SQLITE_READONLY || rc == SQLITE_CANTOPEN) && ::stat((path + "-wal").c_str(), &st) != 0 && errno == ENOENT) {
    // A WAL reader needs <ledger>-shm, and a reader that may not create it (a
    // bridge-group member while the exporter is stopped) cannot open the database.
    // Without a -wal file there is no writer and no uncommitted page: the main file
    // alone is the whole ledger, so read it as immutable (no locks, no -shm).
    sqlite3_close_v2(im->db);
    im->db = nullptr;
    rc = sqlite3_open_v2((FileUri(path) + "?immutable=1").c_str(), &im->db,
                         SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI, nullptr);
    if (rc != SQLITE_OK) return im->Err("open read-only (immutable)", rc);
    sqlite3_extended_result_codes(im->db, 0);
    if (int frc = RegisterFunctions(im->db); frc != SQLITE_OK) return im->Err("register functions", frc);
  }
  return Adopt(std::move(im), out);
}

Status SqliteLedger::BumpEpoch(uint64_t* new_epoch) {
  Impl* im = impl_.get();
  uint64_t e = 0;
  Status ts = InTxn(im, [&] {
    CCMAIL_RETURN_IF_ERROR(GetMeta(im, "epoch", &e));
    ++e;
    return SetMeta(im, "epoch", static_cast<int64_t>(e));
  }, nullptr, kCrashLedgerEpoch);
  if (!ts.ok()) return ts;
  epoch_ = e;
  if (new_epoch) *new_epoch = e;
  return Status::Ok();
}

Status SqliteLedger::NextSeq(uint64_t* seq) {
  Stmt st(impl_.get(), "SELECT COALESCE(MAX(seq), 0) + 1 FROM batches");
  CCMAIL_RETURN_IF_ERROR(st.ok("prepare next seq"));
  if (st.Step() != SQLITE_ROW) return impl_->Err("next seq", SQLITE_ERROR);
  uint64_t a = static_cast<uint64_t>(st.Col(0));
  // seq never reuses a pruned number: also above spool_clean_seq.
  uint64_t clean = 0;
  CCMAIL_RETURN_IF_ERROR(GetMeta(impl_.get(), "spool_clean_seq", &clean));
  uint64_t last = 0;
  CCMAIL_RETURN_IF_ERROR(GetMeta(impl_.get(), "last_seq", &last));
  *seq = std::max({a, clean + 1, last + 1});
  return Status::Ok();
}

Status SqliteLedger::FindCapture(const CaptureId& id, uint64_t* batch_seq, std::string* post_office,
                           std::string* file_name) {
  Stmt st(impl_.get(),
          "SELECT c.batch_seq, b.post_office, b.file_name FROM captures c "
          "LEFT JOIN batches b ON b.seq = c.batch_seq WHERE c.capture_id = ?");
  CCMAIL_RETURN_IF_ERROR(st.ok("prepare capture find"));
  st.Blob(1, id.bytes.data(), 16);
  int rc = st.Step();
  if (rc == SQLITE_DONE) return Status::NotFound(impl_->path + ": capture " + id.ToString() + " not recorded");
  if (rc != SQLITE_ROW) return impl_->Err("capture find", rc);
  *batch_seq = static_cast<uint64_t>(st.Col(0));
  *post_office = st.ColText(1);  // "" if the batch row was pruned first
  *file_name = st.ColText(2);
  return Status::Ok();
}

Status SqliteLedger::CaptureDeliveries(const CaptureId& id, std::vector<CaptureDelivery>* out) {
  out->clear();
  Stmt st(impl_.get(),
          "SELECT d.recipient, d.kind, d.batch_seq, b.post_office, b.file_name FROM deliveries d "
          "LEFT JOIN batches b ON b.seq = d.batch_seq WHERE d.capture_id = ? ORDER BY d.batch_seq, d.recipient");
  CCMAIL_RETURN_IF_ERROR(st.ok("prepare capture deliveries"));
  st.Blob(1, id.bytes.data(), 16);
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    CaptureDelivery d;
    d.recipient = st.ColText(0);
    d.kind = st.Col(1) == static_cast<int64_t>(DeliveryKind::kDup) ? DeliveryKind::kDup : DeliveryKind::kExported;
    d.batch_seq = static_cast<uint64_t>(st.Col(2));
    d.post_office = st.ColText(3);
    d.file_name = st.ColText(4);
    out->push_back(std::move(d));
  }
  if (rc != SQLITE_DONE) return impl_->Err("capture deliveries", rc);
  return Status::Ok();
}

Status SqliteLedger::HasBatch(uint64_t seq, bool* found) {
  Stmt st(impl_.get(), "SELECT 1 FROM batches WHERE seq = ?");
  CCMAIL_RETURN_IF_ERROR(st.ok("prepare batch lookup"));
  st.Int(1, static_cast<int64_t>(seq));
  int rc = st.Step();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return impl_->Err("batch lookup", rc);
  *found = rc == SQLITE_ROW;
  return Status::Ok();
}

Status SqliteLedger::ListBatchesSince(uint64_t after, std::vector<LedgerBatch>* out) {
  out->clear();
  Stmt st(impl_.get(), "SELECT seq, epoch, post_office, file_name, created_ms FROM batches WHERE seq > ? ORDER BY seq");
  CCMAIL_RETURN_IF_ERROR(st.ok("prepare batch list"));
  st.Int(1, static_cast<int64_t>(after));
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) out->push_back(BatchRow(&st));
  return rc == SQLITE_DONE ? Status::Ok() : impl_->Err("batch list", rc);
}

Status SqliteLedger::SetSpoolCleanSeq(uint64_t seq) {
  Impl* im = impl_.get();
  return InTxn(im, [&] { return SetMeta(im, "spool_clean_seq", static_cast<int64_t>(seq)); });
}

Status SqliteLedger::Prune(int64_t cutoff_ms, size_t rows_per_txn, uint64_t* deleted) {
  Impl* im = impl_.get();
  if (rows_per_txn == 0) rows_per_txn = 1000;
  uint64_t total = 0;
  uint64_t clean = 0;
  CCMAIL_RETURN_IF_ERROR(GetMeta(im, "spool_clean_seq", &clean));
  struct Step { const char* sql; };
  const Step steps[] = {
      {"DELETE FROM deliveries WHERE (content_key, recipient, kind, capture_id) IN ("
       "SELECT content_key, recipient, kind, capture_id FROM deliveries WHERE created_ms < ? AND batch_seq <= ? LIMIT ?)"},
      {"DELETE FROM captures WHERE capture_id IN ("
       "SELECT capture_id FROM captures WHERE created_ms < ? AND batch_seq <= ? LIMIT ?)"},
      {"DELETE FROM batches WHERE seq IN (SELECT seq FROM batches WHERE created_ms < ? AND seq <= ? LIMIT ?)"},
  };
  for (const auto& step : steps) {
    for (;;) {
      int changed = 0;
      Status ts = InTxn(im, [&]() -> Status {
        Stmt st(im, step.sql);
        CCMAIL_RETURN_IF_ERROR(st.ok("prepare prune"));
        st.Int(1, cutoff_ms).Int(2, static_cast<int64_t>(clean)).Int(3, static_cast<int64_t>(rows_per_txn));
        int rc = st.Step();
        if (rc != SQLITE_DONE) return im->Err("prune", rc);
        changed = sqlite3_changes(im->db);
        return Status::Ok();
      }, nullptr, kCrashPrune);
      if (!ts.ok()) return ts;
      if (step.sql != steps[2].sql) total += static_cast<uint64_t>(changed);
      if (static_cast<size_t>(changed) < rows_per_txn) break;
    }
  }
  if (deleted) *deleted = total;
  return Status::Ok();
}

Status SqliteLedger::Counters(LedgerCounters* c) {
  Impl* im = impl_.get();
  *c = LedgerCounters{};
  CCMAIL_RETURN_IF_ERROR(GetMeta(im, "epoch", &c->epoch));
  CCMAIL_RETURN_IF_ERROR(GetMeta(im, "spool_clean_seq", &c->spool_clean_seq));
  CCMAIL_RETURN_IF_ERROR(GetMeta(im, "exported_total", &c->exported));
  CCMAIL_RETURN_IF_ERROR(GetMeta(im, "dup_total", &c->dups));
  CCMAIL_RETURN_IF_ERROR(GetMeta(im, "last_seq", &c->last_seq));
  Stmt b(im, "SELECT COUNT(*) FROM batches");
  CCMAIL_RETURN_IF_ERROR(b.ok("count batches"));
  if (b.Step() == SQLITE_ROW) c->batches = static_cast<uint64_t>(b.Col(0));
  Stmt k(im, "SELECT COUNT(*) FROM captures");
  CCMAIL_RETURN_IF_ERROR(k.ok("count captures"));
  if (k.Step() == SQLITE_ROW) c->captures = static_cast<uint64_t>(k.Col(0));
  return Status::Ok();
}

Status SqliteLedger::Relays(std::vector<RelayCounters>* out) {
  out->clear();
  LedgerCounters c;
  CCMAIL_RETURN_IF_ERROR(Counters(&c));
  RelayCounters r;
  r.epoch = c.epoch;
  r.last_seq = c.last_seq;
  r.spool_clean_seq = c.spool_clean_seq;
  r.batches = c.batches;
  r.exported = c.exported;
  r.dups = c.dups;
  Stmt st(impl_.get(), "SELECT COALESCE(MAX(created_ms), 0) FROM batches");
  CCMAIL_RETURN_IF_ERROR(st.ok("prepare last commit"));
  if (int rc = st.Step(); rc != SQLITE_ROW) return impl_->Err("last commit", rc);
  r.last_commit_ms = st.Col(0);
  out->push_back(std::move(r));
  return Status::Ok();
}

Status SqliteLedger::IntegrityCheck() { return PragmaCheck(impl_.get(), "integrity_check"); }

namespace {
// The cross-checks of QuickCheck: each pair must give the same count and sum of
// ccmail_row_hash over the same rows, once read from an index and once from the table's
// own b-tree. A flipped byte in a key (the "is it exported?" lookup) makes them differ.
struct CrossCheck {
  const char* what;
  const char* from_index;
  const char* from_table;
};
constexpr CrossCheck kCrossChecks[] = {
    {"deliveries_exported",
     "SELECT count(*), sum(ccmail_row_hash(content_key, recipient, capture_id)) FROM deliveries "
     "INDEXED BY deliveries_exported WHERE kind = 1",
     "SELECT count(*), sum(ccmail_row_hash(content_key, recipient, capture_id)) FROM deliveries "
     "INDEXED BY sqlite_autoindex_deliveries_1 WHERE kind = 1"},
    {"deliveries_age",
     "SELECT count(*), sum(ccmail_row_hash(content_key, recipient, kind, capture_id, created_ms)) FROM deliveries "
     "INDEXED BY deliveries_age WHERE created_ms >= -9223372036854775807",
     "SELECT count(*), sum(ccmail_row_hash(content_key, recipient, kind, capture_id, created_ms)) FROM deliveries "
     "INDEXED BY sqlite_autoindex_deliveries_1"},
    {"captures_age",
     "SELECT count(*), sum(ccmail_row_hash(capture_id, created_ms)) FROM captures "
     "INDEXED BY captures_age WHERE created_ms >= -9223372036854775807",
     "SELECT count(*), sum(ccmail_row_hash(capture_id, created_ms)) FROM captures "
     "INDEXED BY sqlite_autoindex_captures_1"},
};

Status CountAndSum(SqliteLedger::Impl* im, const char* sql, int64_t* count, int64_t* sum) {
  Stmt st(im, sql);
  CCMAIL_RETURN_IF_ERROR(st.ok("prepare cross-check"));
  int rc = st.Step();
  if (rc != SQLITE_ROW) return im->Err("cross-check", rc);
  *count = st.Col(0);
  *sum = st.Col(1);
  return Status::Ok();
}
}  // namespace

Status SqliteLedger::QuickCheck() {
  Impl* im = impl_.get();
  CCMAIL_RETURN_IF_ERROR(PragmaCheck(im, "quick_check"));
  // quick_check verifies page structure but not that an index holds the table's keys: a
  // flipped bit inside a content key passes it and the lookup then misses an exported
  // delivery. Two sequential scans per index are far cheaper than integrity_check's
  // lookup per row and catch exactly that.
  for (const auto& c : kCrossChecks) {
    int64_t ic = 0, is = 0, tc = 0, ts = 0;
    CCMAIL_RETURN_IF_ERROR(CountAndSum(im, c.from_index, &ic, &is));
    CCMAIL_RETURN_IF_ERROR(CountAndSum(im, c.from_table, &tc, &ts));
    if (ic != tc || is != ts)
      return Status::Corrupt(im->path + ": index " + c.what + " disagrees with its table (" + std::to_string(ic) +
                             " entries against " + std::to_string(tc) + " rows, or different keys)");
  }
  return Status::Ok();
}

Status SqliteLedger::RaiseFloor(uint64_t min_epoch, uint64_t min_last_seq) {
  Impl* im = impl_.get();
  uint64_t e = 0;
  Status s = InTxn(im, [&]() -> Status {
    uint64_t last = 0;
    CCMAIL_RETURN_IF_ERROR(GetMeta(im, "epoch", &e));
    CCMAIL_RETURN_IF_ERROR(GetMeta(im, "last_seq", &last));
    if (min_epoch > e) {
      e = min_epoch;
      CCMAIL_RETURN_IF_ERROR(SetMeta(im, "epoch", static_cast<int64_t>(e)));
    }
    if (min_last_seq > last) CCMAIL_RETURN_IF_ERROR(SetMeta(im, "last_seq", static_cast<int64_t>(min_last_seq)));
    return Status::Ok();
  });
  if (s.ok()) epoch_ = e;
  return s;
}

Status SqliteLedger::ImportBatches(const std::vector<LedgerBatch>& batches, uint64_t* added_batches,
                             uint64_t* added_deliveries) {
  Impl* im = impl_.get();
  uint64_t nb = 0, nd = 0;
  Status s = InTxn(im, [&]() -> Status {
    Stmt bi(im, "INSERT OR IGNORE INTO batches(seq, epoch, post_office, file_name, created_ms, messages) VALUES(?,?,?,?,?,?)");
    CCMAIL_RETURN_IF_ERROR(bi.ok("prepare batch import"));
    Stmt ci(im, "INSERT OR IGNORE INTO captures(capture_id, batch_seq, created_ms) VALUES(?,?,?)");
    CCMAIL_RETURN_IF_ERROR(ci.ok("prepare capture import"));
    // OR IGNORE: a delivery already EXPORTED (the unique partial index) stays as recorded.
    Stmt di(im, "INSERT OR IGNORE INTO deliveries(content_key, recipient, kind, capture_id, batch_seq, created_ms) "
                "VALUES(?,?,?,?,?,?)");
    CCMAIL_RETURN_IF_ERROR(di.ok("prepare delivery import"));
    for (const auto& b : batches) {
      const int64_t created = b.created_ms ? b.created_ms : WallClockMs();
      bi.Int(1, static_cast<int64_t>(b.seq)).Int(2, static_cast<int64_t>(b.epoch)).Text(3, b.post_office)
          .Text(4, b.file_name).Int(5, created).Int(6, static_cast<int64_t>(b.capture_ids.size()));
      if (int rc = bi.Step(); rc != SQLITE_DONE) return im->Err("import batch " + b.file_name, rc);
      nb += static_cast<uint64_t>(sqlite3_changes(im->db));
      bi.Reset();
      for (const auto& id : b.capture_ids) {
        ci.Blob(1, id.bytes.data(), 16).Int(2, static_cast<int64_t>(b.seq)).Int(3, created);
        if (int rc = ci.Step(); rc != SQLITE_DONE) return im->Err("import capture " + id.ToString(), rc);
        ci.Reset();
      }
      int64_t exported = 0;
      for (const auto& d : b.deliveries) {
        di.Blob(1, d.content_key.bytes.data(), 32).Text(2, d.recipient).Int(3, static_cast<int>(d.kind))
            .Blob(4, d.capture_id.bytes.data(), 16).Int(5, static_cast<int64_t>(b.seq)).Int(6, created);
        if (int rc = di.Step(); rc != SQLITE_DONE) return im->Err("import delivery to " + d.recipient, rc);
        if (sqlite3_changes(im->db) > 0 && d.kind == DeliveryKind::kExported) ++exported;
        di.Reset();
      }
      nd += static_cast<uint64_t>(exported);
      CCMAIL_RETURN_IF_ERROR(AddMeta(im, "exported_total", exported));
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  if (added_batches) *added_batches = nb;
  if (added_deliveries) *added_deliveries = nd;
  return Status::Ok();
}

Status SqliteLedger::BackupTo(const std::string& dest_path) {
  Impl* im = impl_.get();
  struct stat st;
  if (::stat(dest_path.c_str(), &st) == 0)
    return Status::AlreadyExists(dest_path + ": exists (a backup never overwrites a file)");
  sqlite3* dest = nullptr;
  int rc = sqlite3_open_v2(dest_path.c_str(), &dest, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  auto close_dest = [&] {
    sqlite3_close_v2(dest);
    dest = nullptr;
  };
  if (rc != SQLITE_OK) {
    std::string m = dest ? sqlite3_errmsg(dest) : sqlite3_errstr(rc);
    close_dest();
    return Status::FromErrno(dest_path + ": create backup: " + m, EIO);
  }
  sqlite3_backup* b = sqlite3_backup_init(dest, "main", im->db, "main");
  if (!b) {
    std::string m = sqlite3_errmsg(dest);
    close_dest();
    ::unlink(dest_path.c_str());
    return Status::FromErrno(dest_path + ": backup: " + m, EIO);
  }
  // All pages in one step: the copy is one committed state of the ledger (a WAL reader's
  // snapshot), however much the exporter commits meanwhile.
  rc = sqlite3_backup_step(b, -1);
  int fin = sqlite3_backup_finish(b);
  if (rc == SQLITE_DONE) rc = fin;
  if (rc != SQLITE_OK && rc != SQLITE_DONE) {
    std::string m = sqlite3_errstr(rc);
    close_dest();
    ::unlink(dest_path.c_str());
    Status e = im->Err("backup to " + dest_path + " (" + m + ")", rc);
    return e;
  }
  // The copy is a standalone file: no -wal beside it to lose when it is moved.
  char* err = nullptr;
  rc = sqlite3_exec(dest, "PRAGMA journal_mode=DELETE", nullptr, nullptr, &err);
  sqlite3_free(err);
  close_dest();
  if (rc != SQLITE_OK) return Status::FromErrno(dest_path + ": set journal_mode of the copy", EIO);
  {
    UniqueFd fd(::open(dest_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return Status::FromErrno("open " + dest_path, errno);
    CCMAIL_RETURN_IF_ERROR(DurableIo::Real().Fsync(fd.get(), dest_path));
  }
  return DurableIo::Real().FsyncDir(ParentDirectory(dest_path), nullptr);
}

Status SqliteLedger::InsertBatches(const std::vector<LedgerBatch>& batches, int64_t now, std::vector<uint64_t>* seqs) {
  Impl* im = impl_.get();
  int64_t exported = 0, dups = 0;
  uint64_t stored_epoch = 0;
  CCMAIL_RETURN_IF_ERROR(GetMeta(im, "epoch", &stored_epoch));
  if (stored_epoch != epoch_) return Status::Busy(im->path + ": epoch is " + std::to_string(stored_epoch) + ", ours is " + std::to_string(epoch_) + " (another exporter started)");
  uint64_t seq = 0;
  CCMAIL_RETURN_IF_ERROR(NextSeq(&seq));
  Stmt insert_batch(im, "INSERT INTO batches(seq, epoch, post_office, file_name, created_ms, messages) VALUES(?,?,?,?,?,?)");
  CCMAIL_RETURN_IF_ERROR(insert_batch.ok("prepare batch insert"));
  Stmt insert_capture(im, "INSERT OR IGNORE INTO captures(capture_id, batch_seq, created_ms) VALUES(?,?,?)");
  CCMAIL_RETURN_IF_ERROR(insert_capture.ok("prepare capture insert"));
  Stmt insert_delivery(im, "INSERT INTO deliveries(content_key, recipient, kind, capture_id, batch_seq, created_ms) VALUES(?,?,?,?,?,?)");
  CCMAIL_RETURN_IF_ERROR(insert_delivery.ok("prepare delivery insert"));
  for (const auto& batch : batches) {
    if (batch.seq != 0 && batch.seq != seq)
      return Status::InvalidArgument(im->path + ": batch " + batch.file_name + " expects seq " + std::to_string(batch.seq) +
                                     " but the next seq is " + std::to_string(seq));
    const int64_t created = batch.created_ms ? batch.created_ms : now;
    insert_batch.Int(1, static_cast<int64_t>(seq)).Int(2, static_cast<int64_t>(epoch_)).Text(3, batch.post_office)
        .Text(4, batch.file_name).Int(5, created).Int(6, static_cast<int64_t>(batch.capture_ids.size()));
    if (int rc = insert_batch.Step(); rc != SQLITE_DONE) return im->Err("insert batch", rc);
    insert_batch.Reset();
    for (const auto& id : batch.capture_ids) {
      insert_capture.Blob(1, id.bytes.data(), 16).Int(2, static_cast<int64_t>(seq)).Int(3, created);
      if (int rc = insert_capture.Step(); rc != SQLITE_DONE) return im->Err("insert capture " + id.ToString(), rc);
      insert_capture.Reset();
    }
    for (const auto& delivery : batch.deliveries) {
      insert_delivery.Blob(1, delivery.content_key.bytes.data(), 32).Text(2, delivery.recipient).Int(3, static_cast<int>(delivery.kind))
          .Blob(4, delivery.capture_id.bytes.data(), 16).Int(5, static_cast<int64_t>(seq)).Int(6, created);
      int rc = insert_delivery.Step();
      insert_delivery.Reset();
      if (rc == SQLITE_CONSTRAINT) {
        if (delivery.kind == DeliveryKind::kDup) continue;  // the same capture listed twice as DUP: harmless
        return Status::AlreadyExists(im->path + ": delivery " + delivery.content_key.ToString() + " to " + delivery.recipient +
                                     " already exported (capture " + delivery.capture_id.ToString() + ")");
      }
      if (rc != SQLITE_DONE) return im->Err("insert delivery", rc);
      (delivery.kind == DeliveryKind::kExported ? exported : dups)++;
    }
    seqs->push_back(seq);
    ++seq;
  }
  CCMAIL_RETURN_IF_ERROR(AddMeta(im, "exported_total", exported));
  CCMAIL_RETURN_IF_ERROR(AddMeta(im, "dup_total", dups));
  return SetMeta(im, "last_seq", static_cast<int64_t>(seq - 1));
}

Status SqliteLedger::CommitBatches(std::vector<LedgerBatch>* batches) {
  Impl* im = impl_.get();
  if (epoch_ == 0) return Status::InvalidArgument(im->path + ": CommitBatches before BumpEpoch");
  if (batches->empty()) return Status::Ok();
  const int64_t now = WallClockMs();
  std::vector<uint64_t> seqs;
  Status s = InTxn(im, [&] { return InsertBatches(*batches, now, &seqs); }, kCrashLedgerCommitBefore,
                   kCrashLedgerCommitAfter);
  if (!s.ok()) return s;
  FillCommitted(seqs, now, batches);
  return Status::Ok();
}

void SqliteLedger::FillCommitted(const std::vector<uint64_t>& seqs, int64_t now, std::vector<LedgerBatch>* batches) const {
  for (size_t i = 0; i < batches->size(); ++i) {
    LedgerBatch& batch = (*batches)[i];
    batch.seq = seqs[i];
    batch.epoch = epoch_;
    if (!batch.created_ms) batch.created_ms = now;
  }
}

Status SqliteLedger::StageBatches(const std::vector<LedgerBatch>& batches) {
  Impl* im = impl_.get();
  if (epoch_ == 0) return Status::InvalidArgument(im->path + ": StageBatches before BumpEpoch");
  if (im->staged) return Status::InvalidArgument(im->path + ": StageBatches while a staged commit is open");
  if (batches.empty()) return Status::InvalidArgument(im->path + ": StageBatches of no batch");
  CCMAIL_RETURN_IF_ERROR(im->Exec("BEGIN IMMEDIATE"));
  im->staged_now = WallClockMs();
  im->staged_seqs.clear();
  Status s = InsertBatches(batches, im->staged_now, &im->staged_seqs);
  if (!s.ok()) return EndTxn(im, s, nullptr, nullptr);
  im->staged = true;
  return Status::Ok();
}

Status SqliteLedger::CommitStaged(std::vector<LedgerBatch>* batches) {
  Impl* im = impl_.get();
  if (!im->staged) return Status::InvalidArgument(im->path + ": CommitStaged without StageBatches");
  if (im->staged_seqs.size() != batches->size()) {
    AbortStaged();
    return Status::InvalidArgument(im->path + ": CommitStaged of other batches than were staged");
  }
  im->staged = false;
  CCMAIL_RETURN_IF_ERROR(EndTxn(im, Status::Ok(), kCrashLedgerCommitBefore, kCrashLedgerCommitAfter));
  FillCommitted(im->staged_seqs, im->staged_now, batches);
  return Status::Ok();
}

void SqliteLedger::AbortStaged() {
  Impl* im = impl_.get();
  if (!im->staged) return;
  im->staged = false;
  (void)im->Exec("ROLLBACK");
}

Status SqliteLedger::FindBatchByName(const std::string& file_name, LedgerBatch* out) {
  Stmt st(impl_.get(),
          "SELECT seq, epoch, post_office, file_name, created_ms FROM batches WHERE file_name = ? ORDER BY seq DESC LIMIT 1");
  CCMAIL_RETURN_IF_ERROR(st.ok("prepare batch by name"));
  st.Text(1, file_name);
  int rc = st.Step();
  if (rc == SQLITE_DONE) return Status::NotFound(impl_->path + ": no batch named " + file_name);
  if (rc != SQLITE_ROW) return impl_->Err("batch by name", rc);
  *out = BatchRow(&st);
  return Status::Ok();
}

Status SqliteLedger::LatestBatchPerPostOffice(std::vector<LedgerBatch>* out) {
  out->clear();
  Stmt st(impl_.get(),
          "SELECT b.seq, b.epoch, b.post_office, b.file_name, b.created_ms FROM batches b "
          "JOIN (SELECT post_office, MAX(seq) AS m FROM batches WHERE file_name <> '' GROUP BY post_office) x "
          "ON b.seq = x.m ORDER BY b.seq");
  CCMAIL_RETURN_IF_ERROR(st.ok("prepare latest batches"));
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) out->push_back(BatchRow(&st));
  return rc == SQLITE_DONE ? Status::Ok() : impl_->Err("latest batches", rc);
}

Status SqliteLedger::HasCaptures(const std::vector<CaptureId>& ids, std::vector<char>* found) {
  found->assign(ids.size(), 0);
  Stmt st(impl_.get(), "SELECT 1 FROM captures WHERE capture_id = ?");
  CCMAIL_RETURN_IF_ERROR(st.ok("prepare capture lookup"));
  for (size_t i = 0; i < ids.size(); ++i) {
    st.Blob(1, ids[i].bytes.data(), 16);
    int rc = st.Step();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return impl_->Err("capture lookup", rc);
    (*found)[i] = rc == SQLITE_ROW;
    st.Reset();
  }
  return Status::Ok();
}

Status SqliteLedger::AreExported(const std::vector<std::pair<ContentKey, std::string>>& deliveries,
                           std::vector<char>* exported) {
  exported->assign(deliveries.size(), 0);
  Stmt st(impl_.get(), "SELECT 1 FROM deliveries WHERE content_key = ? AND recipient = ? AND kind = 1");
  CCMAIL_RETURN_IF_ERROR(st.ok("prepare delivery lookup"));
  for (size_t i = 0; i < deliveries.size(); ++i) {
    st.Blob(1, deliveries[i].first.bytes.data(), 32).Text(2, deliveries[i].second);
    int rc = st.Step();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return impl_->Err("delivery lookup", rc);
    (*exported)[i] = rc == SQLITE_ROW;
    st.Reset();
  }
  return Status::Ok();
}

Status Ledger::Open(const std::string& path, std::unique_ptr<Ledger>* out) { return SqliteLedger::Open(path, out); }

Status Ledger::OpenReadOnly(const std::string& path, std::unique_ptr<Ledger>* out) {
  return SqliteLedger::OpenReadOnly(path, out);
}

}  // namespace ccmail::store
