// client.h - the project's one SMTP client (bounces and notices of the exporter, the
// submitter's messages): one blocking session to the local MTA.
//
// SYNOPSIS
//   smtp::Endpoint relay;
//   CCMAIL_RETURN_IF_ERROR(smtp::Endpoint::Parse("127.0.0.1:25", "submit_relay", &relay));
//   smtp::Client c(relay, smtp::ClientOptions{});
//   CCMAIL_RETURN_IF_ERROR(c.Open());                       // greeting, EHLO (HELO fallback)
//   std::vector<smtp::Reply> rcpt;
//   CCMAIL_RETURN_IF_ERROR(c.Envelope("jane@example.com", {"a@x", "b@y"}, &rcpt));
//   smtp::Reply done;
//   CCMAIL_RETURN_IF_ERROR(c.Data(message, &done));          // 250: the MTA has it
//   c.Quit();
//
// DESCRIPTION
//   Open connects (each address of the host in turn), reads the greeting and sends EHLO; an
//   EHLO refused with 5xx falls back to HELO (no extensions). Envelope sends MAIL FROM and one
//   RCPT TO per recipient: in ONE write when the server offered PIPELINING (RFC 2920), else
//   one command per reply; either way every recipient gets its own reply. Data sends DATA,
//   waits for 354, then the message with CRLF line ends and dot-stuffing (RFC 5321 4.5.2; LF
//   or CRLF in) and the final dot, and returns the reply to it. Reset sends RSET, Quit QUIT
//   (its reply is read but does not matter). Every reply, the connection and each write wait
//   at most options.timeout. Reply lines are kept whole for the logs; multi-line replies
//   give their last line.
//
// ERRORS
//   The class of a failure decides what the caller does with the message:
//     kInvalidArgument  the server answered 5xx: permanent, retrying cannot help
//     kUnavailable      4xx, a closed connection, no reply within the time-out, a reply that
//                       is not SMTP, a host that does not resolve: temporary, retry later
//     errno codes       a failed connect or write (kIoError for ECONNREFUSED): temporary
//   IsPermanent(status) tells the first from the rest. The message names the relay, the
//   command and the reply. Envelope fails only when MAIL FROM is not accepted or the
//   connection breaks; refused recipients are in *rcpt_replies (their code says 4xx or 5xx).
//
// THREAD SAFETY
//   A Client is one session, used by one thread. Nothing is shared between clients.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ccmail/common/status.h"
#include "ccmail/common/unique_fd.h"

namespace ccmail::smtp {

// "host:port" or "[IPv6]:port"; the port defaults to 25.
struct Endpoint {
  std::string host = "127.0.0.1";
  uint16_t port = 25;
  // setting: the setting's name for the error message ("bounce_relay", "submit_relay").
  static Status Parse(std::string_view spec, std::string_view setting, Endpoint* out);
  std::string ToString() const;
};

struct ClientOptions {
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};  // connect, each write, each reply
  std::string helo_name;  // empty: the host name
};

struct Reply {
  int code = 0;       // 0: no reply (the connection broke first)
  std::string line;   // the last line, e.g. "250 2.0.0 Ok: queued as 4F1"
  bool positive() const { return code >= 200 && code < 400; }
  bool permanent() const { return code >= 500 && code < 600; }
};

// True for kInvalidArgument, the class the client gives a 5xx answer.
bool IsPermanent(const Status& s);

// Lines to CRLF, leading dots doubled, a CRLF added when the message does not end with one,
// then ".\r\n". What Data writes (public for the tests and for sizing).
std::string DotStuff(std::string_view message);

class Client {
 public:
  Client(Endpoint relay, ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  Status Open();
  bool pipelining() const { return pipelining_; }
  bool esmtp() const { return esmtp_; }

  // MAIL FROM:<from> and RCPT TO:<r> for each recipient. *rcpt_replies gets one reply per
  // recipient, in order. Addresses with CR, LF, '<' or '>' are refused (kInvalidArgument)
  // before anything is sent.
  Status Envelope(const std::string& from, const std::vector<std::string>& recipients, std::vector<Reply>* rcpt_replies);
  // DATA, the message, the final dot. *final_reply: the answer to the dot (when one came).
  Status Data(std::string_view message, Reply* final_reply);
  Status Reset();
  void Quit();

  const Reply& last_reply() const { return last_; }
  const std::string& relay_name() const { return relay_name_; }

 private:
  Status Connect();
  Status Write(std::string_view bytes, const char* what);
  Status ReadReply(Reply* reply, const char* what);
  // Reads the reply to `what` and maps a class other than want_class to an error.
  Status Expect(int want_class, const char* what, Reply* reply = nullptr);

  const Endpoint relay_;
  const ClientOptions options_;
  const std::string relay_name_;
  UniqueFd fd_;
  std::string in_;
  Reply last_;
  std::vector<std::string> extensions_;
  bool esmtp_ = false;
  bool pipelining_ = false;
};

// One transaction to recipients (Open, Envelope, Data, Quit). Fails unless every recipient
// was accepted (a 5xx recipient: kInvalidArgument, a 4xx one: kUnavailable) and the dot got
// 250. *reply: the last reply, for the log. The exporter's bounces use from = "" (<>).
Status SendMail(const Endpoint& relay, const ClientOptions& options, const std::string& from,
                const std::vector<std::string>& recipients, std::string_view message, std::string* reply);

}  // namespace ccmail::smtp
