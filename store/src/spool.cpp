// spool.cpp - tmp -> write -> fsync -> rename into new -> fsync new/.
#include "ccmail/store/spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "ccmail/common/clock.h"
#include "ccmail/common/log.h"
#include "hex.h"

namespace ccmail::store {
namespace {

constexpr char kMagic[8] = {'C', 'C', 'M', 'S', 'P', 'O', 'O', 'L'};
constexpr char kTrailMagic[8] = {'C', 'C', 'M', 'T', 'R', 'A', 'I', 'L'};
constexpr char kEndMagic[8] = {'C', 'C', 'M', 'E', 'N', 'D', '\n', '\0'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderSize = 16;
constexpr size_t kTrailerSize = 44;
constexpr uint64_t kMaxMetaSize = 16u << 20;

uint32_t Crc(uint32_t crc, const void* p, size_t n) {
  const Bytef* b = static_cast<const Bytef*>(p);
  while (n > 0) {
    uInt chunk = n > (1u << 30) ? (1u << 30) : static_cast<uInt>(n);
    crc = static_cast<uint32_t>(crc32(crc, b, chunk));
    b += chunk;
    n -= chunk;
  }
  return crc;
}

void PutU32(std::string* s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s->push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string* s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s->push_back(static_cast<char>(v >> (8 * i)));
}
uint32_t GetU32(const unsigned char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | p[i];
  return v;
}
uint64_t GetU64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

std::string Escape(const std::string& v) {
  // Most values (ids, addresses, names) need no escape: one scan instead of a copy by bytes.
  static constexpr std::string_view kSpecial("%\n\t\r=\0", 6);
  if (std::string_view(v).find_first_of(kSpecial) == std::string_view::npos) return v;
  std::string out;
  for (char c : v) {
    if (c == '%' || c == '\n' || c == '\t' || c == '\r' || c == '=' || c == '\0') {
      char buf[4];
      snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

bool Unescape(const std::string& v, std::string* out) {
  out->clear();
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '%') {
      out->push_back(v[i]);
      continue;
    }
    uint8_t byte = 0;
    if (i + 2 >= v.size() || !HexDecode(std::string_view(v).substr(i + 1, 2), &byte, 1)) return false;
    out->push_back(static_cast<char>(byte));
    i += 2;
  }
  return true;
}

std::string EncodeMeta(const SpoolMeta& m) {
  std::string s;
  auto line = [&](const char* k, const std::string& v) {
    s += k;
    s += '=';
    s += Escape(v);
    s += '\n';
  };
  line("capture_id", m.capture_id.ToString());
  line("content_key", m.content_key.ToString());
  line("queue_id", m.queue_id);
  line("sender", m.envelope_sender);
  line("received_ms", std::to_string(m.received_ms));
  line("message_size", std::to_string(m.message_size));
  for (const auto& r : m.recipients) {
    s += "rcpt=" + Escape(r.smtp_address) + "\t" + Escape(r.ccmail_name) + "\t" + Escape(r.post_office) + "\n";
  }
  return s;
}

// Digits only (no sign, blank or base prefix, unlike strtoull), at most `max`.
std::optional<uint64_t> ParseDecimal(std::string_view digits, uint64_t max) {
  if (digits.empty()) return std::nullopt;
  uint64_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (max - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

bool ParseU64(const std::string& text, uint64_t* value) {
  auto parsed = ParseDecimal(text, UINT64_MAX);
  if (parsed) *value = *parsed;
  return parsed.has_value();
}

Status DecodeMeta(const std::string& text, SpoolMeta* m) {
  size_t pos = 0;
  bool have_id = false, have_key = false, have_size = false;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) return Status::Corrupt("meta: last line not terminated");
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    size_t eq = line.find('=');
    if (eq == std::string::npos) return Status::Corrupt("meta: line without '=' at offset " + std::to_string(pos));
    std::string k = line.substr(0, eq), raw = line.substr(eq + 1), v;
    if (k == "rcpt") {
      SpoolRecipient r;
      size_t t1 = raw.find('\t');
      size_t t2 = t1 == std::string::npos ? t1 : raw.find('\t', t1 + 1);
      if (t2 == std::string::npos) return Status::Corrupt("meta: bad rcpt line");
      if (!Unescape(raw.substr(0, t1), &r.smtp_address) || !Unescape(raw.substr(t1 + 1, t2 - t1 - 1), &r.ccmail_name) ||
          !Unescape(raw.substr(t2 + 1), &r.post_office))
        return Status::Corrupt("meta: bad escape in rcpt");
      m->recipients.push_back(std::move(r));
      continue;
    }
    if (!Unescape(raw, &v)) return Status::Corrupt("meta: bad escape in " + k);
    if (k == "capture_id") {
      auto id = CaptureId::Parse(v);
      if (!id) return Status::Corrupt("meta: bad capture_id");
      m->capture_id = *id;
      have_id = true;
    } else if (k == "content_key") {
      auto ck = ContentKey::Parse(v);
      if (!ck) return Status::Corrupt("meta: bad content_key");
      m->content_key = *ck;
      have_key = true;
    } else if (k == "queue_id") {
      m->queue_id = v;
    } else if (k == "sender") {
      m->envelope_sender = v;
    } else if (k == "received_ms") {
      uint64_t x;
      if (!ParseU64(v, &x)) return Status::Corrupt("meta: bad received_ms");
      m->received_ms = static_cast<int64_t>(x);
    } else if (k == "message_size") {
      if (!ParseU64(v, &m->message_size)) return Status::Corrupt("meta: bad message_size");
      have_size = true;
    }  // unknown keys: ignored (forward compatible)
  }
  if (!have_id || !have_key || !have_size) return Status::Corrupt("meta: capture_id, content_key or message_size missing");
  return Status::Ok();
}

Status PreadAll(int fd, void* buf, size_t n, off_t off, const std::string& what) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, off);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("read " + what, errno);
    }
    if (r == 0) return Status::Corrupt(what + ": unexpected end of file at offset " + std::to_string(off));
    p += r;
    n -= static_cast<size_t>(r);
    off += r;
  }
  return Status::Ok();
}

