// exporter_impl.h - INTERNAL to exporter/src: the state of one exporter process (Exporter::Impl)
// and the small helpers its parts share. exporter.cpp holds the public methods and the loop turn,
// recovery.cpp the start-up recovery (docs/DESIGN.md §7), round.cpp one export round (docs/DESIGN.md §6).
//
// The order of durable steps in one round is the whole exactly-once argument:
//   .part files fsynced -> ONE ledger transaction (the decision) -> publish (rename, dir
//   fsync, watermark) -> unlink spool files -> free slots.
// Everything before the commit is redone after a crash (the .part is deleted at recovery,
// the captures are still in spool/new); everything after it is rolled forward by recovery
// (committed .part published, spool files of committed captures unlinked).
#pragma once

#include "ccmail/exporter/exporter.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>

#include "ccmail/common/ascii.h"
#include "ccmail/common/clock.h"
#include "ccmail/common/log.h"
#include "ccmail/common/unique_fd.h"
#include "ccmail/config/config.h"
#include "ccmail/exporter/bounce.h"
#include "ccmail/exporter/deliver.h"
#include "ccmail/exporter/outbox.h"
#include "ccmail/exporter/singleton.h"
#include "ccmail/format/converter.h"
#include "ccmail/store/io.h"
#include "ccmail/store/ledger.h"
#include "ccmail/store/spool.h"
#include "round_steps.h"

namespace ccmail::exporter {

using store::CaptureId;
using store::ContentKey;
using store::CrashPoint;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

inline bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

inline Status ListDir(const std::string& dir, std::vector<std::string>* names) {
  names->clear();
  DIR* d = ::opendir(dir.c_str());
  if (!d) return Status::FromErrno("opendir " + dir, errno);
  while (struct dirent* entry = ::readdir(d)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") names->push_back(std::move(name));
  }
  ::closedir(d);
  std::sort(names->begin(), names->end());
  return Status::Ok();
}

inline bool Exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

struct DeliverJob {
  std::string post_office;
  std::string batch_path;
  std::string manifest_path;
  int attempt = 0;
  bool bounce_only = false;  // IMPORT said 5; only the bounce step is left
  Clock::time_point due;
};


// What the committer did with a job; applied by the loop thread (which owns `pending`,
// the back-off, the round cap and the claim slots) in Impl::WaitCommitter.
struct CommitOutcome {
  bool committed = false;            // the ledger transaction is done (publish may have failed)
  bool abandoned = false;            // nothing committed: the captures stay in spool/new
  Status cause;                      // why it was abandoned
  std::string why;                   // context for the log line / the fatal error
  bool fatal = false;                // the exporter must stop (treated like a crash)
  std::vector<CaptureId> returned;   // abandoned captures, back to `pending`
  size_t done = 0;
  struct Unpublished {
    uint64_t epoch, seq;
    std::string post_office;
  };
  std::vector<Unpublished> unpublished;  // committed, rename failed: retried by the loop thread
  std::vector<std::string> warnings;     // publish failures (logged with the back-off)
  uint64_t clean_seq = 0;                // set when every spool file of the round is gone
};

// The thread of a Committer: started by the first piece of work, ended by Stop
// (which the next piece of work undoes). Its loop waits on `cv` under `mu` for work or for
// stop_requested(), and returns once stop is requested and nothing is left.
class WorkerThread {
 public:
  std::mutex mu;
  std::condition_variable cv;

  // With `mu` held: runs `loop` on the thread unless it runs already.
  void StartLocked(const std::function<void()>& loop) {
    if (!thread_.joinable()) thread_ = std::thread(loop);
  }
  // Asks the loop to end, waits for it and clears the request.
  void Stop() {
    {
      std::lock_guard<std::mutex> g(mu);
      stop_ = true;
    }
    cv.notify_all();
    if (thread_.joinable()) thread_.join();
    thread_ = std::thread();
    stop_ = false;
  }
  bool stop_requested() const { return stop_; }  // with `mu` held

