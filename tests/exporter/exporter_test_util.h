// exporter_test_util.h - a test bed for the exporter: a private directory tree (BridgePaths),
// a private claim table, a producer that captures like the milter does (store::Spool +
// ClaimTable::Publish + RingDoorbell), and a checker that parses EVERY batch of the outbox
// with the ccmail_format reader and every manifest.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ccmail/config/paths.h"
#include "ccmail/exporter/exporter.h"
#include "ccmail/exporter/outbox.h"
#include "ccmail/format/reader.h"
#include "ccmail/shm/claim_table.h"
#include "ccmail/store/io.h"
#include "ccmail/store/ledger.h"
#include "ccmail/store/spool.h"
#include "ccmail/testing/temp_dir.h"

namespace ccmail::exporter::testing {

namespace fs = std::filesystem;

using ::ccmail::test::Slurp;
inline void Spit(const std::string& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

inline size_t CountFiles(const std::string& dir) {
  std::error_code ec;
  size_t n = 0;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); ++it) ++n;
  return n;
}

// The producer's spool does not fsync: the producer's durability is the milter's (tested
// there); here only the exporter's steps are under test, and 20,000 captures must be quick.
class NoSyncIo : public store::DurableIoWrapper {
 public:
  Status Fsync(int, const std::string&, const char*) override { return Status::Ok(); }
  Status FsyncDir(const std::string&, const char*) override { return Status::Ok(); }
};

struct Rcpt {
  std::string smtp, name, post_office;
};

struct Bed {
  ::ccmail::test::TempDir temp{"ccmail-exp"};
  std::string dir = temp.path();
  BridgePaths paths;
  shm::TableOptions table;
  NoSyncIo nosync;
  std::unique_ptr<store::Spool> spool;         // producer side
  std::unique_ptr<shm::ClaimTable> ptable;     // producer side
  std::unique_ptr<shm::Registration> preg;

  explicit Bed(uint32_t slots = 64) {
    paths = BridgePaths::UnderDirectory(dir);
    static std::atomic<int> counter{0};
    table.name = "ccmail-exptest-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    table.runtime_directory = paths.runtime_directory;
    table.slots = slots;
    table.registry = 16;
    table.create_if_missing = true;
    table.recreate_if_invalid = true;
    fs::create_directories(paths.spool_directory);
    fs::create_directories(paths.runtime_directory);
  }
  ~Bed() {
    preg.reset();
    ptable.reset();
    spool.reset();
    (void)shm::ClaimTable::Remove(table);
  }

  ExporterOptions Options() const {
    ExporterOptions o;
    o.paths = paths;
    o.table = table;
    o.batch_max_delay = std::chrono::milliseconds(0);
    o.doorbell_timeout = std::chrono::milliseconds(10);
    o.backoff_min = std::chrono::milliseconds(10);
    o.backoff_max = std::chrono::milliseconds(50);
    o.bounce_relay = "127.0.0.1:1";  // nothing listens: notices stay queued
    o.convert_threads = 2;  // the threaded conversion path (used when a round has >= 8 messages)
    return o;
  }

  // A config file for the real binary, with the same layout and table.
  std::string WriteConfig(const std::string& extra = "") const {
    std::string text = "spool_directory = " + paths.spool_directory + "\noutbox_directory = " + paths.outbox_directory +
                       "\nruntime_directory = " + paths.runtime_directory + "\nclaim_table_name = " + table.name +
                       "\nclaim_table_slots = " + std::to_string(table.slots) +
                       "\nclaim_table_registry = " + std::to_string(table.registry) +
                       "\nbridge_group =\nexporter_user =\nexporter_pid_file = " + paths.runtime_directory +
                       "/ccmail-exporter.pid\nbounce_relay = 127.0.0.1:1\naddress_map =\n" + extra;
    std::string path = dir + "/ccmail-bridge.conf";
    Spit(path, text);
    return path;
  }

  void OpenProducer(bool with_table = true) {
    if (!spool) {
      ASSERT_TRUE(store::Spool::Open(paths.spool_root, &spool, &nosync, "test").ok());
    }
    if (with_table && !ptable) {
      Status s = shm::ClaimTable::Open(table, &ptable);
      ASSERT_TRUE(s.ok()) << s.ToString();
      ASSERT_TRUE(ptable->Register(shm::Role::kMilter, &preg).ok());
    }
  }

