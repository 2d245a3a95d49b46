// ccmail-lint - check cc:Mail import files against every rule the writer follows.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "ccmail/format/reader.h"
#include "common_cli.h"

using namespace ccmail;
using namespace ccmail::format;

int main(int argc, char** argv) {
  CLI::App app{
      "Validate cc:Mail import files (the /ITEMSIZE layout with byte counts, or the keyword-delimited "
      "layout) against the rules ccmail-bridge writes by: CRLF lines, no NUL/CTRL-Z/control bytes in "
      "text, Message:/From:/Date:/To:/Cc:/Bcc:/Subject:/Contents: in order, byte counts, item sizes, "
      "8.3 file names, header and item limits. The settings (itemsize, date_format, header_limit, ...) "
      "come from the same configuration as the exporter.\n\n"
      "Each broken rule is printed as FILE:OFFSET: REASON (OFFSET is a byte offset).\n\n"
      "Examples:\n"
      "  ccmail-lint /var/spool/ccmail-bridge/outbox/HUBPO2/M0000001.CCM\n"
      "  ccmail-convert -r jsmith@corp.example msg.eml | ccmail-lint -\n"
      "  ccmail-lint --detect-layout -o date_format=mdy4 import.bak/*.ccm\n\n"
      "Exit status: 0 every file follows the rules; 1 a rule is broken; 2 usage, configuration or read error."};
  cli::ConfigOptions config_options;
  std::vector<std::string> files;
  bool detect = false, verbose = false;
  cli::AddConfigOptions(app, &config_options, "Override a setting, name=value (repeatable)");
  app.add_flag("-d,--detect-layout", detect, "Decide /ITEMSIZE or keyword layout from each file instead of the itemsize setting");
  app.add_flag("-v,--verbose", verbose, "Also print a summary line for good files");
  app.add_option("files", files, "Import files to check (- for standard input)")->required();
  if (int rc = cli::ParseOrUsageError(app, argc, argv); rc >= 0) return rc;

  Config cfg;
  FormatSettings fs;
  if (!cli::LoadSettings(config_options, &cfg, &fs, "ccmail-lint")) return 2;
  int rc = 0;
  for (const std::string& f : files) {
    std::stringstream buf;
    if (f == "-") {
      buf << std::cin.rdbuf();
    } else {
      std::ifstream in(f, std::ios::binary);
      if (!in) { std::fprintf(stderr, "ccmail-lint: cannot open %s\n", f.c_str()); rc = 2; continue; }
      buf << in.rdbuf();
    }
    const std::string data = buf.str();
    ReadOptions opt;
    opt.keep_data = false;
    opt.detect_layout = detect;
    ReadResult r = ReadImportFile(data, fs, opt);
    for (const Violation& v : r.violations)
      std::printf("%s:%llu: %s\n", f.c_str(), static_cast<unsigned long long>(v.offset), v.reason.c_str());
    if (!r.ok()) { if (rc == 0) rc = 1; }
    else if (verbose) std::printf("%s: OK, %zu message(s), %s layout\n", f.c_str(), r.messages.size(), r.itemsize ? "/ITEMSIZE" : "keyword");
  }
  return rc;
}
