// spool.h - the durable spool: the queue of record for captured messages.
//
// LAYOUT
//   <root>/tmp/<capture_id>.<writer_tag>  being written (never acknowledged)
//   <root>/new/<capture_id>               durable, not yet exported
//   <root>/corrupt/<capture_id>[.reason]  failed verification, with a reason file
//   <root>/wal/<writer_tag>.<seq>         the write-ahead log's segments (spool_wal.h)
//
// FILE FORMAT (version 1, all integers little-endian)
//   header  : "CCMSPOOL" magic(8) | u32 version=1 | u32 reserved=0
//   message : the raw RFC 5322 message bytes as received (streamed; held in memory only
//             for a log record, up to WalOptions::max_image_bytes)
//   meta    : text lines "key=value\n" (capture_id, content_key, queue_id, sender,
//             received_ms, message_size, rcpt=<smtp>\t<ccmail name>\t<post office>, ...),
//             values percent-escaped for '%', '\n', '\t', '\r' and '='
//   trailer : "CCMTRAIL"(8) | u64 message_size | u64 meta_size | u32 crc32(message)
//             | u32 crc32(meta) | u32 crc32(trailer fields before this) | "CCMEND\n\0"(8)
//   The trailer is last, so a torn file never verifies. Checksums are zlib CRC-32
//   (polynomial 0xEDB88320). File size = 16 + message_size + meta_size + 44.
//
// PROTOCOL (SpoolWriter)
//   Begin: create tmp exclusive (spool.tmp.created). Append: streamed writes.
//   Commit(meta): write meta+trailer (spool.tmp.written), fsync (spool.tmp.fsynced),
//   rename into new (spool.renamed), fsync new/ (spool.dir.fsynced) = durability point.
//   With the log (EnableWal) and a capture that fits a record: meta+trailer written, the
//   record appended and fdatasynced (spool.wal.written, spool.wal.synced) = durability
//   point, then the rename into new/ without fsyncs (spool_wal.h PROTOCOL).
//   Any failure: the tmp file is closed and unlinked, nothing is in new/, a Status is
//   returned; a failed fsync is never retried on the same file.
//
// GROUP COMMIT OF new/
//   Concurrent commits share the fsync of new/: a commit that has renamed its file waits
//   for the first fsync of new/ that STARTED after its rename (an fsync already running
//   may have missed the new name) and returns that fsync's result. When none is running,
//   the committing thread runs it itself (a lone commit costs one fsync of new/, as
//   without grouping); commits that arrive meanwhile are covered together by the next
//   one. So Commit still returns Ok only when its own file and its own name are durable.
//
// THREAD SAFETY
//   Spool is thread-safe (counters are atomic, the group commit has its own lock). A
//   SpoolWriter belongs to one thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ccmail/common/status.h"
#include "ccmail/common/unique_fd.h"
#include "ccmail/store/capture_id.h"
#include "ccmail/store/content_key.h"
#include "ccmail/store/io.h"
#include "ccmail/store/spool_wal.h"

namespace ccmail::store {

struct SpoolRecipient {
  std::string smtp_address;   // as given in RCPT TO, angle brackets stripped
  std::string ccmail_name;    // resolved at capture time ("Smith, John")
  std::string post_office;    // resolved at capture time
  friend bool operator==(const SpoolRecipient&, const SpoolRecipient&) = default;
};

struct SpoolMeta {
  CaptureId capture_id;
  ContentKey content_key;
  std::string queue_id;          // MTA queue id (milter macro i), may be empty
  std::string envelope_sender;   // MAIL FROM, angle brackets stripped ("" = null sender)
  std::vector<SpoolRecipient> recipients;
  int64_t received_ms = 0;       // wall clock ms at capture
  uint64_t message_size = 0;     // filled by Commit / Open
};

// A file in corrupt/ and why it is there (ccmailctl list --quarantined, requeue).
struct QuarantinedCapture {
  CaptureId id;
  std::string reason;      // the reason file's text without the final newline; "" if none
  uint64_t file_size = 0;
};

struct SpoolStats {
  uint64_t count = 0;  // files in new/
  uint64_t bytes = 0;  // their total size
};

class Spool;

// Streams one capture into tmp/ and commits it. Destroying an uncommitted writer removes
// the tmp file (abort).
class SpoolWriter {
 public:
  ~SpoolWriter();
  SpoolWriter(const SpoolWriter&) = delete;
  SpoolWriter& operator=(const SpoolWriter&) = delete;

  const CaptureId& id() const { return id_; }
  uint64_t bytes_written() const { return size_; }
  // Appends raw message bytes (chunk as received from the MTA).
  Status Append(const void* data, size_t n);
  // Writes meta + trailer, fsync, rename into new/, fsync new/. meta.capture_id and
  // meta.message_size are set from this writer. On error the tmp file is removed.
  Status Commit(SpoolMeta meta);
  // Removes the tmp file (idempotent).
  void Abort();

