#include "ccmail/config/config.h"

#include "ccmail/common/ascii.h"
#include "ccmail/common/log.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ccmail/config/settings.h"

namespace ccmail {
namespace {

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return std::string(s.substr(b, e - b));
}

bool ValidName(const std::string& name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  }
  return true;
}

// Splits "123k" into 123 and "k". False when there is no leading number or it overflows.
bool SplitNumber(const std::string& text, uint64_t* number, std::string* unit) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0 || i > 19) return false;
  errno = 0;
  unsigned long long v = std::strtoull(text.substr(0, i).c_str(), nullptr, 10);
  if (errno != 0) return false;
  *number = v;
  *unit = ToLowerAscii(Trim(text.substr(i)));
  return true;
}

bool MulOverflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

}  // namespace

Status ReadRegularFile(const std::string& path, const std::string& what, std::string* text) {
  // A directory opens and reads as empty through ifstream: without this check it would
  // "load" as a file of defaults.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return Status::FromErrno("open " + what + " " + path, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return Status::FromErrno("stat " + what + " " + path, e);
  }
  // /dev/null stays usable as "an empty file" (the commands' -c /dev/null: all defaults).
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument(what + " " + path + ": is a directory");
  }
  text->clear();
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      return Status::FromErrno("read " + what + " " + path, e);
    }
    text->append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return Status::Ok();
}

Status Config::Load(const std::string& path, Config* out) {
  std::string text;
  CCMAIL_RETURN_IF_ERROR(ReadRegularFile(path, "config", &text));
  return Parse(text, path, out);
}

Status Config::Parse(std::string_view text, const std::string& source_name, Config* out) {
  Config cfg;
  cfg.source_ = source_name;
  std::string current;  // name whose value a continuation line extends
  size_t pos = 0;
  int line_no = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? text.size() - pos : nl - pos);
    pos = (nl == std::string_view::npos) ? text.size() + 1 : nl + 1;
    ++line_no;
    const std::string where = source_name + ":" + std::to_string(line_no);
    std::string trimmed = Trim(line);
    if (trimmed.empty() || trimmed[0] == '#') continue;
    if (line[0] == ' ' || line[0] == '\t') {
      if (current.empty()) {
        return Status::InvalidArgument(where + ": continuation line without a setting before it");
      }
      std::string& v = cfg.values_[current].text;
      v += v.empty() ? trimmed : " " + trimmed;
      continue;
    }
    size_t eq = trimmed.find('=');
    if (eq == std::string::npos) {
      return Status::InvalidArgument(where + ": expected \"name = value\", got \"" + trimmed + "\"");
    }
    std::string name = Trim(std::string_view(trimmed).substr(0, eq));
    std::string value = Trim(std::string_view(trimmed).substr(eq + 1));
    if (!ValidName(name)) {
      return Status::InvalidArgument(where + ": \"" + name + "\" is not a setting name (letters, digits, _)");
    }
    if (FindSetting(name) == nullptr) {
      return Status::InvalidArgument(where + ": unknown setting \"" + name +
                                     "\" (\"ccmailctl config\" lists the known ones)");
    }
    if (cfg.values_.count(name)) {
      return Status::InvalidArgument(where + ": \"" + name + "\" is already set at " + cfg.values_[name].where);
    }
    cfg.values_[name] = Value{value, where};
    current = name;
  }
  *out = std::move(cfg);
  return Status::Ok();
}

Status Config::Set(const std::string& name, const std::string& value) {
  if (FindSetting(name) == nullptr) return Status::InvalidArgument("unknown setting \"" + name + "\"");
  values_[name] = Value{Trim(value), "command line"};
  return Status::Ok();
}

Status Config::ApplyOverrides(const std::vector<std::string>& name_values) {
  for (const std::string& o : name_values) {
    const size_t eq = o.find('=');
    const std::string name = eq == std::string::npos ? std::string() : Trim(o.substr(0, eq));
    if (name.empty()) return Status::InvalidArgument("-o " + o + ": expected name=value");
    if (Status s = Set(name, o.substr(eq + 1)); !s.ok()) return Status::InvalidArgument("-o " + o + ": " + s.message());
  }
  return Status::Ok();
}

Status Config::ApplyLogLevel() const {
  std::string level;
  CCMAIL_RETURN_IF_ERROR(GetString("log_level", &level));
  LogLevel lv;
  if (!ParseLogLevel(level, &lv)) return Status::InvalidArgument(Where("log_level") + ": log_level: bad value '" + level + "'");
  LogSetLevel(lv);
  return Status::Ok();
}

std::string Config::GetRaw(const std::string& name) const {
  auto it = values_.find(name);
  if (it != values_.end()) return it->second.text;
  const SettingSpec* spec = FindSetting(name);
  CCMAIL_CHECK(spec != nullptr, name.c_str());
  return std::string(spec->default_value);
}

