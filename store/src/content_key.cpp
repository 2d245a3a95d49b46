// content_key.cpp - Decision 2's canonical form, hashed with GLib's SHA-256.
#include "ccmail/store/content_key.h"

#include <glib.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "ccmail/common/status.h"

namespace ccmail::store {
namespace {

const char kHex[] = "0123456789abcdef";

std::string Lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool IsWsp(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// Unfolds and collapses whitespace so folding differences between hops do not matter.
std::string CanonicalValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  bool pending_space = false;
  for (char c : v) {
    if (IsWsp(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(c);
  }
  return out;
}

std::string StripAngles(std::string_view s) {
  std::string t = CanonicalValue(s);
  if (t.size() >= 2 && t.front() == '<' && t.back() == '>') t = t.substr(1, t.size() - 2);
  return t;
}

}  // namespace

std::string ContentKey::ToString() const {
  std::string s(64, '0');
  for (size_t i = 0; i < 32; ++i) {
    s[2 * i] = kHex[bytes[i] >> 4];
    s[2 * i + 1] = kHex[bytes[i] & 15];
  }
  return s;
}

std::optional<ContentKey> ContentKey::Parse(std::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  ContentKey k;
  for (size_t i = 0; i < 32; ++i) {
    int hi = g_ascii_xdigit_value(hex[2 * i]), lo = g_ascii_xdigit_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    k.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return k;
}

bool IsTraceHeader(std::string_view name) {
  std::string n = Lower(CanonicalValue(name));
  return n == "received" || n == "return-path" || n == "delivered-to" || n == "x-original-to" ||
         n.rfind("x-ccmail-", 0) == 0;
}

struct ContentKeyBuilder::Impl {
  GChecksum* sum = g_checksum_new(G_CHECKSUM_SHA256);
  std::vector<std::string> extra;
  bool body_started = false;
  bool last_cr = false;  // body: a CR at the end of the previous chunk, not yet emitted
  bool finished = false;
  ~Impl() { g_checksum_free(sum); }
  void Feed(std::string_view s) {
    g_checksum_update(sum, reinterpret_cast<const guchar*>(s.data()), static_cast<gssize>(s.size()));
  }
};

ContentKeyBuilder::ContentKeyBuilder(std::vector<std::string> extra) : impl_(std::make_unique<Impl>()) {
  for (auto& e : extra) impl_->extra.push_back(Lower(e));
  impl_->Feed("ccmail-ck-1\n");
}

ContentKeyBuilder::~ContentKeyBuilder() = default;

void ContentKeyBuilder::SetEnvelopeSender(std::string_view sender) {
  std::string s = "S" + StripAngles(sender) + "\n";
  impl_->Feed(s);
}

void ContentKeyBuilder::AddHeader(std::string_view name, std::string_view value) {
  CCMAIL_CHECK(!impl_->body_started, "ContentKeyBuilder: header after body");
  if (IsTraceHeader(name)) return;
  std::string n = Lower(CanonicalValue(name));
  if (std::find(impl_->extra.begin(), impl_->extra.end(), n) != impl_->extra.end()) return;
  std::string line = "H" + n + ":" + CanonicalValue(value) + "\n";
  impl_->Feed(line);
}

void ContentKeyBuilder::AddBody(const void* data, size_t n) {
  Impl& im = *impl_;
  if (!im.body_started) {
    im.Feed("B");
    im.body_started = true;
  }
  const char* p = static_cast<const char*>(data);
  // CRLF -> LF, streamed: a CR is held back until we know the next byte.
  std::string out;
  out.reserve(n + 1);
  for (size_t i = 0; i < n; ++i) {
    char c = p[i];
    if (im.last_cr) {
      im.last_cr = false;
      if (c != '\n') out.push_back('\r');
    }
    if (c == '\r') {
      im.last_cr = true;
      continue;
    }
    out.push_back(c);
  }
  im.Feed(out);
}

ContentKey ContentKeyBuilder::Finish() {
  Impl& im = *impl_;
  CCMAIL_CHECK(!im.finished, "ContentKeyBuilder: Finish twice");
  if (!im.body_started) {
    im.Feed("B");
    im.body_started = true;
  }
  if (im.last_cr) im.Feed("\r");
  im.finished = true;
  ContentKey k;
  gsize len = k.bytes.size();
  g_checksum_get_digest(im.sum, k.bytes.data(), &len);
  CCMAIL_CHECK(len == 32, "SHA-256 digest length");
  return k;
}

ContentKey ContentKeyOfMessage(std::string_view sender, std::string_view raw) {
  ContentKeyBuilder b;
  b.SetEnvelopeSender(sender);
  // Split the header at the first empty line (CRLF or LF); unfold continuation lines.
  size_t pos = 0;
  std::string name, value;
  bool have = false;
  auto flush = [&] {
    if (have) b.AddHeader(name, value);
    have = false;
    name.clear();
    value.clear();
  };
  while (pos < raw.size()) {
    size_t eol = raw.find('\n', pos);
    size_t next = eol == std::string_view::npos ? raw.size() : eol + 1;
    std::string_view line = raw.substr(pos, (eol == std::string_view::npos ? raw.size() : eol) - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
      pos = next;
      flush();
      b.AddBody(raw.data() + pos, raw.size() - pos);
      return b.Finish();
    }
    if ((line[0] == ' ' || line[0] == '\t') && have) {
      value.append(" ").append(line);
    } else {
      flush();
      size_t colon = line.find(':');
      if (colon == std::string_view::npos) {
        // Not a header: treat the rest as body (malformed message).
        b.AddBody(raw.data() + pos, raw.size() - pos);
        return b.Finish();
      }
      name.assign(line.substr(0, colon));
      value.assign(line.substr(colon + 1));
      have = true;
    }
    pos = next;
  }
  flush();
  return b.Finish();
}

}  // namespace ccmail::store
