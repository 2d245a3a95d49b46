// engine.h - the submitter: cc:Mail EXPORT files from the inbox to the MTA, exactly once.
//
// SYNOPSIS
//   SubmitterOptions opt;
//   CCMAIL_RETURN_IF_ERROR(SubmitterOptions::FromConfig(cfg, &opt));
//   opt.convert = ...;                      // the conversion (ConvertExportMessage, to_mime.h)
//   std::unique_ptr<Submitter> sub;
//   CCMAIL_RETURN_IF_ERROR(Submitter::Open(opt, &sub));
//   sub->Run(stop, heartbeat);              // or RunOnce() rounds (tests, --drain)
//
// DESCRIPTION
//   State under state_dir (<spool_directory>/submitter, 0700):
//     ledger.db            SubmitLedger (submit_ledger.h), the commit point
//     submitter.lock       flock: one submitter per state directory
//     taken/<PO>/<file_id> the bytes of each taken file (file_id = sha256 hex of them), until
//                          taken_retention after the file is done (step 4)
//     quarantine/<file_id> an unreadable file, with <file_id>.reason; a message that cannot be
//                          converted gets quarantine/<file_id>.<idx>.reason (bytes stay in taken/)
//     notices/             the durable queue of notices to authors (exporter::BounceQueue)
//     metrics              "name value" lines, rewritten after every round (SubmitterMetrics)
//   A round: (1) with export_command, for each inbox_directory/<PO>/ whose export_interval is
//   due, run the command (environment CCMAIL_POSTOFFICE, CCMAIL_EXPORT_FILE=<PO dir>/.export-
//   <ms>.tmp); exit 0 (or 5) renames a non-empty file to EXPORT-<ms>.TXT, exit 4 (post office
//   locked), 1, 3 or anything else removes it and retries after a back-off (as deliver_command,
//   exporter/deliver.h). (2) Take every complete file of every inbox_directory/<PO>/ (a regular
//   file whose name does not start with '.' nor end in .tmp/.part): opened once without
//   following a symlink (inbox_file.h), it must be a regular file with one link and at most
//   inbox_max_file_size bytes, else it is renamed aside to .<name>.refused with a .reason file
//   and an error is logged; its bytes, read from that descriptor only, are copied to
//   taken/<PO>/ (tmp, fsync, rename, directory fsync), recorded in the ledger, then the file is
//   unlinked from the inbox (directory fsync). A file whose file_id the ledger knows is only
//   unlinked. An inbox or post office directory that cannot be listed is logged once when it
//   goes (warning) and once when it is back (info). (3) For each
//   open file: read it (format::ReadImportFile, layout detected); a file with any violation is
//   quarantined whole, nothing of it is sent. Each unsettled message is converted and sent:
//   MAIL FROM:<author> and one RCPT TO per Internet recipient (pipelined); every recipient 2xx
//   or 5xx, at least one 2xx: the refused ones get a notice to the author (queued durably),
//   the message is marked in_doubt (durable), then DATA; the 250 settles it sent or partial.
//   Every recipient 5xx, a 5xx to DATA or to the dot, or a conversion refusal: a notice to the
//   author, then refused. No author address: quarantined with the reason. A 4xx (to any
//   recipient, DATA or the dot), no reply or no connection: the file waits retry_min, doubling
//   up to retry_max, and the message is tried again whole (a message left in_doubt by a lost
//   reply is counted as resubmitted when it is sent again). Messages of a file go in order.
//   (4) At most once per taken_prune_interval: taken/<PO>/<file_id> of a file the ledger has
//   as done whose last message settled more than taken_retention ago is removed (at most
//   taken_prune_limit per pass, one info line with the count); the copy of a taken (open) or
//   quarantined file, of a done file with a quarantined message (requeue reads it), and any
//   name the ledger does not know, is never removed. The ledger rows stay.
//
//   The window: between the MTA's 250 and the durable ledger commit (one SQLite commit) a
//   crash leaves the message in_doubt although the MTA has it; it is sent again after the
//   restart (the same derived Message-ID) and counted in in_doubt_resubmitted. The window of
//   every message is measured (window_* metrics; a debug log line per message).
//
// CRASH POINTS (store/io.h: CCMAIL_CRASH_AT=<name>:<pass>), SubmitCrashPoints() lists them:
//   submit.take.copied    taken/<PO>/<file_id> durable, no ledger row yet
//   submit.take.recorded  the file's ledger row committed, still in the inbox
//   submit.take.unlinked  removed from the inbox (directory fsynced)
//   submit.notice.queued  a notice to the author durable, the message not yet settled
//   submit.data.before    in_doubt committed, DATA not yet sent
//   submit.accepted       the 250 to the final dot read, the ledger not yet committed
//   submit.committed      the message's final state committed
//
// ERRORS
//   Open: the state directory, the lock (kBusy: another submitter runs), the ledger. RunOnce
//   returns an error only for a ledger or state-directory failure (the daemon exits and is
//   restarted); SMTP, inbox and command failures are logged and retried.
//
// THREAD SAFETY
//   One thread runs the rounds; metrics() may be called from another. The notice queue has
//   its own sender thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ccmail/common/status.h"
#include "ccmail/config/config.h"
#include "ccmail/format/reader.h"
#include "ccmail/format/settings.h"
#include "ccmail/smtp/client.h"
#include "ccmail/store/io.h"