Status EnsureDir(const std::string& d) {
  if (::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) return Status::FromErrno("mkdir " + d, errno);
  struct stat st;
  if (::stat(d.c_str(), &st) != 0) return Status::FromErrno("stat " + d, errno);
  if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument(d + " is not a directory");
  return Status::Ok();
}

template <typename F>
Status ForEachEntry(const std::string& dir, F f) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return Status::FromErrno("opendir " + dir, errno);
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    f(std::string(e->d_name));
    errno = 0;
  }
  int err = errno;
  ::closedir(d);
  if (err) return Status::FromErrno("readdir " + dir, err);
  return Status::Ok();
}

}  // namespace

std::string TmpWriterTag(const std::string& name) {
  if (name.size() < 34 || name[32] != '.') return "";
  if (!CaptureId::Parse(std::string_view(name).substr(0, 32))) return "";
  return name.substr(33);
}

std::string WriterTag::ToString() const {
  return std::to_string(registry_index) + "." + std::to_string(registration_gen);
}

std::optional<WriterTag> WriterTag::Parse(std::string_view text) {
  const size_t dot = text.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  auto index = ParseDecimal(text.substr(0, dot), UINT32_MAX);
  auto gen = ParseDecimal(text.substr(dot + 1), UINT64_MAX);
  if (!index || !gen) return std::nullopt;
  return WriterTag{static_cast<uint32_t>(*index), *gen};
}

// ---- SpoolWriter ----

SpoolWriter::SpoolWriter(Spool* spool, CaptureId id, std::string tmp_path, UniqueFd fd)
    : spool_(spool), id_(id), tmp_path_(std::move(tmp_path)), fd_(std::move(fd)) {}

SpoolWriter::~SpoolWriter() { Abort(); }

void SpoolWriter::Abort() {
  if (done_) return;
  done_ = true;
  fd_.reset();
  // The tmp file was never acknowledged; no fsync needed for its removal.
  Status s = spool_->io().Unlink(tmp_path_);
  if (!s.ok() && !s.IsNotFound()) LogWarning("spool: abort %s: %s", id_.ToString().c_str(), s.ToString().c_str());
}

Status SpoolWriter::Append(const void* data, size_t n) {
  if (done_ || failed_) return Status::InvalidArgument("spool writer " + id_.ToString() + " is closed");
  Status s = spool_->io().WriteAll(fd_.get(), data, n, tmp_path_, kCrashSpoolTmpWritten);
  if (!s.ok()) {
    failed_ = true;
    Abort();
    return s.WithContext("capture " + id_.ToString());
  }
  crc_ = Crc(crc_, data, n);
  size_ += n;
  if (logging_) {
    if (image_.size() + n > spool_->wal_->options().max_image_bytes) {
      logging_ = false;  // too large for a log record: committed the file way
      std::string().swap(image_);
    } else {
      image_.append(static_cast<const char*>(data), n);
    }
  }
  return Status::Ok();
}

