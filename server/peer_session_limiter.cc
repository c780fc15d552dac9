#include "server/peer_session_limiter.h"

#include <fmt/format.h>

#include <utility>

#include "server/http/http_router.h"

namespace longsana::server {

std::string PeerHost(std::string_view peer) {
  // gRPC writes peers as URIs, so an IPv6 host may come as %5B...%5D.
  const std::string decoded = http::PercentDecode(peer);
  std::string_view s = decoded;
  if (s.starts_with("ipv4:")) {
    s.remove_prefix(5);
    const size_t colon = s.rfind(':');
    return std::string(colon == std::string_view::npos ? s : s.substr(0, colon));
  }
  if (s.starts_with("ipv6:")) {
    s.remove_prefix(5);
    if (s.starts_with("[")) {
      const size_t close = s.find(']');
      if (close != std::string_view::npos) return std::string(s.substr(1, close - 1));
    }
    return std::string(s);
  }
  return decoded;
}

PeerSessionLimiter::PeerSessionLimiter(int max_per_peer) : max_per_peer_(max_per_peer) {}

PeerSessionLimiter::Lease::Lease(PeerSessionLimiter* owner, std::string host)
    : owner_(owner), host_(std::move(host)) {}

PeerSessionLimiter::Lease::Lease(Lease&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), host_(std::move(other.host_)) {}

PeerSessionLimiter::Lease& PeerSessionLimiter::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    owner_ = std::exchange(other.owner_, nullptr);
    host_ = std::move(other.host_);
  }
  return *this;
}

PeerSessionLimiter::Lease::~Lease() { Release(); }

void PeerSessionLimiter::Lease::Release() {
  if (owner_ == nullptr) return;
  std::exchange(owner_, nullptr)->ReleaseHost(host_);
}

absl::StatusOr<PeerSessionLimiter::Lease> PeerSessionLimiter::Acquire(std::string_view peer) {
  std::string host = PeerHost(peer);
  {
    std::lock_guard lock(mu_);
    int& live = live_[host];
    if (max_per_peer_ > 0 && live >= max_per_peer_) {
      return absl::ResourceExhaustedError(fmt::format(
          "--max_sessions_per_peer: {} already has {} live sessions, the most one client "
          "address may hold",
          host, live));
    }
    ++live;
  }
  return Lease(this, std::move(host));
}

int PeerSessionLimiter::Count(const std::string& host) const {
  std::lock_guard lock(mu_);
  const auto it = live_.find(host);
  return it == live_.end() ? 0 : it->second;
}

void PeerSessionLimiter::ReleaseHost(const std::string& host) {
  std::lock_guard lock(mu_);
  const auto it = live_.find(host);
  if (it == live_.end()) return;
  if (--it->second <= 0) live_.erase(it);
}

}  // namespace longsana::server
