// Kill test of the real ccmail-exporter binary (fork/exec): SIGKILL at every named crash
// point (CCMAIL_CRASH_AT, passes 1 and 2) and at random instants while a producer captures
// like the milter does; afterwards EVERY batch and manifest is parsed and each (capture,
// recipient) must be in the outbox exactly once, nothing missing, quiescent, ledger intact.
// Also: a second exporter beside the first exits 0 and changes nothing.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>
#include <thread>

#include "exporter_test_util.h"

#ifndef CCMAIL_EXPORTER_BIN
#error "CCMAIL_EXPORTER_BIN must name the ccmail-exporter binary"
#endif

#if defined(__SANITIZE_ADDRESS__)
#define CCMAIL_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CCMAIL_UNDER_ASAN 1
#endif
#endif

namespace ccmail::exporter {
namespace {

using namespace ccmail::exporter::testing;

bool Sanitized() {
#ifdef CCMAIL_UNDER_ASAN
  return true;
#else
  const char* e = std::getenv("CCMAIL_SANITIZE");
  return e && *e && std::string(e) != "0" && std::string(e) != "OFF";
#endif
}

// Everything is prepared before fork(): the producer thread keeps allocating meanwhile, so
// the child only calls async-signal-safe functions (dup2, execve).
pid_t Spawn(const std::string& conf, const std::vector<std::string>& extra, const std::string& crash_at,
            const std::string& log) {
  std::vector<std::string> args = {CCMAIL_EXPORTER_BIN, "-c", conf, "--stderr"};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string v = *e;
    if (v.rfind("CCMAIL_CRASH_AT=", 0) == 0 || v.rfind("CCMAIL_FAIL_AT=", 0) == 0 || v.rfind("NOTIFY_SOCKET=", 0) == 0)
      continue;
    env.push_back(v);
  }
  if (!crash_at.empty()) env.push_back("CCMAIL_CRASH_AT=" + crash_at);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (fd >= 0) {
      ::dup2(fd, 2);
      ::dup2(fd, 1);
    }
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  if (fd >= 0) ::close(fd);
  return pid;
}

int WaitFor(pid_t pid, int timeout_s = 120) {
  int st = 0;
  for (int i = 0; i < timeout_s * 100; ++i) {
    pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid) return st;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &st, 0);
  ADD_FAILURE() << "exporter " << pid << " did not finish in " << timeout_s << "s";
  return st;
}

const std::vector<Rcpt> kPeople = {
    {"jane@corp.example", "Doe, Jane", "HQ"},       {"rick@corp.example", "Roe, Rick", "HQ"},
    {"bert@branch.example", "Bo, Bert", "BRANCH"},  {"ann@branch.example", "Lee, Ann", "BRANCH"},
    {"zed@lab.example", "Zed, Zora", "LAB"},
};

// What the producer captured: content key -> recipients (keys repeat: SMTP retries).
struct Produced {
  std::mutex mu;
  std::map<std::string, std::set<std::string>> expected;  // content key hex -> "PO:name"
  std::map<std::string, std::string> key_of_capture;      // capture id -> content key hex
  std::set<std::string> unroutable;                       // capture ids expected in corrupt/
  uint64_t n = 0;
};

void ProduceOne(Bed* bed, Produced* p, std::mt19937_64* rng, bool unroutable = false) {
  uint64_t i;
  {
    std::lock_guard<std::mutex> g(p->mu);
    i = p->n++;
  }
  if (unroutable || i % 97 == 13) {  // unroutable: quarantined, never exported, never retried
    store::CaptureId id = bed->Capture(1000000 + i, {{"ghost@corp.example", "", ""}});
    std::lock_guard<std::mutex> g(p->mu);
    p->unroutable.insert(id.ToString());
    return;
  }
  // Every 7th message is an SMTP retry of an earlier key, sometimes with one more recipient.
  uint64_t key = (i % 7 == 6 && i > 10) ? i - 1 - ((*rng)() % 10) : i;
  std::vector<Rcpt> rc;
  size_t first = static_cast<size_t>(key % kPeople.size());
  size_t count = 1 + static_cast<size_t>(key % 3) + ((i % 7 == 6) ? 1 : 0);
  for (size_t k = 0; k < count && k < kPeople.size(); ++k) rc.push_back(kPeople[(first + k) % kPeople.size()]);
  store::CaptureId id = bed->Capture(key, rc, /*publish=*/true, "s" + std::to_string(key) + "@example.org");
  std::lock_guard<std::mutex> g(p->mu);
  std::string hex = Bed::Key(key).ToString();
  for (const auto& r : rc) p->expected[hex].insert(r.post_office + ":" + r.name);
  p->key_of_capture[id.ToString()] = hex;
}

void CheckExactlyOnce(Bed* bed, Produced* p) {
  auto seen = ReadOutbox(bed->paths.outbox_directory);
  std::map<std::pair<std::string, std::string>, int> count;
  for (const auto& s : seen) {
    ++count[{s.content_key, s.post_office + ":" + s.recipient}];
    auto it = p->key_of_capture.find(s.capture_id);
    ASSERT_NE(it, p->key_of_capture.end()) << "phantom capture " << s.capture_id;
    EXPECT_EQ(it->second, s.content_key) << "capture " << s.capture_id << " exported under another key";
  }
  size_t expected_total = 0, missing = 0, dups = 0;
  for (const auto& [key, rcpts] : p->expected)
    for (const auto& r : rcpts) {
      ++expected_total;
      auto it = count.find({key, r});
      if (it == count.end())
        ++missing;
      else if (it->second != 1)
        ++dups;
    }
  EXPECT_EQ(missing, 0u) << "deliveries lost";
  EXPECT_EQ(dups, 0u) << "deliveries exported more than once";
  EXPECT_EQ(seen.size(), expected_total) << "unexpected deliveries in the outbox";
  for (const auto& id : p->unroutable)
    EXPECT_TRUE(fs::exists(bed->paths.quarantine_dir + "/" + id)) << "unroutable " << id << " not quarantined";
  ExpectQuiescent(bed->paths);
  std::unique_ptr<store::Ledger> l;
  ASSERT_TRUE(store::Ledger::Open(bed->paths.ledger_path, &l).ok());
  store::LedgerCounters lc;
  ASSERT_TRUE(l->Counters(&lc).ok());
  EXPECT_EQ(lc.exported, expected_total);
  std::printf("checked: %zu deliveries of %zu content keys exactly once, %zu quarantined, ledger epoch %llu\n",
              expected_total, p->expected.size(), p->unroutable.size(), static_cast<unsigned long long>(lc.epoch));
}

