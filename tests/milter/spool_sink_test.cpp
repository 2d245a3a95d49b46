// SpoolCaptureSink against a real store::Spool and a real shm::ClaimTable in a temp
// dir: durable captures with correct meta and content key, READY slots, a full table,
// a removed table, ENOSPC at fsync, a stalled exporter, own-tmp clean-up at start.
#include "ccmail/milter/spool_sink.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <thread>

#include "../shm/shm_test_util.h"
#include "ccmail/milter/admission.h"
#include "ccmail/milter/capture_session.h"
#include "ccmail/store/content_key.h"
#include "ccmail/testing/temp_dir.h"

namespace ccmail::milter {
namespace {

namespace fs = std::filesystem;
using shm::testing::TestTable;

// Real I/O, except that Fsync of a spool file can be made to fail with ENOSPC.
// A disk that fails the sync making a capture durable: the file's fsync, or the spool log's
// fdatasync (spool_log = yes).
class NoSpaceIo : public store::DurableIoWrapper {
 public:
  bool fail_fsync = false;
  Status Fsync(int fd, const std::string& w, const char* pt) override {
    if (fail_fsync) return Status::FromErrno("fsync " + w, ENOSPC);
    return target().Fsync(fd, w, pt);
  }
  Status Fdatasync(int fd, const std::string& w, const char* pt) override {
    if (fail_fsync) return Status::FromErrno("fdatasync " + w, ENOSPC);
    return target().Fdatasync(fd, w, pt);
  }
};

struct Fixture {
  TestTable tt;
  test::TempDir temp{"ccmail-spool-sink"};
  std::string dir = temp.path();
  SpoolSinkOptions opt;
  explicit Fixture(uint32_t slots = 64, uint32_t registry = 16) : tt(slots, registry) {
    opt.spool_root = dir + "/spool";
    opt.table = tt.opt;
    opt.reopen_interval = std::chrono::milliseconds(0);
    opt.stats_refresh_ms = 0;  // re-count on every Probe: the test sees its own files at once
  }
  std::vector<std::string> Names(const std::string& sub) const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(opt.spool_root + "/" + sub)) out.push_back(e.path().filename());
    return out;
  }
};

const std::string kRaw = "From: a@x.org\r\nSubject: hello\r\n\r\nbody line\r\n";

// Streams kRaw the way CaptureSession does and commits it.
Status WriteOne(CaptureSink* sink, CaptureReceipt* rc, const std::string& qid = "Q1") {
  std::unique_ptr<CaptureWriter> w;
  CCMAIL_RETURN_IF_ERROR(sink->Begin("a@x.org", &w));
  CCMAIL_RETURN_IF_ERROR(w->AddHeader("From", " a@x.org"));
  CCMAIL_RETURN_IF_ERROR(w->AddHeader("Subject", " hello"));
  CCMAIL_RETURN_IF_ERROR(w->EndHeaders());
  CCMAIL_RETURN_IF_ERROR(w->AddBody("body "));
  CCMAIL_RETURN_IF_ERROR(w->AddBody("line\r\n"));
  CaptureEnvelope env{qid, "a@x.org", {{"jsmith@corp.example", "Smith, John", "HUBPO2"}},
                      std::chrono::system_clock::time_point(std::chrono::milliseconds(1700000000123))};
  return w->Commit(env, rc);
}

std::string ReadMessage(const store::SpoolEntry& e) {
  std::string out(e.message_length, '\0');
  EXPECT_EQ(pread(e.fd.get(), out.data(), out.size(), e.message_offset), static_cast<ssize_t>(out.size()));
  return out;
}

