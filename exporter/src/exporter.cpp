// exporter.cpp - recovery (design 5.7) and the run loop (design 5.6) of the single exporter.
//
// The order of durable steps in one round is the whole exactly-once argument:
//   .part files fsynced -> ONE ledger transaction (the decision) -> publish (rename, dir
//   fsync, watermark) -> unlink spool files -> free slots.
// Everything before the commit is redone after a crash (the .part is deleted at recovery,
// the captures are still in spool/new); everything after it is rolled forward by recovery
// (committed .part published, spool files of committed captures unlinked).
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
#include <map>
#include <mutex>
#include <set>
#include <thread>

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

namespace ccmail::exporter {

using store::CaptureId;
using store::ContentKey;
using store::CrashPoint;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

const std::vector<std::string>& ExporterCrashPoints() {
  static const std::vector<std::string> kPoints = {
      kCrashSlotClaimed,        "batch.manifest.written", "batch.manifest.fsynced", "batch.part.written",
      "batch.part.fsynced",     "batch.tmpdir.fsynced",   "ledger.commit.before",   "ledger.commit.after",
      "batch.renamed",          "batch.dir.fsynced",      "watermark.written",      "watermark.fsynced",
      "spool.unlinked",         "spool.unlink.dir.fsynced", kCrashSlotFreed,        "recovery.epoch",
      kCrashRecoveryRollforward, kCrashRecoverySpoolUnlink, kCrashRecoveryTableReset, "prune.k",
      kCrashQuarantined,
  };
  return kPoints;
}

namespace {

uint64_t RealtimeNs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

int64_t NowMs() { return static_cast<int64_t>(RealtimeNs() / 1000000ULL); }

std::string Upper(std::string s) {
  for (char& c : s)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return s;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Status ListDir(const std::string& dir, std::vector<std::string>* names) {
  names->clear();
  DIR* d = ::opendir(dir.c_str());
  if (!d) return Status::FromErrno("opendir " + dir, errno);
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names->push_back(std::move(n));
  }
  ::closedir(d);
  std::sort(names->begin(), names->end());
  return Status::Ok();
}

bool Exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

Status FsyncDirPlain(const std::string& dir) { return store::DurableIo::Real().FsyncDir(dir); }

// "<registry index>.<rgen>" as the milter names its tmp files; anything else is unknown.
bool ParseWriterTag(const std::string& tag, uint32_t* index, uint64_t* rgen) {
  auto dot = tag.find('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 >= tag.size()) return false;
  char* end = nullptr;
  errno = 0;
  unsigned long i = std::strtoul(tag.c_str(), &end, 10);
  if (errno || end != tag.c_str() + dot) return false;
  unsigned long long g = std::strtoull(tag.c_str() + dot + 1, &end, 10);
  if (errno || *end != '\0') return false;
  *index = static_cast<uint32_t>(i);
  *rgen = g;
  return true;
}

struct DeliverJob {
  std::string po;
  std::string batch_path;
  std::string manifest_path;
  int attempt = 0;
  bool bounce_only = false;  // IMPORT said 5; only the bounce step is left
  Clock::time_point due;
};

}  // namespace

Status ExporterOptions::FromConfig(const Config& cfg, ExporterOptions* out) {
  ExporterOptions o;
  CCMAIL_RETURN_IF_ERROR(BridgePaths::FromConfig(cfg, &o.paths));
  CCMAIL_RETURN_IF_ERROR(shm::TableOptionsFromConfig(cfg, &o.table));
  o.table.create_if_missing = true;
  o.table.recreate_if_invalid = true;
  CCMAIL_RETURN_IF_ERROR(format::LoadFormatSettings(cfg, &o.format));
  CCMAIL_RETURN_IF_ERROR(format::AddressMap::LoadFromConfig(cfg, &o.address_map));
  uint64_t n = 0;
  CCMAIL_RETURN_IF_ERROR(cfg.GetUInt("batch_max_messages", 1, 100000, &n));
  o.batch_max_messages = static_cast<size_t>(n);
  CCMAIL_RETURN_IF_ERROR(cfg.GetDuration("batch_max_delay", &o.batch_max_delay));
  CCMAIL_RETURN_IF_ERROR(cfg.GetDuration("spool_scan_interval", &o.spool_scan_interval));
  CCMAIL_RETURN_IF_ERROR(cfg.GetDuration("dedup_window", &o.dedup_window));
  CCMAIL_RETURN_IF_ERROR(cfg.GetString("deliver_command", &o.deliver_command));
  milliseconds d;
  CCMAIL_RETURN_IF_ERROR(cfg.GetDuration("deliver_retry_min", &d));
  o.deliver_retry_min_s = std::max<long>(1, static_cast<long>(d.count() / 1000));
  CCMAIL_RETURN_IF_ERROR(cfg.GetDuration("deliver_retry_max", &d));
  o.deliver_retry_max_s = std::max<long>(o.deliver_retry_min_s, static_cast<long>(d.count() / 1000));
  CCMAIL_RETURN_IF_ERROR(cfg.GetString("sendmail_path", &o.sendmail_path));
  CCMAIL_RETURN_IF_ERROR(cfg.GetBool("notify_sender_on_quarantine", &o.notify_sender_on_quarantine));
  if (o.spool_scan_interval.count() <= 0) o.spool_scan_interval = milliseconds(2000);
  o.convert_threads = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 4);
  *out = std::move(o);
  return Status::Ok();
}

struct Exporter::Impl {
  ExporterOptions opt;
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
  struct Unpublished {
    uint64_t epoch, seq;
    std::string po;
  };
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

  mutable std::mutex ctr_mu;
  ExporterCounters ctr;

