// sink.cpp - StringSink and FdSink (see converter.h).
#include <errno.h>
#include <unistd.h>

#include <cstring>

#include "ccmail/format/converter.h"

namespace ccmail::format {

Status StringSink::Write(const void* data, size_t len) {
  out_.append(static_cast<const char*>(data), len);
  return Status::Ok();
}

FdSink::~FdSink() { (void)Flush(); }

Status FdSink::Write(const void* data, size_t len) {
  constexpr size_t kBuf = 64 * 1024;
  if (buf_.size() + len <= kBuf) {
    buf_.append(static_cast<const char*>(data), len);
    return Status::Ok();
  }
  CCMAIL_RETURN_IF_ERROR(Flush());
  if (len < kBuf) {
    buf_.append(static_cast<const char*>(data), len);
    return Status::Ok();
  }
  const char* p = static_cast<const char*>(data);
  size_t left = len;
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("write import file", errno);
    }
    p += n;
    left -= static_cast<size_t>(n);
    written_ += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

Status FdSink::Flush() {
  size_t off = 0;
  while (off < buf_.size()) {
    ssize_t n = ::write(fd_, buf_.data() + off, buf_.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      buf_.erase(0, off);
      return Status::FromErrno("write import file", errno);
    }
    off += static_cast<size_t>(n);
    written_ += static_cast<uint64_t>(n);
  }
  buf_.clear();
  return Status::Ok();
}

}  // namespace ccmail::format
