// state.h - what ccmailctl reads: one snapshot of the table, spool, ledger and exporter.
//
// Every part is optional: a missing table, ledger or spool is reported as such (a stopped
// or never-started bridge), and a part that cannot be read carries its error text, so
// `status` and `metrics` always print what they can.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ccmail/common/status.h"
#include "ccmail/config/config.h"
#include "ccmail/config/paths.h"
#include "ccmail/shm/claim_table.h"
#include "ccmail/store/ledger.h"
#include "ccmail/store/spool.h"

namespace ccmail::ctl {

enum class PartState { kOk, kMissing, kError };
const char* PartStateName(PartState s);  // "ok", "missing", "error"

// The configuration a command works on.
struct Context {
  Config cfg;
  BridgePaths paths;
  store::LedgerTarget ledger;  // settings ledger, ledger_password_file, relay_id
  shm::TableOptions table;
  std::chrono::milliseconds stall_timeout{60000};
  static Status FromConfig(Config cfg, Context* out);
};

struct TableSnapshot {
  PartState state = PartState::kMissing;
  std::string name;    // "<runtime_directory>/<claim_table_name>-v<layout>"
  std::string error;   // for kError (e.g. another layout, permission denied)
  uint32_t slots = 0;
  uint32_t free = 0, reserved = 0, ready = 0, claimed = 0;
  uint64_t overflows = 0;
  shm::ExporterState exporter;  // as last published by the exporter (zero: never)
};

struct SpoolSnapshot {
  PartState state = PartState::kMissing;
  std::string error;
  uint64_t messages = 0;
  uint64_t bytes = 0;
  std::optional<int64_t> oldest_ms;  // capture time of the oldest pending capture
  uint64_t quarantined = 0;
};

struct LedgerSnapshot {
  PartState state = PartState::kMissing;
  std::string error;
  std::string backend;   // "sqlite" or "postgresql" (from the setting when the ledger is not there)
  std::string location;  // the file, or the connection string with any password masked
  std::string relay_id;  // this relay in a shared ledger; "" for SQLite
  store::LedgerCounters counters;
  // Every relay of a shared ledger (PostgreSQL); SQLite has one row with relay_id "".
  std::vector<store::RelayCounters> relays;
  std::string relays_error;  // the relays could not be listed (the counters still stand)
};

enum class ExporterRun { kRunning, kStalled, kNotRunning };
const char* ExporterRunName(ExporterRun r);  // "running", "stalled", "not running"

struct BridgeState {
  int64_t now_ms = 0;
  TableSnapshot table;
  SpoolSnapshot spool;
  LedgerSnapshot ledger;
  bool exporter_lock_held = false;
  std::string exporter_lock_error;  // the probe could not tell (then: assumed not running)
  ExporterRun exporter = ExporterRun::kNotRunning;
  std::optional<int64_t> heartbeat_age_ms;  // from the table; unset when never published
  std::optional<int64_t> progress_age_ms;
  // Why the exporter last refused to start (lost, older or damaged ledger); empty: it did not.
  std::string ledger_refusal;
};


// Is an exporter alive? Asked without disturbing it, in this order:
//  1. /proc/locks lists a FLOCK WRITE lock on exporter.lock's inode (the singleton lock,
//     exporter/singleton.h);
//  2. the claim table (when open) has a LIVE registry entry of role exporter whose OFD
//     byte the kernel says is locked (covers file systems such as overlayfs, where
//     /proc/locks names another device than stat() does);
//  3. only when /proc/locks is unreadable: flock(LOCK_SH|LOCK_NB) on the lock file,
//     released at once (an exporter starting in that instant would see kBusy).
// A missing lock file means no exporter ever ran: false.
Status ExporterLockHeld(const std::string& lock_path, const shm::ClaimTable* table, bool* held);
// True when the table has a live registration of role exporter (see above).
bool LiveExporterRegistered(const shm::ClaimTable& table);

// Opens the claim table if it exists (never creates it). *table is null when it is
// missing (snap->state kMissing) or unreadable (kError with the reason).
void OpenTable(const Context& ctx, std::unique_ptr<shm::ClaimTable>* table, TableSnapshot* snap);
void ReadTable(const shm::ClaimTable& table, TableSnapshot* snap);

// Opens the spool if its directory exists (Spool::Open would create it).
Status OpenSpool(const Context& ctx, std::unique_ptr<store::Spool>* spool);
// Opens the ledger read-only (the SQLite file or the PostgreSQL database of ctx.ledger);
// kNotFound when the exporter never created it.
Status OpenLedger(const Context& ctx, std::unique_ptr<store::Ledger>* ledger);
// Backend name and masked location of ctx.ledger (also when it cannot be opened).
void DescribeLedger(const Context& ctx, LedgerSnapshot* snap);

// The whole snapshot (status, metrics, drain).
void Gather(const Context& ctx, BridgeState* st);

}  // namespace ccmail::ctl
