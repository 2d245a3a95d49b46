// check_mta.cpp - read-only comparison of the MTA's milter settings with ours.
#include "ccmail/mtaconf/check_mta.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cctype>
#include <cstring>
#include <fstream>
#include <sstream>
#include <algorithm>

#include "ccmail/common/ascii.h"

extern char** environ;

namespace ccmail::mtaconf {
namespace {

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
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
  std::string l = ToLowerAscii(t);
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
      return {kind, ToLowerAscii(host) + ":" + port};
    }
  }
  return {"", t};
}

// Postfix syntax: unix:/p, local:/p (chroot-relative when chrooted), inet:host:port.
Endpoint ParsePostfixSide(std::string_view s) {
  std::string t = Trim(s);
  std::string l = ToLowerAscii(t);
  if (StartsWith(l, "unix:")) return {"unix", NormalPath(t.substr(5))};
  if (StartsWith(l, "local:")) return {"unix", NormalPath(t.substr(6))};
  if (StartsWith(l, "inet:")) {
    std::string rest = t.substr(5);
    size_t colon = rest.rfind(':');
    if (colon == std::string::npos) return {"", t};
    std::string host = rest.substr(0, colon);
    if (!host.empty() && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (host == "localhost") host = "127.0.0.1";
    return {host.find(':') != std::string::npos ? "inet6" : "inet", ToLowerAscii(host) + ":" + rest.substr(colon + 1)};
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
    if (i + 1 < list.size() && ToUpperAscii(list[i]) == key && list[i + 1] == '=') {
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
  std::string action = ToLowerAscii(Trim(milter_default_action));
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
                    : f.verdict == Verdict::kWrong ? "WRONG   " : f.verdict == Verdict::kWarning ? "WARNING " : "note    ";
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

long long PostfixSeconds(std::string_view value, char default_unit) {
  std::string v = Trim(value);
  if (v.empty()) return -1;
  char unit = default_unit;
  if (std::isalpha(static_cast<unsigned char>(v.back()))) {
    unit = ToLowerAscii(v.back());
    v.pop_back();
  }
  if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos || v.size() > 12) return -1;
  long long n = std::stoll(v);
  switch (unit) {
    case 's': return n;
    case 'm': return n * 60;
    case 'h': return n * 3600;
    case 'd': return n * 86400;
    case 'w': return n * 7 * 86400;
    default: return -1;
  }
}

bool PostfixReaches(std::string_view mta, std::string_view ours, bool chrooted, std::string_view queue_directory) {
  Endpoint want = ParseMilterSide(ours);
  Endpoint have = ParsePostfixSide(mta);
  if (want.kind.empty() || have.kind != want.kind) return false;
  if (want.kind != "unix") return want.where == have.where;
  // A chrooted daemon resolves every path inside queue_directory; any daemon resolves a
  // relative path from queue_directory (its working directory).
  std::string path = have.where;
  if (chrooted || path.empty() || path[0] != '/') path = std::string(queue_directory) + "/" + path;
  return NormalPath(path) == want.where;
}

namespace {

struct PostfixDaemon {
  bool found = false;
  bool chrooted = false;
  std::string line;
};

// From `postconf -M` lines ("smtp inet n - y - - smtpd"): the first inet smtpd and cleanup.
// A "-" chroot is Postfix >= 3.0's default, n.
void ParseMaster(const std::string& text, PostfixDaemon* smtpd, PostfixDaemon* cleanup) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::vector<std::string> w;
    for (std::string x; f >> x;) w.push_back(x);
    if (w.size() < 8) continue;
    PostfixDaemon* d = nullptr;
    if (w[1] == "inet" && w[7] == "smtpd" && !smtpd->found) d = smtpd;
    if (w[1] == "unix" && w[7] == "cleanup" && w[0] == "cleanup" && !cleanup->found) d = cleanup;
    if (!d) continue;
    d->found = true;
    d->chrooted = w[4] == "y";
    d->line = Trim(line);
  }
}

// Connects to the milter socket as `user` (a forked child that drops to the user's uid, gid
// and groups first, as the MTA's processes run). "" when it connected, else the reason.
std::string ConnectAs(const std::string& user, const std::string& path) {
  struct passwd* pw = ::getpwnam(user.c_str());
  if (!pw) return "no such user " + user;
  const uid_t uid = pw->pw_uid;
  const gid_t gid = pw->pw_gid;
  int ngroups = 64;
  std::vector<gid_t> groups(static_cast<size_t>(ngroups));
  if (::getgrouplist(user.c_str(), gid, groups.data(), &ngroups) < 0) {
    groups.resize(static_cast<size_t>(ngroups));
    ::getgrouplist(user.c_str(), gid, groups.data(), &ngroups);
  }
  groups.resize(static_cast<size_t>(std::max(ngroups, 0)));
  struct sockaddr_un sa = {};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) return "socket path too long";
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  pid_t pid = ::fork();
  if (pid < 0) return std::string("fork: ") + std::strerror(errno);
  if (pid == 0) {
    if (::setgroups(groups.size(), groups.data()) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) ::_exit(250);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) ::_exit(251);
    if (::connect(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) != 0) ::_exit(errno > 0 && errno < 250 ? errno : 249);
    ::_exit(0);
  }
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  if (!WIFEXITED(st)) return "check process died";
  int rc = WEXITSTATUS(st);
  if (rc == 0) return "";
  if (rc == 250) return "cannot switch to user " + user;
  if (rc >= 249) return "cannot create a socket";
  return std::strerror(rc);
}

