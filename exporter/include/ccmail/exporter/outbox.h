// outbox.h - publication of cc:Mail batch files into outbox/<POSTOFFICE>/.
//
// What it offers: an Outbox over two directories of one file system: out_tmp (work files,
// BridgePaths::out_tmp) and outbox_directory/<PO>/ (published batches). A batch is written to out/tmp/<NAME>.part, fsynced,
// then (after the caller committed its ledger transaction) renamed into outbox/<PO>/<NAME>
// with its manifest <STEM>.MAN beside it, and finally the per-post-office watermark file
// outbox/<PO>/WATERMRK is rewritten (write, fsync, rename, fsync dir). Consumers (the job
// that runs cc:Mail IMPORT) must only take batches whose (epoch, seq) is <= the watermark:
// a rename is visible before it is durable, the watermark is written only after it is.
//
// Names: 8.3, "<EEE><SSSSS>.CCM": EEE = epoch mod 36^3, SSSSS = seq mod 36^5, base 36,
// upper case. Unique as long as one epoch publishes fewer than 60,466,176 batches and
// consumers take batches within 46,656 restarts.
//
// Every durable step goes through the store::DurableIo given to the constructor (its named
// points below), so crash, failure and power-loss tests cover the outbox too.
//
// ERRORS
//   Every step returns a Status with the path and errno text; nothing is retried on the
//   same file after a failed fsync (the caller abandons the batch with Abandon() and
//   rebuilds it). A publish whose name is taken by another file fails (no-replace rename)
//   and keeps the .part.
//
// THREAD SAFETY
//   Not thread-safe: the exporter uses its one Outbox from one thread at a time (the
//   committer, or the loop thread once the committer is idle, or recovery).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ccmail/common/status.h"

namespace ccmail::store {
class DurableIo;
}

namespace ccmail::exporter {

// Named points of the outbox (CCMAIL_CRASH_AT / CCMAIL_FAIL_AT), in the order of a round.
// "<x>.written" / "<x>.fsynced" / "*.renamed" (no-replace rename of the batch is the step
// before batch.renamed) / "*.dir.fsynced" are passed by the DurableIo call doing that step;
// batch.renamed by Publish after both renames (FaultPoint).
inline constexpr const char* kCrashBatchManifestWritten = "batch.manifest.written";
inline constexpr const char* kCrashBatchManifestFsynced = "batch.manifest.fsynced";
inline constexpr const char* kCrashBatchPartWritten = "batch.part.written";
inline constexpr const char* kCrashBatchPartFsynced = "batch.part.fsynced";
inline constexpr const char* kCrashBatchTmpdirFsynced = "batch.tmpdir.fsynced";
inline constexpr const char* kCrashBatchRenamed = "batch.renamed";
inline constexpr const char* kCrashBatchDirFsynced = "batch.dir.fsynced";
inline constexpr const char* kCrashWatermarkWritten = "watermark.written";
inline constexpr const char* kCrashWatermarkFsynced = "watermark.fsynced";
inline constexpr const char* kCrashWatermarkRenamed = "watermark.renamed";
inline constexpr const char* kCrashWatermarkDirFsynced = "watermark.dir.fsynced";

// 8.3 batch file name for (epoch, seq), e.g. "00100001.CCM". With a relay id (a shared
// ledger, several relays, maybe one shared outbox) the name starts with it so two relays
// never make the same name: "mx1-00100001.CCM" (no longer 8.3: a deliver_command feeding a
// DOS IMPORT copies it to a short name).
std::string BatchFileName(uint64_t epoch, uint64_t seq, const std::string& relay_id = "");
// The watermark file of a post office: "WATERMRK", or "WATERMRK.<relay_id>" per relay.
std::string WatermarkFileName(const std::string& relay_id = "");
// Manifest file name of a batch file name ("00100001.CCM" -> "00100001.MAN").
std::string ManifestFileName(const std::string& batch_name);

// One line of a manifest: a delivery published in the batch.
struct ManifestEntry {
  std::string capture_id;   // 32 hex chars
  std::string content_key;  // 64 hex chars
  std::string recipient;    // cc:Mail name of the recipient
  std::string sender;       // SMTP envelope sender ("" for the null sender); bounces go here
};

// Manifest text: "# ccmail-bridge manifest v1 epoch=E seq=S po=PO batch=NAME count=N\n"
// then one "capture_id<TAB>content_key<TAB>recipient<TAB>sender\n" per delivery, in the
// order the messages appear in the batch file.
// With a relay id the header ends with " relay=<id>".
std::string FormatManifest(uint64_t epoch, uint64_t seq, const std::string& post_office,
                           const std::string& batch_name, const std::vector<ManifestEntry>& entries,
                           const std::string& relay_id = "");
Status ParseManifest(const std::string& text, std::vector<ManifestEntry>* entries);

struct Watermark {
  uint64_t epoch = 0;
  uint64_t seq = 0;
  std::string batch_name;
};
// Reads outbox/<PO>/WATERMRK ("epoch seq name\n"). NotFound when no batch was published yet.
// relay_id: that relay's WATERMRK.<relay_id> (a shared ledger).
Status ReadWatermark(const std::string& po_dir, Watermark* wm, const std::string& relay_id = "");

class Outbox {
 public:
  // out_tmp: where .part files are built (BridgePaths::out_tmp); outbox_dir: where
  // <PO>/ subdirectories are published (BridgePaths::outbox_directory). Both must be on
  // one file system (rename). Every durable step goes through `io` (nullptr: DurableIo::Real();
  // not owned).
  Outbox(std::string out_tmp, std::string outbox_dir, store::DurableIo* io = nullptr);

