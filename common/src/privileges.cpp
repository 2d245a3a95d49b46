// privileges.cpp - see privileges.h.
#include "ccmail/common/privileges.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace ccmail {

Status DropPrivileges(const std::string& user, const std::string& setting) {
  if (geteuid() != 0 || user.empty()) return Status::Ok();
  struct passwd* pw = getpwnam(user.c_str());
  if (!pw) return Status::InvalidArgument(setting + ": no such user: " + user);
  if (initgroups(pw->pw_name, pw->pw_gid) != 0) return Status::FromErrno("initgroups " + user, errno);
  if (setgid(pw->pw_gid) != 0) return Status::FromErrno("setgid", errno);
  if (setuid(pw->pw_uid) != 0) return Status::FromErrno("setuid " + user, errno);
  // A setuid that left the saved uid at 0 would let the process become root again.
  if (setuid(0) == 0) return Status::Unavailable("privilege drop did not stick");
  return Status::Ok();
}

Status EnsureOwnedDirectory(const std::string& dir, const std::string& user, const std::string& setting) {
  if (mkdir(dir.c_str(), 0750) != 0) {
    if (errno == EEXIST) return Status::Ok();
    return Status::FromErrno("mkdir " + dir, errno);
  }
  if (geteuid() == 0 && !user.empty()) {
    struct passwd* pw = getpwnam(user.c_str());
    if (!pw) return Status::InvalidArgument(setting + ": no such user: " + user);
    if (chown(dir.c_str(), pw->pw_uid, pw->pw_gid) != 0) return Status::FromErrno("chown " + dir, errno);
  }
  return Status::Ok();
}

}  // namespace ccmail
