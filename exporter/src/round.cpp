// round.cpp - one export round (docs/DESIGN.md §6), in two halves:
//
//   main thread (ProcessRound): gather the ids, open + verify + resolve each capture, convert
//     (on a few threads), then WAIT for the committer's previous round, then ask the ledger
//     (known capture ids, exported (content key, recipient) pairs), classify in capture-id
//     order and build one batch per post office;
//   committer thread (CommitRound): write the .part files, ONE ledger commit, publish, unlink
//     the spool files; the loop thread frees the slots when it collects the outcome.
//
// Only the reading and converting of round N+1 overlap with the committing of round N. Every
// ledger question about round N+1 is asked after round N is committed or abandoned, so the
// de-duplication sees exactly what a sequential loop would see; when round N is abandoned,
// the round prepared behind it is dropped too (its ids go back to `pending`), so the retry
// starts again from the oldest capture with the halved round size.
#include "exporter_impl.h"

namespace ccmail::exporter {

namespace {

// Descriptors: a round in preparation and the round in the committer hold at most this many
// each, the closer's queue gets the rest of kMaxOpenTotal (under the usual limit of 1,024).
constexpr size_t kMaxOpenPerRound = 400;
constexpr size_t kMaxOpenTotal = 960;

}  // namespace

void OpenAndResolve(store::Spool& spool, const format::AddressMap* amap, const std::vector<CaptureId>& ids,
                    uint64_t round_max_bytes, size_t max_open, RoundPrep* r) {
  uint64_t opened_bytes = 0;
  for (const CaptureId& id : ids) {
    if (id.IsZero()) continue;
    // Each opened capture holds a descriptor (and its bytes) until the round is committed:
    // bound both (batch_max_messages may be set far above the usual fd limit of 1024).
    if (opened_bytes >= round_max_bytes || r->items.size() >= max_open) {
      r->deferred.push_back(id);
      continue;
    }
    RoundItem item;
    item.id = id;
    Status s = spool.VerifyOnly(id, &item.entry);
    if (!s.ok() && !s.IsCorrupt() && !s.IsNotFound()) {
      LogWarning("capture %s: cannot open: %s", id.ToString().c_str(), s.ToString().c_str());
      r->deferred.push_back(id);
      if (!r->retry_error) r->retry_why = "capture " + id.ToString() + ": cannot open: " + s.ToString();
      r->retry_error = true;
      continue;
    }
    item.open_status = s;
    if (s.ok()) {
      const store::SpoolMeta& m = item.entry.meta;
      // Recipients grouped per post office; resolution was done at capture time, the
      // address map only fills in what the capture could not resolve.
      std::set<std::string> seen;
      for (const auto& rc : m.recipients) {
        format::CcMailAddress a{rc.ccmail_name, ToUpperAscii(rc.post_office)};
        if ((a.name.empty() || a.post_office.empty()) && amap) {
          if (auto res = amap->Resolve(rc.smtp_address)) a = {res->name, ToUpperAscii(res->post_office)};
        }
        if (a.name.empty() || a.post_office.empty()) {
          item.unusable = "recipient <" + rc.smtp_address + "> has no cc:Mail name and post office";
          break;
        }
        // The address map's export rule (the milter applies it at RCPT; a capture from an older
        // milter may still break it).
        std::string why;
        if (!ValidPostOfficeName(a.post_office) || !format::PostOfficeNameUsable(a.post_office, &why)) {
          item.unusable = "post office '" + a.post_office + "' of <" + rc.smtp_address + "> is not a usable name" +
                   (why.empty() ? "" : " (" + why + ")");
          break;
        }
        if (!format::CcMailNameUsable(a.name, false, &why)) {
          item.unusable = "cc:Mail name '" + a.name + "' of <" + rc.smtp_address + "> is not usable (" + why + ")";
          break;
        }
        std::string key = a.name + " at " + a.post_office;
        if (!seen.insert(key).second) continue;  // two addresses of one cc:Mail user: one delivery
        item.by_post_office[a.post_office].push_back(RoundRcpt{rc.smtp_address, a, key});
      }
      if (item.unusable.empty() && item.by_post_office.empty()) item.unusable = "no cc:Mail recipient";
      if (item.unusable.empty()) opened_bytes += item.entry.message_length;
    }
    r->items.push_back(std::move(item));
  }
}

void ClassifyItem(const RoundItem& item, const KeySet& round_keys, const KeySet& ledger_keys, PoRcpts* expected_post_office,
                  PoRcpts* duplicate_post_office) {
  for (const auto& [post_office, rs] : item.by_post_office)
    for (const auto& r : rs) {
      std::pair<ContentKey, std::string> k{item.entry.meta.content_key, r.key};
      bool exported = round_keys.count(k) > 0 || ledger_keys.count(k) > 0;
      ((exported ? *duplicate_post_office : *expected_post_office)[post_office]).push_back(&r);
    }
}

// One parse per message for all its post offices (ConvertForEach), from the bytes read to
// check the spool CRC when the file was small enough to be read whole.
void ConvertItem(const format::Converter& cv, RoundItem* item) {
  item->out.clear();
  item->unconvertible.clear();
  item->io_failed = false;
  if (item->expected_post_office.empty()) return;
  const store::SpoolMeta& m = item->entry.meta;
  format::ConvertInput in;
  in.fd = item->entry.fd.get();
  in.offset = item->entry.message_offset;
  in.length = item->entry.message_length;
  in.data = item->entry.message_data();
  in.envelope_sender = m.envelope_sender;
  in.received = static_cast<time_t>(m.received_ms / 1000);
  in.log_id = item->id.ToString();
  std::vector<format::StringSink> sinks(item->expected_post_office.size());
  std::vector<format::ConvertTarget> targets;
  targets.reserve(item->expected_post_office.size());
  size_t i = 0;
  for (const auto& [post_office, rs] : item->expected_post_office) {
    format::ConvertTarget t;
    for (const RoundRcpt* r : rs) t.recipients.push_back({r->smtp, r->addr});
    t.out = &sinks[i++];
    targets.push_back(std::move(t));
  }
  Status cs = cv.ConvertForEach(in, targets);
  if (format::IsUnconvertible(cs)) {
    item->unconvertible = cs.message();
    return;
  }
  if (!cs.ok()) {
    LogWarning("capture %s: conversion failed, retrying later: %s", item->id.ToString().c_str(), cs.ToString().c_str());
    item->io_failed = true;
    return;
  }
  i = 0;
  for (const auto& [post_office, rs] : item->expected_post_office) item->out[post_office] = std::move(sinks[i++].str());
}

// Conversion is independent per message and is the largest CPU cost of a round, so it runs
// on a few threads over a TENTATIVE classification: as if no recipient were in the ledger
// and every earlier capture of the round gets in. ClassifyRound classifies again with the
// ledger and the captures that really made it, and converts again in the rare case the
// answer changed (a duplicate), so the result is the sequential one.
void ConvertRound(const format::Converter& cv, size_t threads, std::vector<RoundItem>* items) {
  const KeySet none;
  KeySet tentative;
  std::vector<RoundItem*> work;
  for (RoundItem& item : *items) {
    if (!item.open_status.ok() || !item.unusable.empty()) continue;
    ClassifyItem(item, tentative, none, &item.expected_post_office, &item.duplicate_post_office);
    for (const auto& [post_office, rs] : item.expected_post_office)
      for (const RoundRcpt* r : rs) tentative.insert({item.entry.meta.content_key, r->key});
    work.push_back(&item);
  }
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next.fetch_add(1); i < work.size(); i = next.fetch_add(1)) ConvertItem(cv, work[i]);
  };
  std::vector<std::thread> helpers;
  size_t extra = std::min<size_t>(threads > 0 ? threads - 1 : 0, work.size() / 8);
  for (size_t t = 0; t < extra; ++t) helpers.emplace_back(worker);
  worker();
  for (auto& t : helpers) t.join();
}

