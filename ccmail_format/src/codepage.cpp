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

#include "ccmail/common/ascii.h"
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
// Whole-buffer loops without an early exit (the compiler vectorizes them): these run over
// every byte of every text body.
bool HasShiftBytes(std::string_view bytes) {
  bool found = false;
  for (unsigned char c : bytes) found |= (c == 0x1b) | (c == 0x0e) | (c == 0x0f);
  return found;
}

bool AllAscii(std::string_view bytes) {
  unsigned char any = 0;
  for (unsigned char c : bytes) any |= c;
  return any < 0x80;
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

namespace {

const iconv_t kNoIconv = reinterpret_cast<iconv_t>(-1);

// How ToUtf8 converts bytes in charset, decided from all of them: kNoIconv when the bytes
// already are the UTF-8 text, else an iconv descriptor to UTF-8 (g_mime_iconv_close it).
iconv_t OpenToUtf8(std::string_view charset, bool ascii, bool shift_bytes, bool valid_utf8) {
  std::string cs = ToLowerAscii(charset);
  // ASCII-only bytes are the text itself only in an ASCII-compatible charset without shifts.
  if (ascii && (cs.empty() || (!shift_bytes && AsciiCompatible(cs)))) return kNoIconv;
  if (cs.empty() || cs == "us-ascii" || cs == "ascii" || cs == "unknown-8bit" || cs == "x-unknown") {
    cs = valid_utf8 ? "utf-8" : "windows-1252";
  }
  if ((cs == "utf-8" || cs == "utf8") && valid_utf8) return kNoIconv;
  EnsureGMimeInitialized();
  iconv_t cd = g_mime_iconv_open("UTF-8", cs.c_str());
  if (cd == kNoIconv) {
    // Unknown charset: guess rather than lose the text.
    if (valid_utf8) return kNoIconv;
    cd = g_mime_iconv_open("UTF-8", "windows-1252");
  }
  return cd;
}

}  // namespace

std::string ToUtf8(std::string bytes, std::string_view charset) {
  const bool ascii = AllAscii(bytes);
  iconv_t cd = OpenToUtf8(charset, ascii, HasShiftBytes(bytes), ascii || IsValidUtf8(bytes));
  if (cd == kNoIconv) return bytes;
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

namespace {

// IsValidUtf8 over a text given in chunks (a sequence may be split between two).
class Utf8Validator {
 public:
  void Add(std::string_view s) {
    for (size_t i = 0; i < s.size() && valid_; ++i) {
      const unsigned char c = static_cast<unsigned char>(s[i]);
      if (need_ == 0) {
        if (c < 0x80) continue;
        if ((c & 0xe0) == 0xc0) { n_ = 1; cp_ = c & 0x1f; }
        else if ((c & 0xf0) == 0xe0) { n_ = 2; cp_ = c & 0x0f; }
        else if ((c & 0xf8) == 0xf0) { n_ = 3; cp_ = c & 0x07; }
        else { valid_ = false; break; }
        need_ = n_;
        continue;
      }
      if ((c & 0xc0) != 0x80) { valid_ = false; break; }
      cp_ = (cp_ << 6) | (c & 0x3f);
      if (--need_ == 0) {
        static constexpr uint32_t kMin[4] = {0, 0x80, 0x800, 0x10000};
        if (cp_ < kMin[n_] || cp_ > 0x10ffff || (cp_ >= 0xd800 && cp_ <= 0xdfff)) valid_ = false;
      }
    }
  }
  bool valid() const { return valid_ && need_ == 0; }

 private:
  bool valid_ = true;
  size_t need_ = 0;  // continuation bytes still expected
  size_t n_ = 0;
  uint32_t cp_ = 0;
};

// Where s can be cut so that AppendInCodePage of the two pieces equals that of s and of
// what follows: before a lead byte whose sequence s does not complete, else at the end.
// (A sequence reaches at most 3 bytes past its lead; one ending at a non-continuation
// byte is broken in both cases alike.)
size_t Utf8CutPoint(std::string_view s) {
  for (size_t k = 1; k <= 3 && k <= s.size(); ++k) {
    const size_t q = s.size() - k;
    const unsigned char c = static_cast<unsigned char>(s[q]);
    if ((c & 0xc0) == 0x80) continue;
    if (c >= 0xc0 && c < 0xf8) {
      const size_t n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
      if (q + n >= s.size()) return q;
    }
    return s.size();
  }
  return s.size();
}

constexpr size_t kStreamChunk = 64 * 1024;

// UTF-8 in chunks -> code-page lines with CRLF, as AppendTextLines (without protection).
class LineStream {
 public:
  LineStream(CodePage cp, const ChunkFn& out) : cp_(cp), out_(out) {}

  Status Add(std::string_view s) {
    size_t i = 0;
    if (after_cr_ && !s.empty()) {
      if (s[0] == '\n') i = 1;  // the LF of a CRLF split between chunks
      after_cr_ = false;
    }
    while (i < s.size()) {
      size_t j = i;
      while (j < s.size() && s[j] != '\r' && s[j] != '\n') ++j;
      line_.append(s.data() + i, j - i);
      if (j > i) open_ = true;
      if (j == s.size()) {  // the line goes on in the next chunk: convert what is safe
        const size_t cut = Utf8CutPoint(line_);
        AppendInCodePage(std::string_view(line_).substr(0, cut), cp_, &buf_);
        line_.erase(0, cut);
        break;
      }
      EndLine();
      if (s[j] == '\r' && j + 1 == s.size()) after_cr_ = true;
      j += (s[j] == '\r' && j + 1 < s.size() && s[j + 1] == '\n') ? 2 : 1;
      i = j;
    }
    if (buf_.size() < kStreamChunk) return Status::Ok();
    return Flush();
  }

  Status Finish() {
    if (open_) EndLine();
    return Flush();
  }

 private:
  void EndLine() {
    AppendInCodePage(line_, cp_, &buf_);
    line_.clear();
    buf_.append("\r\n");
    open_ = false;
  }
  Status Flush() {
    if (buf_.empty()) return Status::Ok();
    Status s = out_(buf_);
    buf_.clear();
    return s;
  }

  CodePage cp_;
  const ChunkFn& out_;
  std::string line_;       // the current line's UTF-8 not converted yet (a split sequence)
  std::string buf_;        // code-page bytes not passed to out_ yet
  bool open_ = false;      // the current line has bytes (it gets a CRLF at the end)
  bool after_cr_ = false;  // the last chunk ended with CR
};

// Bytes in a charset, in chunks -> UTF-8 into a LineStream, as ToUtf8 converts them whole:
// iconv keeps its shift state across chunks, and an incomplete sequence at a chunk's end
// (EINVAL) waits for the next chunk; only at the end of the text is it broken (U+FFFD).
class IconvStream {
 public:
  IconvStream(iconv_t cd, LineStream* lines) : cd_(cd), lines_(lines) {}
  ~IconvStream() { g_mime_iconv_close(cd_); }
  IconvStream(const IconvStream&) = delete;
  IconvStream& operator=(const IconvStream&) = delete;

  Status Add(std::string_view chunk, bool last) {
    std::string_view in = chunk;
    if (!carry_.empty()) {
      work_.assign(carry_);
      work_.append(chunk);
      carry_.clear();
      in = work_;
    }
    char* ip = const_cast<char*>(in.data());
    size_t il = in.size();
    char out[16384];
    while (il > 0) {
      char* op = out;
      size_t ol = sizeof out;
      const size_t r = iconv(cd_, &ip, &il, &op, &ol);
      const int err = errno;
      CCMAIL_RETURN_IF_ERROR(lines_->Add(std::string_view(out, sizeof out - ol)));
      if (r != static_cast<size_t>(-1)) break;
      if (err == E2BIG) continue;
      if (err == EINVAL && !last) {
        carry_.assign(ip, il);
        break;
      }
      // EILSEQ, or EINVAL at the very end: one bad byte becomes U+FFFD.
      CCMAIL_RETURN_IF_ERROR(lines_->Add("\xEF\xBF\xBD"));
      ++ip;
      --il;
      iconv(cd_, nullptr, nullptr, nullptr, nullptr);
    }
    if (!last) return Status::Ok();
    // Flush any shift state.
    char* op = out;
    size_t ol = sizeof out;
    iconv(cd_, nullptr, nullptr, &op, &ol);
    return lines_->Add(std::string_view(out, sizeof out - ol));
  }

 private:
  iconv_t cd_;
  LineStream* lines_;
  std::string carry_;  // an incomplete sequence from the end of the last chunk
  std::string work_;
};

}  // namespace

Status StreamTextLines(const ChunkSource& source, std::string_view charset, CodePage cp, const ChunkFn& out) {
  // 1. What ToUtf8 decides from all the bytes.
  bool ascii = true;
  bool shift_bytes = false;
  Utf8Validator utf8;
  CCMAIL_RETURN_IF_ERROR(source([&](std::string_view c) {
    if (ascii) ascii = AllAscii(c);
    if (!shift_bytes) shift_bytes = HasShiftBytes(c);
    if (!ascii) utf8.Add(c);  // ASCII bytes before it leave the validator where it starts
    return Status::Ok();
  }));
  // 2. Convert, chunk by chunk.
  LineStream lines(cp, out);
  iconv_t cd = OpenToUtf8(charset, ascii, shift_bytes, utf8.valid());
  if (cd == kNoIconv) {
    CCMAIL_RETURN_IF_ERROR(source([&](std::string_view c) { return lines.Add(c); }));
    return lines.Finish();
  }
  IconvStream conv(cd, &lines);
  CCMAIL_RETURN_IF_ERROR(source([&](std::string_view c) { return conv.Add(c, false); }));
  CCMAIL_RETURN_IF_ERROR(conv.Add({}, true));
  return lines.Finish();
}

}  // namespace ccmail::format
