// Claim table throughput: the full FREE->RESERVED->READY->CLAIMED->FREE cycle
// on one core and with 1, 2, 8 producer processes feeding one claiming
// thread; baseline: a bare CAS increment loop on a word in the same kind of
// POSIX shared memory, measured in the same run.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "ccmail/shm/claim_table.h"

namespace {

using namespace ccmail::shm;

struct BenchTable {
  TableOptions opt;
  std::unique_ptr<ClaimTable> t;
  explicit BenchTable(uint32_t slots) {
    static int n = 0;
    char tmpl[] = "/tmp/ccmail-shm-bench-XXXXXX";
    opt.runtime_directory = ::mkdtemp(tmpl);
    opt.name = "ccmail-bench-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
    opt.slots = slots;
    opt.registry = 64;
    opt.boot_id = "11111111-2222-3333-4444-555555555555";
    if (!ClaimTable::Open(opt, &t).ok()) std::abort();
  }
  ~BenchTable() {
    t.reset();
    (void)ClaimTable::Remove(opt);
    std::filesystem::remove_all(opt.runtime_directory);
  }
};

CaptureBytes Id(uint64_t n) {
  CaptureBytes id{};
  std::memcpy(id.data(), &n, 8);
  return id;
}

// One thread does the whole cycle: Publish (T1+payload+T2), ClaimReady (T3),
// Complete (T4). This is "claim+complete on one core".
void BM_CycleOneCore(benchmark::State& state) {
  BenchTable bt(65536);
  std::unique_ptr<Registration> p, e;
  if (!bt.t->Register(Role::kMilter, &p).ok() || !bt.t->Register(Role::kExporter, &e).ok()) std::abort();
  const size_t batch = static_cast<size_t>(state.range(0));
  std::vector<Claim> c;
  c.reserve(batch);
  uint64_t n = 0;
  for (auto _ : state) {
    for (size_t k = 0; k < batch; ++k) (void)bt.t->Publish(*p, Id(n++), 100);
    c.clear();
    bt.t->ClaimReady(*e, batch, &c);
    for (auto& cl : c) (void)bt.t->Complete(*e, cl);
    benchmark::DoNotOptimize(c.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch));
}
BENCHMARK(BM_CycleOneCore)->Arg(1)->Arg(64);

// N producer processes publish as fast as they can; the benchmark thread is
// the exporter: claims up to 256 and completes them. Items = claim+complete.
void BM_CycleProducerProcesses(benchmark::State& state) {
  BenchTable bt(65536);
  const int nprod = static_cast<int>(state.range(0));
  auto* stop = static_cast<std::atomic<int>*>(
      ::mmap(nullptr, 64, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  stop->store(0);
  std::vector<pid_t> kids;
  for (int i = 0; i < nprod; ++i) {
    pid_t pid = ::fork();
    if (pid == 0) {
      std::unique_ptr<ClaimTable> t;
      if (!ClaimTable::Open(bt.opt, &t).ok()) ::_exit(2);
      std::unique_ptr<Registration> r;
      if (!t->Register(Role::kMilter, &r).ok()) ::_exit(3);
      uint64_t n = static_cast<uint64_t>(i) << 48;
      while (stop->load(std::memory_order_relaxed) == 0) (void)t->Publish(*r, Id(n++), 100);
      ::_exit(0);
    }
    kids.push_back(pid);
  }
  std::unique_ptr<Registration> e;
  if (!bt.t->Register(Role::kExporter, &e).ok()) std::abort();
  std::vector<Claim> c;
  c.reserve(256);
  int64_t items = 0;
  for (auto _ : state) {
    c.clear();
    bt.t->ClaimReady(*e, 256, &c);
    for (auto& cl : c) (void)bt.t->Complete(*e, cl);
    items += static_cast<int64_t>(c.size());
  }
  stop->store(1);
  for (pid_t k : kids) ::waitpid(k, nullptr, 0);
  ::munmap(stop, 64);
  state.SetItemsProcessed(items);
}
BENCHMARK(BM_CycleProducerProcesses)->Arg(1)->Arg(2)->Arg(8)->UseRealTime();

// Baseline: CAS increment of one 64-bit word in a POSIX shm segment.
void BM_BaselineCasIncrement(benchmark::State& state) {
  namespace bip = boost::interprocess;
  std::string name = "/ccmail-bench-cas-" + std::to_string(::getpid());
  bip::shared_memory_object shm(bip::create_only, name.c_str(), bip::read_write);
  shm.truncate(4096);
  bip::mapped_region region(shm, bip::read_write);
  auto* w = new (region.get_address()) std::atomic<uint64_t>(0);
  for (auto _ : state) {
    uint64_t v = w->load(std::memory_order_relaxed);
    while (!w->compare_exchange_weak(v, v + 1, std::memory_order_acq_rel, std::memory_order_relaxed)) {
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  bip::shared_memory_object::remove(name.c_str());
}
BENCHMARK(BM_BaselineCasIncrement);

}  // namespace

BENCHMARK_MAIN();
