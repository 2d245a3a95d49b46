// ccmail-exporter - thin main(): config, singleton lock, privilege drop, pid file, signals,
// recovery, then the run loop (or --drain: export everything pending and exit).
#include <signal.h>
#include <systemd/sd-daemon.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "ccmail/common/log.h"
#include "ccmail/common/privileges.h"
#include "ccmail/config/check.h"
#include "ccmail/config/config.h"
#include "ccmail/config/daemon.h"
#include "ccmail/exporter/exporter.h"
#include "ccmail/exporter/ledger_guard.h"
#include "ccmail/shm/claim_table.h"
#include "ccmail/store/ledger.h"

using namespace ccmail;
using namespace ccmail::exporter;

namespace {

constexpr const char* kProgram = "ccmail-exporter";

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

void InstallSignalHandlers() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2}) sigaction(sig, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

Status LoadExporterConfig(const daemon::DaemonOptions& options, bool whole_file, Config* cfg, ExporterOptions* opt) {
  CCMAIL_RETURN_IF_ERROR(daemon::LoadConfig(options, cfg));
  CCMAIL_RETURN_IF_ERROR(ExporterOptions::FromConfig(*cfg, opt));
  if (whole_file) return CheckWholeConfig(*cfg);
  return Status::Ok();
}

// As root: the runtime directory for the unprivileged user, then the drop, then the check
// that the directory is safe. -1: go on; otherwise the exit status.
int BecomeUnprivileged(const Config& cfg, const ExporterOptions& opt) {
  std::string user;
  (void)cfg.GetString("exporter_user", &user);
  // The runtime directory holds the claim table, live.lock and the init lock; as root,
  // create it (0750) for the unprivileged user before dropping privileges.
  if (Status s = EnsureOwnedDirectory(opt.paths.runtime_directory, user, "exporter_user"); !s.ok())
    LogWarning("runtime_directory: %s", s.ToString().c_str());
  if (Status s = DropPrivileges(user, "exporter_user"); !s.ok()) return daemon::Fatal(s);
  // A runtime_directory that others can write would let them plant or replace the claim
  // table and the lock files: refused, with its own exit status (a missing one is created
  // 0750 by Exporter::Open).
  if (Status s = shm::CheckRuntimeDirectory(opt.paths.runtime_directory); !s.ok() && !s.IsNotFound()) {
    daemon::Fatal(s);
    return kExitUnsafeRuntimeDirectory;
  }
  return -1;
}

// A shared (PostgreSQL) ledger that cannot be reached, at start or in a round: the daemon
// waits and tries again itself (a systemd restart every 2 s would only spin). SQLite errors
// keep their meaning (a local file that fails is an administrator's matter).
bool IsLedgerUnreachable(const ExporterOptions& opt, const Status& s) {
  return store::IsPostgresLocation(opt.ledger.location) && s.code() == Status::Code::kUnavailable &&
         s.message().find("ledger ") != std::string::npos;
}

// Waits before the next try: 1 s doubling to 60 s, in short steps so SIGTERM ends it soon.
// Logs when the ledger becomes unreachable and each minute of waiting, not every try.
class LedgerRetry {
 public:
  bool Wait(const Status& why) {
    if (!down_) LogWarning("shared ledger unreachable, retrying (milters keep capturing; nothing is lost): %s", why.ToString().c_str());
    down_ = true;
    for (auto waited = std::chrono::milliseconds(0); waited < delay_ && !g_stop; waited += std::chrono::milliseconds(100))
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    delay_ = std::min(delay_ * 2, std::chrono::milliseconds(60000));
    return !g_stop;
  }
  void Up() {
    if (down_) LogInfo("shared ledger reachable again");
    down_ = false;
    delay_ = std::chrono::milliseconds(1000);
  }

 private:
  bool down_ = false;
  std::chrono::milliseconds delay_{1000};
};

// -1: Exporter::Open succeeded; otherwise the exit status (0 when another exporter holds
// the lock).
int ExitStatusOfOpen(const Status& s) {
  if (s.code() == Status::Code::kBusy) {
    LogInfo("another exporter is running (lock held): %s", s.message().c_str());
    return 0;
  }
  if (IsLedgerRefusal(s)) {
    LogError("fatal: %s", s.message().c_str());
    return kExitLedgerRefused;
  }
  if (!s.ok()) return daemon::Fatal(s);
  return -1;
}

std::string CountersText(const ExporterCounters& c) {
  char text[200];
  std::snprintf(text, sizeof text, "%llu capture(s), %llu exported, %llu duplicate(s), %llu quarantined",
                static_cast<unsigned long long>(c.captures), static_cast<unsigned long long>(c.exported),
                static_cast<unsigned long long>(c.dups), static_cast<unsigned long long>(c.quarantined));
  return text;
}

int DrainAndExit(Exporter& ex) {
  Status s = ex.Drain();
  ExporterCounters c = ex.counters();
  if (!s.ok()) return daemon::Fatal("drain", s);
  LogInfo("drained: %s, %llu batch file(s)", CountersText(c).c_str(), static_cast<unsigned long long>(c.batches));
  return 0;
}

// Called by the run loop between rounds: the signals the handler noted, and the status
// line (and watchdog ping) for systemd once a second.
class Heartbeat {
 public:
  Heartbeat(Exporter& ex, const daemon::DaemonOptions& options) : ex_(ex), options_(options) {
    uint64_t usec = 0;
    watchdog_ = sd_watchdog_enabled(0, &usec) > 0;
  }

  void operator()() {
    if (g_reload.exchange(false)) Reload();
    if (g_status.exchange(false))
      LogInfo("status: epoch %llu, %s, backlog %llu", static_cast<unsigned long long>(ex_.epoch()),
              CountersText(ex_.counters()).c_str(), static_cast<unsigned long long>(ex_.backlog()));
    if (g_usr2.exchange(false)) daemon::LogUsr2Ignored(kProgram);
    auto now = std::chrono::steady_clock::now();
    if (now - last_status_ >= std::chrono::seconds(1)) {
      last_status_ = now;
      ExporterCounters c = ex_.counters();
      sd_notifyf(0, "STATUS=epoch %llu, exported %llu, duplicates %llu, quarantined %llu, backlog %llu%s",
                 static_cast<unsigned long long>(ex_.epoch()), static_cast<unsigned long long>(c.exported),
                 static_cast<unsigned long long>(c.dups), static_cast<unsigned long long>(c.quarantined),
                 static_cast<unsigned long long>(ex_.backlog()), watchdog_ ? "\nWATCHDOG=1" : "");
    }
  }

 private:
  void Reload() {
    daemon::ReloadConfig(
        [this] {
          Config fresh;
          ExporterOptions fresh_options;
          CCMAIL_RETURN_IF_ERROR(LoadExporterConfig(options_, false, &fresh, &fresh_options));
          ex_.Reload(fresh_options.format, fresh_options.address_map);
          return Status::Ok();
        },
        "reloaded " + options_.config_path + ": format settings and address map (other changes need a restart)");
  }

  Exporter& ex_;
  const daemon::DaemonOptions& options_;
  bool watchdog_ = false;
  std::chrono::steady_clock::time_point last_status_ = std::chrono::steady_clock::now();
};

// RunUntilStopped's answer when the shared ledger went away for good in a round: open again.
constexpr int kReopen = -2;

int RunUntilStopped(Exporter& ex, const daemon::DaemonOptions& options, const ExporterOptions& opt,
                    const std::string& pid_file) {
  Heartbeat heartbeat(ex, options);
  sd_notify(0, "READY=1");
  Status s = ex.Run(g_stop, std::ref(heartbeat));
  if (!s.ok() && !g_stop && IsLedgerUnreachable(opt, s)) {
    LogWarning("round stopped, the shared ledger is gone (%s): recovering once it is back", s.ToString().c_str());
    return kReopen;
  }
  sd_notify(0, "STOPPING=1");
  daemon::RemovePidFileIfConfigured(pid_file);
  ExporterCounters c = ex.counters();
  if (!s.ok() && s.code() == Status::Code::kBusy) {
    // Fenced: another exporter with this relay id bumped the epoch. It is the one that runs;
    // this one stops for good (exit 0: systemd must not restart it to fence the other back).
    LogError("fenced out by another exporter with the same relay id: %s", s.ToString().c_str());
    return 0;
  }
  if (!s.ok()) return daemon::Fatal(s);
  LogInfo("stopped: %s", CountersText(c).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ccmail-exporter: export captured mail to cc:Mail import files, exactly once"};
  daemon::DaemonOptions options;
  bool drain = false;
  daemon::AddDaemonOptions(app, &options);
  app.add_flag("--drain", drain, "run recovery, export everything pending, then exit 0");
  if (int rc = daemon::ParseCommandLine(app, argc, argv); rc >= 0) return rc;

  daemon::StartLogging(kProgram, options);
  Config cfg;
  ExporterOptions opt;
  if (Status s = LoadExporterConfig(options, options.check, &cfg, &opt); !s.ok()) return daemon::Fatal(s);
  if (options.check) return 0;
  std::string pid_file;
  (void)cfg.GetString("exporter_pid_file", &pid_file);
  if (int rc = BecomeUnprivileged(cfg, opt); rc >= 0) return rc;
  InstallSignalHandlers();

  LedgerRetry retry;
  bool pid_written = false;
  for (;;) {
    std::unique_ptr<Exporter> ex;
    Status open = Exporter::Open(opt, &ex);
    if (IsLedgerUnreachable(opt, open)) {
      if (!retry.Wait(open)) return 0;
      continue;
    }
    if (int rc = ExitStatusOfOpen(open); rc >= 0) return rc;
    if (!drain && !pid_written) daemon::WritePidFileIfConfigured(pid_file);
    pid_written = true;
    if (Status s = ex->Recover(); !s.ok()) {
      if (IsLedgerUnreachable(opt, s)) {
        ex.reset();
        if (!retry.Wait(s)) return 0;
        continue;
      }
      return daemon::Fatal("recovery", s);
    }
    retry.Up();
    LogInfo("exporter started: epoch %llu, %s ledger%s%s, spool %s, outbox %s",
            static_cast<unsigned long long>(ex->epoch()), ex->ledger_backend(),
            opt.ledger.relay_id.empty() ? "" : ", relay ", opt.ledger.relay_id.c_str(), opt.paths.spool_root.c_str(),
            opt.paths.outbox_directory.c_str());
    const int rc = drain ? DrainAndExit(*ex) : RunUntilStopped(*ex, options, opt, pid_file);
    if (rc != kReopen) return rc;
  }
}
