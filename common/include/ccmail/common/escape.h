// escape.h - outside text (addresses, names, reasons) made safe for one line of output.
//
// SYNOPSIS
//   LogInfo("from=<%s>", EscapeControls(sender).c_str());   // the log escapes whole lines anyway
//   line += EscapeField(recipient) + "\t";                   // a TAB-separated record
//   std::string back = UnescapeField(field);
//
// DESCRIPTION
//   An envelope address may carry TAB, CR, LF, ESC or any other control byte
//   (a quoted local part can hold them). Written raw, a TAB adds a column, an
//   LF forges a whole line, an ESC drives the reader's terminal. Every line
//   the bridge writes (manifest, log, ccmailctl output) goes through these.
//
//   EscapeControls: each byte below 0x20 and DEL becomes \t, \r, \n or \xNN;
//   everything else, UTF-8 included, is kept. For text people read.
//   EscapeField: the same, and a backslash becomes \\, so UnescapeField gives
//   the original bytes back. For records a program reads again (the manifest).
#pragma once

#include <string>
#include <string_view>

namespace ccmail {

std::string EscapeControls(std::string_view text);
std::string EscapeField(std::string_view text);
// The inverse of EscapeField; an unknown or truncated escape is kept as written.
std::string UnescapeField(std::string_view text);

}  // namespace ccmail
