// The gRPC server around an Engine: listening socket, the LongSana service, grpc.health.v1
// health, server reflection, and the lifecycle
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

namespace longsana::server {

class Server {
 public:
  // Binds options.listen and starts serving health (NOT_SERVING), reflection and the
  // LongSana service (UNAVAILABLE until SetEngine), over TLS when options.tls_cert_file is
  // set (mTLS with tls_client_ca_file; see server/tls_files.h). InvalidArgument for bad
  // options and unreadable or invalid TLS files (naming the flag); Unavailable when the
  // address cannot be bound.
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options);
  ~Server();  // Shutdown(0) if still running
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound port (the picked one when options.listen had port 0) and "host:port" with it.
  int port() const;
  std::string address() const;

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