RoundPlan ClassifyRound(const format::Converter& cv, const std::vector<char>& in_ledger, const KeySet& ledger_keys,
                        uint64_t round_max_bytes, std::vector<RoundItem>* items) {
  RoundPlan plan;
  plan.job = std::make_unique<CommitJob>();
  CommitJob* job = plan.job.get();
  KeySet round_keys;
  uint64_t bytes = 0;
  for (size_t idx = 0; idx < items->size(); ++idx) {
    RoundItem& item = (*items)[idx];
    const CaptureId& id = item.id;
    if (in_ledger[idx]) {
      plan.known.push_back(id);
      continue;
    }
    if (item.open_status.IsNotFound()) continue;  // a stale slot, or already handled
    if (!item.open_status.ok()) {  // corrupt: what Spool::OpenEntry does
      plan.corrupt.push_back(idx);
      continue;
    }
    const store::SpoolMeta& m = item.entry.meta;
    if (!item.unusable.empty()) {
      plan.quarantine.emplace_back(idx, item.unusable);
      continue;
    }
    if (bytes >= round_max_bytes) {
      plan.deferred.push_back(id);
      continue;
    }
    PoRcpts expected_post_office, duplicate_post_office;
    ClassifyItem(item, round_keys, ledger_keys, &expected_post_office, &duplicate_post_office);
    if (expected_post_office != item.expected_post_office && item.unconvertible.empty() && !item.io_failed) {
      // A duplicate (in the ledger, or an earlier copy in this round) or an earlier copy that
      // dropped out of the round: convert for the real set.
      item.expected_post_office = expected_post_office;
      ConvertItem(cv, &item);
    }
    if (!item.unconvertible.empty()) {
      plan.quarantine.emplace_back(idx, "unconvertible: " + item.unconvertible);
      continue;
    }
    if (item.io_failed) {
      plan.deferred.push_back(id);
      if (!plan.retry_error) plan.retry_why = "capture " + id.ToString() + ": conversion failed (I/O)";
      plan.retry_error = true;
      continue;
    }
    // Into the round.
    store::LedgerBatch* home = nullptr;  // where the capture id is recorded
    const std::string cid = id.ToString(), ckey = m.content_key.ToString();
    for (auto& [post_office, text] : item.out) {
      PoBatch& b = job->batches[post_office];
      b.ledger.post_office = post_office;
      if (!home) home = &b.ledger;
      bytes += text.size();
      b.content += text;
      for (const RoundRcpt* r : expected_post_office[post_office]) {
        b.entries.push_back(ManifestEntry{cid, ckey, r->addr.name, m.envelope_sender});
        b.ledger.deliveries.push_back({id, m.content_key, r->key, store::DeliveryKind::kExported});
        round_keys.insert({m.content_key, r->key});
        ++job->exported;
      }
    }
    item.out.clear();
    if (!home) home = &job->nofile;
    home->capture_ids.push_back(id);
    for (const auto& [post_office, rs] : duplicate_post_office)
      for (const RoundRcpt* r : rs) {
        home->deliveries.push_back({id, m.content_key, r->key, store::DeliveryKind::kDup});
        ++job->dups;
      }
    job->done.push_back(id);
    job->fds.push_back(std::move(item.entry.fd));
  }
  return plan;
}

