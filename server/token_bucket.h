// A token bucket: `rate` tokens per second, holding at most `burst`, starting full.
//
// Pure arithmetic over the time points the caller passes (no clock inside), so tests drive
// it with any time they like. Not thread-safe: the owner serializes calls.
#pragma once

#include <chrono>

namespace longsana::server {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  // rate > 0 tokens per second, burst >= 1 tokens; `now` is the start (the bucket is full).
  TokenBucket(double rate, double burst, Clock::time_point now);

  // Takes one token if there is one (returns zero); otherwise takes nothing and returns how
  // long from `now` until one is available (> 0). `now` must not go backwards.
  Clock::duration TryTake(Clock::time_point now);

  // Tokens available at `now` (fractional), without taking any.
  double Available(Clock::time_point now);

 private:
  void Refill(Clock::time_point now);

  const double rate_;
  const double burst_;
  double tokens_;
  Clock::time_point last_;
};

}  // namespace longsana::server
