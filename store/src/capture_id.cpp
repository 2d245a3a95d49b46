// capture_id.cpp - 48-bit ms time + 80 random bits.
#include "ccmail/store/capture_id.h"

#include <sys/random.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "ccmail/common/clock.h"
#include "ccmail/common/status.h"
#include "hex.h"

namespace ccmail::store {
CaptureId CaptureId::FromParts(uint64_t ms, const uint8_t random80[10]) {
  CaptureId id;
  for (int i = 0; i < 6; ++i) id.bytes[i] = static_cast<uint8_t>(ms >> (8 * (5 - i)));
  std::memcpy(id.bytes.data() + 6, random80, 10);
  return id;
}

CaptureId CaptureId::New() {
  uint8_t rnd[10];
  size_t got = 0;
  while (got < sizeof rnd) {
    ssize_t r = ::getrandom(rnd + got, sizeof rnd - got, 0);
    if (r < 0) {
      CCMAIL_CHECK(errno == EINTR, "getrandom failed");
      continue;
    }
    got += static_cast<size_t>(r);
  }
  auto ms = WallClockMs();
  return FromParts(static_cast<uint64_t>(ms) & 0xFFFFFFFFFFFFull, rnd);
}

std::optional<CaptureId> CaptureId::Parse(std::string_view hex) {
  CaptureId id;
  if (!HexDecode(hex, id.bytes.data(), id.bytes.size())) return std::nullopt;
  return id;
}

std::string CaptureId::ToString() const { return HexEncode(bytes.data(), bytes.size()); }

uint64_t CaptureId::TimeMs() const {
  uint64_t ms = 0;
  for (int i = 0; i < 6; ++i) ms = ms << 8 | bytes[i];
  return ms;
}

uint64_t CaptureId::Hi() const {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | bytes[i];
  return v;
}

uint64_t CaptureId::Lo() const {
  uint64_t v = 0;
  for (int i = 8; i < 16; ++i) v = v << 8 | bytes[i];
  return v;
}

CaptureId CaptureId::FromHiLo(uint64_t hi, uint64_t lo) {
  CaptureId id;
  for (int i = 0; i < 8; ++i) {
    id.bytes[i] = static_cast<uint8_t>(hi >> (8 * (7 - i)));
    id.bytes[8 + i] = static_cast<uint8_t>(lo >> (8 * (7 - i)));
  }
  return id;
}

bool CaptureId::IsZero() const {
  for (auto b : bytes)
    if (b) return false;
  return true;
}

}  // namespace ccmail::store
