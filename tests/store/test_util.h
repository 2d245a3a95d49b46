// test_util.h - temp directories for store tests.
#pragma once

#include <filesystem>
#include <string>

#include "ccmail/testing/temp_dir.h"

namespace ccmail::store::test {

using ::ccmail::test::Slurp;
using ::ccmail::test::TempDir;

inline size_t CountFiles(const std::string& dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir, ec); !ec && it != std::filesystem::directory_iterator(); ++it) ++n;
  return n;
}

}  // namespace ccmail::store::test