TEST(SpoolSinkTest, CaptureIsDurableWithMetaKeyAndReadySlot) {
  Fixture f;
  std::unique_ptr<SpoolCaptureSink> sink;
  ASSERT_TRUE(SpoolCaptureSink::Open(f.opt, &sink).ok());
  std::string tag = sink->writer_tag();
  ASSERT_FALSE(tag.empty());

  // While streaming, the tmp file carries the registration's tag.
  std::unique_ptr<CaptureWriter> w;
  ASSERT_TRUE(sink->Begin("a@x.org", &w).ok());
  ASSERT_TRUE(w->AddHeader("Subject", " x").ok());
  auto tmp = f.Names("tmp");
  ASSERT_EQ(tmp.size(), 1u);
  EXPECT_EQ(store::TmpWriterTag(tmp[0]), tag);
  w.reset();  // abort
  EXPECT_TRUE(f.Names("tmp").empty());

  CaptureReceipt rc;
  ASSERT_TRUE(WriteOne(sink.get(), &rc).ok());
  EXPECT_TRUE(rc.published);
  EXPECT_EQ(rc.size, kRaw.size());
  EXPECT_TRUE(f.Names("tmp").empty());
  ASSERT_EQ(f.Names("new"), std::vector<std::string>{rc.capture_id});

  std::unique_ptr<store::Spool> reader;
  ASSERT_TRUE(store::Spool::Open(f.opt.spool_root, &reader).ok());
  auto id = store::CaptureId::Parse(rc.capture_id);
  ASSERT_TRUE(id.has_value());
  store::SpoolEntry e;
  ASSERT_TRUE(reader->VerifyOnly(*id, &e).ok());
  EXPECT_EQ(ReadMessage(e), kRaw);
  EXPECT_EQ(e.meta.capture_id, *id);
  EXPECT_EQ(e.meta.queue_id, "Q1");
  EXPECT_EQ(e.meta.envelope_sender, "a@x.org");
  EXPECT_EQ(e.meta.received_ms, 1700000000123);
  ASSERT_EQ(e.meta.recipients.size(), 1u);
  EXPECT_EQ(e.meta.recipients[0], (store::SpoolRecipient{"jsmith@corp.example", "Smith, John", "HUBPO2"}));
  // The streamed key equals the content key (docs/DESIGN.md §2.2) of the stored bytes.
  EXPECT_EQ(e.meta.content_key, store::ContentKeyOfMessage("a@x.org", kRaw));

  // Exactly one READY slot, holding this capture id (the exporter's view).
  std::unique_ptr<shm::ClaimTable> t;
  shm::TableOptions o = f.tt.opt;
  o.create_if_missing = false;
  ASSERT_TRUE(shm::ClaimTable::Open(o, &t).ok());
  std::unique_ptr<shm::Registration> ex;
  ASSERT_TRUE(t->Register(shm::Role::kExporter, &ex).ok());
  std::vector<shm::Claim> claims;
  ASSERT_EQ(t->ClaimReady(*ex, 16, &claims), 1u);
  EXPECT_EQ(store::CaptureId{claims[0].capture_id}, *id);
  EXPECT_EQ(claims[0].size, kRaw.size());
  EXPECT_GE(t->DoorbellValue(), 1u);

  SinkProbe p = sink->Probe();
  EXPECT_TRUE(p.table_present);
  EXPECT_EQ(p.backlog_messages, 1u);
  EXPECT_GT(p.backlog_bytes, kRaw.size());
  EXPECT_TRUE(p.free_bytes.has_value());
  EXPECT_FALSE(p.exporter_idle.has_value());  // no exporter state published yet
}

TEST(SpoolSinkTest, LargeAndOddChunksAreStoredExactly) {
  Fixture f;
  std::unique_ptr<SpoolCaptureSink> sink;
  ASSERT_TRUE(SpoolCaptureSink::Open(f.opt, &sink).ok());
  std::unique_ptr<CaptureWriter> w;
  ASSERT_TRUE(sink->Begin("", &w).ok());  // null sender
  std::string want;
  for (int i = 0; i < 300; ++i) {  // more header bytes than one write buffer holds
    std::string v = " " + std::string(static_cast<size_t>(200 + i), static_cast<char>('a' + i % 26));
    ASSERT_TRUE(w->AddHeader("X-H" + std::to_string(i), v).ok());
    want += "X-H" + std::to_string(i) + ":" + v + "\r\n";
  }
  ASSERT_TRUE(w->EndHeaders().ok());
  want += "\r\n";
  for (size_t n : {size_t{1}, size_t{65535}, size_t{65536}, size_t{200000}, size_t{3}, size_t{70000}}) {
    std::string chunk(n, 'x');
    for (size_t i = 0; i < n; i += 77) chunk[i] = '\n';
    ASSERT_TRUE(w->AddBody(chunk).ok());
    want += chunk;
  }
  CaptureReceipt rc;
  ASSERT_TRUE(w->Commit(CaptureEnvelope{"", "", {{"kim@cc.example", "Kim Lee", "HUBPO"}}, {}}, &rc).ok());
  EXPECT_EQ(rc.size, want.size());
  std::unique_ptr<store::Spool> reader;
  ASSERT_TRUE(store::Spool::Open(f.opt.spool_root, &reader).ok());
  store::SpoolEntry e;
  ASSERT_TRUE(reader->VerifyOnly(*store::CaptureId::Parse(rc.capture_id), &e).ok());
  EXPECT_TRUE(ReadMessage(e) == want);
  EXPECT_EQ(e.meta.envelope_sender, "");
  EXPECT_EQ(e.meta.content_key, store::ContentKeyOfMessage("", want));
}

