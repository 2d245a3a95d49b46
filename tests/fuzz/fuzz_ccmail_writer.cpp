// fuzz_ccmail_writer - arbitrary bytes as an RFC 5322/MIME message through the
// converter. Invariants: no crash, no leak, the status is ok or "unconvertible"
// (never an I/O error on a good fd), and whatever is written passes the reader
// with the same settings: a hostile message can never produce a broken import file.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "ccmail/format/converter.h"
#include "ccmail/format/reader.h"

using namespace ccmail;
using namespace ccmail::format;

static int MemFd() {
  static int fd = memfd_create("fuzz-writer", MFD_CLOEXEC);
  return fd;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  // The first byte picks settings, so every layout is exercised.
  const uint8_t knobs = data[0];
  ++data;
  --size;
  FormatSettings s;
  s.timezone = "UTC";
  s.local_postoffice = "HUBPO2";
  s.itemsize = !(knobs & 1);
  s.files = (!s.itemsize || (knobs & 2)) ? FileData::kHex : FileData::kRaw;
  s.codepage = (knobs & 4) ? CodePage::kCp437 : CodePage::kCp850;
  s.large_body = (knobs & 8) ? LargeBody::kFile : LargeBody::kSplit;
  s.long_filenames = knobs & 16;
  s.headers_item = !(knobs & 32);
  s.max_items = (knobs & 64) ? 4 : 20;
  s.max_nesting_depth = (knobs & 128) ? 2 : 8;
  s.text_item_max = (knobs & 64) ? 300 : 20000;
  s.header_limit = (knobs & 128) ? 512 : 4096;

  const int fd = MemFd();
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) std::abort();
  ConvertInput in;
  in.fd = fd;
  in.offset = 0;
  in.length = size;
  in.envelope_sender = "fuzz@example.com";
  in.recipients = {{"jsmith@ccmail.corp.example", {"Smith, John", "HUBPO2"}},
                   {"mgarcia@ccmail.corp.example", {"Garcia, Maria", "OTHERPO"}}};
  in.received = 1795520000;
  StringSink sink;
  ConvertResult res;
  Status st = Converter(s).Convert(in, &sink, &res);
  if (!st.ok()) {
    if (!IsUnconvertible(st)) {
      std::fprintf(stderr, "unexpected status: %s\n", st.ToString().c_str());
      std::abort();
    }
    return 0;
  }
  ReadOptions ro;
  ro.keep_data = false;
  ReadResult r = ReadImportFile(sink.str(), s, ro);
  if (!r.ok() || static_cast<int>(r.messages.size()) != res.messages_written) {
    for (const Violation& v : r.violations) std::fprintf(stderr, "%llu: %s\n", static_cast<unsigned long long>(v.offset), v.reason.c_str());
    std::abort();
  }
  size_t rcpts = 0;
  for (const ImportMessage& m : r.messages) rcpts += m.to.size() + m.cc.size() + m.bcc.size();
  if (rcpts != in.recipients.size()) {
    std::fprintf(stderr, "recipient lines: %zu, expected %zu\n", rcpts, in.recipients.size());
    std::abort();
  }
  return 0;
}
