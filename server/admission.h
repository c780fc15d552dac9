// Admission shared by the gRPC reactors (service.cc) and the HTTP port's routes
// (http_service.cc): who a call is, the checks and the Submit that start a session, and
// the commands of a running one. Internal to server/ (included by those two files only).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/api/engine.h"
#include "engine/api/log_tag.h"
#include "longsana/v1/longsana.pb.h"
#include "server/auth/tenants.h"
#include "server/peer_session_limiter.h"
#include "server/server_metrics.h"
#include "server/service.h"
#include "server/session_outbox.h"

namespace longsana::server {

// Who made a call: its tenant and request id (for logs, metrics and quotas).
struct CallIdentity {
  const Tenant* tenant = &AnonymousTenant();
  std::string request_id;
  std::string LogTag(engine::SessionId session = 0) const {
    return engine::FormatLogTag({session, tenant->name, request_id});
  }
};

// The rejection reason of an Unavailable engine: draining or not serving.
RejectReason ReasonOfUnavailable(const LongSanaService& service);

// A session that passed every check and was submitted; its outbox is opened by the caller.
struct Admitted {
  std::shared_ptr<engine::Engine> engine;
  std::shared_ptr<SessionOutbox> outbox;
  engine::SessionInfo info;
  PeerSessionLimiter::Lease peer_lease;
};

// Validation, the tenant's priority ceiling and quotas, the per-peer cap, then Submit.
// On a refusal returns the status and sets *reason.
absl::StatusOr<Admitted> AdmitSession(LongSanaService& service, std::string_view peer,
                                      const CallIdentity& who, const v1::GenerateRequest& request,
                                      bool interactive, std::string_view rpc,
                                      std::string_view field_prefix, EventWriter* writer,
                                      RejectReason* reason);

// Accepted.session_id as the engine's id; InvalidArgument naming session_id otherwise.
absl::StatusOr<engine::SessionId> ParseSessionId(const std::string& text);

// A session stream whose first command is not `start`, and one with a second `start`.
absl::Status FirstCommandNotStartError();
absl::Status StartedTwiceError();

// "switch_prompt", "extend", "stop", "position", or "invalid" (the metrics' command type).
std::string_view SessionCommandType(const v1::SessionCommand& command);

// Sends a running session's command (anything but start) to the engine. Every command,
// accepted or refused (here or by the engine), is acknowledged through the session's sink,
// so acks keep command order; a command for a session that has ended is acked here.
void SendSessionCommand(LongSanaService& service, engine::Engine& engine, engine::SessionId id,
                        const CallIdentity& who, SessionOutbox& outbox,
                        const v1::SessionCommand& command);

}  // namespace longsana::server
