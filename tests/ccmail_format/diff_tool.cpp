// diff_tool - the converter and the reader side of differential_test.py.
//
// Usage: format_diff_tool DIR
//   For every DIR/<n>.eml with DIR/<n>.env (line 1: envelope sender; then one line per
//   recipient "smtp<TAB>cc:Mail name"), converts the message with the default settings
//   (local post office HUBPO2, time zone UTC), reads the import file back with
//   ReadImportFile() and prints one JSON line: {"id", "status", "violations", "messages":
//   [{"from", "subject", "to", "cc", "bcc", "items": [{"kind", "title", "data"}]}]}.
//   Every string is hex, so the code-page bytes reach Python unchanged.
#include <dirent.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "ccmail/format/converter.h"
#include "ccmail/format/reader.h"
#include "test_util.h"

using namespace ccmail;
using namespace ccmail::format;

namespace {

std::string Hex(std::string_view s) {
  static const char* d = "0123456789abcdef";
  std::string out = "\"";
  for (unsigned char c : s) { out.push_back(d[c >> 4]); out.push_back(d[c & 15]); }
  return out + "\"";
}

std::string HexList(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + Hex(v[i]);
  return out + "]";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) { std::fprintf(stderr, "usage: format_diff_tool DIR\n"); return 2; }
  const std::string dir = argv[1];
  std::vector<std::string> ids;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n.size() > 4 && n.compare(n.size() - 4, 4, ".eml") == 0) ids.push_back(n.substr(0, n.size() - 4));
    }
    closedir(d);
  } else {
    std::perror("format_diff_tool: opendir");
    return 2;
  }
  std::sort(ids.begin(), ids.end());
  FormatSettings s = testing::TestSettings();
  for (const std::string& id : ids) {
    const std::string msg = testing::ReadFileOrDie(dir + "/" + id + ".eml");
    const std::string env = testing::ReadFileOrDie(dir + "/" + id + ".env");
    std::vector<std::string> lines;
    for (size_t p = 0; p <= env.size();) {
      size_t e = env.find('\n', p);
      if (e == std::string::npos) e = env.size();
      lines.push_back(env.substr(p, e - p));
      p = e + 1;
    }
    ConvertInput in;
    in.data = msg.data();
    in.length = msg.size();
    in.envelope_sender = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      size_t tab = lines[i].find('\t');
      if (tab == std::string::npos) continue;
      in.recipients.push_back({lines[i].substr(0, tab), {lines[i].substr(tab + 1), "HUBPO2"}});
    }
    in.received = 1795520000;
    in.log_id = id;
    StringSink sink;
    Status st = Converter(s).Convert(in, &sink, nullptr);
    ReadResult r = ReadImportFile(sink.str(), s);
    std::string out = "{\"id\":\"" + id + "\",\"status\":" + Hex(st.ToString()) + ",\"violations\":[";
    for (size_t i = 0; i < r.violations.size(); ++i)
      out += (i ? "," : "") + Hex(std::to_string(r.violations[i].offset) + ": " + r.violations[i].reason);
    out += "],\"messages\":[";
    for (size_t m = 0; m < r.messages.size(); ++m) {
      const ImportMessage& im = r.messages[m];
      out += (m ? ",{" : "{");
      out += "\"from\":" + Hex(im.from) + ",\"subject\":" + Hex(im.subject) + ",\"to\":" + HexList(im.to) +
             ",\"cc\":" + HexList(im.cc) + ",\"bcc\":" + HexList(im.bcc) + ",\"items\":[";
      for (size_t i = 0; i < im.items.size(); ++i) {
        const ImportItem& it = im.items[i];
        out += (i ? "," : "");
        out += std::string("{\"kind\":\"") + (it.kind == ImportItem::Kind::kFile ? "file" : "text") +
               "\",\"title\":" + Hex(it.title) + ",\"data\":" + Hex(it.data) + "}";
      }
      out += "]}";
    }
    out += "]}\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
  return 0;
}
