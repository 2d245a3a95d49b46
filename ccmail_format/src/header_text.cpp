// header_text.cpp - RFC 2047 decoding word by word; see header_text.h.
#include "header_text.h"

#include <cctype>
#include <cstring>

#include "ccmail/common/ascii.h"
#include "ccmail/format/rules.h"
#include "codepage.h"

namespace ccmail::format {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Base64 of one encoded word; characters outside the alphabet are skipped, '=' ends it.
std::string DecodeBase64Word(std::string_view text) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char ch : text) {
    int v;
    if (ch >= 'A' && ch <= 'Z') v = ch - 'A';
    else if (ch >= 'a' && ch <= 'z') v = ch - 'a' + 26;
    else if (ch >= '0' && ch <= '9') v = ch - '0' + 52;
    else if (ch == '+') v = 62;
    else if (ch == '/') v = 63;
    else if (ch == '=') break;
    else continue;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

std::string DecodeQWord(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '_') {
      out.push_back(' ');
    } else if (c == '=' && i + 2 < text.size() && HexValue(text[i + 1]) >= 0 && HexValue(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(text[i + 1]) * 16 + HexValue(text[i + 2])));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

struct EncodedWord {
  size_t end = 0;        // one past "?="
  std::string charset;   // lower case, RFC 2231 language suffix removed
  std::string bytes;     // decoded octets in charset
};

// An encoded word starting at raw[pos] ("=?"), or nullopt.
std::optional<EncodedWord> ParseEncodedWord(std::string_view raw, size_t pos) {
  if (raw.compare(pos, 2, "=?") != 0) return std::nullopt;
  const size_t q1 = raw.find('?', pos + 2);
  if (q1 == std::string_view::npos || q1 == pos + 2 || q1 + 2 >= raw.size() || raw[q1 + 2] != '?') return std::nullopt;
  const char enc = ToUpperAscii(raw[q1 + 1]);
  if (enc != 'B' && enc != 'Q') return std::nullopt;
  const size_t text_start = q1 + 3;
  const size_t close = raw.find("?=", text_start);
  if (close == std::string_view::npos) return std::nullopt;
  std::string_view text = raw.substr(text_start, close - text_start);
  for (char c : text)
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') return std::nullopt;  // encoded text has no white space
  EncodedWord w;
  w.end = close + 2;
  w.charset = std::string(raw.substr(pos + 2, q1 - pos - 2));
  if (size_t star = w.charset.find('*'); star != std::string::npos) w.charset.resize(star);
  w.charset = ToLowerAscii(w.charset);
  for (char c : w.charset)
    if (c <= ' ' || c >= 0x7f) return std::nullopt;
  w.bytes = enc == 'B' ? DecodeBase64Word(text) : DecodeQWord(text);
  return w;
}

}  // namespace

std::string DecodeHeaderText(std::string_view raw) {
  std::string out;
  std::string pending, pending_charset;  // decoded bytes of adjacent words of one charset
  std::string literal;                   // raw text since the last encoded word
  auto flush_pending = [&] {
    if (!pending.empty()) out += ToUtf8(std::move(pending), pending_charset);
    pending.clear();
    pending_charset.clear();
  };
  bool after_word = false;
  size_t i = 0;
  while (i < raw.size()) {
    const char c = raw[i];
    if (c == '\r' || c == '\n') { ++i; continue; }  // unfolding: the white space after the break stays
    if (c == '=' && i + 1 < raw.size() && raw[i + 1] == '?') {
      if (auto w = ParseEncodedWord(raw, i)) {
        bool only_space = true;
        for (char l : literal)
          if (l != ' ' && l != '\t') { only_space = false; break; }
        if (after_word && only_space) {
          literal.clear();  // RFC 2047 6.2: white space between adjacent encoded words is not shown
        } else {
          flush_pending();
          out += RawHeaderBytesToUtf8(literal);
          literal.clear();
        }
        if (!pending.empty() && pending_charset != w->charset) flush_pending();
        pending_charset = w->charset;
        pending += w->bytes;
        after_word = true;
        i = w->end;
        continue;
      }
    }
    if (after_word && c != ' ' && c != '\t') {
      flush_pending();
      out += RawHeaderBytesToUtf8(literal);
      literal.clear();
      after_word = false;
    }
    literal.push_back(c);
    ++i;
  }
  flush_pending();
  out += RawHeaderBytesToUtf8(literal);
  return out;
}

