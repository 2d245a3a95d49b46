// pid_file.h - the daemons' pid files, written without following links and never as root.
#pragma once

#include <string>

#include "ccmail/common/status.h"

namespace ccmail {

// Writes getpid() to `path`. Call it after the privilege drop. Refuses a directory that
// a user other than the caller (or root) could write. Writes a new file next to it
// (O_CREAT|O_EXCL|O_NOFOLLOW) and renames it over `path`: an existing entry, even a
// symbolic link planted there, is replaced and never followed.
Status WritePidFile(const std::string& path);

// Removes `path` only when it still holds getpid(): a successor's pid file stays.
void RemoveOwnPidFile(const std::string& path);

}  // namespace ccmail
