// rules.cpp - the uncertain rules of the import format, one function each (see rules.h).
#include "ccmail/format/rules.h"

#include <glib.h>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <span>
#include <utility>
#include <unordered_map>

#include "ccmail/common/ascii.h"
#include "codepage.h"

namespace ccmail::format {
namespace {

// GTimeZone lookups read zoneinfo files; keep one per thread for the last name used.
struct TzCache {
  std::string name;
  GTimeZone* tz = nullptr;
  ~TzCache() { if (tz) g_time_zone_unref(tz); }
};

GTimeZone* TimeZoneFor(const std::string& name) {
  thread_local TzCache cache;
  if (cache.tz == nullptr || cache.name != name) {
    if (cache.tz) g_time_zone_unref(cache.tz);
    cache.tz = name.empty() ? g_time_zone_new_local() : g_time_zone_new_identifier(name.c_str());
    if (cache.tz == nullptr) cache.tz = g_time_zone_new_utc();  // LoadFormatSettings rejects unknown names
    cache.name = name;
  }
  return cache.tz;
}

bool FourDigitYear(DateFormat f) { return f == DateFormat::kMdy4 || f == DateFormat::kDmy4; }
bool DayFirst(DateFormat f) { return f == DateFormat::kDmy2 || f == DateFormat::kDmy4; }

}  // namespace

uint64_t ItemSizeCount(uint64_t section_bytes) {
  // docs/FORMAT.md §2.3: the count excludes its own line and covers its section exactly.
  return section_bytes;
}

bool NeedsKeywordProtection(std::string_view line) {
  size_t i = 0;
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  std::string_view rest = line.substr(i);
  if (StartsWithIgnoreAsciiCase(rest, "message:") || StartsWithIgnoreAsciiCase(rest, "contents:")) return true;
  // Header keywords too: if IMPORT ever read an addressee line inside item text, a
  // hostile body must not be able to add a recipient (IMPORT delivers to every To:).
  for (std::string_view kw : {"from:", "date:", "to:", "cc:", "bcc:", "subject:"})
    if (StartsWithIgnoreAsciiCase(rest, kw)) return true;
  // "<word> item:" - one word of letters, then " item:".
  size_t w = 0;
  while (w < rest.size() && std::isalpha(static_cast<unsigned char>(rest[w]))) ++w;
  if (w == 0) return false;
  return StartsWithIgnoreAsciiCase(rest.substr(w), " item:");
}

std::string FormatCcDate(time_t when, const FormatSettings& settings) {
  GDateTime* utc = g_date_time_new_from_unix_utc(static_cast<gint64>(when));
  if (utc == nullptr) utc = g_date_time_new_from_unix_utc(0);
  GDateTime* local = g_date_time_to_timezone(utc, TimeZoneFor(settings.timezone));
  g_date_time_unref(utc);
  const int year = g_date_time_get_year(local);
  const int month = g_date_time_get_month(local);
  const int day = g_date_time_get_day_of_month(local);
  const int hour = g_date_time_get_hour(local);
  const int minute = g_date_time_get_minute(local);
  g_date_time_unref(local);
  const int shown_year = FourDigitYear(settings.date_format) ? year : year % 100;
  const int first = DayFirst(settings.date_format) ? day : month;
  const int second = DayFirst(settings.date_format) ? month : day;
  char buf[64];
  if (FourDigitYear(settings.date_format))
    std::snprintf(buf, sizeof buf, "%d/%d/%d %d:%02d", first, second, shown_year, hour, minute);
  else
    std::snprintf(buf, sizeof buf, "%d/%d/%02d %d:%02d", first, second, shown_year, hour, minute);
  return buf;
}

std::optional<time_t> ParseCcDate(std::string_view text, const FormatSettings& settings) {
  // Digits only, exactly the shape FormatCcDate writes.
  int v[5] = {0, 0, 0, 0, 0};
  int digits[5] = {0, 0, 0, 0, 0};
  const char seps[4] = {'/', '/', ' ', ':'};
  size_t i = 0;
  for (int f = 0; f < 5; ++f) {
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      if (++digits[f] > 4) return std::nullopt;
      v[f] = v[f] * 10 + (text[i] - '0');
      ++i;
    }
    if (digits[f] == 0) return std::nullopt;
    if (f < 4) {
      if (i >= text.size() || text[i] != seps[f]) return std::nullopt;
      ++i;
    }
  }
  if (i != text.size()) return std::nullopt;
  const bool four = FourDigitYear(settings.date_format);
  if (digits[0] > 2 || digits[1] > 2 || digits[3] > 2 || digits[4] != 2) return std::nullopt;
  if (four ? digits[2] != 4 : digits[2] != 2) return std::nullopt;
  int month = DayFirst(settings.date_format) ? v[1] : v[0];
  int day = DayFirst(settings.date_format) ? v[0] : v[1];
  int year = four ? v[2] : (v[2] < 70 ? 2000 + v[2] : 1900 + v[2]);
  if (month < 1 || month > 12 || day < 1 || day > 31 || v[3] > 23 || v[4] > 59) return std::nullopt;
  if (day > g_date_get_days_in_month(static_cast<GDateMonth>(month), static_cast<GDateYear>(year))) return std::nullopt;
  GDateTime* dt = g_date_time_new(TimeZoneFor(settings.timezone), year, month, day, v[3], v[4], 0);
  if (dt == nullptr) return std::nullopt;
  time_t t = static_cast<time_t>(g_date_time_to_unix(dt));
  g_date_time_unref(dt);
  return t;
}

