// router.cpp - recipient classification over the address map snapshot.
#include "ccmail/milter/router.h"

namespace ccmail::milter {

std::string_view StripAngles(std::string_view a) {
  while (!a.empty() && (a.front() == ' ' || a.front() == '\t')) a.remove_prefix(1);
  while (!a.empty() && (a.back() == ' ' || a.back() == '\t')) a.remove_suffix(1);
  if (a.size() >= 2 && a.front() == '<' && a.back() == '>') a = a.substr(1, a.size() - 2);
  return a;
}

Route Router::Classify(std::string_view smtp_address) const {
  Route r;
  std::string_view addr = StripAngles(smtp_address);
  if (addr.empty() || !map_) return r;
  if (auto who = map_->Resolve(addr)) {
    r.kind = Route::Kind::kCcMail;
    r.address = std::move(*who);
    return r;
  }
  auto at = addr.rfind('@');
  if (at != std::string_view::npos && map_->IsCcMailDomain(addr.substr(at + 1))) r.kind = Route::Kind::kUnknown;
  return r;
}

}  // namespace ccmail::milter
