// ccmailctl tests: every command run in process through RunCtl against a real state
// (spool files, SQLite ledger, shared-memory claim table, exporter lock) built under a
// temporary directory, plus the real binary executed once per exit-status class.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <regex>
#include <set>
#include <thread>

#include "ccmail/ctl/json.h"
#include "ccmail/exporter/singleton.h"
#include "ctl_test_util.h"
#include "json_check.h"

namespace ccmail::ctl::test {
namespace {

using store::CaptureId;
using store::SpoolRecipient;

const SpoolRecipient kJohn{"jsmith@corp.example", "Smith, John", "HUBPO2"};
const SpoolRecipient kMary{"mjones@corp.example", "Jones, Mary", "HUBPO1"};

Json ParseOrFail(const std::string& text) {
  Json j;
  std::string error;
  EXPECT_TRUE(JsonParser::Parse(text, &j, &error)) << error << "\n" << text;
  return j;
}

// A "key   value" line of the text output (any indentation and padding).
bool HasLine(const std::string& text, const std::string& key, const std::string& value_prefix) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    size_t k = l.find_first_not_of(' ');
    if (k == std::string::npos || l.compare(k, key.size(), key) != 0) continue;
    size_t v = l.find_first_not_of(' ', k + key.size());
    if (v == k + key.size() || v == std::string::npos) continue;  // a longer key, or no value
    if (l.compare(v, value_prefix.size(), value_prefix) == 0) return true;
  }
  return false;
}

size_t FileCount(const std::string& dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir, ec); !ec && it != std::filesystem::directory_iterator(); ++it) ++n;
  return n;
}

// ---------------------------------------------------------------- JSON writer

