// Claim table safety checks (docs/ARCHITECTURE.md "Who may touch what"): an unsafe
// runtime directory is refused; a table that is not a regular file of this user with
// no group/other write bit and the exact size is never adopted (the milter refuses it,
// the exporter replaces it); lock files are 0600; ccmailctl maps read-only.
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "ccmail/common/unique_fd.h"
#include "shm_test_util.h"

namespace ccmail::shm {
namespace {

using namespace ccmail::shm::testing;

constexpr uid_t kNobody = 65534;

bool Root() { return ::geteuid() == 0; }

TableOptions Milter(const TableOptions& o) {
  TableOptions m = o;
  m.create_if_missing = true;  // as at the milter's start: the most it may do
  m.recreate_if_invalid = false;
  return m;
}

TableOptions Exporter(const TableOptions& o) {
  TableOptions e = o;
  e.create_if_missing = true;
  e.recreate_if_invalid = true;
  return e;
}

ino_t InodeOf(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

TEST(RuntimeDirectory, GroupOrOtherWritableIsRefused) {
  TestTable tt(8, 2);
  for (mode_t mode : {0770, 0757, 0777, 01777}) {
    ASSERT_EQ(::chmod(tt.opt.runtime_directory.c_str(), mode), 0);
    std::unique_ptr<ClaimTable> t;
    Status s = ClaimTable::Open(tt.opt, &t);
    EXPECT_EQ(s.code(), Status::Code::kUnavailable) << std::oct << mode << ": " << s.ToString();
    EXPECT_NE(s.message().find("is unsafe"), std::string::npos) << s.ToString();
    EXPECT_NE(s.message().find(tt.opt.runtime_directory), std::string::npos) << s.ToString();
    EXPECT_FALSE(CheckRuntimeDirectory(tt.opt.runtime_directory).ok());
    TableOptions r = tt.opt;
    r.read_only = true;
    EXPECT_FALSE(ClaimTable::Open(r, &t).ok()) << std::oct << mode;
    EXPECT_EQ(InodeOf(ClaimTable::TablePath(tt.opt)), 0u) << "nothing may be created in an unsafe directory";
  }
  ASSERT_EQ(::chmod(tt.opt.runtime_directory.c_str(), 0750), 0);
  EXPECT_TRUE(CheckRuntimeDirectory(tt.opt.runtime_directory).ok());
  std::unique_ptr<ClaimTable> t;
  EXPECT_TRUE(ClaimTable::Open(tt.opt, &t).ok());
}

TEST(RuntimeDirectory, SymlinkIsRefused) {
  TestTable tt(8, 2);
  TableOptions o = tt.opt;
  o.runtime_directory = tt.opt.runtime_directory + "/link";
  ASSERT_EQ(::mkdir((tt.opt.runtime_directory + "/real").c_str(), 0700), 0);
  ASSERT_EQ(::symlink("real", o.runtime_directory.c_str()), 0);
  std::unique_ptr<ClaimTable> t;
  Status s = ClaimTable::Open(o, &t);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("symbolic link"), std::string::npos) << s.ToString();
}

TEST(RuntimeDirectory, OwnedByAnotherUserIsRefused) {
  if (!Root()) GTEST_SKIP() << "needs root to chown";
  TestTable tt(8, 2);
  ASSERT_EQ(::chown(tt.opt.runtime_directory.c_str(), kNobody, kNobody), 0);
  std::unique_ptr<ClaimTable> t;
  Status s = ClaimTable::Open(tt.opt, &t);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("owned by uid 65534"), std::string::npos) << s.ToString();
  EXPECT_FALSE(CheckRuntimeDirectory(tt.opt.runtime_directory).ok());
}

// One kind of object planted under the table's name, and how the daemons must see it.
struct Planted {
  const char* what;
  const char* reason;  // part of the refusal message
  bool needs_root;
  std::function<void(const TestTable&, const std::string&)> plant;
};

void MakeValidTableAt(const TableOptions& o, const std::string& at) {
  TestTable other(o.slots, o.registry);
  std::unique_ptr<ClaimTable> t;
  ASSERT_TRUE(ClaimTable::Open(other.opt, &t).ok());
  std::filesystem::copy_file(ClaimTable::TablePath(other.opt), at);
}

std::vector<Planted> PlantedObjects() {
  return {
      {"a well-formed table with mode 0666", "writable by its group or others", false,
       [](const TestTable& tt, const std::string& path) {
         MakeValidTableAt(tt.opt, path);
         ASSERT_EQ(::chmod(path.c_str(), 0666), 0);
       }},
      {"a well-formed table of another user", "owned by uid 65534", true,
       [](const TestTable& tt, const std::string& path) {
         MakeValidTableAt(tt.opt, path);
         ASSERT_EQ(::chown(path.c_str(), kNobody, kNobody), 0);
       }},
      {"an empty file of another user", "owned by uid 65534", true,
       [](const TestTable&, const std::string& path) {
         ASSERT_EQ(::close(::open(path.c_str(), O_CREAT | O_WRONLY, 0600)), 0);
         ASSERT_EQ(::chown(path.c_str(), kNobody, kNobody), 0);
       }},
      {"a symbolic link to a well-formed table", "symbolic link", false,
       [](const TestTable& tt, const std::string& path) {
         MakeValidTableAt(tt.opt, tt.opt.runtime_directory + "/elsewhere");
         ASSERT_EQ(::symlink("elsewhere", path.c_str()), 0);
       }},
      {"a FIFO", "not a regular file", false,
       [](const TestTable&, const std::string& path) { ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0); }},
      {"a table one page longer", "size", false,
       [](const TestTable& tt, const std::string& path) {
         MakeValidTableAt(tt.opt, path);
         struct stat st;
         ASSERT_EQ(::stat(path.c_str(), &st), 0);
         ASSERT_EQ(::truncate(path.c_str(), st.st_size + 4096), 0);
       }},
      {"a table with fewer slots", "slots", false,
       [](const TestTable& tt, const std::string& path) {
         TableOptions small = tt.opt;
         small.slots = tt.opt.slots / 2;
         MakeValidTableAt(small, path);
       }},
  };
}

