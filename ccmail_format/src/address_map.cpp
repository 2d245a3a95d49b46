// address_map.cpp - the address map file and the PMDF fallbacks (see address_map.h).
#include "ccmail/format/address_map.h"

#include <cctype>
#include <fstream>
#include <sstream>

#include <errno.h>

namespace ccmail::format {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

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

// Splits "Name at PO" at its last " at " (any case); no " at ": po is empty.
void SplitNameAtPo(std::string_view value, std::string* name, std::string* po) {
  const std::string padded = " " + std::string(value);  // "at PO" alone: an empty name
  std::string low = Lower(padded);
  size_t at = low.rfind(" at ");
  if (at == std::string::npos) {
    *name = std::string(Trim(value));
    po->clear();
    return;
  }
  *name = std::string(Trim(std::string_view(padded).substr(0, at)));
  *po = std::string(Trim(std::string_view(padded).substr(at + 4)));
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

}  // namespace

Status AddressMap::Parse(std::string_view text, const std::string& source_name,
                         const AddressMapOptions& options, std::shared_ptr<const AddressMap>* out) {
  std::shared_ptr<AddressMap> map(new AddressMap());
  map->source_ = source_name;
  map->options_ = options;
  for (std::string& d : map->options_.ccmail_domains) d = Lower(d);
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
    auto fail = [&](const std::string& why) {
      return Status::InvalidArgument(source_name + ":" + std::to_string(lineno) + ": " + why);
    };
    if (HasControl(line)) return fail("control character in line");
    size_t ws = line.find_first_of(" \t");
    if (ws == std::string_view::npos) return fail("expected \"<address or @domain>  <cc:Mail name> at <post office>\", found only \"" + std::string(line) + "\"");
    std::string key = Lower(line.substr(0, ws));
    std::string_view value = Trim(line.substr(ws));
    std::string name, po;
    SplitNameAtPo(value, &name, &po);
    if (auto it = first_line.find(key); it != first_line.end())
      return fail("duplicate rule for \"" + key + "\" (first at line " + std::to_string(it->second) + ")");
    if (key.front() == '@') {
      std::string domain = key.substr(1);
      if (!AddressKeyOk("x@" + domain)) return fail("bad domain \"" + key + "\"");
      DomainRule rule;
      if (po.empty()) {
        // "@domain PO": every user of the domain goes to that post office under its local part.
        if (value.find_first_of(" \t,") != std::string_view::npos) return fail("a domain rule is \"@domain PO\" or \"@domain Name at PO\"");
        rule.postoffice = std::string(value);
      } else {
        if (name.empty()) return fail("empty cc:Mail name before \" at \"");
        rule.name = name;
        rule.postoffice = po;
      }
      if (rule.postoffice.empty()) return fail("empty post office");
      if (rule.postoffice.find_first_of(",\"[]") != std::string::npos) return fail("bad post office name \"" + rule.postoffice + "\"");
      map->domains_[domain] = std::move(rule);
    } else {
      if (!AddressKeyOk(key)) return fail("bad address \"" + std::string(line.substr(0, ws)) + "\" (expected local@domain or @domain)");
      if (name.empty()) return fail("empty cc:Mail name");
      if (name.size() > 256) return fail("cc:Mail name longer than 256 characters");
      if (po.empty()) po = options.default_postoffice;
      if (po.empty()) return fail("no \" at <post office>\" and default_postoffice is empty");
      if (po.find_first_of(",\"[]") != std::string::npos) return fail("bad post office name \"" + po + "\"");
      map->exact_[key] = CcMailAddress{name, po};
    }
    first_line.emplace(key, lineno);
  }
  *out = std::move(map);
  return Status::Ok();
}

Status AddressMap::Load(const std::string& path, const AddressMapOptions& options,
                        std::shared_ptr<const AddressMap>* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::FromErrno("open address map " + path, errno);
  std::stringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return Status::FromErrno("read address map " + path, errno);
  return Parse(buf.str(), path, options, out);
}

Status AddressMap::LoadFromConfig(const Config& config, std::shared_ptr<const AddressMap>* out) {
  AddressMapOptions opt;
  CCMAIL_RETURN_IF_ERROR(config.GetList("ccmail_domains", &opt.ccmail_domains));
  CCMAIL_RETURN_IF_ERROR(config.GetString("default_postoffice", &opt.default_postoffice));
  std::string path;
  CCMAIL_RETURN_IF_ERROR(config.GetString("address_map", &path));
  if (path.empty()) return Parse("", "(no address map)", opt, out);
  std::ifstream probe(path);
  if (!probe && errno == ENOENT && !config.IsSet("address_map")) return Parse("", path + " (absent)", opt, out);
  return Load(path, opt, out);
}

bool AddressMap::IsCcMailDomain(std::string_view domain) const {
  std::string d = Lower(domain);
  if (domains_.count(d)) return true;
  for (const std::string& cd : options_.ccmail_domains)
    if (cd == d) return true;
  return false;
}

std::optional<CcMailAddress> AddressMap::Resolve(std::string_view smtp) const {
  smtp = Trim(smtp);
  if (smtp.size() >= 2 && smtp.front() == '<' && smtp.back() == '>') smtp = Trim(smtp.substr(1, smtp.size() - 2));
  size_t at = smtp.rfind('@');
  if (smtp.empty() || at == std::string_view::npos || at == 0 || at + 1 == smtp.size()) return std::nullopt;
  std::string key = Lower(smtp);
  if (auto it = exact_.find(key); it != exact_.end()) return it->second;
  std::string_view local = smtp.substr(0, at);
  std::string domain = Lower(smtp.substr(at + 1));
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
  for (unsigned char c : user)
    if (c < 0x20 || c == 0x7f) return std::nullopt;
  if (user.empty()) return std::nullopt;
  // PMDF: user%po@domain -> user at po.
  std::string po_from_address;
  if (size_t pct = user.rfind('%'); pct != std::string::npos && pct > 0 && pct + 1 < user.size()) {
    po_from_address = user.substr(pct + 1);
    user.resize(pct);
    // A post office name from the address is untrusted: nothing that could break an address line.
    if (po_from_address.find_first_of(",\"[] \t") != std::string::npos || po_from_address.size() > 64) return std::nullopt;
  }
  if (auto it = domains_.find(domain); it != domains_.end()) {
    if (!it->second.name.empty()) return CcMailAddress{it->second.name, it->second.postoffice};
    return CcMailAddress{user, po_from_address.empty() ? it->second.postoffice : po_from_address};
  }
  bool ours = false;
  for (const std::string& cd : options_.ccmail_domains)
    if (cd == domain) ours = true;
  if (!ours) return std::nullopt;
  if (!po_from_address.empty()) return CcMailAddress{user, po_from_address};
  if (options_.default_postoffice.empty()) return std::nullopt;
  return CcMailAddress{user, options_.default_postoffice};
}

}  // namespace ccmail::format
