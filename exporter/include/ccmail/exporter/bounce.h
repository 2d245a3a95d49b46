// bounce.h - turns the .UND file that cc:Mail IMPORT writes (exit status 5) into bounces.
//
// What it offers: reads the .UND file (cc:Mail import format, parsed with the ccmail_format
// reader) and the batch manifest, matches each undeliverable message to the manifest
// delivery it came from, and sends one notice per delivery to its envelope sender through
// `sendmail_path -oi -f <> -- sender` (null return path: a bounce must never bounce).
//
// Matching: the .UND keeps the batch order, so deliveries are matched in manifest order:
// each .UND message takes the first not yet matched manifest entry whose recipient is one
// of its To/Cc/Bcc names. A .UND message that matches nothing is reported (logged by the
// caller), not guessed. Deliveries with the null sender are never bounced.
//
// How it fails: unreadable files -> Status with the path; sendmail exit != 0 -> Status
// naming the sender (the caller retries the whole .UND later; *bounced tells how far it got).
// Thread-safety: stateless.
#pragma once

#include <string>
#include <vector>

#include "ccmail/common/status.h"
#include "ccmail/exporter/outbox.h"
#include "ccmail/format/reader.h"

namespace ccmail::exporter {

struct BounceTarget {
  ManifestEntry delivery;
  std::string subject;  // subject of the undeliverable message, for the notice
};

// Pure matching step (tested on its own).
std::vector<BounceTarget> MatchUndeliverable(const std::vector<format::ImportMessage>& und,
                                             const std::vector<ManifestEntry>& manifest,
                                             size_t* unmatched);

// Runs `sendmail_path -oi -f <> -- to` with `text` (a whole RFC 5322 message) on stdin.
// Also used for the quarantine notice (notify_sender_on_quarantine).
Status SendNotice(const std::string& sendmail_path, const std::string& to, const std::string& text);

Status BounceUndeliverable(const std::string& und_path, const std::string& manifest_path,
                           const std::string& postoffice, const std::string& sendmail_path,
                           const format::FormatSettings& settings, int* bounced, size_t* unmatched);

}  // namespace ccmail::exporter