Status SpoolWriter::Commit(SpoolMeta meta) {
  if (done_ || failed_) return Status::InvalidArgument("spool writer " + id_.ToString() + " is closed");
  meta.capture_id = id_;
  meta.message_size = size_;
  std::string tail = EncodeMeta(meta);
  uint64_t meta_size = tail.size();
  uint32_t meta_crc = Crc(0, tail.data(), tail.size());
  std::string trailer(kTrailMagic, 8);
  PutU64(&trailer, size_);
  PutU64(&trailer, meta_size);
  PutU32(&trailer, crc_);
  PutU32(&trailer, meta_crc);
  PutU32(&trailer, Crc(0, trailer.data(), trailer.size()));
  trailer.append(kEndMagic, 8);
  tail += trailer;

  DurableIo& io = spool_->io();
  auto fail = [&](const Status& s) {
    done_ = true;  // never fsync this file again (fsyncgate): abandon it
    fd_.reset();
    Status u = io.Unlink(tmp_path_);
    if (!u.ok() && !u.IsNotFound()) LogWarning("spool: remove %s: %s", tmp_path_.c_str(), u.ToString().c_str());
    return s.WithContext("capture " + id_.ToString());
  };
  Status s = io.WriteAll(fd_.get(), tail.data(), tail.size(), tmp_path_, kCrashSpoolTmpWritten);
  if (!s.ok()) return fail(s);
  const std::string name = id_.ToString();
  if (logging_ && image_.size() + tail.size() <= spool_->wal_->options().max_image_bytes) {
    // The log's way (spool_wal.h PROTOCOL): the record's fdatasync is the durability point;
    // the file is renamed into new/ only then, and is made durable by the checkpoint.
    image_ += tail;
    s = io.Close(&fd_, tmp_path_);
    if (!s.ok()) return fail(s);
    SpoolWal::Pin pin;
    s = spool_->wal_->Append(id_, image_, &pin);
    if (!s.ok()) return fail(s);
    s = io.RenameInto(tmp_path_, spool_->new_dir_fd_.get(), spool_->new_dir(), name, kCrashSpoolRenamed);
    if (!s.ok()) return fail(s);
    done_ = true;
    spool_->count_.fetch_add(1, std::memory_order_relaxed);
    spool_->bytes_.fetch_add(image_.size(), std::memory_order_relaxed);
    std::string().swap(image_);
    return Status::Ok();
  }
  s = io.Fsync(fd_.get(), tmp_path_, kCrashSpoolTmpFsynced);
  if (!s.ok()) return fail(s);
  s = io.Close(&fd_, tmp_path_);
  if (!s.ok()) return fail(s);
  std::string final_path = spool_->new_dir() + "/" + name;
  s = io.RenameInto(tmp_path_, spool_->new_dir_fd_.get(), spool_->new_dir(), name, kCrashSpoolRenamed);
  if (!s.ok()) return fail(s);
  done_ = true;
  s = spool_->SyncNewDirCoveringRename();
  if (!s.ok()) {
    // The name may or may not survive a power loss: not acknowledged. Take it back out
    // of new/ so it is not exported behind the client's back (the client will retry).
    Status u = io.Unlink(final_path);
    if (!u.ok()) LogWarning("spool: remove %s after failed directory fsync: %s", final_path.c_str(), u.ToString().c_str());
    return s.WithContext("capture " + id_.ToString());
  }
  spool_->count_.fetch_add(1, std::memory_order_relaxed);
  spool_->bytes_.fetch_add(kHeaderSize + size_ + tail.size(), std::memory_order_relaxed);
  return Status::Ok();
}

// ---- Spool ----

Spool::Spool(std::string root, DurableIo* io, std::string tag)
    : root_(std::move(root)), io_(io), tag_(std::move(tag)) {}
Spool::~Spool() = default;

