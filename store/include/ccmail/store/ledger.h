// ledger.h - the exporter's durable record of what was exported (the commit point).
//
// DESCRIPTION
//   An interface with two backends, chosen by OpenLedger(LedgerTarget):
//   - SQLite (sqlite_ledger.cpp, one relay, the default): a file in WAL mode with
//     synchronous=FULL; the exporter is its only writer (docs/DESIGN.md §5). Tables:
//       meta(key PRIMARY KEY, value)   schema, epoch, last_seq, spool_clean_seq,
//                                      exported_total, dup_total
//       batches(seq PRIMARY KEY, epoch, post_office, file_name, created_ms, messages)
//       captures(capture_id PRIMARY KEY, batch_seq, created_ms)   every capture id recorded
//       deliveries(content_key, recipient, kind, capture_id, batch_seq, created_ms,
//                  PRIMARY KEY(content_key, recipient, kind, capture_id))   kind EXPORTED or DUP
//       UNIQUE INDEX deliveries_exported ON deliveries(content_key, recipient) WHERE kind = EXPORTED
//   - PostgreSQL (pg_ledger.cpp, libpq; several relays share it, docs/DESIGN.md §5.6): the
//     same tables keyed by relay_id (relays(relay_id PK, epoch, last_seq, spool_clean_seq,
//     totals), batches PK(relay_id, seq), captures PK(relay_id, capture_id)), and ONE
//     deliveries table whose unique EXPORTED index is shared by every relay. Every call but
//     AreExported and Relays is about this relay (relay_id); a read-only ledger opened with
//     relay_id "" sees every relay's rows.
//   so a delivery has at most one EXPORTED row and one DUP row per capture that repeated it.
//   CommitBatches() is ONE transaction = the export decision:
//   crash points ledger.commit.before / ledger.commit.after surround the COMMIT.
//   Recipient strings are compared byte for byte as given; the exporter passes
//   "<cc:Mail name> at <POST OFFICE>" (ledger rebuild re-records manifests the same way).
//
// ERRORS
//   Every call returns a Status; a failed commit leaves the ledger as it was (rollback). A
//   commit refused by the epoch fence is kBusy; a second EXPORTED row for a delivery is
//   kAlreadyExists (on PostgreSQL also when another relay exported it after this round's
//   lookup: re-plan the round); SQLITE_FULL / a full PostgreSQL disk is kNoSpace. PostgreSQL
//   only: a server that cannot be reached, a lost connection, a deadlock or serialization
//   victim or a read-only standby is kUnavailable (retry later); a COMMIT whose connection
//   broke is resolved from the database after a reconnect (is batch (relay, seq) there?) and
//   reported as kUnavailable "outcome unknown" only when the server cannot be reached yet.
//   BackupTo on PostgreSQL is kInvalidArgument ("use pg_dump"). The exporter abandons a round
//   on kNoSpace, kAlreadyExists and kUnavailable (back-off, retry) and treats any other failed
//   commit like a crash (exit, restart, recovery), after checking whether the COMMIT became
//   durable anyway. Messages never contain the PostgreSQL password.
//
// THREAD SAFETY
//   One Ledger object per process, used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ccmail/common/status.h"
#include "ccmail/store/capture_id.h"
#include "ccmail/store/content_key.h"

namespace ccmail::store {

enum class DeliveryKind { kExported = 1, kDup = 2 };

struct LedgerDelivery {
  CaptureId capture_id;
  ContentKey content_key;
  std::string recipient;
  DeliveryKind kind = DeliveryKind::kExported;
};

struct LedgerBatch {
  uint64_t seq = 0;         // assigned by CommitBatches (strictly increasing)
  uint64_t epoch = 0;       // the ledger's current epoch
  std::string post_office;
  std::string file_name;
  int64_t created_ms = 0;   // defaults to now
  std::vector<CaptureId> capture_ids;   // every capture taking part (also all-DUP ones)
  std::vector<LedgerDelivery> deliveries;
};

// One relay of a shared ledger (Ledger::Relays). batches counts the relay's batch rows still
// in the ledger (pruning removes old ones); exported/dups are the relay's running totals.
struct RelayCounters {
  std::string relay_id;   // "" for the SQLite ledger (one relay)
  uint64_t epoch = 0;
  uint64_t last_seq = 0;
  uint64_t spool_clean_seq = 0;
  uint64_t batches = 0;
  uint64_t exported = 0;
  uint64_t dups = 0;
  int64_t last_commit_ms = 0;  // wall clock of the relay's last committed round, 0 if none
};

struct LedgerCounters {
  uint64_t epoch = 0;
  uint64_t batches = 0;
  uint64_t captures = 0;
  uint64_t exported = 0;
  uint64_t dups = 0;
  uint64_t last_seq = 0;
  uint64_t spool_clean_seq = 0;
};

class Ledger {
 public:
  // Opens or creates the ledger file. Does NOT bump the epoch (call BumpEpoch at start).
  static Status Open(const std::string& path, std::unique_ptr<Ledger>* out);
  // Opens an existing ledger for reading only (ccmailctl): never creates the file, never
  // writes (no journal-mode change, no schema), and works while the exporter writes (a
  // WAL reader neither blocks the writer nor sees a half-committed batch). kNotFound when
  // the file does not exist. Write calls on such a Ledger fail.
  static Status OpenReadOnly(const std::string& path, std::unique_ptr<Ledger>* out);
  virtual ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // "sqlite" or "postgresql".
  virtual const char* backend() const = 0;
  // This exporter's relay in a shared ledger ("" for SQLite).
  virtual const std::string& relay_id() const = 0;
  // Every relay of the ledger with its own counters (SQLite: one row, relay_id "").
  virtual Status Relays(std::vector<RelayCounters>* out) = 0;

