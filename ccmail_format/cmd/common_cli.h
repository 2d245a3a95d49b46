// common_cli.h - what ccmail-convert and ccmail-lint share: the config file plus -o overrides.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "ccmail/config/config.h"
#include "ccmail/format/settings.h"

namespace ccmail::format::cli {

inline constexpr const char* kDefaultConfig = "/etc/ccmail-bridge/ccmail-bridge.conf";

// Loads config_path (the default path only when it exists), applies "name=value"
// overrides, builds the FormatSettings. Prints the error and returns false on failure.
inline bool LoadSettings(const std::string& config_path, bool explicit_path, const std::vector<std::string>& overrides,
                         Config* cfg, FormatSettings* fs, const char* prog) {
  Status s;
  if (explicit_path || access(config_path.c_str(), F_OK) == 0) s = Config::Load(config_path, cfg);
  if (!s.ok()) { std::fprintf(stderr, "%s: %s\n", prog, s.ToString().c_str()); return false; }
  s = cfg->ApplyOverrides(overrides);
  if (!s.ok()) { std::fprintf(stderr, "%s: %s\n", prog, s.ToString().c_str()); return false; }
  s = LoadFormatSettings(*cfg, fs);
  if (!s.ok()) { std::fprintf(stderr, "%s: %s\n", prog, s.ToString().c_str()); return false; }
  return true;
}

}  // namespace ccmail::format::cli
