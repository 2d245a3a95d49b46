// format_bench - converter throughput and memory, each beside a baseline measured
// in the same run on the same bytes (so a noisy, shared machine affects both):
//
//   BM_SmallMessages        one small plain message per iteration -> messages/s
//   BM_BaselineSmallCopy    the same bytes read from the fd and copied (the floor)
//   BM_AttachmentHeavy      an 8 MB message of base64 attachments -> MB/s of input
//   BM_BaselineBase64Decode the same attachments only base64-decoded by GMime
//   BM_Corpus               every tests/corpus message -> messages/s and MB/s
//   BM_Peak50MB             peak RSS of a child converting a 50 MB message
#include <benchmark/benchmark.h>
#include <dirent.h>
#include <fcntl.h>
#include <gmime/gmime.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "ccmail/format/converter.h"

using namespace ccmail;
using namespace ccmail::format;

namespace {

int MemFile(const std::string& data) {
  int fd = memfd_create("format-bench", MFD_CLOEXEC);
  if (fd < 0 || write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) std::abort();
  return fd;
}

FormatSettings Settings() {
  FormatSettings s;
  s.timezone = "UTC";
  s.local_postoffice = "HUBPO2";
  return s;
}

ConvertInput Input(int fd, size_t len) {
  ConvertInput in;
  in.fd = fd;
  in.length = len;
  in.envelope_sender = "bob@partner.example";
  in.recipients = {{"jsmith@ccmail.corp.example", {"Smith, John", "HUBPO2"}}};
  in.received = 1795520000;
  return in;
}

std::string ReadFile(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream b;
  b << in.rdbuf();
  return b.str();
}

std::string AttachmentHeavy(size_t target) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::mt19937 rng(1);
  std::string m = "From: a@b.example\nTo: jsmith@ccmail.corp.example\nSubject: files\nMIME-Version: 1.0\n"
                  "Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/plain\n\nFiles attached.\n";
  for (int part = 0; m.size() < target; ++part) {
    m += "--B\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=file" + std::to_string(part) +
         ".pdf\nContent-Transfer-Encoding: base64\n\n";
    for (int l = 0; l < 20000 && m.size() < target; ++l) {
      for (int c = 0; c < 76; ++c) m.push_back(t[rng() & 63]);
      m.push_back('\n');
    }
  }
  return m + "--B--\n";
}

const std::string kSmall =
    "From: Bob Builder <bob@partner.example>\nTo: John Smith <jsmith@ccmail.corp.example>\n"
    "Subject: Lunch\nDate: Tue, 24 Nov 2026 09:31:00 +0000\nMessage-ID: <x@partner.example>\n\n"
    "Hi John,\n\nlunch at 12 in the usual place?\n\nBob\n";