  // epoch = epoch + 1 in its own transaction (crash point recovery.epoch). Returns it.
  // PostgreSQL: this relay's epoch (relays row); another exporter of the same relay id is
  // fenced out by it (its next commit fails kBusy).
  virtual Status BumpEpoch(uint64_t* new_epoch) = 0;
  virtual uint64_t epoch() const = 0;
  // The next seq CommitBatches will use.
  virtual Status NextSeq(uint64_t* seq) = 0;

  // The commit point: several batches in ONE transaction (a message with recipients on two
  // post offices is in two batch files; committing them separately would let a crash in
  // between make recovery unlink its spool file with one post office still unexported).
  // Seqs are assigned consecutively from NextSeq() in vector order; a batch whose seq is
  // non-zero on input must get exactly that seq (the caller named its .part file after it),
  // else nothing is committed and kInvalidArgument is returned. Fills each batch's seq,
  // epoch and created_ms. kInvalidArgument before BumpEpoch; kBusy when another exporter
  // bumped the epoch since (fencing). A delivery whose (key, recipient) is already EXPORTED
  // fails the whole transaction with kAlreadyExists and no change (caller should have
  // checked with AreExported; see docs/DESIGN.md §5.3); a DUP delivery listed twice is harmless.
  virtual Status CommitBatches(std::vector<LedgerBatch>* batches) = 0;
  // CommitBatches in two steps, so that the inserts run while the caller makes the batch
  // files durable (the exporter's committer): StageBatches opens the transaction and inserts
  // (nothing is visible or durable yet; on error nothing stays open); CommitStaged(the same
  // batches) is the commit point, with CommitBatches' crash points and results; AbortStaged
  // rolls back. No other call on this Ledger between StageBatches and CommitStaged or
  // AbortStaged (another thread may make that call: one at a time).
  virtual Status StageBatches(const std::vector<LedgerBatch>& batches) = 0;
  virtual Status CommitStaged(std::vector<LedgerBatch>* batches) = 0;
  virtual void AbortStaged() = 0;
  // The batch row whose file_name is `file_name` (highest seq if several). kNotFound if none.
  virtual Status FindBatchByName(const std::string& file_name, LedgerBatch* out) = 0;
  // For each post office, its batch row with the highest seq (recovery: the watermark).
  virtual Status LatestBatchPerPostOffice(std::vector<LedgerBatch>* out) = 0;
  // Bulk lookups with one prepared statement each (the exporter asks for every capture of
  // a round): found[i] / exported[i] is 1 when HasCapture / IsExported would say so.
  virtual Status HasCaptures(const std::vector<CaptureId>& ids, std::vector<char>* found) = 0;
  virtual Status AreExported(const std::vector<std::pair<ContentKey, std::string>>& deliveries, std::vector<char>* exported) = 0;

  Status HasCapture(const CaptureId& id, bool* found);  // HasCaptures of one id
  // Where a recorded capture went (ccmailctl show): its batch's seq, post office and file
  // name. kNotFound when the ledger does not know the id (pending, quarantined, unknown,
  // or pruned after dedup_window).
  virtual Status FindCapture(const CaptureId& id, uint64_t* batch_seq, std::string* post_office, std::string* file_name) = 0;
  // Every delivery recorded for a capture (exported or DUP, each with its batch; post_office
  // and file_name empty for a DUP-only row or a pruned batch), ordered by batch then
  // recipient. For ccmailctl show: scans the deliveries table (bounded by dedup_window).
  struct CaptureDelivery {
    std::string recipient;
    DeliveryKind kind = DeliveryKind::kExported;
    uint64_t batch_seq = 0;
    std::string post_office, file_name;
  };
  virtual Status CaptureDeliveries(const CaptureId& id, std::vector<CaptureDelivery>* out) = 0;
  Status IsExported(const ContentKey& key, const std::string& recipient, bool* exported);  // AreExported of one
  // Batch rows (for recovery: which .part files are committed).
  virtual Status HasBatch(uint64_t seq, bool* found) = 0;
  virtual Status ListBatchesSince(uint64_t after_seq, std::vector<LedgerBatch>* out) = 0;  // no deliveries