std::string ConnectInet(const std::string& host_port) {
  size_t colon = host_port.rfind(':');
  std::string host = host_port.substr(0, colon), port = host_port.substr(colon + 1);
  struct addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) return ::gai_strerror(rc);
  std::string err = "no address";
  for (auto* ai = res; ai; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    bool ok = ::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0;
    if (!ok) err = std::strerror(errno);
    ::close(fd);
    if (ok) {
      err.clear();
      break;
    }
  }
  ::freeaddrinfo(res);
  return err;
}

std::string GroupOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return "";
  struct group* g = ::getgrgid(st.st_gid);
  return g ? g->gr_name : std::to_string(st.st_gid);
}

std::string Days(long long s) {
  return s % 86400 == 0 ? std::to_string(s / 86400) + "d" : std::to_string(s) + "s";
}

void AddPostfixFinding(MtaReport* r, Verdict v, std::string what, std::string found, std::string fix) {
  r->findings.push_back(Make("postfix", v, std::move(what), std::move(found), std::move(fix)));
}

// The main.cf values the check reads, with Postfix's defaults where postconf prints nothing.
struct PostfixValues {
  std::string smtpd_milters, non_smtpd_milters, milter_default_action;
  std::string queue_directory, mail_owner;
  std::string maximal_queue_lifetime, bounce_queue_lifetime;  // as written (units optional)
  std::string milter_connect_timeout, milter_command_timeout, milter_content_timeout;
};

// postconf (with -c when a config directory is given) and its leading arguments.
std::vector<std::string> PostconfCommand(const CheckMtaOptions& opt) {
  std::vector<std::string> base{opt.postconf_command};
  if (!opt.postfix_config_directory.empty()) base.insert(base.end(), {"-c", opt.postfix_config_directory});
  return base;
}

// Reads the values through postconf. False (with the finding that says why) when Postfix is
// not installed, not configured, or postconf fails: nothing further can be checked.
bool ReadPostfixValues(const CheckMtaOptions& opt, MtaReport* r, PostfixValues* values) {
  const std::string dir = opt.postfix_config_directory.empty() ? "/etc/postfix" : opt.postfix_config_directory;
  std::string text, err;
  struct stat st;
  if (::stat((dir + "/main.cf").c_str(), &st) != 0) {
    // postconf exists (the package is there) but nothing is configured: mail does not flow.
    if (!RunCapture({opt.postconf_command, "-d", "-h", "mail_version"}, &text, &err)) {
      AddPostfixFinding(r, Verdict::kInfo, "not checked (" + err + ")", "", "");
      return false;
    }
    r->postfix_present = true;
    AddPostfixFinding(r, Verdict::kMissing, "Postfix not configured", "no " + dir + "/main.cf",
                      "configure Postfix first (dpkg-reconfigure postfix), then run ccmailctl check-mta again");
    return false;
  }
  std::vector<std::string> args = PostconfCommand(opt);
  args.insert(args.end(), {"-h", "smtpd_milters", "non_smtpd_milters", "milter_default_action", "queue_directory",
                           "mail_owner", "maximal_queue_lifetime", "bounce_queue_lifetime", "milter_connect_timeout",
                           "milter_command_timeout", "milter_content_timeout"});
  if (!RunCapture(args, &text, &err)) {
    AddPostfixFinding(r, Verdict::kInfo, "not checked (" + err + ")", "", "");
    return false;
  }
  r->postfix_present = true;
  std::vector<std::string> v;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) v.push_back(l);
  v.resize(10);
  *values = PostfixValues{Trim(v[0]), Trim(v[1]), Trim(v[2]), Trim(v[3]), Trim(v[4]), v[5], v[6], v[7], v[8], v[9]};
  if (values->queue_directory.empty()) values->queue_directory = "/var/spool/postfix";
  if (values->mail_owner.empty()) values->mail_owner = "postfix";
  return true;
}

