// capture_id.h - the 128-bit identity of one captured message.
//
// DESCRIPTION
//   48 bits of milliseconds since the Unix epoch followed by 80 random bits (from
//   getrandom()), so ids sort by capture time and never collide across processes.
//   Text form: 32 lowercase hex characters; it is the spool file name.
//
// THREAD SAFETY
//   All functions are thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ccmail::store {

struct CaptureId {
  std::array<uint8_t, 16> bytes{};

  static CaptureId New();                        // now + 80 random bits
  static CaptureId FromParts(uint64_t ms, const uint8_t random80[10]);
  static std::optional<CaptureId> Parse(std::string_view hex32);  // nullopt unless 32 hex chars
  std::string ToString() const;                  // 32 lowercase hex
  uint64_t TimeMs() const;                       // the 48-bit time part
  // Two 64-bit halves (big-endian), for shared-memory slots.
  uint64_t Hi() const;
  uint64_t Lo() const;
  static CaptureId FromHiLo(uint64_t hi, uint64_t lo);
  bool IsZero() const;

  friend bool operator==(const CaptureId&, const CaptureId&) = default;
  friend auto operator<=>(const CaptureId&, const CaptureId&) = default;
};

}  // namespace ccmail::store
