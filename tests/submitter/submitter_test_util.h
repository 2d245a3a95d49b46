// submitter_test_util.h - EXPORT files and a small conversion for the engine's tests.
//
// The engine's tests need a conversion but test the engine, not the conversion (to_mime.h
// has its own tests): TestConvert maps the author "First Last at PO" to first.last@example.com
// and the recipients "addr at INTERNET" to addr; a subject starting with REFUSE is refused
// (author told), NOAUTHOR refused with no author address, BROKEN fails the conversion,
// NOTHING returns Ok with neither a message nor a refusal.
#pragma once

#include <cctype>
#include <cstdio>
#include <string>
#include <vector>

#include "ccmail/format/reader.h"
#include "ccmail/format/rules.h"
#include "ccmail/submitter/engine.h"

namespace ccmail::submitter::test {

struct ExportMessage {
  std::string from = "Doe, Jane at HQ";
  std::vector<std::string> to;
  std::string subject;
  std::string body;
};

// One message in the /ITEMSIZE layout (the counts by format::ItemSizeCount).
inline std::string ExportText(const ExportMessage& m) {
  const std::string item = m.body;
  const std::string contents = "Text item:\r\n" + std::to_string(format::ItemSizeCount(item.size())) + "\r\n" + item;
  std::string head = "From: " + m.from + "\r\nDate: 6/2/98 8:39\r\n";
  for (const auto& t : m.to) head += "To: " + t + "\r\n";
  head += "Subject: " + m.subject + "\r\nContents:\r\n" + std::to_string(format::ItemSizeCount(contents.size())) +
          "\r\n" + contents;
  return "Message:\r\n" + std::to_string(format::ItemSizeCount(head.size())) + "\r\n" + head;
}

inline format::FormatSettings TestFormat() {
  format::FormatSettings s;
  s.timezone = "UTC";
  return s;
}

inline std::string Fnv(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

inline std::string AuthorAddress(const std::string& from) {
  std::string name = from.substr(0, from.find(" at "));
  std::string first, last;
  size_t comma = name.find(", ");
  if (comma != std::string::npos) {
    last = name.substr(0, comma);
    first = name.substr(comma + 2);
  } else {
    first = name;
  }
  std::string out = first + (last.empty() ? "" : "." + last);
  for (char& c : out) c = c == ' ' ? '.' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out + "@example.com";
}

inline Status TestConvert(const format::ImportMessage& m, std::string_view post_office, Submission* out,
                          SubmissionRefusal* refusal) {
  if (m.subject.rfind("BROKEN", 0) == 0) return Status::Corrupt("test conversion: broken message");
  if (m.subject.rfind("NOTHING", 0) == 0) return Status::Ok();  // a conversion bug: neither output
  if (m.subject.rfind("NOAUTHOR", 0) == 0) {
    refusal->reason = "no author address";
    return Status::Ok();
  }
  if (m.subject.rfind("REFUSE", 0) == 0) {
    refusal->reason = "mail loop";
    refusal->author_address = AuthorAddress(m.from);
    return Status::Ok();
  }
  out->envelope_from = AuthorAddress(m.from);
  for (const auto* list : {&m.to, &m.cc, &m.bcc})
    for (const auto& r : *list)
      if (r.size() > 12 && r.compare(r.size() - 12, 12, " at INTERNET") == 0) out->recipients.push_back(r.substr(0, r.size() - 12));
  std::string body;
  for (const auto& item : m.items) body += item.data;
  out->message_id = "<" + Fnv(std::string(post_office) + "\n" + m.from + "\n" + m.subject + "\n" + body) + "@test>";
  out->mime = "From: <" + out->envelope_from + ">\r\nSubject: " + m.subject + "\r\nMessage-ID: " + out->message_id +
              "\r\n\r\n" + body;
  return Status::Ok();
}

}  // namespace ccmail::submitter::test
