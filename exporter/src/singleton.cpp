#include "ccmail/exporter/singleton.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>

namespace ccmail::exporter {

Status AcquireExporterLock(const std::string& lock_path, UniqueFd* held) {
  UniqueFd fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640));
  if (!fd.valid()) return Status::FromErrno("open exporter lock " + lock_path, errno);
  while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return Status::Busy("another ccmail-exporter holds " + lock_path);
    return Status::FromErrno("flock " + lock_path, errno);
  }
  *held = std::move(fd);
  return Status::Ok();
}

}  // namespace ccmail::exporter
