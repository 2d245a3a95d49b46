// address_map.cpp - the address map file and the PMDF fallbacks (see address_map.h).
#include "ccmail/format/address_map.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include <errno.h>

#include "ccmail/common/ascii.h"

namespace ccmail::format {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool HasControl(std::string_view s) {
  for (unsigned char c : s)
    if ((c < 0x20 && c != '\t') || c == 0x7f) return true;
  return false;
}

// Splits "Name at PO" at its last " at " (any case); no " at ": post_office is empty.
void SplitNameAtPo(std::string_view value, std::string* name, std::string* post_office) {
  const std::string padded = " " + std::string(value);  // "at PO" alone: an empty name
  std::string low = ToLowerAscii(padded);
  size_t at = low.rfind(" at ");
  if (at == std::string::npos) {
    *name = std::string(Trim(value));
    post_office->clear();
    return;
  }
  *name = std::string(Trim(std::string_view(padded).substr(0, at)));
  *post_office = std::string(Trim(std::string_view(padded).substr(at + 4)));
}

// An addr-spec key: local@domain, printable ASCII, no spaces, exactly one '@' outside quotes.
bool AddressKeyOk(std::string_view key) {
  if (key.empty() || key.size() > 320) return false;
  size_t at = key.rfind('@');
  if (at == std::string_view::npos || at + 1 == key.size()) return false;
  for (unsigned char c : key)
    if (c <= 0x20 || c >= 0x7f) return false;
  for (unsigned char c : key.substr(at + 1))
    if (!(std::isalnum(c) || c == '.' || c == '-' || c == '_' || c == '[' || c == ']' || c == ':')) return false;
  return true;
}

bool Fail(std::string* why, std::string text) {
  if (why) *why = std::move(text);
  return false;
}

// The key of the way-back index: cc:Mail names and post offices compare without case.
std::string ReverseKey(std::string_view name, std::string_view post_office) {
  return ToLowerAscii(name) + '\n' + ToUpperAscii(post_office);
}

// RFC 5322 dot-atom: atext runs separated by single dots.
bool IsDotAtom(std::string_view s) {
  if (s.empty() || s.size() > 64 || s.front() == '.' || s.back() == '.') return false;
  static constexpr std::string_view kSpecials = "!#$%&'*+-/=?^_`{|}~";
  char prev = 0;
  for (char c : s) {
    const bool atext = std::isalnum(static_cast<unsigned char>(c)) && static_cast<unsigned char>(c) < 0x80;
    if (c == '.' ? prev == '.' : !(atext || kSpecials.find(c) != std::string_view::npos)) return false;
    prev = c;
  }
  return true;
}

Resolution Unusable(Resolution::Unusable kind, std::string reason) {
  Resolution r;
  r.kind = Resolution::Kind::kUnusable;
  r.unusable = kind;
  r.reason = std::move(reason);
  return r;
}

}  // namespace

bool PostOfficeNameUsable(std::string_view post_office, std::string* why) {
  if (post_office.empty()) return Fail(why, "empty post office name");
  if (post_office.size() > 8) return Fail(why, "post office name longer than 8 characters");
  for (unsigned char c : post_office)
    if (!(std::isalnum(c) || c == '-' || c == '_') || c >= 0x80)
      return Fail(why, "post office name has a character other than A-Z 0-9 - _");
  // The post office is a directory the cc:Mail side (DOS/Windows) opens: a device name there
  // is a device, whatever the directory on this host is called.
  const std::string up = ToUpperAscii(post_office);
  static const char* const kDevices[] = {"CON", "PRN", "AUX", "NUL"};
  for (const char* d : kDevices)
    if (up == d) return Fail(why, "post office name is a DOS device name");
  if (up.size() == 4 && (up.compare(0, 3, "COM") == 0 || up.compare(0, 3, "LPT") == 0) && up[3] >= '0' && up[3] <= '9')
    return Fail(why, "post office name is a DOS device name");
  return true;
}

