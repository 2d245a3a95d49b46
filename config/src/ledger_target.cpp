// ledger_target.cpp - the ledger settings as a LedgerTarget (see ledger_target.h).
#include "ccmail/config/ledger_target.h"

#include <chrono>
#include <string>

#include "ccmail/config/config.h"

namespace ccmail {

Status LedgerTargetFromConfig(const Config& cfg, const BridgePaths& paths, store::LedgerTarget* out) {
  store::LedgerTarget t;
  CCMAIL_RETURN_IF_ERROR(cfg.GetString("ledger", &t.location));
  CCMAIL_RETURN_IF_ERROR(cfg.GetString("ledger_password_file", &t.password_file));
  CCMAIL_RETURN_IF_ERROR(cfg.GetString("relay_id", &t.relay_id));
  std::chrono::milliseconds timeout{};
  CCMAIL_RETURN_IF_ERROR(cfg.GetDuration("ledger_timeout", &timeout));
  // Below a second a busy but healthy server would fail rounds; above an hour a stuck one
  // would go unnoticed (and PostgreSQL's time-outs are int milliseconds).
  if (timeout < std::chrono::seconds(1) || timeout > std::chrono::hours(1))
    return Status::InvalidArgument(cfg.Where("ledger_timeout") + ": ledger_timeout must be between 1s and 1h, got " +
                                   std::to_string(timeout.count()) + " ms");
  t.timeout_ms = timeout.count();
  if (t.location.empty()) {
    if (!t.relay_id.empty())
      return Status::InvalidArgument(cfg.Where("relay_id") + ": relay_id is set but ledger is not: the SQLite ledger (" +
                                     paths.ledger_path + ") has one relay; set ledger to the shared PostgreSQL ledger");
    if (!t.password_file.empty())
      return Status::InvalidArgument(cfg.Where("ledger_password_file") +
                                     ": ledger_password_file is set but ledger is not (SQLite needs no password)");
    t.location = paths.ledger_path;
    *out = std::move(t);
    return Status::Ok();
  }
  if (!store::IsPostgresLocation(t.location))
    return Status::InvalidArgument(cfg.Where("ledger") +
                                   ": ledger must be empty (the SQLite ledger in spool_directory) or a PostgreSQL "
                                   "postgresql:// URI or key=value connection string");
  if (t.relay_id.empty())
    return Status::InvalidArgument(cfg.Where("relay_id") + ": relay_id is required with a PostgreSQL ledger");
  if (!store::IsValidRelayId(t.relay_id))
    return Status::InvalidArgument(cfg.Where("relay_id") + ": relay_id '" + t.relay_id +
                                   "' must be 1-32 of A-Z a-z 0-9 _ -");
  if (!t.password_file.empty() && t.password_file[0] != '/')
    return Status::InvalidArgument(cfg.Where("ledger_password_file") + ": must be an absolute path, got '" +
                                   t.password_file + "'");
  *out = std::move(t);
  return Status::Ok();
}

store::LedgerTarget SqliteLedgerTarget(const BridgePaths& paths) {
  store::LedgerTarget t;
  t.location = paths.ledger_path;
  return t;
}

}  // namespace ccmail
