// capture_session.cpp - the per-message state machine behind the libmilter callbacks.
#include "ccmail/milter/capture_session.h"

#include <algorithm>
#include <cctype>

#include "ccmail/common/ascii.h"
#include "ccmail/milter/admission.h"

namespace ccmail::milter {

namespace {

Step TooLarge() { return Step::Reject("552", "5.3.4", "Message too big for the cc:Mail gateway"); }

}  // namespace

Step CaptureSession::MailFrom(std::shared_ptr<const Policy> policy, std::string_view sender,
                              const std::vector<std::string>& /*esmtp_args*/) {
  Abort();  // a new transaction ends whatever the previous one left
  policy_ = std::move(policy);
  in_message_ = true;
  sender_ = std::string(StripAngles(sender));
  return Step::Continue();
}

Step CaptureSession::Rcpt(std::string_view recipient) {
  if (!in_message_ || ignore_rest_ || !policy_) return Step::Continue();
  Route r = policy_->router.Classify(recipient);
  switch (r.kind) {
    case Route::Kind::kOther:
      return Step::Continue();
    case Route::Kind::kUnknown:
      if (policy_->router.reject_unknown())
        return Step::Reject("550", "5.1.1",
                            std::string(StripAngles(recipient)) + ": no such cc:Mail user");
      return Step::Continue();
    case Route::Kind::kUnusable:
      // Refused for this recipient alone, before anything is promised: the other recipients of
      // the message are still captured, and the sender learns now instead of from a quarantine.
      return Step::Reject(r.reject.rcode, r.reject.xcode, r.reject.text);
    case Route::Kind::kCcMail:
      break;
  }
  std::string addr(StripAngles(recipient));
  std::string key = ToLowerAscii(addr);
  bool seen = std::any_of(recipients_.begin(), recipients_.end(),
                          [&](const CapturedRecipient& c) { return ToLowerAscii(c.smtp_address) == key; });
  if (!seen) {
    if (recipients_.size() >= policy_->limits.recipients)
      return Step::Tempfail("452", "4.5.3", "Too many cc:Mail recipients in one message");
    recipients_.push_back({addr, r.address.name, r.address.post_office});
  }
  raw_recipients_.emplace_back(recipient);
  return Step::Continue();
}

Step CaptureSession::Fail(Step step) {
  if (writer_) writer_->Abort();
  writer_.reset();
  ignore_rest_ = true;
  return step;
}

// A full spool file system is the storage condition of RFC 3463 (452 4.3.1), whichever step hit
// it; anything else on the spool is a local error (451 4.3.0). Both are temporary: nothing was
// promised yet, the client retries.
static Step SpoolFailure(const Status& s, const char* what) {
  if (s.IsNoSpace())
    return Step::Tempfail("452", "4.3.1", std::string("cc:Mail gateway spool is full (") + what + "), try again later");
  return Step::Tempfail("451", "4.3.0", std::string("cc:Mail gateway ") + what + " failed, try again later");
}

Step CaptureSession::StartCapture() {
  Status s = sink_->Begin(sender_, &writer_);
  if (!s.ok() || !writer_) {
    writer_.reset();
    return Fail(SpoolFailure(s.ok() ? Status::Unavailable("no writer") : s, "spool file creation"));
  }
  return Step::Continue();
}

Step CaptureSession::Data() {
  if (!in_message_ || ignore_rest_) return Step::Continue();
  if (recipients_.empty()) {
    // Nothing for cc:Mail: let the MTA go on without us for this message.
    in_message_ = false;
    ignore_rest_ = true;
    return Step::Accept();
  }
  if (!writer_) return StartCapture();
  return Step::Continue();
}

Step CaptureSession::Header(std::string_view name, std::string_view value) {
  if (!in_message_ || ignore_rest_) return Step::Continue();
  if (!writer_) {
    Step st = Data();  // an MTA without the DATA step
    if (st.kind != Step::Kind::kContinue) return st;
  }
  if (++headers_ > policy_->limits.header_count)
    return Fail(Step::Reject("552", "5.3.4", "Too many header fields for the cc:Mail gateway"));
  size_ += name.size() + 1 + value.size() + 2;
  if (size_ > policy_->limits.message_size) return Fail(TooLarge());
  if (Status s = writer_->AddHeader(name, value); !s.ok())
    return Fail(SpoolFailure(s, "spool write"));
  return Step::Continue();
}

Step CaptureSession::EndOfHeaders() {
  if (!in_message_ || ignore_rest_) return Step::Continue();
  if (!writer_) {
    Step st = Data();
    if (st.kind != Step::Kind::kContinue) return st;
  }
  size_ += 2;
  if (Status s = writer_->EndHeaders(); !s.ok())
    return Fail(SpoolFailure(s, "spool write"));
  return Step::Continue();
}

Step CaptureSession::Body(std::string_view chunk) {
  if (!in_message_ || ignore_rest_ || !writer_) return Step::Continue();
  size_ += chunk.size();
  if (size_ > policy_->limits.message_size) return Fail(TooLarge());
  if (Status s = writer_->AddBody(chunk); !s.ok())
    return Fail(SpoolFailure(s, "spool write"));
  return Step::Continue();
}

EndResult CaptureSession::EndOfMessage(std::string_view queue_id) {
  EndResult r;
  SetQueueId(queue_id);
  if (!in_message_ || ignore_rest_ || recipients_.empty()) {
    Abort();
    return r;
  }
  if (!writer_) {
    Step st = EndOfHeaders();  // no header at all
    if (st.kind != Step::Kind::kContinue) {
      r.step = st;
      Abort();
      return r;
    }
  }
  if (auto no = Admission::Check(sink_->Probe(), policy_->admission, size_)) {
    r.step = Step{Step::Kind::kTempfail, *no};
    Abort();
    return r;
  }
  r.envelope.queue_id = queue_id_;
  r.envelope.local_submission = local_submission_;
  r.envelope.sender = sender_;
  r.envelope.recipients = recipients_;
  r.envelope.received = std::chrono::system_clock::now();
  Status s = writer_->Commit(r.envelope, &r.receipt);
  if (!s.ok()) {
    r.step = SpoolFailure(s, "storing the message");
    r.envelope = {};
    Abort();
    return r;
  }
  writer_.reset();  // committed: nothing to drop
  r.captured = true;
  if (policy_->mode == CaptureMode::kDivert) r.delete_recipients = raw_recipients_;
  Abort();  // resets the per-message state (writer already released)
  return r;
}

void CaptureSession::Abort() {
  if (writer_) writer_->Abort();
  writer_.reset();
  in_message_ = false;
  ignore_rest_ = false;
  sender_.clear();
  queue_id_.clear();
  local_submission_ = false;
  recipients_.clear();
  raw_recipients_.clear();
  size_ = 0;
  headers_ = 0;
}

}  // namespace ccmail::milter
