// daemon.cpp - see daemon.h.
#include "ccmail/config/daemon.h"

#include <systemd/sd-daemon.h>

#include "ccmail/common/log.h"
#include "ccmail/common/pid_file.h"

namespace ccmail::daemon {

void AddDaemonOptions(CLI::App& app, DaemonOptions* options) {
  app.add_option("-c,--config", options->config_path, "configuration file");
  app.add_option("-o", options->overrides, "override a setting: name=value (repeatable)");
  app.add_flag("--check", options->check, "check the configuration and the address map, then exit");
  app.add_flag("--stderr", options->to_stderr, "log to stderr instead of syslog");
}

int ParseCommandLine(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return -1;
}

void StartLogging(const std::string& program, const DaemonOptions& options) {
  LogInit(program, options.to_stderr || options.check ? LogTarget::kStderr : LogTarget::kSyslog);
}

Status LoadConfig(const DaemonOptions& options, Config* config) {
  CCMAIL_RETURN_IF_ERROR(Config::Load(options.config_path, config));
  CCMAIL_RETURN_IF_ERROR(config->ApplyOverrides(options.overrides));
  return config->ApplyLogLevel();
}

int Fatal(const Status& status) {
  LogError("fatal: %s", status.ToString().c_str());
  return kExitFatal;
}

int Fatal(const char* context, const Status& status) {
  LogError("fatal: %s: %s", context, status.ToString().c_str());
  return kExitFatal;
}

void WritePidFileIfConfigured(const std::string& path) {
  if (path.empty()) return;
  if (Status s = WritePidFile(path); !s.ok()) LogWarning("no pid file: %s", s.ToString().c_str());
}

void RemovePidFileIfConfigured(const std::string& path) {
  if (!path.empty()) RemoveOwnPidFile(path);
}

void ReloadConfig(const std::function<Status()>& reload, const std::string& done_line) {
  sd_notify(0, "RELOADING=1");
  if (Status s = reload(); s.ok())
    LogInfo("%s", done_line.c_str());
  else
    LogError("reload failed, keeping the running configuration: %s", s.ToString().c_str());
  sd_notify(0, "READY=1");
}

void LogUsr2Ignored(const std::string& program) {
  LogInfo("SIGUSR2 has no meaning for %s; ignored (SIGHUP reloads, SIGUSR1 logs a status line)", program.c_str());
}

}  // namespace ccmail::daemon
