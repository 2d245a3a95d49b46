// ctl.cpp - ccmailctl's command line (CLI11) and its dispatch to the commands.
#include "ccmail/ctl/ctl.h"

#include <CLI/CLI.hpp>

#include <ostream>

#include "ccmail/common/log.h"
#include "commands.h"
#include "format.h"
#include "submitter_cmd.h"

namespace ccmail::ctl {
namespace {

const char* kFooter = R"(
Reads the configuration (-c) to find the spool, the ledger, the claim table and the outbox.
Safe to run at any time, with the exporter running or stopped; only `requeue` and `ledger rebuild`
(exporter stopped) change anything.
Run it as root or as the bridge's user: the spool is private to that user (mode 0700), so a
member of the bridge group sees the claim table and the ledger but not the spooled messages.

Exit status: 0 success; 1 failure (unknown capture id, refused requeue, drain timed out,
MTA not configured); 2 drain found work and no running exporter; 64 usage error;
78 configuration error.

Examples:
  ccmailctl status
  ccmailctl --json status
  ccmailctl list --quarantined
  ccmailctl show 0190f3a5c2d84e6f9a1b2c3d4e5f6a7b
  ccmailctl requeue --all
  ccmailctl drain --timeout 5m
  ccmailctl verify
  ccmailctl ledger backup /var/backups/ccmail-ledger-$(date +%F).db
  ccmailctl ledger rebuild --from /srv/ccmail-archive
  ccmailctl metrics > /var/lib/prometheus/node-exporter/ccmail.prom)";

Status LoadConfig(const std::string& path, const std::vector<std::string>& overrides, Config* cfg) {
  CCMAIL_RETURN_IF_ERROR(Config::Load(path, cfg));
  return cfg->ApplyOverrides(overrides);
}

}  // namespace

int RunCtl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err, const CtlEnvironment& env) {
  CLI::App app{"ccmailctl: look at and operate ccmail-bridge (Unix MTA -> Lotus cc:Mail, exactly once)", "ccmailctl"};
  app.footer(kFooter);
  app.require_subcommand(1);
  app.fallthrough();  // global options are also accepted after the command

  std::string config_path = kDefaultConfigPath;
  std::vector<std::string> overrides;
  bool json = false;
  app.add_option("-c,--config", config_path, "configuration file")->capture_default_str();
  app.add_option("-o,--option", overrides, "override a setting for this run: name=value (repeatable)")
      ->allow_extra_args(false)
      ->type_name("NAME=VALUE");
  app.add_flag("--json", json, "print one JSON document instead of text for people");

  auto* status = app.add_subcommand(
      "status", "claim-table occupancy, backlog (messages, bytes, oldest age), exporter liveness, ledger counts");
  auto* list = app.add_subcommand("list", "pending captures (spool/new), oldest first: id, age, size, sender, recipients");
  bool quarantined = false;
  list->add_flag("-q,--quarantined", quarantined, "list quarantined captures (spool/corrupt) with the reason instead");
  size_t limit = 1000;
  list->add_option("-n,--limit", limit, "show at most this many, oldest first (0: all)")->capture_default_str();
  auto* show = app.add_subcommand("show", "one capture: its metadata and where it is (pending, quarantined, exported)");
  std::string show_id;
  show->add_option("capture-id", show_id, "32 hex characters, as `list` prints")->required();
  auto* requeue = app.add_subcommand(
      "requeue", "move quarantined captures back to spool/new once they verify (the exporter retries them)");
  std::vector<std::string> requeue_ids;
  bool requeue_all = false;
  requeue->add_option("capture-id", requeue_ids, "quarantined capture ids");
  requeue->add_flag("--all", requeue_all, "every quarantined capture");
  auto* drain = app.add_subcommand(
      "drain", "wait until spool/new is empty and no slot is ready or claimed (exit 1 on timeout, 2 if no exporter runs)");
  std::string timeout_text = "10m";
  drain->add_option("-t,--timeout", timeout_text, "give up after this long (ms, s, m, h; no unit: seconds)")
      ->capture_default_str();
  auto* metrics = app.add_subcommand("metrics", "the state in Prometheus text format (for a textfile collector)");
  auto* check_mta = app.add_subcommand(
      "check-mta", "is Postfix or Sendmail configured to use ccmail-milter? (exit 1 when something is missing)");
  auto* config = app.add_subcommand("config", "every setting: value, where it came from, meaning");
  auto* verify = app.add_subcommand(
      "verify", "check the ledger's pages (PRAGMA quick_check) and that it is not older than the outbox (exit 1 if not)");
  bool verify_full = false;
  verify->add_flag("--full", verify_full, "PRAGMA integrity_check: also cross-check every index against its table");
  auto* ledger = app.add_subcommand("ledger", "ledger backup and rebuild (see LEDGER in ccmailctl(8))");
  ledger->require_subcommand(1);
  auto* backup = ledger->add_subcommand("backup", "consistent copy of the ledger (SQLite online backup), exporter running or not");
  std::string backup_file;
  backup->add_option("file", backup_file, "the copy; must not exist yet")->required();
  auto* rebuild = ledger->add_subcommand(
      "rebuild", "re-record every export from the outbox manifests and raise epoch and seq above the outbox (exporter stopped)");
  std::vector<std::string> rebuild_from;
  rebuild->add_option("--from", rebuild_from, "also read the *.MAN files under this directory (archived batches; repeatable)")
      ->allow_extra_args(false);

  auto submitter = AddSubmitterCommands(&app);  // the way back (submitter_cmd.cpp)

  std::vector<std::string> rev(args.rbegin(), args.rend());
  if (!rev.empty()) rev.pop_back();  // the program name
  try {
    app.parse(rev);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e, out, err);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  LogInit("ccmailctl", LogTarget::kStderr, LogLevel::kWarning);
  Config cfg;
  Context ctx;
  Status s = LoadConfig(config_path, overrides, &cfg);
  if (s.ok()) s = Context::FromConfig(std::move(cfg), &ctx);
  if (!s.ok()) {
    err << "ccmailctl: configuration: " << s.ToString() << "\n";
    return kExitConfig;
  }
  Io io{ctx, out, err, json, env};
  if (status->parsed()) return CmdStatus(io);
  if (list->parsed()) return CmdList(io, quarantined, limit);
  if (show->parsed()) return CmdShow(io, show_id);
  if (requeue->parsed()) return CmdRequeue(io, requeue_ids, requeue_all);
  if (drain->parsed()) {
    std::chrono::milliseconds timeout;
    if (Status ts = ParseDuration(timeout_text, &timeout); !ts.ok()) {
      err << "ccmailctl drain: --timeout " << timeout_text << ": expected " << ts.message() << "\n";
      return kExitUsage;
    }
    return CmdDrain(io, timeout);
  }
  if (metrics->parsed()) return CmdMetrics(io);
  if (check_mta->parsed()) return CmdCheckMta(io);
  if (config->parsed()) return CmdConfig(io);
  if (verify->parsed()) return CmdVerify(io, verify_full);
  if (backup->parsed()) return CmdLedgerBackup(io, backup_file);
  if (rebuild->parsed()) return CmdLedgerRebuild(io, rebuild_from);
  if (int rc; RunSubmitterCommand(*submitter, io, &rc)) return rc;
  err << "ccmailctl: no command\n";
  return kExitUsage;
}

}  // namespace ccmail::ctl