 private:
  bool stop_ = false;
  std::thread thread_;
};

// Closer: the last close of an unlinked spool file frees its inode and blocks, so it is done
// by helper threads. The spool file is already unlinked and spool/new fsynced when its
// descriptor is queued here, so this only releases resources: it is no step of the
// exactly-once protocol. On a filesystem mounted with `discard` (the reference VM) that close
// waits for a synchronous discard of the file's blocks: ~140-330 us per 10 KB file, mostly
// waiting for the device, not CPU. One thread doing them one after the other was busy ~90% of
// a drain and capped it (the loop thread waits in WaitBelow); kThreads closes in flight keep
// the device's queue busy instead. Threads start with the first descriptors and end at Stop.
class Closer {
 public:
  static constexpr size_t kThreads = 4;
  ~Closer() { Stop(); }
  void Queue(UniqueFd fd) {
    if (!fd.valid()) return;
    std::lock_guard<std::mutex> g(mu_);
    if (threads_.size() < kThreads) {
      try {
        threads_.emplace_back([this] { Loop(); });
      } catch (const std::system_error& err) {
        if (threads_.empty()) {  // none to hand it to: close it here (slower, nothing else)
          LogWarning("no closer thread (%s): closing a spool descriptor on this thread", err.what());
          fd.reset();
          return;
        }
      }
    }
    q_.push_back(std::move(fd));
    work_cv_.notify_one();
  }
  // Blocks until at most `max_open` descriptors wait for the closer: a round opens up to
  // kMaxOpenPerRound files and the two together must stay under the usual 1,024 fd limit.
  void WaitBelow(size_t max_open) {
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return q_.size() + busy_ <= max_open; });
  }
  // Closes what is queued and ends the threads (a later Queue starts them again).
  void Stop() {
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
      threads.swap(threads_);
    }
    work_cv_.notify_all();
    for (auto& t : threads) t.join();  // each returns once the queue is empty
    std::lock_guard<std::mutex> g(mu_);
    stop_ = false;
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      work_cv_.wait(lk, [&] { return stop_ || !q_.empty(); });
      if (q_.empty()) return;  // stop requested and nothing left
      UniqueFd fd = std::move(q_.back());
      q_.pop_back();
      ++busy_;
      lk.unlock();
      fd.reset();
      lk.lock();
      --busy_;
      done_cv_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable work_cv_;  // work for the closer threads, or stop
  std::condition_variable done_cv_;  // the queue got shorter
  std::vector<UniqueFd> q_;
  std::vector<std::thread> threads_;
  size_t busy_ = 0;  // descriptors taken by a closer thread and not yet closed
  bool stop_ = false;
};

// Committer: runs the durable half of a round (Exporter::Impl::CommitRound) on its own thread
// while the loop thread opens, verifies and converts the next round. At most one job is in
// flight; Take() waits for it and hands its outcome to the loop thread, which applies it.
class Committer {
 public:
  explicit Committer(std::function<CommitOutcome(CommitJob*)> work) : work_(std::move(work)) {}
  ~Committer() { Stop(); }
  void Submit(std::unique_ptr<CommitJob> job) {
    std::lock_guard<std::mutex> g(worker_.mu);
    worker_.StartLocked([this] { Loop(); });
    job_ = std::move(job);
    busy_ = true;
    worker_.cv.notify_all();
  }
  // Waits until no job is queued or running; the outcome of the last one (an empty outcome,
  // neither committed nor abandoned, when none ran since the last Take).
  CommitOutcome Take() {
    std::unique_lock<std::mutex> lk(worker_.mu);
    worker_.cv.wait(lk, [&] { return !busy_; });
    CommitOutcome out = std::move(outcome_);
    outcome_ = CommitOutcome{};
    return out;
  }
  // Waits for the job in flight and ends the thread (a later Submit starts it again).
  void Stop() {
    {
      std::unique_lock<std::mutex> lk(worker_.mu);
      worker_.cv.wait(lk, [&] { return !busy_; });
    }
    worker_.Stop();
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lk(worker_.mu);
    for (;;) {
      worker_.cv.wait(lk, [&] { return worker_.stop_requested() || job_ != nullptr; });
      if (!job_) return;
      std::unique_ptr<CommitJob> job = std::move(job_);
      lk.unlock();
      CommitOutcome out = work_(job.get());
      job.reset();
      lk.lock();
      outcome_ = std::move(out);
      busy_ = false;
      worker_.cv.notify_all();
    }
  }
  std::function<CommitOutcome(CommitJob*)> work_;
  WorkerThread worker_;
  std::unique_ptr<CommitJob> job_;  // set by the loop thread, taken by the committer
  bool busy_ = false;               // a job is queued or running
  CommitOutcome outcome_;
};