Status Spool::Open(const std::string& root, std::unique_ptr<Spool>* out, DurableIo* io, std::string writer_tag) {
  if (root.empty()) return Status::InvalidArgument("spool directory is empty");
  for (const char* sub : {"", "/tmp", "/new", "/corrupt"}) CCMAIL_RETURN_IF_ERROR(EnsureDir(root + sub));
  if (writer_tag.empty()) writer_tag = "p" + std::to_string(::getpid());
  if (writer_tag.find('/') != std::string::npos) return Status::InvalidArgument("writer tag contains '/'");
  std::unique_ptr<Spool> sp(new Spool(root, io ? io : &DurableIo::Real(), writer_tag));
  sp->new_dir_fd_.reset(::open(sp->new_dir().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!sp->new_dir_fd_.valid()) return Status::FromErrno("open directory " + sp->new_dir(), errno);
  CCMAIL_RETURN_IF_ERROR(sp->RescanStats());
  *out = std::move(sp);
  return Status::Ok();
}

Status Spool::Begin(std::unique_ptr<SpoolWriter>* out) { return BeginWithId(CaptureId::New(), out); }

Status Spool::BeginWithId(const CaptureId& id, std::unique_ptr<SpoolWriter>* out) {
  std::string path = tmp_dir() + "/" + id.ToString() + "." + tag_;
  UniqueFd fd;
  Status cs = io_->CreateExclusive(path, 0600, &fd, kCrashSpoolTmpCreated);
  if (!cs.ok()) return cs.WithContext("capture " + id.ToString());
  std::string header(kMagic, 8);
  PutU32(&header, kVersion);
  PutU32(&header, 0);
  std::unique_ptr<SpoolWriter> w(new SpoolWriter(this, id, path, std::move(fd)));
  Status s = io_->WriteAll(w->fd_.get(), header.data(), header.size(), path, kCrashSpoolTmpWritten);
  if (!s.ok()) {
    w->failed_ = true;
    w->Abort();
    return s.WithContext("capture " + id.ToString());
  }
  if (wal_) {
    w->logging_ = true;
    w->image_ = std::move(header);
  }
  *out = std::move(w);
  return Status::Ok();
}

Status Spool::ListPending(std::vector<CaptureId>* ids) const {
  ids->clear();
  return ForEachEntry(new_dir(), [&](const std::string& n) {
    if (auto id = CaptureId::Parse(n)) ids->push_back(*id);
  });
}

Status Spool::VerifyFile(const std::string& path, SpoolEntry* entry) const {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path, errno);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat " + path, errno);
  uint64_t fsize = static_cast<uint64_t>(st.st_size);
  if (fsize < kHeaderSize + kTrailerSize)
    return Status::Corrupt(path + ": file too short (" + std::to_string(fsize) + " bytes)");
  // A typical capture (tens of KB) is read with ONE pread into `whole` and every check below
  // works on that copy; larger files are read piece by piece. Same checks, same order,
  // same messages either way: the single read only saves three syscalls and a 64 KiB buffer.
  // The copy is handed to the caller (SpoolEntry::contents), so the exporter's converter
  // parses it instead of reading the file a second time.
  constexpr uint64_t kWholeFileMax = 256 * 1024;
  std::string whole;
  if (fsize <= kWholeFileMax) {
    whole.resize(static_cast<size_t>(fsize));
    CCMAIL_RETURN_IF_ERROR(PreadAll(fd.get(), whole.data(), whole.size(), 0, path));
  }
  auto read_at = [&](void* buf, size_t n, off_t off) -> Status {
    if (!whole.empty()) {
      std::memcpy(buf, whole.data() + off, n);  // off + n <= fsize: checked by the callers
      return Status::Ok();
    }
    return PreadAll(fd.get(), buf, n, off, path);
  };
  unsigned char hdr[kHeaderSize];
  CCMAIL_RETURN_IF_ERROR(read_at(hdr, kHeaderSize, 0));
  if (std::memcmp(hdr, kMagic, 8) != 0) return Status::Corrupt(path + ": bad magic at offset 0");
  if (GetU32(hdr + 8) != kVersion) return Status::Corrupt(path + ": unknown version " + std::to_string(GetU32(hdr + 8)));
  if (GetU32(hdr + 12) != 0) return Status::Corrupt(path + ": reserved header field is not zero at offset 12");
  unsigned char tr[kTrailerSize];
  off_t toff = static_cast<off_t>(fsize - kTrailerSize);
  CCMAIL_RETURN_IF_ERROR(read_at(tr, kTrailerSize, toff));
  if (std::memcmp(tr, kTrailMagic, 8) != 0 || std::memcmp(tr + 36, kEndMagic, 8) != 0)
    return Status::Corrupt(path + ": no trailer at offset " + std::to_string(toff) + " (torn write?)");
  if (Crc(0, tr, 32) != GetU32(tr + 32)) return Status::Corrupt(path + ": trailer checksum mismatch");
  uint64_t msize = GetU64(tr + 8), metasize = GetU64(tr + 16);
  uint32_t mcrc = GetU32(tr + 24), metacrc = GetU32(tr + 28);
  if (metasize > kMaxMetaSize || msize > fsize || kHeaderSize + msize + metasize + kTrailerSize != fsize)
    return Status::Corrupt(path + ": sizes in trailer do not match the file size " + std::to_string(fsize));
  std::string meta(metasize, '\0');
  off_t moff = static_cast<off_t>(kHeaderSize + msize);
  CCMAIL_RETURN_IF_ERROR(read_at(meta.data(), metasize, moff));
  if (Crc(0, meta.data(), meta.size()) != metacrc) return Status::Corrupt(path + ": metadata checksum mismatch at offset " + std::to_string(moff));
  // Stream the message through the CRC.
  uint32_t crc = 0;
  if (!whole.empty()) crc = Crc(0, whole.data() + kHeaderSize, static_cast<size_t>(msize));
  std::string buf(whole.empty() ? size_t{1} << 16 : 0, '\0');
  uint64_t left = whole.empty() ? msize : 0;
  off_t off = kHeaderSize;
  while (left > 0) {
    size_t n = left > buf.size() ? buf.size() : static_cast<size_t>(left);
    CCMAIL_RETURN_IF_ERROR(PreadAll(fd.get(), buf.data(), n, off, path));
    crc = Crc(crc, buf.data(), n);
    left -= n;
    off += static_cast<off_t>(n);
  }
  if (crc != mcrc) return Status::Corrupt(path + ": message checksum mismatch");
  SpoolMeta m;
  Status s = DecodeMeta(meta, &m);
  if (!s.ok()) return s.WithContext(path);
  if (m.message_size != msize) return Status::Corrupt(path + ": message_size in metadata differs from trailer");
  entry->meta = std::move(m);
  entry->fd = std::move(fd);
  entry->message_offset = kHeaderSize;
  entry->message_length = msize;
  entry->file_size = fsize;
  entry->contents = std::move(whole);
  return Status::Ok();
}