Status Exporter::Impl::WaitCommitter(bool* abandoned) {
  if (abandoned) *abandoned = false;
  CommitOutcome out = committer.Take();
  if (!out.committed && !out.abandoned) return Status::Ok();  // nothing was in flight
  cm_ids.clear();
  cm_fds = 0;
  for (const auto& id : out.returned) pending.insert(id);
  for (auto& u : out.unpublished) unpublished.push_back(std::move(u));
  CompleteClaims(&cm_claims);
  if (out.abandoned) {
    if (abandoned) *abandoned = true;
    {
      std::lock_guard<std::mutex> g(ctr_mu);
      ++ctr.abandoned;
    }
    if (out.fatal) return out.cause.WithContext(out.why);
    if (out.cause.IsNoSpace()) round_cap = std::max<size_t>(1, out.done / 2);
    Backoff(out.why + ": " + out.cause.ToString());
    return Status::Ok();
  }
  ResetBackoff();
  for (const auto& w : out.warnings) Backoff(w);
  if (out.clean_seq && unpublished.empty()) clean_seq = std::max(clean_seq, out.clean_seq);
  progress_ns = WallClockNs();
  return Status::Ok();
}

namespace {

// Numbers the round's batch files from the ledger's next seq and lists the ledger rows in
// commit order: one batch per post office (in `order`), then the captures with no file.
Status NumberBatches(store::Ledger& ledger, CommitJob* job, std::vector<const PoBatch*>* order,
                     std::vector<store::LedgerBatch>* lb) {
  uint64_t seq = 0;
  CCMAIL_RETURN_IF_ERROR(ledger.NextSeq(&seq));
  const uint64_t epoch = ledger.epoch();
  for (auto& [post_office, b] : job->batches) {
    b.ledger.seq = seq++;
    b.ledger.epoch = epoch;
    b.ledger.file_name = BatchFileName(epoch, b.ledger.seq, ledger.relay_id());
    order->push_back(&b);
    lb->push_back(b.ledger);
  }
  if (!job->nofile.capture_ids.empty()) {
    job->nofile.seq = seq++;
    lb->push_back(job->nofile);
  }
  return Status::Ok();
}

// .part + manifest for every post office, then ONE fsync of out/tmp. *written counts the
// batches whose .part files may exist (to abandon them); *why says which step failed.
Status WriteParts(Outbox& outbox, uint64_t epoch, const std::vector<const PoBatch*>& order, size_t* written,
                  std::string* why) {
  for (const PoBatch* b : order) {
    ++*written;
    Status s = outbox.WritePart(epoch, b->ledger.seq, b->ledger.post_office, b->content, b->entries);
    if (!s.ok()) {
      *why = "writing batch " + b->ledger.file_name + " failed, round abandoned";
      return s;
    }
  }
  if (order.empty()) return Status::Ok();
  Status s = outbox.SyncTmpDir();  // once for all .part files of the round
  if (!s.ok()) *why = "fsync out/tmp failed, round abandoned";
  return s;
}

// Runs `beside` on a helper thread while `here` runs on this one (both on this thread, one
// after the other, when no thread can be started).
template <typename Beside, typename Here>
void RunBeside(Beside beside, Here here) {
  std::thread helper;
  try {
    helper = std::thread(beside);
  } catch (const std::system_error& err) {
    LogWarning("no thread for the ledger inserts (%s): staged before the batch files are written", err.what());
    beside();
  }
  here();
  if (helper.joinable()) helper.join();
}

void CloseRoundFds(Closer& closer, CommitJob* job) {
  for (auto& fd : job->fds) closer.Queue(std::move(fd));
  job->fds.clear();
}

// Publishes each committed batch file; the ones that could not be are listed in `out` (the
// loop thread retries them), the published ones in *published.
void PublishBatches(Outbox& outbox, const std::vector<store::LedgerBatch>& lb, bool any_file, CommitOutcome* out,
                    std::vector<const store::LedgerBatch*>* published) {
  for (const auto& b : lb) {
    if (b.file_name.empty()) continue;
    Status ps = outbox.Publish(b.epoch, b.seq, b.post_office);
    if (!ps.ok()) {
      out->unpublished.push_back({b.epoch, b.seq, b.post_office});
      out->warnings.push_back("publishing " + b.file_name + " failed (committed; will be retried): " + ps.ToString());
      continue;
    }
    published->push_back(&b);
    LogDebug("published %s/%s: %zu deliveries", b.post_office.c_str(), b.file_name.c_str(), b.deliveries.size());
  }
  if (any_file) {
    if (Status ts = outbox.SyncTmpDir(); !ts.ok()) LogWarning("fsync out/tmp after publishing: %s", ts.ToString().c_str());
  }
}

// Unlinks the committed captures' spool files and fsyncs spool/new; false when one is left
// (the next scan finds it, the ledger knows it).
bool UnlinkCommitted(store::Spool& spool, const CommitJob& job) {
  bool all_removed = true;
  for (const auto& id : job.done) {
    Status rs = spool.Remove(id, false);
    if (!rs.ok() && !rs.IsNotFound()) {
      all_removed = false;
      LogWarning("capture %s exported but not unlinked (found again by the next scan): %s", id.ToString().c_str(),
                 rs.ToString().c_str());
    }
  }
  if (Status ss = spool.SyncNewDir(); !ss.ok()) {
    all_removed = false;
    LogWarning("fsync spool/new: %s", ss.ToString().c_str());
  }
  return all_removed;
}

// A round the ledger did not record that the loop may simply redo (after the back-off).
bool IsRetriableCommitFailure(const Status& s) {
  return s.IsNoSpace() || s.code() == Status::Code::kAlreadyExists || s.code() == Status::Code::kUnavailable;
}

// Logs the committed round; returns its number of batch files.
size_t LogCommitted(const CommitJob& job, const std::vector<store::LedgerBatch>& lb) {
  size_t files = 0;
  for (const auto& b : lb) files += b.file_name.empty() ? 0 : 1;
  LogInfo("committed %zu capture(s) in %zu batch file(s) (seq %llu-%llu): %llu exported, %llu duplicate(s)",
          job.done.size(), files, static_cast<unsigned long long>(lb.front().seq),
          static_cast<unsigned long long>(lb.back().seq), static_cast<unsigned long long>(job.exported),
          static_cast<unsigned long long>(job.dups));
  return files;
}

}  // namespace