// What recovery did (the "recovery done" line).
struct RecoveryTally {
  uint64_t epoch = 0;
  std::set<std::string> published;  // batch names rolled forward from out/tmp
  size_t rolled = 0, deleted = 0;   // .part files published / deleted
  size_t unlinked = 0;              // spool files of exported captures
  size_t removed_tmp = 0;           // spool/tmp files of dead writers
  uint32_t slots_reset = 0;         // R2
  uint32_t slots_freed = 0;         // R3
};

struct Exporter::Impl {
  ExporterOptions opt;
  store::DurableIo* io = nullptr;  // opt.io or DurableIo::Real(): every durable step
  UniqueFd lock;
  std::unique_ptr<store::Ledger> ledger;
  std::unique_ptr<store::Spool> spool;
  std::unique_ptr<Outbox> outbox;
  std::unique_ptr<shm::ClaimTable> table;
  std::unique_ptr<shm::Registration> reg;

  mutable std::mutex cfg_mu;  // format settings + address map (SIGHUP)
  std::shared_ptr<const format::Converter> conv;
  std::shared_ptr<const format::AddressMap> map;

  std::set<CaptureId> pending;  // ids found by spool scans, not yet handled (ordered)
  using Unpublished = CommitOutcome::Unpublished;
  std::vector<Unpublished> unpublished;
  Clock::time_point next_scan{};
  Clock::time_point next_prune{};
  Clock::time_point backoff_until{};
  milliseconds backoff{0};
  uint64_t last_overflow = 0;
  uint64_t clean_seq = 0;           // every batch <= this has its spool files unlinked
  uint64_t clean_seq_recorded = 0;  // what the ledger says
  uint64_t progress_ns = 0;
  bool draining = false;
  // Turns in a row that committed nothing because captures could not be read or converted
  // (retried with back-off; a drain gives up after kDrainGiveUpTurns), and the first reason.
  int stuck_turns = 0;
  std::string retry_why;

  mutable std::mutex ctr_mu;
  ExporterCounters ctr;

  // deliver_command worker
  std::mutex dq_mu;
  std::condition_variable dq_cv;
  std::deque<DeliverJob> dq;
  bool dq_stop = false;
  bool dq_running = false;
  std::thread dq_thread;
  std::unique_ptr<BounceQueue> bounces;  // outlives the deliver thread (stopped in ~Impl)

  Closer closer;

  ~Impl() {
    committer.Stop();
    closer.Stop();
    StopDeliverThread();
  }

  // Committer: the durable half of a round (.part files written and fsynced, the ONE ledger
  // transaction, publish, unlink of the spool files) runs on its thread while the loop
  // thread opens, verifies and converts the next round. The loop thread waits for it
  // (WaitCommitter) before it asks the ledger anything about the next round, so every
  // de-duplication decision still sees every earlier round committed (or abandoned), exactly
  // as in a sequential loop; only reading and converting overlap. The committer never touches
  // `pending`, the claim slots, the back-off or the ledger outside its job: its outcome is
  // applied by the loop thread.
  Committer committer{[this](CommitJob* job) { return CommitRound(job); }};
  // Loop thread only: what the job in flight holds.
  std::vector<shm::Claim> cm_claims;  // its slots, freed once it is finished
  std::set<CaptureId> cm_ids;         // its captures (a spool scan must not queue them again);
                                      // not empty from Submit until WaitCommitter applied
                                      // the outcome: "a round is in flight"
  size_t cm_fds = 0;                  // its open spool descriptors

  // Waits for the job in flight and applies its outcome. *abandoned: it was abandoned (the
  // caller drops the round it prepared meanwhile). A fatal outcome is returned.
  Status WaitCommitter(bool* abandoned = nullptr);
  CommitOutcome CommitRound(CommitJob* job);

