// paths.cpp - the on-disk layout, derived from three settings (see paths.h).
#include "ccmail/config/paths.h"

#include "ccmail/config/config.h"

namespace ccmail {
namespace {

std::string StripSlashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

void Derive(BridgePaths* p) {
  p->spool_root = p->spool_directory + "/spool";
  p->quarantine_dir = p->spool_root + "/corrupt";
  p->ledger_path = p->spool_directory + "/ledger.db";
  p->exporter_lock = p->spool_directory + "/exporter.lock";
  p->out_tmp = p->spool_directory + "/out/tmp";
}

}  // namespace

Status BridgePaths::FromConfig(const Config& cfg, BridgePaths* out) {
  BridgePaths p;
  const struct {
    const char* name;
    std::string* field;
  } dirs[] = {{"spool_directory", &p.spool_directory},
              {"outbox_directory", &p.outbox_directory},
              {"runtime_directory", &p.runtime_directory}};
  for (const auto& d : dirs) {
    std::string v;
    CCMAIL_RETURN_IF_ERROR(cfg.GetString(d.name, &v));
    // Relative paths would depend on the daemon's working directory, which systemd sets to /.
    if (v.empty() || v[0] != '/')
      return Status::InvalidArgument(cfg.Where(d.name) + ": " + d.name + " must be an absolute path, got '" + v + "'");
    *d.field = StripSlashes(v);
  }
  Derive(&p);
  *out = std::move(p);
  return Status::Ok();
}

BridgePaths BridgePaths::UnderDirectory(const std::string& dir) {
  BridgePaths p;
  std::string base = StripSlashes(dir);
  p.spool_directory = base + "/state";
  p.outbox_directory = base + "/outbox";
  p.runtime_directory = base + "/run";
  Derive(&p);
  return p;
}

}  // namespace ccmail
