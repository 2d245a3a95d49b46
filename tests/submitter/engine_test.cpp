// The submitter engine in-process against FakeSmtpServer: taking files, completeness, retake,
// quarantine, 4xx retry, 5xx notices, in_doubt resubmission, export_command, and what a
// hostile local user can put in the inbox (symlinks, FIFOs, hard links, huge files).
#include "ccmail/submitter/engine.h"

#include <gtest/gtest.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <map>
#include <thread>

#include "ccmail/common/unique_fd.h"
#include "ccmail/config/config.h"
#include "ccmail/store/io.h"
#include "ccmail/submitter/inbox_file.h"
#include "ccmail/submitter/submit_ledger.h"
#include "ccmail/testing/temp_dir.h"
#include "fake_smtp_server.h"
#include "submitter_test_util.h"

namespace ccmail::submitter {
namespace {

using ccmail::test::FakeSmtpServer;
using ccmail::test::ReceivedMail;
using ccmail::test::Slurp;
using ccmail::test::TempDir;
using ccmail::test::WriteFile;
using test::ExportMessage;
using test::ExportText;

std::vector<std::string> AllFilesIn(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (struct dirent* e = ::readdir(d))
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") out.push_back(e->d_name);
    ::closedir(d);
  }
  return out;
}

bool Exists(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0;
}

// lstat's file type of p (0: missing).
mode_t TypeOf(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0 ? (st.st_mode & S_IFMT) : 0;
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    inbox_ = dir_.path() + "/inbox";
    ::mkdir(inbox_.c_str(), 0700);
    ::mkdir((inbox_ + "/HQ").c_str(), 0700);
  }

  SubmitterOptions Options() {
    SubmitterOptions o;
    o.state_dir = dir_.path() + "/state";
    o.inbox_directory = inbox_;
    o.relay = server_.endpoint();
    o.smtp.timeout = std::chrono::milliseconds(2000);
    o.smtp.helo_name = "submitter.test";
    o.retry_min = std::chrono::milliseconds(10);
    o.retry_max = std::chrono::milliseconds(40);
    o.format = test::TestFormat();
    o.convert = test::TestConvert;
    return o;
  }

  void Open() {
    if (!started_) server_.Start();
    started_ = true;
    ASSERT_TRUE(Submitter::Open(Options(), &sub_).ok());
  }

  std::unique_ptr<SubmitLedger> Ledger() {
    std::unique_ptr<SubmitLedger> l;
    EXPECT_TRUE(SubmitLedger::OpenReadOnly(dir_.path() + "/state/ledger.db", &l).ok());
    return l;
  }

  // Messages the server accepted from `from` ("" = notices).
  std::vector<ReceivedMail> From(const std::string& from) {
    std::vector<ReceivedMail> out;
    for (auto& m : server_.messages())
      if (m.from == from) out.push_back(m);
    return out;
  }

  // The notices are sent by the queue's own thread.
  std::vector<ReceivedMail> WaitForNotices(size_t n) {
    for (int i = 0; i < 300 && From("").size() < n; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return From("");
  }

  // Everything the fake relay saw, commands and data, as one text.
  std::string AllTheRelaySaw() {
    std::string all;
    for (const auto& c : server_.commands()) all += c + "\n";
    for (const auto& m : server_.messages()) all += m.from + "\n" + m.data + "\n";
    return all;
  }

  TempDir dir_{"submitter-engine"};
  std::string inbox_;
  FakeSmtpServer server_;
  bool started_ = false;
  std::unique_ptr<Submitter> sub_;
};

ExportMessage Msg(const std::string& subject, std::vector<std::string> to = {"bob@partner.example at INTERNET"}) {
  ExportMessage m;
  m.to = std::move(to);
  m.subject = subject;
  m.body = "Text of " + subject + "\r\n.a line with a dot\r\n";
  return m;
}

TEST(InboxNames, OnlyCompleteNamesAreTaken) {
  EXPECT_TRUE(IsCompleteInboxName("EXP00001.TXT"));
  EXPECT_FALSE(IsCompleteInboxName(".EXP00001.TXT"));
  EXPECT_FALSE(IsCompleteInboxName("EXP00001.tmp"));
  EXPECT_FALSE(IsCompleteInboxName("EXP00001.PART"));
  EXPECT_FALSE(IsCompleteInboxName(""));
}

TEST_F(EngineTest, SendsEveryMessageOnceAndSettlesTheFile) {
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/EXP1.TXT", ExportText(Msg("one")) + ExportText(Msg("two")) +
                                                     ExportText(Msg("three", {"a@x.example at INTERNET", "Smith, Ann at HQ",
                                                                              "b@y.example at INTERNET"}))));
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/.EXP2.TXT", ExportText(Msg("hidden"))));
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/EXP3.tmp", ExportText(Msg("tmp"))));
  Open();
  ASSERT_TRUE(sub_->Drain(std::chrono::seconds(10)).ok());
  auto sent = From("jane.doe@example.com");
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[0].recipients, std::vector<std::string>{"bob@partner.example"});
  EXPECT_EQ(sent[2].recipients, (std::vector<std::string>{"a@x.example", "b@y.example"}));
  EXPECT_NE(sent[0].data.find("Subject: one\r\n"), std::string::npos);
  EXPECT_NE(sent[0].data.find("\r\n.a line with a dot\r\n"), std::string::npos) << sent[0].data;
  // Taken: gone from the inbox, kept in taken/; incomplete names stay.
  EXPECT_FALSE(Exists(inbox_ + "/HQ/EXP1.TXT"));
  EXPECT_TRUE(Exists(inbox_ + "/HQ/.EXP2.TXT"));
  EXPECT_TRUE(Exists(inbox_ + "/HQ/EXP3.tmp"));
  auto l = Ledger();
  std::vector<SubmitFile> files;
  ASSERT_TRUE(l->ListFiles(&files).ok());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].state, kFileDone);
  EXPECT_EQ(files[0].messages, 3);
  EXPECT_EQ(files[0].name, "EXP1.TXT");
  EXPECT_TRUE(Exists(dir_.path() + "/state/taken/HQ/" + files[0].file_id));
  std::vector<SubmitMessage> ms;
  ASSERT_TRUE(l->ListMessages(files[0].file_id, &ms).ok());
  for (const auto& m : ms) {
    EXPECT_EQ(m.state, MessageState::kSent) << m.idx;
    EXPECT_EQ(m.attempts, 1);
    EXPECT_EQ(m.reply.substr(0, 3), "250");
  }
  SubmitterMetrics mt = sub_->metrics();
  EXPECT_EQ(mt.messages_sent, 3u);
  EXPECT_EQ(mt.window_count, 3u);
  EXPECT_NE(Slurp(dir_.path() + "/state/metrics").find("messages_sent 3\n"), std::string::npos);
}