  // ---------- helpers ----------
  void Backoff(const std::string& why) {
    backoff = backoff.count() == 0 ? opt.backoff_min : std::min(opt.backoff_max, backoff * 2);
    backoff_until = Clock::now() + backoff;
    LogWarning("%s; backing off %lld ms (nothing is lost: the captures stay in the spool)", why.c_str(),
               static_cast<long long>(backoff.count()));
  }
  void ResetBackoff() { backoff = milliseconds(0); }
  // After a round hit ENOSPC its size is halved for the next tries and doubled back after each
  // commit: a disk with room for some of the backlog drains it in smaller batch files instead of
  // retrying the same too-large round for ever.
  size_t round_cap = 0;  // 0: no cap beyond batch_max_messages
  size_t RoundLimit() const {
    return round_cap ? std::min(round_cap, opt.batch_max_messages) : opt.batch_max_messages;
  }

  bool WriterIsLive(const std::string& tag) const {
    auto writer = store::WriterTag::Parse(tag);
    if (!writer) return true;  // unknown naming: never delete
    if (!table || writer->registry_index >= table->registry_count()) return true;
    return table->IsRegistrationCurrent(writer->registry_index, writer->registration_gen) &&
           table->IsEntryAlive(writer->registry_index);
  }

  Status ScanSpool() {
    // While `pending` already holds a full round, a listing of spool/new cannot change the
    // next round (ids are taken oldest first and new captures sort after the backlog), but
    // with a 100,000-file backlog it costs a readdir, 100,000 id parses and set inserts
    // every spool_scan_interval: the "cost per message grows with the backlog" of a drain.
    // The listing resumes as soon as fewer than a round's worth are left.
    if (pending.size() >= opt.batch_max_messages) {
      next_scan = Clock::now() + opt.spool_scan_interval;
      return Status::Ok();
    }
    std::vector<CaptureId> ids;
    CCMAIL_RETURN_IF_ERROR(spool->ListPending(&ids));
    for (const auto& id : ids)
      if (!cm_ids.count(id)) pending.insert(id);
    next_scan = Clock::now() + opt.spool_scan_interval;
    return Status::Ok();
  }

  void PublishState(bool idle) {
    if (!table) return;
    if (idle) progress_ns = WallClockNs();
    shm::ExporterState st;
    st.epoch = ledger->epoch();
    st.heartbeat_ns = WallClockNs();
    st.progress_ns = progress_ns;
    {
      std::lock_guard<std::mutex> g(ctr_mu);
      st.exported_total = ctr.exported;
    }
    store::SpoolStats ss = spool->Stats();
    st.backlog_count = std::max<uint64_t>(ss.count, pending.size());
    st.backlog_bytes = ss.bytes;
    st.pid = ::getpid();
    table->PublishExporterState(st);
  }

  // Periodic housekeeping on the scan tick: dead milters (R1), a replaced segment, the log
  // segments of dead milters, tmp files. An error is the committer's fatal one.
  Status Housekeeping() {
    if (table) {
      if (Status s = table->CheckSameSegment(); !s.ok()) {
        LogWarning("claim table replaced under us (%s): reopening", s.ToString().c_str());
        ReopenTable();
        if (uint32_t reset = ReturnPredecessorClaims())
          LogInfo("reopened claim table: %u slot(s) of an earlier exporter back to READY", reset);
      }
    }
    if (table && reg) {
      shm::RecoveryReport r = table->RecoverDeadOwners(*reg);
      if (r.dead_registrations || r.reserved_freed)
        LogInfo("freed %u dead registration(s), %u reserved slot(s)", r.dead_registrations, r.reserved_freed);
    }
    if (spool->HasDeadWalSegments()) {
      // A milter died since the last tick: its log segment's captures are in new/ but not
      // durable. The committer uses the ledger too: let it finish first.
      CCMAIL_RETURN_IF_ERROR(WaitCommitter());
      {
        store::WalReplayTally wal;
        Status s = spool->ReplayWal(
            [this](const CaptureId& id, bool* known) { return ledger->HasCapture(id, known); }, &wal);
        if (!s.ok())
          LogWarning("spool log replay: %s", s.ToString().c_str());
        else if (wal.segments)
          LogInfo("replayed %llu spool log segment(s) of dead milters: %llu file(s) made durable, %llu restored",
                  static_cast<unsigned long long>(wal.segments), static_cast<unsigned long long>(wal.made_durable),
                  static_cast<unsigned long long>(wal.restored));
      }
    }
    size_t removed = 0;
    if (Status s = spool->CleanTmp([this](const std::string& t) { return WriterIsLive(t); }, &removed); !s.ok())
      LogWarning("spool tmp cleanup: %s", s.ToString().c_str());
    else if (removed)
      LogInfo("removed %zu unfinished spool/tmp file(s) of dead writers", removed);
    return Status::Ok();
  }