std::optional<std::string> RawParameter(std::string_view v, std::string_view name) {
  size_t i = v.find(';');
  while (i != std::string_view::npos && i < v.size()) {
    ++i;  // past ';'
    while (i < v.size() && std::isspace(static_cast<unsigned char>(v[i]))) ++i;
    size_t k = i;
    while (k < v.size() && v[k] != '=' && v[k] != ';' && !std::isspace(static_cast<unsigned char>(v[k]))) ++k;
    std::string_view key = v.substr(i, k - i);
    while (k < v.size() && std::isspace(static_cast<unsigned char>(v[k]))) ++k;
    if (k >= v.size() || v[k] != '=') { i = v.find(';', k); continue; }
    ++k;
    while (k < v.size() && std::isspace(static_cast<unsigned char>(v[k]))) ++k;
    std::string value;
    if (k < v.size() && v[k] == '"') {
      ++k;
      while (k < v.size() && v[k] != '"') {
        if (v[k] == '\\' && k + 1 < v.size()) ++k;
        if (v[k] != '\r' && v[k] != '\n') value.push_back(v[k]);
        ++k;
      }
      if (k < v.size()) ++k;
    } else {
      while (k < v.size() && v[k] != ';') {
        if (v[k] != '\r' && v[k] != '\n') value.push_back(v[k]);
        ++k;
      }
      while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) value.pop_back();
    }
    if (EqualsIgnoreAsciiCase(key, name)) return value;
    i = v.find(';', k);
  }
  return std::nullopt;
}

std::string DecodedHeader(GMimeObject* obj, const char* name) {
  GMimeHeaderList* headers = g_mime_object_get_header_list(obj);
  if (headers == nullptr) return {};
  GMimeHeader* h = g_mime_header_list_get_header(headers, name);
  if (h == nullptr) return {};
  const char* raw = g_mime_header_get_raw_value(h);
  if (raw == nullptr) return {};
  std::string text = DecodeHeaderText(raw);
  size_t b = 0;
  while (b < text.size() && (text[b] == ' ' || text[b] == '\t')) ++b;
  return text.substr(b);
}

std::string PartFileName(GMimePart* part) {
  GMimeObject* obj = GMIME_OBJECT(part);
  GMimeHeaderList* headers = g_mime_object_get_header_list(obj);
  for (const auto& [header, param] : {std::pair<const char*, const char*>{"Content-Disposition", "filename"},
                                      {"Content-Type", "name"}}) {
    GMimeHeader* h = headers ? g_mime_header_list_get_header(headers, header) : nullptr;
    const char* raw = h ? g_mime_header_get_raw_value(h) : nullptr;
    if (raw == nullptr) continue;
    // A plain parameter: decoded here, word by word. An RFC 2231 one (name*=, name*0*=) is GMime's.
    if (auto v = RawParameter(raw, param)) return DecodeHeaderText(*v);
    if (RawParameter(raw, std::string(param) + "*") || RawParameter(raw, std::string(param) + "*0") ||
        RawParameter(raw, std::string(param) + "*0*")) {
      const char* fromGMime = std::strcmp(header, "Content-Type") == 0
                                  ? g_mime_object_get_content_type_parameter(obj, param)
                                  : g_mime_object_get_content_disposition_parameter(obj, param);
      if (fromGMime) return fromGMime;
    }
  }
  return {};
}

}  // namespace ccmail::format
