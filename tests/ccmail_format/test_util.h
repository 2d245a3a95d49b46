// test_util.h - helpers shared by the ccmail_format tests.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ccmail/common/unique_fd.h"
#include "ccmail/format/converter.h"
#include "ccmail/format/reader.h"

namespace ccmail::format::testing {

inline UniqueFd MemFile(const std::string& data) {
  UniqueFd fd(memfd_create("ccmail-format-test", MFD_CLOEXEC));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
    if (n <= 0) std::abort();
    off += static_cast<size_t>(n);
  }
  return fd;
}

inline std::vector<ConvertRecipient> DefaultRecipients() {
  return {{"jsmith@ccmail.corp.example", {"Smith, John", "HUBPO2"}},
          {"mgarcia@ccmail.corp.example", {"Garcia, Maria", "HUBPO2"}}};
}

inline FormatSettings TestSettings() {
  FormatSettings s;
  s.local_postoffice = "HUBPO2";
  s.timezone = "UTC";
  return s;
}

// Converts message text; returns the status, fills *out.
inline Status ConvertText(const std::string& message, const FormatSettings& s, std::string* out,
                          std::vector<ConvertRecipient> rcpts = DefaultRecipients(), ConvertResult* res = nullptr,
                          time_t received = 1795520000) {
  UniqueFd fd = MemFile(message);
  ConvertInput in;
  in.fd = fd.get();
  in.offset = 0;
  in.length = message.size();
  in.envelope_sender = "bob@partner.example";
  in.recipients = std::move(rcpts);
  in.received = received;
  in.log_id = "test";
  StringSink sink;
  Converter conv(s);
  Status st = conv.Convert(in, &sink, res);
  *out = sink.str();
  return st;
}

inline std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) std::abort();
  std::stringstream b;
  b << in.rdbuf();
  return b.str();
}

inline std::string SourceDir() {
  const char* s = std::getenv("CCMAIL_SOURCE_DIR");
  return s ? s : ".";
}

inline std::string ViolationsText(const ReadResult& r) {
  std::string t;
  for (const Violation& v : r.violations) t += std::to_string(v.offset) + ": " + v.reason + "\n";
  return t;
}

}  // namespace ccmail::format::testing
