// TokenBucket (server/token_bucket.h) over a hand-driven clock.
#include "server/token_bucket.h"

#include <gtest/gtest.h>

#include <chrono>

namespace longsana::server {
namespace {

using namespace std::chrono_literals;
using Clock = TokenBucket::Clock;

TEST(TokenBucket, StartsFullThenRefillsAtTheRate) {
  const Clock::time_point t0{};
  TokenBucket b(/*rate=*/10, /*burst=*/3, t0);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(b.TryTake(t0), Clock::duration::zero()) << i;
  // Empty: the wait is 1/rate, rounded up, and nothing was taken.
  const Clock::duration wait = b.TryTake(t0);
  EXPECT_GE(wait, 100ms);
  EXPECT_LE(wait, 101ms);
  EXPECT_EQ(b.TryTake(t0 + wait), Clock::duration::zero());
  EXPECT_GT(b.TryTake(t0 + wait), Clock::duration::zero());
}

TEST(TokenBucket, WaitIsWhatIsMissingOfOneToken) {
  const Clock::time_point t0{};
  TokenBucket b(4, 1, t0);
  EXPECT_EQ(b.TryTake(t0), Clock::duration::zero());
  const Clock::duration wait = b.TryTake(t0 + 100ms);  // 0.4 token there, 0.6 missing
  EXPECT_GE(wait, 150ms);
  EXPECT_LE(wait, 151ms);
  EXPECT_EQ(b.TryTake(t0 + 100ms + wait), Clock::duration::zero());
}

TEST(TokenBucket, NeverHoldsMoreThanTheBurst) {
  const Clock::time_point t0{};
  TokenBucket b(100, 5, t0);
  EXPECT_DOUBLE_EQ(b.Available(t0 + 1h), 5.0);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(b.TryTake(t0 + 1h), Clock::duration::zero());
  EXPECT_GT(b.TryTake(t0 + 1h), Clock::duration::zero());
}

TEST(TokenBucket, SustainedRateOverManyTakes) {
  // Taking as fast as allowed for 1000 tokens at 50/s with burst 10 needs (1000 - 10) / 50 s.
  Clock::time_point now{};
  TokenBucket b(50, 10, now);
  int taken = 0;
  while (taken < 1000) {
    const Clock::duration wait = b.TryTake(now);
    if (wait == Clock::duration::zero()) {
      ++taken;
    } else {
      now += wait;
    }
  }
  const double seconds = std::chrono::duration<double>(now - Clock::time_point{}).count();
  EXPECT_NEAR(seconds, 990.0 / 50.0, 0.01);
}

TEST(TokenBucket, TimeGoingBackwardsAddsNothing) {
  const Clock::time_point t0 = Clock::time_point{} + 1s;
  TokenBucket b(1, 1, t0);
  EXPECT_EQ(b.TryTake(t0), Clock::duration::zero());
  EXPECT_GT(b.TryTake(t0 - 500ms), Clock::duration::zero());
  EXPECT_DOUBLE_EQ(b.Available(t0), 0.0);
}

}  // namespace
}  // namespace longsana::server
