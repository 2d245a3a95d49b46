// converter.h - one RFC 5322/MIME message -> cc:Mail import-file messages.
//
// SYNOPSIS
//   Converter conv(settings);                           // FormatSettings, see settings.h
//   ConvertInput in;
//   in.fd = spool_fd; in.offset = off; in.length = len; // the raw message, streamed
//   in.envelope_sender = "jdoe@example.com";
//   in.recipients = {{"jsmith@corp.example", {"Smith, John", "HUBPO2"}}};  // ONE post office
//   in.received = time(nullptr);
//   FdSink out(outbox_fd);
//   ConvertResult res;
//   Status s = conv.Convert(in, &out, &res);
//   if (IsUnconvertible(s)) quarantine(s.message()); else if (!s.ok()) retry_later(s);
//
// DESCRIPTION
//   Convert() parses the message with GMime from in.data when the caller has
//   the bytes, else directly from (fd, offset, length)
//   of a regular file (spool file or memfd), through its own open file
//   description (/proc/self/fd), so the caller's file position is not moved
//   (without /proc it falls back to a dup, which shares it), and appends one or
//   more cc:Mail messages to the sink: more than one when the recipients' lines
//   would push the header block (HeaderBlockBytes, rules.h) over header_limit, each copy then carrying a
//   share of the recipients. Attachment data is decoded twice, streaming (once
//   to count, once to write), never held whole; so is a plain main text (charset
//   decided from all of it, then converted to the code page twice, streaming, to
//   measure and to write); only what goes into text items (at most max_items x
//   text_item_max bytes), HTML and, with itemsize = no, the main text are held.
//   From a spool file, peak memory stays about 0.2x the message size.
//
//   Recipients: ONLY in.recipients ever appear on To:/Cc:/Bcc: lines (each
//   cc:Mail name once, duplicates dropped), because
//   IMPORT delivers to every addressee line. A recipient goes on To: when its
//   SMTP address is in the header To:, Cc: when in the header Cc:, else Bcc:.
//   Every other visible recipient stays in the "Headers" item only.
//   Nothing from the message can start a line that a reader takes as a
//   keyword: subjects are one cleaned line, item data is counted (/ITEMSIZE)
//   or keyword-protected, NUL/0x1A/C0 controls never reach text.
//
// ERRORS
//   kInvalidArgument ("unconvertible", IsUnconvertible()): the message itself
//   cannot be converted (not MIME-parseable at all, no recipients given, a
//   recipient whose line alone makes the header block exceed header_limit). Quarantine it.
//   kIoError / kNoSpace: reading the input (short file, not a regular file, a
//   read error) or writing the sink failed; the sink
//   may hold a partial message, so the caller discards its output and retries.
//
// THREAD SAFETY
//   A Converter is immutable after construction; Convert() may run
//   concurrently on different inputs and sinks. GMime is initialised once,
//   thread-safely, on first use.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <ctime>
#include <string>
#include <vector>

#include "ccmail/common/status.h"
#include "ccmail/format/address_map.h"
#include "ccmail/format/settings.h"

namespace ccmail::format {

// Where converted bytes go. Write() appends all of len or fails.
class OutputSink {
 public:
  virtual ~OutputSink() = default;
  virtual Status Write(const void* data, size_t len) = 0;
};

// Appends to a std::string (tests, fuzzers, small messages).
class StringSink : public OutputSink {
 public:
  Status Write(const void* data, size_t len) override;
  std::string& str() { return out_; }
 private:
  std::string out_;
};

// Appends to a file descriptor with write(2), retrying short writes and EINTR,
// through a 64 KiB buffer; Flush() (also called by the destructor, ignoring
// errors) pushes the rest. Errors map to kIoError / kNoSpace with errno.
class FdSink : public OutputSink {
 public:
  explicit FdSink(int fd) : fd_(fd) {}
  ~FdSink() override;
  Status Write(const void* data, size_t len) override;
  Status Flush();
  uint64_t bytes_written() const { return written_; }
 private:
  int fd_;
  std::string buf_;
  uint64_t written_ = 0;
};

struct ConvertRecipient {
  std::string smtp_address;  // envelope recipient (RCPT TO), used to pick To/Cc/Bcc
  CcMailAddress ccmail;      // as resolved at capture time
};

struct ConvertInput {
  int fd = -1;
  off_t offset = 0;
  uint64_t length = 0;
  // When set, the message itself (`length` bytes the caller keeps alive during the call):
  // parsed from a copy in memory, fd and offset are not used. The exporter passes the
  // bytes it already read to check the spool file's CRC.
  const char* data = nullptr;
  std::string envelope_sender;                // MAIL FROM, "" for the null sender
  std::vector<ConvertRecipient> recipients;   // all of ONE post office
  time_t received = 0;                        // fallback when Date: is missing or absurd
  std::string log_id;                         // capture id, for diagnostics
};

struct ConvertResult {
  int messages_written = 0;    // cc:Mail messages (copies after a header split)
  int items_written = 0;       // in the first copy
  uint64_t bytes_written = 0;
  std::vector<std::string> notices;  // what was dropped or changed (nesting, item cap, ...)
};

// One output of ConvertForEach: its recipients (all of one post office) and where it goes.
struct ConvertTarget {
  std::vector<ConvertRecipient> recipients;
  OutputSink* out = nullptr;
  ConvertResult* result = nullptr;  // may be null
};

class Converter {
 public:
  explicit Converter(FormatSettings settings);
  // input.recipients to one sink.
  Status Convert(const ConvertInput& input, OutputSink* out, ConvertResult* result) const;
  // The same message for several post offices: what Convert() would write for each target's
  // recipients (input.recipients is not used), but the MIME parse, the item plan and the
  // measuring are done once. Every target's recipients are checked before anything is
  // written, so an unconvertible recipient leaves every sink untouched; a write error stops
  // at that target (earlier sinks are complete, later ones untouched).
  Status ConvertForEach(const ConvertInput& input, const std::vector<ConvertTarget>& targets) const;
  const FormatSettings& settings() const { return settings_; }

 private:
  FormatSettings settings_;
};

// True for the Status of a message that can never convert (quarantine it).
inline bool IsUnconvertible(const Status& s) { return s.code() == Status::Code::kInvalidArgument; }

}  // namespace ccmail::format
