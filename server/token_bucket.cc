#include "server/token_bucket.h"

#include <algorithm>
#include <cmath>

namespace longsana::server {

TokenBucket::TokenBucket(double rate, double burst, Clock::time_point now)
    : rate_(rate), burst_(burst), tokens_(burst), last_(now) {}

void TokenBucket::Refill(Clock::time_point now) {
  if (now <= last_) return;
  const double elapsed = std::chrono::duration<double>(now - last_).count();
  tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
  last_ = now;
}

double TokenBucket::Available(Clock::time_point now) {
  Refill(now);
  return tokens_;
}

TokenBucket::Clock::duration TokenBucket::TryTake(Clock::time_point now) {
  Refill(now);
  if (tokens_ >= 1.0) {
    tokens_ -= 1.0;
    return Clock::duration::zero();
  }
  // Round up so that the caller, woken at now + wait, finds a whole token.
  const double seconds = (1.0 - tokens_) / rate_;
  const auto wait = std::chrono::ceil<Clock::duration>(std::chrono::duration<double>(seconds));
  return std::max(wait, Clock::duration(1));
}

}  // namespace longsana::server
