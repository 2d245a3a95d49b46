// In-process harness: drives CaptureSession (what every libmilter callback calls)
// against a fake sink that records what was streamed and can fail on demand.
#include "ccmail/milter/capture_session.h"

#include <gtest/gtest.h>

#include "ccmail/milter/admission.h"
#include "ccmail/milter/settings.h"

namespace ccmail::milter {
namespace {

struct FakeState {
  std::string data;              // bytes of the capture being written
  std::vector<std::string> committed;  // raw messages made "durable"
  std::vector<CaptureEnvelope> envelopes;
  int begun = 0, aborted = 0;
  bool fail_begin = false, fail_write = false, fail_commit_nospace = false, fail_commit = false;
  SinkProbe probe;
};

class FakeWriter : public CaptureWriter {
 public:
  explicit FakeWriter(FakeState* st) : st_(st) { st_->data.clear(); }
  Status AddHeader(std::string_view n, std::string_view v) override {
    return Put(std::string(n) + ":" + std::string(v) + "\r\n");
  }
  Status EndHeaders() override { return Put("\r\n"); }
  Status AddBody(std::string_view c) override { return Put(std::string(c)); }
  Status Commit(const CaptureEnvelope& env, CaptureReceipt* r) override {
    if (st_->fail_commit_nospace) return Status::NoSpace("fsync: No space left on device");
    if (st_->fail_commit) return Status::FromErrno("fsync spool/tmp/x", EIO);
    st_->committed.push_back(st_->data);
    st_->envelopes.push_back(env);
    r->capture_id = "0123456789abcdef0123456789abcdef";
    r->size = st_->data.size();
    done_ = true;
    return Status::Ok();
  }
  void Abort() override {
    if (!done_ && !aborted_) ++st_->aborted;
    aborted_ = true;
  }
  ~FakeWriter() override { Abort(); }

 private:
  Status Put(const std::string& s) {
    if (st_->fail_write) return Status::NoSpace("write: No space left on device");
    st_->data += s;
    return Status::Ok();
  }
  FakeState* st_;
  bool done_ = false, aborted_ = false;
};

class FakeSink : public CaptureSink {
 public:
  FakeState st;
  std::string sender;  // as given to Begin
  Status Begin(std::string_view sender_in, std::unique_ptr<CaptureWriter>* w) override {
    sender = sender_in;
    if (st.fail_begin) return Status::FromErrno("create spool/tmp/x", EACCES);
    ++st.begun;
    *w = std::make_unique<FakeWriter>(&st);
    return Status::Ok();
  }
  SinkProbe Probe() override { return st.probe; }
};

std::shared_ptr<const Policy> MakePolicy(CaptureMode mode = CaptureMode::kDivert, bool reject_unknown = false,
                                         Limits limits = {}) {
  format::AddressMapOptions opt{.ccmail_domains = {"cc.example"}, .default_postoffice = "", .percent_route_postoffices = {}};
  std::shared_ptr<const format::AddressMap> map;
  Status s = format::AddressMap::Parse(
      "jsmith@corp.example  Smith, John at HUBPO2\n"
      "kim@cc.example       Kim Lee at HUBPO\n"
      "@branch.example      BRANCHPO\n",
      "test-map", opt, &map);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return std::make_shared<const Policy>(Policy{Router(map, reject_unknown), mode, limits, AdmissionLimits{}});
}

class SessionTest : public ::testing::Test {
 protected:
  FakeSink sink;
  CaptureSession session{&sink};