TEST(JsonWriter, EscapesEverythingAndStaysValidUtf8) {
  std::string nasty = "q\"b\\s/\b\f\n\r\t\x01\x1f" "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x93\xA7";
  std::string invalid = "a\xFF" "b\xC3" "c\xED\xA0\x80" "d\xC0\xAF";  // stray, truncated, surrogate, overlong
  JsonWriter w;
  w.BeginObject().Key("k\"ey").String(nasty).Key("bad").String(invalid).Key("list").BeginArray();
  w.Int(-5).UInt(18446744073709551615ull).Bool(true).Bool(false).Null().BeginObject().EndObject().BeginArray().EndArray();
  w.EndArray().EndObject();
  std::string text = w.Take();
  Json j = ParseOrFail(text);
  EXPECT_EQ(j.Str("k\"ey"), nasty);  // round trip of every escape and of valid UTF-8
  EXPECT_EQ(j.Str("bad"), "a\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" "d\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(j.Int("list.0"), -5);
  EXPECT_EQ(j.Find("list.1")->text, "18446744073709551615");
  EXPECT_EQ(j.Bool("list.2"), 1);
  EXPECT_EQ(j.Bool("list.3"), 0);
  EXPECT_TRUE(j.IsNull("list.4"));
  EXPECT_EQ(j.Size("list.5"), 0u);
  EXPECT_EQ(j.Size("list.6"), 0u);
  EXPECT_EQ(JsonQuote("\x7f\x1b"), "\"\x7f\\u001b\"");
  // The layout is part of the stable output.
  JsonWriter small;
  small.BeginObject().Key("a").UInt(1).Key("b").BeginArray().String("x").EndArray().EndObject();
  EXPECT_EQ(small.Take(), "{\n  \"a\": 1,\n  \"b\": [\n    \"x\"\n  ]\n}\n");
}

// ---------------------------------------------------------------- empty state

TEST(Ctl, NothingThereYetIsAStateNotAnError) {
  BridgeDir b;
  RunResult r = b.Run({"status"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "not running")) << r.out;
  EXPECT_TRUE(Contains(r.out, "missing")) << r.out;
  r = b.Run({"--json", "status"});
  ASSERT_EQ(r.rc, 0) << r.err;
  Json j = ParseOrFail(r.out);
  EXPECT_EQ(j.Str("exporter.state"), "not running");
  EXPECT_EQ(j.Str("table.state"), "missing");
  EXPECT_EQ(j.Str("ledger.state"), "missing");
  EXPECT_EQ(j.Str("backlog.state"), "missing");
  EXPECT_TRUE(j.IsNull("backlog.oldest_message_age_ms"));
  EXPECT_EQ(b.Run({"list"}).rc, 0);
  EXPECT_EQ(b.Run({"list", "--quarantined"}).rc, 0);
  EXPECT_EQ(b.Run({"metrics"}).rc, 0);
  EXPECT_EQ(b.Run({"drain", "--timeout", "1s"}).rc, 0);
  EXPECT_EQ(b.Run({"config"}).rc, 0);
  // A tool must not create the spool, the ledger, the table or its runtime directory.
  EXPECT_FALSE(std::filesystem::exists(b.dir() + "/b")) << "ccmailctl created files";
  EXPECT_FALSE(std::filesystem::exists(shm::ClaimTable::TablePath(b.TableOptions())));
  // Half a spool (no new/ yet) is not completed by the tool either.
  std::filesystem::create_directories(b.paths().spool_root);
  j = ParseOrFail(b.Run({"--json", "status"}).out);
  EXPECT_EQ(j.Str("backlog.state"), "missing");
  EXPECT_EQ(b.Run({"list"}).rc, 0);
  EXPECT_FALSE(std::filesystem::exists(b.paths().spool_root + "/new"));
  EXPECT_FALSE(std::filesystem::exists(b.paths().runtime_directory));
}

TEST(Ctl, UsageAndConfigurationErrors) {
  BridgeDir b;
  EXPECT_EQ(b.Run({}).rc, kExitUsage);
  EXPECT_EQ(b.Run({"frobnicate"}).rc, kExitUsage);
  EXPECT_EQ(b.Run({"show"}).rc, kExitUsage);
  EXPECT_EQ(b.Run({"drain", "--timeout", "soon"}).rc, kExitUsage);
  EXPECT_EQ(b.Run({"requeue"}).rc, kExitUsage);
  RunResult r = b.Run({"-o", "no_such_setting=1", "status"});
  EXPECT_EQ(r.rc, kExitConfig);
  EXPECT_TRUE(Contains(r.err, "no_such_setting")) << r.err;
  EXPECT_EQ(b.Run({"-o", "spool_directory=relative", "status"}).rc, kExitConfig);
  std::ostringstream out, err;
  EXPECT_EQ(RunCtl({"ccmailctl", "-c", b.dir() + "/absent.conf", "status"}, out, err), kExitConfig);
  // --help is for people: every command is listed with what it does.
  r = b.Run({"--help"});
  EXPECT_EQ(r.rc, 0);
  for (const char* cmd : {"status", "list", "show", "requeue", "drain", "metrics", "check-mta", "config"})
    EXPECT_TRUE(Contains(r.out, cmd)) << cmd;
  // -o overrides are applied (and global options work after the command too).
  r = b.Run({"config", "-o", "batch_max_messages=7"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "batch_max_messages = 7")) << r.out;
}

// ---------------------------------------------------------------- status

TEST(Ctl, StatusReportsEveryPart) {
  BridgeDir b;
  CaptureId old_one = b.Capture("alice@example.com", {kJohn}, 3 * 3600 * 1000);  // 3h old
  b.Capture("bob@example.com", {kJohn, kMary}, 5000);
  CaptureId gone1 = b.Capture("carol@example.com", {kJohn}, 1000);
  CaptureId gone2 = b.Capture("carol@example.com", {kMary}, 1000);
  b.Export({gone1, gone2}, "HUBPO2");                 // 2 exported deliveries
  CaptureId dup = b.Capture("carol@example.com", {kJohn}, 900);
  b.Export({dup}, "HUBPO2", /*dup=*/true);            // 1 duplicate
  CaptureId bad = b.Capture("eve@example.com", {kJohn}, 800);
  ASSERT_TRUE(b.spool().Quarantine(bad, "cannot convert: boom").ok());

  shm::ClaimTable& t = b.table();
  // Not running: nobody holds the exporter lock and no exporter is registered.
  RunResult r = b.Run({"--json", "status"});
  ASSERT_EQ(r.rc, 0) << r.err;
  Json j = ParseOrFail(r.out);
  EXPECT_EQ(j.Str("exporter.state"), "not running");

  std::unique_ptr<shm::Registration> milter, exp;
  ASSERT_TRUE(t.Register(shm::Role::kMilter, &milter).ok());
  ASSERT_TRUE(t.Register(shm::Role::kExporter, &exp).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(t.Publish(*milter, CaptureId::New().bytes, 100).ok());
  std::vector<shm::Claim> claims;
  ASSERT_EQ(t.ClaimReady(*exp, 1, &claims), 1u);
  auto now_ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::system_clock::now().time_since_epoch()).count());
  shm::ExporterState es;
  es.epoch = 1;
  es.heartbeat_ns = now_ns - 2'000'000'000ull;  // 2 s ago
  es.progress_ns = now_ns - 4'000'000'000ull;
  es.pid = ::getpid();
  t.PublishExporterState(es);

  UniqueFd lock;
  ASSERT_TRUE(exporter::AcquireExporterLock(b.paths().exporter_lock, &lock).ok());
  r = b.Run({"--json", "status"});
  ASSERT_EQ(r.rc, 0) << r.err;
  j = ParseOrFail(r.out);
  // The oldest capture waited 3 h, but a batch was committed 4 s ago: working on it.
  EXPECT_EQ(j.Str("exporter.state"), "running");
  EXPECT_EQ(j.Bool("exporter.running"), 1);
  EXPECT_EQ(j.Int("exporter.pid"), ::getpid());
  EXPECT_EQ(j.Int("exporter.epoch"), 1);
  EXPECT_GE(j.Int("exporter.heartbeat_age_ms"), 2000);
  EXPECT_LT(j.Int("exporter.heartbeat_age_ms"), 60000);
  EXPECT_GE(j.Int("exporter.progress_age_ms"), 4000);
  EXPECT_EQ(j.Str("backlog.state"), "ok");
  EXPECT_EQ(j.Int("backlog.messages"), 2);
  uint64_t bytes = std::filesystem::file_size(b.NewPath(old_one));
  EXPECT_GT(j.Int("backlog.bytes"), static_cast<int64_t>(bytes));
  EXPECT_GE(j.Int("backlog.oldest_message_age_ms"), 3 * 3600 * 1000);
  EXPECT_LT(j.Int("backlog.oldest_message_age_ms"), 3 * 3600 * 1000 + 60000);
  EXPECT_EQ(j.Int("quarantined"), 1);
  EXPECT_EQ(j.Str("table.state"), "ok");
  EXPECT_EQ(j.Int("table.slots"), 16);
  EXPECT_EQ(j.Int("table.free"), 13);
  EXPECT_EQ(j.Int("table.reserved"), 0);
  EXPECT_EQ(j.Int("table.ready"), 2);
  EXPECT_EQ(j.Int("table.claimed"), 1);
  EXPECT_EQ(j.Int("table.overflows"), 0);
  EXPECT_EQ(j.Str("ledger.state"), "ok");
  EXPECT_EQ(j.Int("ledger.exported"), 2);
  EXPECT_EQ(j.Int("ledger.duplicates"), 1);
  EXPECT_EQ(j.Int("ledger.batches"), 2);
  EXPECT_EQ(j.Int("ledger.epoch"), 1);

  // No batch for longer than exporter_stall_timeout while the 3 h old capture waits.
  es.progress_ns = now_ns - 300'000'000'000ull;
  t.PublishExporterState(es);
  r = b.Run({"status"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(HasLine(r.out, "exporter", "stalled")) << r.out;
  EXPECT_TRUE(HasLine(r.out, "pid", std::to_string(::getpid()))) << r.out;
  EXPECT_TRUE(HasLine(r.out, "last batch", "5m 00s ago")) << r.out;
  EXPECT_TRUE(HasLine(r.out, "backlog", "2 messages, ")) << r.out;
  EXPECT_TRUE(HasLine(r.out, "oldest message", "3h 00m")) << r.out;
  EXPECT_TRUE(HasLine(r.out, "ready", "2")) << r.out;
  EXPECT_TRUE(HasLine(r.out, "claimed", "1")) << r.out;
  EXPECT_TRUE(HasLine(r.out, "free", "13")) << r.out;
  EXPECT_TRUE(HasLine(r.out, "exported", "2")) << r.out;
  EXPECT_TRUE(HasLine(r.out, "duplicates", "1")) << r.out;
  EXPECT_TRUE(HasLine(r.out, "batches", "2")) << r.out;
  EXPECT_TRUE(HasLine(r.out, "quarantined", "1")) << r.out;
  // Values start in one column: people read it as a table.
  std::set<size_t> columns;
  std::istringstream lines(r.out);
  for (std::string l; std::getline(lines, l);) {
    size_t gap = l.find("  ", l.find_first_not_of(' '));
    if (gap != std::string::npos) columns.insert(l.find_first_not_of(' ', gap));
  }
  EXPECT_EQ(columns.size(), 1u) << r.out;
  j = ParseOrFail(b.Run({"--json", "status"}).out);
  EXPECT_EQ(j.Str("exporter.state"), "stalled");

  // Once the old capture is exported and the loop turns, the exporter is simply running.
  b.Export({old_one}, "HUBPO2");
  es.heartbeat_ns = es.progress_ns = now_ns;
  t.PublishExporterState(es);
  j = ParseOrFail(b.Run({"--json", "status"}).out);
  EXPECT_EQ(j.Str("exporter.state"), "running");
  EXPECT_EQ(j.Int("backlog.messages"), 1);

  // A table of another layout is reported, not created over.
  r = b.Run({"-o", "claim_table_slots=32", "--json", "status"});
  ASSERT_EQ(r.rc, 0) << r.err;
  j = ParseOrFail(r.out);
  EXPECT_EQ(j.Str("table.state"), "error");
  EXPECT_TRUE(Contains(j.Str("table.error"), "slot")) << j.Str("table.error");
}

// Where /proc/locks cannot see the lock (overlayfs reports another device), a live
// exporter registration in the claim table (kernel-checked OFD lock) also counts.
TEST(Ctl, ExporterSeenThroughItsTableRegistration) {
  BridgeDir b;
  std::filesystem::create_directories(b.paths().spool_directory);
  {
    UniqueFd lock;  // leaves the lock file behind, unlocked: an exporter ran once
    ASSERT_TRUE(exporter::AcquireExporterLock(b.paths().exporter_lock, &lock).ok());
  }
  shm::ClaimTable& t = b.table();
  EXPECT_EQ(ParseOrFail(b.Run({"--json", "status"}).out).Str("exporter.state"), "not running");
  std::unique_ptr<shm::Registration> milter;
  ASSERT_TRUE(t.Register(shm::Role::kMilter, &milter).ok());
  EXPECT_EQ(ParseOrFail(b.Run({"--json", "status"}).out).Str("exporter.state"), "not running");
  std::unique_ptr<shm::Registration> exp;
  ASSERT_TRUE(t.Register(shm::Role::kExporter, &exp).ok());
  EXPECT_EQ(ParseOrFail(b.Run({"--json", "status"}).out).Str("exporter.state"), "running");
  exp.reset();
  EXPECT_EQ(ParseOrFail(b.Run({"--json", "status"}).out).Str("exporter.state"), "not running");
}

// ---------------------------------------------------------------- metrics

TEST(Ctl, MetricsAreValidPrometheusText) {
  BridgeDir b;
  CaptureId a = b.Capture("alice@example.com", {kJohn}, 90 * 1000);
  b.Capture("bob@example.com", {kMary}, 1000);
  CaptureId x = b.Capture("x@example.com", {kJohn}, 1000);
  b.Export({x}, "HUBPO2");
  CaptureId q = b.Capture("q@example.com", {kJohn}, 1000);
  ASSERT_TRUE(b.spool().Quarantine(q, "bad").ok());
  shm::ClaimTable& t = b.table();
  std::unique_ptr<shm::Registration> milter;
  ASSERT_TRUE(t.Register(shm::Role::kMilter, &milter).ok());
  ASSERT_TRUE(t.Publish(*milter, a.bytes, 10).ok());
  UniqueFd lock;
  ASSERT_TRUE(exporter::AcquireExporterLock(b.paths().exporter_lock, &lock).ok());

  RunResult r = b.Run({"metrics"});
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*")*\})? (-?[0-9]+(\.[0-9]+)?|NaN|[+-]Inf)$)");
  const std::regex help(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$)");
  const std::regex type(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$)");
  std::map<std::string, std::string> values;  // "name{labels}" -> value
  std::set<std::string> typed;
  std::string current_family;
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, help)) {
      EXPECT_EQ(typed.count(m[1]), 0u) << "family " << m[1] << " described twice";
      current_family = m[1];
    } else if (std::regex_match(line, m, type)) {
      EXPECT_EQ(m[1], current_family) << "TYPE without its HELP: " << line;
      typed.insert(m[1]);
      if (m[2] == "counter") {
        EXPECT_EQ(std::string(m[1]).substr(std::string(m[1]).size() - 6), "_total") << line;
      }
    } else if (std::regex_match(line, m, sample)) {
      EXPECT_EQ(m[1], current_family) << "sample outside its family: " << line;
      EXPECT_EQ(values.count(m[1].str() + m[2].str()), 0u) << "duplicate series " << line;
      values[m[1].str() + m[2].str()] = m[4];
    } else {
      ADD_FAILURE() << "not Prometheus text format: '" << line << "'";
    }
  }
  for (const char* f : {"ccmail_backlog_messages", "ccmail_backlog_bytes", "ccmail_oldest_message_age_seconds",
                        "ccmail_table_slots", "ccmail_table_overflows_total", "ccmail_exported_total",
                        "ccmail_duplicates_total", "ccmail_quarantined", "ccmail_batches_total", "ccmail_exporter_epoch",
                        "ccmail_exporter_heartbeat_age_seconds", "ccmail_exporter_up"})
    EXPECT_EQ(typed.count(f), 1u) << f;
  EXPECT_EQ(values["ccmail_backlog_messages"], "2");
  EXPECT_GE(std::stod(values["ccmail_oldest_message_age_seconds"]), 90.0);
  EXPECT_LT(std::stod(values["ccmail_oldest_message_age_seconds"]), 150.0);
  EXPECT_EQ(values["ccmail_table_slots{state=\"free\"}"], "15");
  EXPECT_EQ(values["ccmail_table_slots{state=\"ready\"}"], "1");
  EXPECT_EQ(values["ccmail_table_slots{state=\"claimed\"}"], "0");
  EXPECT_EQ(values["ccmail_table_overflows_total"], "0");
  EXPECT_EQ(values["ccmail_exported_total"], "1");
  EXPECT_EQ(values["ccmail_duplicates_total"], "0");
  EXPECT_EQ(values["ccmail_batches_total"], "1");
  EXPECT_EQ(values["ccmail_quarantined"], "1");
  EXPECT_EQ(values["ccmail_exporter_epoch"], "1");
  EXPECT_EQ(values["ccmail_exporter_up"], "1");
  EXPECT_EQ(values.count("ccmail_exporter_heartbeat_age_seconds"), 0u) << "no heartbeat was ever published";
}

