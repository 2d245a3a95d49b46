// bounce-tool - the exporter's bounce path on its own, for bounce_mta_test.sh: converts a
// message into an import file that stands in for IMPORT's .UND, writes its manifest, queues
// the bounce (BounceUndeliverable) and sends it (BounceQueue::Flush) to a real MTA.
// Usage: bounce-tool DIR HOST:PORT SENDER MESSAGE.eml
// Prints "queued=N sent=N deferred=N rejected=N pending=N"; exit 0 when every notice was sent.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "ccmail/exporter/bounce.h"
#include "ccmail/format/converter.h"

using namespace ccmail;

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s DIR HOST:PORT SENDER MESSAGE.eml\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1], sender = argv[3];
  exporter::BounceRelay relay;
  if (Status s = exporter::BounceRelay::Parse(argv[2], &relay); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 2;
  }
  int fd = ::open(argv[4], O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || ::fstat(fd, &st) != 0) {
    std::perror(argv[4]);
    return 2;
  }
  format::FormatSettings settings;
  format::Converter conv(settings);
  format::ConvertInput in;
  in.fd = fd;
  in.length = static_cast<uint64_t>(st.st_size);
  in.envelope_sender = sender;
  in.recipients = {{"jane@corp.example", {"Doe, Jane", "HQ"}}};
  in.received = 1700000000;
  format::StringSink sink;
  format::ConvertResult cr;
  Status s = conv.Convert(in, &sink, &cr);
  ::close(fd);
  if (!s.ok()) {
    std::fprintf(stderr, "convert: %s\n", s.ToString().c_str());
    return 2;
  }
  std::ofstream(dir + "/00100001.UND", std::ios::binary) << sink.str();
  std::ofstream(dir + "/00100001.MAN", std::ios::binary)
      << exporter::FormatManifest(1, 1, "HQ", "00100001.CCM",
                                  {{std::string(32, 'b'), std::string(64, 'b'), "Doe, Jane", sender}});
  std::unique_ptr<exporter::BounceQueue> q;
  if (s = exporter::BounceQueue::Open(dir + "/bounce", relay, std::chrono::seconds(1), std::chrono::seconds(1), &q);
      !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 2;
  }
  int queued = 0;
  size_t unmatched = 0;
  s = exporter::BounceUndeliverable(dir + "/00100001.UND", dir + "/00100001.MAN", "HQ", q.get(), settings, &queued,
                                    &unmatched);
  if (!s.ok()) {
    std::fprintf(stderr, "bounce: %s\n", s.ToString().c_str());
    return 1;
  }
  exporter::BounceFlushResult r = q->Flush();
  std::printf("queued=%d sent=%d deferred=%d rejected=%d pending=%zu\n", queued, r.sent, r.deferred, r.rejected,
              q->Pending());
  return queued > 0 && r.sent == queued ? 0 : 1;
}
