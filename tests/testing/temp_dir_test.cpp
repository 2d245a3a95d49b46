// TempDir makes a private directory and removes the whole tree; Slurp/WriteFile keep every byte.
#include "ccmail/testing/temp_dir.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>

namespace ccmail::test {
namespace {

namespace fs = std::filesystem;

TEST(TempDir, PrivateDirectoryRemovedWithItsTree) {
  std::string kept;
  {
    TempDir dir("ccmail-tempdir-test");
    kept = dir.path();
    EXPECT_NE(fs::path(kept).filename().string().find("ccmail-tempdir-test-"), std::string::npos) << kept;
    struct stat st;
    ASSERT_EQ(::stat(kept.c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    fs::create_directories(kept + "/a/b");
    ASSERT_TRUE(WriteFile(kept + "/a/b/f", "x"));
    TempDir other("ccmail-tempdir-test");
    EXPECT_NE(other.path(), kept);
  }
  EXPECT_FALSE(fs::exists(kept));
}

TEST(TempDir, UnderAGivenParent) {
  TempDir parent("ccmail-tempdir-parent");
  TempDir child("inner", parent.path());
  EXPECT_EQ(fs::path(child.path()).parent_path().string(), parent.path());
}

TEST(Files, SlurpReturnsWhatWriteFileWrote) {
  TempDir dir;
  const std::string bytes("a\0b\r\n\xff", 6);
  ASSERT_TRUE(WriteFile(dir.path() + "/f", bytes));
  EXPECT_EQ(Slurp(dir.path() + "/f"), bytes);
  ASSERT_TRUE(WriteFile(dir.path() + "/f", "short"));  // truncates
  EXPECT_EQ(Slurp(dir.path() + "/f"), "short");
  EXPECT_EQ(Slurp(dir.path() + "/missing"), "");
  EXPECT_FALSE(WriteFile(dir.path() + "/no/such/dir/f", "x"));
}

}  // namespace
}  // namespace ccmail::test
