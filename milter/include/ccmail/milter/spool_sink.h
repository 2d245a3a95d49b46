// spool_sink.h - the production CaptureSink: store::Spool + shm::ClaimTable (docs/DESIGN.md §3).
//
// SYNOPSIS
//   SpoolSinkOptions o;
//   Status s = SpoolSinkOptions::FromConfig(cfg, &o);   // BridgePaths::spool_root + table rows
//   std::unique_ptr<SpoolCaptureSink> sink;
//   s = SpoolCaptureSink::Open(o, &sink);               // after the privilege drop
//   ... CaptureSession(sink.get()) ...
//
// DESCRIPTION
//   Attachment: the sink opens the claim table (create_if_missing at start, as the
//   shm header prescribes for milters; never recreate_if_invalid), registers as
//   Role::kMilter and opens the spool with the writer tag "<registry index>.<rgen>"
//   of that Registration, so tmp files name their writer and the exporter's janitor
//   can tell a dead writer from a live one. Right after registering it deletes the
//   tmp files of earlier holders of ITS OWN registry entry ("<my index>.<older rgen>":
//   the entry was FREE when we took it, so they are dead). It never touches tmp
//   files of other entries, live or dead: that is the exporter's job (docs/DESIGN.md §7).
//
//   Begin: spool tmp file; the content key (store::ContentKeyBuilder, docs/DESIGN.md §2.2)
//   is computed while streaming. Commit: SpoolWriter::Commit (fsync, rename into
//   new/, fsync new/ = the durability point), then ClaimTable::Publish +
//   RingDoorbell. A Publish failure (table full, slot taken, table gone) only sets
//   receipt.published = false: the capture is durable and the exporter's spool
//   scan finds it.
//
//   Probe (once per message at end of data): CheckSameSegment on the attached
//   table. When the segment was removed or replaced, or was missing at start, the
//   sink detaches (Probe says table_present = false -> 451 4.3.0, Begin fails ->
//   451 4.3.0) and tries to attach again at most once per reopen_interval, with
//   create_if_missing = false: after start-up the milter never creates a table on
//   its own, because a table created beside a running exporter's would split the
//   index (the exporter, which owns recreation, would not see it). Messages being
//   written keep their old attachment (shared_ptr) until they finish.
//   free_bytes: statvfs of the spool (f_bavail, i.e. for unprivileged users).
//   backlog: Spool::Stats (O(1): this process's commits are counted at once; other
//   writers' commits and the exporter's removals show up at the next re-count, done
//   by a background thread about once a second).
//   exporter_idle: time since the exporter last showed it was not stalled: its
//   progress_ns (last committed batch) or, when it published an empty backlog, its
//   heartbeat_ns (idle with nothing to do is not a stall; an exporter that has not
//   committed a first batch in this table is judged by its heartbeat too). nullopt
//   when no exporter ever published a state in this table.
//
// THREAD SAFETY
//   Begin()/Probe() from any thread; the attachment is swapped under a mutex.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "ccmail/milter/capture_sink.h"
#include "ccmail/shm/claim_table.h"
#include "ccmail/store/io.h"
#include "ccmail/store/spool.h"

namespace ccmail {
class Config;
}

namespace ccmail::milter {

struct SpoolSinkOptions {
  std::string spool_root;        // BridgePaths::spool_root (<spool_directory>/spool)
  shm::TableOptions table;       // from the claim_table_* rows; flags are set by the sink
  store::DurableIo* io = nullptr;  // nullptr: DurableIo::Real() (tests inject faults)
  std::chrono::milliseconds reopen_interval{1000};
  // Backlog re-count (a walk of spool/new with a stat per file) period. > 0: done by a
  // background thread, never on a message's path, at most every max(period, 10 x the
  // last walk's duration) so a huge backlog cannot eat the CPU. 0: re-counted inline at
  // every Probe (tests).
  int64_t stats_refresh_ms = 1000;
  // spool_log: commits through the spool's write-ahead log (store/spool_wal.h).
  bool spool_log = true;

  static Status FromConfig(const Config& cfg, SpoolSinkOptions* out);
};

struct SpoolSinkCounters {
  uint64_t committed = 0;
  uint64_t unpublished = 0;   // durable, but no claim-table slot (full / table gone)
  uint64_t attaches = 0;      // successful table attachments (1 after a normal start)
  uint64_t tmp_cleaned = 0;   // own dead tmp files removed at attach
};

class SpoolCaptureSink : public CaptureSink {
 public:
  // Fails only when the spool itself cannot be opened; a missing or invalid claim
  // table is logged and retried (mail is tempfailed meanwhile).
  static Status Open(const SpoolSinkOptions& opt, std::unique_ptr<SpoolCaptureSink>* out);
  ~SpoolCaptureSink() override;

  Status Begin(std::string_view envelope_sender, std::unique_ptr<CaptureWriter>* writer) override;
  SinkProbe Probe() override;

  // "<index>.<rgen>" of the current registration, "" while detached.
  std::string writer_tag() const;
  SpoolSinkCounters counters() const;

  struct Attachment;  // table + registration + spool opened with its writer tag

 private:
  explicit SpoolCaptureSink(SpoolSinkOptions opt);
  // The current attachment after a segment check (and a rate-limited re-attach).
  std::shared_ptr<Attachment> Current(bool check_segment);
  Status Attach(bool create_if_missing);  // mu_ held
  void RecountLoop();
  // After a durable commit: Publish + RingDoorbell on the current attachment.
  // Returns false when the capture got no slot (it is durable all the same).
  bool PublishCapture(const store::CaptureId& id, uint64_t size);
  friend class SpoolWriterAdapter;

  SpoolSinkOptions opt_;
  mutable std::mutex mu_;
  std::shared_ptr<Attachment> att_;
  std::chrono::steady_clock::time_point last_attempt_{};
  std::string last_error_;
  SpoolSinkCounters counters_;
  bool stopping_ = false;  // guarded by mu_
  std::condition_variable stop_cv_;
  std::thread recount_;
};

}  // namespace ccmail::milter
