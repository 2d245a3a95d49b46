// claim_table.cpp - see ccmail/shm/claim_table.h for the contract.
//
// WHY the layout is hand-made: Boost 1.74's mutexes, conditions and segment
// manager hang for ever after a holder is kill -9ed (docs/DESIGN.md §2.8). Here
// every shared word is a lock-free 64/32-bit atomic changed by CAS, and all
// liveness questions go to kernel-released locks.
#include "ccmail/shm/claim_table.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/futex.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>

#include "ccmail/common/clock.h"
#include "ccmail/common/log.h"
#include "ccmail/common/unique_fd.h"
#include "ccmail/config/config.h"
#include "crash_point.h"

namespace bip = boost::interprocess;

namespace ccmail::shm {

namespace {

constexpr uint64_t kMagic = 0x31304d4c43434d43ull;  // "CMCCLM01" little-endian
constexpr uint32_t kInitReady = 1;

// ---- slot control word: state:4 | owner:16 | gen:44 ----
constexpr uint64_t kStateMask = 0xF;
constexpr int kOwnerShift = 4;
constexpr uint64_t kOwnerMask = 0xFFFF;
constexpr int kGenShift = 20;
constexpr uint64_t kGenMask = (uint64_t{1} << 44) - 1;

constexpr uint64_t Pack(SlotState s, uint32_t owner, uint64_t gen) {
  return static_cast<uint64_t>(s) | (uint64_t{owner & kOwnerMask} << kOwnerShift) |
         ((gen & kGenMask) << kGenShift);
}
constexpr SlotState StateOf(uint64_t w) { return static_cast<SlotState>(w & kStateMask); }
constexpr uint32_t OwnerOf(uint64_t w) { return static_cast<uint32_t>((w >> kOwnerShift) & kOwnerMask); }
constexpr uint64_t GenOf(uint64_t w) { return w >> kGenShift; }

// ---- registry control word: state:4 | rgen:60 ----
constexpr uint64_t RPack(RegistryView::State s, uint64_t rgen) {
  return static_cast<uint64_t>(s) | (rgen << 4);
}
constexpr RegistryView::State RStateOf(uint64_t w) { return static_cast<RegistryView::State>(w & 0xF); }
constexpr uint64_t RGenOf(uint64_t w) { return w >> 4; }

struct alignas(64) ShmHeader {
  // identity: written by the creator before init_state, read-only afterwards
  uint64_t magic;
  uint32_t layout_version;
  uint32_t header_size;
  uint32_t slot_size;
  uint32_t registry_entry_size;
  uint32_t nslots;
  uint32_t nregistry;
  uint64_t total_size;
  uint8_t boot_id[16];
  uint64_t incarnation;
  uint64_t created_ns;
  alignas(64) std::atomic<uint32_t> init_state;
  alignas(64) std::atomic<uint32_t> doorbell;  // futex word
  alignas(64) std::atomic<uint64_t> exporter_epoch;
  std::atomic<uint64_t> exporter_heartbeat_ns;
  std::atomic<uint64_t> exporter_progress_ns;
  std::atomic<uint64_t> exporter_exported_total;
  std::atomic<uint64_t> backlog_count;
  std::atomic<uint64_t> backlog_bytes;
  std::atomic<uint64_t> exporter_pid;
  alignas(64) std::atomic<uint64_t> overflow_count;
  std::atomic<uint64_t> bad_payload_count;
};

struct alignas(64) ShmRegistryEntry {
  std::atomic<uint64_t> rctl;
  std::atomic<int64_t> pid;
  std::atomic<uint32_t> role;
};

struct alignas(64) ShmSlot {
  std::atomic<uint64_t> ctl;
  // payload: written only by the owner while RESERVED, read after acquiring ctl
  uint8_t capture_id[16];
  uint64_t size;
  uint64_t enqueue_ns;
  uint32_t publisher;
  uint32_t check;
};

static_assert(std::atomic<uint64_t>::is_always_lock_free, "slot word must be lock-free across processes");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "doorbell must be lock-free across processes");
static_assert(std::atomic<int64_t>::is_always_lock_free);
static_assert(sizeof(ShmSlot) == 64 && alignof(ShmSlot) == 64);
static_assert(sizeof(ShmRegistryEntry) == 64 && alignof(ShmRegistryEntry) == 64);
static_assert(sizeof(ShmHeader) % 64 == 0 && alignof(ShmHeader) == 64);
static_assert(sizeof(std::atomic<uint64_t>) == 8);

uint32_t PayloadCheck(const uint8_t* id, uint64_t size, uint64_t ns, uint32_t publisher) {
  // Cheap mix (not a CRC): catches a payload torn by a bug, costs ~2 ns.
  uint64_t a, b;
  std::memcpy(&a, id, 8);
  std::memcpy(&b, id + 8, 8);
  uint64_t h = a * 0x9E3779B97F4A7C15ull ^ b;
  h = (h ^ (h >> 29)) * 0xBF58476D1CE4E5B9ull ^ size;
  h = (h ^ (h >> 31)) * 0x94D049BB133111EBull ^ ns ^ (uint64_t{publisher} << 40);
  h ^= h >> 32;
  return static_cast<uint32_t>(h) | 1u;  // never 0: a zeroed slot fails the check
}

size_t SegmentSize(uint32_t nslots, uint32_t nregistry) {
  return sizeof(ShmHeader) + size_t{nregistry} * sizeof(ShmRegistryEntry) + size_t{nslots} * sizeof(ShmSlot);
}

uint32_t RandomU32() {
  uint32_t v = 0;
  if (getrandom(&v, sizeof v, GRND_NONBLOCK) != sizeof v) v = static_cast<uint32_t>(WallClockNs() ^ getpid());
  return v;
}

Status ParseBootId(const std::string& text, std::array<uint8_t, 16>* out) {
  std::string hex;
  for (char c : text) {
    if (std::isxdigit(static_cast<unsigned char>(c))) hex.push_back(c);
    else if (c != '-' && c != '\n' && c != ' ') return Status::InvalidArgument("boot id '" + text + "': not a UUID");
  }
  if (hex.size() != 32) return Status::InvalidArgument("boot id '" + text + "': not 32 hex digits");
  for (size_t i = 0; i < 16; ++i) (*out)[i] = static_cast<uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
  return Status::Ok();
}

std::string HexBoot(const uint8_t* b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 16; ++i) {
    s.push_back(d[b[i] >> 4]);
    s.push_back(d[b[i] & 15]);
  }
  return s;
}

