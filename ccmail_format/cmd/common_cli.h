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

// -c/--config and -o/--option, as both commands take them.
struct ConfigOptions {
  std::string config_path = kDefaultConfig;
  std::vector<std::string> overrides;
  CLI::Option* config_option = nullptr;  // counts whether -c was given

  bool config_given() const { return config_option != nullptr && config_option->count() > 0; }
};

// Registers -c and -o on app; override_help is the -o help text (each command's example).
inline void AddConfigOptions(CLI::App& app, ConfigOptions* options, const std::string& override_help) {
  options->config_option = app.add_option("-c,--config", options->config_path,
                                          "ccmail-bridge.conf to read (default " + std::string(kDefaultConfig) + " when it exists)");
  app.add_option("-o,--option", options->overrides, override_help)->allow_extra_args(false);
}

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

// Loads the config file (the default path only when it exists), applies the "name=value"
// overrides, builds the FormatSettings. Prints the error and returns false on failure.
inline bool LoadSettings(const ConfigOptions& options, Config* cfg, FormatSettings* fs, const char* prog) {
  Status s;
  if (options.config_given() || access(options.config_path.c_str(), F_OK) == 0) s = Config::Load(options.config_path, cfg);
  if (s.ok()) s = cfg->ApplyOverrides(options.overrides);
  if (s.ok()) s = LoadFormatSettings(*cfg, fs);
  if (!s.ok()) { std::fprintf(stderr, "%s: %s\n", prog, s.ToString().c_str()); return false; }
  return true;
}

}  // namespace ccmail::format::cli
