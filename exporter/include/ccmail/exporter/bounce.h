// bounce.h - turns the .UND file of a batch that cc:Mail IMPORT could not deliver in full
// (deliver_command exit 5, deliver.h) into bounces, and sends them (and quarantine notices)
// over SMTP to the local MTA.
//
// What it offers: BounceUndeliverable reads the .UND file (cc:Mail import format, parsed with
// the ccmail_format reader, either layout) and the batch manifest, matches each undeliverable
// message to the manifest delivery it came from, and queues one delivery status notification
// (RFC 3464, multipart/report; report-type=delivery-status; Status 5.1.1) per matched
// delivery for its envelope sender. The exporter also queues its quarantine notices here
// (notify_sender_on_quarantine).
//
// Why SMTP and not sendmail(1): the exporter's unit runs with NoNewPrivileges=yes, under
// which Postfix's sendmail(1) cannot run its setgid postdrop and loops on "Permission
// denied" writing the maildrop. An SMTP session to bounce_relay (default 127.0.0.1:25)
// needs no privilege. The envelope sender is the null sender (MAIL FROM:<>): a bounce must
// never bounce. The session is the project's one SMTP client (smtp/client.h: EHLO with HELO
// fallback, PIPELINING, time-outs).
//
// Durability: BounceQueue::Add writes the notice into <dir>/<name>.msg (the exporter's dir is
// <spool_directory>/bounce) through a hidden tmp file (fsync, rename, directory fsync) before
// anything is sent; the file is removed only after a 2xx reply to the final dot. Names are
// derived from the delivery (capture id + post office and recipient), so queueing the same
// .UND again does not queue a second notice while the first is pending; once it was sent, a
// second BounceUndeliverable of that .UND sends it again.
//
// Matching: the .UND keeps the batch order, so deliveries are matched in manifest order:
// each .UND message takes the first manifest entry after the previous match whose recipient
// is one of its To/Cc/Bcc names (the bare name, or "name at PO"). One .UND message matches
// one delivery. A .UND message that matches nothing is counted in *unmatched (the caller logs
// it), not guessed. Deliveries with the null sender are never bounced.
//
// ERRORS
//   SendOverSmtp: kInvalidArgument when the MTA answered 5xx (permanent); anything else is
//   temporary: kUnavailable (4xx, a closed connection, no reply within the time-out, not an
//   SMTP reply, a host that does not resolve) or the errno code of a failed connect or write
//   (kIoError for ECONNREFUSED). BounceQueue::Flush keeps a notice after a temporary failure
//   (retried with back-off between retry_min and retry_max) and moves it to <dir>/rejected/
//   after a permanent one or when the queued file is not a queued bounce (kCorrupt); each is
//   logged. BounceQueue::Add: kInvalidArgument for a bad name or recipient, else the errno
//   Status of the failed step with the path (the tmp file is removed). BounceUndeliverable:
//   kNotFound naming the .UND or the manifest when it cannot be read, kCorrupt for a
//   manifest it cannot parse, or Add's error (the caller retries the whole step).
//   BounceRelay::Parse: kInvalidArgument naming the bad spec.
//
// THREAD SAFETY
//   MatchUndeliverable and DeliveryStatusNotice keep no state (the notice reads the clock and
//   the host name). A BounceQueue is shared: Add, Flush and Pending may be called from any
//   thread (one Flush pass runs at a time); Start runs a sender thread that flushes when
//   something was added and retries deferred notices; the destructor stops it.
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
// (permanent, retrying cannot help); any other error is temporary (see ERRORS). *reply gets
// the last reply line for the log.
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
                           const std::string& post_office, BounceQueue* queue,
                           const format::FormatSettings& settings, int* queued, size_t* unmatched);

}  // namespace ccmail::exporter
