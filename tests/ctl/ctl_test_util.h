// ctl_test_util.h - a whole bridge state under one temporary directory for the
// ccmailctl tests: config file, spool captures, quarantine, ledger batches and a claim
// table with a name unique to the test.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ccmail/config/config.h"
#include "ccmail/config/paths.h"
#include "ccmail/ctl/ctl.h"
#include "ccmail/shm/claim_table.h"
#include "ccmail/store/content_key.h"
#include "ccmail/store/ledger.h"
#include "ccmail/store/spool.h"
#include "ccmail/testing/temp_dir.h"

namespace ccmail::ctl::test {

struct RunResult {
  int rc = -1;
  std::string out;
  std::string err;
};

class BridgeDir {
 public:
  BridgeDir() {
    static int counter = 0;
    paths_ = BridgePaths::UnderDirectory(dir_ + "/b");
    table_name_ = "ccmail-ctl-test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
    config_path_ = dir_ + "/ccmail-bridge.conf";
    std::ofstream(config_path_) << "# ccmailctl test\n"
                                << "spool_directory = " << paths_.spool_directory << "\n"
                                << "outbox_directory = " << paths_.outbox_directory << "\n"
                                << "runtime_directory = " << paths_.runtime_directory << "\n"
                                << "claim_table_name = " << table_name_ << "\n"
                                << "claim_table_slots = 16\n"
                                << "claim_table_registry = 8\n"
                                << "bridge_group =\n"
                                << "exporter_stall_timeout = 60s\n";
  }
  ~BridgeDir() {
    table_.reset();
    shm::TableOptions opt = TableOptions();
    (void)shm::ClaimTable::Remove(opt);
  }

  const std::string& dir() const { return dir_; }
  const BridgePaths& paths() const { return paths_; }
  const std::string& config_path() const { return config_path_; }

  RunResult Run(std::vector<std::string> args, const CtlEnvironment& env = CtlEnvironment{}) const {
    args.insert(args.begin(), {"ccmailctl", "-c", config_path_});
    std::ostringstream out, err;
    RunResult r;
    r.rc = RunCtl(args, out, err, env);
    r.out = out.str();
    r.err = err.str();
    return r;
  }

  store::Spool& spool() {
    if (!spool_) {
      std::filesystem::create_directories(paths_.spool_directory);
      Status s = store::Spool::Open(paths_.spool_root, &spool_);
      if (!s.ok()) ADD_FAILURE() << s.ToString();
    }
    return *spool_;
  }

  // A durable capture made age_ms ago (the id carries the time).
  store::CaptureId Capture(const std::string& sender, std::vector<store::SpoolRecipient> rcpts, int64_t age_ms,
                           const std::string& body = "Subject: hi\r\n\r\nhello\r\n") {
    static uint8_t n = 0;
    uint8_t rnd[10] = {0xC7, 0x11, 0, 0, 0, 0, 0, 0, 0, ++n};
    rnd[2] = static_cast<uint8_t>(::getpid());
    int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count();
    store::CaptureId id = store::CaptureId::FromParts(static_cast<uint64_t>(now - age_ms), rnd);
    std::unique_ptr<store::SpoolWriter> w;
    Status s = spool().BeginWithId(id, &w);
    if (!s.ok()) ADD_FAILURE() << s.ToString();
    if (!w) return id;
    s = w->Append(body.data(), body.size());
    if (!s.ok()) ADD_FAILURE() << s.ToString();
    store::SpoolMeta m;
    m.content_key = store::ContentKeyOfMessage(sender, body);
    m.queue_id = "Q" + id.ToString().substr(24);
    m.envelope_sender = sender;
    m.recipients = std::move(rcpts);
    m.received_ms = now - age_ms;
    s = w->Commit(std::move(m));
    if (!s.ok()) ADD_FAILURE() << s.ToString();
    return id;
  }

  std::string NewPath(const store::CaptureId& id) const { return paths_.spool_root + "/new/" + id.ToString(); }
  std::string CorruptPath(const store::CaptureId& id) const { return paths_.quarantine_dir + "/" + id.ToString(); }

  store::Ledger& ledger() {
    if (!ledger_) {
      std::filesystem::create_directories(paths_.spool_directory);
      Status s = store::Ledger::Open(paths_.ledger_path, &ledger_);
      if (!s.ok()) ADD_FAILURE() << s.ToString();
      uint64_t e = 0;
      s = ledger_->BumpEpoch(&e);
      if (!s.ok()) ADD_FAILURE() << s.ToString();
    }
    return *ledger_;
  }
  void CloseLedger() { ledger_.reset(); }

  // Records captures as one batch (exported to each recipient, or DUP) and removes
  // their spool files, as the exporter does after its commit.
  uint64_t Export(const std::vector<store::CaptureId>& ids, const std::string& post_office, bool dup = false) {
    store::LedgerBatch b;
    b.post_office = post_office;
    b.file_name = "BATCH" + std::to_string(++batches_) + ".CCM";
    for (const auto& id : ids) {
      b.capture_ids.push_back(id);
      store::SpoolEntry e;
      Status s = spool().VerifyOnly(id, &e);
      if (!s.ok()) ADD_FAILURE() << s.ToString();
      for (const auto& r : e.meta.recipients)
        b.deliveries.push_back({id, e.meta.content_key, r.smtp_address,
                                dup ? store::DeliveryKind::kDup : store::DeliveryKind::kExported});
    }
    std::vector<store::LedgerBatch> one_batch{std::move(b)};
    Status s = ledger().CommitBatches(&one_batch);
    if (!s.ok()) ADD_FAILURE() << s.ToString();
    for (const auto& id : ids) (void)spool().Remove(id);
    return one_batch[0].seq;
  }

  shm::TableOptions TableOptions() const {
    Config cfg;
    Status s = Config::Load(config_path_, &cfg);
    if (!s.ok()) ADD_FAILURE() << s.ToString();
    shm::TableOptions opt;
    s = shm::TableOptionsFromConfig(cfg, &opt);
    if (!s.ok()) ADD_FAILURE() << s.ToString();
    return opt;
  }
  // Creates the claim table as the exporter would.
  shm::ClaimTable& table() {
    if (!table_) {
      std::filesystem::create_directories(paths_.runtime_directory);
      shm::TableOptions opt = TableOptions();
      opt.create_if_missing = true;
      Status s = shm::ClaimTable::Open(opt, &table_);
      if (!s.ok()) ADD_FAILURE() << s.ToString();
    }
    return *table_;
  }

 private:
  ::ccmail::test::TempDir temp_{"ccmail-ctl"};
  std::string dir_ = temp_.path();
  BridgePaths paths_;
  std::string table_name_;
  std::string config_path_;
  std::unique_ptr<store::Spool> spool_;
  std::unique_ptr<store::Ledger> ledger_;
  std::unique_ptr<shm::ClaimTable> table_;
  int batches_ = 0;
};

inline bool Contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

}  // namespace ccmail::ctl::test