// What cc:Mail's EXPORT writes but our writer never does (a bare local author, a long subject
// with brackets) is read, not quarantined.
TEST_F(EngineTest, ExportFilesAreReadWithExportRules) {
  ExportMessage m = Msg("[Re] a subject longer than the sixty characters our own writer keeps to");
  m.from = "Doe, Jane";
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/A.TXT", ExportText(m)));
  Open();
  ASSERT_TRUE(sub_->Drain(std::chrono::seconds(10)).ok());
  ASSERT_EQ(From("jane.doe@example.com").size(), 1u);
  EXPECT_EQ(sub_->metrics().files_quarantined, 0u);
}

TEST_F(EngineTest, TheSameBytesTakenAgainAreRecognised) {
  const std::string text = ExportText(Msg("once"));
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/A.TXT", text));
  Open();
  ASSERT_TRUE(sub_->Drain(std::chrono::seconds(10)).ok());
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/B.TXT", text));  // the EXPORT job ran twice
  ASSERT_TRUE(sub_->Drain(std::chrono::seconds(10)).ok());
  EXPECT_FALSE(Exists(inbox_ + "/HQ/B.TXT"));
  EXPECT_EQ(From("jane.doe@example.com").size(), 1u);
  SubmitCounters c;
  ASSERT_TRUE(Ledger()->Counters(&c).ok());
  EXPECT_EQ(c.files_taken, 1u);
}

TEST_F(EngineTest, AnUnreadableFileIsQuarantinedWithItsReason) {
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/BAD.TXT", "Hello, this is no EXPORT file\r\n"));
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/GOOD.TXT", ExportText(Msg("good"))));
  Open();
  ASSERT_TRUE(sub_->Drain(std::chrono::seconds(10)).ok());
  EXPECT_EQ(From("jane.doe@example.com").size(), 1u);
  auto l = Ledger();
  std::vector<SubmitFile> files;
  ASSERT_TRUE(l->ListFiles(&files).ok());
  ASSERT_EQ(files.size(), 2u);
  const SubmitFile& bad = files[0].name == "BAD.TXT" ? files[0] : files[1];
  EXPECT_EQ(bad.state, kFileQuarantined);
  const std::string q = dir_.path() + "/state/quarantine/" + bad.file_id;
  EXPECT_EQ(Slurp(q), "Hello, this is no EXPORT file\r\n");
  const std::string reason = Slurp(q + ".reason");
  EXPECT_NE(reason.find("name BAD.TXT"), std::string::npos) << reason;
  EXPECT_NE(reason.find("not a readable cc:Mail EXPORT file"), std::string::npos) << reason;
  EXPECT_EQ(sub_->metrics().files_quarantined, 1u);
}

TEST_F(EngineTest, A4xxRecipientIsRetriedAndNothingIsLost) {
  std::atomic<int> tries{0};
  server_.script = [&](const std::string& cmd) -> std::optional<std::string> {
    if (cmd == "RCPT TO:<bob@partner.example>" && tries++ < 2) return "451 4.3.0 try again later";
    return std::nullopt;
  };
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/A.TXT", ExportText(Msg("later"))));
  Open();
  bool left = false;
  ASSERT_TRUE(sub_->RunOnce(&left).ok());
  EXPECT_TRUE(left);
  EXPECT_EQ(sub_->metrics().deferred_files, 1u);
  ASSERT_TRUE(sub_->Drain(std::chrono::seconds(10)).ok());
  EXPECT_EQ(tries.load(), 3);
  EXPECT_EQ(From("jane.doe@example.com").size(), 1u);
  SubmitCounters c;
  ASSERT_TRUE(Ledger()->Counters(&c).ok());
  EXPECT_EQ(c.sent, 1u);
  EXPECT_EQ(c.in_doubt_resubmitted, 0u);
}

