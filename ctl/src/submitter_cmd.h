// submitter_cmd.h - `ccmailctl submitter status|list|show|requeue|metrics`: the way back
// (ccmail-submitter, cc:Mail EXPORT files -> Internet mail).
//
// Read only through SubmitLedger::OpenReadOnly and the directories of the way back:
//   <spool_directory>/submitter/ledger.db      what was taken and what became of each message
//   <spool_directory>/submitter/quarantine/    unreadable files (+ <name>.reason)
//   <spool_directory>/submitter/notices/       notices to cc:Mail authors not yet imported
//   <inbox_directory>/<PO>/                    EXPORT files not taken yet (complete names only)
// `requeue` is the one write: SubmitLedger::Requeue, a short transaction that the running
// daemon tolerates (the ledger's busy time-out), on a ledger that must exist already.
// ctl.cpp registers the commands with AddSubmitterCommands and runs the parsed one.
#pragma once

#include <memory>

#include "ccmail/mtaconf/check_mta.h"
#include "commands.h"

namespace CLI {
class App;
}

namespace ccmail::ctl {

struct SubmitterCli;  // the parsed options of the `submitter` commands
std::shared_ptr<SubmitterCli> AddSubmitterCommands(CLI::App* app);
// True when a `submitter` command was given; *rc is then its exit status.
bool RunSubmitterCommand(const SubmitterCli& cli, const Io& io, int* rc);
// check-mta's part for the way back (mtaconf/check_submit_relay.h): submit_relay reachable,
// author domains accepted as senders, Internet recipients relayed without authentication.
// Checked only when the submitter is in use (an inbox post office directory, export_command,
// or its ledger). A configuration error is a WRONG finding.
void AddSubmitRelayFindings(const Context& ctx, mtaconf::MtaReport* report);

}  // namespace ccmail::ctl
