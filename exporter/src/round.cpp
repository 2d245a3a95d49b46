// round.cpp - one export round (design 5.6): gather, dedup, convert per post office, write the
// .part files, ONE ledger commit, publish, unlink the spool files, free the slots.
#include "exporter_impl.h"

namespace ccmail::exporter {

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
  // One parse per message for all its post offices (ConvertForEach), from the bytes read to
  // check the spool CRC when the file was small enough to be read whole.
  auto convert_item = [&](const Item& item, Converted* c) {
    if (c->exp_po.empty()) return;
    const store::SpoolMeta& m = item.e.meta;
    format::ConvertInput in;
    in.fd = item.e.fd.get();
    in.offset = item.e.message_offset;
    in.length = item.e.message_length;
    in.data = item.e.message_data();
    in.envelope_sender = m.envelope_sender;
    in.received = static_cast<time_t>(m.received_ms / 1000);
    in.log_id = item.id.ToString();
    std::vector<format::StringSink> sinks(c->exp_po.size());
    std::vector<format::ConvertTarget> targets;
    targets.reserve(c->exp_po.size());
    size_t i = 0;
    for (const auto& [po, rs] : c->exp_po) {
      format::ConvertTarget t;
      for (const Rcpt* r : rs) t.recipients.push_back({r->smtp, r->addr});
      t.out = &sinks[i++];
      targets.push_back(std::move(t));
    }
    Status cs = cv->ConvertForEach(in, targets);
    if (format::IsUnconvertible(cs)) {
      c->unconvertible = cs.message();
      return;
    }
    if (!cs.ok()) {
      LogWarning("capture %s: conversion failed, retrying later: %s", item.id.ToString().c_str(), cs.ToString().c_str());
      c->io_failed = true;
      return;
    }
    i = 0;
    for (const auto& [po, rs] : c->exp_po) c->out[po] = std::move(sinks[i++].str());
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


}  // namespace ccmail::exporter
