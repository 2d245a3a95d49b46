// spool_wal.h - the spool's write-ahead log: one durable write shared by concurrent captures.
//
// WHY
//   A capture in its own file costs a file fsync (block allocation, inode, data) and an
//   fsync of new/ before its 250: two metadata-heavy syncs per message, most of the milter's
//   cost above libmilter's own (docs/PERFORMANCE.md, "Issue 17"). With the log, a capture's
//   bytes are appended to a preallocated segment shared by every connection of the process
//   and made durable by one fdatasync per group (data blocks only, no metadata); its file in
//   new/ is still written and renamed, but not synced. The exporter reads the file as before,
//   usually before the kernel ever writes it back, and the file's blocks are never allocated.
//
// LAYOUT
//   <spool>/wal/<writer tag>.<seq>   a segment: segment_bytes of zeros written and fsynced
//                                    (with wal/) before the first record, so a record's
//                                    fdatasync writes only its own data blocks. Prepared as
//                                    "<name>.new", locked (flock), then renamed: the first
//                                    one at Open, the next one by the checkpoint thread once
//                                    the active one is half full.
//   record, at a multiple of 4096 : "CCMWALR1"(8) | capture id, 32 hex | u64 image size
//                                   | u32 crc32(the 48 bytes before) | u32 0 | image
//   The image is the capture's whole spool file (spool.h FILE FORMAT), which verifies on its
//   own: a torn record never verifies. Records are aligned so a reader can find the records
//   after a hole (a reservation whose writer died before writing).
//
// PROTOCOL (SpoolWriter::Commit when the spool has a log; spool.h)
//   write the file in tmp/ (not synced) -> Append: reserve, pwrite (spool.wal.written),
//   group fdatasync (spool.wal.synced) = durability point -> rename into new/ (spool.renamed)
//   -> the Pin is dropped. The 250 follows Append's Ok.
//
// CHECKPOINT (this process, a background thread)
//   A full segment is sealed and the next one used. Once no commit into it is in flight,
//   each of its captures still in new/ is fsynced, then new/ once; then the segment is
//   deleted. A capture no longer in new/ was removed by the exporter after its ledger commit,
//   or quarantined (moved with fsyncs): either way it no longer needs the log.
//
// REPLAY (Spool::ReplayWal, the exporter's recovery, before it reads new/)
//   A segment is live while its writer holds flock(LOCK_EX) on it; any other segment belongs
//   to a process that died (or a machine that lost power) before checkpointing it. Each
//   record in it that the ledger does not know and that is not in corrupt/ gets its file in
//   new/ made durable: fsynced when it verifies, else (lost or torn by the power loss)
//   written again from the record. Then new/ is fsynced and the segment deleted. Replaying
//   twice, or a record whose capture was already exported, does no harm: the exporter
//   de-duplicates by capture id against the ledger.
//
// THREAD SAFETY
//   Append is thread-safe; the group fdatasync is shared per segment.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ccmail/common/status.h"
#include "ccmail/store/capture_id.h"
#include "ccmail/store/io.h"

namespace ccmail::store {

inline constexpr const char* kCrashSpoolWalWritten = "spool.wal.written";
inline constexpr const char* kCrashSpoolWalSynced = "spool.wal.synced";

struct WalOptions {
  uint64_t segment_bytes = uint64_t{4} << 20;
  // Larger captures are committed the file way (their own fsyncs): a segment stays small and
  // a large message is not held in memory to be logged.
  uint64_t max_image_bytes = uint64_t{256} << 10;
};

class SpoolWal {
 public:
  struct Segment;
  // Makes the listed captures' files in new/ durable (fsync each one still there, then new/).
  using MakeDurableFn = std::function<Status(const std::vector<CaptureId>&)>;

  // Opens the log in `dir` (created, and its creation made durable, if missing) for the
  // writer `tag`; checkpoints run `make_durable` on a thread of their own.
  static Status Open(const std::string& dir, const std::string& tag, DurableIo* io, WalOptions options,
                     MakeDurableFn make_durable, std::unique_ptr<SpoolWal>* out);
  // Seals the current segment and checkpoints every segment (no commit may be in flight).
  ~SpoolWal();
  SpoolWal(const SpoolWal&) = delete;
  SpoolWal& operator=(const SpoolWal&) = delete;

  const WalOptions& options() const { return options_; }
  const std::string& dir() const { return dir_; }

  // Keeps a segment from being checkpointed while its capture is not yet in new/.
  class Pin {
   public:
    Pin() = default;
    Pin(Pin&& o) noexcept : wal_(o.wal_), segment_(std::move(o.segment_)) { o.wal_ = nullptr; }
    Pin& operator=(Pin&& o) noexcept;
    ~Pin() { Release(); }
    void Release();

   private:
    friend class SpoolWal;
    SpoolWal* wal_ = nullptr;
    std::shared_ptr<Segment> segment_;
  };

  // Appends `image` (a whole spool file of capture `id`, at most max_image_bytes) and
  // returns once it is durable. On an error nothing may be acknowledged; a segment whose
  // write or fdatasync failed is never synced again (fsyncgate) and the next Append starts
  // a new one.
  Status Append(const CaptureId& id, std::string_view image, Pin* pin);

  // Checkpoints that are done / failed so far (tests, logs).
  uint64_t checkpoints_done() const;

  // One record found in a segment by ReadSegment.
  struct Record {
    CaptureId id;
    uint64_t offset = 0;  // of the image in the segment
    std::string_view image;
  };
  // Reads the records of a segment's bytes (headers whose checksum holds and whose image
  // fits; the image itself is not verified here). Skips holes at 4096-byte steps.
  static std::vector<Record> ReadSegment(std::string_view bytes);
  // "<tag>.<seq>" of a segment file name, or false.
  static bool IsSegmentName(const std::string& name);

 private:
  SpoolWal(std::string dir, std::string tag, DurableIo* io, WalOptions options, MakeDurableFn make_durable);
  struct Impl;
  void Unpin(Segment* segment);
  Status PrepareSegment(std::shared_ptr<Segment>* out);
  void DropUnusedSegment(Segment* segment);
  std::string dir_;
  WalOptions options_;
  std::unique_ptr<Impl> impl_;
};

// What Spool::ReplayWal did.
struct WalReplayTally {
  uint64_t segments = 0;        // dead segments replayed and deleted
  uint64_t already_done = 0;    // records the ledger knows, or quarantined
  uint64_t made_durable = 0;    // files in new/ that verified and were fsynced
  uint64_t restored = 0;        // files written again from their record
  uint64_t torn = 0;            // records whose image does not verify (never acknowledged)
  uint64_t live_skipped = 0;    // segments a live writer holds
};

}  // namespace ccmail::store
