// settings.h - the cc:Mail import-file settings, typed once from ccmail-bridge.conf.
//
// SYNOPSIS
//   FormatSettings fs;
//   Status s = LoadFormatSettings(config, &fs);   // rows of component "format"
//
// DESCRIPTION
//   Every uncertain rule of the cc:Mail import format is a setting
//   (docs/FORMAT.md §6 and §7). LoadFormatSettings() reads each row of
//   component "format" from a ccmail::Config, checks it, and returns
//   kInvalidArgument naming "<file>:<line>: <setting>: <reason>" (or "default" /
//   "command line" when the value did not come from the file) on a bad value.
//
//   A FormatSettings is a plain value: copy it freely, share it read-only
//   between threads.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "ccmail/common/status.h"
#include "ccmail/config/config.h"

namespace ccmail::format {

enum class CodePage { kCp850, kCp437, kCp1252 };
enum class DateFormat { kMdy2, kMdy4, kDmy2, kDmy4 };
enum class LargeBody { kSplit, kFile };
enum class FileData { kRaw, kHex };
enum class SenderSource { kAuthor, kEnvelope };

struct FormatSettings {
  bool itemsize = true;                    // /ITEMSIZE layout (byte counts); false: keyword-delimited
  CodePage codepage = CodePage::kCp850;
  DateFormat date_format = DateFormat::kMdy2;
  std::string timezone;                    // IANA name; empty: the host's local time
  std::string local_postoffice;            // its users are written bare (ANR)
  std::string default_postoffice;          // PO of user@<ccmail domain> without a map entry
  std::string gateway_postoffice = "INTERNET";
  bool uppercase_sender = false;
  SenderSource sender_source = SenderSource::kAuthor;  // whose address the From line shows
  uint64_t header_limit = 4000;            // header block (Message: .. Contents: count, HeaderBlockBytes) at most this
  uint64_t subject_max = 60;               // characters (= bytes in a single-byte code page)
  bool subject_brackets = true;            // [ ] -> ( )
  uint64_t text_item_max = 20000;          // bytes of one text item's data
  LargeBody large_body = LargeBody::kSplit;
  bool long_filenames = false;
  uint64_t max_file_items = 16;           // file items per message (docs/FORMAT.md §3.8); the rest in the notice
  uint64_t max_items = 20;                 // items per message, notices included (>= 4: text, UNNAMED.TXT, Notice, Headers)
  uint64_t max_nesting_depth = 8;          // MIME depth converted
  std::map<std::string, std::string> mime_type_map;  // lower-case type -> upper-case extension (extra rules)
  FileData files = FileData::kRaw;
  bool headers_item = true;
  bool raw_file_crlf = true;               // files=raw: a CRLF after the data, outside the item count
};

// Reads every "format" row of config into *out (defaults for unset rows).
Status LoadFormatSettings(const Config& config, FormatSettings* out);

// "850", "437", "1252" and the glibc iconv name ("IBM850", ...).
const char* CodePageName(CodePage cp);
const char* CodePageIconvName(CodePage cp);

}  // namespace ccmail::format