// ---------------------------------------------------------------- list / show

TEST(Ctl, ListPendingAndQuarantined) {
  BridgeDir b;
  CaptureId young = b.Capture("bob@example.com", {kJohn, kMary}, 2000);
  CaptureId old_one = b.Capture("", {kMary}, 125 * 1000);  // null sender
  CaptureId q = b.Capture("tab\there@example.com", {kJohn}, 1000);
  ASSERT_TRUE(b.spool().Quarantine(q, "cannot convert: \"quoted\" reason").ok());

  RunResult r = b.Run({"list"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "ID")) << r.out;
  EXPECT_LT(r.out.find(old_one.ToString()), r.out.find(young.ToString())) << "oldest first\n" << r.out;
  EXPECT_TRUE(Contains(r.out, "2m 05s")) << r.out;
  EXPECT_TRUE(Contains(r.out, "<>")) << r.out;
  EXPECT_TRUE(Contains(r.out, "Smith, John at HUBPO2; Jones, Mary at HUBPO1")) << r.out;
  EXPECT_FALSE(Contains(r.out, q.ToString())) << r.out;
  EXPECT_TRUE(Contains(r.out, "2 pending")) << r.out;
  r = b.Run({"list", "-n", "1"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, old_one.ToString())) << r.out;
  EXPECT_FALSE(Contains(r.out, young.ToString())) << r.out;
  EXPECT_TRUE(Contains(r.out, "showing the oldest 1 of 2 pending")) << r.out;

  r = b.Run({"list", "--json"});
  ASSERT_EQ(r.rc, 0) << r.err;
  Json j = ParseOrFail(r.out);
  ASSERT_EQ(j.Size(), 2u);
  EXPECT_EQ(j.Str("0.id"), old_one.ToString());
  EXPECT_EQ(j.Str("0.sender"), "");
  EXPECT_EQ(j.Str("1.sender"), "bob@example.com");
  EXPECT_EQ(j.Str("1.recipients.1.ccmail_name"), "Jones, Mary");
  EXPECT_EQ(j.Str("1.recipients.1.post_office"), "HUBPO1");
  EXPECT_EQ(j.Str("1.recipients.0.address"), "jsmith@corp.example");
  EXPECT_GE(j.Int("0.age_ms"), 125000);
  EXPECT_EQ(j.Int("1.message_size"), 22);

  r = b.Run({"list", "--quarantined"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, q.ToString())) << r.out;
  EXPECT_TRUE(Contains(r.out, "REASON")) << r.out;
  EXPECT_TRUE(Contains(r.out, "cannot convert: \"quoted\" reason")) << r.out;
  EXPECT_FALSE(Contains(r.out, young.ToString())) << r.out;
  r = b.Run({"--json", "list", "--quarantined"});
  j = ParseOrFail(r.out);
  ASSERT_EQ(j.Size(), 1u);
  EXPECT_EQ(j.Str("0.reason"), "cannot convert: \"quoted\" reason");
  EXPECT_EQ(j.Str("0.sender"), "tab\there@example.com");
  EXPECT_EQ(j.Str("0.state"), "quarantined");
}

