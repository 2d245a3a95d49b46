// capture_id.cpp - 48-bit ms time + 80 random bits.
#include "ccmail/store/capture_id.h"

#include <sys/random.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "ccmail/common/clock.h"
#include "ccmail/common/status.h"

namespace ccmail::store {
namespace {
const char kHex[] = "0123456789abcdef";
int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

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
  if (hex.size() != 32) return std::nullopt;
  CaptureId id;
  for (size_t i = 0; i < 16; ++i) {
    int hi = HexVal(hex[2 * i]), lo = HexVal(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    id.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return id;
}

std::string CaptureId::ToString() const {
  std::string s(32, '0');
  for (size_t i = 0; i < 16; ++i) {
    s[2 * i] = kHex[bytes[i] >> 4];
    s[2 * i + 1] = kHex[bytes[i] & 15];
  }
  return s;
}

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