Status Spool::VerifyCapture(const std::string& dir, const CaptureId& id, SpoolEntry* entry) const {
  const std::string path = dir + "/" + id.ToString();
  Status s = VerifyFile(path, entry);
  if (s.ok() && entry->meta.capture_id != id)
    return Status::Corrupt(path + ": capture id inside is " + entry->meta.capture_id.ToString());
  return s;
}

Status Spool::VerifyOnly(const CaptureId& id, SpoolEntry* entry) const { return VerifyCapture(new_dir(), id, entry); }

Status Spool::OpenEntry(const CaptureId& id, SpoolEntry* entry) {
  Status s = VerifyOnly(id, entry);
  if (s.IsCorrupt()) {
    Status q = Quarantine(id, s.message());
    if (!q.ok()) LogError("spool: cannot quarantine %s: %s", id.ToString().c_str(), q.ToString().c_str());
    else LogWarning("spool: %s moved to %s: %s", id.ToString().c_str(), corrupt_dir().c_str(), s.message().c_str());
  }
  return s;
}

Status Spool::Remove(const CaptureId& id, bool sync_dir) {
  std::string path = new_dir() + "/" + id.ToString();
  struct stat st;
  uint64_t size = ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  Status s = io_->Unlink(path, kCrashSpoolUnlinked);
  if (!s.ok()) return s;
  ForgetFromBacklog(size);
  if (sync_dir) return SyncNewDir();
  return Status::Ok();
}

Status Spool::SyncNewDirCoveringRename() {
  std::unique_lock<std::mutex> lock(dir_sync_mu_);
  // A running fsync may have started before our rename: only the next one surely covers it.
  const uint64_t needed = dir_syncs_started_ + 1;
  ++dir_sync_waiters_[needed].waiting;
  while (dir_syncs_done_ < needed) {
    if (dir_sync_running_) {
      dir_sync_cv_.wait(lock);
      continue;
    }
    // Nobody is syncing and ours has not run: lead it. No fsync started after our rename
    // yet (it would have completed, as none runs now), so this one gets number `needed`.
    dir_sync_running_ = true;
    const uint64_t number = ++dir_syncs_started_;
    lock.unlock();
    Status result = io_->FsyncDirFd(new_dir_fd_.get(), new_dir(), kCrashSpoolDirFsynced);
    lock.lock();
    dir_sync_waiters_[number].result = std::move(result);
    dir_syncs_done_ = number;
    dir_sync_running_ = false;
    dir_sync_cv_.notify_all();
  }
  auto it = dir_sync_waiters_.find(needed);
  Status result = it->second.result;
  if (--it->second.waiting == 0) dir_sync_waiters_.erase(it);
  return result;
}

Status Spool::EnableWal(WalOptions options) {
  if (wal_) return Status::InvalidArgument("spool log already enabled");
  return SpoolWal::Open(wal_dir(), tag_, io_, options,
                        [this](const std::vector<CaptureId>& ids) { return MakeDurable(ids); }, &wal_);
}

Status Spool::MakeDurable(const std::vector<CaptureId>& ids) {
  for (const CaptureId& id : ids) {
    const std::string path = new_dir() + "/" + id.ToString();
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
      if (errno == ENOENT) continue;  // exported (after its ledger commit) or quarantined
      return Status::FromErrno("open " + path, errno);
    }
    CCMAIL_RETURN_IF_ERROR(io_->Fsync(fd.get(), path));
  }
  return io_->FsyncDirFd(new_dir_fd_.get(), new_dir());
}