std::string FormatRecipient(const CcMailAddress& who, const FormatSettings& settings) {
  std::string out;
  AppendInCodePage(who.name, settings.codepage, &out);
  if (!who.post_office.empty() && !EqualsIgnoreAsciiCase(who.post_office, settings.local_postoffice)) {
    out += " at ";
    AppendInCodePage(who.post_office, settings.codepage, &out);
  }
  return out;
}

std::string FormatSender(std::string_view sender, const FormatSettings& settings) {
  while (!sender.empty() && (sender.front() == ' ' || sender.front() == '\t' || sender.front() == '<')) sender.remove_prefix(1);
  while (!sender.empty() && (sender.back() == ' ' || sender.back() == '\t' || sender.back() == '>')) sender.remove_suffix(1);
  std::string addr;
  for (unsigned char c : sender) {
    if (c <= 0x20 || c >= 0x7f) addr.push_back('_');        // no spaces: " at " must stay unambiguous
    else if (c == ',' || c == ';') addr.push_back('.');      // commas separate cc:Mail names
    else if (c == '"' || c == '[' || c == ']') continue;     // quotes and brackets never enter From
    else addr.push_back(static_cast<char>(c));
  }
  if (addr.empty()) addr = "MAILER-DAEMON";
  if (addr.size() > 256) addr.resize(256);
  if (settings.uppercase_sender)
    addr = ToUpperAscii(addr);
  return addr + " at " + settings.gateway_postoffice;
}

bool IsUsableSenderAddress(std::string_view addr) {
  const size_t at = addr.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == addr.size() || addr.size() > 256) return false;
  for (unsigned char c : addr)
    if (c <= 0x20 || c >= 0x7f || std::strchr("\",;[]<>()", c)) return false;
  return true;
}

std::string ChooseSenderAddress(std::string_view header_from, std::string_view header_sender,
                                std::string_view envelope_sender, const FormatSettings& settings) {
  if (settings.sender_source == SenderSource::kAuthor) {
    if (IsUsableSenderAddress(header_from)) return std::string(header_from);
    if (IsUsableSenderAddress(header_sender)) return std::string(header_sender);
  }
  return std::string(envelope_sender);
}

