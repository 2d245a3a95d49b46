// state.cpp - reads the bridge's state without changing it (see state.h).
#include "state.h"

#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "ccmail/common/clock.h"
#include "ccmail/common/unique_fd.h"
#include "ccmail/config/ledger_target.h"
#include "ccmail/ctl/ledger_location.h"
#include "ccmail/exporter/ledger_guard.h"

namespace ccmail::ctl {

// Indexed by the enumerator (state.h declares them in this order).
const char* PartStateName(PartState s) {
  static constexpr const char* kNames[] = {"ok", "missing", "error"};
  return kNames[static_cast<size_t>(s)];
}

const char* ExporterRunName(ExporterRun r) {
  static constexpr const char* kNames[] = {"running", "stalled", "not running"};
  return kNames[static_cast<size_t>(r)];
}

Status Context::FromConfig(Config cfg, Context* out) {
  Context c;
  CCMAIL_RETURN_IF_ERROR(BridgePaths::FromConfig(cfg, &c.paths));
  CCMAIL_RETURN_IF_ERROR(shm::TableOptionsFromConfig(cfg, &c.table));
  CCMAIL_RETURN_IF_ERROR(LedgerTargetFromConfig(cfg, c.paths, &c.ledger));
  c.table.create_if_missing = false;  // a tool never creates, locks or repairs the table
  c.table.recreate_if_invalid = false;
  c.table.read_only = true;  // an administrator in bridge_group may only read it
  CCMAIL_RETURN_IF_ERROR(cfg.GetDuration("exporter_stall_timeout", &c.stall_timeout));
  c.cfg = std::move(cfg);
  *out = std::move(c);
  return Status::Ok();
}

namespace {

// Looks for a FLOCK WRITE lock on (dev, ino) in /proc/locks. Lines look like
//   "1: FLOCK  ADVISORY  WRITE 1234 fe:00:10954791 0 EOF"
// (device as hex major:minor); waiters are marked "->" and do not count.
bool ProcLocksHasWriter(std::istream& in, dev_t dev, ino_t ino) {
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string num, type, mode, access, pid, where;
    if (!(ls >> num >> type)) continue;
    if (type == "->") continue;
    if (!(ls >> mode >> access >> pid >> where)) continue;
    if (type != "FLOCK" || access != "WRITE") continue;
    unsigned maj = 0, min = 0;
    unsigned long long i = 0;
    if (std::sscanf(where.c_str(), "%x:%x:%llu", &maj, &min, &i) != 3) continue;
    if (maj == major(dev) && min == minor(dev) && i == static_cast<unsigned long long>(ino)) return true;
  }
  return false;
}

}  // namespace

bool LiveExporterRegistered(const shm::ClaimTable& table) {
  for (uint32_t i = 0; i < table.registry_count(); ++i) {
    shm::RegistryView e = table.Entry(i);
    if (e.state == shm::RegistryView::State::kLive && e.role == shm::Role::kExporter && e.lock_held) return true;
  }
  return false;
}

Status ExporterLockHeld(const std::string& lock_path, const shm::ClaimTable* table, bool* held) {
  *held = false;
  struct stat st;
  if (::stat(lock_path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();  // never started
    return Status::FromErrno("stat " + lock_path, errno);
  }
  std::ifstream locks("/proc/locks");
  if (locks && ProcLocksHasWriter(locks, st.st_dev, st.st_ino)) {
    *held = true;
    return Status::Ok();
  }
  if (table && LiveExporterRegistered(*table)) {
    *held = true;
    return Status::Ok();
  }
  if (locks) return Status::Ok();
  UniqueFd fd(::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) return Status::FromErrno("open " + lock_path, errno);
  while (::flock(fd.get(), LOCK_SH | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) {
      *held = true;
      return Status::Ok();
    }
    return Status::FromErrno("flock " + lock_path, errno);
  }
  (void)::flock(fd.get(), LOCK_UN);
  return Status::Ok();
}

void OpenTable(const Context& ctx, std::unique_ptr<shm::ClaimTable>* table, TableSnapshot* snap) {
  table->reset();
  snap->name = shm::ClaimTable::TablePath(ctx.table);
  // Look before opening: after a reboot neither the runtime directory nor the table
  // exists until a daemon starts, which is "missing", not an error.
  struct stat st;
  const std::string& path = snap->name;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      snap->state = PartState::kMissing;
    } else {
      snap->state = PartState::kError;
      snap->error = Status::FromErrno("stat " + path, errno).message();
    }
    return;
  }
  Status s = shm::ClaimTable::Open(ctx.table, table);
  if (!s.ok()) {
    table->reset();
    // Removed between the stat and the open (the exporter is replacing it): missing.
    bool gone = ::stat(path.c_str(), &st) != 0 && errno == ENOENT;
    snap->state = gone ? PartState::kMissing : PartState::kError;
    snap->error = gone ? "" : s.ToString();
    return;
  }
  snap->state = PartState::kOk;
  ReadTable(**table, snap);
}

