// admission.cpp - back-pressure decision (docs/DESIGN.md §2.10): tempfail before promising.
#include "ccmail/milter/admission.h"

#include <string>

namespace ccmail::milter {

std::optional<Reply> Admission::Check(const SinkProbe& p, const AdmissionLimits& l, uint64_t size) {
  if (!p.table_present)
    return Reply{"451", "4.3.0", "cc:Mail gateway not ready (claim table missing), try again later"};
  // A stalled exporter only matters when there is something for it to do.
  if (p.exporter_idle && *p.exporter_idle > l.exporter_stall && p.backlog_messages > 0)
    return Reply{"451", "4.3.0",
                 "cc:Mail gateway exporter stalled for " + std::to_string(p.exporter_idle->count() / 1000) +
                     "s, try again later"};
  if (p.free_bytes && (*p.free_bytes < l.spool_min_free || *p.free_bytes - l.spool_min_free < size))
    return Reply{"452", "4.3.1", "cc:Mail gateway spool disk is low on space, try again later"};
  if (p.backlog_messages >= l.backlog_messages)
    return Reply{"452", "4.3.1",
                 "cc:Mail gateway backlog full (" + std::to_string(p.backlog_messages) + " messages), try again later"};
  if (p.backlog_bytes + size > l.backlog_bytes)
    return Reply{"452", "4.3.1", "cc:Mail gateway backlog full (bytes), try again later"};
  return std::nullopt;
}

}  // namespace ccmail::milter
