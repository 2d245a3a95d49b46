// config.h - the one configuration file, /etc/ccmail-bridge/ccmail-bridge.conf.
//
// SYNOPSIS
//   Config cfg;
//   Status s = Config::Load("/etc/ccmail-bridge/ccmail-bridge.conf", &cfg);
//   uint64_t limit; s = cfg.GetSize("message_size_limit", &limit);
//
// DESCRIPTION
//   The syntax is Postfix main.cf's: "name = value" lines; blank lines and lines
//   whose first non-blank character is '#' are ignored; a line that starts with
//   white space continues the previous value (joined with one space). A '#'
//   inside a value is part of the value, as in main.cf.
//
//   Every name must be a known setting (settings.h lists them with their
//   defaults and meaning): an unknown name, a name given twice, or a line that
//   is not "name = value" fails Load() with "<file>:<line>: <reason>", so a typo
//   stops start-up instead of silently running on a default.
//
//   The typed getters return the file's value or the documented default. A
//   value that does not parse is an error naming the file, the line, the
//   setting and what was expected. Each component turns the settings it uses
//   into its own typed struct once, at start-up or reload, and keeps that.
//
//   A Config is an immutable value after Load/Set, safe to share between threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "ccmail/common/status.h"

namespace ccmail {

// Reads the whole of path. A directory is an InvalidArgument naming what (e.g. "config",
// "address map") and path; open/read errors keep their errno (NotFound, PermissionDenied,
// IoError). /dev/null reads as an empty file.
Status ReadRegularFile(const std::string& path, const std::string& what, std::string* text);

// The shortest dedup_window accepted. A retry of a message whose 250 was lost can come back
// for as long as the sending MTA keeps it queued: Postfix's maximal_queue_lifetime and
// Sendmail's Timeout.queuereturn are both 5 days by default. "ccmailctl check-mta" compares
// dedup_window with the MTA's actual setting.
inline constexpr std::chrono::hours kMinDedupWindow{5 * 24};

class Config {
 public:
  // A config holding only the documented defaults.
  Config() = default;

  static Status Load(const std::string& path, Config* out);
  // Parses text as if read from a file called source_name (used in error messages).
  static Status Parse(std::string_view text, const std::string& source_name, Config* out);

  // Overrides one setting, as the commands' "-o name=value" option does. The
  // name must be known. Later Set() calls win.
  Status Set(const std::string& name, const std::string& value);
  // Every command's "-o name=value" options, in order (blanks around '=' are ignored).
  // The first bad one is the error: "-o <it>: expected name=value" or "-o <it>: unknown ...".
  Status ApplyOverrides(const std::vector<std::string>& name_values);
  // Sets the process's log level from log_level (the daemons, after the overrides).
  Status ApplyLogLevel() const;

  // The raw text of a setting: the file's value, or the default.
  std::string GetRaw(const std::string& name) const;
  // True when the file (or Set) gave the setting a value.
  bool IsSet(const std::string& name) const;
  // "<file>:<line>" for a value from the file, "command line" for Set(), "default" otherwise.
  std::string Where(const std::string& name) const;
  // InvalidArgument "<where>: name = "value": expected <expected>": the form of every refused
  // value, for a component's own checks (a range, an absolute path) as for the getters below.
  Status Invalid(const std::string& name, const std::string& expected) const;

  Status GetString(const std::string& name, std::string* out) const;
  // yes/no, true/false, on/off, 1/0 (case-insensitive).
  Status GetBool(const std::string& name, bool* out) const;
  // A decimal integer in [min, max].
  Status GetUInt(const std::string& name, uint64_t min, uint64_t max, uint64_t* out) const;
  // A byte size: a number with an optional k, m, g or t suffix (powers of 1024).
  Status GetSize(const std::string& name, uint64_t* out) const;
  // A duration: a number with a unit ms, s, m, h, d or w (Postfix time units; no unit = seconds).
  Status GetDuration(const std::string& name, std::chrono::milliseconds* out) const;
  // One of the allowed words (case-insensitive); the result is the allowed spelling.
  Status GetEnum(const std::string& name, const std::vector<std::string>& allowed, std::string* out) const;
  // A list separated by commas and/or white space; empty items are dropped.
  Status GetList(const std::string& name, std::vector<std::string>* out) const;
  // An octal file mode such as 0660.
  Status GetMode(const std::string& name, unsigned* out) const;

  const std::string& source() const { return source_; }

 private:
  struct Value {
    std::string text;
    std::string where;  // "file:line" or "command line"
  };

  std::string source_ = "(defaults)";
  std::map<std::string, Value> values_;
};

// A duration as settings and command options write it: a number with a unit ms, s, m, h, d
// or w (Postfix time units, any case, blanks before the unit allowed; no unit = seconds).
// Config::GetDuration and `ccmailctl drain --timeout` both read durations with it. On
// failure the InvalidArgument message is what was expected ("a duration such as ...").
Status ParseDuration(const std::string& text, std::chrono::milliseconds* out);

}  // namespace ccmail