  // deliver_command worker
  std::mutex dq_mu;
  std::condition_variable dq_cv;
  std::deque<DeliverJob> dq;
  bool dq_stop = false;
  bool dq_running = false;
  std::thread dq_thread;

  // Closer: the last close of an unlinked spool file frees its inode and blocks, so it is
  // done by a helper thread. The spool file is already unlinked and spool/new fsynced when
  // its descriptor is queued here, so this only releases resources: it is no step of the
  // exactly-once protocol. On a filesystem mounted with `discard` (the reference VM) that
  // close waits for a synchronous discard of the file's blocks: ~140-230 us per 10 KB file,
  // as much as the rest of the per-message CPU work, and it now overlaps the next round.
  std::mutex cl_mu;
  std::condition_variable cl_cv;       // work for the closer
  std::condition_variable cl_done_cv;  // the queue got shorter
  std::vector<UniqueFd> cl_q;
  size_t cl_busy = 0;  // descriptors taken by the closer and not yet closed
  bool cl_stop = false;
  std::thread cl_thread;

  ~Impl() {
    StopCloser();
    StopDeliverThread();
  }

  void QueueClose(UniqueFd fd) {
    if (!fd.valid()) return;
    std::lock_guard<std::mutex> g(cl_mu);
    if (!cl_thread.joinable()) cl_thread = std::thread([this] { CloserLoop(); });
    cl_q.push_back(std::move(fd));
    cl_cv.notify_one();
  }
  // Blocks until at most `max_open` descriptors wait for the closer: a round opens up to
  // kMaxOpenPerRound files and the two together must stay under the usual 1,024 fd limit.
  void WaitCloser(size_t max_open) {
    std::unique_lock<std::mutex> lk(cl_mu);
    cl_done_cv.wait(lk, [&] { return cl_q.size() + cl_busy <= max_open; });
  }
  void CloserLoop() {
    std::unique_lock<std::mutex> lk(cl_mu);
    for (;;) {
      cl_cv.wait(lk, [&] { return cl_stop || !cl_q.empty(); });
      if (cl_q.empty()) return;  // stop requested and nothing left
      std::vector<UniqueFd> batch;
      batch.swap(cl_q);
      cl_busy = batch.size();
      lk.unlock();
      for (auto& fd : batch) {
        fd.reset();
        std::lock_guard<std::mutex> g(cl_mu);
        --cl_busy;
        cl_done_cv.notify_all();
      }
      lk.lock();
    }
  }
  void StopCloser() {
    {
      std::lock_guard<std::mutex> g(cl_mu);
      cl_stop = true;
    }
    cl_cv.notify_all();
    if (cl_thread.joinable()) cl_thread.join();
    cl_thread = std::thread();
    cl_stop = false;
  }

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
    uint32_t index = 0;
    uint64_t rgen = 0;
    if (!ParseWriterTag(tag, &index, &rgen)) return true;  // unknown naming: never delete
    if (!table || index >= table->registry_count()) return true;
    return table->IsRegistrationCurrent(index, rgen) && table->IsEntryAlive(index);
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
    for (const auto& id : ids) pending.insert(id);
    next_scan = Clock::now() + opt.spool_scan_interval;
    return Status::Ok();
  }

