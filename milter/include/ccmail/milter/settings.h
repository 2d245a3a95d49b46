// settings.h - the milter's typed view of ccmail-bridge.conf (rows of component "milter").
//
// SYNOPSIS
//   MilterSettings ms;
//   Status s = MilterSettings::FromConfig(config, &ms);
//
// DESCRIPTION
//   Reads and checks every setting the milter uses once, at start-up or SIGHUP.
//   A bad value is returned as kInvalidArgument naming the file, line, setting
//   and what was expected (Config's messages), so start-up stops with a reason.
//   milter_socket must be "unix:/absolute/path" or "inet:PORT@HOST" with HOST a
//   loopback address (127.0.0.1, ::1, localhost) unless it is explicitly
//   another literal address; "inet6:" is accepted too.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "ccmail/common/status.h"
#include "ccmail/config/config.h"

namespace ccmail::milter {

enum class CaptureMode { kDivert, kCopy };

struct Limits {
  uint64_t message_size = 50ull << 20;  // 552 5.3.4
  uint64_t recipients = 1000;           // 452 4.5.3 (cc:Mail recipients per message)
  uint64_t header_count = 1000;         // 552 5.3.4
};

struct AdmissionLimits {
  uint64_t spool_min_free = 256ull << 20;
  uint64_t backlog_messages = 100000;
  uint64_t backlog_bytes = 4ull << 30;
  std::chrono::milliseconds exporter_stall{60000};
};

struct MilterSettings {
  std::string socket;  // libmilter connection spec
  unsigned socket_mode = 0660;
  std::string socket_group;
  std::string user;
  std::string pid_file;
  std::string spool_directory;
  CaptureMode mode = CaptureMode::kDivert;
  bool reject_unknown = false;
  Limits limits;
  AdmissionLimits admission;

  static Status FromConfig(const Config& config, MilterSettings* out);
};

// Checks a milter socket spec; returns kInvalidArgument with the reason.
Status ValidateSocketSpec(const std::string& spec);
// For "unix:/path" or "local:/path" the path, otherwise "".
std::string UnixSocketPath(const std::string& spec);

}  // namespace ccmail::milter
