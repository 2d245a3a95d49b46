// escape.cpp - see escape.h.
#include "ccmail/common/escape.h"

namespace ccmail {
namespace {

void AppendEscaped(unsigned char c, std::string* out) {
  static const char kHex[] = "0123456789abcdef";
  switch (c) {
    case '\t': *out += "\\t"; return;
    case '\r': *out += "\\r"; return;
    case '\n': *out += "\\n"; return;
    default:
      *out += "\\x";
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 0xf]);
  }
}

std::string Escape(std::string_view text, bool backslash) {
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) AppendEscaped(c, &out);
    else if (backslash && c == '\\') out += "\\\\";
    else out.push_back(static_cast<char>(c));
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string EscapeControls(std::string_view text) { return Escape(text, false); }
std::string EscapeField(std::string_view text) { return Escape(text, true); }

std::string UnescapeField(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\' || i + 1 >= text.size()) {
      out.push_back(text[i]);
      continue;
    }
    const char n = text[i + 1];
    if (n == '\\') out.push_back('\\');
    else if (n == 't') out.push_back('\t');
    else if (n == 'r') out.push_back('\r');
    else if (n == 'n') out.push_back('\n');
    else if (n == 'x' && i + 3 < text.size() && HexValue(text[i + 2]) >= 0 && HexValue(text[i + 3]) >= 0) {
      out.push_back(static_cast<char>(HexValue(text[i + 2]) * 16 + HexValue(text[i + 3])));
      i += 2;
    } else {
      out.push_back('\\');
      continue;
    }
    ++i;
  }
  return out;
}

}  // namespace ccmail
