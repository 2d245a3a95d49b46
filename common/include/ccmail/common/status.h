// status.h - the result of an operation that can fail for an ordinary reason.
//
// SYNOPSIS
//   Status s = spool.Commit(...);
//   if (!s.ok()) log_warning("capture %s: %s", id, s.ToString().c_str());
//
// DESCRIPTION
//   Operating-system and input failures are values returned to the caller, who
//   decides (tempfail the SMTP transaction, quarantine a file, retry later).
//   A Status carries a code, the errno when one caused it, and a message that
//   names what was being done ("fsync spool/new: Input/output error").
//   Broken internal invariants are bugs and abort instead (see CCMAIL_CHECK).
#pragma once

#include <string>
#include <utility>

namespace ccmail {

class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kNotFound,         // a file, key or slot that was asked for is not there
    kAlreadyExists,    // exclusive create found a previous one
    kCorrupt,          // bytes on disk or in shared memory fail a check
    kIoError,          // the operating system refused (errno says why)
    kNoSpace,          // ENOSPC / EDQUOT, a full table, a backlog over its limit
    kInvalidArgument,  // bad input: config value, message, command line
    kBusy,             // held by another live process (exporter lock, registry byte)
    kUnavailable,      // a needed peer is missing or stale (table, exporter)
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status AlreadyExists(std::string msg) { return Status(Code::kAlreadyExists, std::move(msg)); }
  static Status Corrupt(std::string msg) { return Status(Code::kCorrupt, std::move(msg)); }
  static Status InvalidArgument(std::string msg) { return Status(Code::kInvalidArgument, std::move(msg)); }
  static Status NoSpace(std::string msg) { return Status(Code::kNoSpace, std::move(msg)); }
  static Status Busy(std::string msg) { return Status(Code::kBusy, std::move(msg)); }
  static Status Unavailable(std::string msg) { return Status(Code::kUnavailable, std::move(msg)); }
  // From a failed system call: ENOSPC/EDQUOT map to kNoSpace, ENOENT to kNotFound,
  // EEXIST to kAlreadyExists, the rest to kIoError. `what` names the operation and object.
  static Status FromErrno(const std::string& what, int err);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  int sys_errno() const { return errno_; }
  const std::string& message() const { return message_; }
  bool IsNoSpace() const { return code_ == Code::kNoSpace; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsCorrupt() const { return code_ == Code::kCorrupt; }

  // "<code name>: <message>", e.g. "I/O error: fsync spool/new/0abc: Input/output error".
  std::string ToString() const;
  // Returns a copy whose message is "<context>: <old message>", same code and errno.
  Status WithContext(const std::string& context) const;

 private:
  Status(Code code, std::string msg, int err = 0) : code_(code), errno_(err), message_(std::move(msg)) {}
  Code code_ = Code::kOk;
  int errno_ = 0;
  std::string message_;
};

const char* StatusCodeName(Status::Code code);

// Aborts with file:line and the message when an internal invariant is broken.
// Not for input or I/O failures: those are Status values.
[[noreturn]] void CheckFailed(const char* file, int line, const char* expr, const char* msg);

}  // namespace ccmail

#define CCMAIL_CHECK(expr, msg) \
  do { if (!(expr)) ::ccmail::CheckFailed(__FILE__, __LINE__, #expr, (msg)); } while (0)

// Returns from the enclosing function when a Status is not ok.
#define CCMAIL_RETURN_IF_ERROR(expr)            \
  do {                                          \
    ::ccmail::Status ccmail_status_ = (expr);   \
    if (!ccmail_status_.ok()) return ccmail_status_; \
  } while (0)
