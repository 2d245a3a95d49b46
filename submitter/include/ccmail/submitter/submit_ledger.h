// submit_ledger.h - the submitter's durable record of what went out (the way back's commit point).
//
// SYNOPSIS
//   std::unique_ptr<SubmitLedger> l;
//   CCMAIL_RETURN_IF_ERROR(SubmitLedger::Open(spool + "/submitter/ledger.db", &l));
//   l->RecordFile({file_id, "HQ", "EXP00001.TXT", 0, 0, kFileTaken}, &inserted);
//   l->RecordMessage(message);                     // pending, before anything is sent
//   l->MarkInDoubt(file_id, idx, &resubmission);   // durable before DATA
//   ... DATA, 250 ...
//   l->Settle(file_id, idx, MessageState::kSent, "250 2.0.0 Ok: queued as 4F1");
//
// DESCRIPTION
//   SQLite in WAL mode with synchronous=FULL; the submitter daemon is its one writer (ccmailctl
//   may Requeue, a short transaction under the same busy time-out). Tables:
//     meta(key PRIMARY KEY, value)          schema (2), in_doubt_resubmitted
//     files(file_id PRIMARY KEY, post_office, name, taken_ms, messages, state)
//        file_id = sha256 hex of the file's bytes; state taken (messages to settle), done
//        (every message settled), quarantined (unreadable: the bytes are in quarantine/)
//     messages(file_id, idx, message_id, author, recipients, state, reply, settled_ms,
//              attempts, resubmissions, PRIMARY KEY(file_id, idx))
//        recipients: the Internet recipients, one per line; idx: 0-based in the file.
//   A message's states (docs/DESIGN.md, "The way back"):
//     pending     converted, nothing sent (or the MTA did not take it: retried)
//     in_doubt    written durably BEFORE the DATA command: the MTA may have the message; a
//                 message found in this state is resubmitted and counted in
//                 in_doubt_resubmitted (the one way a message can reach the MTA twice)
//     sent        the MTA answered 250 to the final dot, every recipient accepted
//     partial     250, but some recipients were refused (5xx): a notice went to the author
//     refused     nothing went out: every recipient refused, the DATA refused, or the
//                 conversion refused the message (a notice to the author is queued first)
//     quarantined cannot be converted or no author address: reply holds the reason
//   Requeue (ccmailctl) puts a refused or quarantined message back to pending and its file
//   back to taken, so the daemon converts and submits it again.
//
// ERRORS
//   Every call returns a Status naming the ledger path and the step; SQLITE_FULL is kNoSpace,
//   a missing row kNotFound, a write on a read-only ledger or a Requeue of a message that is
//   neither refused nor quarantined kInvalidArgument. A failed transaction leaves the ledger
//   as it was (SQLite rollback).
//
// THREAD SAFETY
//   One SubmitLedger object per thread (SQLite handles the file locking between processes).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ccmail/common/status.h"

