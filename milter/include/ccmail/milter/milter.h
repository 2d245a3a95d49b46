// milter.h - the libmilter glue: runs ccmail-milter's filter until stopped.
//
// SYNOPSIS
//   MilterService svc(&sink, policy);
//   ListenSocket sock;
//   Status s = svc.BindSocket(settings, &sock);   // registers the callbacks, listens
//   s = svc.Run();                   // blocks in smfi_main until Stop()
//   svc.SetPolicy(new_policy);       // SIGHUP: new messages use the new snapshot
//   svc.BeginDrain();                // SIGTERM: 451 4.3.2 for new messages,
//   svc.DrainInFlight(30s);          //   messages in flight finish normally,
//   svc.Stop();                      //   then smfi_stop: Run() returns
//
// DESCRIPTION
//   Registers the callbacks with libmilter (SMFIF_DELRCPT; negotiates away the
//   connect, HELO and unknown events, and the answers to header, end-of-headers and
//   body events (SMFIP_NR_*, a failure there is answered at end of message): each
//   answer costs a round trip the MTA waits for), asks for macro
//   {i} at MAIL and end of message
//   with smfi_setsymlist, and turns each CaptureSession Step into SMFIS_* plus
//   smfi_setreply. After a capture is durable it removes the cc:Mail
//   recipients (divert) and logs one line: queue id, capture id, recipients,
//   size. libmilter allows one filter per process, so one MilterService.
//   BindSocket() opens the listening socket (ListenSocket: inherited from systemd, or
//   bound here with milter_socket_mode and milter_socket_group; never another milter's).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "ccmail/common/status.h"
#include "ccmail/milter/capture_session.h"
#include "ccmail/milter/capture_sink.h"
#include "ccmail/milter/listen_socket.h"
#include "ccmail/milter/settings.h"

namespace ccmail::milter {

class MilterService {
 public:
  MilterService(CaptureSink* sink, std::shared_ptr<const Policy> policy);
  ~MilterService();

  // Opens *socket (see listen_socket.h) and hands it to libmilter.
  Status BindSocket(const MilterSettings& settings, ListenSocket* socket);
  Status Run();
  void Stop();
  // Graceful stop, first half (SIGTERM): every new transaction gets 451 4.3.2 at MAIL
  // (on new and on open connections); messages already past MAIL FROM go on normally. Call DrainInFlight, then Stop. (smfi_stop alone is not graceful:
  // libmilter's session pool stops serving open sessions, so a message in flight
  // would time out in the MTA.)
  void BeginDrain() { draining_.store(true); }
  bool draining() const { return draining_.load(); }
  void SetPolicy(std::shared_ptr<const Policy> policy);
  std::shared_ptr<const Policy> policy() const;
  // Waits until no message is between MAIL FROM and its end; false on timeout.
  bool DrainInFlight(std::chrono::milliseconds timeout);

  CaptureSink* sink() const { return sink_; }
  // Sets the sink before Run() (it may be opened after the privilege drop).
  void set_sink(CaptureSink* sink) { sink_ = sink; }
  // Waits until no MTA connection is open; false on timeout.
  bool WaitConnectionsClosed(std::chrono::milliseconds timeout);
  std::atomic<int> in_flight{0};
  std::atomic<int> connections{0};  // MTA connections with a Connection object
  std::atomic<uint64_t> captured{0};

 private:
  CaptureSink* sink_;
  std::atomic<bool> draining_{false};
  mutable std::mutex mu_;
  std::shared_ptr<const Policy> policy_;
};

}  // namespace ccmail::milter
