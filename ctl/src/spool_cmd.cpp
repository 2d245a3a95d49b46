// spool_cmd.cpp - `list`, `show` and `requeue`: captures in the spool and the ledger.
#include <sys/stat.h>

#include <algorithm>
#include <cctype>

#include "ccmail/common/ascii.h"
#include "ccmail/common/clock.h"
#include "ccmail/ctl/json.h"
#include "ccmail/exporter/outbox.h"
#include "commands.h"
#include "format.h"

namespace ccmail::ctl {
namespace {

// A capture as `list` and `show` present it.
struct Row {
  store::CaptureId id;
  bool readable = false;   // the file verified and its metadata is below
  store::SpoolMeta meta;
  uint64_t file_size = 0;
  std::string reason;      // quarantine reason
  std::string problem;     // why the metadata could not be read (!readable)
};

std::string Sender(const std::string& s) { return s.empty() ? "<>" : s; }

std::string Recipient(const store::SpoolRecipient& r) {
  std::string s = r.ccmail_name.empty() ? r.smtp_address : r.ccmail_name;
  if (!r.post_office.empty()) s += " at " + r.post_office;
  return s;
}

std::string Recipients(const store::SpoolMeta& m) {
  std::string s;
  const size_t kShown = 3;  // the rest is in `show` and in --json
  for (size_t i = 0; i < m.recipients.size() && i < kShown; ++i) s += (i ? "; " : "") + Recipient(m.recipients[i]);
  if (m.recipients.size() > kShown) s += "; +" + std::to_string(m.recipients.size() - kShown) + " more";
  return s;
}

void MetaJson(JsonWriter& w, const store::SpoolMeta& m) {
  w.StringMembers({{"content_key", m.content_key.ToString()}, {"queue_id", m.queue_id}, {"sender", m.envelope_sender}});
  w.Key("received_ms").Int(m.received_ms);
  w.Key("message_size").UInt(m.message_size);
  w.Key("recipients").BeginArray();
  for (const auto& r : m.recipients) {
    w.BeginObject();
    w.StringMembers({{"address", r.smtp_address}, {"ccmail_name", r.ccmail_name}, {"post_office", r.post_office}});
    w.EndObject();
  }
  w.EndArray();
}

int64_t AgeMs(const store::CaptureId& id, int64_t now) {
  return std::max<int64_t>(0, now - static_cast<int64_t>(id.TimeMs()));
}

bool ParseId(const Io& io, const std::string& text, store::CaptureId* id) {
  auto p = store::CaptureId::Parse(ToLowerAscii(text));  // ids are printed in lower case; accept a pasted upper-case one
  if (!p) {
    io.err << "ccmailctl: '" << text << "' is not a capture id (32 hexadecimal characters, as `ccmailctl list` shows)\n";
    return false;
  }
  *id = *p;
  return true;
}

// Opens the spool for a command that needs it; false (message printed) when missing.
bool NeedSpool(const Io& io, std::unique_ptr<store::Spool>* spool, bool missing_is_empty) {
  Status s = OpenSpool(io.ctx, spool);
  if (s.ok()) return true;
  if (s.IsNotFound() && missing_is_empty) return true;  // *spool stays null: nothing captured yet
  io.err << "ccmailctl: " << s.ToString() << "\n";
  return false;
}

}  // namespace

int CmdList(const Io& io, bool quarantined, size_t limit) {
  std::unique_ptr<store::Spool> spool;
  if (!NeedSpool(io, &spool, true)) return kExitFailure;
  std::vector<Row> rows;
  size_t total = 0;  // before the limit
  if (spool && !quarantined) {
    std::vector<store::CaptureId> ids;
    if (Status s = spool->ListPending(&ids); !s.ok()) {
      io.err << "ccmailctl: " << s.ToString() << "\n";
      return kExitFailure;
    }
    std::sort(ids.begin(), ids.end());
    total = ids.size();
    for (const auto& id : ids) {
      if (limit != 0 && rows.size() >= limit) break;
      Row r;
      r.id = id;
      store::SpoolEntry entry;
      Status s = spool->VerifyOnly(id, &entry);
      if (s.IsNotFound()) continue;  // exported (and removed) while we listed
      if (s.ok()) {
        r.readable = true;
        r.meta = std::move(entry.meta);
        r.file_size = entry.file_size;
      } else {
        r.problem = s.ToString();  // corrupt: the exporter quarantines it when it gets there
      }
      rows.push_back(std::move(r));
    }
  } else if (spool) {
    std::vector<store::QuarantinedCapture> q;
    if (Status s = spool->ListQuarantined(&q); !s.ok()) {
      io.err << "ccmailctl: " << s.ToString() << "\n";
      return kExitFailure;
    }
    total = q.size();
    for (auto& qc : q) {
      if (limit != 0 && rows.size() >= limit) break;
      Row r;
      r.id = qc.id;
      r.reason = std::move(qc.reason);
      r.file_size = qc.file_size;
      store::SpoolEntry entry;
      Status vs = spool->VerifyQuarantined(qc.id, &entry);
      if (vs.ok()) {  // unconvertible, but intact
        r.readable = true;
        r.meta = std::move(entry.meta);
      } else {
        r.problem = vs.ToString();
      }
      rows.push_back(std::move(r));
    }
  }

  const int64_t now = WallClockMs();
  if (io.json) {
    JsonWriter w;
    w.BeginArray();
    for (const auto& r : rows) {
      w.BeginObject();
      w.Key("id").String(r.id.ToString());
      w.Key("state").String(quarantined ? "quarantined" : "pending");
      w.Key("age_ms").Int(AgeMs(r.id, now));
      w.Key("file_size").UInt(r.file_size);
      w.Key("readable").Bool(r.readable);
      if (r.readable) MetaJson(w, r.meta);
      if (!r.reason.empty()) w.Key("reason").String(r.reason);
      if (!r.problem.empty()) w.Key("problem").String(r.problem);
      w.EndObject();
    }
    w.EndArray();
    io.out << w.Take();
    return kExitOk;
  }
  if (rows.empty()) {
    io.out << (quarantined ? "no quarantined captures\n" : "no pending captures\n");
    return kExitOk;
  }
  std::vector<std::string> head = {"ID", "AGE", "SIZE", "SENDER", "RECIPIENTS"};
  if (quarantined) head.push_back("REASON");
  TextTable t(head);
  for (const auto& r : rows) {
    std::vector<std::string> cells = {r.id.ToString(), FormatAge(AgeMs(r.id, now)),
                                      r.readable ? std::to_string(r.meta.message_size) : std::to_string(r.file_size),
                                      r.readable ? Sender(r.meta.envelope_sender) : "?",
                                      r.readable ? Recipients(r.meta) : "(unreadable: " + r.problem + ")"};
    if (quarantined) cells.push_back(r.reason.empty() ? "-" : r.reason);
    t.Add(std::move(cells));
  }
  io.out << t.Render();
  if (rows.size() < total)
    io.out << "showing the oldest " << rows.size() << " of " << total << (quarantined ? " quarantined" : " pending")
           << " (--limit 0 shows all)\n";
  else
    io.out << rows.size() << (quarantined ? " quarantined\n" : " pending\n");
  return kExitOk;
}

namespace {

// A batch file a capture went into, and whether the outbox still has it.
struct BatchRef {
  uint64_t seq = 0;
  std::string post_office, file, path;
  bool in_outbox = false;
  bool have_watermark = false;
  exporter::Watermark watermark;
};

// Everything `show` reports about one capture, gathered before anything is printed.
struct ShowFacts {
  Row row;                 // the spool's side (row.problem: why its metadata is unreadable)
  std::string where;       // "pending", "quarantined" or "" (not in the spool)
  bool exported = false;   // recorded in the ledger
  std::vector<store::Ledger::CaptureDelivery> deliveries;
  std::vector<BatchRef> batches;
  bool all_duplicate = false;  // recorded, but every delivery was a duplicate
  std::string ledger_note;     // the ledger could not be read
  std::string spool_note;      // the spool could not be read; the ledger's answer still stands
};

// The ledger first: a capture that is recorded there was exported (or recognised as a
// duplicate), even if its spool file is still waiting for cleanup. *first: the batch the
// capture row names, used when no delivery row is left.
void GatherLedgerFacts(const Io& io, ShowFacts* facts, BatchRef* first) {
  std::unique_ptr<store::Ledger> ledger;
  Status s = OpenLedger(io.ctx, &ledger);
  if (s.ok()) s = ledger->FindCapture(facts->row.id, &first->seq, &first->post_office, &first->file);
  if (s.ok()) facts->exported = true;
  else if (!s.IsNotFound()) facts->ledger_note = s.ToString();
  if (!facts->exported) return;
  if (Status ds = ledger->CaptureDeliveries(facts->row.id, &facts->deliveries); !ds.ok())
    facts->ledger_note = ds.ToString();
}

// Pending, quarantined or neither. False (message printed) when the spool cannot answer.
bool GatherSpoolFacts(const Io& io, ShowFacts* facts) {
  const store::CaptureId& id = facts->row.id;
  std::unique_ptr<store::Spool> spool;
  Status opened = OpenSpool(io.ctx, &spool);
  if (!opened.ok() && !opened.IsNotFound()) {
    if (!facts->exported) {
      io.err << "ccmailctl: cannot look for " << id.ToString() << ": " << opened.ToString() << "\n";
      return false;
    }
    facts->spool_note = opened.ToString();
    return true;
  }
  if (!spool) return true;
  Row& row = facts->row;
  store::SpoolEntry entry;
  Status verified = spool->VerifyOnly(id, &entry);
  if (!verified.IsNotFound()) {
    facts->where = "pending";
    if (!verified.ok()) {
      row.problem = verified.ToString();
      return true;
    }
    row.readable = true;
    row.meta = std::move(entry.meta);
    row.file_size = entry.file_size;
    return true;
  }
  std::vector<store::QuarantinedCapture> quarantined;
  if (Status ls = spool->ListQuarantined(&quarantined); !ls.ok()) {
    io.err << "ccmailctl: " << ls.ToString() << "\n";
    return false;
  }
  auto match = std::find_if(quarantined.begin(), quarantined.end(),
                            [&](const store::QuarantinedCapture& c) { return c.id == id; });
  if (match == quarantined.end()) return true;
  facts->where = "quarantined";
  row.reason = match->reason;
  row.file_size = match->file_size;
  if (Status vs = spool->VerifyQuarantined(id, &entry); !vs.ok()) {
    row.problem = vs.ToString();
    return true;
  }
  row.readable = true;
  row.meta = std::move(entry.meta);
  return true;
}

// Each batch file the capture went into (deliveries are ordered by batch), and whether the
// outbox still has it.
void GatherBatches(const Io& io, const BatchRef& first, ShowFacts* facts) {
  size_t exported_count = 0, duplicate_count = 0;
  for (const auto& delivery : facts->deliveries) {
    if (delivery.kind == store::DeliveryKind::kDup) {
      ++duplicate_count;
      continue;
    }
    ++exported_count;
    if (!facts->batches.empty() && facts->batches.back().seq == delivery.batch_seq) continue;
    BatchRef batch;
    batch.seq = delivery.batch_seq;
    batch.post_office = delivery.post_office;
    batch.file = delivery.file_name;
    facts->batches.push_back(std::move(batch));
  }
  if (facts->exported && facts->batches.empty() && duplicate_count == 0) facts->batches.push_back(first);
  for (BatchRef& batch : facts->batches) {
    if (batch.post_office.empty() || batch.file.empty()) continue;  // the batch row was pruned
    const std::string dir = io.ctx.paths.outbox_directory + "/" + batch.post_office;
    batch.path = dir + "/" + batch.file;
    struct stat st;
    batch.in_outbox = ::stat(batch.path.c_str(), &st) == 0;
    batch.have_watermark = exporter::ReadWatermark(dir, &batch.watermark).ok();
  }
  facts->all_duplicate = facts->exported && exported_count == 0 && duplicate_count > 0;
}

// False (message printed) when the capture cannot be found or the spool cannot be read.
bool GatherShowFacts(const Io& io, const store::CaptureId& id, ShowFacts* facts) {
  facts->row.id = id;
  BatchRef first;
  GatherLedgerFacts(io, facts, &first);
  if (!GatherSpoolFacts(io, facts)) return false;
  if (!facts->exported && facts->where.empty()) {
    io.err << "ccmailctl: unknown capture id " << id.ToString() << ": not pending, not quarantined and not in the ledger";
    if (!facts->ledger_note.empty()) io.err << " (ledger unreadable: " << facts->ledger_note << ")";
    else io.err << " (a capture is forgotten dedup_window after its export)";
    io.err << "\n";
    return false;
  }
  GatherBatches(io, first, facts);
  return true;
}

void BatchJson(JsonWriter& w, const BatchRef& batch) {
  w.BeginObject();
  w.Key("seq").UInt(batch.seq).Key("post_office").String(batch.post_office).Key("file_name").String(batch.file);
  w.Key("path").String(batch.path).Key("in_outbox").Bool(batch.in_outbox);
  w.EndObject();
}

void DeliveriesJson(JsonWriter& w, const std::vector<store::Ledger::CaptureDelivery>& deliveries) {
  w.Key("deliveries").BeginArray();
  for (const auto& delivery : deliveries) {
    w.BeginObject().Key("recipient").String(delivery.recipient);
    w.Key("kind").String(delivery.kind == store::DeliveryKind::kDup ? "duplicate" : "exported");
    if (delivery.kind == store::DeliveryKind::kExported) {
      w.Key("seq").UInt(delivery.batch_seq).Key("post_office").String(delivery.post_office);
      w.Key("file_name").String(delivery.file_name);
    }
    w.EndObject();
  }
  w.EndArray();
}

void RenderShowJson(const Io& io, const ShowFacts& facts) {
  const Row& row = facts.row;
  JsonWriter w;
  w.BeginObject();
  w.Key("id").String(row.id.ToString());
  w.Key("state").String(!facts.exported ? facts.where : facts.all_duplicate ? "duplicate" : "exported");
  w.Key("captured_ms").UInt(row.id.TimeMs());
  w.Key("in_spool").String(facts.where.empty() ? "no" : facts.where);
  if (!facts.where.empty()) w.Key("file_size").UInt(row.file_size).Key("readable").Bool(row.readable);
  if (row.readable) MetaJson(w, row.meta);
  if (!row.reason.empty()) w.Key("reason").String(row.reason);
  if (!row.problem.empty()) w.Key("problem").String(row.problem);
  if (!facts.spool_note.empty()) w.Key("spool_error").String(facts.spool_note);
  if (!facts.ledger_note.empty()) w.Key("ledger_error").String(facts.ledger_note);
  if (facts.exported) {
    if (!facts.batches.empty()) {  // the first one, for readers written before several were listed
      w.Key("batch");
      BatchJson(w, facts.batches.front());
    }
    w.Key("batches").BeginArray();
    for (const BatchRef& batch : facts.batches) BatchJson(w, batch);
    w.EndArray();
    DeliveriesJson(w, facts.deliveries);
  }
  w.EndObject();
  io.out << w.Take();
}

std::string ShowState(const ShowFacts& facts) {
  if (!facts.exported) return facts.where;
  std::string state = facts.all_duplicate
                          ? "duplicate (every recipient already had it from an earlier copy; recorded in the ledger)"
                          : "exported (recorded in the ledger)";
  if (facts.where == "pending") state += ", spool file not yet cleaned up";
  return state;
}

void RenderShowText(const Io& io, const ShowFacts& facts) {
  const Row& row = facts.row;
  KeyValueText t;
  t.Add("capture", row.id.ToString());
  t.Add("state", ShowState(facts));
  t.Add("captured", FormatUtc(static_cast<int64_t>(row.id.TimeMs())) + " (" + FormatAge(AgeMs(row.id, WallClockMs())) + " ago)");
  if (row.readable) {
    t.Add("queue id", row.meta.queue_id.empty() ? "-" : row.meta.queue_id);
    t.Add("sender", Sender(row.meta.envelope_sender));
    t.Add("size", std::to_string(row.meta.message_size) + " bytes");
    t.Add("content key", row.meta.content_key.ToString());
    for (const auto& rc : row.meta.recipients) t.Add("recipient", rc.smtp_address + " -> " + Recipient(rc));
  } else if (!facts.where.empty()) {
    t.Add("metadata", "unreadable: " + row.problem);
  }
  if (facts.where == "quarantined") t.Add("reason", row.reason.empty() ? "(no reason file)" : row.reason);
  for (const auto& delivery : facts.deliveries)
    t.Add("delivery", delivery.recipient + (delivery.kind == store::DeliveryKind::kDup
                                                ? ": duplicate (already exported by an earlier copy)"
                                                : ": exported in " + (delivery.file_name.empty() ? std::string("?")
                                                                                                 : delivery.file_name)));
  for (const BatchRef& batch : facts.batches) {
    t.Add("batch", "seq " + std::to_string(batch.seq) + ", post office " +
                       (batch.post_office.empty() ? "?" : batch.post_office) + ", file " +
                       (batch.file.empty() ? "?" : batch.file));
    if (!batch.path.empty())
      t.Add("outbox", batch.path + (batch.in_outbox ? "" : " (not there: taken by the IMPORT job, or not published yet)"));
    if (batch.have_watermark)
      t.Add("watermark", batch.post_office + ": " + std::to_string(batch.watermark.epoch) + " " +
                             std::to_string(batch.watermark.seq) + " " + batch.watermark.batch_name);
  }
  if (!facts.spool_note.empty()) t.Add("spool", "not checked: " + facts.spool_note);
  if (!facts.ledger_note.empty()) t.Add("ledger", "not checked: " + facts.ledger_note);
  io.out << t.Render();
}

}  // namespace

int CmdShow(const Io& io, const std::string& id_text) {
  store::CaptureId id;
  if (!ParseId(io, id_text, &id)) return kExitFailure;
  ShowFacts facts;
  if (!GatherShowFacts(io, id, &facts)) return kExitFailure;
  if (io.json)
    RenderShowJson(io, facts);
  else
    RenderShowText(io, facts);
  return kExitOk;
}

int CmdRequeue(const Io& io, const std::vector<std::string>& id_texts, bool all) {
  if (all == !id_texts.empty()) {
    io.err << "ccmailctl requeue: give capture ids or --all (not both)\n";
    return kExitUsage;
  }
  std::vector<store::CaptureId> ids;
  for (const auto& t : id_texts) {
    store::CaptureId id;
    if (!ParseId(io, t, &id)) return kExitFailure;
    ids.push_back(id);
  }
  std::unique_ptr<store::Spool> spool;
  if (!NeedSpool(io, &spool, false)) return kExitFailure;
  if (all) {
    std::vector<store::QuarantinedCapture> q;
    if (Status s = spool->ListQuarantined(&q); !s.ok()) {
      io.err << "ccmailctl: " << s.ToString() << "\n";
      return kExitFailure;
    }
    for (const auto& c : q) ids.push_back(c.id);
    if (ids.empty() && !io.json) io.out << "nothing is quarantined\n";
  }
  int rc = kExitOk;
  size_t done = 0;
  JsonWriter w;
  if (io.json) w.BeginArray();
  for (const auto& id : ids) {
    Status s = spool->Requeue(id);
    if (io.json) {
      w.BeginObject().Key("id").String(id.ToString()).Key("requeued").Bool(s.ok());
      if (!s.ok()) w.Key("error").String(s.ToString());
      w.EndObject();
    }
    if (s.ok()) {
      ++done;
      if (!io.json) io.out << "requeued " << id.ToString() << " -> " << spool->new_dir() << "\n";
    } else {
      rc = kExitFailure;
      io.err << "ccmailctl: not requeued: " << s.ToString() << "\n";
    }
  }
  if (io.json) {
    w.EndArray();
    io.out << w.Take();
  } else if (done > 0) {
    io.out << done << " requeued; the exporter's next spool scan picks them up\n";
  }
  return rc;
}

}  // namespace ccmail::ctl
