// exporter.cpp - Exporter::Open, one loop turn (RunOnce), Run/Drain and the public methods;
// recovery.cpp holds the start-up recovery (docs/DESIGN.md §7), round.cpp one export round (docs/DESIGN.md §6).
//
// The order of durable steps in one round is the whole exactly-once argument:
//   .part files fsynced -> ONE ledger transaction (the decision) -> publish (rename, dir
//   fsync, watermark) -> unlink spool files -> free slots.
// Everything before the commit is redone after a crash (the .part is deleted at recovery,
// the captures are still in spool/new); everything after it is rolled forward by recovery
// (committed .part published, spool files of committed captures unlinked).
#include "ccmail/exporter/exporter.h"

#include <thread>

#include "ccmail/common/log.h"
#include "ccmail/config/config.h"
#include "ccmail/config/ledger_target.h"
#include "ccmail/exporter/ledger_guard.h"
#include "ccmail/shm/crash_points.h"
#include "exporter_impl.h"

namespace ccmail::exporter {

const std::vector<std::string>& ExporterCrashPoints() {
  static const std::vector<std::string> kPoints = {
      // Recover()
      store::kCrashLedgerEpoch, kCrashRecoveryRollforward, kCrashRecoverySpoolUnlink, kCrashRecoverySlotsReset,
      shm::kCrashReadyFree,
      // RunOnce(): MaybePrune, then one round
      store::kCrashPrune, shm::kCrashSlotClaimed, kCrashRoundConverted, kCrashQuarantined,
      kCrashBatchManifestWritten, kCrashBatchManifestFsynced, kCrashBatchPartWritten, kCrashBatchPartFsynced,
      kCrashBatchTmpdirFsynced, store::kCrashLedgerCommitBefore, store::kCrashLedgerCommitAfter, kCrashBatchRenamed,
      kCrashBatchDirFsynced, kCrashWatermarkWritten, kCrashWatermarkFsynced, kCrashWatermarkRenamed,
      kCrashWatermarkDirFsynced, store::kCrashSpoolUnlinked, store::kCrashSpoolUnlinkDirFsynced, shm::kCrashSlotFreed,
  };
  return kPoints;
}

Status ExporterOptions::FromConfig(const Config& cfg, ExporterOptions* out) {
  ExporterOptions o;
  CCMAIL_RETURN_IF_ERROR(BridgePaths::FromConfig(cfg, &o.paths));
  CCMAIL_RETURN_IF_ERROR(LedgerTargetFromConfig(cfg, o.paths, &o.ledger));
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
  if (o.dedup_window < kMinDedupWindow)
    return Status::InvalidArgument(cfg.Where("dedup_window") + ": dedup_window: " + cfg.GetRaw("dedup_window") +
                                   " is shorter than an MTA keeps retrying (5d by default): a retry after it would be "
                                   "exported twice; at least 5d");
  CCMAIL_RETURN_IF_ERROR(cfg.GetString("deliver_command", &o.deliver_command));
  milliseconds d;
  CCMAIL_RETURN_IF_ERROR(cfg.GetDuration("deliver_retry_min", &d));
  o.deliver_retry_min_s = std::max<long>(1, static_cast<long>(d.count() / 1000));
  CCMAIL_RETURN_IF_ERROR(cfg.GetDuration("deliver_retry_max", &d));
  o.deliver_retry_max_s = std::max<long>(o.deliver_retry_min_s, static_cast<long>(d.count() / 1000));
  CCMAIL_RETURN_IF_ERROR(cfg.GetString("bounce_relay", &o.bounce_relay));
  BounceRelay relay;
  CCMAIL_RETURN_IF_ERROR(BounceRelay::Parse(o.bounce_relay, &relay));
  CCMAIL_RETURN_IF_ERROR(cfg.GetBool("notify_sender_on_quarantine", &o.notify_sender_on_quarantine));
  if (o.spool_scan_interval.count() <= 0) o.spool_scan_interval = milliseconds(2000);
  o.convert_threads = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 4);
  *out = std::move(o);
  return Status::Ok();
}

Exporter::Exporter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Exporter::~Exporter() = default;

Status Exporter::Open(ExporterOptions opt, std::unique_ptr<Exporter>* out) {
  auto im = std::make_unique<Impl>();
  im->io = opt.io ? opt.io : &store::DurableIo::Real();
  const BridgePaths& p = opt.paths;
  bool created = false;
  // The lock comes first: a second exporter must not touch anything else.
  CCMAIL_RETURN_IF_ERROR(im->io->MakeDir(p.spool_directory, 0750, &created));
  CCMAIL_RETURN_IF_ERROR(AcquireExporterLock(p.exporter_lock, &im->lock));
  // The runtime directory holds no durable state (claim table file, the pid file).
  CCMAIL_RETURN_IF_ERROR(im->io->MakeDir(p.runtime_directory, 0750, &created));
  // Checked against the outbox's history first: a lost, older or damaged ledger is refused.
  if (opt.ledger.location.empty()) opt.ledger = SqliteLedgerTarget(p);
  CCMAIL_RETURN_IF_ERROR(OpenCheckedLedger(p, opt.ledger, &im->ledger));
  CCMAIL_RETURN_IF_ERROR(store::Spool::Open(p.spool_root, &im->spool, im->io));
  // Bounces wait in spool_directory/bounce until the MTA's 250 (bounce.h).
  BounceRelay relay;
  CCMAIL_RETURN_IF_ERROR(BounceRelay::Parse(opt.bounce_relay, &relay));
  CCMAIL_RETURN_IF_ERROR(BounceQueue::Open(p.spool_directory + "/bounce", relay,
                                           std::chrono::seconds(opt.deliver_retry_min_s),
                                           std::chrono::seconds(opt.deliver_retry_max_s), &im->bounces));
  im->bounces->Start();
  im->outbox = std::make_unique<Outbox>(p.out_tmp, p.outbox_directory, im->io);
  im->outbox->set_relay_id(im->ledger->relay_id());  // names unique across relays
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
  if (!im->table) return Status::Unavailable("claim table " + shm::ClaimTable::TablePath(im->opt.table) + " cannot be opened");
  out->reset(new Exporter(std::move(im)));
  return Status::Ok();
}

