// deliver_command runner: posix_spawn of /bin/sh -c with the batch described in the
// environment, so a site script needs no argument parsing and sees absolute paths.
#include "ccmail/exporter/deliver.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

extern char** environ;

namespace ccmail::exporter {

DeliverOutcome ClassifyImportExit(int exit_status) {
  switch (exit_status) {
    case 0: return DeliverOutcome::kDone;
    case 4: return DeliverOutcome::kLocked;
    case 5: return DeliverOutcome::kUndeliverable;
    default: return DeliverOutcome::kFailed;  // 1, 3 and anything unknown
  }
}

const char* DeliverOutcomeName(DeliverOutcome o) {
  switch (o) {
    case DeliverOutcome::kDone: return "done";
    case DeliverOutcome::kLocked: return "post-office-locked";
    case DeliverOutcome::kFailed: return "failed";
    case DeliverOutcome::kUndeliverable: return "undeliverable";
  }
  return "?";
}

long DeliverBackoffSeconds(int attempt, long min_s, long max_s) {
  long d = min_s < 1 ? 1 : min_s;
  for (int i = 0; i < attempt && d < max_s; ++i) d *= 2;
  return d > max_s ? max_s : d;
}

Status RunDeliverCommand(const DeliverRequest& req, DeliverOutcome* outcome, int* exit_status) {
  std::string und = req.batch_path;
  auto dot = und.rfind('.');
  und = (dot == std::string::npos ? und : und.substr(0, dot)) + ".UND";
  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv(*e);
    if (kv.rfind("CCMAIL_BATCH=", 0) == 0 || kv.rfind("CCMAIL_POSTOFFICE=", 0) == 0 ||
        kv.rfind("CCMAIL_MANIFEST=", 0) == 0 || kv.rfind("CCMAIL_UND=", 0) == 0)
      continue;
    env_store.push_back(std::move(kv));
  }
  env_store.push_back("CCMAIL_BATCH=" + req.batch_path);
  env_store.push_back("CCMAIL_POSTOFFICE=" + req.post_office);
  env_store.push_back("CCMAIL_MANIFEST=" + req.manifest_path);
  env_store.push_back("CCMAIL_UND=" + und);
  std::vector<char*> envp;
  for (auto& s : env_store) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string sh = "/bin/sh", dash_c = "-c", cmd = req.command;
  char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, "/bin/sh", nullptr, nullptr, argv, envp.data());
  if (rc != 0) return Status::FromErrno("deliver_command: spawn /bin/sh -c '" + req.command + "'", rc);
  int wst = 0;
  while (::waitpid(pid, &wst, 0) < 0) {
    if (errno != EINTR) return Status::FromErrno("deliver_command: waitpid", errno);
  }
  *exit_status = WIFEXITED(wst) ? WEXITSTATUS(wst) : 128 + (WIFSIGNALED(wst) ? WTERMSIG(wst) : 0);
  *outcome = ClassifyImportExit(*exit_status);
  return Status::Ok();
}

}  // namespace ccmail::exporter