bool Config::IsSet(const std::string& name) const { return values_.count(name) != 0; }

std::string Config::Where(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::string("default") : it->second.where;
}

Status Config::Invalid(const std::string& name, const std::string& expected) const {
  return Status::InvalidArgument(Where(name) + ": " + name + " = \"" + GetRaw(name) + "\": expected " + expected);
}

Status Config::GetString(const std::string& name, std::string* out) const {
  *out = GetRaw(name);
  return Status::Ok();
}

Status Config::GetBool(const std::string& name, bool* out) const {
  std::string v = ToLowerAscii(GetRaw(name));
  if (v == "yes" || v == "true" || v == "on" || v == "1") {
    *out = true;
  } else if (v == "no" || v == "false" || v == "off" || v == "0") {
    *out = false;
  } else {
    return Invalid(name, "yes or no");
  }
  return Status::Ok();
}

Status Config::GetUInt(const std::string& name, uint64_t min, uint64_t max, uint64_t* out) const {
  uint64_t n;
  std::string unit;
  if (!SplitNumber(GetRaw(name), &n, &unit) || !unit.empty() || n < min || n > max) {
    return Invalid(name, "a whole number from " + std::to_string(min) + " to " + std::to_string(max));
  }
  *out = n;
  return Status::Ok();
}

Status Config::GetSize(const std::string& name, uint64_t* out) const {
  uint64_t n, mult = 1;
  std::string unit;
  if (!SplitNumber(GetRaw(name), &n, &unit)) return Invalid(name, "a size such as 512k, 50m or 4g");
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "k" || unit == "kb") mult = 1ULL << 10;
  else if (unit == "m" || unit == "mb") mult = 1ULL << 20;
  else if (unit == "g" || unit == "gb") mult = 1ULL << 30;
  else if (unit == "t" || unit == "tb") mult = 1ULL << 40;
  else return Invalid(name, "a size such as 512k, 50m or 4g");
  if (MulOverflows(n, mult, out)) return Invalid(name, "a size that fits in 64 bits");
  return Status::Ok();
}

Status ParseDuration(const std::string& text, std::chrono::milliseconds* out) {
  static const char* const kExpected = "a duration such as 500ms, 30s, 5m, 2h or 7d";
  uint64_t n, mult;
  std::string unit;
  if (!SplitNumber(text, &n, &unit)) return Status::InvalidArgument(kExpected);
  if (unit == "ms") mult = 1;
  else if (unit.empty() || unit == "s") mult = 1000;
  else if (unit == "m") mult = 60 * 1000;
  else if (unit == "h") mult = 3600 * 1000;
  else if (unit == "d") mult = 86400 * 1000;
  else if (unit == "w") mult = 7 * 86400ULL * 1000;
  else return Status::InvalidArgument(kExpected);
  uint64_t ms;
  if (MulOverflows(n, mult, &ms) || ms > static_cast<uint64_t>(INT64_MAX))
    return Status::InvalidArgument("a shorter duration");
  *out = std::chrono::milliseconds(static_cast<int64_t>(ms));
  return Status::Ok();
}

Status Config::GetDuration(const std::string& name, std::chrono::milliseconds* out) const {
  if (Status s = ParseDuration(GetRaw(name), out); !s.ok()) return Invalid(name, s.message());
  return Status::Ok();
}

Status Config::GetEnum(const std::string& name, const std::vector<std::string>& allowed, std::string* out) const {
  std::string v = ToLowerAscii(GetRaw(name));
  std::string choices;
  for (const std::string& a : allowed) {
    if (ToLowerAscii(a) == v) {
      *out = a;
      return Status::Ok();
    }
    choices += choices.empty() ? a : ", " + a;
  }
  return Invalid(name, "one of: " + choices);
}

Status Config::GetList(const std::string& name, std::vector<std::string>* out) const {
  out->clear();
  std::string item;
  for (char c : GetRaw(name) + ",") {
    if (c == ',' || c == ' ' || c == '\t') {
      if (!item.empty()) out->push_back(item);
      item.clear();
    } else {
      item += c;
    }
  }
  return Status::Ok();
}

Status Config::GetMode(const std::string& name, unsigned* out) const {
  std::string v = GetRaw(name);
  if (v.empty() || v.size() > 4) return Invalid(name, "an octal mode such as 0660");
  unsigned mode = 0;
  for (char c : v) {
    if (c < '0' || c > '7') return Invalid(name, "an octal mode such as 0660");
    mode = mode * 8 + static_cast<unsigned>(c - '0');
  }
  *out = mode;
  return Status::Ok();
}

}  // namespace ccmail
