// directory_sink.cpp - interim durable sink: tmp file, fsync, rename, directory fsync.
#include "ccmail/milter/directory_sink.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>

#include "ccmail/common/unique_fd.h"

namespace ccmail::milter {

namespace {

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("write " + path, errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

Status FsyncDir(const std::string& dir) {
  UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return Status::FromErrno("open " + dir, errno);
  if (fsync(fd.get()) != 0) return Status::FromErrno("fsync " + dir, errno);
  return Status::Ok();
}

class DirWriter : public CaptureWriter {
 public:
  DirWriter(std::string dir, std::string id, UniqueFd fd)
      : dir_(std::move(dir)), id_(std::move(id)), fd_(std::move(fd)) {
    tmp_ = dir_ + "/tmp/" + id_ + "." + std::to_string(getpid());
  }
  ~DirWriter() override { Abort(); }
  const std::string& tmp() const { return tmp_; }

  Status AddHeader(std::string_view name, std::string_view value) override {
    std::string line;
    line.reserve(name.size() + value.size() + 3);
    line.append(name).append(":").append(value).append("\r\n");
    return Put(line);
  }
  Status EndHeaders() override { return Put("\r\n"); }
  Status AddBody(std::string_view chunk) override { return Put(chunk); }

  Status Commit(const CaptureEnvelope& env, CaptureReceipt* receipt) override {
    if (!live_) return Status::Unavailable("capture " + id_ + " already failed");
    std::string meta = "capture_id " + id_ + "\nqueue_id " + env.queue_id + "\nsender " + env.sender +
                       "\nsize " + std::to_string(size_) + "\n";
    for (const auto& r : env.recipients)
      meta += "recipient " + r.smtp_address + "\t" + r.ccmail_name + "\t" + r.postoffice + "\n";
    std::string meta_tmp = dir_ + "/tmp/" + id_ + ".meta";
    Status s = Finish(meta, meta_tmp);
    if (!s.ok()) {
      unlink(meta_tmp.c_str());
      Abort();
      return s;
    }
    receipt->capture_id = id_;
    receipt->size = size_;
    receipt->published = false;  // no claim table in the interim sink
    return Status::Ok();
  }

  void Abort() override {
    if (!live_ && fd_.get() < 0) return;
    live_ = false;
    fd_.reset();
    if (!tmp_.empty()) unlink(tmp_.c_str());
    tmp_.clear();
  }

 private:
  Status Put(std::string_view data) {
    if (!live_) return Status::Unavailable("capture " + id_ + " already failed");
    Status s = WriteAll(fd_.get(), data, tmp_);
    if (!s.ok()) {
      Abort();
      return s;
    }
    size_ += data.size();
    return Status::Ok();
  }

  Status Finish(const std::string& meta, const std::string& meta_tmp) {
    if (fsync(fd_.get()) != 0) return Status::FromErrno("fsync " + tmp_, errno);
    if (close(fd_.release()) != 0) return Status::FromErrno("close " + tmp_, errno);
    UniqueFd m(open(meta_tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0640));
    if (m.get() < 0) return Status::FromErrno("create " + meta_tmp, errno);
    CCMAIL_RETURN_IF_ERROR(WriteAll(m.get(), meta, meta_tmp));
    if (fsync(m.get()) != 0) return Status::FromErrno("fsync " + meta_tmp, errno);
    std::string msg_new = dir_ + "/new/" + id_;
    if (rename(tmp_.c_str(), msg_new.c_str()) != 0) return Status::FromErrno("rename " + tmp_, errno);
    tmp_.clear();
    live_ = false;
    if (rename(meta_tmp.c_str(), (msg_new + ".meta").c_str()) != 0) {
      int e = errno;
      unlink(msg_new.c_str());
      return Status::FromErrno("rename " + meta_tmp, e);
    }
    Status s = FsyncDir(dir_ + "/new");
    if (!s.ok()) {
      // Not durable: withdraw it so that a tempfail does not leave an export behind.
      unlink((msg_new + ".meta").c_str());
      unlink(msg_new.c_str());
    }
    return s;
  }

  std::string dir_, id_, tmp_;
  UniqueFd fd_;
  bool live_ = true;
  uint64_t size_ = 0;
};

class DirSink : public CaptureSink {
 public:
  explicit DirSink(std::string dir) : dir_(std::move(dir)) {}
  Status Begin(std::unique_ptr<CaptureWriter>* out) override {
    std::string id = NewCaptureIdText();
    std::string path = dir_ + "/tmp/" + id + "." + std::to_string(getpid());
    UniqueFd fd(open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0640));
    if (fd.get() < 0) return Status::FromErrno("create " + path, errno);
    *out = std::make_unique<DirWriter>(dir_, id, std::move(fd));
    return Status::Ok();
  }
  SinkProbe Probe() override {
    SinkProbe p;
    struct statvfs v;
    if (statvfs(dir_.c_str(), &v) == 0) p.free_bytes = static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
    return p;
  }

 private:
  std::string dir_;
};

}  // namespace

std::string NewCaptureIdText() {
  unsigned char rnd[10];
  size_t got = 0;
  while (got < sizeof rnd) {
    ssize_t n = getrandom(rnd + got, sizeof rnd - got, 0);
    if (n < 0 && errno == EINTR) continue;
    CCMAIL_CHECK(n > 0, "getrandom failed");
    got += static_cast<size_t>(n);
  }
  uint64_t ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count()) &
                0xFFFFFFFFFFFFull;
  char buf[33];
  std::snprintf(buf, sizeof buf, "%012llx", static_cast<unsigned long long>(ms));
  for (int i = 0; i < 10; ++i) std::snprintf(buf + 12 + 2 * i, 3, "%02x", rnd[i]);
  return std::string(buf, 32);
}

Status DirectorySink::Open(const std::string& dir, std::unique_ptr<CaptureSink>* out) {
  for (const std::string& d : {dir, dir + "/tmp", dir + "/new"})
    if (mkdir(d.c_str(), 0750) != 0 && errno != EEXIST) return Status::FromErrno("mkdir " + d, errno);
  *out = std::make_unique<DirSink>(dir);
  return Status::Ok();
}

}  // namespace ccmail::milter
