// exporter.h - the single exporter: recovery (docs/DESIGN.md §7) and the run loop (docs/DESIGN.md §6).
//
// SYNOPSIS
//   ExporterOptions opt;  ExporterOptions::FromConfig(cfg, &opt);
//   std::unique_ptr<Exporter> ex;
//   Status s = Exporter::Open(opt, &ex);     // kBusy: another exporter holds the lock -> exit 0
//   s = ex->Recover();                       // every start; idempotent
//   s = ex->Run(stop_flag);                  // until stop_flag; or ex->Drain() (export all, return)
//
// DESCRIPTION
//   Open() takes exporter.lock (flock) BEFORE touching anything, then opens the ledger
//   after checking it against the outbox (ledger_guard.h: a missing, older or damaged
//   ledger is refused, IsLedgerRefusal; the daemon exits kExitLedgerRefused),
//   the spool, the outbox and the claim table (created, or recreated when invalid; the
//   runtime_directory is created 0750 if missing) and registers in it, touching no slot
//   (docs/DESIGN.md §7 step 3). ccmail-exporter exits with
//   kExitUnsafeRuntimeDirectory when runtime_directory is not its own (or root's) or is
//   group/other-writable (shm::CheckRuntimeDirectory).
//
//   Recover(): bump the epoch (recovery.epoch); for every out/tmp .part: roll forward
//   (Outbox::Publish) when the ledger has its batch, else delete it (recovery.rollforward);
//   re-publish the newest batch of every post office whose watermark lags; unlink spool/new
//   files whose capture id is in the ledger (recovery.spool.unlink); delete spool/tmp files
//   of dead writers; R2, the previous exporter's claims back to READY (recovery.slots.reset),
//   R3 (recovery.ready.free), R1 on the table (docs/DESIGN.md §7).
//
//   One loop turn (RunOnce): claim READY slots (T3, slot.claimed), list spool/new every
//   spool_scan_interval and whenever overflow_count changed (skipped while a full round is
//   already pending: a drain of a big backlog would re-list it every time), fill a round of up to
//   batch_max_messages captures (waiting at most batch_max_delay), skip ids already in the
//   ledger or in the round, classify each (content key, "name at PO") delivery EXPORTED or
//   DUP against the ledger AND the round, convert per post office (unconvertible ->
//   quarantine), write one .part + manifest per post office, ONE ledger transaction for all
//   of them (inserted while the files are written, Ledger::StageBatches, committed after them,
//   Ledger::CommitStaged), publish, unlink the spool files, Complete the slots
//   (T4, slot.freed), publish the exporter state. A failed .part write (ENOSPC) or a full
//   ledger abandons the round and backs off: nothing is lost, the captures stay in spool/new.
//   Any other ledger failure is returned (the daemon exits; the restart runs recovery).
//
//   deliver_command runs on its own thread per published batch, so a slow or failing
//   IMPORT never stops exporting; exit codes per deliver.h; 5 -> bounce.h.
//
// THREAD SAFETY
//   One Exporter per process; Recover/RunOnce/Run/Drain from one thread. Reload() and
//   RequestStop() may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ccmail/common/status.h"
#include "ccmail/config/paths.h"
#include "ccmail/store/ledger.h"
#include "ccmail/format/address_map.h"
#include "ccmail/format/settings.h"
#include "ccmail/shm/claim_table.h"

namespace ccmail {
class Config;
namespace store {
class DurableIo;
}
}