  // T4 for the slots of a finished (or dropped) round. A slot that cannot be freed now (an
  // injected slot.freed failure; Complete's only other error is a slot no longer ours) is
  // tried again at the next turn: its capture is committed or back in `pending` already.
  std::vector<shm::Claim> unfreed;
  void CompleteClaims(std::vector<shm::Claim>* claims) {
    for (const auto& c : *claims) {
      if (!table || !reg) break;  // cannot happen: ReopenTable drops the claims with the old table
      if (Status s = table->Complete(*reg, c); !s.ok()) {
        LogError("slot %u: %s", c.slot, s.ToString().c_str());
        if (s.code() != Status::Code::kInvalidArgument) unfreed.push_back(c);
      }
    }
    claims->clear();
  }
  void RetryUnfreed() {
    if (unfreed.empty()) return;
    std::vector<shm::Claim> again;
    again.swap(unfreed);
    CompleteClaims(&again);
  }

  void ReopenTable() {
    // Slots claimed in the replaced segment mean nothing in the new one; their captures are
    // in the committer's round or back in `pending` either way.
    cm_claims.clear();
    unfreed.clear();
    reg.reset();
    table.reset();
    std::unique_ptr<shm::ClaimTable> t;
    Status s = shm::ClaimTable::Open(opt.table, &t);
    if (s.ok()) {
      std::unique_ptr<shm::Registration> r;
      s = t->Register(shm::Role::kExporter, &r);
      if (s.ok()) {
        table = std::move(t);
        reg = std::move(r);
      }
    }
    if (!s.ok()) LogWarning("claim table unavailable (%s): exporting by spool scans only", s.ToString().c_str());
  }

  // R2: slots an earlier exporter registration claimed go back to READY. Recovery does it at
  // start (after the epoch bump), Housekeeping after reopening a replaced table.
  uint32_t ReturnPredecessorClaims() { return table && reg ? table->RecoverPreviousExporter(*reg) : 0; }

  Status MaybePrune() {
    if (Clock::now() < next_prune) return Status::Ok();
    next_prune = Clock::now() + opt.prune_interval;
    CCMAIL_RETURN_IF_ERROR(WaitCommitter());  // the ledger is the committer's while it runs
    if (clean_seq > clean_seq_recorded) {
      if (Status s = ledger->SetSpoolCleanSeq(clean_seq); s.ok()) clean_seq_recorded = clean_seq;
    }
    uint64_t deleted = 0;
    Status s = ledger->Prune(WallClockMs() - opt.dedup_window.count(), 500, &deleted);
    if (!s.ok())
      LogWarning("ledger prune: %s", s.ToString().c_str());
    else if (deleted)
      LogInfo("pruned %llu ledger row(s) older than the dedup window", static_cast<unsigned long long>(deleted));
    return Status::Ok();
  }

  Status RetryUnpublished() {
    while (!unpublished.empty()) {
      const Unpublished& batch = unpublished.front();
      Status s = outbox->Publish(batch.epoch, batch.seq, batch.post_office);
      if (!s.ok()) return s;
      QueueDeliver(batch.post_office, BatchFileName(batch.epoch, batch.seq, outbox->relay_id()));
      unpublished.erase(unpublished.begin());
      if (unpublished.empty()) CCMAIL_RETURN_IF_ERROR(outbox->SyncTmpDir());
    }
    return Status::Ok();
  }

