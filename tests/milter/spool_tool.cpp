// milter-spool-tool - what the MTA tests look at, read through the store and shm APIs
// (never by parsing spool files with grep).
//
//   milter-spool-tool list CONF            one line per verified spool/new file:
//       <id> qid=<q> from=<sender> size=<n> key_ok=<0|1> rcpt=<smtp>|<name>|<po>[,...]
//     key_ok: the stored content key equals the content key (docs/DESIGN.md §2.2) of the stored message.
//     Exit 1 when a file in new/ does not verify.
//   milter-spool-tool show CONF ID         the raw message of new/<ID>
//   Run it only after the milter has created the spool (it opens it as the caller).
//   milter-spool-tool ready CONF           the number of READY slots
//   milter-spool-tool exporter CONF AGE_S BACKLOG
//     publishes an exporter state whose heartbeat and progress are AGE_S seconds old and
//     whose backlog hint is BACKLOG (simulates a stalled or a healthy exporter).
#include <grp.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "ccmail/config/config.h"
#include "ccmail/config/paths.h"
#include "ccmail/shm/claim_table.h"
#include "ccmail/store/content_key.h"
#include "ccmail/store/spool.h"

using namespace ccmail;

namespace {

int Fail(const Status& s) {
  std::fprintf(stderr, "milter-spool-tool: %s\n", s.ToString().c_str());
  return 2;
}

std::string Message(const store::SpoolEntry& e) {
  std::string out(e.message_length, '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = pread(e.fd.get(), out.data() + got, out.size() - got, e.message_offset + static_cast<off_t>(got));
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

// `writer`: stands in for the exporter, which must be the table's user (the table refuses
// anyone else): as root, become the owner of runtime_directory first.
Status OpenTable(const Config& cfg, bool writer, std::unique_ptr<shm::ClaimTable>* t) {
  shm::TableOptions o;
  CCMAIL_RETURN_IF_ERROR(shm::TableOptionsFromConfig(cfg, &o));
  o.create_if_missing = false;
  o.read_only = !writer;
  struct stat st;
  if (writer && geteuid() == 0 && stat(o.runtime_directory.c_str(), &st) == 0 && st.st_uid != 0) {
    if (setgroups(0, nullptr) != 0 || setresgid(st.st_gid, st.st_gid, st.st_gid) != 0 ||
        setresuid(st.st_uid, st.st_uid, st.st_uid) != 0)
      return Status::FromErrno("switching to the owner of " + o.runtime_directory, errno);
  }
  return shm::ClaimTable::Open(o, t);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: milter-spool-tool list|show|ready|exporter CONF [args]\n");
    return 2;
  }
  std::string cmd = argv[1];
  Config cfg;
  if (Status s = Config::Load(argv[2], &cfg); !s.ok()) return Fail(s);
  BridgePaths paths;
  if (Status s = BridgePaths::FromConfig(cfg, &paths); !s.ok()) return Fail(s);

  if (cmd == "list" || cmd == "show") {
    std::unique_ptr<store::Spool> spool;
    if (Status s = store::Spool::Open(paths.spool_root, &spool, nullptr, "tool"); !s.ok()) return Fail(s);
    std::vector<store::CaptureId> ids;
    if (Status s = spool->ListPending(&ids); !s.ok()) return Fail(s);
    int rc = 0;
    for (const auto& id : ids) {
      if (cmd == "show" && (argc < 4 || id.ToString() != argv[3])) continue;
      store::SpoolEntry e;
      if (Status s = spool->VerifyOnly(id, &e); !s.ok()) {
        std::printf("%s BAD %s\n", id.ToString().c_str(), s.ToString().c_str());
        rc = 1;
        continue;
      }
      std::string msg = Message(e);
      if (cmd == "show") {
        std::fwrite(msg.data(), 1, msg.size(), stdout);
        return 0;
      }
      // The milter gives the key the queue id for SMTP clients only (local submissions: none).
      bool key_ok = store::ContentKeyOfMessage(e.meta.envelope_sender, msg, e.meta.queue_id) == e.meta.content_key ||
                    store::ContentKeyOfMessage(e.meta.envelope_sender, msg) == e.meta.content_key;
      std::string rcpts;
      for (const auto& r : e.meta.recipients)
        rcpts += (rcpts.empty() ? "" : ",") + r.smtp_address + "|" + r.ccmail_name + "|" + r.post_office;
      std::printf("%s qid=%s from=%s size=%llu key=%s key_ok=%d rcpt=%s\n", id.ToString().c_str(),
                  e.meta.queue_id.c_str(), e.meta.envelope_sender.c_str(),
                  static_cast<unsigned long long>(e.meta.message_size), e.meta.content_key.ToString().c_str(),
                  key_ok ? 1 : 0, rcpts.c_str());
    }
    if (cmd == "show") {
      std::fprintf(stderr, "milter-spool-tool: no such capture\n");
      return 1;
    }
    return rc;
  }

  std::unique_ptr<shm::ClaimTable> table;
  if (Status s = OpenTable(cfg, /*writer=*/cmd == "exporter", &table); !s.ok()) return Fail(s);
  if (cmd == "ready") {
    // Counted from the slot control words only: claiming would change the table.
    uint32_t n = 0;
    for (uint32_t i = 0; i < table->slot_count(); ++i)
      if (table->Slot(i).state == shm::SlotState::kReady) ++n;
    std::printf("%u\n", n);
    return 0;
  }
  if (cmd == "exporter" && argc == 5) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
    uint64_t age = std::strtoull(argv[3], nullptr, 10) * 1000000000ull;
    shm::ExporterState st;
    st.epoch = 1;
    st.heartbeat_ns = now - age;
    st.progress_ns = now - age;
    st.backlog_count = std::strtoull(argv[4], nullptr, 10);
    st.pid = getpid();
    table->PublishExporterState(st);
    return 0;
  }
  std::fprintf(stderr, "milter-spool-tool: unknown command %s\n", cmd.c_str());
  return 2;
}
