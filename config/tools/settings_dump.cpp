// ccmail-settings-dump: prints the settings table (config/src/settings.cpp) as a
// Markdown table (docs/ARCHITECTURE.md), a commented default ccmail-bridge.conf, or
// roff for ccmail-bridge.conf(5), so every document is generated from the one table.
#include <cstdio>
#include <string>
#include <string_view>

#include "ccmail/config/settings.h"

namespace {

std::string Escape(std::string_view text, std::string_view special, std::string_view prefix) {
  std::string out;
  for (char c : text) {
    if (special.find(c) != std::string_view::npos) out += prefix;
    out += c;
  }
  return out;
}

// Wraps text into lines of at most `width` characters, each starting with `lead`.
std::string Wrap(std::string_view text, std::string_view lead, size_t width) {
  std::string out, line;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t sp = text.find(' ', pos);
    std::string_view word = text.substr(pos, sp == std::string_view::npos ? std::string_view::npos : sp - pos);
    pos = sp == std::string_view::npos ? text.size() : sp + 1;
    if (!line.empty() && lead.size() + line.size() + 1 + word.size() > width) {
      out.append(lead).append(line).append("\n");
      line.clear();
    }
    if (!line.empty()) line += ' ';
    line.append(word);
  }
  if (!line.empty()) out.append(lead).append(line).append("\n");
  return out;
}

void PrintMarkdown() {
  std::printf("| setting | default | component | meaning |\n| --- | --- | --- | --- |\n");
  for (const auto& s : ccmail::AllSettings()) {
    const std::string def = s.default_value.empty() ? "(empty)" : "`" + std::string(s.default_value) + "`";
    std::printf("| `%.*s` | %s | %.*s | %s |\n", static_cast<int>(s.name.size()), s.name.data(), def.c_str(),
                static_cast<int>(s.component.size()), s.component.data(),
                Escape(s.meaning, "|", "\\").c_str());
  }
}

void PrintConf() {
  std::printf(
      "# /etc/ccmail-bridge/ccmail-bridge.conf - configuration of ccmail-milter, ccmail-exporter\n"
      "# and ccmailctl. Syntax as Postfix main.cf: \"name = value\"; a line starting with white\n"
      "# space continues the previous one; '#' starts a comment only at the start of a line.\n"
      "# Every setting is shown commented out with its default. See ccmail-bridge.conf(5).\n");
  std::string_view component;
  for (const auto& s : ccmail::AllSettings()) {
    if (s.component != component) {
      component = s.component;
      std::printf("\n# ==== %.*s ====\n", static_cast<int>(component.size()), component.data());
    }
    std::printf("\n%s", Wrap(s.meaning, "# ", 78).c_str());
    std::printf("#%.*s = %.*s\n", static_cast<int>(s.name.size()), s.name.data(),
                static_cast<int>(s.default_value.size()), s.default_value.data());
  }
}

void PrintRoff() {
  for (const auto& s : ccmail::AllSettings()) {
    std::printf(".TP\n.B %.*s\n", static_cast<int>(s.name.size()), s.name.data());
    std::printf("(%.*s; default: \\fI%s\\fR)\n", static_cast<int>(s.component.size()), s.component.data(),
                s.default_value.empty() ? "empty" : Escape(s.default_value, "\\-", "\\").c_str());
    std::printf("%s\n", Escape(s.meaning, "\\", "\\").c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string format = argc > 1 ? argv[1] : "";
  if (format == "--markdown") PrintMarkdown();
  else if (format == "--conf") PrintConf();
  else if (format == "--roff") PrintRoff();
  else {
    std::fprintf(stderr, "usage: ccmail-settings-dump --markdown | --conf | --roff\n");
    return 2;
  }
  return 0;
}