  void Quarantine(const CaptureId& id, const store::SpoolMeta& meta, std::string reason) {
    reason = store::QuarantineReason(std::move(reason));  // as the reason file records it
    Status s = store::InjectedError(kCrashQuarantined, "quarantine capture " + id.ToString());
    if (s.ok()) s = spool->Quarantine(id, reason);
    if (!s.ok()) {
      LogError("capture %s: cannot quarantine (%s): %s", id.ToString().c_str(), reason.c_str(), s.ToString().c_str());
      return;
    }
    CrashPoint(kCrashQuarantined);  // the failure was checked before the step
    {
      std::lock_guard<std::mutex> g(ctr_mu);
      ++ctr.quarantined;
    }
    LogWarning("capture %s quarantined: %s", id.ToString().c_str(), reason.c_str());
    if (opt.notify_sender_on_quarantine && !meta.envelope_sender.empty() && bounces) {
      FailedDelivery f;
      for (const auto& r : meta.recipients) f.recipient += (f.recipient.empty() ? "" : ", ") + r.smtp_address;
      f.recipient_type = "rfc822";
      f.status = "5.6.0";
      f.diagnostic = "not convertible into the cc:Mail import format: " + reason;
      std::string text =
          "Your message could not be converted into the cc:Mail import format and was\n"
          "not delivered to its cc:Mail recipients. It is kept for the postmaster.\n\n"
          "Reason:      " + reason + "\nCapture id:  " + id.ToString() + "\n";
      const std::string name = "quarantine-" + id.ToString();
      if (Status ns = bounces->Add(name, meta.envelope_sender,
                                   DeliveryStatusNotice(meta.envelope_sender,
                                                        "Undeliverable: message could not be converted for cc:Mail",
                                                        text, f, name));
          !ns.ok())
        LogWarning("capture %s: quarantine notice not queued: %s", id.ToString().c_str(), ns.ToString().c_str());
    }
  }

