// SubmitLedger: the states of a message, the in_doubt count, ccmailctl's reads and Requeue.
#include "ccmail/submitter/submit_ledger.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include "ccmail/testing/temp_dir.h"

namespace ccmail::submitter {
namespace {

const std::string kFile = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

class SubmitLedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.path() + "/ledger.db";
    ASSERT_TRUE(SubmitLedger::Open(path_, &ledger_).ok());
    bool inserted = false;
    ASSERT_TRUE(ledger_->RecordFile({kFile, "HQ", "EXP1.TXT", 0, 0, kFileTaken}, &inserted).ok());
    ASSERT_TRUE(inserted);
    for (int i = 0; i < 3; ++i) {
      SubmitMessage m;
      m.file_id = kFile;
      m.idx = i;
      m.message_id = "<m" + std::to_string(i) + "@origin>";
      m.author = "jane.doe@example.com";
      m.recipients = {"a@example.net", "b@example.net"};
      ASSERT_TRUE(ledger_->RecordMessage(m).ok());
    }
  }
  test::TempDir dir_{"submit-ledger"};
  std::string path_;
  std::unique_ptr<SubmitLedger> ledger_;
};

TEST_F(SubmitLedgerTest, TheSameFileIsRecordedOnce) {
  bool inserted = true;
  ASSERT_TRUE(ledger_->RecordFile({kFile, "HQ", "OTHER.TXT", 0, 0, kFileTaken}, &inserted).ok());
  EXPECT_FALSE(inserted);
  SubmitFile f;
  ASSERT_TRUE(ledger_->GetFile(kFile, &f).ok());
  EXPECT_EQ(f.name, "EXP1.TXT");
  EXPECT_GT(f.taken_ms, 0);
  EXPECT_TRUE(ledger_->GetFile("feed", &f).IsNotFound());
}

TEST_F(SubmitLedgerTest, MessageRowsKeepTheirRecipients) {
  SubmitMessage m;
  ASSERT_TRUE(ledger_->GetMessage(kFile, 1, &m).ok());
  EXPECT_EQ(m.message_id, "<m1@origin>");
  EXPECT_EQ(m.recipients, (std::vector<std::string>{"a@example.net", "b@example.net"}));
  EXPECT_EQ(m.state, MessageState::kPending);
  EXPECT_TRUE(ledger_->GetMessage(kFile, 7, &m).IsNotFound());
}

TEST_F(SubmitLedgerTest, InDoubtTwiceIsCountedAsAResubmission) {
  bool resubmission = true;
  ASSERT_TRUE(ledger_->MarkInDoubt(kFile, 0, &resubmission).ok());
  EXPECT_FALSE(resubmission);
  // A restart finds it in_doubt and sends it again: counted once.
  ASSERT_TRUE(ledger_->MarkInDoubt(kFile, 0, &resubmission).ok());
  EXPECT_TRUE(resubmission);
  ASSERT_TRUE(ledger_->Settle(kFile, 0, MessageState::kSent, "250 ok").ok());
  SubmitMessage m;
  ASSERT_TRUE(ledger_->GetMessage(kFile, 0, &m).ok());
  EXPECT_EQ(m.state, MessageState::kSent);
  EXPECT_EQ(m.attempts, 2);
  EXPECT_EQ(m.resubmissions, 1);
  EXPECT_GT(m.settled_ms, 0);
  // A settled message is never sent again.
  EXPECT_EQ(ledger_->MarkInDoubt(kFile, 0, &resubmission).code(), Status::Code::kInvalidArgument);
  SubmitCounters c;
  ASSERT_TRUE(ledger_->Counters(&c).ok());
  EXPECT_EQ(c.in_doubt_resubmitted, 1u);
  EXPECT_EQ(c.sent, 1u);
  EXPECT_EQ(c.pending, 2u);
  EXPECT_EQ(c.files_taken, 1u);
  EXPECT_EQ(c.files_open, 1u);
}

