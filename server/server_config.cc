#include "server/server_config.h"

#include <fmt/format.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <utility>

#include "server/http/http_server.h"

namespace longsana::server {
namespace {

absl::Status Bad(std::string_view field, std::string_view what) {
  return absl::InvalidArgumentError(fmt::format("{}: {}", field, what));
}

// gRPC takes these as int milliseconds; 24 h is far inside that and above any sane bound.
absl::Status CheckDuration(std::string_view field, std::chrono::milliseconds d) {
  if (d.count() < 0 || d > std::chrono::hours(24)) {
    return Bad(field, "must be in [0 s, 24 h] (0: off)");
  }
  return absl::OkStatus();
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A non-negative number and the (lower-cased) suffix after it: "2.5M" -> {2.5, "m"}.
struct ScaledNumber {
  double value = 0;
  std::string suffix;
};
absl::StatusOr<ScaledNumber> ParseScaledNumber(std::string_view field, std::string_view text,
                                               std::string_view what) {
  const std::string s = Lower(text);
  const char* begin = s.c_str();
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(begin, &end);
  if (end == begin || errno != 0 || !std::isfinite(value) || value < 0) {
    return Bad(field, fmt::format("'{}' is not {}", text, what));
  }
  return ScaledNumber{value, std::string(end)};
}

}  // namespace

absl::Status ServerOptions::Validate() const {
  auto hp = ParseHostPort("listen", listen);
  if (!hp.ok()) return hp.status();
  if (!http_listen.empty()) {
    auto http = ParseHostPort("http_listen", http_listen);
    if (!http.ok()) return http.status();
  }
  {
    http::HttpServerOptions http_options;
    http_options.cors_allowed_origins = cors_allowed_origins;
    if (auto s = http_options.Validate(); !s.ok()) return s;
  }
  if (tls_cert_file.empty() != tls_key_file.empty()) {
    return Bad(tls_cert_file.empty() ? "tls_cert" : "tls_key",
               "TLS needs both --tls_cert and --tls_key");
  }
  if (!tls_client_ca_file.empty() && tls_cert_file.empty()) {
    return Bad("tls_client_ca", "mTLS needs --tls_cert and --tls_key as well");
  }
  if (drain_timeout.count() < 0 || drain_timeout > std::chrono::hours(24)) {
    return Bad("drain_timeout", "must be in [0 s, 24 h]");
  }
  if (shutdown_grace.count() < 0 || shutdown_grace > std::chrono::hours(1)) {
    return Bad("shutdown_grace", "must be in [0 s, 1 h]");
  }
  if (outbox_chunks < 1 || outbox_chunks > 1024)
    return Bad("outbox_chunks", "must be in [1, 1024]");
  if (max_pending_events < 1 || max_pending_events > 1 << 16) {
    return Bad("max_pending_events", "must be in [1, 65536]");
  }
  if (max_receive_message_bytes < 1024) return Bad("max_receive_message_bytes", "must be >= 1024");
  if (max_send_message_bytes < 1024 ||
      max_send_message_bytes > std::numeric_limits<int32_t>::max()) {
    return Bad("max_send_message_bytes", "must be in [1 KiB, 2 GiB)");
  }
  for (const auto& [field, value] : {
           std::pair{"keepalive_time", keepalive_time},
           std::pair{"keepalive_timeout", keepalive_timeout},
           std::pair{"min_client_ping_interval", min_client_ping_interval},
           std::pair{"max_connection_idle", max_connection_idle},
           std::pair{"max_connection_age", max_connection_age},
           std::pair{"max_connection_age_grace", max_connection_age_grace},
       }) {
    if (auto s = CheckDuration(field, value); !s.ok()) return s;
  }
  if (keepalive_time.count() > 0 && keepalive_timeout.count() == 0) {
    return Bad("keepalive_timeout", "must be > 0 when keepalive_time is set");
  }
  if (max_concurrent_streams < 1 || max_concurrent_streams > 1 << 20) {
    return Bad("max_concurrent_streams", "must be in [1, 1048576]");
  }
  if (max_sessions_per_peer < 0) return Bad("max_sessions_per_peer", "must be >= 0 (0: off)");
  if (!std::isfinite(command_rate) || command_rate < 0 || command_rate > 1e6) {
    return Bad("command_rate", "must be in [0, 1e6] per second (0: unlimited)");
  }
  if (command_burst < 1 || command_burst > 1 << 20) {
    return Bad("command_burst", "must be in [1, 1048576]");
  }
  if (watch_buffer_chunks < 1 || watch_buffer_chunks > 1024) {
    return Bad("watch_buffer_chunks", "must be in [1, 1024]");
  }
  if (max_watchers_per_session < 1 || max_watchers_per_session > 1 << 16) {
    return Bad("max_watchers_per_session", "must be in [1, 65536]");
  }
  if (health_poll_interval.count() < 1) return Bad("health_poll_interval", "must be >= 1 ms");
  return absl::OkStatus();
}

absl::Status Config::Validate() const {
  if (auto s = server.Validate(); !s.ok()) return s;
  if (auto s = engine.Validate(); !s.ok()) return s;
  const int64_t needed = engine.policy.max_chunk_bytes + wire::kChunkFramingMarginBytes;
  if (server.max_send_message_bytes < needed) {
    return Bad("max_send_message_bytes",
               fmt::format("{} cannot carry a chunk of max_chunk_bytes {} plus {} bytes of "
                           "framing",
                           server.max_send_message_bytes, engine.policy.max_chunk_bytes,
                           wire::kChunkFramingMarginBytes));
  }
  return absl::OkStatus();
}

std::string FormatByteSize(int64_t bytes) {
  static constexpr const char* kSuffixes[] = {"", "k", "M", "G", "T"};
  int i = 0;
  while (bytes != 0 && bytes % 1024 == 0 && i < 4) {
    bytes /= 1024;
    ++i;
  }
  return fmt::format("{}{}", bytes, kSuffixes[i]);
}

absl::StatusOr<int64_t> ParseBitRate(std::string_view field, std::string_view text) {
  auto number = ParseScaledNumber(field, text, "a bit rate (e.g. 20M, 800k, 20000000)");
  if (!number.ok()) return number.status();
  const double value = number->value;
  const std::string& suffix = number->suffix;
  double scale = 1;
  if (suffix.empty())
    scale = 1;
  else if (suffix == "k")
    scale = 1e3;
  else if (suffix == "m")
    scale = 1e6;
  else if (suffix == "g")
    scale = 1e9;
  else
    return Bad(field,
               fmt::format("'{}': unknown suffix (use k, M or G: bits/s, powers of 1000)", text));
  const double bps = value * scale;
  if (bps > 1e15) return Bad(field, fmt::format("'{}' is too large", text));
  return static_cast<int64_t>(std::llround(bps));
}

absl::StatusOr<int64_t> ParseByteSize(std::string_view field, std::string_view text) {
  auto number = ParseScaledNumber(field, text, "a byte size (e.g. 8G, 512M, 1073741824)");
  if (!number.ok()) return number.status();
  const double value = number->value;
  std::string_view suffix = number->suffix;
  if (suffix.ends_with("ib"))
    suffix.remove_suffix(2);
  else if (suffix.size() == 2 && suffix.back() == 'b')
    suffix.remove_suffix(1);
  else if (suffix == "b")
    suffix = {};
  double scale = 1;
  if (suffix.empty())
    scale = 1;
  else if (suffix == "k")
    scale = 1024.0;
  else if (suffix == "m")
    scale = 1024.0 * 1024;
  else if (suffix == "g")
    scale = 1024.0 * 1024 * 1024;
  else if (suffix == "t")
    scale = 1024.0 * 1024 * 1024 * 1024;
  else
    return Bad(field, fmt::format("'{}': unknown suffix (use k, M, G or T)", text));
  const double bytes = value * scale;
  if (bytes > 9.0e18) return Bad(field, fmt::format("'{}' is too large", text));
  return static_cast<int64_t>(std::llround(bytes));
}

absl::StatusOr<engine::DeviceKind> ParseDevice(std::string_view field, std::string_view text) {
  const std::string s = Lower(text);
  if (s == "cpu") return engine::DeviceKind::kCpu;
  if (s == "cuda") return engine::DeviceKind::kCuda;
  return Bad(field, fmt::format("'{}' is not one of cpu, cuda", text));
}

absl::StatusOr<engine::VaeDtype> ParseVaeDtype(std::string_view field, std::string_view text) {
  const std::string s = Lower(text);
  if (s == "fp32") return engine::VaeDtype::kFloat32;
  if (s == "bf16") return engine::VaeDtype::kBFloat16;
  return Bad(field, fmt::format("'{}' is not one of fp32, bf16", text));
}

absl::StatusOr<LogLevel> ParseLogLevel(std::string_view field, std::string_view text) {
  const std::string s = Lower(text);
  if (s == "trace") return LogLevel::kTrace;
  if (s == "debug") return LogLevel::kDebug;
  if (s == "info") return LogLevel::kInfo;
  if (s == "warn" || s == "warning") return LogLevel::kWarn;
  if (s == "error") return LogLevel::kError;
  if (s == "off") return LogLevel::kOff;
  return Bad(field, fmt::format("'{}' is not one of trace, debug, info, warn, error, off", text));
}

absl::StatusOr<LogFormat> ParseLogFormat(std::string_view field, std::string_view text) {
  const std::string s = Lower(text);
  if (s == "text") return LogFormat::kText;
  if (s == "json") return LogFormat::kJson;
  return Bad(field, fmt::format("'{}' is not one of text, json", text));
}

absl::StatusOr<HostPort> ParseHostPort(std::string_view field, std::string_view text) {
  HostPort out;
  std::string_view port_text;
  if (text.starts_with("[")) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Bad(field, fmt::format("'{}' is not [ipv6]:port", text));
    }
    out.host = std::string(text.substr(0, close + 1));
    port_text = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      return Bad(field, fmt::format("'{}' is not host:port", text));
    }
    out.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
  }
  if (port_text.empty() || port_text.size() > 5) {
    return Bad(field, fmt::format("'{}': the port must be in [0, 65535]", text));
  }
  int port = 0;
  for (char c : port_text) {
    if (c < '0' || c > '9') return Bad(field, fmt::format("'{}': the port must be a number", text));
    port = port * 10 + (c - '0');
  }
  if (port > 65535) return Bad(field, fmt::format("'{}': the port must be in [0, 65535]", text));
  out.port = port;
  return out;
}

}  // namespace longsana::server
