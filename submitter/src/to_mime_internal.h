// to_mime_internal.h (private) - the rules of the way back, one function each (to_mime.h).
#pragma once

#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ccmail/format/address_map.h"
#include "ccmail/format/settings.h"
#include "ccmail/submitter/to_mime.h"

namespace ccmail::submitter::internal {

// --- text (to_mime_text.cpp) ---
// Code-page bytes -> UTF-8 through glibc iconv's table; a byte the code page leaves
// undefined (e.g. 0x81 in windows-1252) becomes U+FFFD.
std::string CodePageToUtf8(std::string_view bytes, format::CodePage cp);
// A header value (subject, name) in the code page -> one UTF-8 line: controls become spaces,
// leading and trailing white space is removed.
std::string HeaderTextToUtf8(std::string_view bytes, format::CodePage cp);
// UTF-8 -> an unstructured header value: as is when every word is printable ASCII and none
// looks like an encoded word; else RFC 2047 B-encoded UTF-8 words of at most 75 characters,
// split between characters, folded with CRLF SP, so decoding gives utf8 back exactly.
std::string EncodeUnstructured(std::string_view utf8);
// A text item's data (CRLF lines) -> LF lines, without one trailing line end.
std::string TextItemBody(std::string_view utf8);
// True when the text has nothing but white space and line ends.
bool IsBlankText(std::string_view text);
// The file name of a File item title: "ABC.WK4 5/6/97 3:10PM" -> "ABC.WK4" (a trailing date,
// with or without a time, that EXPORT appends; separators / - .). Other titles unchanged.
std::string FileNameFromTitle(std::string_view title);
// A "Headers" item: its title (any case) and a first line that is a header field.
bool IsHeadersItem(std::string_view title, std::string_view data);
// Loop evidence in a Headers item: carries "X-Ccmail-Bridge-Origin: <marker>" (any case),
// or counts *received_lines "Received:" fields.
bool HeadersCarryOrigin(std::string_view headers, std::string_view marker, int* received_lines);

// --- addresses (to_mime_address.cpp) ---
// RFC 5321 addr-spec as we submit it: dot-atom local part, a domain of letters, digits,
// '-' and '.' (or an address literal), ASCII, at most 254 bytes.
bool IsSubmittableAddress(std::string_view address);
// "Name at PO" (the last " at ", any case) -> {name, PO}; no " at ": {name, ""}.
format::CcMailAddress SplitCcMailName(std::string_view utf8);

struct Recipient {
  enum class Kind { kCcMail, kInternet, kBadGateway } kind = Kind::kCcMail;
  std::string address;           // kInternet: the addr-spec
  format::CcMailAddress ccmail;  // kCcMail: the user (post office filled with the inbox's)
  std::string line;              // the line as read (UTF-8), for reasons
};
// One To/Cc/Bcc value (UTF-8): an Internet address through gateway (the forms of to_mime.h),
// a malformed gateway address, or a cc:Mail user.
Recipient ClassifyRecipient(std::string_view utf8, std::string_view inbox_post_office,
                            std::string_view gateway);
// The unmapped-author pattern (to_mime.h) for who; nullopt with *why when the result is not
// a submittable address.
std::optional<std::string> PatternAddress(const format::CcMailAddress& who, const ReverseSettings& s,
                                          std::string* why);

// --- dates (to_mime_date.cpp) ---
// An EXPORT Date value (to_mime.h) -> seconds since the epoch and the zone's UTC offset
// in seconds at that time; nullopt when it is not a date in date_format.
struct ExportDate {
  time_t when = 0;
  int utc_offset = 0;
};
std::optional<ExportDate> ParseExportDate(std::string_view text, const ReverseSettings& s);
// RFC 5322 date-time: "Tue, 2 Jun 1998 08:39:00 +0200".
std::string FormatRfc5322Date(const ExportDate& date);

// --- the MIME message (to_mime_build.cpp) ---
struct BodyPart {
  enum class Kind { kText, kFile, kHeaders } kind = Kind::kText;
  std::string description;  // kText: the item title (UTF-8), may be empty
  std::string file_name;    // kFile: UTF-8
  std::string mime_type;    // kFile
  std::string data;         // kText/kHeaders: UTF-8 with LF lines; kFile: the bytes
};
struct Envelope {           // the header fields, values already UTF-8
  std::string from_name, from_address;
  std::vector<std::pair<std::string, std::string>> to, cc;  // (display name, address)
  std::string subject, date, message_id, origin_marker;
};
// The whole message, CRLF lines: the header fields of e, then the body (one text/plain part
// alone, else multipart/mixed in item order), built with GMime.
std::string BuildMime(const Envelope& e, const std::vector<BodyPart>& parts);
// "<32 hex digits@origin_marker>" from SHA-256 over the marker, post office and message.
std::string DeriveMessageId(const format::ImportMessage& m, std::string_view post_office,
                            std::string_view origin_marker);

}  // namespace ccmail::submitter::internal