TEST(ExporterKillTest, SigkillAtEveryCrashPointAndAtRandomInstants) {
  Bed bed(32);  // a small table: overflow, so the spool scan path is exercised too
  const std::string conf = bed.WriteConfig("batch_max_messages = 64\nbatch_max_delay = 5ms\nspool_scan_interval = 300ms\n");
  const std::string log = bed.dir + "/exporter.log";
  Produced prod;
  std::mt19937_64 rng(12345);
  bed.OpenProducer();

  // 1. Every named crash point, passes 1 and 2.
  size_t fired = 0;
  std::vector<std::string> not_reached;
  for (const std::string& point : ExporterCrashPoints()) {
    for (int pass : {1, 2}) {
      for (int k = 0; k < 12; ++k) ProduceOne(&bed, &prod, &rng, /*unroutable=*/k == 5);
      // Recovery points are only passed when a crash left work behind: make it so.
      if (point.rfind("recovery.", 0) == 0 && point != "recovery.epoch")
        (void)WaitFor(Spawn(conf, {"--drain"}, "ledger.commit.after:1", log));
      int st = WaitFor(Spawn(conf, {"--drain"}, point + ":" + std::to_string(pass), log));
      if (WIFSIGNALED(st)) {
        ASSERT_EQ(WTERMSIG(st), SIGKILL) << point << ":" << pass;
        ++fired;
      } else {
        ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << point << ":" << pass << " status " << st << "\n"
                                                           << Slurp(log);
        if (pass == 1) not_reached.push_back(point);
      }
    }
  }
  std::string nr;
  for (const auto& p : not_reached) nr += p + " ";
  std::printf("crash points: %zu kills; never reached: %s\n", fired, nr.c_str());
  EXPECT_TRUE(not_reached.empty()) << "crash points never reached: " << nr;

  // 2. Random SIGKILLs of the running daemon while the producer captures.
  const uint64_t load = Sanitized() ? 2000 : 20000;
  std::atomic<bool> produced{false};
  std::thread producer([&] {
    std::mt19937_64 r2(777);
    for (uint64_t i = 0; i < load; ++i) ProduceOne(&bed, &prod, &r2);
    produced = true;
  });
  std::uniform_int_distribution<int> delay_ms(20, 400);
  int kills = 0;
  while (!produced || kills < 10) {
    pid_t pid = Spawn(conf, {}, "", log);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    ::kill(pid, SIGKILL);
    int st = 0;
    ::waitpid(pid, &st, 0);
    ++kills;
  }
  producer.join();
  // 3. A clean drain, then the invariants.
  int st = WaitFor(Spawn(conf, {"--drain"}, "", log), 300);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
  std::printf("random phase: %llu captures, %d kills\n", static_cast<unsigned long long>(load), kills);
  CheckExactlyOnce(&bed, &prod);
  if (::testing::Test::HasFailure()) std::printf("%s\n", Slurp(log).substr(0, 20000).c_str());
}

TEST(ExporterKillTest, SecondExporterExitsZeroAndTouchesNothing) {
  Bed bed;
  const std::string conf = bed.WriteConfig();
  const std::string log = bed.dir + "/exporter.log";
  pid_t first = Spawn(conf, {}, "", log);
  // Wait until the first one has recovered (its start line is logged).
  for (int i = 0; i < 500 && Slurp(log).find("exporter started") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_NE(Slurp(log).find("exporter started"), std::string::npos) << Slurp(log);
  std::unique_ptr<store::Ledger> l;
  store::LedgerCounters before, after;
  {
    ASSERT_TRUE(store::Ledger::Open(bed.paths.ledger_path, &l).ok());
    ASSERT_TRUE(l->Counters(&before).ok());
    l.reset();
  }
  const std::string log2 = bed.dir + "/second.log";
  int st = WaitFor(Spawn(conf, {}, "", log2), 30);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
  EXPECT_NE(Slurp(log2).find("another exporter is running (lock held)"), std::string::npos) << Slurp(log2);
  ASSERT_TRUE(store::Ledger::Open(bed.paths.ledger_path, &l).ok());
  ASSERT_TRUE(l->Counters(&after).ok());
  EXPECT_EQ(before.epoch, after.epoch);
  // The first one still works: SIGTERM stops it cleanly.
  bed.Capture(1, {kPeople[0]});
  for (int i = 0; i < 500 && ReadOutbox(bed.paths.outbox_directory).empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(ReadOutbox(bed.paths.outbox_directory).size(), 1u);
  ::kill(first, SIGTERM);
  st = WaitFor(first, 30);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st << Slurp(log);
  EXPECT_NE(Slurp(log).find("stopped:"), std::string::npos);
}

}  // namespace
}  // namespace ccmail::exporter
