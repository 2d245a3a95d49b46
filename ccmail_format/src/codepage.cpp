// codepage.cpp - charset conversion for the writer; see codepage.h.
#include "codepage.h"

#include <errno.h>
#include <gmime/gmime.h>
#include <iconv.h>

#include <array>
#include <cstring>
#include <string_view>
#include <mutex>
#include <unordered_map>

#include "ccmail/format/rules.h"
#include "mime.h"

namespace ccmail::format {
namespace {

// Unicode -> code page byte. Built from iconv so glibc's tables, not ours, decide.
struct CpTable {
  std::array<int16_t, 256> low;                 // U+0000..U+00FF, -1 = unmappable
  std::unordered_map<uint32_t, uint8_t> high;   // the rest
};

CpTable BuildTable(CodePage cp) {
  CpTable t;
  t.low.fill(-1);
  for (int c = 0x20; c < 0x7f; ++c) t.low[c] = static_cast<int16_t>(c);
  t.low['\t'] = '\t';
  iconv_t cd = iconv_open("UCS-4LE", CodePageIconvName(cp));
  if (cd == reinterpret_cast<iconv_t>(-1)) return t;  // ASCII only; LoadFormatSettings names only glibc code pages
  for (int b = 0x80; b < 0x100; ++b) {
    char in = static_cast<char>(b);
    unsigned char outbuf[8];
    char* ip = &in;
    size_t il = 1;
    char* op = reinterpret_cast<char*>(outbuf);
    size_t ol = sizeof outbuf;
    iconv(cd, nullptr, nullptr, nullptr, nullptr);
    if (iconv(cd, &ip, &il, &op, &ol) == static_cast<size_t>(-1) || ol != 4) continue;
    uint32_t u = outbuf[0] | (outbuf[1] << 8) | (outbuf[2] << 16) | (static_cast<uint32_t>(outbuf[3]) << 24);
    if (u < 0x20 || (u >= 0x7f && u < 0xa0)) continue;  // controls stay out of text
    if (u < 256) {
      if (t.low[u] < 0) t.low[u] = static_cast<int16_t>(b);
    } else {
      t.high.emplace(u, static_cast<uint8_t>(b));
    }
  }
  iconv_close(cd);
  return t;
}

const CpTable& TableFor(CodePage cp) {
  static const CpTable t850 = BuildTable(CodePage::kCp850);
  static const CpTable t437 = BuildTable(CodePage::kCp437);
  static const CpTable t1252 = BuildTable(CodePage::kCp1252);
  switch (cp) {
    case CodePage::kCp437: return t437;
    case CodePage::kCp1252: return t1252;
    default: return t850;
  }
}

// Decodes one UTF-8 sequence at s[i]; returns the code point (0xFFFD for a bad
// sequence) and advances i by at least one byte.
constexpr uint32_t kBad = 0xFFFFFFFFu;
uint32_t NextCodePointOrBad(std::string_view s, size_t* i) {
  const unsigned char c = static_cast<unsigned char>(s[*i]);
  if (c < 0x80) { ++*i; return c; }
  size_t n;
  uint32_t cp;
  if ((c & 0xe0) == 0xc0) { n = 1; cp = c & 0x1f; }
  else if ((c & 0xf0) == 0xe0) { n = 2; cp = c & 0x0f; }
  else if ((c & 0xf8) == 0xf0) { n = 3; cp = c & 0x07; }
  else { ++*i; return kBad; }
  if (*i + n >= s.size()) { ++*i; return kBad; }
  for (size_t k = 1; k <= n; ++k) {
    const unsigned char d = static_cast<unsigned char>(s[*i + k]);
    if ((d & 0xc0) != 0x80) { ++*i; return kBad; }
    cp = (cp << 6) | (d & 0x3f);
  }
  static constexpr uint32_t kMin[4] = {0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) { ++*i; return kBad; }
  *i += n + 1;
  return cp;
}
uint32_t NextCodePoint(std::string_view s, size_t* i) {
  uint32_t cp = NextCodePointOrBad(s, i);
  return cp == kBad ? 0xFFFD : cp;
}

// True when bytes 0x20..0x7E, TAB, CR and LF mean themselves in charset (so ASCII-only text
// needs no conversion). Not so for UTF-16/32 (every second byte), UTF-7 ('+' shifts) and the
// ISO-2022 family (ASCII bytes after an escape sequence mean something else; see HasShiftBytes).
bool AsciiCompatible(const std::string& charset) {
  static std::mutex mu;
  static std::unordered_map<std::string, bool> cache;
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = cache.find(charset); it != cache.end()) return it->second;
  std::string probe = "\t\r\n";
  for (int c = 0x20; c < 0x7f; ++c) probe.push_back(static_cast<char>(c));
  bool same = false;
  iconv_t cd = g_mime_iconv_open("UTF-8", charset.c_str());
  if (cd != reinterpret_cast<iconv_t>(-1)) {
    char out[512];
    char* ip = probe.data();
    size_t il = probe.size();
    char* op = out;
    size_t ol = sizeof out;
    const size_t r = iconv(cd, &ip, &il, &op, &ol);
    char* fp = op;
    size_t fl = ol;
    iconv(cd, nullptr, nullptr, &fp, &fl);
    same = r != static_cast<size_t>(-1) && il == 0 && std::string_view(out, sizeof out - fl) == probe;
    g_mime_iconv_close(cd);
  } else {
    same = true;  // unknown charset: the caller's guess (UTF-8 or windows-1252) is ASCII-compatible
  }
  if (cache.size() < 1000) cache.emplace(charset, same);
  return same;
}

// ESC, SO and SI switch character sets in ISO 2022 encodings, which are otherwise 7-bit.
bool HasShiftBytes(std::string_view bytes) {
  for (unsigned char c : bytes)
    if (c == 0x1b || c == 0x0e || c == 0x0f) return true;
  return false;
}

}  // namespace

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) { ++i; continue; }
    if (NextCodePointOrBad(s, &i) == kBad) return false;
  }
  return true;
}

