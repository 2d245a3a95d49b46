// ccmail-milter - thin main(): config, socket, privilege drop, pid file, signals, run.
#include <pthread.h>
#include <signal.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <thread>

#include "ccmail/common/log.h"
#include "ccmail/common/privileges.h"
#include "ccmail/config/check.h"
#include "ccmail/config/config.h"
#include "ccmail/config/daemon.h"
#include "ccmail/format/address_map.h"
#include "ccmail/milter/listen_socket.h"
#include "ccmail/milter/milter.h"
#include "ccmail/milter/settings.h"
#include "ccmail/milter/spool_sink.h"

using namespace ccmail;
using namespace ccmail::milter;

namespace {

constexpr const char* kProgram = "ccmail-milter";

// What the configuration gives the milter: its own settings, the routing policy, the spool.
struct MilterConfig {
  MilterSettings settings;
  std::shared_ptr<const Policy> policy;
  SpoolSinkOptions sink;
};

Status LoadMilterConfig(const daemon::DaemonOptions& options, bool whole_file, MilterConfig* out) {
  Config cfg;
  CCMAIL_RETURN_IF_ERROR(daemon::LoadConfig(options, &cfg));
  if (whole_file) CCMAIL_RETURN_IF_ERROR(CheckWholeConfig(cfg));
  MilterSettings& ms = out->settings;
  CCMAIL_RETURN_IF_ERROR(MilterSettings::FromConfig(cfg, &ms));
  CCMAIL_RETURN_IF_ERROR(SpoolSinkOptions::FromConfig(cfg, &out->sink));
  std::shared_ptr<const format::AddressMap> map;
  CCMAIL_RETURN_IF_ERROR(format::AddressMap::LoadFromConfig(cfg, &map));
  out->policy = std::make_shared<const Policy>(Policy{Router(map, ms.reject_unknown), ms.mode, ms.limits, ms.admission});
  return Status::Ok();
}

// Signals: blocked in every thread; this main thread takes them with sigtimedwait.
// libmilter's own signal thread would turn SIGHUP into a stop; Linux delivers a
// process-directed signal to the main thread first when it is waiting for it.
// Every signal an operator may send has a meaning (ccmail-milter(8), SIGNALS); one left
// at its default would kill the daemon without a log line.
sigset_t BlockOperatorSignals() {
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int sig : {SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGPIPE}) sigaddset(&sigs, sig);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  return sigs;
}

// As root: the socket and the runtime directory; then the privilege drop, and the pid file
// and the spool as the unprivileged user. -1: go on; otherwise the exit status.
int BecomeService(const MilterConfig& mc, MilterService* svc, ListenSocket* listen_socket,
                  std::unique_ptr<SpoolCaptureSink>* sink) {
  if (Status s = svc->BindSocket(mc.settings, listen_socket); !s.ok()) return daemon::Fatal(s);
  if (Status s = EnsureOwnedDirectory(mc.sink.table.runtime_directory, mc.settings.user, "milter_user"); !s.ok())
    return daemon::Fatal(s);
  if (Status s = DropPrivileges(mc.settings.user, "milter_user"); !s.ok()) {
    daemon::Fatal(s);
    listen_socket->RemoveIfOurs();
    return daemon::kExitFatal;
  }
  // After the drop: a link planted where the pid file goes can never make root write.
  daemon::WritePidFileIfConfigured(mc.settings.pid_file);
  // Opened as the unprivileged user, so every spool file, the claim table and its
  // lock files belong to it. A missing claim table is not fatal (tempfail, retried).
  if (Status s = SpoolCaptureSink::Open(mc.sink, sink); !s.ok()) return daemon::Fatal("spool", s);
  svc->set_sink(sink->get());
  return -1;
}

void StopGracefully(MilterService& svc, ListenSocket& listen_socket) {
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
  LogInfo("stopping: 451 4.3.2 for new messages, finishing %d message(s) in flight", svc.in_flight.load());
  svc.BeginDrain();
  if (!svc.DrainInFlight(std::chrono::seconds(30))) LogWarning("stopping with messages still in flight after 30 s");
  // The end-of-message reply is written by the session thread right after the
  // callback that ended the message returned; give it that moment.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  svc.Stop();
}

