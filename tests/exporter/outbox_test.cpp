#include "ccmail/exporter/outbox.h"
#include "ccmail/store/io.h"
#include "ccmail/testing/temp_dir.h"


#include <gtest/gtest.h>

#include <algorithm>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace ccmail::exporter {
namespace {

namespace fs = std::filesystem;
using test::Slurp;

class OutboxTest : public ::testing::Test {
 protected:
  std::vector<ManifestEntry> Entries(int n) {
    std::vector<ManifestEntry> v;
    for (int i = 0; i < n; ++i) {
      char id[40];
      std::snprintf(id, sizeof id, "%032x", i + 1);
      v.push_back({id, std::string(63, 'a') + std::to_string(i % 10), "User" + std::to_string(i), "s" + std::to_string(i) + "@example.com"});
    }
    return v;
  }
  test::TempDir temp_{"ccmail-outbox"};
  std::string root_ = temp_.path();
};

TEST(BatchNameTest, EightDotThreeAndUnique) {
  std::set<std::string> seen;
  for (uint64_t e : {1ULL, 2ULL, 46655ULL})
    for (uint64_t s : {0ULL, 1ULL, 35ULL, 36ULL, 60466175ULL}) {
      std::string n = BatchFileName(e, s);
      ASSERT_EQ(n.size(), 12u) << n;
      EXPECT_EQ(n.substr(8), ".CCM");
      EXPECT_TRUE(seen.insert(n).second) << n;
    }
  EXPECT_EQ(BatchFileName(1, 1), "00100001.CCM");
  EXPECT_EQ(BatchFileName(36, 37), "01000011.CCM");
  EXPECT_EQ(ManifestFileName("00100001.CCM"), "00100001.MAN");
}

TEST(PostOfficeNameTest, RejectsPathsAndLongNames) {
  EXPECT_TRUE(ValidPostOfficeName("HQ"));
  EXPECT_TRUE(ValidPostOfficeName("SALES_01"));
  EXPECT_FALSE(ValidPostOfficeName(""));
  EXPECT_FALSE(ValidPostOfficeName("../etc"));
  EXPECT_FALSE(ValidPostOfficeName("TOOLONGNAME"));
  EXPECT_FALSE(ValidPostOfficeName("hq"));
}

TEST(ManifestTest, RoundTripAndTruncationDetected) {
  std::vector<ManifestEntry> in{{std::string(32, '1'), std::string(64, 'f'), "Smith, John", ""}};
  std::string text = FormatManifest(3, 9, "HQ", BatchFileName(3, 9), in);
  std::vector<ManifestEntry> out;
  ASSERT_TRUE(ParseManifest(text, &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].recipient, "Smith, John");
  EXPECT_EQ(out[0].sender, "");
  Status s = ParseManifest(text.substr(0, text.find('\n') + 1), &out);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("truncated"), std::string::npos) << s.message();
  EXPECT_FALSE(ParseManifest("garbage\n", &out).ok());
}

TEST(ManifestTest, ControlCharactersInAddressesCannotForgeColumnsOrLines) {
  const std::string id(32, '1'), key(64, 'f'), forged_id(32, '2');
  // A TAB would add a column; an LF would start a forged entry line.
  const std::string recipient = "a\tb@x.example";
  const std::string sender = "s@x.example\n" + forged_id + "\t" + key + "\tboss@x.example\tx\\y\x1b";
  std::vector<ManifestEntry> in{{id, key, recipient, sender}};
  std::string text = FormatManifest(3, 9, "HQ", BatchFileName(3, 9), in);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2) << text;  // header + one entry
  const std::string entry = text.substr(text.find('\n') + 1);
  EXPECT_EQ(std::count(entry.begin(), entry.end(), '\t'), 3) << entry;
  EXPECT_EQ(entry.find('\x1b'), std::string::npos) << entry;
  std::vector<ManifestEntry> out;
  ASSERT_TRUE(ParseManifest(text, &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].recipient, recipient);  // read back exactly
  EXPECT_EQ(out[0].sender, sender);
}