std::string Utf8OrReplacement(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const size_t start = i;
    if (NextCodePointOrBad(s, &i) == kBad) out += "\xEF\xBF\xBD";
    else out.append(s.data() + start, i - start);
  }
  return out;
}

void AppendInCodePage(std::string_view utf8, CodePage cp, std::string* out) {
  const CpTable& t = TableFor(cp);
  size_t i = 0;
  const size_t n = utf8.size();
  while (i < n) {
    // Fast path: a run of printable ASCII is copied as is.
    size_t j = i;
    while (j < n) {
      const unsigned char c = static_cast<unsigned char>(utf8[j]);
      if (c < 0x20 || c >= 0x7f) break;
      ++j;
    }
    if (j > i) { out->append(utf8.data() + i, j - i); i = j; if (i >= n) break; }
    uint32_t u = NextCodePoint(utf8, &i);
    int b = -1;
    if (u < 256) b = t.low[u];
    else if (auto it = t.high.find(u); it != t.high.end()) b = it->second;
    out->push_back(b < 0 ? '?' : static_cast<char>(b));
  }
}

std::string ToUtf8(std::string bytes, std::string_view charset) {
  std::string cs(charset);
  for (char& c : cs) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  bool ascii = true;
  for (unsigned char c : bytes) if (c >= 0x80) { ascii = false; break; }
  // ASCII-only bytes are the text itself only in an ASCII-compatible charset without shifts.
  if (ascii && (cs.empty() || (!HasShiftBytes(bytes) && AsciiCompatible(cs)))) return bytes;
  if (cs.empty() || cs == "us-ascii" || cs == "ascii" || cs == "unknown-8bit" || cs == "x-unknown") {
    cs = IsValidUtf8(bytes) ? "utf-8" : "windows-1252";
  }
  if (cs == "utf-8" || cs == "utf8") {
    if (IsValidUtf8(bytes)) return bytes;
  }
  EnsureGMimeInitialized();
  iconv_t cd = g_mime_iconv_open("UTF-8", cs.c_str());
  if (cd == reinterpret_cast<iconv_t>(-1)) {
    // Unknown charset: guess rather than lose the text.
    cs = IsValidUtf8(bytes) ? "utf-8" : "windows-1252";
    if (cs == "utf-8") return bytes;
    cd = g_mime_iconv_open("UTF-8", cs.c_str());
    if (cd == reinterpret_cast<iconv_t>(-1)) return bytes;
  }
  std::string out;
  out.resize(bytes.size() + bytes.size() / 4 + 64);
  char* ip = const_cast<char*>(bytes.data());
  size_t il = bytes.size();
  size_t used = 0;
  while (il > 0) {
    if (out.size() - used < 16) out.resize(out.size() * 2);
    char* op = out.data() + used;
    size_t ol = out.size() - used;
    size_t r = iconv(cd, &ip, &il, &op, &ol);
    used = out.size() - ol;
    if (r != static_cast<size_t>(-1)) break;
    if (errno == E2BIG) { out.resize(out.size() + out.size() / 2 + 64); continue; }
    // EILSEQ / EINVAL: one bad byte becomes U+FFFD.
    if (out.size() - used < 4) out.resize(out.size() * 2);
    std::memcpy(out.data() + used, "\xEF\xBF\xBD", 3);
    used += 3;
    ++ip;
    --il;
    iconv(cd, nullptr, nullptr, nullptr, nullptr);
  }
  // Flush any shift state.
  {
    if (out.size() - used < 16) out.resize(out.size() + 16);
    char* op = out.data() + used;
    size_t ol = out.size() - used;
    iconv(cd, nullptr, nullptr, &op, &ol);
    used = out.size() - ol;
  }
  g_mime_iconv_close(cd);
  out.resize(used);
  return out;
}

void AppendTextLines(std::string_view utf8, CodePage cp, bool protect_keywords, std::string* out) {
  size_t i = 0;
  const size_t n = utf8.size();
  // One allocation: the result is at most the input plus a CR and a protection space a line.
  out->reserve(out->size() + n + n / 8 + 16);
  while (i < n) {
    size_t j = i;
    while (j < n && utf8[j] != '\r' && utf8[j] != '\n') ++j;
    std::string_view line = utf8.substr(i, j - i);
    if (protect_keywords && NeedsKeywordProtection(line)) out->push_back(kKeywordProtection);
    AppendInCodePage(line, cp, out);
    out->append("\r\n");
    if (j < n && utf8[j] == '\r' && j + 1 < n && utf8[j + 1] == '\n') j += 2;
    else if (j < n) j += 1;
    i = j;
  }
}

}  // namespace ccmail::format
