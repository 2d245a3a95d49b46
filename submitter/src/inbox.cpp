// The inbox: post office directories, complete files, and the site's EXPORT job.
#include "inbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "ccmail/common/clock.h"
#include "ccmail/submitter/engine.h"
#include "ccmail/submitter/inbox_file.h"

extern char** environ;

namespace ccmail::submitter {
namespace {

bool EndsWithNoCase(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  for (size_t i = 0; i < suffix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[s.size() - suffix.size() + i])) != suffix[i]) return false;
  return true;
}

std::string FileType(mode_t mode) {
  if (S_ISREG(mode)) return "regular file";
  if (S_ISLNK(mode)) return "symbolic link";
  if (S_ISFIFO(mode)) return "FIFO";
  if (S_ISSOCK(mode)) return "socket";
  if (S_ISCHR(mode)) return "character device";
  if (S_ISBLK(mode)) return "block device";
  if (S_ISDIR(mode)) return "directory";
  return "file of unknown type";
}

void Refuse(InboxEntry* out, InboxRefusal why, std::string reason) {
  out->refusal = why;
  out->reason = std::move(reason);
  out->bytes.clear();
}

std::string UtcNow() {
  const time_t t = static_cast<time_t>(WallClockMs() / 1000);
  struct tm tm;
  char buf[32];
  ::gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool NameTaken(int dir_fd, const std::string& name) {
  struct stat st;
  return ::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT;
}

Status WriteAllFd(int fd, std::string_view text, const std::string& what) {
  while (!text.empty()) {
    ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(what, errno);
    text.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

}  // namespace

std::string PrintableName(std::string_view name) {
  std::string out;
  for (unsigned char c : name) out += c < 0x20 || c == 0x7f ? '?' : static_cast<char>(c);
  return out;
}

bool IsCompleteInboxName(std::string_view name) {
  if (name.empty() || name[0] == '.') return false;
  return !EndsWithNoCase(name, ".tmp") && !EndsWithNoCase(name, ".part");
}

Status ListInboxPostOffices(const std::string& inbox, std::vector<std::string>* out) {
  out->clear();
  DIR* d = ::opendir(inbox.c_str());
  if (!d) return Status::FromErrno("inbox_directory " + inbox + " cannot be listed", errno);
  while (struct dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n.empty() || n[0] == '.') continue;
    struct stat st;
    if (::fstatat(::dirfd(d), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) out->push_back(n);
  }
  ::closedir(d);
  std::sort(out->begin(), out->end());
  return Status::Ok();
}

Status OpenInboxPostOffice(const std::string& po_dir, UniqueFd* fd, std::vector<std::string>* names) {
  names->clear();
  // O_NOFOLLOW: a symlink renamed over the post office directory (to the spool, say) is not entered.
  fd->reset(::open(po_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd->valid()) return Status::FromErrno("post office directory " + po_dir + " cannot be opened", errno);
  const int list_fd = ::fcntl(fd->get(), F_DUPFD_CLOEXEC, 0);  // closedir closes this one, not *fd
  if (list_fd < 0) return Status::FromErrno("dup " + po_dir, errno);
  DIR* d = ::fdopendir(list_fd);
  if (!d) {
    const int err = errno;
    ::close(list_fd);
    return Status::FromErrno("post office directory " + po_dir + " cannot be listed", err);
  }
  ::rewinddir(d);
  while (struct dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (!IsCompleteInboxName(n)) continue;
    struct stat st;
    // Everything but sub-directories: what is not a regular file is refused by the taker, visibly.
    if (::fstatat(fd->get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) names->push_back(n);
  }
  ::closedir(d);
  std::sort(names->begin(), names->end());
  return Status::Ok();
}

const char* InboxRefusalName(InboxRefusal r) {
  switch (r) {
    case InboxRefusal::kNone: return "none";
    case InboxRefusal::kSymlink: return "symlink";
    case InboxRefusal::kNotRegular: return "not a regular file";
    case InboxRefusal::kLinked: return "several hard links";
    case InboxRefusal::kTooLarge: return "too large";
    case InboxRefusal::kUnreadable: return "unreadable";
  }
  return "?";
}

Status ReadInboxEntry(int dir_fd, const std::string& name, uint64_t max_size, InboxEntry* out) {
  *out = InboxEntry();
  // The one open: whatever the name is now (not what the listing saw) is judged by this fd's
  // fstat. O_NONBLOCK: opening a FIFO does not wait for a writer; O_NOCTTY: a terminal is not
  // made ours.
  UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (!fd.valid()) {
    const int err = errno;
    if (err == ELOOP) {  // O_NOFOLLOW met a symlink
      Refuse(out, InboxRefusal::kSymlink, "a symbolic link (never followed)");
      return Status::Ok();
    }
    if (err == EACCES || err == EPERM) {
      Refuse(out, InboxRefusal::kUnreadable, std::string("cannot be opened by the bridge user: ") + std::strerror(err));
      return Status::Ok();
    }
    return Status::FromErrno("open " + name, err);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat " + name, errno);
  if (!S_ISREG(st.st_mode)) {
    Refuse(out, InboxRefusal::kNotRegular, "it is a " + FileType(st.st_mode));
    return Status::Ok();
  }
  if (st.st_nlink != 1) {
    Refuse(out, InboxRefusal::kLinked,
           "a regular file with " + std::to_string(st.st_nlink) +
               " hard links (one is required: another name of it may be any file its owner can read)");
    return Status::Ok();
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > max_size) {
    Refuse(out, InboxRefusal::kTooLarge,
           std::to_string(size) + " bytes, above inbox_max_file_size (" + std::to_string(max_size) + " bytes)");
    return Status::Ok();
  }
  // From this descriptor only; a file still growing past the limit is refused as well.
  std::string bytes;
  bytes.reserve(static_cast<size_t>(size));
  char chunk[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd.get(), chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("read " + name, errno);
    if (n == 0) break;
    if (bytes.size() + static_cast<uint64_t>(n) > max_size) {
      Refuse(out, InboxRefusal::kTooLarge,
             "grew past inbox_max_file_size (" + std::to_string(max_size) + " bytes) while being read");
      return Status::Ok();
    }
    bytes.append(chunk, static_cast<size_t>(n));
  }
  out->bytes = std::move(bytes);
  return Status::Ok();
}

Status SetInboxEntryAside(int dir_fd, const std::string& name, const std::string& reason, std::string* aside_name) {
  aside_name->clear();
  // Room for ".refused.<n>.reason" within NAME_MAX (255).
  const std::string base = "." + name.substr(0, 200) + ".refused";
  std::string aside;
  for (int n = 1;; ++n) {
    if (n > 1000) return Status::AlreadyExists("no free name " + base + "[.<n>] to set " + name + " aside");
    const std::string candidate = n == 1 ? base : base + "." + std::to_string(n);
    if (NameTaken(dir_fd, candidate) || NameTaken(dir_fd, candidate + ".reason")) continue;
    if (::renameat2(dir_fd, name.c_str(), dir_fd, candidate.c_str(), RENAME_NOREPLACE) == 0) {
      aside = candidate;
      break;
    }
    if (errno == EEXIST) continue;  // taken between the look and the rename
    return Status::FromErrno("rename " + name + " to " + candidate, errno);
  }
  *aside_name = aside;
  const std::string text = "entry " + PrintableName(name) + "\nrefused " + PrintableName(reason) + "\nmoved to " +
                           PrintableName(aside) + "\nat " + UtcNow() + "\n";
  const std::string reason_name = aside + ".reason";
  Status s;
  UniqueFd fd(::openat(dir_fd, reason_name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640));
  if (!fd.valid()) s = Status::FromErrno("create " + reason_name, errno);
  if (s.ok()) s = WriteAllFd(fd.get(), text, "write " + reason_name);
  if (s.ok() && ::fsync(fd.get()) != 0) s = Status::FromErrno("fsync " + reason_name, errno);
  if (::fsync(dir_fd) != 0 && s.ok()) s = Status::FromErrno("fsync the post office directory", errno);
  return s;
}

Status RunExportCommand(const std::string& command, const std::string& po_dir, const std::string& post_office,
                        exporter::DeliverOutcome* outcome, int* exit_status, std::string* published) {
  published->clear();
  const std::string stamp = std::to_string(WallClockMs());
  const std::string hidden = po_dir + "/.export-" + stamp + ".tmp";
  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv(*e);
    if (kv.rfind("CCMAIL_POSTOFFICE=", 0) == 0 || kv.rfind("CCMAIL_EXPORT_FILE=", 0) == 0) continue;
    env_store.push_back(std::move(kv));
  }
  env_store.push_back("CCMAIL_POSTOFFICE=" + post_office);
  env_store.push_back("CCMAIL_EXPORT_FILE=" + hidden);
  std::vector<char*> envp;
  for (auto& s : env_store) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string sh = "/bin/sh", dash_c = "-c", cmd = command;
  char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, "/bin/sh", nullptr, nullptr, argv, envp.data());
  if (rc != 0) return Status::FromErrno("export_command: spawn /bin/sh -c '" + command + "'", rc);
  int wst = 0;
  while (::waitpid(pid, &wst, 0) < 0) {
    if (errno != EINTR) return Status::FromErrno("export_command: waitpid", errno);
  }
  *exit_status = WIFEXITED(wst) ? WEXITSTATUS(wst) : 128 + (WIFSIGNALED(wst) ? WTERMSIG(wst) : 0);
  *outcome = exporter::ClassifyImportExit(*exit_status);
  struct stat st;
  const bool wrote = ::stat(hidden.c_str(), &st) == 0 && S_ISREG(st.st_mode);
  if ((*outcome == exporter::DeliverOutcome::kDone || *outcome == exporter::DeliverOutcome::kUndeliverable) && wrote &&
      st.st_size > 0) {
    // The job's exit says the file is whole: only now does it get a name the scan takes.
    const std::string visible = po_dir + "/EXPORT-" + stamp + ".TXT";
    int fd = ::open(hidden.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      (void)::fsync(fd);
      ::close(fd);
    }
    if (::rename(hidden.c_str(), visible.c_str()) != 0)
      return Status::FromErrno("export_command: rename " + hidden + " to " + visible, errno);
    *published = visible;
    return Status::Ok();
  }
  if (wrote) ::unlink(hidden.c_str());
  return Status::Ok();
}

}  // namespace ccmail::submitter