// The milter lists, as each daemon resolves them (its chroot column, queue_directory).
void CheckMilterLists(const CheckMtaOptions& opt, const PostfixValues& pv, const PostfixDaemon& smtpd,
                      const PostfixDaemon& cleanup, MtaReport* r) {
  struct List {
    const char* name;
    std::string value;
    const PostfixDaemon* daemon;
  };
  const std::string& queue_dir = pv.queue_directory;
  const std::string chroot_spelling = PostfixSpelling(opt.milter_socket, queue_dir);
  const std::string full_spelling = PostfixSpelling(opt.milter_socket, "");
  for (const List& l : {List{"smtpd_milters", pv.smtpd_milters, &smtpd}, List{"non_smtpd_milters", pv.non_smtpd_milters, &cleanup}}) {
    const bool chrooted = l.daemon->chrooted;
    const std::string spelled = chrooted ? chroot_spelling : full_spelling;
    bool reaches = false, listed_elsewise = false;
    for (const std::string& item : ParsePostfixMilterList(l.value)) {
      if (PostfixReaches(item, opt.milter_socket, chrooted, queue_dir)) reaches = true;
      else if (SocketsMatch(item, opt.milter_socket, queue_dir)) listed_elsewise = true;
    }
    const std::string what = std::string(l.name) + (l.daemon->found ? (chrooted ? " (chrooted in " + queue_dir + ")" : " (not chrooted)") : "");
    if (reaches) {
      AddPostfixFinding(r, Verdict::kOk, what, l.value, "");
    } else if (listed_elsewise) {
      AddPostfixFinding(r, Verdict::kWrong, what, l.value,
                        "this spelling does not reach the socket from a " + std::string(chrooted ? "chrooted" : "non-chrooted") +
                            " daemon; use " + spelled + " (postconf -e '" + l.name + " = ...')");
    } else {
      std::string list = l.value.empty() ? spelled : l.value + ", " + spelled;
      AddPostfixFinding(r, Verdict::kMissing, what, l.value, "postconf -e '" + std::string(l.name) + " = " + list + "'");
    }
  }
}

void CheckDefaultAction(const PostfixValues& pv, MtaReport* r) {
  std::string action = ToLowerAscii(pv.milter_default_action);
  if (action == "tempfail")
    AddPostfixFinding(r, Verdict::kOk, "milter_default_action", action, "");
  else
    AddPostfixFinding(r, Verdict::kWrong, "milter_default_action", action, "postconf -e 'milter_default_action = tempfail'");
}

// The socket itself, and whether the MTA's user can connect to it.
void CheckMilterSocket(const CheckMtaOptions& opt, const PostfixValues& pv, MtaReport* r) {
  Endpoint ours = ParseMilterSide(opt.milter_socket);
  const std::string user = opt.mta_user.empty() ? pv.mail_owner : opt.mta_user;
  struct stat st;
  if (ours.kind == "unix") {
    if (::stat(ours.where.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
      AddPostfixFinding(r, Verdict::kMissing, "milter socket " + ours.where, "",
                        "start ccmail-milter (systemctl start ccmail-milter); every message gets 451 until it listens");
    } else if (::geteuid() != 0) {
      AddPostfixFinding(r, Verdict::kMissing, "connect to " + ours.where + " as " + user, "not checked",
                        "run ccmailctl check-mta as root to test the connection as " + user);
    } else if (std::string why = ConnectAs(user, ours.where); !why.empty()) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
      AddPostfixFinding(r, Verdict::kWrong, "connect to " + ours.where + " as " + user, why,
                        "adduser " + user + " " + GroupOf(ours.where) + " and restart Postfix (socket group " +
                            GroupOf(ours.where) + ", mode " + mode + ")");
    } else {
      AddPostfixFinding(r, Verdict::kOk, "connect to " + ours.where + " as " + user, "", "");
    }
  } else if (ours.kind == "inet" || ours.kind == "inet6") {
    if (std::string why = ConnectInet(ours.where); !why.empty())
      AddPostfixFinding(r, Verdict::kWrong, "connect to " + ours.where, why, "start ccmail-milter; every message gets 451 until it listens");
    else
      AddPostfixFinding(r, Verdict::kOk, "connect to " + ours.where, "", "");
  }
}