TEST_F(OutboxTest, WritePartThenPublishMovesFilesAndAdvancesWatermark) {
  Outbox ob(root_ + "/out/tmp", root_ + "/outbox");
  ASSERT_TRUE(ob.Init().ok());
  auto entries = Entries(3);
  ASSERT_TRUE(ob.WritePart(7, 1, "HQ", "MESSAGE-CONTENT\r\n", entries).ok());
  const std::string name = BatchFileName(7, 1);
  EXPECT_TRUE(fs::exists(ob.PartPath(name)));
  // Not yet published: nothing in the post-office dir, no watermark.
  EXPECT_FALSE(fs::exists(ob.PostOfficeDir("HQ") + "/" + name));
  Watermark wm;
  EXPECT_FALSE(ReadWatermark(ob.PostOfficeDir("HQ"), &wm).ok());

  ASSERT_TRUE(ob.Publish(7, 1, "HQ").ok());
  EXPECT_FALSE(fs::exists(ob.PartPath(name)));
  EXPECT_EQ(Slurp(ob.PostOfficeDir("HQ") + "/" + name), "MESSAGE-CONTENT\r\n");
  std::vector<ManifestEntry> got;
  ASSERT_TRUE(ParseManifest(Slurp(ob.PostOfficeDir("HQ") + "/" + ManifestFileName(name)), &got).ok());
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[2].capture_id, entries[2].capture_id);
  ASSERT_TRUE(ReadWatermark(ob.PostOfficeDir("HQ"), &wm).ok());
  EXPECT_EQ(wm.epoch, 7u);
  EXPECT_EQ(wm.seq, 1u);
  EXPECT_EQ(wm.batch_name, name);
  EXPECT_TRUE(fs::is_empty(ob.TmpDir()));
}

TEST_F(OutboxTest, PublishIsIdempotentAndWatermarkNeverMovesBack) {
  Outbox ob(root_ + "/out/tmp", root_ + "/outbox");
  ASSERT_TRUE(ob.Init().ok());
  ASSERT_TRUE(ob.WritePart(2, 5, "HQ", "B5", Entries(1)).ok());
  ASSERT_TRUE(ob.WritePart(2, 4, "HQ", "B4", Entries(1)).ok());
  ASSERT_TRUE(ob.Publish(2, 5, "HQ").ok());
  // Roll-forward after a crash: the rename already happened.
  ASSERT_TRUE(ob.Publish(2, 5, "HQ").ok());
  // An older batch rolled forward later must not move the watermark back.
  ASSERT_TRUE(ob.Publish(2, 4, "HQ").ok());
  Watermark wm;
  ASSERT_TRUE(ReadWatermark(ob.PostOfficeDir("HQ"), &wm).ok());
  EXPECT_EQ(wm.seq, 5u);
  // A batch that was never written cannot be published.
  EXPECT_FALSE(ob.Publish(2, 6, "HQ").ok());
}

TEST_F(OutboxTest, AbandonRemovesPartsAndRejectsBadPostOffice) {
  Outbox ob(root_ + "/out/tmp", root_ + "/outbox");
  ASSERT_TRUE(ob.Init().ok());
  ASSERT_TRUE(ob.WritePart(1, 1, "HQ", "X", Entries(1)).ok());
  ASSERT_TRUE(ob.Abandon(1, 1).ok());
  EXPECT_TRUE(fs::is_empty(ob.TmpDir()));
  ASSERT_TRUE(ob.Abandon(1, 1).ok());  // idempotent
  EXPECT_FALSE(ob.WritePart(1, 2, "../x", "X", Entries(1)).ok());
}