std::string Octal(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0%03o", static_cast<unsigned>(m & 07777));
  return buf;
}

// The runtime directory holds every file the table's safety rests on, so only the
// bridge (or root) may be able to create, rename or unlink there. `required_owner`
// is the euid for a writer; a reader (ccmailctl) accepts any owner and trusts it.
Status OpenRuntimeDirectory(const std::string& dir, bool writer, UniqueFd* out, uid_t* owner) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    int e = errno;
    if (e == ELOOP || e == ENOTDIR)
      return Status::Unavailable("runtime_directory " + dir + " is unsafe: not a directory (a symbolic link?)");
    return Status::FromErrno("open runtime_directory " + dir, e);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat runtime_directory " + dir, errno);
  if (writer && st.st_uid != ::geteuid() && st.st_uid != 0)
    return Status::Unavailable("runtime_directory " + dir + " is unsafe: owned by uid " + std::to_string(st.st_uid) +
                               ", not by this process's user (uid " + std::to_string(::geteuid()) + ") or root");
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    return Status::Unavailable("runtime_directory " + dir + " is unsafe: mode " + Octal(st.st_mode) +
                               " lets its group or others create and replace files (expected 0750)");
  *owner = st.st_uid;
  *out = std::move(fd);
  return Status::Ok();
}

// Checks an open file of the runtime directory: a regular file of `owner` that no
// one else can write (its owner alone can shrink it, so a mapping of it cannot SIGBUS).
Status CheckRuntimeFile(int fd, const std::string& path, uid_t owner, struct stat* st_out) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return Status::FromErrno("fstat " + path, errno);
  if (!S_ISREG(st.st_mode)) return Status::Corrupt(path + " is not a regular file");
  if (st.st_uid != owner)
    return Status::Corrupt(path + " is owned by uid " + std::to_string(st.st_uid) + ", expected uid " +
                           std::to_string(owner));
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    return Status::Corrupt(path + " has mode " + Octal(st.st_mode) + ": writable by its group or others");
  if (st_out != nullptr) *st_out = st;
  return Status::Ok();
}

// Opens (creating) a lock file of the runtime directory, mode 0600: any descriptor
// of a lock file, even read-only, can hold flock and OFD read locks, which would
// block registration and creation; so no one but the bridge user may open one.
// A file of ours with another mode (an older version made them 0660) is fixed.
Status OpenLockFile(int dir_fd, const std::string& dir, const std::string& name, UniqueFd* out) {
  const std::string path = dir + "/" + name;
  UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) return Status::FromErrno("open " + path, errno);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat " + path, errno);
  if (!S_ISREG(st.st_mode)) return Status::Corrupt(path + " is not a regular file");
  if (st.st_uid != ::geteuid())
    return Status::Corrupt(path + " is owned by uid " + std::to_string(st.st_uid) + ", not by this process's user (uid " +
                           std::to_string(::geteuid()) + ")");
  if ((st.st_mode & 0777) != 0600 && ::fchmod(fd.get(), 0600) != 0) return Status::FromErrno("fchmod 0600 " + path, errno);
  *out = std::move(fd);
  return Status::Ok();
}

// flock with a bounded wait: the init lock is held only for the few ms a
// creation takes; a holder that is stopped for longer makes us report Busy.
Status LockInit(int dir_fd, const std::string& dir, const std::string& name, UniqueFd* out) {
  const std::string path = dir + "/" + name;
  UniqueFd fd;
  CCMAIL_RETURN_IF_ERROR(OpenLockFile(dir_fd, dir, name, &fd));
  for (int i = 0; i < 1000; ++i) {  // ~10 s
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) {
      *out = std::move(fd);
      return Status::Ok();
    }
    if (errno != EWOULDBLOCK && errno != EINTR) return Status::FromErrno("flock " + path, errno);
    ::usleep(10000);
  }
  return Status::Busy("init lock " + path + " held for more than 10 s by another process");
}

long FutexCall(std::atomic<uint32_t>* addr, int op, uint32_t val, const timespec* ts) {
  // Shared futex (no FUTEX_PRIVATE_FLAG): the word lives in a mapping shared
  // across processes. C++20 atomic::wait uses private futexes (docs/DESIGN.md §4.5).
  return ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), op, val, ts, nullptr, 0);
}

// Lets bip::mapped_region map a descriptor we opened and checked ourselves
// (bip::file_mapping would reopen the path, without O_NOFOLLOW or O_CLOEXEC).
class CheckedFile {
 public:
  explicit CheckedFile(int fd) : fd_(fd) {}
  bip::mapping_handle_t get_mapping_handle() const {
    bip::mapping_handle_t h;
    h.handle = fd_;
    h.is_xsi = false;
    return h;
  }

 private:
  int fd_;
};

}  // namespace

