// ascii.h - case folding of protocol text (header names, charsets, MIME types, addresses).
//
// SYNOPSIS
//   if (ToLowerAscii(charset) == "utf-8") ...
//   if (EqualsIgnoreAsciiCase(who.post_office, local_postoffice)) ...
//
// DESCRIPTION
//   Mail protocols fold case over ASCII letters only. std::tolower follows the
//   process locale, so a byte of a UTF-8 or Latin-1 name could change under a
//   non-C locale; these fold A-Z/a-z and keep every other byte as it is.
#pragma once

#include <string>
#include <string_view>

namespace ccmail {

constexpr char ToLowerAscii(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }
constexpr char ToUpperAscii(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; }

std::string ToLowerAscii(std::string_view text);
std::string ToUpperAscii(std::string_view text);
bool EqualsIgnoreAsciiCase(std::string_view a, std::string_view b);
bool StartsWithIgnoreAsciiCase(std::string_view text, std::string_view prefix);

}  // namespace ccmail