TEST_F(EngineTest, A4xxToTheDotIsNoResubmission) {
  std::atomic<int> dots{0};
  server_.script = [&](const std::string& cmd) -> std::optional<std::string> {
    if (cmd == "." && dots++ == 0) return "452 4.3.1 insufficient storage";
    return std::nullopt;
  };
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/A.TXT", ExportText(Msg("full"))));
  Open();
  ASSERT_TRUE(sub_->Drain(std::chrono::seconds(10)).ok());
  EXPECT_EQ(From("jane.doe@example.com").size(), 1u);
  SubmitCounters c;
  ASSERT_TRUE(Ledger()->Counters(&c).ok());
  EXPECT_EQ(c.sent, 1u);
  EXPECT_EQ(c.in_doubt_resubmitted, 0u);
}

TEST_F(EngineTest, ALostReplyToTheDotIsResubmittedAndCounted) {
  std::atomic<int> dots{0};
  server_.script = [&](const std::string& cmd) -> std::optional<std::string> {
    if (cmd == "." && dots++ == 0) return std::string();  // no reply: the client times out
    return std::nullopt;
  };
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/A.TXT", ExportText(Msg("lost"))));
  SubmitterOptions o = Options();
  server_.Start();
  started_ = true;
  o.smtp.timeout = std::chrono::milliseconds(300);
  ASSERT_TRUE(Submitter::Open(o, &sub_).ok());
  ASSERT_TRUE(sub_->Drain(std::chrono::seconds(10)).ok());
  SubmitCounters c;
  ASSERT_TRUE(Ledger()->Counters(&c).ok());
  EXPECT_EQ(c.sent, 1u);
  EXPECT_EQ(c.in_doubt_resubmitted, 1u);
  EXPECT_EQ(sub_->metrics().in_doubt_resubmitted, 1u);
}

TEST_F(EngineTest, RefusedRecipientsGoBackToTheAuthor) {
  server_.script = [](const std::string& cmd) -> std::optional<std::string> {
    if (cmd == "RCPT TO:<gone@partner.example>") return "550 5.1.1 <gone@partner.example>: user unknown";
    if (cmd == "RCPT TO:<nobody@partner.example>") return "550 5.1.1 no";
    return std::nullopt;
  };
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/A.TXT",
                        ExportText(Msg("partly", {"bob@partner.example at INTERNET", "gone@partner.example at INTERNET"})) +
                            ExportText(Msg("nobody", {"nobody@partner.example at INTERNET"}))));
  Open();
  ASSERT_TRUE(sub_->Drain(std::chrono::seconds(10)).ok());
  auto sent = From("jane.doe@example.com");
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].recipients, std::vector<std::string>{"bob@partner.example"});
  auto notices = WaitForNotices(2);
  ASSERT_EQ(notices.size(), 2u);
  for (const auto& n : notices) EXPECT_EQ(n.recipients, std::vector<std::string>{"jane.doe@example.com"});
  const std::string all = notices[0].data + notices[1].data;
  EXPECT_NE(all.find("Final-Recipient: rfc822; gone@partner.example"), std::string::npos) << all;
  EXPECT_NE(all.find("Status: 5.1.1"), std::string::npos) << all;
  EXPECT_NE(all.find("Subject: Undeliverable: partly"), std::string::npos) << all;
  EXPECT_NE(all.find("Final-Recipient: rfc822; nobody@partner.example"), std::string::npos) << all;
  SubmitCounters c;
  ASSERT_TRUE(Ledger()->Counters(&c).ok());
  EXPECT_EQ(c.partial, 1u);
  EXPECT_EQ(c.refused, 1u);
  // The message with no accepted recipient never reached DATA.
  int datas = 0;
  for (const auto& cmd : server_.commands()) datas += cmd == "DATA";
  EXPECT_EQ(datas, 1 + 2);  // the partial message and the two notices
}

TEST_F(EngineTest, ConversionRefusalsAndFailures) {
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/A.TXT", ExportText(Msg("REFUSE me")) + ExportText(Msg("NOAUTHOR here")) +
                                                  ExportText(Msg("BROKEN one")) + ExportText(Msg("fine")) +
                                                  ExportText(Msg("NOTHING at all"))));
  Open();
  ASSERT_TRUE(sub_->Drain(std::chrono::seconds(10)).ok());
  EXPECT_EQ(From("jane.doe@example.com").size(), 1u);
  auto notices = WaitForNotices(1);
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_NE(notices[0].data.find("mail loop"), std::string::npos) << notices[0].data;
  auto l = Ledger();
  std::vector<SubmitFile> files;
  ASSERT_TRUE(l->ListFiles(&files).ok());
  std::vector<SubmitMessage> ms;
  ASSERT_TRUE(l->ListMessages(files[0].file_id, &ms).ok());
  ASSERT_EQ(ms.size(), 5u);
  EXPECT_EQ(ms[4].state, MessageState::kQuarantined);
  EXPECT_NE(ms[4].reply.find("neither a message nor a refusal"), std::string::npos) << ms[4].reply;
  EXPECT_EQ(ms[0].state, MessageState::kRefused);
  EXPECT_EQ(ms[1].state, MessageState::kQuarantined);
  EXPECT_EQ(ms[2].state, MessageState::kQuarantined);
  EXPECT_EQ(ms[3].state, MessageState::kSent);
  const std::string reason = Slurp(dir_.path() + "/state/quarantine/" + files[0].file_id + ".1.reason");
  EXPECT_NE(reason.find("no author address"), std::string::npos) << reason;
  EXPECT_NE(Slurp(dir_.path() + "/state/quarantine/" + files[0].file_id + ".2.reason").find("broken message"),
            std::string::npos);
  // ccmailctl requeue: back to pending, converted again (still refused by the same input).
  std::unique_ptr<SubmitLedger> rw;
  ASSERT_TRUE(SubmitLedger::Open(dir_.path() + "/state/ledger.db", &rw).ok());
  ASSERT_TRUE(rw->Requeue(files[0].file_id, 2).ok());
  ASSERT_TRUE(sub_->Drain(std::chrono::seconds(10)).ok());
  ASSERT_TRUE(l->ListMessages(files[0].file_id, &ms).ok());
  EXPECT_EQ(ms[2].state, MessageState::kQuarantined);
  EXPECT_EQ(From("jane.doe@example.com").size(), 1u);
}

