// pg_ledger.cpp - the shared ledger of several relays on PostgreSQL (libpq).
//
// Schema (created by the first exporter that finds it missing, under an advisory lock so two
// relays starting at once do not race on CREATE):
//   ccmail_meta(key PK, value)                    schema = 1
//   relays(relay_id PK, epoch, last_seq, spool_clean_seq, exported_total, dup_total,
//          last_commit_ms)                        one row per relay: its fence and counters
//   batches(relay_id, seq, ..., PK(relay_id, seq))
//   captures(relay_id, capture_id, ..., PK(relay_id, capture_id))
//   deliveries(content_key, recipient, kind, relay_id, capture_id, batch_seq, created_ms,
//              PK(content_key, recipient, kind, relay_id, capture_id))
//   UNIQUE INDEX deliveries_exported ON deliveries(content_key, recipient) WHERE kind = 1
// The unique index is the one thing every relay shares: a (content key, recipient) is
// EXPORTED once in the whole site. Everything else is keyed by relay_id.
//
// A round is one transaction that first locks this relay's row (SELECT ... FOR UPDATE) and
// compares the epoch: an exporter whose epoch was bumped by a newer one of the same relay id
// fails kBusy. All parameters go as text; bytea values as "\x<hex>".
//
// Nothing waits for the server without a bound (target.timeout_ms, the setting
// ledger_timeout): the session's statement_timeout and lock_timeout make the server cancel a
// statement that runs or waits on a lock too long, and every statement is awaited against a
// deadline (Roundtrip) so a server that stopped answering altogether (SIGSTOP, a partition
// without RST) is given up too. Both come back as kUnavailable: the exporter retries the
// round after its back-off, as for an unreachable server.
#include "pg_ledger.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <utility>
#include <vector>

#include "ccmail/common/clock.h"
#include "ccmail/store/io.h"

namespace ccmail::store {
namespace {

constexpr int64_t kSchemaVersion = 1;
// pg_advisory_xact_lock key of schema creation ("ccml" in ASCII).
constexpr int64_t kSchemaLockKey = 0x63636d6c;

const char* kPgSchema = R"sql(
CREATE TABLE IF NOT EXISTS ccmail_meta(key text PRIMARY KEY, value bigint NOT NULL);
CREATE TABLE IF NOT EXISTS relays(
  relay_id text PRIMARY KEY, epoch bigint NOT NULL DEFAULT 0, last_seq bigint NOT NULL DEFAULT 0,
  spool_clean_seq bigint NOT NULL DEFAULT 0, exported_total bigint NOT NULL DEFAULT 0,
  dup_total bigint NOT NULL DEFAULT 0, last_commit_ms bigint NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS batches(
  relay_id text NOT NULL, seq bigint NOT NULL, epoch bigint NOT NULL, post_office text NOT NULL,
  file_name text NOT NULL, created_ms bigint NOT NULL, messages bigint NOT NULL,
  PRIMARY KEY(relay_id, seq));
CREATE INDEX IF NOT EXISTS batches_name ON batches(relay_id, file_name);
CREATE TABLE IF NOT EXISTS captures(
  relay_id text NOT NULL, capture_id bytea NOT NULL, batch_seq bigint NOT NULL, created_ms bigint NOT NULL,
  PRIMARY KEY(relay_id, capture_id));
CREATE TABLE IF NOT EXISTS deliveries(
  content_key bytea NOT NULL, recipient text NOT NULL, kind smallint NOT NULL, relay_id text NOT NULL,
  capture_id bytea NOT NULL, batch_seq bigint NOT NULL, created_ms bigint NOT NULL,
  PRIMARY KEY(content_key, recipient, kind, relay_id, capture_id));
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_exported ON deliveries(content_key, recipient) WHERE kind = 1;
CREATE INDEX IF NOT EXISTS deliveries_age ON deliveries(relay_id, created_ms);
CREATE INDEX IF NOT EXISTS deliveries_capture ON deliveries(relay_id, capture_id);
CREATE INDEX IF NOT EXISTS captures_age ON captures(relay_id, created_ms);
INSERT INTO ccmail_meta(key, value) VALUES('schema', 1) ON CONFLICT DO NOTHING;
)sql";

std::string Hex(const uint8_t* p, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string s;
  s.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    s.push_back(kDigits[p[i] >> 4]);
    s.push_back(kDigits[p[i] & 15]);
  }
  return s;
}
std::string Bytea(const CaptureId& id) { return "\\x" + Hex(id.bytes.data(), id.bytes.size()); }

// A PostgreSQL array literal of strings: {"a","b\"c"}.
std::string ArrayLiteral(const std::vector<std::string>& items) {
  std::string s = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) s.push_back(',');
    s.push_back('"');
    for (char c : items[i]) {
      if (c == '"' || c == '\\') s.push_back('\\');
      s.push_back(c);
    }
    s.push_back('"');
  }
  s.push_back('}');
  return s;
}

// The keyword/value pairs a location sets (libpq's own parser, so the rules of quoting and of
// URIs are libpq's); false when libpq cannot parse it. The one walk over PQconninfoParse that
// MaskLocation, LocationValue and LocationHasPassword share.
bool ParseLocation(const std::string& location, std::vector<std::pair<std::string, std::string>>* set) {
  set->clear();
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(location.c_str(), &err);
  if (!opts) {
    if (err) PQfreemem(err);
    return false;
  }
  for (PQconninfoOption* o = opts; o->keyword; ++o)
    if (o->val && *o->val) set->emplace_back(o->keyword, o->val);
  PQconninfoFree(opts);
  return true;
}

// The location with any password replaced by "***" (for messages; the password belongs in
// ledger_password_file, but a mistaken one in the location must not reach a log).
std::string MaskLocation(const std::string& location) {
  std::vector<std::pair<std::string, std::string>> set;
  if (!ParseLocation(location, &set)) return "(unparsable connection string)";
  std::string out;
  for (const auto& [keyword, value] : set) {
    if (!out.empty()) out += ' ';
    out += keyword + '=' + (keyword == "password" ? "***" : value);
  }
  return out;
}

// The value of keyword in the location ("" when absent or unparsable).
std::string LocationValue(const std::string& location, const char* keyword) {
  std::vector<std::pair<std::string, std::string>> set;
  if (!ParseLocation(location, &set)) return "";
  for (const auto& [k, value] : set)
    if (k == keyword) return value;
  return "";
}

bool LocationHasPassword(const std::string& location) { return !LocationValue(location, "password").empty(); }

