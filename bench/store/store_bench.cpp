// store_bench - durable spool files/s beside the raw create+write+fsync+rename+dirfsync
// loop (baseline, same run, same disk), for 1..64 threads; ledger commits/s vs batch size.
//
//   store_bench [dir] [seconds-per-point]
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "ccmail/store/content_key.h"
#include "ccmail/store/ledger.h"
#include "ccmail/store/spool.h"
#include "run_threads.h"

using namespace ccmail::store;
using Clock = std::chrono::steady_clock;
using ccmail::bench::RunThreads;

static const std::string kBody(16 * 1024, 'x');  // 16 KiB message, a typical mail size

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : "/var/tmp/ccmail-store-bench";
  double secs = argc > 2 ? std::atof(argv[2]) : 2.0;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/raw/tmp");
  std::filesystem::create_directories(dir + "/raw/new");
  std::unique_ptr<Spool> sp;
  if (auto s = Spool::Open(dir + "/spool", &sp); !s.ok()) {
    fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  printf("# 16 KiB messages, %.1f s per point, dir %s\n", secs, dir.c_str());
  printf("%-8s %12s %12s %8s\n", "threads", "raw/s", "spool/s", "ratio");
  for (int threads : {1, 2, 4, 8, 16, 64}) {
    double raw = RunThreads(threads, secs, [&](int t, uint64_t i) {
      std::string name = std::to_string(t) + "-" + std::to_string(i);
      std::string tmp = dir + "/raw/tmp/" + name, fin = dir + "/raw/new/" + name;
      int fd = open(tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
      if (write(fd, kBody.data(), kBody.size()) < 0) abort();
      fsync(fd);
      close(fd);
      rename(tmp.c_str(), fin.c_str());
      int d = open((dir + "/raw/new").c_str(), O_RDONLY | O_DIRECTORY);
      fsync(d);
      close(d);
      unlink(fin.c_str());
    }).per_second();
    double spool = RunThreads(threads, secs, [&](int, uint64_t) {
      std::unique_ptr<SpoolWriter> w;
      if (!sp->Begin(&w).ok()) abort();
      if (!w->Append(kBody.data(), kBody.size()).ok()) abort();
      SpoolMeta m;
      m.envelope_sender = "a@b";
      m.recipients = {{"c@d", "C", "PO"}};
      CaptureId id = w->id();
      if (!w->Commit(std::move(m)).ok()) abort();
      (void)sp->Remove(id, false);  // keep the directory small, like the raw loop
    }).per_second();
    printf("%-8d %12.0f %12.0f %8.2f\n", threads, raw, spool, spool / raw);
    fflush(stdout);
  }
  printf("\n%-8s %14s %16s\n", "batch", "commits/s", "deliveries/s");
  for (int batch : {1, 16, 256}) {
    std::filesystem::remove(dir + "/ledger.db");
    std::unique_ptr<Ledger> l;
    if (!Ledger::Open(dir + "/ledger.db", &l).ok() || !l->BumpEpoch(nullptr).ok()) return 1;
    uint64_t n = 0;
    auto t0 = Clock::now();
    while (std::chrono::duration<double>(Clock::now() - t0).count() < secs) {
      LedgerBatch b;
      b.post_office = "PO";
      b.file_name = "f";
      for (int m = 0; m < batch; ++m) {
        CaptureId id = CaptureId::New();
        b.capture_ids.push_back(id);
        ContentKey k = ContentKeyOfMessage("s", id.ToString());
        b.deliveries.push_back({id, k, "r", DeliveryKind::kExported});
      }
      std::vector<LedgerBatch> one_batch{std::move(b)};
      if (!l->CommitBatches(&one_batch).ok()) return 1;
      ++n;
    }
    double el = std::chrono::duration<double>(Clock::now() - t0).count();
    printf("%-8d %14.0f %16.0f\n", batch, n / el, n * batch / el);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
