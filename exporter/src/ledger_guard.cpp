// ledger_guard.cpp - refuse a lost, emptied, older or damaged ledger at start, and rebuild
// the de-duplication state from the outbox manifests (see ledger_guard.h).
#include "ccmail/exporter/ledger_guard.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "ccmail/common/log.h"
#include "ccmail/common/unique_fd.h"
#include "ccmail/exporter/outbox.h"
#include "ccmail/exporter/singleton.h"
#include "ccmail/store/io.h"

namespace ccmail::exporter {
namespace {

constexpr char kRefusedPrefix[] = "ledger refused: ";

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Directory entries (no . and ..); a missing directory is empty.
Status List(const std::string& dir, std::vector<std::string>* names) {
  names->clear();
  DIR* d = ::opendir(dir.c_str());
  if (!d) return errno == ENOENT ? Status::Ok() : Status::FromErrno("opendir " + dir, errno);
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names->push_back(std::move(n));
  }
  ::closedir(d);
  std::sort(names->begin(), names->end());
  return Status::Ok();
}

bool IsDir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Status FirstLine(const std::string& path, std::string* line) {
  std::ifstream in(path);
  if (!in) return Status::FromErrno("open " + path, errno ? errno : EIO);
  if (!std::getline(in, *line)) return Status::Corrupt(path + ": empty");
  return Status::Ok();
}

bool ParseField(const std::string& line, const std::string& key, std::string* value) {
  auto p = line.find(" " + key + "=");
  if (p == std::string::npos) return false;
  p += key.size() + 2;
  auto end = line.find(' ', p);
  *value = line.substr(p, end == std::string::npos ? std::string::npos : end - p);
  return !value->empty();
}

bool ParseU64(const std::string& s, uint64_t* v) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) return false;
  errno = 0;
  *v = std::strtoull(s.c_str(), nullptr, 10);
  return errno == 0;
}

void Note(OutboxHistory* h, uint64_t epoch, uint64_t seq, const std::string& from) {
  if (!h->any || epoch > h->max_epoch) {
    h->max_epoch = epoch;
    h->max_epoch_from = from;
  }
  if (!h->any || seq > h->max_seq) {
    h->max_seq = seq;
    h->max_seq_from = from;
  }
  h->any = true;
}

Status Refuse(const BridgePaths& paths, const std::string& why) {
  const std::string reason = std::string(kRefusedPrefix) + why;
  // Recorded for `ccmailctl status`; the log line is the primary report, so a failure to
  // record is only logged.
  const std::string path = LedgerRefusalPath(paths), tmp = path + ".tmp";
  std::ofstream(tmp, std::ios::trunc) << reason << "\n";
  if (::rename(tmp.c_str(), path.c_str()) != 0) LogWarning("cannot record the refusal in %s", path.c_str());
  return Status::Corrupt(reason);
}

std::string Num(uint64_t v) { return std::to_string(v); }

const char kRemedy[] =
    " Stop and look before restarting: restore the newest ledger backup (or move the damaged file away) and "
    "run `ccmailctl ledger rebuild` (see ccmailctl(8), section LEDGER).";

}  // namespace

Status ParseManifestHeader(const std::string& line, ManifestHeader* out) {
  if (line.rfind("# ccmail-bridge manifest v1 ", 0) != 0) return Status::Corrupt("not a manifest header");
  std::string e, s, c;
  ManifestHeader h;
  if (!ParseField(line, "epoch", &e) || !ParseU64(e, &h.epoch) || !ParseField(line, "seq", &s) ||
      !ParseU64(s, &h.seq) || !ParseField(line, "po", &h.post_office) || !ParseField(line, "batch", &h.batch) ||
      !ParseField(line, "count", &c) || !ParseU64(c, &h.count))
    return Status::Corrupt("manifest header without epoch, seq, po, batch or count: " + line);
  (void)ParseField(line, "relay", &h.relay);
  *out = std::move(h);
  return Status::Ok();
}

