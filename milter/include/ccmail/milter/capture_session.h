// capture_session.h - one SMTP connection's messages, as the milter sees them.
//
// SYNOPSIS
//   auto policy = std::make_shared<const Policy>(Policy{router, settings.mode, settings.limits,
//                                                        settings.admission});
//   CaptureSession s(&sink);
//   s.MailFrom(policy, "<a@x>", {"SIZE=1000"});
//   Step st = s.Rcpt("<jsmith@corp.example>");      // per recipient
//   st = s.Data();                                   // kAccept: no cc:Mail recipient, done
//   st = s.Header("Subject", " hi"); st = s.EndOfHeaders(); st = s.Body(chunk);
//   EndResult r = s.EndOfMessage("4XyZ1");           // r.step, r.delete_recipients
//
// DESCRIPTION
//   The whole per-message decision, without libmilter types, so it can be
//   tested in-process. Each call returns what the glue must answer:
//     kContinue  go on (SMFIS_CONTINUE)
//     kAccept    nothing more to do for this message (SMFIS_ACCEPT)
//     kReject    5xx with reply (SMFIS_REJECT; at RCPT only that recipient)
//     kTempfail  4xx with reply (SMFIS_TEMPFAIL; at RCPT only that recipient)
//
//   Nothing is opened until DATA, or the first header field when the MTA does not
//   send DATA (ccmail-milter negotiates it away), shows at least one cc:Mail
//   recipient; then the header and body are streamed into a CaptureWriter (never held whole in
//   memory). EndOfMessage runs Admission, then Commit (the durability point);
//   only after a successful Commit does it return kContinue, with the cc:Mail
//   recipients to delete in divert mode. Every failure before that point is
//   kTempfail with a reply, and the unfinished capture is dropped. A limit
//   exceeded while streaming is a kReject at that step (552 5.3.4) and the
//   session ignores the rest of that message.
//
//   The Policy (router, mode, limits) is taken at MAIL FROM and kept for the
//   message, so a SIGHUP reload affects the next message, never one in flight.
//   Abort() (RSET, connection lost) drops any unfinished capture. A session
//   handles any number of messages one after another.
//
// THREAD SAFETY
//   One session per connection; libmilter calls one connection from one
//   thread at a time. Sessions share the sink and policies (both thread-safe).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ccmail/milter/capture_sink.h"
#include "ccmail/milter/reply.h"
#include "ccmail/milter/router.h"
#include "ccmail/milter/settings.h"

namespace ccmail::milter {

// An immutable snapshot of what a reload can change.
struct Policy {
  Router router;
  CaptureMode mode = CaptureMode::kDivert;
  Limits limits;
  AdmissionLimits admission;
};

struct Step {
  enum class Kind { kContinue, kAccept, kReject, kTempfail };
  Kind kind = Kind::kContinue;
  Reply reply;  // for kReject / kTempfail
  static Step Continue() { return {}; }
  static Step Accept() { return {Kind::kAccept, {}}; }
  static Step Reject(std::string r, std::string x, std::string t) {
    return {Kind::kReject, {std::move(r), std::move(x), std::move(t)}};
  }
  static Step Tempfail(std::string r, std::string x, std::string t) {
    return {Kind::kTempfail, {std::move(r), std::move(x), std::move(t)}};
  }
};

// The answer to a header, end of headers or body chunk when the MTA was told not to wait for one
// (SMFIP_NR_HDR / NR_EOH / NR_BODY: a round trip less per header line and body chunk). The first
// step that is not kContinue is held and given at end of message, the next step that is
// answered; the session ignores the rest of that message meanwhile. Reset at MAIL and abort.
class HeldReply {
 public:
  // Keeps st when it is the first answer other than kContinue.
  void Hold(const Step& st) {
    if (st.kind == Step::Kind::kContinue || holding_) return;
    held_ = st;
    holding_ = true;
  }
  // The held answer, if any; clears it.
  std::optional<Step> Take() {
    if (!holding_) return std::nullopt;
    holding_ = false;
    return std::move(held_);
  }
  void Clear() { holding_ = false; }

 private:
  Step held_;
  bool holding_ = false;
};

struct EndResult {
  Step step;
  // Recipients to remove with smfi_delrcpt, exactly as the MTA passed them (with <>).
  std::vector<std::string> delete_recipients;
  CaptureEnvelope envelope;  // filled when captured
  CaptureReceipt receipt;    // filled when captured
  bool captured = false;
};

class CaptureSession {
 public:
  explicit CaptureSession(CaptureSink* sink) : sink_(sink) {}
  ~CaptureSession() { Abort(); }
  CaptureSession(const CaptureSession&) = delete;
  CaptureSession& operator=(const CaptureSession&) = delete;

  Step MailFrom(std::shared_ptr<const Policy> policy, std::string_view sender,
                const std::vector<std::string>& esmtp_args);
  Step Rcpt(std::string_view recipient);
  Step Data();
  Step Header(std::string_view name, std::string_view value);
  Step EndOfHeaders();
  Step Body(std::string_view chunk);
  EndResult EndOfMessage(std::string_view queue_id);
  void Abort();

  // Remembers the MTA queue id when a macro shows it before end of message.
  void SetQueueId(std::string_view queue_id) { if (!queue_id.empty()) queue_id_ = queue_id; }
  const std::string& queue_id() const { return queue_id_; }
  // A submission without an SMTP client (Postfix sendmail(1)/pickup: client port 0). Call
  // after MailFrom; see CaptureEnvelope::local_submission.
  void SetLocalSubmission(bool local) { local_submission_ = local; }
  bool in_message() const { return in_message_; }
  size_t ccmail_recipient_count() const { return recipients_.size(); }

 private:
  Step StartCapture();
  Step Fail(Step step);  // drops the capture, remembers the step for the rest of the message
  bool Done() const { return ignore_rest_; }

  CaptureSink* sink_;
  std::shared_ptr<const Policy> policy_;
  bool in_message_ = false;
  bool ignore_rest_ = false;  // accepted early or rejected: ignore further callbacks
  std::string sender_;
  std::string queue_id_;
  bool local_submission_ = false;
  std::vector<CapturedRecipient> recipients_;
  std::vector<std::string> raw_recipients_;  // as given by the MTA, for smfi_delrcpt
  std::unique_ptr<CaptureWriter> writer_;
  uint64_t size_ = 0;
  uint64_t headers_ = 0;
};

}  // namespace ccmail::milter