TEST_F(EngineTest, NoRelayMeansWaitingNotLosing) {
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/A.TXT", ExportText(Msg("waiting"))));
  SubmitterOptions o = Options();
  {
    FakeSmtpServer gone;
    o.relay = gone.endpoint();  // nobody listens there any more
  }
  ASSERT_TRUE(Submitter::Open(o, &sub_).ok());
  bool left = false;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(sub_->RunOnce(&left).ok());
  EXPECT_TRUE(left);
  SubmitCounters c;
  ASSERT_TRUE(Ledger()->Counters(&c).ok());
  EXPECT_EQ(c.pending, 1u);
  EXPECT_EQ(c.sent, 0u);
}

TEST_F(EngineTest, ASecondSubmitterOnTheSameStateIsRefused) {
  Open();
  std::unique_ptr<Submitter> second;
  EXPECT_EQ(Submitter::Open(Options(), &second).code(), Status::Code::kBusy);
}

TEST_F(EngineTest, ExportCommandWritesAHiddenFileRenamedAfterExitZero) {
  const std::string src = dir_.path() + "/export-source.txt";
  ASSERT_TRUE(WriteFile(src, ExportText(Msg("exported"))));
  const std::string flag = dir_.path() + "/locked-once";
  ASSERT_TRUE(WriteFile(flag, ""));
  SubmitterOptions o = Options();
  // First run: the post office is locked (exit 4) after writing half a file; then it works.
  o.export_command = "test \"$CCMAIL_POSTOFFICE\" = HQ || exit 3; "
                     "if [ -e " + flag + " ]; then rm " + flag + "; head -c 10 " + src +
                     " > \"$CCMAIL_EXPORT_FILE\"; exit 4; fi; "
                     "case \"$CCMAIL_EXPORT_FILE\" in */HQ/.export-*.tmp) ;; *) exit 1;; esac; "
                     "cat " + src + " > \"$CCMAIL_EXPORT_FILE\"; rm " + src + "; exit 0";
  o.export_interval = std::chrono::milliseconds(1000);
  server_.Start();
  started_ = true;
  ASSERT_TRUE(Submitter::Open(o, &sub_).ok());
  ASSERT_TRUE(sub_->RunOnce().ok());
  EXPECT_EQ(From("jane.doe@example.com").size(), 0u);
  EXPECT_TRUE(AllFilesIn(inbox_ + "/HQ").empty());  // the half-written file is gone
  for (int i = 0; i < 200 && From("jane.doe@example.com").empty(); ++i) {
    ASSERT_TRUE(sub_->RunOnce().ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto sent = From("jane.doe@example.com");
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_NE(sent[0].data.find("Subject: exported"), std::string::npos);
  auto l = Ledger();
  std::vector<SubmitFile> files;
  ASSERT_TRUE(l->ListFiles(&files).ok());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].name.rfind("EXPORT-", 0), 0u) << files[0].name;
}

// ---- hostile local users: every inbox entry is input ----

// A file the bridge user can read and a local user cannot (the ledger password, say), shaped as
// an EXPORT file to the attacker so that reading it would be enough to send it.
constexpr const char* kSecretWord = "hunter2-ledger-password";
std::string SecretText() {
  return ExportText(Msg(std::string("SECRET ") + kSecretWord, {"attacker@evil.example at INTERNET"}));
}

