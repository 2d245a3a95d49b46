// Outbox publication: .part in out/tmp -> (ledger commit by caller) -> rename into
// outbox/<PO>/ -> fsync dirs -> watermark. Every durability step is explicit because a
// rename that is visible but not yet durable must never be taken by the consumer.
#include "ccmail/exporter/outbox.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "ccmail/common/escape.h"
#include "ccmail/common/unique_fd.h"
#include "ccmail/store/io.h"

namespace ccmail::exporter {
namespace {

using store::DurableIo;

constexpr char kDigits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

std::string Base36(uint64_t v, int width) {
  std::string s(static_cast<size_t>(width), '0');
  for (int i = width - 1; i >= 0; --i) {
    s[static_cast<size_t>(i)] = kDigits[v % 36];
    v /= 36;
  }
  return s;
}

bool Exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

std::string Stem(const std::string& name) {
  auto dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(0, dot);
}

}  // namespace

std::string WatermarkFileName(const std::string& relay_id) {
  return relay_id.empty() ? "WATERMRK" : "WATERMRK." + relay_id;
}

std::string BatchFileName(uint64_t epoch, uint64_t seq, const std::string& relay_id) {
  return (relay_id.empty() ? std::string() : relay_id + "-") + Base36(epoch % (36ULL * 36 * 36), 3) + Base36(seq % (36ULL * 36 * 36 * 36 * 36), 5) + ".CCM";
}

std::string ManifestFileName(const std::string& batch_name) { return Stem(batch_name) + ".MAN"; }

bool ValidPostOfficeName(const std::string& post_office) {
  if (post_office.empty() || post_office.size() > 8) return false;
  for (char c : post_office) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

std::string FormatManifest(uint64_t epoch, uint64_t seq, const std::string& post_office,
                           const std::string& batch_name, const std::vector<ManifestEntry>& entries,
                           const std::string& relay_id) {
  std::string out = "# ccmail-bridge manifest v1 epoch=" + std::to_string(epoch) + " seq=" +
                    std::to_string(seq) + " po=" + post_office + " batch=" + batch_name +
                    " count=" + std::to_string(entries.size()) + (relay_id.empty() ? "" : " relay=" + relay_id) + "\n";
  // Addresses come from the envelope: escaped, so a TAB or LF in one cannot add a column or a line.
  for (const auto& e : entries)
    out += EscapeField(e.capture_id) + "\t" + EscapeField(e.content_key) + "\t" + EscapeField(e.recipient) + "\t" +
           EscapeField(e.sender) + "\n";
  return out;
}

Status ParseManifest(const std::string& text, std::vector<ManifestEntry>* entries) {
  entries->clear();
  std::istringstream in(text);
  std::string line;
  size_t lineno = 0;
  long declared = -1;
  while (std::getline(in, line)) {
    ++lineno;
    if (lineno == 1) {
      if (line.rfind("# ccmail-bridge manifest v1 ", 0) != 0)
        return Status::Corrupt("manifest line 1: bad header");
      auto p = line.find(" count=");
      if (p == std::string::npos) return Status::Corrupt("manifest line 1: no count");
      declared = std::strtol(line.c_str() + p + 7, nullptr, 10);
      continue;
    }
    auto t1 = line.find('\t');
    auto t2 = t1 == std::string::npos ? t1 : line.find('\t', t1 + 1);
    auto t3 = t2 == std::string::npos ? t2 : line.find('\t', t2 + 1);
    if (t3 == std::string::npos) return Status::Corrupt("manifest line " + std::to_string(lineno) + ": expected 4 fields");
    ManifestEntry e{UnescapeField(line.substr(0, t1)), UnescapeField(line.substr(t1 + 1, t2 - t1 - 1)),
                    UnescapeField(line.substr(t2 + 1, t3 - t2 - 1)), UnescapeField(line.substr(t3 + 1))};
    if (e.capture_id.size() != 32 || e.content_key.size() != 64 || e.recipient.empty())
      return Status::Corrupt("manifest line " + std::to_string(lineno) + ": bad field length");
    entries->push_back(std::move(e));
  }
  if (declared < 0) return Status::Corrupt("manifest: empty");
  if (static_cast<size_t>(declared) != entries->size())
    return Status::Corrupt("manifest: count=" + std::to_string(declared) + " but " +
                           std::to_string(entries->size()) + " lines (truncated?)");
  return Status::Ok();
}

Status ReadWatermark(const std::string& po_dir, Watermark* wm, const std::string& relay_id) {
  const std::string path = po_dir + "/" + WatermarkFileName(relay_id);
  std::ifstream in(path);
  if (!in) return Status::NotFound("no watermark " + path);
  if (!(in >> wm->epoch >> wm->seq >> wm->batch_name)) return Status::Corrupt(path + ": unreadable");
  return Status::Ok();
}

Outbox::Outbox(std::string out_tmp, std::string outbox_dir, DurableIo* io)
    : tmp_(std::move(out_tmp)), outbox_(std::move(outbox_dir)), io_(io ? io : &DurableIo::Real()) {}

Status Outbox::MkdirP(const std::string& path) {
  std::string cur;
  std::stringstream ss(path);
  std::string part;
  if (!path.empty() && path[0] == '/') cur = "/";
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    cur += part;
    bool created = false;
    CCMAIL_RETURN_IF_ERROR(io_->MakeDir(cur, 0750, &created));
    cur += "/";
  }
  return Status::Ok();
}

// Creates `path` exclusively, writes `data`, fsyncs and closes it; the named points are
// passed by the DurableIo write and fsync.
// uncached: the batch itself, written past the page cache (DurableIo::WriteAllUncached);
// nothing reads it before IMPORT does.
Status Outbox::WriteDurable(const std::string& path, const std::string& data, const char* written,
                            const char* fsynced, bool uncached) {
  UniqueFd fd;
  Status s = io_->CreateExclusive(path, 0640, &fd);
  if (s.ok() && uncached) s = io_->WriteAllUncached(fd.get(), data.data(), data.size(), path, written);
  else if (s.ok()) s = io_->WriteAll(fd.get(), data.data(), data.size(), path, written);
  if (s.ok()) s = io_->Fsync(fd.get(), path, fsynced);
  if (s.ok()) s = io_->Close(&fd, path);
  return s;
}

// A published name is never reused (a consumer may have imported the file under it): the
// rename never replaces. Finding the name taken is fine only when it is this very file: an
// earlier run renamed it and crashed (the .part is gone), or RenameNoReplace's link fallback
// was cut between its link and its unlink (both names on one inode).
Status Outbox::PublishFile(const std::string& from, const std::string& to) {
  Status s = io_->RenameNoReplace(from, to);
  if (s.ok()) return s;
  if (s.IsNotFound() && !Exists(from) && Exists(to)) return Status::Ok();
  if (s.code() == Status::Code::kAlreadyExists) {
    if (store::SameFile(from, to)) return io_->Unlink(from);
    return Status::AlreadyExists(to + " is already published and is not " + from +
                                 ": a batch name came round again; nothing was replaced and the .part is kept");
  }
  return s;
}

namespace {
std::string Parent(const std::string& p) {
  auto slash = p.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : p.substr(0, slash);
}
}  // namespace

Status Outbox::Init() {
  for (const std::string& d : {tmp_, outbox_}) {
    Status s = MkdirP(d);
    if (!s.ok()) return s;
  }
  // The new directory entries must survive a power loss like everything below them.
  for (const std::string& d : {Parent(tmp_), Parent(Parent(tmp_)), Parent(outbox_)}) {
    Status s = io_->FsyncDir(d);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

std::string Outbox::PartPath(const std::string& batch_name) const { return TmpDir() + "/" + batch_name + ".part"; }

Status Outbox::WritePart(uint64_t epoch, uint64_t seq, const std::string& post_office, const std::string& content,
                         const std::vector<ManifestEntry>& entries) {
  if (!ValidPostOfficeName(post_office)) return Status::InvalidArgument("post office name not usable as a directory: '" + post_office + "'");
  const std::string name = BatchFileName(epoch, seq, relay_id_);
  const std::string man = ManifestFileName(name);
  Status s = WriteDurable(TmpDir() + "/" + man + ".part", FormatManifest(epoch, seq, post_office, name, entries, relay_id_),
                          kCrashBatchManifestWritten, kCrashBatchManifestFsynced, false);
  if (s.ok()) s = WriteDurable(PartPath(name), content, kCrashBatchPartWritten, kCrashBatchPartFsynced, true);
  if (s.ok() && !defer_tmpdir_sync_) s = SyncTmpDir();
  return s;
}

Status Outbox::Publish(uint64_t epoch, uint64_t seq, const std::string& post_office) {
  const std::string name = BatchFileName(epoch, seq, relay_id_);
  const std::string man = ManifestFileName(name);
  const std::string dir = PostOfficeDir(post_office);
  // A new post-office directory must be durable before anything is renamed into it.
  bool created = false;
  Status s = io_->MakeDir(dir, 0750, &created);
  if (s.ok() && created) s = io_->FsyncDir(outbox_);
  // Manifest first: a consumer that sees a batch always finds its manifest.
  if (s.ok()) s = store::InjectedError(kCrashBatchRenamed, "publish " + dir + "/" + name);
  if (s.ok()) s = PublishFile(TmpDir() + "/" + man + ".part", dir + "/" + man);
  if (s.ok()) s = PublishFile(PartPath(name), dir + "/" + name);
  if (s.ok()) store::CrashPoint(kCrashBatchRenamed);
  if (s.ok()) s = io_->FsyncDir(dir, kCrashBatchDirFsynced);
  if (s.ok() && !defer_tmpdir_sync_) s = io_->FsyncDir(TmpDir());
  if (!s.ok()) return s;
  // Watermark: only advance, never move back (a roll-forward of an older batch).
  Watermark cur;
  if (ReadWatermark(dir, &cur, relay_id_).ok() && (cur.epoch > epoch || (cur.epoch == epoch && cur.seq >= seq)))
    return Status::Ok();
  const std::string watermark = dir + "/" + WatermarkFileName(relay_id_), tmp = watermark + ".tmp";
  s = io_->Unlink(tmp);
  if (s.IsNotFound()) s = Status::Ok();
  if (s.ok())
    s = WriteDurable(tmp, std::to_string(epoch) + " " + std::to_string(seq) + " " + name + "\n", kCrashWatermarkWritten,
                     kCrashWatermarkFsynced, false);
  if (s.ok()) s = io_->Rename(tmp, watermark, kCrashWatermarkRenamed);
  if (s.ok()) s = io_->FsyncDir(dir, kCrashWatermarkDirFsynced);
  return s;
}

Status Outbox::SyncTmpDir() { return io_->FsyncDir(TmpDir(), kCrashBatchTmpdirFsynced); }

Status Outbox::Abandon(uint64_t epoch, uint64_t seq) {
  const std::string name = BatchFileName(epoch, seq, relay_id_);
  for (const std::string& p : {PartPath(name), TmpDir() + "/" + ManifestFileName(name) + ".part"}) {
    Status s = io_->Unlink(p);
    if (!s.ok() && !s.IsNotFound()) return s;
  }
  return io_->FsyncDir(TmpDir());
}

}  // namespace ccmail::exporter
