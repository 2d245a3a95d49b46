// pg_ledger.h - the PostgreSQL backend's opener (private to ccmail_store; see ledger.h).
#pragma once

#include <memory>

#include "ccmail/store/ledger.h"

namespace ccmail::store {

// Connects (password from target.password_file), creates the schema when missing (not when
// read_only) and this relay's row, and returns the Ledger. kUnavailable when the server
// cannot be reached.
Status OpenPgLedger(const LedgerTarget& target, bool read_only, std::unique_ptr<Ledger>* out);

}  // namespace ccmail::store