namespace ccmail::submitter {

enum class MessageState { kPending, kInDoubt, kSent, kPartial, kRefused, kQuarantined };
// "pending", "in_doubt", "sent", "partial", "refused", "quarantined".
const char* MessageStateName(MessageState s);
bool ParseMessageState(std::string_view name, MessageState* out);
// Settled states need nothing more from the daemon.
inline bool IsSettled(MessageState s) { return s != MessageState::kPending && s != MessageState::kInDoubt; }

inline constexpr const char* kFileTaken = "taken";
inline constexpr const char* kFileDone = "done";
inline constexpr const char* kFileQuarantined = "quarantined";

struct SubmitFile {
  std::string file_id;      // sha256 hex of the bytes
  std::string post_office;  // the inbox sub-directory it came from
  std::string name;         // its name in the inbox
  int64_t taken_ms = 0;     // 0 on RecordFile: now
  int messages = 0;         // known once the file was read (0 before)
  std::string state = kFileTaken;
};

struct SubmitMessage {
  std::string file_id;
  int idx = 0;
  std::string message_id;               // the derived Message-ID, "<hex@origin>"
  std::string author;                   // envelope sender
  std::vector<std::string> recipients;  // Internet recipients
  MessageState state = MessageState::kPending;
  std::string reply;                    // last MTA reply, or the refusal/quarantine reason
  int64_t settled_ms = 0;               // 0 while pending/in_doubt
  int attempts = 0;                     // DATA commands sent (MarkInDoubt calls)
  // DATA sent again while in_doubt: the copies beyond the first that its recipients may hold.
  int resubmissions = 0;
};

struct SubmitCounters {
  uint64_t files_taken = 0;     // file rows (every file ever taken)
  uint64_t files_open = 0;      // files with messages to settle
  uint64_t files_quarantined = 0;
  uint64_t pending = 0, in_doubt = 0, sent = 0, partial = 0, refused = 0, quarantined = 0;
  uint64_t in_doubt_resubmitted = 0;  // DATA sent again for a message found in_doubt
};

class SubmitLedger {
 public:
  // Opens or creates the ledger (WAL, synchronous=FULL).
  static Status Open(const std::string& path, std::unique_ptr<SubmitLedger>* out);
  // Reads an existing ledger and never writes (ccmailctl). kNotFound when there is none.
  static Status OpenReadOnly(const std::string& path, std::unique_ptr<SubmitLedger>* out);
  ~SubmitLedger();
  SubmitLedger(const SubmitLedger&) = delete;
  SubmitLedger& operator=(const SubmitLedger&) = delete;
  const std::string& path() const;

  // ---- the daemon ----
  // Inserts the file row; *inserted = false (and Ok) when the file_id is known already.
  Status RecordFile(const SubmitFile& file, bool* inserted);
  Status GetFile(const std::string& file_id, SubmitFile* out);  // kNotFound
  // Sets a file's state and message count (after reading it, or when all are settled).
  Status SetFileState(const std::string& file_id, std::string_view state, int messages);
  // Files whose state is taken, oldest first.
  Status OpenFiles(std::vector<SubmitFile>* out);
  // When a done file's last message settled (the latest settled_ms; its taken_ms when it has
  // no message row), read in one transaction with the file's state, so that a Requeue between
  // the two cannot make an open file look settled. *settled_ms = 0 when the file is not done
  // or one of its messages is quarantined (its bytes in taken/ are what the admin requeues).
  // kNotFound for an unknown file.
  Status DoneFileSettledMs(const std::string& file_id, int64_t* settled_ms);
  // Inserts a pending row, or refreshes message_id/author/recipients of an unsettled one
  // (same input converts to the same values); a settled row is left as it is.
  Status RecordMessage(const SubmitMessage& m);
  Status GetMessage(const std::string& file_id, int idx, SubmitMessage* out);  // kNotFound
  // pending/in_doubt -> in_doubt, attempts + 1, in ONE transaction made durable before the
  // caller sends DATA. *resubmission: the row was in_doubt already (counted twice: the
  // message's resubmissions and the ledger's in_doubt_resubmitted).
  Status MarkInDoubt(const std::string& file_id, int idx, bool* resubmission);
  // The final state (sent, partial, refused, quarantined) with the reply or reason.
  Status Settle(const std::string& file_id, int idx, MessageState state, const std::string& reply);
  // in_doubt -> pending: the MTA answered the DATA or final dot with 4xx (it has nothing).
  Status ReturnToPending(const std::string& file_id, int idx, const std::string& reply);

  // ---- ccmailctl ----
  Status ListFiles(std::vector<SubmitFile>* out);  // oldest first
  Status ListMessages(const std::string& file_id, std::vector<SubmitMessage>* out);  // by idx
  // key: a Message-ID (with or without <>) or "file_id:idx" (a unique file_id prefix of at
  // least 8 hex digits is enough). kNotFound, or kInvalidArgument for an ambiguous prefix.
  Status FindMessage(const std::string& key, SubmitMessage* out);
  Status Requeue(const std::string& file_id, int idx);
  Status Counters(SubmitCounters* out);

  struct Impl;

 private:
  explicit SubmitLedger(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ccmail::submitter
