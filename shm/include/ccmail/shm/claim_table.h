// claim_table.h - the shared-memory claim table: an index of durable captures
// that every milter process publishes into and the single exporter drains.
//
// SYNOPSIS
//   // every process, once at start (milter: create_if_missing, no recreate)
//   ccmail::shm::TableOptions opt;  ccmail::shm::TableOptionsFromConfig(cfg, &opt);
//   std::unique_ptr<ClaimTable> table;
//   Status s = ClaimTable::Open(opt, &table);          // not Ok => tempfail mail (451 4.3.0)
//   std::unique_ptr<Registration> reg;
//   s = table->Register(Role::kMilter, &reg);          // keeps an OFD lock until destroyed
//
//   // milter, after the spool file is durable (docs/DESIGN.md §3 step 5)
//   s = table->Publish(*reg, capture_id, size);        // kNoSpace => full, overflow counted;
//   table->RingDoorbell();                             //   the message is durable anyway
//
//   // exporter (one), docs/DESIGN.md §6, §7
//   table->RecoverPreviousExporter(*reg);              // R2 at start
//   table->FreeReadyIf(*reg, in_ledger);               // R3 at start
//   table->RecoverDeadOwners(*reg);                    // R1 + registry janitor, periodically
//   uint32_t bell = table->DoorbellValue();
//   table->ClaimReady(*reg, 256, &batch);              // T3
//   if (batch.empty()) table->WaitDoorbell(bell, 50ms);
//   ... ledger commit ...
//   table->Complete(*reg, claim);                      // T4
//   table->PublishExporterState({epoch, now, progress, backlog...});
//
// DESCRIPTION
//   The table is a regular file <runtime_directory>/<name>-v<layout> (tmpfs
//   /run by default), created with O_EXCL and posix_fallocate (a full file
//   system is a kNoSpace Status, never a SIGBUS) and mapped MAP_SHARED with
//   boost::interprocess::mapped_region. It holds a header, a process registry
//   and fixed 64-byte slots. No Boost mutex, condition, named object,
//   allocator or offset_ptr is used: a process killed at any instant cannot
//   block another one.
//
//   Who may touch it (docs/ARCHITECTURE.md "Who may touch what"): only the
//   bridge user can create, write, shrink or replace anything in
//   runtime_directory, so no other user can make a mapping SIGBUS or feed the
//   daemons a table. Before anything else Open checks, on descriptors opened
//   with O_NOFOLLOW: runtime_directory is owned by the euid (or root) and not
//   group/other-writable; a table to adopt is a regular file owned by the
//   euid, not group/other-writable, of exactly the expected size and layout.
//   The table file is 0600 (0640 + fchown to `group` when set: group members
//   map it read-only with read_only); live.lock and the init lock are 0600,
//   because any descriptor of a lock file can hold locks that block others.
//
//   The table is an INDEX, not the truth: the durable spool is. Losing the
//   table (reboot, removal, full table) loses nothing; the exporter finds
//   every capture by scanning the spool.
//
//   Slot control word (one std::atomic<uint64_t>, changed only by CAS):
//     state:4 | owner:16 | gen:44.  FREE=0 RESERVED=1 READY=2 CLAIMED=3.
//     T1 FREE(-,g)->RESERVED(me,g)   Publish          (producer)
//     T2 RESERVED(me,g)->READY(me,g) Publish, after the payload (release)
//     T3 READY(p,g)->CLAIMED(x,g)    ClaimReady       (exporter)
//     T4 CLAIMED(x,g)->FREE(-,g+1)   Complete         (exporter, after ledger commit)
//     R1 RESERVED(o,g)->FREE(-,g+1)  RecoverDeadOwners (o's OFD byte unlocked)
//     R2 CLAIMED(x,g)->READY(x,g)    RecoverPreviousExporter (x != caller)
//     R3 READY(p,g)->FREE(-,g+1)     FreeReadyIf      (capture id already in ledger)
//   Every path to FREE bumps gen, so a stale actor's CAS fails (ABA defence).
//
//   Registry: Register() CASes an entry FREE(rg)->CLAIMING(rg), takes an
//   F_OFD_SETLK write lock on byte <index> of <runtime_directory>/live.lock,
//   fills pid/role, CASes ->LIVE(rg). Liveness of an entry is ONLY "its byte
//   is locked" (F_OFD_GETLK): a SIGSTOPped process is alive, a reused pid is
//   a different registration. The kernel drops the lock when the process
//   dies. OFD locks are inherited by fork(): a child that must not keep its
//   parent alive must be forked before Register() or exec (fd is O_CLOEXEC).
//
//   Creation: serialised by flock on <runtime_directory>/<name>.init.lock.
//   The creator writes init_state = 1 last (release). An opener holding the
//   init lock that finds init_state != 1 knows the creator died: the table
//   is removed and recreated (when create_if_missing). A table of another
//   magic, layout, size, slot/registry count or boot id, or one failing the
//   owner/mode checks, is refused with kCorrupt naming the reason, unless
//   recreate_if_invalid (exporter): then it is unlinked and created anew.
//
// ERRORS
//   kUnavailable  table missing and !create_if_missing; left half-built by a
//                 dead creator and we may neither create nor recreate;
//                 removed/replaced under us (CheckSameSegment); runtime_directory
//                 unsafe (not ours or root's, group/other-writable, a symlink);
//                 Publish's slot taken by R1.
//   kInvalidArgument  bad options (slots, registry, name), bridge_group not a
//                 group, Register on a read-only table, Complete of a slot that
//                 is no longer ours.
//   kBusy         init lock held for too long.
//   kCorrupt      table of another layout/size/boot, not a regular file,
//                 another owner, group/other-writable (and !recreate_if_invalid).
//   kNoSpace      runtime_directory's file system full at creation; Publish
//                 found no FREE slot; registry full in Register.
//   kNotFound     runtime_directory does not exist (ENOENT).
//   kIoError      any other system call failure (errno in the Status; an
//                 unexpected ENOENT/EEXIST maps to kNotFound/kAlreadyExists).
//
// THREAD SAFETY
//   ClaimTable methods are safe from any number of threads and processes.
//   Recovery (RecoverDeadOwners, RecoverPreviousExporter, FreeReadyIf) must
//   be called by the single exporter from one thread (docs/DESIGN.md §4.2). A
//   Registration may be shared by all threads of its process.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ccmail/common/status.h"