bool CcMailNameUsable(std::string_view name, bool from_address, std::string* why) {
  if (name.empty()) return Fail(why, "empty cc:Mail name");
  if (name.size() > 256) return Fail(why, "cc:Mail name longer than 256 characters");
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) return Fail(why, "control character in cc:Mail name");
    if (c == ';' || c == '"' || c == '<' || c == '>')
      return Fail(why, std::string("'") + static_cast<char>(c) + "' in cc:Mail name");
  }
  if (ToLowerAscii(" " + std::string(name) + " ").find(" at ") != std::string::npos)
    return Fail(why, "\" at \" in cc:Mail name");
  if (name.front() == ' ' || name.back() == ' ') return Fail(why, "cc:Mail name begins or ends with a space");
  const size_t comma = name.find(',');
  if (comma != std::string_view::npos) {
    if (from_address) return Fail(why, "',' in a cc:Mail name taken from an address");
    // "Last, First": exactly one comma, followed by one space, with text on both sides.
    if (name.find(',', comma + 1) != std::string_view::npos || comma == 0 || comma + 2 >= name.size() ||
        name[comma + 1] != ' ' || name[comma + 2] == ' ')
      return Fail(why, "',' in cc:Mail name other than the one of \"Last, First\"");
  }
  return true;
}

Status AddressMap::Parse(std::string_view text, const std::string& source_name,
                         const AddressMapOptions& options, std::shared_ptr<const AddressMap>* out) {
  std::shared_ptr<AddressMap> map(new AddressMap());
  map->source_ = source_name;
  map->options_ = options;
  for (std::string& d : map->options_.ccmail_domains) d = ToLowerAscii(d);
  std::string why;
  if (!options.default_postoffice.empty() && !PostOfficeNameUsable(options.default_postoffice, &why))
    return Status::InvalidArgument("default_postoffice \"" + options.default_postoffice + "\": " + why);
  for (std::string& post_office : map->options_.percent_route_postoffices) {
    if (!PostOfficeNameUsable(post_office, &why))
      return Status::InvalidArgument("percent_route_postoffices \"" + post_office + "\": " + why);
    post_office = ToUpperAscii(post_office);
  }
  std::unordered_map<std::string, int> first_line;
  size_t pos = 0;
  int lineno = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view raw = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
    ++lineno;
    std::string_view line = Trim(raw);
    if (line.empty() || line.front() == '#') continue;
    auto fail = [&](const std::string& reason) {
      return Status::InvalidArgument(source_name + ":" + std::to_string(lineno) + ": " + reason);
    };
    if (HasControl(line)) return fail("control character in line");
    size_t ws = line.find_first_of(" \t");
    if (ws == std::string_view::npos) return fail("expected \"<address or @domain>  <cc:Mail name> at <post office>\", found only \"" + std::string(line) + "\"");
    std::string key = ToLowerAscii(line.substr(0, ws));
    std::string_view value = Trim(line.substr(ws));
    std::string name, post_office;
    SplitNameAtPo(value, &name, &post_office);
    if (auto it = first_line.find(key); it != first_line.end())
      return fail("duplicate rule for \"" + key + "\" (first at line " + std::to_string(it->second) + ")");
    if (key.front() == '@') {
      std::string domain = key.substr(1);
      if (!AddressKeyOk("x@" + domain)) return fail("bad domain \"" + key + "\"");
      DomainRule rule;
      if (post_office.empty()) {
        // "@domain PO": every user of the domain goes to that post office under its local part.
        if (value.find_first_of(" \t,") != std::string_view::npos) return fail("a domain rule is \"@domain PO\" or \"@domain Name at PO\"");
        rule.post_office = std::string(value);
      } else {
        if (name.empty()) return fail("empty cc:Mail name before \" at \"");
        rule.name = name;
        rule.post_office = post_office;
      }
      if (!rule.name.empty() && !CcMailNameUsable(rule.name, false, &why))
        return fail("bad cc:Mail name \"" + rule.name + "\": " + why);
      if (!PostOfficeNameUsable(rule.post_office, &why))
        return fail("bad post office name \"" + rule.post_office + "\": " + why);
      if (rule.name.empty()) map->reverse_domain_.emplace(ToUpperAscii(rule.post_office), domain);
      map->domains_[domain] = std::move(rule);
    } else {
      if (!AddressKeyOk(key)) return fail("bad address \"" + std::string(line.substr(0, ws)) + "\" (expected local@domain or @domain)");
      if (name.empty()) return fail("empty cc:Mail name");
      if (!CcMailNameUsable(name, false, &why)) return fail("bad cc:Mail name \"" + name + "\": " + why);
      if (post_office.empty()) post_office = options.default_postoffice;
      if (post_office.empty()) return fail("no \" at <post office>\" and default_postoffice is empty");
      if (!PostOfficeNameUsable(post_office, &why)) return fail("bad post office name \"" + post_office + "\": " + why);
      map->reverse_exact_.emplace(ReverseKey(name, post_office), key);
      map->exact_[key] = CcMailAddress{name, post_office};
    }
    first_line.emplace(key, lineno);
  }
  *out = std::move(map);
  return Status::Ok();
}

