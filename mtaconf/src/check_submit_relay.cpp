// check_submit_relay.cpp - see check_submit_relay.h.
#include "ccmail/mtaconf/check_submit_relay.h"

#include "ccmail/smtp/client.h"

namespace ccmail::mtaconf {
namespace {

constexpr const char* kMta = "submitter";

Finding Make(Verdict v, std::string what, std::string found, std::string fix) {
  return Finding{kMta, v, std::move(what), std::move(found), std::move(fix)};
}

std::string ReplyText(const smtp::Reply& r) {
  return r.code == 0 ? "no reply" : r.line.empty() ? std::to_string(r.code) : r.line;
}

}  // namespace

std::vector<Finding> CheckSubmitRelay(const SubmitRelayCheckOptions& opt) {
  std::vector<Finding> out;
  if (!opt.in_use) {
    out.push_back(Make(Verdict::kInfo, "submit_relay not checked",
                       "ccmail-submitter not in use (no inbox_directory/<PO>/, no export_command, no ledger)", ""));
    return out;
  }
  smtp::Endpoint relay;
  if (Status s = smtp::Endpoint::Parse(opt.submit_relay, "submit_relay", &relay); !s.ok()) {
    out.push_back(Make(Verdict::kWrong, "submit_relay", opt.submit_relay, s.message()));
    return out;
  }
  smtp::ClientOptions co;
  co.timeout = opt.timeout;
  smtp::Client client(relay, co);
  if (Status s = client.Open(); !s.ok()) {
    out.push_back(Make(Verdict::kMissing, "submit_relay reachable", opt.submit_relay + ": " + s.message(),
                       "start the MTA's smtpd on " + opt.submit_relay +
                           " (loopback), or set submit_relay in ccmail-bridge.conf to where it listens"));
    return out;
  }
  out.push_back(Make(Verdict::kOk, "submit_relay reachable", opt.submit_relay, ""));
  bool relay_checked = false;
  for (const std::string& domain : opt.author_domains) {
    const std::string sender = opt.probe_local_part + "@" + domain;
    std::vector<smtp::Reply> rcpt;
    Status s = client.Envelope(sender, {opt.probe_recipient}, &rcpt);
    if (!s.ok()) {
      const bool permanent = smtp::IsPermanent(s);
      out.push_back(Make(permanent ? Verdict::kWrong : Verdict::kWarning, "sender " + domain, s.message(),
                         permanent ? "let the MTA accept envelope senders of " + domain +
                                         " from 127.0.0.1 (Postfix: smtpd_sender_restrictions, "
                                         "reject_unlisted_sender, sender_login_maps)"
                                   : ""));
      if (!permanent) break;  // the connection is gone or the MTA is unhappy: one warning is enough
      (void)client.Reset();
      continue;
    }
    out.push_back(Make(Verdict::kOk, "sender " + domain, "MAIL FROM:<" + sender + "> accepted", ""));
    if (!relay_checked && !rcpt.empty()) {
      relay_checked = true;
      const smtp::Reply& r = rcpt.front();
      const std::string found = "RCPT TO:<" + opt.probe_recipient + ">: " + ReplyText(r);
      if (r.positive())
        out.push_back(Make(Verdict::kOk, "relays Internet mail from 127.0.0.1 without authentication", found, ""));
      else if (r.permanent())
        out.push_back(Make(Verdict::kWrong, "relays Internet mail from 127.0.0.1 without authentication", found,
                           "Postfix: postconf -e 'mynetworks = 127.0.0.0/8 [::1]/128' and keep permit_mynetworks "
                           "in smtpd_relay_restrictions; Sendmail: FEATURE(`relay_hosts_only') with 127.0.0.1 in "
                           "/etc/mail/relay-domains"));
      else
        out.push_back(Make(Verdict::kWarning, "relays Internet mail from 127.0.0.1 without authentication", found,
                           ""));
    }
    (void)client.Reset();
  }
  client.Quit();
  return out;
}

}  // namespace ccmail::mtaconf