TEST(InboxEntryTest, ASymlinkPresentAtOpenIsRefusedNotFollowed) {
  TempDir dir("inbox-entry");
  const std::string secret = dir.path() + "/secret";
  ASSERT_TRUE(WriteFile(secret, SecretText()));
  ASSERT_EQ(::symlink(secret.c_str(), (dir.path() + "/A.TXT").c_str()), 0);
  UniqueFd fd(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  InboxEntry e;
  ASSERT_TRUE(ReadInboxEntry(fd.get(), "A.TXT", 1 << 20, &e).ok());
  EXPECT_EQ(e.refusal, InboxRefusal::kSymlink);
  EXPECT_TRUE(e.bytes.empty());
  // Set aside: the link itself moves, its target stays where it was.
  std::string aside;
  ASSERT_TRUE(SetInboxEntryAside(fd.get(), "A.TXT", "symlink: " + e.reason, &aside).ok());
  EXPECT_EQ(aside, ".A.TXT.refused");
  EXPECT_EQ(TypeOf(dir.path() + "/.A.TXT.refused"), S_IFLNK);
  EXPECT_EQ(Slurp(secret), SecretText());
  EXPECT_FALSE(Exists(dir.path() + "/A.TXT"));
  // A second refusal of the same name gets a name of its own, nothing is replaced.
  ASSERT_TRUE(WriteFile(dir.path() + "/A.TXT", "x"));
  ASSERT_TRUE(SetInboxEntryAside(fd.get(), "A.TXT", "too large: test", &aside).ok());
  EXPECT_EQ(aside, ".A.TXT.refused.2");
  EXPECT_EQ(TypeOf(dir.path() + "/.A.TXT.refused"), S_IFLNK);
  EXPECT_NE(Slurp(dir.path() + "/.A.TXT.refused.2.reason").find("refused too large: test"), std::string::npos);
}

TEST(InboxEntryTest, ARegularFileIsReadWhole) {
  TempDir dir("inbox-entry");
  ASSERT_TRUE(WriteFile(dir.path() + "/A.TXT", "0123456789"));
  UniqueFd fd(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  InboxEntry e;
  ASSERT_TRUE(ReadInboxEntry(fd.get(), "A.TXT", 10, &e).ok());
  EXPECT_EQ(e.refusal, InboxRefusal::kNone);
  EXPECT_EQ(e.bytes, "0123456789");
  ASSERT_TRUE(ReadInboxEntry(fd.get(), "A.TXT", 9, &e).ok());
  EXPECT_EQ(e.refusal, InboxRefusal::kTooLarge);
  EXPECT_NE(e.reason.find("10 bytes, above inbox_max_file_size (9 bytes)"), std::string::npos) << e.reason;
  EXPECT_TRUE(ReadInboxEntry(fd.get(), "GONE.TXT", 10, &e).IsNotFound());
}

// Runs `swap` once, at the first directory fsync of the round named `point`: with
// kCrashTakeUnlinked right after the first file is taken (after the listing, before the next
// entry or post office is opened); with kCrashTakeCopied after the first file was read and
// copied, before it is unlinked from the inbox.
class SwapAfterFirstTake : public store::DurableIoWrapper {
 public:
  explicit SwapAfterFirstTake(std::function<void()> swap, const char* point = kCrashTakeUnlinked)
      : swap_(std::move(swap)), point_(point) {}
  Status FsyncDir(const std::string& dir, const char* point = nullptr) override {
    Status s = DurableIoWrapper::FsyncDir(dir, point);
    if (point != nullptr && std::strcmp(point, point_) == 0 && !swapped_) {
      swapped_ = true;
      swap_();
    }
    return s;
  }
  bool swapped_ = false;

 private:
  std::function<void()> swap_;
  const char* point_;
};

// Replaces `entry` by a symlink to `target` (one rename, as an attacker would).
void SwapForSymlink(const std::string& entry, const std::string& target) {
  const std::string tmp = entry + ".swap.tmp";
  if (::symlink(target.c_str(), tmp.c_str()) != 0 || ::rename(tmp.c_str(), entry.c_str()) != 0)
    ADD_FAILURE() << "swap " << entry << ": " << std::strerror(errno);
}

TEST_F(EngineTest, ASymlinkSwappedInAfterTheListingIsNeverRead) {
  const std::string secret = dir_.path() + "/ledger-password";
  ASSERT_TRUE(WriteFile(secret, SecretText()));
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/A.TXT", ExportText(Msg("first"))));
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/B.TXT", ExportText(Msg("second"))));
  SwapAfterFirstTake io([&] { SwapForSymlink(inbox_ + "/HQ/B.TXT", secret); });
  SubmitterOptions o = Options();
  o.io = &io;
  server_.Start();
  started_ = true;
  ASSERT_TRUE(Submitter::Open(o, &sub_).ok());
  testing::internal::CaptureStderr();
  ASSERT_TRUE(sub_->RunOnce().ok());
  const std::string log = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(io.swapped_);
  ASSERT_TRUE(sub_->Drain(std::chrono::seconds(10)).ok());
  // Nothing of the secret reached the relay, the ledger or taken/.
  EXPECT_EQ(AllTheRelaySaw().find(kSecretWord), std::string::npos);
  EXPECT_EQ(AllTheRelaySaw().find("attacker@evil.example"), std::string::npos);
  ASSERT_EQ(From("jane.doe@example.com").size(), 1u);
  std::vector<SubmitFile> files;
  ASSERT_TRUE(Ledger()->ListFiles(&files).ok());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].name, "A.TXT");
  // The symlink itself is set aside with its reason; the secret is untouched.
  EXPECT_FALSE(Exists(inbox_ + "/HQ/B.TXT"));
  EXPECT_EQ(TypeOf(inbox_ + "/HQ/.B.TXT.refused"), S_IFLNK);
  const std::string reason = Slurp(inbox_ + "/HQ/.B.TXT.refused.reason");
  EXPECT_NE(reason.find("entry B.TXT\nrefused symlink: a symbolic link"), std::string::npos) << reason;
  EXPECT_NE(reason.find("\nat 20"), std::string::npos) << reason;
  EXPECT_EQ(Slurp(secret), SecretText());
  EXPECT_EQ(Count(log, "refused inbox entry " + inbox_ + "/HQ/B.TXT (symlink"), 1u) << log;
}

