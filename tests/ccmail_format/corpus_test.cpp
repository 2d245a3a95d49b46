// Every corpus message (tests/corpus/*.eml) converts and passes the reader, in
// several setting combinations; a few are compared byte for byte with golden files
// (regenerate with CCMAIL_UPDATE_GOLDEN=1 after an intended format change).
#include <dirent.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "test_util.h"

namespace ccmail::format {
namespace {

using testing::ConvertText;
using testing::ReadFileOrDie;
using testing::SourceDir;
using testing::TestSettings;
using testing::ViolationsText;

std::vector<std::string> CorpusFiles() {
  std::vector<std::string> out;
  const std::string dir = SourceDir() + "/tests/corpus";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > 4 && n.substr(n.size() - 4) == ".eml") out.push_back(dir + "/" + n);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::pair<std::string, FormatSettings>> Variants() {
  std::vector<std::pair<std::string, FormatSettings>> v;
  v.emplace_back("default", TestSettings());
  FormatSettings k = TestSettings();
  k.itemsize = false;
  k.files = FileData::kHex;
  v.emplace_back("keyword+hex", k);
  FormatSettings o = TestSettings();
  o.codepage = CodePage::kCp437;
  o.date_format = DateFormat::kDmy4;
  o.long_filenames = true;
  o.large_body = LargeBody::kFile;
  o.header_limit = 512;
  o.max_items = 5;
  o.headers_item = false;
  v.emplace_back("cp437+dmy4+long+file+small", o);
  FormatSettings h = TestSettings();
  h.files = FileData::kHex;
  h.codepage = CodePage::kCp1252;
  v.emplace_back("itemsize+hex+1252", h);
  return v;
}

TEST(Corpus, HasAtLeastFortyMessages) { EXPECT_GE(CorpusFiles().size(), 40u); }

TEST(Corpus, EveryMessageConvertsAndValidates) {
  for (const std::string& path : CorpusFiles()) {
    const std::string msg = ReadFileOrDie(path);
    for (const auto& [name, s] : Variants()) {
      std::string out;
      ConvertResult res;
      Status st = ConvertText(msg, s, &out, testing::DefaultRecipients(), &res);
      ASSERT_TRUE(st.ok()) << path << " [" << name << "]: " << st.ToString();
      ReadResult r = ReadImportFile(out, s);
      EXPECT_TRUE(r.ok()) << path << " [" << name << "]:\n" << ViolationsText(r);
      ASSERT_GE(r.messages.size(), 1u) << path;
      EXPECT_EQ(static_cast<int>(r.messages.size()), res.messages_written) << path;
      // Exactly our two envelope recipients, each once, whatever the message says.
      std::multiset<std::string> rc;
      for (const auto& m : r.messages) {
        for (const auto& a : m.to) rc.insert(a);
        for (const auto& a : m.cc) rc.insert(a);
        for (const auto& a : m.bcc) rc.insert(a);
      }
      EXPECT_EQ(rc, (std::multiset<std::string>{"Garcia, Maria", "Smith, John"})) << path << " [" << name << "]";
    }
  }
}

TEST(Corpus, GoldenFiles) {
  const bool update = std::getenv("CCMAIL_UPDATE_GOLDEN") != nullptr;
  struct G { const char* eml; bool keyword; };
  for (const G& g : {G{"01-plain-ascii", false}, G{"14-alternative", false}, G{"20-attach-qp-text", false},
                     G{"28-forward-rfc822", false}, G{"50-hostile-subject-crlf", false}, G{"51-hostile-body-keywords", true},
                     G{"23-attach-hostile-names", false}}) {
    FormatSettings s = TestSettings();
    if (g.keyword) { s.itemsize = false; s.files = FileData::kHex; }
    std::string out;
    ASSERT_TRUE(ConvertText(ReadFileOrDie(SourceDir() + "/tests/corpus/" + g.eml + ".eml"), s, &out).ok()) << g.eml;
    const std::string golden = SourceDir() + "/tests/ccmail_format/golden/" + g.eml + ".ccm";
    if (update) {
      std::ofstream(golden, std::ios::binary) << out;
      continue;
    }
    std::ifstream in(golden, std::ios::binary);
    ASSERT_TRUE(in) << golden << " missing (CCMAIL_UPDATE_GOLDEN=1 creates it)";
    EXPECT_EQ(out, ReadFileOrDie(golden)) << g.eml;
  }
}

}  // namespace
}  // namespace ccmail::format