  static std::string Message(const std::string& tag, const std::vector<Rcpt>& rcpts, size_t body_bytes = 0) {
    std::string m = "From: Sender <sender@example.org>\r\nTo: ";
    for (size_t i = 0; i < rcpts.size(); ++i) m += (i ? ", " : "") + rcpts[i].smtp;
    m += "\r\nSubject: test " + tag + "\r\nMessage-ID: <" + tag + "@example.org>\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\n";
    m += "Body of " + tag + ".\r\n";
    while (m.size() < body_bytes) m += "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n";
    return m;
  }
  static store::ContentKey Key(uint64_t n) {
    store::ContentKey k;
    for (int i = 0; i < 8; ++i) k.bytes[static_cast<size_t>(i)] = static_cast<uint8_t>(n >> (8 * i));
    k.bytes[31] = 0x5a;
    return k;
  }

  // Captures one message like the milter: durable spool file, then a slot (if publish).
  store::CaptureId Capture(uint64_t key, const std::vector<Rcpt>& rcpts, bool publish = true,
                           const std::string& sender = "sender@example.org", size_t body_bytes = 0,
                           const store::CaptureId* force_id = nullptr) {
    OpenProducer(publish);
    std::unique_ptr<store::SpoolWriter> w;
    Status s = force_id ? spool->BeginWithId(*force_id, &w) : spool->Begin(&w);
    EXPECT_TRUE(s.ok()) << s.ToString();
    std::string msg = Message("k" + std::to_string(key), rcpts, body_bytes);
    EXPECT_TRUE(w->Append(msg.data(), msg.size()).ok());
    store::SpoolMeta m;
    m.content_key = Key(key);
    m.envelope_sender = sender;
    m.received_ms = 1700000000000;
    for (const auto& r : rcpts) m.recipients.push_back({r.smtp, r.name, r.post_office});
    s = w->Commit(m);
    EXPECT_TRUE(s.ok()) << s.ToString();
    store::CaptureId id = w->id();
    if (publish) {
      (void)ptable->Publish(*preg, id.bytes, msg.size());  // full table: found by the spool scan
      ptable->RingDoorbell();
    }
    return id;
  }
};

// One delivery seen in the outbox.
struct Seen {
  std::string post_office, batch, capture_id, content_key, recipient, sender;
};

// Parses every batch and manifest under the outbox. Fails the test on any violation, a
// manifest whose count or recipients do not match the batch file's messages, or a batch
// without a manifest.
inline std::vector<Seen> ReadOutbox(const std::string& outbox, const format::FormatSettings& fmt = {}) {
  std::vector<Seen> out;
  std::error_code ec;
  if (!fs::exists(outbox, ec)) return out;
  for (const auto& pod : fs::directory_iterator(outbox)) {
    if (!pod.is_directory()) continue;
    const std::string post_office = pod.path().filename();
    for (const auto& f : fs::directory_iterator(pod.path())) {
      const std::string name = f.path().filename();
      if (name.size() != 12 || name.substr(8) != ".CCM") continue;
      std::string text = Slurp(f.path());
      format::ReadResult rr = format::ReadImportFile(text, fmt);
      EXPECT_TRUE(rr.ok()) << post_office << "/" << name << ": " << (rr.violations.empty() ? "" : rr.violations[0].reason);
      std::vector<ManifestEntry> man;
      Status ms = ParseManifest(Slurp(pod.path().string() + "/" + ManifestFileName(name)), &man);
      EXPECT_TRUE(ms.ok()) << post_office << "/" << name << ": " << ms.ToString();
      std::multiset<std::string> in_file, in_man;
      for (const auto& m : rr.messages)
        for (const auto* l : {&m.to, &m.cc, &m.bcc})
          for (std::string r : *l) {
            auto at = r.rfind(" at ");
            if (at != std::string::npos) r = r.substr(0, at);
            in_file.insert(r);
          }
      for (const auto& e : man) {
        in_man.insert(e.recipient);
        out.push_back({post_office, name, e.capture_id, e.content_key, e.recipient, e.sender});
      }
      EXPECT_EQ(in_file, in_man) << post_office << "/" << name << ": batch messages and manifest disagree";
    }
  }
  return out;
}

// Quiescence and ledger invariants (docs/DESIGN.md §8).
inline void ExpectQuiescent(const BridgePaths& p) {
  EXPECT_EQ(CountFiles(p.spool_root + "/new"), 0u) << "spool/new not empty";
  EXPECT_EQ(CountFiles(p.out_tmp), 0u) << "out/tmp not empty";
  std::unique_ptr<store::Ledger> l;
  ASSERT_TRUE(store::Ledger::Open(p.ledger_path, &l).ok());
  Status s = l->IntegrityCheck();
  EXPECT_TRUE(s.ok()) << s.ToString();
}

}  // namespace ccmail::exporter::testing
