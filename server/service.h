// The LongSana gRPC service (callback API): Generate, Session, Watch and GetServerInfo.
//
// Each streaming RPC is one reactor that validates the request (proto_mapping), submits the
// session to the engine with a SessionOutbox as its sink and writes the outbox's events, one
// write in flight at a time. Client cancel, disconnect or deadline -> Engine::Cancel.
// Watch reactors join a session's SessionBroadcast (server/session_broadcast.h) instead and
// write their viewer's queue; they never call the engine, and their cancel ends only them.
//
// The service answers UNAVAILABLE until an engine is set (loading) and again once draining
// starts or the engine reports itself unhealthy. Thread-safe; internal to server/ (only
// server.cc and service.cc include it, to keep the gRPC-heavy translation units few).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "engine/api/engine.h"
#include "longsana/v1/longsana.grpc.pb.h"
#include "server/auth/tenants.h"
#include "server/http/http_router.h"
#include "server/peer_session_limiter.h"
#include "server/proto_mapping.h"
#include "server/server_config.h"
#include "server/server_metrics.h"
#include "server/session_broadcast.h"

namespace longsana::server {

enum class ServingPhase { kLoading, kServing, kDraining, kUnhealthy, kLoadFailed };

// What the service records into and authenticates against; both optional, both must
// outlive the service.
struct ServiceDeps {
  ServerMetrics* metrics = nullptr;
  const TenantDirectory* tenants = nullptr;  // null: no tokens, every call is anonymous
};

class LongSanaService final : public v1::LongSana::CallbackService {
 public:
  LongSanaService(const ServerOptions& options, std::string build, ServiceDeps deps = {});
  ~LongSanaService() override;

  // Hands over the loaded engine and moves to kServing.
  void SetEngine(std::shared_ptr<engine::Engine> engine);
  // Moves to `phase` (kDraining, kUnhealthy, kLoadFailed with `reason`).
  void SetPhase(ServingPhase phase, const absl::Status& reason = absl::OkStatus());
  ServingPhase phase() const { return phase_.load(); }

  // The engine while serving; otherwise Unavailable saying why.
  absl::StatusOr<std::shared_ptr<engine::Engine>> AcquireEngine() const;
  RequestLimits limits() const;
  const ServerOptions& options() const { return options_; }
  ServerMetrics* metrics() const { return deps_.metrics; }
  // The tenant of an `authorization` metadata value: the anonymous tenant when no tokens
  // are configured, else Unauthenticated for a missing or unknown token.
  absl::StatusOr<const Tenant*> Authenticate(std::optional<std::string_view> authorization) const;
  // Live sessions per client address (--max_sessions_per_peer).
  PeerSessionLimiter& peers() { return peers_; }
  // The watchable sessions (Watch); every outbox of this service publishes to it.
  const std::shared_ptr<BroadcastRegistry>& broadcasts() const { return broadcasts_; }

  // Generate/Session/Watch streams whose reactor is alive (counted by the reactors).
  void StreamOpened();
  void StreamClosed();
  int open_streams() const;
  // Waits until no stream is open or `timeout` passed; true when none is open.
  bool WaitForStreamsClosed(std::chrono::milliseconds timeout);

  grpc::ServerWriteReactor<v1::GenerateEvent>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
  grpc::ServerBidiReactor<v1::SessionCommand, v1::GenerateEvent>* Session(
      grpc::CallbackServerContext* context) override;
  grpc::ServerWriteReactor<v1::GenerateEvent>* Watch(grpc::CallbackServerContext* context,
                                                     const v1::WatchRequest* request) override;
  // GET /v1/generate on the HTTP port: the query as a GenerateRequest (http_query.h's
  // GenerateRequestFromQuery), admitted like Generate (tokens, quotas, limits, metrics); the
  // body is the fragmented MP4 as it is made; a refusal before the first byte is a JSON error
  // with the gRPC code's HTTP status; a client that goes away cancels the session.
  void HttpGenerate(http::Request request, std::shared_ptr<http::ResponseStream> stream);
  // GET /v1/sessions/{id}/watch: another viewer of a running session, as Watch (same tenant
  // rule, viewer cap and skipping); the body is an MP4 from the latest keyframe on.
  void HttpWatch(http::Request request, std::shared_ptr<http::ResponseStream> stream);

  // WebSocket /v1/session: the Session RPC (the same admission, limits, command rate and
  // metrics) with commands and events as JSON text messages and chunks as binary ones; a
  // closed socket cancels the session (http_service.cc documents the framing).
  void WebSocketSession(http::Request request, std::shared_ptr<http::WebSocket> socket);

  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const v1::GetServerInfoRequest* request,
                                          v1::ServerInfo* response) override;

 private:
  const ServerOptions options_;
  const std::string build_;
  const ServiceDeps deps_;
  PeerSessionLimiter peers_;
  const std::shared_ptr<BroadcastRegistry> broadcasts_;
  std::atomic<ServingPhase> phase_{ServingPhase::kLoading};
  mutable std::mutex mu_;
  std::condition_variable streams_cv_;
  int open_streams_ = 0;
  std::shared_ptr<engine::Engine> engine_;
  RequestLimits limits_;
  absl::Status load_error_;
};

}  // namespace longsana::server