Status AddressMap::Load(const std::string& path, const AddressMapOptions& options,
                        std::shared_ptr<const AddressMap>* out) {
  std::string text;
  CCMAIL_RETURN_IF_ERROR(ReadRegularFile(path, "address map", &text));
  return Parse(text, path, options, out);
}

Status AddressMap::LoadFromConfig(const Config& config, std::shared_ptr<const AddressMap>* out) {
  AddressMapOptions opt;
  CCMAIL_RETURN_IF_ERROR(config.GetList("ccmail_domains", &opt.ccmail_domains));
  CCMAIL_RETURN_IF_ERROR(config.GetString("default_postoffice", &opt.default_postoffice));
  CCMAIL_RETURN_IF_ERROR(config.GetList("percent_route_postoffices", &opt.percent_route_postoffices));
  // Parse checks these too; here the error can name the configuration file and line.
  std::string why;
  if (!opt.default_postoffice.empty() && !PostOfficeNameUsable(opt.default_postoffice, &why))
    return Status::InvalidArgument(config.Where("default_postoffice") + ": default_postoffice: \"" +
                                   opt.default_postoffice + "\": " + why);
  for (const std::string& post_office : opt.percent_route_postoffices)
    if (!PostOfficeNameUsable(post_office, &why))
      return Status::InvalidArgument(config.Where("percent_route_postoffices") + ": percent_route_postoffices: \"" +
                                     post_office + "\": " + why);
  std::string path;
  CCMAIL_RETURN_IF_ERROR(config.GetString("address_map", &path));
  if (path.empty()) return Parse("", "(no address map)", opt, out);
  std::ifstream probe(path);
  if (!probe && errno == ENOENT && !config.IsSet("address_map")) return Parse("", path + " (absent)", opt, out);
  return Load(path, opt, out);
}

bool AddressMap::IsCcMailDomain(std::string_view domain) const {
  std::string d = ToLowerAscii(domain);
  if (domains_.count(d)) return true;
  for (const std::string& cd : options_.ccmail_domains)
    if (cd == d) return true;
  return false;
}

