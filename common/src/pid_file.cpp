// pid_file.cpp - see pid_file.h.
#include "ccmail/common/pid_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include "ccmail/common/unique_fd.h"

namespace ccmail {

namespace {

std::string DirName(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

Status WritePidFile(const std::string& path) {
  const std::string dir = DirName(path);
  struct stat ds;
  if (stat(dir.c_str(), &ds) != 0) return Status::FromErrno("pid file directory " + dir, errno);
  if ((ds.st_uid != geteuid() && ds.st_uid != 0) || (ds.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    return Status::InvalidArgument("pid file directory " + dir +
                                   " is writable by others (must be owned by the daemon's user or root, "
                                   "without group/other write)");
  const std::string tmp = path + ".new." + std::to_string(getpid());
  (void)unlink(tmp.c_str());  // a leftover of this very pid number from an earlier boot
  UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!fd.valid()) return Status::FromErrno("create " + tmp, errno);
  std::string text = std::to_string(getpid()) + "\n";
  if (write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    int err = errno;
    (void)unlink(tmp.c_str());
    return Status::FromErrno("write " + tmp, err);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    (void)unlink(tmp.c_str());
    return Status::FromErrno("rename " + tmp + " to " + path, err);
  }
  return Status::Ok();
}

void RemoveOwnPidFile(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return;
  char buf[32] = {};
  ssize_t n = read(fd.get(), buf, sizeof buf - 1);
  if (n <= 0) return;
  if (std::strtol(buf, nullptr, 10) == static_cast<long>(getpid())) (void)unlink(path.c_str());
}

}  // namespace ccmail
