// router.h - which recipients are cc:Mail users.
//
// SYNOPSIS
//   Router router(address_map, reject_unknown);
//   Route r = router.Classify("<jsmith@corp.example>");
//
// DESCRIPTION
//   Classify() looks an SMTP recipient up in the address map (exact address,
//   @domain rule, PMDF fallbacks of ccmail_domains). kCcMail carries the
//   resolved cc:Mail name and post office. An address that is not mapped but
//   whose domain is a cc:Mail domain is kUnknown: with reject_unknown the
//   session answers 550 5.1.1 at RCPT; otherwise it is left to the MTA.
//   Everything else is kOther. Classify never fails; an empty or malformed
//   address is kOther (the MTA has already judged its syntax).
//
// THREAD SAFETY
//   Immutable after construction; Classify() is safe from any thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "ccmail/format/address_map.h"

namespace ccmail::milter {

struct Route {
  enum class Kind { kOther, kCcMail, kUnknown };
  Kind kind = Kind::kOther;
  format::CcMailAddress address;  // set for kCcMail
};

class Router {
 public:
  Router(std::shared_ptr<const format::AddressMap> map, bool reject_unknown)
      : map_(std::move(map)), reject_unknown_(reject_unknown) {}
  Route Classify(std::string_view smtp_address) const;
  bool reject_unknown() const { return reject_unknown_; }

 private:
  std::shared_ptr<const format::AddressMap> map_;
  bool reject_unknown_;
};

// "<a@b>" -> "a@b"; trims white space.
std::string_view StripAngles(std::string_view address);

}  // namespace ccmail::milter
