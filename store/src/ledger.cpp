// ledger.cpp - what both ledger backends share: choosing one from a LedgerTarget, and the
// single-item lookups built on the bulk ones.
#include "ccmail/store/ledger.h"

#include "pg_ledger.h"

namespace ccmail::store {

Ledger::~Ledger() = default;

Status Ledger::HasCapture(const CaptureId& id, bool* found) {
  std::vector<char> found_flags;
  CCMAIL_RETURN_IF_ERROR(HasCaptures({id}, &found_flags));
  *found = found_flags[0] != 0;
  return Status::Ok();
}

Status Ledger::IsExported(const ContentKey& key, const std::string& recipient, bool* exported) {
  std::vector<char> exported_flags;
  CCMAIL_RETURN_IF_ERROR(AreExported({{key, recipient}}, &exported_flags));
  *exported = exported_flags[0] != 0;
  return Status::Ok();
}

bool IsPostgresLocation(std::string_view location) {
  if (location.starts_with("postgresql://") || location.starts_with("postgres://")) return true;
  // libpq's key=value form: "host=db1 dbname=ccmail". A file path may contain '=' too, but
  // then a '/' comes first ("/srv/a=b/ledger.db") or there is no space-separated keyword.
  const size_t eq = location.find('=');
  if (eq == std::string_view::npos || eq == 0) return false;
  const std::string_view keyword = location.substr(0, eq);
  for (char c : keyword)
    if (!((c >= 'a' && c <= 'z') || c == '_' || c == ' ')) return false;
  return true;
}

bool IsValidRelayId(std::string_view relay_id) {
  if (relay_id.empty() || relay_id.size() > 32) return false;
  for (char c : relay_id)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
      return false;
  return true;
}

namespace {
Status CheckTarget(const LedgerTarget& target, bool relay_required) {
  if (target.location.empty()) return Status::InvalidArgument("ledger: no location given");
  if (!IsPostgresLocation(target.location)) {
    if (!target.relay_id.empty())
      return Status::InvalidArgument("ledger " + target.location + ": relay_id '" + target.relay_id +
                                     "' needs a shared (PostgreSQL) ledger; a SQLite ledger has one relay");
    return Status::Ok();
  }
  if (relay_required && target.relay_id.empty())
    return Status::InvalidArgument("ledger: a PostgreSQL ledger needs relay_id (1-32 of [A-Za-z0-9_-])");
  if (!target.relay_id.empty() && !IsValidRelayId(target.relay_id))
    return Status::InvalidArgument("ledger: relay_id '" + target.relay_id + "' is not 1-32 of [A-Za-z0-9_-]");
  return Status::Ok();
}
}  // namespace

Status OpenLedger(const LedgerTarget& target, std::unique_ptr<Ledger>* out) {
  CCMAIL_RETURN_IF_ERROR(CheckTarget(target, true));
  if (!IsPostgresLocation(target.location)) return Ledger::Open(target.location, out);
  return OpenPgLedger(target, /*read_only=*/false, out);
}

Status OpenLedgerReadOnly(const LedgerTarget& target, std::unique_ptr<Ledger>* out) {
  CCMAIL_RETURN_IF_ERROR(CheckTarget(target, false));
  if (!IsPostgresLocation(target.location)) return Ledger::OpenReadOnly(target.location, out);
  return OpenPgLedger(target, /*read_only=*/true, out);
}

}  // namespace ccmail::store
