#include "server/server_main.h"

#include <fmt/format.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "server/config_file.h"
#include "server/logging.h"
#include "server/server.h"

// Flag defaults are read from default-constructed config structs: the numbers live in one
// place (server_config.h, engine/api/engine.h).
namespace {

const longsana::server::ServerOptions& DefaultServer() {
  static const longsana::server::ServerOptions options;
  return options;
}
const longsana::engine::EngineConfig& DefaultEngine() {
  static const longsana::engine::EngineConfig config;
  return config;
}
template <typename Rep, typename Period>
double DefaultSeconds(std::chrono::duration<Rep, Period> d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

ABSL_FLAG(std::string, model_dir, "", "Model directory (diffusers layout). Required.");
ABSL_FLAG(std::string, listen, DefaultServer().listen,
          "host:port to listen on; port 0 picks a free port (printed on stdout).");
ABSL_FLAG(std::string, device, "cpu", "cpu | cuda");
ABSL_FLAG(int, max_sessions, DefaultEngine().max_sessions,
          "Sessions generating at once (state slots).");
ABSL_FLAG(std::string, memory_budget, "0",
          "Bytes of session state slots, with an optional k/M/G/T suffix (e.g. 8G); 0: on "
          "cuda --memory_budget_fraction of the free device memory, on cpu only "
          "--max_sessions limits.");
ABSL_FLAG(double, memory_budget_fraction, DefaultEngine().memory_budget_fraction,
          "With --memory_budget 0 on cuda: the fraction (0, 1] of the device memory left after "
          "loading that session slots may use.");
ABSL_FLAG(int, queue_size, DefaultEngine().queue_size,
          "Sessions that may wait for a slot; beyond: RESOURCE_EXHAUSTED.");
ABSL_FLAG(double, drain_timeout, DefaultSeconds(DefaultServer().drain_timeout),
          "Seconds running sessions get to finish after SIGTERM before they end with "
          "UNAVAILABLE. The process exits within drain + grace + 5 s whatever is still "
          "running; the defaults fit Kubernetes' 30 s termination grace period.");
ABSL_FLAG(double, shutdown_grace, DefaultSeconds(DefaultServer().shutdown_grace),
          "Seconds open streams get to flush after the drain before they are cancelled.");
ABSL_FLAG(int, threads, DefaultEngine().threads, "CPU intra-op threads; 0: one per core.");
ABSL_FLAG(int, caption_len, DefaultEngine().caption_len, "Caption tokens per prompt (BOS + L-1).");
ABSL_FLAG(int, max_frames, DefaultEngine().max_num_frames,
          "Most video frames per session (1 + 4k), extensions included.");
ABSL_FLAG(int, max_batch, DefaultEngine().max_batch, "Most work items per DiT forward.");
ABSL_FLAG(int, max_dimension, DefaultEngine().max_dimension,
          "Largest width/height in pixels (multiple of 16).");
ABSL_FLAG(int, min_dimension, DefaultEngine().min_dimension,
          "Smallest width/height in pixels (multiple of 16).");
ABSL_FLAG(int, encoder_threads, DefaultEngine().encoder_threads,
          "x264 threads per session; 0: automatic.");
ABSL_FLAG(int, media_workers, DefaultEngine().media_workers,
          "Threads decoding and encoding finished blocks; 0: from the core count.");
ABSL_FLAG(double, max_live_seconds, DefaultSeconds(DefaultEngine().max_live_seconds),
          "Seconds of video after which a live session completes (never past the model's "
          "RoPE coverage, 255.8 s for LongSANA).");
ABSL_FLAG(double, stall_timeout, DefaultSeconds(DefaultEngine().stall_timeout),
          "Seconds a session whose client reads nothing may stay paused before it ends with "
          "DEADLINE_EXCEEDED and frees its slot; 0: never.");
ABSL_FLAG(int, text_queue_size, DefaultEngine().text_queue_size,
          "Prompt encodings that may wait; beyond: RESOURCE_EXHAUSTED.");
ABSL_FLAG(int, max_pending_commands, DefaultEngine().max_pending_commands,
          "Commands per session accepted but not yet applied; beyond: the command is refused "
          "with RESOURCE_EXHAUSTED.");
ABSL_FLAG(int, max_transition_blocks, DefaultEngine().max_transition_blocks,
          "Most blocks a switch_prompt may blend the previous and the new prompt over.");
ABSL_FLAG(std::string, default_pacing, "realtime",
          "realtime | fast: pacing of a request that names none. realtime: generation runs "
          "at most the lookahead ahead of the viewer's playback clock; fast: as fast as "
          "possible (batch rendering).");
ABSL_FLAG(double, default_lookahead_seconds, DefaultEngine().default_lookahead_seconds,
          "Seconds of video a paced session may be generated ahead of its viewer when the "
          "request does not say (lookahead_seconds 0).");
ABSL_FLAG(double, min_lookahead_seconds, DefaultEngine().min_lookahead_seconds,
          "Smallest lookahead_seconds a request may ask for.");
ABSL_FLAG(double, max_lookahead_seconds, DefaultEngine().max_lookahead_seconds,
          "Largest lookahead_seconds a request may ask for.");
ABSL_FLAG(double, realtime_utilization, DefaultEngine().realtime_utilization,
          "Time budget: the share [0, 1] of the device's time real-time sessions may need "
          "together; a new one that would exceed it is queued. 0: no time budget.");
ABSL_FLAG(int, realtime_capacity, DefaultEngine().realtime_capacity,
          "Time budget: real-time streams that fit (measured on this GPU, e.g. with "
          "longsana-bench-server); 0: estimated from the measured per-block cost of what runs.");
ABSL_FLAG(int, outbox_chunks, DefaultServer().outbox_chunks,
          "Undelivered video chunks per stream at which the session pauses (slow reader).");
ABSL_FLAG(int, warmup_width, DefaultEngine().warmup_width,
          "Warm-up before readiness: one first block at this width (with --warmup_height) "
          "through every model. 0: the default request size (832x480) on CUDA, the smallest "
          "on CPU.");
ABSL_FLAG(int, warmup_height, DefaultEngine().warmup_height, "Warm-up height; see --warmup_width.");
ABSL_FLAG(bool, allow_tf32, DefaultEngine().allow_tf32,
          "CUDA: TF32 for matmuls and convolutions (faster fp32 on Ampere and newer; fp32 parity "
          "tolerances no longer hold). Off by default; no effect on CPU.");
ABSL_FLAG(std::string, vae_dtype, "fp32",
          "fp32 | bf16: the VAE decoder's weights, activations and per-session cache (bf16: half "
          "the cache, within the bf16 parity tolerances).");
ABSL_FLAG(bool, text_softcap, DefaultEngine().text_softcap,
          "Gemma-2 attention soft-cap (binding decision 1).");
ABSL_FLAG(bool, exact_timesteps, DefaultEngine().exact_timesteps,
          "Exact integer timesteps (binding decision 2).");
ABSL_FLAG(std::string, log_level, "info", "trace | debug | info | warn | error | off");
ABSL_FLAG(std::string, log_format, "text",
          "text | json: one human-readable line or one JSON object per log record.");
ABSL_FLAG(std::string, config, "",
          "YAML file of flag settings (flag: value per line, dashes or underscores; a list "
          "flag takes a sequence). Flags on the command line win over the file; an unknown "
          "key or a bad value fails the start.");
ABSL_FLAG(std::string, http_listen, DefaultServer().http_listen,
          "host:port of the HTTP port (/metrics, /healthz, /readyz); empty: no HTTP port.");
ABSL_FLAG(std::vector<std::string>, cors_allowed_origins, {},
          "Origins (scheme://host[:port], comma-separated, or *) whose pages may call the "
          "browser API and open its WebSocket cross-origin; empty: same-origin pages only.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain of the gRPC port; with --tls_key turns TLS on (default: "
          "plaintext).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key (unencrypted) of --tls_cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA certificates: with --tls_cert/--tls_key, clients must present a certificate "
          "signed by one of them (mTLS).");
ABSL_FLAG(std::string, auth_tokens, "",
          "YAML file of tenant tokens (token -> tenant and quotas); every RPC but health then "
          "needs 'authorization: Bearer TOKEN'. Empty: no authentication.");

// Cost caps on what one request may ask for (a request over one is INVALID_ARGUMENT naming
// the field, the cap and the flag).
ABSL_FLAG(int, max_steps, DefaultEngine().policy.max_steps,
          "Cost cap: denoising timesteps per block a request may ask for.");
ABSL_FLAG(int, max_cached_blocks, DefaultEngine().policy.max_cached_blocks,
          "Cost cap: largest num_cached_blocks window K a request may ask for.");
ABSL_FLAG(int64_t, max_pixels, DefaultEngine().policy.max_pixels,
          "Cost cap: width x height of a request.");
ABSL_FLAG(std::vector<std::string>, allowed_presets, DefaultEngine().policy.presets,
          "Cost cap: the x264 presets a request may name, comma-separated.");
ABSL_FLAG(int, min_crf, DefaultEngine().policy.min_crf,
          "Cost cap: the lowest (most costly) H.264 CRF a request may ask for.");
ABSL_FLAG(std::string, max_bitrate, std::to_string(DefaultEngine().policy.max_bitrate_bps),
          "Cost cap: the highest average bitrate a request may ask for, bits/s with an "
          "optional k/M/G suffix (powers of 1000: 20M = 20000000).");
ABSL_FLAG(std::string, max_chunk_bytes,
          longsana::server::FormatByteSize(DefaultEngine().policy.max_chunk_bytes),
          "Largest video fragment (one block) in bytes, k/M/G suffixes (powers of 1024); a "
          "larger one fails its session. The gRPC max send message size is this plus a 64 KiB "
          "framing margin; clients must accept as much (longsana --max_receive_bytes).");

// Connection bounds (HTTP/2). Durations in seconds; 0 disables the bound.
ABSL_FLAG(double, keepalive_time, DefaultSeconds(DefaultServer().keepalive_time),
          "Seconds without activity after which the server pings a connection; 0: never.");
ABSL_FLAG(double, keepalive_timeout, DefaultSeconds(DefaultServer().keepalive_timeout),
          "Seconds a keepalive ping may go unanswered before the connection is closed.");
ABSL_FLAG(double, min_client_ping_interval,
          DefaultSeconds(DefaultServer().min_client_ping_interval),
          "Client keepalive pings closer than this many seconds are abuse (GOAWAY "
          "too_many_pings after two); clients should ping no more often.");
ABSL_FLAG(bool, permit_keepalive_without_calls, DefaultServer().permit_keepalive_without_calls,
          "Accept (and send) keepalive pings on connections with no call open.");
ABSL_FLAG(double, max_connection_idle, DefaultSeconds(DefaultServer().max_connection_idle),
          "Seconds a connection with no call open is kept; 0: forever.");
ABSL_FLAG(double, max_connection_age, DefaultSeconds(DefaultServer().max_connection_age),
          "Seconds (+-10%) after which a connection is asked to go away (no new calls on it; "
          "clients reconnect, which rebalances them across replicas); 0: never.");
ABSL_FLAG(double, max_connection_age_grace,
          DefaultSeconds(DefaultServer().max_connection_age_grace),
          "Seconds the calls of an aged connection get to finish before they are cancelled; "
          "keep it above the longest video a session may take; 0: unlimited.");
ABSL_FLAG(int, max_concurrent_streams, DefaultServer().max_concurrent_streams,
          "Calls one connection may carry at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).");
ABSL_FLAG(int, max_sessions_per_peer, DefaultServer().max_sessions_per_peer,
          "Live sessions per client address (the peer IP, any port); beyond: "
          "RESOURCE_EXHAUSTED. Behind a proxy all clients share its address: raise it or use "
          "0 (off) there.");
ABSL_FLAG(int, watch_buffer_chunks, DefaultServer().watch_buffer_chunks,
          "Undelivered video fragments per Watch viewer; a slower viewer skips whole groups "
          "of pictures to a later keyframe (the session never waits for viewers).");
ABSL_FLAG(int, max_watchers_per_session, DefaultServer().max_watchers_per_session,
          "Watch viewers per session; beyond: RESOURCE_EXHAUSTED. Viewers do not count "
          "against --max_sessions_per_peer.");
ABSL_FLAG(double, command_rate, DefaultServer().command_rate,
          "Session commands read per second per stream (token bucket); 0: unlimited. Excess "
          "commands are read later, not refused (HTTP/2 flow control slows the client).");
ABSL_FLAG(int, command_burst, DefaultServer().command_burst,
          "Session commands read at once above --command_rate.");
ABSL_FLAG(bool, check_config, false,
          "Validate the flags and --config file, print the effective settings that deployments "
          "must agree with as JSON (exit_deadline_s: the longest SIGTERM takes) and exit: 0 "
          "valid, 2 invalid. Opens no port and no file but --config.");

namespace longsana::server {
namespace {

std::chrono::milliseconds Seconds(double s) {
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(s * 1000.0)));
}

absl::Status Bad(std::string_view flag, std::string_view what) {
  return absl::InvalidArgumentError(fmt::format("--{}: {}", flag, what));
}

// Config::Validate names config fields ("max_num_frames: ..."); say it in the flag's name.
absl::Status ToFlagError(const absl::Status& status) {
  static const std::map<std::string, std::string, std::less<>> kFlagOfField = {
      {"max_num_frames", "max_frames"},
      {"memory_budget_bytes", "memory_budget"},
      {"max_bitrate_bps", "max_bitrate"},
      {"presets", "allowed_presets"},
      {"max_send_message_bytes", "max_chunk_bytes"},
      {"tls_cert_file", "tls_cert"},
      {"tls_key_file", "tls_key"},
      {"tls_client_ca_file", "tls_client_ca"},
      {"auth_tokens_file", "auth_tokens"},
  };
  const std::string message(status.message());
  const size_t colon = message.find(':');
  if (colon == std::string_view::npos) return status;
  std::string_view field = std::string_view(message).substr(0, colon);
  if (field.starts_with("policy.")) field.remove_prefix(7);
  const auto it = kFlagOfField.find(field);
  const std::string flag = it == kFlagOfField.end() ? std::string(field) : it->second;
  return absl::InvalidArgumentError(fmt::format("--{}:{}", flag, message.substr(colon + 1)));
}

// What the main thread waits for: the models loaded (or failed), or a signal.
struct MainEvents {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<absl::StatusOr<std::unique_ptr<engine::Engine>>> loaded;
  int signal = 0;

  void PostLoaded(absl::StatusOr<std::unique_ptr<engine::Engine>> result) {
    {
      std::lock_guard lock(mu);
      loaded = std::move(result);
    }
    cv.notify_all();
  }
  void PostSignal(int sig) {
    {
      std::lock_guard lock(mu);
      if (signal == 0) signal = sig;
    }
    cv.notify_all();
  }
};

// After SIGTERM the process exits within drain + grace + this, whatever is still running.
constexpr std::chrono::seconds kWatchdogMargin{5};

// --check_config: what a Deployment, a balancer and a client must agree with, for tools and
// tests that read the rendered manifests (tests/deploy).
std::string CheckConfigJson(const Config& c) {
  const auto s = [](std::chrono::milliseconds d) {
    return std::chrono::duration<double>(d).count();
  };
  const ServerOptions& o = c.server;
  return nlohmann::json{
      {"listen", o.listen},
      {"http_listen", o.http_listen},
      {"device", c.engine.device == engine::DeviceKind::kCuda ? "cuda" : "cpu"},
      {"model_dir", c.engine.model_dir},
      {"max_sessions", c.engine.max_sessions},
      {"queue_size", c.engine.queue_size},
      {"max_num_frames", c.engine.max_num_frames},
      {"max_live_seconds", s(c.engine.max_live_seconds)},
      {"drain_timeout_s", s(o.drain_timeout)},
      {"shutdown_grace_s", s(o.shutdown_grace)},
      {"watchdog_margin_s", static_cast<double>(kWatchdogMargin.count())},
      {"exit_deadline_s", s(o.drain_timeout + o.shutdown_grace + kWatchdogMargin)},
      {"max_connection_age_s", s(o.max_connection_age)},
      {"max_connection_age_grace_s", s(o.max_connection_age_grace)},
      {"tls", !o.tls_cert_file.empty()},
      {"auth_tokens", !o.auth_tokens_file.empty()}}
      .dump();
}

// What the shutdown is doing, for the watchdog's last words.
struct ShutdownProgress {
  std::mutex mu;
  std::string stage = "draining";

  void Set(std::string s) {
    std::lock_guard lock(mu);
    stage = std::move(s);
  }
  std::string Get() {
    std::lock_guard lock(mu);
    return stage;
  }
};

// A detached thread that ends the process `after` from now with exit code 0 (the shutdown
// was asked for) by _exit: destructors and atexit handlers could wait on the very engine
// threads that are stuck. Holds the logger so that it can log after main has returned.
void StartShutdownWatchdog(std::chrono::milliseconds after,
                           std::shared_ptr<ShutdownProgress> progress) {
  std::thread([after, progress = std::move(progress), logger = spdlog::default_logger()] {
    std::this_thread::sleep_for(after);
    logger->error(
        "shutdown watchdog: still {} {:.1f} s after the signal (drain timeout + shutdown "
        "grace + {} s): exiting now",
        progress->Get(), std::chrono::duration<double>(after).count(), kWatchdogMargin.count());
    logger->flush();
    std::fflush(stdout);
    std::fflush(stderr);
    _exit(0);
  }).detach();
}

int g_signal_pipe[2] = {-1, -1};

void OnSignal(int sig) {
  const unsigned char byte = static_cast<unsigned char>(sig);
  // Async-signal-safe; a full pipe (a burst of signals) loses nothing that matters.
  [[maybe_unused]] const ssize_t n = write(g_signal_pipe[1], &byte, 1);
}

// "--max_sessions: must be >= 1" -> "... (--config FILE sets max_sessions: '0')" when the
// flag the error names got its value from the config file.
std::string WithFileOrigin(const absl::Status& status, const AppliedSettings& from_file,
                           const std::string& config_file) {
  std::string message(status.message());
  if (!message.starts_with("--")) return message;
  const size_t colon = message.find(':');
  if (colon == std::string::npos) return message;
  const auto it = from_file.find(std::string_view(message).substr(2, colon - 2));
  if (it == from_file.end()) return message;
  return fmt::format("{} (--config {} sets {}: '{}')", message, config_file, it->first, it->second);
}

// --help and --helpshort list our flags (by default Abseil lists the flags of a file named
// like the program, here none), with paths relative to the source tree.
void SetUsageConfig() {
  static const std::string_view kThisFile = __FILE__;
  static const std::string_view kSourceRoot =
      kThisFile.substr(0, kThisFile.size() - std::string_view("server/server_main.cc").size());
  absl::FlagsUsageConfig usage;
  const auto ours = [](absl::string_view file) {
    return IsProgramFlagFile(std::string_view(file.data(), file.size()));
  };
  usage.contains_help_flags = ours;
  usage.contains_helpshort_flags = ours;
  usage.normalize_filename = [](absl::string_view file) {
    std::string_view f(file.data(), file.size());
    if (!kSourceRoot.empty() && f.starts_with(kSourceRoot)) f.remove_prefix(kSourceRoot.size());
    return std::string(f);
  };
  absl::SetFlagsUsageConfig(usage);
}

}  // namespace

void NormalizeFlagDashes(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* arg = argv[i];
    if (std::strcmp(arg, "--") == 0) break;
    if (arg[0] != '-') continue;
    char* name = arg + (arg[1] == '-' ? 2 : 1);
    for (char* p = name; *p != '\0' && *p != '='; ++p) {
      if (*p == '-') *p = '_';
    }
  }
}