Status ReadPasswordFile(const std::string& path, std::string* password) {
  password->clear();
  if (path.empty()) return Status::Ok();
  std::ifstream in(path);
  if (!in) return Status::FromErrno("ledger_password_file " + path, errno ? errno : EIO);
  std::getline(in, *password);
  while (!password->empty() && (password->back() == '\r' || password->back() == ' ')) password->pop_back();
  if (password->empty()) return Status::InvalidArgument("ledger_password_file " + path + ": empty first line");
  return Status::Ok();
}

// Owns a PGresult.
class Result {
 public:
  explicit Result(PGresult* r = nullptr) : r_(r) {}
  ~Result() { PQclear(r_); }
  Result(Result&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  Result& operator=(Result&& o) noexcept {
    std::swap(r_, o.r_);
    return *this;
  }
  PGresult* get() const { return r_; }
  int rows() const { return PQntuples(r_); }
  int64_t Int(int row, int col) const { return std::strtoll(PQgetvalue(r_, row, col), nullptr, 10); }
  std::string Text(int row, int col) const { return PQgetvalue(r_, row, col); }
  bool Null(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }
  uint64_t Affected() const { return std::strtoull(PQcmdTuples(r_), nullptr, 10); }

 private:
  PGresult* r_;
};

}  // namespace

class PgLedger final : public Ledger {
 public:
  PgLedger(LedgerTarget target, std::string password, bool read_only)
      : target_(std::move(target)), password_(std::move(password)), read_only_(read_only),
        where_("ledger " + MaskLocation(target_.location) + " relay " + (target_.relay_id.empty() ? "(all)" : target_.relay_id)),
        timeout_ms_(std::max<int64_t>(target_.timeout_ms, 1)) {}
  ~PgLedger() override {
    if (conn_) PQfinish(conn_);
  }

  // Connects and, unless read-only, makes sure the schema and this relay's row exist.
  Status Start() {
    CCMAIL_RETURN_IF_ERROR(Connect());
    if (!read_only_) {
      // DDL only when the schema is missing: CREATE INDEX IF NOT EXISTS takes a table lock
      // before it looks, and would wait for every other relay's round in flight.
      Result r;
      CCMAIL_RETURN_IF_ERROR(Exec("SELECT to_regclass('ccmail_meta') IS NOT NULL AND to_regclass('deliveries_exported') IS NOT NULL",
                                  {}, &r, "look for the schema"));
      const bool have_schema = r.rows() == 1 && r.Text(0, 0) == "t";
      Status txn_status = Txn([&]() -> Status {
        Result tr;
        if (!have_schema) {
          CCMAIL_RETURN_IF_ERROR(Exec("SELECT pg_advisory_xact_lock($1)", {std::to_string(kSchemaLockKey)}, &tr, "lock schema"));
          CCMAIL_RETURN_IF_ERROR(Exec(kPgSchema, {}, &tr, "create schema"));
        }
        // Only when no row is visible: an INSERT that meets the row while another exporter of
        // this relay has it updated in a round in flight would wait for that round.
        return Exec("INSERT INTO relays(relay_id) SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM relays WHERE relay_id = $1) "
                    "ON CONFLICT DO NOTHING",
                    {target_.relay_id}, &tr, "create relay row");
      });
      if (!txn_status.ok()) return txn_status;
    }
    Result r;
    Status s = Exec("SELECT value FROM ccmail_meta WHERE key = 'schema'", {}, &r, "read schema");
    if (s.code() == Status::Code::kNotFound || (s.ok() && r.rows() == 0))
      return Status::NotFound(where_ + ": no ccmail ledger schema in this database (an exporter creates it)");
    CCMAIL_RETURN_IF_ERROR(s);
    if (r.Int(0, 0) != kSchemaVersion)
      return Status::Corrupt(where_ + ": unknown ledger schema " + r.Text(0, 0));
    if (!target_.relay_id.empty()) {
      uint64_t e = 0;
      s = ReadRelay(&e, nullptr, nullptr);
      if (s.IsNotFound() && read_only_) return Status::Ok();  // a relay that never ran: epoch 0
      CCMAIL_RETURN_IF_ERROR(s);
      epoch_ = e;
    }
    return Status::Ok();
  }

  const char* backend() const override { return "postgresql"; }
  const std::string& relay_id() const override { return target_.relay_id; }
  uint64_t epoch() const override { return epoch_; }

  Status BumpEpoch(uint64_t* new_epoch) override {
    CCMAIL_RETURN_IF_ERROR(Writable("BumpEpoch"));
    uint64_t e = 0;
    Status txn_status = Txn(
        [&]() -> Status {
          Result r;
          CCMAIL_RETURN_IF_ERROR(
              Exec("UPDATE relays SET epoch = epoch + 1 WHERE relay_id = $1 RETURNING epoch", {target_.relay_id}, &r, "bump epoch"));
          if (r.rows() != 1) return Status::Corrupt(where_ + ": relay row missing");
          e = static_cast<uint64_t>(r.Int(0, 0));
          return Status::Ok();
        },
        nullptr, kCrashLedgerEpoch);
    if (!txn_status.ok()) return txn_status;
    epoch_ = e;
    if (new_epoch) *new_epoch = e;
    return Status::Ok();
  }

  Status NextSeq(uint64_t* seq) override {
    Result r;
    CCMAIL_RETURN_IF_ERROR(Exec("SELECT GREATEST((SELECT COALESCE(MAX(seq), 0) FROM batches WHERE relay_id = $1), "
                                "r.spool_clean_seq, r.last_seq) + 1 FROM relays r WHERE r.relay_id = $1",
                                {target_.relay_id}, &r, "next seq"));
    if (r.rows() != 1) return Status::Corrupt(where_ + ": relay row missing");
    *seq = static_cast<uint64_t>(r.Int(0, 0));
    return Status::Ok();
  }

  Status CommitBatches(std::vector<LedgerBatch>* batches) override {
    if (batches->empty()) {
      if (epoch_ == 0) return Status::InvalidArgument(where_ + ": CommitBatches before BumpEpoch");
      return Status::Ok();
    }
    CCMAIL_RETURN_IF_ERROR(StageBatches(*batches));
    return CommitStaged(batches);
  }

  Status StageBatches(const std::vector<LedgerBatch>& batches) override {
    CCMAIL_RETURN_IF_ERROR(Writable("StageBatches"));
    if (epoch_ == 0) return Status::InvalidArgument(where_ + ": StageBatches before BumpEpoch");
    if (staged_) return Status::InvalidArgument(where_ + ": StageBatches while a staged commit is open");
    if (batches.empty()) return Status::InvalidArgument(where_ + ": StageBatches of no batch");
    CCMAIL_RETURN_IF_ERROR(Begin());
    staged_now_ = WallClockMs();
    staged_seqs_.clear();
    Status s = InsertBatches(batches, staged_now_, &staged_seqs_);
    if (!s.ok()) {
      Rollback();
      return s;
    }
    staged_ = true;
    return Status::Ok();
  }