  // Creates out_tmp and outbox_dir if missing (and fsyncs their parents).
  Status Init();

  std::string TmpDir() const { return tmp_; }
  std::string OutboxDir() const { return outbox_; }
  std::string PostOfficeDir(const std::string& post_office) const { return outbox_ + "/" + post_office; }
  std::string PartPath(const std::string& batch_name) const;
  // This relay's id in a shared ledger: part of every batch, manifest and watermark name.
  void set_relay_id(std::string relay_id) { relay_id_ = std::move(relay_id); }
  const std::string& relay_id() const { return relay_id_; }

  // Writes batch content and manifest as out/tmp/<NAME>.part and out/tmp/<STEM>.MAN.part,
  // fsyncs both files and out/tmp. After this the caller commits its ledger transaction.
  Status WritePart(uint64_t epoch, uint64_t seq, const std::string& post_office, const std::string& content,
                   const std::vector<ManifestEntry>& entries);
  // After the ledger commit: renames manifest then batch into outbox/<PO>/, fsyncs that
  // directory and out/tmp, then advances the watermark. Idempotent (a roll-forward after a
  // crash may find the renames already done). Never replaces a published file: the renames
  // are no-replace, and a different file already published under the name is kAlreadyExists
  // (the name was reused: the .part is kept, nothing is overwritten).
  Status Publish(uint64_t epoch, uint64_t seq, const std::string& post_office);
  // Removes the .part files of an uncommitted batch (best effort, fsyncs out/tmp).
  Status Abandon(uint64_t epoch, uint64_t seq);

  // Group commit of several batches: with defer=true, WritePart and Publish leave the fsync
  // of out/tmp to the caller, who calls SyncTmpDir() once after all WriteParts (BEFORE the
  // ledger commit: the .part names must be durable) and once after all Publishes.
  void set_defer_tmpdir_sync(bool defer) { defer_tmpdir_sync_ = defer; }
  // fsync(out/tmp); crash/fault point batch.tmpdir.fsynced.
  Status SyncTmpDir();

 private:
  Status MkdirP(const std::string& path);
  Status WriteDurable(const std::string& path, const std::string& data, const char* written, const char* fsynced,
                      bool uncached);
  Status PublishFile(const std::string& from, const std::string& to);

  std::string tmp_;
  std::string outbox_;
  store::DurableIo* io_;
  bool defer_tmpdir_sync_ = false;
  std::string relay_id_;
};

// Validates a post office name for use as a directory (1-8 chars, A-Z 0-9 - _).
bool ValidPostOfficeName(const std::string& post_office);

}  // namespace ccmail::exporter