absl::StatusOr<Config> ConfigFromFlags() {
  Config c;
  c.server.listen = absl::GetFlag(FLAGS_listen);
  // Durations: seconds on the command line.
  for (const auto& [flag, value, limit, out] : {
           std::tuple{"drain_timeout", absl::GetFlag(FLAGS_drain_timeout), 86400.0,
                      &c.server.drain_timeout},
           std::tuple{"shutdown_grace", absl::GetFlag(FLAGS_shutdown_grace), 3600.0,
                      &c.server.shutdown_grace},
           std::tuple{"keepalive_time", absl::GetFlag(FLAGS_keepalive_time), 86400.0,
                      &c.server.keepalive_time},
           std::tuple{"keepalive_timeout", absl::GetFlag(FLAGS_keepalive_timeout), 86400.0,
                      &c.server.keepalive_timeout},
           std::tuple{"min_client_ping_interval", absl::GetFlag(FLAGS_min_client_ping_interval),
                      86400.0, &c.server.min_client_ping_interval},
           std::tuple{"max_connection_idle", absl::GetFlag(FLAGS_max_connection_idle), 86400.0,
                      &c.server.max_connection_idle},
           std::tuple{"max_connection_age", absl::GetFlag(FLAGS_max_connection_age), 86400.0,
                      &c.server.max_connection_age},
           std::tuple{"max_connection_age_grace", absl::GetFlag(FLAGS_max_connection_age_grace),
                      86400.0, &c.server.max_connection_age_grace},
           std::tuple{"stall_timeout", absl::GetFlag(FLAGS_stall_timeout), 86400.0,
                      &c.engine.stall_timeout},
           std::tuple{"max_live_seconds", absl::GetFlag(FLAGS_max_live_seconds), 86400.0,
                      &c.engine.max_live_seconds},
       }) {
    if (!std::isfinite(value) || value < 0 || value > limit) {
      return Bad(flag, fmt::format("must be in [0, {}] seconds", limit));
    }
    *out = Seconds(value);
  }
  c.server.permit_keepalive_without_calls = absl::GetFlag(FLAGS_permit_keepalive_without_calls);
  c.server.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  c.server.max_sessions_per_peer = absl::GetFlag(FLAGS_max_sessions_per_peer);
  c.server.command_rate = absl::GetFlag(FLAGS_command_rate);
  c.server.command_burst = absl::GetFlag(FLAGS_command_burst);
  c.server.outbox_chunks = absl::GetFlag(FLAGS_outbox_chunks);
  c.server.watch_buffer_chunks = absl::GetFlag(FLAGS_watch_buffer_chunks);
  c.server.max_watchers_per_session = absl::GetFlag(FLAGS_max_watchers_per_session);
  auto level = ParseLogLevel("--log_level", absl::GetFlag(FLAGS_log_level));
  if (!level.ok()) return level.status();
  c.server.log_level = *level;
  auto format = ParseLogFormat("--log_format", absl::GetFlag(FLAGS_log_format));
  if (!format.ok()) return format.status();
  c.server.log_format = *format;
  c.server.http_listen = absl::GetFlag(FLAGS_http_listen);
  c.server.cors_allowed_origins = absl::GetFlag(FLAGS_cors_allowed_origins);
  c.server.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  c.server.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  c.server.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  c.server.auth_tokens_file = absl::GetFlag(FLAGS_auth_tokens);

  c.engine.model_dir = absl::GetFlag(FLAGS_model_dir);
  if (c.engine.model_dir.empty()) return Bad("model_dir", "is required");
  auto device = ParseDevice("--device", absl::GetFlag(FLAGS_device));
  if (!device.ok()) return device.status();
  c.engine.device = *device;
  c.engine.threads = absl::GetFlag(FLAGS_threads);
  c.engine.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  auto budget = ParseByteSize("--memory_budget", absl::GetFlag(FLAGS_memory_budget));
  if (!budget.ok()) return budget.status();
  c.engine.memory_budget_bytes = *budget;
  c.engine.memory_budget_fraction = absl::GetFlag(FLAGS_memory_budget_fraction);
  c.engine.queue_size = absl::GetFlag(FLAGS_queue_size);
  c.engine.max_batch = absl::GetFlag(FLAGS_max_batch);
  c.engine.max_num_frames = absl::GetFlag(FLAGS_max_frames);
  c.engine.min_dimension = absl::GetFlag(FLAGS_min_dimension);
  c.engine.max_dimension = absl::GetFlag(FLAGS_max_dimension);
  c.engine.caption_len = absl::GetFlag(FLAGS_caption_len);
  c.engine.text_softcap = absl::GetFlag(FLAGS_text_softcap);
  c.engine.allow_tf32 = absl::GetFlag(FLAGS_allow_tf32);
  auto vae_dtype = ParseVaeDtype("--vae_dtype", absl::GetFlag(FLAGS_vae_dtype));
  if (!vae_dtype.ok()) return vae_dtype.status();
  c.engine.vae_dtype = *vae_dtype;
  c.engine.warmup_width = absl::GetFlag(FLAGS_warmup_width);
  c.engine.warmup_height = absl::GetFlag(FLAGS_warmup_height);
  c.engine.exact_timesteps = absl::GetFlag(FLAGS_exact_timesteps);
  c.engine.encoder_threads = absl::GetFlag(FLAGS_encoder_threads);
  c.engine.media_workers = absl::GetFlag(FLAGS_media_workers);
  c.engine.text_queue_size = absl::GetFlag(FLAGS_text_queue_size);
  c.engine.max_pending_commands = absl::GetFlag(FLAGS_max_pending_commands);
  c.engine.max_transition_blocks = absl::GetFlag(FLAGS_max_transition_blocks);
  const std::string pacing = absl::GetFlag(FLAGS_default_pacing);
  if (pacing == "realtime") {
    c.engine.default_pacing = engine::Pacing::kRealTime;
  } else if (pacing == "fast") {
    c.engine.default_pacing = engine::Pacing::kAsFastAsPossible;
  } else {
    return Bad("default_pacing", fmt::format("must be realtime or fast, got '{}'", pacing));
  }
  c.engine.default_lookahead_seconds = absl::GetFlag(FLAGS_default_lookahead_seconds);
  c.engine.min_lookahead_seconds = absl::GetFlag(FLAGS_min_lookahead_seconds);
  c.engine.max_lookahead_seconds = absl::GetFlag(FLAGS_max_lookahead_seconds);
  c.engine.realtime_utilization = absl::GetFlag(FLAGS_realtime_utilization);
  c.engine.realtime_capacity = absl::GetFlag(FLAGS_realtime_capacity);

  engine::SessionPolicy& policy = c.engine.policy;
  policy.max_steps = absl::GetFlag(FLAGS_max_steps);
  policy.max_cached_blocks = absl::GetFlag(FLAGS_max_cached_blocks);
  policy.max_pixels = absl::GetFlag(FLAGS_max_pixels);
  policy.presets.clear();
  for (const std::string& preset : absl::GetFlag(FLAGS_allowed_presets)) {
    if (!preset.empty()) policy.presets.push_back(preset);
  }
  policy.min_crf = absl::GetFlag(FLAGS_min_crf);
  auto bitrate = ParseBitRate("--max_bitrate", absl::GetFlag(FLAGS_max_bitrate));
  if (!bitrate.ok()) return bitrate.status();
  policy.max_bitrate_bps = *bitrate;
  auto chunk = ParseByteSize("--max_chunk_bytes", absl::GetFlag(FLAGS_max_chunk_bytes));
  if (!chunk.ok()) return chunk.status();
  policy.max_chunk_bytes = *chunk;
  // What the engine lets through, gRPC must be able to send.
  c.server.max_send_message_bytes = policy.max_chunk_bytes + wire::kChunkFramingMarginBytes;

  if (auto s = c.Validate(); !s.ok()) return ToFlagError(s);
  return c;
}

