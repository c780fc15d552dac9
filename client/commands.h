// The `longsana` CLI's commands. Each returns the process exit code:
//   0             success
//   2             usage error
//   3             local I/O error (the output file)
//   10 + code     the server ended the call with gRPC status `code` (e.g. 13 INVALID_ARGUMENT,
//                 18 RESOURCE_EXHAUSTED, 24 UNAVAILABLE, 14 DEADLINE_EXCEEDED); the status
//                 message is printed on stderr.
// except `health`, which has grpc-health-probe's codes (kExitHealth*) so that scripts and
// probes written for that tool work unchanged.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "proto/wire_limits.h"

namespace longsana::client {

inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitIo = 3;
inline constexpr int kExitRpcBase = 10;

// `longsana health` (grpc-health-probe's exit codes).
inline constexpr int kExitHealthServing = 0;
inline constexpr int kExitHealthUsage = 1;
inline constexpr int kExitHealthConnection = 2;  // no connection within the timeout
inline constexpr int kExitHealthRpc = 3;         // the Check RPC failed
inline constexpr int kExitHealthNotServing = 4;  // NOT_SERVING, UNKNOWN or SERVICE_UNKNOWN
// Its connect and RPC deadlines (each) when ConnectionOptions::timeout_seconds is 0.
inline constexpr double kDefaultHealthTimeoutSeconds = 5;

struct ConnectionOptions {
  // What the user named (messages print it): HOST:PORT, a comma-separated list of them (one
  // channel balanced over all), or a gRPC target URI such as dns:///NAME:PORT (every
  // address the name resolves to, re-resolved as replicas come and go).
  std::string server = "localhost:50051";
  // What MakeChannel dials, and the authority a list presents (TLS checks the certificate
  // against it unless server_name is set); from ResolveServer. Empty target: `server`.
  std::string target;
  std::string authority;
  double timeout_seconds = 0;  // whole call; 0 = no deadline
  // Largest message accepted: a default server's largest video chunk plus the framing
  // margin (proto/wire_limits.h). Raise it with the server's --max_chunk_bytes.
  int64_t max_receive_bytes = wire::kDefaultMaxReceiveBytes;

  // TLS: the server's certificate must chain to the CAs of ca_pem, or with ca_pem empty to
  // gRPC's default roots (the system's CA store). PEM contents, not paths.
  bool tls = false;
  std::string ca_pem;
  // A client certificate chain and its key (mTLS); both or neither.
  std::string cert_pem;
  std::string key_pem;
  // The name the server's certificate must carry; empty: the host of `server`.
  std::string server_name;
  // Sent as "authorization: Bearer <token>" on every call; empty: none. Never printed.
  std::string token;
};

// Fills c->target and c->authority from c->server. A list "A:P,B:Q" is resolved now (each
// name to its IPv4 addresses, or its IPv6 ones when it has none) into one ipv4:/ipv6:
// target; a single HOST:PORT or a URI (dns:///, ipv4:, unix:) goes to gRPC as it is.
// InvalidArgument naming --server for an entry without a port, a name that does not
// resolve, or a list that mixes IPv4 and IPv6.
absl::Status ResolveServer(ConnectionOptions* c);

// GenerateRequest fields; 0 / empty = the server's default.
struct RequestOptions {
  int width = 0;
  int height = 0;
  int frames = 0;
  double duration_seconds = 0;
  bool live = false;  // open-ended: until stopped (session) or cancelled (Ctrl-C)
  uint64_t seed = 0;
  std::vector<double> timesteps;
  std::optional<int> num_cached_blocks;
  std::optional<int> motion_score;
  std::optional<int> crf;
  int64_t bitrate_bps = 0;
  std::string preset;
  int priority = 0;
  std::string pacing = "server";  // realtime | fast | server (the server's default)
  double lookahead_seconds = 0;   // realtime: 0 = the server's default
  bool latent_fragments = false;  // one fragment per latent frame
};

// Streams a video into `output` ("-" = stdout) as chunks arrive.
int Generate(const ConnectionOptions& connection, const std::string& prompt,
             const RequestOptions& request, const std::string& output);

// Interactive session: `prompt` (or, if empty, the first stdin line) starts the video; each
// further stdin line switches the prompt; "/recache PROMPT", "/blend N PROMPT" (a switch
// blended over N blocks), "/extend N", "/pause" and "/play" (report the player's position:
// real time since the first chunk, so a paced session stops ahead of a paused viewer),
// "/stop", "/quit". Prints each command's ack and, for a switch, when it became visible
// (latency, and how far after the viewer's position then).
int Session(const ConnectionOptions& connection, const std::string& prompt,
            const RequestOptions& request, const std::string& output);

// Another viewer of a running session (rpc Watch): writes the init segment and the
// fragments from the session's latest keyframe on into `output` ("-" = stdout) as they
// arrive, until the session ends. 0 when it completed; a slow connection may skip whole
// blocks (the summary says how many frames arrived).
int Watch(const ConnectionOptions& connection, const std::string& session_id,
          const std::string& output);

// `longsana bench`: load-tests one or more servers (sessions spread round-robin).
struct BenchOptions {
  std::vector<std::string> servers;
  std::string prompt = "a paper boat drifts down a rainy street";
  int sessions = 1;             // closed loop: this many at once...
  double duration_seconds = 0;  // ...each followed by another until this (0: one each)
  double rate = 0;              // > 0: open loop, arrivals per second for duration_seconds
  // Request kinds and weights, in order: generate (Generate), session (Session with a
  // switch_prompt every switch_every blocks), live (a live Session stopped after
  // live_seconds).
  std::vector<std::pair<std::string, int>> mix = {{"generate", 1}};
  int switch_every = 2;
  double live_seconds = 10;
  double start_buffer_seconds = 1;  // the simulated viewer starts with this much video
  bool json = false;
  std::string chart;  // SVG file with TTFC and gaps over time; empty: none
};
// Prints the report (table, or JSON with `json`); 0 unless the chart cannot be written. The
// sessions' own errors are results (rejections, failures), not the command's.
int Bench(const ConnectionOptions& connection, const RequestOptions& request,
          const BenchOptions& options);

// GetServerInfo, pretty-printed (or as JSON).
int Info(const ConnectionOptions& connection, bool json);

// grpc.health.v1 Health/Check of `service` ("" = the whole server); prints "status: NAME".
// Waits for the connection, then for the answer, each up to connection.timeout_seconds
// (kDefaultHealthTimeoutSeconds when 0). Returns kExitHealth*: a service the server does not
// know (NOT_FOUND) counts as SERVICE_UNKNOWN, not serving.
int Health(const ConnectionOptions& connection, const std::string& service);

}  // namespace longsana::client