Status Spool::ReplayRecord(const SpoolWal::Record& record,
                           const std::function<Status(const CaptureId&, bool* known)>& known, WalReplayTally* tally,
                           bool* new_dir_changed) {
  const std::string name = record.id.ToString();
  bool in_ledger = false;
  CCMAIL_RETURN_IF_ERROR(known(record.id, &in_ledger));
  struct stat st;
  if (in_ledger || ::stat((corrupt_dir() + "/" + name).c_str(), &st) == 0) {
    ++tally->already_done;
    return Status::Ok();
  }
  SpoolEntry entry;
  if (VerifyCapture(new_dir(), record.id, &entry).ok()) {
    CCMAIL_RETURN_IF_ERROR(io_->Fsync(entry.fd.get(), new_dir() + "/" + name));
    ++tally->made_durable;
    *new_dir_changed = true;  // its name may not be durable yet either
    return Status::Ok();
  }
  // Lost or torn by a power loss (or never renamed): write it again from the record.
  const std::string tmp = tmp_dir() + "/" + name + "." + tag_;
  Status u = io_->Unlink(tmp);
  if (!u.ok() && !u.IsNotFound()) return u;
  UniqueFd fd;
  CCMAIL_RETURN_IF_ERROR(io_->CreateExclusive(tmp, 0600, &fd));
  Status s = io_->WriteAll(fd.get(), record.image.data(), record.image.size(), tmp);
  if (s.ok()) s = io_->Fsync(fd.get(), tmp);
  if (s.ok()) s = io_->Close(&fd, tmp);
  if (!s.ok()) {
    (void)io_->Unlink(tmp);
    return s;
  }
  SpoolEntry check;
  Status verified = VerifyFile(tmp, &check);
  if (verified.ok() && check.meta.capture_id != record.id)
    verified = Status::Corrupt("the record of " + name + " holds capture " + check.meta.capture_id.ToString());
  check.fd.reset();
  if (!verified.ok()) {
    // Its write never completed, so its fdatasync never returned: never acknowledged.
    (void)io_->Unlink(tmp);
    ++tally->torn;
    LogWarning("spool log: record of capture %s does not verify, skipped (never acknowledged): %s", name.c_str(),
               verified.ToString().c_str());
    return Status::Ok();
  }
  CCMAIL_RETURN_IF_ERROR(io_->Rename(tmp, new_dir() + "/" + name));
  ++tally->restored;
  *new_dir_changed = true;
  return Status::Ok();
}

bool Spool::HasDeadWalSegments() const {
  bool dead = false;
  const std::string dir = wal_dir();
  Status s = ForEachEntry(dir, [&](const std::string& n) {
    if (dead || !SpoolWal::IsSegmentName(n)) return;
    UniqueFd fd(::open((dir + "/" + n).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (fd.valid() && ::flock(fd.get(), LOCK_SH | LOCK_NB) == 0) dead = true;  // released by the close
  });
  return s.ok() && dead;
}

Status Spool::ReplayWal(const std::function<Status(const CaptureId&, bool* known)>& known, WalReplayTally* tally) {
  const std::string dir = wal_dir();
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return errno == ENOENT ? Status::Ok() : Status::FromErrno("stat " + dir, errno);
  std::vector<std::string> names;
  std::vector<std::string> unfinished;  // "<segment>.new": a writer died while preparing it
  CCMAIL_RETURN_IF_ERROR(ForEachEntry(dir, [&](const std::string& n) {
    if (SpoolWal::IsSegmentName(n)) names.push_back(n);
    if (n.size() > 4 && n.compare(n.size() - 4, 4, ".new") == 0 && SpoolWal::IsSegmentName(n.substr(0, n.size() - 4)))
      unfinished.push_back(n);
  }));
  for (const std::string& n : unfinished) {
    UniqueFd fd(::open((dir + "/" + n).c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (fd.valid() && ::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) {
      Status u = io_->Unlink(dir + "/" + n);  // it never held a record
      if (!u.ok() && !u.IsNotFound()) return u;
    }
  }
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) {
    const std::string path = dir + "/" + n;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd.valid()) {
      if (errno == ENOENT) continue;  // its writer checkpointed it meanwhile
      return Status::FromErrno("open " + path, errno);
    }
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK) return Status::FromErrno("flock " + path, errno);
      ++tally->live_skipped;  // its writer is alive and will checkpoint it
      continue;
    }
    if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat " + path, errno);
    if (st.st_nlink == 0) continue;  // checkpointed by its writer between our open and our lock
    // Read whole below: only a regular file of a plausible size is a segment of ours.
    constexpr off_t kMaxSegmentBytes = off_t{1} << 30;
    if (!S_ISREG(st.st_mode) || st.st_size > kMaxSegmentBytes)
      return Status::Corrupt(path + " is not a spool log segment (not a regular file, or larger than 1 GiB)");
    std::string bytes(static_cast<size_t>(st.st_size), '\0');
    CCMAIL_RETURN_IF_ERROR(PreadAll(fd.get(), bytes.data(), bytes.size(), 0, path));
    bool new_dir_changed = false;
    for (const SpoolWal::Record& r : SpoolWal::ReadSegment(bytes))
      CCMAIL_RETURN_IF_ERROR(ReplayRecord(r, known, tally, &new_dir_changed).WithContext("spool log " + path));
    if (new_dir_changed) CCMAIL_RETURN_IF_ERROR(io_->FsyncDirFd(new_dir_fd_.get(), new_dir()));
    CCMAIL_RETURN_IF_ERROR(io_->Unlink(path));
    CCMAIL_RETURN_IF_ERROR(io_->FsyncDir(dir));
    ++tally->segments;
  }
  return Status::Ok();
}

