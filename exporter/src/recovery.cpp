// recovery.cpp - what the exporter does at every start, before its first round (design 5.7).
// Every step is idempotent: a crash during recovery only means running it again.
#include "exporter_impl.h"

namespace ccmail::exporter {

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
        CCMAIL_RETURN_IF_ERROR(store::InjectedError(kCrashRecoveryRollforward, "recovery: roll forward " + batch));
        CCMAIL_RETURN_IF_ERROR(outbox->Publish(b.epoch, b.seq, b.post_office).WithContext("roll forward " + batch));
        CrashPoint(kCrashRecoveryRollforward);
        ++rolled;
        QueueDeliver(b.post_office, batch);
      }
      continue;
    }
    if (!s.ok() && !s.IsNotFound()) return s;
    CCMAIL_RETURN_IF_ERROR(store::InjectedError(kCrashRecoveryRollforward, "recovery: delete uncommitted " + n));
    Status us = io->Unlink(outbox->TmpDir() + "/" + n);
    if (!us.ok() && !us.IsNotFound()) return us.WithContext("recovery: uncommitted part file");
    CrashPoint(kCrashRecoveryRollforward);
    ++deleted;
  }
  if (rolled || deleted) CCMAIL_RETURN_IF_ERROR(io->FsyncDir(outbox->TmpDir()));
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
    Status s = store::InjectedError(kCrashRecoverySpoolUnlink, "recovery: unlink exported capture " + id.ToString());
    if (s.ok()) s = spool->Remove(id, false);
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
    CCMAIL_RETURN_IF_ERROR(store::InjectedError(kCrashRecoverySlotsReset, "recovery: R2 on the claim table"));
    r2 = table->RecoverPreviousExporter(*reg);
    CrashPoint(kCrashRecoverySlotsReset);
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
  progress_ns = WallClockNs();
  LogInfo("recovery done: epoch %llu, %zu batch(es) rolled forward, %zu uncommitted part file(s) deleted, "
          "%zu exported spool file(s) unlinked, %zu pending, %zu dead tmp file(s) removed, slots reset %u, freed %u",
          static_cast<unsigned long long>(epoch), rolled, deleted, unlinked, pending.size(), removed_tmp, r2, r3);
  PublishState(false);
  return Status::Ok();
}

}  // namespace ccmail::exporter
