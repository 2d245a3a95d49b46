// spool_sink.cpp - SpoolCaptureSink: stream into the spool, commit durably, then publish.
#include "ccmail/milter/spool_sink.h"

#include <sys/statvfs.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "ccmail/common/clock.h"
#include "ccmail/common/log.h"
#include "ccmail/config/config.h"
#include "ccmail/config/paths.h"
#include "ccmail/store/content_key.h"

namespace ccmail::milter {

struct SpoolCaptureSink::Attachment {
  std::unique_ptr<shm::ClaimTable> table;
  std::unique_ptr<shm::Registration> reg;  // destroyed before table (declared after it)
  std::unique_ptr<store::Spool> spool;
  std::string tag;
  ~Attachment() {
    spool.reset();
    reg.reset();  // must not outlive its table
  }
};

// One message: a SpoolWriter plus the content key, streamed together.
class SpoolWriterAdapter : public CaptureWriter {
 public:
  SpoolWriterAdapter(SpoolCaptureSink* sink, std::shared_ptr<SpoolCaptureSink::Attachment> att,
                     std::unique_ptr<store::SpoolWriter> w, std::string_view sender)
      : sink_(sink), att_(std::move(att)), w_(std::move(w)) {
    key_.SetEnvelopeSender(sender);
    buf_.reserve(4096);
  }
  ~SpoolWriterAdapter() override { Abort(); }

  Status AddHeader(std::string_view name, std::string_view value) override {
    key_.AddHeader(name, value);
    if (!w_) return Status::Unavailable("capture already finished or failed");
    if (buf_.size() + name.size() + value.size() + 3 > kBufferSize) CCMAIL_RETURN_IF_ERROR(Flush());
    buf_.append(name).append(":").append(value).append("\r\n");
    return Status::Ok();
  }
  Status EndHeaders() override {
    in_body_ = true;
    return Put("\r\n");
  }
  Status AddBody(std::string_view chunk) override {
    key_.AddBody(chunk.data(), chunk.size());
    return Put(chunk);
  }

  Status Commit(const CaptureEnvelope& env, CaptureReceipt* receipt) override {
    if (!w_) return Status::Unavailable("capture already finished or failed");
    if (!in_body_) CCMAIL_RETURN_IF_ERROR(EndHeaders());
    store::SpoolMeta meta;
    // A Message-ID the MTA made for this SMTP attempt embeds its queue id (content_key.h).
    if (!env.local_submission) key_.SetQueueId(env.queue_id);
    meta.content_key = key_.Finish();
    meta.queue_id = env.queue_id;
    meta.envelope_sender = env.sender;
    meta.received_ms = std::chrono::duration_cast<std::chrono::milliseconds>(env.received.time_since_epoch()).count();
    meta.recipients.reserve(env.recipients.size());
    for (const auto& r : env.recipients) meta.recipients.push_back({r.smtp_address, r.ccmail_name, r.post_office});
    CCMAIL_RETURN_IF_ERROR(Flush());
    const store::CaptureId id = w_->id();
    const uint64_t size = w_->bytes_written();
    Status s = w_->Commit(std::move(meta));  // the durability point; removes tmp on failure
    w_.reset();
    att_.reset();
    if (!s.ok()) return s;
    receipt->capture_id = id.ToString();
    receipt->size = size;
    receipt->published = sink_->PublishCapture(id, size);
    return Status::Ok();
  }

  void Abort() override {
    if (w_) w_->Abort();
    w_.reset();
    att_.reset();
    buf_.clear();
  }

 private:
  // Small pieces (header lines, the blank line, small body chunks) are gathered into
  // one write of up to kBufferSize: a system call per header line is measurable under
  // a sandboxed kernel, and memory stays bounded per message.
  static constexpr size_t kBufferSize = 64 * 1024;

  Status Put(std::string_view data) {
    if (!w_) return Status::Unavailable("capture already finished or failed");
    if (buf_.size() + data.size() > kBufferSize) CCMAIL_RETURN_IF_ERROR(Flush());
    if (data.size() >= kBufferSize) return Write(data);
    buf_.append(data);
    return Status::Ok();
  }
  Status Flush() {
    if (buf_.empty()) return Status::Ok();
    Status s = Write(buf_);
    buf_.clear();
    return s;
  }
  Status Write(std::string_view data) {
    if (!w_) return Status::Unavailable("capture already finished or failed");
    Status s = w_->Append(data.data(), data.size());
    if (!s.ok()) Abort();  // unlinks the tmp file
    return s;
  }

