// daemon.h - the set-up ccmail-milter and ccmail-exporter share: the common options, the
// configuration load, logging, the pid file, the fatal-error and reload lines. Each main()
// keeps only what is its own (the socket and the spool for the milter, the ledger and the
// run loop for the exporter).
//
// SYNOPSIS
//   daemon::DaemonOptions options;
//   CLI::App app{"ccmail-exporter: ..."};
//   daemon::AddDaemonOptions(app, &options);
//   if (int rc = daemon::ParseCommandLine(app, argc, argv); rc >= 0) return rc;
//   daemon::StartLogging("ccmail-exporter", options);
//   Config cfg;
//   if (Status s = daemon::LoadConfig(options, &cfg); !s.ok()) return daemon::Fatal(s);
//
// The option names, their help texts, the exit statuses and the log lines are the ones
// ccmail-milter(8) and ccmail-exporter(8) document.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "ccmail/common/status.h"
#include "ccmail/config/config.h"

namespace ccmail::daemon {

inline constexpr const char* kDefaultConfigPath = "/etc/ccmail-bridge/ccmail-bridge.conf";
inline constexpr int kExitFatal = 1;

struct DaemonOptions {
  std::string config_path = kDefaultConfigPath;  // -c, --config
  std::vector<std::string> overrides;            // -o name=value, applied after the file
  bool check = false;                            // --check: check the configuration, exit
  bool to_stderr = false;                        // --stderr: log to stderr, not syslog
};

// Registers -c/--config, -o, --check and --stderr on `app`, writing into *options.
void AddDaemonOptions(CLI::App& app, DaemonOptions* options);

// Parses the command line. -1: go on; otherwise the status main() returns: 0 after --help,
// CLI11's own code after a usage error (as CLI11_PARSE, which the man pages describe).
int ParseCommandLine(CLI::App& app, int argc, char** argv);

// Logs as `program` to stderr with --stderr or --check (a check is run by hand), else to syslog.
void StartLogging(const std::string& program, const DaemonOptions& options);

// Reads options.config_path, applies the -o overrides, then the file's log_level.
Status LoadConfig(const DaemonOptions& options, Config* config);

// Logs "fatal: [context: ]<status>" and returns kExitFatal, for `return Fatal(s);`.
int Fatal(const Status& status);
int Fatal(const char* context, const Status& status);

// The pid file is optional (empty path: none). A write failure is a warning: the daemon
// serves mail without one. Call after the privilege drop.
void WritePidFileIfConfigured(const std::string& path);
// Removes the pid file only when it is still this process's (a successor's stays).
void RemovePidFileIfConfigured(const std::string& path);

// SIGHUP: tells systemd (RELOADING=1, then READY=1) around `reload`, logs `done_line` when
// it succeeds, or the failure and that the running configuration stays.
void ReloadConfig(const std::function<Status()>& reload, const std::string& done_line);

// SIGUSR2 means nothing to either daemon; it is logged instead of killing the process.
void LogUsr2Ignored(const std::string& program);

}  // namespace ccmail::daemon