TEST_F(EngineTest, AFifoInTheInboxIsSetAsideWithoutWaiting) {
  ASSERT_EQ(::mkfifo((inbox_ + "/HQ/PIPE.TXT").c_str(), 0600), 0);
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/GOOD.TXT", ExportText(Msg("good"))));
  Open();
  ASSERT_TRUE(sub_->Drain(std::chrono::seconds(10)).ok());  // no writer ever opens the FIFO
  EXPECT_EQ(From("jane.doe@example.com").size(), 1u);
  EXPECT_FALSE(Exists(inbox_ + "/HQ/PIPE.TXT"));
  EXPECT_EQ(TypeOf(inbox_ + "/HQ/.PIPE.TXT.refused"), S_IFIFO);
  const std::string reason = Slurp(inbox_ + "/HQ/.PIPE.TXT.refused.reason");
  EXPECT_NE(reason.find("refused not a regular file: it is a FIFO"), std::string::npos) << reason;
  // Hidden: later scans leave it alone.
  ASSERT_TRUE(sub_->Drain(std::chrono::seconds(10)).ok());
  EXPECT_EQ(TypeOf(inbox_ + "/HQ/.PIPE.TXT.refused"), S_IFIFO);
  EXPECT_FALSE(Exists(inbox_ + "/HQ/..PIPE.TXT.refused.refused"));
}

TEST_F(EngineTest, AHardLinkedFileIsRefused) {
  const std::string secret = dir_.path() + "/ledger-password";
  ASSERT_TRUE(WriteFile(secret, SecretText()));
  ASSERT_EQ(::link(secret.c_str(), (inbox_ + "/HQ/LINK.TXT").c_str()), 0);
  Open();
  ASSERT_TRUE(sub_->Drain(std::chrono::seconds(10)).ok());
  EXPECT_EQ(AllTheRelaySaw().find(kSecretWord), std::string::npos);
  SubmitCounters c;
  ASSERT_TRUE(Ledger()->Counters(&c).ok());
  EXPECT_EQ(c.files_taken, 0u);
  EXPECT_FALSE(Exists(inbox_ + "/HQ/LINK.TXT"));
  EXPECT_EQ(Slurp(inbox_ + "/HQ/.LINK.TXT.refused"), SecretText());
  EXPECT_NE(Slurp(inbox_ + "/HQ/.LINK.TXT.refused.reason").find("a regular file with 2 hard links"), std::string::npos);
  EXPECT_EQ(Slurp(secret), SecretText());
}

TEST_F(EngineTest, AFileAboveInboxMaxFileSizeIsSetAsideOneAtTheLimitIsTaken) {
  const std::string at_limit = ExportText(Msg("at the limit"));
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/AT.TXT", at_limit));
  const std::string over = ExportText(Msg("one byte over the limit")).substr(0, at_limit.size() + 1);
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/OVER.TXT", over));
  SubmitterOptions o = Options();
  o.inbox_max_file_size = at_limit.size();
  server_.Start();
  started_ = true;
  ASSERT_TRUE(Submitter::Open(o, &sub_).ok());
  ASSERT_TRUE(sub_->Drain(std::chrono::seconds(10)).ok());
  auto sent = From("jane.doe@example.com");
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_NE(sent[0].data.find("Subject: at the limit"), std::string::npos);
  std::vector<SubmitFile> files;
  ASSERT_TRUE(Ledger()->ListFiles(&files).ok());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].name, "AT.TXT");
  EXPECT_FALSE(Exists(inbox_ + "/HQ/OVER.TXT"));
  EXPECT_EQ(Slurp(inbox_ + "/HQ/.OVER.TXT.refused").size(), at_limit.size() + 1);  // kept whole
  const std::string reason = Slurp(inbox_ + "/HQ/.OVER.TXT.refused.reason");
  EXPECT_NE(reason.find("refused too large: " + std::to_string(at_limit.size() + 1) +
                        " bytes, above inbox_max_file_size (" + std::to_string(at_limit.size()) + " bytes)"),
            std::string::npos)
      << reason;
}

TEST_F(EngineTest, AMissingInboxIsLoggedOncePerChange) {
  ASSERT_EQ(::rmdir((inbox_ + "/HQ").c_str()), 0);
  ASSERT_EQ(::rmdir(inbox_.c_str()), 0);
  Open();
  testing::internal::CaptureStderr();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(sub_->RunOnce().ok());
  ASSERT_EQ(::mkdir(inbox_.c_str(), 0700), 0);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(sub_->RunOnce().ok());
  ASSERT_EQ(::rmdir(inbox_.c_str()), 0);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(sub_->RunOnce().ok());
  const std::string log = testing::internal::GetCapturedStderr();
  EXPECT_EQ(Count(log, "inbox_directory " + inbox_ + " cannot be listed: No such file or directory"), 2u) << log;
  EXPECT_EQ(Count(log, "inbox_directory " + inbox_ + " can be listed again"), 1u) << log;
}

