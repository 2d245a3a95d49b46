// address_map.h - which SMTP addresses are cc:Mail users, and their cc:Mail names.
//
// SYNOPSIS
//   AddressMapOptions opt{.ccmail_domains = {"ccmail.corp.example"}, .default_postoffice = "HUBPO"};
//   std::shared_ptr<const AddressMap> map;
//   Status s = AddressMap::Load("/etc/ccmail-bridge/address-map", opt, &map);
//   if (auto who = map->Resolve("jsmith@corp.example")) use(who->name, who->post_office);
//
//   // or everything from the config (address_map, ccmail_domains, default_postoffice):
//   s = AddressMap::LoadFromConfig(config, &map);
//
// DESCRIPTION
//   The map file has one rule a line; blank lines and lines whose first
//   non-blank character is '#' are ignored:
//
//     jsmith@corp.example      Smith, John at HUBPO2   an address -> a cc:Mail name at a PO
//     helpdesk@corp.example    Help Desk               no " at PO": default_postoffice
//     @branch.example          BRANCHPO                every user@branch.example -> user at BRANCHPO
//     @sales.example           Sales Box at HUBPO      every address of the domain -> one name
//
//   The key is separated from the value by white space; the value splits at
//   its LAST " at " (any case). Keys are case-insensitive; names keep their
//   case. Resolve() tries, in order: the exact address, the "@domain" rule,
//   then the PMDF fallbacks for a domain listed in ccmail_domains:
//   "user@domain" -> "user" at default_postoffice (none when
//   default_postoffice is empty). A quoted local part ("John Smith"@domain)
//   is unquoted.
//
//   "user%PO@domain" (PMDF routing) names a post office chosen by the SENDER,
//   so it is honoured only for the post offices listed in
//   percent_route_postoffices (empty, the default: never); any other '%'
//   local part of a cc:Mail domain cannot be exported.
//
//   What can be exported is one rule, used by the map file check (--check),
//   the milter at RCPT and the exporter (PostOfficeNameUsable,
//   CcMailNameUsable):
//     post office  1-8 of A-Z 0-9 - _ (any case; the outbox directory is the
//                  upper-case form), never a DOS device name (CON, PRN, AUX,
//                  NUL, COM1-COM9, LPT1-LPT9): cc:Mail runs on DOS/Windows.
//     cc:Mail name 1-256 bytes; no control character, no " at " (any case),
//                  no ; " < > (they would make one recipient line name
//                  several addresses). A comma only in the directory form
//                  "Last, First" (one ", "), and only in a name the
//                  administrator wrote in the map: a name taken from an
//                  address's local part never has a comma.
//   A map line or option breaking the rule fails Parse; an address whose
//   derived name or post office breaks it is Resolution::kUnusable.
//
//   A loaded map is an immutable snapshot held by shared_ptr<const>: a reload
//   builds a new one and swaps the pointer, readers keep the old one until done.
//
// ERRORS
//   Load/Parse return kInvalidArgument "<file>:<line>: <reason>" for a
//   malformed line (missing value, bad address, control characters, duplicate
//   key naming the first line), kNotFound/kIoError when the file cannot be read.
//
// THREAD SAFETY
//   Resolve() and every const method are safe from any number of threads.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ccmail/common/status.h"
#include "ccmail/config/config.h"

namespace ccmail::format {

struct CcMailAddress {
  std::string name;        // cc:Mail directory name, e.g. "Smith, John"
  std::string post_office;  // e.g. "HUBPO2"
  bool operator==(const CcMailAddress&) const = default;
};

struct AddressMapOptions {
  std::vector<std::string> ccmail_domains;  // PMDF fallbacks apply to these domains
  std::string default_postoffice;           // PO for bare user@<ccmail domain>
  // Post offices a sender may pick with user%PO@domain; empty: '%' routing is off.
  std::vector<std::string> percent_route_postoffices;
};

// The export rule for a post office name (see DESCRIPTION). why: the reason when false.
bool PostOfficeNameUsable(std::string_view post_office, std::string* why = nullptr);
// The export rule for a cc:Mail name. from_address: the name comes from an SMTP local part
// (chosen by the sender), so no comma at all.
bool CcMailNameUsable(std::string_view name, bool from_address, std::string* why = nullptr);

// What an SMTP address is for the bridge.
struct Resolution {
  enum class Kind {
    kNotCcMail,  // not a cc:Mail address (not mapped, not a cc:Mail domain's fallback)
    kCcMail,     // address is set
    kUnusable,   // a cc:Mail domain's address that cannot be exported; reason says why
  };
  // kUnusable only: kBadName: the name cannot be written (553 5.1.3 at RCPT);
  // kNoRoute: no such post office for this gateway (550 5.1.1 at RCPT).
  enum class Unusable { kBadName, kNoRoute };
  Kind kind = Kind::kNotCcMail;
  CcMailAddress address;
  Unusable unusable = Unusable::kBadName;
  std::string reason;
};

class AddressMap {
 public:
  static Status Load(const std::string& path, const AddressMapOptions& options,
                     std::shared_ptr<const AddressMap>* out);
  static Status Parse(std::string_view text, const std::string& source_name,
                      const AddressMapOptions& options, std::shared_ptr<const AddressMap>* out);
  // Reads address_map (a missing file is an error only when address_map is set
  // explicitly), ccmail_domains and default_postoffice from config.
  static Status LoadFromConfig(const Config& config, std::shared_ptr<const AddressMap>* out);

  // What the address is (see Resolution). Accepts "<addr>" and surrounding white space.
  Resolution Lookup(std::string_view smtp_address) const;
  // The cc:Mail user an SMTP address belongs to (Lookup's kCcMail), or nullopt.
  std::optional<CcMailAddress> Resolve(std::string_view smtp_address) const;
  // True when domain (any case) is in ccmail_domains or has an "@domain" rule.
  bool IsCcMailDomain(std::string_view domain) const;
  // The way back (cc:Mail -> Internet): the SMTP address of the cc:Mail user name at
  // post_office (both any case; an empty post_office is default_postoffice), or nullopt.
  // Tried in order, and only an address that Resolve() maps back to the same user is
  // returned: an exact rule naming this user (the first in the file when several do);
  // "name@domain" for the first "@domain PO" rule of this post office; "name@<first of
  // ccmail_domains>" when post_office is default_postoffice. The last two only when the
  // name is usable as a local part (a dot-atom: "Smith, John" is not). An "@domain Name at
  // PO" rule maps many addresses to one name, so it names no address on the way back.
  std::optional<std::string> ReverseResolve(std::string_view name, std::string_view post_office) const;

  size_t rule_count() const { return exact_.size() + domains_.size(); }
  const std::string& source() const { return source_; }
  const AddressMapOptions& options() const { return options_; }

  AddressMap(const AddressMap&) = delete;
  AddressMap& operator=(const AddressMap&) = delete;

 private:
  AddressMap() = default;
  struct DomainRule {
    std::string name;  // empty: the local part is the name
    std::string post_office;
  };
  std::string source_;
  AddressMapOptions options_;
  std::unordered_map<std::string, CcMailAddress> exact_;  // lower-case address -> user
  std::unordered_map<std::string, DomainRule> domains_;   // lower-case domain -> rule
  // The way back: ReverseKey(name, PO) -> address of the first exact rule naming that user;
  // upper-case PO -> domain of its first "@domain PO" rule.
  std::unordered_map<std::string, std::string> reverse_exact_;
  std::unordered_map<std::string, std::string> reverse_domain_;
};

}  // namespace ccmail::format
