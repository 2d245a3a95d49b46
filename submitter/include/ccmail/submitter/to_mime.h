// to_mime.h - one cc:Mail EXPORT message -> one RFC 5322/MIME message (the way back).
//
// SYNOPSIS
//   ReverseSettings rs;
//   Status s = LoadReverseSettings(config, &rs);          // rows of "format" and "submitter"
//   ReadResult file = ReadImportFile(bytes, rs.format, {.detect_layout = true});
//   for (const ImportMessage& m : file.messages) {
//     OutgoingMessage out;
//     Refusal refusal;
//     s = ConvertExportMessage(m, "HUBPO", *map, rs, &out, &refusal);
//     if (!s.ok()) quarantine(s.message());
//     else if (!refusal.reason.empty()) notify(refusal);  // back to the author in cc:Mail
//     else submit(out.envelope_from, out.recipients, out.mime);
//   }
//
// DESCRIPTION
//   Every rule is docs/FORMAT.md §11 ("The way back"), one function each:
//
//   Author (From line, "Name at PO"; a bare name belongs to post_office, the inbox's):
//     the address map in reverse (AddressMap::ReverseResolve); else, with
//     unmapped_author = pattern, unmapped_author_pattern with the fields
//       {first} {last}  the name split as "Last, First", or "First ... Last" at the last
//                       space, or a one-word name as {last} (with {first} empty);
//                       lower-case, inner spaces become '.'
//       {name}          the whole name, lower-case, spaces become '.'
//       {po}            the post office, lower-case
//       {domain}        author_domain (default: the first of ccmail_domains)
//     then runs of '.' collapse and '.' next to the '@' or at either end is removed; the
//     result must be a dot-atom@domain ASCII address, else a Refusal. With
//     unmapped_author = refuse, an unmapped author is a Refusal. "addr at <gateway>" as the
//     author (a forwarding rule in cc:Mail) is addr.
//   Recipients (To, Cc, Bcc lines): "addr at <gateway_postoffice>" (any case), and the
//     foreign-alias forms of EXPORT /FORMAT/FAN: "Name <addr> at GW", "Name  addr at GW",
//     "Name  r  GW addr" (the last token before the address is the gateway) -> addr,
//     which must be an addr-spec (else a Refusal: "is not an Internet address"). Every other
//     recipient is a cc:Mail user: never submitted (cc:Mail delivered it); shown in To/Cc
//     only when the map knows its address. Bcc: envelope only. Recipients are deduplicated
//     without case.
//   Date: "M/D/YY H:MM" (date_format's order; 2- or 4-digit year, two digits read with
//     year_pivot; an optional :SS and AM/PM) in format.timezone -> RFC 5322 with the
//     zone's offset. A Date that cannot be read is a non-OK Status (not the author's fault).
//   Subject and names: code page -> UTF-8, RFC 2047 (B, UTF-8) whenever a word is not
//     printable ASCII or looks like an encoded word, so "=?x?q?y?=" arrives literally.
//   Items: the first non-empty text item -> text/plain; charset=utf-8, quoted-printable;
//     later non-empty text items -> further text/plain parts (inline, the title as
//     Content-Description); file items -> attachments, base64, the name without the
//     "5/6/97 3:10PM" EXPORT appends to the title, the type from MimeTypeForExtension;
//     a "Headers" item (the header block of an earlier Internet message) -> an attached
//     text/rfc822-headers part, never header fields.
//   Loops: a Headers item carrying "X-Ccmail-Bridge-Origin: <origin_marker>", or with at least
//     max_received Received lines, is a Refusal "mail loop". Every message gets
//     "X-Ccmail-Bridge-Origin: <origin_marker>".
//   Message-ID: "<h@origin_marker>", h = the first 32 hex digits of SHA-256 over the
//     origin marker, the post office and every field and item of the message (lengths
//     prefixed), so the same EXPORT message always gets the same id.
//
// ERRORS
//   Status kInvalidArgument: the message cannot be converted for a reason that is not the
//   author's (no From line, a Date not in date_format): the caller quarantines it.
//   LoadReverseSettings: kInvalidArgument "<file>:<line>: <setting>: <reason>".
//
// THREAD SAFETY
//   Pure functions of their arguments; GMime is initialised once, thread-safely.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "ccmail/common/status.h"
#include "ccmail/config/config.h"
#include "ccmail/format/address_map.h"
#include "ccmail/format/reader.h"
#include "ccmail/format/settings.h"

namespace ccmail::submitter {

struct ReverseSettings {            // from the config (LoadReverseSettings) or set by tests
  format::FormatSettings format;    // code page, date_format, timezone, itemsize, files, gateway_postoffice ...
  int year_pivot = 70;              // two-digit years: >= pivot -> 19xx, else 20xx
  enum class UnmappedAuthor { kPattern, kRefuse } unmapped_author = UnmappedAuthor::kPattern;
  std::string unmapped_author_pattern = "{first}.{last}@{domain}";   // fields: see DESCRIPTION
  std::string author_domain;        // {domain}; default: the first of ccmail_domains
  std::string origin_marker;        // this bridge's id in the loop header (default: host name)
  int max_received = 100;           // RFC 5321 6.3
};
// Reads the "format" rows and year_pivot, unmapped_author, unmapped_author_pattern,
// author_domain (default: the first of ccmail_domains) and origin_marker (default: the
// host name) into *out.
Status LoadReverseSettings(const Config& config, ReverseSettings* out);

struct OutgoingMessage {
  std::string envelope_from;                 // the author's SMTP address
  std::vector<std::string> recipients;       // Internet recipients only (To, Cc and Bcc), deduplicated
  std::string message_id;                    // "<hex@origin>", derived from content + origin (same input -> same id)
  std::string mime;                          // the whole RFC 5322 message, CRLF lines, ready for DATA
};
struct Refusal {                             // the message cannot go out; goes back to the author
  std::string reason;                        // for the notice and the log
  std::string author_address;                // where the notice goes, empty when none can be derived
  format::CcMailAddress author;              // the cc:Mail author (UTF-8 name, post office), for a notice
                                             // imported to them; empty name when the From line has none
};

// post_office: the inbox's post office (a bare name belongs to it).
// Exactly one of *out / *refusal is filled on OK; a non-OK Status is a bug in the input that is
// not the author's (e.g. unreadable), the caller quarantines the file with the reason.
Status ConvertExportMessage(const format::ImportMessage& m, std::string_view post_office,
                            const format::AddressMap& map, const ReverseSettings& settings,
                            OutgoingMessage* out, Refusal* refusal);

}  // namespace ccmail::submitter
