// Memory: a 50 MB message converts in about its own size of memory (peak RSS of a child
// process that does nothing else): attachments are streamed, and so is the main text,
// whatever its charset and transfer encoding. RSS checks are skipped under sanitizers,
// whose shadow memory and quarantine make RSS meaningless. The streamed text must be the
// text the whole-text path makes: StreamedMainTextEqualsHeldText checks that for stateful
// and multibyte charsets with chunk boundaries inside sequences.
#include <gtest/gtest.h>
#include <iconv.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>

#include "ccmail/testing/temp_dir.h"
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

constexpr const char* kTopHeaders =
    "From: big@partner.example\nTo: jsmith@ccmail.corp.example\nSubject: big\nMIME-Version: 1.0\n";

std::string Base64Lines(std::string_view data) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve(data.size() / 3 * 4 + data.size() / 57 + 8);
  for (size_t i = 0; i < data.size(); i += 3) {
    uint32_t v = static_cast<unsigned char>(data[i]) << 16;
    if (i + 1 < data.size()) v |= static_cast<unsigned char>(data[i + 1]) << 8;
    if (i + 2 < data.size()) v |= static_cast<unsigned char>(data[i + 2]);
    out += t[(v >> 18) & 63];
    out += t[(v >> 12) & 63];
    out += i + 1 < data.size() ? t[(v >> 6) & 63] : '=';
    out += i + 2 < data.size() ? t[v & 63] : '=';
    if ((i / 3 + 1) % 19 == 0) out += '\n';
  }
  if (out.empty() || out.back() != '\n') out += '\n';
  return out;
}

// Writes a message of about `target` bytes: short text, then base64 attachments.
[[maybe_unused]] void WriteBigMessage(const std::string& path, size_t target) {
  std::ofstream out(path, std::ios::binary);
  out << kTopHeaders
      << "Content-Type: multipart/mixed; boundary=BIG\n\n--BIG\nContent-Type: text/plain\n\nBig attachments follow.\n";
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
}

const std::string kLatin1Line =
    "Caf\xe9 cr\xe8me br\xfbl\xe9" "e, M\xfcller Stra\xdf" "e \xe0 \xe9t\xe9 tr\xe8s bien.\n";
const std::string kUtf8Line = "Gr\xc3\xbc\xc3\x9f" "e \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e "
                              "\xf0\x9f\x98\x80 caf\xc3\xa9 cr\xc3\xa8me \xce\xa9mega.\n";

// A single-part message whose text body (charset, transfer encoding) is `line` repeated
// to about `target` bytes.
[[maybe_unused]] void WriteTextMessage(const std::string& path, const std::string& charset, bool base64,
                                       const std::string& line, size_t target) {
  std::ofstream out(path, std::ios::binary);
  out << kTopHeaders << "Content-Type: text/plain; charset=" << charset
      << "\nContent-Transfer-Encoding: " << (base64 ? "base64" : "8bit") << "\n\n";
  std::string block;  // a multiple of 57 bytes: base64 lines without padding, so pieces join
  while (block.size() < (1u << 20))
    for (int i = 0; i < 57; ++i) block += line;
  const std::string piece = base64 ? Base64Lines(block) : block;  // 1 MiB of text at a time
  for (size_t n = 0; n < target; n += piece.size()) out << piece;
}

struct Peak {
  double mb = -1;          // peak RSS of the child, -1 when the conversion failed
  double inherited_mb = 0;  // its RSS when it started: pages shared with this test process
};

double CurrentRssMb() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  const bool ok = std::fscanf(f, "%ld %ld", &pages, &resident) == 2;
  std::fclose(f);
  return ok ? resident * (sysconf(_SC_PAGESIZE) / 1048576.0) : 0;
}

// Peak RSS (MB) of a child process converting the file, from the spool file (fd) or from
// the message's bytes in memory (ConvertInput::data; the child's own copy counts too).
[[maybe_unused]] Peak ConvertInChild(const std::string& path, off_t size, bool from_memory) {
  int report[2];
  if (pipe(report) != 0) return {};
  pid_t pid = fork();
  if (pid < 0) return {};
  if (pid == 0) {
    const double inherited = CurrentRssMb();
    if (write(report[1], &inherited, sizeof inherited) != sizeof inherited) _exit(1);
    int fd = open(path.c_str(), O_RDONLY);
    int out = open("/dev/null", O_WRONLY);
    ConvertInput in;
    in.fd = fd;
    in.length = static_cast<uint64_t>(size);
    std::string bytes;
    if (from_memory) {  // exactly one copy, as the exporter holds it
      bytes.resize(static_cast<size_t>(size));
      if (pread(fd, bytes.data(), bytes.size(), 0) != size) _exit(1);
      in.data = bytes.data();
    }
    in.recipients = testing::DefaultRecipients();
    in.received = 1795520000;
    FdSink sink(out);
    ConvertResult res;
    Status s = Converter(testing::TestSettings()).Convert(in, &sink, &res);
    _exit(s.ok() && sink.Flush().ok() ? 0 : 1);
  }
  close(report[1]);
  Peak peak;
  if (read(report[0], &peak.inherited_mb, sizeof peak.inherited_mb) != sizeof peak.inherited_mb) peak.inherited_mb = 0;
  close(report[0]);
  int status = 0;
  struct rusage ru;
  if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return {};
  peak.mb = ru.ru_maxrss / 1024.0;  // this child's own peak
  return peak;
}

