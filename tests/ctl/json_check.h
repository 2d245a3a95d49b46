// json_check.h - a tiny strict JSON parser for the ccmailctl tests: the --json output
// must parse (RFC 8259 grammar, valid escapes, no trailing garbage) and the tests then
// look values up by path ("exporter.state", "0.recipients.1.post_office").
#pragma once

#include <cctype>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ccmail::ctl::test {

struct Json {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject } type = Type::kNull;
  bool b = false;
  std::string text;  // number as written, or the decoded string
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;

  // nullptr when the path does not exist. Path parts are separated by '.', array
  // elements are addressed by index.
  const Json* Find(const std::string& path) const {
    const Json* cur = this;
    size_t pos = 0;
    while (cur && pos <= path.size() && !path.empty()) {
      size_t dot = path.find('.', pos);
      std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
      const Json* next = nullptr;
      if (cur->type == Type::kObject) {
        for (const auto& m : cur->members)
          if (m.first == part) next = &m.second;
      } else if (cur->type == Type::kArray && !part.empty() && part.find_first_not_of("0123456789") == std::string::npos) {
        size_t i = std::stoul(part);
        if (i < cur->items.size()) next = &cur->items[i];
      }
      cur = next;
      if (dot == std::string::npos) break;
      pos = dot + 1;
    }
    return cur;
  }
  std::string Str(const std::string& path) const {
    const Json* j = Find(path);
    return j && j->type == Type::kString ? j->text : "<no string at " + path + ">";
  }
  int64_t Int(const std::string& path) const {
    const Json* j = Find(path);
    return j && j->type == Type::kNumber ? std::stoll(j->text) : INT64_MIN;
  }
  bool IsNull(const std::string& path) const {
    const Json* j = Find(path);
    return j && j->type == Type::kNull;
  }
  int Bool(const std::string& path) const {  // 1, 0, or -1 when not a boolean
    const Json* j = Find(path);
    return j && j->type == Type::kBool ? (j->b ? 1 : 0) : -1;
  }
  size_t Size(const std::string& path = "") const {
    const Json* j = path.empty() ? this : Find(path);
    if (!j) return SIZE_MAX;
    return j->type == Type::kArray ? j->items.size() : j->type == Type::kObject ? j->members.size() : SIZE_MAX;
  }
};

class JsonParser {
 public:
  // True when `text` is exactly one JSON value (surrounded by white space only).
  static bool Parse(const std::string& text, Json* out, std::string* error) {
    JsonParser p(text);
    bool ok = p.Value(out, 0);
    p.Ws();
    if (ok && p.i_ != text.size()) ok = p.Fail("trailing characters");
    if (!ok && error) *error = p.error_ + " at offset " + std::to_string(p.i_);
    return ok;
  }

