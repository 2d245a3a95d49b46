// bounce.h - turns the .UND file that cc:Mail IMPORT writes (exit status 5) into bounces, and
// sends them (and quarantine notices) over SMTP to the local MTA.
//
// What it offers: reads the .UND file (cc:Mail import format, parsed with the ccmail_format
// reader) and the batch manifest, matches each undeliverable message to the manifest
// delivery it came from, and queues one delivery status notification (RFC 3464,
// multipart/report; report-type=delivery-status) per delivery for its envelope sender.
//
// Why SMTP and not sendmail(1): the exporter's unit runs with NoNewPrivileges=yes, under
// which Postfix's sendmail(1) cannot run its setgid postdrop and loops on "Permission
// denied" writing the maildrop. An SMTP session to bounce_relay (default 127.0.0.1:25)
// needs no privilege. The envelope sender is the null sender (MAIL FROM:<>): a bounce must
// never bounce.
//
// Durability: BounceQueue::Add writes the notice into <spool_directory>/bounce/<name>.msg
// (tmp file, fsync, rename, directory fsync) before anything is sent; the file is removed
// only after the MTA's 250 to the final dot. A temporary failure (connection refused, 4xx,
// time-out) keeps it for a retry with back-off; a 5xx moves it to bounce/rejected/ (kept for
// the postmaster, logged). Names are derived from the delivery (capture id + recipient), so
// queueing the same .UND again does not queue a second notice while the first is pending.
//
// Matching: the .UND keeps the batch order, so deliveries are matched in manifest order:
// each .UND message takes the first not yet matched manifest entry whose recipient is one
// of its To/Cc/Bcc names. A .UND message that matches nothing is reported (logged by the
// caller), not guessed. Deliveries with the null sender are never bounced.
//
// Thread-safety: MatchUndeliverable and the notice builders are pure. A BounceQueue is shared:
// Add and Flush are thread-safe; Start runs a sender thread that flushes when something was
// added and retries deferred notices.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
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

// Where bounces go: the bounce_relay setting, "host:port" or "[IPv6]:port" (port defaults
// to 25).
struct BounceRelay {
  std::string host = "127.0.0.1";
  uint16_t port = 25;
  std::chrono::seconds timeout{60};  // each SMTP reply
  static Status Parse(std::string_view spec, BounceRelay* out);
  std::string ToString() const;
};

// A delivery status notification (RFC 3464) to `to` from MAILER-DAEMON@<reporting_host>:
// human-readable part, then message/delivery-status with Final-Recipient, Action: failed,
// Status and Diagnostic-Code. LF line ends (SendOverSmtp writes CRLF).
struct FailedDelivery {
  std::string recipient_type = "x-ccmail";  // address-type of Final-Recipient
  std::string recipient;                    // e.g. "Doe, Jane at HQ"
  std::string status = "5.0.0";             // RFC 3463
  std::string diagnostic;                   // Diagnostic-Code text (type x-ccmail)
};
std::string DeliveryStatusNotice(const std::string& to, const std::string& subject, const std::string& explanation,
                                 const FailedDelivery& failed, const std::string& message_id_seed);

// One SMTP transaction with the null sender. kInvalidArgument: the MTA answered 5xx
// (permanent, retrying cannot help); kUnavailable: anything temporary (connect, 4xx, I/O,
// time-out). *reply gets the last reply line for the log.
Status SendOverSmtp(const BounceRelay& relay, const std::string& to, const std::string& message, std::string* reply);

struct BounceFlushResult {
  int sent = 0;
  int deferred = 0;
  int rejected = 0;
};

class BounceQueue {
 public:
  // dir is created (0700) by Open; retry back-off between min and max.
  static Status Open(std::string dir, BounceRelay relay, std::chrono::seconds retry_min,
                     std::chrono::seconds retry_max, std::unique_ptr<BounceQueue>* out);
  ~BounceQueue();  // stops the sender thread (a session in progress ends first)
  BounceQueue(const BounceQueue&) = delete;
  BounceQueue& operator=(const BounceQueue&) = delete;

  // Durably queues a notice; a notice of that name already queued is kept (Ok).
  // name: [A-Za-z0-9._-]+. Wakes the sender thread.
  Status Add(const std::string& name, const std::string& to, const std::string& message);
  // Tries every queued notice once, now.
  BounceFlushResult Flush();
  // Starts the sender thread (flushes what an earlier run left at once).
  void Start();
  size_t Pending() const;  // notices queued and not yet accepted by the MTA
  const std::string& dir() const { return dir_; }

 private:
  BounceQueue(std::string dir, BounceRelay relay, std::chrono::seconds retry_min, std::chrono::seconds retry_max);
  void Loop();

  const std::string dir_;
  const BounceRelay relay_;
  const std::chrono::seconds retry_min_, retry_max_;
  std::mutex flush_mu_;  // one SMTP pass at a time
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool added_ = false;
  std::thread thread_;
};

// Reads the .UND and the manifest and queues one notice per undeliverable delivery (*queued).
// Unreadable files -> Status with the path (the caller retries); the notices are sent by the
// queue.
Status BounceUndeliverable(const std::string& und_path, const std::string& manifest_path,
                           const std::string& postoffice, BounceQueue* queue,
                           const format::FormatSettings& settings, int* queued, size_t* unmatched);

}  // namespace ccmail::exporter
