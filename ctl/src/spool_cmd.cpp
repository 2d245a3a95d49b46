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
  w.Key("content_key").String(m.content_key.ToString());
  w.Key("queue_id").String(m.queue_id);
  w.Key("sender").String(m.envelope_sender);
  w.Key("received_ms").Int(m.received_ms);
  w.Key("message_size").UInt(m.message_size);
  w.Key("recipients").BeginArray();
  for (const auto& r : m.recipients) {
    w.BeginObject();
    w.Key("address").String(r.smtp_address);
    w.Key("ccmail_name").String(r.ccmail_name);
    w.Key("post_office").String(r.post_office);
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
      store::SpoolEntry e;
      Status s = spool->VerifyOnly(id, &e);
      if (s.IsNotFound()) continue;  // exported (and removed) while we listed
      if (s.ok()) {
        r.readable = true;
        r.meta = std::move(e.meta);
        r.file_size = e.file_size;
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
      store::SpoolEntry e;
      Status vs = spool->VerifyQuarantined(qc.id, &e);
      if (vs.ok()) {  // unconvertible, but intact
        r.readable = true;
        r.meta = std::move(e.meta);
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

int CmdShow(const Io& io, const std::string& id_text) {
  store::CaptureId id;
  if (!ParseId(io, id_text, &id)) return kExitFailure;

  // Where is it? The ledger first: a capture that is recorded there was exported
  // (or recognised as a duplicate), even if its spool file is still waiting for cleanup.
  bool exported = false;
  uint64_t seq = 0;
  std::string po, file;
  std::string ledger_note;
  std::vector<store::Ledger::CaptureDelivery> deliveries;
  {
    std::unique_ptr<store::Ledger> ledger;
    Status s = OpenLedger(io.ctx, &ledger);
    if (s.ok()) s = ledger->FindCapture(id, &seq, &po, &file);
    if (s.ok()) exported = true;
    else if (!s.IsNotFound()) ledger_note = s.ToString();
    if (exported) {
      if (Status ds = ledger->CaptureDeliveries(id, &deliveries); !ds.ok()) ledger_note = ds.ToString();
    }
  }
  std::unique_ptr<store::Spool> spool;
  Status os = OpenSpool(io.ctx, &spool);
  std::string spool_note;  // the spool could not be read; the ledger's answer still stands
  if (!os.ok() && !os.IsNotFound()) {
    if (!exported) {
      io.err << "ccmailctl: cannot look for " << id.ToString() << ": " << os.ToString() << "\n";
      return kExitFailure;
    }
    spool_note = os.ToString();
    spool.reset();
  }
  Row r;
  r.id = id;
  std::string where;  // "pending", "quarantined" or ""
  std::string problem;  // why the metadata could not be read
  if (spool) {
    store::SpoolEntry e;
    Status s = spool->VerifyOnly(id, &e);
    if (s.IsNotFound()) {
      std::vector<store::QuarantinedCapture> q;
      Status ls = spool->ListQuarantined(&q);
      if (!ls.ok()) {
        io.err << "ccmailctl: " << ls.ToString() << "\n";
        return kExitFailure;
      }
      auto it = std::find_if(q.begin(), q.end(), [&](const store::QuarantinedCapture& c) { return c.id == id; });
      if (it != q.end()) {
        where = "quarantined";
        r.reason = it->reason;
        r.file_size = it->file_size;
        Status vs = spool->VerifyQuarantined(id, &e);
        if (vs.ok()) {
          r.readable = true;
          r.meta = std::move(e.meta);
        } else {
          problem = vs.ToString();
        }
      }
    } else {
      where = "pending";
      if (s.ok()) {
        r.readable = true;
        r.meta = std::move(e.meta);
        r.file_size = e.file_size;
      } else {
        problem = s.ToString();
      }
    }
  }
  if (!exported && where.empty()) {
    io.err << "ccmailctl: unknown capture id " << id.ToString() << ": not pending, not quarantined and not in the ledger";
    if (!ledger_note.empty()) io.err << " (ledger unreadable: " << ledger_note << ")";
    else io.err << " (a capture is forgotten dedup_window after its export)";
    io.err << "\n";
    return kExitFailure;
  }

  // Recorded in the ledger: exported to one or more post offices, or (every delivery already
  // exported by an earlier copy of the message) a duplicate; each batch file it went into.
  size_t n_exported = 0, n_dup = 0;
  struct BatchRef {
    uint64_t seq;
    std::string po, file, path;
    bool in_outbox = false;
    bool have_wm = false;
    exporter::Watermark wm;
  };
  std::vector<BatchRef> batches;
  for (const auto& d : deliveries) {
    if (d.kind == store::DeliveryKind::kDup) {
      ++n_dup;
      continue;
    }
    ++n_exported;
    if (!batches.empty() && batches.back().seq == d.batch_seq) continue;  // ordered by batch
    batches.push_back(BatchRef{d.batch_seq, d.post_office, d.file_name, "", false, false, {}});
  }
  if (exported && batches.empty() && n_dup == 0) batches.push_back(BatchRef{seq, po, file, "", false, false, {}});
  for (BatchRef& b : batches) {
    if (b.po.empty() || b.file.empty()) continue;  // the batch row was pruned
    std::string dir = io.ctx.paths.outbox_directory + "/" + b.po;
    b.path = dir + "/" + b.file;
    struct stat st;
    b.in_outbox = ::stat(b.path.c_str(), &st) == 0;
    b.have_wm = exporter::ReadWatermark(dir, &b.wm).ok();
  }
  const bool all_dup = exported && n_exported == 0 && n_dup > 0;
  std::string state = !exported ? where
                      : all_dup ? "duplicate (every recipient already had it from an earlier copy; recorded in the ledger)"
                                : "exported (recorded in the ledger)";
  if (exported && where == "pending") state += ", spool file not yet cleaned up";

  if (io.json) {
    JsonWriter w;
    w.BeginObject();
    w.Key("id").String(id.ToString());
    w.Key("state").String(!exported ? where : all_dup ? "duplicate" : "exported");
    w.Key("captured_ms").UInt(id.TimeMs());
    w.Key("in_spool").String(where.empty() ? "no" : where);
    if (!where.empty()) {
      w.Key("file_size").UInt(r.file_size);
      w.Key("readable").Bool(r.readable);
    }
    if (r.readable) MetaJson(w, r.meta);
    if (!r.reason.empty()) w.Key("reason").String(r.reason);
    if (!problem.empty()) w.Key("problem").String(problem);
    if (!spool_note.empty()) w.Key("spool_error").String(spool_note);
    if (!ledger_note.empty()) w.Key("ledger_error").String(ledger_note);
    auto batch_json = [&](const BatchRef& b) {
      w.BeginObject();
      w.Key("seq").UInt(b.seq);
      w.Key("post_office").String(b.po);
      w.Key("file_name").String(b.file);
      w.Key("path").String(b.path);
      w.Key("in_outbox").Bool(b.in_outbox);
      w.EndObject();
    };
    if (exported) {
      if (!batches.empty()) {  // the first one, as before several post offices were listed
        w.Key("batch");
        batch_json(batches.front());
      }
      w.Key("batches").BeginArray();
      for (const BatchRef& b : batches) batch_json(b);
      w.EndArray();
      w.Key("deliveries").BeginArray();
      for (const auto& d : deliveries) {
        w.BeginObject().Key("recipient").String(d.recipient);
        w.Key("kind").String(d.kind == store::DeliveryKind::kDup ? "duplicate" : "exported");
        if (d.kind == store::DeliveryKind::kExported) {
          w.Key("seq").UInt(d.batch_seq).Key("post_office").String(d.post_office).Key("file_name").String(d.file_name);
        }
        w.EndObject();
      }
      w.EndArray();
    }
    w.EndObject();
    io.out << w.Take();
    return kExitOk;
  }

  KeyValueText t;
  t.Add("capture", id.ToString());
  t.Add("state", state);
  t.Add("captured", FormatUtc(static_cast<int64_t>(id.TimeMs())) + " (" + FormatAge(AgeMs(id, WallClockMs())) + " ago)");
  if (r.readable) {
    t.Add("queue id", r.meta.queue_id.empty() ? "-" : r.meta.queue_id);
    t.Add("sender", Sender(r.meta.envelope_sender));
    t.Add("size", std::to_string(r.meta.message_size) + " bytes");
    t.Add("content key", r.meta.content_key.ToString());
    for (const auto& rc : r.meta.recipients) t.Add("recipient", rc.smtp_address + " -> " + Recipient(rc));
  } else if (!where.empty()) {
    t.Add("metadata", "unreadable: " + problem);
  }
  if (where == "quarantined") t.Add("reason", r.reason.empty() ? "(no reason file)" : r.reason);
  for (const auto& d : deliveries)
    t.Add("delivery", d.recipient + (d.kind == store::DeliveryKind::kDup
                                         ? ": duplicate (already exported by an earlier copy)"
                                         : ": exported in " + (d.file_name.empty() ? std::string("?") : d.file_name)));
  for (const BatchRef& b : batches) {
    t.Add("batch", "seq " + std::to_string(b.seq) + ", post office " + (b.po.empty() ? "?" : b.po) + ", file " +
                       (b.file.empty() ? "?" : b.file));
    if (!b.path.empty())
      t.Add("outbox", b.path + (b.in_outbox ? "" : " (not there: taken by the IMPORT job, or not published yet)"));
    if (b.have_wm)
      t.Add("watermark", b.po + ": " + std::to_string(b.wm.epoch) + " " + std::to_string(b.wm.seq) + " " + b.wm.batch_name);
  }
  if (!spool_note.empty()) t.Add("spool", "not checked: " + spool_note);
  if (!ledger_note.empty()) t.Add("ledger", "not checked: " + ledger_note);
  io.out << t.Render();
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