  Status CommitStaged(std::vector<LedgerBatch>* batches) override {
    if (!staged_) return Status::InvalidArgument(where_ + ": CommitStaged without StageBatches");
    if (staged_seqs_.size() != batches->size()) {
      AbortStaged();
      return Status::InvalidArgument(where_ + ": CommitStaged of other batches than were staged");
    }
    staged_ = false;
    CCMAIL_RETURN_IF_ERROR(Commit(kCrashLedgerCommitBefore, kCrashLedgerCommitAfter, staged_seqs_.front()));
    for (size_t i = 0; i < batches->size(); ++i) {
      LedgerBatch& b = (*batches)[i];
      b.seq = staged_seqs_[i];
      b.epoch = epoch_;
      if (!b.created_ms) b.created_ms = staged_now_;
    }
    return Status::Ok();
  }

  void AbortStaged() override {
    if (!staged_) return;
    staged_ = false;
    Rollback();
  }

  Status FindBatchByName(const std::string& file_name, LedgerBatch* out) override {
    Result r;
    CCMAIL_RETURN_IF_ERROR(Exec("SELECT seq, epoch, post_office, file_name, created_ms FROM batches "
                                "WHERE ($1 = '' OR relay_id = $1) AND file_name = $2 ORDER BY seq DESC LIMIT 1",
                                {target_.relay_id, file_name}, &r, "batch by name"));
    if (r.rows() == 0) return Status::NotFound(where_ + ": no batch named " + file_name);
    *out = BatchRow(r, 0);
    return Status::Ok();
  }

  Status LatestBatchPerPostOffice(std::vector<LedgerBatch>* out) override {
    out->clear();
    Result r;
    CCMAIL_RETURN_IF_ERROR(Exec("SELECT DISTINCT ON (post_office) seq, epoch, post_office, file_name, created_ms "
                                "FROM batches WHERE relay_id = $1 AND file_name <> '' ORDER BY post_office, seq DESC",
                                {target_.relay_id}, &r, "latest batches"));
    for (int i = 0; i < r.rows(); ++i) out->push_back(BatchRow(r, i));
    std::sort(out->begin(), out->end(), [](const LedgerBatch& a, const LedgerBatch& b) { return a.seq < b.seq; });
    return Status::Ok();
  }

  Status HasCaptures(const std::vector<CaptureId>& ids, std::vector<char>* found) override {
    found->assign(ids.size(), 0);
    if (ids.empty()) return Status::Ok();
    std::vector<std::string> hex;
    hex.reserve(ids.size());
    for (const auto& id : ids) hex.push_back(Hex(id.bytes.data(), id.bytes.size()));
    Result r;
    CCMAIL_RETURN_IF_ERROR(Exec("SELECT t.i FROM unnest($2::text[]) WITH ORDINALITY AS t(h, i) "
                                "WHERE EXISTS (SELECT 1 FROM captures c WHERE ($1 = '' OR c.relay_id = $1) "
                                "AND c.capture_id = decode(t.h, 'hex'))",
                                {target_.relay_id, ArrayLiteral(hex)}, &r, "capture lookup"));
    for (int i = 0; i < r.rows(); ++i) (*found)[static_cast<size_t>(r.Int(i, 0) - 1)] = 1;
    return Status::Ok();
  }

  // Shared by every relay: was (key, recipient) exported by anyone?
  Status AreExported(const std::vector<std::pair<ContentKey, std::string>>& deliveries,
                     std::vector<char>* exported) override {
    exported->assign(deliveries.size(), 0);
    if (deliveries.empty()) return Status::Ok();
    std::vector<std::string> keys, recipients;
    for (const auto& d : deliveries) {
      keys.push_back(Hex(d.first.bytes.data(), d.first.bytes.size()));
      recipients.push_back(d.second);
    }
    Result r;
    CCMAIL_RETURN_IF_ERROR(Exec("SELECT t.i FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(k, r, i) "
                                "WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.content_key = decode(t.k, 'hex') "
                                "AND d.recipient = t.r AND d.kind = 1)",
                                {ArrayLiteral(keys), ArrayLiteral(recipients)}, &r, "delivery lookup"));
    for (int i = 0; i < r.rows(); ++i) (*exported)[static_cast<size_t>(r.Int(i, 0) - 1)] = 1;
    return Status::Ok();
  }

  Status FindCapture(const CaptureId& id, uint64_t* batch_seq, std::string* post_office,
                     std::string* file_name) override {
    Result r;
    CCMAIL_RETURN_IF_ERROR(Exec("SELECT c.batch_seq, COALESCE(b.post_office, ''), COALESCE(b.file_name, '') FROM captures c "
                                "LEFT JOIN batches b ON b.relay_id = c.relay_id AND b.seq = c.batch_seq "
                                "WHERE ($1 = '' OR c.relay_id = $1) AND c.capture_id = $2 LIMIT 1",
                                {target_.relay_id, Bytea(id)}, &r, "capture find"));
    if (r.rows() == 0) return Status::NotFound(where_ + ": capture " + id.ToString() + " not recorded");
    *batch_seq = static_cast<uint64_t>(r.Int(0, 0));
    *post_office = r.Text(0, 1);
    *file_name = r.Text(0, 2);
    return Status::Ok();
  }

  Status CaptureDeliveries(const CaptureId& id, std::vector<CaptureDelivery>* out) override {
    out->clear();
    Result r;
    CCMAIL_RETURN_IF_ERROR(Exec("SELECT d.recipient, d.kind, d.batch_seq, COALESCE(b.post_office, ''), "
                                "COALESCE(b.file_name, '') FROM deliveries d "
                                "LEFT JOIN batches b ON b.relay_id = d.relay_id AND b.seq = d.batch_seq "
                                "WHERE ($1 = '' OR d.relay_id = $1) AND d.capture_id = $2 ORDER BY d.batch_seq, d.recipient",
                                {target_.relay_id, Bytea(id)}, &r, "capture deliveries"));
    for (int i = 0; i < r.rows(); ++i) {
      CaptureDelivery d;
      d.recipient = r.Text(i, 0);
      d.kind = r.Int(i, 1) == static_cast<int64_t>(DeliveryKind::kDup) ? DeliveryKind::kDup : DeliveryKind::kExported;
      d.batch_seq = static_cast<uint64_t>(r.Int(i, 2));
      d.post_office = r.Text(i, 3);
      d.file_name = r.Text(i, 4);
      out->push_back(std::move(d));
    }
    return Status::Ok();
  }

