// check_mta.h - is the local MTA configured to use ccmail-milter?
//
// SYNOPSIS
//   ccmail::mtaconf::CheckMtaOptions opt;
//   opt.milter_socket = "unix:/var/spool/postfix/ccmail-bridge/milter.sock";  // from the config
//   ccmail::mtaconf::MtaReport report = ccmail::mtaconf::CheckMta(opt);
//   std::fputs(report.ToText().c_str(), stdout);
//   return report.ok() ? 0 : 1;
//
// DESCRIPTION
//   The package never edits the MTA's configuration; this module only reads it
//   and says, line by line, what is configured and what is missing, with the
//   exact command or .mc line that fixes each gap.
//
//   Postfix: runs "<postconf> -h smtpd_milters non_smtpd_milters
//   milter_default_action queue_directory mail_owner ..." (no shell; also the
//   queue lifetimes and the three milter timeouts) and checks that both milter
//   lists name our socket and that milter_default_action is tempfail. A unix socket below
//   the Postfix queue directory (chroot, /var/spool/postfix on Debian) may be
//   given either chroot-relative (unix:/ccmail-bridge/milter.sock) or in full;
//   "local:" equals "unix:"; inet:port@host equals Postfix's inet:host:port.
//   Sendmail: reads sendmail.mc (INPUT_MAIL_FILTER/MAIL_FILTER lines not
//   commented with dnl) and sendmail.cf ("X<name>, S=..." and
//   InputMailFilters), and checks the socket and F=T (tempfail when the filter
//   is unavailable).
//
//   The pure functions (ParsePostfixMilterList, SocketsMatch, CheckPostfix,
//   CheckSendmailMc, CheckSendmailCf) take text and are what the unit tests use.
//
// ERRORS
//   Nothing here throws or exits. A missing postconf or sendmail file means
//   "that MTA is not installed" and is reported as such. report.ok() is true
//   when at least one installed MTA is completely configured and no installed
//   MTA is half-configured; otherwise false (ccmailctl exits 1).
//
// THREAD SAFETY
//   Functions are reentrant; CheckMta() forks postconf.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace ccmail::mtaconf {

// kWarning: works, but not as recommended (does not fail the report).
enum class Verdict { kOk, kMissing, kWrong, kInfo, kWarning };

struct Finding {
  std::string mta;      // "postfix" or "sendmail"
  Verdict verdict;
  std::string what;     // "smtpd_milters", "INPUT_MAIL_FILTER in /etc/mail/sendmail.mc", ...
  std::string found;    // the value seen (may be empty)
  std::string fix;      // exact command/line to add; empty when kOk/kInfo
};

struct MtaReport {
  bool postfix_present = false;
  bool sendmail_present = false;
  std::vector<Finding> findings;

  // True when at least one MTA is present and every present MTA has no
  // kMissing/kWrong finding.
  bool ok() const;
  // Human-readable, one line a finding ("ok", "MISSING", "WRONG", "note"), fixes indented.
  std::string ToText() const;
};

struct CheckMtaOptions {
  std::string milter_socket = "unix:/var/spool/postfix/ccmail-bridge/milter.sock";
  std::string postconf_command = "postconf";          // searched in PATH when not absolute
  // Postfix configuration directory (postconf -c); empty: Postfix's default /etc/postfix.
  std::string postfix_config_directory;
  // User the MTA connects to the milter as; empty: Postfix's mail_owner.
  std::string mta_user;
  // ccmail dedup_window; compared with maximal_queue_lifetime and bounce_queue_lifetime when > 0.
  std::chrono::seconds dedup_window{0};
  std::string sendmail_mc = "/etc/mail/sendmail.mc";
  std::string sendmail_cf = "/etc/mail/sendmail.cf";
};

// Items of a Postfix milter list ("a, b" / "a b" / "{ a, timeout=1s }" -> "a").
std::vector<std::string> ParsePostfixMilterList(std::string_view value);

// Whether the MTA-side address `mta` reaches the milter's `ours` (milter_socket
// syntax). `chroot` is the Postfix queue directory, or empty for Sendmail.
bool SocketsMatch(std::string_view mta, std::string_view ours, std::string_view chroot);

// The address Postfix should use for milter_socket (chroot-relative when the
// socket lies under `chroot`).
std::string PostfixSpelling(std::string_view ours, std::string_view chroot);

// Sendmail's S= spelling for milter_socket.
std::string SendmailSpelling(std::string_view ours);

// Checks the three postconf values (as printed by postconf -h, in that order).
std::vector<Finding> CheckPostfix(std::string_view smtpd_milters, std::string_view non_smtpd_milters,
                                  std::string_view milter_default_action, std::string_view ours,
                                  std::string_view chroot);

std::vector<Finding> CheckSendmailMc(std::string_view mc_text, std::string_view path, std::string_view ours);
std::vector<Finding> CheckSendmailCf(std::string_view cf_text, std::string_view path, std::string_view ours);

// Postfix time value ("30s", "5d", "1h", "300" = default_unit) in seconds; -1 when unparsable.
long long PostfixSeconds(std::string_view value, char default_unit);

// Milter timeouts below these (seconds) get a warning: the milter's slowest step is the spool
// fsync at end of message; Postfix gives up after milter_content_timeout and answers 4xx
// (milter_default_action = tempfail), so a slow disk delays mail but never loses it.
inline constexpr long long kRecommendedMilterConnectTimeout = 30;
inline constexpr long long kRecommendedMilterCommandTimeout = 30;
inline constexpr long long kRecommendedMilterContentTimeout = 300;
// dedup_window must exceed the longest time Postfix retries (maximal_queue_lifetime,
// bounce_queue_lifetime) by at least this margin.
inline constexpr long long kDedupWindowMargin = 24 * 3600;

// Whether Postfix (a daemon chrooted or not, below queue_directory) reaches `ours` at `mta`.
bool PostfixReaches(std::string_view mta, std::string_view ours, bool chrooted, std::string_view queue_directory);

// Runs postconf / reads the files and combines the checks above. For Postfix: reads
// queue_directory, mail_owner, the master.cf chroot column of smtpd and cleanup (postconf -M),
// checks that the milter lists reach our socket as each daemon resolves it, that the socket
// exists and that mail_owner can connect to it (a child process switched to that user; needs
// root), the milter timeouts and the dedup window.
MtaReport CheckMta(const CheckMtaOptions& opt);

}  // namespace ccmail::mtaconf
