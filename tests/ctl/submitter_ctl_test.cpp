// `ccmailctl submitter status|list|show|requeue|metrics` run in process (RunCtl) against a
// real SubmitLedger, inbox, quarantine and notices directory under a temporary directory.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "ccmail/submitter/submit_ledger.h"
#include "ctl_test_util.h"
#include "json_check.h"

namespace ccmail::ctl::test {
namespace {

using submitter::MessageState;
using submitter::SubmitFile;
using submitter::SubmitLedger;
using submitter::SubmitMessage;

const std::string kFileA = std::string(64, 'a');
const std::string kFileB = "b1" + std::string(62, '7');

Json ParseOrFail(const std::string& text) {
  Json j;
  std::string error;
  EXPECT_TRUE(JsonParser::Parse(text, &j, &error)) << error << "\n" << text;
  return j;
}

std::string Value(const Json& j, const std::string& path) {
  const Json* v = j.Find(path);
  return v ? v->text : "<missing " + path + ">";
}

class WayBack {
 public:
  WayBack() {
    state_ = b_.paths().spool_directory + "/submitter";
    inbox_ = b_.dir() + "/inbox";
    std::ofstream(b_.config_path(), std::ios::app) << "inbox_directory = " << inbox_ << "\n"
                                                   << "submitter_pid_file = " << b_.dir() << "/submitter.pid\n";
  }
  BridgeDir& b() { return b_; }
  const std::string& state() const { return state_; }
  const std::string& inbox() const { return inbox_; }
  std::string LedgerPath() const { return state_ + "/ledger.db"; }

  // Two files: A with a sent, a refused and a quarantined message; B with one pending message.
  void Populate() {
    std::filesystem::create_directories(state_);
    std::unique_ptr<SubmitLedger> l;
    ASSERT_TRUE(SubmitLedger::Open(LedgerPath(), &l).ok());
    bool inserted = false;
    ASSERT_TRUE(l->RecordFile({kFileA, "HUBPO2", "EXPCOUNT.CCM", 0, 3, submitter::kFileTaken}, &inserted).ok());
    ASSERT_TRUE(l->RecordFile({kFileB, "SALESPO", "EXPKEYWD.CCM", 0, 1, submitter::kFileTaken}, &inserted).ok());
    auto msg = [](const std::string& file, int idx, const std::string& rcpt) {
      SubmitMessage m;
      m.file_id = file;
      m.idx = idx;
      m.message_id = "<" + file.substr(0, 6) + std::to_string(idx) + "@reverse.test>";
      m.author = "jsmith@ccmail.corp.example";
      m.recipients = {rcpt};
      return m;
    };
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(l->RecordMessage(msg(kFileA, i, "r" + std::to_string(i) + "@partner.example")).ok());
    ASSERT_TRUE(l->RecordMessage(msg(kFileB, 0, "erin@partner.example")).ok());
    bool resub = false;
    ASSERT_TRUE(l->MarkInDoubt(kFileA, 0, &resub).ok());
    ASSERT_TRUE(l->Settle(kFileA, 0, MessageState::kSent, "250 2.0.0 Ok: queued as 4F1").ok());
    ASSERT_TRUE(l->MarkInDoubt(kFileA, 1, &resub).ok());
    ASSERT_TRUE(l->Settle(kFileA, 1, MessageState::kRefused, "550 5.1.1 <r1@partner.example>: no such user").ok());
    ASSERT_TRUE(l->Settle(kFileA, 2, MessageState::kQuarantined, "no author address").ok());
    // The taken copies the daemon keeps (requeue needs them).
    for (const auto& [po, id] : {std::pair{"HUBPO2", kFileA}, std::pair{"SALESPO", kFileB}}) {
      std::filesystem::create_directories(state_ + "/taken/" + po);
      std::ofstream(state_ + "/taken/" + po + "/" + id) << "Message:\r\n";
    }
  }

