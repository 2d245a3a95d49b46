// ccmail-submitter - thin main(): config, privilege drop, pid file, signals, then the rounds of
// the way back (cc:Mail EXPORT files -> the MTA), or --drain: submit what is there and exit.
#include <signal.h>
#include <systemd/sd-daemon.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>

#include "ccmail/common/log.h"
#include "ccmail/common/privileges.h"
#include "ccmail/config/check.h"
#include "ccmail/config/config.h"
#include "ccmail/config/daemon.h"
#include "ccmail/format/address_map.h"
#include "ccmail/submitter/engine.h"
#include "ccmail/submitter/to_mime.h"

using namespace ccmail;
using namespace ccmail::submitter;

namespace {

constexpr const char* kProgram = "ccmail-submitter";

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};
std::atomic<bool> g_status{false};
std::atomic<bool> g_usr2{false};

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

// What the conversion reads; SIGHUP swaps it whole (the rounds' thread takes a copy per message).
class Conversion {
 public:
  Status Load(const Config& cfg) {
    auto rs = std::make_shared<ReverseSettings>();
    CCMAIL_RETURN_IF_ERROR(LoadReverseSettings(cfg, rs.get()));
    std::shared_ptr<const format::AddressMap> map;
    CCMAIL_RETURN_IF_ERROR(format::AddressMap::LoadFromConfig(cfg, &map));
    std::lock_guard<std::mutex> g(mu_);
    settings_ = std::move(rs);
    map_ = std::move(map);
    return Status::Ok();
  }

  // The engine's ConvertFunction over ConvertExportMessage (to_mime.h).
  Status Convert(const format::ImportMessage& m, std::string_view post_office, Submission* out,
                 SubmissionRefusal* refusal) const {
    std::shared_ptr<const ReverseSettings> rs;
    std::shared_ptr<const format::AddressMap> map;
    {
      std::lock_guard<std::mutex> g(mu_);
      rs = settings_;
      map = map_;
    }
    OutgoingMessage o;
    Refusal r;
    CCMAIL_RETURN_IF_ERROR(ConvertExportMessage(m, post_office, *map, *rs, &o, &r));
    if (!r.reason.empty()) {
      refusal->reason = std::move(r.reason);
      refusal->author_address = std::move(r.author_address);
      return Status::Ok();
    }
    out->envelope_from = std::move(o.envelope_from);
    out->recipients = std::move(o.recipients);
    out->message_id = std::move(o.message_id);
    out->mime = std::move(o.mime);
    return Status::Ok();
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const ReverseSettings> settings_;
  std::shared_ptr<const format::AddressMap> map_;
};

Status LoadSubmitterConfig(const daemon::DaemonOptions& options, bool whole_file, Config* cfg,
                           SubmitterOptions* opt, Conversion* conversion) {
  CCMAIL_RETURN_IF_ERROR(daemon::LoadConfig(options, cfg));
  CCMAIL_RETURN_IF_ERROR(SubmitterOptions::FromConfig(*cfg, opt));
  CCMAIL_RETURN_IF_ERROR(conversion->Load(*cfg));
  if (whole_file) return CheckWholeConfig(*cfg);
  return Status::Ok();
}

std::string CountersText(const SubmitterMetrics& m) {
  char text[300];
  std::snprintf(text, sizeof text,
                "%llu file(s) taken, %llu sent, %llu partial, %llu refused, %llu quarantined, %llu in doubt "
                "resubmitted, %llu notice(s) pending",
                static_cast<unsigned long long>(m.files_taken), static_cast<unsigned long long>(m.messages_sent),
                static_cast<unsigned long long>(m.partial), static_cast<unsigned long long>(m.refused),
                static_cast<unsigned long long>(m.quarantined), static_cast<unsigned long long>(m.in_doubt_resubmitted),
                static_cast<unsigned long long>(m.notices_pending));
  return text;
}

// Between rounds: the signals the handler noted, and the status line (and watchdog ping)
// for systemd once a second.
class Heartbeat {
 public:
  Heartbeat(Submitter& sub, Conversion& conversion, const daemon::DaemonOptions& options)
      : sub_(sub), conversion_(conversion), options_(options) {
    uint64_t usec = 0;
    watchdog_ = sd_watchdog_enabled(0, &usec) > 0;
  }