Status ScanOutboxHistory(const std::string& outbox_dir, OutboxHistory* out, const std::string& relay_id) {
  OutboxHistory h;
  std::vector<std::string> post_offices;
  CCMAIL_RETURN_IF_ERROR(List(outbox_dir, &post_offices));
  for (const auto& post_office : post_offices) {
    const std::string dir = outbox_dir + "/" + post_office;
    if (!ValidPostOfficeName(post_office) || !IsDir(dir)) continue;
    Watermark wm;
    Status ws = ReadWatermark(dir, &wm, relay_id);
    if (ws.ok()) {
      ++h.watermarks;
      Note(&h, wm.epoch, wm.seq, dir + "/" + WatermarkFileName(relay_id));
    } else if (!ws.IsNotFound()) {
      return ws;
    }
    std::vector<std::string> files;
    CCMAIL_RETURN_IF_ERROR(List(dir, &files));
    for (const auto& f : files) {
      if (!EndsWith(f, ".MAN")) continue;
      std::string line;
      ManifestHeader mh;
      Status ms = FirstLine(dir + "/" + f, &line);
      if (ms.ok()) ms = ParseManifestHeader(line, &mh);
      if (!ms.ok()) return ms.WithContext(dir + "/" + f);
      if (mh.relay != relay_id) continue;  // another relay's batch (a shared outbox)
      ++h.manifests;
      Note(&h, mh.epoch, mh.seq, dir + "/" + f);
    }
  }
  *out = std::move(h);
  return Status::Ok();
}

std::string LedgerRefusalPath(const BridgePaths& paths) { return paths.spool_directory + "/ledger-refused"; }

Status ReadLedgerRefusal(const BridgePaths& paths, std::string* reason) {
  std::ifstream in(LedgerRefusalPath(paths));
  if (!in) return Status::NotFound("no ledger refusal recorded");
  std::getline(in, *reason);
  return Status::Ok();
}

bool IsLedgerRefusal(const Status& s) {
  return s.code() == Status::Code::kCorrupt && s.message().find(kRefusedPrefix) != std::string::npos;
}

namespace {
// The shared ledger: no file to lose; the server's own durability and replication keep it.
// Still checked: the schema and this relay's row (QuickCheck), and this relay's epoch and
// seq against what this relay published (a restored older database would reuse names).
Status OpenCheckedSharedLedger(const BridgePaths& paths, const store::LedgerTarget& target,
                               std::unique_ptr<store::Ledger>* out) {
  OutboxHistory h;
  if (Status s = ScanOutboxHistory(paths.outbox_directory, &h, target.relay_id); !s.ok())
    return Refuse(paths, "cannot read the outbox history of relay " + target.relay_id + ": " + s.ToString());
  std::unique_ptr<store::Ledger> l;
  CCMAIL_RETURN_IF_ERROR(store::OpenLedger(target, &l));
  Status s = l->QuickCheck();
  if (s.IsCorrupt()) return Refuse(paths, s.ToString() + "." + kRemedy);
  if (!s.ok()) return s;
  s = CheckLedgerAgainstOutbox(l.get(), h);
  if (s.IsCorrupt()) return Refuse(paths, "relay " + target.relay_id + ": " + s.message() + ".");
  if (!s.ok()) return s;
  if (::unlink(LedgerRefusalPath(paths).c_str()) == 0) LogInfo("ledger accepted again (relay %s)", target.relay_id.c_str());
  *out = std::move(l);
  return Status::Ok();
}
}  // namespace

Status CheckLedgerAgainstOutbox(store::Ledger* ledger, const OutboxHistory& h) {
  store::LedgerCounters c;
  CCMAIL_RETURN_IF_ERROR(ledger->Counters(&c));
  if (c.epoch < h.max_epoch)
    return Status::Corrupt("the ledger is older than the outbox: its epoch is " + Num(c.epoch) + " but " +
                           h.max_epoch_from + " was published in epoch " + Num(h.max_epoch) +
                           " (a restored backup, or another ledger)");
  if (c.last_seq < h.max_seq)
    return Status::Corrupt("the ledger is older than the outbox: its last batch seq is " + Num(c.last_seq) + " but " +
                           h.max_seq_from + " has seq " + Num(h.max_seq) + " (a restored backup, or another ledger)");
  return Status::Ok();
}

