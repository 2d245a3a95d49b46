// recovery.cpp - what the exporter does at every start, before its first round (docs/DESIGN.md §7).
// Every step is idempotent: a crash during recovery only means running it again.
#include "exporter_impl.h"

namespace ccmail::exporter {

Status Exporter::Impl::Recover() {
  RecoveryTally tally;
  // docs/DESIGN.md §7 step 4: fencing epoch.
  CCMAIL_RETURN_IF_ERROR(ledger->BumpEpoch(&tally.epoch));
  CCMAIL_RETURN_IF_ERROR(RecoverOutTmp(&tally));
  CCMAIL_RETURN_IF_ERROR(AdvanceLaggingWatermarks(tally.published));
  CCMAIL_RETURN_IF_ERROR(RecoverSpool(&tally));
  CCMAIL_RETURN_IF_ERROR(RecoverClaimTable(&tally));
  RequeuePublishedDeliveries(tally.published);
  StartDeliverThread();
  next_scan = Clock::now() + opt.spool_scan_interval;
  next_prune = Clock::now();
  progress_ns = WallClockNs();
  LogInfo("recovery done: epoch %llu, %zu batch(es) rolled forward, %zu uncommitted part file(s) deleted, "
          "%zu exported spool file(s) unlinked, %zu pending, %zu dead tmp file(s) removed, slots reset %u, freed %u",
          static_cast<unsigned long long>(tally.epoch), tally.rolled, tally.deleted, tally.unlinked, pending.size(),
          tally.removed_tmp, tally.slots_reset, tally.slots_freed);
  PublishState(false);
  return Status::Ok();
}

// docs/DESIGN.md §7 step 5: out/tmp. A .part of a committed batch is rolled forward, any other is deleted.
Status Exporter::Impl::RecoverOutTmp(RecoveryTally* tally) {
  std::vector<std::string> names;
  CCMAIL_RETURN_IF_ERROR(ListDir(outbox->TmpDir(), &names));
  for (const auto& part_name : names) {
    if (!EndsWith(part_name, ".part")) continue;
    const std::string base = part_name.substr(0, part_name.size() - 5);
    const std::string batch_name = EndsWith(base, ".MAN") ? base.substr(0, base.size() - 4) + ".CCM" : base;
    store::LedgerBatch batch;
    Status found = ledger->FindBatchByName(batch_name, &batch);
    if (found.ok() && !batch.post_office.empty()) {
      if (tally->published.insert(batch_name).second) {
        CCMAIL_RETURN_IF_ERROR(store::InjectedError(kCrashRecoveryRollforward, "recovery: roll forward " + batch_name));
        CCMAIL_RETURN_IF_ERROR(
            outbox->Publish(batch.epoch, batch.seq, batch.post_office).WithContext("roll forward " + batch_name));
        CrashPoint(kCrashRecoveryRollforward);
        ++tally->rolled;
        QueueDeliver(batch.post_office, batch_name);
      }
      continue;
    }
    if (!found.ok() && !found.IsNotFound()) return found;
    CCMAIL_RETURN_IF_ERROR(store::InjectedError(kCrashRecoveryRollforward, "recovery: delete uncommitted " + part_name));
    Status unlinked = io->Unlink(outbox->TmpDir() + "/" + part_name);
    if (!unlinked.ok() && !unlinked.IsNotFound()) return unlinked.WithContext("recovery: uncommitted part file");
    CrashPoint(kCrashRecoveryRollforward);
    ++tally->deleted;
  }
  if (tally->rolled || tally->deleted) CCMAIL_RETURN_IF_ERROR(io->FsyncDir(outbox->TmpDir()));
  return Status::Ok();
}

// A crash between the renames and the watermark leaves a published batch the consumer may
// not take yet: re-publish (idempotent) the newest batch of each post office.
Status Exporter::Impl::AdvanceLaggingWatermarks(const std::set<std::string>& published) {
  std::vector<store::LedgerBatch> latest;
  CCMAIL_RETURN_IF_ERROR(ledger->LatestBatchPerPostOffice(&latest));
  for (const auto& batch : latest) {
    Watermark wm;
    const std::string dir = outbox->PostOfficeDir(batch.post_office);
    const bool behind = !ReadWatermark(dir, &wm, outbox->relay_id()).ok() || wm.epoch < batch.epoch ||
                        (wm.epoch == batch.epoch && wm.seq < batch.seq);
    if (!behind) continue;
    if (Exists(dir + "/" + batch.file_name)) {
      CCMAIL_RETURN_IF_ERROR(
          outbox->Publish(batch.epoch, batch.seq, batch.post_office).WithContext("watermark " + batch.file_name));
      LogInfo("recovery: advanced the watermark of %s to %s", batch.post_office.c_str(), batch.file_name.c_str());
    } else if (!published.count(batch.file_name)) {
      LogWarning("recovery: batch %s of %s is in the ledger but neither in out/tmp nor in the outbox",
                 batch.file_name.c_str(), batch.post_office.c_str());
    }
  }
  return Status::Ok();
}

// docs/DESIGN.md §7 step 6: spool. Committed captures still in spool/new are an interrupted cleanup; the others
// are pending. Then the dead writers' tmp files and the recorded clean mark.
Status Exporter::Impl::RecoverSpool(RecoveryTally* tally) {
  // First the log segments of milters that died without checkpointing them (a crash, a power
  // loss): their captures' files in new/ may be missing or torn until this has run.
  store::WalReplayTally wal;
  CCMAIL_RETURN_IF_ERROR(spool->ReplayWal(
      [this](const CaptureId& id, bool* known) { return ledger->HasCapture(id, known); }, &wal));
  if (wal.segments > 0)
    LogInfo("recovery: replayed %llu spool log segment(s) of dead writers: %llu file(s) made durable, %llu "
            "restored, %llu already exported or quarantined, %llu torn record(s) (never acknowledged)",
            static_cast<unsigned long long>(wal.segments), static_cast<unsigned long long>(wal.made_durable),
            static_cast<unsigned long long>(wal.restored), static_cast<unsigned long long>(wal.already_done),
            static_cast<unsigned long long>(wal.torn));
  std::vector<CaptureId> ids;
  CCMAIL_RETURN_IF_ERROR(spool->ListPending(&ids));
  std::vector<char> in_ledger;
  CCMAIL_RETURN_IF_ERROR(ledger->HasCaptures(ids, &in_ledger));
  for (size_t i = 0; i < ids.size(); ++i) {
    const CaptureId& id = ids[i];
    if (!in_ledger[i]) {
      pending.insert(id);
      continue;
    }
    Status removed = store::InjectedError(kCrashRecoverySpoolUnlink, "recovery: unlink exported capture " + id.ToString());
    if (removed.ok()) removed = spool->Remove(id, false);
    if (!removed.ok() && !removed.IsNotFound()) return removed;
    CrashPoint(kCrashRecoverySpoolUnlink);
    ++tally->unlinked;
  }
  if (tally->unlinked) CCMAIL_RETURN_IF_ERROR(spool->SyncNewDir());
  CCMAIL_RETURN_IF_ERROR(
      spool->CleanTmp([this](const std::string& tag) { return WriterIsLive(tag); }, &tally->removed_tmp));
  store::LedgerCounters counters;
  CCMAIL_RETURN_IF_ERROR(ledger->Counters(&counters));
  clean_seq = counters.last_seq;
  clean_seq_recorded = counters.spool_clean_seq;
  if (clean_seq > clean_seq_recorded) {
    CCMAIL_RETURN_IF_ERROR(ledger->SetSpoolCleanSeq(clean_seq));
    clean_seq_recorded = clean_seq;
  }
  return Status::Ok();
}

// docs/DESIGN.md §7 step 7: the table. R2 (our predecessor's claims), R3 (already exported), R1 (dead milters).
// Done here, after the epoch bump, and nowhere else at start, so the counts are what changed.
Status Exporter::Impl::RecoverClaimTable(RecoveryTally* tally) {
  if (!table || !reg) return Status::Ok();
  CCMAIL_RETURN_IF_ERROR(store::InjectedError(kCrashRecoverySlotsReset, "recovery: R2 on the claim table"));
  tally->slots_reset = ReturnPredecessorClaims();
  CrashPoint(kCrashRecoverySlotsReset);
  tally->slots_freed = table->FreeReadyIf(*reg, [this](const shm::CaptureBytes& bytes) {
    CaptureId id;
    id.bytes = bytes;
    bool known = false;
    return ledger->HasCapture(id, &known).ok() && known;
  });
  table->RecoverDeadOwners(*reg);
  last_overflow = table->Stats().overflow_count;
  return Status::Ok();
}

// Batches already published but maybe not delivered before the restart: run the
// deliver_command again (its job must skip batch names it already imported, docs/DESIGN.md §6.7).
void Exporter::Impl::RequeuePublishedDeliveries(const std::set<std::string>& published) {
  if (opt.deliver_command.empty()) return;
  std::vector<std::string> post_offices;
  if (!ListDir(outbox->OutboxDir(), &post_offices).ok()) return;
  for (const auto& post_office : post_offices) {
    if (!ValidPostOfficeName(post_office)) continue;
    const std::string dir = outbox->PostOfficeDir(post_office);
    std::vector<std::string> files;
    if (!ListDir(dir, &files).ok()) continue;
    for (const auto& file : files)
      if (EndsWith(file, ".CCM") && !published.count(file) && Exists(dir + "/" + ManifestFileName(file)))
        QueueDeliver(post_office, file);
  }
}

}  // namespace ccmail::exporter
