#include "server/request_id.h"

#include <fmt/format.h>

#include <random>

namespace longsana::server {

std::string NewRequestId() {
  thread_local std::mt19937_64 generator{[] {
    std::random_device device;
    return (static_cast<uint64_t>(device()) << 32) ^ device();
  }()};
  return fmt::format("{:016x}{:016x}", generator(), generator());
}

std::string RequestIdOrNew(std::optional<std::string_view> header) {
  if (!header.has_value() || header->empty() || header->size() > 128) return NewRequestId();
  for (const char c : *header) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == ':' || c == '/' || c == '+' || c == '-';
    if (!ok) return NewRequestId();
  }
  return std::string(*header);
}

}  // namespace longsana::server