// Converts `path` in a child and checks its peak RSS, less what it inherited from this
// test process (whatever the tests before left resident), against max_ratio x the file size.
[[maybe_unused]] void ExpectPeakWithin(const std::string& what, const std::string& path, bool from_memory,
                                       double max_ratio) {
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  const Peak peak = ConvertInChild(path, st.st_size, from_memory);
  const double size_mb = st.st_size / 1048576.0;
  const double used_mb = peak.mb - peak.inherited_mb;
  std::printf("%s%s: message %.1f MB, converter peak RSS %.1f MB (%.1f MB inherited), %.2fx\n", what.c_str(),
              from_memory ? " (from memory)" : "", size_mb, peak.mb, peak.inherited_mb, used_mb / size_mb);
  ASSERT_GT(peak.mb, 0) << what << ": conversion failed";
  EXPECT_LE(used_mb, max_ratio * size_mb) << what;
  unlink(path.c_str());
}

TEST(Memory, FiftyMegabyteMessagesConvertInAboutTheirOwnSize) {
#ifdef CCMAIL_UNDER_SANITIZER
  GTEST_SKIP() << "RSS is not meaningful under AddressSanitizer";
#else
  test::TempDir dir("ccmail-mem");
  const std::string d = dir.path();
  constexpr size_t k50MB = 50u << 20;
  // Attachments: decoded twice (to count, to write), streamed, never held.
  WriteBigMessage(d + "/attach.eml", k50MB);
  ExpectPeakWithin("attachments", d + "/attach.eml", false, 1.2);
  // Text bodies (they become UNNAMED.TXT): converted twice, streamed, never held either.
  WriteTextMessage(d + "/latin1.eml", "iso-8859-1", false, kLatin1Line, k50MB);
  ExpectPeakWithin("latin-1 text", d + "/latin1.eml", false, 1.2);
  WriteTextMessage(d + "/utf8.eml", "utf-8", false, kUtf8Line, k50MB);
  ExpectPeakWithin("utf-8 text", d + "/utf8.eml", false, 1.2);
  WriteTextMessage(d + "/base64.eml", "iso-8859-1", true, kLatin1Line, k50MB);
  ExpectPeakWithin("base64 latin-1 text", d + "/base64.eml", false, 1.2);
#endif
}

// The in-memory input (ConvertInput::data, what the exporter passes for spool files of at
// most 256 KiB): the caller holds the message, GMime parses it in place (no copy).
TEST(Memory, FiftyMegabyteTextFromMemory) {
#ifdef CCMAIL_UNDER_SANITIZER
  GTEST_SKIP() << "RSS is not meaningful under AddressSanitizer";
#else
  test::TempDir dir("ccmail-mem");
  const std::string d = dir.path();
  WriteTextMessage(d + "/latin1.eml", "iso-8859-1", false, kLatin1Line, 50u << 20);
  ExpectPeakWithin("latin-1 text", d + "/latin1.eml", true, 1.2);
#endif
}

// "" when equal, else where a and b first differ (the whole texts are too long to print).
std::string FirstDifference(const std::string& a, const std::string& b) {
  if (a == b) return "";
  const size_t at = static_cast<size_t>(std::mismatch(a.begin(), a.begin() + std::min(a.size(), b.size()), b.begin()).first - a.begin());
  return "differ at byte " + std::to_string(at) + " of " + std::to_string(a.size()) + "/" + std::to_string(b.size()) +
         ": \"" + a.substr(at > 8 ? at - 8 : 0, 24) + "\" vs \"" + b.substr(at > 8 ? at - 8 : 0, 24) + "\"";
}

std::string FromUtf8(const std::string& utf8, const char* charset) {
  iconv_t cd = iconv_open(charset, "UTF-8");
  if (cd == reinterpret_cast<iconv_t>(-1)) return {};
  std::string out(utf8.size() * 4 + 16, '\0');
  char* ip = const_cast<char*>(utf8.data());
  size_t il = utf8.size();
  char* op = out.data();
  size_t ol = out.size();
  const size_t r = iconv(cd, &ip, &il, &op, &ol);
  iconv(cd, nullptr, nullptr, &op, &ol);
  iconv_close(cd);
  if (r == static_cast<size_t>(-1)) return {};
  out.resize(out.size() - ol);
  return out;
}

