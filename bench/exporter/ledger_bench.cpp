// ledger_bench - the ledger's round commit latency, SQLite beside PostgreSQL, same machine.
//
//   ledger_bench <dir> <rounds> <batch sizes, e.g. 1,256> [postgresql location]
//   CCMAIL_BENCH_PG_PASSWORD_FILE: the password file of the PostgreSQL location
//
// What the exporter's committer does per round, timed from its start to the commit's return:
// the bulk lookup of every (content key, recipient) of the round (AreExported), then ONE
// transaction inserting the round's batch rows, captures and deliveries (CommitBatches): a
// batch of N messages, half of them also to a second post office (two batch rows, 1.5 N
// deliveries), as bench/exporter/exporter_bench's backlog. One line per backend and batch size:
// rounds, p50, p99 and max of the round in ms, rounds/s and deliveries/s. The SQLite ledger is
// <dir>/ledger.db (synchronous=FULL, as the exporter opens it); PostgreSQL is the given database,
// under a relay id of its own per run ("bench-<pid>-<batch>"), with fresh content keys, so rows
// of earlier runs never turn a delivery into a duplicate.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "ccmail/common/log.h"
#include "ccmail/store/ledger.h"

using namespace ccmail;
using Clock = std::chrono::steady_clock;

namespace {

struct RoundTimes {
  std::vector<double> ms;
  double total_s = 0;
  uint64_t deliveries = 0;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

Status TimeRounds(store::Ledger* ledger, size_t rounds, size_t batch, uint64_t nonce, RoundTimes* out) {
  uint64_t epoch = 0;
  CCMAIL_RETURN_IF_ERROR(ledger->BumpEpoch(&epoch));
  uint64_t n = 0;
  auto all0 = Clock::now();
  for (size_t r = 0; r < rounds; ++r) {
    std::vector<store::LedgerBatch> batches(2);
    batches[0].post_office = "HQ";
    batches[1].post_office = "BRANCH";
    std::vector<std::pair<store::ContentKey, std::string>> lookup;
    for (size_t m = 0; m < batch; ++m, ++n) {
      store::CaptureId id = store::CaptureId::FromHiLo(nonce, n);
      store::ContentKey key;
      for (int b = 0; b < 8; ++b) {
        key.bytes[static_cast<size_t>(b)] = static_cast<uint8_t>(n >> (8 * b));
        key.bytes[static_cast<size_t>(8 + b)] = static_cast<uint8_t>(nonce >> (8 * b));
      }
      batches[0].capture_ids.push_back(id);
      batches[0].deliveries.push_back({id, key, "Doe, Jane at HQ", store::DeliveryKind::kExported});
      lookup.emplace_back(key, "Doe, Jane at HQ");
      if (n % 2) {
        batches[1].capture_ids.push_back(id);
        batches[1].deliveries.push_back({id, key, "Bo, Bert at BRANCH", store::DeliveryKind::kExported});
        lookup.emplace_back(key, "Bo, Bert at BRANCH");
      }
    }
    if (batches[1].deliveries.empty()) batches.pop_back();
    for (size_t b = 0; b < batches.size(); ++b)
      batches[b].file_name = "B" + std::to_string(nonce % 100000) + "-" + std::to_string(r) + "-" + std::to_string(b);
    auto t0 = Clock::now();
    std::vector<char> exported;
    CCMAIL_RETURN_IF_ERROR(ledger->AreExported(lookup, &exported));
    for (char e : exported)
      if (e) return Status::AlreadyExists("ledger_bench: a fresh delivery is already exported (nonce reused?)");
    CCMAIL_RETURN_IF_ERROR(ledger->CommitBatches(&batches));
    out->ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    out->deliveries += lookup.size();
  }
  out->total_s = std::chrono::duration<double>(Clock::now() - all0).count();
  return Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: ledger_bench DIR ROUNDS BATCHES [POSTGRESQL-LOCATION]\n");
    return 2;
  }
  std::string dir = argv[1];
  size_t rounds = std::strtoul(argv[2], nullptr, 10);
  std::vector<size_t> sizes;
  for (const char* q = argv[3]; *q;) {
    char* end = nullptr;
    sizes.push_back(std::strtoul(q, &end, 10));
    q = *end ? end + 1 : end;
  }
  std::string pg = argc > 4 ? argv[4] : "";
  const char* pw = std::getenv("CCMAIL_BENCH_PG_PASSWORD_FILE");
  LogInit("ledger_bench", LogTarget::kStderr, LogLevel::kWarning);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::mt19937_64 rng(static_cast<uint64_t>(Clock::now().time_since_epoch().count()) ^ static_cast<uint64_t>(::getpid()));

  printf("# round = AreExported + CommitBatches of N messages (1.5 N deliveries, 2 post offices)\n");
  printf("%-10s %6s %7s %9s %9s %9s %10s %13s\n", "backend", "batch", "rounds", "p50 ms", "p99 ms", "max ms",
         "rounds/s", "deliveries/s");
  for (const char* backend : {"sqlite", "postgresql"}) {
    if (std::string(backend) == "postgresql" && pg.empty()) continue;
    for (size_t batch : sizes) {
      store::LedgerTarget t;
      if (std::string(backend) == "sqlite") {
        t.location = dir + "/ledger-" + std::to_string(batch) + ".db";
      } else {
        t.location = pg;
        t.password_file = pw ? pw : "";
        t.relay_id = "bench-" + std::to_string(::getpid()) + "-" + std::to_string(batch);
      }
      std::unique_ptr<store::Ledger> ledger;
      Status s = store::OpenLedger(t, &ledger);
      RoundTimes rt;
      if (s.ok()) s = TimeRounds(ledger.get(), rounds, batch, rng(), &rt);
      if (!s.ok()) {
        fprintf(stderr, "%s batch %zu: %s\n", backend, batch, s.ToString().c_str());
        return 1;
      }
      printf("%-10s %6zu %7zu %9.2f %9.2f %9.2f %10.1f %13.0f\n", backend, batch, rounds, Percentile(rt.ms, 0.5),
             Percentile(rt.ms, 0.99), Percentile(rt.ms, 1.0), static_cast<double>(rounds) / rt.total_s,
             static_cast<double>(rt.deliveries) / rt.total_s);
      fflush(stdout);
    }
  }
  std::filesystem::remove_all(dir);
  return 0;
}
