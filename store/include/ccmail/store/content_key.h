// content_key.h - the content key (docs/DESIGN.md §2.2): SHA-256 over the canonical form of a message.
//
// DESCRIPTION
//   The content key identifies "the same message" across an SMTP client's retry, a second
//   milter or a re-injection. Canonical form (one function: ContentKeyBuilder):
//     "ccmail-ck-2\n"
//     "S" <envelope sender, whitespace trimmed, angle brackets stripped> "\n"
//     for each header field in order, except trace fields (Received, Return-Path,
//     Delivered-To, X-Original-To, X-Ccmail-*, and any extra names given) and except the
//     first Message-ID, Date, Resent-Message-ID and Resent-Date (held, see below):
//       "H" <lowercased name> ":" <value unfolded: CRLF/LF + WSP -> one space, runs of
//       WSP -> one space, leading/trailing WSP trimmed> "\n"
//     the held fields in that fixed order, each as an "H" line, unless MTA-generated
//     "B" <64 hex: SHA-256 of the body with line endings normalised to LF>
//   SHA-256 via GLib's GChecksum.
//
//   MTA-generated fields. Postfix adds a missing Message-ID and Date for clients in
//   local_header_rewrite_clients (by default the relay's own addresses) or with
//   always_add_missing_headers, and the milter sees them (verified: Postfix 3.7, smtpd and
//   pickup; Postfix's own Received field is not passed to the milter). They are new on every
//   attempt, so a client's retry after a lost 250 would get another key and be exported
//   twice. Left out of the key is a field that occurs exactly once (an MTA adds one only
//   when none is there) and
//     Message-ID / Resent-Message-ID: embeds this attempt's queue id (SetQueueId) as "<ID@"
//       or ".ID@" (Postfix <YYYYMMDDhhmmss.ID@myhostname> or <ID@myhostname> with long queue
//       ids, Sendmail <YYYYMMDDhhmm.ID@host>); no client can know the queue id in advance;
//     Date / Resent-Date: comes after such a generated Message-ID: Postfix appends the
//       missing fields behind the client's, Message-Id first, then Date.
//   Both tests depend only on the message and on whether the MTA made the Message-ID, which
//   is the same for every attempt of one message: no attempt gets another decision.
//   Not recognised: a generated Date when the client sent its own Message-ID but no Date
//   (RFC 5322 requires Date), and Sendmail's generated Date (Sendmail lists it before the
//   Message-ID); a lost-250 retry of such a message can be exported twice.
//   The caller gives the queue id only for SMTP clients: for a local submission (sendmail(1),
//   Postfix pickup: the milter sees client port 0) there is no lost 250 to retry after, and
//   the generated fields are what keeps two identical cron mails apart.
//
// USAGE
//   ContentKeyBuilder b; b.SetEnvelopeSender("<a@x>"); b.AddHeader("Subject", "hi");
//   b.AddBody(chunk, n); ... b.SetQueueId("4AbC12"); ContentKey k = b.Finish();
//
// THREAD SAFETY
//   A builder is used by one thread at a time.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ccmail::store {

struct ContentKey {
  std::array<uint8_t, 32> bytes{};
  std::string ToString() const;  // 64 lowercase hex
  static std::optional<ContentKey> Parse(std::string_view hex64);
  friend bool operator==(const ContentKey&, const ContentKey&) = default;
  friend auto operator<=>(const ContentKey&, const ContentKey&) = default;
};

// True for header names left out of the key (case-insensitive).
bool IsTraceHeader(std::string_view name);

class ContentKeyBuilder {
 public:
  // extra_trace_headers: more names (e.g. headers our milter or the MTA adds) to ignore.
  explicit ContentKeyBuilder(std::vector<std::string> extra_trace_headers = {});
  ~ContentKeyBuilder();
  ContentKeyBuilder(const ContentKeyBuilder&) = delete;
  ContentKeyBuilder& operator=(const ContentKeyBuilder&) = delete;

  void SetEnvelopeSender(std::string_view sender);  // call before AddHeader
  // The MTA's queue id of this attempt (empty: nothing counts as MTA-generated); any time
  // before Finish.
  void SetQueueId(std::string_view queue_id);
  void AddHeader(std::string_view name, std::string_view value);
  void AddBody(const void* data, size_t n);  // streamed, any chunking
  ContentKey Finish();                        // the builder is spent afterwards

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Convenience: key of a whole raw RFC 5322 message (headers + body), a sender and the queue
// id the message had when it was captured.
ContentKey ContentKeyOfMessage(std::string_view envelope_sender, std::string_view raw_message,
                               std::string_view queue_id = {});

}  // namespace ccmail::store
