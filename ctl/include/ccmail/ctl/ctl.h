// ctl.h - ccmailctl, the administrator's command, as a library entry point.
//
// SYNOPSIS
//   ccmailctl [-c CONFIG] [-o name=value]... [--json] <command> [args]
//   int rc = ccmail::ctl::RunCtl({"ccmailctl", "status", "--json"}, std::cout, std::cerr);
//
// COMMANDS
//   status                 claim-table occupancy, backlog, exporter liveness, ledger counts
//   list [--quarantined]   pending (or quarantined) captures, oldest first
//   show <capture-id>      one capture's metadata and where it is (pending/quarantined/exported)
//   requeue <id>... | --all   quarantined -> pending, after the file verifies again
//   drain [--timeout 10m]  wait until spool/new is empty and no slot is ready or claimed
//   metrics                Prometheus text exposition format
//   check-mta              is Postfix/Sendmail configured to use ccmail-milter?
//   config                 every setting with its value, origin and meaning
//   verify [--full]        the exporter's ledger check (QuickCheck, ledger not older than the outbox)
//   ledger backup FILE     SQLite online backup of the ledger into a new file
//   ledger rebuild [--from DIR]...   re-record the outbox's manifests (exporter stopped)
//
// DESCRIPTION
//   Everything is read through BridgePaths (config/paths.h), so the tool sees the same
//   files as the daemons. The tool never creates the claim table or the spool directories,
//   and takes the exporter's lock only for a probe, so it is safe to run at any time, with
//   the exporter running or stopped, as root or as a member of bridge_group. What writes:
//   `requeue` (a rename inside the spool), `ledger backup` (the new FILE) and `ledger
//   rebuild` (the ledger, created when missing; it holds exporter.lock while it runs, so
//   it refuses to run beside an exporter).
//   A missing table, ledger or spool is a state to report ("not created yet"), not an
//   error.
//
// EXIT STATUS
//   0 success; 1 failure (unknown id, refused requeue, drain timeout, MTA not configured);
//   2 drain: work is pending and no exporter is running; 64 usage error; 78 configuration
//   error (EX_USAGE / EX_CONFIG from sysexits.h).
//
// THREAD SAFETY
//   RunCtl keeps no state between calls; it sets up common/log.h for stderr (LogInit),
//   so run one RunCtl at a time per process.
#pragma once

#include <chrono>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "ccmail/mtaconf/check_mta.h"

namespace ccmail::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitNoExporter = 2;
inline constexpr int kExitUsage = 64;
inline constexpr int kExitConfig = 78;

inline constexpr const char* kDefaultConfigPath = "/etc/ccmail-bridge/ccmail-bridge.conf";

// What the real program takes from its environment; tests replace it.
struct CtlEnvironment {
  bool stdout_is_tty = false;                             // drain draws a progress bar
  std::chrono::milliseconds drain_poll{250};              // drain re-reads the state this often
  std::chrono::milliseconds drain_report_every{5000};     // non-TTY progress line period
  // Applied after milter_socket is set from the configuration (tests point it at
  // fake postconf / sendmail files).
  std::function<void(mtaconf::CheckMtaOptions*)> adjust_check_mta;
};

// Runs one ccmailctl command line (args[0] is the program name). Output goes to `out`,
// diagnostics to `err`. Returns the exit status (see EXIT STATUS).
int RunCtl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
           const CtlEnvironment& env = CtlEnvironment{});

}  // namespace ccmail::ctl