struct ClaimTable::Impl {
  TableOptions opt;
  std::string path;       // <runtime_directory>/<name>-vN
  std::string file_name;  // <name>-vN
  UniqueFd dir_fd;        // the checked runtime directory; every file is opened relative to it
  bip::mapped_region region;
  ShmHeader* hdr = nullptr;
  ShmRegistryEntry* reg = nullptr;
  ShmSlot* slots = nullptr;
  uint32_t nslots = 0;
  uint32_t nregistry = 0;
  ino_t ino = 0;
  dev_t dev = 0;
  uint64_t incarnation = 0;
  int check_fd = -1;  // live.lock descriptor used for F_OFD_GETLK (holds no lock); -1: unreadable (reader)
  std::atomic<uint32_t> claim_cursor{0};
  // Where Publish looks for a free slot first: one per process and table, random at open so
  // that several milters start apart. Not per thread: libmilter runs each SMTP connection
  // in a new thread, and a per-thread start cost a getrandom and a cold slot per capture.
  std::atomic<uint32_t> publish_cursor{RandomU32()};

  ~Impl() {
    if (check_fd >= 0) ::close(check_fd);
  }
};

namespace {

// Validates a mapped table against what we expect; message names the mismatch.
Status Validate(const ShmHeader* h, size_t mapped, const TableOptions& opt, const std::array<uint8_t, 16>& boot) {
  if (mapped < sizeof(ShmHeader)) return Status::Corrupt("table smaller than its header (" + std::to_string(mapped) + " bytes)");
  if (h->magic != kMagic) return Status::Corrupt("bad magic (not a ccmail-bridge claim table)");
  if (h->layout_version != kLayoutVersion)
    return Status::Corrupt("layout version " + std::to_string(h->layout_version) + ", this build uses " +
                           std::to_string(kLayoutVersion));
  if (h->header_size != sizeof(ShmHeader) || h->slot_size != sizeof(ShmSlot) ||
      h->registry_entry_size != sizeof(ShmRegistryEntry))
    return Status::Corrupt("header/slot/registry entry size differ from this build");
  if (h->nslots != opt.slots || h->nregistry != opt.registry)
    return Status::Corrupt("table has " + std::to_string(h->nslots) + " slots / " + std::to_string(h->nregistry) +
                           " registry entries, configuration says " + std::to_string(opt.slots) + " / " +
                           std::to_string(opt.registry));
  if (h->total_size != SegmentSize(h->nslots, h->nregistry) || mapped != h->total_size)
    return Status::Corrupt("table size " + std::to_string(mapped) + " does not match its header");
  if (std::memcmp(h->boot_id, boot.data(), 16) != 0)
    return Status::Corrupt("table was created in another boot (" + HexBoot(h->boot_id) + ", now " +
                           HexBoot(boot.data()) + ")");
  return Status::Ok();
}

}  // namespace

// ---------------------------------------------------------------- options

Status TableOptionsFromConfig(const Config& cfg, TableOptions* opt) {
  uint64_t v = 0;
  CCMAIL_RETURN_IF_ERROR(cfg.GetString("claim_table_name", &opt->name));
  CCMAIL_RETURN_IF_ERROR(cfg.GetString("runtime_directory", &opt->runtime_directory));
  CCMAIL_RETURN_IF_ERROR(cfg.GetUInt("claim_table_slots", 1, uint64_t{1} << 24, &v));
  opt->slots = static_cast<uint32_t>(v);
  CCMAIL_RETURN_IF_ERROR(cfg.GetUInt("claim_table_registry", 1, kMaxRegistry, &v));
  opt->registry = static_cast<uint32_t>(v);
  CCMAIL_RETURN_IF_ERROR(cfg.GetString("bridge_group", &opt->group));
  return Status::Ok();
}

Status ReadBootId(std::array<uint8_t, 16>* out) {
  const char* path = "/proc/sys/kernel/random/boot_id";
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return Status::FromErrno(std::string("read ") + path, errno ? errno : EIO);
  return ParseBootId(line, out).WithContext(path);
}

Status CheckRuntimeDirectory(const std::string& dir) {
  UniqueFd fd;
  uid_t owner = 0;
  return OpenRuntimeDirectory(dir, /*writer=*/true, &fd, &owner);
}

std::string ClaimTable::FileName(const TableOptions& opt) { return opt.name + "-v" + std::to_string(kLayoutVersion); }

std::string ClaimTable::TablePath(const TableOptions& opt) { return opt.runtime_directory + "/" + FileName(opt); }

Status ClaimTable::Remove(const TableOptions& opt) {
  std::string path = TablePath(opt);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Status::FromErrno("unlink " + path, errno);
  return Status::Ok();
}

// ---------------------------------------------------------------- open / create

