// inbox_file.h - taking one entry of an inbox post office directory, safely.
//
// SYNOPSIS
//   InboxEntry e;
//   Status s = ReadInboxEntry(po_dir_fd, "EXP1.TXT", max_size, &e);
//   if (s.ok() && e.refusal != InboxRefusal::kNone)
//     s = SetInboxEntryAside(po_dir_fd, "EXP1.TXT", e.reason, &aside_name);
//
// DESCRIPTION
//   Every file in inbox_directory/<PO>/ is input from whoever can write there (the site's EXPORT
//   job, and possibly hostile local users), while the submitter runs as the bridge user and can
//   read its own secrets. So an entry is opened once, relative to the post office directory's fd,
//   with O_NOFOLLOW|O_NONBLOCK (a symlink is never followed, opening a FIFO does not block; nothing
//   is read from what is not a regular file), and fstat of
//   that fd decides: only a regular file with one link and at most max_size bytes is read, and
//   its bytes come from that fd alone (no second open by name that a swap could redirect).
//   A refused entry is renamed, within its own directory, to the hidden name
//   .<name>.refused (.<name>.refused.<n> when taken), which the taker ignores; a reason file
//   <that name>.reason says what was refused, why, and when. rename(2) moves a symlink itself,
//   never its target; nothing is deleted, so a legitimate file refused (too large, say) can be
//   renamed back by an administrator.
#pragma once

#include <cstdint>
#include <string>

#include "ccmail/common/status.h"

namespace ccmail::submitter {

enum class InboxRefusal {
  kNone,
  kSymlink,     // a symbolic link (never followed)
  kNotRegular,  // a FIFO, socket, device node or directory
  kLinked,      // a regular file with more than one hard link
  kTooLarge,    // larger than inbox_max_file_size
  kUnreadable,  // the bridge user may not open it (EACCES, EPERM)
};
const char* InboxRefusalName(InboxRefusal r);

struct InboxEntry {
  InboxRefusal refusal = InboxRefusal::kNone;
  std::string reason;  // when refused: one line, with the file type, link count or size and limit
  std::string bytes;   // when not refused: the whole file, read from the one descriptor
};

// Opens `name` in the directory `dir_fd` and reads it as DESCRIPTION says. Ok with
// out->refusal set: the entry must be set aside. An error: it could not be looked at for a
// reason that may pass (kNotFound when it vanished, an I/O error): left for the next scan.
Status ReadInboxEntry(int dir_fd, const std::string& name, uint64_t max_size, InboxEntry* out);

// Renames `name` in `dir_fd` to a free hidden name .<name>.refused[.<n>] (never replacing
// anything), writes <that name>.reason (O_EXCL, fsynced) and fsyncs the directory.
// *aside_name: the new name once the rename is done (also when the reason file then fails).
Status SetInboxEntryAside(int dir_fd, const std::string& name, const std::string& reason, std::string* aside_name);

}  // namespace ccmail::submitter
