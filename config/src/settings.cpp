#include "ccmail/config/settings.h"

#include <span>

namespace ccmail {

namespace {

// One row of a component's table; the component is named once, where the tables are joined.
struct Row {
  std::string_view name;
  std::string_view default_value;
  std::string_view meaning;
};

// Defaults are the values a new installation runs with; every row is documented in
// ccmail-bridge.conf(5).

// general: shared by every process
constexpr Row kGeneral[] = {
    {"spool_directory", "/var/spool/ccmail-bridge",
     "Holds spool/ (captured messages), the exporter's ledger and out/tmp. Must be one local file "
     "system (ext4 or XFS, not NFS): durability relies on fsync and rename within it."},
    {"outbox_directory", "/var/spool/ccmail-bridge/outbox",
     "cc:Mail import files are published here, one subdirectory per post office. Must be on the "
     "same file system as spool_directory."},
    {"runtime_directory", "/run/ccmail-bridge",
     "The claim table file, live.lock and other per-boot state (tmpfs; emptied at reboot). Must be "
     "owned by the daemons' user (or root) and not group/other-writable (0750): the daemons refuse "
     "it otherwise (the exporter exits with status 78). Created 0750 when missing."},
    {"claim_table_name", "ccmail-bridge-claims",
     "File name of the claim table: <runtime_directory>/<name>-v<layout>, a file mapped in memory "
     "by every milter and the exporter (which must therefore run as the same user and use the same "
     "name)."},
    {"claim_table_slots", "65536",
     "Slots in the claim table (64 bytes each). A full table never loses mail: the exporter finds "
     "captures without a slot by scanning the spool."},
    {"claim_table_registry", "1024",
     "Process registry entries in the claim table: the most milter and exporter processes alive at once."},
    {"bridge_group", "ccmail",
     "Group given read-only access to the claim table (mode 0640), for administrators running "
     "ccmailctl. Nothing the bridge relies on is writable by it. Empty: the table is 0600."},
    {"log_level", "info", "error, warning, info or debug."},
};

// milter
constexpr Row kMilter[] = {
    {"milter_socket", "unix:/var/spool/postfix/ccmail-bridge/milter.sock",
     "Where ccmail-milter listens: unix:/path or inet:port@127.0.0.1. The default lies inside "
     "Debian's Postfix chroot (smtpd_milters = unix:/ccmail-bridge/milter.sock)."},
    {"milter_socket_mode", "0660",
     "File mode of a unix: milter socket. No bit for \"other\" is accepted: whoever can connect "
     "can make the milter capture mail."},
    {"milter_socket_group", "ccmail-milter",
     "Group of a unix: milter socket bound by ccmail-milter itself (not the one of "
     "ccmail-milter.socket); the MTA's user (postfix, smmsp) is a member of this group and of "
     "no other bridge group: it grants connect access to the socket and nothing else."},
    {"milter_user", "ccmail",
     "System user the milter runs as after binding its socket, when started as root (the packaged unit starts it as this user)."},
    {"milter_pid_file", "/run/ccmail-bridge/ccmail-milter.pid", "PID file of ccmail-milter."},
    {"ccmail_domains", "",
     "Mail domains whose recipients are cc:Mail users (comma or space separated). A recipient is "
     "captured when its domain is listed here or its address is in address_map."},
    {"percent_route_postoffices", "",
     "Post offices a sender may choose with PMDF routing, user%PO@<ccmail domain> (comma or space "
     "separated). Empty: no '%' routing; such a recipient gets 550 5.1.1 at RCPT."},
    {"address_map", "/etc/ccmail-bridge/address-map",
     "Address map: one rule a line, an address or @domain, then the cc:Mail name and post office "
     "(\"jsmith@corp.example  Smith, John at HUBPO2\"). Reloaded on SIGHUP."},
    {"capture_mode", "divert",
     "divert: once captured, cc:Mail recipients are removed from SMTP delivery. copy: capture and "
     "let the MTA deliver as usual."},
    {"reject_unknown", "no",
     "yes: an address in a cc:Mail domain that the address map does not know is rejected at RCPT "
     "with 550 5.1.1."},
    {"message_size_limit", "50m", "Largest message captured; larger ones get 552 5.3.4."},
    {"recipient_limit", "1000", "Most cc:Mail recipients in one message; more get 452 4.5.3."},
    {"header_count_limit", "1000", "Most header fields in one message; more get 552 5.3.4."},
    {"spool_log", "yes",
     "yes: a captured message up to 256 KiB is made durable by the spool's write-ahead log "
     "(spool/wal, one fdatasync shared by concurrent messages) before its 250; its file in "
     "spool/new is fsynced later. no: each message's file and spool/new are fsynced before its 250."},
    {"spool_min_free", "256m", "Free space the spool file system must keep; below it new mail gets 452 4.3.1."},
    {"backlog_limit_messages", "100000", "Captured but not yet exported messages above which new mail gets 452 4.3.1."},
    {"backlog_limit_bytes", "4g", "Spooled bytes not yet exported above which new mail gets 452 4.3.1."},
    {"exporter_stall_timeout", "60s",
     "When the exporter has shown no progress for this long while work is pending, new mail gets "
     "451 4.3.0 (back-pressure; nothing is lost)."},
};

// exporter
constexpr Row kExporter[] = {
    {"exporter_user", "ccmail", "System user the exporter runs as."},
    {"exporter_pid_file", "/run/ccmail-bridge/ccmail-exporter.pid", "PID file of ccmail-exporter."},
    {"ledger", "",
     "Where the exporter records what it exported. Empty: the SQLite file "
     "<spool_directory>/ledger.db (one relay). A postgresql:// URI or a libpq connection string "
     "(\"host=db1 dbname=ccmail user=ccmail\"): a ledger shared by several relays, so a message "
     "re-sent to another relay is not exported twice; needs relay_id. No password here: see "
     "ledger_password_file."},
    {"ledger_password_file", "",
     "File holding the PostgreSQL password of a shared ledger (first line; readable by the "
     "exporter's user only). Empty: no password (peer or certificate authentication)."},
    {"relay_id", "",
     "This relay's name in a shared ledger, 1-32 of A-Z a-z 0-9 _ -, different on every relay and "
     "never changed (batch names and the relay's epoch and sequence are keyed by it). Required when "
     "ledger is PostgreSQL; must be empty for the SQLite ledger."},
    {"ledger_timeout", "30s",
     "PostgreSQL ledger only (1s-1h): the server cancels a ledger statement, or its wait for a "
     "lock another session holds, after this long; a server that does not answer at all (stopped, "
     "network cut) is given up after twice this and its connection closed. Either way the round "
     "is retried after the exporter's back-off (a COMMIT given up is looked up, never guessed), "
     "and the log says so. Also bounds the connection (connect_timeout, at most 10s) and TCP's "
     "tcp_user_timeout, unless the ledger location sets those itself."},
    {"batch_max_messages", "256", "Most messages in one batch (one ledger commit)."},
    {"batch_max_delay", "200ms",
     "Longest a batch waits to fill before it is committed. Each round costs a batch file, a "
     "ledger commit and their fsyncs whatever its size, so under a trickle of captures a longer "
     "wait costs the exporter less CPU per message (docs/PERFORMANCE.md, issue 17); a message "
     "reaches the outbox at most this much later. A drain and a full round never wait."},
    {"spool_scan_interval", "2s", "How often the exporter lists the spool for captures that got no claim-table slot."},
    {"dedup_window", "7d",
     "How long a delivery (content key, recipient) is remembered, so an SMTP retry of the same "
     "message is not exported twice. Keep it above the MTA's maximal_queue_lifetime; below 5d (the "
     "Postfix and Sendmail default) is refused."},
    {"deliver_command", "",
     "Optional command run for each published batch (the site's cc:Mail IMPORT job). Exit codes "
     "follow IMPORT: 0 done, 4 post office locked (retry), 1/3 failure (retry, alert), 5 "
     "undeliverable (read the .UND file, bounce)."},
    {"deliver_retry_min", "1m", "First retry delay of deliver_command."},
    {"deliver_retry_max", "1h", "Longest retry delay of deliver_command."},
    {"bounce_relay", "127.0.0.1:25",
     "SMTP server (host:port, [IPv6]:port) that takes bounces and quarantine notices, sent with "
     "the null sender. Queued in spool_directory/bounce until it answers 250; retried with the "
     "deliver_retry_min..deliver_retry_max back-off."},
    {"notify_sender_on_quarantine", "no",
     "yes: tell the sender when a message cannot be converted and is quarantined."},
};

// format: the cc:Mail import file (docs/FORMAT.md §6, §7)
constexpr Row kFormat[] = {
    {"itemsize", "yes",
     "yes: /ITEMSIZE layout with byte counts (as the Exchange connector ran IMPORT). no: keyword-"
     "delimited; body lines that look like keywords are protected by a leading space."},
    {"codepage", "850", "Code page of the import file: 850, 437 or 1252."},
    {"date_format", "mdy2", "mdy2 (6/2/98 8:39), mdy4, dmy2 or dmy4."},
    {"timezone", "", "Time zone of the post office (e.g. Europe/Berlin); empty: the host's."},
    {"local_postoffice", "", "Name of the post office that runs IMPORT; its users are written without \" at PO\"."},
    {"default_postoffice", "", "Post office of user@<ccmail domain> addresses that the address map does not list."},
    {"gateway_postoffice", "INTERNET",
     "Post office name of the bridge in cc:Mail; senders become \"addr@domain at <this>\"."},
    {"uppercase_sender", "no", "yes: write the sender address in upper case (PMDF style)."},
    {"sender_source", "author",
     "Whose address the cc:Mail From line shows: author (header From, then Sender, then the "
     "envelope sender when those are missing or invalid) or envelope (MAIL FROM, as before). "
     "Bounces and the manifest always use the envelope sender."},
    {"header_limit", "4000",
     "Largest header block in bytes, from the Message: line to the Contents: count line. More "
     "recipients are split across copies of the message, each recipient in one copy. 4000 keeps "
     "under the 4096 of Import up to 8.2x; 163840 after."},
    {"subject_max", "60", "Longest subject in characters."},
    {"subject_brackets", "yes", "yes: replace [ and ] in subjects by ( and ) (Import 8.3 bug)."},
    {"text_item_max", "20000", "Largest text item in bytes."},
    {"large_body", "split", "A body over text_item_max: split into several text items, or file (UNNAMED.TXT)."},
    {"long_filenames", "no", "yes: keep long attachment names instead of 8.3 names."},
    {"max_items", "20", "Most items per message; the rest are listed in a text notice."},
    {"max_file_items", "16",
     "Most file items per message (docs/FORMAT.md section 3.8: 16 files plus text); the rest are listed in a text notice."},
    {"max_nesting_depth", "8", "Deepest MIME nesting converted; deeper parts get a notice."},
    {"mime_type_map", "", "Extra MIME type to extension rules (\"application/x-foo FOO\"), added to the built-in map."},
    {"files", "raw", "raw: file data as bytes counted by /ITEMSIZE; hex: /FILES/HEX."},
    {"headers_item", "yes", "yes: add a last text item \"Headers\" with the original header block."},
    {"raw_file_crlf", "yes",
     "files = raw: yes writes a CRLF after each file's data, outside the item's byte count (inside "
     "the Contents and Message counts); no writes the next keyword right after the data. No source "
     "settles this (docs/FORMAT.md section 3.8)."},
};

// submitter: the way back, cc:Mail EXPORT files -> Internet mail (docs/DESIGN.md "The way back")
constexpr Row kSubmitter[] = {
    {"submitter_user", "ccmail", "System user the submitter runs as."},
    {"submitter_pid_file", "/run/ccmail-bridge/ccmail-submitter.pid", "PID file of ccmail-submitter."},
    {"inbox_directory", "/var/spool/ccmail-bridge/inbox",
     "Where cc:Mail EXPORT files arrive, one sub-directory per post office (inbox_directory/<PO>/). A "
     "file is taken when its name does not start with '.' and does not end in .tmp or .part: write it "
     "under such a name and rename it into place. Only a regular file with one link is read (opened "
     "once, never through a symlink); anything else there (a symlink, FIFO, device, a file with "
     "several hard links, one above inbox_max_file_size, one the submitter may not read) is not read: "
     "it is renamed in its directory to .<name>.refused (.<name>.refused.<n> when taken), with "
     ".<name>.refused.reason saying why and when, and an error is logged. Rename it back to retry."},
    {"inbox_max_file_size", "200m",
     "Largest inbox file the submitter takes, in bytes (k, m, g suffixes as message_size_limit), "
     "judged by its size when opened, before anything is read: a larger file is set aside as "
     "inbox_directory describes. Bounds the submitter's memory (a file is read whole)."},
    {"export_command", "",
     "Optional command the submitter runs every export_interval for each post office sub-directory "
     "of inbox_directory (the site's cc:Mail EXPORT job), with CCMAIL_POSTOFFICE and CCMAIL_EXPORT_FILE "
     "(a hidden name in that directory) in its environment; the file is renamed into place after exit "
     "0. Exit codes follow EXPORT: 4 post office locked (retry), 1/3 failure (retry, alert)."},
    {"export_interval", "60s", "How often export_command runs per post office (and the inbox is listed)."},
    {"submit_relay", "127.0.0.1:25",
     "SMTP server (host:port, [IPv6]:port) the submitter hands messages to, and the notices to "
     "their authors (refused recipients, refused messages). It must relay from this host without "
     "authentication."},
    {"submit_timeout", "60s", "Longest wait for each SMTP reply of submit_relay (and for the connection)."},
    {"submit_retry_min", "30s", "First retry delay after submit_relay answered 4xx or could not be reached."},
    {"submit_retry_max", "1h", "Longest retry delay of a submission."},
    {"taken_retention", "30d",
     "How long the submitter keeps the copy of a taken file (<spool_directory>/submitter/taken/<PO>/) "
     "after the last of its messages settled; checked once an hour, then removed (the ledger keeps "
     "its rows). Never removed: the copy of a file with messages still to settle, of a quarantined "
     "file, or of a file with a quarantined message (ccmailctl submitter requeue reads it). 0: keep "
     "every copy."},
    {"year_pivot", "70",
     "Two-digit years on EXPORT Date lines: from this value on 19xx, below it 20xx (0-100)."},
    {"unmapped_author", "pattern",
     "A cc:Mail author the address map does not know: pattern (unmapped_author_pattern) or "
     "refuse (the message goes back to the author)."},
    {"unmapped_author_pattern", "{first}.{last}@{domain}",
     "SMTP address of an unmapped author; fields {first} {last} (of \"Last, First\"), {name}, {po}, "
     "{domain}; lower case, spaces become dots; the result must be a valid address."},
    {"author_domain", "", "{domain} of unmapped_author_pattern; empty: the first of ccmail_domains."},
    {"origin_marker", "",
     "This bridge's id in the X-Ccmail-Bridge-Origin header (loop detection); empty: the host name."},
};

void AppendComponent(std::string_view component, std::span<const Row> rows, std::vector<SettingSpec>* all) {
  for (const Row& r : rows) all->push_back(SettingSpec{r.name, r.default_value, component, r.meaning});
}

}  // namespace

// Grouped by the component that reads the setting.
const std::vector<SettingSpec>& AllSettings() {
  static const std::vector<SettingSpec> kSettings = [] {
    std::vector<SettingSpec> all;
    AppendComponent("general", kGeneral, &all);
    AppendComponent("milter", kMilter, &all);
    AppendComponent("exporter", kExporter, &all);
    AppendComponent("format", kFormat, &all);
    AppendComponent("submitter", kSubmitter, &all);
    return all;
  }();
  return kSettings;
}

const SettingSpec* FindSetting(std::string_view name) {
  for (const SettingSpec& s : AllSettings()) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

}  // namespace ccmail
