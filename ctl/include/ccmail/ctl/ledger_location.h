// ledger_location.h - the ledger's location as ccmailctl shows it (status, verify).
//
// The `ledger` setting is a SQLite file or a PostgreSQL connection string. The password belongs
// in ledger_password_file, but a site may still have written one into the URL or the key=value
// string; whatever ccmailctl prints (a terminal, a ticket, a monitoring scrape) must not carry it.
#pragma once

#include <string>
#include <string_view>

namespace ccmail::ctl {

// The location with every password replaced by "***":
//   postgresql://ccmail:s3cret@db1/ccmail        -> postgresql://ccmail:***@db1/ccmail
//   postgres://db1/ccmail?user=x&password=s3cret  -> postgres://db1/ccmail?user=x&password=***
//   host=db1 password='it''s \' x' dbname=ccmail  -> host=db1 password=*** dbname=ccmail
// Anything else (a file path) comes back unchanged.
std::string MaskLedgerLocation(std::string_view location);

}  // namespace ccmail::ctl