 private:
  BridgeDir b_;
  std::string state_, inbox_;
};

TEST(SubmitterCtl, NothingThereYetIsAStateNotAnError) {
  WayBack w;
  RunResult r = w.b().Run({"submitter", "status"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("not running"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("none yet"), std::string::npos) << r.out;
  EXPECT_EQ(w.b().Run({"submitter", "list"}).rc, 0);
  r = w.b().Run({"--json", "submitter", "metrics"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(Value(ParseOrFail(r.out), "in_doubt_resubmitted"), "0");
  // requeue must not create a ledger where there is none.
  EXPECT_EQ(w.b().Run({"submitter", "requeue", "--all"}).rc, kExitFailure);
  EXPECT_FALSE(std::filesystem::exists(w.LedgerPath()));
  EXPECT_EQ(w.b().Run({"submitter"}).rc, kExitUsage);
  EXPECT_EQ(w.b().Run({"submitter", "show"}).rc, kExitUsage);
}

TEST(SubmitterCtl, StatusCountsLedgerInboxQuarantineAndNotices) {
  WayBack w;
  w.Populate();
  std::filesystem::create_directories(w.inbox() + "/HUBPO2");
  std::filesystem::create_directories(w.inbox() + "/SALESPO");
  std::ofstream(w.inbox() + "/HUBPO2/EXP1.CCM") << "Message:\r\n";
  std::ofstream(w.inbox() + "/HUBPO2/EXP2.CCM") << "Message:\r\n";
  std::ofstream(w.inbox() + "/SALESPO/EXP3.CCM") << "Message:\r\n";
  // Not complete yet: the daemon would not take them, so they are no backlog.
  std::ofstream(w.inbox() + "/SALESPO/.EXP4.CCM") << "Mess";
  std::ofstream(w.inbox() + "/SALESPO/EXP5.CCM.part") << "Mess";
  std::ofstream(w.inbox() + "/SALESPO/EXP6.tmp") << "Mess";
  std::filesystem::create_directories(w.state() + "/quarantine");
  std::ofstream(w.state() + "/quarantine/BAD.CCM") << "x";
  std::ofstream(w.state() + "/quarantine/BAD.CCM.reason") << "no Message: line";
  std::filesystem::create_directories(w.state() + "/notices");
  std::ofstream(w.state() + "/notices/n1") << "x";

  RunResult r = w.b().Run({"--json", "submitter", "status"});
  ASSERT_EQ(r.rc, 0) << r.err;
  Json j = ParseOrFail(r.out);
  EXPECT_EQ(Value(j, "ledger.state"), "ok");
  EXPECT_EQ(Value(j, "ledger.files_taken"), "2");
  EXPECT_EQ(Value(j, "ledger.messages_sent"), "1");
  EXPECT_EQ(Value(j, "ledger.refused"), "1");
  EXPECT_EQ(Value(j, "ledger.quarantined"), "1");
  EXPECT_EQ(Value(j, "ledger.pending"), "1");
  EXPECT_EQ(Value(j, "inbox.backlog_files"), "3");
  EXPECT_EQ(Value(j, "inbox.post_offices.HUBPO2"), "2");
  EXPECT_EQ(Value(j, "inbox.post_offices.SALESPO"), "1");
  EXPECT_EQ(Value(j, "quarantined_files"), "1");
  EXPECT_EQ(Value(j, "notices_pending"), "1");
  EXPECT_EQ(Value(j, "submitter"), "not running");

  r = w.b().Run({"submitter", "status"});
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find("1 sent, 0 partial, 1 refused, 1 quarantined"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("3 file(s)"), std::string::npos) << r.out;

  // A pid file naming a process that is not a ccmail-submitter (this test) is not trusted.
  std::ofstream(w.b().dir() + "/submitter.pid") << ::getpid() << "\n";
  EXPECT_EQ(Value(ParseOrFail(w.b().Run({"--json", "submitter", "status"}).out), "submitter"), "not running");
}

// Entries the submitter set aside (.<name>.refused[.<n>], with a .reason file each) are counted
// per post office, whatever they are, and point to docs/ADMIN.md.
TEST(SubmitterCtl, StatusCountsRefusedInboxEntries) {
  WayBack w;
  w.Populate();
  std::filesystem::create_directories(w.inbox() + "/HUBPO2");
  std::filesystem::create_directories(w.inbox() + "/SALESPO");
  std::ofstream(w.inbox() + "/HUBPO2/.BIG.CCM.refused") << "Message:\r\n";
  std::ofstream(w.inbox() + "/HUBPO2/.BIG.CCM.refused.reason") << "refused too large";
  std::ofstream(w.inbox() + "/HUBPO2/.BIG.CCM.refused.2") << "Message:\r\n";
  std::ofstream(w.inbox() + "/HUBPO2/.BIG.CCM.refused.2.reason") << "refused too large";
  ASSERT_EQ(::symlink("/etc/passwd", (w.inbox() + "/SALESPO/.LINK.CCM.refused").c_str()), 0);
  std::ofstream(w.inbox() + "/SALESPO/.LINK.CCM.refused.reason") << "refused symlink";
  // Not refused entries: a hidden file being written, a complete file (backlog).
  std::ofstream(w.inbox() + "/SALESPO/.EXP4.refused.CCM") << "Mess";
  std::ofstream(w.inbox() + "/SALESPO/EXP.refused") << "Message:\r\n";

  RunResult r = w.b().Run({"--json", "submitter", "status"});
  ASSERT_EQ(r.rc, 0) << r.err;
  Json j = ParseOrFail(r.out);
  EXPECT_EQ(Value(j, "inbox.refused"), "3");
  EXPECT_EQ(Value(j, "inbox.refused_per_post_office.HUBPO2"), "2");
  EXPECT_EQ(Value(j, "inbox.refused_per_post_office.SALESPO"), "1");
  EXPECT_NE(Value(j, "inbox.refused_hint").find("docs/ADMIN.md"), std::string::npos) << r.out;
  EXPECT_EQ(Value(j, "inbox.backlog_files"), "1");

  r = w.b().Run({"submitter", "status"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("3 entries (set aside"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("docs/ADMIN.md"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2 refused"), std::string::npos) << r.out;

  // The same counts for monitoring.
  r = w.b().Run({"submitter", "metrics"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("ccmail_submitter_inbox_refused{post_office=\"HUBPO2\"} 2\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ccmail_submitter_inbox_refused{post_office=\"SALESPO\"} 1\n"), std::string::npos) << r.out;
  EXPECT_EQ(Value(ParseOrFail(w.b().Run({"--json", "submitter", "metrics"}).out), "inbox_refused"), "3");
  // A post office directory named by a hostile writer does not break the exposition format.
  std::filesystem::create_directories(w.inbox() + "/EVIL\"PO\\");
  std::ofstream(w.inbox() + "/EVIL\"PO\\/.X.refused") << "x";
  r = w.b().Run({"submitter", "metrics"});
  EXPECT_NE(r.out.find("ccmail_submitter_inbox_refused{post_office=\"EVIL\\\"PO\\\\\"} 1\n"), std::string::npos) << r.out;
  std::filesystem::remove_all(w.inbox() + "/EVIL\"PO\\");

  // None refused: a zero and no hint.
  for (const char* name : {"HUBPO2/.BIG.CCM.refused", "HUBPO2/.BIG.CCM.refused.2", "SALESPO/.LINK.CCM.refused"})
    std::filesystem::remove(w.inbox() + "/" + name);
  j = ParseOrFail(w.b().Run({"--json", "submitter", "status"}).out);
  EXPECT_EQ(Value(j, "inbox.refused"), "0");
  EXPECT_EQ(j.Find("inbox.refused_hint"), nullptr);
  EXPECT_NE(w.b().Run({"submitter", "metrics"}).out.find("ccmail_submitter_inbox_refused 0\n"), std::string::npos);
}

TEST(SubmitterCtl, ListFilesAndMessagesByStateOrFile) {
  WayBack w;
  w.Populate();
  RunResult r = w.b().Run({"submitter", "list"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("EXPCOUNT.CCM"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("EXPKEYWD.CCM"), std::string::npos) << r.out;

  r = w.b().Run({"--json", "submitter", "list", "--state", "refused"});
  ASSERT_EQ(r.rc, 0) << r.err;
  Json j = ParseOrFail(r.out);
  ASSERT_EQ(j.items.size(), 1u) << r.out;
  EXPECT_EQ(Value(j, "0.key"), kFileA + ":1");
  EXPECT_EQ(Value(j, "0.recipients.0"), "r1@partner.example");

  r = w.b().Run({"--json", "submitter", "list", "--file", kFileB.substr(0, 8)});
  ASSERT_EQ(r.rc, 0) << r.err;
  j = ParseOrFail(r.out);
  ASSERT_EQ(j.items.size(), 1u) << r.out;
  EXPECT_EQ(Value(j, "0.state"), "pending");

  EXPECT_EQ(w.b().Run({"submitter", "list", "--state", "lost"}).rc, kExitUsage);
  EXPECT_EQ(w.b().Run({"submitter", "list", "--file", "cccccccc"}).rc, kExitFailure);
  EXPECT_EQ(w.b().Run({"submitter", "list", "--file", "abc"}).rc, kExitFailure);  // too short a prefix
  r = w.b().Run({"submitter", "list", "--state", "sent", "-n", "0"});
  EXPECT_NE(r.out.find("4F1"), std::string::npos) << r.out;
}

TEST(SubmitterCtl, ShowByKeyOrMessageId) {
  WayBack w;
  w.Populate();
  const std::string copy = w.state() + "/taken/HUBPO2/" + kFileA;
  RunResult r = w.b().Run({"submitter", "show", kFileA.substr(0, 12) + ":1"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("refused"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("550 5.1.1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("HUBPO2/EXPCOUNT.CCM"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(copy), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ccmailctl submitter requeue"), std::string::npos) << r.out;

  // The file done and its copy removed after taken_retention: said so, no requeue offered.
  {
    std::unique_ptr<SubmitLedger> l;
    ASSERT_TRUE(SubmitLedger::Open(w.LedgerPath(), &l).ok());
    ASSERT_TRUE(l->SetFileState(kFileA, submitter::kFileDone, 3).ok());
  }
  std::filesystem::remove(copy);
  r = w.b().Run({"submitter", "show", kFileA.substr(0, 12) + ":1"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("not kept (" + copy + " is gone: removed after taken_retention)"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("ccmailctl submitter requeue"), std::string::npos) << r.out;

  r = w.b().Run({"--json", "submitter", "show", "<aaaaaa0@reverse.test>"});
  ASSERT_EQ(r.rc, 0) << r.err;
  Json j = ParseOrFail(r.out);
  EXPECT_EQ(Value(j, "state"), "sent");
  EXPECT_EQ(Value(j, "index"), "0");
  EXPECT_EQ(w.b().Run({"submitter", "show", "<nope@reverse.test>"}).rc, kExitFailure);
}

TEST(SubmitterCtl, RequeueRefusedAndQuarantinedOnly) {
  WayBack w;
  w.Populate();
  // A sent message is not requeued (it went out: requeueing it would send it twice).
  RunResult r = w.b().Run({"submitter", "requeue", kFileA.substr(0, 12) + ":0"});
  EXPECT_EQ(r.rc, kExitFailure) << r.out;
  r = w.b().Run({"submitter", "requeue", kFileA.substr(0, 12) + ":1"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("was refused"), std::string::npos) << r.out;
  r = w.b().Run({"--json", "submitter", "requeue", "--all"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(Value(ParseOrFail(r.out), "requeued"), "1");  // the quarantined one; the refused one is pending now

  std::unique_ptr<SubmitLedger> l;
  ASSERT_TRUE(SubmitLedger::OpenReadOnly(w.LedgerPath(), &l).ok());
  SubmitMessage m;
  ASSERT_TRUE(l->GetMessage(kFileA, 0, &m).ok());
  EXPECT_EQ(m.state, MessageState::kSent);
  ASSERT_TRUE(l->GetMessage(kFileA, 1, &m).ok());
  EXPECT_EQ(m.state, MessageState::kPending);
  ASSERT_TRUE(l->GetMessage(kFileA, 2, &m).ok());
  EXPECT_EQ(m.state, MessageState::kPending);
  r = w.b().Run({"submitter", "requeue", "--all"});
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find("nothing to requeue"), std::string::npos) << r.out;
}

// A message whose taken copy was removed (taken_retention) is not requeued: the daemon would
// have nothing to read it from. --all skips it without failing.
TEST(SubmitterCtl, RequeueNeedsTheTakenCopy) {
  WayBack w;
  w.Populate();
  std::filesystem::remove(w.state() + "/taken/HUBPO2/" + kFileA);
  RunResult r = w.b().Run({"submitter", "requeue", kFileA.substr(0, 12) + ":1"});
  EXPECT_EQ(r.rc, kExitFailure) << r.out;
  EXPECT_NE(r.err.find("is gone (removed after taken_retention)"), std::string::npos) << r.err;
  r = w.b().Run({"--json", "submitter", "requeue", "--all"});
  EXPECT_EQ(r.rc, 0) << r.err;
  Json j = ParseOrFail(r.out);
  EXPECT_EQ(Value(j, "requeued"), "0");
  EXPECT_EQ(Value(j, "copy_gone"), "2");
  std::unique_ptr<SubmitLedger> l;
  ASSERT_TRUE(SubmitLedger::OpenReadOnly(w.LedgerPath(), &l).ok());
  SubmitMessage m;
  ASSERT_TRUE(l->GetMessage(kFileA, 1, &m).ok());
  EXPECT_EQ(m.state, MessageState::kRefused);
}

TEST(SubmitterCtl, MetricsPrometheusAndJson) {
  WayBack w;
  w.Populate();
  RunResult r = w.b().Run({"submitter", "metrics"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("ccmail_submitter_messages{state=\"sent\"} 1\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ccmail_submitter_messages{state=\"refused\"} 1\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ccmail_submitter_files_taken_total 2\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ccmail_submitter_up 0\n"), std::string::npos) << r.out;
  Json j = ParseOrFail(w.b().Run({"--json", "submitter", "metrics"}).out);
  EXPECT_EQ(Value(j, "files_taken"), "2");
  EXPECT_EQ(Value(j, "messages_sent"), "1");
  EXPECT_EQ(Value(j, "in_doubt_resubmitted"), "0");
  EXPECT_EQ(j.Find("last_round_ms"), nullptr);  // no daemon has run

  // The daemon's metrics file adds what only it knows; the ledger's counts win over its copy.
  std::ofstream(w.state() + "/metrics") << "files_taken 99\nnotices_pending 4\nlast_round_ms 12\nwindow_max_us 850\n";
  j = ParseOrFail(w.b().Run({"--json", "submitter", "metrics"}).out);
  EXPECT_EQ(Value(j, "files_taken"), "2");
  EXPECT_EQ(Value(j, "notices_pending"), "4");
  EXPECT_EQ(Value(j, "last_round_ms"), "12");
  EXPECT_EQ(Value(j, "window_max_us"), "850");
  r = w.b().Run({"submitter", "metrics"});
  EXPECT_NE(r.out.find("ccmail_submitter_daemon{name=\"window_max_us\"} 850\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ccmail_submitter_notices_pending 4\n"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace ccmail::ctl::test
