// exporter_bench - how fast the exporter drains a spool backlog (10 KB messages, two post
// offices, no claim-table slots: the spool-scan path after an outage), for batch sizes
// 1, 16 and 256, beside the disk's group-commit bound (fsync rate x batch) measured in the
// same run on the same directory.
//
//   exporter_bench [dir] [messages] [batch sizes, e.g. 1,16,256]
//   (default /var/tmp/ccmail-exporter-bench 100000 1,16,256)
//
// Batch size 1 does ~10 fsyncs per message; its backlog is capped at 2,000 messages (and
// batch 16 at 20,000) so a run stays within minutes. The printed table says which count ran.
//
// CCMAIL_BENCH_CONVERT_ONLY=1 converts the same backlog's messages from memory instead, on the
// exporter's number of conversion threads, and nothing else (no spool, ledger or batch file):
// the drain rate this machine could reach if conversion were the only cost.
//
// CCMAIL_BENCH_LEDGER=<postgresql location> (+ CCMAIL_BENCH_LEDGER_PASSWORD_FILE) drains into
// that PostgreSQL ledger instead of the SQLite file, under a relay id of its own per batch size
// and run ("bench-<pid>-<batch>"); the content keys are fresh on every run, so rows of earlier
// runs never turn a delivery into a duplicate. bench/exporter/ledger_ab.sh runs both backends.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "ccmail/common/log.h"
#include "ccmail/config/paths.h"
#include "ccmail/exporter/exporter.h"
#include "ccmail/format/converter.h"
#include "ccmail/shm/claim_table.h"
#include "ccmail/store/io.h"
#include "ccmail/store/spool.h"

using namespace ccmail;
using Clock = std::chrono::steady_clock;