// The main text is streamed in chunks (64 KiB of the part, 16 KiB of iconv output), an
// inline second text part is converted whole: the same body in both must give the same
// text items, also when a chunk ends inside a multibyte sequence, an ISO-2022 escape, a
// UTF-7 run or a CRLF, and with broken bytes.
TEST(Memory, StreamedMainTextEqualsHeldText) {
  struct Case {
    const char* charset;  // declared; "" for none
    const char* encode;   // iconv name the body is written in; nullptr: the UTF-8 text as is
    std::string text;     // UTF-8
  };
  const std::string cjk = "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9"
                          "\xe3\x83\x88 ABC \xe3\x82\xab\xe3\x82\xbf\xe3\x82\xab\xe3\x83\x8a\r\n";
  const std::string latin = "Caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e, M\xc3\xbcller Stra\xc3\x9f" "e\r\n";
  const std::string mixed = kUtf8Line.substr(0, kUtf8Line.size() - 1) + "\r\n";
  const std::vector<Case> cases = {
      {"utf-8", nullptr, mixed},
      {"utf-8", nullptr, mixed + "broken \xff\xe6\x97 bytes\n"},  // iconv from UTF-8, U+FFFD
      {"", nullptr, mixed},                                       // no charset: valid UTF-8
      {"", nullptr, "no charset, 8 bit \xe9t\xe9\r\n"},           // no charset: windows-1252
      {"iso-8859-1", "ISO-8859-1", latin},
      {"windows-1252", "WINDOWS-1252", latin + "lone CR\rthen LF\n"},
      {"utf-16", "UTF-16", mixed},
      {"utf-16le", "UTF-16LE", mixed},
      {"utf-7", "UTF-7", mixed},
      {"iso-2022-jp", "ISO-2022-JP", cjk},
      {"shift_jis", "SHIFT_JIS", cjk},
      {"gb18030", "GB18030", mixed},
  };
  FormatSettings s = testing::TestSettings();
  s.max_items = 1000;  // both texts in text items, not UNNAMED.TXT
  for (const Case& c : cases) {
    for (int shift = 0; shift < 4; ++shift) {
      for (bool base64 : {false, true}) {
        std::string utf8(static_cast<size_t>(shift), 'x');
        while (utf8.size() < 150000) utf8 += c.text;
        const std::string body = c.encode ? FromUtf8(utf8, c.encode) : utf8;
        ASSERT_FALSE(body.empty()) << c.charset;
        if (!base64 && body.find('\0') != std::string::npos) continue;  // UTF-16 only as base64
        const std::string part_head = std::string("Content-Type: text/plain") +
                                      (*c.charset ? std::string("; charset=") + c.charset : std::string()) +
                                      "\nContent-Transfer-Encoding: " + (base64 ? "base64" : "8bit") + "\n\n";
        const std::string data = base64 ? Base64Lines(body) : body + "\n";
        const std::string msg = std::string(kTopHeaders) + "Content-Type: multipart/mixed; boundary=SEP\n\n--SEP\n" +
                                part_head + data + "--SEP\n" + part_head + data + "--SEP--\n";
        const std::string label = std::string(c.charset) + " shift " + std::to_string(shift) +
                                  (base64 ? " base64" : " 8bit");
        std::string out;
        ASSERT_TRUE(testing::ConvertText(msg, s, &out).ok()) << label;
        ReadResult r = ReadImportFile(out, s);
        ASSERT_TRUE(r.ok()) << label << "\n" << testing::ViolationsText(r);
        ASSERT_EQ(r.messages.size(), 1u) << label;
        std::vector<std::string> texts;
        for (const ImportItem& it : r.messages[0].items)
          if (it.kind == ImportItem::Kind::kText && it.title != "Headers") texts.push_back(it.data);
        ASSERT_TRUE(texts.size() >= 2 && texts.size() % 2 == 0) << label << ": " << texts.size() << " text items";
        const size_t half = texts.size() / 2;
        for (size_t i = 0; i < half; ++i) ASSERT_EQ(FirstDifference(texts[i], texts[half + i]), "") << label << ", item " << i;
        // large_body = file: the main text streamed into UNNAMED.TXT as it is written (longer
        // than max_items x text_item_max, so not kept from measuring it).
        std::string held;
        for (size_t i = half; i < texts.size(); ++i) held += texts[i];
        FormatSettings f = s;
        f.large_body = LargeBody::kFile;
        f.max_items = 4;
        f.text_item_max = 256;
        ASSERT_GT(held.size(), f.max_items * f.text_item_max) << label;
        ASSERT_TRUE(testing::ConvertText(msg, f, &out).ok()) << label;
        r = ReadImportFile(out, f);
        ASSERT_TRUE(r.ok()) << label << "\n" << testing::ViolationsText(r);
        ASSERT_EQ(r.messages.size(), 1u) << label;
        const std::vector<ImportItem>& items = r.messages[0].items;
        ASSERT_GE(items.size(), 2u) << label;
        ASSERT_EQ(items[1].kind, ImportItem::Kind::kFile) << label;
        EXPECT_EQ(items[1].title, "UNNAMED.TXT") << label;
        ASSERT_EQ(FirstDifference(items[1].data, held), "") << label;
      }
    }
  }
}

}  // namespace
}  // namespace ccmail::format
