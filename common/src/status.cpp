#include "ccmail/common/status.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ccmail {

Status Status::FromErrno(const std::string& what, int err) {
  std::string msg = what + ": " + std::strerror(err);
  switch (err) {
    case ENOSPC:
    case EDQUOT:
      return Status(Code::kNoSpace, std::move(msg), err);
    case ENOENT:
      return Status(Code::kNotFound, std::move(msg), err);
    case EEXIST:
      return Status(Code::kAlreadyExists, std::move(msg), err);
    default:
      return Status(Code::kIoError, std::move(msg), err);
  }
}

const char* StatusCodeName(Status::Code code) {
  switch (code) {
    case Status::Code::kOk: return "OK";
    case Status::Code::kNotFound: return "not found";
    case Status::Code::kAlreadyExists: return "already exists";
    case Status::Code::kCorrupt: return "corrupt";
    case Status::Code::kIoError: return "I/O error";
    case Status::Code::kNoSpace: return "no space";
    case Status::Code::kInvalidArgument: return "invalid argument";
    case Status::Code::kBusy: return "busy";
    case Status::Code::kUnavailable: return "unavailable";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(StatusCodeName(code_)) + ": " + message_;
}

Status Status::WithContext(const std::string& context) const {
  if (ok()) return *this;
  return Status(code_, context + ": " + message_, errno_);
}

void CheckFailed(const char* file, int line, const char* expr, const char* msg) {
  std::fprintf(stderr, "%s:%d: internal invariant broken: %s (%s)\n", file, line, expr, msg);
  std::fflush(stderr);
  std::abort();
}

}  // namespace ccmail
