// log.h - one line per event, to syslog (facility mail) or to stderr.
//
// SYNOPSIS
//   LogInit("ccmail-milter", LogTarget::kSyslog);
//   LogInfo("%s: captured %s for %zu cc:Mail recipient(s), %zu bytes", qid, cid, n, size);
//
// DESCRIPTION
//   Daemons log to syslog with facility LOG_MAIL, so their lines land in
//   /var/log/mail.log beside the MTA's, correlated by the MTA queue id. Commands
//   and tests log to stderr. Every function is thread-safe; each call writes one
//   whole line. Messages below the configured level are dropped cheaply.
#pragma once

#include <string>

namespace ccmail {

enum class LogTarget { kStderr, kSyslog };
enum class LogLevel { kError = 0, kWarning = 1, kInfo = 2, kDebug = 3 };

void LogInit(const std::string& ident, LogTarget target, LogLevel level = LogLevel::kInfo);
void LogSetLevel(LogLevel level);
LogLevel LogGetLevel();
// Parses "error", "warning", "info", "debug"; false on anything else.
bool ParseLogLevel(const std::string& text, LogLevel* level);

void LogError(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void LogWarning(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void LogInfo(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void LogDebug(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace ccmail