  SpoolCaptureSink* sink_;
  std::shared_ptr<SpoolCaptureSink::Attachment> att_;  // keeps spool + registration alive
  std::unique_ptr<store::SpoolWriter> w_;
  store::ContentKeyBuilder key_;
  std::string buf_;
  bool in_body_ = false;
};

Status SpoolSinkOptions::FromConfig(const Config& cfg, SpoolSinkOptions* out) {
  SpoolSinkOptions o;
  BridgePaths paths;
  CCMAIL_RETURN_IF_ERROR(BridgePaths::FromConfig(cfg, &paths));
  o.spool_root = paths.spool_root;
  CCMAIL_RETURN_IF_ERROR(shm::TableOptionsFromConfig(cfg, &o.table));
  CCMAIL_RETURN_IF_ERROR(cfg.GetBool("spool_log", &o.spool_log));
  *out = std::move(o);
  return Status::Ok();
}

SpoolCaptureSink::SpoolCaptureSink(SpoolSinkOptions opt) : opt_(std::move(opt)) {}

SpoolCaptureSink::~SpoolCaptureSink() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (recount_.joinable()) recount_.join();
  std::lock_guard<std::mutex> lock(mu_);
  att_.reset();
}

void SpoolCaptureSink::RecountLoop() {
  auto period = std::chrono::milliseconds(opt_.stats_refresh_ms);
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_cv_.wait_for(lock, period, [this] { return stopping_; })) {
    std::shared_ptr<Attachment> att = att_;
    lock.unlock();
    if (att) {
      auto t0 = std::chrono::steady_clock::now();
      Status s = att->spool->RescanStats();
      auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
      if (!s.ok()) LogWarning("spool: backlog re-count: %s", s.ToString().c_str());
      period = std::max(std::chrono::milliseconds(opt_.stats_refresh_ms), 10 * took);
    }
    att.reset();
    lock.lock();
  }
}

Status SpoolCaptureSink::Open(const SpoolSinkOptions& opt, std::unique_ptr<SpoolCaptureSink>* out) {
  // The spool must be usable now: a wrong path or owner is a start-up error, not a 4xx forever.
  std::unique_ptr<store::Spool> probe;
  CCMAIL_RETURN_IF_ERROR(store::Spool::Open(opt.spool_root, &probe, opt.io));
  probe.reset();
  std::unique_ptr<SpoolCaptureSink> sink(new SpoolCaptureSink(opt));
  {
    std::lock_guard<std::mutex> lock(sink->mu_);
    sink->last_attempt_ = std::chrono::steady_clock::now();
    Status s = sink->Attach(/*create_if_missing=*/true);
    if (!s.ok()) {
      if (s.code() == Status::Code::kInvalidArgument) return s;  // a configuration error (bad group, bad name)
      LogError("claim table: %s; mail for cc:Mail is tempfailed until it is available", s.ToString().c_str());
      sink->last_error_ = s.ToString();
    }
  }
  if (opt.stats_refresh_ms > 0) sink->recount_ = std::thread([s = sink.get()] { s->RecountLoop(); });
  *out = std::move(sink);
  return Status::Ok();
}

Status SpoolCaptureSink::Attach(bool create_if_missing) {
  auto att = std::make_shared<Attachment>();
  shm::TableOptions to = opt_.table;
  to.create_if_missing = create_if_missing;
  to.recreate_if_invalid = false;  // only the exporter replaces a table
  CCMAIL_RETURN_IF_ERROR(shm::ClaimTable::Open(to, &att->table));
  CCMAIL_RETURN_IF_ERROR(att->table->Register(shm::Role::kMilter, &att->reg));
  const uint32_t my_index = att->reg->index();
  const uint64_t my_rgen = att->reg->rgen();
  att->tag = store::WriterTag{my_index, my_rgen}.ToString();
  CCMAIL_RETURN_IF_ERROR(store::Spool::Open(opt_.spool_root, &att->spool, opt_.io, att->tag));
  if (opt_.spool_log) CCMAIL_RETURN_IF_ERROR(att->spool->EnableWal());
  // Stats() never walks the directory on a message's path when the background
  // thread re-counts (Spool::Open counted once already).
  att->spool->set_stats_refresh_ms(opt_.stats_refresh_ms > 0 ? INT64_MAX / 2 : 0);
  // Earlier holders of our own registry entry are dead (it was FREE when we took it).
  size_t removed = 0;
  Status cs = att->spool->CleanTmp(
      [&](const std::string& tag) {
        auto writer = store::WriterTag::Parse(tag);
        if (!writer) return true;  // not a registry tag: not ours
        return !(writer->registry_index == my_index && writer->registration_gen != my_rgen);
      },
      &removed);
  if (!cs.ok()) LogWarning("spool: removing our own dead tmp files: %s", cs.ToString().c_str());
  if (removed > 0) LogInfo("spool: removed %zu unfinished tmp file(s) of an earlier writer %llu.*", removed,
                           static_cast<unsigned long long>(my_index));
  counters_.tmp_cleaned += removed;
  ++counters_.attaches;
  att_ = std::move(att);
  if (!last_error_.empty()) LogInfo("claim table %s attached again", att_->table->path().c_str());
  last_error_.clear();
  LogDebug("claim table %s: registered as writer %s", att_->table->path().c_str(), att_->tag.c_str());
  return Status::Ok();
}