namespace ccmail::exporter {

// Exit status of ccmail-exporter for an unsafe runtime_directory (EX_CONFIG): a
// misconfiguration that a restart does not fix.
inline constexpr int kExitUnsafeRuntimeDirectory = 78;

// Named points of an exporter process (CCMAIL_CRASH_AT / CCMAIL_FAIL_AT). Each name is a
// constant of the ONE layer that passes it, so `name:N` counts the passes of one step:
//   the exporter itself (store::FaultPoint / InjectedError + CrashPoint, below):
//     recovery.rollforward, recovery.spool.unlink, recovery.slots.reset, round.converted,
//     capture.quarantined;
//   the outbox's DurableIo calls (outbox.h): batch.*, watermark.*;
//   the store (store/io.h): recovery.epoch, ledger.commit.before/after, prune.k,
//     spool.unlinked, spool.unlink.dir.fsynced;
//   the claim table (shm/crash_points.h): slot.claimed, slot.freed, recovery.ready.free; its
//     Open also passes recovery.table.reset and shm.create.* (tested in tests/shm).
inline constexpr const char* kCrashRecoveryRollforward = "recovery.rollforward";
inline constexpr const char* kCrashRecoverySpoolUnlink = "recovery.spool.unlink";
// R2 (the previous exporter's claims back to READY) in Recover, after the epoch bump. The
// claim table's recovery.table.reset (an invalid segment replaced at Open) is another step.
inline constexpr const char* kCrashRecoverySlotsReset = "recovery.slots.reset";
inline constexpr const char* kCrashRoundConverted = "round.converted";
inline constexpr const char* kCrashQuarantined = "capture.quarantined";

// Every named crash point that recovery and a loop turn pass, in the order they reach them
// (recovery, then a turn: prune, claim, convert, quarantine, write, commit, publish, unlink,
// free); exporter_kill_test kills the daemon at each and fails if one is never reached.
const std::vector<std::string>& ExporterCrashPoints();

struct ExporterOptions {
  BridgePaths paths;
  // Which ledger (settings ledger, ledger_password_file, relay_id); an empty location is
  // the SQLite file paths.ledger_path.
  store::LedgerTarget ledger;
  shm::TableOptions table;
  format::FormatSettings format;
  std::shared_ptr<const format::AddressMap> address_map;  // resolves recipients captured without a PO
  size_t batch_max_messages = 256;
  std::chrono::milliseconds batch_max_delay{200};
  std::chrono::milliseconds spool_scan_interval{2000};
  std::chrono::milliseconds doorbell_timeout{50};
  std::chrono::milliseconds dedup_window{7LL * 24 * 3600 * 1000};
  std::chrono::milliseconds prune_interval{10LL * 60 * 1000};
  std::chrono::milliseconds backoff_min{200};
  std::chrono::milliseconds backoff_max{30000};
  std::string deliver_command;
  long deliver_retry_min_s = 60;
  long deliver_retry_max_s = 3600;
  // SMTP relay that takes bounces and quarantine notices (bounce.h): "host:port".
  std::string bounce_relay = "127.0.0.1:25";
  bool notify_sender_on_quarantine = false;
  // Bytes of converted output held for one round before it is committed (memory bound).
  uint64_t round_max_bytes = 64ULL << 20;
  // Threads converting the messages of a round (FromConfig: the CPU count, at most 4).
  size_t convert_threads = 1;
  // Every durable step of the exporter (its spool side, out/tmp, the outbox, recovery) goes
  // through this; nullptr: DurableIo::Real(). Tests inject PowerLossIo or a DurableIoWrapper.
  // Not owned; must outlive the Exporter.
  store::DurableIo* io = nullptr;

  // Reads every exporter, general and format row (and the address map).
  static Status FromConfig(const Config& cfg, ExporterOptions* out);
};

struct ExporterCounters {
  uint64_t rounds = 0;          // ledger commits
  uint64_t batches = 0;         // batch files published
  uint64_t captures = 0;        // captures recorded in the ledger
  uint64_t exported = 0;        // deliveries exported
  uint64_t dups = 0;            // deliveries recorded as DUP
  uint64_t skipped_known = 0;   // ids found already in the ledger (slot + scan, retries)
  uint64_t quarantined = 0;     // unconvertible or corrupt captures
  uint64_t abandoned = 0;       // rounds abandoned (ENOSPC, full ledger) and retried later
  uint64_t deliver_runs = 0;
  uint64_t deliver_failures = 0;
  uint64_t bounced = 0;
};

class Exporter {
 public:
  static Status Open(ExporterOptions opt, std::unique_ptr<Exporter>* out);
  ~Exporter();
  Exporter(const Exporter&) = delete;
  Exporter& operator=(const Exporter&) = delete;

  Status Recover();
  // One loop turn; *did_work = a round was committed or something was skipped/quarantined.
  Status RunOnce(bool* did_work);
  // Loops until *stop (finishing the round in progress). heartbeat() is called every turn.
  Status Run(const std::atomic<bool>& stop, const std::function<void()>& heartbeat = {});
  // Exports everything pending in spool/new and the table, then returns (deliver jobs too).
  // Captures that cannot be read or converted are retried with back-off; after 6 tries in a
  // row without progress Drain returns kUnavailable naming the first one (nothing is lost).
  Status Drain();
  // SIGHUP: new format settings and address map for the next round.
  void Reload(const format::FormatSettings& fmt, std::shared_ptr<const format::AddressMap> map);

  uint64_t epoch() const;
  // "sqlite" or "postgresql" (the ledger's backend).
  const char* ledger_backend() const;
  ExporterCounters counters() const;
  // Captures known to be waiting (scan backlog + unpublished), for STATUS lines.
  uint64_t backlog() const;

  struct Impl;

 private:
  explicit Exporter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ccmail::exporter
