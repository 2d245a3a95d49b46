// check_mta.cpp - read-only comparison of the MTA's milter settings with ours.
#include "ccmail/mtaconf/check_mta.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cctype>
#include <cstring>
#include <fstream>
#include <sstream>

extern char** environ;

namespace ccmail::mtaconf {
namespace {

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// A socket address reduced to a comparable form: "unix:/abs/path" or "inet:host:port".
struct Endpoint {
  std::string kind;  // "unix", "inet", "inet6" or "" (unparsable)
  std::string where; // path, or host:port
};

// Collapses "//" and a trailing "/" so equal paths compare equal.
std::string NormalPath(std::string_view p) {
  std::string out;
  for (char c : p) {
    if (c == '/' && !out.empty() && out.back() == '/') continue;
    out.push_back(c);
  }
  if (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

// milter_socket / Sendmail syntax: unix:/p, local:/p, /p, inet:port@host, inet6:port@host.
Endpoint ParseMilterSide(std::string_view s) {
  std::string t = Trim(s);
  std::string l = Lower(t);
  if (StartsWith(l, "unix:")) return {"unix", NormalPath(t.substr(5))};
  if (StartsWith(l, "local:")) return {"unix", NormalPath(t.substr(6))};
  if (!t.empty() && t[0] == '/') return {"unix", NormalPath(t)};
  for (const char* kind : {"inet6", "inet"}) {
    std::string prefix = std::string(kind) + ":";
    if (StartsWith(l, prefix)) {
      std::string rest = t.substr(prefix.size());
      size_t at = rest.find('@');
      std::string port = at == std::string::npos ? rest : rest.substr(0, at);
      std::string host = at == std::string::npos ? "localhost" : rest.substr(at + 1);
      if (host == "localhost") host = "127.0.0.1";
      return {kind, Lower(host) + ":" + port};
    }
  }
  return {"", t};
}

// Postfix syntax: unix:/p, local:/p (chroot-relative when chrooted), inet:host:port.
Endpoint ParsePostfixSide(std::string_view s) {
  std::string t = Trim(s);
  std::string l = Lower(t);
  if (StartsWith(l, "unix:")) return {"unix", NormalPath(t.substr(5))};
  if (StartsWith(l, "local:")) return {"unix", NormalPath(t.substr(6))};
  if (StartsWith(l, "inet:")) {
    std::string rest = t.substr(5);
    size_t colon = rest.rfind(':');
    if (colon == std::string::npos) return {"", t};
    std::string host = rest.substr(0, colon);
    if (!host.empty() && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (host == "localhost") host = "127.0.0.1";
    return {host.find(':') != std::string::npos ? "inet6" : "inet", Lower(host) + ":" + rest.substr(colon + 1)};
  }
  return {"", t};
}

Finding Make(std::string mta, Verdict v, std::string what, std::string found, std::string fix) {
  return Finding{std::move(mta), v, std::move(what), std::move(found), std::move(fix)};
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

// Runs argv without a shell; stdout into *out. Returns false when it cannot run
// or exits non-zero (postconf not installed, or Postfix not configured at all).
bool RunCapture(const std::vector<std::string>& argv, std::string* out, std::string* err) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) { *err = "pipe: " + std::string(strerror(errno)); return false; }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(pipefd[1]);
  if (rc != 0) {
    close(pipefd[0]);
    *err = argv[0] + ": " + strerror(rc);
    return false;
  }
  char buf[4096];
  for (;;) {
    ssize_t n = read(pipefd[0], buf, sizeof buf);
    if (n > 0) { out->append(buf, static_cast<size_t>(n)); continue; }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  close(pipefd[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    *err = argv[0] + " exited with status " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return false;
  }
  return true;
}

// Logical lines of an m4 .mc file that are not comments (dnl or #).
std::vector<std::string> McLines(std::string_view text) {
  std::vector<std::string> out;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    std::string t = Trim(line);
    if (t.empty() || t[0] == '#' || StartsWith(t, "dnl")) continue;
    out.push_back(t);
  }
  return out;
}

// Value of "S=" in a Sendmail filter equate list ("S=unix:/p, F=T, T=...").
std::string EquateValue(std::string_view list, char key) {
  size_t i = 0;
  while (i < list.size()) {
    while (i < list.size() && (list[i] == ' ' || list[i] == '\t' || list[i] == ',' || list[i] == '`')) ++i;
    if (i + 1 < list.size() && std::toupper(static_cast<unsigned char>(list[i])) == key && list[i + 1] == '=') {
      size_t e = list.find_first_of(",'", i);  // m4 closing quote ends the list
      return Trim(list.substr(i + 2, e == std::string_view::npos ? std::string_view::npos : e - i - 2));
    }
    size_t e = list.find(',', i);
    if (e == std::string_view::npos) break;
    i = e + 1;
  }
  return {};
}

}  // namespace

std::vector<std::string> ParsePostfixMilterList(std::string_view value) {
  std::vector<std::string> items;
  size_t i = 0;
  while (i < value.size()) {
    char c = value[i];
    if (c == ',' || std::isspace(static_cast<unsigned char>(c))) { ++i; continue; }
    if (c == '{') {  // { address, name=value ... }: the first element is the address
      size_t close = value.find('}', i);
      std::string_view inner = value.substr(i + 1, close == std::string_view::npos ? std::string_view::npos : close - i - 1);
      size_t comma = inner.find(',');
      std::string addr = Trim(inner.substr(0, comma));
      if (!addr.empty()) items.push_back(addr);
      i = close == std::string_view::npos ? value.size() : close + 1;
      continue;
    }
    size_t e = i;
    while (e < value.size() && value[e] != ',' && !std::isspace(static_cast<unsigned char>(value[e]))) ++e;
    items.emplace_back(value.substr(i, e - i));
    i = e;
  }
  return items;
}

bool SocketsMatch(std::string_view mta, std::string_view ours, std::string_view chroot) {
  Endpoint want = ParseMilterSide(ours);
  Endpoint have = chroot.empty() ? ParseMilterSide(mta) : ParsePostfixSide(mta);
  if (want.kind.empty() || have.kind.empty() || want.kind != have.kind) return false;
  if (want.where == have.where) return true;
  if (want.kind != "unix" || chroot.empty()) return false;
  // Postfix: a chrooted daemon resolves unix:/x as <queue dir>/x; a relative path
  // is relative to the queue directory as well.
  std::string root = NormalPath(chroot);
  std::string rel = have.where;
  if (!rel.empty() && rel[0] != '/') rel = "/" + rel;
  return NormalPath(root + rel) == want.where;
}

std::string PostfixSpelling(std::string_view ours, std::string_view chroot) {
  Endpoint e = ParseMilterSide(ours);
  if (e.kind == "unix") {
    std::string root = NormalPath(chroot);
    if (!root.empty() && StartsWith(e.where, root + "/")) return "unix:" + e.where.substr(root.size());
    return "unix:" + e.where;
  }
  if (e.kind == "inet") return "inet:" + e.where;
  if (e.kind == "inet6") {
    size_t colon = e.where.rfind(':');
    return "inet:[" + e.where.substr(0, colon) + "]" + e.where.substr(colon);
  }
  return std::string(ours);
}

std::string SendmailSpelling(std::string_view ours) {
  Endpoint e = ParseMilterSide(ours);
  if (e.kind == "unix") return "unix:" + e.where;
  if (e.kind == "inet" || e.kind == "inet6") {
    size_t colon = e.where.rfind(':');
    return e.kind + ":" + e.where.substr(colon + 1) + "@" + e.where.substr(0, colon);
  }
  return std::string(ours);
}

std::vector<Finding> CheckPostfix(std::string_view smtpd_milters, std::string_view non_smtpd_milters,
                                  std::string_view milter_default_action, std::string_view ours,
                                  std::string_view chroot) {
  std::vector<Finding> out;
  const std::string spelled = PostfixSpelling(ours, chroot);
  for (auto [name, value] : {std::pair<const char*, std::string_view>{"smtpd_milters", smtpd_milters},
                             std::pair<const char*, std::string_view>{"non_smtpd_milters", non_smtpd_milters}}) {
    std::string v = Trim(value);
    bool found = false;
    for (const std::string& item : ParsePostfixMilterList(v)) found = found || SocketsMatch(item, ours, chroot);
    if (found) {
      out.push_back(Make("postfix", Verdict::kOk, name, v, ""));
    } else {
      std::string list = v.empty() ? spelled : v + ", " + spelled;
      out.push_back(Make("postfix", Verdict::kMissing, name, v,
                         "postconf -e '" + std::string(name) + " = " + list + "'"));
    }
  }
  std::string action = Lower(Trim(milter_default_action));
  if (action == "tempfail") {
    out.push_back(Make("postfix", Verdict::kOk, "milter_default_action", action, ""));
  } else {
    out.push_back(Make("postfix", Verdict::kWrong, "milter_default_action", action,
                       "postconf -e 'milter_default_action = tempfail'"));
  }
  return out;
}

std::vector<Finding> CheckSendmailMc(std::string_view mc_text, std::string_view path, std::string_view ours) {
  std::vector<Finding> out;
  const std::string what = "INPUT_MAIL_FILTER in " + std::string(path);
  const std::string line = "INPUT_MAIL_FILTER(`ccmail-bridge', `S=" + SendmailSpelling(ours) +
                           ", F=T, T=S:30s;R:5m;E:10m')dnl";
  for (const std::string& l : McLines(mc_text)) {
    bool input = StartsWith(l, "INPUT_MAIL_FILTER(");
    if (!input && !StartsWith(l, "MAIL_FILTER(")) continue;
    std::string socket = EquateValue(l.substr(l.find('(') + 1), 'S');
    if (!SocketsMatch(socket, ours, "")) continue;
    std::string flags = EquateValue(l.substr(l.find('(') + 1), 'F');
    bool tempfail = flags.find('T') != std::string::npos;
    if (!input) {
      out.push_back(Make("sendmail", Verdict::kWrong, what, l,
                         "MAIL_FILTER only defines the filter; use " + line));
    } else if (!tempfail) {
      out.push_back(Make("sendmail", Verdict::kWrong, what + " (F=T)", l,
                         "add F=T so Sendmail tempfails when the filter is down: " + line));
    } else {
      out.push_back(Make("sendmail", Verdict::kOk, what, l, ""));
    }
    return out;
  }
  out.push_back(Make("sendmail", Verdict::kMissing, what, "", "add before the MAILER lines: " + line));
  return out;
}

std::vector<Finding> CheckSendmailCf(std::string_view cf_text, std::string_view path, std::string_view ours) {
  std::vector<Finding> out;
  const std::string what = "filter in " + std::string(path);
  std::istringstream in{std::string(cf_text)};
  std::string l, filter_name, input_filters;
  bool tempfail = false;
  while (std::getline(in, l)) {
    if (l.size() > 1 && l[0] == 'X') {  // Xname, S=..., F=T, T=...
      size_t comma = l.find(',');
      if (comma == std::string::npos) continue;
      std::string name = Trim(std::string_view(l).substr(1, comma - 1));
      std::string_view rest = std::string_view(l).substr(comma + 1);
      if (SocketsMatch(EquateValue(rest, 'S'), ours, "")) {
        filter_name = name;
        tempfail = EquateValue(rest, 'F').find('T') != std::string::npos;
      }
    } else if (StartsWith(l, "O InputMailFilters=")) {
      input_filters = l.substr(19);
    }
  }
  if (filter_name.empty()) {
    out.push_back(Make("sendmail", Verdict::kMissing, what, "",
                       "rebuild sendmail.cf from sendmail.mc (make -C /etc/mail) after adding INPUT_MAIL_FILTER"));
    return out;
  }
  bool listed = false;
  for (const std::string& item : ParsePostfixMilterList(input_filters)) listed = listed || item == filter_name;
  if (!listed) {
    out.push_back(Make("sendmail", Verdict::kMissing, "InputMailFilters in " + std::string(path), input_filters,
                       "filter " + filter_name + " is defined but not in InputMailFilters: use INPUT_MAIL_FILTER, not MAIL_FILTER"));
  } else if (!tempfail) {
    out.push_back(Make("sendmail", Verdict::kWrong, what + " (F=T)", filter_name,
                       "add F=T to the INPUT_MAIL_FILTER line and rebuild sendmail.cf"));
  } else {
    out.push_back(Make("sendmail", Verdict::kOk, what, filter_name, ""));
  }
  return out;
}

bool MtaReport::ok() const {
  if (!postfix_present && !sendmail_present) return false;
  for (const Finding& f : findings) {
    if (f.verdict == Verdict::kMissing || f.verdict == Verdict::kWrong) return false;
  }
  return true;
}

std::string MtaReport::ToText() const {
  std::string out;
  for (const Finding& f : findings) {
    const char* tag = f.verdict == Verdict::kOk ? "ok      " : f.verdict == Verdict::kMissing ? "MISSING "
                    : f.verdict == Verdict::kWrong ? "WRONG   " : "note    ";
    out += tag + f.mta + ": " + f.what;
    if (!f.found.empty()) out += " = " + f.found;
    out += "\n";
    if (!f.fix.empty()) out += "          fix: " + f.fix + "\n";
  }
  if (!postfix_present && !sendmail_present) out += "MISSING no MTA found (neither postconf nor sendmail.mc/.cf)\n";
  out += ok() ? "check-mta: the MTA is configured for ccmail-milter\n"
              : "check-mta: the MTA is NOT (completely) configured for ccmail-milter\n";
  return out;
}

MtaReport CheckMta(const CheckMtaOptions& opt) {
  MtaReport r;
  std::string text, err;
  if (RunCapture({opt.postconf_command, "-h", "smtpd_milters", "non_smtpd_milters", "milter_default_action"},
                 &text, &err)) {
    r.postfix_present = true;
    std::vector<std::string> lines;
    std::istringstream in(text);
    std::string l;
    while (std::getline(in, l)) lines.push_back(l);
    lines.resize(3);
    for (Finding& f : CheckPostfix(lines[0], lines[1], lines[2], opt.milter_socket, opt.postfix_queue_directory)) {
      r.findings.push_back(std::move(f));
    }
  } else {
    r.findings.push_back(Make("postfix", Verdict::kInfo, "not checked", "", ""));
    r.findings.back().what = "not checked (" + err + ")";
  }
  std::string mc, cf;
  bool have_mc = ReadFile(opt.sendmail_mc, &mc);
  bool have_cf = ReadFile(opt.sendmail_cf, &cf);
  if (have_mc || have_cf) {
    r.sendmail_present = true;
    if (have_mc) for (Finding& f : CheckSendmailMc(mc, opt.sendmail_mc, opt.milter_socket)) r.findings.push_back(std::move(f));
    if (have_cf) for (Finding& f : CheckSendmailCf(cf, opt.sendmail_cf, opt.milter_socket)) r.findings.push_back(std::move(f));
  }
  return r;
}

}  // namespace ccmail::mtaconf
