// noop-milter: the baseline for bench/milter - a libmilter filter that asks for every
// callback (like ccmail-milter does) and answers CONTINUE to all of them.
#include <libmilter/mfapi.h>

#include <cstdio>

namespace {
sfsistat Cont(SMFICTX*) { return SMFIS_CONTINUE; }
sfsistat ContArgs(SMFICTX*, char**) { return SMFIS_CONTINUE; }
sfsistat ContHdr(SMFICTX*, char*, char*) { return SMFIS_CONTINUE; }
sfsistat ContBody(SMFICTX*, unsigned char*, size_t) { return SMFIS_CONTINUE; }
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: noop-milter unix:/path|inet:port@127.0.0.1\n");
    return 2;
  }
  smfiDesc d{.xxfi_name = const_cast<char*>("noop-milter"),
             .xxfi_version = SMFI_VERSION,
             .xxfi_flags = SMFIF_DELRCPT,
             .xxfi_connect = nullptr,
             .xxfi_helo = nullptr,
             .xxfi_envfrom = ContArgs,
             .xxfi_envrcpt = ContArgs,
             .xxfi_header = ContHdr,
             .xxfi_eoh = Cont,
             .xxfi_body = ContBody,
             .xxfi_eom = Cont,
             .xxfi_abort = Cont,
             .xxfi_close = Cont,
             .xxfi_unknown = nullptr,
             .xxfi_data = nullptr,
             .xxfi_negotiate = nullptr};
  if (smfi_register(d) != MI_SUCCESS || smfi_setconn(argv[1]) != MI_SUCCESS || smfi_opensocket(1) != MI_SUCCESS)
    return 1;
  return smfi_main() == MI_SUCCESS ? 0 : 1;
}