Status Exporter::Impl::RunOnce(bool* did_work) {
  *did_work = false;
  RetryUnfreed();
  auto now = Clock::now();
  if (now < backoff_until) {
    if (!cm_ids.empty()) CCMAIL_RETURN_IF_ERROR(WaitCommitter());  // its slots, before the pause
    auto wait = std::min<Clock::duration>(backoff_until - now, opt.doorbell_timeout);
    if (table)
      table->WaitDoorbell(table->DoorbellValue(), std::chrono::duration_cast<milliseconds>(wait) + milliseconds(1));
    else
      std::this_thread::sleep_for(wait);
    PublishState(false);
    return Status::Ok();
  }
  // A committed batch whose rename failed: the committer may be publishing to the same
  // post office (its watermark), so it finishes first.
  if (!unpublished.empty()) CCMAIL_RETURN_IF_ERROR(WaitCommitter());
  if (Status s = RetryUnpublished(); !s.ok()) {
    Backoff("publishing a committed batch failed: " + s.ToString());
    return Status::Ok();
  }
  uint64_t overflow = table ? table->Stats().overflow_count : 0;
  if (now >= next_scan || overflow != last_overflow || (draining && pending.empty())) {
    last_overflow = overflow;
    if (Status s = ScanSpool(); !s.ok()) LogWarning("spool scan: %s", s.ToString().c_str());
    CCMAIL_RETURN_IF_ERROR(Housekeeping());
  }
  CCMAIL_RETURN_IF_ERROR(MaybePrune());
  std::vector<shm::Claim> claims;
  uint32_t bell = table ? table->DoorbellValue() : 0;
  // Under sustained load the table alone could fill every round; captures that overflowed
  // the table (found by scans) get at least half of a round so they never starve.
  const size_t round_limit = RoundLimit();
  const size_t claim_max = std::max<size_t>(1, round_limit - std::min(pending.size(), round_limit / 2));
  if (table) table->ClaimReady(*reg, claim_max, &claims);
  if (claims.empty() && pending.empty() && !cm_ids.empty()) {
    // Nothing new to prepare: finish the round in flight and apply its outcome (its slots are
    // freed, an abandoned round's captures come back) before going idle.
    CCMAIL_RETURN_IF_ERROR(WaitCommitter());
    *did_work = true;
    PublishState(false);
    return Status::Ok();
  }
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
      if (got) continue;
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
  CCMAIL_RETURN_IF_ERROR(impl_->WaitCommitter());
  impl_->committer.Stop();
  if (impl_->clean_seq > impl_->clean_seq_recorded) (void)impl_->ledger->SetSpoolCleanSeq(impl_->clean_seq);
  impl_->closer.Stop();
  impl_->StopDeliverThread();
  return Status::Ok();
}

namespace {
constexpr int kDrainGiveUpTurns = 6;
}  // namespace

Status Exporter::Drain() {
  Impl* im = impl_.get();
  im->draining = true;
  im->stuck_turns = 0;  // every drain tries again
  int quiet = 0;
  for (;;) {
    bool did = false;
    Status s = im->RunOnce(&did);
    if (!s.ok()) {
      im->draining = false;
      return s;
    }
    // The daemon retries an unreadable capture for ever (an administrator fixes the cause),
    // but a drain must end: after kDrainGiveUpTurns tries in a row (~6 s of back-off) it
    // reports what is stuck; the captures stay in spool/new.
    if (im->stuck_turns >= kDrainGiveUpTurns) {
      im->draining = false;
      CCMAIL_RETURN_IF_ERROR(im->WaitCommitter());
      return Status::Unavailable("drain gave up after " + std::to_string(im->stuck_turns) +
                                 " tries: capture(s) that cannot be read or converted stay in spool/new (" +
                                 im->retry_why + ")");
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
  CCMAIL_RETURN_IF_ERROR(im->WaitCommitter());
  im->committer.Stop();
  if (im->clean_seq > im->clean_seq_recorded) {
    CCMAIL_RETURN_IF_ERROR(im->ledger->SetSpoolCleanSeq(im->clean_seq));
    im->clean_seq_recorded = im->clean_seq;
  }
  im->closer.Stop();  // the drain is over when the last spool file is really gone
  im->StopDeliverThread();
  return Status::Ok();
}

void Exporter::Reload(const format::FormatSettings& fmt, std::shared_ptr<const format::AddressMap> map) {
  std::lock_guard<std::mutex> g(impl_->cfg_mu);
  impl_->conv = std::make_shared<const format::Converter>(fmt);
  impl_->map = std::move(map);
}

uint64_t Exporter::epoch() const { return impl_->ledger->epoch(); }
const char* Exporter::ledger_backend() const { return impl_->ledger->backend(); }

ExporterCounters Exporter::counters() const {
  std::lock_guard<std::mutex> g(impl_->ctr_mu);
  return impl_->ctr;
}

uint64_t Exporter::backlog() const { return impl_->spool->Stats().count; }

}  // namespace ccmail::exporter
