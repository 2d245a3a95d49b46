// to_mime_text.cpp - code page -> UTF-8, RFC 2047, item titles and Headers items (the way back).
#include <iconv.h>

#include <array>
#include <cctype>

#include "ccmail/common/ascii.h"
#include "to_mime_internal.h"

namespace ccmail::submitter::internal {
namespace {

using ByteTable = std::array<std::string, 256>;

// Every byte of the code page as UTF-8, built once from glibc iconv so its tables decide.
ByteTable BuildTable(format::CodePage cp) {
  ByteTable t;
  for (int b = 0; b < 0x80; ++b) t[b] = std::string(1, static_cast<char>(b));
  iconv_t cd = iconv_open("UTF-8", format::CodePageIconvName(cp));
  for (int b = 0x80; b < 0x100; ++b) {
    t[b] = "\xEF\xBF\xBD";  // U+FFFD: undefined in this code page (or no iconv)
    if (cd == reinterpret_cast<iconv_t>(-1)) continue;
    char in = static_cast<char>(b);
    char out[8];
    char* ip = &in;
    size_t il = 1;
    char* op = out;
    size_t ol = sizeof out;
    iconv(cd, nullptr, nullptr, nullptr, nullptr);
    if (iconv(cd, &ip, &il, &op, &ol) != static_cast<size_t>(-1) && il == 0) t[b] = std::string(out, sizeof out - ol);
  }
  if (cd != reinterpret_cast<iconv_t>(-1)) iconv_close(cd);
  return t;
}

const ByteTable& TableFor(format::CodePage cp) {
  static const ByteTable t850 = BuildTable(format::CodePage::kCp850);
  static const ByteTable t437 = BuildTable(format::CodePage::kCp437);
  static const ByteTable t1252 = BuildTable(format::CodePage::kCp1252);
  switch (cp) {
    case format::CodePage::kCp437: return t437;
    case format::CodePage::kCp1252: return t1252;
    default: return t850;
  }
}

bool IsDateToken(std::string_view t) {
  // d/m/yy, d-m-yyyy, d.m.yy: three digit runs, two equal separators.
  int runs = 0, digits = 0;
  char sep = 0;
  for (char c : t) {
    if (std::isdigit(static_cast<unsigned char>(c))) {
      if (++digits > 4) return false;
      continue;
    }
    if (c != '/' && c != '-' && c != '.') return false;
    if (digits == 0 || (sep != 0 && c != sep)) return false;
    sep = c;
    ++runs;
    digits = 0;
  }
  return runs == 2 && digits > 0;
}

bool IsTimeToken(std::string_view t) {
  // h:mm, h:mm:ss, optionally followed by AM/PM (any case).
  std::string low = ToLowerAscii(t);
  if (low.size() > 2 && (low.ends_with("am") || low.ends_with("pm"))) low.resize(low.size() - 2);
  int groups = 1, digits = 0;
  for (char c : low) {
    if (std::isdigit(static_cast<unsigned char>(c))) {
      if (++digits > 2) return false;
    } else if (c == ':' && digits > 0) {
      ++groups;
      digits = 0;
    } else {
      return false;
    }
  }
  return digits == 2 && (groups == 2 || groups == 3);
}

}  // namespace

std::string CodePageToUtf8(std::string_view bytes, format::CodePage cp) {
  const ByteTable& t = TableFor(cp);
  std::string out;
  out.reserve(bytes.size() + bytes.size() / 8);
  for (unsigned char c : bytes) out += t[c];
  return out;
}

std::string HeaderTextToUtf8(std::string_view bytes, format::CodePage cp) {
  std::string out;
  for (unsigned char c : bytes) {
    if (c < 0x20 || c == 0x7f) out.push_back(' ');
    else out += CodePageToUtf8(std::string_view(reinterpret_cast<const char*>(&c), 1), cp);
  }
  const size_t first = out.find_first_not_of(' ');
  if (first == std::string::npos) return {};
  return out.substr(first, out.find_last_not_of(' ') - first + 1);
}

std::string EncodeUnstructured(std::string_view utf8) {
  bool plain = utf8.find("=?") == std::string_view::npos && utf8.size() <= 900;
  for (unsigned char c : utf8)
    if (c < 0x20 || c >= 0x7f) plain = false;
  if (plain) return std::string(utf8);
  static const char* kB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  auto encode_word = [](std::string_view chunk) {
    std::string w = "=?UTF-8?B?";
    for (size_t i = 0; i < chunk.size(); i += 3) {
      uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(chunk[i])) << 16;
      if (i + 1 < chunk.size()) v |= static_cast<uint32_t>(static_cast<unsigned char>(chunk[i + 1])) << 8;
      if (i + 2 < chunk.size()) v |= static_cast<unsigned char>(chunk[i + 2]);
      w += kB64[v >> 18];
      w += kB64[(v >> 12) & 63];
      w += i + 1 < chunk.size() ? kB64[(v >> 6) & 63] : '=';
      w += i + 2 < chunk.size() ? kB64[v & 63] : '=';
    }
    return w + "?=";
  };
  // 45 bytes -> 60 base64 characters -> a 72-character word; never split a UTF-8 sequence
  // (RFC 2047 5: each encoded word holds whole characters).
  std::string out;
  size_t pos = 0;
  while (pos < utf8.size()) {
    size_t end = std::min(utf8.size(), pos + 45);
    while (end < utf8.size() && end > pos + 1 && (static_cast<unsigned char>(utf8[end]) & 0xC0) == 0x80) --end;
    if (!out.empty()) out += "\r\n ";
    out += encode_word(utf8.substr(pos, end - pos));
    pos = end;
  }
  return out;
}

