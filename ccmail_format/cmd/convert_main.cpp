// ccmail-convert - convert one RFC 5322 message into a cc:Mail import file on stdout.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

#include "ccmail/common/ascii.h"
#include "ccmail/common/unique_fd.h"
#include "ccmail/format/address_map.h"
#include "ccmail/format/converter.h"
#include "common_cli.h"

using namespace ccmail;
using namespace ccmail::format;

namespace {

constexpr int kUnconvertibleExit = 1;
constexpr int kIoErrorExit = 3;

// Recipients grouped by post office (upper case): one Convert() call each, as the exporter does.
using RecipientsByPostOffice = std::map<std::string, std::vector<ConvertRecipient>>;

Status LoadAddressMap(const Config& cfg, const FormatSettings& fs, const std::string& map_path,
                      std::shared_ptr<const AddressMap>* map) {
  if (map_path.empty()) return AddressMap::LoadFromConfig(cfg, map);
  AddressMapOptions mo;
  (void)cfg.GetList("ccmail_domains", &mo.ccmail_domains);
  mo.default_postoffice = fs.default_postoffice;
  return AddressMap::Load(map_path, mo, map);
}

// An -r argument: "addr=Name at PO" names the cc:Mail user; a bare address goes through the map.
bool ResolveRecipient(const std::string& r, const AddressMap& map, const FormatSettings& fs, ConvertRecipient* cr) {
  size_t eq = r.find('=');
  if (eq != std::string::npos) {
    cr->smtp_address = r.substr(0, eq);
    std::string v = r.substr(eq + 1);
    size_t at = ToLowerAscii(v).rfind(" at ");
    cr->ccmail.name = at == std::string::npos ? v : v.substr(0, at);
    cr->ccmail.post_office = at == std::string::npos ? fs.local_postoffice : v.substr(at + 4);
    return true;
  }
  auto who = map.Resolve(r);
  if (!who) { std::fprintf(stderr, "ccmail-convert: %s is not a cc:Mail user (address map %s)\n", r.c_str(), map.source().c_str()); return false; }
  cr->smtp_address = r;
  cr->ccmail = *who;
  return true;
}

bool GroupRecipients(const std::vector<std::string>& recipients, const AddressMap& map, const FormatSettings& fs,
                     RecipientsByPostOffice* by_post_office) {
  for (const std::string& r : recipients) {
    ConvertRecipient cr;
    if (!ResolveRecipient(r, map, fs, &cr)) return false;
    (*by_post_office)[ToUpperAscii(cr.ccmail.post_office)].push_back(cr);
  }
  return true;
}

// Copies `from` (from its current offset) to its end into `to`; perror(what_read or what_write) on failure.
bool CopyToEnd(int from, int to, const char* what_read, const char* what_write) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(from, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) { std::perror(what_read); return false; }
    if (n == 0) return true;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(to, buf + off, static_cast<size_t>(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) { std::perror(what_write); return false; }
      off += w;
    }
  }
}

