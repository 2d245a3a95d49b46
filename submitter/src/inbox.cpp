// The inbox: post office directories, complete files, and the site's EXPORT job.
#include "inbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cctype>

#include "ccmail/common/clock.h"
#include "ccmail/submitter/engine.h"

extern char** environ;

namespace ccmail::submitter {
namespace {

bool EndsWithNoCase(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  for (size_t i = 0; i < suffix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[s.size() - suffix.size() + i])) != suffix[i]) return false;
  return true;
}

std::vector<std::string> List(const std::string& dir, bool want_dirs) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (struct dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    struct stat st;
    if (::fstatat(::dirfd(d), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (want_dirs ? S_ISDIR(st.st_mode) && n[0] != '.' : S_ISREG(st.st_mode)) out.push_back(n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

bool IsCompleteInboxName(std::string_view name) {
  if (name.empty() || name[0] == '.') return false;
  return !EndsWithNoCase(name, ".tmp") && !EndsWithNoCase(name, ".part");
}

std::vector<std::string> InboxPostOffices(const std::string& inbox) { return List(inbox, true); }

std::vector<std::string> CompleteInboxFiles(const std::string& po_dir) {
  std::vector<std::string> out;
  for (auto& n : List(po_dir, false))
    if (IsCompleteInboxName(n)) out.push_back(std::move(n));
  return out;
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