std::optional<std::string> AddressMap::ReverseResolve(std::string_view name, std::string_view post_office) const {
  name = Trim(name);
  post_office = Trim(post_office);
  if (post_office.empty()) post_office = options_.default_postoffice;
  if (name.empty() || post_office.empty()) return std::nullopt;
  // Only an address the forward map sends back to this very user: the two directions agree.
  auto maps_back = [&](const std::string& address) {
    std::optional<CcMailAddress> who = Resolve(address);
    return who && EqualsIgnoreAsciiCase(who->name, name) && EqualsIgnoreAsciiCase(who->post_office, post_office);
  };
  if (auto it = reverse_exact_.find(ReverseKey(name, post_office)); it != reverse_exact_.end() && maps_back(it->second))
    return it->second;
  if (!IsDotAtom(name)) return std::nullopt;
  if (auto it = reverse_domain_.find(ToUpperAscii(post_office)); it != reverse_domain_.end()) {
    std::string address = std::string(name) + "@" + it->second;
    if (maps_back(address)) return address;
  }
  if (!options_.ccmail_domains.empty() && EqualsIgnoreAsciiCase(post_office, options_.default_postoffice)) {
    std::string address = std::string(name) + "@" + options_.ccmail_domains.front();
    if (maps_back(address)) return address;
  }
  return std::nullopt;
}

std::optional<CcMailAddress> AddressMap::Resolve(std::string_view smtp) const {
  Resolution r = Lookup(smtp);
  if (r.kind != Resolution::Kind::kCcMail) return std::nullopt;
  return std::move(r.address);
}

Resolution AddressMap::Lookup(std::string_view smtp) const {
  Resolution r;
  smtp = Trim(smtp);
  if (smtp.size() >= 2 && smtp.front() == '<' && smtp.back() == '>') smtp = Trim(smtp.substr(1, smtp.size() - 2));
  size_t at = smtp.rfind('@');
  if (smtp.empty() || at == std::string_view::npos || at == 0 || at + 1 == smtp.size()) return r;
  std::string key = ToLowerAscii(smtp);
  if (auto it = exact_.find(key); it != exact_.end()) {
    r.kind = Resolution::Kind::kCcMail;
    r.address = it->second;  // checked when the map was parsed
    return r;
  }
  std::string_view local = smtp.substr(0, at);
  std::string domain = ToLowerAscii(smtp.substr(at + 1));
  auto rule = domains_.find(domain);
  const bool ours = rule != domains_.end() || IsCcMailDomain(domain);
  if (!ours) return r;
  if (rule != domains_.end() && !rule->second.name.empty()) {
    r.kind = Resolution::Kind::kCcMail;
    r.address = CcMailAddress{rule->second.name, rule->second.post_office};
    return r;
  }
  // "John Smith"@domain -> John Smith
  std::string user(local);
  if (user.size() >= 2 && user.front() == '"' && user.back() == '"') {
    std::string unq;
    for (size_t i = 1; i + 1 < user.size(); ++i) {
      if (user[i] == '\\' && i + 2 < user.size()) ++i;
      unq.push_back(user[i]);
    }
    user = unq;
  }
  // PMDF: user%po@domain -> user at po, for the post offices the administrator opened to it.
  std::string post_office;
  if (size_t pct = user.rfind('%'); pct != std::string::npos) {
    const std::string wanted = ToUpperAscii(std::string_view(user).substr(pct + 1));
    const auto& allowed = options_.percent_route_postoffices;
    if (std::find(allowed.begin(), allowed.end(), wanted) == allowed.end())
      return Unusable(Resolution::Unusable::kNoRoute,
                      allowed.empty() ? "routing to a post office in the address is not enabled"
                                      : "this post office is not open to routing in the address");
    post_office = wanted;
    user.resize(pct);
  } else if (rule != domains_.end()) {
    post_office = rule->second.post_office;
  } else {
    post_office = options_.default_postoffice;
    if (post_office.empty()) return r;  // a cc:Mail domain without a default PO: the map does not know it
  }
  std::string why;
  if (!CcMailNameUsable(user, true, &why)) return Unusable(Resolution::Unusable::kBadName, why);
  r.kind = Resolution::Kind::kCcMail;
  r.address = CcMailAddress{std::move(user), std::move(post_office)};
  return r;
}

}  // namespace ccmail::format
