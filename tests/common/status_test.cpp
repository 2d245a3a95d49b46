#include "ccmail/common/status.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace ccmail {
namespace {

TEST(Status, ErrnoMapsToCodesAndKeepsContext) {
  Status s = Status::FromErrno("fsync spool/new", ENOSPC);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(s.IsNoSpace());
  EXPECT_EQ(s.sys_errno(), ENOSPC);
  EXPECT_EQ(s.ToString(), "no space: fsync spool/new: No space left on device");
  EXPECT_TRUE(Status::FromErrno("open x", ENOENT).IsNotFound());
  EXPECT_EQ(Status::FromErrno("open x", EEXIST).code(), Status::Code::kAlreadyExists);
  EXPECT_EQ(Status::FromErrno("fsync x", EIO).code(), Status::Code::kIoError);
}

TEST(Status, WithContextPrefixesMessageOnly) {
  Status s = Status::FromErrno("rename a b", EIO).WithContext("capture 01ab");
  EXPECT_EQ(s.code(), Status::Code::kIoError);
  EXPECT_EQ(s.sys_errno(), EIO);
  EXPECT_EQ(s.message(), "capture 01ab: rename a b: Input/output error");
  EXPECT_TRUE(Status::Ok().WithContext("x").ok());
}

Status FailsThenStops(int* reached) {
  CCMAIL_RETURN_IF_ERROR(Status::Busy("held"));
  ++*reached;
  return Status::Ok();
}

TEST(Status, ReturnIfErrorStopsAtFirstError) {
  int reached = 0;
  Status s = FailsThenStops(&reached);
  EXPECT_EQ(s.code(), Status::Code::kBusy);
  EXPECT_EQ(reached, 0);
}

TEST(StatusDeathTest, CheckAbortsWithLocation) {
  EXPECT_DEATH(CCMAIL_CHECK(1 == 2, "slot state"), "internal invariant broken: 1 == 2 \\(slot state\\)");
}

}  // namespace
}  // namespace ccmail
