// listen_socket.cpp - see listen_socket.h.
#include "ccmail/milter/listen_socket.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "ccmail/common/unique_fd.h"

namespace ccmail::milter {

namespace {

bool FillAddress(const std::string& path, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (path.size() >= sizeof addr->sun_path) return false;
  std::memcpy(addr->sun_path, path.c_str(), path.size() + 1);
  return true;
}

// Makes room for a new socket at `path`: nothing there, or a stale socket (removed).
Status ClearStalePath(const std::string& path, const sockaddr_un& addr) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return Status::FromErrno("milter_socket: lstat " + path, errno);
  }
  if (!S_ISSOCK(st.st_mode))
    return Status::InvalidArgument("milter_socket: " + path + " exists and is not a socket; not touching it");
  UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe.valid()) return Status::FromErrno("socket", errno);
  if (connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0)
    return Status::Busy("milter_socket: another milter is listening on " + path +
                        " (its socket is left alone; stop it first)");
  if (errno != ECONNREFUSED)
    return Status::FromErrno("milter_socket: cannot tell whether " + path + " is in use: connect", errno);
  if (unlink(path.c_str()) != 0 && errno != ENOENT)
    return Status::FromErrno("milter_socket: remove stale socket " + path, errno);
  return Status::Ok();
}

}  // namespace

Status ListenSocket::Open(const MilterSettings& settings, ListenSocket* out) {
  ListenSocket s;
  int n = sd_listen_fds(1);  // unsets LISTEN_* so a child never takes the socket for its own
  if (n < 0) return Status::FromErrno("sd_listen_fds", -n);
  if (n > 1) return Status::InvalidArgument("systemd passed " + std::to_string(n) + " sockets, expected one");
  if (n == 1) {
    const int fd = SD_LISTEN_FDS_START;
    if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0)
      return Status::InvalidArgument("the socket passed by systemd (fd 3) is not a listening stream socket");
    s.conn_ = "fd:" + std::to_string(fd);
    s.inherited_ = true;
    *out = std::move(s);
    return Status::Ok();
  }
  const std::string path = UnixSocketPath(settings.socket);
  if (path.empty()) {  // inet: libmilter binds it
    s.conn_ = settings.socket;
    *out = std::move(s);
    return Status::Ok();
  }
  sockaddr_un addr;
  if (!FillAddress(path, &addr)) return Status::InvalidArgument("milter_socket: path too long: " + path);
  CCMAIL_RETURN_IF_ERROR(ClearStalePath(path, addr));
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno("socket", errno);
  mode_t old = umask(0177);  // no window with a socket others may use
  int rc = bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  int err = errno;
  umask(old);
  if (rc != 0) return Status::FromErrno("milter_socket: bind " + path, err);
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return Status::FromErrno("milter_socket: lstat " + path, errno);
  s.path_ = path;
  s.dev_ = st.st_dev;
  s.ino_ = st.st_ino;
  // Started as root: the socket belongs to milter_user, as ccmail-milter.socket makes it.
  if (geteuid() == 0 && !settings.user.empty()) {
    struct passwd* pw = getpwnam(settings.user.c_str());
    if (!pw) {
      s.RemoveIfOurs();
      return Status::InvalidArgument("milter_user: no such user: " + settings.user);
    }
    if (chown(path.c_str(), pw->pw_uid, static_cast<gid_t>(-1)) != 0) {
      err = errno;
      s.RemoveIfOurs();
      return Status::FromErrno("milter_socket: chown " + path + " to " + settings.user, err);
    }
  }
  if (!settings.socket_group.empty()) {
    struct group* gr = getgrnam(settings.socket_group.c_str());
    if (!gr) {
      s.RemoveIfOurs();
      return Status::InvalidArgument("milter_socket_group: no such group: " + settings.socket_group);
    }
    // Root may give it any group; an unprivileged milter only one it belongs to.
    if (gr->gr_gid != st.st_gid && chown(path.c_str(), static_cast<uid_t>(-1), gr->gr_gid) != 0) {
      err = errno;
      s.RemoveIfOurs();
      return Status::FromErrno("milter_socket_group: chgrp " + path + " to " + settings.socket_group, err);
    }
  }
  if (chmod(path.c_str(), settings.socket_mode) != 0) {
    err = errno;
    s.RemoveIfOurs();
    return Status::FromErrno("milter_socket_mode: chmod " + path, err);
  }
  if (listen(fd.get(), 128) != 0) {
    err = errno;
    s.RemoveIfOurs();
    return Status::FromErrno("listen " + path, err);
  }
  s.conn_ = "fd:" + std::to_string(fd.release());
  *out = std::move(s);
  return Status::Ok();
}

std::string ListenSocket::Describe() const {
  if (inherited_) return "the socket passed by systemd (" + conn_ + ")";
  if (!path_.empty()) return "unix:" + path_;
  return conn_;
}

Status ListenSocket::StopAccepting() const {
  if (!inherited_) return Status::InvalidArgument("StopAccepting: the socket was not inherited");
  UniqueFd idle(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!idle.valid()) return Status::FromErrno("socket", errno);
  sockaddr_un autobind{};
  autobind.sun_family = AF_UNIX;  // an address of just the family: the kernel picks an abstract name
  if (bind(idle.get(), reinterpret_cast<const sockaddr*>(&autobind), sizeof(sa_family_t)) != 0)
    return Status::FromErrno("bind (idle placeholder)", errno);
  if (listen(idle.get(), 1) != 0) return Status::FromErrno("listen (idle placeholder)", errno);
  if (dup3(idle.get(), SD_LISTEN_FDS_START, O_CLOEXEC) < 0) return Status::FromErrno("dup3", errno);
  return Status::Ok();
}

void ListenSocket::RemoveIfOurs() const {
  if (path_.empty()) return;
  struct stat st;
  if (lstat(path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == dev_ && st.st_ino == ino_)
    (void)unlink(path_.c_str());
}

}  // namespace ccmail::milter