  void PublishState(bool idle) {
    if (!table) return;
    if (idle) progress_ns = RealtimeNs();
    shm::ExporterState st;
    st.epoch = ledger->epoch();
    st.heartbeat_ns = RealtimeNs();
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

  // Periodic housekeeping on the scan tick: dead milters (R1), a replaced segment, tmp files.
  void Housekeeping() {
    if (table) {
      if (Status s = table->CheckSameSegment(); !s.ok()) {
        LogWarning("claim table replaced under us (%s): reopening", s.ToString().c_str());
        ReopenTable();
      }
    }
    if (table && reg) {
      shm::RecoveryReport r = table->RecoverDeadOwners(*reg);
      if (r.dead_registrations || r.reserved_freed)
        LogInfo("freed %u dead registration(s), %u reserved slot(s)", r.dead_registrations, r.reserved_freed);
    }
    size_t removed = 0;
    if (Status s = spool->CleanTmp([this](const std::string& t) { return WriterIsLive(t); }, &removed); !s.ok())
      LogWarning("spool tmp cleanup: %s", s.ToString().c_str());
    else if (removed)
      LogInfo("removed %zu unfinished spool/tmp file(s) of dead writers", removed);
  }

  void ReopenTable() {
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
        table->RecoverPreviousExporter(*reg);
      }
    }
    if (!s.ok()) LogWarning("claim table unavailable (%s): exporting by spool scans only", s.ToString().c_str());
  }

  void MaybePrune() {
    if (Clock::now() < next_prune) return;
    next_prune = Clock::now() + opt.prune_interval;
    if (clean_seq > clean_seq_recorded) {
      if (Status s = ledger->SetSpoolCleanSeq(clean_seq); s.ok()) clean_seq_recorded = clean_seq;
    }
    uint64_t deleted = 0;
    Status s = ledger->Prune(NowMs() - opt.dedup_window.count(), 500, &deleted);
    if (!s.ok())
      LogWarning("ledger prune: %s", s.ToString().c_str());
    else if (deleted)
      LogInfo("pruned %llu ledger row(s) older than the dedup window", static_cast<unsigned long long>(deleted));
  }

  Status RetryUnpublished() {
    while (!unpublished.empty()) {
      const auto& u = unpublished.front();
      Status s = outbox->Publish(u.epoch, u.seq, u.po);
      if (!s.ok()) return s;
      QueueDeliver(u.po, BatchFileName(u.epoch, u.seq));
      unpublished.erase(unpublished.begin());
      if (unpublished.empty()) CCMAIL_RETURN_IF_ERROR(outbox->SyncTmpDir());
    }
    return Status::Ok();
  }

  void Quarantine(const CaptureId& id, const store::SpoolMeta& meta, std::string reason) {
    if (reason.size() > 300) reason = reason.substr(0, 300) + "...";  // a huge name must not flood the log
    Status s = spool->Quarantine(id, reason);
    if (!s.ok()) {
      LogError("capture %s: cannot quarantine (%s): %s", id.ToString().c_str(), reason.c_str(), s.ToString().c_str());
      return;
    }
    CrashPoint(kCrashQuarantined);
    {
      std::lock_guard<std::mutex> g(ctr_mu);
      ++ctr.quarantined;
    }
    LogWarning("capture %s quarantined: %s", id.ToString().c_str(), reason.c_str());
    if (opt.notify_sender_on_quarantine && !meta.envelope_sender.empty()) {
      std::string text =
          "From: MAILER-DAEMON (ccmail-bridge)\nTo: <" + meta.envelope_sender +
          ">\nSubject: Undeliverable: message could not be converted for cc:Mail\n"
          "Auto-Submitted: auto-replied\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n"
          "Your message could not be converted into the cc:Mail import format and was\n"
          "not delivered to its cc:Mail recipients. It is kept for the postmaster.\n\n"
          "Reason:      " + reason + "\nCapture id:  " + id.ToString() + "\n";
      if (Status ns = SendNotice(opt.sendmail_path, meta.envelope_sender, text); !ns.ok())
        LogWarning("capture %s: quarantine notice not sent: %s", id.ToString().c_str(), ns.ToString().c_str());
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
  void QueueDeliver(const std::string& po, const std::string& name) {
    if (opt.deliver_command.empty()) return;
    DeliverJob j;
    j.po = po;
    j.batch_path = outbox->PostOfficeDir(po) + "/" + name;
    j.manifest_path = outbox->PostOfficeDir(po) + "/" + ManifestFileName(name);
    j.due = Clock::now();
    {
      std::lock_guard<std::mutex> g(dq_mu);
      dq.push_back(std::move(j));
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
      auto it = std::min_element(dq.begin(), dq.end(), [](const DeliverJob& a, const DeliverJob& b) { return a.due < b.due; });
      if (it == dq.end()) {
        dq_cv.wait(lk);
        continue;
      }
      if (it->due > now) {
        dq_cv.wait_until(lk, it->due);
        continue;
      }
      DeliverJob job = std::move(*it);
      dq.erase(it);
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
      DeliverRequest req{opt.deliver_command, job->batch_path, job->po, job->manifest_path};
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
    Status s = BounceUndeliverable(und, job->manifest_path, job->po, opt.sendmail_path, fmt, &bounced, &unmatched);
    {
      std::lock_guard<std::mutex> g(ctr_mu);
      ctr.bounced += static_cast<uint64_t>(bounced);
    }
    if (unmatched) LogWarning("deliver %s: %zu undeliverable message(s) matched no manifest entry", job->batch_path.c_str(), unmatched);
    if (!s.ok()) return retry(true, "bounce: " + s.ToString());
    LogInfo("deliver %s: IMPORT exit 5, %d bounce(s) sent", job->batch_path.c_str(), bounced);
    return false;
  }

  // ---------- recovery ----------
  Status Recover();
  Status ProcessRound(std::vector<shm::Claim>* claims, bool* did_work);
  Status RunOnce(bool* did_work);
};

Exporter::Exporter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Exporter::~Exporter() = default;

Status Exporter::Open(ExporterOptions opt, std::unique_ptr<Exporter>* out) {
  auto im = std::make_unique<Impl>();
  const BridgePaths& p = opt.paths;
  // The lock comes first: a second exporter must not touch anything else.
  if (::mkdir(p.spool_directory.c_str(), 0750) != 0 && errno != EEXIST)
    return Status::FromErrno("mkdir " + p.spool_directory, errno);
  CCMAIL_RETURN_IF_ERROR(AcquireExporterLock(p.exporter_lock, &im->lock));
  if (::mkdir(p.runtime_directory.c_str(), 0755) != 0 && errno != EEXIST)
    return Status::FromErrno("mkdir " + p.runtime_directory, errno);
  CCMAIL_RETURN_IF_ERROR(store::Ledger::Open(p.ledger_path, &im->ledger));
  CCMAIL_RETURN_IF_ERROR(store::Spool::Open(p.spool_root, &im->spool));
  im->outbox = std::make_unique<Outbox>(p.out_tmp, p.outbox_directory);
  CCMAIL_RETURN_IF_ERROR(im->outbox->Init());
  im->outbox->set_defer_tmpdir_sync(true);  // one out/tmp fsync per round, not per post office
  // The backlog published in the table is only a hint (the milters count the spool
  // themselves for back-pressure): a directory walk with one stat per file is costly with a
  // 100k backlog, so it runs every 30 s; the ids found by scans keep the hint current.
  im->spool->set_stats_refresh_ms(30000);
  im->conv = std::make_shared<const format::Converter>(opt.format);
  im->map = opt.address_map;
  im->opt = std::move(opt);
  im->ReopenTable();
  if (!im->table) return Status::Unavailable("claim table " + shm::ClaimTable::SegmentName(im->opt.table) + " cannot be opened");
  out->reset(new Exporter(std::move(im)));
  return Status::Ok();
}

Status Exporter::Impl::Recover() {
  // 5.7-2: fencing epoch.
  uint64_t epoch = 0;
  CCMAIL_RETURN_IF_ERROR(ledger->BumpEpoch(&epoch));
  // 5.7-3: out/tmp. A .part of a committed batch is rolled forward, any other is deleted.
  std::vector<std::string> names;
  CCMAIL_RETURN_IF_ERROR(ListDir(outbox->TmpDir(), &names));
  size_t rolled = 0, deleted = 0;
  std::set<std::string> published;
  for (const auto& n : names) {
    if (!EndsWith(n, ".part")) continue;
    std::string base = n.substr(0, n.size() - 5);
    std::string batch = EndsWith(base, ".MAN") ? base.substr(0, base.size() - 4) + ".CCM" : base;
    store::LedgerBatch b;
    Status s = ledger->FindBatchByName(batch, &b);
    if (s.ok() && !b.post_office.empty()) {
      if (published.insert(batch).second) {
        CCMAIL_RETURN_IF_ERROR(outbox->Publish(b.epoch, b.seq, b.post_office).WithContext("roll forward " + batch));
        CrashPoint(kCrashRecoveryRollforward);
        ++rolled;
        QueueDeliver(b.post_office, batch);
      }
      continue;
    }
    if (!s.ok() && !s.IsNotFound()) return s;
    std::string path = outbox->TmpDir() + "/" + n;
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Status::FromErrno("unlink " + path, errno);
    CrashPoint(kCrashRecoveryRollforward);
    ++deleted;
  }
  if (rolled || deleted) CCMAIL_RETURN_IF_ERROR(FsyncDirPlain(outbox->TmpDir()));
  // A crash between the renames and the watermark leaves a published batch the consumer
  // may not take yet: re-publish (idempotent) the newest batch of each post office.
  std::vector<store::LedgerBatch> latest;
  CCMAIL_RETURN_IF_ERROR(ledger->LatestBatchPerPostOffice(&latest));
  for (const auto& b : latest) {
    Watermark wm;
    std::string dir = outbox->PostOfficeDir(b.post_office);
    bool behind = !ReadWatermark(dir, &wm).ok() || wm.epoch < b.epoch || (wm.epoch == b.epoch && wm.seq < b.seq);
    if (!behind) continue;
    if (Exists(dir + "/" + b.file_name)) {
      CCMAIL_RETURN_IF_ERROR(outbox->Publish(b.epoch, b.seq, b.post_office).WithContext("watermark " + b.file_name));
      LogInfo("recovery: advanced the watermark of %s to %s", b.post_office.c_str(), b.file_name.c_str());
    } else if (!published.count(b.file_name)) {
      LogWarning("recovery: batch %s of %s is in the ledger but neither in out/tmp nor in the outbox", b.file_name.c_str(),
                 b.post_office.c_str());
    }
  }
  // 5.7-4: spool. Committed captures still in spool/new are an interrupted cleanup.
  std::vector<CaptureId> ids;
  CCMAIL_RETURN_IF_ERROR(spool->ListPending(&ids));
  size_t unlinked = 0;
  std::vector<char> in_ledger;
  CCMAIL_RETURN_IF_ERROR(ledger->HasCaptures(ids, &in_ledger));
  for (size_t i = 0; i < ids.size(); ++i) {
    const CaptureId& id = ids[i];
    if (!in_ledger[i]) {
      pending.insert(id);
      continue;
    }
    Status s = spool->Remove(id, false);
    if (!s.ok() && !s.IsNotFound()) return s;
    CrashPoint(kCrashRecoverySpoolUnlink);
    ++unlinked;
  }
  if (unlinked) CCMAIL_RETURN_IF_ERROR(spool->SyncNewDir());
  size_t removed_tmp = 0;
  CCMAIL_RETURN_IF_ERROR(spool->CleanTmp([this](const std::string& t) { return WriterIsLive(t); }, &removed_tmp));
  store::LedgerCounters c;
  CCMAIL_RETURN_IF_ERROR(ledger->Counters(&c));
  clean_seq = c.last_seq;
  clean_seq_recorded = c.spool_clean_seq;
  if (clean_seq > clean_seq_recorded) {
    CCMAIL_RETURN_IF_ERROR(ledger->SetSpoolCleanSeq(clean_seq));
    clean_seq_recorded = clean_seq;
  }
  // 5.7-5: the table. R2 (our predecessor's claims), R3 (already exported), R1 (dead milters).
  uint32_t r2 = 0, r3 = 0;
  if (table && reg) {
    r2 = table->RecoverPreviousExporter(*reg);
    CrashPoint(kCrashRecoveryTableReset);
    r3 = table->FreeReadyIf(*reg, [this](const shm::CaptureBytes& b) {
      CaptureId id;
      id.bytes = b;
      bool known = false;
      return ledger->HasCapture(id, &known).ok() && known;
    });
    table->RecoverDeadOwners(*reg);
    last_overflow = table->Stats().overflow_count;
  }
  // Batches already published but maybe not delivered before the restart: run the
  // deliver_command again (its job must skip batch names it already imported, design 5.8 b).
  if (!opt.deliver_command.empty()) {
    std::vector<std::string> pos;
    if (ListDir(outbox->OutboxDir(), &pos).ok()) {
      for (const auto& po : pos) {
        if (!ValidPostOfficeName(po)) continue;
        std::vector<std::string> files;
        if (!ListDir(outbox->PostOfficeDir(po), &files).ok()) continue;
        for (const auto& f : files)
          if (EndsWith(f, ".CCM") && !published.count(f) && Exists(outbox->PostOfficeDir(po) + "/" + ManifestFileName(f)))
            QueueDeliver(po, f);
      }
    }
  }
  StartDeliverThread();
  next_scan = Clock::now() + opt.spool_scan_interval;
  next_prune = Clock::now();
  progress_ns = RealtimeNs();
  LogInfo("recovery done: epoch %llu, %zu batch(es) rolled forward, %zu uncommitted part file(s) deleted, "
          "%zu exported spool file(s) unlinked, %zu pending, %zu dead tmp file(s) removed, slots reset %u, freed %u",
          static_cast<unsigned long long>(epoch), rolled, deleted, unlinked, pending.size(), removed_tmp, r2, r3);
  PublishState(false);
  return Status::Ok();
}

namespace {

constexpr size_t kMaxOpenPerRound = 900;
// Spool descriptors open in a round plus those still queued for the closer.
constexpr size_t kMaxOpenTotal = 960;

struct PoBatch {
  std::string content;
  std::vector<ManifestEntry> entries;
  store::LedgerBatch ledger;
};

struct Rcpt {
  std::string smtp;
  format::CcMailAddress addr;
  std::string key;  // "<name> at <PO>": the ledger's recipient string
};

}  // namespace

Status Exporter::Impl::ProcessRound(std::vector<shm::Claim>* claims, bool* did_work) {
  std::shared_ptr<const format::Converter> cv;
  std::shared_ptr<const format::AddressMap> amap;
  {
    std::lock_guard<std::mutex> g(cfg_mu);
    cv = conv;
    amap = map;
  }
  // The round's ids: every claimed slot, then the oldest scanned ids, in capture-id order.
  std::vector<CaptureId> ids;
  for (const auto& c : *claims) {
    CaptureId id;
    id.bytes = c.capture_id;
    ids.push_back(id);
  }
  const size_t round_limit = RoundLimit();
  for (auto it = pending.begin(); it != pending.end() && ids.size() < round_limit; ++it) ids.push_back(*it);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());

  std::map<std::string, PoBatch> batches;
  store::LedgerBatch nofile;  // captures with nothing to export (all DUP)
  std::set<std::pair<ContentKey, std::string>> round_keys;
  std::vector<CaptureId> done, known, deferred;
  uint64_t bytes = 0, round_exported = 0, round_dups = 0;
  bool retry_error = false;

  // Pass 1: ledger lookup of the ids, open + verify + resolve each capture.
  std::vector<char> in_ledger;
  CCMAIL_RETURN_IF_ERROR(ledger->HasCaptures(ids, &in_ledger));
  struct Item {
    CaptureId id;
    store::SpoolEntry e;
    std::map<std::string, std::vector<Rcpt>> by_po;
  };
  std::vector<Item> items;
  items.reserve(ids.size());
  // Whatever path leaves this round, the descriptors go to the closer (declared after
  // `items`, so it runs first). Exported captures are unlinked by then; the others stay in
  // spool/new or corrupt/ and their close is cheap.
  struct HandOver {
    Impl* im;
    std::vector<Item>* items;
    ~HandOver() {
      for (auto& it : *items) im->QueueClose(std::move(it.e.fd));
    }
  } hand_over{this, &items};
  WaitCloser(kMaxOpenTotal - std::min(ids.size(), kMaxOpenPerRound));
  std::vector<std::pair<ContentKey, std::string>> lookups;
  uint64_t opened_bytes = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const CaptureId& id = ids[i];
    pending.erase(id);
    if (id.IsZero()) continue;
    if (in_ledger[i]) {
      known.push_back(id);
      continue;
    }
    // Each opened capture holds a descriptor until the round ends: bound both the bytes and
    // the descriptors (batch_max_messages may be set far above the usual fd limit of 1024).
    if (opened_bytes >= opt.round_max_bytes || items.size() >= kMaxOpenPerRound) {
      deferred.push_back(id);
      continue;
    }
    Item it;
    it.id = id;
    Status s = spool->OpenEntry(id, &it.e);
    if (s.IsNotFound()) continue;  // a stale slot, or already handled
    if (s.IsCorrupt()) {
      std::lock_guard<std::mutex> g(ctr_mu);
      ++ctr.quarantined;
      LogError("capture %s failed verification, moved to spool/corrupt: %s", id.ToString().c_str(), s.ToString().c_str());
      *did_work = true;
      continue;
    }
    if (!s.ok()) {
      LogWarning("capture %s: cannot open: %s", id.ToString().c_str(), s.ToString().c_str());
      deferred.push_back(id);
      retry_error = true;
      continue;
    }
    const store::SpoolMeta& m = it.e.meta;
    // Recipients grouped per post office; resolution was done at capture time, the
    // address map only fills in what the capture could not resolve.
    std::string bad;
    std::set<std::string> seen;
    for (const auto& r : m.recipients) {
      format::CcMailAddress a{r.ccmail_name, Upper(r.post_office)};
      if ((a.name.empty() || a.postoffice.empty()) && amap) {
        if (auto res = amap->Resolve(r.smtp_address)) a = {res->name, Upper(res->postoffice)};
      }
      if (a.name.empty() || a.postoffice.empty()) {
        bad = "recipient <" + r.smtp_address + "> has no cc:Mail name and post office";
        break;
      }
      if (!ValidPostOfficeName(a.postoffice)) {
        bad = "post office '" + a.postoffice + "' of <" + r.smtp_address + "> is not a usable name";
        break;
      }
      std::string key = a.name + " at " + a.postoffice;
      if (!seen.insert(key).second) continue;  // two addresses of one cc:Mail user: one delivery
      it.by_po[a.postoffice].push_back(Rcpt{r.smtp_address, a, key});
    }
    if (bad.empty() && it.by_po.empty()) bad = "no cc:Mail recipient";
    if (!bad.empty()) {
      Quarantine(id, m, bad);
      *did_work = true;
      continue;
    }
    for (const auto& [po, rs] : it.by_po)
      for (const auto& r : rs) lookups.emplace_back(m.content_key, r.key);
    opened_bytes += it.e.message_length;
    items.push_back(std::move(it));
  }
  std::vector<char> exported_flags;
  CCMAIL_RETURN_IF_ERROR(ledger->AreExported(lookups, &exported_flags));
  std::set<std::pair<ContentKey, std::string>> in_ledger_keys;
  for (size_t i = 0; i < lookups.size(); ++i)
    if (exported_flags[i]) in_ledger_keys.insert(lookups[i]);

  // Pass 2: convert. Conversion is independent per message and is the largest CPU cost of a
  // round, so it runs on a few threads over a TENTATIVE classification (as if every earlier
  // capture of the round succeeds). Pass 3 classifies again, in order, with only the captures
  // that really made it into the round and converts again in the rare case the answer changed
  // (an earlier copy of the same message failed), so the result is the sequential one.
  using PoRcpts = std::map<std::string, std::vector<const Rcpt*>>;
  struct Converted {
    PoRcpts exp_po, dup_po;
    std::map<std::string, std::string> out;
    std::string unconvertible;
    bool io_failed = false;
  };
  auto classify = [&](const Item& item, const std::set<std::pair<ContentKey, std::string>>& keys, PoRcpts* exp_po,
                      PoRcpts* dup_po) {
    for (const auto& [po, rs] : item.by_po)
      for (const auto& r : rs) {
        std::pair<ContentKey, std::string> k{item.e.meta.content_key, r.key};
        bool exported = keys.count(k) > 0 || in_ledger_keys.count(k) > 0;
        ((exported ? *dup_po : *exp_po)[po]).push_back(&r);
      }
  };
  auto convert_po = [&](const Item& item, const std::string& po, const std::vector<const Rcpt*>& rs,
                        std::string* text) -> Status {
    const store::SpoolMeta& m = item.e.meta;
    format::ConvertInput in;
    in.fd = item.e.fd.get();
    in.offset = item.e.message_offset;
    in.length = item.e.message_length;
    in.envelope_sender = m.envelope_sender;
    for (const Rcpt* r : rs) in.recipients.push_back({r->smtp, r->addr});
    in.received = static_cast<time_t>(m.received_ms / 1000);
    in.log_id = item.id.ToString();
    format::StringSink sink;
    format::ConvertResult res;
    Status cs = cv->Convert(in, &sink, &res);
    if (cs.ok()) *text = std::move(sink.str());
    (void)po;
    return cs;
  };
  auto convert_item = [&](const Item& item, Converted* c) {
    for (const auto& [po, rs] : c->exp_po) {
      Status cs = convert_po(item, po, rs, &c->out[po]);
      if (format::IsUnconvertible(cs)) {
        c->unconvertible = cs.message();
        return;
      }
      if (!cs.ok()) {
        LogWarning("capture %s: conversion for %s failed, retrying later: %s", item.id.ToString().c_str(), po.c_str(),
                   cs.ToString().c_str());
        c->io_failed = true;
        return;
      }
    }
  };
  std::vector<Converted> conv_items(items.size());
  {
    std::set<std::pair<ContentKey, std::string>> tentative;
    for (size_t i = 0; i < items.size(); ++i) {
      classify(items[i], tentative, &conv_items[i].exp_po, &conv_items[i].dup_po);
      for (const auto& [po, rs] : conv_items[i].exp_po)
        for (const Rcpt* r : rs) tentative.insert({items[i].e.meta.content_key, r->key});
    }
    std::atomic<size_t> next{0};
    auto worker = [&] {
      for (size_t i = next.fetch_add(1); i < items.size(); i = next.fetch_add(1)) convert_item(items[i], &conv_items[i]);
    };
    std::vector<std::thread> helpers;
    size_t extra = std::min<size_t>(opt.convert_threads > 0 ? opt.convert_threads - 1 : 0, items.size() / 8);
    for (size_t t = 0; t < extra; ++t) helpers.emplace_back(worker);
    worker();
    for (auto& t : helpers) t.join();
  }

  // Pass 3: in capture-id order, the real classification against the ledger AND the round.
  for (size_t idx = 0; idx < items.size(); ++idx) {
    Item& item = items[idx];
    Converted& c = conv_items[idx];
    const CaptureId& id = item.id;
    const store::SpoolMeta& m = item.e.meta;
    if (bytes >= opt.round_max_bytes) {
      deferred.push_back(id);
      continue;
    }
    PoRcpts exp_po, dup_po;
    classify(item, round_keys, &exp_po, &dup_po);
    std::map<std::string, std::string> out;
    std::string unconvertible = c.unconvertible;
    bool io_failed = c.io_failed;
    if (exp_po != c.exp_po && unconvertible.empty() && !io_failed) {
      // An earlier copy of this message dropped out of the round: convert for the real set.
      Converted again;
      again.exp_po = exp_po;
      convert_item(item, &again);
      c.out = std::move(again.out);
      unconvertible = again.unconvertible;
      io_failed = again.io_failed;
    }
    if (unconvertible.empty() && !io_failed) out = std::move(c.out);
    if (!unconvertible.empty()) {
      Quarantine(id, m, "unconvertible: " + unconvertible);
      *did_work = true;
      continue;
    }
    if (io_failed) {
      deferred.push_back(id);
      retry_error = true;
      continue;
    }
    // Into the round.
    store::LedgerBatch* home = nullptr;  // where the capture id is recorded
    const std::string cid = id.ToString(), ckey = m.content_key.ToString();
    for (auto& [po, text] : out) {
      PoBatch& b = batches[po];
      b.ledger.post_office = po;
      if (!home) home = &b.ledger;
      bytes += text.size();
      b.content += text;
      for (const Rcpt* r : exp_po[po]) {
        b.entries.push_back(ManifestEntry{cid, ckey, r->addr.name, m.envelope_sender});
        b.ledger.deliveries.push_back({id, m.content_key, r->key, store::DeliveryKind::kExported});
        round_keys.insert({m.content_key, r->key});
        ++round_exported;
      }
    }
    if (!home) home = &nofile;
    home->capture_ids.push_back(id);
    for (const auto& [po, rs] : dup_po)
      for (const Rcpt* r : rs) {
        home->deliveries.push_back({id, m.content_key, r->key, store::DeliveryKind::kDup});
        ++round_dups;
      }
    done.push_back(id);
  }
  for (const auto& id : deferred) pending.insert(id);

  auto complete_claims = [&] {
    for (const auto& c : *claims) {
      if (Status s = table->Complete(*reg, c); !s.ok()) LogError("slot %u: %s", c.slot, s.ToString().c_str());
      CrashPoint(kCrashSlotFreed);
    }
    claims->clear();
  };
  auto abandon = [&](const std::vector<store::LedgerBatch>& lb, const std::string& why, bool fatal,
                     const Status& cause) -> Status {
    for (const auto& b : lb)
      if (!b.file_name.empty()) (void)outbox->Abandon(b.epoch ? b.epoch : ledger->epoch(), b.seq);
    for (const auto& id : done) pending.insert(id);
    {
      std::lock_guard<std::mutex> g(ctr_mu);
      ++ctr.abandoned;
    }
    complete_claims();  // the ids stay in `pending` and in spool/new: nothing is lost
    if (fatal) return cause.WithContext(why);
    if (cause.IsNoSpace()) round_cap = std::max<size_t>(1, done.size() / 2);
    Backoff(why + ": " + cause.ToString());
    return Status::Ok();
  };

  if (!done.empty()) {
    *did_work = true;
    std::vector<store::LedgerBatch> lb;
    uint64_t seq = 0;
    CCMAIL_RETURN_IF_ERROR(ledger->NextSeq(&seq));
    const uint64_t epoch = ledger->epoch();
    std::vector<const PoBatch*> order;
    for (auto& [po, b] : batches) {
      b.ledger.seq = seq++;
      b.ledger.epoch = epoch;
      b.ledger.file_name = BatchFileName(epoch, b.ledger.seq);
      order.push_back(&b);
    }
    if (!nofile.capture_ids.empty()) nofile.seq = seq++;
    // .part + manifest for every post office, all fsynced before the one commit.
    for (const PoBatch* b : order) {
      lb.push_back(b->ledger);
      Status s = outbox->WritePart(epoch, b->ledger.seq, b->ledger.post_office, b->content, b->entries);
      if (!s.ok()) return abandon(lb, "writing batch " + b->ledger.file_name + " failed, round abandoned", false, s);
    }
    if (!order.empty()) {
      Status s = outbox->SyncTmpDir();  // once for all .part files of the round
      if (!s.ok()) return abandon(lb, "fsync out/tmp failed, round abandoned", false, s);
    }
    if (!nofile.capture_ids.empty()) lb.push_back(nofile);
    Status cs = ledger->CommitBatches(&lb);
    if (!cs.ok()) {
      // A full ledger disk is back-pressure; anything else is treated like a crash.
      return abandon(lb, "ledger commit failed", !cs.IsNoSpace(), cs);
    }
    ResetBackoff();
    if (round_cap != 0 && (round_cap *= 2) >= opt.batch_max_messages) round_cap = 0;
    // Decision taken. Publish; a failure here is retried (and rolled forward by recovery).
    for (const auto& b : lb) {
      if (b.file_name.empty()) continue;
      Status ps = outbox->Publish(b.epoch, b.seq, b.post_office);
      if (!ps.ok()) {
        unpublished.push_back({b.epoch, b.seq, b.post_office});
        Backoff("publishing " + b.file_name + " failed (committed; will be retried): " + ps.ToString());
        continue;
      }
      QueueDeliver(b.post_office, b.file_name);
      LogDebug("published %s/%s: %zu deliveries", b.post_office.c_str(), b.file_name.c_str(), b.deliveries.size());
    }
    if (!order.empty()) {
      if (Status ts = outbox->SyncTmpDir(); !ts.ok()) LogWarning("fsync out/tmp after publishing: %s", ts.ToString().c_str());
    }
    bool all_removed = true;
    for (const auto& id : done) {
      Status rs = spool->Remove(id, false);
      if (!rs.ok() && !rs.IsNotFound()) {
        all_removed = false;
        LogWarning("capture %s exported but not unlinked (found again by the next scan): %s", id.ToString().c_str(),
                   rs.ToString().c_str());
      }
    }
    if (Status ss = spool->SyncNewDir(); !ss.ok()) {
      all_removed = false;
      LogWarning("fsync spool/new: %s", ss.ToString().c_str());
    }
    if (all_removed && unpublished.empty()) clean_seq = lb.back().seq;
    progress_ns = RealtimeNs();
    size_t files = 0;
    for (const auto& b : lb) files += b.file_name.empty() ? 0 : 1;
    {
      std::lock_guard<std::mutex> g(ctr_mu);
      ++ctr.rounds;
      ctr.batches += files;
      ctr.captures += done.size();
      ctr.exported += round_exported;
      ctr.dups += round_dups;
    }
    LogInfo("committed %zu capture(s) in %zu batch file(s) (seq %llu-%llu): %llu exported, %llu duplicate(s)",
            done.size(), files, static_cast<unsigned long long>(lb.front().seq),
            static_cast<unsigned long long>(lb.back().seq), static_cast<unsigned long long>(round_exported),
            static_cast<unsigned long long>(round_dups));
  }
  if (!known.empty()) {
    *did_work = true;
    for (const auto& id : known) {
      Status rs = spool->Remove(id, false);
      if (!rs.ok() && !rs.IsNotFound()) LogWarning("unlink exported capture %s: %s", id.ToString().c_str(), rs.ToString().c_str());
    }
    (void)spool->SyncNewDir();
    std::lock_guard<std::mutex> g(ctr_mu);
    ctr.skipped_known += known.size();
  }
  complete_claims();
  if (retry_error && done.empty()) Backoff("some captures could not be read or converted");
  return Status::Ok();
}

