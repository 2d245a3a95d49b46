// fuzz_ccmail_reader - arbitrary bytes as an import file: the reader must never
// crash, read out of bounds or report an offset beyond the file.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ccmail/format/reader.h"

using namespace ccmail::format;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view file(reinterpret_cast<const char*>(data), size);
  for (int variant = 0; variant < 3; ++variant) {
    FormatSettings s;
    s.timezone = "UTC";
    s.itemsize = variant != 1;
    s.files = variant == 0 ? FileData::kRaw : FileData::kHex;
    ReadOptions o;
    o.detect_layout = variant == 2;
    o.keep_data = variant != 2;
    ReadResult r = ReadImportFile(file, s, o);
    for (const Violation& v : r.violations)
      if (v.offset > size || v.reason.empty()) std::abort();
  }
  return 0;
}
