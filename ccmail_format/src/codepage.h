// codepage.h (private) - text into the import file's code page.
//
//   Charset -> UTF-8 through iconv (GMime's charset aliases), broken bytes
//   become U+FFFD; UTF-8 -> code page through a table built once from glibc
//   iconv (IBM850, IBM437, WINDOWS-1252); anything the code page lacks, and
//   every C0 control but TAB, becomes '?'. Thread-safe.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "ccmail/common/status.h"
#include "ccmail/format/settings.h"

namespace ccmail::format {

// Appends utf8 converted to the code page. Line breaks are NOT special here:
// CR and LF become '?' like the other controls (callers split lines first).
void AppendInCodePage(std::string_view utf8, CodePage cp, std::string* out);

// bytes in charset (a MIME charset name, possibly empty/unknown/lying) -> UTF-8.
// Empty or unknown charset: UTF-8 if the bytes are valid UTF-8, else windows-1252.
std::string ToUtf8(std::string bytes, std::string_view charset);

bool IsValidUtf8(std::string_view s);

// s as UTF-8 with every byte of an invalid sequence replaced by U+FFFD.
std::string Utf8OrReplacement(std::string_view s);

// Text body -> code-page lines with CRLF: any of CRLF, LF, CR ends a line; the
// result always ends with CRLF unless utf8 is empty. When protect_keywords, lines
// that NeedsKeywordProtection() get kKeywordProtection in front.
void AppendTextLines(std::string_view utf8, CodePage cp, bool protect_keywords, std::string* out);

}  // namespace ccmail::format

namespace ccmail::format {

// Calls fn for each chunk of some bytes, in order, from the start, each time it is called.
using ChunkFn = std::function<Status(std::string_view)>;
using ChunkSource = std::function<Status(const ChunkFn& fn)>;

// The streaming form of AppendTextLines(ToUtf8(bytes, charset), cp, false, ...), without
// holding the text: out receives exactly those code-page bytes in chunks of about 64 KiB.
// It reads source twice (ToUtf8 decides the charset from all the bytes first: ASCII only,
// valid UTF-8) and keeps iconv's state, a split multibyte sequence and a CR just before a
// chunk's end across chunks. No keyword protection (callers with itemsize = no hold the text).
Status StreamTextLines(const ChunkSource& source, std::string_view charset, CodePage cp, const ChunkFn& out);

}  // namespace ccmail::format
