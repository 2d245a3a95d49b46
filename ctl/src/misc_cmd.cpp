// misc_cmd.cpp - `check-mta` (is the MTA wired to the milter?) and `config`.
#include "ccmail/config/settings.h"
#include "ccmail/ctl/json.h"
#include "commands.h"
#include "submitter_cmd.h"
#include "format.h"

namespace ccmail::ctl {

int CmdCheckMta(const Io& io) {
  mtaconf::CheckMtaOptions opt;
  if (Status s = io.ctx.cfg.GetString("milter_socket", &opt.milter_socket); !s.ok()) {
    io.err << "ccmailctl: " << s.ToString() << "\n";
    return kExitConfig;
  }
  std::chrono::milliseconds dedup{0};
  if (Status s = io.ctx.cfg.GetDuration("dedup_window", &dedup); !s.ok()) {
    io.err << "ccmailctl: " << s.ToString() << "\n";
    return kExitConfig;
  }
  opt.dedup_window = std::chrono::duration_cast<std::chrono::seconds>(dedup);
  if (io.env.adjust_check_mta) io.env.adjust_check_mta(&opt);
  mtaconf::MtaReport report = mtaconf::CheckMta(opt);
  AddSubmitRelayFindings(io.ctx, &report);  // the way back (submitter_cmd.cpp)
  if (io.json) {
    static const char* kVerdict[] = {"ok", "missing", "wrong", "info", "warning"};
    JsonWriter w;
    w.BeginObject();
    w.Key("ok").Bool(report.ok());
    w.Key("milter_socket").String(opt.milter_socket);
    w.Key("postfix_present").Bool(report.postfix_present);
    w.Key("sendmail_present").Bool(report.sendmail_present);
    w.Key("findings").BeginArray();
    for (const auto& f : report.findings) {
      w.BeginObject();
      w.StringMembers({{"mta", f.mta}, {"verdict", kVerdict[static_cast<int>(f.verdict)]}, {"what", f.what},
                       {"found", f.found}, {"fix", f.fix}});
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    io.out << w.Take();
  } else {
    io.out << report.ToText();
  }
  return report.ok() ? kExitOk : kExitFailure;
}

int CmdConfig(const Io& io) {
  const Config& cfg = io.ctx.cfg;
  if (io.json) {
    JsonWriter w;
    w.BeginObject();
    w.Key("source").String(cfg.source());
    w.Key("settings").BeginArray();
    for (const auto& s : AllSettings()) {
      std::string name(s.name);
      const std::string value = cfg.GetRaw(name), where = cfg.Where(name);
      w.BeginObject();
      w.StringMembers({{"name", name}, {"value", value}, {"default", s.default_value}, {"where", where},
                       {"component", s.component}, {"meaning", s.meaning}});
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    io.out << w.Take();
    return kExitOk;
  }
  // Postfix `postconf`-like: "name = value", then where it came from and what it means.
  io.out << "# " << cfg.source() << "\n";
  for (const auto& s : AllSettings()) {
    std::string name(s.name);
    io.out << name << " = " << cfg.GetRaw(name) << "\n";
    io.out << "    # " << cfg.Where(name) << "; " << s.component << ": " << s.meaning << "\n";
  }
  return kExitOk;
}

}  // namespace ccmail::ctl
