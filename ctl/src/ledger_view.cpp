// ledger_view.cpp - the relays of a shared ledger in status and verify (ledger_view.h).
#include "ledger_view.h"

#include <algorithm>

#include "format.h"

namespace ccmail::ctl {

bool SharedLedger(const LedgerSnapshot& led) {
  return led.backend != "sqlite" || led.relays.size() > 1;
}

std::string RelaysTable(const LedgerSnapshot& led, int64_t now_ms) {
  TextTable table({"relay", "epoch", "last seq", "batches", "exported", "duplicates", "last commit"});
  for (const store::RelayCounters& r : led.relays) {
    std::string id = r.relay_id == led.relay_id && !r.relay_id.empty() ? r.relay_id + " (this)" : r.relay_id;
    table.Add({id, std::to_string(r.epoch), std::to_string(r.last_seq), std::to_string(r.batches),
               std::to_string(r.exported), std::to_string(r.dups),
               r.last_commit_ms > 0 ? FormatAge(std::max<int64_t>(0, now_ms - r.last_commit_ms)) + " ago" : "never"});
  }
  return table.Render();
}

void RelaysJson(JsonWriter& w, const LedgerSnapshot& led) {
  w.Key("relays").BeginArray();
  for (const store::RelayCounters& r : led.relays) {
    w.BeginObject();
    w.Key("relay_id").String(r.relay_id);
    w.UIntMembers({{"epoch", r.epoch}, {"last_seq", r.last_seq}, {"spool_clean_seq", r.spool_clean_seq},
                   {"batches", r.batches}, {"exported", r.exported}, {"duplicates", r.dups}});
    w.Key("last_commit_ms").Int(r.last_commit_ms);
    w.EndObject();
  }
  w.EndArray();
  if (!led.relays_error.empty()) w.Key("relays_error").String(led.relays_error);
}

}  // namespace ccmail::ctl
