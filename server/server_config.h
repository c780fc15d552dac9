// Typed configuration of the gRPC front end, assembled once by ServerMain from the flags and
// passed down; nothing below main reads flags or the environment.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/api/engine.h"
#include "proto/wire_limits.h"

namespace longsana::server {

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kOff };
// One line per record: human-readable text, or one JSON object (see server/logging.h).
enum class LogFormat { kText, kJson };

struct ServerOptions {
  // host:port to listen on; port 0 picks a free port (Server::port() reports it).
  std::string listen = "0.0.0.0:50051";
  // SIGTERM: running and queued sessions get this long to finish before they are ended
  // with UNAVAILABLE. With shutdown_grace and the 5 s watchdog margin of ServerMain this
  // fits Kubernetes' default 30 s termination grace period.
  std::chrono::milliseconds drain_timeout{20'000};
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
  // Largest message sent, bytes: the engine's SessionPolicy::max_chunk_bytes plus the
  // protobuf framing margin (Config::Validate checks that a permitted chunk fits).
  int64_t max_send_message_bytes = wire::kDefaultMaxReceiveBytes;

  // Connection bounds (HTTP/2). A duration of 0 disables that bound.
  // The server pings a connection after this long without activity and closes it when the
  // ping is not answered within keepalive_timeout: dead peers (no FIN) are found.
  std::chrono::milliseconds keepalive_time{60'000};
  std::chrono::milliseconds keepalive_timeout{20'000};
  // Client keepalive pings closer than this (without data in between) are "too many pings"
  // (GOAWAY after two strikes). gRPC's own default is 5 min, which punishes the common
  // 10-30 s client keepalives; 10 s accepts them.
  std::chrono::milliseconds min_client_ping_interval{10'000};
  // Accept (and send) keepalive pings on connections that have no call open.
  bool permit_keepalive_without_calls = true;
  // A connection with no call open for this long is closed (GOAWAY).
  std::chrono::milliseconds max_connection_idle{300'000};
  // A connection older than this (+-10% jitter) is asked to go away: it takes no new calls,
  // and the calls on it get max_connection_age_grace to finish before they are cancelled.
  // This rebalances long-lived clients across replicas. The grace must exceed the longest
  // session (a 961-frame video, queue wait included) or age would cut running videos.
  std::chrono::milliseconds max_connection_age{1'800'000};
  std::chrono::milliseconds max_connection_age_grace{3'600'000};
  // Concurrent calls one connection may carry (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
  int max_concurrent_streams = 100;

  // Live sessions (Generate and Session streams with an accepted session) per client
  // address; 0: no cap. Behind a proxy every client shares the proxy's address.
  int max_sessions_per_peer = 8;
  // Session streams: commands read per second and the burst above that rate; 0: unlimited.
  // Excess commands are not refused: the stream reads them later (HTTP/2 flow control then
  // slows the client down), so the last command still wins.
  double command_rate = 10.0;
  int command_burst = 20;

  // Watch (extra viewers of a session): undelivered fragments per viewer before it skips to
  // a later keyframe (see server/session_broadcast.h), and viewers per session, beyond
  // which Watch is refused with RESOURCE_EXHAUSTED. Viewers do not count against
  // max_sessions_per_peer: they cost no GPU work, only a share of each chunk's bytes.
  int watch_buffer_chunks = 4;
  int max_watchers_per_session = 16;

  // How often the engine's Healthy() is polled while serving.
  std::chrono::milliseconds health_poll_interval{1'000};
  LogLevel log_level = LogLevel::kInfo;
  LogFormat log_format = LogFormat::kText;

  // The HTTP port (metrics, probes, later the browser API); empty: no HTTP listener.
  std::string http_listen = "0.0.0.0:8080";
  // Origins whose pages may use the browser API cross-origin ("*": any); see
  // http::HttpServerOptions::cors_allowed_origins. Empty: same-origin pages only.
  std::vector<std::string> cors_allowed_origins;

  // TLS for the gRPC port: PEM files. Cert and key together turn TLS on; a client CA as well
  // turns on mTLS (clients must present a certificate it signed). All empty: plaintext.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;

  // Tenant tokens (YAML, see server/auth/tenants.h); empty: no authentication.
  std::string auth_tokens_file;

  // InvalidArgument naming the field and the allowed values.
  absl::Status Validate() const;
};

struct Config {
  ServerOptions server;
  engine::EngineConfig engine;
  // Both parts, and that server.max_send_message_bytes holds a chunk of
  // engine.policy.max_chunk_bytes plus wire::kChunkFramingMarginBytes.
  absl::Status Validate() const;
};

// Parsers for the values flags carry as strings; InvalidArgument naming `field`.
// "8G", "512M", "64k", "1.5GiB", "1073741824" -> bytes (k/M/G/T are powers of 1024; "0"
// means unlimited where the field allows it).
absl::StatusOr<int64_t> ParseByteSize(std::string_view field, std::string_view text);
// The inverse for exact multiples: 16777216 -> "16M", 1536 -> "1536" (1.5k is not written).
std::string FormatByteSize(int64_t bytes);
// Bits per second: "20M", "2.5M", "800k", "1G", "20000000" (k/M/G are powers of 1000).
absl::StatusOr<int64_t> ParseBitRate(std::string_view field, std::string_view text);
// "cpu" | "cuda".
absl::StatusOr<engine::DeviceKind> ParseDevice(std::string_view field, std::string_view text);
// "fp32" | "bf16" (any case).
absl::StatusOr<engine::VaeDtype> ParseVaeDtype(std::string_view field, std::string_view text);
// "trace" | "debug" | "info" | "warn" | "error" | "off".
absl::StatusOr<LogLevel> ParseLogLevel(std::string_view field, std::string_view text);
// "text" | "json".
absl::StatusOr<LogFormat> ParseLogFormat(std::string_view field, std::string_view text);

// Splits "host:port" / "[v6]:port"; InvalidArgument naming `field` when malformed or the
// port is not in [0, 65535].
struct HostPort {
  std::string host;
  int port = 0;
};
absl::StatusOr<HostPort> ParseHostPort(std::string_view field, std::string_view text);

}  // namespace longsana::server
