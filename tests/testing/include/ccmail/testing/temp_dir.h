// temp_dir.h - a private directory for one test, removed with everything in it at the end.
//
// SYNOPSIS
//   ccmail::test::TempDir dir("ccmail-outbox");
//   WriteFile(dir.path() + "/in.eml", message);
//   EXPECT_EQ(Slurp(dir.path() + "/out.txt"), "expected");
//
// DESCRIPTION
//   TempDir creates <parent>/<prefix>-XXXXXX with mkdtemp (mode 0700); parent is
//   $TMPDIR or /tmp unless given. A test cannot run without its directory, so a
//   failing mkdtemp ends the process with the reason. The destructor removes the
//   tree and ignores errors (a test that chmods a subdirectory away still cleans up
//   what it can).
#pragma once

#include <string>
#include <string_view>

namespace ccmail::test {

class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "ccmail-test", std::string_view parent = "");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The whole file as bytes; "" when it cannot be read (the assertion on the content says why).
std::string Slurp(const std::string& path);
// Creates or truncates path with exactly text; false when it cannot be written.
bool WriteFile(const std::string& path, std::string_view text);

}  // namespace ccmail::test
