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
  std::string config_path = cli::kDefaultConfig;
  std::vector<std::string> overrides, recipients;
  std::string sender, input = "-", map_path;
  long long received = -1;
  auto* copt = app.add_option("-c,--config", config_path, "ccmail-bridge.conf to read (default " + std::string(cli::kDefaultConfig) + " when it exists)");
  app.add_option("-o,--option", overrides, "Override a setting, name=value (repeatable), e.g. -o codepage=437")->allow_extra_args(false);
  app.add_option("-f,--sender", sender, "Envelope sender (MAIL FROM); empty means the null sender <>");
  app.add_option("-r,--recipient", recipients, "cc:Mail recipient: an SMTP address resolved by the address map, or addr=Name at PO (repeatable)")->required()->allow_extra_args(false);
  app.add_option("-m,--address-map", map_path, "Address map file to use instead of the configured address_map");
  app.add_option("-t,--received", received, "Receive time in seconds since 1970 (default: now); used when Date: is missing or absurd");
  app.add_option("message", input, "Message file, or - for standard input (default)");
  if (int rc = cli::ParseOrUsageError(app, argc, argv); rc >= 0) return rc;

  Config cfg;
  FormatSettings fs;
  if (!cli::LoadSettings(config_path, copt->count() > 0, overrides, &cfg, &fs, "ccmail-convert")) return 2;
  std::shared_ptr<const AddressMap> map;
  Status s;
  if (!map_path.empty()) {
    AddressMapOptions mo;
    (void)cfg.GetList("ccmail_domains", &mo.ccmail_domains);
    mo.default_postoffice = fs.default_postoffice;
    s = AddressMap::Load(map_path, mo, &map);
  } else {
    s = AddressMap::LoadFromConfig(cfg, &map);
  }
  if (!s.ok()) { std::fprintf(stderr, "ccmail-convert: %s\n", s.ToString().c_str()); return 2; }

  // Group recipients by post office: one Convert() call per post office, as the exporter does.
  std::map<std::string, std::vector<ConvertRecipient>> by_po;
  for (const std::string& r : recipients) {
    ConvertRecipient cr;
    size_t eq = r.find('=');
    if (eq != std::string::npos) {
      cr.smtp_address = r.substr(0, eq);
      std::string v = r.substr(eq + 1);
      size_t at = ToLowerAscii(v).rfind(" at ");
      cr.ccmail.name = at == std::string::npos ? v : v.substr(0, at);
      cr.ccmail.postoffice = at == std::string::npos ? fs.local_postoffice : v.substr(at + 4);
    } else {
      auto who = map->Resolve(r);
      if (!who) { std::fprintf(stderr, "ccmail-convert: %s is not a cc:Mail user (address map %s)\n", r.c_str(), map->source().c_str()); return 2; }
      cr.smtp_address = r;
      cr.ccmail = *who;
    }
    by_po[ToUpperAscii(cr.ccmail.postoffice)].push_back(cr);
  }

  // The converter streams from (fd, offset, length); stdin becomes an anonymous file first.
  UniqueFd fd;
  if (input == "-") {
    fd.reset(memfd_create("ccmail-convert-stdin", MFD_CLOEXEC));
    if (!fd.valid()) { std::perror("ccmail-convert: memfd_create"); return 3; }
    char buf[65536];
    for (;;) {
      ssize_t n = read(0, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) { std::perror("ccmail-convert: read stdin"); return 3; }
      if (n == 0) break;
      for (ssize_t off = 0; off < n;) {
        ssize_t w = write(fd.get(), buf + off, static_cast<size_t>(n - off));
        if (w < 0) { std::perror("ccmail-convert: buffer stdin"); return 3; }
        off += w;
      }
    }
  } else {
    fd.reset(open(input.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) { std::fprintf(stderr, "ccmail-convert: open %s: %s\n", input.c_str(), std::strerror(errno)); return 3; }
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0) { std::perror("ccmail-convert: fstat"); return 3; }

  // All or nothing: every post office's copies go to an anonymous file first and reach stdout
  // only when the whole message converted (a refusal on the second post office must not leave
  // the first one's copy behind).
  UniqueFd staged(memfd_create("ccmail-convert-out", MFD_CLOEXEC));
  if (!staged.valid()) { std::perror("ccmail-convert: memfd_create"); return 3; }
  Converter conv(fs);
  ConvertInput in;
  in.fd = fd.get();
  in.offset = 0;
  in.length = static_cast<uint64_t>(st.st_size);
  in.envelope_sender = sender;
  in.received = received >= 0 ? static_cast<time_t>(received) : time(nullptr);
  in.log_id = input == "-" ? "stdin" : input;
  FdSink out(staged.get());
  std::vector<ConvertTarget> targets;
  std::vector<ConvertResult> results(by_po.size());
  for (const auto& [po, rcpts] : by_po) {
    ConvertTarget t;
    t.recipients = rcpts;
    t.out = &out;
    t.result = &results[targets.size()];
    targets.push_back(std::move(t));
  }
  s = conv.ConvertForEach(in, targets);
  if (s.ok()) s = out.Flush();
  if (!s.ok()) {
    std::fprintf(stderr, "ccmail-convert: %s (nothing written)\n", s.ToString().c_str());
    return IsUnconvertible(s) ? 1 : 3;
  }
  if (!results.empty())
    for (const std::string& n : results[0].notices) std::fprintf(stderr, "ccmail-convert: notice: %s\n", n.c_str());
  const off_t total = lseek(staged.get(), 0, SEEK_CUR);
  if (total < 0 || lseek(staged.get(), 0, SEEK_SET) != 0) { std::perror("ccmail-convert: rewind output"); return 3; }
  char buf[65536];
  for (off_t done = 0; done < total;) {
    ssize_t n = read(staged.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) { std::perror("ccmail-convert: read staged output"); return 3; }
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(1, buf + off, static_cast<size_t>(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) { std::perror("ccmail-convert: write stdout"); return 3; }
      off += w;
    }
    done += n;
  }
  return 0;
}