TEST_F(OutboxTest, WritePartFailsCleanlyWhenTmpDirUnusable) {
  Outbox ob(root_ + "/out/tmp", root_ + "/outbox");
  ASSERT_TRUE(ob.Init().ok());
  // A file where out/tmp should be: fails for root too (permissions would not).
  fs::remove_all(ob.TmpDir());
  std::ofstream(ob.TmpDir()) << "x";
  Status s = ob.WritePart(1, 1, "HQ", "X", Entries(1));
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("out/tmp"), std::string::npos) << s.message();
  EXPECT_FALSE(fs::exists(ob.PostOfficeDir("HQ")));
}

// A full outbox disk is back-pressure: the write fails, the batch is abandoned, nothing is
// published, and the rebuilt batch goes out once space is back.
TEST_F(OutboxTest, InjectedEnospcAbandonsBatchAndRetrySucceeds) {
  Outbox ob(root_ + "/out/tmp", root_ + "/outbox");
  ASSERT_TRUE(ob.Init().ok());
  ::setenv("CCMAIL_FAIL_AT", "batch.part.written:1:ENOSPC", 1);
  store::ReloadFaultSpecFromEnv();
  Status s = ob.WritePart(4, 1, "HQ", std::string(10000, 'm'), Entries(2));
  ::unsetenv("CCMAIL_FAIL_AT");
  store::ReloadFaultSpecFromEnv();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Status::Code::kNoSpace) << s.message();
  ASSERT_TRUE(ob.Abandon(4, 1).ok());
  EXPECT_TRUE(fs::is_empty(ob.TmpDir()));
  EXPECT_FALSE(fs::exists(ob.PostOfficeDir("HQ")));
  ASSERT_TRUE(ob.WritePart(4, 1, "HQ", std::string(10000, 'm'), Entries(2)).ok());
  ASSERT_TRUE(ob.Publish(4, 1, "HQ").ok());
  EXPECT_EQ(fs::file_size(ob.PostOfficeDir("HQ") + "/" + BatchFileName(4, 1)), 10000u);
}

// A published name is never reused: the batch name of epoch E+36^3 is the one of epoch E (the
// 8.3 name keeps E mod 36^3); publishing it must fail and leave the published file alone.
TEST_F(OutboxTest, PublishNeverReplacesAPublishedBatch) {
  Outbox ob(root_ + "/out/tmp", root_ + "/outbox");
  ASSERT_TRUE(ob.Init().ok());
  const uint64_t wrapped = 7 + 36ULL * 36 * 36;
  ASSERT_EQ(BatchFileName(wrapped, 1), BatchFileName(7, 1));
  ASSERT_TRUE(ob.WritePart(7, 1, "HQ", "FIRST", Entries(1)).ok());
  ASSERT_TRUE(ob.Publish(7, 1, "HQ").ok());
  const std::string published = ob.PostOfficeDir("HQ") + "/" + BatchFileName(7, 1);
  const std::string manifest = ob.PostOfficeDir("HQ") + "/" + ManifestFileName(BatchFileName(7, 1));
  const std::string first_manifest = Slurp(manifest);
  ASSERT_TRUE(ob.WritePart(wrapped, 1, "HQ", "SECOND", Entries(2)).ok());
  Status s = ob.Publish(wrapped, 1, "HQ");
  EXPECT_EQ(s.code(), Status::Code::kAlreadyExists) << s.ToString();
  EXPECT_EQ(Slurp(published), "FIRST");
  EXPECT_EQ(Slurp(manifest), first_manifest);
  EXPECT_EQ(Slurp(ob.PartPath(BatchFileName(7, 1))), "SECOND") << "the .part must be kept";
}

