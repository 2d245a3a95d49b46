// rules.h - the uncertain rules of the cc:Mail import format, one function each.
//
// DESCRIPTION
//   No public grammar of IMPORT's text format exists (docs/FORMAT.md §1 tells
//   known, inferred and unknown apart). Each rule that is not confirmed
//   lives in exactly one function here, driven by a setting, so a test against
//   a real IMPORT/EXPORT can correct it without touching the writer or reader:
//
//   ItemSizeCount      the /ITEMSIZE counting rule (docs/FORMAT.md §2.3, unknown)
//   HeaderBlockBytes / HeaderBlockFits
//                      what counts against IMPORT's header buffer (header_limit)
//   RawFileTerminator  what follows raw file data (raw_file_crlf; docs/FORMAT.md §3.8: unknown)
//   ChooseMessageDate  the message's Date: or the arrival time
//   NeedsKeywordProtection / kKeywordProtection
//                      keyword-looking lines in the keyword-delimited layout
//   FormatCcDate / ParseCcDate
//                      M/D/YY H:MM (date_format, timezone)
//   FormatRecipient    "Name at PO", bare for the local post office
//   FormatSender       "addr@domain at GATEWAY"
//   ChooseSenderAddress
//                      author (From, Sender) or envelope sender (sender_source)
//   CleanSubject       RFC 2047-decoded subject -> one safe line
//   RawHeaderBytesToUtf8
//                      8-bit header text outside encoded words
//   DosFileName        attachment names: 8.3, upper case, no device names
//   ExtensionForMimeType / MimeTypeForExtension
//                      the MIME type map, both ways
//
//   All functions are pure and thread-safe.
#pragma once

#include <cstdint>
#include <ctime>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "ccmail/format/address_map.h"
#include "ccmail/format/settings.h"

namespace ccmail::format {

// The counting rule of /ITEMSIZE. A count line holds the number of bytes from
// the first byte after the count line's CRLF to the end of its section:
//   - an item: its data only (text lines with their CRLFs; raw file bytes);
//   - Contents: every item block (keyword lines, count lines, data, and the
//     RawFileTerminator() after raw file data);
//   - Message: the header lines after the count, "Contents:", its count line and
//     the whole Contents block.
// section_bytes is what the writer measured for that span; the function exists
// so that the rule (e.g. "count line included") changes in one place.
uint64_t ItemSizeCount(uint64_t section_bytes);

// The header block IMPORT buffers before the first item ("Header Buffer Full",
// docs/FORMAT.md §4.5): every byte from the start of the "Message:" line to the end of the
// "Contents:" line and, with /ITEMSIZE, the count lines of both. header_lines is the size of
// the From..Subject lines (with CRLFs), contents_bytes the Contents count (the message count
// follows from both).
uint64_t HeaderBlockBytes(uint64_t header_lines, uint64_t contents_bytes, const FormatSettings& settings);
// The header block must be at most header_limit bytes (default 4,000: under IMPORT 8.2x's 4,096).
bool HeaderBlockFits(uint64_t header_block_bytes, const FormatSettings& settings);

// What follows the data of a raw file item (files = raw): "\r\n" when raw_file_crlf
// (whatever the data ends with), else nothing. Never part of the item's own count; part
// of the Contents and Message counts. The writer and the reader both use this.
std::string_view RawFileTerminator(const FormatSettings& settings);

// The time shown on the Date line: the message's own Date: (header_date, UTC seconds,
// nullopt when missing or unparseable) when the Date line can show it (from 1970 on, and
// before 2070 with a two-digit year format) and it is not more than a day after the
// arrival; else the arrival time. Old dates are kept: a message written years ago is shown
// as written.
time_t ChooseMessageDate(std::optional<time_t> header_date, time_t received, const FormatSettings& settings);

// Keyword-delimited layout only: a data line that a reader could take for a
// keyword ("Message:", "Contents:", "<word> item:", and, to be safe, the header
// keywords "From:", "Date:", "To:", "Cc:", "Bcc:", "Subject:"; any case, after
// optional white space) gets one leading space.
bool NeedsKeywordProtection(std::string_view line);
inline constexpr char kKeywordProtection = ' ';

// when (UTC seconds) as local time of settings.timezone in settings.date_format,
// e.g. "6/2/98 8:39". 24-hour, no leading zeros.
std::string FormatCcDate(time_t when, const FormatSettings& settings);
// Inverse, used by the reader; nullopt when text is not in that format.
std::optional<time_t> ParseCcDate(std::string_view text, const FormatSettings& settings);

// "Smith, John at HUBPO2", or "Smith, John" when post_office is empty or equals
// settings.local_postoffice (case-insensitive). Control characters become '?'.
std::string FormatRecipient(const CcMailAddress& who, const FormatSettings& settings);

// "jdoe@example.com at INTERNET" from an envelope sender (angle brackets and
// white space stripped; "," '"' and control characters replaced, so no comma or
// quote enters From). An empty (null) sender becomes "MAILER-DAEMON".
std::string FormatSender(std::string_view envelope_sender, const FormatSettings& settings);

// The address the From line shows. sender_source = author: the first of header_from,
// header_sender (each the first mailbox's addr-spec of that field, "" when missing)
// that IsUsableSenderAddress(), else the envelope sender; envelope: the envelope sender.
std::string ChooseSenderAddress(std::string_view header_from, std::string_view header_sender,
                                std::string_view envelope_sender, const FormatSettings& settings);
// local@domain, both parts non-empty, printable ASCII without white space, quotes, commas,
// semicolons or brackets (so FormatSender() writes it unchanged).
bool IsUsableSenderAddress(std::string_view addr);

// utf8 (already RFC 2047-decoded) -> one line in the code page: controls and
// line breaks become spaces, runs of white space collapse, [ ] -> ( ) when
// subject_brackets, cut to subject_max characters.
std::string CleanSubject(std::string_view utf8, const FormatSettings& settings);

// Header text outside RFC 2047 encoded words, as sent (8-bit bytes are not
// allowed there before RFC 6532) -> UTF-8: valid UTF-8 stays (RFC 6532), every byte of
// an invalid sequence becomes U+FFFD ('?' in the code page), never a guessed charset.
std::string RawHeaderBytesToUtf8(std::string_view bytes);

// A unique attachment name: the file name's last path component, sanitised
// (letters, digits and _-$~!#%&{}@'` only, upper case), 8.3 unless
// long_filenames, the extension taken from mime_type when missing, never a DOS
// device name (CON, PRN, AUX, NUL, COM1-9, LPT1-9, CLOCK$), never "." or "..",
// made unique against *used (which receives the result) with ~N suffixes.
std::string DosFileName(std::string_view utf8_name, std::string_view mime_type,
                        const FormatSettings& settings, std::set<std::string>* used);

// Extension (upper case, no dot) for a MIME type from settings.mime_type_map
// first, then the built-in table; "DAT" when unknown.
std::string ExtensionForMimeType(std::string_view mime_type, const FormatSettings& settings);

// The way back: MIME type for a file extension (any case, no dot): settings.mime_type_map
// reversed first, then the built-in table (the first type listed for the extension);
// "application/octet-stream" when unknown, and for DAT and EML.
std::string MimeTypeForExtension(std::string_view extension, const FormatSettings& settings);

// True when name (an 8.3 or long name) is a DOS device name, with or without extension.
bool IsDosDeviceName(std::string_view name);

}  // namespace ccmail::format