TEST(TableFile, PlantedObjectsAreRefusedByTheMilterAndReplacedByTheExporter) {
  for (const Planted& p : PlantedObjects()) {
    SCOPED_TRACE(p.what);
    if (p.needs_root && !Root()) continue;
    TestTable tt(16, 4);
    const std::string path = ClaimTable::TablePath(tt.opt);
    p.plant(tt, path);
    if (::testing::Test::HasFatalFailure()) return;
    const ino_t planted = InodeOf(path);
    // Held open so that its inode number cannot be reused by the replacement.
    UniqueFd hold(::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    ASSERT_TRUE(hold.valid());

    std::unique_ptr<ClaimTable> t;
    Status s = ClaimTable::Open(Milter(tt.opt), &t);
    EXPECT_EQ(s.code(), Status::Code::kCorrupt) << s.ToString();
    EXPECT_NE(s.message().find(p.reason), std::string::npos) << s.ToString();
    EXPECT_NE(s.message().find(path), std::string::npos) << s.ToString();
    EXPECT_EQ(InodeOf(path), planted) << "the milter must leave it to the exporter";

    s = ClaimTable::Open(Exporter(tt.opt), &t);
    ASSERT_TRUE(s.ok()) << s.ToString();
    struct stat st;
    ASSERT_EQ(::lstat(path.c_str(), &st), 0);
    EXPECT_NE(st.st_ino, planted);
    EXPECT_TRUE(S_ISREG(st.st_mode));
    EXPECT_EQ(st.st_uid, ::geteuid());
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    std::unique_ptr<Registration> r;
    ASSERT_TRUE(t->Register(Role::kMilter, &r).ok());
    EXPECT_TRUE(t->Publish(*r, IdOf(7), 7).ok());
    // The milter adopts the exporter's table.
    std::unique_ptr<ClaimTable> m;
    s = ClaimTable::Open(Milter(tt.opt), &m);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
}

TEST(LockFiles, OursAreMade0600AndOthersAreRefused) {
  TestTable tt(8, 2);
  const std::string live = tt.opt.runtime_directory + "/live.lock";
  ASSERT_EQ(::close(::open(live.c_str(), O_CREAT | O_WRONLY, 0600)), 0);
  ASSERT_EQ(::chmod(live.c_str(), 0666), 0);  // as an older version or a careless admin left it
  std::unique_ptr<ClaimTable> t;
  ASSERT_TRUE(ClaimTable::Open(tt.opt, &t).ok());
  struct stat st;
  ASSERT_EQ(::stat(live.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  t.reset();
  if (!Root()) return;
  ASSERT_EQ(::chown(live.c_str(), kNobody, kNobody), 0);
  Status s = ClaimTable::Open(tt.opt, &t);
  EXPECT_EQ(s.code(), Status::Code::kCorrupt) << s.ToString();
  EXPECT_NE(s.message().find("live.lock is owned by uid 65534"), std::string::npos) << s.ToString();
}

TEST(ReadOnly, SeesTheWritersTableAndChangesNothing) {
  TestTable tt(8, 4);
  TableOptions r = tt.opt;
  r.read_only = true;
  std::unique_ptr<ClaimTable> ro;
  Status s = ClaimTable::Open(r, &ro);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
  EXPECT_TRUE(std::filesystem::is_empty(tt.opt.runtime_directory)) << "a reader created a file";

  auto w = std::unique_ptr<ClaimTable>();
  ASSERT_TRUE(ClaimTable::Open(tt.opt, &w).ok());
  std::unique_ptr<Registration> reg;
  ASSERT_TRUE(w->Register(Role::kExporter, &reg).ok());
  ASSERT_TRUE(w->Publish(*reg, IdOf(1), 1).ok());
  ASSERT_TRUE(ClaimTable::Open(r, &ro).ok());
  EXPECT_EQ(ro->slot_count(), 8u);
  int ready = 0;
  for (uint32_t i = 0; i < ro->slot_count(); ++i) ready += ro->Slot(i).state == SlotState::kReady;
  EXPECT_EQ(ready, 1);
  EXPECT_EQ(ro->Entry(reg->index()).state, RegistryView::State::kLive);
  EXPECT_TRUE(ro->Entry(reg->index()).lock_held);
  std::unique_ptr<Registration> no;
  EXPECT_EQ(ro->Register(Role::kTool, &no).code(), Status::Code::kInvalidArgument);
  ro->RingDoorbell();  // no-ops on a read-only mapping, never a SIGSEGV
  ro->PublishExporterState(ExporterState{});
  EXPECT_EQ(w->Stats().doorbell, 0u);
}

// ccmailctl as a member of the bridge group: maps the 0640 table read-only.
TEST(ReadOnly, GroupMemberMapsTheTable) {
  if (!Root()) GTEST_SKIP() << "needs root to switch users";
  struct group* g = ::getgrgid(kNobody);
  if (g == nullptr) GTEST_SKIP() << "no group 65534";
  TestTable tt(8, 4);
  tt.opt.group = g->gr_name;
  std::unique_ptr<ClaimTable> w;
  ASSERT_TRUE(ClaimTable::Open(tt.opt, &w).ok());
  ASSERT_EQ(::chown(tt.opt.runtime_directory.c_str(), 0, kNobody), 0);
  ASSERT_EQ(::chmod(tt.opt.runtime_directory.c_str(), 0750), 0);
  const std::string path = ClaimTable::TablePath(tt.opt);
  pid_t pid = ForkRun([&] {
    gid_t groups[1] = {kNobody};
    if (::setgroups(1, groups) != 0 || ::setresgid(kNobody, kNobody, kNobody) != 0 ||
        ::setresuid(kNobody, kNobody, kNobody) != 0)
      return 10;
    if (::open(path.c_str(), O_RDWR) >= 0 || errno != EACCES) return 11;  // no write access
    if (::truncate(path.c_str(), 0) == 0) return 12;
    if (::open((tt.opt.runtime_directory + "/live.lock").c_str(), O_RDONLY) >= 0) return 13;  // no lock holding
    TableOptions r = tt.opt;
    r.read_only = true;
    std::unique_ptr<ClaimTable> ro;
    if (!ClaimTable::Open(r, &ro).ok()) return 14;
    return ro->slot_count() == 8 ? 0 : 15;
  });
  EXPECT_EQ(WaitExit(pid), 0);
}

}  // namespace
}  // namespace ccmail::shm