  Status HasBatch(uint64_t seq, bool* found) override {
    Result r;
    CCMAIL_RETURN_IF_ERROR(Exec("SELECT 1 FROM batches WHERE relay_id = $1 AND seq = $2",
                                {target_.relay_id, std::to_string(seq)}, &r, "batch lookup"));
    *found = r.rows() > 0;
    return Status::Ok();
  }

  Status ListBatchesSince(uint64_t after_seq, std::vector<LedgerBatch>* out) override {
    out->clear();
    Result r;
    CCMAIL_RETURN_IF_ERROR(Exec("SELECT seq, epoch, post_office, file_name, created_ms FROM batches "
                                "WHERE relay_id = $1 AND seq > $2 ORDER BY seq",
                                {target_.relay_id, std::to_string(after_seq)}, &r, "batch list"));
    for (int i = 0; i < r.rows(); ++i) out->push_back(BatchRow(r, i));
    return Status::Ok();
  }

  Status SetSpoolCleanSeq(uint64_t seq) override {
    CCMAIL_RETURN_IF_ERROR(Writable("SetSpoolCleanSeq"));
    return Txn([&] {
      Result r;
      return Exec("UPDATE relays SET spool_clean_seq = $2 WHERE relay_id = $1", {target_.relay_id, std::to_string(seq)}, &r,
                  "set spool_clean_seq");
    });
  }

  // This relay's rows only (each relay prunes what it recorded, with its own spool_clean_seq).
  Status Prune(int64_t cutoff_ms, size_t rows_per_txn, uint64_t* deleted) override {
    CCMAIL_RETURN_IF_ERROR(Writable("Prune"));
    if (rows_per_txn == 0) rows_per_txn = 1000;
    uint64_t clean = 0;
    CCMAIL_RETURN_IF_ERROR(ReadRelay(nullptr, nullptr, &clean));
    const char* steps[] = {
        "DELETE FROM deliveries WHERE ctid IN (SELECT ctid FROM deliveries WHERE relay_id = $1 AND created_ms < $2 "
        "AND batch_seq <= $3 LIMIT $4)",
        "DELETE FROM captures WHERE ctid IN (SELECT ctid FROM captures WHERE relay_id = $1 AND created_ms < $2 "
        "AND batch_seq <= $3 LIMIT $4)",
        "DELETE FROM batches WHERE ctid IN (SELECT ctid FROM batches WHERE relay_id = $1 AND created_ms < $2 "
        "AND seq <= $3 LIMIT $4)",
    };
    uint64_t total = 0;
    for (const char* sql : steps) {
      for (;;) {
        uint64_t changed = 0;
        Status txn_status = Txn(
            [&]() -> Status {
              Result r;
              CCMAIL_RETURN_IF_ERROR(Exec(sql, {target_.relay_id, std::to_string(cutoff_ms), std::to_string(clean),
                                                std::to_string(rows_per_txn)},
                                          &r, "prune"));
              changed = r.Affected();
              return Status::Ok();
            },
            nullptr, kCrashPrune);
        if (!txn_status.ok()) return txn_status;
        if (sql != steps[2]) total += changed;
        if (changed < rows_per_txn) break;
      }
    }
    if (deleted) *deleted = total;
    return Status::Ok();
  }

  // This relay's epoch, seqs, batches and captures; exported and dups are the totals of
  // every relay (the shared dedup state).
  Status Counters(LedgerCounters* c) override {
    *c = LedgerCounters{};
    Result r;
    CCMAIL_RETURN_IF_ERROR(Exec("SELECT COALESCE((SELECT epoch FROM relays WHERE relay_id = $1), 0), "
                                "COALESCE((SELECT last_seq FROM relays WHERE relay_id = $1), 0), "
                                "COALESCE((SELECT spool_clean_seq FROM relays WHERE relay_id = $1), 0), "
                                "(SELECT COUNT(*) FROM batches WHERE relay_id = $1), "
                                "(SELECT COUNT(*) FROM captures WHERE relay_id = $1), "
                                "(SELECT COALESCE(SUM(exported_total), 0) FROM relays), "
                                "(SELECT COALESCE(SUM(dup_total), 0) FROM relays)",
                                {target_.relay_id}, &r, "counters"));
    c->epoch = static_cast<uint64_t>(r.Int(0, 0));
    c->last_seq = static_cast<uint64_t>(r.Int(0, 1));
    c->spool_clean_seq = static_cast<uint64_t>(r.Int(0, 2));
    c->batches = static_cast<uint64_t>(r.Int(0, 3));
    c->captures = static_cast<uint64_t>(r.Int(0, 4));
    c->exported = static_cast<uint64_t>(r.Int(0, 5));
    c->dups = static_cast<uint64_t>(r.Int(0, 6));
    return Status::Ok();
  }

  Status Relays(std::vector<RelayCounters>* out) override {
    out->clear();
    Result r;
    CCMAIL_RETURN_IF_ERROR(Exec("SELECT r.relay_id, r.epoch, r.last_seq, r.spool_clean_seq, "
                                "(SELECT COUNT(*) FROM batches b WHERE b.relay_id = r.relay_id), r.exported_total, "
                                "r.dup_total, r.last_commit_ms FROM relays r ORDER BY r.relay_id",
                                {}, &r, "relays"));
    for (int i = 0; i < r.rows(); ++i) {
      RelayCounters c;
      c.relay_id = r.Text(i, 0);
      c.epoch = static_cast<uint64_t>(r.Int(i, 1));
      c.last_seq = static_cast<uint64_t>(r.Int(i, 2));
      c.spool_clean_seq = static_cast<uint64_t>(r.Int(i, 3));
      c.batches = static_cast<uint64_t>(r.Int(i, 4));
      c.exported = static_cast<uint64_t>(r.Int(i, 5));
      c.dups = static_cast<uint64_t>(r.Int(i, 6));
      c.last_commit_ms = r.Int(i, 7);
      out->push_back(std::move(c));
    }
    return Status::Ok();
  }

  // PostgreSQL checks its own pages (checksums, WAL); what can be wrong here is the schema:
  // the version row, this relay's row, and the shared unique index being present and valid
  // (an index left INVALID by a failed CREATE INDEX CONCURRENTLY would not enforce anything).
  Status QuickCheck() override {
    Result r;
    CCMAIL_RETURN_IF_ERROR(Exec("SELECT value FROM ccmail_meta WHERE key = 'schema'", {}, &r, "schema check"));
    if (r.rows() != 1 || r.Int(0, 0) != kSchemaVersion) return Status::Corrupt(where_ + ": schema version row missing or unknown");
    CCMAIL_RETURN_IF_ERROR(Exec("SELECT i.indisunique AND i.indisvalid AND i.indpred IS NOT NULL FROM pg_index i "
                                "JOIN pg_class c ON c.oid = i.indexrelid "
                                "WHERE c.relname = 'deliveries_exported' AND c.relnamespace = current_schema()::regnamespace",
                                {}, &r, "index check"));
    if (r.rows() != 1 || r.Text(0, 0) != "t")
      return Status::Corrupt(where_ + ": the unique index deliveries_exported is missing or not valid (duplicates would "
                                      "not be refused)");
    if (!target_.relay_id.empty()) {
      CCMAIL_RETURN_IF_ERROR(Exec("SELECT 1 FROM relays WHERE relay_id = $1", {target_.relay_id}, &r, "relay check"));
      if (r.rows() != 1 && !read_only_) return Status::Corrupt(where_ + ": the row of relay " + target_.relay_id + " is missing");
    }
    return Status::Ok();
  }

