// to_mime_address.cpp - cc:Mail names and gateway addresses -> SMTP addresses (the way back).
#include <cctype>

#include "ccmail/common/ascii.h"
#include "to_mime_internal.h"

namespace ccmail::submitter::internal {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool IsDotAtom(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  static constexpr std::string_view kSpecials = "!#$%&'*+-/=?^_`{|}~";
  char prev = 0;
  for (char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    const bool atext = (u < 0x80 && std::isalnum(u)) || kSpecials.find(c) != std::string_view::npos;
    if (c == '.' ? prev == '.' : !atext) return false;
    prev = c;
  }
  return true;
}

bool IsDomain(std::string_view d) {
  if (d.size() > 2 && d.front() == '[' && d.back() == ']') {  // address literal: [192.0.2.1], [IPv6:2001:db8::1]
    std::string_view lit = d.substr(1, d.size() - 2);
    if (lit.starts_with("IPv6:")) lit.remove_prefix(5);
    if (lit.empty()) return false;
    for (char c : lit)
      if (!(std::isxdigit(static_cast<unsigned char>(c)) || c == '.' || c == ':')) return false;
    return true;
  }
  if (d.empty() || d.size() > 253 || d.front() == '.' || d.back() == '.') return false;
  size_t label = 0;
  char prev = 0;
  for (char c : d) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '.') {
      if (label == 0 || prev == '-') return false;
      label = 0;
    } else if ((u < 0x80 && std::isalnum(u)) || (c == '-' && label > 0)) {
      if (++label > 63) return false;
    } else {
      return false;
    }
    prev = c;
  }
  return prev != '-';
}

// The lower-case pattern form of a name part: spaces become '.', nothing else changes (the
// result is checked as a whole afterwards).
std::string PatternPart(std::string_view s) {
  std::string out = ToLowerAscii(Trim(s));
  for (char& c : out)
    if (c == ' ' || c == '\t') c = '.';
  return out;
}

}  // namespace

bool IsSubmittableAddress(std::string_view address) {
  if (address.size() > 254) return false;
  const size_t at = address.rfind('@');
  if (at == std::string_view::npos || at == 0 || at > 64) return false;
  return IsDotAtom(address.substr(0, at)) && IsDomain(address.substr(at + 1));
}

format::CcMailAddress SplitCcMailName(std::string_view utf8) {
  const std::string padded = " " + std::string(utf8);  // "at PO" alone: an empty name
  const size_t at = ToLowerAscii(padded).rfind(" at ");
  if (at == std::string::npos) return {std::string(Trim(utf8)), ""};
  return {std::string(Trim(std::string_view(padded).substr(0, at))),
          std::string(Trim(std::string_view(padded).substr(at + 4)))};
}

Recipient ClassifyRecipient(std::string_view utf8, std::string_view inbox_post_office, std::string_view gateway) {
  Recipient r;
  r.line = std::string(Trim(utf8));
  format::CcMailAddress split = SplitCcMailName(r.line);
  std::string_view left = split.name;
  bool via_gateway = !split.post_office.empty() && EqualsIgnoreAsciiCase(split.post_office, gateway);
  if (!via_gateway && split.post_office.empty()) {
    // FAN directory form without " at ": "Doe, Jane  r  PMDF jdoe@foo.bar.com".
    const size_t last_space = r.line.find_last_of(" \t");
    if (last_space != std::string::npos && r.line.find('@', last_space) != std::string::npos) {
      std::string_view before = Trim(std::string_view(r.line).substr(0, last_space));
      const size_t prev_space = before.find_last_of(" \t");
      std::string_view po = prev_space == std::string_view::npos ? before : before.substr(prev_space + 1);
      if (EqualsIgnoreAsciiCase(po, gateway)) {
        via_gateway = true;
        left = std::string_view(r.line).substr(last_space + 1);
      }
    }
  }
  if (!via_gateway) {
    r.kind = Recipient::Kind::kCcMail;
    r.ccmail = std::move(split);
    if (r.ccmail.post_office.empty()) r.ccmail.post_office = std::string(inbox_post_office);
    return r;
  }
  // "addr", "Name <addr>", "Name  addr": the address is the bracketed part, else the last word.
  std::string_view candidate = Trim(left);
  if (const size_t lt = candidate.rfind('<'); lt != std::string_view::npos && candidate.back() == '>') {
    candidate = Trim(candidate.substr(lt + 1, candidate.size() - lt - 2));
  } else if (const size_t sp = candidate.find_last_of(" \t"); sp != std::string_view::npos) {
    candidate = candidate.substr(sp + 1);
  }
  if (!IsSubmittableAddress(candidate)) {
    r.kind = Recipient::Kind::kBadGateway;
    return r;
  }
  r.kind = Recipient::Kind::kInternet;
  r.address = std::string(candidate);
  return r;
}

std::optional<std::string> PatternAddress(const format::CcMailAddress& who, const ReverseSettings& s, std::string* why) {
  std::string_view name = Trim(who.name);
  std::string first, last;
  if (const size_t comma = name.find(','); comma != std::string_view::npos) {
    last = PatternPart(name.substr(0, comma));  // "Last, First"
    first = PatternPart(name.substr(comma + 1));
  } else if (const size_t sp = name.find_last_of(' '); sp != std::string_view::npos) {
    first = PatternPart(name.substr(0, sp));    // "First Middle Last"
    last = PatternPart(name.substr(sp + 1));
  } else {
    last = PatternPart(name);
  }
  const std::string& pattern = s.unmapped_author_pattern;
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '{') {
      const size_t close = pattern.find('}', i);
      const std::string_view field =
          close == std::string::npos ? std::string_view() : std::string_view(pattern).substr(i + 1, close - i - 1);
      if (field == "first") out += first;
      else if (field == "last") out += last;
      else if (field == "name") out += PatternPart(name);
      else if (field == "po") out += ToLowerAscii(who.post_office);
      else if (field == "domain") out += s.author_domain;
      else {
        *why = "unmapped_author_pattern has an unknown field \"" + std::string(pattern.substr(i)) + "\"";
        return std::nullopt;
      }
      i = close;
      continue;
    }
    out.push_back(pattern[i]);
  }
  // Empty fields ("{first}" of a one-word name) leave stray dots: collapse them.
  std::string clean;
  for (char c : out) {
    if (c == '.' && (clean.empty() || clean.back() == '.' || clean.back() == '@')) continue;
    if (c == '@' && !clean.empty() && clean.back() == '.') clean.pop_back();
    clean.push_back(c);
  }
  if (!clean.empty() && clean.back() == '.') clean.pop_back();
  if (!IsSubmittableAddress(clean)) {
    *why = "the cc:Mail name \"" + who.name + "\" gives no valid address through unmapped_author_pattern (\"" +
           clean + "\")";
    return std::nullopt;
  }
  return clean;
}

}  // namespace ccmail::submitter::internal
