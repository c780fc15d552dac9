// The gRPC server around an Engine: listening socket (TLS optional), the LongSana service,
// grpc.health.v1 health, server reflection (not registered with tenant tokens: it would be
// the one RPC without a token check), the HTTP port (options.http_listen: /metrics, /healthz,
// /readyz, the playground at /, and the browser API: GET /v1/generate, GET
// /v1/sessions/{id}/watch, WebSocket /v1/session) and the lifecycle
//   Start (health NOT_SERVING, RPCs UNAVAILABLE "loading")
//   -> SetEngine (SERVING)            [or SetLoadFailed]
//   -> Drain (NOT_SERVING, new RPCs UNAVAILABLE "draining", running sessions finish within
//             the timeout, the rest end with UNAVAILABLE)
//   -> Shutdown (in-flight streams get a grace period to flush, then are cancelled).
// While serving, the engine's Healthy() is polled; an unhealthy engine turns health
// NOT_SERVING (Kubernetes then restarts the pod) and new RPCs UNAVAILABLE.
//
// gRPC-free header (the implementation is behind a pointer) so that main and the tools do
// not compile the gRPC headers. Thread-safe; Drain and Shutdown block.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/api/engine.h"
#include "server/server_config.h"
#include "server/server_metrics.h"

namespace longsana::server {

class Server {
 public:
  // Binds options.listen and starts serving health (NOT_SERVING), reflection and the
  // LongSana service (UNAVAILABLE until SetEngine), over TLS when options.tls_cert_file is
  // set (mTLS with tls_client_ca_file; see server/tls_files.h), and the HTTP port.
  // InvalidArgument for bad options and unreadable or invalid TLS files (naming the flag);
  // InvalidArgument / NotFound for an unreadable --auth_tokens file; Unavailable when an
  // address cannot be bound.
  // `metrics` (optional; one is made when null) is what /metrics serves; give the same
  // object to the engine as its observer (EngineConfig::observer) before creating it.
  static absl::StatusOr<std::unique_ptr<Server>> Start(
      const ServerOptions& options, std::shared_ptr<ServerMetrics> metrics = nullptr);
  ~Server();  // Shutdown(0) if still running
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound port (the picked one when options.listen had port 0) and "host:port" with it.
  int port() const;
  std::string address() const;
  // The HTTP port (0 when options.http_listen is empty) and "host:port" with it.
  int http_port() const;
  std::string http_address() const;

  // HTTP probes: /readyz is 200 only while SERVING (models loaded and warmed up, not
  // draining, no sticky device error), so it turns 503 at the start of Drain, before the
  // gRPC listener closes. /healthz (liveness) is 200 for as long as the process runs, except
  // after a sticky device error (503: restart me). The HTTP port stops with the Server.

  // The models are loaded and warmed up: SERVING. The engine is kept until Shutdown.
  void SetEngine(std::shared_ptr<engine::Engine> engine);
  // CreateEngine failed: RPCs answer UNAVAILABLE with the reason; health stays NOT_SERVING.
  void SetLoadFailed(const absl::Status& reason);

  // True while SERVING (health SERVING).
  bool serving() const;
  // Generate/Session streams still open.
  int open_streams() const;

  // Health NOT_SERVING, new sessions UNAVAILABLE, then Engine::Drain(timeout): running and
  // queued sessions finish or end with UNAVAILABLE. Returns when the engine is drained.
  // Idempotent.
  void Drain(std::chrono::milliseconds timeout);

  // Stops the gRPC server: streams still open get `grace` to finish, then are cancelled.
  // Returns when every RPC is done. Idempotent. The engine is released with the Server.
  void Shutdown(std::chrono::milliseconds grace);

  // Build description reported by GetServerInfo (compiler, build type, gRPC version).
  static std::string BuildDescription();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace longsana::server
