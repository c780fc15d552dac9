#include "server/server_config.h"

#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <string>

namespace longsana::server {
namespace {

absl::Status Bad(std::string_view field, std::string_view what) {
  return absl::InvalidArgumentError(fmt::format("{}: {}", field, what));
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

absl::Status ServerOptions::Validate() const {
  auto hp = ParseHostPort("listen", listen);
  if (!hp.ok()) return hp.status();
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
  if (health_poll_interval.count() < 1) return Bad("health_poll_interval", "must be >= 1 ms");
  return absl::OkStatus();
}

absl::Status Config::Validate() const {
  if (auto s = server.Validate(); !s.ok()) return s;
  return engine.Validate();
}

absl::StatusOr<int64_t> ParseByteSize(std::string_view field, std::string_view text) {
  const std::string s = Lower(text);
  const char* begin = s.c_str();
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(begin, &end);
  if (end == begin || errno != 0 || !std::isfinite(value) || value < 0) {
    return Bad(field, fmt::format("'{}' is not a byte size (e.g. 8G, 512M, 1073741824)", text));
  }
  std::string suffix(end);
  if (suffix.ends_with("ib"))
    suffix.resize(suffix.size() - 2);
  else if (suffix.size() == 2 && suffix.back() == 'b')
    suffix.resize(1);
  else if (suffix == "b")
    suffix.clear();
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