TEST_F(EngineTest, APostOfficeDirectorySwappedForASymlinkIsNotEntered) {
  // The spool holds captured mail: a symlink renamed over a post office directory after the
  // listing must not make the submitter take (and unlink) the files it points to.
  const std::string elsewhere = dir_.path() + "/spool-new";
  ASSERT_EQ(::mkdir(elsewhere.c_str(), 0700), 0);
  ASSERT_TRUE(WriteFile(elsewhere + "/CAPTURED.TXT", SecretText()));
  ASSERT_EQ(::mkdir((inbox_ + "/ZZ").c_str(), 0700), 0);
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/A.TXT", ExportText(Msg("first"))));
  SwapAfterFirstTake io([&] {
    if (::rmdir((inbox_ + "/ZZ").c_str()) != 0) ADD_FAILURE() << "rmdir ZZ: " << std::strerror(errno);
    SwapForSymlink(inbox_ + "/ZZ", elsewhere);
  });
  SubmitterOptions o = Options();
  o.io = &io;
  server_.Start();
  started_ = true;
  ASSERT_TRUE(Submitter::Open(o, &sub_).ok());
  testing::internal::CaptureStderr();
  ASSERT_TRUE(sub_->Drain(std::chrono::seconds(10)).ok());
  const std::string log = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(io.swapped_);
  EXPECT_EQ(Slurp(elsewhere + "/CAPTURED.TXT"), SecretText());
  EXPECT_EQ(AllTheRelaySaw().find(kSecretWord), std::string::npos);
  EXPECT_EQ(From("jane.doe@example.com").size(), 1u);
  EXPECT_EQ(Count(log, "post office directory " + inbox_ + "/ZZ cannot be opened"), 1u) << log;
}

TEST_F(EngineTest, APostOfficeDirectorySwappedBeforeTheUnlinkDoesNotRedirectIt) {
  // The taken file is unlinked through the directory it was read from: a symlink renamed over
  // the post office directory meanwhile cannot make it unlink a same-named file elsewhere.
  const std::string elsewhere = dir_.path() + "/spool-new";
  ASSERT_EQ(::mkdir(elsewhere.c_str(), 0700), 0);
  ASSERT_TRUE(WriteFile(elsewhere + "/X.TXT", SecretText()));
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/X.TXT", ExportText(Msg("bait"))));
  SwapAfterFirstTake io(
      [&] {
        if (::rename((inbox_ + "/HQ").c_str(), (inbox_ + "/.HQ-real").c_str()) != 0)
          ADD_FAILURE() << "rename HQ: " << std::strerror(errno);
        SwapForSymlink(inbox_ + "/HQ", elsewhere);
      },
      kCrashTakeCopied);
  SubmitterOptions o = Options();
  o.io = &io;
  server_.Start();
  started_ = true;
  ASSERT_TRUE(Submitter::Open(o, &sub_).ok());
  ASSERT_TRUE(sub_->RunOnce().ok());
  ASSERT_TRUE(io.swapped_);
  EXPECT_EQ(Slurp(elsewhere + "/X.TXT"), SecretText());
  EXPECT_FALSE(Exists(inbox_ + "/.HQ-real/X.TXT"));  // the file taken is the one unlinked
}

// taken/ is pruned: a done file's copy goes taken_retention after its last message settled;
// a recent one, an open one (messages to settle) and a done one with a quarantined message stay.
TEST_F(EngineTest, OldDoneTakenCopiesAreRemovedOthersKept) {
  server_.Start();
  started_ = true;
  SubmitterOptions o = Options();
  auto run = [&](const std::string& name, const std::string& text) {
    ASSERT_TRUE(WriteFile(inbox_ + "/HQ/" + name, text));
    ASSERT_TRUE(Submitter::Open(o, &sub_).ok());
    ASSERT_TRUE(sub_->Drain(std::chrono::seconds(10)).ok());
    sub_.reset();
  };
  o.taken_retention = std::chrono::milliseconds(0);  // the daemon's own pass must not run yet
  run("OLD.TXT", ExportText(Msg("old")));
  run("QUAR.TXT", ExportText(Msg("fine")) + ExportText(Msg("NOAUTHOR here")));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  run("NEW.TXT", ExportText(Msg("new")));
  // An open file: its recipient answers 4xx for now.
  server_.script = [&](const std::string& cmd) -> std::optional<std::string> {
    if (cmd == "RCPT TO:<later@partner.example>") return "451 4.3.0 try again later";
    return std::nullopt;
  };
  ASSERT_TRUE(WriteFile(inbox_ + "/HQ/OPEN.TXT", ExportText(Msg("open", {"later@partner.example at INTERNET"}))));
  ASSERT_TRUE(Submitter::Open(o, &sub_).ok());
  ASSERT_TRUE(sub_->RunOnce().ok());
  sub_.reset();

  std::map<std::string, SubmitFile> by_name;
  std::map<std::string, int64_t> settled;
  {
    auto l = Ledger();
    std::vector<SubmitFile> files;
    ASSERT_TRUE(l->ListFiles(&files).ok());
    for (const SubmitFile& f : files) {
      by_name[f.name] = f;
      std::vector<SubmitMessage> ms;
      ASSERT_TRUE(l->ListMessages(f.file_id, &ms).ok());
      for (const SubmitMessage& m : ms) settled[f.name] = std::max(settled[f.name], m.settled_ms);
    }
  }
  ASSERT_EQ(by_name.size(), 4u);
  ASSERT_EQ(by_name["OLD.TXT"].state, kFileDone);
  ASSERT_EQ(by_name["QUAR.TXT"].state, kFileDone);
  ASSERT_EQ(by_name["NEW.TXT"].state, kFileDone);
  ASSERT_EQ(by_name["OPEN.TXT"].state, kFileTaken);
  ASSERT_LT(settled["OLD.TXT"], settled["NEW.TXT"]);
  auto copy = [&](const std::string& name) { return dir_.path() + "/state/taken/HQ/" + by_name[name].file_id; };
  for (const char* name : {"OLD.TXT", "QUAR.TXT", "NEW.TXT", "OPEN.TXT"}) ASSERT_TRUE(Exists(copy(name))) << name;

  // Ten days on, the retention ends between OLD's and NEW's settling.
  const int64_t gap = settled["NEW.TXT"] - settled["OLD.TXT"];
  o.taken_retention = std::chrono::hours(24 * 10);
  o.wall_clock_ms = [&] { return settled["OLD.TXT"] + o.taken_retention.count() + gap / 2 + 1; };
  ASSERT_TRUE(Submitter::Open(o, &sub_).ok());
  ASSERT_TRUE(sub_->RunOnce().ok());
  EXPECT_FALSE(Exists(copy("OLD.TXT")));
  EXPECT_TRUE(Exists(copy("QUAR.TXT")));
  EXPECT_TRUE(Exists(copy("NEW.TXT")));
  EXPECT_TRUE(Exists(copy("OPEN.TXT")));
  // The ledger still knows the file.
  SubmitFile old;
  ASSERT_TRUE(Ledger()->GetFile(by_name["OLD.TXT"].file_id, &old).ok());
  EXPECT_EQ(old.state, kFileDone);
  sub_.reset();

  // A year on with retention 0: everything is kept.
  o.taken_retention = std::chrono::milliseconds(0);
  o.wall_clock_ms = [&] { return settled["NEW.TXT"] + int64_t{365} * 24 * 3600 * 1000; };
  ASSERT_TRUE(Submitter::Open(o, &sub_).ok());
  ASSERT_TRUE(sub_->RunOnce().ok());
  EXPECT_TRUE(Exists(copy("NEW.TXT")));
  EXPECT_TRUE(Exists(copy("QUAR.TXT")));
  sub_.reset();

  // The same year on with a retention: NEW goes too; the open file and the one with a
  // quarantined message, both long past the retention, stay.
  o.taken_retention = std::chrono::hours(24 * 10);
  ASSERT_TRUE(Submitter::Open(o, &sub_).ok());
  ASSERT_TRUE(sub_->RunOnce().ok());
  EXPECT_FALSE(Exists(copy("NEW.TXT")));
  EXPECT_TRUE(Exists(copy("QUAR.TXT")));
  EXPECT_TRUE(Exists(copy("OPEN.TXT")));
}

