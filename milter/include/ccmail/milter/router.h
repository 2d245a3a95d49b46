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
//   An address of a cc:Mail domain that the bridge could never export (its
//   name or post office breaks the address map's export rule, or user%PO
//   routing to a post office not open to it) is kUnusable, with the reply for
//   that recipient alone: 553 5.1.3 for a name that cannot be written, 550
//   5.1.1 for a post office the gateway does not route to.
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
#include "ccmail/milter/reply.h"

namespace ccmail::milter {

struct Route {
  enum class Kind { kOther, kCcMail, kUnknown, kUnusable };
  Kind kind = Kind::kOther;
  format::CcMailAddress address;  // set for kCcMail
  Reply reject;                   // set for kUnusable
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
