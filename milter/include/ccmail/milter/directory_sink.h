// directory_sink.h - a durable CaptureSink over a plain directory (interim, until the
// store's Spool and the shm claim table are integrated as SpoolCaptureSink).
//
// SYNOPSIS
//   std::unique_ptr<CaptureSink> sink;
//   Status s = DirectorySink::Open("/var/spool/ccmail-bridge/milter-interim", &sink);
//
// DESCRIPTION
//   Each capture streams into <dir>/tmp/<capture id>.<pid> (O_CREAT|O_EXCL).
//   Commit writes <dir>/tmp/<id>.meta (queue id, sender, recipients with
//   cc:Mail name and post office, size), fsyncs both files, renames them into
//   <dir>/new/ and fsyncs that directory: the durability point. Any failure
//   returns a Status and removes what it wrote; a failed fsync is never
//   retried on the same file. Probe() reports statvfs free space only (no
//   claim table: table_present is true, backlog 0, exporter unknown).
//
// THREAD SAFETY
//   Begin()/Probe() thread-safe; one writer per message.
#pragma once

#include <memory>
#include <string>

#include "ccmail/milter/capture_sink.h"

namespace ccmail::milter {

class DirectorySink {
 public:
  static Status Open(const std::string& dir, std::unique_ptr<CaptureSink>* out);
};

// 48-bit milliseconds + 80 random bits, 32 lower-case hex characters.
std::string NewCaptureIdText();

}  // namespace ccmail::milter
