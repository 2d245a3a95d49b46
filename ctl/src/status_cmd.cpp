// status_cmd.cpp - `status` (for people and --json) and `metrics` (Prometheus).
#include <algorithm>
#include <cstdio>

#include "ccmail/ctl/json.h"
#include "commands.h"
#include "format.h"
#include "ledger_view.h"

namespace ccmail::ctl {
namespace {

std::string Plural(uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

std::string AgeOrNever(const std::optional<int64_t>& ms) {
  return ms ? FormatAge(*ms) + " ago" : "never";
}

// The one line of a part that is missing or unreadable; false when it is fine (the caller
// adds its details).
bool AddPartTrouble(KeyValueText* t, const char* label, PartState state, const std::string& missing,
                    const std::string& unreadable) {
  if (state == PartState::kOk) return false;
  t->Add(label, state == PartState::kMissing ? missing : unreadable);
  return true;
}

void StatusText(const Context& ctx, const BridgeState& st, std::ostream& out) {
  KeyValueText t;
  // Exporter first: it is what an administrator asks about when mail is late.
  std::string ex = ExporterRunName(st.exporter);
  if (!st.exporter_lock_error.empty()) ex += " (cannot tell: " + st.exporter_lock_error + ")";
  t.Add("exporter", ex);
  if (!st.ledger_refusal.empty()) t.Add("stopped because", st.ledger_refusal, 2);
  const shm::ExporterState& published = st.table.exporter;
  if (st.table.state == PartState::kOk && published.heartbeat_ns != 0) {
    if (published.pid != 0) t.Add(st.exporter == ExporterRun::kNotRunning ? "last pid" : "pid", std::to_string(published.pid), 2);
    t.Add("epoch", std::to_string(published.epoch), 2);
  } else if (st.ledger.state == PartState::kOk) {
    t.Add("epoch", std::to_string(st.ledger.counters.epoch) + " (ledger)", 2);
  }
  t.Add("heartbeat", AgeOrNever(st.heartbeat_age_ms), 2);
  t.Add("last batch", AgeOrNever(st.progress_age_ms), 2);

  if (!AddPartTrouble(&t, "backlog", st.spool.state, "no spool yet (" + ctx.paths.spool_root + " does not exist)",
                      "unreadable: " + st.spool.error)) {
    t.Add("backlog", Plural(st.spool.messages, "message", "messages") + ", " + FormatBytes(st.spool.bytes) + " (" +
                         std::to_string(st.spool.bytes) + " bytes)");
    t.Add("oldest message", st.spool.oldest_ms ? FormatAge(st.now_ms - *st.spool.oldest_ms) : "-", 2);
    t.Add("quarantined", std::to_string(st.spool.quarantined));
  }
  if (!AddPartTrouble(&t, "claim table", st.table.state,
                      st.table.name + " missing (the exporter creates it at start)",
                      st.table.name + " unusable: " + st.table.error)) {
    t.Add("claim table", st.table.name + ", " + std::to_string(st.table.slots) + " slots");
    for (const auto& [label, count] : {std::pair<const char*, uint64_t>{"free", st.table.free},
                                       {"reserved", st.table.reserved}, {"ready", st.table.ready},
                                       {"claimed", st.table.claimed}, {"overflows", st.table.overflows}})
      t.Add(label, std::to_string(count), 2);
  }
  const LedgerSnapshot& led = st.ledger;
  const std::string where = led.backend + " " + led.location;
  if (!AddPartTrouble(&t, "ledger", led.state, "none yet (" + where + ")", where + " unreadable: " + led.error)) {
    const store::LedgerCounters& c = led.counters;
    t.Add("ledger", where);
    if (!led.relay_id.empty()) t.Add("relay id", led.relay_id, 2);
    // With a shared ledger: exported and duplicates are the site's totals, batches this
    // relay's sequence; the relays table below has each relay's own counts.
    t.Add("exported", std::to_string(c.exported), 2);
    t.Add("duplicates", std::to_string(c.dups), 2);
    t.Add("batches", std::to_string(c.last_seq), 2);
    if (!led.relays_error.empty()) t.Add("relays", "unreadable: " + led.relays_error, 2);
  }
  out << t.Render();
  if (led.state == PartState::kOk && SharedLedger(led)) out << RelaysTable(led, st.now_ms);
}

void OptionalInt(JsonWriter& w, const char* key, const std::optional<int64_t>& v) {
  w.Key(key);
  if (v) w.Int(*v);
  else w.Null();
}

void StatusJson(const Context& ctx, const BridgeState& st, std::ostream& out) {
  JsonWriter w;
  w.BeginObject();
  w.Key("now_ms").Int(st.now_ms);
  const shm::ExporterState& e = st.table.exporter;
  w.Key("exporter").BeginObject();
  w.Key("state").String(ExporterRunName(st.exporter));
  w.Key("running").Bool(st.exporter != ExporterRun::kNotRunning);
  w.Key("pid").Int(st.table.state == PartState::kOk ? e.pid : 0);
  w.Key("epoch").UInt(st.table.state == PartState::kOk && e.heartbeat_ns != 0 ? e.epoch : st.ledger.counters.epoch);
  OptionalInt(w, "heartbeat_age_ms", st.heartbeat_age_ms);
  OptionalInt(w, "progress_age_ms", st.progress_age_ms);
  if (!st.exporter_lock_error.empty()) w.Key("error").String(st.exporter_lock_error);
  if (!st.ledger_refusal.empty()) w.Key("ledger_refused").String(st.ledger_refusal);
  w.EndObject();

  w.Key("backlog").BeginObject();
  w.Key("state").String(PartStateName(st.spool.state));
  w.Key("messages").UInt(st.spool.messages);
  w.Key("bytes").UInt(st.spool.bytes);
  OptionalInt(w, "oldest_message_age_ms",
              st.spool.oldest_ms ? std::optional<int64_t>(std::max<int64_t>(0, st.now_ms - *st.spool.oldest_ms)) : std::nullopt);
  w.Key("directory").String(ctx.paths.spool_root);
  if (!st.spool.error.empty()) w.Key("error").String(st.spool.error);
  w.EndObject();
  // Not part of "backlog": quarantined captures wait for a person, not for the exporter.
  w.Key("quarantined").UInt(st.spool.quarantined);

  w.Key("table").BeginObject();
  w.Key("state").String(PartStateName(st.table.state));
  w.Key("name").String(st.table.name);
  w.Key("slots").UInt(st.table.slots);
  w.Key("free").UInt(st.table.free);
  w.Key("reserved").UInt(st.table.reserved);
  w.Key("ready").UInt(st.table.ready);
  w.Key("claimed").UInt(st.table.claimed);
  w.Key("overflows").UInt(st.table.overflows);
  if (!st.table.error.empty()) w.Key("error").String(st.table.error);
  w.EndObject();

  const store::LedgerCounters& c = st.ledger.counters;
  w.Key("ledger").BeginObject();
  w.Key("state").String(PartStateName(st.ledger.state));
  w.Key("backend").String(st.ledger.backend);
  w.Key("location").String(st.ledger.location);  // any password masked
  w.Key("path").String(st.ledger.location);      // the older name of "location"
  w.Key("relay_id").String(st.ledger.relay_id);
  w.Key("epoch").UInt(c.epoch);
  w.Key("exported").UInt(c.exported);
  w.Key("duplicates").UInt(c.dups);
  w.Key("batches").UInt(c.last_seq);
  w.Key("captures").UInt(c.captures);
  RelaysJson(w, st.ledger);
  if (!st.ledger.error.empty()) w.Key("error").String(st.ledger.error);
  w.EndObject();
  w.EndObject();
  out << w.Take();
}

// One metric family: HELP, TYPE, then samples (a family may have none when unknown).
class Prom {
 public:
  explicit Prom(std::ostream& out) : out_(out) {}
  Prom& Family(const char* name, const char* type, const char* help) {
    out_ << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
    return *this;
  }
  Prom& Sample(const std::string& name_and_labels, uint64_t v) {
    out_ << name_and_labels << " " << v << "\n";
    return *this;
  }
  Prom& Seconds(const std::string& name, int64_t ms) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(ms) / 1000.0);
    out_ << name << " " << buf << "\n";
    return *this;
  }

