// content_key.h - Decision 2: SHA-256 over the canonical form of a message.
//
// DESCRIPTION
//   The content key identifies "the same message" across an SMTP client's retry, a second
//   milter or a re-injection. Canonical form (one function: ContentKeyBuilder):
//     "ccmail-ck-1\n"
//     "S" <envelope sender, whitespace trimmed, angle brackets stripped> "\n"
//     for each header field in order, except trace fields (Received, Return-Path,
//     Delivered-To, X-Original-To, X-Ccmail-*, and any extra names given):
//       "H" <lowercased name> ":" <value unfolded: CRLF/LF + WSP -> one space, runs of
//       WSP -> one space, leading/trailing WSP trimmed> "\n"
//     "B" then the body with line endings normalised to LF (CRLF and LF hash the same).
//   SHA-256 via GLib's GChecksum.
//
// USAGE
//   ContentKeyBuilder b; b.SetEnvelopeSender("<a@x>"); b.AddHeader("Subject", "hi");
//   b.AddBody(chunk, n); ... ContentKey k = b.Finish();
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
  void AddHeader(std::string_view name, std::string_view value);
  void AddBody(const void* data, size_t n);  // streamed, any chunking
  ContentKey Finish();                        // the builder is spent afterwards

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Convenience: key of a whole raw RFC 5322 message (headers + body) and a sender.
ContentKey ContentKeyOfMessage(std::string_view envelope_sender, std::string_view raw_message);

}  // namespace ccmail::store
