// json.h - a small streaming JSON writer for ccmailctl --json.
//
// SYNOPSIS
//   JsonWriter w;
//   w.BeginObject().Key("messages").UInt(4).Key("sender").String(sender).EndObject();
//   std::string text = w.Take();   // pretty-printed, two-space indent, final newline
//
// DESCRIPTION
//   Strings are escaped as RFC 8259 requires: '"', '\\' and every control character
//   below U+0020 (\b \f \n \r \t by name, the rest as \u00XX). Input bytes that are not
//   valid UTF-8 (an SMTP sender may contain anything) become U+FFFD, so the output is
//   always valid UTF-8 and always parses. Keys are escaped the same way.
//   The writer checks its own nesting: a value without a key inside an object, or
//   Take() with an open container, is a programming error and aborts (CCMAIL_CHECK).
//   Objects keep the order in which keys were written, so the output is stable.
//
// THREAD SAFETY
//   One writer per thread.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ccmail::ctl {

class JsonWriter {
 public:
  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  JsonWriter& Key(std::string_view key);
  JsonWriter& String(std::string_view value);
  JsonWriter& Int(int64_t value);
  JsonWriter& UInt(uint64_t value);
  JsonWriter& Bool(bool value);
  JsonWriter& Null();
  // Several members of one type in order, e.g. UIntMembers({{"epoch", 3}, {"seq", 9}}).
  JsonWriter& UIntMembers(std::initializer_list<std::pair<std::string_view, uint64_t>> members);
  JsonWriter& StringMembers(std::initializer_list<std::pair<std::string_view, std::string_view>> members);
  // The document; the writer is empty afterwards.
  std::string Take();

 private:
  void BeforeValue();
  void Newline();
  JsonWriter& Close(char bracket);  // ends the innermost object or array (checked by the caller)
  struct Level {
    bool object;
    size_t count = 0;
    bool key_pending = false;
  };
  std::string out_;
  std::vector<Level> stack_;
  bool done_ = false;
};

// `s` as a JSON string literal, quotes included.
std::string JsonQuote(std::string_view s);

}  // namespace ccmail::ctl
