// capture_sink.h - where a captured message goes: the seam between the milter and the store.
//
// SYNOPSIS
//   std::unique_ptr<CaptureWriter> w;
//   Status s = sink.Begin("alice@example.org", &w);   // opens spool/tmp/<id>.<tag>
//   s = w->AddHeader("Subject", " hello");      // streamed, never kept whole in memory
//   s = w->EndHeaders(); s = w->AddBody(chunk);
//   CaptureReceipt r; s = w->Commit(envelope, &r);   // fsync + rename + dir fsync + publish
//
// DESCRIPTION
//   CaptureSink is what CaptureSession writes to. The production implementation
//   (SpoolCaptureSink, spool_sink.h) streams into the store's spool (ccmail_store)
//   and publishes the capture in the shared-memory claim table (ccmail_shm); the
//   session tests use an in-memory fake.
//
//   Commit() is the durability point: when it returns Ok the message is on
//   disk (file and directory entry fsync'd) and the MTA may be told CONTINUE.
//   A failure of the claim-table publish after that point is NOT an error of
//   Commit (the spool scan finds the capture): the receipt says published=false.
//   Any other failure returns a Status and leaves nothing acknowledged; the
//   writer is then dead and Abort() (or the destructor) removes its tmp file.
//
//   Probe() returns the numbers the admission check needs. It must be cheap
//   (called once per message with cc:Mail recipients).
//
// THREAD SAFETY
//   A CaptureSink is shared by all milter threads: Begin() and Probe() are
//   thread-safe. A CaptureWriter belongs to one message, used by one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ccmail/common/status.h"

namespace ccmail::milter {

struct CapturedRecipient {
  std::string smtp_address;  // as the MTA gave it, without <>
  std::string ccmail_name;   // resolved at capture time
  std::string post_office;
};

struct CaptureEnvelope {
  std::string queue_id;  // MTA queue id (macro {i}); may be empty
  std::string sender;    // envelope sender without <>; empty for the null sender
  std::vector<CapturedRecipient> recipients;
  std::chrono::system_clock::time_point received;
  // No SMTP client (sendmail(1) through Postfix's pickup): no lost 250 can make it retry,
  // so fields the MTA generated stay in the content key (store/content_key.h).
  bool local_submission = false;
};

struct CaptureReceipt {
  std::string capture_id;  // 32 hex characters
  uint64_t size = 0;       // bytes of the raw message written
  bool published = true;   // false: durable but not in the claim table (overflow or missing table)
};

class CaptureWriter {
 public:
  virtual ~CaptureWriter() = default;
  // value is the raw header value as the MTA passed it (leading space included).
  virtual Status AddHeader(std::string_view name, std::string_view value) = 0;
  virtual Status EndHeaders() = 0;
  virtual Status AddBody(std::string_view chunk) = 0;
  virtual Status Commit(const CaptureEnvelope& envelope, CaptureReceipt* receipt) = 0;
  // Drops an uncommitted capture (best effort, idempotent).
  virtual void Abort() = 0;
};

// What Admission decides from. nullopt / false fields mean "not known".
struct SinkProbe {
  bool table_present = true;          // claim table open and valid
  std::optional<uint64_t> free_bytes;         // on the spool file system, for unprivileged users
  uint64_t backlog_messages = 0;      // captured, not yet exported
  uint64_t backlog_bytes = 0;
  // Time since the exporter last showed progress; nullopt when no exporter ever registered.
  std::optional<std::chrono::milliseconds> exporter_idle;
};

class CaptureSink {
 public:
  virtual ~CaptureSink() = default;
  // envelope_sender (MAIL FROM, <> stripped) is given up front because the content key
  // (store/content_key.h) hashes it before the first header field.
  virtual Status Begin(std::string_view envelope_sender, std::unique_ptr<CaptureWriter>* writer) = 0;
  virtual SinkProbe Probe() = 0;
};

}  // namespace ccmail::milter
