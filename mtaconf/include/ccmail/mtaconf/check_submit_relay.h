// check_submit_relay.h - can ccmail-submitter hand its messages to submit_relay?
//
// SYNOPSIS
//   ccmail::mtaconf::SubmitRelayCheckOptions opt;
//   opt.submit_relay = "127.0.0.1:25";  opt.author_domains = {"ccmail.corp.example"};
//   opt.in_use = true;
//   for (const auto& f : ccmail::mtaconf::CheckSubmitRelay(opt)) ...   // part of check-mta
//
// DESCRIPTION
//   The way back (ccmail-submitter) submits over SMTP, without authentication, from the host
//   itself, with the cc:Mail author's address as envelope sender and Internet recipients. The
//   check does what the submitter does, up to and excluding DATA, with the project's SMTP
//   client: connect to submit_relay, EHLO, then for each author domain MAIL FROM:<probe@domain>
//   and RCPT TO:<probe_recipient> (an address outside the bridge's domains), RSET, QUIT.
//   Nothing is ever sent. Findings (mta "submitter"):
//     reachable            ok / MISSING (no connection, no greeting: the fix names the setting)
//     sender <domain>      ok / WRONG (5xx to MAIL FROM: the relay refuses the author domain)
//     relay for Internet   ok / WRONG (5xx to RCPT: relaying from 127.0.0.1 is not permitted
//                          without authentication, e.g. Postfix's "Relay access denied")
//     4xx answers are WARNING (temporary: the submitter retries, but look at the MTA's log).
//   When the submitter is not in use (opt.in_use false: no inbox post office directory, no
//   export_command, no submitter ledger) the relay is not contacted and one note says so.
//
// THREAD SAFETY
//   Reentrant; blocks for at most a few opt.timeout.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "ccmail/mtaconf/check_mta.h"

namespace ccmail::mtaconf {

struct SubmitRelayCheckOptions {
  bool in_use = false;
  std::string submit_relay = "127.0.0.1:25";
  std::vector<std::string> author_domains;  // ccmail_domains (and author_domain)
  std::string probe_local_part = "ccmail-bridge-check";
  std::string probe_recipient = "postmaster@example.com";  // RFC 2606: never a real mailbox
  std::chrono::milliseconds timeout{std::chrono::seconds(10)};
};

std::vector<Finding> CheckSubmitRelay(const SubmitRelayCheckOptions& opt);

}  // namespace ccmail::mtaconf