Status Exporter::Impl::RunOnce(bool* did_work) {
  *did_work = false;
  auto now = Clock::now();
  if (now < backoff_until) {
    auto wait = std::min<Clock::duration>(backoff_until - now, opt.doorbell_timeout);
    if (table)
      table->WaitDoorbell(table->DoorbellValue(), std::chrono::duration_cast<milliseconds>(wait) + milliseconds(1));
    else
      std::this_thread::sleep_for(wait);
    PublishState(false);
    return Status::Ok();
  }
  if (Status s = RetryUnpublished(); !s.ok()) {
    Backoff("publishing a committed batch failed: " + s.ToString());
    return Status::Ok();
  }
  uint64_t overflow = table ? table->Stats().overflow_count : 0;
  if (now >= next_scan || overflow != last_overflow || (draining && pending.empty())) {
    last_overflow = overflow;
    if (Status s = ScanSpool(); !s.ok()) LogWarning("spool scan: %s", s.ToString().c_str());
    Housekeeping();
  }
  MaybePrune();
  std::vector<shm::Claim> claims;
  uint32_t bell = table ? table->DoorbellValue() : 0;
  // Under sustained load the table alone could fill every round; captures that overflowed
  // the table (found by scans) get at least half of a round so they never starve.
  const size_t round_limit = RoundLimit();
  const size_t claim_max = std::max<size_t>(1, round_limit - std::min(pending.size(), round_limit / 2));
  if (table) table->ClaimReady(*reg, claim_max, &claims);
  if (!claims.empty()) CrashPoint(kCrashSlotClaimed);
  if (claims.empty() && pending.empty()) {
    PublishState(true);
    if (!draining) {
      if (table)
        table->WaitDoorbell(bell, opt.doorbell_timeout);
      else
        std::this_thread::sleep_for(opt.doorbell_timeout);
    }
    return Status::Ok();
  }
  // Group commit: give a small round batch_max_delay to fill up.
  if (!draining && table && opt.batch_max_delay.count() > 0 &&
      claims.size() + pending.size() < round_limit) {
    auto deadline = Clock::now() + opt.batch_max_delay;
    while (claims.size() + pending.size() < round_limit) {
      auto left = deadline - Clock::now();
      if (left <= Clock::duration::zero()) break;
      bell = table->DoorbellValue();
      if (claims.size() >= claim_max) break;
      size_t got = table->ClaimReady(*reg, claim_max - claims.size(), &claims);
      if (got) {
        CrashPoint(kCrashSlotClaimed);
        continue;
      }
      table->WaitDoorbell(bell, std::chrono::duration_cast<milliseconds>(left) + milliseconds(1));
    }
  }
  Status s = ProcessRound(&claims, did_work);
  PublishState(false);
  return s;
}

