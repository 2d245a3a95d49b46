// ledger_cmd.cpp - `verify` (the ledger's pages and its agreement with the outbox),
// `ledger backup FILE` (SQLite online backup) and `ledger rebuild` (de-duplication state
// from the outbox manifests, exporter stopped).
#include "ccmail/ctl/json.h"
#include "ccmail/exporter/ledger_guard.h"
#include "ccmail/common/clock.h"
#include "commands.h"
#include "ledger_view.h"

namespace ccmail::ctl {

int CmdVerify(const Io& io, bool full) {
  exporter::OutboxHistory h;
  Status hs = exporter::ScanOutboxHistory(io.ctx.paths.outbox_directory, &h);
  LedgerSnapshot led;
  DescribeLedger(io.ctx, &led);
  const std::string where = led.backend + " " + led.location;
  std::unique_ptr<store::Ledger> ledger;
  Status s = OpenLedger(io.ctx, &ledger);
  bool missing = s.IsNotFound() && !ledger;
  const char* check = full ? "integrity_check" : "quick_check";
  if (s.ok()) s = full ? ledger->IntegrityCheck() : ledger->QuickCheck();
  if (s.ok() && hs.ok()) s = exporter::CheckLedgerAgainstOutbox(ledger.get(), h);
  if (!hs.ok()) s = hs.WithContext("outbox history");
  // No ledger and no history: a fresh install, nothing to verify yet.
  if (missing && hs.ok() && !h.any) s = Status::Ok();
  else if (missing && hs.ok()) s = Status::Corrupt(where + " is missing but the outbox has history");
  store::LedgerCounters c;
  if (s.ok() && ledger) s = ledger->Counters(&c);
  if (s.ok() && ledger) {
    led.backend = ledger->backend();
    if (Status rs = ledger->Relays(&led.relays); !rs.ok()) led.relays_error = rs.ToString();
  }
  if (io.json) {
    JsonWriter w;
    w.BeginObject();
    w.Key("ok").Bool(s.ok());
    w.StringMembers({{"ledger", led.location}, {"backend", led.backend}, {"relay_id", led.relay_id}, {"check", check}});
    w.UIntMembers({{"epoch", c.epoch}, {"last_seq", c.last_seq}, {"outbox_epoch", h.max_epoch},
                   {"outbox_seq", h.max_seq}, {"watermarks", h.watermarks}, {"manifests", h.manifests}});
    RelaysJson(w, led);
    if (!s.ok()) w.Key("error").String(s.ToString());
    w.EndObject();
    io.out << w.Take();
  } else if (s.ok()) {
    if (missing) {
      io.out << "ledger: none yet, outbox empty (a fresh install): " << where << "\n";
    } else {
      io.out << "ledger: ok (" << check << "), " << where;
      if (!led.relay_id.empty()) io.out << ", relay " << led.relay_id;
      io.out << ", epoch " << c.epoch << ", last batch seq " << c.last_seq << "\n";
    }
    io.out << "outbox: " << h.watermarks << " watermark(s), " << h.manifests << " manifest(s), up to epoch "
           << h.max_epoch << " seq " << h.max_seq << "\n";
    if (!led.relays_error.empty()) io.out << "relays: unreadable: " << led.relays_error << "\n";
    if (SharedLedger(led) && !led.relays.empty()) io.out << RelaysTable(led, WallClockMs());
  } else {
    io.err << "ccmailctl verify: " << where << ": " << s.ToString() << "\n";
  }
  return s.ok() ? kExitOk : kExitFailure;
}

int CmdLedgerBackup(const Io& io, const std::string& file) {
  std::unique_ptr<store::Ledger> ledger;
  Status s = OpenLedger(io.ctx, &ledger);
  if (s.ok()) s = ledger->QuickCheck();  // never hand out a damaged copy as a backup
  if (s.ok()) s = ledger->BackupTo(file);
  if (!s.ok()) {
    io.err << "ccmailctl ledger backup: " << s.ToString() << "\n";
    return kExitFailure;
  }
  store::LedgerCounters c;
  (void)ledger->Counters(&c);
  io.out << "backed up " << io.ctx.paths.ledger_path << " to " << file << " (epoch " << c.epoch << ", last batch seq "
         << c.last_seq << ")\n";
  return kExitOk;
}

int CmdLedgerRebuild(const Io& io, const std::vector<std::string>& from) {
  exporter::RebuildReport r;
  Status s = exporter::RebuildLedger(io.ctx.paths, from, &r);
  if (!s.ok()) {
    io.err << "ccmailctl ledger rebuild: " << s.ToString() << "\n";
    return kExitFailure;
  }
  if (io.json) {
    JsonWriter w;
    w.BeginObject();
    w.Key("created").Bool(r.created);
    w.UIntMembers({{"manifests", r.manifests}, {"batches_added", r.batches_added},
                   {"deliveries_added", r.deliveries_added}, {"epoch", r.epoch}, {"last_seq", r.last_seq}});
    w.EndObject();
    io.out << w.Take();
  } else {
    io.out << (r.created ? "created " : "rebuilt ") << io.ctx.paths.ledger_path << " from " << r.manifests
           << " manifest(s): " << r.batches_added << " batch(es) and " << r.deliveries_added
           << " exported deliverie(s) added; epoch " << r.epoch << ", last batch seq " << r.last_seq
           << " (the exporter starts above both)\n";
  }
  return kExitOk;
}

}  // namespace ccmail::ctl