Status OpenCheckedLedger(const BridgePaths& paths, std::unique_ptr<store::Ledger>* out) {
  store::LedgerTarget target;
  target.location = paths.ledger_path;
  return OpenCheckedLedger(paths, target, out);
}

Status OpenCheckedLedger(const BridgePaths& paths, const store::LedgerTarget& target,
                         std::unique_ptr<store::Ledger>* out) {
  const std::string& lp = target.location;
  if (store::IsPostgresLocation(lp)) return OpenCheckedSharedLedger(paths, target, out);
  OutboxHistory h;
  if (Status s = ScanOutboxHistory(paths.outbox_directory, &h); !s.ok())
    return Refuse(paths, "cannot read the outbox history to check the ledger against: " + s.ToString());
  struct stat st;
  const bool exists = ::stat(lp.c_str(), &st) == 0;
  if (!exists && errno != ENOENT) return Status::FromErrno("stat " + lp, errno);
  const std::string history = Num(h.watermarks) + " watermark(s), " + Num(h.manifests) + " manifest(s), up to epoch " +
                              Num(h.max_epoch) + " seq " + Num(h.max_seq);
  if (h.any && !exists)
    return Refuse(paths, lp + " is missing, but the outbox " + paths.outbox_directory + " has " + history +
                             ": exporting with a new ledger would reuse batch names and export re-sent mail again." +
                             kRemedy);
  if (h.any && st.st_size == 0)
    return Refuse(paths, lp + " is empty, but the outbox " + paths.outbox_directory + " has " + history + "." + kRemedy);
  std::unique_ptr<store::Ledger> l;
  Status s = store::OpenLedger(target, &l);
  if (s.IsCorrupt()) return Refuse(paths, "cannot open " + lp + ": " + s.ToString() + "." + kRemedy);
  if (!s.ok()) return s;
  // Page structure plus each index against its table (Ledger::QuickCheck): a flipped bit in
  // a key of the deliveries index passes quick_check alone and gives a duplicate
  // (tests/exporter ledger_guard_test corrupts each page class).
  s = l->QuickCheck();
  if (s.IsCorrupt()) return Refuse(paths, s.ToString() + "." + kRemedy);
  if (!s.ok()) return s;
  s = CheckLedgerAgainstOutbox(l.get(), h);
  if (s.IsCorrupt()) return Refuse(paths, lp + ": " + s.message() + "." + kRemedy);
  if (!s.ok()) return s;
  if (::unlink(LedgerRefusalPath(paths).c_str()) == 0) LogInfo("ledger accepted again: %s", lp.c_str());
  *out = std::move(l);
  return Status::Ok();
}