TEST(SubmitterOptionsTest, TakenRetentionIsADuration) {
  Config cfg;
  ASSERT_TRUE(Config::Parse("", "test.conf", &cfg).ok());
  SubmitterOptions o;
  ASSERT_TRUE(SubmitterOptions::FromConfig(cfg, &o).ok());
  EXPECT_EQ(o.taken_retention, std::chrono::hours(24 * 30));
  ASSERT_TRUE(Config::Parse("taken_retention = 0\n", "test.conf", &cfg).ok());
  ASSERT_TRUE(SubmitterOptions::FromConfig(cfg, &o).ok());
  EXPECT_EQ(o.taken_retention.count(), 0);
}

// An administrator reading "fatal: submit_timeout must be above 0" had to guess which file and
// line; every refusal names the file, the line, the setting and what it must be.
TEST(SubmitterOptionsTest, EveryRefusalNamesTheFileAndLine) {
  for (const char* bad : {"spool_directory = var/spool\n", "inbox_directory = inbox\n", "inbox_max_file_size = 0\n",
                          "submit_relay = relay.example:port\n", "export_interval = 10ms\n", "submit_timeout = 0\n",
                          "taken_retention = soon\n"}) {
    Config cfg;
    ASSERT_TRUE(Config::Parse(std::string("# first line\n") + bad, "/etc/ccmail-bridge/test.conf", &cfg).ok()) << bad;
    SubmitterOptions o;
    Status s = SubmitterOptions::FromConfig(cfg, &o);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_NE(s.message().find("/etc/ccmail-bridge/test.conf:2"), std::string::npos) << bad << " -> " << s.ToString();
    const std::string name = std::string(bad).substr(0, std::string(bad).find(' '));
    EXPECT_NE(s.message().find(name), std::string::npos) << bad << " -> " << s.ToString();
  }
}

TEST(SubmitterOptionsTest, InboxMaxFileSizeIsASize) {
  Config cfg;
  ASSERT_TRUE(Config::Parse("", "test.conf", &cfg).ok());
  SubmitterOptions o;
  ASSERT_TRUE(SubmitterOptions::FromConfig(cfg, &o).ok());
  EXPECT_EQ(o.inbox_max_file_size, 200ull << 20);
  ASSERT_TRUE(Config::Parse("inbox_max_file_size = 512k\n", "test.conf", &cfg).ok());
  ASSERT_TRUE(SubmitterOptions::FromConfig(cfg, &o).ok());
  EXPECT_EQ(o.inbox_max_file_size, 512u << 10);
  ASSERT_TRUE(Config::Parse("inbox_max_file_size = 0\n", "test.conf", &cfg).ok());
  EXPECT_FALSE(SubmitterOptions::FromConfig(cfg, &o).ok());
  ASSERT_TRUE(Config::Parse("inbox_max_file_size = lots\n", "test.conf", &cfg).ok());
  EXPECT_FALSE(SubmitterOptions::FromConfig(cfg, &o).ok());
}

}  // namespace
}  // namespace ccmail::submitter
