// settings.h - every setting of ccmail-bridge.conf: name, default, meaning.
//
// DESCRIPTION
//   This table is the single source of truth for what may appear in the
//   configuration file. Config::Load rejects names that are not here, the
//   getters fall back to the defaults here, "ccmailctl config" prints it, and
//   docs/ARCHITECTURE.md and ccmail-bridge.conf(5) describe the same entries.
//   A component that adds a setting adds one row here (grouped by component).
#pragma once

#include <string_view>
#include <vector>

namespace ccmail {

struct SettingSpec {
  std::string_view name;
  std::string_view default_value;
  std::string_view component;  // "general", "milter", "exporter", "format", ...
  std::string_view meaning;    // one or two sentences for the administrator
};

const std::vector<SettingSpec>& AllSettings();
// nullptr when the name is not a setting.
const SettingSpec* FindSetting(std::string_view name);

}  // namespace ccmail