namespace ccmail::submitter {

inline constexpr const char* kCrashTakeCopied = "submit.take.copied";
inline constexpr const char* kCrashTakeRecorded = "submit.take.recorded";
inline constexpr const char* kCrashTakeUnlinked = "submit.take.unlinked";
inline constexpr const char* kCrashNoticeQueued = "submit.notice.queued";
inline constexpr const char* kCrashDataBefore = "submit.data.before";
inline constexpr const char* kCrashAccepted = "submit.accepted";
inline constexpr const char* kCrashCommitted = "submit.committed";
const std::vector<std::string>& SubmitCrashPoints();

// What the conversion gives the engine for one message (the daemon adapts to_mime.h's
// OutgoingMessage/Refusal to these, so the engine does not depend on the conversion).
struct Submission {
  std::string envelope_from;
  std::vector<std::string> recipients;
  std::string message_id;
  std::string mime;  // CRLF lines
};
struct SubmissionRefusal {
  std::string reason;
  std::string author_address;  // empty: none could be derived (quarantine)
};
// Exactly one of *out / *refusal filled on Ok; an error quarantines the message.
using ConvertFunction = std::function<Status(const format::ImportMessage& message, std::string_view post_office,
                                             Submission* out, SubmissionRefusal* refusal)>;

struct SubmitterOptions {
  std::string state_dir;        // <spool_directory>/submitter
  std::string inbox_directory;  // inbox_directory
  std::string export_command;   // empty: inbox-drop mode only
  std::chrono::milliseconds export_interval{std::chrono::seconds(60)};
  std::chrono::milliseconds inbox_scan_interval{std::chrono::seconds(1)};
  uint64_t inbox_max_file_size = 200ull << 20;     // inbox_max_file_size: larger files are set aside
  smtp::Endpoint relay;                            // submit_relay
  smtp::ClientOptions smtp;                        // submit_timeout
  std::chrono::milliseconds retry_min{std::chrono::seconds(30)}, retry_max{std::chrono::hours(1)};
  format::FormatSettings format;                   // code page, layout, for reading the files
  // taken_retention: a done file's taken copy is removed this long after its last message
  // settled; 0 keeps every copy. Checked every taken_prune_interval (the first round after
  // Open included), at most taken_prune_limit removals per pass.
  std::chrono::milliseconds taken_retention{std::chrono::hours(24 * 30)};
  std::chrono::milliseconds taken_prune_interval{std::chrono::hours(1)};
  size_t taken_prune_limit = 1000;
  std::function<int64_t()> wall_clock_ms;          // epoch ms for the retention; empty: WallClockMs()
  store::DurableIo* io = nullptr;                  // nullptr: DurableIo::Real()
  ConvertFunction convert;                         // required

  // Everything but `convert` from the configuration.
  static Status FromConfig(const Config& cfg, SubmitterOptions* out);
};

struct SubmitterMetrics {
  uint64_t files_taken = 0, files_open = 0, files_quarantined = 0;
  uint64_t messages_sent = 0, partial = 0, refused = 0, quarantined = 0, pending = 0, in_doubt = 0;
  uint64_t in_doubt_resubmitted = 0;
  uint64_t notices_pending = 0;
  uint64_t deferred_files = 0;         // waiting for a retry after a temporary failure
  uint64_t last_round_ms = 0;          // duration of the last round
  uint64_t window_count = 0;           // messages whose 250->commit window was measured (this run)
  uint64_t window_last_us = 0, window_max_us = 0, window_total_us = 0;
  // "name value" lines, the metrics file's format.
  std::string ToText() const;
};

class Submitter {
 public:
  static Status Open(SubmitterOptions options, std::unique_ptr<Submitter>* out);
  ~Submitter();
  Submitter(const Submitter&) = delete;
  Submitter& operator=(const Submitter&) = delete;

  // One round (see DESCRIPTION). *work_left: some file still has unsettled messages.
  Status RunOnce(bool* work_left = nullptr);
  // Rounds until `stop`; heartbeat() between rounds (signals, sd_notify).
  Status Run(const std::atomic<bool>& stop, const std::function<void()>& heartbeat);
  // Rounds until nothing is left to do or deadline passes; kUnavailable then. Deferred
  // files are retried as their back-off allows. Ends with one pass over the queued notices.
  Status Drain(std::chrono::milliseconds deadline);
  SubmitterMetrics metrics() const;
  const SubmitterOptions& options() const;

  struct Impl;

 private:
  explicit Submitter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The path layout, for ccmailctl and tests.
std::string SubmitterStateDir(const std::string& spool_directory);  // <spool_directory>/submitter
std::string SubmitLedgerPath(const std::string& state_dir);         // <state_dir>/ledger.db
std::string SubmitterMetricsPath(const std::string& state_dir);     // <state_dir>/metrics

// The inbox's completeness rule: the name does not start with '.' and does not end in .tmp
// or .part (any case).
bool IsCompleteInboxName(std::string_view name);

}  // namespace ccmail::submitter
