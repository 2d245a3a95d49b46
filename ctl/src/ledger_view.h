// ledger_view.h - how `status` and `verify` show a ledger's relays.
#pragma once

#include <string>

#include "ccmail/ctl/json.h"
#include "state.h"

namespace ccmail::ctl {

// A ledger several relays share (PostgreSQL, or more than one relay row): worth a table of
// its relays. A SQLite ledger's single row repeats the counts above it and is left out.
bool SharedLedger(const LedgerSnapshot& led);
// One line per relay: id ("(this)" marks this relay), epoch, last seq, batches, exported,
// duplicates, age of its last commit.
std::string RelaysTable(const LedgerSnapshot& led, int64_t now_ms);
// "relays": [{relay_id, epoch, last_seq, spool_clean_seq, batches, exported, duplicates,
// last_commit_ms}...] (and "relays_error" when they could not be listed).
void RelaysJson(JsonWriter& w, const LedgerSnapshot& led);

}  // namespace ccmail::ctl
