// Caps the live sessions per client host (--max_sessions_per_peer).
//
// The host is the peer address without its port, from grpc's context->peer(): every port of
// one address counts together. Behind a proxy or a NAT all clients share the proxy's address
// (and so one cap); raise or disable the cap there and bound tenants at the proxy instead.
//
// Thread-safe. A Lease holds one session of its host and gives it back when destroyed, so
// the count is exact however the stream ends. The limiter must outlive its leases (the
// service outlives every reactor).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace longsana::server {

// The host part of a gRPC peer string:
//   "ipv4:127.0.0.1:54321" -> "127.0.0.1", "ipv6:[::1]:5" (or "ipv6:%5B::1%5D:5") -> "::1",
//   "unix:/run/x.sock" -> "unix:/run/x.sock" (one host for every local socket client).
// Anything unrecognized is returned whole (percent-decoded).
std::string PeerHost(std::string_view peer);

class PeerSessionLimiter {
 public:
  // max_per_peer <= 0: no cap (leases are still counted).
  explicit PeerSessionLimiter(int max_per_peer);
  PeerSessionLimiter(const PeerSessionLimiter&) = delete;
  PeerSessionLimiter& operator=(const PeerSessionLimiter&) = delete;

  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&& other) noexcept;
    ~Lease();
    void Release();
    bool held() const { return owner_ != nullptr; }

   private:
    friend class PeerSessionLimiter;
    Lease(PeerSessionLimiter* owner, std::string host);
    PeerSessionLimiter* owner_ = nullptr;  // must outlive the lease
    std::string host_;
  };

  // One more session for `peer`'s host, or ResourceExhausted naming --max_sessions_per_peer.
  absl::StatusOr<Lease> Acquire(std::string_view peer);

  // Live sessions of a host (as PeerHost returns it).
  int Count(const std::string& host) const;
  int max_per_peer() const { return max_per_peer_; }

 private:
  void ReleaseHost(const std::string& host);

  const int max_per_peer_;
  mutable std::mutex mu_;
  std::map<std::string, int> live_;  // hosts with at least one live session
};

}  // namespace longsana::server