// Takes the operator's signals on this thread until SIGTERM/SIGINT or until Run() ends.
void ServeSignals(sigset_t sigs, const daemon::DaemonOptions& options, MilterService& svc,
                  ListenSocket& listen_socket, const std::atomic<bool>& run_ended) {
  sigdelset(&sigs, SIGPIPE);
  struct timespec tick{0, 200 * 1000 * 1000};
  const std::string reloaded = "reloaded " + options.config_path + " (socket, user and spool changes need a restart)";
  while (!run_ended) {
    int sig = sigtimedwait(&sigs, nullptr, &tick);
    if (sig == SIGHUP) {
      daemon::ReloadConfig(
          [&] {
            MilterConfig fresh;
            CCMAIL_RETURN_IF_ERROR(LoadMilterConfig(options, false, &fresh));
            svc.SetPolicy(fresh.policy);
            return Status::Ok();
          },
          reloaded);
    } else if (sig == SIGUSR1) {
      LogInfo("status: %d message(s) in flight, %llu captured since start, %s", svc.in_flight.load(),
              static_cast<unsigned long long>(svc.captured.load()), svc.draining() ? "stopping" : "running");
    } else if (sig == SIGUSR2) {
      daemon::LogUsr2Ignored(kProgram);
    } else if (sig == SIGTERM || sig == SIGINT) {
      StopGracefully(svc, listen_socket);
      return;
    }
  }
}

int ExitAfterRun(const MilterService& svc, ListenSocket& listen_socket, const MilterConfig& mc,
                 const SpoolCaptureSink& sink, const Status& run_status) {
  // Only what is still ours: a successor may already have its socket and pid file there.
  listen_socket.RemoveIfOurs();
  daemon::RemovePidFileIfConfigured(mc.settings.pid_file);
  if (svc.in_flight.load() > 0) {
    // A libmilter session thread may still be inside the service and the sink: exit
    // without running destructors under it. Nothing in flight was acknowledged (the MTA
    // tempfails it); its tmp file is removed by the exporter's janitor.
    LogWarning("exiting with %d message(s) still in flight; they were not acknowledged", svc.in_flight.load());
    std::fflush(nullptr);
    _exit(run_status.ok() ? 0 : daemon::kExitFatal);
  }
  if (!run_status.ok()) return daemon::Fatal(run_status);
  LogInfo("stopped after %llu capture(s), %llu without a claim-table slot",
          static_cast<unsigned long long>(svc.captured.load()),
          static_cast<unsigned long long>(sink.counters().unpublished));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ccmail-milter: capture mail for cc:Mail users (libmilter filter)"};
  daemon::DaemonOptions options;
  daemon::AddDaemonOptions(app, &options);
  if (int rc = daemon::ParseCommandLine(app, argc, argv); rc >= 0) return rc;

  daemon::StartLogging(kProgram, options);
  MilterConfig mc;
  if (Status s = LoadMilterConfig(options, options.check, &mc); !s.ok()) return daemon::Fatal(s);
  if (options.check) return 0;

  sigset_t sigs = BlockOperatorSignals();
  MilterService svc(nullptr, mc.policy);
  ListenSocket listen_socket;
  std::unique_ptr<SpoolCaptureSink> sink;
  if (int rc = BecomeService(mc, &svc, &listen_socket, &sink); rc >= 0) return rc;

  std::atomic<bool> run_ended{false};
  Status run_status;
  std::thread runner([&] {
    run_status = svc.Run();
    run_ended = true;
  });
  LogInfo("listening on %s, capture_mode=%s, spool %s, writer %s", listen_socket.Describe().c_str(),
          mc.settings.mode == CaptureMode::kCopy ? "copy" : "divert", mc.sink.spool_root.c_str(),
          sink->writer_tag().empty() ? "(claim table missing)" : sink->writer_tag().c_str());
  sd_notify(0, "READY=1");
  ServeSignals(sigs, options, svc, listen_socket, run_ended);
  runner.join();
  return ExitAfterRun(svc, listen_socket, mc, *sink, run_status);
}
