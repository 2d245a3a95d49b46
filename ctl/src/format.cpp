// format.cpp - see format.h.
#include "format.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <ctime>

#include "ccmail/common/escape.h"

namespace ccmail::ctl {

std::string FormatAge(int64_t ms) {
  if (ms < 0) ms = 0;
  char buf[64];
  if (ms < 1000) {
    std::snprintf(buf, sizeof buf, "%lldms", static_cast<long long>(ms));
    return buf;
  }
  long long s = ms / 1000;
  if (s < 60) std::snprintf(buf, sizeof buf, "%llds", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%lldm %02llds", s / 60, s % 60);
  else if (s < 86400) std::snprintf(buf, sizeof buf, "%lldh %02lldm", s / 3600, s % 3600 / 60);
  else std::snprintf(buf, sizeof buf, "%lldd %02lldh", s / 86400, s % 86400 / 3600);
  return buf;
}

std::string FormatBytes(uint64_t bytes) {
  static const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  char buf[64];
  if (bytes < 1024) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
    return buf;
  }
  double v = static_cast<double>(bytes) / 1024;
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  return buf;
}

std::string FormatUtc(int64_t ms) {
  time_t t = static_cast<time_t>(ms / 1000);
  struct tm tm;
  if (gmtime_r(&t, &tm) == nullptr) return "?";
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

size_t DisplayWidth(const std::string& s) {
  size_t w = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++w;
  return w;
}

void TextTable::Add(std::vector<std::string> row) {
  for (std::string& cell : row) cell = EscapeControls(cell);
  rows_.push_back(std::move(row));
}

std::string TextTable::Render() const {
  std::vector<size_t> width;
  for (const auto& r : rows_) {
    if (width.size() < r.size()) width.resize(r.size(), 0);
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], DisplayWidth(r[i]));
  }
  std::string out;
  for (const auto& r : rows_) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line.append(width[i] - DisplayWidth(r[i]) + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

void KeyValueText::Add(std::string key, std::string value, int indent) {
  lines_.push_back(Line{EscapeControls(key), EscapeControls(value), indent});
}

std::string KeyValueText::Render() const {
  size_t w = 0;
  for (const auto& l : lines_) w = std::max(w, static_cast<size_t>(l.indent) + DisplayWidth(l.key));
  std::string out;
  for (const auto& l : lines_) {
    std::string line(static_cast<size_t>(l.indent), ' ');
    line += l.key;
    if (!l.value.empty()) {
      line.append(w - static_cast<size_t>(l.indent) - DisplayWidth(l.key) + 2, ' ');
      line += l.value;
    }
    out += line + "\n";
  }
  return out;
}

}  // namespace ccmail::ctl