// The copies a recipient may hold beyond the first are bounded per message, not only in total:
// a message with two recipients sent three times may give each of them two extra copies.
TEST_F(SubmitLedgerTest, ResubmissionsAreCountedPerMessage) {
  bool resubmission = false;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(ledger_->MarkInDoubt(kFile, 0, &resubmission).ok());
  ASSERT_TRUE(ledger_->MarkInDoubt(kFile, 1, &resubmission).ok());
  ASSERT_TRUE(ledger_->ReturnToPending(kFile, 1, "451 later").ok());
  ASSERT_TRUE(ledger_->MarkInDoubt(kFile, 1, &resubmission).ok());
  std::vector<SubmitMessage> ms;
  ASSERT_TRUE(ledger_->ListMessages(kFile, &ms).ok());
  ASSERT_EQ(ms.size(), 3u);
  EXPECT_EQ(ms[0].resubmissions, 2);
  EXPECT_EQ(ms[0].attempts, 3);
  EXPECT_EQ(ms[1].resubmissions, 0) << "a 4xx to the dot returned it to pending: the MTA has nothing";
  EXPECT_EQ(ms[1].attempts, 2);
  EXPECT_EQ(ms[2].resubmissions, 0);
  SubmitCounters c;
  ASSERT_TRUE(ledger_->Counters(&c).ok());
  EXPECT_EQ(c.in_doubt_resubmitted, 2u) << "the total is the sum over the messages";
}

// A ledger written before per-message counts (schema 1) is upgraded when the daemon opens it;
// ccmailctl's read-only open says what to do instead of failing on a missing column.
TEST(SubmitLedgerSchemaTest, Schema1IsUpgradedByTheDaemonNotByReaders) {
  test::TempDir dir{"submit-ledger-v1"};
  const std::string path = dir.path() + "/ledger.db";
  {
    std::unique_ptr<SubmitLedger> l;
    ASSERT_TRUE(SubmitLedger::Open(path, &l).ok());
    bool inserted = false;
    ASSERT_TRUE(l->RecordFile({kFile, "HQ", "EXP1.TXT", 0, 0, kFileTaken}, &inserted).ok());
    SubmitMessage m;
    m.file_id = kFile;
    m.message_id = "<old@origin>";
    m.recipients = {"a@example.net"};
    ASSERT_TRUE(l->RecordMessage(m).ok());
  }
  // Turn it into what schema 1 wrote: no resubmissions column, schema = 1.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "BEGIN; ALTER TABLE messages DROP COLUMN resubmissions; "
                         "UPDATE meta SET value = 1 WHERE key = 'schema'; COMMIT;",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);

  std::unique_ptr<SubmitLedger> ro;
  Status s = SubmitLedger::OpenReadOnly(path, &ro);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("schema 1"), std::string::npos) << s.ToString();

  std::unique_ptr<SubmitLedger> l;
  ASSERT_TRUE(SubmitLedger::Open(path, &l).ok());
  SubmitMessage m;
  ASSERT_TRUE(l->GetMessage(kFile, 0, &m).ok());
  EXPECT_EQ(m.message_id, "<old@origin>");
  EXPECT_EQ(m.resubmissions, 0);
  bool resubmission = false;
  ASSERT_TRUE(l->MarkInDoubt(kFile, 0, &resubmission).ok());
  ASSERT_TRUE(l->MarkInDoubt(kFile, 0, &resubmission).ok());
  ASSERT_TRUE(l->GetMessage(kFile, 0, &m).ok());
  EXPECT_EQ(m.resubmissions, 1);
  l.reset();
  ASSERT_TRUE(SubmitLedger::OpenReadOnly(path, &ro).ok());
}

TEST_F(SubmitLedgerTest, RecordMessageDoesNotReopenASettledMessage) {
  ASSERT_TRUE(ledger_->Settle(kFile, 2, MessageState::kRefused, "550 no").ok());
  SubmitMessage m;
  m.file_id = kFile;
  m.idx = 2;
  m.message_id = "<other@origin>";
  ASSERT_TRUE(ledger_->RecordMessage(m).ok());
  ASSERT_TRUE(ledger_->GetMessage(kFile, 2, &m).ok());
  EXPECT_EQ(m.state, MessageState::kRefused);
  EXPECT_EQ(m.message_id, "<m2@origin>");
}