  // QuickCheck, then what the counters promise: no delivery of this relay points at a seq
  // above its last_seq (a restored relays row older than its batches would reuse seqs).
  Status IntegrityCheck() override {
    CCMAIL_RETURN_IF_ERROR(QuickCheck());
    if (target_.relay_id.empty()) return Status::Ok();
    Result r;
    CCMAIL_RETURN_IF_ERROR(Exec("SELECT COALESCE(MAX(seq), 0), (SELECT last_seq FROM relays WHERE relay_id = $1) "
                                "FROM batches WHERE relay_id = $1",
                                {target_.relay_id}, &r, "seq check"));
    if (r.rows() == 1 && !r.Null(0, 1) && r.Int(0, 0) > r.Int(0, 1))
      return Status::Corrupt(where_ + ": batch seq " + r.Text(0, 0) + " above the relay's last_seq " + r.Text(0, 1));
    return Status::Ok();
  }

  Status RaiseFloor(uint64_t min_epoch, uint64_t min_last_seq) override {
    CCMAIL_RETURN_IF_ERROR(Writable("RaiseFloor"));
    uint64_t e = 0;
    Status txn_status = Txn([&]() -> Status {
      Result r;
      CCMAIL_RETURN_IF_ERROR(Exec("UPDATE relays SET epoch = GREATEST(epoch, $2), last_seq = GREATEST(last_seq, $3) "
                                  "WHERE relay_id = $1 RETURNING epoch",
                                  {target_.relay_id, std::to_string(min_epoch), std::to_string(min_last_seq)}, &r,
                                  "raise floor"));
      if (r.rows() != 1) return Status::Corrupt(where_ + ": relay row missing");
      e = static_cast<uint64_t>(r.Int(0, 0));
      return Status::Ok();
    });
    if (!txn_status.ok()) return txn_status;
    epoch_ = e;
    return Status::Ok();
  }