// RenameNoReplace's link fallback cut between link and unlink leaves the batch under both
// names (one inode): the roll-forward finishes it.
TEST_F(OutboxTest, PublishFinishesALinkLeftBehind) {
  Outbox ob(root_ + "/out/tmp", root_ + "/outbox");
  ASSERT_TRUE(ob.Init().ok());
  ASSERT_TRUE(ob.WritePart(3, 9, "HQ", "BATCH", Entries(1)).ok());
  const std::string name = BatchFileName(3, 9);
  fs::create_directories(ob.PostOfficeDir("HQ"));
  ASSERT_EQ(::link(ob.PartPath(name).c_str(), (ob.PostOfficeDir("HQ") + "/" + name).c_str()), 0);
  Status s = ob.Publish(3, 9, "HQ");
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(fs::exists(ob.PartPath(name)));
  EXPECT_EQ(Slurp(ob.PostOfficeDir("HQ") + "/" + name), "BATCH");
  Watermark wm;
  ASSERT_TRUE(ReadWatermark(ob.PostOfficeDir("HQ"), &wm).ok());
  EXPECT_EQ(wm.batch_name, name);
}

// Every durable step of WritePart, Publish and Abandon goes through the injected DurableIo.
class RecordingIo : public store::DurableIoWrapper {
 public:
  std::vector<std::string> calls;
  Status Fsync(int fd, const std::string& w, const char* p) override {
    calls.push_back("fsync " + fs::path(w).filename().string());
    return DurableIoWrapper::Fsync(fd, w, p);
  }
  Status Rename(const std::string& a, const std::string& b, const char* p) override {
    calls.push_back("rename " + fs::path(b).filename().string());
    return DurableIoWrapper::Rename(a, b, p);
  }
  Status RenameNoReplace(const std::string& a, const std::string& b, const char* p) override {
    calls.push_back("rename-noreplace " + fs::path(b).filename().string());
    return DurableIoWrapper::RenameNoReplace(a, b, p);
  }
  Status MakeDir(const std::string& d, mode_t m, bool* created, const char* p) override {
    Status s = DurableIoWrapper::MakeDir(d, m, created, p);
    if (*created) calls.push_back("mkdir " + fs::path(d).filename().string());
    return s;
  }
  Status FsyncDir(const std::string& d, const char* p) override {
    calls.push_back("fsyncdir " + fs::path(d).filename().string());
    return DurableIoWrapper::FsyncDir(d, p);
  }
  Status Unlink(const std::string& f, const char* p) override {
    calls.push_back("unlink " + fs::path(f).filename().string());
    return DurableIoWrapper::Unlink(f, p);
  }
};

TEST_F(OutboxTest, EveryDurableStepGoesThroughTheInjectedIo) {
  RecordingIo io;
  Outbox ob(root_ + "/out/tmp", root_ + "/outbox", &io);
  ASSERT_TRUE(ob.Init().ok());
  io.calls.clear();
  ASSERT_TRUE(ob.WritePart(1, 2, "HQ", "X", Entries(1)).ok());
  ASSERT_TRUE(ob.Publish(1, 2, "HQ").ok());
  const std::vector<std::string> want = {
      "fsync 00100002.MAN.part", "fsync 00100002.CCM.part", "fsyncdir tmp",
      "mkdir HQ",                "fsyncdir outbox",         "rename-noreplace 00100002.MAN",
      "rename-noreplace 00100002.CCM", "fsyncdir HQ",       "fsyncdir tmp",
      "unlink WATERMRK.tmp",     "fsync WATERMRK.tmp",      "rename WATERMRK",
      "fsyncdir HQ"};
  EXPECT_EQ(io.calls, want);
  io.calls.clear();
  ASSERT_TRUE(ob.WritePart(1, 3, "HQ", "Y", Entries(1)).ok());
  ASSERT_TRUE(ob.Abandon(1, 3).ok());
  const std::vector<std::string> abandon = {"fsync 00100003.MAN.part", "fsync 00100003.CCM.part", "fsyncdir tmp",
                                            "unlink 00100003.CCM.part", "unlink 00100003.MAN.part", "fsyncdir tmp"};
  EXPECT_EQ(io.calls, abandon);
}

}  // namespace
}  // namespace ccmail::exporter
