// Unit tests: capture id, content key canonical form, spool format and errors (the ledger:
// ledger_contract_test.cpp, against both backends).
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <set>

#include <gtest/gtest.h>

#include "ccmail/store/capture_id.h"
#include "ccmail/store/content_key.h"
#include "ccmail/store/io.h"
#include "ccmail/store/spool.h"
#include "test_util.h"

namespace ccmail::store {
namespace {
using test::CountFiles;
using test::TempDir;

TEST(CaptureId, RoundTripAndOrder) {
  std::set<std::string> seen;
  CaptureId prev = CaptureId::New();
  for (int i = 0; i < 1000; ++i) {
    CaptureId id = CaptureId::New();
    std::string s = id.ToString();
    ASSERT_EQ(s.size(), 32u);
    ASSERT_TRUE(seen.insert(s).second);
    auto back = CaptureId::Parse(s);
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, id);
    EXPECT_EQ(CaptureId::FromHiLo(id.Hi(), id.Lo()), id);
    EXPECT_GE(id.TimeMs(), prev.TimeMs());
    prev = id;
  }
  EXPECT_FALSE(CaptureId::Parse("xyz"));
  EXPECT_FALSE(CaptureId::Parse(std::string(32, 'g')));
  uint8_t r[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  EXPECT_EQ(CaptureId::FromParts(0x0102030405ull, r).ToString(), "0001020304050102030405060708090a");
}

const char kMsg[] =
    "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    "Return-Path: <x@y>\r\n"
    "From: Alice <alice@example.com>\r\n"
    "To: bob@example.com\r\n"
    "Subject: hello\r\n"
    " world\r\n"
    "Message-ID: <1@example.com>\r\n"
    "\r\n"
    "Body line 1\r\nBody line 2\r\n";

std::string Replace(std::string s, const std::string& a, const std::string& b) {
  size_t p = s.find(a);
  if (p != std::string::npos) s.replace(p, a.size(), b);
  return s;
}

TEST(ContentKey, StableAcrossRetryAndTrace) {
  ContentKey k = ContentKeyOfMessage("<alice@example.com>", kMsg);
  // Retry: another hop's Received, different Return-Path, refolded Subject, LF endings.
  std::string retry = "Received: from c by d; Tue, 2 Jan 2024 00:00:00 +0000\n" +
                      Replace(Replace(kMsg, "Return-Path: <x@y>", "Return-Path: <z@w>\r\nDelivered-To: q@r\r\nX-Original-To: q@r"),
                              "hello\r\n world", "hello world");
  EXPECT_EQ(ContentKeyOfMessage("alice@example.com", retry), k);
  std::string lf = kMsg;
  for (size_t p; (p = lf.find("\r\n")) != std::string::npos;) lf.replace(p, 2, "\n");
  EXPECT_EQ(ContentKeyOfMessage("alice@example.com", lf), k);
  // Streaming in any chunking gives the same key, even split inside CRLF.
  ContentKeyBuilder b;
  b.SetEnvelopeSender("alice@example.com");
  b.AddHeader("From", " Alice <alice@example.com>");
  b.AddHeader("To", " bob@example.com");
  b.AddHeader("Subject", " hello\r\n world");
  b.AddHeader("Message-ID", " <1@example.com>");
  b.AddHeader("X-Ccmail-Capture", "whatever");
  std::string body = "Body line 1\r\nBody line 2\r\n";
  for (char c : body) b.AddBody(&c, 1);
  EXPECT_EQ(b.Finish(), k);
}

// The body's CRLF -> LF is streamed run by run: lone CRs, CR CR LF, a CR ending a chunk or
// the body, and every split point give the key of the body fed byte by byte.
TEST(ContentKey, BodyLoneCarriageReturnsInAnyChunking) {
  auto key_of = [](const std::vector<std::string>& chunks) {
    ContentKeyBuilder b;
    b.SetEnvelopeSender("alice@example.com");
    b.AddHeader("Subject", " s");
    for (const std::string& c : chunks) b.AddBody(c.data(), c.size());
    return b.Finish();
  };
  EXPECT_EQ(key_of({"x\r\ny\r\n"}), key_of({"x\ny\n"}));
  EXPECT_EQ(key_of({"x\r\r\ny"}), key_of({"x\r", "\r\ny"}));
  EXPECT_NE(key_of({"x\r\r\ny"}), key_of({"x\ny"}));
  EXPECT_NE(key_of({"x\ry"}), key_of({"xy"}));
  EXPECT_NE(key_of({"x\r"}), key_of({"x"}));
  const std::string body = "a\rb\r\r\nc\r\n\rd\r\n\r\n\re\r";
  std::vector<std::string> bytes;
  for (char c : body) bytes.emplace_back(1, c);
  const ContentKey want = key_of(bytes);
  for (size_t i = 0; i <= body.size(); ++i)
    for (size_t j = i; j <= body.size(); ++j)
      EXPECT_EQ(key_of({body.substr(0, i), body.substr(i, j - i), "", body.substr(j)}), want)
          << "split at " << i << " and " << j;
}

TEST(ContentKey, ChangesWithBodySenderMessageId) {
  ContentKey k = ContentKeyOfMessage("alice@example.com", kMsg);
  EXPECT_NE(ContentKeyOfMessage("mallory@example.com", kMsg), k);
  EXPECT_NE(ContentKeyOfMessage("alice@example.com", Replace(kMsg, "Body line 2", "Body line 3")), k);
  EXPECT_NE(ContentKeyOfMessage("alice@example.com", Replace(kMsg, "<1@example.com>", "<2@example.com>")), k);
  EXPECT_NE(ContentKeyOfMessage("alice@example.com", Replace(kMsg, "Subject: hello", "Subject: Hello")), k);
  EXPECT_NE(ContentKeyOfMessage("", kMsg), k);
  auto parsed = ContentKey::Parse(k.ToString());
  ASSERT_TRUE(parsed);
  EXPECT_EQ(*parsed, k);
}

TEST(ContentKey, KnownSha256OfCanonicalForm) {
  // Empty sender, no headers, empty body: SHA-256("ccmail-ck-2\nS\nB" + hex SHA-256 of "").
  ContentKeyBuilder b;
  b.SetEnvelopeSender("");
  ContentKey k = b.Finish();
  EXPECT_EQ(k.ToString(), "3e9a44e239150580787d6b70b8dd28012a6ed341d4351746aa68d164493ac0cf");
  EXPECT_EQ(ContentKeyOfMessage("", "\r\n"), k);
}

// One attempt as the milter sees it from Postfix for a client in local_header_rewrite_clients
// that sent neither Message-ID nor Date (seen in a spool file): the fields Postfix added come
// last, Message-Id first.
std::string AttemptWithGeneratedFields(const std::string& message_id, const std::string& date,
                                       const std::string& client_headers = "") {
  return "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: nightly report\r\n" + client_headers +
         "Message-Id: " + message_id + "\r\nDate: " + date + "\r\n\r\nreport body\r\n";
}

TEST(ContentKey, LeavesOutTheMessageIdAndDateTheMtaGeneratedForThisAttempt) {
  const std::string d1 = "Sat,  5 Dec 2026 20:53:48 +0000 (UTC)", d2 = "Sat,  5 Dec 2026 20:53:53 +0000 (UTC)";
  // Postfix, short queue ids: <YYYYMMDDhhmmss.QUEUEID@myhostname>.
  const ContentKey k1 = ContentKeyOfMessage(
      "alice@example.com", AttemptWithGeneratedFields("<20261205205348.C501EA7206E@mta-test.localdomain>", d1),
      "C501EA7206E");
  EXPECT_EQ(ContentKeyOfMessage("alice@example.com",
                                AttemptWithGeneratedFields("<20261205205353.D1C42A72072@mta-test.localdomain>", d2),
                                "D1C42A72072"),
            k1);
  // Postfix with enable_long_queue_ids (<QUEUEID@host>) and Sendmail (<YYYYMMDDhhmm.QUEUEID@host>).
  EXPECT_EQ(ContentKeyOfMessage("alice@example.com", AttemptWithGeneratedFields("<4Nxyz1234Mz5abc@relay>", d2),
                                "4Nxyz1234Mz5abc"),
            k1);
  EXPECT_EQ(ContentKeyOfMessage("alice@example.com",
                                AttemptWithGeneratedFields("<202612052047.0B5KgpXa012345@relay>", d2), "0B5KgpXa012345"),
            k1);
  // Without the queue id (a local submission) both count: identical cron mails stay apart.
  EXPECT_NE(ContentKeyOfMessage("alice@example.com",
                                AttemptWithGeneratedFields("<20261205205348.C501EA7206E@mta-test.localdomain>", d1)),
            ContentKeyOfMessage("alice@example.com",
                                AttemptWithGeneratedFields("<20261205205353.D1C42A72072@mta-test.localdomain>", d2)));
  // A queue id that is only part of another token does not make the Message-ID the MTA's.
  EXPECT_NE(ContentKeyOfMessage("alice@example.com", AttemptWithGeneratedFields("<xC501EA7206E@app>", d1), "C501EA7206E"),
            ContentKeyOfMessage("alice@example.com", AttemptWithGeneratedFields("<xD1C42A72072@app>", d1), "D1C42A72072"));
}

TEST(ContentKey, KeepsTheClientsDateAndMessageId) {
  auto key = [](const std::string& headers, const std::string& qid) {
    return ContentKeyOfMessage("a@x", "From: a@x\r\nSubject: s\r\n" + headers + "\r\nbody\r\n", qid);
  };
  // The client sent a Date but no Message-ID: Postfix's Message-Id comes after the client's
  // Date, which stays in the key (two reports a day apart are two messages).
  EXPECT_EQ(key("Date: Sat, 05 Dec 2026 08:00:00 +0000\r\nMessage-Id: <20261205080001.AQ1@relay>\r\n", "AQ1"),
            key("Date: Sat, 05 Dec 2026 08:00:00 +0000\r\nMessage-Id: <20261205081502.BQ2@relay>\r\n", "BQ2"));
  EXPECT_NE(key("Date: Sat, 05 Dec 2026 08:00:00 +0000\r\nMessage-Id: <20261205080001.AQ1@relay>\r\n", "AQ1"),
            key("Date: Sun, 06 Dec 2026 08:00:00 +0000\r\nMessage-Id: <20261206080001.BQ2@relay>\r\n", "BQ2"));
  // The client's own Message-ID counts, and so does a Date behind it.
  EXPECT_NE(key("Message-ID: <r-17@app>\r\nDate: Sat, 05 Dec 2026 08:00:00 +0000\r\n", "AQ1"),
            key("Message-ID: <r-18@app>\r\nDate: Sat, 05 Dec 2026 08:00:00 +0000\r\n", "AQ1"));
  EXPECT_NE(key("Message-ID: <r-17@app>\r\nDate: Sat, 05 Dec 2026 08:00:00 +0000\r\n", "AQ1"),
            key("Message-ID: <r-17@app>\r\nDate: Sat, 05 Dec 2026 08:00:01 +0000\r\n", "AQ1"));
  // Two Message-IDs: the MTA added neither (it adds one only when none is there).
  EXPECT_NE(key("Message-ID: <r-17@app>\r\nMessage-Id: <20261205080001.AQ1@relay>\r\n", "AQ1"),
            key("Message-ID: <r-17@app>\r\nMessage-Id: <20261205080001.BQ2@relay>\r\n", "BQ2"));
  // Body bytes cannot stand in for a held field.
  EXPECT_NE(ContentKeyOfMessage("a@x", "From: a@x\r\nMessage-ID: <m@x>\r\n\r\nbody\r\n"),
            ContentKeyOfMessage("a@x", "From: a@x\r\n\r\nbody\r\nHmessage-id:<m@x>\n"));
}

SpoolMeta SampleMeta() {
  SpoolMeta m;
  m.content_key = ContentKeyOfMessage("alice@example.com", kMsg);
  m.queue_id = "4ABCD12";
  m.envelope_sender = "alice@example.com";
  m.recipients = {{"bob@example.com", "Bob, Smith", "PO1"}, {"we%ird=@x", "Name\twith\ntabs", "PO=2"}};
  m.received_ms = 1700000000123;
  return m;
}

Status Capture(Spool* sp, const std::string& body, CaptureId* id) {
  std::unique_ptr<SpoolWriter> w;
  CCMAIL_RETURN_IF_ERROR(sp->Begin(&w));
  *id = w->id();
  for (size_t off = 0; off < body.size(); off += 7) {
    CCMAIL_RETURN_IF_ERROR(w->Append(body.data() + off, std::min<size_t>(7, body.size() - off)));
  }
  return w->Commit(SampleMeta());
}

TEST(Spool, CommitOpenRemove) {
  TempDir d;
  std::unique_ptr<Spool> sp;
  ASSERT_TRUE(Spool::Open(d.path() + "/spool", &sp).ok());
  CaptureId id;
  ASSERT_TRUE(Capture(sp.get(), kMsg, &id).ok());
  EXPECT_EQ(CountFiles(sp->tmp_dir()), 0u);
  std::vector<CaptureId> ids;
  ASSERT_TRUE(sp->ListPending(&ids).ok());
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(ids[0], id);
  SpoolStats st = sp->Stats();
  EXPECT_EQ(st.count, 1u);
  EXPECT_GT(st.bytes, sizeof(kMsg));
  SpoolEntry e;
  Status s = sp->OpenEntry(id, &e);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(e.meta.capture_id, id);
  EXPECT_EQ(e.meta.recipients, SampleMeta().recipients);
  EXPECT_EQ(e.meta.queue_id, "4ABCD12");
  EXPECT_EQ(e.meta.received_ms, 1700000000123);
  ASSERT_EQ(e.message_length, strlen(kMsg));
  std::string raw(e.message_length, '\0');
  ASSERT_EQ(pread(e.fd.get(), raw.data(), raw.size(), e.message_offset), static_cast<ssize_t>(raw.size()));
  EXPECT_EQ(raw, kMsg);
  ASSERT_TRUE(sp->Remove(id).ok());
  EXPECT_EQ(sp->Stats().count, 0u);
  EXPECT_TRUE(sp->OpenEntry(id, &e).IsNotFound());
}

TEST(Spool, EveryCorruptionIsQuarantinedWithReason) {
  TempDir d;
  std::unique_ptr<Spool> sp;
  ASSERT_TRUE(Spool::Open(d.path() + "/spool", &sp).ok());
  CaptureId id;
  ASSERT_TRUE(Capture(sp.get(), kMsg, &id).ok());
  std::string path = sp->new_dir() + "/" + id.ToString();
  std::string good = test::Slurp(path);
  // Flip each byte in turn, and truncate at several lengths: never verifies.
  for (size_t i = 0; i < good.size(); i += 3) {
    std::string bad = good;
    bad[i] ^= 0x5a;
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bad;
    SpoolEntry e;
    ASSERT_TRUE(sp->VerifyOnly(id, &e).IsCorrupt()) << "byte " << i;
  }
  for (size_t len : {size_t{0}, size_t{10}, good.size() / 2, good.size() - 1}) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << good.substr(0, len);
    SpoolEntry e;
    ASSERT_TRUE(sp->VerifyOnly(id, &e).IsCorrupt()) << "len " << len;
  }
  SpoolEntry e;
  Status s = sp->OpenEntry(id, &e);
  EXPECT_TRUE(s.IsCorrupt());
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(std::filesystem::exists(sp->corrupt_dir() + "/" + id.ToString()));
  std::string reason = test::Slurp(sp->corrupt_dir() + "/" + id.ToString() + ".reason");
  EXPECT_NE(reason.find("no trailer"), std::string::npos) << reason;
}

std::string ReadReasonFile(const Spool& spool, const CaptureId& id) {
  std::ifstream in(spool.corrupt_dir() + "/" + id.ToString() + ".reason");
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// The reason file holds the shortened reason. An exporter killed between creating and
// renaming it leaves <id>.reason.tmp; the next quarantine of that capture (it is still in
// new/) must still record its reason.
TEST(Spool, QuarantineRecordsTheReason) {
  TempDir d;
  std::unique_ptr<Spool> sp;
  ASSERT_TRUE(Spool::Open(d.path() + "/spool", &sp).ok());
  CaptureId id, long_reason_id;
  ASSERT_TRUE(Capture(sp.get(), "hello", &id).ok());
  ASSERT_TRUE(Capture(sp.get(), "", &long_reason_id).ok());
  const std::string stale = sp->corrupt_dir() + "/" + id.ToString() + ".reason.tmp";
  { std::ofstream(stale) << "half a reason"; }
  ASSERT_TRUE(sp->Quarantine(id, "unconvertible: no body").ok());
  EXPECT_EQ(ReadReasonFile(*sp, id), "unconvertible: no body\n");
  EXPECT_FALSE(std::filesystem::exists(stale));
  EXPECT_TRUE(std::filesystem::exists(sp->corrupt_dir() + "/" + id.ToString()));

  const std::string huge_name(5000, 'x');
  ASSERT_TRUE(sp->Quarantine(long_reason_id, "unusable recipient " + huge_name).ok());
  const std::string recorded = ReadReasonFile(*sp, long_reason_id);
  EXPECT_EQ(recorded, QuarantineReason("unusable recipient " + huge_name) + "\n");
  EXPECT_EQ(recorded.size(), kMaxQuarantineReason + 4);
  EXPECT_EQ(QuarantineReason("short"), "short");
  EXPECT_EQ(sp->Stats().count, 0u);
}

TEST(Spool, CleanTmpOnlyDeadWriters) {
  TempDir d;
  std::unique_ptr<Spool> live, dead;
  ASSERT_TRUE(Spool::Open(d.path() + "/spool", &live, nullptr, "7.1").ok());
  ASSERT_TRUE(Spool::Open(d.path() + "/spool", &dead, nullptr, "9.4").ok());
  std::unique_ptr<SpoolWriter> w1, w2;
  ASSERT_TRUE(live->Begin(&w1).ok());
  ASSERT_TRUE(dead->Begin(&w2).ok());
  std::string dead_path = dead->tmp_dir() + "/" + w2->id().ToString() + ".9.4";
  ASSERT_TRUE(std::filesystem::exists(dead_path));
  size_t removed = 0;
  ASSERT_TRUE(live->CleanTmp([](const std::string& tag) { return tag == "7.1"; }, &removed).ok());
  EXPECT_EQ(removed, 1u);
  EXPECT_FALSE(std::filesystem::exists(dead_path));
  EXPECT_EQ(CountFiles(live->tmp_dir()), 1u);
  ASSERT_TRUE(w1->Append("x", 1).ok());
  ASSERT_TRUE(w1->Commit(SampleMeta()).ok());
  EXPECT_EQ(TmpWriterTag(w1->id().ToString() + ".12.3"), "12.3");
  EXPECT_EQ(TmpWriterTag("junk"), "");
}

TEST(WriterTag, FormatsAndParsesRegistrationTags) {
  const WriterTag tag{12, 3};
  EXPECT_EQ(tag.ToString(), "12.3");
  EXPECT_EQ(WriterTag::Parse("12.3"), tag);
  const WriterTag widest{UINT32_MAX, UINT64_MAX};
  EXPECT_EQ(WriterTag::Parse(widest.ToString()), widest);
  EXPECT_EQ(WriterTag::Parse("0.0"), (WriterTag{0, 0}));
}

// A tag that is not exactly a registration must never be taken for one: the cleaners delete
// the tmp files of the registration a tag names when the claim table says it is dead.
TEST(WriterTag, RejectsEverythingButTwoDecimalNumbers) {
  for (const char* text : {"", "p1234", "12", "12.", ".3", "12.3.4", "+12.3", "12.+3", " 12.3", "12. 3", "-1.3",
                           "12.-3", "0x1.3", "12.3 ", "4294967296.3", "4294967297.3", "1.18446744073709551616",
                           "99999999999999999999.1"}) {
    EXPECT_FALSE(WriterTag::Parse(text).has_value()) << '"' << text << '"';
  }
}

TEST(Spool, InjectedFaultsLeaveNothingBehind) {
  for (const char* point : {kCrashSpoolTmpCreated, kCrashSpoolTmpWritten, kCrashSpoolTmpFsynced, kCrashSpoolRenamed,
                            kCrashSpoolDirFsynced}) {
    for (const char* kind : {"ENOSPC", "EIO", "SHORT"}) {
      for (int n : {1, 2}) {
        TempDir d;
        std::unique_ptr<Spool> sp;
        ASSERT_TRUE(Spool::Open(d.path() + "/spool", &sp).ok());
        std::string spec = std::string(point) + ":" + std::to_string(n) + ":" + kind;
        setenv("CCMAIL_FAIL_AT", spec.c_str(), 1);
        ReloadFaultSpecFromEnv();
        CaptureId id;
        Status s = Capture(sp.get(), kMsg, &id);
        unsetenv("CCMAIL_FAIL_AT");
        ReloadFaultSpecFromEnv();
        bool fires = n == 1 || std::string(point) == kCrashSpoolTmpWritten;  // written passes several times
        if (fires) {
          ASSERT_FALSE(s.ok()) << spec;
          EXPECT_TRUE(s.code() == Status::Code::kNoSpace || s.code() == Status::Code::kIoError) << s.ToString();
          EXPECT_NE(s.message().find("capture"), std::string::npos) << s.ToString();
          EXPECT_EQ(CountFiles(sp->new_dir()), 0u) << spec;
          EXPECT_EQ(CountFiles(sp->tmp_dir()), 0u) << spec;
          EXPECT_EQ(sp->Stats().count, 0u);
        } else {
          ASSERT_TRUE(s.ok()) << spec << " " << s.ToString();
        }
      }
    }
  }
}

// Batch files are written past the page cache; whatever the size and alignment (or a file
// system without O_DIRECT), the file must hold exactly the bytes, the descriptor must be back
// to normal writes, and the injected faults must fire as for WriteAll.
TEST(DurableIo, WriteAllUncachedWritesExactlyTheBytes) {
  std::vector<std::string> dirs;
  TempDir d;
  dirs.push_back(d.path());
  std::optional<TempDir> shm_dir;  // tmpfs: O_DIRECT may be refused
  if (std::filesystem::is_directory("/dev/shm")) dirs.push_back(shm_dir.emplace("ccmail-store", "/dev/shm").path());
  std::string data;
  for (size_t i = 0; data.size() < (9u << 20) + 777; ++i) data += "line " + std::to_string(i * 2654435761u) + "\r\n";
  DurableIo& io = DurableIo::Real();
  for (const std::string& dir : dirs) {
    for (size_t n : {size_t{0}, size_t{100}, size_t{4096}, size_t{256} << 10, (size_t{256} << 10) + 1, size_t{300001},
                     size_t{4} << 20, (size_t{9} << 20) + 777}) {
      const std::string path = dir + "/f" + std::to_string(n);
      UniqueFd fd;
      ASSERT_TRUE(io.CreateExclusive(path, 0600, &fd).ok());
      ASSERT_TRUE(io.WriteAllUncached(fd.get(), data.data(), n, path).ok()) << path;
      EXPECT_EQ(::fcntl(fd.get(), F_GETFL) & O_DIRECT, 0) << "O_DIRECT left on " << path;
      ASSERT_TRUE(io.WriteAll(fd.get(), "tail", 4, path).ok());  // an unaligned append still works
      ASSERT_TRUE(io.Fsync(fd.get(), path).ok());
      ASSERT_TRUE(io.Close(&fd, path).ok());
      std::string got = test::Slurp(path);
      ASSERT_EQ(got.size(), n + 4) << path;
      EXPECT_TRUE(got.compare(0, n, data, 0, n) == 0 && got.substr(n) == "tail") << path;
      ::unlink(path.c_str());
    }
  }
  for (const char* kind : {"ENOSPC", "SHORT"}) {
    const std::string path = d.path() + "/fault-" + kind;
    UniqueFd fd;
    ASSERT_TRUE(io.CreateExclusive(path, 0600, &fd).ok());
    setenv("CCMAIL_FAIL_AT", (std::string("test.uncached:1:") + kind).c_str(), 1);
    ReloadFaultSpecFromEnv();
    Status s = io.WriteAllUncached(fd.get(), data.data(), 1 << 20, path, "test.uncached");
    unsetenv("CCMAIL_FAIL_AT");
    ReloadFaultSpecFromEnv();
    EXPECT_EQ(s.code(), Status::Code::kNoSpace) << kind << ": " << s.ToString();
  }
  if (dirs.size() > 1) std::filesystem::remove_all(dirs[1]);
}

// CCMAIL_DELAY_AT sleeps at exactly the selected passes of a point (the e2e milter-timeout
// round relies on it) and does nothing else.
TEST(DurableIo, DelayAtSleepsOnTheSelectedPassesOnly) {
  setenv("CCMAIL_DELAY_AT", "test.delay:2:300,test.delay:4:300", 1);
  ReloadFaultSpecFromEnv();
  std::vector<double> took;
  for (int pass = 1; pass <= 4; ++pass) {
    auto t0 = std::chrono::steady_clock::now();
    CrashPoint("test.delay");
    took.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  unsetenv("CCMAIL_DELAY_AT");
  ReloadFaultSpecFromEnv();
  EXPECT_LT(took[0], 0.25);
  EXPECT_GE(took[1], 0.29);
  EXPECT_LT(took[2], 0.25);
  EXPECT_GE(took[3], 0.29);
}

TEST(Spool, StatsSeeOtherWritersAfterRefresh) {
  TempDir d;
  std::unique_ptr<Spool> a, b;
  ASSERT_TRUE(Spool::Open(d.path() + "/spool", &a).ok());
  ASSERT_TRUE(Spool::Open(d.path() + "/spool", &b).ok());
  a->set_stats_refresh_ms(0);
  b->set_stats_refresh_ms(1000000);
  CaptureId id;
  ASSERT_TRUE(Capture(b.get(), kMsg, &id).ok());
  EXPECT_EQ(a->Stats().count, 1u);
  ASSERT_TRUE(a->Remove(id).ok());
  EXPECT_EQ(b->Stats().count, 1u);  // cached until its refresh
  ASSERT_TRUE(b->RescanStats().ok());
  EXPECT_EQ(b->Stats().count, 0u);
}

}  // namespace
}  // namespace ccmail::store
