// Typed configuration of the gRPC front end, assembled once by ServerMain from the flags and
// passed down; nothing below main reads flags or the environment.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/api/engine.h"

namespace longsana::server {

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kOff };

struct ServerOptions {
  // host:port to listen on; port 0 picks a free port (Server::port() reports it).
  std::string listen = "0.0.0.0:50051";
  // SIGTERM: running and queued sessions get this long to finish before they are ended
  // with UNAVAILABLE.
  std::chrono::milliseconds drain_timeout{30'000};
  // After the drain, streams get this long to flush their last events to the client
  // before the server cancels them.
  std::chrono::milliseconds shutdown_grace{5'000};
  // A session's outbox holds at most this many undelivered video chunks before the
  // session reports itself congested (the engine then pauses it); see SessionOutbox.
  int outbox_chunks = 4;
  // Undelivered non-chunk events (acks, queue updates) beyond which a Session stream stops
  // reading commands until the client catches up.
  int max_pending_events = 64;
  // Largest request message accepted, bytes.
  int max_receive_message_bytes = 4 << 20;
  // How often the engine's Healthy() is polled while serving.
  std::chrono::milliseconds health_poll_interval{1'000};
  LogLevel log_level = LogLevel::kInfo;

  // InvalidArgument naming the field and the allowed values.
  absl::Status Validate() const;
};

struct Config {
  ServerOptions server;
  engine::EngineConfig engine;
  absl::Status Validate() const;
};

// Parsers for the values flags carry as strings; InvalidArgument naming `field`.
// "8G", "512M", "64k", "1.5GiB", "1073741824" -> bytes (k/M/G/T are powers of 1024; "0"
// means unlimited where the field allows it).
absl::StatusOr<int64_t> ParseByteSize(std::string_view field, std::string_view text);
// "cpu" | "cuda".
absl::StatusOr<engine::DeviceKind> ParseDevice(std::string_view field, std::string_view text);
// "trace" | "debug" | "info" | "warn" | "error" | "off".
absl::StatusOr<LogLevel> ParseLogLevel(std::string_view field, std::string_view text);

// Splits "host:port" / "[v6]:port"; InvalidArgument naming `field` when malformed or the
// port is not in [0, 65535].
struct HostPort {
  std::string host;
  int port = 0;
};
absl::StatusOr<HostPort> ParseHostPort(std::string_view field, std::string_view text);

}  // namespace longsana::server
