// ledger_guard.h - the ledger against the durable history it must agree with.
//
// DESCRIPTION
//   Exactly once rests on the ledger; a ledger that was moved away, zeroed, restored from
//   an older backup or damaged would let the exporter reuse batch names and export a
//   re-sent message again. The outbox keeps independent evidence of what was committed:
//   each post office's WATERMRK ("epoch seq NAME") and the manifest header of every batch
//   still there ("epoch=E seq=S"). Commit precedes publish, so a sound ledger's epoch and
//   last_seq are always >= all of them.
//
//   OpenCheckedLedger (Exporter::Open, right after the lock, before anything else is touched):
//     - no ledger.db (or an empty file) and no outbox history: a fresh install, created;
//     - no ledger.db or an empty one while the outbox has history: refused (ledger lost);
//     - not a database, failing Ledger::QuickCheck (quick_check and each index against
//       its table) or without its meta rows: refused (damaged);
//     - epoch or last_seq below the outbox's: refused (an older ledger, e.g. a restored
//       backup; `ccmailctl ledger rebuild` brings it up to date from the manifests).
//   A refusal is a kCorrupt Status whose message starts with "ledger refused: "
//   (IsLedgerRefusal); the reason is also written to <spool_directory>/ledger-refused,
//   which `ccmailctl status` shows, and removed at the next accepted start. The daemon
//   exits with kExitLedgerRefused; the systemd unit does not restart on it.
//
//   RebuildLedger (`ccmailctl ledger rebuild`, exporter stopped: it takes exporter.lock):
//   re-records every batch whose manifest is in outbox/<PO>/ or under an extra directory
//   (copies the deliver_command archived), then raises the ledger's epoch and last_seq to
//   the outbox's. Deliveries whose manifests are gone everywhere cannot come back.
//
// THREAD SAFETY
//   Plain functions; the caller holds exporter.lock.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ccmail/common/status.h"
#include "ccmail/config/paths.h"
#include "ccmail/store/ledger.h"

namespace ccmail::exporter {

// Exit status of ccmail-exporter when it refuses the ledger (EX_DATAERR): an administrator
// must act (restore + rebuild); restarting would only refuse again.
inline constexpr int kExitLedgerRefused = 65;

// What the outbox says was committed.
struct OutboxHistory {
  bool any = false;           // a WATERMRK or a manifest exists
  uint64_t max_epoch = 0;
  uint64_t max_seq = 0;
  std::string max_epoch_from;  // the file that showed max_epoch (for the message)
  std::string max_seq_from;
  size_t watermarks = 0;
  size_t manifests = 0;
};
// Reads outbox_dir/<PO>/WATERMRK and the first line of every outbox_dir/<PO>/*.MAN.
// A missing outbox directory is an empty history. An unreadable watermark or manifest
// header is kCorrupt (never guessed around).
// relay_id: only that relay's watermark files and manifests (a shared ledger: each relay
// checks its own epoch and seq against its own history); "": the single-relay names.
Status ScanOutboxHistory(const std::string& outbox_dir, OutboxHistory* out, const std::string& relay_id = "");

struct ManifestHeader {
  uint64_t epoch = 0, seq = 0, count = 0;
  std::string post_office, batch;
  std::string relay;  // "" unless the header has relay=<id>
};
// "# ccmail-bridge manifest v1 epoch=E seq=S po=PO batch=NAME count=N"
Status ParseManifestHeader(const std::string& line, ManifestHeader* out);

// <spool_directory>/ledger-refused: the reason of the last refusal (absent: none).
std::string LedgerRefusalPath(const BridgePaths& paths);
// kNotFound when there is no refusal on record.
Status ReadLedgerRefusal(const BridgePaths& paths, std::string* reason);
bool IsLedgerRefusal(const Status& s);

// Opens paths.ledger_path for the exporter after the checks above. On refusal records the
// reason (LedgerRefusalPath) and returns it; on success removes an old record.
Status OpenCheckedLedger(const BridgePaths& paths, std::unique_ptr<store::Ledger>* out);
// The same for any target: a SQLite target as above (its location is the file); a PostgreSQL
// target skips the file checks (the server keeps the data), runs QuickCheck (schema and this
// relay's row) and compares this relay's epoch and last_seq with this relay's outbox history.
// kUnavailable when the server cannot be reached (the exporter retries; not a refusal).
Status OpenCheckedLedger(const BridgePaths& paths, const store::LedgerTarget& target,
                         std::unique_ptr<store::Ledger>* out);
// The same checks against an open ledger, without recording anything (ccmailctl verify).
Status CheckLedgerAgainstOutbox(store::Ledger* ledger, const OutboxHistory& history);

struct RebuildReport {
  size_t manifests = 0;          // manifests read
  uint64_t batches_added = 0;    // batch rows the ledger did not have
  uint64_t deliveries_added = 0; // EXPORTED deliveries the ledger did not have
  uint64_t epoch = 0, last_seq = 0;  // the ledger's floor afterwards
  bool created = false;          // there was no ledger file
};
// extra_dirs: more directories searched (recursively) for *.MAN files, e.g. where the
// site's deliver_command archives imported batches. Creates the ledger when missing.
// A ledger that fails quick_check is not touched (move it aside, then rebuild).
Status RebuildLedger(const BridgePaths& paths, const std::vector<std::string>& extra_dirs, RebuildReport* report);

}  // namespace ccmail::exporter
