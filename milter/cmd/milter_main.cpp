// ccmail-milter - thin main(): config, socket, privilege drop, pid file, signals, run.
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

#include "ccmail/common/log.h"
#include "ccmail/common/pid_file.h"
#include "ccmail/common/privileges.h"
#include "ccmail/config/check.h"
#include "ccmail/config/config.h"
#include "ccmail/format/address_map.h"
#include "ccmail/milter/listen_socket.h"
#include "ccmail/milter/milter.h"
#include "ccmail/milter/settings.h"
#include "ccmail/milter/spool_sink.h"

using namespace ccmail;
using namespace ccmail::milter;

namespace {

Status LoadAll(const std::string& path, const std::vector<std::string>& overrides, bool whole_file, MilterSettings* ms,
               std::shared_ptr<const Policy>* policy, SpoolSinkOptions* sink_opt) {
  Config cfg;
  CCMAIL_RETURN_IF_ERROR(Config::Load(path, &cfg));
  CCMAIL_RETURN_IF_ERROR(cfg.ApplyOverrides(overrides));
  CCMAIL_RETURN_IF_ERROR(cfg.ApplyLogLevel());
  if (whole_file) CCMAIL_RETURN_IF_ERROR(CheckWholeConfig(cfg));
  CCMAIL_RETURN_IF_ERROR(MilterSettings::FromConfig(cfg, ms));
  CCMAIL_RETURN_IF_ERROR(SpoolSinkOptions::FromConfig(cfg, sink_opt));
  std::shared_ptr<const format::AddressMap> map;
  CCMAIL_RETURN_IF_ERROR(format::AddressMap::LoadFromConfig(cfg, &map));
  *policy = std::make_shared<const Policy>(Policy{Router(map, ms->reject_unknown), ms->mode, ms->limits, ms->admission});
  return Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ccmail-milter: capture mail for cc:Mail users (libmilter filter)"};
  std::string config_path = "/etc/ccmail-bridge/ccmail-bridge.conf";
  std::vector<std::string> overrides;
  bool check = false, to_stderr = false;
  app.add_option("-c,--config", config_path, "configuration file");
  app.add_option("-o", overrides, "override a setting: name=value (repeatable)");
  app.add_flag("--check", check, "check the configuration and the address map, then exit");
  app.add_flag("--stderr", to_stderr, "log to stderr instead of syslog");
  CLI11_PARSE(app, argc, argv);

  LogInit("ccmail-milter", to_stderr || check ? LogTarget::kStderr : LogTarget::kSyslog);
  MilterSettings ms;
  std::shared_ptr<const Policy> policy;
  SpoolSinkOptions sink_opt;
  if (Status s = LoadAll(config_path, overrides, check, &ms, &policy, &sink_opt); !s.ok()) {
    LogError("fatal: %s", s.ToString().c_str());
    return 1;
  }
  if (check) return 0;

  // Signals: blocked in every thread; this main thread takes them with sigtimedwait.
  // libmilter's own signal thread would turn SIGHUP into a stop; Linux delivers a
  // process-directed signal to the main thread first when it is waiting for it.
  // Every signal an operator may send has a meaning (ccmail-milter(8), SIGNALS); one left
  // at its default would kill the daemon without a log line.
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int sig : {SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGPIPE}) sigaddset(&sigs, sig);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  MilterService svc(nullptr, policy);
  ListenSocket listen_socket;
  if (Status s = svc.BindSocket(ms, &listen_socket); !s.ok()) {
    LogError("fatal: %s", s.ToString().c_str());
    return 1;
  }
  if (Status s = EnsureOwnedDirectory(sink_opt.table.runtime_directory, ms.user, "milter_user"); !s.ok()) {
    LogError("fatal: %s", s.ToString().c_str());
    return 1;
  }
  if (Status s = DropPrivileges(ms.user, "milter_user"); !s.ok()) {
    LogError("fatal: %s", s.ToString().c_str());
    listen_socket.RemoveIfOurs();
    return 1;
  }
  // After the drop: a link planted where the pid file goes can never make root write.
  if (!ms.pid_file.empty()) {
    if (Status s = WritePidFile(ms.pid_file); !s.ok()) LogWarning("no pid file: %s", s.ToString().c_str());
  }
  // Opened as the unprivileged user, so every spool file, the claim table and its
  // lock files belong to it. A missing claim table is not fatal (tempfail, retried).
  std::unique_ptr<SpoolCaptureSink> sink;
  if (Status s = SpoolCaptureSink::Open(sink_opt, &sink); !s.ok()) {
    LogError("fatal: spool: %s", s.ToString().c_str());
    return 1;
  }
  svc.set_sink(sink.get());

