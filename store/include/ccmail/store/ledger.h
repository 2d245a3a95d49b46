// ledger.h - the exporter's durable record of what was exported (the commit point).
//
// DESCRIPTION
//   SQLite in WAL mode with synchronous=FULL; the exporter is its only writer
//   (docs/DESIGN.md §5). Tables:
//     meta(key PRIMARY KEY, value)   schema, epoch, last_seq, spool_clean_seq,
//                                    exported_total, dup_total
//     batches(seq PRIMARY KEY, epoch, post_office, file_name, created_ms, messages)
//     captures(capture_id PRIMARY KEY, batch_seq, created_ms)   every capture id recorded
//     deliveries(content_key, recipient, kind, capture_id, batch_seq, created_ms,
//                PRIMARY KEY(content_key, recipient, kind, capture_id))   kind EXPORTED or DUP
//     UNIQUE INDEX deliveries_exported ON deliveries(content_key, recipient) WHERE kind = EXPORTED
//   so a delivery has at most one EXPORTED row and one DUP row per capture that repeated it.
//   CommitBatches() is ONE transaction = the export decision:
//   crash points ledger.commit.before / ledger.commit.after surround the COMMIT.
//   Recipient strings are compared byte for byte as given; the exporter passes
//   "<cc:Mail name> at <POST OFFICE>" (ledger rebuild re-records manifests the same way).
//
// ERRORS
//   Every call returns a Status; a failed commit leaves the ledger as it was (SQLite
//   rollback). A commit refused by the epoch fence is kBusy; a second EXPORTED row for a
//   delivery is kAlreadyExists; SQLITE_FULL is kNoSpace. The exporter abandons a round on
//   kNoSpace (back-pressure) and treats any other failed commit like a crash (exit, restart,
//   recovery), after checking whether the COMMIT became durable anyway.
//
// THREAD SAFETY
//   One Ledger object per process, used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
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
  ~Ledger();

  // epoch = epoch + 1 in its own transaction (crash point recovery.epoch). Returns it.
  Status BumpEpoch(uint64_t* new_epoch);
  uint64_t epoch() const { return epoch_; }
  // The next seq CommitBatches will use.
  Status NextSeq(uint64_t* seq);

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
  Status CommitBatches(std::vector<LedgerBatch>* batches);
  // CommitBatches in two steps, so that the inserts run while the caller makes the batch
  // files durable (the exporter's committer): StageBatches opens the transaction and inserts
  // (nothing is visible or durable yet; on error nothing stays open); CommitStaged(the same
  // batches) is the commit point, with CommitBatches' crash points and results; AbortStaged
  // rolls back. No other call on this Ledger between StageBatches and CommitStaged or
  // AbortStaged (another thread may make that call: one at a time).
  Status StageBatches(const std::vector<LedgerBatch>& batches);
  Status CommitStaged(std::vector<LedgerBatch>* batches);
  void AbortStaged();
  // The batch row whose file_name is `file_name` (highest seq if several). kNotFound if none.
  Status FindBatchByName(const std::string& file_name, LedgerBatch* out);
  // For each post office, its batch row with the highest seq (recovery: the watermark).
  Status LatestBatchPerPostOffice(std::vector<LedgerBatch>* out);
  // Bulk lookups with one prepared statement each (the exporter asks for every capture of
  // a round): found[i] / exported[i] is 1 when HasCapture / IsExported would say so.
  Status HasCaptures(const std::vector<CaptureId>& ids, std::vector<char>* found);
  Status AreExported(const std::vector<std::pair<ContentKey, std::string>>& deliveries, std::vector<char>* exported);

  Status HasCapture(const CaptureId& id, bool* found);
  // Where a recorded capture went (ccmailctl show): its batch's seq, post office and file
  // name. kNotFound when the ledger does not know the id (pending, quarantined, unknown,
  // or pruned after dedup_window).
  Status FindCapture(const CaptureId& id, uint64_t* batch_seq, std::string* post_office, std::string* file_name);
  // Every delivery recorded for a capture (exported or DUP, each with its batch; post_office
  // and file_name empty for a DUP-only row or a pruned batch), ordered by batch then
  // recipient. For ccmailctl show: scans the deliveries table (bounded by dedup_window).
  struct CaptureDelivery {
    std::string recipient;
    DeliveryKind kind = DeliveryKind::kExported;
    uint64_t batch_seq = 0;
    std::string post_office, file_name;
  };
  Status CaptureDeliveries(const CaptureId& id, std::vector<CaptureDelivery>* out);
  Status IsExported(const ContentKey& key, const std::string& recipient, bool* exported);
  // Batch rows (for recovery: which .part files are committed).
  Status HasBatch(uint64_t seq, bool* found);
  Status ListBatchesSince(uint64_t after_seq, std::vector<LedgerBatch>* out);  // no deliveries

  Status SetSpoolCleanSeq(uint64_t seq);
  // Deletes deliveries/captures/batches older than cutoff_ms whose batch_seq <=
  // spool_clean_seq, at most rows_per_txn rows per transaction (crash point prune.k
  // per transaction). *deleted counts delivery+capture rows.
  Status Prune(int64_t cutoff_ms, size_t rows_per_txn, uint64_t* deleted);

  Status Counters(LedgerCounters* out);
  // PRAGMA integrity_check == "ok".
  Status IntegrityCheck();
  // PRAGMA quick_check == "ok" (every page's structure), then each index against its
  // table: count and sum of a row hash over deliveries_exported, deliveries_age and
  // captures_age equal to the same over the table's own b-tree (two sequential scans per
  // index; integrity_check does a lookup per row and takes ~10x longer). kCorrupt with the
  // finding otherwise. Runs at every exporter start and in `ccmailctl verify`.
  Status QuickCheck();

  // ---- ledger loss and rollback (ledger_guard, ccmailctl ledger) ----
  // epoch = max(epoch, min_epoch), last_seq = max(last_seq, min_last_seq), in one
  // transaction: after a rebuild the next epoch and batch seq are above every one the
  // outbox has seen, so no batch name is ever given out twice. Never lowers anything.
  Status RaiseFloor(uint64_t min_epoch, uint64_t min_last_seq);
  // Re-records batches found in outbox manifests (seq, epoch, post_office, file_name,
  // created_ms, capture_ids, EXPORTED deliveries), in one transaction; rows the ledger
  // already has are kept as they are. *added_deliveries counts the deliveries that were
  // missing. Does not need BumpEpoch (the exporter must not run: caller holds its lock).
  Status ImportBatches(const std::vector<LedgerBatch>& batches, uint64_t* added_batches, uint64_t* added_deliveries);
  // A consistent copy of the ledger into dest_path (which must not exist yet), with
  // SQLite's online backup (works while the exporter writes; the copy is one committed
  // state), fsynced with its directory. The copy is in rollback-journal mode: restore it by
  // copying it over ledger.db with the exporter stopped and ledger.db-wal/-shm removed.
  Status BackupTo(const std::string& dest_path);

 public:
  struct Impl;  // implementation detail (named here only for helpers in ledger.cpp)

 private:
  explicit Ledger(std::unique_ptr<Impl> impl);
  // The inserts of CommitBatches/StageBatches inside the caller's transaction.
  Status InsertBatches(const std::vector<LedgerBatch>& batches, int64_t now, std::vector<uint64_t>* seqs);
  void FillCommitted(const std::vector<uint64_t>& seqs, int64_t now, std::vector<LedgerBatch>* batches) const;
  // Checks the schema of an opened database and reads its epoch into a new Ledger.
  static Status Adopt(std::unique_ptr<Impl> impl, std::unique_ptr<Ledger>* out);
  std::unique_ptr<Impl> impl_;
  uint64_t epoch_ = 0;
};

}  // namespace ccmail::store