 private:
  explicit JsonParser(const std::string& s) : s_(s) {}
  bool Fail(const char* why) {
    if (error_.empty()) error_ = why;
    return false;
  }
  void Ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r')) ++i_;
  }
  bool Lit(const char* w) {
    size_t n = std::char_traits<char>::length(w);
    if (s_.compare(i_, n, w) != 0) return Fail("bad literal");
    i_ += n;
    return true;
  }
  static void PutUtf8(uint32_t cp, std::string* o) {
    if (cp < 0x80) o->push_back(static_cast<char>(cp));
    else if (cp < 0x800) {
      o->push_back(static_cast<char>(0xC0 | cp >> 6));
      o->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      o->push_back(static_cast<char>(0xE0 | cp >> 12));
      o->push_back(static_cast<char>(0x80 | (cp >> 6 & 0x3F)));
      o->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      o->push_back(static_cast<char>(0xF0 | cp >> 18));
      o->push_back(static_cast<char>(0x80 | (cp >> 12 & 0x3F)));
      o->push_back(static_cast<char>(0x80 | (cp >> 6 & 0x3F)));
      o->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  bool Hex4(uint32_t* v) {
    if (i_ + 4 > s_.size()) return Fail("short \\u escape");
    *v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[i_++];
      *v <<= 4;
      if (c >= '0' && c <= '9') *v |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') *v |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') *v |= static_cast<uint32_t>(c - 'A' + 10);
      else return Fail("bad hex digit");
    }
    return true;
  }
  bool String(std::string* o) {
    if (i_ >= s_.size() || s_[i_] != '"') return Fail("expected string");
    ++i_;
    while (i_ < s_.size()) {
      unsigned char c = static_cast<unsigned char>(s_[i_++]);
      if (c == '"') return true;
      if (c < 0x20) return Fail("raw control character in string");
      if (c != '\\') {
        o->push_back(static_cast<char>(c));
        continue;
      }
      if (i_ >= s_.size()) return Fail("dangling backslash");
      char e = s_[i_++];
      switch (e) {
        case '"': o->push_back('"'); break;
        case '\\': o->push_back('\\'); break;
        case '/': o->push_back('/'); break;
        case 'b': o->push_back('\b'); break;
        case 'f': o->push_back('\f'); break;
        case 'n': o->push_back('\n'); break;
        case 'r': o->push_back('\r'); break;
        case 't': o->push_back('\t'); break;
        case 'u': {
          uint32_t cp;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo;
            if (!Lit("\\u") || !Hex4(&lo) || lo < 0xDC00 || lo > 0xDFFF) return Fail("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          PutUtf8(cp, o);
          break;
        }
        default: return Fail("bad escape");
      }
    }
    return Fail("unterminated string");
  }
  bool Number(Json* out) {
    size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    if (i_ >= s_.size() || !isdigit(static_cast<unsigned char>(s_[i_]))) return Fail("bad number");
    if (s_[i_] == '0') ++i_;
    else while (i_ < s_.size() && isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (i_ >= s_.size() || !isdigit(static_cast<unsigned char>(s_[i_]))) return Fail("bad fraction");
      while (i_ < s_.size() && isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    out->type = Json::Type::kNumber;
    out->text = s_.substr(start, i_ - start);
    return true;
  }
  bool Value(Json* out, int depth) {
    if (depth > 64) return Fail("too deep");
    Ws();
    if (i_ >= s_.size()) return Fail("unexpected end");
    char c = s_[i_];
    if (c == '{') {
      ++i_;
      out->type = Json::Type::kObject;
      Ws();
      if (i_ < s_.size() && s_[i_] == '}') return ++i_, true;
      for (;;) {
        Ws();
        std::string key;
        if (!String(&key)) return false;
        Ws();
        if (i_ >= s_.size() || s_[i_] != ':') return Fail("expected ':'");
        ++i_;
        Json v;
        if (!Value(&v, depth + 1)) return false;
        out->members.emplace_back(std::move(key), std::move(v));
        Ws();
        if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
        if (i_ < s_.size() && s_[i_] == '}') return ++i_, true;
        return Fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      ++i_;
      out->type = Json::Type::kArray;
      Ws();
      if (i_ < s_.size() && s_[i_] == ']') return ++i_, true;
      for (;;) {
        Json v;
        if (!Value(&v, depth + 1)) return false;
        out->items.push_back(std::move(v));
        Ws();
        if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
        if (i_ < s_.size() && s_[i_] == ']') return ++i_, true;
        return Fail("expected ',' or ']'");
      }
    }
    if (c == '"') {
      out->type = Json::Type::kString;
      return String(&out->text);
    }
    if (c == 't') { out->type = Json::Type::kBool; out->b = true; return Lit("true"); }
    if (c == 'f') { out->type = Json::Type::kBool; out->b = false; return Lit("false"); }
    if (c == 'n') { out->type = Json::Type::kNull; return Lit("null"); }
    return Number(out);
  }

  const std::string& s_;
  size_t i_ = 0;
  std::string error_;
};

}  // namespace ccmail::ctl::test