std::string TextItemBody(std::string_view utf8) {
  std::string out;
  out.reserve(utf8.size());
  for (size_t i = 0; i < utf8.size(); ++i) {
    if (utf8[i] == '\r' && i + 1 < utf8.size() && utf8[i + 1] == '\n') continue;
    out.push_back(utf8[i] == '\r' ? '\n' : utf8[i]);
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

bool IsBlankText(std::string_view text) {
  return text.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

std::string FileNameFromTitle(std::string_view title) {
  std::vector<std::string_view> tokens;
  size_t pos = 0;
  while (pos < title.size()) {
    size_t sp = title.find(' ', pos);
    if (sp == std::string_view::npos) sp = title.size();
    if (sp > pos) tokens.push_back(title.substr(pos, sp - pos));
    pos = sp + 1;
  }
  // Drop "[date] [time] [AM|PM]" at the end: a time only together with a date before it.
  size_t keep = tokens.size();
  if (keep >= 2 && (EqualsIgnoreAsciiCase(tokens[keep - 1], "AM") || EqualsIgnoreAsciiCase(tokens[keep - 1], "PM")) &&
      IsTimeToken(tokens[keep - 2]))
    --keep;
  if (keep >= 2 && IsTimeToken(tokens[keep - 1])) --keep;
  if (keep >= 2 && IsDateToken(tokens[keep - 1])) {
    --keep;
    const char* end = tokens[keep - 1].data() + tokens[keep - 1].size();
    return std::string(title.data(), end);
  }
  std::string_view t = title;
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
  return std::string(t);
}

bool IsHeadersItem(std::string_view title, std::string_view data) {
  if (!EqualsIgnoreAsciiCase(title, "Headers")) return false;
  // A header field: a name of printable ASCII without ':' or space, then ':'.
  const size_t colon = data.find(':');
  if (colon == 0 || colon == std::string_view::npos) return false;
  for (unsigned char c : data.substr(0, colon))
    if (c <= 0x20 || c >= 0x7f) return false;
  return true;
}

bool HeadersCarryOrigin(std::string_view headers, std::string_view marker, int* received_lines) {
  *received_lines = 0;
  bool origin = false;
  size_t pos = 0;
  while (pos < headers.size()) {
    size_t nl = headers.find('\n', pos);
    std::string_view line = headers.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? headers.size() : nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || line.empty() || line[0] == ' ' || line[0] == '\t') continue;
    std::string_view name = line.substr(0, colon);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
    if (EqualsIgnoreAsciiCase(name, "Received")) ++*received_lines;
    if (EqualsIgnoreAsciiCase(name, "X-Ccmail-Bridge-Origin")) {
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
      if (!marker.empty() && EqualsIgnoreAsciiCase(value, marker)) origin = true;
    }
  }
  return origin;
}

}  // namespace ccmail::submitter::internal
