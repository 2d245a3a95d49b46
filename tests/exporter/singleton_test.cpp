#include "ccmail/exporter/singleton.h"
#include "ccmail/testing/temp_dir.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace ccmail::exporter {
namespace {

TEST(SingletonTest, SecondExporterIsRefusedUntilTheFirstDies) {
  test::TempDir dir("ccmail-single");
  std::string lock = dir.path() + "/exporter.lock";
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    UniqueFd held;
    if (!AcquireExporterLock(lock, &held).ok()) ::_exit(2);
    char c = 'x';
    if (::write(ready[1], &c, 1) != 1) ::_exit(3);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  UniqueFd mine;
  Status s = AcquireExporterLock(lock, &mine);
  EXPECT_EQ(s.code(), Status::Code::kBusy) << s.message();
  EXPECT_FALSE(mine.valid());
  // kill -9: the kernel releases the lock, no cleanup needed.
  ::kill(child, SIGKILL);
  int st;
  ::waitpid(child, &st, 0);
  ASSERT_TRUE(AcquireExporterLock(lock, &mine).ok());
  EXPECT_TRUE(mine.valid());
}

}  // namespace
}  // namespace ccmail::exporter