Status Spool::SyncNewDir() { return io_->FsyncDir(new_dir(), kCrashSpoolUnlinkDirFsynced); }

std::string QuarantineReason(std::string reason) {
  if (reason.size() > kMaxQuarantineReason) reason = reason.substr(0, kMaxQuarantineReason) + "...";
  return reason;
}

Status Spool::WriteReasonFile(const std::string& reason_path, const std::string& reason) {
  const std::string tmp_path = reason_path + ".tmp";
  // Left by an attempt that was interrupted before its rename: it holds no other reason.
  Status stale = io_->Unlink(tmp_path);
  if (!stale.ok() && !stale.IsNotFound()) return stale;
  UniqueFd fd;
  CCMAIL_RETURN_IF_ERROR(io_->CreateExclusive(tmp_path, 0600, &fd));
  const std::string text = reason + "\n";
  Status status = io_->WriteAll(fd.get(), text.data(), text.size(), reason_path);
  if (status.ok()) status = io_->Fsync(fd.get(), reason_path);
  Status closed = io_->Close(&fd, reason_path);
  if (status.ok()) status = closed;
  if (status.ok()) status = io_->Rename(tmp_path, reason_path);
  if (!status.ok()) (void)io_->Unlink(tmp_path);
  return status;
}

void Spool::ForgetFromBacklog(uint64_t file_size) {
  // Never below zero: another process may have committed the file.
  uint64_t count = count_.load(std::memory_order_relaxed);
  while (count > 0 && !count_.compare_exchange_weak(count, count - 1, std::memory_order_relaxed)) {}
  uint64_t bytes = bytes_.load(std::memory_order_relaxed);
  while (bytes > 0 &&
         !bytes_.compare_exchange_weak(bytes, bytes >= file_size ? bytes - file_size : 0, std::memory_order_relaxed)) {
  }
}

