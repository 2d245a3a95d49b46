// listen_socket.h - the milter's listening socket, owned by this process, not by libmilter.
//
// SYNOPSIS
//   ListenSocket sock;
//   Status s = ListenSocket::Open(settings, &sock);   // inherited (systemd) or bound here
//   smfi_setconn(sock.libmilter_conn());             // "fd:N" or the inet: spec
//   ...
//   sock.RemoveIfOurs();                             // at exit
//
// DESCRIPTION
//   libmilter's own unix-socket handling is unsafe across restarts: smfi_opensocket(true)
//   unlinks whatever socket is at the path (a running milter's too), and at exit
//   libmilter (not root) unlinks whatever socket is at the path, which is the successor's
//   when the old process is still draining. So a unix: socket is bound here and handed
//   to libmilter as "fd:N" (libmilter then never touches the path):
//   - a path that is not a socket is refused;
//   - a socket that accepts a connection belongs to a running milter: refused (Busy);
//   - a socket that refuses connections is stale (a crashed milter): replaced;
//   - created with umask 0177, then given milter_user (when root), milter_socket_group
//     and milter_socket_mode;
//   - at exit it is removed only if the path still names the inode bound here.
//   A socket passed by systemd (LISTEN_FDS/LISTEN_PID, one listening stream socket) is
//   used as it is: its path, owner and mode belong to ccmail-milter.socket, and it is
//   never removed (it outlives this process, which is what keeps restarts free of 4xx).
//   inet: sockets are opened by libmilter (no path to protect).
#pragma once

#include <sys/types.h>

#include <string>

#include "ccmail/common/status.h"
#include "ccmail/milter/settings.h"

namespace ccmail::milter {

class ListenSocket {
 public:
  static Status Open(const MilterSettings& settings, ListenSocket* out);

  // What to give smfi_setconn.
  const std::string& libmilter_conn() const { return conn_; }
  // The listening socket came from systemd (socket activation).
  bool inherited() const { return inherited_; }
  // Human-readable: the path or spec, and where it came from.
  std::string Describe() const;
  // Unlinks the unix socket path if it still names the socket bound by Open().
  void RemoveIfOurs() const;
  // Inherited socket only: this process stops taking connections from it at once, while
  // the socket itself stays open in systemd (and in a successor), so new MTA connections
  // wait in its backlog instead of meeting a stopping milter. Done by putting an idle
  // non-blocking listening socket in place of fd N (dup3): libmilter's listener keeps
  // polling "its" fd, which never becomes ready (an accept that races with the swap gets
  // EAGAIN, which libmilter retries silently). Sessions already accepted go on.
  Status StopAccepting() const;

 private:
  std::string conn_;
  std::string path_;  // unix socket bound here; empty otherwise
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  bool inherited_ = false;
};

}  // namespace ccmail::milter