std::shared_ptr<SpoolCaptureSink::Attachment> SpoolCaptureSink::Current(bool check_segment) {
  std::lock_guard<std::mutex> lock(mu_);
  if (att_ && check_segment) {
    Status s = att_->table->CheckSameSegment();
    if (!s.ok()) {
      LogError("%s; mail for cc:Mail is tempfailed until a valid table is back", s.ToString().c_str());
      last_error_ = s.ToString();
      att_.reset();  // writers in flight keep theirs
    }
  }
  if (!att_) {
    auto now = std::chrono::steady_clock::now();
    if (now - last_attempt_ >= opt_.reopen_interval) {
      last_attempt_ = now;
      Status s = Attach(/*create_if_missing=*/false);
      if (!s.ok() && s.ToString() != last_error_) {
        LogWarning("claim table still unavailable: %s", s.ToString().c_str());
        last_error_ = s.ToString();
      }
    }
  }
  return att_;
}

Status SpoolCaptureSink::Begin(std::string_view envelope_sender, std::unique_ptr<CaptureWriter>* out) {
  std::shared_ptr<Attachment> att = Current(/*check_segment=*/false);
  if (!att) return Status::Unavailable("claim table not available");
  std::unique_ptr<store::SpoolWriter> w;
  if (Status s = att->spool->Begin(&w); !s.ok()) {
    LogWarning("spool: cannot start a capture: %s", s.ToString().c_str());  // the 451 says less
    return s;
  }
  *out = std::make_unique<SpoolWriterAdapter>(this, std::move(att), std::move(w), envelope_sender);
  return Status::Ok();
}

bool SpoolCaptureSink::PublishCapture(const store::CaptureId& id, uint64_t size) {
  std::shared_ptr<Attachment> att;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++counters_.committed;
    att = att_;
  }
  bool ok = false;
  if (att) {
    Status s = att->table->Publish(*att->reg, id.bytes, size);
    att->table->RingDoorbell();  // also on overflow: the exporter should look at the spool
    ok = s.ok();
    if (!ok) LogDebug("capture %s not published (%s): the exporter's spool scan will find it",
                      id.ToString().c_str(), s.ToString().c_str());
  }
  if (!ok) {
    std::lock_guard<std::mutex> lock(mu_);
    ++counters_.unpublished;
  }
  return ok;
}

SinkProbe SpoolCaptureSink::Probe() {
  SinkProbe p;
  struct statvfs v;
  if (statvfs(opt_.spool_root.c_str(), &v) == 0) p.free_bytes = static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
  std::shared_ptr<Attachment> att = Current(/*check_segment=*/true);
  if (!att) {
    p.table_present = false;
    return p;
  }
  store::SpoolStats st = att->spool->Stats();
  p.backlog_messages = st.count;
  p.backlog_bytes = st.bytes;
  shm::ExporterState ex = att->table->Stats().exporter;
  // An exporter idle with nothing to do is not stalled: a heartbeat that reported an
  // empty backlog counts as progress.
  // An exporter that never committed a batch in this table yet (just started) is
  // judged by its heartbeat; the backlog limits still bound what it can fall behind.
  uint64_t ok_ns = ex.progress_ns;
  if ((ex.backlog_count == 0 || ex.progress_ns == 0) && ex.heartbeat_ns > ok_ns) ok_ns = ex.heartbeat_ns;
  if (ok_ns != 0) {
    uint64_t now = WallClockNs();
    p.exporter_idle = std::chrono::milliseconds(now > ok_ns ? (now - ok_ns) / 1000000 : 0);
  }
  return p;
}

std::string SpoolCaptureSink::writer_tag() const {
  std::lock_guard<std::mutex> lock(mu_);
  return att_ ? att_->tag : "";
}

SpoolSinkCounters SpoolCaptureSink::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

}  // namespace ccmail::milter