TEST_F(SubmitLedgerTest, A4xxAfterDataReturnsToPending) {
  bool resubmission = false;
  ASSERT_TRUE(ledger_->MarkInDoubt(kFile, 1, &resubmission).ok());
  ASSERT_TRUE(ledger_->ReturnToPending(kFile, 1, "451 later").ok());
  SubmitMessage m;
  ASSERT_TRUE(ledger_->GetMessage(kFile, 1, &m).ok());
  EXPECT_EQ(m.state, MessageState::kPending);
  ASSERT_TRUE(ledger_->MarkInDoubt(kFile, 1, &resubmission).ok());
  EXPECT_FALSE(resubmission) << "the MTA said it has nothing: not a resubmission";
}

TEST_F(SubmitLedgerTest, FindByMessageIdOrFileIndex) {
  SubmitMessage m;
  ASSERT_TRUE(ledger_->FindMessage("m1@origin", &m).ok());
  EXPECT_EQ(m.idx, 1);
  ASSERT_TRUE(ledger_->FindMessage("<m2@origin>", &m).ok());
  EXPECT_EQ(m.idx, 2);
  ASSERT_TRUE(ledger_->FindMessage(kFile.substr(0, 10) + ":0", &m).ok());
  EXPECT_EQ(m.message_id, "<m0@origin>");
  EXPECT_TRUE(ledger_->FindMessage("nothere@x", &m).IsNotFound());
  EXPECT_TRUE(ledger_->FindMessage("ffffffffff:0", &m).IsNotFound());
}

TEST_F(SubmitLedgerTest, RequeueOnlyRefusedOrQuarantined) {
  ASSERT_TRUE(ledger_->Settle(kFile, 0, MessageState::kSent, "250").ok());
  ASSERT_TRUE(ledger_->Settle(kFile, 1, MessageState::kQuarantined, "no author").ok());
  ASSERT_TRUE(ledger_->Settle(kFile, 2, MessageState::kRefused, "550").ok());
  ASSERT_TRUE(ledger_->SetFileState(kFile, kFileDone, 3).ok());
  EXPECT_EQ(ledger_->Requeue(kFile, 0).code(), Status::Code::kInvalidArgument);
  ASSERT_TRUE(ledger_->Requeue(kFile, 1).ok());
  ASSERT_TRUE(ledger_->Requeue(kFile, 2).ok());
  std::vector<SubmitFile> open;
  ASSERT_TRUE(ledger_->OpenFiles(&open).ok());
  ASSERT_EQ(open.size(), 1u);
  std::vector<SubmitMessage> ms;
  ASSERT_TRUE(ledger_->ListMessages(kFile, &ms).ok());
  ASSERT_EQ(ms.size(), 3u);
  EXPECT_EQ(ms[0].state, MessageState::kSent);
  EXPECT_EQ(ms[1].state, MessageState::kPending);
  EXPECT_EQ(ms[2].state, MessageState::kPending);
}

TEST_F(SubmitLedgerTest, ReadOnlyNeverWrites) {
  std::unique_ptr<SubmitLedger> ro;
  ASSERT_TRUE(SubmitLedger::OpenReadOnly(path_, &ro).ok());
  std::vector<SubmitFile> files;
  ASSERT_TRUE(ro->ListFiles(&files).ok());
  EXPECT_EQ(files.size(), 1u);
  EXPECT_EQ(ro->Requeue(kFile, 0).code(), Status::Code::kInvalidArgument);
  bool resubmission = false;
  EXPECT_FALSE(ro->MarkInDoubt(kFile, 0, &resubmission).ok());
  EXPECT_TRUE(SubmitLedger::OpenReadOnly(dir_.path() + "/none.db", &ro).IsNotFound());
}

}  // namespace
}  // namespace ccmail::submitter
