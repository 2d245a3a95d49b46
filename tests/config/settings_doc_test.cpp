// Keeps docs/ARCHITECTURE.md true: every setting in the table is described there with its
// current default (regenerate with scripts/gen-settings-doc.sh BUILD_DIR).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "ccmail/config/settings.h"

namespace ccmail {
namespace {

TEST(SettingsDoc, ArchitectureDocListsEverySettingWithItsDefault) {
  const char* src = std::getenv("CCMAIL_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  std::ifstream in(std::string(src) + "/docs/ARCHITECTURE.md");
  ASSERT_TRUE(in) << "docs/ARCHITECTURE.md missing";
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string doc = buf.str();
  for (const SettingSpec& s : AllSettings()) {
    const std::string def = s.default_value.empty() ? "(empty)" : "`" + std::string(s.default_value) + "`";
    const std::string row = "| `" + std::string(s.name) + "` | " + def + " |";
    EXPECT_NE(doc.find(row), std::string::npos)
        << "docs/ARCHITECTURE.md does not describe " << s.name << " with default \"" << s.default_value
        << "\": run scripts/gen-settings-doc.sh <build dir>";
  }
}

}  // namespace
}  // namespace ccmail
