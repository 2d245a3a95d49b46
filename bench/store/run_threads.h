// run_threads.h - the store benchmarks' load loop: `threads` threads call one(thread, i) until
// `secs` have passed; returns how many calls were made and in how long. Shared by store_bench and
// durable_write_bench so that both measure the same way.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace ccmail::bench {

struct ThreadRun {
  uint64_t calls = 0;
  double seconds = 0;
  double per_second() const { return static_cast<double>(calls) / seconds; }
};

inline ThreadRun RunThreads(int threads, double secs, const std::function<void(int, uint64_t)>& one) {
  std::atomic<uint64_t> done{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  const auto t0 = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        one(t, i);
        done.fetch_add(1, std::memory_order_relaxed);
      }
    });
  std::this_thread::sleep_for(std::chrono::duration<double>(secs));
  stop = true;
  for (auto& th : ts) th.join();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {done.load(), elapsed};
}

}  // namespace ccmail::bench
