// settings.cpp - FormatSettings from the "format" rows of ccmail-bridge.conf.
#include "ccmail/format/settings.h"

#include <cctype>
#include <glib.h>

#include "ccmail/common/ascii.h"

namespace ccmail::format {
namespace {

Status Bad(const Config& cfg, const std::string& name, const std::string& why) {
  return Status::InvalidArgument(cfg.Where(name) + ": " + name + ": " + why);
}

// Printable ASCII without the characters that would break an address line.
bool PostOfficeNameOk(const std::string& s) {
  if (s.size() > 64) return false;
  for (unsigned char c : s) {
    if (c < 0x21 || c > 0x7e || c == ',' || c == '"' || c == '[' || c == ']') {
      if (c != ' ') return false;
    }
  }
  return true;
}

}  // namespace

namespace {
struct CodePageNames {
  CodePage code_page;
  const char* setting;  // as written in ccmail.conf
  const char* iconv;
};
// The first row is the default, also returned for a value outside the enum.
constexpr CodePageNames kCodePageNames[] = {
    {CodePage::kCp850, "850", "IBM850"},
    {CodePage::kCp437, "437", "IBM437"},
    {CodePage::kCp1252, "1252", "WINDOWS-1252"},
};

const CodePageNames& NamesOf(CodePage cp) {
  for (const CodePageNames& names : kCodePageNames)
    if (names.code_page == cp) return names;
  return kCodePageNames[0];
}
}  // namespace

const char* CodePageName(CodePage cp) { return NamesOf(cp).setting; }

const char* CodePageIconvName(CodePage cp) { return NamesOf(cp).iconv; }

Status LoadFormatSettings(const Config& cfg, FormatSettings* out) {
  FormatSettings fs;
  CCMAIL_RETURN_IF_ERROR(cfg.GetBool("itemsize", &fs.itemsize));

  std::string v;
  CCMAIL_RETURN_IF_ERROR(cfg.GetEnum("codepage", {"850", "437", "1252"}, &v));
  fs.codepage = v == "437" ? CodePage::kCp437 : v == "1252" ? CodePage::kCp1252 : CodePage::kCp850;

  CCMAIL_RETURN_IF_ERROR(cfg.GetEnum("date_format", {"mdy2", "mdy4", "dmy2", "dmy4"}, &v));
  fs.date_format = v == "mdy4"   ? DateFormat::kMdy4
                   : v == "dmy2" ? DateFormat::kDmy2
                   : v == "dmy4" ? DateFormat::kDmy4
                                 : DateFormat::kMdy2;

  CCMAIL_RETURN_IF_ERROR(cfg.GetString("timezone", &fs.timezone));
  if (!fs.timezone.empty()) {
    // GLib falls back to UTC silently for an unknown name; g_time_zone_new_identifier says so.
    GTimeZone* tz = g_time_zone_new_identifier(fs.timezone.c_str());
    if (tz == nullptr) return Bad(cfg, "timezone", "unknown time zone \"" + fs.timezone + "\" (expected e.g. Europe/Berlin)");
    g_time_zone_unref(tz);
  }

  CCMAIL_RETURN_IF_ERROR(cfg.GetString("local_postoffice", &fs.local_postoffice));
  CCMAIL_RETURN_IF_ERROR(cfg.GetString("default_postoffice", &fs.default_postoffice));
  CCMAIL_RETURN_IF_ERROR(cfg.GetString("gateway_postoffice", &fs.gateway_postoffice));
  for (const char* name : {"local_postoffice", "default_postoffice", "gateway_postoffice"}) {
    std::string post_office = cfg.GetRaw(name);
    if (!PostOfficeNameOk(post_office)) return Bad(cfg, name, "a post office name is printable ASCII without , \" [ ] (at most 64 characters)");
  }
  if (fs.gateway_postoffice.empty()) return Bad(cfg, "gateway_postoffice", "must not be empty");

  CCMAIL_RETURN_IF_ERROR(cfg.GetBool("uppercase_sender", &fs.uppercase_sender));
  CCMAIL_RETURN_IF_ERROR(cfg.GetEnum("sender_source", {"author", "envelope"}, &v));
  fs.sender_source = v == "envelope" ? SenderSource::kEnvelope : SenderSource::kAuthor;
  CCMAIL_RETURN_IF_ERROR(cfg.GetUInt("header_limit", 512, 163840, &fs.header_limit));
  CCMAIL_RETURN_IF_ERROR(cfg.GetUInt("subject_max", 1, 255, &fs.subject_max));
  CCMAIL_RETURN_IF_ERROR(cfg.GetBool("subject_brackets", &fs.subject_brackets));
  CCMAIL_RETURN_IF_ERROR(cfg.GetUInt("text_item_max", 256, 20000, &fs.text_item_max));
  CCMAIL_RETURN_IF_ERROR(cfg.GetEnum("large_body", {"split", "file"}, &v));
  fs.large_body = v == "file" ? LargeBody::kFile : LargeBody::kSplit;
  CCMAIL_RETURN_IF_ERROR(cfg.GetBool("long_filenames", &fs.long_filenames));
  CCMAIL_RETURN_IF_ERROR(cfg.GetUInt("max_items", 4, 1000, &fs.max_items));
  CCMAIL_RETURN_IF_ERROR(cfg.GetUInt("max_file_items", 1, 1000, &fs.max_file_items));
  CCMAIL_RETURN_IF_ERROR(cfg.GetUInt("max_nesting_depth", 1, 64, &fs.max_nesting_depth));

  // mime_type_map: "type EXT" pairs, separated by commas and/or white space.
  std::vector<std::string> words;
  CCMAIL_RETURN_IF_ERROR(cfg.GetList("mime_type_map", &words));
  if (words.size() % 2 != 0) return Bad(cfg, "mime_type_map", "expected pairs \"type/subtype EXT\", got an odd number of words");
  for (size_t i = 0; i < words.size(); i += 2) {
    std::string type = ToLowerAscii(words[i]);
    std::string ext = ToUpperAscii(words[i + 1]);
    if (!ext.empty() && ext[0] == '.') ext.erase(0, 1);
    size_t slash = type.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == type.size())
      return Bad(cfg, "mime_type_map", "\"" + words[i] + "\" is not a MIME type/subtype");
    if (ext.empty() || ext.size() > 3) return Bad(cfg, "mime_type_map", "extension \"" + words[i + 1] + "\" must be 1-3 characters");
    for (char c : ext)
      if (!std::isalnum(static_cast<unsigned char>(c))) return Bad(cfg, "mime_type_map", "extension \"" + words[i + 1] + "\" must be letters/digits");
    fs.mime_type_map[type] = ext;
  }

  CCMAIL_RETURN_IF_ERROR(cfg.GetEnum("files", {"raw", "hex"}, &v));
  fs.files = v == "hex" ? FileData::kHex : FileData::kRaw;
  if (fs.files == FileData::kRaw && !fs.itemsize)
    return Bad(cfg, "files", "raw file data needs itemsize = yes (without byte counts binary data cannot be delimited); use files = hex");
  CCMAIL_RETURN_IF_ERROR(cfg.GetBool("headers_item", &fs.headers_item));
  CCMAIL_RETURN_IF_ERROR(cfg.GetBool("raw_file_crlf", &fs.raw_file_crlf));
  *out = std::move(fs);
  return Status::Ok();
}

}  // namespace ccmail::format
