// ledger_location.cpp - MaskLedgerLocation (see ledger_location.h).
#include "ccmail/ctl/ledger_location.h"

#include <cctype>

namespace ccmail::ctl {
namespace {

constexpr std::string_view kMask = "***";

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

bool IStartsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && IEquals(s.substr(0, prefix.size()), prefix);
}

// URL form (libpq "connection URI"): scheme://[user[:password]@]hosts[/db][?k=v&...].
std::string MaskUri(std::string_view uri, size_t authority_start) {
  std::string out(uri.substr(0, authority_start));
  size_t end = uri.find_first_of("/?", authority_start);
  if (end == std::string_view::npos) end = uri.size();
  std::string_view authority = uri.substr(authority_start, end - authority_start);
  size_t at = authority.rfind('@');
  if (at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    size_t colon = userinfo.find(':');
    if (colon != std::string_view::npos) {
      out.append(userinfo.substr(0, colon + 1)).append(kMask);
    } else {
      out.append(userinfo);
    }
    out.append(authority.substr(at));
  } else {
    out.append(authority);
  }
  size_t q = uri.find('?', end);
  out.append(uri.substr(end, (q == std::string_view::npos ? uri.size() : q) - end));
  if (q == std::string_view::npos) return out;
  out.push_back('?');
  std::string_view query = uri.substr(q + 1);
  bool first = true;
  while (true) {
    size_t amp = query.find('&');
    std::string_view param = query.substr(0, amp);
    if (!first) out.push_back('&');
    first = false;
    size_t eq = param.find('=');
    if (eq != std::string_view::npos && IEquals(param.substr(0, eq), "password"))
      out.append(param.substr(0, eq + 1)).append(kMask);
    else
      out.append(param);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

// key = value pairs separated by white space; a value may be single-quoted, with escaped
// quotes and backslashes inside (libpq's rules). Spacing is kept as written, only a
// password's value is replaced.
std::string MaskKeywords(std::string_view s) {
  std::string out;
  size_t i = 0;
  auto space = [&](size_t k) { return k < s.size() && std::isspace(static_cast<unsigned char>(s[k])); };
  while (i < s.size()) {
    size_t start = i;
    while (space(i)) ++i;
    size_t key_start = i;
    while (i < s.size() && s[i] != '=' && !space(i)) ++i;
    std::string_view key = s.substr(key_start, i - key_start);
    while (space(i)) ++i;
    if (i >= s.size() || s[i] != '=') {  // not key=value: keep the rest as it is
      out.append(s.substr(start));
      break;
    }
    ++i;  // '='
    while (space(i)) ++i;
    out.append(s.substr(start, i - start));
    size_t value_start = i;
    if (i < s.size() && s[i] == '\'') {
      ++i;
      while (i < s.size() && s[i] != '\'') i += (s[i] == '\\' && i + 1 < s.size()) ? 2 : 1;
      if (i < s.size()) ++i;  // closing quote
    } else {
      while (i < s.size() && !space(i)) i += (s[i] == '\\' && i + 1 < s.size()) ? 2 : 1;
    }
    if (IEquals(key, "password"))
      out.append(kMask);
    else
      out.append(s.substr(value_start, i - value_start));
  }
  return out;
}

}  // namespace

std::string MaskLedgerLocation(std::string_view location) {
  for (std::string_view scheme : {"postgresql://", "postgres://"})
    if (IStartsWith(location, scheme)) return MaskUri(location, scheme.size());
  if (location.find('=') != std::string_view::npos && !location.empty() && location.front() != '/')
    return MaskKeywords(location);
  return std::string(location);
}

}  // namespace ccmail::ctl