void ReadTable(const shm::ClaimTable& table, TableSnapshot* snap) {
  shm::TableStats ts = table.Stats();
  snap->slots = table.slot_count();
  snap->overflows = ts.overflow_count;
  snap->exporter = ts.exporter;
  snap->free = snap->reserved = snap->ready = snap->claimed = 0;
  for (uint32_t i = 0; i < snap->slots; ++i) {
    switch (table.Slot(i).state) {
      case shm::SlotState::kFree: ++snap->free; break;
      case shm::SlotState::kReserved: ++snap->reserved; break;
      case shm::SlotState::kReady: ++snap->ready; break;
      case shm::SlotState::kClaimed: ++snap->claimed; break;
    }
  }
}

Status OpenSpool(const Context& ctx, std::unique_ptr<store::Spool>* spool) {
  struct stat st;
  if (::stat(ctx.paths.spool_root.c_str(), &st) != 0)
    return Status::FromErrno("spool " + ctx.paths.spool_root, errno);
  if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument(ctx.paths.spool_root + " is not a directory");
  // Spool::Open creates missing subdirectories; as root that would leave root-owned
  // directories in the daemons' spool. Only open a spool the daemons made complete.
  for (const char* sub : {"/tmp", "/new", "/corrupt"}) {
    std::string d = ctx.paths.spool_root + sub;
    if (::stat(d.c_str(), &st) != 0) return Status::FromErrno("spool " + d, errno);
  }
  return store::Spool::Open(ctx.paths.spool_root, spool);
}

Status OpenLedger(const Context& ctx, std::unique_ptr<store::Ledger>* ledger) {
  return store::OpenLedgerReadOnly(ctx.ledger, ledger);
}

void DescribeLedger(const Context& ctx, LedgerSnapshot* snap) {
  snap->backend = store::IsPostgresLocation(ctx.ledger.location) ? "postgresql" : "sqlite";
  snap->location = MaskLedgerLocation(ctx.ledger.location);
  snap->relay_id = ctx.ledger.relay_id;
}

void Gather(const Context& ctx, BridgeState* st) {
  *st = BridgeState{};
  st->now_ms = WallClockMs();

  std::unique_ptr<shm::ClaimTable> table;
  OpenTable(ctx, &table, &st->table);

  std::unique_ptr<store::Spool> spool;
  Status s = OpenSpool(ctx, &spool);
  if (s.IsNotFound()) {
    st->spool.state = PartState::kMissing;
  } else if (!s.ok()) {
    st->spool.state = PartState::kError;
    st->spool.error = s.ToString();
  } else {
    std::vector<store::CaptureId> ids;
    std::vector<store::QuarantinedCapture> quarantined;
    Status ls = spool->ListPending(&ids);
    if (ls.ok()) ls = spool->ListQuarantined(&quarantined);
    if (!ls.ok()) {
      st->spool.state = PartState::kError;
      st->spool.error = ls.ToString();
    } else {
      st->spool.state = PartState::kOk;
      store::SpoolStats stats = spool->Stats();  // counted by Open a moment ago
      st->spool.messages = stats.count;
      st->spool.bytes = stats.bytes;
      if (!ids.empty()) st->spool.oldest_ms = static_cast<int64_t>(std::min_element(ids.begin(), ids.end())->TimeMs());
      st->spool.quarantined = quarantined.size();
    }
  }

  std::unique_ptr<store::Ledger> ledger;
  DescribeLedger(ctx, &st->ledger);
  s = OpenLedger(ctx, &ledger);
  if (s.ok()) s = ledger->Counters(&st->ledger.counters);
  if (s.ok()) {
    st->ledger.state = PartState::kOk;
    st->ledger.backend = ledger->backend();
    if (Status rs = ledger->Relays(&st->ledger.relays); !rs.ok()) st->ledger.relays_error = rs.ToString();
  } else if (s.IsNotFound() && !ledger) {
    st->ledger.state = PartState::kMissing;
  } else {
    st->ledger.state = PartState::kError;
    st->ledger.error = s.ToString();
  }

  if (!exporter::ReadLedgerRefusal(ctx.paths, &st->ledger_refusal).ok()) st->ledger_refusal.clear();

  s = ExporterLockHeld(ctx.paths.exporter_lock, table.get(), &st->exporter_lock_held);
  if (!s.ok()) st->exporter_lock_error = s.ToString();

  const shm::ExporterState& ex = st->table.exporter;
  if (st->table.state == PartState::kOk && ex.heartbeat_ns != 0)
    st->heartbeat_age_ms = std::max<int64_t>(0, st->now_ms - static_cast<int64_t>(ex.heartbeat_ns / 1000000));
  if (st->table.state == PartState::kOk && ex.progress_ns != 0)
    st->progress_age_ms = std::max<int64_t>(0, st->now_ms - static_cast<int64_t>(ex.progress_ns / 1000000));

  if (!st->exporter_lock_held) {
    st->exporter = ExporterRun::kNotRunning;
  } else {
    // Alive (the kernel holds its lock) but not moving: its loop stopped turning, or the
    // oldest capture has waited longer than exporter_stall_timeout with no batch
    // committed meanwhile (the same test the milter uses for back-pressure).
    const int64_t limit = ctx.stall_timeout.count();
    bool stalled = st->heartbeat_age_ms && *st->heartbeat_age_ms > limit;
    if (st->spool.oldest_ms && st->now_ms - *st->spool.oldest_ms > limit &&
        (!st->progress_age_ms || *st->progress_age_ms > limit))
      stalled = true;
    st->exporter = stalled ? ExporterRun::kStalled : ExporterRun::kRunning;
  }
}

}  // namespace ccmail::ctl