// Envelope addresses may hold control characters (a quoted local part); the text output must
// show them escaped: no forged line, no terminal escape, no extra column.
TEST(Ctl, TextOutputEscapesControlCharactersOfAddresses) {
  BridgeDir b;
  CaptureId id = b.Capture("evil\r\nFORGED LINE\x1b[2J\tcol@example.com", {kJohn}, 1000);
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"list"}, std::vector<std::string>{"show", id.ToString()}}) {
    RunResult r = b.Run(args);
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(Contains(r.out, "evil\\r\\nFORGED LINE\\x1b[2J\\tcol@example.com")) << r.out;
    EXPECT_FALSE(Contains(r.out, "\x1b")) << r.out;
    EXPECT_FALSE(Contains(r.out, "\nFORGED")) << r.out;
    EXPECT_FALSE(Contains(r.out, "\r")) << r.out;
  }
  RunResult r = b.Run({"--json", "list"});  // JSON keeps the exact bytes, escaped the JSON way
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(ParseOrFail(r.out).Str("0.sender"), "evil\r\nFORGED LINE\x1b[2J\tcol@example.com");
}

// A message for two post offices is in two batch files of one commit; a later copy whose
// recipients all had it already is a duplicate. show must tell both apart from the ledger.
TEST(Ctl, ShowListsEveryPostOfficeAndTellsADuplicate) {
  BridgeDir b;
  CaptureId two = b.Capture("alice@example.com", {kJohn, kMary}, 1000);
  CaptureId again = b.Capture("alice@example.com", {kJohn}, 1000);
  store::SpoolEntry e;
  ASSERT_TRUE(b.spool().VerifyOnly(two, &e).ok());
  const store::ContentKey key = e.meta.content_key;
  std::vector<store::LedgerBatch> round(2);
  round[0].post_office = "HUBPO1";
  round[0].file_name = "B1.CCM";
  round[0].capture_ids = {two};
  round[0].deliveries = {{two, key, "Jones, Mary at HUBPO1", store::DeliveryKind::kExported}};
  round[1].post_office = "HUBPO2";
  round[1].file_name = "B2.CCM";
  round[1].deliveries = {{two, key, "Smith, John at HUBPO2", store::DeliveryKind::kExported}};
  ASSERT_TRUE(b.ledger().CommitBatches(&round).ok());
  std::vector<store::LedgerBatch> dup(1);
  dup[0].capture_ids = {again};
  dup[0].deliveries = {{again, key, "Smith, John at HUBPO2", store::DeliveryKind::kDup}};
  ASSERT_TRUE(b.ledger().CommitBatches(&dup).ok());
  ASSERT_TRUE(b.spool().Remove(two).ok());
  ASSERT_TRUE(b.spool().Remove(again).ok());
  std::filesystem::create_directories(b.paths().outbox_directory + "/HUBPO2");
  std::ofstream(b.paths().outbox_directory + "/HUBPO2/B2.CCM") << "x";

  RunResult r = b.Run({"show", two.ToString()});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(HasLine(r.out, "state", "exported (recorded in the ledger)")) << r.out;
  EXPECT_TRUE(Contains(r.out, "Jones, Mary at HUBPO1: exported in B1.CCM")) << r.out;
  EXPECT_TRUE(Contains(r.out, "Smith, John at HUBPO2: exported in B2.CCM")) << r.out;
  EXPECT_TRUE(Contains(r.out, "post office HUBPO1, file B1.CCM")) << r.out;
  EXPECT_TRUE(Contains(r.out, "post office HUBPO2, file B2.CCM")) << r.out;
  r = b.Run({"--json", "show", two.ToString()});
  ASSERT_EQ(r.rc, 0) << r.err;
  Json j = ParseOrFail(r.out);
  EXPECT_EQ(j.Str("state"), "exported");
  EXPECT_EQ(j.Size("batches"), 2u);
  EXPECT_EQ(j.Str("batches.0.post_office"), "HUBPO1");
  EXPECT_EQ(j.Bool("batches.0.in_outbox"), 0);
  EXPECT_EQ(j.Str("batches.1.file_name"), "B2.CCM");
  EXPECT_EQ(j.Bool("batches.1.in_outbox"), 1);
  EXPECT_EQ(j.Size("deliveries"), 2u);

  r = b.Run({"show", again.ToString()});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "duplicate (every recipient already had it")) << r.out;
  EXPECT_TRUE(Contains(r.out, "Smith, John at HUBPO2: duplicate")) << r.out;
  EXPECT_FALSE(Contains(r.out, "batch ")) << r.out;
  r = b.Run({"--json", "show", again.ToString()});
  j = ParseOrFail(r.out);
  EXPECT_EQ(j.Str("state"), "duplicate");
  EXPECT_EQ(j.Str("deliveries.0.kind"), "duplicate");
}

