// test_util.h - temp directories, sample captures and forked children for store tests.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ccmail/store/content_key.h"
#include "ccmail/store/io.h"
#include "ccmail/store/spool.h"
#include "ccmail/testing/temp_dir.h"

namespace ccmail::store::test {

using ::ccmail::test::Slurp;
using ::ccmail::test::TempDir;
using ::ccmail::test::WriteFile;

inline size_t CountFiles(const std::string& dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir, ec); !ec && it != std::filesystem::directory_iterator(); ++it) ++n;
  return n;
}

// The message of sample capture i (about 3 KB, different for each i).
inline std::string Body(int i) {
  return "Subject: m" + std::to_string(i) + "\r\n\r\n" + std::string(3000 + i, 'a' + i % 26) + "\r\n";
}

inline SpoolMeta Meta(const std::string& body) {
  SpoolMeta m;
  m.content_key = ContentKeyOfMessage("s@x", body);
  m.envelope_sender = "s@x";
  m.recipients = {{"r@x", "R", "PO"}};
  return m;
}

// Appends `body` in two writes and commits it.
inline Status WriteAndCommit(SpoolWriter* w, const std::string& body) {
  CCMAIL_RETURN_IF_ERROR(w->Append(body.data(), body.size() / 2));
  CCMAIL_RETURN_IF_ERROR(w->Append(body.data() + body.size() / 2, body.size() - body.size() / 2));
  return w->Commit(Meta(body));
}

// Captures Body(i).
inline Status CaptureOne(Spool* sp, int i, CaptureId* id) {
  std::unique_ptr<SpoolWriter> w;
  CCMAIL_RETURN_IF_ERROR(sp->Begin(&w));
  *id = w->id();
  return WriteAndCommit(w.get(), Body(i));
}

// Runs f in a child with CCMAIL_CRASH_AT=spec; returns the wait status.
template <typename F>
int RunChild(const std::string& spec, F f) {
  pid_t pid = fork();
  if (pid == 0) {
    setenv("CCMAIL_CRASH_AT", spec.c_str(), 1);
    ReloadFaultSpecFromEnv();
    int rc = f();
    _exit(rc);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return st;
}

// Every file in new/ verifies; returns their count.
inline size_t VerifyAllNew(Spool* sp) {
  std::vector<CaptureId> ids;
  EXPECT_TRUE(sp->ListPending(&ids).ok());
  for (const auto& id : ids) {
    SpoolEntry e;
    Status s = sp->VerifyOnly(id, &e);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  return ids.size();
}

}  // namespace ccmail::store::test
