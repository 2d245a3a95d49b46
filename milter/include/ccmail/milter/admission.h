// admission.h - may we promise to keep another message right now?
//
// SYNOPSIS
//   std::optional<Reply> no = Admission::Check(sink.Probe(), limits, pending_size);
//   if (no) tempfail with *no;
//
// DESCRIPTION
//   Back-pressure before anything is promised (docs/DESIGN.md §2.10). Returns
//   nullopt to admit, or the SMTP reply to give with a temporary failure:
//     claim table missing/invalid          451 4.3.0
//     exporter made no progress for longer than exporter_stall_timeout
//       while work is pending              451 4.3.0
//     spool file system below spool_min_free (counting this message)
//                                          452 4.3.1
//     backlog over backlog_limit_messages or backlog_limit_bytes
//                                          452 4.3.1
//   An unknown free-space value (statvfs failed) admits: the spool write
//   itself will then fail with a 4xx if the disk is really full.
//
// THREAD SAFETY
//   Pure function.
#pragma once

#include <cstdint>
#include <optional>

#include "ccmail/milter/capture_sink.h"
#include "ccmail/milter/reply.h"
#include "ccmail/milter/settings.h"

namespace ccmail::milter {

struct Admission {
  static std::optional<Reply> Check(const SinkProbe& probe, const AdmissionLimits& limits,
                                    uint64_t message_size);
};

}  // namespace ccmail::milter
