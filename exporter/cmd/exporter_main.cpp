// ccmail-exporter - thin main(): config, singleton lock, privilege drop, pid file, signals,
// recovery, then the run loop (or --drain: export everything pending and exit).
#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "ccmail/config/check.h"
#include "ccmail/common/log.h"
#include "ccmail/common/pid_file.h"
#include "ccmail/common/privileges.h"
#include "ccmail/config/config.h"
#include "ccmail/exporter/exporter.h"
#include "ccmail/exporter/ledger_guard.h"
#include "ccmail/shm/claim_table.h"

using namespace ccmail;
using namespace ccmail::exporter;

namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};
std::atomic<bool> g_status{false};
std::atomic<bool> g_usr2{false};

// Every signal an operator may send has a meaning (ccmail-exporter(8), SIGNALS); one left
// at its default (SIGUSR1, SIGUSR2) would kill the daemon without a log line.
void OnSignal(int sig) {
  if (sig == SIGHUP)
    g_reload = true;
  else if (sig == SIGUSR1)
    g_status = true;
  else if (sig == SIGUSR2)
    g_usr2 = true;
  else
    g_stop = true;
}

Status LoadConfig(const std::string& path, const std::vector<std::string>& overrides, Config* cfg) {
  CCMAIL_RETURN_IF_ERROR(Config::Load(path, cfg));
  CCMAIL_RETURN_IF_ERROR(cfg->ApplyOverrides(overrides));
  return cfg->ApplyLogLevel();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ccmail-exporter: export captured mail to cc:Mail import files, exactly once"};
  std::string config_path = "/etc/ccmail-bridge/ccmail-bridge.conf";
  std::vector<std::string> overrides;
  bool check = false, to_stderr = false, drain = false;
  app.add_option("-c,--config", config_path, "configuration file");
  app.add_option("-o", overrides, "override a setting: name=value (repeatable)");
  app.add_flag("--check", check, "check the configuration and the address map, then exit");
  app.add_flag("--stderr", to_stderr, "log to stderr instead of syslog");
  app.add_flag("--drain", drain, "run recovery, export everything pending, then exit 0");
  CLI11_PARSE(app, argc, argv);

  LogInit("ccmail-exporter", to_stderr || check ? LogTarget::kStderr : LogTarget::kSyslog);
  Config cfg;
  ExporterOptions opt;
  Status s = LoadConfig(config_path, overrides, &cfg);
  if (s.ok()) s = ExporterOptions::FromConfig(cfg, &opt);
  if (s.ok() && check) s = CheckWholeConfig(cfg);
  if (!s.ok()) {
    LogError("fatal: %s", s.ToString().c_str());
    return 1;
  }
  if (check) return 0;
  std::string user, pid_file;
  (void)cfg.GetString("exporter_user", &user);
  (void)cfg.GetString("exporter_pid_file", &pid_file);

  // The runtime directory holds the claim table, live.lock and the init lock; as root,
  // create it (0750) for the unprivileged user before dropping privileges.
  if (Status ds = EnsureOwnedDirectory(opt.paths.runtime_directory, user, "exporter_user"); !ds.ok())
    LogWarning("runtime_directory: %s", ds.ToString().c_str());
  if (s = DropPrivileges(user, "exporter_user"); !s.ok()) {
    LogError("fatal: %s", s.ToString().c_str());
    return 1;
  }
  // A runtime_directory that others can write would let them plant or replace the claim
  // table and the lock files: refused, with its own exit status (a missing one is created
  // 0750 by Exporter::Open).
  if (Status ds = shm::CheckRuntimeDirectory(opt.paths.runtime_directory); !ds.ok() && !ds.IsNotFound()) {
    LogError("fatal: %s", ds.ToString().c_str());
    return kExitUnsafeRuntimeDirectory;
  }

  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2}) sigaction(sig, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::unique_ptr<Exporter> ex;
  s = Exporter::Open(opt, &ex);
  if (s.code() == Status::Code::kBusy) {
    LogInfo("another exporter is running (lock held): %s", s.message().c_str());
    return 0;
  }
  if (IsLedgerRefusal(s)) {
    LogError("fatal: %s", s.message().c_str());
    return kExitLedgerRefused;
  }
  if (!s.ok()) {
    LogError("fatal: %s", s.ToString().c_str());
    return 1;
  }
  if (!drain && !pid_file.empty()) {
    if (Status ps = WritePidFile(pid_file); !ps.ok()) LogWarning("no pid file: %s", ps.ToString().c_str());
  }
  if (s = ex->Recover(); !s.ok()) {
    LogError("fatal: recovery: %s", s.ToString().c_str());
    return 1;
  }
  LogInfo("exporter started: epoch %llu, spool %s, outbox %s", static_cast<unsigned long long>(ex->epoch()),
          opt.paths.spool_root.c_str(), opt.paths.outbox_directory.c_str());

  if (drain) {
    s = ex->Drain();
    ExporterCounters c = ex->counters();
    if (!s.ok()) {
      LogError("fatal: drain: %s", s.ToString().c_str());
      return 1;
    }
    LogInfo("drained: %llu capture(s), %llu exported, %llu duplicate(s), %llu quarantined, %llu batch file(s)",
            static_cast<unsigned long long>(c.captures), static_cast<unsigned long long>(c.exported),
            static_cast<unsigned long long>(c.dups), static_cast<unsigned long long>(c.quarantined),
            static_cast<unsigned long long>(c.batches));
    return 0;
  }

  uint64_t usec = 0;
  const bool watchdog = sd_watchdog_enabled(0, &usec) > 0;
  sd_notify(0, "READY=1");
  auto last_status = std::chrono::steady_clock::now();
  auto heartbeat = [&] {
    if (g_reload.exchange(false)) {
      sd_notify(0, "RELOADING=1");
      Config fresh;
      ExporterOptions fo;
      Status rs = LoadConfig(config_path, overrides, &fresh);
      if (rs.ok()) rs = ExporterOptions::FromConfig(fresh, &fo);
      if (rs.ok()) {
        ex->Reload(fo.format, fo.address_map);
        LogInfo("reloaded %s: format settings and address map (other changes need a restart)", config_path.c_str());
      } else {
        LogError("reload failed, keeping the running configuration: %s", rs.ToString().c_str());
      }
      sd_notify(0, "READY=1");
    }
    if (g_status.exchange(false)) {
      ExporterCounters c = ex->counters();
      LogInfo("status: epoch %llu, %llu capture(s), %llu exported, %llu duplicate(s), %llu quarantined, backlog %llu",
              static_cast<unsigned long long>(ex->epoch()), static_cast<unsigned long long>(c.captures),
              static_cast<unsigned long long>(c.exported), static_cast<unsigned long long>(c.dups),
              static_cast<unsigned long long>(c.quarantined), static_cast<unsigned long long>(ex->backlog()));
    }
    if (g_usr2.exchange(false))
      LogInfo("SIGUSR2 has no meaning for ccmail-exporter; ignored (SIGHUP reloads, SIGUSR1 logs a status line)");
    auto now = std::chrono::steady_clock::now();
    if (now - last_status >= std::chrono::seconds(1)) {
      last_status = now;
      ExporterCounters c = ex->counters();
      sd_notifyf(0, "STATUS=epoch %llu, exported %llu, duplicates %llu, quarantined %llu, backlog %llu%s",
                 static_cast<unsigned long long>(ex->epoch()), static_cast<unsigned long long>(c.exported),
                 static_cast<unsigned long long>(c.dups), static_cast<unsigned long long>(c.quarantined),
                 static_cast<unsigned long long>(ex->backlog()), watchdog ? "\nWATCHDOG=1" : "");
    }
  };
  s = ex->Run(g_stop, heartbeat);
  sd_notify(0, "STOPPING=1");
  if (!pid_file.empty()) RemoveOwnPidFile(pid_file);
  ExporterCounters c = ex->counters();
  if (!s.ok()) {
    LogError("fatal: %s", s.ToString().c_str());
    return 1;
  }
  LogInfo("stopped: %llu capture(s), %llu exported, %llu duplicate(s), %llu quarantined",
          static_cast<unsigned long long>(c.captures), static_cast<unsigned long long>(c.exported),
          static_cast<unsigned long long>(c.dups), static_cast<unsigned long long>(c.quarantined));
  return 0;
}