  // One message through every step; returns the end result.
  EndResult Send(std::shared_ptr<const Policy> policy, std::vector<std::string> rcpts,
                 std::string body = "hello\r\n") {
    EXPECT_EQ(session.MailFrom(policy, "<alice@example.org>", {}).kind, Step::Kind::kContinue);
    for (auto& r : rcpts) EXPECT_EQ(session.Rcpt(r).kind, Step::Kind::kContinue) << r;
    EXPECT_EQ(session.Data().kind, Step::Kind::kContinue);
    EXPECT_EQ(session.Header("Subject", " hi").kind, Step::Kind::kContinue);
    EXPECT_EQ(session.Header("Message-ID", " <1@example.org>").kind, Step::Kind::kContinue);
    EXPECT_EQ(session.EndOfHeaders().kind, Step::Kind::kContinue);
    EXPECT_EQ(session.Body(body).kind, Step::Kind::kContinue);
    return session.EndOfMessage("4AbC12");
  }
};

TEST(RouterTest, ClassifiesExactDomainRuleUnknownAndOther) {
  auto p = MakePolicy();
  EXPECT_EQ(p->router.Classify("<jsmith@corp.example>").kind, Route::Kind::kCcMail);
  EXPECT_EQ(p->router.Classify("<JSmith@Corp.Example>").address.name, "Smith, John");
  Route b = p->router.Classify("<pat@branch.example>");
  EXPECT_EQ(b.kind, Route::Kind::kCcMail);
  EXPECT_EQ(b.address.post_office, "BRANCHPO");
  EXPECT_EQ(p->router.Classify("<nobody@cc.example>").kind, Route::Kind::kUnknown);
  EXPECT_EQ(p->router.Classify("<bob@example.org>").kind, Route::Kind::kOther);
  EXPECT_EQ(p->router.Classify("<>").kind, Route::Kind::kOther);
  EXPECT_EQ(p->router.Classify("").kind, Route::Kind::kOther);
}

TEST_F(SessionTest, DivertCapturesAndDeletesOnlyCcMailRecipients) {
  EndResult r = Send(MakePolicy(), {"<jsmith@corp.example>", "<bob@example.org>", "<kim@cc.example>"});
  ASSERT_TRUE(r.captured);
  EXPECT_EQ(r.step.kind, Step::Kind::kContinue);
  EXPECT_EQ(r.delete_recipients, (std::vector<std::string>{"<jsmith@corp.example>", "<kim@cc.example>"}));
  ASSERT_EQ(sink.st.committed.size(), 1u);
  EXPECT_EQ(sink.st.committed[0], "Subject: hi\r\nMessage-ID: <1@example.org>\r\n\r\nhello\r\n");
  const CaptureEnvelope& env = sink.st.envelopes[0];
  EXPECT_EQ(env.queue_id, "4AbC12");
  EXPECT_EQ(env.sender, "alice@example.org");
  EXPECT_EQ(sink.sender, "alice@example.org");  // given to Begin, before the first header (content key)
  ASSERT_EQ(env.recipients.size(), 2u);
  EXPECT_EQ(env.recipients[0].ccmail_name, "Smith, John");
  EXPECT_EQ(env.recipients[0].post_office, "HUBPO2");
  EXPECT_EQ(env.recipients[1].smtp_address, "kim@cc.example");
  EXPECT_FALSE(session.in_message());
}

TEST_F(SessionTest, CopyModeCapturesAndDeletesNothing) {
  EndResult r = Send(MakePolicy(CaptureMode::kCopy), {"<jsmith@corp.example>"});
  ASSERT_TRUE(r.captured);
  EXPECT_TRUE(r.delete_recipients.empty());
  EXPECT_EQ(sink.st.committed.size(), 1u);
}

TEST_F(SessionTest, NoCcMailRecipientIsAcceptedAtDataWithoutOpeningAnything) {
  auto p = MakePolicy();
  ASSERT_EQ(session.MailFrom(p, "<a@x.org>", {}).kind, Step::Kind::kContinue);
  ASSERT_EQ(session.Rcpt("<bob@example.org>").kind, Step::Kind::kContinue);
  EXPECT_EQ(session.Data().kind, Step::Kind::kAccept);
  EXPECT_EQ(sink.st.begun, 0);
  EXPECT_FALSE(session.in_message());
}

TEST_F(SessionTest, RejectUnknownGives550AtRcptOnlyWhenEnabled) {
  ASSERT_EQ(session.MailFrom(MakePolicy(CaptureMode::kDivert, true), "<a@x.org>", {}).kind, Step::Kind::kContinue);
  Step st = session.Rcpt("<nobody@cc.example>");
  EXPECT_EQ(st.kind, Step::Kind::kReject);
  EXPECT_EQ(st.reply, (Reply{"550", "5.1.1", "nobody@cc.example: no such cc:Mail user"}));
  ASSERT_EQ(session.MailFrom(MakePolicy(CaptureMode::kDivert, false), "<a@x.org>", {}).kind, Step::Kind::kContinue);
  EXPECT_EQ(session.Rcpt("<nobody@cc.example>").kind, Step::Kind::kContinue);
  EXPECT_EQ(session.Data().kind, Step::Kind::kAccept);
}

TEST_F(SessionTest, UnexportableRecipientsGet5xxAloneAndTheOthersAreCaptured) {
  auto p = MakePolicy();
  ASSERT_EQ(session.MailFrom(p, "<a@x.org>", {}).kind, Step::Kind::kContinue);
  EXPECT_EQ(session.Rcpt("<kim@cc.example>").kind, Step::Kind::kContinue);
  struct Hostile { const char* rcpt; const char* rcode; const char* xcode; };
  for (const Hostile& h : {Hostile{"<x%ZZTOP@cc.example>", "550", "5.1.1"}, Hostile{"<x%AUX@branch.example>", "550", "5.1.1"},
                           Hostile{"<x%NUL@cc.example>", "550", "5.1.1"},
                           Hostile{"<\"Evil at PO, Boss\"@branch.example>", "553", "5.1.3"},
                           Hostile{"<\"a;b\"@branch.example>", "553", "5.1.3"},
                           Hostile{"<\"tab\there\"@branch.example>", "553", "5.1.3"}}) {
    Step st = session.Rcpt(h.rcpt);
    EXPECT_EQ(st.kind, Step::Kind::kReject) << h.rcpt;
    EXPECT_EQ(st.reply.rcode, h.rcode) << h.rcpt;
    EXPECT_EQ(st.reply.xcode, h.xcode) << h.rcpt;
    EXPECT_EQ(st.reply.text.find_first_of("\r\n\t%"), std::string::npos) << st.reply.text;
  }
  EXPECT_EQ(session.Rcpt("<pat@branch.example>").kind, Step::Kind::kContinue);
  EXPECT_EQ(session.Rcpt("<bob@example.org>").kind, Step::Kind::kContinue);
  ASSERT_EQ(session.Data().kind, Step::Kind::kContinue);
  ASSERT_EQ(session.EndOfHeaders().kind, Step::Kind::kContinue);
  EndResult r = session.EndOfMessage("4Q1");
  ASSERT_TRUE(r.captured);
  ASSERT_EQ(r.envelope.recipients.size(), 2u);
  EXPECT_EQ(r.envelope.recipients[0].smtp_address, "kim@cc.example");
  EXPECT_EQ(r.envelope.recipients[1].smtp_address, "pat@branch.example");
  EXPECT_EQ(r.delete_recipients, (std::vector<std::string>{"<kim@cc.example>", "<pat@branch.example>"}));
}

TEST(RouterTest, PercentRouteOnlyToConfiguredPostOffices) {
  format::AddressMapOptions opt{.ccmail_domains = {"cc.example"}, .default_postoffice = "HUB",
                                .percent_route_postoffices = {"REMOTE"}};
  std::shared_ptr<const format::AddressMap> map;
  ASSERT_TRUE(format::AddressMap::Parse("", "m", opt, &map).ok());
  Router router(map, false);
  Route ok = router.Classify("<u%remote@cc.example>");
  EXPECT_EQ(ok.kind, Route::Kind::kCcMail);
  EXPECT_EQ(ok.address, (format::CcMailAddress{"u", "REMOTE"}));
  Route no = router.Classify("<u%CON@cc.example>");
  EXPECT_EQ(no.kind, Route::Kind::kUnusable);
  EXPECT_EQ(no.reject.rcode, "550");
  EXPECT_EQ(no.reject.xcode, "5.1.1");
}

TEST_F(SessionTest, RecipientLimitGives452At4_5_3) {
  Limits l;
  l.recipients = 2;
  ASSERT_EQ(session.MailFrom(MakePolicy(CaptureMode::kDivert, false, l), "<a@x.org>", {}).kind,
            Step::Kind::kContinue);
  EXPECT_EQ(session.Rcpt("<a@branch.example>").kind, Step::Kind::kContinue);
  EXPECT_EQ(session.Rcpt("<b@branch.example>").kind, Step::Kind::kContinue);
  EXPECT_EQ(session.Rcpt("<B@branch.example>").kind, Step::Kind::kContinue);  // same user again
  Step st = session.Rcpt("<c@branch.example>");
  EXPECT_EQ(st.kind, Step::Kind::kTempfail);
  EXPECT_EQ(st.reply.rcode, "452");
  EXPECT_EQ(st.reply.xcode, "4.5.3");
  EXPECT_EQ(session.Rcpt("<bob@example.org>").kind, Step::Kind::kContinue);  // others unaffected
}

TEST_F(SessionTest, SizeLimitGives552DuringStreamingAndDropsTheCapture) {
  Limits l;
  l.message_size = 100;
  auto p = MakePolicy(CaptureMode::kDivert, false, l);
  ASSERT_EQ(session.MailFrom(p, "<a@x.org>", {}).kind, Step::Kind::kContinue);
  ASSERT_EQ(session.Rcpt("<jsmith@corp.example>").kind, Step::Kind::kContinue);
  ASSERT_EQ(session.Data().kind, Step::Kind::kContinue);
  ASSERT_EQ(session.Header("Subject", " x").kind, Step::Kind::kContinue);
  ASSERT_EQ(session.EndOfHeaders().kind, Step::Kind::kContinue);
  Step st = session.Body(std::string(200, 'x'));
  EXPECT_EQ(st.kind, Step::Kind::kReject);
  EXPECT_EQ(st.reply.rcode, "552");
  EXPECT_EQ(st.reply.xcode, "5.3.4");
  EXPECT_EQ(sink.st.aborted, 1);
  EXPECT_EQ(session.EndOfMessage("Q").step.kind, Step::Kind::kContinue);  // ignored after reject
  EXPECT_TRUE(sink.st.committed.empty());
}

TEST_F(SessionTest, HeaderCountLimitGives552) {
  Limits l;
  l.header_count = 3;
  auto p = MakePolicy(CaptureMode::kDivert, false, l);
  ASSERT_EQ(session.MailFrom(p, "<a@x.org>", {}).kind, Step::Kind::kContinue);
  ASSERT_EQ(session.Rcpt("<jsmith@corp.example>").kind, Step::Kind::kContinue);
  ASSERT_EQ(session.Data().kind, Step::Kind::kContinue);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(session.Header("X-H", " v").kind, Step::Kind::kContinue);
  Step st = session.Header("X-H", " v");
  EXPECT_EQ(st.kind, Step::Kind::kReject);
  EXPECT_EQ(st.reply.rcode, "552");
  EXPECT_EQ(st.reply.xcode, "5.3.4");
  EXPECT_NE(st.reply.text.find("header"), std::string::npos);
}

TEST_F(SessionTest, SpoolOpenFailureTempfails451) {
  sink.st.fail_begin = true;
  ASSERT_EQ(session.MailFrom(MakePolicy(), "<a@x.org>", {}).kind, Step::Kind::kContinue);
  ASSERT_EQ(session.Rcpt("<jsmith@corp.example>").kind, Step::Kind::kContinue);
  Step st = session.Data();
  EXPECT_EQ(st.kind, Step::Kind::kTempfail);
  EXPECT_EQ(st.reply.rcode, "451");
  EXPECT_EQ(st.reply.xcode, "4.3.0");
}

// The fake's write fails with ENOSPC: a full spool is the storage condition, 452 4.3.1.
TEST_F(SessionTest, FullSpoolDuringWriteTempfails452AndNothingIsCommitted) {
  ASSERT_EQ(session.MailFrom(MakePolicy(), "<a@x.org>", {}).kind, Step::Kind::kContinue);
  ASSERT_EQ(session.Rcpt("<jsmith@corp.example>").kind, Step::Kind::kContinue);
  ASSERT_EQ(session.Data().kind, Step::Kind::kContinue);
  sink.st.fail_write = true;
  Step st = session.Header("Subject", " x");
  EXPECT_EQ(st.kind, Step::Kind::kTempfail);
  EXPECT_EQ(st.reply.rcode, "452");
  EXPECT_EQ(st.reply.xcode, "4.3.1");
  EXPECT_EQ(sink.st.aborted, 1);
}

TEST_F(SessionTest, CommitFailureTempfailsWithNoRecipientDeleted) {
  sink.st.fail_commit = true;
  EndResult r = Send(MakePolicy(), {"<jsmith@corp.example>"});
  EXPECT_FALSE(r.captured);
  EXPECT_EQ(r.step.kind, Step::Kind::kTempfail);
  EXPECT_EQ(r.step.reply.rcode, "451");
  EXPECT_TRUE(r.delete_recipients.empty());
  sink.st.fail_commit = false;
  sink.st.fail_commit_nospace = true;
  r = Send(MakePolicy(), {"<jsmith@corp.example>"});
  EXPECT_EQ(r.step.reply.rcode, "452");
  EXPECT_EQ(r.step.reply.xcode, "4.3.1");
  EXPECT_TRUE(sink.st.committed.empty());
}

TEST_F(SessionTest, AdmissionRefusalsTempfailAtEndOfMessage) {
  struct Case {
    SinkProbe probe;
    const char* rcode;
    const char* xcode;
  };
  SinkProbe missing;
  missing.table_present = false;
  SinkProbe stalled;
  stalled.exporter_idle = std::chrono::minutes(5);
  stalled.backlog_messages = 1;
  SinkProbe low;
  low.free_bytes = 1024;
  SinkProbe backlog;
  backlog.backlog_messages = 100000;
  SinkProbe bytes;
  bytes.backlog_bytes = 4ull << 30;
  for (const Case& c : {Case{missing, "451", "4.3.0"}, Case{stalled, "451", "4.3.0"}, Case{low, "452", "4.3.1"},
                        Case{backlog, "452", "4.3.1"}, Case{bytes, "452", "4.3.1"}}) {
    sink.st.probe = c.probe;
    EndResult r = Send(MakePolicy(), {"<jsmith@corp.example>"});
    EXPECT_FALSE(r.captured);
    EXPECT_EQ(r.step.kind, Step::Kind::kTempfail);
    EXPECT_EQ(r.step.reply.rcode, c.rcode);
    EXPECT_EQ(r.step.reply.xcode, c.xcode);
  }
  EXPECT_TRUE(sink.st.committed.empty());
  // An idle exporter with nothing to do is not a stall.
  SinkProbe idle;
  idle.exporter_idle = std::chrono::hours(5);
  sink.st.probe = idle;
  EXPECT_TRUE(Send(MakePolicy(), {"<jsmith@corp.example>"}).captured);
}

TEST_F(SessionTest, AbortDropsTheCaptureAndTheNextMessageWorks) {
  ASSERT_EQ(session.MailFrom(MakePolicy(), "<a@x.org>", {}).kind, Step::Kind::kContinue);
  ASSERT_EQ(session.Rcpt("<jsmith@corp.example>").kind, Step::Kind::kContinue);
  ASSERT_EQ(session.Data().kind, Step::Kind::kContinue);
  ASSERT_EQ(session.Header("Subject", " x").kind, Step::Kind::kContinue);
  session.Abort();  // RSET
  EXPECT_EQ(sink.st.aborted, 1);
  EXPECT_TRUE(Send(MakePolicy(), {"<kim@cc.example>"}).captured);
  EXPECT_TRUE(Send(MakePolicy(), {"<jsmith@corp.example>"}).captured);  // several per connection
  EXPECT_EQ(sink.st.committed.size(), 2u);
  ASSERT_EQ(sink.st.envelopes[1].recipients.size(), 1u);
  EXPECT_EQ(sink.st.envelopes[1].recipients[0].smtp_address, "jsmith@corp.example");
}

TEST_F(SessionTest, PolicyIsFixedAtMailFrom) {
  auto divert = MakePolicy(CaptureMode::kDivert);
  ASSERT_EQ(session.MailFrom(divert, "<a@x.org>", {}).kind, Step::Kind::kContinue);
  ASSERT_EQ(session.Rcpt("<jsmith@corp.example>").kind, Step::Kind::kContinue);
  divert.reset();  // a reload dropped the old snapshot: the session keeps its own
  ASSERT_EQ(session.Data().kind, Step::Kind::kContinue);
  EndResult r = session.EndOfMessage("Q");
  EXPECT_TRUE(r.captured);
  EXPECT_EQ(r.delete_recipients.size(), 1u);
}

TEST(SettingsTest, SocketSpecs) {
  EXPECT_TRUE(ValidateSocketSpec("unix:/run/x.sock").ok());
  EXPECT_TRUE(ValidateSocketSpec("inet:10025@127.0.0.1").ok());
  EXPECT_FALSE(ValidateSocketSpec("inet:10025").ok());
  EXPECT_FALSE(ValidateSocketSpec("inet:99999@127.0.0.1").ok());
  EXPECT_FALSE(ValidateSocketSpec("unix:relative").ok());
  EXPECT_FALSE(ValidateSocketSpec("tcp:1@x").ok());
}

TEST(SettingsTest, BadValueNamesFileAndLine) {
  Config cfg;
  ASSERT_TRUE(Config::Parse("capture_mode = divert\nmessage_size_limit = lots\n", "/etc/x.conf", &cfg).ok());
  MilterSettings ms;
  Status s = MilterSettings::FromConfig(cfg, &ms);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/etc/x.conf:2"), std::string::npos) << s.ToString();
  ASSERT_TRUE(Config::Parse("milter_socket = inet:25\n", "/etc/y.conf", &cfg).ok());
  s = MilterSettings::FromConfig(cfg, &ms);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/etc/y.conf:1"), std::string::npos) << s.ToString();
  ASSERT_TRUE(Config::Parse("capture_mode = copy\nreject_unknown = yes\n", "/etc/z.conf", &cfg).ok());
  ASSERT_TRUE(MilterSettings::FromConfig(cfg, &ms).ok());
  EXPECT_EQ(ms.mode, CaptureMode::kCopy);
  EXPECT_TRUE(ms.reject_unknown);
}

// With SMFIP_NR_HDR/NR_EOH/NR_BODY the glue holds a failure found in a header or body chunk
// and answers it at end of message: the first failure wins, and MAIL (Clear) forgets it.
TEST(HeldReplyTest, KeepsTheFirstAnswerThatIsNotContinueUntilTaken) {
  HeldReply held;
  held.Hold(Step::Continue());
  EXPECT_FALSE(held.Take().has_value());
  held.Hold(Step::Reject("552", "5.3.4", "Too many header fields"));
  held.Hold(Step::Continue());
  held.Hold(Step::Tempfail("451", "4.3.0", "later"));
  std::optional<Step> h = held.Take();
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->kind, Step::Kind::kReject);
  EXPECT_EQ(h->reply.rcode, "552");
  EXPECT_FALSE(held.Take().has_value());  // taken once
  held.Hold(Step::Accept());
  held.Clear();
  EXPECT_FALSE(held.Take().has_value());
}

// What the glue holds while the MTA waits no answer: a size limit hit in a body chunk is
// answered at end of message, not lost as a kContinue (the capture is dropped).
TEST_F(SessionTest, SizeLimitInAnUnansweredBodyChunkIsAnsweredAtEndOfMessage) {
  Limits l;
  l.message_size = 100;
  auto p = MakePolicy(CaptureMode::kDivert, false, l);
  HeldReply held;
  ASSERT_EQ(session.MailFrom(p, "<a@x.org>", {}).kind, Step::Kind::kContinue);
  ASSERT_EQ(session.Rcpt("<jsmith@corp.example>").kind, Step::Kind::kContinue);
  ASSERT_EQ(session.Data().kind, Step::Kind::kContinue);
  held.Hold(session.Header("Subject", " x"));
  held.Hold(session.EndOfHeaders());
  held.Hold(session.Body(std::string(200, 'x')));
  held.Hold(session.Body(std::string(10, 'y')));
  std::optional<Step> h = held.Take();
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->kind, Step::Kind::kReject);
  EXPECT_EQ(h->reply.rcode, "552");
  EXPECT_TRUE(sink.st.committed.empty());
}

}  // namespace
}  // namespace ccmail::milter
