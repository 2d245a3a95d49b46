// inbox.h - the inbox's listing and the export_command runner (internal to the submitter).
#pragma once

#include <string>
#include <vector>

#include "ccmail/common/status.h"
#include "ccmail/exporter/deliver.h"

namespace ccmail::submitter {

// The post office sub-directories of the inbox (sorted); a missing inbox is empty.
std::vector<std::string> InboxPostOffices(const std::string& inbox);
// The complete regular files of one post office directory (sorted by name).
std::vector<std::string> CompleteInboxFiles(const std::string& po_dir);

// Runs export_command for one post office: /bin/sh -c with CCMAIL_POSTOFFICE and
// CCMAIL_EXPORT_FILE=<po_dir>/.export-<stamp>.tmp. On exit 0 or 5 a non-empty file is renamed
// to <po_dir>/EXPORT-<stamp>.TXT (*published = its path, empty when the job wrote nothing);
// otherwise the hidden file is removed. *outcome: cc:Mail's exit code classified as
// deliver_command's. Error Status only when the shell could not be run.
Status RunExportCommand(const std::string& command, const std::string& po_dir, const std::string& post_office,
                        exporter::DeliverOutcome* outcome, int* exit_status, std::string* published);

}  // namespace ccmail::submitter