  std::atomic<bool> done{false};
  Status run_status;
  std::thread runner([&] {
    run_status = svc.Run();
    done = true;
  });
  LogInfo("listening on %s, capture_mode=%s, spool %s, writer %s", listen_socket.Describe().c_str(),
          ms.mode == CaptureMode::kCopy ? "copy" : "divert", sink_opt.spool_root.c_str(),
          sink->writer_tag().empty() ? "(claim table missing)" : sink->writer_tag().c_str());
  sd_notify(0, "READY=1");
  sigdelset(&sigs, SIGPIPE);
  struct timespec tick{0, 200 * 1000 * 1000};
  while (!done) {
    int sig = sigtimedwait(&sigs, nullptr, &tick);
    if (sig == SIGHUP) {
      sd_notify(0, "RELOADING=1");
      MilterSettings fresh;
      std::shared_ptr<const Policy> np;
      SpoolSinkOptions fresh_sink;
      Status s = LoadAll(config_path, overrides, false, &fresh, &np, &fresh_sink);
      if (s.ok()) {
        svc.SetPolicy(np);
        LogInfo("reloaded %s (socket, user and spool changes need a restart)", config_path.c_str());
      } else {
        LogError("reload failed, keeping the running configuration: %s", s.ToString().c_str());
      }
      sd_notify(0, "READY=1");
    } else if (sig == SIGUSR1) {
      LogInfo("status: %d message(s) in flight, %llu captured since start, %s", svc.in_flight.load(),
              static_cast<unsigned long long>(svc.captured.load()), svc.draining() ? "stopping" : "running");
    } else if (sig == SIGUSR2) {
      LogInfo("SIGUSR2 has no meaning for ccmail-milter; ignored (SIGHUP reloads, SIGUSR1 logs a status line)");
    } else if (sig == SIGTERM || sig == SIGINT) {
      sd_notify(0, "STOPPING=1");
      if (listen_socket.inherited()) {
        // The socket outlives this process (systemd holds it; a successor takes it over):
        // new MTA connections wait in its backlog for the successor instead of getting a
        // 451 here. Connections already open are served normally until they close.
        if (Status s = listen_socket.StopAccepting(); !s.ok())
          LogWarning("stopping: cannot hand the socket back: %s", s.ToString().c_str());
        // A connection accepted just before the swap has no Connection object until its
        // option negotiation; let it arrive so that it is counted.
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        LogInfo("stopping: no new connections (they wait for the successor), serving %d open connection(s)",
                svc.connections.load());
        if (!svc.WaitConnectionsClosed(std::chrono::seconds(20)))
          LogWarning("stopping: %d connection(s) still open after 20 s; 451 4.3.2 for their new messages",
                     svc.connections.load());
      }
      LogInfo("stopping: 451 4.3.2 for new messages, finishing %d message(s) in flight",
              svc.in_flight.load());
      svc.BeginDrain();
      if (!svc.DrainInFlight(std::chrono::seconds(30))) LogWarning("stopping with messages still in flight after 30 s");
      // The end-of-message reply is written by the session thread right after the
      // callback that ended the message returned; give it that moment.
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      svc.Stop();
      break;
    }
  }
  runner.join();
  // Only what is still ours: a successor may already have its socket and pid file there.
  listen_socket.RemoveIfOurs();
  if (!ms.pid_file.empty()) RemoveOwnPidFile(ms.pid_file);
  if (svc.in_flight.load() > 0) {
    // A libmilter session thread may still be inside the service and the sink: exit
    // without running destructors under it. Nothing in flight was acknowledged (the MTA
    // tempfails it); its tmp file is removed by the exporter's janitor.
    LogWarning("exiting with %d message(s) still in flight; they were not acknowledged", svc.in_flight.load());
    std::fflush(nullptr);
    _exit(run_status.ok() ? 0 : 1);
  }
  if (!run_status.ok()) {
    LogError("fatal: %s", run_status.ToString().c_str());
    return 1;
  }
  SpoolSinkCounters c = sink->counters();
  LogInfo("stopped after %llu capture(s), %llu without a claim-table slot",
          static_cast<unsigned long long>(svc.captured.load()), static_cast<unsigned long long>(c.unpublished));
  return 0;
}
