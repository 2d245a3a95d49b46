// noop-milter: the baselines for bench/milter.
//   noop-milter SOCKET          asks for every callback (no negotiation of its own) and answers
//                               CONTINUE to all of them: what any libmilter filter costs.
//   noop-milter --floor SOCKET  negotiates exactly what ccmail-milter negotiates (the same
//                               SMFIP_NO* and SMFIP_NR_* bits, the same macros, the same events),
//                               receives the whole message and does nothing with it, answering
//                               only where ccmail-milter must (CONTINUE; CONTINUE at end of
//                               message). The libmilter cost of receiving a message the way
//                               ccmail-milter does: the part of its CPU no spool design removes.
#include <libmilter/mfapi.h>

#include <cstdio>
#include <cstring>
#include <initializer_list>

namespace {
bool g_floor = false;
unsigned long g_no_reply = 0;  // SMFIP_NR_* granted (floor mode)

sfsistat Cont(SMFICTX*) { return SMFIS_CONTINUE; }
sfsistat ContArgs(SMFICTX*, char**) { return SMFIS_CONTINUE; }
sfsistat ContHdr(SMFICTX*, char*, char*) { return SMFIS_CONTINUE; }
sfsistat ContBody(SMFICTX*, unsigned char*, size_t) { return SMFIS_CONTINUE; }

// Floor mode: the steps ccmail-milter does not answer when the MTA grants SMFIP_NR_*.
sfsistat FloorHdr(SMFICTX*, char*, char*) { return (g_no_reply & SMFIP_NR_HDR) ? SMFIS_NOREPLY : SMFIS_CONTINUE; }
sfsistat FloorEoh(SMFICTX*) { return (g_no_reply & SMFIP_NR_EOH) ? SMFIS_NOREPLY : SMFIS_CONTINUE; }
sfsistat FloorBody(SMFICTX*, unsigned char*, size_t) {
  return (g_no_reply & SMFIP_NR_BODY) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

// The same answer as ccmail-milter's OnNegotiate (milter/src/milter.cpp), in divert mode.
sfsistat FloorNegotiate(SMFICTX* ctx, unsigned long f0, unsigned long f1, unsigned long, unsigned long,
                        unsigned long* pf0, unsigned long* pf1, unsigned long* pf2, unsigned long* pf3) {
  *pf0 = f0 & SMFIF_DELRCPT;
  *pf1 = f1 & SMFIP_HDR_LEADSPC;
  for (unsigned long skip : {SMFIP_NOCONNECT, SMFIP_NOHELO, SMFIP_NOUNKNOWN})
    if (f1 & skip) *pf1 |= skip;
  // Granted to every connection alike (one MTA): a plain global is enough for a bench.
  g_no_reply = f1 & (SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY);
  *pf1 |= g_no_reply;
  *pf2 = *pf3 = 0;
  smfi_setsymlist(ctx, SMFIM_ENVFROM, const_cast<char*>("i {client_port}"));
  smfi_setsymlist(ctx, SMFIM_EOM, const_cast<char*>("i"));
  return SMFIS_CONTINUE;
}
}  // namespace

int main(int argc, char** argv) {
  const char* conn = nullptr;
  if (argc == 2 && argv[1][0] != '-') {
    conn = argv[1];
  } else if (argc == 3 && std::strcmp(argv[1], "--floor") == 0) {
    g_floor = true;
    conn = argv[2];
  } else {
    std::fprintf(stderr, "usage: noop-milter [--floor] unix:/path|inet:port@127.0.0.1\n");
    return 2;
  }
  smfiDesc d{.xxfi_name = const_cast<char*>(g_floor ? "floor-milter" : "noop-milter"),
             .xxfi_version = SMFI_VERSION,
             .xxfi_flags = SMFIF_DELRCPT,
             .xxfi_connect = nullptr,
             .xxfi_helo = nullptr,
             .xxfi_envfrom = ContArgs,
             .xxfi_envrcpt = ContArgs,
             .xxfi_header = g_floor ? FloorHdr : ContHdr,
             .xxfi_eoh = g_floor ? FloorEoh : Cont,
             .xxfi_body = g_floor ? FloorBody : ContBody,
             .xxfi_eom = Cont,
             .xxfi_abort = Cont,
             .xxfi_close = Cont,
             .xxfi_unknown = nullptr,
             .xxfi_data = g_floor ? Cont : nullptr,
             .xxfi_negotiate = g_floor ? FloorNegotiate : nullptr};
  if (smfi_register(d) != MI_SUCCESS || smfi_setconn(const_cast<char*>(conn)) != MI_SUCCESS ||
      smfi_opensocket(1) != MI_SUCCESS)
    return 1;
  return smfi_main() == MI_SUCCESS ? 0 : 1;
}
