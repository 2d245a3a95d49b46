// commands.h - one function per ccmailctl command; ctl.cpp parses the command line.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "ccmail/ctl/ctl.h"
#include "state.h"

namespace ccmail::ctl {

struct Io {
  const Context& ctx;
  std::ostream& out;
  std::ostream& err;
  bool json;
  const CtlEnvironment& env;
};

int CmdStatus(const Io& io);
int CmdMetrics(const Io& io);
// limit: show at most this many (oldest first); 0 = all. Each shown capture is read
// and verified, so the default keeps `list` quick on a large backlog.
int CmdList(const Io& io, bool quarantined, size_t limit);
int CmdShow(const Io& io, const std::string& id_text);
int CmdRequeue(const Io& io, const std::vector<std::string>& ids, bool all);
int CmdDrain(const Io& io, std::chrono::milliseconds timeout);
int CmdCheckMta(const Io& io);
int CmdConfig(const Io& io);
// full: integrity_check (also cross-checks indexes against tables) instead of quick_check.
int CmdVerify(const Io& io, bool full);
int CmdLedgerBackup(const Io& io, const std::string& file);
int CmdLedgerRebuild(const Io& io, const std::vector<std::string>& from);

}  // namespace ccmail::ctl