namespace ccmail {
class Config;
}

namespace ccmail::shm {

inline constexpr uint32_t kLayoutVersion = 1;
inline constexpr uint32_t kMaxRegistry = 0xFFFF;  // owner field is 16 bits

using CaptureBytes = std::array<uint8_t, 16>;  // binary CaptureId (store/capture_id.h)

enum class Role : uint32_t { kMilter = 1, kExporter = 2, kTool = 3 };
enum class SlotState : uint32_t { kFree = 0, kReserved = 1, kReady = 2, kClaimed = 3 };

struct TableOptions {
  std::string name = "ccmail-bridge-claims";  // table is <runtime_directory>/<name>-v<kLayoutVersion>
  std::string runtime_directory = "/run/ccmail-bridge";  // the table, live.lock, <name>.init.lock
  uint32_t slots = 65536;                     // 1 .. 2^24
  uint32_t registry = 1024;                   // 1 .. kMaxRegistry
  std::string group;                          // empty: table mode 0600; else 0640 + fchown to it
  bool create_if_missing = true;              // create (or finish a dead creator's) table
  bool recreate_if_invalid = false;           // exporter: replace a foreign/stale/unsafe table
  bool read_only = false;                     // ccmailctl: map read-only, never lock, create or repair;
                                              // accepts a table of the directory's owner (or root)
  std::string boot_id;                        // empty: read /proc/sys/kernel/random/boot_id
};

// Fills opt from rows claim_table_name, claim_table_slots, claim_table_registry,
// runtime_directory, bridge_group. create/recreate flags are left to the caller.
Status TableOptionsFromConfig(const Config& cfg, TableOptions* opt);

// Whether `dir` may hold the table for this process: a directory (not a symlink)
// owned by the euid or root that neither its group nor others can write. kUnavailable
// naming the reason otherwise (the exporter refuses to start on it).
Status CheckRuntimeDirectory(const std::string& dir);

// The boot id of the running kernel as 16 bytes (parsed from the text form).
Status ReadBootId(std::array<uint8_t, 16>* out);

class ClaimTable;

// A process's (or a test's) registry entry. Holds its own O_CLOEXEC descriptor
// of live.lock with the OFD write lock on byte index(); destroying it marks the
// entry FREE(rgen+1) and then releases the lock. Must not outlive its table.
class Registration {
 public:
  ~Registration();
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;
  uint32_t index() const { return index_; }
  uint64_t rgen() const { return rgen_; }
  Role role() const { return role_; }