 private:
  friend class Spool;
  SpoolWriter(Spool* spool, CaptureId id, std::string tmp_path, UniqueFd fd);
  Spool* spool_;
  CaptureId id_;
  std::string tmp_path_;
  UniqueFd fd_;
  uint64_t size_ = 0;
  uint32_t crc_ = 0;
  bool done_ = false;
  bool failed_ = false;
  // With the spool's log (Spool::EnableWal): the file's bytes so far, for its log record,
  // while they fit in one (else the capture is committed the file way).
  bool logging_ = false;
  std::string image_;
};

// An opened, verified spool file.
struct SpoolEntry {
  SpoolMeta meta;
  UniqueFd fd;            // read-only, positioned anywhere; use pread
  off_t message_offset = 0;
  uint64_t message_length = 0;
  uint64_t file_size = 0;
  // The whole verified file when it was read in one piece (up to 256 KiB, the usual
  // case), else empty: the exporter converts from these bytes instead of reading again.
  std::string contents;
  // The message's bytes in `contents`, or nullptr when only the descriptor has them.
  const char* message_data() const {
    return contents.empty() ? nullptr : contents.data() + message_offset;
  }
};

class Spool {
 public:
  // Opens (creating tmp/, new/, corrupt/ with mode 0700 if missing) the spool at root.
  // writer_tag names this writer in tmp file names ("<reg>.<gen>" or "<pid>").
  static Status Open(const std::string& root, std::unique_ptr<Spool>* out,
                     DurableIo* io = nullptr, std::string writer_tag = "");
  ~Spool();

  const std::string& root() const { return root_; }
  std::string new_dir() const { return root_ + "/new"; }
  std::string tmp_dir() const { return root_ + "/tmp"; }
  std::string corrupt_dir() const { return root_ + "/corrupt"; }
  DurableIo& io() { return *io_; }

  // Starts a capture with a fresh id.
  Status Begin(std::unique_ptr<SpoolWriter>* out);
  Status BeginWithId(const CaptureId& id, std::unique_ptr<SpoolWriter>* out);

  // From now on, commits of captures up to options.max_image_bytes go through the spool's
  // write-ahead log (spool_wal.h) in <root>/wal: their 250 follows one shared fdatasync
  // instead of the fsyncs of their file and of new/. Once per Spool, by a writer.
  Status EnableWal(WalOptions options = {});
  bool wal_enabled() const { return wal_ != nullptr; }
  SpoolWal* wal() { return wal_.get(); }
  // Makes the files of the dead writers' log segments durable and deletes the segments
  // (spool_wal.h REPLAY). `known` tells whether the ledger already has a capture. Run by the
  // exporter before it reads new/.
  Status ReplayWal(const std::function<Status(const CaptureId&, bool* known)>& known, WalReplayTally* tally);
  std::string wal_dir() const { return root_ + "/wal"; }
  // Whether wal/ holds a segment no live writer holds (cheap: for a periodic check).
  bool HasDeadWalSegments() const;

  // Ids of files in new/ (unordered; skips names that are not capture ids).
  Status ListPending(std::vector<CaptureId>* ids) const;
  // Opens and verifies new/<id>. A file that fails verification is moved to corrupt/
  // with a reason file and kCorrupt is returned; kNotFound if absent.
  Status OpenEntry(const CaptureId& id, SpoolEntry* entry);
  // Verifies without moving a corrupt file (read-only callers).
  Status VerifyOnly(const CaptureId& id, SpoolEntry* entry) const;
  // Unlinks new/<id> and fsyncs new/ (sync_dir=false lets the caller batch: call
  // SyncNewDir() once afterwards).
  Status Remove(const CaptureId& id, bool sync_dir = true);
  Status SyncNewDir();
  // The one way a capture leaves the queue for an administrator (a file that fails
  // verification, a message that cannot be exported). Writes QuarantineReason(reason) to
  // corrupt/<id>.reason and fsyncs it, moves new/<id> to corrupt/<id>, then fsyncs corrupt/
  // and new/: once it returns Ok the move and the reason survive a power loss. A reason file
  // that cannot be written (full disk) is logged with the reason and the capture is moved
  // anyway, so it is not retried for ever; a stale reason of an interrupted earlier attempt
  // is replaced. On an error the capture is where it was or in corrupt/, never gone.
  Status Quarantine(const CaptureId& id, const std::string& reason);