  void operator()() {
    if (g_reload.exchange(false))
      daemon::ReloadConfig(
          [this] {
            Config fresh;
            CCMAIL_RETURN_IF_ERROR(daemon::LoadConfig(options_, &fresh));
            return conversion_.Load(fresh);
          },
          "reloaded " + options_.config_path + ": address map and conversion settings (other changes need a restart)");
    if (g_status.exchange(false)) LogInfo("status: %s", CountersText(sub_.metrics()).c_str());
    if (g_usr2.exchange(false)) daemon::LogUsr2Ignored(kProgram);
    auto now = std::chrono::steady_clock::now();
    if (now - last_status_ >= std::chrono::seconds(1)) {
      last_status_ = now;
      SubmitterMetrics m = sub_.metrics();
      sd_notifyf(0, "STATUS=sent %llu, refused %llu, quarantined %llu, open files %llu, in doubt resubmitted %llu%s",
                 static_cast<unsigned long long>(m.messages_sent), static_cast<unsigned long long>(m.refused),
                 static_cast<unsigned long long>(m.quarantined), static_cast<unsigned long long>(m.files_open),
                 static_cast<unsigned long long>(m.in_doubt_resubmitted), watchdog_ ? "\nWATCHDOG=1" : "");
    }
  }

 private:
  Submitter& sub_;
  Conversion& conversion_;
  const daemon::DaemonOptions& options_;
  bool watchdog_ = false;
  std::chrono::steady_clock::time_point last_status_ = std::chrono::steady_clock::now();
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ccmail-submitter: send cc:Mail EXPORT files to the MTA, exactly once"};
  daemon::DaemonOptions options;
  bool drain = false;
  daemon::AddDaemonOptions(app, &options);
  app.add_flag("--drain", drain, "take and submit everything in the inbox, wait for what is deferred, then exit 0");
  if (int rc = daemon::ParseCommandLine(app, argc, argv); rc >= 0) return rc;

  daemon::StartLogging(kProgram, options);
  Config cfg;
  SubmitterOptions opt;
  Conversion conversion;
  if (Status s = LoadSubmitterConfig(options, options.check, &cfg, &opt, &conversion); !s.ok())
    return daemon::Fatal(s);
  if (options.check) return 0;
  std::string pid_file, user;
  (void)cfg.GetString("submitter_pid_file", &pid_file);
  (void)cfg.GetString("submitter_user", &user);
  if (Status s = DropPrivileges(user, "submitter_user"); !s.ok()) return daemon::Fatal(s);
  InstallSignalHandlers();

  opt.convert = [&conversion](const format::ImportMessage& m, std::string_view po, Submission* out,
                              SubmissionRefusal* refusal) { return conversion.Convert(m, po, out, refusal); };
  std::unique_ptr<Submitter> sub;
  Status s = Submitter::Open(opt, &sub);
  if (s.code() == Status::Code::kBusy) {
    LogInfo("another submitter is running: %s", s.message().c_str());
    return 0;
  }
  if (!s.ok()) return daemon::Fatal(s);
  LogInfo("submitter started: inbox %s, state %s, relay %s%s", opt.inbox_directory.c_str(), opt.state_dir.c_str(),
          opt.relay.ToString().c_str(), opt.export_command.empty() ? "" : ", export_command set");
  if (drain) {
    // A day is "until done" for an operator; deferred files are retried as their back-off allows.
    s = sub->Drain(std::chrono::hours(24));
    if (!s.ok()) return daemon::Fatal("drain", s);
    LogInfo("drained: %s", CountersText(sub->metrics()).c_str());
    return 0;
  }
  daemon::WritePidFileIfConfigured(pid_file);
  Heartbeat heartbeat(*sub, conversion, options);
  sd_notify(0, "READY=1");
  s = sub->Run(g_stop, std::ref(heartbeat));
  sd_notify(0, "STOPPING=1");
  daemon::RemovePidFileIfConfigured(pid_file);
  if (!s.ok()) return daemon::Fatal(s);
  LogInfo("stopped: %s", CountersText(sub->metrics()).c_str());
  return 0;
}
