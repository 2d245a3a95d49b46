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
  format::Resolution res = map_->Lookup(addr);
  switch (res.kind) {
    case format::Resolution::Kind::kCcMail:
      r.kind = Route::Kind::kCcMail;
      r.address = std::move(res.address);
      return r;
    case format::Resolution::Kind::kUnusable:
      r.kind = Route::Kind::kUnusable;
      if (res.unusable == format::Resolution::Unusable::kNoRoute)
        r.reject = {"550", "5.1.1", "no such cc:Mail post office: " + res.reason};
      else
        r.reject = {"553", "5.1.3", "not a usable cc:Mail name: " + res.reason};
      return r;
    case format::Resolution::Kind::kNotCcMail:
      break;
  }
  auto at = addr.rfind('@');
  if (at != std::string_view::npos && map_->IsCcMailDomain(addr.substr(at + 1))) r.kind = Route::Kind::kUnknown;
  return r;
}

}  // namespace ccmail::milter