void BM_SmallMessages(benchmark::State& state) {
  int fd = MemFile(kSmall);
  Converter conv(Settings());
  for (auto _ : state) {
    StringSink sink;
    Status s = conv.Convert(Input(fd, kSmall.size()), &sink, nullptr);
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
    benchmark::DoNotOptimize(sink.str().data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * kSmall.size());
  close(fd);
}
BENCHMARK(BM_SmallMessages);

void BM_BaselineSmallCopy(benchmark::State& state) {
  int fd = MemFile(kSmall);
  std::string buf(kSmall.size(), '\0');
  for (auto _ : state) {
    if (pread(fd, buf.data(), buf.size(), 0) != static_cast<ssize_t>(buf.size())) std::abort();
    StringSink sink;
    (void)sink.Write(buf.data(), buf.size());
    benchmark::DoNotOptimize(sink.str().data());
  }
  state.SetItemsProcessed(state.iterations());
  close(fd);
}
BENCHMARK(BM_BaselineSmallCopy);

void BM_AttachmentHeavy(benchmark::State& state) {
  const std::string msg = AttachmentHeavy(8u << 20);
  int fd = MemFile(msg);
  int null = open("/dev/null", O_WRONLY);
  Converter conv(Settings());
  for (auto _ : state) {
    FdSink sink(null);
    Status s = conv.Convert(Input(fd, msg.size()), &sink, nullptr);
    if (!s.ok() || !sink.Flush().ok()) state.SkipWithError(s.ToString().c_str());
  }
  state.SetBytesProcessed(state.iterations() * msg.size());
  close(fd);
  close(null);
}
BENCHMARK(BM_AttachmentHeavy)->Unit(benchmark::kMillisecond);

void BM_BaselineBase64Decode(benchmark::State& state) {
  // The same input, only base64-decoded once by GMime (what any converter must at least do).
  // Only the base64 lines (a '=' in a header would end GMime's decoder early).
  const std::string full = AttachmentHeavy(8u << 20);
  std::string msg;
  for (size_t p = 0; p < full.size();) {
    size_t e = full.find('\n', p);
    if (e == std::string::npos) e = full.size();
    if (e - p == 76) msg.append(full, p, e - p + 1);
    p = e + 1;
  }
  std::vector<unsigned char> out(msg.size());
  size_t decoded = 0;
  for (auto _ : state) {
    int st = 0;
    guint32 save = 0;
    decoded = g_mime_encoding_base64_decode_step(reinterpret_cast<const unsigned char*>(msg.data()), msg.size(),
                                                 out.data(), &st, &save);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["decoded_MB"] = decoded / 1048576.0;
  state.SetBytesProcessed(state.iterations() * full.size());  // per message byte, like BM_AttachmentHeavy
}
BENCHMARK(BM_BaselineBase64Decode)->Unit(benchmark::kMillisecond);

void BM_Corpus(benchmark::State& state) {
  std::vector<std::pair<int, size_t>> files;
  size_t bytes = 0;
  const std::string dir = std::string(CCMAIL_SOURCE_DIR) + "/tests/corpus";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n.size() < 5 || n.substr(n.size() - 4) != ".eml") continue;
      std::string m = ReadFile(dir + "/" + n);
      files.emplace_back(MemFile(m), m.size());
      bytes += m.size();
    }
    closedir(d);
  }
  int null = open("/dev/null", O_WRONLY);
  Converter conv(Settings());
  for (auto _ : state) {
    for (const auto& [fd, len] : files) {
      FdSink sink(null);
      Status s = conv.Convert(Input(fd, len), &sink, nullptr);
      if (!s.ok()) state.SkipWithError(s.ToString().c_str());
    }
  }
  state.SetItemsProcessed(state.iterations() * files.size());
  state.SetBytesProcessed(state.iterations() * bytes);
  for (const auto& f : files) close(f.first);
  close(null);
}
BENCHMARK(BM_Corpus)->Unit(benchmark::kMillisecond);

void BM_Peak50MB(benchmark::State& state) {
  char path[] = "/tmp/format-bench-XXXXXX";
  int fd = mkstemp(path);
  size_t size = 0;
  {
    // Written and freed before the fork: a forked child starts with the parent's RSS.
    const std::string msg = AttachmentHeavy(50u << 20);
    if (fd < 0 || write(fd, msg.data(), msg.size()) != static_cast<ssize_t>(msg.size())) std::abort();
    size = msg.size();
  }
  double peak_mb = 0;
  for (auto _ : state) {
    pid_t pid = fork();
    if (pid == 0) {
      int null = open("/dev/null", O_WRONLY);
      FdSink sink(null);
      Status s = Converter(Settings()).Convert(Input(fd, size), &sink, nullptr);
      _exit(s.ok() && sink.Flush().ok() ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    peak_mb = ru.ru_maxrss / 1024.0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) state.SkipWithError("conversion failed");
  }
  state.counters["message_MB"] = size / 1048576.0;
  state.counters["peak_rss_MB"] = peak_mb;
  close(fd);
  unlink(path);
}
BENCHMARK(BM_Peak50MB)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