// Timeouts: shorter than recommended is a warning (Postfix tempfails, nothing is lost).
void CheckTimeouts(const PostfixValues& pv, MtaReport* r) {
  const struct { const char* name; const std::string& value; long long min; } timeouts[] = {
      {"milter_connect_timeout", pv.milter_connect_timeout, kRecommendedMilterConnectTimeout},
      {"milter_command_timeout", pv.milter_command_timeout, kRecommendedMilterCommandTimeout},
      {"milter_content_timeout", pv.milter_content_timeout, kRecommendedMilterContentTimeout}};
  for (const auto& t : timeouts) {
    long long secs = PostfixSeconds(t.value, 's');
    if (secs < 0) continue;
    if (secs < t.min)
      AddPostfixFinding(r, Verdict::kWarning, t.name, Trim(t.value),
                        "shorter than the recommended " + std::to_string(t.min) + "s: a slow spool disk makes Postfix answer 4xx "
                        "(postconf -e '" + std::string(t.name) + " = " + std::to_string(t.min) + "s')");
    else
      AddPostfixFinding(r, Verdict::kOk, t.name, Trim(t.value), "");
  }
}

// The dedup window must outlast every retry Postfix (or a client queue) can make.
void CheckDedupWindow(const CheckMtaOptions& opt, const PostfixValues& pv, MtaReport* r) {
  if (opt.dedup_window.count() <= 0) return;
  long long mql = PostfixSeconds(pv.maximal_queue_lifetime, 'd'), bql = PostfixSeconds(pv.bounce_queue_lifetime, 'd');
  long long longest = std::max(mql, bql);
  const std::string found = "dedup_window " + Days(opt.dedup_window.count()) + ", maximal_queue_lifetime " +
                            Trim(pv.maximal_queue_lifetime) + ", bounce_queue_lifetime " + Trim(pv.bounce_queue_lifetime);
  if (longest < 0)
    AddPostfixFinding(r, Verdict::kWarning, "dedup window", found, "cannot read the queue lifetimes");
  else if (opt.dedup_window.count() < longest + kDedupWindowMargin)
    AddPostfixFinding(r, Verdict::kWrong, "dedup window", found,
                      "set dedup_window = " + Days(longest + 2 * kDedupWindowMargin) +
                          " in ccmail-bridge.conf (more than the longest queue lifetime + 1d), or shorten the queue lifetimes");
  else
    AddPostfixFinding(r, Verdict::kOk, "dedup window", found, "");
}

void CheckPostfixInstance(const CheckMtaOptions& opt, MtaReport* r) {
  PostfixValues pv;
  if (!ReadPostfixValues(opt, r, &pv)) return;
  std::string master, err;
  std::vector<std::string> margs = PostconfCommand(opt);
  margs.push_back("-M");
  PostfixDaemon smtpd, cleanup;
  if (RunCapture(margs, &master, &err)) ParseMaster(master, &smtpd, &cleanup);
  if (!smtpd.found) AddPostfixFinding(r, Verdict::kWarning, "master.cf: no inet smtpd service", "", "");
  CheckMilterLists(opt, pv, smtpd, cleanup, r);
  CheckDefaultAction(pv, r);
  CheckMilterSocket(opt, pv, r);
  CheckTimeouts(pv, r);
  CheckDedupWindow(opt, pv, r);
}

}  // namespace

MtaReport CheckMta(const CheckMtaOptions& opt) {
  MtaReport r;
  CheckPostfixInstance(opt, &r);
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