TEST(SpoolSinkTest, BacklogOfOtherWritersIsRecountedInTheBackground) {
  Fixture f;
  // Own commit: counted at once, without waiting for a re-count. Checked on a sink with no
  // re-count thread: a re-count running between the commit's rename and its increment counts
  // the file twice until the next re-count (a transient over-estimate, on the safe side of
  // the backlog limits), so with one running the exact figure would be a race.
  CaptureReceipt rc;
  {
    SpoolSinkOptions quiet = f.opt;
    quiet.stats_refresh_ms = 0;
    std::unique_ptr<SpoolCaptureSink> first;
    ASSERT_TRUE(SpoolCaptureSink::Open(quiet, &first).ok());
    ASSERT_TRUE(WriteOne(first.get(), &rc).ok());
    EXPECT_EQ(first->Probe().backlog_messages, 1u);
  }
  f.opt.stats_refresh_ms = 50;
  std::unique_ptr<SpoolCaptureSink> sink;
  ASSERT_TRUE(SpoolCaptureSink::Open(f.opt, &sink).ok());
  EXPECT_EQ(sink->Probe().backlog_messages, 1u);  // counted at open
  std::unique_ptr<store::Spool> other;            // another milter process
  ASSERT_TRUE(store::Spool::Open(f.opt.spool_root, &other, nullptr, "9.9").ok());
  for (int i = 0; i < 2; ++i) {
    std::unique_ptr<store::SpoolWriter> w;
    ASSERT_TRUE(other->Begin(&w).ok());
    ASSERT_TRUE(w->Append("x\r\n", 3).ok());
    ASSERT_TRUE(w->Commit(store::SpoolMeta{}).ok());
  }
  uint64_t seen = 0;
  for (int i = 0; i < 100 && seen != 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    seen = sink->Probe().backlog_messages;
  }
  EXPECT_EQ(seen, 3u);
  ASSERT_TRUE(other->Remove(*store::CaptureId::Parse(rc.capture_id)).ok());  // "the exporter" took one
  for (int i = 0; i < 100 && seen != 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    seen = sink->Probe().backlog_messages;
  }
  EXPECT_EQ(seen, 2u);
}

TEST(SpoolSinkTest, FullTableStillCommitsUnpublished) {
  Fixture f(/*slots=*/1);
  std::unique_ptr<SpoolCaptureSink> sink;
  ASSERT_TRUE(SpoolCaptureSink::Open(f.opt, &sink).ok());
  CaptureReceipt a, b;
  ASSERT_TRUE(WriteOne(sink.get(), &a).ok());
  EXPECT_TRUE(a.published);
  ASSERT_TRUE(WriteOne(sink.get(), &b).ok());  // no FREE slot left
  EXPECT_FALSE(b.published);
  EXPECT_EQ(f.Names("new").size(), 2u);
  EXPECT_EQ(sink->counters().unpublished, 1u);
  std::unique_ptr<shm::ClaimTable> t;
  ASSERT_TRUE(shm::ClaimTable::Open(f.tt.opt, &t).ok());
  EXPECT_EQ(t->Stats().overflow_count, 1u);
}