TEST(Ctl, ShowFindsPendingQuarantinedAndExported) {
  BridgeDir b;
  CaptureId p = b.Capture("alice@example.com", {kJohn, kMary}, 1000);
  CaptureId q = b.Capture("alice@example.com", {kJohn}, 1000);
  ASSERT_TRUE(b.spool().Quarantine(q, "unconvertible MIME").ok());
  CaptureId e = b.Capture("alice@example.com", {kMary}, 1000);
  uint64_t seq = b.Export({e}, "HUBPO1");
  std::filesystem::create_directories(b.paths().outbox_directory + "/HUBPO1");
  std::ofstream(b.paths().outbox_directory + "/HUBPO1/BATCH1.CCM") << "x";

  RunResult r = b.Run({"show", p.ToString()});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "state        pending")) << r.out;
  EXPECT_TRUE(Contains(r.out, "sender       alice@example.com")) << r.out;
  EXPECT_TRUE(Contains(r.out, "mjones@corp.example -> Jones, Mary at HUBPO1")) << r.out;
  EXPECT_TRUE(Contains(r.out, "queue id     Q" + p.ToString().substr(24))) << r.out;

  std::string upper = q.ToString();
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  r = b.Run({"show", upper});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "quarantined")) << r.out;
  EXPECT_TRUE(Contains(r.out, "reason       unconvertible MIME")) << r.out;

  r = b.Run({"--json", "show", e.ToString()});
  ASSERT_EQ(r.rc, 0) << r.err;
  Json j = ParseOrFail(r.out);
  EXPECT_EQ(j.Str("state"), "exported");
  EXPECT_EQ(j.Int("batch.seq"), static_cast<int64_t>(seq));
  EXPECT_EQ(j.Str("batch.post_office"), "HUBPO1");
  EXPECT_EQ(j.Str("batch.file_name"), "BATCH1.CCM");
  EXPECT_EQ(j.Bool("batch.in_outbox"), 1);
  r = b.Run({"show", e.ToString()});
  EXPECT_TRUE(Contains(r.out, "post office HUBPO1, file BATCH1.CCM")) << r.out;

  // A torn file in new/ (the exporter will quarantine it): shown, with why it is unreadable.
  CaptureId torn = CaptureId::New();
  std::ofstream(b.NewPath(torn)) << "CCMSPOOL garbage";
  r = b.Run({"show", torn.ToString()});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(HasLine(r.out, "state", "pending")) << r.out;
  EXPECT_TRUE(HasLine(r.out, "metadata", "unreadable: ")) << r.out;
  r = b.Run({"--json", "list"});
  ASSERT_EQ(r.rc, 0) << r.err;
  j = ParseOrFail(r.out);
  ASSERT_EQ(j.Size(), 2u);
  EXPECT_EQ(j.Str("1.id"), torn.ToString());
  EXPECT_EQ(j.Bool("1.readable"), 0);
  EXPECT_TRUE(Contains(j.Str("1.problem"), "too short")) << j.Str("1.problem");

  // Unknown and malformed ids: exit 1 with a message that says so.
  r = b.Run({"show", CaptureId::New().ToString()});
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(Contains(r.err, "unknown capture id")) << r.err;
  r = b.Run({"show", "not-an-id"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(Contains(r.err, "not a capture id")) << r.err;
}

// ---------------------------------------------------------------- requeue

TEST(Ctl, RequeueMovesVerifiedFilesAndRefusesBrokenOnes) {
  BridgeDir b;
  CaptureId good = b.Capture("alice@example.com", {kJohn}, 1000);
  CaptureId good2 = b.Capture("alice@example.com", {kMary}, 1000);
  CaptureId broken = b.Capture("alice@example.com", {kJohn}, 1000);
  for (const auto& id : {good, good2, broken}) ASSERT_TRUE(b.spool().Quarantine(id, "test").ok());
  // Tear the tail off one of them: it must never go back into the queue.
  std::filesystem::resize_file(b.CorruptPath(broken), std::filesystem::file_size(b.CorruptPath(broken)) - 10);

  RunResult r = b.Run({"requeue", good.ToString()});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "requeued " + good.ToString())) << r.out;
  EXPECT_TRUE(std::filesystem::exists(b.NewPath(good)));
  EXPECT_FALSE(std::filesystem::exists(b.CorruptPath(good)));
  EXPECT_FALSE(std::filesystem::exists(b.CorruptPath(good) + ".reason"));
  store::SpoolEntry e;
  EXPECT_TRUE(b.spool().VerifyOnly(good, &e).ok());

  r = b.Run({"requeue", broken.ToString()});
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(Contains(r.err, "does not verify")) << r.err;
  EXPECT_TRUE(std::filesystem::exists(b.CorruptPath(broken)));
  EXPECT_TRUE(std::filesystem::exists(b.CorruptPath(broken) + ".reason"));
  EXPECT_FALSE(std::filesystem::exists(b.NewPath(broken)));

  r = b.Run({"requeue", good.ToString()});  // already done
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(Contains(r.err, "not in")) << r.err;

  // --all: the good one moves, the broken one is refused (exit 1), nothing is lost.
  r = b.Run({"requeue", "--all"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(std::filesystem::exists(b.NewPath(good2)));
  EXPECT_TRUE(std::filesystem::exists(b.CorruptPath(broken)));
  EXPECT_EQ(FileCount(b.paths().spool_root + "/new"), 2u);
  EXPECT_EQ(FileCount(b.paths().quarantine_dir), 2u);  // broken + its reason
  r = b.Run({"--json", "requeue", "--all"});
  EXPECT_EQ(r.rc, 1);
  Json j = ParseOrFail(r.out);
  ASSERT_EQ(j.Size(), 1u);
  EXPECT_EQ(j.Str("0.id"), broken.ToString());
  EXPECT_EQ(j.Bool("0.requeued"), 0);

  // A capture that is also in new/ is never overwritten.
  CaptureId twin = b.Capture("alice@example.com", {kJohn}, 1000);
  std::filesystem::copy_file(b.NewPath(twin), b.CorruptPath(twin));
  r = b.Run({"requeue", twin.ToString()});
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(Contains(r.err, "already exists")) << r.err;
  EXPECT_TRUE(std::filesystem::exists(b.CorruptPath(twin)));
}

TEST(Spool, ListQuarantinedSkipsStrayReasonFiles) {
  BridgeDir b;
  CaptureId a = b.Capture("a@example.com", {kJohn}, 2000);
  CaptureId c = b.Capture("c@example.com", {kJohn}, 1000);
  ASSERT_TRUE(b.spool().Quarantine(c, "second\n").ok());
  ASSERT_TRUE(b.spool().Quarantine(a, "first").ok());
  std::ofstream(b.paths().quarantine_dir + "/" + CaptureId::New().ToString() + ".reason") << "orphan\n";
  std::ofstream(b.paths().quarantine_dir + "/README") << "not a capture\n";
  std::vector<store::QuarantinedCapture> q;
  ASSERT_TRUE(b.spool().ListQuarantined(&q).ok());
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0].id, a);
  EXPECT_EQ(q[0].reason, "first");
  EXPECT_EQ(q[1].id, c);
  EXPECT_EQ(q[1].reason, "second");
  EXPECT_GT(q[0].file_size, 60u);
  EXPECT_TRUE(b.spool().Requeue(a).ok());
  EXPECT_TRUE(b.spool().Requeue(a).IsNotFound());
  EXPECT_EQ(b.spool().Stats().count, 1u);
}

