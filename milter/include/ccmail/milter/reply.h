// reply.h - an SMTP reply the milter asks the MTA to give.
#pragma once

#include <string>

namespace ccmail::milter {

struct Reply {
  std::string rcode;  // "451"
  std::string xcode;  // "4.3.0"
  std::string text;   // one line, no CR/LF, no '%'
  bool operator==(const Reply&) const = default;
};

}  // namespace ccmail::milter
