// to_mime_date.cpp - the EXPORT Date line -> an RFC 5322 date (the way back).
#include <glib.h>

#include <cctype>
#include <cstdio>

#include "ccmail/common/ascii.h"
#include "to_mime_internal.h"

namespace ccmail::submitter::internal {
namespace {

// The post office's zone: an IANA name, or the host's local time when empty.
GTimeZone* NewTimeZone(const std::string& name) {
  if (name.empty()) return g_time_zone_new_local();
  return g_time_zone_new_identifier(name.c_str());  // nullptr when glib does not know it
}

// Reads up to max_digits digits at text[*i]; false when there is none.
bool TakeNumber(std::string_view text, size_t* i, int max_digits, int* value, int* digits) {
  *value = 0;
  *digits = 0;
  while (*i < text.size() && std::isdigit(static_cast<unsigned char>(text[*i]))) {
    if (++*digits > max_digits) return false;
    *value = *value * 10 + (text[*i] - '0');
    ++*i;
  }
  return *digits > 0;
}

}  // namespace

std::optional<ExportDate> ParseExportDate(std::string_view text, const ReverseSettings& s) {
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  size_t i = 0;
  int a = 0, b = 0, year = 0, hour = 0, minute = 0, second = 0, digits = 0, year_digits = 0;
  if (!TakeNumber(text, &i, 2, &a, &digits) || i >= text.size() || text[i++] != '/') return std::nullopt;
  if (!TakeNumber(text, &i, 2, &b, &digits) || i >= text.size() || text[i++] != '/') return std::nullopt;
  if (!TakeNumber(text, &i, 4, &year, &year_digits) || (year_digits != 2 && year_digits != 4)) return std::nullopt;
  if (i >= text.size() || text[i++] != ' ') return std::nullopt;
  if (!TakeNumber(text, &i, 2, &hour, &digits) || i >= text.size() || text[i++] != ':') return std::nullopt;
  if (!TakeNumber(text, &i, 2, &minute, &digits) || digits != 2) return std::nullopt;
  if (i < text.size() && text[i] == ':') {
    ++i;
    if (!TakeNumber(text, &i, 2, &second, &digits) || digits != 2) return std::nullopt;
  }
  // A 12-hour clock (an EXPORT run in such a locale): "3:10PM", "3:10 pm".
  std::string_view rest = text.substr(i);
  if (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  if (!rest.empty()) {
    if (hour < 1 || hour > 12) return std::nullopt;
    if (EqualsIgnoreAsciiCase(rest, "AM")) hour = hour == 12 ? 0 : hour;
    else if (EqualsIgnoreAsciiCase(rest, "PM")) hour = hour == 12 ? 12 : hour + 12;
    else return std::nullopt;
  }
  const bool day_first = s.format.date_format == format::DateFormat::kDmy2 || s.format.date_format == format::DateFormat::kDmy4;
  const int month = day_first ? b : a;
  const int day = day_first ? a : b;
  if (year_digits == 2) year += year >= s.year_pivot ? 1900 : 2000;
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return std::nullopt;
  if (day > g_date_get_days_in_month(static_cast<GDateMonth>(month), static_cast<GDateYear>(year))) return std::nullopt;
  GTimeZone* tz = NewTimeZone(s.format.timezone);
  if (tz == nullptr) return std::nullopt;
  GDateTime* dt = g_date_time_new(tz, year, month, day, hour, minute, second);
  g_time_zone_unref(tz);
  if (dt == nullptr) return std::nullopt;
  ExportDate out;
  out.when = static_cast<time_t>(g_date_time_to_unix(dt));
  out.utc_offset = static_cast<int>(g_date_time_get_utc_offset(dt) / G_TIME_SPAN_SECOND);
  g_date_time_unref(dt);
  return out;
}

std::string FormatRfc5322Date(const ExportDate& date) {
  static const char* const kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const time_t local = date.when + date.utc_offset;
  struct tm tm;
  gmtime_r(&local, &tm);
  const int off = date.utc_offset < 0 ? -date.utc_offset : date.utc_offset;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %d %s %04d %02d:%02d:%02d %c%02d%02d", kDays[tm.tm_wday], tm.tm_mday,
                kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
                date.utc_offset < 0 ? '-' : '+', off / 3600, (off % 3600) / 60);
  return buf;
}

}  // namespace ccmail::submitter::internal