  // ---------- deliver_command worker ----------
  void StartDeliverThread() {
    if (opt.deliver_command.empty() || dq_thread.joinable()) return;
    dq_thread = std::thread([this] { DeliverLoop(); });
  }
  void StopDeliverThread() {
    {
      std::lock_guard<std::mutex> g(dq_mu);
      dq_stop = true;
    }
    dq_cv.notify_all();
    if (dq_thread.joinable()) dq_thread.join();
  }
  void QueueDeliver(const std::string& post_office, const std::string& name) {
    if (opt.deliver_command.empty()) return;
    DeliverJob job;
    job.post_office = post_office;
    job.batch_path = outbox->PostOfficeDir(post_office) + "/" + name;
    job.manifest_path = outbox->PostOfficeDir(post_office) + "/" + ManifestFileName(name);
    job.due = Clock::now();
    {
      std::lock_guard<std::mutex> g(dq_mu);
      dq.push_back(std::move(job));
    }
    dq_cv.notify_all();
  }
  // True when nothing is running and no job is due now (Drain waits for this).
  bool DeliverIdle() {
    std::lock_guard<std::mutex> g(dq_mu);
    if (dq_running) return false;
    auto now = Clock::now();
    for (const auto& j : dq)
      if (j.due <= now) return false;
    return true;
  }
  void DeliverLoop() {
    std::unique_lock<std::mutex> lk(dq_mu);
    while (!dq_stop) {
      auto now = Clock::now();
      auto next = std::min_element(dq.begin(), dq.end(),
                                   [](const DeliverJob& a, const DeliverJob& b) { return a.due < b.due; });
      if (next == dq.end()) {
        dq_cv.wait(lk);
        continue;
      }
      if (next->due > now) {
        dq_cv.wait_until(lk, next->due);
        continue;
      }
      DeliverJob job = std::move(*next);
      dq.erase(next);
      dq_running = true;
      lk.unlock();
      bool requeue = RunDeliverJob(&job);
      lk.lock();
      dq_running = false;
      if (requeue) dq.push_back(std::move(job));
    }
  }
  // Returns true when the job must run again later (job->due set).
  bool RunDeliverJob(DeliverJob* job) {
    format::FormatSettings fmt;
    {
      std::lock_guard<std::mutex> g(cfg_mu);
      fmt = conv->settings();
    }
    auto retry = [&](bool alert, const std::string& what) {
      long delay = DeliverBackoffSeconds(job->attempt, opt.deliver_retry_min_s, opt.deliver_retry_max_s);
      ++job->attempt;
      job->due = Clock::now() + std::chrono::seconds(delay);
      if (alert)
        LogError("deliver %s: %s; retry in %lds", job->batch_path.c_str(), what.c_str(), delay);
      else
        LogWarning("deliver %s: %s; retry in %lds", job->batch_path.c_str(), what.c_str(), delay);
      return true;
    };
    if (!job->bounce_only) {
      if (!Exists(job->batch_path)) {
        LogInfo("deliver %s: batch no longer in the outbox (consumed), nothing to do", job->batch_path.c_str());
        return false;
      }
      DeliverRequest req{opt.deliver_command, job->batch_path, job->post_office, job->manifest_path};
      DeliverOutcome outcome = DeliverOutcome::kFailed;
      int code = -1;
      Status s = RunDeliverCommand(req, &outcome, &code);
      {
        std::lock_guard<std::mutex> g(ctr_mu);
        ++ctr.deliver_runs;
        if (!s.ok() || (outcome != DeliverOutcome::kDone && outcome != DeliverOutcome::kUndeliverable))
          ++ctr.deliver_failures;
      }
      if (!s.ok()) return retry(true, "cannot run deliver_command: " + s.ToString());
      if (outcome == DeliverOutcome::kDone) {
        LogInfo("delivered %s (deliver_command exit 0)", job->batch_path.c_str());
        return false;
      }
      if (outcome == DeliverOutcome::kLocked) return retry(false, "post office locked (exit 4)");
      if (outcome == DeliverOutcome::kFailed) return retry(true, "deliver_command failed (exit " + std::to_string(code) + ")");
      job->bounce_only = true;
      job->attempt = 0;
    }
    std::string und = job->batch_path;
    auto dot = und.rfind('.');
    und = (dot == std::string::npos ? und : und.substr(0, dot)) + ".UND";
    int bounced = 0;
    size_t unmatched = 0;
    Status s = BounceUndeliverable(und, job->manifest_path, job->post_office, bounces.get(), fmt, &bounced, &unmatched);
    {
      std::lock_guard<std::mutex> g(ctr_mu);
      ctr.bounced += static_cast<uint64_t>(bounced);
    }
    if (unmatched) LogWarning("deliver %s: %zu undeliverable message(s) matched no manifest entry", job->batch_path.c_str(), unmatched);
    if (!s.ok()) return retry(true, "bounce: " + s.ToString());
    LogInfo("deliver %s: IMPORT exit 5, %d bounce(s) queued for %s", job->batch_path.c_str(), bounced,
            opt.bounce_relay.c_str());
    return false;
  }

  // ---------- recovery (recovery.cpp) ----------
  Status Recover();
  Status RecoverOutTmp(RecoveryTally* tally);
  Status AdvanceLaggingWatermarks(const std::set<std::string>& published);
  Status RecoverSpool(RecoveryTally* tally);
  Status RecoverClaimTable(RecoveryTally* tally);
  void RequeuePublishedDeliveries(const std::set<std::string>& published);
  // One round (round.cpp): RoundIds, then the steps of round_steps.h around the wait for the
  // committer, AskLedger between them, ApplyPlan for ClassifyRound's side effects.
  Status ProcessRound(std::vector<shm::Claim>* claims, bool* did_work);
  std::vector<CaptureId> RoundIds(const std::vector<shm::Claim>& claims);
  Status AskLedger(const std::vector<RoundItem>& items, std::vector<char>* in_ledger, KeySet* keys);
  void ApplyPlan(RoundPlan* plan, std::vector<RoundItem>* items, bool* did_work);
  Status RunOnce(bool* did_work);
};

}  // namespace ccmail::exporter
