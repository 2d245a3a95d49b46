#include "ccmail/exporter/deliver.h"
#include "ccmail/testing/temp_dir.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ccmail::exporter {
namespace {

TEST(DeliverTest, ImportExitCodesClassified) {
  EXPECT_EQ(ClassifyImportExit(0), DeliverOutcome::kDone);
  EXPECT_EQ(ClassifyImportExit(4), DeliverOutcome::kLocked);
  EXPECT_EQ(ClassifyImportExit(1), DeliverOutcome::kFailed);
  EXPECT_EQ(ClassifyImportExit(3), DeliverOutcome::kFailed);
  EXPECT_EQ(ClassifyImportExit(5), DeliverOutcome::kUndeliverable);
  EXPECT_EQ(ClassifyImportExit(2), DeliverOutcome::kFailed);
  EXPECT_EQ(ClassifyImportExit(137), DeliverOutcome::kFailed);
}

TEST(DeliverTest, BackoffDoublesAndCaps) {
  EXPECT_EQ(DeliverBackoffSeconds(0, 60, 3600), 60);
  EXPECT_EQ(DeliverBackoffSeconds(1, 60, 3600), 120);
  EXPECT_EQ(DeliverBackoffSeconds(3, 60, 3600), 480);
  EXPECT_EQ(DeliverBackoffSeconds(30, 60, 3600), 3600);
}

TEST(DeliverTest, CommandSeesBatchInEnvironmentAndExitCodeIsReported) {
  test::TempDir temp("ccmail-deliver");
  const std::string dir = temp.path();
  for (int code : {0, 4, 3, 5}) {
    DeliverRequest req;
    req.command = "printf '%s|%s|%s|%s' \"$CCMAIL_BATCH\" \"$CCMAIL_POSTOFFICE\" \"$CCMAIL_MANIFEST\" "
                  "\"$CCMAIL_UND\" > " + dir + "/seen; exit " + std::to_string(code);
    req.batch_path = dir + "/HQ/00100001.CCM";
    req.post_office = "HQ";
    req.manifest_path = dir + "/HQ/00100001.MAN";
    DeliverOutcome o;
    int st = -1;
    ASSERT_TRUE(RunDeliverCommand(req, &o, &st).ok());
    EXPECT_EQ(st, code);
    EXPECT_EQ(o, ClassifyImportExit(code));
    EXPECT_EQ(test::Slurp(dir + "/seen"), req.batch_path + "|HQ|" + req.manifest_path + "|" + dir + "/HQ/00100001.UND");
  }
}

TEST(DeliverTest, KilledCommandIsAFailure) {
  DeliverRequest req{"kill -9 $$", "/nonexistent/B.CCM", "HQ", "/nonexistent/B.MAN"};
  DeliverOutcome o;
  int st = 0;
  ASSERT_TRUE(RunDeliverCommand(req, &o, &st).ok());
  EXPECT_EQ(st, 128 + 9);
  EXPECT_EQ(o, DeliverOutcome::kFailed);
}

}  // namespace
}  // namespace ccmail::exporter
