// inbox.h - the inbox's listing and the export_command runner (internal to the submitter).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "ccmail/common/status.h"
#include "ccmail/common/unique_fd.h"
#include "ccmail/exporter/deliver.h"

namespace ccmail::submitter {

// The post office sub-directories of the inbox (sorted; not hidden ones, not symlinks). An
// error when the inbox cannot be listed (missing, not searchable).
Status ListInboxPostOffices(const std::string& inbox, std::vector<std::string>* out);
// Opens one post office directory (O_NOFOLLOW: a symlink renamed in its place is not entered)
// and lists, sorted, its entries with a complete name (IsCompleteInboxName) that are not
// directories: regular files to take and anything else, which the taker refuses visibly.
Status OpenInboxPostOffice(const std::string& po_dir, UniqueFd* fd, std::vector<std::string>* names);
// `name` with control characters shown as '?': names are chosen by whoever writes the inbox.
std::string PrintableName(std::string_view name);

// Runs export_command for one post office: /bin/sh -c with CCMAIL_POSTOFFICE and
// CCMAIL_EXPORT_FILE=<po_dir>/.export-<stamp>.tmp. On exit 0 or 5 a non-empty file is renamed
// to <po_dir>/EXPORT-<stamp>.TXT (*published = its path, empty when the job wrote nothing);
// otherwise the hidden file is removed. *outcome: cc:Mail's exit code classified as
// deliver_command's. Error Status only when the shell could not be run.
Status RunExportCommand(const std::string& command, const std::string& po_dir, const std::string& post_office,
                        exporter::DeliverOutcome* outcome, int* exit_status, std::string* published);

}  // namespace ccmail::submitter