namespace {

// What Open found under the table's name, with the init lock held (writers).
enum class Found { kValid, kAbsent, kHalfBuilt, kInvalid };

// Maps the whole of a checked table file. A writer maps read-write, a reader read-only.
Status MapFile(ClaimTable::Impl* im, int fd, size_t size, bool writer) {
  try {
    bip::mapped_region region(CheckedFile(fd), writer ? bip::read_write : bip::read_only, 0, size);
    im->region.swap(region);
  } catch (const bip::interprocess_exception& e) {
    return Status::FromErrno("mmap " + im->path + ": " + e.what(), e.get_native_error() ? e.get_native_error() : EIO);
  }
  return Status::Ok();
}

// Opens, checks and maps an existing table. *found says what it is; a non-Ok Status
// with kInvalid or kHalfBuilt carries the reason.
Status MapExisting(ClaimTable::Impl* im, uid_t owner, bool writer, const std::array<uint8_t, 16>& boot, Found* found) {
  *found = Found::kInvalid;
  UniqueFd fd(::openat(im->dir_fd.get(), im->file_name.c_str(),
                       (writer ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd.valid()) {
    int e = errno;
    if (e == ENOENT) {
      *found = Found::kAbsent;
      return Status::NotFound(im->path + " does not exist");
    }
    if (e == ELOOP) return Status::Corrupt(im->path + " is a symbolic link");
    // Not ours (root's 0600, say): a writer replaces it, a reader reports it.
    if (e == EACCES || e == EPERM)
      return Status::Corrupt(im->path + " cannot be opened by uid " + std::to_string(::geteuid()) + ": " +
                             std::strerror(e));
    return Status::FromErrno("open " + im->path, e);
  }
  struct stat st;
  // A reader also accepts root's files: root may run anything, a forged table is not its concern.
  Status s = CheckRuntimeFile(fd.get(), im->path, owner, &st);
  if (!s.ok() && !writer && s.IsCorrupt()) {
    struct stat rs;
    if (::fstat(fd.get(), &rs) == 0 && rs.st_uid == 0) s = CheckRuntimeFile(fd.get(), im->path, 0, &st);
  }
  if (!s.ok()) return s;
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < sizeof(ShmHeader)) {
    // Only the creator between O_EXCL and posix_fallocate leaves this (we hold the init lock).
    *found = Found::kHalfBuilt;
    return Status::Unavailable(im->path + ": " + std::to_string(size) + " bytes, left half-built by a dead creator");
  }
  if (size != SegmentSize(im->opt.slots, im->opt.registry)) {
    // Never map a size we did not expect: read the header by pread for a useful message.
    ShmHeader h;
    if (::pread(fd.get(), &h, sizeof h, 0) != static_cast<ssize_t>(sizeof h)) return Status::Corrupt(im->path + ": unreadable header");
    Status v = Validate(&h, size, im->opt, boot);
    return Status::Corrupt(v.ok() ? "size " + std::to_string(size) + " bytes, expected " +
                                        std::to_string(SegmentSize(im->opt.slots, im->opt.registry))
                                  : v.message());
  }
  CCMAIL_RETURN_IF_ERROR(MapFile(im, fd.get(), size, writer));
  auto* h = static_cast<const ShmHeader*>(im->region.get_address());
  if (h->init_state.load(std::memory_order_acquire) != kInitReady) {
    *found = Found::kHalfBuilt;
    return Status::Unavailable(im->path + ": left half-initialised by a dead creator");
  }
  CCMAIL_RETURN_IF_ERROR(Validate(h, size, im->opt, boot));
  im->ino = st.st_ino;
  im->dev = st.st_dev;
  *found = Found::kValid;
  return Status::Ok();
}

Status CreateNew(ClaimTable::Impl* im, const std::array<uint8_t, 16>& boot) {
  const TableOptions& opt = im->opt;
  const size_t size = SegmentSize(opt.slots, opt.registry);
  gid_t gid = static_cast<gid_t>(-1);
  if (!opt.group.empty()) {
    struct group* g = ::getgrnam(opt.group.c_str());
    if (g == nullptr) return Status::InvalidArgument("bridge_group '" + opt.group + "': no such group");
    gid = g->gr_gid;
  }
  // The group (administrators running ccmailctl) may read, never write.
  const mode_t mode = opt.group.empty() ? 0600 : 0640;
  UniqueFd fd(::openat(im->dir_fd.get(), im->file_name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd.valid()) return Status::FromErrno("create " + im->path, errno);
  auto undo = [&](Status s) {
    (void)::unlinkat(im->dir_fd.get(), im->file_name.c_str(), 0);
    return s;
  };
  if (gid != static_cast<gid_t>(-1) && ::fchown(fd.get(), static_cast<uid_t>(-1), gid) != 0)
    return undo(Status::FromErrno("fchown " + im->path + " to group " + opt.group, errno));
  if (::fchmod(fd.get(), mode) != 0) return undo(Status::FromErrno("fchmod " + im->path, errno));  // umask
  // posix_fallocate, not ftruncate: a full file system must be an error here,
  // not a SIGBUS at the first touch of a page.
  int rc = detail::ShmFailAt(detail::kPointCreateBeforeFallocate) ? ENOSPC : 0;
  if (rc == 0) {
    detail::ShmCrashPoint(detail::kPointCreateBeforeFallocate);
    rc = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(size));
  }
  if (rc != 0) return undo(Status::FromErrno("posix_fallocate " + std::to_string(size) + " bytes for " + im->path, rc));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return undo(Status::FromErrno("fstat " + im->path, errno));
  if (Status s = MapFile(im, fd.get(), size, /*writer=*/true); !s.ok()) return undo(s);
  im->ino = st.st_ino;
  im->dev = st.st_dev;
  // fallocated pages read as zero: every slot is FREE(-,0), every registry
  // entry FREE(0), init_state 0. Fill the identity, then init last.
  auto* h = static_cast<ShmHeader*>(im->region.get_address());
  h->magic = kMagic;
  h->layout_version = kLayoutVersion;
  h->header_size = sizeof(ShmHeader);
  h->slot_size = sizeof(ShmSlot);
  h->registry_entry_size = sizeof(ShmRegistryEntry);
  h->nslots = opt.slots;
  h->nregistry = opt.registry;
  h->total_size = size;
  std::memcpy(h->boot_id, boot.data(), 16);
  uint64_t inc = 0;
  if (getrandom(&inc, sizeof inc, 0) != sizeof inc) inc = WallClockNs();
  h->incarnation = inc | 1;
  h->created_ns = WallClockNs();
  if (detail::ShmFailAt(detail::kPointCreateBeforeReady)) {
    // Left half-initialised, as a creator that died here leaves it: the next open replaces it.
    return Status::Unavailable("claim table " + im->path + ": creation failed before ready (injected)");
  }
  detail::ShmCrashPoint(detail::kPointCreateBeforeReady);
  h->init_state.store(kInitReady, std::memory_order_release);
  return Status::Ok();
}

}  // namespace

Status ClaimTable::Open(const TableOptions& opt, std::unique_ptr<ClaimTable>* out) {
  detail::InitCrashPoints();
  if (opt.slots == 0 || opt.slots > (1u << 24)) return Status::InvalidArgument("claim_table_slots must be 1..16777216");
  if (opt.registry == 0 || opt.registry > kMaxRegistry)
    return Status::InvalidArgument("claim_table_registry must be 1.." + std::to_string(kMaxRegistry));
  if (opt.name.empty() || opt.name.find('/') != std::string::npos || opt.name[0] == '.')
    return Status::InvalidArgument("claim_table_name '" + opt.name + "' must be a non-empty file name without '/'");
  std::array<uint8_t, 16> boot{};
  if (opt.boot_id.empty()) {
    CCMAIL_RETURN_IF_ERROR(ReadBootId(&boot));
  } else {
    CCMAIL_RETURN_IF_ERROR(ParseBootId(opt.boot_id, &boot));
  }

  std::unique_ptr<ClaimTable> t(new ClaimTable());
  t->impl_ = std::make_unique<Impl>();
  Impl* im = t->impl_.get();
  im->opt = opt;
  im->file_name = FileName(opt);
  im->path = TablePath(opt);
  t->path_ = im->path;
  const bool writer = !opt.read_only;
  uid_t dir_owner = 0;
  CCMAIL_RETURN_IF_ERROR(OpenRuntimeDirectory(opt.runtime_directory, writer, &im->dir_fd, &dir_owner));

  if (!writer) {
    // ccmailctl: no lock, no creation, no repair; a table being built is "unavailable".
    Found found;
    Status s = MapExisting(im, dir_owner, /*writer=*/false, boot, &found);
    if (found == Found::kAbsent) return Status::Unavailable("claim table " + im->path + " does not exist");
    if (!s.ok()) return s.IsCorrupt() ? s.WithContext("claim table " + im->path + " refused") : s;
    // live.lock is the bridge's alone (0600): a reader that cannot open it sees every
    // registry entry as possibly alive.
    im->check_fd = ::openat(im->dir_fd.get(), "live.lock", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  } else {
    UniqueFd init_lock;  // released at return: creation is finished or abandoned
    CCMAIL_RETURN_IF_ERROR(LockInit(im->dir_fd.get(), opt.runtime_directory, opt.name + ".init.lock", &init_lock));
    Found found;
    Status s = MapExisting(im, ::geteuid(), /*writer=*/true, boot, &found);
    switch (found) {
      case Found::kValid:
        break;
      case Found::kAbsent:
        if (!opt.create_if_missing) return Status::Unavailable("claim table " + im->path + " does not exist");
        break;
      case Found::kHalfBuilt:
        // We hold the init lock, so nobody is creating: the creator died mid-way.
        if (!opt.create_if_missing && !opt.recreate_if_invalid) return s;
        break;
      case Found::kInvalid:
        if (!s.IsCorrupt() || !opt.recreate_if_invalid) return s.WithContext("claim table " + im->path + " refused");
        LogWarning("claim table %s refused (%s): replacing it with an empty table", im->path.c_str(), s.message().c_str());
        break;
    }
    if (found != Found::kValid) {
      im->region = bip::mapped_region();
      if (found != Found::kAbsent) {
        if (detail::ShmFailAt(detail::kPointTableReset))
          return Status::Unavailable("claim table " + im->path + ": replacing it failed (injected)");
        detail::ShmCrashPoint(detail::kPointTableReset);
        // The directory is ours alone, so this name can be replaced even when the file is not ours.
        if (::unlinkat(im->dir_fd.get(), im->file_name.c_str(), 0) != 0 && errno != ENOENT)
          return Status::FromErrno("unlink " + im->path, errno);
      }
      CCMAIL_RETURN_IF_ERROR(CreateNew(im, boot));
    }
    UniqueFd check;
    CCMAIL_RETURN_IF_ERROR(OpenLockFile(im->dir_fd.get(), opt.runtime_directory, "live.lock", &check));
    im->check_fd = check.release();
  }

  im->hdr = static_cast<ShmHeader*>(im->region.get_address());
  im->reg = reinterpret_cast<ShmRegistryEntry*>(reinterpret_cast<char*>(im->hdr) + sizeof(ShmHeader));
  im->slots = reinterpret_cast<ShmSlot*>(reinterpret_cast<char*>(im->reg) + size_t{opt.registry} * sizeof(ShmRegistryEntry));
  im->nslots = im->hdr->nslots;
  im->nregistry = im->hdr->nregistry;
  im->incarnation = im->hdr->incarnation;
  *out = std::move(t);
  return Status::Ok();
}

ClaimTable::~ClaimTable() = default;

uint32_t ClaimTable::slot_count() const { return impl_->nslots; }
uint32_t ClaimTable::registry_count() const { return impl_->nregistry; }

Status ClaimTable::CheckSameSegment() const {
  const std::string& path = impl_->path;
  struct stat st;
  if (::fstatat(impl_->dir_fd.get(), impl_->file_name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return Status::Unavailable("claim table " + path + " was removed while in use");
    return Status::FromErrno("stat " + path, errno);
  }
  if (st.st_ino != impl_->ino || st.st_dev != impl_->dev)
    return Status::Unavailable("claim table " + path + " was replaced by another file (split brain)");
  if (impl_->hdr->incarnation != impl_->incarnation)
    return Status::Unavailable("claim table " + path + " incarnation changed under us");
  return Status::Ok();
}

// ---------------------------------------------------------------- registry

namespace {
// true when some other open file description holds a lock on byte idx.
bool ByteLocked(int fd, uint32_t idx) {
  struct flock fl{};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = idx;
  fl.l_len = 1;
  fl.l_pid = 0;
  if (::fcntl(fd, F_OFD_GETLK, &fl) != 0) return true;  // cannot tell: assume alive (never free a live owner)
  return fl.l_type != F_UNLCK;
}
}  // namespace

bool ClaimTable::IsEntryAlive(uint32_t index) const {
  return index < impl_->nregistry && ByteLocked(impl_->check_fd, index);
}

bool ClaimTable::IsRegistrationCurrent(uint32_t index, uint64_t rgen) const {
  if (index >= impl_->nregistry) return false;
  uint64_t w = impl_->reg[index].rctl.load(std::memory_order_acquire);
  return RStateOf(w) == RegistryView::State::kLive && RGenOf(w) == rgen && IsEntryAlive(index);
}

Status ClaimTable::Register(Role role, std::unique_ptr<Registration>* out) {
  Impl* im = impl_.get();
  if (im->opt.read_only) return Status::InvalidArgument("claim table " + im->path + " was opened read-only");
  UniqueFd lock;
  CCMAIL_RETURN_IF_ERROR(OpenLockFile(im->dir_fd.get(), im->opt.runtime_directory, "live.lock", &lock));
  const int fd = lock.get();
  uint32_t start = RandomU32() % im->nregistry;
  for (uint32_t k = 0; k < im->nregistry; ++k) {
    uint32_t i = (start + k) % im->nregistry;
    auto& e = im->reg[i];
    uint64_t w = e.rctl.load(std::memory_order_acquire);
    if (RStateOf(w) != RegistryView::State::kFree) continue;
    uint64_t rg = RGenOf(w);
    if (!e.rctl.compare_exchange_strong(w, RPack(RegistryView::State::kClaiming, rg), std::memory_order_acq_rel))
      continue;
    struct flock fl{};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = i;
    fl.l_len = 1;
    if (::fcntl(fd, F_OFD_SETLK, &fl) != 0) {
      // Byte still held: the previous owner of this entry is somehow alive
      // (or another registrant is between its CAS and lock). Give it back.
      uint64_t exp = RPack(RegistryView::State::kClaiming, rg);
      e.rctl.compare_exchange_strong(exp, RPack(RegistryView::State::kFree, rg), std::memory_order_acq_rel);
      continue;
    }
    e.pid.store(::getpid(), std::memory_order_relaxed);
    e.role.store(static_cast<uint32_t>(role), std::memory_order_relaxed);
    uint64_t exp = RPack(RegistryView::State::kClaiming, rg);
    if (!e.rctl.compare_exchange_strong(exp, RPack(RegistryView::State::kLive, rg), std::memory_order_acq_rel)) {
      // The janitor saw CLAIMING with the byte not yet locked and freed it.
      fl.l_type = F_UNLCK;
      ::fcntl(fd, F_OFD_SETLK, &fl);
      continue;
    }
    std::unique_ptr<Registration> r(new Registration());
    r->table_ = this;
    r->index_ = i;
    r->rgen_ = rg;
    r->role_ = role;
    r->lock_fd_ = lock.release();
    r->pid_ = ::getpid();
    *out = std::move(r);
    return Status::Ok();
  }
  return Status::NoSpace("claim table registry full (" + std::to_string(im->nregistry) +
                         " entries; the exporter frees dead processes' entries)");
}

Registration::~Registration() {
  if (table_ != nullptr && pid_ == ::getpid()) {
    auto& e = table_->impl_->reg[index_];
    uint64_t exp = RPack(RegistryView::State::kLive, rgen_);
    e.rctl.compare_exchange_strong(exp, RPack(RegistryView::State::kFree, rgen_ + 1), std::memory_order_acq_rel);
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the OFD byte after the entry is FREE
}

RegistryView ClaimTable::Entry(uint32_t i) const {
  const auto& e = impl_->reg[i];
  uint64_t w = e.rctl.load(std::memory_order_acquire);
  return RegistryView{RStateOf(w), RGenOf(w), static_cast<pid_t>(e.pid.load(std::memory_order_relaxed)),
                      static_cast<Role>(e.role.load(std::memory_order_relaxed)), ByteLocked(impl_->check_fd, i)};
}

SlotView ClaimTable::Slot(uint32_t i) const {
  uint64_t w = impl_->slots[i].ctl.load(std::memory_order_acquire);
  return SlotView{StateOf(w), OwnerOf(w), GenOf(w)};
}

// ---------------------------------------------------------------- producer

Status ClaimTable::Publish(const Registration& reg, const CaptureBytes& id, uint64_t size) {
  Impl* im = impl_.get();
  // An injected failure of T1/T2 (or of the payload write) leaves the capture to the spool
  // scan, like a full table; a reservation already made is given back (RESERVED -> FREE, g+1).
  auto give_up = [&](ShmSlot* s, uint32_t i, uint64_t g, const char* point) {
    if (s) {
      uint64_t exp = Pack(SlotState::kReserved, reg.index(), g);
      s->ctl.compare_exchange_strong(exp, Pack(SlotState::kFree, 0, g + 1), std::memory_order_release,
                                     std::memory_order_relaxed);
    }
    im->hdr->overflow_count.fetch_add(1, std::memory_order_relaxed);
    return Status::Unavailable(std::string(point) + " failed (injected)" +
                               (s ? " at slot " + std::to_string(i) : std::string()) +
                               "; capture left to the spool scan");
  };
  if (detail::ShmFailAt(detail::kPointSlotReserved)) return give_up(nullptr, 0, 0, detail::kPointSlotReserved);
  const uint32_t n = im->nslots;
  uint32_t i = im->publish_cursor.load(std::memory_order_relaxed) % n;
  for (uint32_t k = 0; k < n; ++k, i = (i + 1 == n ? 0 : i + 1)) {
    ShmSlot& s = im->slots[i];
    uint64_t w = s.ctl.load(std::memory_order_relaxed);
    if (StateOf(w) != SlotState::kFree) continue;
    const uint64_t g = GenOf(w);
    // T1 FREE(-,g) -> RESERVED(me,g)
    if (!s.ctl.compare_exchange_strong(w, Pack(SlotState::kReserved, reg.index(), g), std::memory_order_acquire,
                                       std::memory_order_relaxed))
      continue;
    detail::ShmCrashPoint(detail::kPointSlotReserved);
    if (detail::ShmFailAt(detail::kPointSlotPayloadWritten)) return give_up(&s, i, g, detail::kPointSlotPayloadWritten);
    std::memcpy(s.capture_id, id.data(), 16);
    s.size = size;
    s.enqueue_ns = WallClockNs();
    s.publisher = reg.index();
    s.check = PayloadCheck(s.capture_id, s.size, s.enqueue_ns, s.publisher);
    detail::ShmCrashPoint(detail::kPointSlotPayloadWritten);
    if (detail::ShmFailAt(detail::kPointSlotReady)) return give_up(&s, i, g, detail::kPointSlotReady);
    // T2 RESERVED(me,g) -> READY(me,g), release: the payload is visible first.
    uint64_t exp = Pack(SlotState::kReserved, reg.index(), g);
    if (!s.ctl.compare_exchange_strong(exp, Pack(SlotState::kReady, reg.index(), g), std::memory_order_release,
                                       std::memory_order_relaxed)) {
      // Only R1 can take our RESERVED slot, and only if we were judged dead:
      // our registration was lost. The message is durable; treat like full.
      im->hdr->overflow_count.fetch_add(1, std::memory_order_relaxed);
      return Status::Unavailable("slot " + std::to_string(i) + " taken from a live owner (registration lost?)");
    }
    detail::ShmCrashPoint(detail::kPointSlotReady);
    im->publish_cursor.store(i + 1, std::memory_order_relaxed);
    return Status::Ok();
  }
  im->hdr->overflow_count.fetch_add(1, std::memory_order_relaxed);
  return Status::NoSpace("claim table full (" + std::to_string(n) + " slots); capture left to the spool scan");
}

void ClaimTable::RingDoorbell() {
  if (impl_->opt.read_only) return;
  impl_->hdr->doorbell.fetch_add(1, std::memory_order_release);
  FutexCall(&impl_->hdr->doorbell, FUTEX_WAKE, INT_MAX, nullptr);
}

uint32_t ClaimTable::DoorbellValue() const { return impl_->hdr->doorbell.load(std::memory_order_acquire); }

bool ClaimTable::WaitDoorbell(uint32_t seen, std::chrono::milliseconds timeout) {
  if (impl_->hdr->doorbell.load(std::memory_order_acquire) != seen) return true;
  timespec ts{static_cast<time_t>(timeout.count() / 1000), static_cast<long>((timeout.count() % 1000) * 1000000)};
  FutexCall(&impl_->hdr->doorbell, FUTEX_WAIT, seen, &ts);  // EAGAIN/ETIMEDOUT/EINTR all fine
  return impl_->hdr->doorbell.load(std::memory_order_acquire) != seen;
}

// ---------------------------------------------------------------- consumer

size_t ClaimTable::ClaimReady(const Registration& reg, size_t max, std::vector<Claim>* out) {
  Impl* im = impl_.get();
  const uint32_t n = im->nslots;
  uint32_t i = im->claim_cursor.load(std::memory_order_relaxed) % n;
  size_t got = 0;
  for (uint32_t k = 0; k < n && got < max; ++k, i = (i + 1 == n ? 0 : i + 1)) {
    ShmSlot& s = im->slots[i];
    uint64_t w = s.ctl.load(std::memory_order_relaxed);
    if (StateOf(w) != SlotState::kReady) continue;
    const uint64_t g = GenOf(w);
    if (detail::ShmFailAt(detail::kPointSlotClaimed)) continue;  // stays READY: claimed at a later turn
    // T3 READY(p,g) -> CLAIMED(x,g). Acquire pairs with T2's release.
    if (!s.ctl.compare_exchange_strong(w, Pack(SlotState::kClaimed, reg.index(), g), std::memory_order_acquire,
                                       std::memory_order_relaxed))
      continue;  // someone else claimed it: exactly one CAS wins per (slot, gen)
    Claim c;
    c.slot = i;
    c.gen = g;
    std::memcpy(c.capture_id.data(), s.capture_id, 16);
    c.size = s.size;
    c.enqueue_ns = s.enqueue_ns;
    c.publisher = s.publisher;
    if (s.check != PayloadCheck(s.capture_id, s.size, s.enqueue_ns, s.publisher))
      im->hdr->bad_payload_count.fetch_add(1, std::memory_order_relaxed);
    out->push_back(c);
    ++got;
    detail::ShmCrashPoint(detail::kPointSlotClaimed);
  }
  im->claim_cursor.store(i, std::memory_order_relaxed);
  return got;
}

Status ClaimTable::Complete(const Registration& reg, const Claim& c) {
  if (c.slot >= impl_->nslots) return Status::InvalidArgument("slot " + std::to_string(c.slot) + " out of range");
  ShmSlot& s = impl_->slots[c.slot];
  uint64_t exp = Pack(SlotState::kClaimed, reg.index(), c.gen);
  if (detail::ShmFailAt(detail::kPointSlotFreed))
    return Status::FromErrno("free slot " + std::to_string(c.slot) + " (injected at slot.freed)", EIO);
  // T4 CLAIMED(x,g) -> FREE(-,g+1)
  if (!s.ctl.compare_exchange_strong(exp, Pack(SlotState::kFree, 0, c.gen + 1), std::memory_order_release,
                                     std::memory_order_relaxed))
    return Status::InvalidArgument("slot " + std::to_string(c.slot) + " gen " + std::to_string(c.gen) +
                                   " is no longer claimed by registry entry " + std::to_string(reg.index()));
  detail::ShmCrashPoint(detail::kPointSlotFreed);
  return Status::Ok();
}

RecoveryReport ClaimTable::RecoverDeadOwners(const Registration& me) {
  Impl* im = impl_.get();
  RecoveryReport rep;
  for (uint32_t r = 0; r < im->nregistry; ++r) {
    if (r == me.index()) continue;  // our own byte never conflicts with our GETLK
    auto& e = im->reg[r];
    uint64_t w = e.rctl.load(std::memory_order_acquire);
    if (RStateOf(w) == RegistryView::State::kFree) continue;
    if (ByteLocked(im->check_fd, r)) continue;  // alive (maybe stopped): never touched
    // Dead: the kernel released its lock. A CLAIMING entry may be a live
    // registrant between CAS and lock; freeing it makes that registrant's
    // final CAS fail and it retries elsewhere, which is safe.
    if (RStateOf(w) == RegistryView::State::kLive) {
      for (uint32_t i = 0; i < im->nslots; ++i) {
        ShmSlot& s = im->slots[i];
        uint64_t sw = s.ctl.load(std::memory_order_acquire);
        if (StateOf(sw) != SlotState::kReserved || OwnerOf(sw) != r) continue;
        // R1 RESERVED(o,g) -> FREE(-,g+1)
        if (s.ctl.compare_exchange_strong(sw, Pack(SlotState::kFree, 0, GenOf(sw) + 1), std::memory_order_acq_rel))
          ++rep.reserved_freed;
      }
    }
    if (e.rctl.compare_exchange_strong(w, RPack(RegistryView::State::kFree, RGenOf(w) + 1), std::memory_order_acq_rel))
      ++rep.dead_registrations;
  }
  return rep;
}

uint32_t ClaimTable::RecoverPreviousExporter(const Registration& me) {
  Impl* im = impl_.get();
  uint32_t n = 0;
  for (uint32_t i = 0; i < im->nslots; ++i) {
    ShmSlot& s = im->slots[i];
    uint64_t w = s.ctl.load(std::memory_order_acquire);
    if (StateOf(w) != SlotState::kClaimed || OwnerOf(w) == me.index()) continue;
    // R2 CLAIMED(x,g) -> READY(x,g)
    if (s.ctl.compare_exchange_strong(w, Pack(SlotState::kReady, OwnerOf(w), GenOf(w)), std::memory_order_acq_rel)) ++n;
  }
  return n;
}

uint32_t ClaimTable::FreeReadyIf(const Registration& /*me*/, const std::function<bool(const CaptureBytes&)>& in_ledger) {
  Impl* im = impl_.get();
  uint32_t n = 0;
  for (uint32_t i = 0; i < im->nslots; ++i) {
    ShmSlot& s = im->slots[i];
    uint64_t w = s.ctl.load(std::memory_order_acquire);
    if (StateOf(w) != SlotState::kReady) continue;
    CaptureBytes id;
    std::memcpy(id.data(), s.capture_id, 16);
    // READY only leaves by T3/R3, both done by this (single) exporter, so the
    // payload cannot change under us; the CAS still checks the exact word.
    if (!in_ledger(id)) continue;
    if (detail::ShmFailAt(detail::kPointReadyFree)) continue;  // left READY: claimed and skipped as known
    detail::ShmCrashPoint(detail::kPointReadyFree);
    // R3 READY(p,g) -> FREE(-,g+1)
    if (s.ctl.compare_exchange_strong(w, Pack(SlotState::kFree, 0, GenOf(w) + 1), std::memory_order_acq_rel)) ++n;
  }
  return n;
}

// ---------------------------------------------------------------- header

void ClaimTable::PublishExporterState(const ExporterState& st) {
  if (impl_->opt.read_only) return;
  ShmHeader* h = impl_->hdr;
  h->exporter_epoch.store(st.epoch, std::memory_order_relaxed);
  h->exporter_progress_ns.store(st.progress_ns, std::memory_order_relaxed);
  h->exporter_exported_total.store(st.exported_total, std::memory_order_relaxed);
  h->backlog_count.store(st.backlog_count, std::memory_order_relaxed);
  h->backlog_bytes.store(st.backlog_bytes, std::memory_order_relaxed);
  h->exporter_pid.store(static_cast<uint64_t>(st.pid), std::memory_order_relaxed);
  h->exporter_heartbeat_ns.store(st.heartbeat_ns, std::memory_order_release);
}

TableStats ClaimTable::Stats() const {
  const ShmHeader* h = impl_->hdr;
  TableStats t;
  t.exporter.heartbeat_ns = h->exporter_heartbeat_ns.load(std::memory_order_acquire);
  t.exporter.epoch = h->exporter_epoch.load(std::memory_order_relaxed);
  t.exporter.progress_ns = h->exporter_progress_ns.load(std::memory_order_relaxed);
  t.exporter.exported_total = h->exporter_exported_total.load(std::memory_order_relaxed);
  t.exporter.backlog_count = h->backlog_count.load(std::memory_order_relaxed);
  t.exporter.backlog_bytes = h->backlog_bytes.load(std::memory_order_relaxed);
  t.exporter.pid = static_cast<pid_t>(h->exporter_pid.load(std::memory_order_relaxed));
  t.overflow_count = h->overflow_count.load(std::memory_order_relaxed);
  t.doorbell = h->doorbell.load(std::memory_order_relaxed);
  t.slots = h->nslots;
  t.registry = h->nregistry;
  t.incarnation = h->incarnation;
  t.created_ns = h->created_ns;
  return t;
}

}  // namespace ccmail::shm
