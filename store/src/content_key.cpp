// content_key.cpp - the canonical form of docs/DESIGN.md §2.2, hashed with GLib's SHA-256.
#include "ccmail/store/content_key.h"

#include <glib.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <iterator>

#include "ccmail/common/ascii.h"
#include "ccmail/common/status.h"
#include "hex.h"

namespace ccmail::store {
namespace {


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

std::string ContentKey::ToString() const { return HexEncode(bytes.data(), bytes.size()); }

std::optional<ContentKey> ContentKey::Parse(std::string_view hex) {
  ContentKey key;
  if (!HexDecode(hex, key.bytes.data(), key.bytes.size())) return std::nullopt;
  return key;
}

bool IsTraceHeader(std::string_view name) {
  std::string n = ToLowerAscii(CanonicalValue(name));
  return n == "received" || n == "return-path" || n == "delivered-to" || n == "x-original-to" ||
         n.rfind("x-ccmail-", 0) == 0;
}

namespace {

// The fields an MTA adds to a message that lacks them, fresh on every attempt. Index order is
// the order they are hashed in at Finish.
constexpr std::string_view kMaybeGenerated[] = {"message-id", "date", "resent-message-id", "resent-date"};
constexpr size_t kMaybeGeneratedCount = std::size(kMaybeGenerated);
bool IsIdField(size_t i) { return i == 0 || i == 2; }

// An MTA-generated field is short; a longer one is hashed where it stands.
constexpr size_t kMaxHeldValue = 998;

int MaybeGeneratedIndex(std::string_view lower_name) {
  for (size_t i = 0; i < kMaybeGeneratedCount; ++i)
    if (lower_name == kMaybeGenerated[i]) return static_cast<int>(i);
  return -1;
}

// Postfix: <YYYYMMDDhhmmss.QUEUEID@host> or <QUEUEID@host> (long queue ids);
// Sendmail: <YYYYMMDDhhmm.QUEUEID@host>. A client's Message-ID cannot contain the
// queue id this MTA assigned to this attempt.
bool EmbedsQueueId(std::string_view value, std::string_view queue_id) {
  if (queue_id.empty()) return false;
  for (size_t p = value.find(queue_id); p != std::string_view::npos; p = value.find(queue_id, p + 1)) {
    if (p == 0 || p + queue_id.size() >= value.size()) continue;
    char before = value[p - 1], after = value[p + queue_id.size()];
    if ((before == '<' || before == '.') && after == '@') return true;
  }
  return false;
}

}  // namespace

struct ContentKeyBuilder::Impl {
  GChecksum* sum = g_checksum_new(G_CHECKSUM_SHA256);
  GChecksum* body = g_checksum_new(G_CHECKSUM_SHA256);
  std::vector<std::string> extra;
  std::string queue_id;
  // First occurrence of each kMaybeGenerated field (its canonical value), decided at Finish.
  std::optional<std::string> held[kMaybeGeneratedCount];
  unsigned seen[kMaybeGeneratedCount] = {};
  size_t position[kMaybeGeneratedCount] = {};  // header field number of the held field
  size_t fields = 0;
  bool body_started = false;
  bool last_cr = false;  // body: a CR at the end of the previous chunk, not yet emitted
  bool finished = false;
  ~Impl() {
    g_checksum_free(sum);
    g_checksum_free(body);
  }
  void Feed(std::string_view s) {
    g_checksum_update(sum, reinterpret_cast<const guchar*>(s.data()), static_cast<gssize>(s.size()));
  }
  void FeedBody(std::string_view s) {
    g_checksum_update(body, reinterpret_cast<const guchar*>(s.data()), static_cast<gssize>(s.size()));
  }
  void FeedHeader(std::string_view lower_name, std::string_view canonical_value) {
    std::string line = "H";
    line.append(lower_name).append(":").append(canonical_value).append("\n");
    Feed(line);
  }
  // An MTA adds a field only when it is missing: one occurrence.
  bool Single(size_t i) const { return seen[i] == 1 && held[i].has_value(); }
  bool IdGenerated(size_t id) const { return Single(id) && EmbedsQueueId(*held[id], queue_id); }
  bool Generated(size_t i) const {
    if (IsIdField(i)) return IdGenerated(i);
    // A Date is the MTA's when it follows the Message-ID the MTA generated: Postfix appends
    // the missing fields after the client's, Message-Id first, then Date.
    const size_t id = i == 1 ? 0 : 2;
    return Single(i) && IdGenerated(id) && position[i] > position[id];
  }
};

ContentKeyBuilder::ContentKeyBuilder(std::vector<std::string> extra) : impl_(std::make_unique<Impl>()) {
  for (auto& e : extra) impl_->extra.push_back(ToLowerAscii(e));
  impl_->Feed("ccmail-ck-2\n");
}

ContentKeyBuilder::~ContentKeyBuilder() = default;

void ContentKeyBuilder::SetEnvelopeSender(std::string_view sender) {
  std::string s = "S" + StripAngles(sender) + "\n";
  impl_->Feed(s);
}

void ContentKeyBuilder::SetQueueId(std::string_view queue_id) { impl_->queue_id = CanonicalValue(queue_id); }

void ContentKeyBuilder::AddHeader(std::string_view name, std::string_view value) {
  Impl& im = *impl_;
  CCMAIL_CHECK(!im.body_started, "ContentKeyBuilder: header after body");
  std::string n = ToLowerAscii(CanonicalValue(name));
  if (IsTraceHeader(n)) return;
  if (std::find(im.extra.begin(), im.extra.end(), n) != im.extra.end()) return;
  std::string v = CanonicalValue(value);
  ++im.fields;
  if (int i = MaybeGeneratedIndex(n); i >= 0) {
    if (++im.seen[i] == 1 && v.size() <= kMaxHeldValue) {
      im.held[i] = std::move(v);
      im.position[i] = im.fields;
      return;
    }
  }
  im.FeedHeader(n, v);
}

void ContentKeyBuilder::AddBody(const void* data, size_t n) {
  Impl& im = *impl_;
  im.body_started = true;
  const char* p = static_cast<const char*>(data);
  // CRLF -> LF, streamed: a CR is held back until we know the next byte. The runs between
  // CRs are copied whole (memchr), not byte by byte: this runs on every captured body.
  if (n == 0) return;
  std::string out;
  out.reserve(n + 1);
  if (im.last_cr) {
    im.last_cr = false;
    if (p[0] != '\n') out.push_back('\r');
  }
  size_t i = 0;
  while (i < n) {
    const void* cr = std::memchr(p + i, '\r', n - i);
    const size_t end = cr ? static_cast<size_t>(static_cast<const char*>(cr) - p) : n;
    out.append(p + i, end - i);
    if (end == n) break;
    if (end + 1 == n) {
      im.last_cr = true;
      break;
    }
    if (p[end + 1] != '\n') out.push_back('\r');
    i = end + 1;
  }
  im.FeedBody(out);
}

ContentKey ContentKeyBuilder::Finish() {
  Impl& im = *impl_;
  CCMAIL_CHECK(!im.finished, "ContentKeyBuilder: Finish twice");
  im.body_started = true;
  if (im.last_cr) im.FeedBody("\r");
  im.finished = true;
  for (size_t i = 0; i < kMaybeGeneratedCount; ++i)
    if (im.held[i] && !im.Generated(i)) im.FeedHeader(kMaybeGenerated[i], *im.held[i]);
  ContentKey body;
  gsize len = body.bytes.size();
  g_checksum_get_digest(im.body, body.bytes.data(), &len);
  CCMAIL_CHECK(len == 32, "SHA-256 digest length");
  im.Feed("B" + body.ToString());
  ContentKey k;
  len = k.bytes.size();
  g_checksum_get_digest(im.sum, k.bytes.data(), &len);
  CCMAIL_CHECK(len == 32, "SHA-256 digest length");
  return k;
}

ContentKey ContentKeyOfMessage(std::string_view sender, std::string_view raw, std::string_view queue_id) {
  ContentKeyBuilder b;
  b.SetEnvelopeSender(sender);
  b.SetQueueId(queue_id);
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
