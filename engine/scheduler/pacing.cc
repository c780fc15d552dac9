#include "engine/scheduler/pacing.h"

#include <algorithm>
#include <limits>

namespace longsana::engine {

double PlaybackClock::Position(Clock::time_point now) const {
  if (!started_) return 0;
  double position = anchor_position_;
  if (!paused_) position += std::chrono::duration<double>(now - anchor_).count();
  return std::clamp(position, 0.0, delivered_);
}

void PlaybackClock::Delivered(Clock::time_point now, double end_seconds) {
  // Re-anchor at the position reached so far: after a wait for this chunk the clock
  // resumes from where it stopped instead of jumping ahead.
  const double position = Position(now);
  anchor_ = now;
  anchor_position_ = position;
  delivered_ = std::max(delivered_, end_seconds);
  started_ = true;
}

void PlaybackClock::Report(Clock::time_point now, double seconds, bool paused) {
  anchor_ = now;
  anchor_position_ = std::clamp(seconds, 0.0, delivered_);
  paused_ = paused;
  started_ = true;
}

double SecondsUntilDue(const PlaybackClock& clock, double block_start_seconds,
                       PlaybackClock::Clock::time_point now) {
  const double ahead = block_start_seconds - clock.Position(now);
  if (ahead <= 0) return 0;
  if (clock.paused()) return std::numeric_limits<double>::infinity();
  return ahead;
}

}  // namespace longsana::engine
