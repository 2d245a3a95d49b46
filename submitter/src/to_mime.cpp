// to_mime.cpp - ConvertExportMessage and LoadReverseSettings (see to_mime.h); each rule is a
// function of to_mime_internal.h.
#include "ccmail/submitter/to_mime.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>

#include "ccmail/common/ascii.h"
#include "ccmail/format/rules.h"
#include "to_mime_internal.h"

namespace ccmail::submitter {
namespace {

using internal::BodyPart;
using internal::Recipient;

std::string Quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

// The origin marker goes into a header value and a Message-ID's right side: a host name.
bool OriginMarkerUsable(std::string_view marker) {
  if (marker.empty() || marker.size() > 200 || marker.front() == '.' || marker.back() == '.') return false;
  for (char c : marker)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_')) return false;
  return true;
}

std::string FileExtension(std::string_view name) {
  const size_t dot = name.rfind('.');
  return dot == std::string_view::npos ? std::string() : std::string(name.substr(dot + 1));
}

// The items in order: text parts, attachments and the earlier header block.
std::vector<BodyPart> BodyParts(const format::ImportMessage& m, const format::FormatSettings& fs) {
  std::vector<BodyPart> parts;
  for (const format::ImportItem& item : m.items) {
    BodyPart p;
    if (item.kind == format::ImportItem::Kind::kFile) {
      p.kind = BodyPart::Kind::kFile;
      p.file_name = internal::FileNameFromTitle(internal::HeaderTextToUtf8(item.title, fs.codepage));
      if (p.file_name.empty()) p.file_name = "ATTACH.DAT";
      p.mime_type = format::MimeTypeForExtension(FileExtension(p.file_name), fs);
      p.data = item.data;
    } else {
      std::string text = internal::CodePageToUtf8(item.data, fs.codepage);
      if (internal::IsBlankText(text)) continue;  // an empty text item says nothing
      p.kind = internal::IsHeadersItem(item.title, item.data) ? BodyPart::Kind::kHeaders : BodyPart::Kind::kText;
      p.description = internal::HeaderTextToUtf8(item.title, fs.codepage);
      p.data = internal::TextItemBody(text);
    }
    parts.push_back(std::move(p));
  }
  // The first text part leads: RFC 2046 readers show the first part as the message text.
  auto first_text = std::find_if(parts.begin(), parts.end(), [](const BodyPart& p) { return p.kind == BodyPart::Kind::kText; });
  if (first_text != parts.end()) std::rotate(parts.begin(), first_text, first_text + 1);
  if (parts.empty()) parts.push_back(BodyPart{});  // no text at all: an empty text/plain body
  return parts;
}

}  // namespace

Status LoadReverseSettings(const Config& config, ReverseSettings* out) {
  ReverseSettings s;
  CCMAIL_RETURN_IF_ERROR(format::LoadFormatSettings(config, &s.format));
  auto bad = [&](const std::string& name, const std::string& why) {
    return Status::InvalidArgument(config.Where(name) + ": " + name + ": " + why);
  };
  uint64_t pivot = 0;
  CCMAIL_RETURN_IF_ERROR(config.GetUInt("year_pivot", 0, 100, &pivot));
  s.year_pivot = static_cast<int>(pivot);
  std::string mode;
  CCMAIL_RETURN_IF_ERROR(config.GetEnum("unmapped_author", {"pattern", "refuse"}, &mode));
  s.unmapped_author = mode == "refuse" ? ReverseSettings::UnmappedAuthor::kRefuse : ReverseSettings::UnmappedAuthor::kPattern;
  CCMAIL_RETURN_IF_ERROR(config.GetString("unmapped_author_pattern", &s.unmapped_author_pattern));
  CCMAIL_RETURN_IF_ERROR(config.GetString("author_domain", &s.author_domain));
  if (s.author_domain.empty()) {
    std::vector<std::string> domains;
    CCMAIL_RETURN_IF_ERROR(config.GetList("ccmail_domains", &domains));
    if (!domains.empty()) s.author_domain = domains.front();
  }
  if (!s.author_domain.empty() && !internal::IsSubmittableAddress("x@" + s.author_domain))
    return bad("author_domain", Quoted(s.author_domain) + " is not a domain name");
  if (s.unmapped_author == ReverseSettings::UnmappedAuthor::kPattern) {
    // Check the pattern once with a plain name, so a typo fails at start, not per message.
    if (s.unmapped_author_pattern.find('@') == std::string::npos)
      return bad("unmapped_author_pattern", Quoted(s.unmapped_author_pattern) + " has no '@'");
    if (s.unmapped_author_pattern.find("{domain}") != std::string::npos && s.author_domain.empty())
      return bad("unmapped_author_pattern", "uses {domain}, but author_domain and ccmail_domains are empty");
    std::string why;
    if (!internal::PatternAddress({"Smith, John", "PO"}, s, &why)) return bad("unmapped_author_pattern", why);
  }
  CCMAIL_RETURN_IF_ERROR(config.GetString("origin_marker", &s.origin_marker));
  if (s.origin_marker.empty()) {
    char host[256] = {};
    if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
      return bad("origin_marker", "empty, and the host name cannot be read");
    s.origin_marker = host;
  }
  if (!OriginMarkerUsable(s.origin_marker))
    return bad("origin_marker", Quoted(s.origin_marker) + " is not a host-name-like id (letters, digits, . - _)");
  *out = std::move(s);
  return Status::Ok();
}

Status ConvertExportMessage(const format::ImportMessage& m, std::string_view post_office,
                            const format::AddressMap& map, const ReverseSettings& settings,
                            OutgoingMessage* out, Refusal* refusal) {
  *out = OutgoingMessage{};
  *refusal = Refusal{};
  const format::FormatSettings& fs = settings.format;
  const std::string where = "message at offset " + std::to_string(m.offset);
  const std::string& gateway = fs.gateway_postoffice;

  // The author.
  const std::string from = internal::HeaderTextToUtf8(m.from, fs.codepage);
  if (from.empty()) return Status::InvalidArgument(where + ": no author on the From line");
  Refusal refuse;
  std::string author_name, author_address, why;
  if (Recipient r = internal::ClassifyRecipient(from, post_office, gateway); r.kind == Recipient::Kind::kInternet) {
    author_address = r.address;  // mail a cc:Mail rule forwards: the Internet author stays the author
  } else if (r.kind == Recipient::Kind::kBadGateway) {
    return Status::InvalidArgument(where + ": the author " + Quoted(from) + " is not an Internet address");
  } else {
    refuse.author = r.ccmail;
    author_name = r.ccmail.name;
    if (auto mapped = map.ReverseResolve(r.ccmail.name, r.ccmail.post_office)) {
      author_address = *mapped;
    } else {
      std::optional<std::string> derived = internal::PatternAddress(r.ccmail, settings, &why);
      if (settings.unmapped_author == ReverseSettings::UnmappedAuthor::kRefuse) {
        why = "the author " + Quoted(r.ccmail.name + " at " + r.ccmail.post_office) +
              " is not in the address map (unmapped_author = refuse)";
        derived.reset();
      }
      if (!derived) {
        refuse.reason = why;
        *refusal = std::move(refuse);
        return Status::Ok();
      }
      author_address = *derived;
    }
  }
  refuse.author_address = author_address;
  auto refuse_with = [&](std::string reason) {
    refuse.reason = std::move(reason);
    *refusal = std::move(refuse);
    return Status::Ok();
  };

  // The date: written by EXPORT, so a bad one is not the author's doing.
  const std::string date_text = internal::HeaderTextToUtf8(m.date, fs.codepage);
  std::optional<internal::ExportDate> date = internal::ParseExportDate(date_text, settings);
  if (!date) return Status::InvalidArgument(where + ": Date " + Quoted(date_text) + " is not a date in date_format");

  // Loops: the Headers item is the header block of the Internet message this one came from.
  for (const format::ImportItem& item : m.items) {
    if (item.kind != format::ImportItem::Kind::kText || !internal::IsHeadersItem(item.title, item.data)) continue;
    int received = 0;
    if (internal::HeadersCarryOrigin(item.data, settings.origin_marker, &received))
      return refuse_with("mail loop: the message already passed this bridge (X-Ccmail-Bridge-Origin: " +
                         settings.origin_marker + ")");
    if (received >= settings.max_received)
      return refuse_with("mail loop: " + std::to_string(received) + " Received lines (the limit is " +
                         std::to_string(settings.max_received) + ")");
  }

  // Recipients: Internet ones to the envelope (Bcc only there), cc:Mail ones visible when known.
  internal::Envelope e;
  std::vector<std::string> seen_lower;
  auto take = [&](const std::vector<std::string>& lines, std::vector<std::pair<std::string, std::string>>* header) {
    for (const std::string& line : lines) {
      Recipient r = internal::ClassifyRecipient(internal::HeaderTextToUtf8(line, fs.codepage), post_office, gateway);
      if (r.kind == Recipient::Kind::kBadGateway)
        return Quoted(r.line) + " is not an Internet address (" + gateway + " recipients are user@domain at " + gateway + ")";
      std::string display;
      if (r.kind == Recipient::Kind::kCcMail) {
        std::optional<std::string> address = map.ReverseResolve(r.ccmail.name, r.ccmail.post_office);
        if (!address) continue;  // cc:Mail delivered it; no Internet address to show
        r.address = *address;
        display = r.ccmail.name;
      } else {
        const std::string lower = ToLowerAscii(r.address);
        if (std::find(seen_lower.begin(), seen_lower.end(), lower) == seen_lower.end()) {
          seen_lower.push_back(lower);
          out->recipients.push_back(r.address);
        }
      }
      if (header) {
        const std::string lower = ToLowerAscii(r.address);
        auto same = [&](const auto& h) { return ToLowerAscii(h.second) == lower; };
        if (std::none_of(e.to.begin(), e.to.end(), same) && std::none_of(e.cc.begin(), e.cc.end(), same))
          header->emplace_back(std::move(display), r.address);
      }
    }
    return std::string();
  };
  std::string bad_recipient = take(m.to, &e.to);
  if (bad_recipient.empty()) bad_recipient = take(m.cc, &e.cc);
  if (bad_recipient.empty()) bad_recipient = take(m.bcc, nullptr);
  if (!bad_recipient.empty()) {
    *out = OutgoingMessage{};
    return refuse_with("recipient " + bad_recipient);
  }
  if (out->recipients.empty()) {
    *out = OutgoingMessage{};
    return refuse_with("no Internet recipient (every recipient is a cc:Mail user)");
  }

  e.from_name = author_name;
  e.from_address = author_address;
  e.subject = internal::HeaderTextToUtf8(m.subject, fs.codepage);
  e.date = internal::FormatRfc5322Date(*date);
  e.origin_marker = settings.origin_marker;
  e.message_id = internal::DeriveMessageId(m, post_office, settings.origin_marker);
  out->envelope_from = author_address;
  out->message_id = e.message_id;
  out->mime = internal::BuildMime(e, BodyParts(m, fs));
  return Status::Ok();
}

}  // namespace ccmail::submitter