  virtual Status SetSpoolCleanSeq(uint64_t seq) = 0;
  // Deletes deliveries/captures/batches older than cutoff_ms whose batch_seq <=
  // spool_clean_seq, at most rows_per_txn rows per transaction (crash point prune.k
  // per transaction). *deleted counts delivery+capture rows.
  virtual Status Prune(int64_t cutoff_ms, size_t rows_per_txn, uint64_t* deleted) = 0;

  virtual Status Counters(LedgerCounters* out) = 0;
  // PRAGMA integrity_check == "ok".
  virtual Status IntegrityCheck() = 0;
  // PRAGMA quick_check == "ok" (every page's structure), then each index against its
  // table: count and sum of a row hash over deliveries_exported, deliveries_age and
  // captures_age equal to the same over the table's own b-tree (two sequential scans per
  // index; integrity_check does a lookup per row and takes ~10x longer). kCorrupt with the
  // finding otherwise. Runs at every exporter start and in `ccmailctl verify`.
  virtual Status QuickCheck() = 0;

  // ---- ledger loss and rollback (ledger_guard, ccmailctl ledger) ----
  // epoch = max(epoch, min_epoch), last_seq = max(last_seq, min_last_seq), in one
  // transaction: after a rebuild the next epoch and batch seq are above every one the
  // outbox has seen, so no batch name is ever given out twice. Never lowers anything.
  virtual Status RaiseFloor(uint64_t min_epoch, uint64_t min_last_seq) = 0;
  // Re-records batches found in outbox manifests (seq, epoch, post_office, file_name,
  // created_ms, capture_ids, EXPORTED deliveries), in one transaction; rows the ledger
  // already has are kept as they are. *added_deliveries counts the deliveries that were
  // missing. Does not need BumpEpoch (the exporter must not run: caller holds its lock).
  virtual Status ImportBatches(const std::vector<LedgerBatch>& batches, uint64_t* added_batches, uint64_t* added_deliveries) = 0;
  // A consistent copy of the ledger into dest_path (which must not exist yet), with
  // SQLite's online backup (works while the exporter writes; the copy is one committed
  // state), fsynced with its directory. The copy is in rollback-journal mode: restore it by
  // copying it over ledger.db with the exporter stopped and ledger.db-wal/-shm removed.
  virtual Status BackupTo(const std::string& dest_path) = 0;


 protected:
  Ledger() = default;
};

// Where the ledger is and who this exporter is in it (LedgerTargetFromConfig builds it
// from the settings ledger, ledger_password_file and relay_id).
struct LedgerTarget {
  std::string location;       // a file path (SQLite), or "postgresql://..." / "postgres://..." or a
                              // libpq key=value connection string (PostgreSQL)
  std::string password_file;  // PostgreSQL password, read from this file (never argv or the URL)
  std::string relay_id;       // this relay's name in a shared ledger; "" for SQLite
  // PostgreSQL only (setting ledger_timeout): the server cancels a statement (or a lock wait)
  // after this long, and a server that does not answer at all is given up after twice this,
  // its connection closed; both end in kUnavailable (docs/DESIGN.md §5.6).
  int64_t timeout_ms = 30000;
};

// True for a postgresql:// or postgres:// URI or a libpq key=value string (contains '=' and
// no '/' before it: "host=db1 dbname=ccmail"); anything else is a SQLite file path.
bool IsPostgresLocation(std::string_view location);
// 1-32 characters of [A-Za-z0-9_-] (it is part of batch file names and of the schema's keys).
bool IsValidRelayId(std::string_view relay_id);

// Opens (and for PostgreSQL creates the schema and this relay's row if missing) the ledger
// the target names. SQLite: Ledger::Open(location); relay_id must be "". PostgreSQL:
// relay_id is required; kUnavailable when the server cannot be reached within the connect
// time-out (the exporter retries), kInvalidArgument for a bad target or password file.
Status OpenLedger(const LedgerTarget& target, std::unique_ptr<Ledger>* out);
// For reading (ccmailctl): SQLite as Ledger::OpenReadOnly; PostgreSQL opens a session that
// never writes (default_transaction_read_only) and never creates the schema; relay_id may be
// "" (then only the relay-independent calls and Relays() make sense).
Status OpenLedgerReadOnly(const LedgerTarget& target, std::unique_ptr<Ledger>* out);

}  // namespace ccmail::store