namespace {

// Every *.MAN under dir, recursively (an archive may keep post-office subdirectories).
Status FindManifests(const std::string& dir, int depth, std::vector<std::string>* out) {
  std::vector<std::string> names;
  CCMAIL_RETURN_IF_ERROR(List(dir, &names));
  for (const auto& n : names) {
    const std::string p = dir + "/" + n;
    if (EndsWith(n, ".MAN")) out->push_back(p);
    else if (depth < 4 && IsDir(p)) CCMAIL_RETURN_IF_ERROR(FindManifests(p, depth + 1, out));
  }
  return Status::Ok();
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Status RebuildLedger(const BridgePaths& paths, const std::vector<std::string>& extra_dirs, RebuildReport* report) {
  RebuildReport r;
  UniqueFd lock;
  Status s = AcquireExporterLock(paths.exporter_lock, &lock);
  if (s.code() == Status::Code::kBusy) return Status::Busy("the exporter is running; stop it before a rebuild");
  CCMAIL_RETURN_IF_ERROR(s);
  struct stat st;
  r.created = ::stat(paths.ledger_path.c_str(), &st) != 0 || st.st_size == 0;
  std::unique_ptr<store::Ledger> l;
  CCMAIL_RETURN_IF_ERROR(store::Ledger::Open(paths.ledger_path, &l));
  if (Status q = l->QuickCheck(); !q.ok())
    return q.WithContext("not rebuilding over a damaged ledger (move it aside, then rebuild)");

  std::vector<std::string> mans;
  std::vector<std::string> post_offices;
  CCMAIL_RETURN_IF_ERROR(List(paths.outbox_directory, &post_offices));
  for (const auto& post_office : post_offices)
    if (ValidPostOfficeName(post_office) && IsDir(paths.outbox_directory + "/" + post_office))
      CCMAIL_RETURN_IF_ERROR(FindManifests(paths.outbox_directory + "/" + post_office, 4, &mans));
  for (const auto& d : extra_dirs) {
    if (!IsDir(d)) return Status::NotFound(d + ": not a directory");
    CCMAIL_RETURN_IF_ERROR(FindManifests(d, 0, &mans));
  }
  // One batch per seq (an archive may hold a second copy of a batch still in the outbox).
  std::map<uint64_t, store::LedgerBatch> by_seq;
  uint64_t max_epoch = 0, max_seq = 0;
  for (const auto& path : mans) {
    const std::string text = Slurp(path);
    ManifestHeader h;
    std::vector<ManifestEntry> entries;
    Status ps = ParseManifestHeader(text.substr(0, text.find('\n')), &h);
    if (ps.ok()) ps = ParseManifest(text, &entries);
    if (!ps.ok()) return ps.WithContext(path);
    ++r.manifests;
    max_epoch = std::max(max_epoch, h.epoch);
    max_seq = std::max(max_seq, h.seq);
    if (by_seq.count(h.seq)) {
      if (by_seq[h.seq].file_name != h.batch)
        return Status::Corrupt(path + ": seq " + Num(h.seq) + " is also batch " + by_seq[h.seq].file_name +
                               " (manifests of two different ledgers?)");
      continue;
    }
    store::LedgerBatch b;
    b.seq = h.seq;
    b.epoch = h.epoch;
    b.post_office = h.post_office;
    b.file_name = h.batch;
    if (::stat(path.c_str(), &st) == 0) b.created_ms = static_cast<int64_t>(st.st_mtime) * 1000;
    std::set<std::string> seen;
    for (const auto& e : entries) {
      auto cid = store::CaptureId::Parse(e.capture_id);
      auto key = store::ContentKey::Parse(e.content_key);
      if (!cid || !key) return Status::Corrupt(path + ": bad capture id or content key " + e.capture_id);
      if (seen.insert(e.capture_id).second) b.capture_ids.push_back(*cid);
      // The exporter's dedup key: "<cc:Mail name> at <PO>".
      b.deliveries.push_back({*cid, *key, e.recipient + " at " + h.post_office, store::DeliveryKind::kExported});
    }
    by_seq.emplace(h.seq, std::move(b));
  }
  std::vector<store::LedgerBatch> batches;
  for (auto& [seq, b] : by_seq) batches.push_back(std::move(b));
  CCMAIL_RETURN_IF_ERROR(l->ImportBatches(batches, &r.batches_added, &r.deliveries_added));
  OutboxHistory h;
  CCMAIL_RETURN_IF_ERROR(ScanOutboxHistory(paths.outbox_directory, &h));
  CCMAIL_RETURN_IF_ERROR(l->RaiseFloor(std::max(max_epoch, h.max_epoch), std::max(max_seq, h.max_seq)));
  store::LedgerCounters c;
  CCMAIL_RETURN_IF_ERROR(l->Counters(&c));
  r.epoch = c.epoch;
  r.last_seq = c.last_seq;
  *report = r;
  return Status::Ok();
}

}  // namespace ccmail::exporter
