// header_text.h (private) - header values as the cc:Mail user sees them.
//
//   DecodeHeaderText() turns a raw (possibly folded) header value into UTF-8:
//   every RFC 2047 encoded word is decoded on its own (GMime 3.2 joins adjacent
//   base64 words before decoding, so "=?utf-8?B?YQ==?= =?utf-8?B?Yg==?=" lost
//   everything after the first padding), the decoded bytes of adjacent words of
//   one charset are joined before the charset conversion (a character may be
//   split across two words), and white space between adjacent encoded words is
//   dropped (RFC 2047 6.2). Raw 8-bit text outside encoded words goes through
//   RawHeaderBytesToUtf8() (rules.h).
//
//   RawParameter() finds a plain (not RFC 2231 "name*") parameter in a raw
//   Content-Type / Content-Disposition value, unquoted, for names that carry
//   encoded words (which GMime decodes with the same joining decoder).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <gmime/gmime.h>

namespace ccmail::format {

std::string DecodeHeaderText(std::string_view raw);

std::optional<std::string> RawParameter(std::string_view raw_value, std::string_view name);

// The decoded value of header `name` of obj (first occurrence), "" when absent.
std::string DecodedHeader(GMimeObject* obj, const char* name);

// The attachment's name as the sender wrote it (decoded), "" when it has none:
// Content-Disposition filename, else Content-Type name.
std::string PartFileName(GMimePart* part);

}  // namespace ccmail::format
