// check.cpp - see check.h.
#include "ccmail/config/check.h"

#include "ccmail/exporter/exporter.h"
#include "ccmail/milter/settings.h"
#include "ccmail/milter/spool_sink.h"

namespace ccmail {

Status CheckWholeConfig(const Config& config) {
  milter::MilterSettings milter_settings;
  CCMAIL_RETURN_IF_ERROR(milter::MilterSettings::FromConfig(config, &milter_settings));
  milter::SpoolSinkOptions sink;
  CCMAIL_RETURN_IF_ERROR(milter::SpoolSinkOptions::FromConfig(config, &sink));
  exporter::ExporterOptions exporter_options;
  return exporter::ExporterOptions::FromConfig(config, &exporter_options);
}

}  // namespace ccmail