  // corrupt/<id> files (reason files without their capture are skipped), sorted by id,
  // i.e. by capture time. Read-only.
  Status ListQuarantined(std::vector<QuarantinedCapture>* out) const;
  // Verifies corrupt/<id> without moving it (read-only callers).
  Status VerifyQuarantined(const CaptureId& id, SpoolEntry* entry) const;
  // Puts a quarantined capture back into the queue (an administrator fixed the cause):
  // verifies corrupt/<id> exactly as OpenEntry would, renames it to new/<id>, fsyncs
  // new/ then corrupt/, then removes the reason file. Refuses without changing anything:
  // kNotFound (no corrupt/<id>), kCorrupt (it does not verify; the reason says why),
  // kAlreadyExists (new/<id> exists). Safe against double export: the exporter
  // de-duplicates by capture id against the ledger. Rings no doorbell: the exporter's
  // periodic spool scan finds the file.
  Status Requeue(const CaptureId& id);

  // Deletes tmp/ files whose writer tag the predicate says is dead (the tag is the part
  // after "<id>."). Returns the number removed in *removed.
  Status CleanTmp(const std::function<bool(const std::string& writer_tag)>& writer_is_live,
                  size_t* removed);

  // Backlog of new/: O(1) per call. Counted at Open by one directory walk, maintained by
  // Commit/Remove/Quarantine in this process, and re-counted by a directory walk at most
  // once per stats_refresh_ms (default 1000) so other processes' commits and the
  // exporter's removals show up (one walk per second, never one per message).
  SpoolStats Stats();
  Status RescanStats();
  void set_stats_refresh_ms(int64_t ms) { stats_refresh_ms_ = ms; }

 private:
  friend class SpoolWriter;
  Spool(std::string root, DurableIo* io, std::string tag);
  Status VerifyFile(const std::string& path, SpoolEntry* entry) const;
  // VerifyFile of <dir>/<id>, which must also hold that id.
  Status VerifyCapture(const std::string& dir, const CaptureId& id, SpoolEntry* entry) const;
  Status WriteReasonFile(const std::string& reason_path, const std::string& reason);
  void ForgetFromBacklog(uint64_t file_size);
  // The group commit (above): returns once an fsync of new/ that started after this call
  // has completed, with its status.
  Status SyncNewDirCoveringRename();
  // The log's checkpoint: fsyncs new/<id> of each id still there, then new/.
  Status MakeDurable(const std::vector<CaptureId>& ids);
  // One record of a dead segment (ReplayWal).
  Status ReplayRecord(const SpoolWal::Record& record,
                      const std::function<Status(const CaptureId&, bool* known)>& known, WalReplayTally* tally,
                      bool* new_dir_changed);
  std::string root_;
  DurableIo* io_;
  std::string tag_;
  // new/, held open for the capture path: each commit renames into it and the group commit
  // fsyncs it (DurableIo::RenameInto, FsyncDirFd) without opening it again.
  UniqueFd new_dir_fd_;
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<int64_t> last_scan_ms_{0};
  int64_t stats_refresh_ms_ = 1000;
  std::mutex scan_mu_;

  // Group commit state: fsyncs of new/ are numbered from 1 and run one at a time.
  std::mutex dir_sync_mu_;
  std::condition_variable dir_sync_cv_;
  uint64_t dir_syncs_started_ = 0;  // number of the latest fsync started
  uint64_t dir_syncs_done_ = 0;     // number of the latest fsync completed
  bool dir_sync_running_ = false;
  struct DirSyncWaiters {
    int waiting = 0;  // commits that need this fsync's result and have not taken it yet
    Status result;
  };
  std::map<uint64_t, DirSyncWaiters> dir_sync_waiters_;  // by fsync number
  // Last: destroyed first, so its checkpoints still find everything above.
  std::unique_ptr<SpoolWal> wal_;
};

// The reason as Spool::Quarantine records it: cut to kMaxQuarantineReason bytes plus "..."
// (a message with a huge unusable name must not flood the log, the reason file or a notice).
inline constexpr size_t kMaxQuarantineReason = 300;
std::string QuarantineReason(std::string reason);

// Parses the writer-tag of a tmp file name "<32hex>.<tag>"; empty if not of that form.
std::string TmpWriterTag(const std::string& file_name);

// The writer tag of a milter registered in the claim table: "<registry index>.<registration
// generation>" (decimal, no sign, no leading blanks). Whoever cleans tmp/ asks the claim
// table whether that registration is still alive; a tag of any other form (a tool's "p<pid>")
// is not a registration and its files are never deleted for it.
struct WriterTag {
  uint32_t registry_index = 0;
  uint64_t registration_gen = 0;

  std::string ToString() const;
  // nullopt unless `text` is exactly two decimal numbers joined by '.', each in range.
  static std::optional<WriterTag> Parse(std::string_view text);
  friend bool operator==(const WriterTag&, const WriterTag&) = default;
};

}  // namespace ccmail::store