int ServerMain(int argc, char** argv, const EngineFactory& create_engine) {
  // SIGTERM/SIGINT: a handler that writes the signal number into a pipe, read by a watcher
  // thread. (Blocking the signals and sigwait() would not do: libraries may start threads
  // before main, and a signal delivered to one of those would kill the process.)
  if (pipe(g_signal_pipe) != 0) {
    std::fprintf(stderr, "longsana-server: pipe: %s\n", std::strerror(errno));
    return 1;
  }
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);

  absl::SetProgramUsageMessage(
      "longsana-server --model_dir DIR [--listen HOST:PORT] [--device cpu|cuda] "
      "[--config FILE] ...\n"
      "Serves LongSANA video generation over gRPC (package longsana.v1). Flags may be "
      "spelled with dashes or underscores; --config FILE reads them from a YAML file "
      "(flags on the command line win).");
  SetUsageConfig();
  NormalizeFlagDashes(argc, argv);
  // The file first, so that the command line, parsed next, overrides it.
  const std::string config_file = ConfigFileArgument(argc, argv);
  AppliedSettings from_file;
  if (!config_file.empty()) {
    auto applied = ApplyConfigFile(config_file);
    if (!applied.ok()) {
      std::fprintf(stderr, "longsana-server: %s\n",
                   std::string(applied.status().message()).c_str());
      return 2;
    }
    from_file = std::move(*applied);
  }
  std::map<std::string, std::string, std::less<>> file_values;  // as the flags print them
  for (const auto& [name, text] : from_file) {
    file_values[name] = absl::FindCommandLineFlag(name)->CurrentValue();
  }
  const auto positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    std::fprintf(stderr, "longsana-server: unexpected argument '%s' (see --help)\n", positional[1]);
    return 2;
  }
  // What the command line overrode does not come from the file.
  for (auto it = from_file.begin(); it != from_file.end();) {
    const bool overridden =
        absl::FindCommandLineFlag(it->first)->CurrentValue() != file_values[it->first];
    it = overridden ? from_file.erase(it) : std::next(it);
  }
  auto config = ConfigFromFlags();
  if (!config.ok()) {
    std::fprintf(stderr, "longsana-server: %s\n",
                 WithFileOrigin(config.status(), from_file, config_file).c_str());
    return 2;
  }

  if (absl::GetFlag(FLAGS_check_config)) {
    std::printf("%s\n", CheckConfigJson(*config).c_str());
    return 0;
  }

  ConfigureLogging(config->server.log_level, config->server.log_format);

  // Shared with the detached signal watcher, which may outlive this function.
  auto events = std::make_shared<MainEvents>();
  std::thread([events] {
    unsigned char sig = 0;
    while (true) {
      const ssize_t n = read(g_signal_pipe[0], &sig, 1);
      if (n == 1) events->PostSignal(sig);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
    }
  }).detach();

  auto progress = std::make_shared<ShutdownProgress>();
  if (!from_file.empty()) {
    std::vector<std::string> names;
    for (const auto& [name, value] : from_file) names.push_back(name);
    spdlog::info("--config {}: {}", config_file, fmt::join(names, ", "));
  }
  // One metrics object for the server (/metrics) and the engine (its observer).
  auto metrics = std::make_shared<ServerMetrics>(
      ServerMetrics::Options{.version = LONGSANA_VERSION,
                             .build = Server::BuildDescription(),
                             .device_memory = config->engine.device == engine::DeviceKind::kCuda,
                             .max_batch = config->engine.max_batch});
  config->engine.observer = metrics;
  auto server = Server::Start(config->server, metrics);
  if (!server.ok()) {
    // A TLS or tokens file that cannot be read or parsed is a configuration error like a
    // bad flag (exit 2); a port that cannot be bound is a start failure (exit 1).
    const auto code = server.status().code();
    if (code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kNotFound ||
        code == absl::StatusCode::kPermissionDenied) {
      std::fprintf(stderr, "longsana-server: %s\n",
                   WithFileOrigin(server.status(), from_file, config_file).c_str());
      return 2;
    }
    spdlog::error("{}", server.status().ToString());
    return 1;
  }
  std::printf("listening on %s\n", (*server)->address().c_str());
  if ((*server)->http_port() != 0) {
    std::printf("http listening on %s\n", (*server)->http_address().c_str());
  }
  std::fflush(stdout);

  spdlog::info(
      "loading {} on {} (max {} sessions, queue {}, max batch {}, max {} frames, "
      "caption {} tokens)",
      config->engine.model_dir, config->engine.device == engine::DeviceKind::kCuda ? "cuda" : "cpu",
      config->engine.max_sessions, config->engine.queue_size, config->engine.max_batch,
      config->engine.max_num_frames, config->engine.caption_len);
  const auto load_start = std::chrono::steady_clock::now();
  std::thread loader([events, &create_engine, engine_config = config->engine] {
    events->PostLoaded(create_engine(engine_config));
  });

  int exit_code = 0;
  bool loaded = false;
  while (true) {
    std::unique_lock lock(events->mu);
    events->cv.wait(lock,
                    [&] { return events->signal != 0 || (!loaded && events->loaded.has_value()); });
    if (events->signal != 0) {
      const int sig = events->signal;
      lock.unlock();
      const ServerOptions& o = config->server;
      StartShutdownWatchdog(o.drain_timeout + o.shutdown_grace + kWatchdogMargin, progress);
      spdlog::info("received {}: draining (timeout {:.1f} s)",
                   sig == SIGTERM ? "SIGTERM" : "SIGINT",
                   std::chrono::duration<double>(o.drain_timeout).count());
      progress->Set("draining the engine's sessions");
      (*server)->Drain(o.drain_timeout);
      progress->Set(
          fmt::format("closing streams ({} open when the drain ended)", (*server)->open_streams()));
      (*server)->Shutdown(o.shutdown_grace);
      exit_code = 0;
      break;
    }
    auto result = std::move(*events->loaded);
    lock.unlock();
    loaded = true;
    if (!result.ok()) {
      spdlog::error("loading the models failed: {}", result.status().ToString());
      (*server)->SetLoadFailed(result.status());
      (*server)->Shutdown(std::chrono::milliseconds(0));
      exit_code = 1;
      break;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
    spdlog::info("models loaded and warmed up in {:.2f} s", seconds);
    (*server)->SetEngine(std::shared_ptr<engine::Engine>(std::move(*result)));
  }
  // A signal during loading waits for the load to end (CreateEngine cannot be interrupted;
  // the watchdog bounds the wait).
  progress->Set("waiting for the model load to finish");
  loader.join();
  {
    std::lock_guard lock(events->mu);
    events->loaded.reset();  // an engine loaded after the signal is released here
  }
  progress->Set("releasing the engine");
  server->reset();
  spdlog::info("exit {}", exit_code);
  return exit_code;
}

}  // namespace longsana::server