std::string CleanSubject(std::string_view utf8, const FormatSettings& settings) {
  // One line first (controls, including CR/LF/TAB, become spaces; runs collapse).
  std::string line;
  line.reserve(utf8.size());
  bool space = true;  // also trims leading white space
  for (unsigned char c : utf8) {
    if (c < 0x20 || c == 0x7f || c == ' ') {
      if (!space) line.push_back(' ');
      space = true;
      continue;
    }
    space = false;
    if (settings.subject_brackets && c == '[') c = '(';
    else if (settings.subject_brackets && c == ']') c = ')';
    line.push_back(static_cast<char>(c));
  }
  std::string out;
  AppendInCodePage(line, settings.codepage, &out);
  if (out.size() > settings.subject_max) out.resize(settings.subject_max);
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string RawHeaderBytesToUtf8(std::string_view bytes) {
  return Utf8OrReplacement(bytes);
}

uint64_t HeaderBlockBytes(uint64_t header_lines, uint64_t contents_bytes, const FormatSettings& settings) {
  auto count_line = [](uint64_t n) { return static_cast<uint64_t>(std::to_string(ItemSizeCount(n)).size()) + 2; };
  constexpr uint64_t kMessageLine = 10;   // "Message:\r\n"
  constexpr uint64_t kContentsLine = 11;  // "Contents:\r\n"
  if (!settings.itemsize) return kMessageLine + header_lines + kContentsLine;
  const uint64_t contents_count = count_line(contents_bytes);
  const uint64_t message_bytes = header_lines + kContentsLine + contents_count + contents_bytes;
  return kMessageLine + count_line(message_bytes) + header_lines + kContentsLine + contents_count;
}

bool HeaderBlockFits(uint64_t header_block_bytes, const FormatSettings& settings) {
  return header_block_bytes <= settings.header_limit;
}

std::string_view RawFileTerminator(const FormatSettings& settings) {
  return settings.raw_file_crlf ? std::string_view("\r\n") : std::string_view();
}

time_t ChooseMessageDate(std::optional<time_t> header_date, time_t received, const FormatSettings& settings) {
  if (!header_date) return received;
  const int64_t t = static_cast<int64_t>(*header_date);
  constexpr int64_t kYear2070 = 3155760000LL;  // 2070-01-01 UTC: "70" would read as 1970
  if (t < 0 || t > static_cast<int64_t>(received) + 86400) return received;
  if (!FourDigitYear(settings.date_format) && t >= kYear2070 - 86400) return received;
  return *header_date;
}

bool IsDosDeviceName(std::string_view name) {
  std::string base(name.substr(0, name.find('.')));
  while (!base.empty() && base.back() == ' ') base.pop_back();
  base = ToUpperAscii(base);
  static const char* const kDevices[] = {"CON", "PRN", "AUX", "NUL", "CLOCK$", "CONIN$", "CONOUT$"};
  for (const char* d : kDevices)
    if (base == d) return true;
  if (base.size() == 4 && (base.compare(0, 3, "COM") == 0 || base.compare(0, 3, "LPT") == 0) &&
      base[3] >= '1' && base[3] <= '9')
    return true;
  return false;
}

// PMDF-style built-in table (MIME-CONTENT-TYPES-TO-CC); administrators extend it with
// mime_type_map. In table order: on the way back the first type of an extension is its type.
static std::span<const std::pair<std::string_view, std::string_view>> BuiltInMimeTypes() {
  static constexpr std::pair<std::string_view, std::string_view> kTable[] = {
      {"text/plain", "TXT"}, {"text/html", "HTM"}, {"text/csv", "CSV"}, {"text/calendar", "ICS"},
      {"text/xml", "XML"}, {"text/rtf", "RTF"}, {"text/enriched", "TXT"}, {"text/richtext", "RTF"},
      {"text/vcard", "VCF"}, {"text/x-vcard", "VCF"}, {"application/xml", "XML"},
      {"application/pdf", "PDF"}, {"application/postscript", "PS"}, {"application/rtf", "RTF"},
      {"application/zip", "ZIP"}, {"application/x-zip-compressed", "ZIP"}, {"application/gzip", "GZ"},
      {"application/x-gzip", "GZ"}, {"application/x-tar", "TAR"}, {"application/x-7z-compressed", "7Z"},
      {"application/msword", "DOC"}, {"application/vnd.ms-excel", "XLS"},
      {"application/vnd.ms-powerpoint", "PPT"},
      {"application/vnd.openxmlformats-officedocument.wordprocessingml.document", "DOC"},
      {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "XLS"},
      {"application/vnd.openxmlformats-officedocument.presentationml.presentation", "PPT"},
      {"application/vnd.oasis.opendocument.text", "ODT"},
      {"application/vnd.oasis.opendocument.spreadsheet", "ODS"},
      {"application/json", "JSN"}, {"application/octet-stream", "BIN"}, {"application/ms-tnef", "DAT"},
      {"application/pkcs7-signature", "P7S"}, {"application/x-pkcs7-signature", "P7S"},
      {"application/pgp-signature", "ASC"}, {"application/pgp-keys", "ASC"},
      {"image/gif", "GIF"}, {"image/jpeg", "JPG"}, {"image/pjpeg", "JPG"}, {"image/png", "PNG"},
      {"image/tiff", "TIF"}, {"image/bmp", "BMP"}, {"image/x-pcx", "PCX"}, {"image/svg+xml", "SVG"},
      {"image/webp", "WEB"}, {"audio/mpeg", "MP3"}, {"audio/wav", "WAV"}, {"audio/x-wav", "WAV"},
      {"audio/basic", "AU"}, {"video/mpeg", "MPG"}, {"video/mp4", "MP4"}, {"video/quicktime", "MOV"},
      {"video/x-msvideo", "AVI"}, {"message/rfc822", "EML"}, {"message/delivery-status", "TXT"},
  };
  return kTable;
}

std::string ExtensionForMimeType(std::string_view mime_type, const FormatSettings& settings) {
  std::string type = ToLowerAscii(mime_type);
  if (size_t semi = type.find(';'); semi != std::string::npos) type.resize(semi);
  while (!type.empty() && type.back() == ' ') type.pop_back();
  if (auto it = settings.mime_type_map.find(type); it != settings.mime_type_map.end()) return it->second;
  for (const auto& [known, ext] : BuiltInMimeTypes())
    if (known == type) return std::string(ext);
  if (type.compare(0, 5, "text/") == 0) return "TXT";
  return "DAT";
}

std::string MimeTypeForExtension(std::string_view extension, const FormatSettings& settings) {
  const std::string ext = ToUpperAscii(extension);
  if (ext.empty()) return "application/octet-stream";
  for (const auto& [type, mapped] : settings.mime_type_map)
    if (mapped == ext) return type;
  // Not reversed: DAT is every unknown type's extension (and TNEF's), EML an attached message
  // (message/rfc822 cannot be base64, RFC 2046 5.2.1), BIN is octet-stream anyway.
  if (ext == "DAT" || ext == "EML") return "application/octet-stream";
  for (const auto& [type, mapped] : BuiltInMimeTypes())
    if (mapped == ext) return std::string(type);
  return "application/octet-stream";
}

std::string DosFileName(std::string_view utf8_name, std::string_view mime_type,
                        const FormatSettings& settings, std::set<std::string>* used) {
  // Last path component only: no directories, drive letters or UNC parts survive.
  size_t cut = utf8_name.find_last_of("/\\:");
  if (cut != std::string_view::npos) utf8_name = utf8_name.substr(cut + 1);
  const bool longn = settings.long_filenames;
  auto keep = [longn](unsigned char c) -> char {
    if (c >= 0x80 || c < 0x20 || c == 0x7f) return '_';
    if (std::isalnum(c)) return longn ? static_cast<char>(c) : ToUpperAscii(static_cast<char>(c));
    if (std::strchr("_-$~!#%&{}@'`()", c)) return static_cast<char>(c);
    if (longn && (c == ' ' || c == '+' || c == ',' || c == ';' || c == '=')) return c == ' ' ? ' ' : static_cast<char>(c);
    return '_';
  };
  std::string name(utf8_name);
  // Collapse a UTF-8 multi-byte character to one '_', not one per byte.
  std::string collapsed;
  for (size_t i = 0; i < name.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    if ((c & 0xc0) == 0x80) continue;
    collapsed.push_back(static_cast<char>(c));
  }
  size_t dot = collapsed.find_last_of('.');
  std::string base_raw = dot == std::string::npos ? collapsed : collapsed.substr(0, dot);
  std::string ext_raw = dot == std::string::npos ? std::string() : collapsed.substr(dot + 1);
  std::string base, ext;
  for (unsigned char c : base_raw) {
    if (c == '.' || (!longn && c == ' ')) continue;  // DOS base names hold no dots
    base.push_back(keep(c));
  }
  for (unsigned char c : ext_raw) {
    if (c == '.' || c == ' ') continue;
    ext.push_back(ToUpperAscii(keep(c)));
  }
  while (!base.empty() && base.front() == ' ') base.erase(0, 1);
  while (!base.empty() && base.back() == ' ') base.pop_back();
  const size_t base_max = longn ? 64 : 8;
  const size_t ext_max = longn ? 8 : 3;
  if (ext.empty()) ext = ExtensionForMimeType(mime_type, settings);
  if (ext.size() > ext_max) ext.resize(ext_max);
  if (base.empty()) base = "ATTACH";
  if (base.size() > base_max) base.resize(base_max);
  while (!base.empty() && base.back() == ' ') base.pop_back();
  if (IsDosDeviceName(base)) base = ("_" + base).substr(0, base_max);
  auto compose = [&](const std::string& b) { return ext.empty() ? b : b + "." + ext; };
  auto upper_key = [](const std::string& s) { return ToUpperAscii(s); };
  std::string result = compose(base);
  for (int n = 1; used->count(upper_key(result)) != 0; ++n) {
    std::string suffix = "~" + std::to_string(n);
    std::string b = base.substr(0, base.size() + suffix.size() > base_max ? base_max - suffix.size() : base.size());
    result = compose(b + suffix);
  }
  used->insert(upper_key(result));
  return result;
}

}  // namespace ccmail::format