 private:
  std::ostream& out_;
};

}  // namespace

int CmdStatus(const Io& io) {
  BridgeState st;
  Gather(io.ctx, &st);
  if (io.json) StatusJson(io.ctx, st, io.out);
  else StatusText(io.ctx, st, io.out);
  return kExitOk;
}

int CmdMetrics(const Io& io) {
  BridgeState st;
  Gather(io.ctx, &st);
  Prom p(io.out);
  // A part that cannot be read leaves its samples out (an absent series, not a false 0),
  // and says why on stderr for whoever runs the scrape.
  bool spool = st.spool.state == PartState::kOk;
  bool table = st.table.state == PartState::kOk;
  bool ledger = st.ledger.state == PartState::kOk;
  if (st.spool.state == PartState::kError) io.err << "ccmailctl: spool: " << st.spool.error << "\n";
  if (st.table.state == PartState::kError) io.err << "ccmailctl: claim table: " << st.table.error << "\n";
  if (st.ledger.state == PartState::kError) io.err << "ccmailctl: ledger: " << st.ledger.error << "\n";

  p.Family("ccmail_backlog_messages", "gauge", "Captured messages in spool/new not yet exported.");
  if (spool || st.spool.state == PartState::kMissing) p.Sample("ccmail_backlog_messages", st.spool.messages);
  p.Family("ccmail_backlog_bytes", "gauge", "Bytes of the captured messages in spool/new.");
  if (spool || st.spool.state == PartState::kMissing) p.Sample("ccmail_backlog_bytes", st.spool.bytes);
  p.Family("ccmail_oldest_message_age_seconds", "gauge", "Age of the oldest capture in spool/new (0 when empty).");
  if (spool || st.spool.state == PartState::kMissing)
    p.Seconds("ccmail_oldest_message_age_seconds",
              st.spool.oldest_ms ? std::max<int64_t>(0, st.now_ms - *st.spool.oldest_ms) : 0);
  p.Family("ccmail_quarantined", "gauge", "Captures in spool/corrupt waiting for an administrator.");
  if (spool || st.spool.state == PartState::kMissing) p.Sample("ccmail_quarantined", st.spool.quarantined);

  p.Family("ccmail_table_slots", "gauge", "Claim-table slots by state.");
  if (table) {
    p.Sample("ccmail_table_slots{state=\"free\"}", st.table.free);
    p.Sample("ccmail_table_slots{state=\"reserved\"}", st.table.reserved);
    p.Sample("ccmail_table_slots{state=\"ready\"}", st.table.ready);
    p.Sample("ccmail_table_slots{state=\"claimed\"}", st.table.claimed);
  }
  p.Family("ccmail_table_overflows_total", "counter",
           "Captures that found the claim table full (still exported, found by the spool scan).");
  if (table) p.Sample("ccmail_table_overflows_total", st.table.overflows);

  const store::LedgerCounters& c = st.ledger.counters;
  p.Family("ccmail_exported_total", "counter", "Deliveries exported to cc:Mail (ledger).");
  if (ledger) p.Sample("ccmail_exported_total", c.exported);
  p.Family("ccmail_duplicates_total", "counter", "Deliveries recognised as duplicates and not exported again (ledger).");
  if (ledger) p.Sample("ccmail_duplicates_total", c.dups);
  p.Family("ccmail_batches_total", "counter", "Batches committed to the ledger (the last batch sequence number).");
  if (ledger) p.Sample("ccmail_batches_total", c.last_seq);

  p.Family("ccmail_exporter_epoch", "gauge", "Epoch of the exporter (bumped at every exporter start).");
  if (table && st.table.exporter.heartbeat_ns != 0) p.Sample("ccmail_exporter_epoch", st.table.exporter.epoch);
  else if (ledger) p.Sample("ccmail_exporter_epoch", c.epoch);
  p.Family("ccmail_exporter_heartbeat_age_seconds", "gauge", "Seconds since the exporter's loop last turned.");
  if (st.heartbeat_age_ms) p.Seconds("ccmail_exporter_heartbeat_age_seconds", *st.heartbeat_age_ms);
  p.Family("ccmail_exporter_up", "gauge", "1 when an exporter process holds the exporter lock, else 0.");
  p.Sample("ccmail_exporter_up", st.exporter != ExporterRun::kNotRunning ? 1 : 0);
  p.Family("ccmail_exporter_stalled", "gauge",
           "1 when the exporter is up but has made no progress for exporter_stall_timeout, else 0.");
  p.Sample("ccmail_exporter_stalled", st.exporter == ExporterRun::kStalled ? 1 : 0);
  return kExitOk;
}

}  // namespace ccmail::ctl
