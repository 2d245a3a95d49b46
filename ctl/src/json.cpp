// json.cpp - escaping-correct JSON output (see json.h).
#include "ccmail/ctl/json.h"

#include <cstdio>

#include "ccmail/common/status.h"

namespace ccmail::ctl {
namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 when the bytes there are not one
// (overlong forms, surrogates and code points above U+10FFFF are invalid too).
size_t Utf8Length(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t n;
  uint32_t cp;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) n = 2, cp = c & 0x1F;
  else if (c >= 0xE0 && c <= 0xEF) n = 3, cp = c & 0x0F;
  else if (c >= 0xF0 && c <= 0xF4) n = 4, cp = c & 0x07;
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (b(i + k) & 0x3F);
  }
  if (n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
  if (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return 0;
  return n;
}

}  // namespace

std::string JsonQuote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      size_t n = Utf8Length(s, i);
      if (n == 0) {
        out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
        ++i;
      } else {
        out.append(s.substr(i, n));
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out.push_back('"');
  return out;
}

void JsonWriter::Newline() {
  out_.push_back('\n');
  out_.append(2 * stack_.size(), ' ');
}

void JsonWriter::BeforeValue() {
  CCMAIL_CHECK(!done_, "JSON value after the document ended");
  if (stack_.empty()) return;
  Level& top = stack_.back();
  if (top.object) {
    CCMAIL_CHECK(top.key_pending, "JSON value in an object without a key");
    top.key_pending = false;
    return;
  }
  if (top.count++ > 0) out_.push_back(',');
  Newline();
}

JsonWriter& JsonWriter::Key(std::string_view key) {
  CCMAIL_CHECK(!stack_.empty() && stack_.back().object && !stack_.back().key_pending, "JSON key outside an object");
  Level& top = stack_.back();
  if (top.count++ > 0) out_.push_back(',');
  Newline();
  out_ += JsonQuote(key);
  out_ += ": ";
  top.key_pending = true;
  return *this;
}

JsonWriter& JsonWriter::BeginObject() {
  BeforeValue();
  out_.push_back('{');
  stack_.push_back(Level{true});
  return *this;
}

JsonWriter& JsonWriter::BeginArray() {
  BeforeValue();
  out_.push_back('[');
  stack_.push_back(Level{false});
  return *this;
}

JsonWriter& JsonWriter::EndObject() {
  CCMAIL_CHECK(!stack_.empty() && stack_.back().object && !stack_.back().key_pending, "unbalanced JSON object");
  return Close('}');
}

JsonWriter& JsonWriter::EndArray() {
  CCMAIL_CHECK(!stack_.empty() && !stack_.back().object, "unbalanced JSON array");
  return Close(']');
}

JsonWriter& JsonWriter::UIntMembers(std::initializer_list<std::pair<std::string_view, uint64_t>> members) {
  for (const auto& [key, value] : members) Key(key).UInt(value);
  return *this;
}

JsonWriter& JsonWriter::StringMembers(std::initializer_list<std::pair<std::string_view, std::string_view>> members) {
  for (const auto& [key, value] : members) Key(key).String(value);
  return *this;
}

JsonWriter& JsonWriter::Close(char bracket) {
  const size_t members = stack_.back().count;
  stack_.pop_back();
  if (members > 0) Newline();
  out_.push_back(bracket);
  if (stack_.empty()) done_ = true;
  return *this;
}

JsonWriter& JsonWriter::String(std::string_view v) {
  BeforeValue();
  out_ += JsonQuote(v);
  if (stack_.empty()) done_ = true;
  return *this;
}

JsonWriter& JsonWriter::Int(int64_t v) {
  BeforeValue();
  out_ += std::to_string(v);
  if (stack_.empty()) done_ = true;
  return *this;
}

JsonWriter& JsonWriter::UInt(uint64_t v) {
  BeforeValue();
  out_ += std::to_string(v);
  if (stack_.empty()) done_ = true;
  return *this;
}

JsonWriter& JsonWriter::Bool(bool v) {
  BeforeValue();
  out_ += v ? "true" : "false";
  if (stack_.empty()) done_ = true;
  return *this;
}

JsonWriter& JsonWriter::Null() {
  BeforeValue();
  out_ += "null";
  if (stack_.empty()) done_ = true;
  return *this;
}

std::string JsonWriter::Take() {
  CCMAIL_CHECK(stack_.empty() && done_, "JSON document is not complete");
  std::string s = std::move(out_);
  s.push_back('\n');
  out_.clear();
  done_ = false;
  return s;
}

}  // namespace ccmail::ctl
