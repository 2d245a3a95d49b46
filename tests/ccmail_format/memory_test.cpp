// A 50 MB message converts in at most 3x its size of memory (peak RSS of a child
// process that does nothing else). Skipped under sanitizers, whose shadow memory
// and quarantine make RSS meaningless.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <sys/stat.h>

#include <fstream>
#include <random>

#include "test_util.h"

#if defined(__SANITIZE_ADDRESS__)
#define CCMAIL_UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CCMAIL_UNDER_SANITIZER 1
#endif
#endif

namespace ccmail::format {
namespace {

// Writes a message of about `target` bytes: short text, then base64 attachments.
[[maybe_unused]] std::string WriteBigMessage(const std::string& path, size_t target) {
  std::ofstream out(path, std::ios::binary);
  out << "From: big@partner.example\nTo: jsmith@ccmail.corp.example\nSubject: big\nMIME-Version: 1.0\n"
         "Content-Type: multipart/mixed; boundary=BIG\n\n--BIG\nContent-Type: text/plain\n\nBig attachments follow.\n";
  std::mt19937 rng(7);
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t written = 0;
  for (int part = 0; written < target; ++part) {
    out << "--BIG\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=part" << part
        << ".bin\nContent-Transfer-Encoding: base64\n\n";
    std::string line(76, 'A');
    for (size_t l = 0; l < 100000 && written < target; ++l) {
      for (char& c : line) c = t[rng() & 63];
      out << line << "\n";
      written += 77;
    }
  }
  out << "--BIG--\n";
  return path;
}

// Peak RSS (MB) of a child process converting the file; the child exits 1 on failure.
[[maybe_unused]] double ConvertInChild(const std::string& path, off_t size) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int fd = open(path.c_str(), O_RDONLY);
    int out = open("/dev/null", O_WRONLY);
    ConvertInput in;
    in.fd = fd;
    in.length = static_cast<uint64_t>(size);
    in.recipients = testing::DefaultRecipients();
    in.received = 1795520000;
    FdSink sink(out);
    ConvertResult res;
    Status s = Converter(testing::TestSettings()).Convert(in, &sink, &res);
    _exit(s.ok() && sink.Flush().ok() ? 0 : 1);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
  struct rusage ru;
  getrusage(RUSAGE_CHILDREN, &ru);  // the largest child so far: run the larger case last
  return ru.ru_maxrss / 1024.0;
}

TEST(Memory, FiftyMegabyteMessagesStayUnderThreeTimesTheirSize) {
#ifdef CCMAIL_UNDER_SANITIZER
  GTEST_SKIP() << "RSS is not meaningful under AddressSanitizer";
#else
  char dir[] = "/tmp/ccmail-mem-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  // 1. Attachments (streamed twice, never held).
  const std::string path = std::string(dir) + "/big.eml";
  WriteBigMessage(path, 50u << 20);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  double peak_mb = ConvertInChild(path, st.st_size);
  double size_mb = st.st_size / 1048576.0;
  std::printf("attachments: message %.1f MB, converter peak RSS %.1f MB (%.2fx)\n", size_mb, peak_mb, peak_mb / size_mb);
  ASSERT_GT(peak_mb, 0) << "conversion failed";
  EXPECT_LE(peak_mb, 3 * size_mb);
  unlink(path.c_str());
  // 2. A 50 MB Latin-1 text body (held once as UTF-8, once in the code page: the worst case).
  const std::string tpath = std::string(dir) + "/text.eml";
  {
    std::ofstream out(tpath, std::ios::binary);
    out << "From: big@partner.example\nTo: jsmith@ccmail.corp.example\nSubject: big text\nMIME-Version: 1.0\n"
           "Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n";
    const std::string line = "Caf\xe9 cr\xe8me br\xfbl\xe9" "e, M\xfcller Stra\xdf" "e \xe0 \xe9t\xe9 tr\xe8s bien.\n";
    for (size_t n = 0; n < (50u << 20); n += line.size()) out << line;
  }
  ASSERT_EQ(stat(tpath.c_str(), &st), 0);
  peak_mb = ConvertInChild(tpath, st.st_size);
  size_mb = st.st_size / 1048576.0;
  std::printf("latin-1 text: message %.1f MB, converter peak RSS %.1f MB (%.2fx)\n", size_mb, peak_mb, peak_mb / size_mb);
  ASSERT_GT(peak_mb, 0) << "conversion failed";
  EXPECT_LE(peak_mb, 3 * size_mb);
  unlink(tpath.c_str());
  rmdir(dir);
#endif
}

}  // namespace
}  // namespace ccmail::format
