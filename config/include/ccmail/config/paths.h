// paths.h - where every durable file of the bridge lives, derived from the config in ONE place.
//
// Every program (milter, exporter, ccmailctl, tests) asks BridgePaths instead of joining
// directory names itself, so the layout cannot drift between the writer and the readers:
//
//   <spool_directory>/spool/tmp/<id>.<tag>   being written by a milter thread
//   <spool_directory>/spool/new/<id>         durable capture, not yet exported (queue of record)
//   <spool_directory>/spool/corrupt/<id>     quarantined (+ <id>.reason): corrupt or unconvertible
//   <spool_directory>/ledger.db              the exporter's SQLite ledger (commit point)
//   <spool_directory>/exporter.lock          flock: one exporter
//   <spool_directory>/out/tmp/               batches being built (.part), same file system
//   <outbox_directory>/<POSTOFFICE>/         published cc:Mail import files, manifests, WATERMRK
//   <runtime_directory>/                     the claim table file, live.lock (registry liveness),
//                                            the table init lock, pid files
#pragma once

#include <string>

#include "ccmail/common/status.h"

namespace ccmail {

class Config;

struct BridgePaths {
  std::string spool_directory;  // the setting itself
  std::string spool_root;       // <spool_directory>/spool (store::Spool root)
  std::string quarantine_dir;   // <spool_root>/corrupt
  std::string ledger_path;      // <spool_directory>/ledger.db
  std::string exporter_lock;    // <spool_directory>/exporter.lock
  std::string out_tmp;          // <spool_directory>/out/tmp
  std::string outbox_directory; // the setting itself
  std::string runtime_directory;

  // Reads spool_directory, outbox_directory and runtime_directory (absolute paths required).
  static Status FromConfig(const Config& cfg, BridgePaths* out);
  // The same layout under one directory (tests): <dir>/state, <dir>/outbox, <dir>/run.
  static BridgePaths UnderDirectory(const std::string& dir);
};

}  // namespace ccmail
