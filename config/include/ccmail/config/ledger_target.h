// ledger_target.h - the settings ledger, ledger_password_file and relay_id as a
// store::LedgerTarget (which ledger the exporter and ccmailctl open).
#pragma once

#include "ccmail/common/status.h"
#include "ccmail/config/paths.h"
#include "ccmail/store/ledger.h"

namespace ccmail {

class Config;

// ledger empty: the SQLite file paths.ledger_path, and relay_id must be empty. ledger a
// PostgreSQL location: relay_id is required (1-32 of [A-Za-z0-9_-]); ledger_password_file
// must be an absolute path when set. kInvalidArgument naming the setting and its line.
Status LedgerTargetFromConfig(const Config& cfg, const BridgePaths& paths, store::LedgerTarget* out);

// The ledger of paths as a target (SQLite, tests and tools without a config).
store::LedgerTarget SqliteLedgerTarget(const BridgePaths& paths);

}  // namespace ccmail
