// common_cli.h - what ccmail-convert and ccmail-lint share: the config file plus -o overrides.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "ccmail/config/config.h"
#include "ccmail/format/settings.h"

namespace ccmail::format::cli {

inline constexpr const char* kDefaultConfig = "/etc/ccmail-bridge/ccmail-bridge.conf";

inline constexpr int kUsageExit = 2;  // both commands document 2 for usage errors

// Parses the command line. -1: go on; otherwise the exit status: 0 after --help, kUsageExit
// after a usage error (CLI11's own codes, 106, 109..., are not the documented ones).
inline int ParseOrUsageError(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    (void)app.exit(e);  // prints the message and the usage hint
    return kUsageExit;
  }
  return -1;
}

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