// ---------------------------------------------------------------- ledger

TEST(Ledger, ReadOnlyNeverCreatesAndReadsWhileTheWriterCommits) {
  BridgeDir b;
  std::unique_ptr<store::Ledger> ro;
  std::filesystem::create_directories(b.paths().spool_directory);
  Status s = store::Ledger::OpenReadOnly(b.paths().ledger_path, &ro);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_FALSE(std::filesystem::exists(b.paths().ledger_path));

  CaptureId a = b.Capture("a@example.com", {kJohn}, 1000);
  uint64_t seq = b.Export({a}, "HUBPO2");  // the writer stays open (WAL, -wal/-shm exist)
  ASSERT_TRUE(store::Ledger::OpenReadOnly(b.paths().ledger_path, &ro).ok());
  store::LedgerCounters c;
  ASSERT_TRUE(ro->Counters(&c).ok());
  EXPECT_EQ(c.exported, 1u);
  uint64_t found_seq = 0;
  std::string post_office, file;
  ASSERT_TRUE(ro->FindCapture(a, &found_seq, &post_office, &file).ok());
  EXPECT_EQ(found_seq, seq);
  EXPECT_EQ(post_office, "HUBPO2");
  EXPECT_EQ(file, "BATCH1.CCM");
  EXPECT_TRUE(ro->FindCapture(CaptureId::New(), &found_seq, &post_office, &file).IsNotFound());
  // The writer commits while the reader is open; the reader sees it on its next read.
  CaptureId d = b.Capture("d@example.com", {kMary}, 1000);
  b.Export({d}, "HUBPO1");
  ASSERT_TRUE(ro->Counters(&c).ok());
  EXPECT_EQ(c.exported, 2u);
  // A read-only ledger refuses to write.
  uint64_t e = 0;
  EXPECT_FALSE(ro->BumpEpoch(&e).ok());
  ro.reset();
  // With the writer closed (WAL checkpointed and removed), it still opens.
  b.CloseLedger();
  ASSERT_TRUE(store::Ledger::OpenReadOnly(b.paths().ledger_path, &ro).ok());
  ASSERT_TRUE(ro->Counters(&c).ok());
  EXPECT_EQ(c.exported, 2u);
  EXPECT_EQ(c.last_seq, 2u);
}

// ---------------------------------------------------------------- drain

