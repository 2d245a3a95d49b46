// reader.h - parse and validate cc:Mail import files (both layouts).
//
// SYNOPSIS
//   ReadResult r = ReadImportFile(bytes, settings, ReadOptions{});
//   for (const Violation& v : r.violations) printf("%llu: %s\n", v.offset, v.reason.c_str());
//   for (const ImportMessage& m : r.messages) ... m.to, m.items[i].data ...
//
// DESCRIPTION
//   The reader knows the same rules the writer follows (docs/FORMAT.md §8 and
//   rules.h) and reports every broken one with the byte offset where it was
//   found and a reason, continuing where it safely can: CRLF line ends; no NUL,
//   0x1A or C0 controls except TAB in text; "Message:" then From, Date (in
//   date_format), To/Cc/Bcc (one address a line, at least one), Subject
//   (within subject_max, no [ ] when subject_brackets), "Contents:", at least
//   one item; header block (Message: to the Contents: count) at most header_limit; item keywords "Text item:" /
//   "File item:"; text items non-empty and within text_item_max; file names
//   unique, no DOS device or path names (8.3 upper case unless long_filenames);
//   at most max_items items; with /ITEMSIZE, every count line decimal and equal
//   to ItemSizeCount() of its section; without it, no unprotected keyword line
//   inside item data; files=hex data well-formed.
//
//   ReadOptions::exported relaxes the rules that only our writer promises (see there).
//
//   The layout comes from settings.itemsize unless options.detect_layout, in
//   which case the line after the first "Message:" decides (digits: /ITEMSIZE).
//
// THREAD SAFETY
//   Pure function of its arguments.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ccmail/format/settings.h"

namespace ccmail::format {

struct Violation {
  uint64_t offset = 0;   // byte offset in the file
  std::string reason;
};

struct ImportItem {
  enum class Kind { kText, kFile } kind = Kind::kText;
  std::string title;     // text after "Text item: " / "File item: "
  uint64_t offset = 0;   // offset of the keyword line
  std::string data;      // text (CRLF lines) or decoded file bytes; empty unless keep_data
  uint64_t size = 0;     // bytes of data (decoded for hex files)
};

struct ImportMessage {
  uint64_t offset = 0;   // offset of "Message:"
  std::string from, date, subject;
  std::vector<std::string> to, cc, bcc;
  std::vector<ImportItem> items;
};

struct ReadOptions {
  bool keep_data = true;       // fill ImportItem::data
  bool detect_layout = false;  // choose /ITEMSIZE or keyword layout from the file
  // The file is cc:Mail EXPORT output (the way back), not ours: From may be a bare local name,
  // a File item title may carry the date/time EXPORT appends (any name, no 8.3 check),
  // subjects are not held to subject_max or subject_brackets, and hex digits may be lower case.
  bool exported = false;
  size_t max_violations = 1000;
};

struct ReadResult {
  std::vector<ImportMessage> messages;
  std::vector<Violation> violations;  // empty: the file follows every rule
  bool itemsize = true;               // the layout that was used
  bool ok() const { return violations.empty(); }
};

ReadResult ReadImportFile(std::string_view file, const FormatSettings& settings,
                          const ReadOptions& options = {});

}  // namespace ccmail::format
