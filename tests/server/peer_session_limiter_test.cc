// PeerSessionLimiter and PeerHost (server/peer_session_limiter.h).
#include "server/peer_session_limiter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace longsana::server {
namespace {

TEST(PeerHost, DropsThePortOfIpv4AndIpv6Peers) {
  EXPECT_EQ(PeerHost("ipv4:127.0.0.1:54321"), "127.0.0.1");
  EXPECT_EQ(PeerHost("ipv4:10.1.2.3:1"), "10.1.2.3");
  EXPECT_EQ(PeerHost("ipv6:[::1]:5"), "::1");
  EXPECT_EQ(PeerHost("ipv6:%5B::1%5D:50051"), "::1");  // gRPC writes peers as URIs
  EXPECT_EQ(PeerHost("ipv6:%5B2001:db8::7%5D:443"), "2001:db8::7");
  EXPECT_EQ(PeerHost("unix:/run/longsana.sock"), "unix:/run/longsana.sock");
  EXPECT_EQ(PeerHost("something-else"), "something-else");
}

TEST(PeerSessionLimiter, CapsEachHostAndGivesBackOnRelease) {
  PeerSessionLimiter limiter(2);
  auto a = limiter.Acquire("ipv4:10.0.0.1:1000");
  auto b = limiter.Acquire("ipv4:10.0.0.1:1001");  // another port, same host
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(limiter.Count("10.0.0.1"), 2);
  const auto c = limiter.Acquire("ipv4:10.0.0.1:1002");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(std::string(c.status().message()).find("--max_sessions_per_peer"), std::string::npos)
      << c.status();
  EXPECT_TRUE(limiter.Acquire("ipv4:10.0.0.2:1000").ok());  // other hosts are not affected
  {
    PeerSessionLimiter::Lease moved = std::move(*a);  // moving does not count twice
    EXPECT_FALSE(a->held());
    EXPECT_EQ(limiter.Count("10.0.0.1"), 2);
  }
  EXPECT_EQ(limiter.Count("10.0.0.1"), 1);
  b->Release();
  b->Release();  // idempotent
  EXPECT_EQ(limiter.Count("10.0.0.1"), 0);
  EXPECT_TRUE(limiter.Acquire("ipv4:10.0.0.1:1003").ok());
}

TEST(PeerSessionLimiter, ZeroMeansNoCap) {
  PeerSessionLimiter limiter(0);
  std::vector<PeerSessionLimiter::Lease> leases;
  for (int i = 0; i < 100; ++i) {
    auto l = limiter.Acquire("ipv6:[::1]:7");
    ASSERT_TRUE(l.ok());
    leases.push_back(std::move(*l));
  }
  EXPECT_EQ(limiter.Count("::1"), 100);
  leases.clear();
  EXPECT_EQ(limiter.Count("::1"), 0);
}

TEST(PeerSessionLimiter, ExactUnderConcurrency) {
  constexpr int kCap = 3;
  PeerSessionLimiter limiter(kCap);
  std::atomic<int> live{0};
  std::atomic<int> over{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        auto lease = limiter.Acquire("ipv4:192.168.0.9:" + std::to_string(i));
        if (!lease.ok()) continue;
        if (live.fetch_add(1) + 1 > kCap) over.fetch_add(1);
        live.fetch_sub(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(over.load(), 0);
  EXPECT_EQ(limiter.Count("192.168.0.9"), 0);
}

}  // namespace
}  // namespace longsana::server
