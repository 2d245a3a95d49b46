// check.h - the one configuration check behind every daemon's --check.
//
// SYNOPSIS
//   Config cfg;
//   Status s = Config::Load(path, &cfg);
//   if (s.ok()) s = CheckWholeConfig(cfg);
//
// DESCRIPTION
//   Runs every component's reading of the file (milter settings, spool sink,
//   exporter options: paths, claim table, format, address map, dedup_window
//   floor), so "ccmail-milter --check" and "ccmail-exporter --check" accept
//   and refuse the same files: a bad exporter setting is found before the
//   milter is reloaded with it, and the other way round. The first error is
//   returned, naming the file, the line and the setting.
#pragma once

#include "ccmail/common/status.h"
#include "ccmail/config/config.h"

namespace ccmail {

Status CheckWholeConfig(const Config& config);

}  // namespace ccmail