TEST(Ctl, DrainExitStatuses) {
  BridgeDir b;
  CtlEnvironment env;
  env.drain_poll = std::chrono::milliseconds(20);
  env.drain_report_every = std::chrono::milliseconds(50);
  // Empty: drained at once.
  std::filesystem::create_directories(b.paths().spool_directory);
  (void)b.spool();
  RunResult r = b.Run({"drain"}, env);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "drained")) << r.out;

  // Backlog and no exporter: 2, and it says so.
  CaptureId a = b.Capture("a@example.com", {kJohn}, 1000);
  r = b.Run({"drain", "--timeout", "10s"}, env);
  EXPECT_EQ(r.rc, kExitNoExporter);
  EXPECT_TRUE(Contains(r.err, "no ccmail-exporter is running")) << r.err;

  // Exporter alive but not exporting: 1 after the timeout, with progress lines.
  UniqueFd lock;
  ASSERT_TRUE(exporter::AcquireExporterLock(b.paths().exporter_lock, &lock).ok());
  auto t0 = std::chrono::steady_clock::now();
  r = b.Run({"drain", "--timeout", "300ms"}, env);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(Contains(r.err, "timed out")) << r.err;
  EXPECT_TRUE(Contains(r.out, "drain: 1 message(s) in spool/new")) << r.out;
  EXPECT_GE(took, std::chrono::milliseconds(300));
  EXPECT_LT(took, std::chrono::seconds(5));

  // A ready slot alone also keeps it waiting.
  shm::ClaimTable& t = b.table();
  std::unique_ptr<shm::Registration> milter, exp;
  ASSERT_TRUE(t.Register(shm::Role::kMilter, &milter).ok());
  ASSERT_TRUE(t.Register(shm::Role::kExporter, &exp).ok());
  ASSERT_TRUE(t.Publish(*milter, a.bytes, 10).ok());
  ASSERT_TRUE(b.spool().Remove(a).ok());
  r = b.Run({"--json", "drain", "--timeout", "200ms"}, env);
  EXPECT_EQ(r.rc, 1);
  Json j = ParseOrFail(r.out);
  EXPECT_EQ(j.Str("result"), "timeout");
  EXPECT_EQ(j.Int("messages"), 0);
  EXPECT_EQ(j.Int("busy_slots"), 1);

  // The "exporter" finishes the work while drain waits: exit 0, progress bar on a TTY.
  CaptureId c = b.Capture("c@example.com", {kJohn}, 1000);
  std::thread worker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    std::vector<shm::Claim> claims;
    t.ClaimReady(*exp, 10, &claims);
    for (const auto& cl : claims) (void)t.Complete(*exp, cl);
    std::unique_ptr<store::Spool> sp;
    if (store::Spool::Open(b.paths().spool_root, &sp).ok()) (void)sp->Remove(c);
  });
  env.stdout_is_tty = true;
  r = b.Run({"drain", "--timeout", "20s"}, env);
  worker.join();
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "\r[")) << r.out;
  EXPECT_TRUE(Contains(r.out, "drained")) << r.out;
}

// ---------------------------------------------------------------- check-mta

TEST(Ctl, CheckMtaUsesTheConfiguredSocket) {
  BridgeDir b;
  std::string fake = b.dir() + "/postconf";
  // A listening milter address (check-mta connects to it).
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  socklen_t salen = sizeof sa;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &salen);
  ASSERT_EQ(::listen(lfd, 4), 0);
  const std::string port = std::to_string(ntohs(sa.sin_port));
  const std::string ours = "milter_socket=inet:" + port + "@127.0.0.1";
  std::ofstream(b.dir() + "/main.cf") << "# configured\n";
  // postconf -h NAME...: the values, one a line; postconf -M: master.cf. The -M must be an
  // argument of its own: `-c <dir>` names a temporary directory whose random part may hold "-M".
  auto write_postconf = [&](const std::string& lines) {
    std::ofstream(fake) << "#!/bin/sh\ncase \" $* \" in *\" -M\"*) echo 'smtp inet n - y - - smtpd' ;; *) printf '%s' '"
                        << lines << "' ;; esac\n";
    ::chmod(fake.c_str(), 0755);
  };
  CtlEnvironment env;
  env.adjust_check_mta = [&](mtaconf::CheckMtaOptions* o) {
    EXPECT_EQ(o->milter_socket, "inet:" + port + "@127.0.0.1");  // from -o, i.e. from the configuration
    o->postconf_command = fake;
    o->postfix_config_directory = b.dir();
    o->sendmail_mc = b.dir() + "/absent.mc";
    o->sendmail_cf = b.dir() + "/absent.cf";
  };
  const std::string rest = "/var/spool/postfix\npostfix\n5d\n5d\n30s\n30s\n300s\n";
  write_postconf("inet:127.0.0.1:" + port + "\ninet:127.0.0.1:" + port + "\ntempfail\n" + rest);
  RunResult r = b.Run({"-o", ours, "check-mta"}, env);
  EXPECT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_TRUE(Contains(r.out, "smtpd_milters")) << r.out;
  write_postconf("\n\ntempfail\n" + rest);
  r = b.Run({"-o", ours, "check-mta"}, env);
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(Contains(r.out, "MISSING")) << r.out;
  r = b.Run({"-o", ours, "--json", "check-mta"}, env);
  EXPECT_EQ(r.rc, 1);
  Json j = ParseOrFail(r.out);
  EXPECT_EQ(j.Bool("ok"), 0);
  EXPECT_EQ(j.Bool("postfix_present"), 1);
  EXPECT_GT(j.Size("findings"), 0u);
  ::close(lfd);
}

// ---------------------------------------------------------------- the real binary

// Runs the real binary; with uid/gid set, as that user with only `group` (the bridge
// group) as supplementary group, like an administrator in bridge_group.
// The binary as another user can run it: the build tree may sit in a directory only root can
// traverse (a checkout under a 0700 mktemp -d), so a copy goes into a 0755 temporary directory.
const std::string& CtlCopyForOtherUsers() {
  static const struct Copy {
    ::ccmail::test::TempDir dir{"ccmailctl-bin"};
    std::string path = dir.path() + "/ccmailctl";
    Copy() {
      std::error_code ec;
      std::filesystem::copy_file(CCMAILCTL_PATH, path, ec);
      ::chmod(dir.path().c_str(), 0755);
      ::chmod(path.c_str(), 0755);
    }
  } copy;
  return copy.path;
}