  // Re-records this relay's batches from its manifests. A delivery another relay already
  // EXPORTED stays theirs (ON CONFLICT DO NOTHING), as in the SQLite ledger.
  Status ImportBatches(const std::vector<LedgerBatch>& batches, uint64_t* added_batches,
                       uint64_t* added_deliveries) override {
    CCMAIL_RETURN_IF_ERROR(Writable("ImportBatches"));
    uint64_t nb = 0, nd = 0;
    Status txn_status = Txn([&]() -> Status {
      Result r;
      for (const auto& b : batches) {
        const int64_t created = b.created_ms ? b.created_ms : WallClockMs();
        CCMAIL_RETURN_IF_ERROR(Exec("INSERT INTO batches(relay_id, seq, epoch, post_office, file_name, created_ms, messages) "
                                    "VALUES($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                                    {target_.relay_id, std::to_string(b.seq), std::to_string(b.epoch), b.post_office,
                                     b.file_name, std::to_string(created), std::to_string(b.capture_ids.size())},
                                    &r, "import batch " + b.file_name));
        nb += r.Affected();
        CCMAIL_RETURN_IF_ERROR(InsertCaptures(b.capture_ids, b.seq, created));
        uint64_t exported = 0, dups = 0;
        CCMAIL_RETURN_IF_ERROR(InsertDeliveries(b.deliveries, b.seq, created, /*tolerate_exported=*/true, &exported, &dups));
        nd += exported;
        CCMAIL_RETURN_IF_ERROR(Exec("UPDATE relays SET exported_total = exported_total + $2 WHERE relay_id = $1",
                                    {target_.relay_id, std::to_string(exported)}, &r, "import totals"));
      }
      return Status::Ok();
    });
    if (!txn_status.ok()) return txn_status;
    if (added_batches) *added_batches = nb;
    if (added_deliveries) *added_deliveries = nd;
    return Status::Ok();
  }

  Status BackupTo(const std::string& dest_path) override {
    return Status::InvalidArgument(where_ + ": backup to " + dest_path +
                                   " is not supported on postgresql, use pg_dump (or the server's own backups)");
  }

 private:
  Status Writable(const char* what) const {
    if (read_only_) return Status::InvalidArgument(where_ + ": " + what + " on a read-only ledger");
    if (target_.relay_id.empty()) return Status::InvalidArgument(where_ + ": " + what + " needs a relay_id");
    return Status::Ok();
  }

  Status Connect() {
    if (conn_) PQfinish(conn_);
    conn_ = nullptr;
    const std::string app = "ccmail-bridge" + (target_.relay_id.empty() ? std::string() : "/" + target_.relay_id);
    // Time-outs so that a dead server or a cut network ends in an error the exporter retries,
    // never in a call that hangs: connect_timeout for the connection itself (libpq's minimum
    // is 2 s); TCP keepalives and tcp_user_timeout for a server that vanishes mid-round
    // (unacknowledged data; TCP only, libpq ignores them on a Unix socket). They come BEFORE
    // dbname, which expands the admin's location: what the admin set there wins.
    const int64_t timeout_s = (timeout_ms_ + 999) / 1000;
    const std::string connect_timeout = std::to_string(std::clamp<int64_t>(timeout_s, 2, 10));
    const std::string tcp_user_timeout = std::to_string(timeout_ms_);
    std::vector<const char*> keys = {"connect_timeout",  "keepalives",       "keepalives_idle", "keepalives_interval",
                                     "keepalives_count", "tcp_user_timeout", "application_name"};
    std::vector<const char*> values = {connect_timeout.c_str(), "1", "10", "5", "3", tcp_user_timeout.c_str(), app.c_str()};
    keys.push_back("dbname");
    values.push_back(target_.location.c_str());
    // NOTICEs (e.g. "already exists, skipping") would go to stderr: only warnings and up. The
    // server cancels a statement or lock wait after the time-out (SQLSTATE 57014 / 55P03,
    // kUnavailable), and ends a session of ours left idle inside a transaction (an exporter
    // that gave up on a server that then came back) so its locks do not outlive it. The
    // admin's own options in the location come after ours and win; read-only is not theirs
    // to lift.
    const std::string ms = std::to_string(timeout_ms_);
    std::string options = "-c client_min_messages=warning -c statement_timeout=" + ms + " -c lock_timeout=" + ms +
                          " -c idle_in_transaction_session_timeout=" + std::to_string(4 * timeout_ms_);
    const std::string admin_options = LocationValue(target_.location, "options");
    if (!admin_options.empty()) options += " " + admin_options;
    if (read_only_) options += " -c default_transaction_read_only=on";
    keys.push_back("options");
    values.push_back(options.c_str());
    if (!password_.empty()) {
      keys.push_back("password");
      values.push_back(password_.c_str());
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
    conn_ = PQconnectdbParams(keys.data(), values.data(), /*expand_dbname=*/1);
    if (!conn_) return Status::Unavailable(where_ + ": out of memory connecting");
    if (PQstatus(conn_) != CONNECTION_OK) {
      std::string m = ConnMessage();
      PQfinish(conn_);
      conn_ = nullptr;
      return Status::Unavailable(where_ + ": cannot connect: " + m);
    }
    return Status::Ok();
  }

  // libpq's message without its trailing newline and never with the password.
  std::string ConnMessage() const {
    std::string m = conn_ ? PQerrorMessage(conn_) : "no connection";
    while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
    for (size_t p; !password_.empty() && (p = m.find(password_)) != std::string::npos;) m.replace(p, password_.size(), "***");
    return m;
  }

  bool Connected() const { return conn_ && PQstatus(conn_) == CONNECTION_OK; }

  // Outside a transaction a broken connection is replaced (the server came back); inside
  // one the transaction is lost and the caller's call fails. A commit whose outcome was left
  // unknown is resolved before anything else is answered (see ResolveLostCommit).
  Status EnsureConnected() {
    if (!Connected()) {
      if (in_txn_) return Status::Unavailable(where_ + ": connection lost inside a transaction");
      CCMAIL_RETURN_IF_ERROR(Connect());
    }
    if (unresolved_seq_ != 0 && !in_txn_) return ResolveLostCommit();
    return Status::Ok();
  }

  // A COMMIT given up or cut off in flight may still be run by the old session when the
  // server comes back (it was stopped, or the network cut, not the server dead). Until a
  // probe holding this relay's row lock has seen that transaction end, every call fails
  // kUnavailable: a plain read could say "not recorded" just before the old COMMIT lands,
  // and the exporter would drop the .part files of a round that is then recorded.
  Status ResolveLostCommit() {
    const uint64_t seq = unresolved_seq_;
    unresolved_seq_ = 0;  // the probe's own statements pass
    bool committed = false;
    Status s = ProbeLostCommit(seq, &committed);
    if (!s.ok()) {
      unresolved_seq_ = seq;
      return Status::Unavailable(where_ + ": the outcome of the commit of batch seq " + std::to_string(seq) +
                                 " is still unknown: " + s.message());
    }
    return Status::Ok();
  }

  // Whether batch seq is recorded, asked once no other transaction of this relay is in
  // flight: the lost COMMIT's transaction holds this relay's row (StageBatches locked it), so
  // taking that lock waits for it to end either way. While it is still held, lock_timeout
  // makes the outcome stay unknown (kUnavailable).
  Status ProbeLostCommit(uint64_t seq, bool* committed) {
    return Txn([&]() -> Status {
      Result lr;
      CCMAIL_RETURN_IF_ERROR(Exec("SELECT 1 FROM relays WHERE relay_id = $1 FOR UPDATE", {target_.relay_id}, &lr,
                                  "wait for the lost commit's transaction"));
      return HasBatch(seq, committed);
    });
  }

  Status ResultStatus(PGresult* res, const std::string& what) {
    const ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return Status::Ok();
    const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
    std::string m = res ? PQresultErrorMessage(res) : "";
    if (m.empty()) m = ConnMessage();
    while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
    const std::string msg = where_ + ": " + what + ": " + m;
    const std::string code = state ? state : "";
    if (!Connected() || code.rfind("08", 0) == 0 || code.rfind("57P", 0) == 0) return Status::Unavailable(msg);
    // statement_timeout (query_canceled) or lock_timeout (lock_not_available, below): the
    // server or another session is slow; the round is retried, never a fatal error.
    if (code == "57014")
      return Status::Unavailable(msg + " (cancelled after ledger_timeout " + std::to_string(timeout_ms_) + " ms)");
    if (code == "23505") return Status::AlreadyExists(msg);
    // Another relay's transaction crossed ours (deadlock victim, serialization) or a standby
    // after a fail-over (read-only): transient; the round is redone.
    if (code == "40P01" || code == "40001" || code == "25006" || code == "55P03") return Status::Unavailable(msg);
    if (code == "53100" || code == "53200") return Status::NoSpace(msg);
    if (code == "42P01") return Status::NotFound(msg);  // a table is missing: no schema
    if (code.rfind("XX", 0) == 0) return Status::Corrupt(msg);
    return Status::FromErrno(msg, EIO);
  }

  Status Exec(const char* sql, const std::vector<std::string>& params, Result* out, const std::string& what) {
    CCMAIL_RETURN_IF_ERROR(EnsureConnected());
    Result r;
    CCMAIL_RETURN_IF_ERROR(Roundtrip(sql, params, &r, what));
    Status s = ResultStatus(r.get(), what);
    if (s.ok()) *out = std::move(r);
    return s;
  }

  // Sends one statement and waits for its answer, for at most twice the time-out.
  // PQexec would wait for ever on a server that accepted the connection and then stopped
  // answering (SIGSTOP, a hung host, a partition without RST): statement_timeout cannot fire
  // in a stopped server and a Unix socket has no keepalives. So the statement goes through
  // libpq's asynchronous API against a deadline; past it the connection is closed (not
  // PQcancel: its request goes to the same stopped postmaster and waits for its reply) and
  // the call fails kUnavailable like a broken connection (inside COMMIT: outcome unknown).
  // *out is PQexec's answer: the last result, or the first error.
  Status Roundtrip(const char* sql, const std::vector<std::string>& params, Result* out, const std::string& what) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(2 * timeout_ms_);
    if (PQisnonblocking(conn_) == 0 && PQsetnonblocking(conn_, 1) != 0)
      return Status::Unavailable(where_ + ": " + what + ": " + ConnMessage());
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p.c_str());
    const int sent = params.empty() && std::strchr(sql, '$') == nullptr
                         ? PQsendQuery(conn_, sql)
                         : PQsendQueryParams(conn_, sql, static_cast<int>(values.size()), nullptr, values.data(),
                                             nullptr, nullptr, 0);
    if (!sent) return Status::Unavailable(where_ + ": " + what + ": cannot send: " + ConnMessage());
    // A large round does not fit the socket's buffer: flush it as the server reads.
    for (int f; (f = PQflush(conn_)) != 0;) {
      if (f < 0) return Status::Unavailable(where_ + ": " + what + ": cannot send: " + ConnMessage());
      CCMAIL_RETURN_IF_ERROR(AwaitSocket(POLLIN | POLLOUT, deadline, what));
    }
    Result answer;
    for (;;) {
      while (!PQisBusy(conn_)) {
        PGresult* next = PQgetResult(conn_);
        if (!next) {
          *out = std::move(answer);
          return Status::Ok();
        }
        const ExecStatusType st = PQresultStatus(next);
        const bool failed = st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE;
        if (answer.get() && !failed && (PQresultStatus(answer.get()) == PGRES_FATAL_ERROR ||
                                        PQresultStatus(answer.get()) == PGRES_BAD_RESPONSE)) {
          PQclear(next);  // the error stays the answer
        } else {
          answer = Result(next);
        }
      }
      CCMAIL_RETURN_IF_ERROR(AwaitSocket(POLLIN, deadline, what));
    }
  }

  // Waits until the socket is ready for events (reading what arrived) or the deadline
  // passes; then the connection is closed (the server is not answering).
  Status AwaitSocket(short events, std::chrono::steady_clock::time_point deadline, const std::string& what) {
    const int fd = PQsocket(conn_);
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (fd < 0 || left.count() <= 0) break;
      pollfd p{fd, events, 0};
      const int n = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 60000)));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::FromErrno(where_ + ": " + what + ": poll", errno);
      if (n == 0) continue;
      if ((p.revents & (POLLIN | POLLERR | POLLHUP)) && PQconsumeInput(conn_) == 0)
        return Status::Unavailable(where_ + ": " + what + ": connection lost: " + ConnMessage());
      return Status::Ok();
    }
    PQfinish(conn_);
    conn_ = nullptr;
    return Status::Unavailable(where_ + ": " + what + ": no answer from the server within " +
                               std::to_string(2 * timeout_ms_) + " ms (twice ledger_timeout; server stopped or network "
                               "cut), connection closed");
  }

  Status Begin() {
    Result r;
    CCMAIL_RETURN_IF_ERROR(Exec("BEGIN", {}, &r, "begin"));
    in_txn_ = true;
    return Status::Ok();
  }

  void Rollback() {
    in_txn_ = false;
    if (!Connected()) return;
    Result r;
    (void)Roundtrip("ROLLBACK", {}, &r, "rollback");  // a failure leaves the connection closed or aborted
  }

  // COMMIT with the crash/fault points of the SQLite ledger. When the connection breaks
  // during COMMIT the outcome is unknown: it is resolved from the database after a
  // reconnect (does batch (relay, probe_seq) exist?), never guessed; if the server cannot be
  // reached, kUnavailable says "outcome unknown" and the caller must ask again later
  // (HasBatch), as recovery does after a crash.
  Status Commit(const char* before, const char* after, uint64_t probe_seq) {
    if (before) {
      if (FaultKind k = InjectedFailure(before); k != FaultKind::kNone) {
        Rollback();
        return k == FaultKind::kNoSpace ? Status::NoSpace(where_ + ": commit (injected)")
                                        : Status::FromErrno(where_ + ": commit (injected)", EIO);
      }
      CrashPoint(before);
    }
    Result r;
    Status s = Connected() ? Roundtrip("COMMIT", {}, &r, "commit") : Status::Ok();
    in_txn_ = false;
    if (s.ok()) s = ResultStatus(r.get(), "commit");
    if (s.ok()) {
      if (after) return FaultPoint(after, where_ + ": after commit");
      return s;
    }
    if (Connected() || probe_seq == 0) {
      Rollback();
      return s;
    }
    // The connection died with the COMMIT in flight.
    Status c = Connect();
    if (!c.ok()) {
      unresolved_seq_ = probe_seq;
      return Status::Unavailable(where_ + ": commit outcome unknown (connection lost, cannot reconnect: " + c.message() +
                                 "); batch seq " + std::to_string(probe_seq) + " must be looked up before anything else");
    }
    bool committed = false;
    Status h = ProbeLostCommit(probe_seq, &committed);
    if (!h.ok()) {
      unresolved_seq_ = probe_seq;
      return Status::Unavailable(where_ + ": commit outcome unknown: " + h.message());
    }
    if (committed) return Status::Ok();
    return Status::Unavailable(where_ + ": the commit was lost with the connection (" + s.message() +
                               "); batch seq " + std::to_string(probe_seq) + " is not in the ledger");
  }

  template <typename F>
  Status Txn(F f, const char* before = nullptr, const char* after = nullptr) {
    CCMAIL_RETURN_IF_ERROR(Begin());
    Status s = f();
    if (!s.ok()) {
      Rollback();
      return s;
    }
    return Commit(before, after, 0);
  }

  Status ReadRelay(uint64_t* epoch, uint64_t* last_seq, uint64_t* spool_clean_seq, bool for_update = false) {
    Result r;
    CCMAIL_RETURN_IF_ERROR(Exec(for_update ? "SELECT epoch, last_seq, spool_clean_seq FROM relays WHERE relay_id = $1 FOR UPDATE"
                                           : "SELECT epoch, last_seq, spool_clean_seq FROM relays WHERE relay_id = $1",
                                {target_.relay_id}, &r, "read relay row"));
    if (r.rows() != 1) return Status::NotFound(where_ + ": no row for relay " + target_.relay_id);
    if (epoch) *epoch = static_cast<uint64_t>(r.Int(0, 0));
    if (last_seq) *last_seq = static_cast<uint64_t>(r.Int(0, 1));
    if (spool_clean_seq) *spool_clean_seq = static_cast<uint64_t>(r.Int(0, 2));
    return Status::Ok();
  }

  Status InsertCaptures(const std::vector<CaptureId>& ids, uint64_t seq, int64_t created) {
    if (ids.empty()) return Status::Ok();
    std::vector<std::string> hex;
    for (const auto& id : ids) hex.push_back(Hex(id.bytes.data(), id.bytes.size()));
    Result r;
    return Exec("INSERT INTO captures(relay_id, capture_id, batch_seq, created_ms) "
                "SELECT $1, decode(h, 'hex'), $3, $4 FROM unnest($2::text[]) AS t(h) ON CONFLICT DO NOTHING",
                {target_.relay_id, ArrayLiteral(hex), std::to_string(seq), std::to_string(created)}, &r, "insert captures");
  }

  // EXPORTED rows go in one statement without ON CONFLICT, sorted by (key, recipient) so two
  // relays' rounds take the unique index's entries in the same order (no deadlock); a row
  // another relay holds is a unique violation = kAlreadyExists (unless tolerate_exported,
  // for ImportBatches). DUP rows: a repeated one is harmless.
  Status InsertDeliveries(const std::vector<LedgerDelivery>& deliveries, uint64_t seq, int64_t created,
                          bool tolerate_exported, uint64_t* exported, uint64_t* dups) {
    std::vector<const LedgerDelivery*> ex, dup;
    for (const auto& d : deliveries) (d.kind == DeliveryKind::kExported ? ex : dup).push_back(&d);
    std::sort(ex.begin(), ex.end(), [](const LedgerDelivery* a, const LedgerDelivery* b) {
      return std::tie(a->content_key.bytes, a->recipient) < std::tie(b->content_key.bytes, b->recipient);
    });
    auto insert = [&](const std::vector<const LedgerDelivery*>& rows, int kind, bool on_conflict_nothing,
                      uint64_t* count) -> Status {
      if (rows.empty()) return Status::Ok();
      std::vector<std::string> keys, recipients, ids;
      for (const LedgerDelivery* d : rows) {
        keys.push_back(Hex(d->content_key.bytes.data(), d->content_key.bytes.size()));
        recipients.push_back(d->recipient);
        ids.push_back(Hex(d->capture_id.bytes.data(), d->capture_id.bytes.size()));
      }
      std::string sql =
          "INSERT INTO deliveries(content_key, recipient, kind, relay_id, capture_id, batch_seq, created_ms) "
          "SELECT decode(k, 'hex'), r, $5, $1, decode(c, 'hex'), $6, $7 FROM unnest($2::text[], $3::text[], $4::text[]) "
          "WITH ORDINALITY AS t(k, r, c, i) ORDER BY i";
      if (on_conflict_nothing) sql += " ON CONFLICT DO NOTHING";
      Result r;
      Status s = Exec(sql.c_str(),
                      {target_.relay_id, ArrayLiteral(keys), ArrayLiteral(recipients), ArrayLiteral(ids),
                       std::to_string(kind), std::to_string(seq), std::to_string(created)},
                      &r, kind == 1 ? "insert exported deliveries" : "insert dup deliveries");
      if (s.code() == Status::Code::kAlreadyExists)
        return Status::AlreadyExists(s.message() + " (a delivery of this round was exported meanwhile, maybe by another relay)");
      CCMAIL_RETURN_IF_ERROR(s);
      *count += r.Affected();
      return Status::Ok();
    };
    CCMAIL_RETURN_IF_ERROR(insert(ex, 1, tolerate_exported, exported));
    return insert(dup, 2, true, dups);
  }

  // Inside the round's transaction: the fence, then the rows, then the relay's counters.
  Status InsertBatches(const std::vector<LedgerBatch>& batches, int64_t now, std::vector<uint64_t>* seqs) {
    uint64_t stored_epoch = 0;
    CCMAIL_RETURN_IF_ERROR(ReadRelay(&stored_epoch, nullptr, nullptr, /*for_update=*/true));
    if (stored_epoch != epoch_)
      return Status::Busy(where_ + ": epoch is " + std::to_string(stored_epoch) + ", ours is " + std::to_string(epoch_) +
                          " (another exporter with relay id " + target_.relay_id + " started)");
    uint64_t seq = 0;
    CCMAIL_RETURN_IF_ERROR(NextSeq(&seq));
    uint64_t exported = 0, dups = 0;
    Result r;
    for (const auto& batch : batches) {
      if (batch.seq != 0 && batch.seq != seq)
        return Status::InvalidArgument(where_ + ": batch " + batch.file_name + " expects seq " + std::to_string(batch.seq) +
                                       " but the next seq is " + std::to_string(seq));
      const int64_t created = batch.created_ms ? batch.created_ms : now;
      CCMAIL_RETURN_IF_ERROR(Exec("INSERT INTO batches(relay_id, seq, epoch, post_office, file_name, created_ms, messages) "
                                  "VALUES($1, $2, $3, $4, $5, $6, $7)",
                                  {target_.relay_id, std::to_string(seq), std::to_string(epoch_), batch.post_office,
                                   batch.file_name, std::to_string(created), std::to_string(batch.capture_ids.size())},
                                  &r, "insert batch"));
      CCMAIL_RETURN_IF_ERROR(InsertCaptures(batch.capture_ids, seq, created));
      CCMAIL_RETURN_IF_ERROR(InsertDeliveries(batch.deliveries, seq, created, false, &exported, &dups));
      seqs->push_back(seq);
      ++seq;
    }
    return Exec("UPDATE relays SET last_seq = $2, exported_total = exported_total + $3, dup_total = dup_total + $4, "
                "last_commit_ms = $5 WHERE relay_id = $1",
                {target_.relay_id, std::to_string(seq - 1), std::to_string(exported), std::to_string(dups),
                 std::to_string(now)},
                &r, "update relay row");
  }

  static LedgerBatch BatchRow(const Result& r, int i) {
    LedgerBatch b;
    b.seq = static_cast<uint64_t>(r.Int(i, 0));
    b.epoch = static_cast<uint64_t>(r.Int(i, 1));
    b.post_office = r.Text(i, 2);
    b.file_name = r.Text(i, 3);
    b.created_ms = r.Int(i, 4);
    return b;
  }

  const LedgerTarget target_;
  const std::string password_;
  const bool read_only_;
  const std::string where_;  // "ledger <masked location> relay <id>", the prefix of every message
  const int64_t timeout_ms_;  // ledger_timeout: statement and lock time-out; twice it, no answer at all
  PGconn* conn_ = nullptr;
  bool in_txn_ = false;
  uint64_t unresolved_seq_ = 0;  // a batch whose COMMIT's outcome is unknown (ResolveLostCommit)
  uint64_t epoch_ = 0;
  bool staged_ = false;
  std::vector<uint64_t> staged_seqs_;
  int64_t staged_now_ = 0;
};

Status OpenPgLedger(const LedgerTarget& target, bool read_only, std::unique_ptr<Ledger>* out) {
  if (LocationHasPassword(target.location))
    return Status::InvalidArgument("ledger " + MaskLocation(target.location) +
                                   ": the connection string carries a password; put it in ledger_password_file instead");
  std::string password;
  CCMAIL_RETURN_IF_ERROR(ReadPasswordFile(target.password_file, &password));
  auto ledger = std::make_unique<PgLedger>(target, std::move(password), read_only);
  CCMAIL_RETURN_IF_ERROR(ledger->Start());
  *out = std::move(ledger);
  return Status::Ok();
}

}  // namespace ccmail::store
