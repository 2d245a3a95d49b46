#include "ccmail/common/log.h"

#include "ccmail/common/escape.h"

#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace ccmail {
namespace {

std::atomic<LogLevel> g_level{LogLevel::kInfo};
std::atomic<LogTarget> g_target{LogTarget::kStderr};
std::mutex g_ident_mu;
std::string g_ident = "ccmail";  // syslog keeps the pointer: must outlive openlog

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kError: return "error";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kInfo: return "info";
    case LogLevel::kDebug: return "debug";
  }
  return "?";
}

int SyslogPriority(LogLevel level) {
  switch (level) {
    case LogLevel::kError: return LOG_ERR;
    case LogLevel::kWarning: return LOG_WARNING;
    case LogLevel::kInfo: return LOG_INFO;
    case LogLevel::kDebug: return LOG_DEBUG;
  }
  return LOG_INFO;
}

void Emit(LogLevel level, const char* fmt, va_list ap) {
  if (level > g_level.load(std::memory_order_relaxed)) return;
  char raw[2048];
  std::vsnprintf(raw, sizeof raw, fmt, ap);
  // The arguments carry envelope addresses and other outside text: a CR/LF in them would
  // forge a log line, an ESC would drive the reader's terminal.
  const std::string line = EscapeControls(raw);
  if (g_target.load(std::memory_order_relaxed) == LogTarget::kSyslog) {
    syslog(LOG_MAIL | SyslogPriority(level), "%s: %s", LevelName(level), line.c_str());
    return;
  }
  // One fprintf per line so concurrent threads do not interleave within a line.
  std::fprintf(stderr, "%s[%d]: %s: %s\n", g_ident.c_str(), static_cast<int>(getpid()), LevelName(level), line.c_str());
}

}  // namespace

void LogInit(const std::string& ident, LogTarget target, LogLevel level) {
  {
    std::lock_guard<std::mutex> lock(g_ident_mu);
    g_ident = ident;
    if (target == LogTarget::kSyslog) openlog(g_ident.c_str(), LOG_PID | LOG_NDELAY, LOG_MAIL);
  }
  g_target.store(target);
  g_level.store(level);
}

void LogSetLevel(LogLevel level) { g_level.store(level); }
LogLevel LogGetLevel() { return g_level.load(); }

bool ParseLogLevel(const std::string& text, LogLevel* level) {
  for (LogLevel l : {LogLevel::kError, LogLevel::kWarning, LogLevel::kInfo, LogLevel::kDebug}) {
    if (text == LevelName(l)) {
      *level = l;
      return true;
    }
  }
  return false;
}

#define CCMAIL_DEFINE_LOG(fn, lvl) \
  void fn(const char* fmt, ...) {  \
    va_list ap;                    \
    va_start(ap, fmt);             \
    Emit(lvl, fmt, ap);            \
    va_end(ap);                    \
  }
CCMAIL_DEFINE_LOG(LogError, LogLevel::kError)
CCMAIL_DEFINE_LOG(LogWarning, LogLevel::kWarning)
CCMAIL_DEFINE_LOG(LogInfo, LogLevel::kInfo)
CCMAIL_DEFINE_LOG(LogDebug, LogLevel::kDebug)
#undef CCMAIL_DEFINE_LOG

}  // namespace ccmail