// The converter streams from (fd, offset, length); stdin becomes an anonymous file first.
bool OpenMessage(const std::string& input, UniqueFd* fd) {
  if (input != "-") {
    fd->reset(open(input.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd->valid()) std::fprintf(stderr, "ccmail-convert: open %s: %s\n", input.c_str(), std::strerror(errno));
    return fd->valid();
  }
  fd->reset(memfd_create("ccmail-convert-stdin", MFD_CLOEXEC));
  if (!fd->valid()) { std::perror("ccmail-convert: memfd_create"); return false; }
  return CopyToEnd(0, fd->get(), "ccmail-convert: read stdin", "ccmail-convert: buffer stdin");
}

// All or nothing: every post office's copies go to an anonymous file first and reach stdout
// only when the whole message converted (a refusal on the second post office must not leave
// the first one's copy behind). Returns the exit status.
int ConvertToStdout(const FormatSettings& fs, const ConvertInput& in, const RecipientsByPostOffice& by_post_office) {
  UniqueFd staged(memfd_create("ccmail-convert-out", MFD_CLOEXEC));
  if (!staged.valid()) { std::perror("ccmail-convert: memfd_create"); return kIoErrorExit; }
  Converter conv(fs);
  FdSink out(staged.get());
  std::vector<ConvertTarget> targets;
  std::vector<ConvertResult> results(by_post_office.size());
  for (const auto& [post_office, rcpts] : by_post_office) {
    ConvertTarget t;
    t.recipients = rcpts;
    t.out = &out;
    t.result = &results[targets.size()];
    targets.push_back(std::move(t));
  }
  Status s = conv.ConvertForEach(in, targets);
  if (s.ok()) s = out.Flush();
  if (!s.ok()) {
    std::fprintf(stderr, "ccmail-convert: %s (nothing written)\n", s.ToString().c_str());
    return IsUnconvertible(s) ? kUnconvertibleExit : kIoErrorExit;
  }
  if (!results.empty())
    for (const std::string& n : results[0].notices) std::fprintf(stderr, "ccmail-convert: notice: %s\n", n.c_str());
  if (lseek(staged.get(), 0, SEEK_SET) != 0) { std::perror("ccmail-convert: rewind output"); return kIoErrorExit; }
  return CopyToEnd(staged.get(), 1, "ccmail-convert: read staged output", "ccmail-convert: write stdout") ? 0 : kIoErrorExit;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Convert one Internet message (RFC 5322/MIME) into the cc:Mail import format, exactly as "
      "ccmail-exporter would, and write it to standard output.\n\n"
      "Recipients are given as SMTP addresses and resolved through the address map of the "
      "configuration (address_map, ccmail_domains, default_postoffice), or given explicitly as "
      "'addr=Name at PO'. Recipients on several post offices give one group of messages per post "
      "office, one after another.\n\n"
      "Examples:\n"
      "  ccmail-convert -f jdoe@example.com -r jsmith@corp.example message.eml > M0000001.CCM\n"
      "  ccmail-convert -r 'jsmith@corp.example=Smith, John at HUBPO2' -o itemsize=no -o files=hex < msg.eml\n"
      "  ccmail-convert ... message.eml | ccmail-lint -\n\n"
      "Exit status: 0 converted; 1 the message cannot be converted (the exporter would quarantine it); "
      "2 usage or configuration error; 3 I/O error."};
  cli::ConfigOptions config_options;
  std::vector<std::string> recipients;
  std::string sender, input = "-", map_path;
  long long received = -1;
  cli::AddConfigOptions(app, &config_options, "Override a setting, name=value (repeatable), e.g. -o codepage=437");
  app.add_option("-f,--sender", sender, "Envelope sender (MAIL FROM); empty means the null sender <>");
  app.add_option("-r,--recipient", recipients, "cc:Mail recipient: an SMTP address resolved by the address map, or addr=Name at PO (repeatable)")->required()->allow_extra_args(false);
  app.add_option("-m,--address-map", map_path, "Address map file to use instead of the configured address_map");
  app.add_option("-t,--received", received, "Receive time in seconds since 1970 (default: now); used when Date: is missing or absurd");
  app.add_option("message", input, "Message file, or - for standard input (default)");
  if (int rc = cli::ParseOrUsageError(app, argc, argv); rc >= 0) return rc;

  Config cfg;
  FormatSettings fs;
  if (!cli::LoadSettings(config_options, &cfg, &fs, "ccmail-convert")) return cli::kUsageExit;
  std::shared_ptr<const AddressMap> map;
  if (Status s = LoadAddressMap(cfg, fs, map_path, &map); !s.ok()) {
    std::fprintf(stderr, "ccmail-convert: %s\n", s.ToString().c_str());
    return cli::kUsageExit;
  }
  RecipientsByPostOffice by_post_office;
  if (!GroupRecipients(recipients, *map, fs, &by_post_office)) return cli::kUsageExit;

  UniqueFd fd;
  if (!OpenMessage(input, &fd)) return kIoErrorExit;
  struct stat st;
  if (fstat(fd.get(), &st) != 0) { std::perror("ccmail-convert: fstat"); return kIoErrorExit; }
  ConvertInput in;
  in.fd = fd.get();
  in.offset = 0;
  in.length = static_cast<uint64_t>(st.st_size);
  in.envelope_sender = sender;
  in.received = received >= 0 ? static_cast<time_t>(received) : time(nullptr);
  in.log_id = input == "-" ? "stdin" : input;
  return ConvertToStdout(fs, in, by_post_office);
}