RunResult Exec(const std::vector<std::string>& args, uid_t uid = 0, gid_t group = 0) {
  std::string bin = uid != 0 ? CtlCopyForOtherUsers() : std::string(CCMAILCTL_PATH);
  int out_pipe[2], err_pipe[2];
  if (::pipe(out_pipe) != 0 || ::pipe(err_pipe) != 0) return {};
  pid_t pid = ::fork();
  if (pid == 0) {
    if (uid != 0) {
      gid_t groups[1] = {group};
      if (::setgroups(1, groups) != 0 || ::setresgid(group, group, group) != 0 || ::setresuid(uid, uid, uid) != 0)
        ::_exit(126);
    }
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(bin.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  RunResult r;
  // Outputs are small: read stdout to the end, then stderr (no deadlock below the pipe size).
  auto drain = [](int fd, std::string* s) {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) s->append(buf, static_cast<size_t>(n));
    ::close(fd);
  };
  drain(out_pipe[0], &r.out);
  drain(err_pipe[0], &r.err);
  int st = 0;
  ::waitpid(pid, &st, 0);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

TEST(CtlBinary, ExitStatusesAndOutput) {
  BridgeDir b;
  CaptureId a = b.Capture("alice@example.com", {kJohn}, 1000);
  RunResult r = Exec({"-c", b.config_path(), "status", "--json"});
  ASSERT_EQ(r.rc, 0) << r.err;
  Json j = ParseOrFail(r.out);
  EXPECT_EQ(j.Int("backlog.messages"), 1);
  r = Exec({"-c", b.config_path(), "show", a.ToString()});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "pending")) << r.out;
  r = Exec({"-c", b.config_path(), "show", CaptureId::New().ToString()});
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(Contains(r.err, "unknown capture id")) << r.err;
  r = Exec({"-c", b.config_path(), "drain", "--timeout", "1s"});
  EXPECT_EQ(r.rc, 2);
  r = Exec({"--help"});
  EXPECT_EQ(r.rc, 0);
  EXPECT_TRUE(Contains(r.out, "Usage")) << r.out;
  r = Exec({"-c", b.config_path(), "bogus"});
  EXPECT_EQ(r.rc, kExitUsage);
}

// An administrator who is only in the bridge group (not root, not the daemons' user):
// the claim table (0640, mapped read-only) and the ledger (group-readable, as the exporter's UMask=0007
// leaves it) are readable; the 0700 spool is not, and status says so instead of failing.
TEST(CtlBinary, WorksAsABridgeGroupMember) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch to an unprivileged user";
  const uid_t kUser = 65534;   // nobody
  const gid_t kGroup = 65534;  // stands in for bridge_group
  BridgeDir b;
  CaptureId a = b.Capture("alice@example.com", {kJohn}, 1000);
  CaptureId e = b.Capture("bob@example.com", {kMary}, 1000);
  b.Export({e}, "HUBPO1");
  b.CloseLedger();  // exporter stopped: no -wal/-shm, and the member may not create them
  shm::ClaimTable& t = b.table();
  (void)t;
  auto share = [&](const std::string& path, mode_t mode) {
    ASSERT_EQ(::chown(path.c_str(), 0, kGroup), 0) << path;
    ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
  };
  share(b.dir(), 0750);
  share(b.config_path(), 0640);
  share(b.dir() + "/b", 0750);
  share(b.paths().spool_directory, 0750);
  share(b.paths().ledger_path, 0640);
  // As installed (docs/ARCHITECTURE.md "Who may touch what"): the runtime directory 0750
  // and the table 0640 to the group, the lock files the bridge user's alone (0600).
  share(b.paths().runtime_directory, 0750);
  share(shm::ClaimTable::TablePath(b.TableOptions()), 0640);
  const std::string& rt = b.paths().runtime_directory;
  for (const std::string& path : {rt + "/live.lock", rt + "/" + b.TableOptions().name + ".init.lock"}) {
    struct stat st;
    ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << path;
  }
  ASSERT_EQ(::chmod(b.paths().spool_root.c_str(), 0700), 0);

  RunResult r = Exec({"-c", b.config_path(), "--json", "status"}, kUser, kGroup);
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  Json j = ParseOrFail(r.out);
  EXPECT_EQ(j.Str("ledger.state"), "ok") << j.Str("ledger.error");
  EXPECT_EQ(j.Int("ledger.exported"), 1);
  EXPECT_EQ(j.Str("table.state"), "ok") << j.Str("table.error");
  EXPECT_EQ(j.Int("table.slots"), 16);
  EXPECT_EQ(j.Str("backlog.state"), "error");
  EXPECT_TRUE(Contains(j.Str("backlog.error"), "Permission denied")) << j.Str("backlog.error");
  EXPECT_FALSE(std::filesystem::exists(b.paths().ledger_path + "-shm")) << "a reader created the ledger's -shm";
  r = Exec({"-c", b.config_path(), "show", a.ToString()}, kUser, kGroup);
  EXPECT_EQ(r.rc, 1) << "the spool is unreadable, so show must not guess: " << r.out;
  EXPECT_TRUE(Contains(r.err, "Permission denied")) << r.err;
  r = Exec({"-c", b.config_path(), "show", e.ToString()}, kUser, kGroup);
  EXPECT_EQ(r.rc, 0) << "the ledger alone knows an exported capture: " << r.err;
  EXPECT_TRUE(Contains(r.out, "exported")) << r.out;
  r = Exec({"-c", b.config_path(), "metrics"}, kUser, kGroup);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "ccmail_exported_total 1")) << r.out;

  // With a group-readable spool, everything but requeue works too.
  share(b.paths().spool_root, 0750);
  share(b.paths().spool_root + "/new", 0750);
  share(b.paths().spool_root + "/corrupt", 0750);
  share(b.paths().spool_root + "/tmp", 0750);
  share(b.NewPath(a), 0640);
  r = Exec({"-c", b.config_path(), "show", a.ToString()}, kUser, kGroup);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "alice@example.com")) << r.out;
  r = Exec({"-c", b.config_path(), "show", e.ToString()}, kUser, kGroup);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "exported")) << r.out;
  r = Exec({"-c", b.config_path(), "--json", "list"}, kUser, kGroup);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(ParseOrFail(r.out).Str("0.sender"), "alice@example.com");
}

}  // namespace
}  // namespace ccmail::ctl::test