TEST(SpoolSinkTest, RemovedTableTempfailsAndIsNeverRecreatedByTheMilter) {
  Fixture f;
  std::unique_ptr<SpoolCaptureSink> sink;
  ASSERT_TRUE(SpoolCaptureSink::Open(f.opt, &sink).ok());
  ASSERT_TRUE(sink->Probe().table_present);
  ASSERT_TRUE(shm::ClaimTable::Remove(f.tt.opt).ok());

  SinkProbe p = sink->Probe();
  EXPECT_FALSE(p.table_present);
  auto no = Admission::Check(p, AdmissionLimits{}, 100);
  ASSERT_TRUE(no.has_value());
  EXPECT_EQ(no->rcode, "451");
  EXPECT_EQ(no->xcode, "4.3.0");
  std::unique_ptr<CaptureWriter> w;
  EXPECT_FALSE(sink->Begin("a@x.org", &w).ok());
  EXPECT_FALSE(sink->Probe().table_present);
  // The milter re-attached with create_if_missing = false: no segment appeared.
  EXPECT_FALSE(fs::exists(shm::ClaimTable::TablePath(f.tt.opt)));

  // The exporter recreates it: the next probe attaches to the new one.
  std::unique_ptr<shm::ClaimTable> t;
  ASSERT_TRUE(shm::ClaimTable::Open(f.tt.opt, &t).ok());
  EXPECT_TRUE(sink->Probe().table_present);
  EXPECT_EQ(sink->counters().attaches, 2u);
  CaptureReceipt rc;
  ASSERT_TRUE(WriteOne(sink.get(), &rc).ok());
  EXPECT_TRUE(rc.published);
}

TEST(SpoolSinkTest, ReattachIsRateLimited) {
  Fixture f;
  f.opt.reopen_interval = std::chrono::hours(1);
  std::unique_ptr<SpoolCaptureSink> sink;
  ASSERT_TRUE(SpoolCaptureSink::Open(f.opt, &sink).ok());
  ASSERT_TRUE(shm::ClaimTable::Remove(f.tt.opt).ok());
  std::unique_ptr<shm::ClaimTable> t;
  ASSERT_TRUE(shm::ClaimTable::Open(f.tt.opt, &t).ok());  // replaced at once
  EXPECT_FALSE(sink->Probe().table_present);  // replaced segment detected ...
  EXPECT_FALSE(sink->Probe().table_present);  // ... and no second attempt within the interval
  EXPECT_EQ(sink->counters().attaches, 1u);
}

TEST(SpoolSinkTest, MissingTableAtStartIsCreatedOnce) {
  Fixture f;
  EXPECT_FALSE(fs::exists(shm::ClaimTable::TablePath(f.tt.opt)));
  std::unique_ptr<SpoolCaptureSink> sink;
  ASSERT_TRUE(SpoolCaptureSink::Open(f.opt, &sink).ok());  // as the shm header says for milters
  EXPECT_TRUE(fs::exists(shm::ClaimTable::TablePath(f.tt.opt)));
  EXPECT_TRUE(sink->Probe().table_present);
}

void NoSpaceAtTheDurableSyncTempfailsAndLeavesNothing(bool spool_log) {
  Fixture f;
  NoSpaceIo io;
  f.opt.io = &io;
  f.opt.spool_log = spool_log;
  std::unique_ptr<SpoolCaptureSink> sink;
  ASSERT_TRUE(SpoolCaptureSink::Open(f.opt, &sink).ok());
  io.fail_fsync = true;
  CaptureReceipt rc;
  Status s = WriteOne(sink.get(), &rc);
  EXPECT_TRUE(s.IsNoSpace()) << s.ToString();
  EXPECT_TRUE(f.Names("new").empty());
  EXPECT_TRUE(f.Names("tmp").empty());

  // The same through CaptureSession: a 4xx, never a CONTINUE.
  std::shared_ptr<const format::AddressMap> map;
  ASSERT_TRUE(format::AddressMap::Parse("jsmith@corp.example  Smith, John at HUBPO2\n", "map",
                                        format::AddressMapOptions{}, &map).ok());
  AdmissionLimits adm;
  adm.spool_min_free = 0;
  auto policy = std::make_shared<const Policy>(Policy{Router(map, false), CaptureMode::kDivert, {}, adm});
  CaptureSession session(sink.get());
  session.MailFrom(policy, "<a@x.org>", {});
  ASSERT_EQ(session.Rcpt("<jsmith@corp.example>").kind, Step::Kind::kContinue);
  ASSERT_EQ(session.Data().kind, Step::Kind::kContinue);
  ASSERT_EQ(session.Header("Subject", " hi").kind, Step::Kind::kContinue);
  ASSERT_EQ(session.EndOfHeaders().kind, Step::Kind::kContinue);
  ASSERT_EQ(session.Body("x\r\n").kind, Step::Kind::kContinue);
  EndResult r = session.EndOfMessage("Q2");
  EXPECT_EQ(r.step.kind, Step::Kind::kTempfail);
  EXPECT_EQ(r.step.reply.rcode, "452");
  EXPECT_FALSE(r.captured);
  EXPECT_TRUE(r.delete_recipients.empty());
  EXPECT_TRUE(f.Names("new").empty());
  EXPECT_TRUE(f.Names("tmp").empty());

  io.fail_fsync = false;  // the disk has room again: the retry is captured
  session.MailFrom(policy, "<a@x.org>", {});
  session.Rcpt("<jsmith@corp.example>");
  session.Data();
  session.EndOfHeaders();
  r = session.EndOfMessage("Q3");
  EXPECT_TRUE(r.captured);
  EXPECT_EQ(f.Names("new").size(), 1u);
}