namespace {

// The backlog is written without fsync: only the exporter's cost is measured.
class NoSyncIo : public store::DurableIoWrapper {
 public:
  Status Fsync(int, const std::string&, const char*) override { return Status::Ok(); }
  Status FsyncDir(const std::string&, const char*) override { return Status::Ok(); }
};

double CpuSeconds() {
  struct rusage ru;
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

double FsyncRate(const std::string& dir) {
  std::string path = dir + "/fsync-probe";
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) return 0;
  std::string block(4096, 'x');
  int n = 0;
  auto t0 = Clock::now();
  while (Clock::now() - t0 < std::chrono::seconds(2)) {
    if (::write(fd, block.data(), block.size()) < 0 || ::fsync(fd) != 0) break;
    ++n;
  }
  double el = std::chrono::duration<double>(Clock::now() - t0).count();
  ::close(fd);
  ::unlink(path.c_str());
  return n / el;
}

const std::string& BenchBody() {
  static const std::string body = [] {
    std::string b;
    while (b.size() < 10 * 1024) b += "The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    return b;
  }();
  return body;
}

// Message i of the backlog: 10 KB of plain text; odd ones also go to a second post office.
std::string BenchMessage(size_t i) {
  return "From: Sender <s@example.org>\r\nTo: jane@corp.example, bert@branch.example\r\n"
         "Subject: bench " + std::to_string(i) + "\r\nMessage-ID: <" + std::to_string(i) +
         "@example.org>\r\n\r\n" + BenchBody();
}

bool MakeBacklog(const BridgePaths& p, size_t n, uint64_t nonce) {
  NoSyncIo io;
  std::unique_ptr<store::Spool> spool;
  if (!store::Spool::Open(p.spool_root, &spool, &io, "bench").ok()) return false;
  for (size_t i = 0; i < n; ++i) {
    std::string msg = BenchMessage(i);
    std::unique_ptr<store::SpoolWriter> w;
    if (!spool->Begin(&w).ok() || !w->Append(msg.data(), msg.size()).ok()) return false;
    store::SpoolMeta m;
    for (int b = 0; b < 8; ++b) {
      m.content_key.bytes[static_cast<size_t>(b)] = static_cast<uint8_t>(i >> (8 * b));
      m.content_key.bytes[static_cast<size_t>(8 + b)] = static_cast<uint8_t>(nonce >> (8 * b));
    }
    m.envelope_sender = "s@example.org";
    m.received_ms = 1700000000000;
    // Half the messages go to two post offices (two batch files, one commit).
    m.recipients.push_back({"jane@corp.example", "Doe, Jane", "HQ"});
    if (i % 2) m.recipients.push_back({"bert@branch.example", "Bo, Bert", "BRANCH"});
    if (!w->Commit(m).ok()) return false;
  }
  return true;
}

// The conversion alone (ConvertItem's call, one parse for both post offices), the messages
// built in memory beforehand, on `threads` threads. Prints the same columns as a drain.
int ConvertOnly(size_t n, size_t threads) {
  std::vector<std::string> msgs;
  msgs.reserve(n);
  for (size_t i = 0; i < n; ++i) msgs.push_back(BenchMessage(i));
  const format::Converter cv(exporter::ExporterOptions{}.format);
  std::atomic<size_t> next{0}, failed{0};
  auto worker = [&] {
    for (size_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
      format::ConvertInput in;
      in.data = msgs[i].data();
      in.length = msgs[i].size();
      in.envelope_sender = "s@example.org";
      in.received = 1700000000;
      in.log_id = std::to_string(i);
      std::vector<format::StringSink> sinks(i % 2 ? 2 : 1);
      std::vector<format::ConvertTarget> targets(sinks.size());
      targets[0].recipients.push_back({"jane@corp.example", {"Doe, Jane", "HQ"}});
      targets[0].out = &sinks[0];
      if (i % 2) {
        targets[1].recipients.push_back({"bert@branch.example", {"Bo, Bert", "BRANCH"}});
        targets[1].out = &sinks[1];
      }
      if (!cv.ConvertForEach(in, targets).ok()) ++failed;
    }
  };
  auto t0 = Clock::now();
  double cpu0 = CpuSeconds();
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  double el = std::chrono::duration<double>(Clock::now() - t0).count();
  double cpu = CpuSeconds() - cpu0;
  if (failed) {
    fprintf(stderr, "%zu conversions failed\n", failed.load());
    return 1;
  }
  printf("# conversion only, %zu threads, messages from memory\n", threads);
  printf("%-6s %9s %10s %10s %12s %16s\n", "batch", "messages", "seconds", "cpu s", "converted/s", "cpu us/message");
  printf("%-6s %9zu %10.2f %10.2f %12.0f %16.1f\n", "-", n, el, cpu, static_cast<double>(n) / el, cpu * 1e6 / static_cast<double>(n));
  return 0;
}

size_t ConvertThreads() {
  // The daemon's default (ExporterOptions::FromConfig): one conversion thread per CPU, at most
  // 4; CCMAIL_BENCH_CONVERT_THREADS=N overrides it for comparisons.
  if (const char* t = std::getenv("CCMAIL_BENCH_CONVERT_THREADS"); t && *t) return std::strtoul(t, nullptr, 10);
  return std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 4);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : "/var/tmp/ccmail-exporter-bench";
  size_t messages = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 100000;
  LogInit("exporter_bench", LogTarget::kStderr, LogLevel::kWarning);
  if (const char* only = std::getenv("CCMAIL_BENCH_CONVERT_ONLY"); only && *only == '1')
    return ConvertOnly(messages, ConvertThreads());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  double fsyncs = FsyncRate(dir);
  printf("# 10 KB messages (half to 2 post offices), backlog in spool/new, dir %s\n", dir.c_str());
  printf("# conversion threads: %s (daemon default: CPU count, at most 4)\n",
         std::getenv("CCMAIL_BENCH_CONVERT_THREADS") ? std::getenv("CCMAIL_BENCH_CONVERT_THREADS") : "default");
  printf("# disk: %.0f fsync/s (4 KiB write + fsync, same directory, same run)\n", fsyncs);
  printf("# ledger: %s\n", std::getenv("CCMAIL_BENCH_LEDGER") && *std::getenv("CCMAIL_BENCH_LEDGER") ? "postgresql" : "sqlite");
  printf("%-6s %9s %10s %10s %12s %16s %8s\n", "batch", "messages", "seconds", "cpu s", "drained/s", "fsync/s x batch", "ratio");
  std::vector<size_t> sizes;
  for (const char* q = argc > 3 ? argv[3] : "1,16,256"; *q;) {
    char* end = nullptr;
    sizes.push_back(std::strtoul(q, &end, 10));
    q = *end ? end + 1 : end;
  }
  for (size_t batch : sizes) {
    size_t n = messages;
    if (batch == 1) n = std::min<size_t>(n, 2000);
    if (batch == 16) n = std::min<size_t>(n, 20000);
    std::string run = dir + "/b" + std::to_string(batch);
    BridgePaths p = BridgePaths::UnderDirectory(run);
    std::filesystem::create_directories(p.spool_directory);
    const uint64_t nonce = static_cast<uint64_t>(Clock::now().time_since_epoch().count()) ^ (static_cast<uint64_t>(::getpid()) << 40);
    if (!MakeBacklog(p, n, nonce)) {
      fprintf(stderr, "cannot create the backlog in %s\n", run.c_str());
      return 1;
    }
    ::sync();
    // CCMAIL_BENCH_STOP=1: stop (SIGSTOP) once the backlog exists, so a profiler can attach
    // to the drain alone (`perf record -p <pid>`, then `kill -CONT <pid>`).
    if (const char* stop = std::getenv("CCMAIL_BENCH_STOP"); stop && *stop == '1') {
      fprintf(stderr, "backlog of %zu ready, pid %d stopped\n", n, static_cast<int>(::getpid()));
      ::raise(SIGSTOP);
    }
    exporter::ExporterOptions o;
    o.paths = p;
    if (const char* pg = std::getenv("CCMAIL_BENCH_LEDGER"); pg && *pg) {
      o.ledger.location = pg;
      if (const char* pw = std::getenv("CCMAIL_BENCH_LEDGER_PASSWORD_FILE")) o.ledger.password_file = pw;
      o.ledger.relay_id = "bench-" + std::to_string(::getpid()) + "-" + std::to_string(batch);
    }
    o.table.name = "ccmail-exporter-bench-" + std::to_string(::getpid());
    o.table.runtime_directory = p.runtime_directory;
    o.table.slots = 1024;
    o.table.registry = 8;
    o.table.recreate_if_invalid = true;
    o.batch_max_messages = batch;
    o.convert_threads = ConvertThreads();
    auto t0 = Clock::now();
    double cpu0 = CpuSeconds();
    std::unique_ptr<exporter::Exporter> ex;
    Status s = exporter::Exporter::Open(o, &ex);
    if (s.ok()) s = ex->Recover();
    if (s.ok()) s = ex->Drain();
    double el = std::chrono::duration<double>(Clock::now() - t0).count();
    double cpu = CpuSeconds() - cpu0;
    if (!s.ok()) {
      fprintf(stderr, "batch %zu: %s\n", batch, s.ToString().c_str());
      return 1;
    }
    auto c = ex->counters();
    ex.reset();
    (void)shm::ClaimTable::Remove(o.table);
    double rate = static_cast<double>(c.captures) / el;
    double bound = fsyncs * static_cast<double>(batch);
    printf("%-6zu %9zu %10.2f %10.2f %12.0f %16.0f %8.3f\n", batch, n, el, cpu, rate, bound, rate / bound);
    fflush(stdout);
    std::filesystem::remove_all(run);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
