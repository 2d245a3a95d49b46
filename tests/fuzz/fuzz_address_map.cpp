// fuzz_address_map - arbitrary bytes as an address map file; every accepted map
// must resolve its own keys without crashing.
#include <cstdint>
#include <string>

#include "ccmail/format/address_map.h"

using namespace ccmail::format;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  AddressMapOptions opt;
  opt.ccmail_domains = {"ccmail.corp.example"};
  opt.default_postoffice = "HUB";
  std::shared_ptr<const AddressMap> map;
  if (!AddressMap::Parse(text, "fuzz", opt, &map).ok()) return 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    (void)map->Resolve(line.substr(0, line.find_first_of(" \t")));
    (void)map->Resolve(line);
  }
  (void)map->Resolve("x%PO@ccmail.corp.example");
  return 0;
}