// The commit point, staged: the ledger rows are inserted (BEGIN + INSERTs, nothing durable
// or visible) on a helper thread while this thread writes and fsyncs the .part files; the
// COMMIT runs only once they are durable, so a recorded delivery always has its batch file.
CommitOutcome Exporter::Impl::CommitRound(CommitJob* job) {
  CommitOutcome out;
  out.done = job->done.size();
  std::vector<store::LedgerBatch> lb;
  size_t parts_written = 0;
  auto abandon = [&](const std::string& why, bool fatal, const Status& cause) {
    // A fatal abandon keeps the .part files: whether the round is decided is the ledger's to
    // say, and recovery (the restart) rolls a decided one forward from them.
    if (!fatal)
      for (size_t i = 0; i < parts_written; ++i)
        (void)outbox->Abandon(lb[i].epoch ? lb[i].epoch : ledger->epoch(), lb[i].seq);
    out.abandoned = true;
    out.fatal = fatal;
    out.cause = cause;
    out.why = why;
    out.returned = job->done;  // they stay in spool/new: nothing is lost
    CloseRoundFds(closer, job);
    return out;
  };
  std::vector<const PoBatch*> order;
  if (Status s = NumberBatches(*ledger, job, &order, &lb); !s.ok())
    return abandon("allocating a batch number failed", true, s);
  Status staged;
  std::string write_why;
  Status written;
  RunBeside([&] { staged = ledger->StageBatches(lb); },
            [&] { written = WriteParts(*outbox, ledger->epoch(), order, &parts_written, &write_why); });
  if (!written.ok()) {
    ledger->AbortStaged();
    return abandon(write_why, false, written);
  }
  Status cs = staged.ok() ? ledger->CommitStaged(&lb) : staged;
  if (!cs.ok()) {
    // A COMMIT reported as failed may still be durable (an error after the commit record was
    // written): the ledger, not the status, says whether the round is decided. Abandoning a
    // decided round would delete the .part files it is published from, and its captures,
    // found in the ledger, would be unlinked as exported: lost.
    bool recorded = false;
    if (Status ks = ledger->HasCapture(job->done.front(), &recorded); !ks.ok())
      return abandon("ledger commit failed and its outcome is unknown (" + ks.ToString() + ")", true, cs);
    // Not recorded, and the database said so. A full ledger disk is back-pressure; a delivery
    // another relay exported after this round's lookup (kAlreadyExists: the shared unique
    // index) is re-planned: the captures go back to pending, the next round finds the
    // delivery exported and records this copy as DUP; a shared ledger that is unreachable or
    // refused the round for a passing reason (kUnavailable: server gone, deadlock victim,
    // fail-over) is retried after the back-off. Anything else is treated like a crash.
    if (!recorded) return abandon("ledger commit failed", !IsRetriableCommitFailure(cs), cs);
    LogWarning("ledger commit reported a failure but the round is recorded: publishing it (%s)", cs.ToString().c_str());
    for (auto& b : lb)
      if (!b.epoch) b.epoch = ledger->epoch();
  }
  out.committed = true;
  // Decision taken. Publish; a failure here is retried (and rolled forward by recovery).
  std::vector<const store::LedgerBatch*> published;
  PublishBatches(*outbox, lb, !order.empty(), &out, &published);
  for (const store::LedgerBatch* b : published) QueueDeliver(b->post_office, b->file_name);
  const bool all_removed = UnlinkCommitted(*spool, *job);
  CloseRoundFds(closer, job);  // unlinked and fsynced: the last close (and its discard) is the closer's
  if (all_removed && out.unpublished.empty()) out.clean_seq = lb.back().seq;
  const size_t files = LogCommitted(*job, lb);
  std::lock_guard<std::mutex> g(ctr_mu);
  ++ctr.rounds;
  ctr.batches += files;
  ctr.captures += job->done.size();
  ctr.exported += job->exported;
  ctr.dups += job->dups;
  return out;
}

