// milter.cpp - libmilter glue. Thin on purpose: every decision lives in CaptureSession.
#include "ccmail/milter/milter.h"

#include <libmilter/mfapi.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <thread>

#include "ccmail/common/log.h"

namespace ccmail::milter {

namespace {

MilterService* g_service = nullptr;  // libmilter allows one filter per process

struct Connection {
  CaptureSession session;
  bool counted = false;  // counted in in_flight
  bool leadspc = false;  // header values include their leading white space
  unsigned long no_reply = 0;  // SMFIP_NR_HDR/NR_EOH/NR_BODY granted: those steps are not answered
  HeldReply held;              // a 4xx/5xx (or accept) found in an unanswered step
  explicit Connection(CaptureSink* sink) : session(sink) { g_service->connections.fetch_add(1); }
  ~Connection() { g_service->connections.fetch_sub(1); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
};

Connection* Conn(SMFICTX* ctx) {
  auto* c = static_cast<Connection*>(smfi_getpriv(ctx));
  if (!c) {  // an MTA that skipped option negotiation
    c = new (std::nothrow) Connection(g_service->sink());
    if (c) smfi_setpriv(ctx, c);
  }
  return c;
}

// smfi_setreply treats '%' specially and refuses CR/LF.
std::string SafeText(const std::string& t) {
  std::string out;
  for (char c : t) out += (c == '%' || c == '\r' || c == '\n') ? ' ' : c;
  return out;
}

void SyncInFlight(Connection* c) {
  bool now = c->session.in_message();
  if (now != c->counted) {
    g_service->in_flight.fetch_add(now ? 1 : -1);
    c->counted = now;
  }
}

// stage: the SMTP step, for the log line of a 4xx/5xx given before end of message
// (end of message logs its own line).
sfsistat Answer(SMFICTX* ctx, Connection* c, const Step& st, const char* stage = nullptr) {
  if (stage && (st.kind == Step::Kind::kTempfail || st.kind == Step::Kind::kReject)) {
    const std::string& qid = c->session.queue_id();
    (st.kind == Step::Kind::kTempfail ? LogWarning : LogInfo)(
        "%s: %s at %s: %s %s %s", qid.empty() ? "NOQUEUE" : qid.c_str(),
        st.kind == Step::Kind::kTempfail ? "tempfail" : "reject", stage, st.reply.rcode.c_str(),
        st.reply.xcode.c_str(), st.reply.text.c_str());
  }
  SyncInFlight(c);
  switch (st.kind) {
    case Step::Kind::kContinue:
      return SMFIS_CONTINUE;
    case Step::Kind::kAccept:
      return SMFIS_ACCEPT;
    case Step::Kind::kReject:
    case Step::Kind::kTempfail: {
      std::string text = SafeText(st.reply.text);
      if (smfi_setreply(ctx, const_cast<char*>(st.reply.rcode.c_str()), const_cast<char*>(st.reply.xcode.c_str()),
                        const_cast<char*>(text.c_str())) != MI_SUCCESS)
        LogWarning("smfi_setreply %s %s failed", st.reply.rcode.c_str(), st.reply.xcode.c_str());
      return st.kind == Step::Kind::kReject ? SMFIS_REJECT : SMFIS_TEMPFAIL;
    }
  }
  return SMFIS_TEMPFAIL;
}

std::string Macro(SMFICTX* ctx, const char* name) {
  const char* v = smfi_getsymval(ctx, const_cast<char*>(name));
  return v ? v : "";
}

void NoteQueueId(SMFICTX* ctx, Connection* c) {
  std::string qid = Macro(ctx, "i");
  if (qid.empty()) qid = Macro(ctx, "{i}");
  c->session.SetQueueId(qid);
}

sfsistat OnNegotiate(SMFICTX* ctx, unsigned long f0, unsigned long f1, unsigned long, unsigned long,
                     unsigned long* pf0, unsigned long* pf1, unsigned long* pf2, unsigned long* pf3) {
  auto policy = g_service->policy();
  if (policy->mode == CaptureMode::kDivert && !(f0 & SMFIF_DELRCPT)) {
    LogError("the MTA does not offer SMFIF_DELRCPT: capture_mode = divert is impossible");
    return SMFIS_REJECT;
  }
  *pf0 = f0 & SMFIF_DELRCPT;
  *pf1 = 0;
  if (f1 & SMFIP_HDR_LEADSPC) *pf1 |= SMFIP_HDR_LEADSPC;
  // Each event the MTA sends costs a round trip it waits for. Connect, HELO and unknown
  // commands are not needed. DATA is: the envelope is complete there, so a message without
  // a cc:Mail recipient is accepted before any header or body is sent to us. Headers, end
  // of headers and body chunks need no answer of their own (Postfix and Sendmail 8.14+
  // offer the NR_ bits): a failure found there is answered at end of message, which the
  // client sees at the same moment (the MTA answers DATA only after the final dot).
  for (unsigned long skip : {SMFIP_NOCONNECT, SMFIP_NOHELO, SMFIP_NOUNKNOWN})
    if (f1 & skip) *pf1 |= skip;
  const unsigned long no_reply = f1 & (SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY);
  *pf1 |= no_reply;
  *pf2 = *pf3 = 0;
  auto* c = new (std::nothrow) Connection(g_service->sink());
  if (!c) return SMFIS_TEMPFAIL;
  c->leadspc = (*pf1 & SMFIP_HDR_LEADSPC) != 0;
  c->no_reply = no_reply;
  smfi_setpriv(ctx, c);
  // {i} is the queue id; Postfix has it at MAIL/RCPT/DATA/EOM by default, Sendmail
  // at MAIL; asking for it at end of message too costs nothing.
  // {client_port} is "0" for Postfix's local submissions (sendmail(1), pickup).
  smfi_setsymlist(ctx, SMFIM_ENVFROM, const_cast<char*>("i {client_port}"));
  smfi_setsymlist(ctx, SMFIM_EOM, const_cast<char*>("i"));
  return SMFIS_CONTINUE;
}

sfsistat OnEnvFrom(SMFICTX* ctx, char** argv) {
  Connection* c = Conn(ctx);
  if (!c) return SMFIS_TEMPFAIL;
  c->held.Clear();  // a new transaction
  if (g_service->draining()) {
    c->session.Abort();
    return Answer(ctx, c, Step::Tempfail("451", "4.3.2", "cc:Mail gateway restarting, try again later"), "MAIL");
  }
  std::vector<std::string> args;
  for (int i = 1; argv[i]; ++i) args.emplace_back(argv[i]);
  Step st = c->session.MailFrom(g_service->policy(), argv[0] ? argv[0] : "", args);
  NoteQueueId(ctx, c);
  c->session.SetLocalSubmission(Macro(ctx, "{client_port}") == "0");
  return Answer(ctx, c, st);
}

sfsistat OnEnvRcpt(SMFICTX* ctx, char** argv) {
  Connection* c = Conn(ctx);
  if (!c) return SMFIS_TEMPFAIL;
  NoteQueueId(ctx, c);
  return Answer(ctx, c, c->session.Rcpt(argv[0] ? argv[0] : ""), "RCPT");
}

sfsistat OnData(SMFICTX* ctx) {
  Connection* c = Conn(ctx);
  if (!c) return SMFIS_TEMPFAIL;
  NoteQueueId(ctx, c);
  return Answer(ctx, c, c->session.Data(), "DATA");
}

// A step the MTA does not wait an answer for (no_reply_bit granted): held for end of message.
sfsistat AnswerOrHold(SMFICTX* ctx, Connection* c, const Step& st, unsigned long no_reply_bit, const char* stage) {
  if (!(c->no_reply & no_reply_bit)) return Answer(ctx, c, st, stage);
  c->held.Hold(st);
  SyncInFlight(c);
  return SMFIS_NOREPLY;
}

sfsistat OnHeader(SMFICTX* ctx, char* name, char* value) {
  Connection* c = Conn(ctx);
  if (!c) return SMFIS_TEMPFAIL;
  if (c->leadspc) return AnswerOrHold(ctx, c, c->session.Header(name, value), SMFIP_NR_HDR, "header");
  std::string v = " ";
  v += value;
  return AnswerOrHold(ctx, c, c->session.Header(name, v), SMFIP_NR_HDR, "header");
}

sfsistat OnEoh(SMFICTX* ctx) {
  Connection* c = Conn(ctx);
  if (!c) return SMFIS_TEMPFAIL;
  return AnswerOrHold(ctx, c, c->session.EndOfHeaders(), SMFIP_NR_EOH, "end of headers");
}

sfsistat OnBody(SMFICTX* ctx, unsigned char* data, size_t len) {
  Connection* c = Conn(ctx);
  if (!c) return SMFIS_TEMPFAIL;
  return AnswerOrHold(ctx, c, c->session.Body(std::string_view(reinterpret_cast<char*>(data), len)),
                      SMFIP_NR_BODY, "body");
}

sfsistat OnEom(SMFICTX* ctx) {
  Connection* c = Conn(ctx);
  if (!c) return SMFIS_TEMPFAIL;
  NoteQueueId(ctx, c);
  std::string qid = c->session.queue_id();
  if (std::optional<Step> held = c->held.Take()) {  // the session ignored the rest of the message
    sfsistat answer = held->kind == Step::Kind::kAccept ? Answer(ctx, c, *held)
                                                        : Answer(ctx, c, *held, "end of message");
    c->session.Abort();  // after Answer: its log line names the queue id
    SyncInFlight(c);
    return answer;
  }
  EndResult r = c->session.EndOfMessage(qid);
  if (r.captured) {
    // Durable from here on. A failed delrcpt means the MTA delivers that
    // recipient too; the cc:Mail export still happens exactly once.
    for (const std::string& rcpt : r.delete_recipients)
      if (smfi_delrcpt(ctx, const_cast<char*>(rcpt.c_str())) != MI_SUCCESS)
        LogWarning("%s: capture %s: smfi_delrcpt %s failed; the MTA will deliver it as well",
                   qid.empty() ? "NOQUEUE" : qid.c_str(), r.receipt.capture_id.c_str(), rcpt.c_str());
    std::string who;
    for (const auto& rc : r.envelope.recipients) {
      if (!who.empty()) who += ", ";
      who += "<" + rc.smtp_address + "> (" + rc.ccmail_name + " at " + rc.post_office + ")";
    }
    LogInfo("%s: capture=%s from=<%s> ccmail=%s size=%llu mode=%s%s", qid.empty() ? "NOQUEUE" : qid.c_str(),
            r.receipt.capture_id.c_str(), r.envelope.sender.c_str(), who.c_str(),
            static_cast<unsigned long long>(r.receipt.size),
            r.delete_recipients.empty() ? "copy" : "divert", r.receipt.published ? "" : " unpublished");
    g_service->captured.fetch_add(1);
  } else if (r.step.kind != Step::Kind::kContinue) {
    LogWarning("%s: tempfail at end of message, not captured: %s %s %s", qid.empty() ? "NOQUEUE" : qid.c_str(), r.step.reply.rcode.c_str(),
               r.step.reply.xcode.c_str(), r.step.reply.text.c_str());
  }
  return Answer(ctx, c, r.step);
}

sfsistat OnAbort(SMFICTX* ctx) {
  if (auto* c = static_cast<Connection*>(smfi_getpriv(ctx))) {
    c->held.Clear();
    c->session.Abort();
    SyncInFlight(c);
  }
  return SMFIS_CONTINUE;
}

sfsistat OnClose(SMFICTX* ctx) {
  if (auto* c = static_cast<Connection*>(smfi_getpriv(ctx))) {
    c->session.Abort();
    SyncInFlight(c);
    smfi_setpriv(ctx, nullptr);
    delete c;
  }
  return SMFIS_CONTINUE;
}

}  // namespace

MilterService::MilterService(CaptureSink* sink, std::shared_ptr<const Policy> policy)
    : sink_(sink), policy_(std::move(policy)) {
  CCMAIL_CHECK(g_service == nullptr, "only one MilterService per process");
  g_service = this;
}

MilterService::~MilterService() { g_service = nullptr; }

void MilterService::SetPolicy(std::shared_ptr<const Policy> policy) {
  std::lock_guard<std::mutex> lock(mu_);
  policy_ = std::move(policy);
}

std::shared_ptr<const Policy> MilterService::policy() const {
  std::lock_guard<std::mutex> lock(mu_);
  return policy_;
}

Status MilterService::BindSocket(const MilterSettings& settings, ListenSocket* socket) {
  static smfiDesc desc{};
  desc.xxfi_name = const_cast<char*>("ccmail-milter");
  desc.xxfi_version = SMFI_VERSION;
  desc.xxfi_flags = SMFIF_DELRCPT;
  desc.xxfi_envfrom = OnEnvFrom;
  desc.xxfi_envrcpt = OnEnvRcpt;
  desc.xxfi_header = OnHeader;
  desc.xxfi_eoh = OnEoh;
  desc.xxfi_body = OnBody;
  desc.xxfi_eom = OnEom;
  desc.xxfi_abort = OnAbort;
  desc.xxfi_close = OnClose;
  desc.xxfi_data = OnData;
  desc.xxfi_negotiate = OnNegotiate;
  if (smfi_register(desc) != MI_SUCCESS) return Status::Unavailable("smfi_register failed");
  CCMAIL_RETURN_IF_ERROR(ListenSocket::Open(settings, socket));
  if (smfi_setconn(const_cast<char*>(socket->libmilter_conn().c_str())) != MI_SUCCESS)
    return Status::InvalidArgument("smfi_setconn " + socket->libmilter_conn() + " failed");
  smfi_setbacklog(128);
  if (smfi_opensocket(false) != MI_SUCCESS) {
    socket->RemoveIfOurs();
    return Status::Unavailable("cannot listen on " + socket->Describe());
  }
  return Status::Ok();
}

Status MilterService::Run() {
  if (smfi_main() != MI_SUCCESS) return Status::Unavailable("smfi_main failed");
  return Status::Ok();
}

void MilterService::Stop() { smfi_stop(); }

namespace {
// Polls (libmilter gives no wake-up when a callback ends) until counter is 0 or timeout passes.
bool WaitForZero(const std::atomic<int>& counter, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (counter.load() > 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}
}  // namespace

bool MilterService::DrainInFlight(std::chrono::milliseconds timeout) { return WaitForZero(in_flight, timeout); }

bool MilterService::WaitConnectionsClosed(std::chrono::milliseconds timeout) { return WaitForZero(connections, timeout); }

}  // namespace ccmail::milter