Status Exporter::Recover() { return impl_->Recover(); }
Status Exporter::RunOnce(bool* did_work) { return impl_->RunOnce(did_work); }

Status Exporter::Run(const std::atomic<bool>& stop, const std::function<void()>& heartbeat) {
  while (!stop.load()) {
    bool did = false;
    CCMAIL_RETURN_IF_ERROR(impl_->RunOnce(&did));
    if (heartbeat) heartbeat();
  }
  if (impl_->clean_seq > impl_->clean_seq_recorded) (void)impl_->ledger->SetSpoolCleanSeq(impl_->clean_seq);
  impl_->StopCloser();
  impl_->StopDeliverThread();
  return Status::Ok();
}

Status Exporter::Drain() {
  Impl* im = impl_.get();
  im->draining = true;
  int quiet = 0;
  for (;;) {
    bool did = false;
    Status s = im->RunOnce(&did);
    if (!s.ok()) {
      im->draining = false;
      return s;
    }
    bool backing_off = Clock::now() < im->backoff_until;
    if (!did && !backing_off && im->pending.empty() && im->unpublished.empty()) {
      // Nothing claimed and the scan that RunOnce forced found nothing: wait for the
      // deliver jobs that are due, then confirm with one more empty turn.
      if (im->DeliverIdle() && ++quiet >= 2) break;
      if (!im->DeliverIdle()) std::this_thread::sleep_for(milliseconds(20));
    } else {
      quiet = 0;
    }
  }
  im->draining = false;
  if (im->clean_seq > im->clean_seq_recorded) {
    CCMAIL_RETURN_IF_ERROR(im->ledger->SetSpoolCleanSeq(im->clean_seq));
    im->clean_seq_recorded = im->clean_seq;
  }
  im->StopCloser();  // the drain is over when the last spool file is really gone
  im->StopDeliverThread();
  return Status::Ok();
}

void Exporter::Reload(const format::FormatSettings& fmt, std::shared_ptr<const format::AddressMap> map) {
  std::lock_guard<std::mutex> g(impl_->cfg_mu);
  impl_->conv = std::make_shared<const format::Converter>(fmt);
  impl_->map = std::move(map);
}

uint64_t Exporter::epoch() const { return impl_->ledger->epoch(); }

ExporterCounters Exporter::counters() const {
  std::lock_guard<std::mutex> g(impl_->ctr_mu);
  return impl_->ctr;
}

uint64_t Exporter::backlog() const { return impl_->spool->Stats().count; }

}  // namespace ccmail::exporter
