// shm_test_util.h - helpers shared by the claim-table tests: a unique table
// per test (segment name and runtime directory carry the pid), fork helpers
// and memory shared with children.
#pragma once

#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>

#include "ccmail/shm/claim_table.h"
#include "ccmail/testing/temp_dir.h"

namespace ccmail::shm::testing {

inline const char* kBootA = "11111111-2222-3333-4444-555555555555";
inline const char* kBootB = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

// A runtime directory + table name unique to this process and call; the
// destructor removes the segment and the directory.
struct TestTable {
  ::ccmail::test::TempDir dir{"ccmail-shm-test"};
  TableOptions opt;
  explicit TestTable(uint32_t slots = 64, uint32_t registry = 16) {
    static int counter = 0;
    opt.runtime_directory = dir.path();
    opt.name = "ccmail-test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
    opt.slots = slots;
    opt.registry = registry;
    opt.boot_id = kBootA;
  }
  ~TestTable() {
    (void)ClaimTable::Remove(opt);
  }
};

// Runs fn in a child process; the child exits with fn's return value.
inline pid_t ForkRun(const std::function<int()>& fn) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int rc = 99;
    try {
      rc = fn();
    } catch (...) {
      rc = 98;
    }
    ::_exit(rc);
  }
  return pid;
}

inline int WaitExit(pid_t pid) {
  int st = 0;
  if (::waitpid(pid, &st, 0) != pid) return -1;
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 1000 + WTERMSIG(st);
  return -2;
}

// Memory shared with forked children (MAP_SHARED|MAP_ANONYMOUS), zeroed.
template <typename T>
T* SharedArray(size_t n) {
  void* p = ::mmap(nullptr, sizeof(T) * n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) ::abort();
  return static_cast<T*>(p);
}
template <typename T>
void FreeShared(T* p, size_t n) {
  ::munmap(p, sizeof(T) * n);
}

inline CaptureBytes IdOf(uint64_t n) {
  CaptureBytes id{};
  std::memcpy(id.data(), &n, 8);
  uint64_t tag = 0xC0FFEE;
  std::memcpy(id.data() + 8, &tag, 8);
  return id;
}
inline uint64_t NumOf(const CaptureBytes& id) {
  uint64_t n;
  std::memcpy(&n, id.data(), 8);
  return n;
}

// Scale factor for loop counts: CCMAIL_SHM_TEST_SCALE (default 1, also under
// ASan: the full 10^6-entry race takes well under a second there).
inline double Scale() {
  const char* s = ::getenv("CCMAIL_SHM_TEST_SCALE");
  double f = s ? std::atof(s) : 1.0;
  return f > 0 ? f : 1.0;
}

}  // namespace ccmail::shm::testing
