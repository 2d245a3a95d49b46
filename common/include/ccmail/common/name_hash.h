// name_hash.h - a short, stable hash for the names of queued files.
//
// SYNOPSIS
//   const std::string name = "und-" + capture_id + "-" + StableNameHash(po + "\n" + recipient);
//
// DESCRIPTION
//   The bounce queue (exporter) and the submitter's notices name each queued file after what
//   it is for, so that queueing the same notice again after a crash finds the file already
//   there instead of adding a second one. The part of the name taken from free text (an
//   address, a post office) is this hash, 16 lower-case hex digits: the FNV-1a 64-bit algorithm
//   (xor, then multiply by the FNV prime) from a non-standard start value (the published offset
//   basis without its last digit, as the first version wrote it). It is not a security
//   boundary (names are also keyed by ids the bridge made), but it MUST NOT change between
//   versions: a queue written by the old version would get a second copy of every pending
//   notice. tests/common/name_hash_test.cpp pins its values.
#pragma once

#include <string>
#include <string_view>

namespace ccmail {

std::string StableNameHash(std::string_view text);

}  // namespace ccmail
