// round_steps.h - INTERNAL to exporter/src: the plain steps of preparing one export round
// (docs/DESIGN.md §6), each a function of its inputs that starts no thread of its own unless asked
// (ConvertRound with threads > 1), so a test can run a round step by step:
//
//   OpenAndResolve  open + verify each capture, resolve its recipients per post office
//                   (no ledger, no side effect on the spool);
//   ConvertRound    a TENTATIVE classification (as if every earlier capture of the round gets
//                   in and nothing is in the ledger) and the conversion, on `threads` threads;
//   ClassifyRound   in capture-id order, against the ledger's answers AND the round itself:
//                   what is known, what is quarantined, what waits, and the CommitJob (one
//                   batch per post office), converting again an item whose deliveries changed.
//
// Exporter::Impl::ProcessRound (round.cpp) strings them together around the wait for the
// committer and applies the side effects ClassifyRound only lists.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ccmail/common/status.h"
#include "ccmail/exporter/outbox.h"
#include "ccmail/format/address_map.h"
#include "ccmail/format/converter.h"
#include "ccmail/store/ledger.h"
#include "ccmail/store/spool.h"

namespace ccmail::exporter {

struct RoundRcpt {
  std::string smtp;
  format::CcMailAddress addr;
  std::string key;  // "<name> at <PO>": the ledger's recipient string
};

using PoRcpts = std::map<std::string, std::vector<const RoundRcpt*>>;
using KeySet = std::set<std::pair<store::ContentKey, std::string>>;

// One capture of a round in preparation.
struct RoundItem {
  store::CaptureId id;
  store::SpoolEntry entry;
  Status open_status;  // corrupt: quarantined once the ledger says it is not known; not found:
                       // counted as known when the ledger has it, else a stale slot
  std::string unusable;  // unusable recipients (quarantine reason), decided after the ledger
  std::map<std::string, std::vector<RoundRcpt>> by_post_office;
  // Conversion (tentative: as if every earlier capture of the round gets in).
  PoRcpts expected_post_office, duplicate_post_office;
  std::map<std::string, std::string> out;
  std::string unconvertible;
  bool io_failed = false;
};

// One post office's batch of a round: the converted messages, the manifest lines and the
// ledger rows that the round's one transaction records.
struct PoBatch {
  std::string content;
  std::vector<ManifestEntry> entries;
  store::LedgerBatch ledger;
};

// The durable half of a round, handed by the main thread to the committer thread.
struct CommitJob {
  std::map<std::string, PoBatch> batches;  // by post office
  store::LedgerBatch nofile;               // captures with nothing to export (all DUP)
  std::vector<store::CaptureId> done;      // every capture recorded by this round
  std::vector<UniqueFd> fds;               // their spool descriptors: closed after the unlink
  uint64_t exported = 0, dups = 0;
};

// What preparing a round found, besides its items.
struct RoundPrep {
  std::vector<RoundItem> items;
  std::vector<store::CaptureId> deferred;  // back to `pending`: a later round takes them
  bool retry_error = false;                // a capture could not be read or converted
  std::string retry_why;                   // the first such reason
};

// Opens and verifies each id (Spool::VerifyOnly) and groups its recipients per post office
// (the address map fills in what the capture could not resolve). Stops opening at
// `max_open` files or `round_max_bytes` of messages: the rest is deferred. An error other
// than corrupt / not found defers the id and sets retry_error.
void OpenAndResolve(store::Spool& spool, const format::AddressMap* amap, const std::vector<store::CaptureId>& ids,
                    uint64_t round_max_bytes, size_t max_open, RoundPrep* r);

// Classifies an item's deliveries: exported when (content key, recipient) is in neither
// `round_keys` nor `ledger_keys`.
void ClassifyItem(const RoundItem& item, const KeySet& round_keys, const KeySet& ledger_keys, PoRcpts* expected_post_office,
                  PoRcpts* duplicate_post_office);

// Converts an item for its expected_post_office (one parse for all its post offices).
void ConvertItem(const format::Converter& cv, RoundItem* item);

// The tentative classification and the conversion of every usable item; `threads` > 1 uses
// that many threads (at most one per 8 items).
void ConvertRound(const format::Converter& cv, size_t threads, std::vector<RoundItem>* items);

// ClassifyRound's verdict besides the job.
struct RoundPlan {
  std::unique_ptr<CommitJob> job;
  std::vector<store::CaptureId> known;                // in the ledger: unlink their spool files
  std::vector<size_t> corrupt;                        // items failing verification: quarantine
  std::vector<std::pair<size_t, std::string>> quarantine;  // items to quarantine, with the reason
  std::vector<store::CaptureId> deferred;             // over round_max_bytes, or conversion I/O
  bool retry_error = false;
  std::string retry_why;
};

// The real classification, in capture-id order, of items whose ledger answers are
// in_ledger[i] (capture known) and ledger_keys (deliveries already exported). Moves the
// converted text and the spool descriptors of the captures that get in into the job.
RoundPlan ClassifyRound(const format::Converter& cv, const std::vector<char>& in_ledger, const KeySet& ledger_keys,
                        uint64_t round_max_bytes, std::vector<RoundItem>* items);

}  // namespace ccmail::exporter
