// format.h - text for people: ages, sizes, aligned tables.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace ccmail::ctl {

// "850ms", "42s", "5m 02s", "3h 07m", "2d 04h".
std::string FormatAge(int64_t ms);
// "512 B", "12.3 KiB", "4.0 GiB".
std::string FormatBytes(uint64_t bytes);
// "2026-11-30 23:51:02 UTC".
std::string FormatUtc(int64_t ms);

// Columns padded to their widest cell; the last column is not padded. Cells hold outside
// text (addresses, reasons): control characters are shown escaped (EscapeControls), so a
// cell can neither add a line nor drive the terminal.
class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header) { Add(std::move(header)); }
  void Add(std::vector<std::string> row);
  std::string Render() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// "name<pad>value" lines with values starting in one column ("  free      65530"); keys
// and values escaped as TextTable's cells.
class KeyValueText {
 public:
  void Add(std::string key, std::string value, int indent = 0);
  std::string Render() const;

 private:
  struct Line {
    std::string key;
    std::string value;
    int indent;
  };
  std::vector<Line> lines_;
};

// Display width of UTF-8 text (code points; good enough for names and addresses).
size_t DisplayWidth(const std::string& s);

}  // namespace ccmail::ctl
