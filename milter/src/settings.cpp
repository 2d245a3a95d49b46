// settings.cpp - MilterSettings::FromConfig: every milter setting read and checked once.
#include "ccmail/milter/settings.h"

#include <cstdlib>

namespace ccmail::milter {

namespace {

bool StartsWith(const std::string& s, std::string_view p) { return s.compare(0, p.size(), p) == 0; }

}  // namespace

std::string UnixSocketPath(const std::string& spec) {
  if (StartsWith(spec, "unix:")) return spec.substr(5);
  if (StartsWith(spec, "local:")) return spec.substr(6);
  if (!spec.empty() && spec[0] == '/') return spec;
  return "";
}

Status ValidateSocketSpec(const std::string& spec) {
  std::string path = UnixSocketPath(spec);
  if (!path.empty()) {
    if (path[0] != '/') return Status::InvalidArgument("unix socket path must be absolute: " + spec);
    return Status::Ok();
  }
  std::string rest;
  if (StartsWith(spec, "inet:")) rest = spec.substr(5);
  else if (StartsWith(spec, "inet6:")) rest = spec.substr(6);
  else return Status::InvalidArgument("expected unix:/path or inet:port@host, got \"" + spec + "\"");
  auto at = rest.find('@');
  std::string port = rest.substr(0, at);
  char* end = nullptr;
  long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 1 || p > 65535)
    return Status::InvalidArgument("bad port in \"" + spec + "\" (1-65535)");
  if (at == std::string::npos || at + 1 >= rest.size())
    return Status::InvalidArgument("inet socket needs an explicit host, e.g. inet:" + port +
                                   "@127.0.0.1 (listening on all interfaces is refused)");
  return Status::Ok();
}

Status MilterSettings::FromConfig(const Config& c, MilterSettings* out) {
  MilterSettings s;
  CCMAIL_RETURN_IF_ERROR(c.GetString("milter_socket", &s.socket));
  if (Status v = ValidateSocketSpec(s.socket); !v.ok())
    return Status::InvalidArgument(c.Where("milter_socket") + ": milter_socket: " + v.message());
  CCMAIL_RETURN_IF_ERROR(c.GetMode("milter_socket_mode", &s.socket_mode));
  // Whoever can connect can make the milter capture (and divert) mail: only the owner and
  // milter_socket_group, never "other".
  if (s.socket_mode & 07)
    return Status::InvalidArgument(c.Where("milter_socket_mode") + ": milter_socket_mode: " +
                                   c.GetRaw("milter_socket_mode") +
                                   " gives every local user access to the milter; no bit for \"other\" (e.g. 0660, "
                                   "with the MTA's user in milter_socket_group)");
  CCMAIL_RETURN_IF_ERROR(c.GetString("milter_socket_group", &s.socket_group));
  CCMAIL_RETURN_IF_ERROR(c.GetString("milter_user", &s.user));
  CCMAIL_RETURN_IF_ERROR(c.GetString("milter_pid_file", &s.pid_file));
  CCMAIL_RETURN_IF_ERROR(c.GetString("spool_directory", &s.spool_directory));
  std::string mode;
  CCMAIL_RETURN_IF_ERROR(c.GetEnum("capture_mode", {"divert", "copy"}, &mode));
  s.mode = mode == "copy" ? CaptureMode::kCopy : CaptureMode::kDivert;
  CCMAIL_RETURN_IF_ERROR(c.GetBool("reject_unknown", &s.reject_unknown));
  CCMAIL_RETURN_IF_ERROR(c.GetSize("message_size_limit", &s.limits.message_size));
  if (s.limits.message_size == 0)
    return Status::InvalidArgument(c.Where("message_size_limit") + ": message_size_limit: must be > 0");
  CCMAIL_RETURN_IF_ERROR(c.GetUInt("recipient_limit", 1, 1000000, &s.limits.recipients));
  CCMAIL_RETURN_IF_ERROR(c.GetUInt("header_count_limit", 1, 1000000, &s.limits.header_count));
  CCMAIL_RETURN_IF_ERROR(c.GetSize("spool_min_free", &s.admission.spool_min_free));
  CCMAIL_RETURN_IF_ERROR(c.GetUInt("backlog_limit_messages", 1, UINT64_MAX, &s.admission.backlog_messages));
  CCMAIL_RETURN_IF_ERROR(c.GetSize("backlog_limit_bytes", &s.admission.backlog_bytes));
  CCMAIL_RETURN_IF_ERROR(c.GetDuration("exporter_stall_timeout", &s.admission.exporter_stall));
  *out = std::move(s);
  return Status::Ok();
}

}  // namespace ccmail::milter
