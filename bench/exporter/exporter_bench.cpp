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
// CCMAIL_BENCH_LEDGER=<postgresql location> (+ CCMAIL_BENCH_LEDGER_PASSWORD_FILE) drains into
// that PostgreSQL ledger instead of the SQLite file, under a relay id of its own per batch size
// and run ("bench-<pid>-<batch>"); the content keys are fresh on every run, so rows of earlier
// runs never turn a delivery into a duplicate. bench/exporter/ledger_ab.sh runs both backends.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
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

bool MakeBacklog(const BridgePaths& p, size_t n, uint64_t nonce) {
  NoSyncIo io;
  std::unique_ptr<store::Spool> spool;
  if (!store::Spool::Open(p.spool_root, &spool, &io, "bench").ok()) return false;
  std::string body;
  while (body.size() < 10 * 1024) body += "The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
  for (size_t i = 0; i < n; ++i) {
    std::string msg = "From: Sender <s@example.org>\r\nTo: jane@corp.example, bert@branch.example\r\n"
                      "Subject: bench " + std::to_string(i) + "\r\nMessage-ID: <" + std::to_string(i) +
                      "@example.org>\r\n\r\n" + body;
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

}  // namespace

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : "/var/tmp/ccmail-exporter-bench";
  size_t messages = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 100000;
  LogInit("exporter_bench", LogTarget::kStderr, LogLevel::kWarning);
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
    // The daemon's default (ExporterOptions::FromConfig): one conversion thread per CPU, at most
    // 4; CCMAIL_BENCH_CONVERT_THREADS=N overrides it for comparisons.
    o.convert_threads = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 4);
    if (const char* t = std::getenv("CCMAIL_BENCH_CONVERT_THREADS"); t && *t) o.convert_threads = std::strtoul(t, nullptr, 10);
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
