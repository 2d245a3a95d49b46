// to_mime_diff_tool - the way back for to_mime_differential_test.py: reads EXPORT text on
// standard input (either layout, hex or raw files per the arguments), converts every message
// and writes for each one a record Python's email package checks:
//   MESSAGE <index>\n
//   REFUSAL <reason>\n                   or   FROM <envelope>\n RCPT <addr>\n ... ID <id>\n MIME <n>\n<n bytes>\n
//   ERROR <status>\n                     (a non-OK Status)
// usage: to_mime_diff_tool CODEPAGE(850|1252) FILES(hex|raw)
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>

#include "ccmail/format/address_map.h"
#include "ccmail/format/reader.h"
#include "ccmail/submitter/to_mime.h"

int main(int argc, char** argv) {
  using namespace ccmail;
  if (argc != 3) {
    std::cerr << "usage: to_mime_diff_tool 850|1252 hex|raw\n";
    return 2;
  }
  submitter::ReverseSettings s;
  s.format.codepage = std::string(argv[1]) == "1252" ? format::CodePage::kCp1252 : format::CodePage::kCp850;
  s.format.files = std::string(argv[2]) == "raw" ? format::FileData::kRaw : format::FileData::kHex;
  s.format.long_filenames = true;
  s.format.timezone = "Europe/Berlin";
  s.author_domain = "corp.example";
  s.origin_marker = "diff.bridge.example";
  std::shared_ptr<const format::AddressMap> map;
  Status st = format::AddressMap::Parse("jsmith@corp.example  Smith, John at HUBPO2\n"
                                        "mgarcia@corp.example  Garcia, Maria at HUBPO2\n",
                                        "diff-map", {}, &map);
  if (!st.ok()) {
    std::cerr << st.ToString() << "\n";
    return 2;
  }
  const std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  format::ReadResult file = format::ReadImportFile(input, s.format, {.detect_layout = true, .exported = true});
  for (const auto& v : file.violations) std::cerr << "reader: " << v.offset << ": " << v.reason << "\n";
  if (!file.ok()) return 3;
  for (size_t i = 0; i < file.messages.size(); ++i) {
    std::cout << "MESSAGE " << i << "\n";
    submitter::OutgoingMessage out;
    submitter::Refusal refusal;
    st = submitter::ConvertExportMessage(file.messages[i], "HUBPO2", *map, s, &out, &refusal);
    if (!st.ok()) {
      std::cout << "ERROR " << st.ToString() << "\n";
    } else if (!refusal.reason.empty()) {
      std::cout << "REFUSAL " << refusal.reason << "\n";
    } else {
      std::cout << "FROM " << out.envelope_from << "\n";
      for (const std::string& r : out.recipients) std::cout << "RCPT " << r << "\n";
      std::cout << "ID " << out.message_id << "\nMIME " << out.mime.size() << "\n" << out.mime << "\n";
    }
  }
  return 0;
}
