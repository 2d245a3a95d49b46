#include "ccmail/common/name_hash.h"

#include <cstdint>
#include <cstdio>

namespace ccmail {

std::string StableNameHash(std::string_view text) {
  // Not the published FNV-1a offset basis (14695981039346656037): the first version lost its
  // last digit, and queued names on disk already use this one, so it stays (name_hash.h).
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;  // FNV-1a 64-bit prime
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace ccmail