 private:
  friend class ClaimTable;
  Registration() = default;
  ClaimTable* table_ = nullptr;
  uint32_t index_ = 0;
  uint64_t rgen_ = 0;
  Role role_ = Role::kMilter;
  int lock_fd_ = -1;
  pid_t pid_ = 0;  // a forked child destroying an inherited copy must not free the entry
};

// A slot taken by ClaimReady (T3). Pass back unchanged to Complete (T4).
struct Claim {
  uint32_t slot = 0;
  uint64_t gen = 0;
  CaptureBytes capture_id{};
  uint64_t size = 0;
  uint64_t enqueue_ns = 0;    // CLOCK_REALTIME ns at Publish
  uint32_t publisher = 0;     // registry index of the publisher
};

struct SlotView {  // diagnostics / tests
  SlotState state;
  uint32_t owner;
  uint64_t gen;
};

struct RegistryView {  // diagnostics / tests / ccmailctl
  enum class State : uint32_t { kFree = 0, kClaiming = 1, kLive = 2 } state;
  uint64_t rgen;
  pid_t pid;
  Role role;
  bool lock_held;  // F_OFD_GETLK says someone holds the byte
};

struct ExporterState {  // written by the exporter, read by milters for back-pressure
  uint64_t epoch = 0;
  uint64_t heartbeat_ns = 0;   // CLOCK_REALTIME ns of the last loop turn
  uint64_t progress_ns = 0;    // CLOCK_REALTIME ns of the last committed batch
  uint64_t exported_total = 0; // monotonically increasing
  uint64_t backlog_count = 0;  // spool backlog hint
  uint64_t backlog_bytes = 0;
  pid_t pid = 0;
};

struct TableStats {
  ExporterState exporter;
  uint64_t overflow_count = 0;   // Publish calls that found the table full
  uint32_t doorbell = 0;
  uint32_t slots = 0;
  uint32_t registry = 0;
  uint64_t incarnation = 0;      // random, new at every creation
  uint64_t created_ns = 0;
};

struct RecoveryReport {
  uint32_t dead_registrations = 0;  // entries freed
  uint32_t reserved_freed = 0;      // R1
};

class ClaimTable {
 public:
  // Opens the table, creating it when missing (create_if_missing), finishing
  // a dead creator's half-built one, or replacing an invalid one
  // (recreate_if_invalid); with read_only, only maps a valid one. See ERRORS above.
  static Status Open(const TableOptions& opt, std::unique_ptr<ClaimTable>* out);
  // Unlinks the table file (tests). Mappings stay valid.
  static Status Remove(const TableOptions& opt);
  // "<name>-v<layout>"
  static std::string FileName(const TableOptions& opt);
  // "<runtime_directory>/<name>-v<layout>"
  static std::string TablePath(const TableOptions& opt);

  ~ClaimTable();
  ClaimTable(const ClaimTable&) = delete;
  ClaimTable& operator=(const ClaimTable&) = delete;

  // Takes a FREE registry entry and its OFD byte. kNoSpace when none is free
  // (dead entries are freed by the exporter's RecoverDeadOwners); kInvalidArgument
  // on a read-only table.
  Status Register(Role role, std::unique_ptr<Registration>* out);
  // Liveness of entry `index` as the kernel sees it (byte locked by anyone else).
  bool IsEntryAlive(uint32_t index) const;
  // true when this (index, rgen) registration is still the LIVE holder of its entry.
  bool IsRegistrationCurrent(uint32_t index, uint64_t rgen) const;

  // ---- producer (milter) ----
  // T1 + payload + T2 on one FREE slot found by a bounded scan (one pass over
  // the table from a cursor per process and table; never blocks). kNoSpace when no slot
  // is free: overflow_count is bumped; the caller still succeeds (the capture
  // is durable and the exporter's spool scan finds it). kUnavailable when the
  // slot was taken from us by R1 (our registration was judged dead, which
  // only happens if the live.lock descriptor was lost): also counted as an
  // overflow, same handling. Call only after the spool file is durable.
  Status Publish(const Registration& reg, const CaptureBytes& id, uint64_t size);
  // Hint to the exporter: bump the doorbell word and FUTEX_WAKE (shared futex).
  void RingDoorbell();

  // ---- consumer (exporter) ----
  uint32_t DoorbellValue() const;
  // Sleeps until the doorbell differs from `seen` or the timeout passes. Only
  // a hint: returns true when the value changed, false on timeout/EINTR.
  bool WaitDoorbell(uint32_t seen, std::chrono::milliseconds timeout);
  // T3 on up to `max` READY slots (one pass over the table from a rotating
  // cursor); appends to *out, returns how many were claimed. Payload is read
  // after the claim; a slot whose payload check fails is still returned
  // (capture id may be garbage; the spool scan is the truth) and counted.
  size_t ClaimReady(const Registration& reg, size_t max, std::vector<Claim>* out);
  // T4. kInvalidArgument when the slot is no longer CLAIMED(reg, gen) (a bug).
  Status Complete(const Registration& reg, const Claim& claim);
  // R1 for every registry entry whose OFD byte is free (skipping reg's own),
  // then the entry -> FREE(rgen+1).
  RecoveryReport RecoverDeadOwners(const Registration& reg);
  // R2: CLAIMED slots not owned by reg -> READY. Returns the count.
  uint32_t RecoverPreviousExporter(const Registration& reg);
  // R3: READY slots whose capture id `in_ledger` says is recorded -> FREE.
  uint32_t FreeReadyIf(const Registration& reg, const std::function<bool(const CaptureBytes&)>& in_ledger);

  // ---- header ----
  void PublishExporterState(const ExporterState& st);
  TableStats Stats() const;
  // Split-brain check: the path still refers to our table file (same inode and
  // incarnation). kUnavailable naming what changed otherwise.
  Status CheckSameSegment() const;

  uint32_t slot_count() const;
  uint32_t registry_count() const;
  SlotView Slot(uint32_t i) const;
  RegistryView Entry(uint32_t i) const;
  const std::string& path() const { return path_; }

  struct Impl;

 private:
  friend class Registration;
  ClaimTable() = default;
  std::unique_ptr<Impl> impl_;
  std::string path_;
};

}  // namespace ccmail::shm
