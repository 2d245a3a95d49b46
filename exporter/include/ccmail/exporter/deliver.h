// deliver.h - the deliver_command hook run for each published batch (the site's IMPORT job).
//
// Contract of the command: run via /bin/sh -c "<deliver_command>" with argv unchanged and
// environment CCMAIL_BATCH=<absolute batch path>, CCMAIL_POSTOFFICE=<PO name>,
// CCMAIL_MANIFEST=<absolute manifest path>, CCMAIL_UND=<batch path with .UND extension>.
// Its exit status follows cc:Mail IMPORT: 0 done, 4 post office locked (retry with back-off),
// 1 or 3 failure (retry with back-off and alert), 5 some messages undeliverable (the .UND
// file names them; each is bounced to its sender). Anything else is treated as a failure.
//
// ERRORS
//   RunDeliverCommand returns an error Status (with errno) only when /bin/sh cannot be
//   spawned or waited for; a command the shell cannot run exits 127, which is kFailed.
//
// THREAD SAFETY
//   Stateless.
#pragma once

#include <string>

#include "ccmail/common/status.h"

namespace ccmail::exporter {

enum class DeliverOutcome { kDone, kLocked, kFailed, kUndeliverable };

// Maps an IMPORT-style exit status to what the exporter does next.
DeliverOutcome ClassifyImportExit(int exit_status);
const char* DeliverOutcomeName(DeliverOutcome o);

struct DeliverRequest {
  std::string command;   // deliver_command setting
  std::string batch_path;
  std::string post_office;
  std::string manifest_path;
};

// Runs the command and waits for it. *outcome gets the classification; a Status error only
// when the command could not be run at all.
Status RunDeliverCommand(const DeliverRequest& req, DeliverOutcome* outcome, int* exit_status);

// Back-off delay (seconds) after `attempt` failed tries: min * 2^attempt, capped at max.
long DeliverBackoffSeconds(int attempt, long min_s, long max_s);

}  // namespace ccmail::exporter