TEST(SpoolSinkTest, NoSpaceAtFsyncTempfailsAndLeavesNothing) { NoSpaceAtTheDurableSyncTempfailsAndLeavesNothing(false); }
TEST(SpoolSinkTest, NoSpaceAtTheLogSyncTempfailsAndLeavesNothing) {
  NoSpaceAtTheDurableSyncTempfailsAndLeavesNothing(true);
}

TEST(SpoolSinkTest, ExporterIdleFromHeartbeatAndProgress) {
  Fixture f;
  std::unique_ptr<SpoolCaptureSink> sink;
  ASSERT_TRUE(SpoolCaptureSink::Open(f.opt, &sink).ok());
  std::unique_ptr<shm::ClaimTable> t;
  ASSERT_TRUE(shm::ClaimTable::Open(f.tt.opt, &t).ok());
  CaptureReceipt rc;
  ASSERT_TRUE(WriteOne(sink.get(), &rc).ok());  // work is pending
  const uint64_t now = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  const uint64_t hour_ago = now - 3600ull * 1000000000ull;
  AdmissionLimits lim;
  lim.spool_min_free = 0;

  shm::ExporterState st;
  st.epoch = 1;
  st.heartbeat_ns = hour_ago;
  st.progress_ns = hour_ago;
  st.backlog_count = 3;
  t->PublishExporterState(st);  // stalled an hour ago with work pending
  SinkProbe p = sink->Probe();
  ASSERT_TRUE(p.exporter_idle.has_value());
  EXPECT_GE(p.exporter_idle->count(), 3599 * 1000);
  auto no = Admission::Check(p, lim, 10);
  ASSERT_TRUE(no.has_value());
  EXPECT_EQ(no->rcode + " " + no->xcode, "451 4.3.0");

  st.heartbeat_ns = now;  // alive, nothing to do at its last turn: not a stall
  st.backlog_count = 0;
  t->PublishExporterState(st);
  p = sink->Probe();
  ASSERT_TRUE(p.exporter_idle.has_value());
  EXPECT_LT(p.exporter_idle->count(), 60 * 1000);
  EXPECT_FALSE(Admission::Check(p, lim, 10).has_value());

  st.backlog_count = 5;  // alive but not committing while work waits: a stall
  t->PublishExporterState(st);
  EXPECT_TRUE(Admission::Check(sink->Probe(), lim, 10).has_value());
}

TEST(SpoolSinkTest, StartRemovesOnlyOwnEntrysDeadTmpFiles) {
  Fixture f(/*slots=*/64, /*registry=*/1);  // one entry: every registration is index 0
  std::string first;
  {
    std::unique_ptr<SpoolCaptureSink> sink;
    ASSERT_TRUE(SpoolCaptureSink::Open(f.opt, &sink).ok());
    first = sink->writer_tag();
  }
  ASSERT_EQ(first.substr(0, 2), "0.");
  const std::string id1 = store::CaptureId::New().ToString(), id2 = store::CaptureId::New().ToString(),
                    id3 = store::CaptureId::New().ToString();
  for (const std::string& n : {id1 + "." + first, id2 + ".7.3", id3 + ".p123", std::string("notes.txt")})
    std::ofstream(f.opt.spool_root + "/tmp/" + n) << "x";
  std::unique_ptr<SpoolCaptureSink> sink;
  ASSERT_TRUE(SpoolCaptureSink::Open(f.opt, &sink).ok());
  EXPECT_NE(sink->writer_tag(), first);
  EXPECT_EQ(sink->writer_tag().substr(0, 2), "0.");
  auto left = f.Names("tmp");
  std::sort(left.begin(), left.end());
  std::vector<std::string> want{id2 + ".7.3", id3 + ".p123", "notes.txt"};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(left, want);
  EXPECT_EQ(sink->counters().tmp_cleaned, 1u);
}

}  // namespace
}  // namespace ccmail::milter
