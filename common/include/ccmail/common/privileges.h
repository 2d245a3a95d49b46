// privileges.h - how the daemons stop being root (ccmail-milter, ccmail-exporter).
#pragma once

#include <string>

#include "ccmail/common/status.h"

namespace ccmail {

// As root: become `user` (its uid, primary gid and supplementary groups) and check that
// root cannot be regained. Not root, or user empty: nothing to do. `setting` names the
// configuration setting that gave the user, for the error message.
Status DropPrivileges(const std::string& user, const std::string& setting);

// Creates directory `dir` 0750 if missing and, as root, gives it to `user`; an existing
// directory is left as it is (the claim table refuses an unsafe one). For
// runtime_directory when systemd did not make it.
Status EnsureOwnedDirectory(const std::string& dir, const std::string& user, const std::string& setting);

}  // namespace ccmail
