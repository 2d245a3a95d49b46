// drain_cmd.cpp - `drain`: wait until every captured message has been exported.
//
// Drained means spool/new is empty AND no claim-table slot is READY or CLAIMED (a
// RESERVED slot belongs to a milter thread whose file is already counted in new/).
// The loop re-reads only what it needs (a directory count, the slot states and the
// exporter's lock), never the ledger, so polling a large spool stays cheap.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "ccmail/ctl/json.h"
#include "commands.h"
#include "format.h"

namespace ccmail::ctl {
namespace {

struct Progress {
  uint64_t messages = 0;   // files in spool/new
  uint64_t busy_slots = 0; // READY + CLAIMED
  bool table_known = false;
  bool exporter_up = false;
};

std::string Bar(uint64_t left, uint64_t total) {
  const int kWidth = 30;
  double done = total == 0 ? 1.0 : 1.0 - static_cast<double>(left) / static_cast<double>(total);
  if (done < 0) done = 0;
  int fill = static_cast<int>(done * kWidth + 0.5);
  std::string s = "[" + std::string(static_cast<size_t>(fill), '#') + std::string(static_cast<size_t>(kWidth - fill), '-') + "]";
  char pct[16];
  std::snprintf(pct, sizeof pct, " %3d%%", static_cast<int>(done * 100 + 0.5));
  return s + pct;
}

}  // namespace

int CmdDrain(const Io& io, std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  std::unique_ptr<store::Spool> spool;
  Status s = OpenSpool(io.ctx, &spool);
  if (!s.ok() && !s.IsNotFound()) {
    io.err << "ccmailctl: " << s.ToString() << "\n";
    return kExitFailure;
  }
  std::unique_ptr<shm::ClaimTable> table;
  TableSnapshot snap;
  bool warned_table = false;
  uint64_t total = 0;  // the most work seen: 100% of the bar
  auto last_line = start - io.env.drain_report_every;
  bool bar_drawn = false;

  auto finish = [&](int rc, const std::string& text, const Progress& p) {
    if (bar_drawn) io.out << "\n";
    auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
    if (io.json) {
      JsonWriter w;
      w.BeginObject();
      w.Key("drained").Bool(rc == kExitOk);
      w.Key("result").String(rc == kExitOk ? "drained" : rc == kExitNoExporter ? "no exporter" : "timeout");
      w.Key("messages").UInt(p.messages);
      w.Key("busy_slots").UInt(p.busy_slots);
      w.Key("elapsed_ms").Int(elapsed);
      w.EndObject();
      io.out << w.Take();
    } else if (rc == kExitOk) {
      io.out << text << "\n";
    } else {
      io.err << "ccmailctl: " << text << "\n";
    }
    return rc;
  };

  for (;;) {
    Progress p;
    if (spool) {
      Status rs = spool->RescanStats();
      if (!rs.ok()) {
        io.err << "ccmailctl: " << rs.ToString() << "\n";
        return kExitFailure;
      }
      p.messages = spool->Stats().count;
    }
    if (!table) OpenTable(io.ctx, &table, &snap);  // it may appear when the exporter starts
    else ReadTable(*table, &snap);
    if (table) {
      p.table_known = true;
      p.busy_slots = uint64_t{snap.ready} + snap.claimed;
    } else if (snap.state == PartState::kError && !warned_table) {
      io.err << "ccmailctl: claim table " << snap.name << " unusable (" << snap.error
             << "); waiting on spool/new only\n";
      warned_table = true;
    }
    bool held = false;
    Status ls = ExporterLockHeld(io.ctx.paths.exporter_lock, table.get(), &held);
    p.exporter_up = ls.ok() && held;

    uint64_t left = p.messages + p.busy_slots;
    total = std::max(total, left);
    auto elapsed = Clock::now() - start;
    auto elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
    if (left == 0)
      return finish(kExitOk, "drained: spool/new is empty and no slot is ready or claimed (" + FormatAge(elapsed_ms) + ")", p);
    if (!p.exporter_up) {
      std::string why = ls.ok() ? "no ccmail-exporter is running" : "cannot tell whether ccmail-exporter runs (" + ls.ToString() + ")";
      return finish(kExitNoExporter,
                    why + " and " + std::to_string(p.messages) + " message(s) wait in " + io.ctx.paths.spool_root +
                        "/new (" + std::to_string(p.busy_slots) + " ready/claimed slot(s)); start it: systemctl start ccmail-exporter",
                    p);
    }
    if (elapsed >= timeout)
      return finish(kExitFailure,
                    "timed out after " + FormatAge(elapsed_ms) + ": " + std::to_string(p.messages) + " message(s) in spool/new, " +
                        std::to_string(p.busy_slots) + " ready/claimed slot(s)",
                    p);
    if (!io.json) {
      if (io.env.stdout_is_tty) {
        io.out << "\r" << Bar(left, total) << "  " << p.messages << " messages, " << p.busy_slots << " slots left, "
               << FormatAge(elapsed_ms) << "   " << std::flush;
        bar_drawn = true;
      } else if (Clock::now() - last_line >= io.env.drain_report_every) {
        io.out << "drain: " << p.messages << " message(s) in spool/new, " << p.busy_slots
               << " ready/claimed slot(s), " << FormatAge(elapsed_ms) << " elapsed\n" << std::flush;
        last_line = Clock::now();
      }
    }
    auto left_time = timeout - std::chrono::duration_cast<std::chrono::milliseconds>(elapsed);
    std::this_thread::sleep_for(std::min(io.env.drain_poll, std::max(left_time, std::chrono::milliseconds(1))));
  }
}

}  // namespace ccmail::ctl