Status Spool::Quarantine(const CaptureId& id, const std::string& reason) {
  const std::string from = new_dir() + "/" + id.ToString();
  const std::string to = corrupt_dir() + "/" + id.ToString();
  const std::string reason_path = to + ".reason";
  const std::string recorded = QuarantineReason(reason);
  // Reason first: corrupt/<id> never appears without it unless it could not be written.
  if (Status rs = WriteReasonFile(reason_path, recorded); !rs.ok())
    LogWarning("spool: reason file %s (%s): %s", reason_path.c_str(), recorded.c_str(), rs.ToString().c_str());
  struct stat st;
  const uint64_t size = ::stat(from.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  {
    // A capture committed through the log has an unsynced file; once it is out of new/,
    // neither the checkpoint nor a replay looks after it any more, so its bytes go to disk now.
    UniqueFd fd(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return Status::FromErrno("open " + from, errno);
    CCMAIL_RETURN_IF_ERROR(io_->Fsync(fd.get(), from));
  }
  CCMAIL_RETURN_IF_ERROR(io_->Rename(from, to));
  CCMAIL_RETURN_IF_ERROR(io_->FsyncDir(corrupt_dir()));
  CCMAIL_RETURN_IF_ERROR(io_->FsyncDir(new_dir()));
  ForgetFromBacklog(size);
  return Status::Ok();
}

Status Spool::CleanTmp(const std::function<bool(const std::string&)>& writer_is_live, size_t* removed) {
  size_t n = 0;
  std::vector<std::string> victims;
  CCMAIL_RETURN_IF_ERROR(ForEachEntry(tmp_dir(), [&](const std::string& name) {
    std::string tag = TmpWriterTag(name);
    if (tag.empty()) return;  // not ours: leave it for the administrator
    if (!writer_is_live(tag)) victims.push_back(name);
  }));
  for (const auto& v : victims) {
    Status s = io_->Unlink(tmp_dir() + "/" + v);
    if (s.ok()) ++n;
    else if (!s.IsNotFound()) return s;
  }
  if (n > 0) CCMAIL_RETURN_IF_ERROR(io_->FsyncDir(tmp_dir()));
  if (removed) *removed = n;
  return Status::Ok();
}

Status Spool::RescanStats() {
  uint64_t count = 0, bytes = 0;
  std::string dir = new_dir();
  CCMAIL_RETURN_IF_ERROR(ForEachEntry(dir, [&](const std::string& n) {
    if (!CaptureId::Parse(n)) return;
    struct stat st;
    if (::stat((dir + "/" + n).c_str(), &st) != 0) return;  // removed meanwhile
    ++count;
    bytes += static_cast<uint64_t>(st.st_size);
  }));
  count_.store(count);
  bytes_.store(bytes);
  last_scan_ms_.store(WallClockMs());
  return Status::Ok();
}

SpoolStats Spool::Stats() {
  int64_t now = WallClockMs();
  if (now - last_scan_ms_.load(std::memory_order_relaxed) >= stats_refresh_ms_) {
    std::unique_lock<std::mutex> lock(scan_mu_, std::try_to_lock);
    if (lock.owns_lock() && now - last_scan_ms_.load() >= stats_refresh_ms_) {
      Status s = RescanStats();
      if (!s.ok()) {
        last_scan_ms_.store(now);  // do not walk on every call while the error lasts
        LogWarning("spool: backlog scan: %s", s.ToString().c_str());
      }
    }
  }
  return SpoolStats{count_.load(std::memory_order_relaxed), bytes_.load(std::memory_order_relaxed)};
}


// ---- quarantine (ccmailctl) ----

Status Spool::ListQuarantined(std::vector<QuarantinedCapture>* out) const {
  out->clear();
  std::string dir = corrupt_dir();
  CCMAIL_RETURN_IF_ERROR(ForEachEntry(dir, [&](const std::string& n) {
    auto id = CaptureId::Parse(n);
    if (!id) return;  // "<id>.reason", "<id>.reason.tmp" or a stranger: not a capture
    QuarantinedCapture q;
    q.id = *id;
    struct stat st;
    if (::stat((dir + "/" + n).c_str(), &st) != 0) return;  // requeued meanwhile
    q.file_size = static_cast<uint64_t>(st.st_size);
    UniqueFd fd(::open((dir + "/" + n + ".reason").c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.valid()) {
      char buf[4096];
      ssize_t r;
      // A reason is one line written by Quarantine; cap what we read from a hand-made one.
      while (q.reason.size() < 64 * 1024 && (r = ::read(fd.get(), buf, sizeof buf)) != 0) {
        if (r < 0) {
          if (errno == EINTR) continue;
          break;
        }
        q.reason.append(buf, static_cast<size_t>(r));
      }
      while (!q.reason.empty() && (q.reason.back() == '\n' || q.reason.back() == '\r')) q.reason.pop_back();
    } else if (errno != ENOENT) {
      q.reason = "(reason file unreadable: " + std::string(std::strerror(errno)) + ")";
    }
    out->push_back(std::move(q));
  }));
  std::sort(out->begin(), out->end(), [](const QuarantinedCapture& a, const QuarantinedCapture& b) { return a.id < b.id; });
  return Status::Ok();
}

Status Spool::VerifyQuarantined(const CaptureId& id, SpoolEntry* entry) const {
  return VerifyCapture(corrupt_dir(), id, entry);
}

Status Spool::Requeue(const CaptureId& id) {
  std::string from = corrupt_dir() + "/" + id.ToString();
  std::string to = new_dir() + "/" + id.ToString();
  SpoolEntry entry;
  Status v = VerifyQuarantined(id, &entry);
  if (v.IsNotFound()) return Status::NotFound("capture " + id.ToString() + " is not in " + corrupt_dir());
  if (v.IsCorrupt()) return Status::Corrupt("capture " + id.ToString() + " still does not verify, left in " +
                                            corrupt_dir() + ": " + v.message());
  if (!v.ok()) return v;
  entry.fd.reset();
  // rename() would silently replace an existing new/<id>; that file is the queue of
  // record and must never be overwritten.
  struct stat st;
  if (::stat(to.c_str(), &st) == 0) return Status::AlreadyExists(to + " already exists; " + from + " left in place");
  CCMAIL_RETURN_IF_ERROR(io_->Rename(from, to));
  // new/ first: once the name is durable there the capture is queued again; a crash
  // before corrupt/ is synced at worst leaves a second, identical name the exporter
  // de-duplicates by capture id.
  CCMAIL_RETURN_IF_ERROR(io_->FsyncDir(new_dir()));
  CCMAIL_RETURN_IF_ERROR(io_->FsyncDir(corrupt_dir()));
  Status u = io_->Unlink(from + ".reason");
  if (!u.ok() && !u.IsNotFound()) return u.WithContext("requeued " + id.ToString() + " but kept its reason file");
  if (u.ok()) CCMAIL_RETURN_IF_ERROR(io_->FsyncDir(corrupt_dir()));
  count_.fetch_add(1);
  bytes_.fetch_add(entry.file_size);
  return Status::Ok();
}

}  // namespace ccmail::store