std::vector<CaptureId> Exporter::Impl::RoundIds(const std::vector<shm::Claim>& claims) {
  // Every claimed slot, then the oldest scanned ids, in capture-id order.
  std::vector<CaptureId> ids;
  for (const auto& c : claims) {
    CaptureId id;
    id.bytes = c.capture_id;
    if (!cm_ids.count(id)) ids.push_back(id);
  }
  const size_t round_limit = RoundLimit();
  for (auto next = pending.begin(); next != pending.end() && ids.size() < round_limit; ++next) ids.push_back(*next);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

Status Exporter::Impl::AskLedger(const std::vector<RoundItem>& items, std::vector<char>* in_ledger, KeySet* keys) {
  std::vector<CaptureId> item_ids;
  for (const RoundItem& item : items) item_ids.push_back(item.id);
  CCMAIL_RETURN_IF_ERROR(ledger->HasCaptures(item_ids, in_ledger));
  std::vector<std::pair<ContentKey, std::string>> lookups;
  for (size_t i = 0; i < items.size(); ++i) {
    if ((*in_ledger)[i] || !items[i].open_status.ok() || !items[i].unusable.empty()) continue;
    for (const auto& [post_office, rs] : items[i].by_post_office)
      for (const auto& r : rs) lookups.emplace_back(items[i].entry.meta.content_key, r.key);
  }
  std::vector<char> exported_flags;
  CCMAIL_RETURN_IF_ERROR(ledger->AreExported(lookups, &exported_flags));
  for (size_t i = 0; i < lookups.size(); ++i)
    if (exported_flags[i]) keys->insert(lookups[i]);
  return Status::Ok();
}

void Exporter::Impl::ApplyPlan(RoundPlan* plan, std::vector<RoundItem>* items, bool* did_work) {
  for (size_t idx : plan->corrupt) {
    RoundItem& item = (*items)[idx];
    const std::string why = store::QuarantineReason(item.open_status.message());
    item.entry.fd.reset();
    if (Status q = spool->Quarantine(item.id, why); !q.ok()) {
      LogError("spool: cannot quarantine %s: %s", item.id.ToString().c_str(), q.ToString().c_str());
      continue;
    }
    {
      std::lock_guard<std::mutex> g(ctr_mu);
      ++ctr.quarantined;
    }
    LogError("capture %s failed verification, moved to spool/corrupt: %s", item.id.ToString().c_str(), why.c_str());
    *did_work = true;
  }
  for (auto& [idx, why] : plan->quarantine) {
    Quarantine((*items)[idx].id, (*items)[idx].entry.meta, why);
    *did_work = true;
  }
  if (!plan->known.empty()) {
    *did_work = true;
    for (const auto& id : plan->known) {
      Status rs = spool->Remove(id, false);
      if (!rs.ok() && !rs.IsNotFound()) LogWarning("unlink exported capture %s: %s", id.ToString().c_str(), rs.ToString().c_str());
    }
    (void)spool->SyncNewDir();
    std::lock_guard<std::mutex> g(ctr_mu);
    ctr.skipped_known += plan->known.size();
  }
}

Status Exporter::Impl::ProcessRound(std::vector<shm::Claim>* claims, bool* did_work) {
  std::shared_ptr<const format::Converter> cv;
  std::shared_ptr<const format::AddressMap> amap;
  {
    std::lock_guard<std::mutex> g(cfg_mu);
    cv = conv;
    amap = map;
  }
  const std::vector<CaptureId> ids = RoundIds(*claims);
  for (const CaptureId& id : ids) pending.erase(id);
  RoundPrep r;
  r.items.reserve(ids.size());
  // Whatever path leaves this round, the descriptors not handed to the committer go to the
  // closer (declared after `r`, so it runs first). Their captures stay in spool/new or
  // corrupt/ (or were unlinked as known), and their close is cheap.
  struct HandOver {
    Closer* closer;
    std::vector<RoundItem>* items;
    ~HandOver() {
      for (auto& item : *items) closer->Queue(std::move(item.entry.fd));
    }
  } hand_over{&closer, &r.items};
  const size_t open_max = std::min(ids.size(), kMaxOpenPerRound);
  closer.WaitBelow(kMaxOpenTotal - open_max - std::min(cm_fds, kMaxOpenPerRound));

  // Overlapping the committer: open + verify + resolve (no ledger, no side effect on the
  // spool: a known capture must be unlinked, not quarantined, and only the ledger can tell
  // after the wait), then convert.
  OpenAndResolve(*spool, amap.get(), ids, opt.round_max_bytes, kMaxOpenPerRound, &r);
  if (r.retry_error) retry_why = r.retry_why;
  ConvertRound(*cv, opt.convert_threads, &r.items);
  const Status prepared = store::FaultPoint(kCrashRoundConverted, "preparing the round");

  // The previous round must be committed (or abandoned) before the ledger is asked anything.
  bool previous_abandoned = false;
  CCMAIL_RETURN_IF_ERROR(WaitCommitter(&previous_abandoned));
  if (!prepared.ok()) Backoff("round dropped: " + prepared.ToString());
  if (previous_abandoned || !prepared.ok()) {
    // Prepared under the old round size and maybe behind captures that went back to
    // `pending`: drop it; the next turn starts again from the oldest capture.
    for (const RoundItem& item : r.items) pending.insert(item.id);
    for (const auto& id : r.deferred) pending.insert(id);
    CompleteClaims(claims);  // the ids are in `pending` and their files in spool/new
    *did_work = true;
    return Status::Ok();
  }

  std::vector<char> in_ledger;
  KeySet in_ledger_keys;
  CCMAIL_RETURN_IF_ERROR(AskLedger(r.items, &in_ledger, &in_ledger_keys));
  RoundPlan plan = ClassifyRound(*cv, in_ledger, in_ledger_keys, opt.round_max_bytes, &r.items);
  ApplyPlan(&plan, &r.items, did_work);
  for (const auto& id : r.deferred) pending.insert(id);
  for (const auto& id : plan.deferred) pending.insert(id);
  if (plan.retry_error && !r.retry_error) retry_why = plan.retry_why;
  const bool retry_error = r.retry_error || plan.retry_error;

  std::unique_ptr<CommitJob> job = std::move(plan.job);
  if (!job->done.empty()) {
    *did_work = true;
    // The slots are freed when the committer is done with the round (after the unlink).
    for (const CaptureId& id : job->done) cm_ids.insert(id);
    cm_fds = job->fds.size();
    cm_claims = std::move(*claims);
    claims->clear();
    // Grow back after an ENOSPC as if this round commits: if it does not, the round behind
    // it is dropped and the cap is halved again from this round's size.
    if (round_cap != 0 && (round_cap *= 2) >= opt.batch_max_messages) round_cap = 0;
    committer.Submit(std::move(job));
  } else {
    CompleteClaims(claims);
  }
  if (retry_error && cm_ids.empty()) {
    ++stuck_turns;
    Backoff("some captures could not be read or converted");
  } else if (!cm_ids.empty()) {
    stuck_turns = 0;
  }
  return Status::Ok();
}

}  // namespace ccmail::exporter
